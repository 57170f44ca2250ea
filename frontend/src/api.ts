// Talks to /api/v1/ui with the token the user typed (kept in sessionStorage only: it leaves
// with the tab and never reaches a URL, a cookie or localStorage).
const TOKEN_KEY = "modelyard.token";
const BASE = "/api/v1/ui";

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (value: string) => sessionStorage.setItem(TOKEN_KEY, value.trim()),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

type Params = Record<string, string | number | string[] | undefined | null>;

export function query(params: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function get<T = any>(path: string, params: Params = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const secret = token.get();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  const response = await fetch(`${BASE}${path}${query(params)}`, { headers });
  if (response.status === 401) throw new AuthError("this token is missing, invalid or expired");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.message ?? response.statusText);
  return body as T;
}

export async function serverInfo(): Promise<{ auth: boolean; version: string }> {
  const response = await fetch("/api/health");
  return response.json();
}
