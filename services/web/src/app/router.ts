// Screens by path under /console, with the History API: a reload or a
// shared link lands on the same screen (the server answers every path
// under /console with the app's page).
import { useEffect, useState } from "react";

export const BASE = "/console";

function current(): string {
  const path = window.location.pathname;
  const inner = path.startsWith(BASE) ? path.slice(BASE.length) : path;
  return inner.replace(/\/+$/, "") || "/";
}

export function navigate(to: string): void {
  window.history.pushState(null, "", BASE + to);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

/** The path under /console, kept current on navigation. */
export function usePath(): string {
  const [path, setPath] = useState(current);
  useEffect(() => {
    const update = () => setPath(current());
    window.addEventListener("popstate", update);
    return () => window.removeEventListener("popstate", update);
  }, []);
  return path;
}
