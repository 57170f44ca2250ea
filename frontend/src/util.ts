import { useEffect, useState } from "preact/hooks";
import { AuthError, get } from "./api";

export interface Loaded<T> {
  data: T | null;
  error: Error | null;
  loading: boolean;
}

// Loads `path` whenever `key` changes; an AuthError bubbles to the app to ask for a token.
export function useApi<T = any>(path: string | null, params: Record<string, any> = {}, onAuth?: () => void): Loaded<T> {
  const key = path === null ? "" : path + JSON.stringify(params);
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: true });
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    get<T>(path, params)
      .then((data) => live && setState({ data, error: null, loading: false }))
      .catch((error: Error) => {
        if (!live) return;
        if (error instanceof AuthError) dispatchEvent(new CustomEvent("modelyard:auth"));
        onAuth?.();
        setState({ data: null, error, loading: false });
      });
    return () => {
      live = false;
    };
  }, [key]);
  return state;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

export function num(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return String(value);
  return Number(value.toPrecision(digits)).toString();
}

// Decimal SI units, like modelyard.units.format_size: the CLI and the dashboard agree.
export function size(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = bytes;
  let i = 0;
  while ((i === 0 ? v >= 1000 : Number(v.toFixed(1)) >= 1000) && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function short(id: string | null | undefined, n = 12): string {
  if (!id) return "—";
  return id.startsWith("sha256:") ? id.slice(7, 7 + n) : id.slice(0, n);
}
