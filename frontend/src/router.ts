// Hash routes (#/runs/abc?x=1): the server serves one index.html and needs no route table.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  parts: string[];
  params: URLSearchParams;
}

function current(): Route {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [path, search = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(search) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const onChange = () => setRoute(current());
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function href(parts: (string | number)[], params?: Record<string, string>): string {
  const path = parts.map((p) => encodeURIComponent(String(p))).join("/");
  const search = params ? new URLSearchParams(params).toString() : "";
  return `#/${path}${search ? `?${search}` : ""}`;
}

export function navigate(parts: (string | number)[], params?: Record<string, string>): void {
  location.hash = href(parts, params);
}
