// The signed-in credential: kept in sessionStorage (this tab only, gone
// when it closes), never in a URL sent to the server. `/console#token=…`
// signs in too: the fragment never leaves the browser, and is removed from
// the address bar at once.
const KEY = "analyzer.credential";

type Listener = (reason: string | null) => void;
const listeners = new Set<Listener>();

export function credential(): string | null {
  return window.sessionStorage.getItem(KEY);
}

export function signIn(token: string): void {
  window.sessionStorage.setItem(KEY, token.trim());
}

/** Forget the credential; `reason` (a problem's detail) is shown at sign-in. */
export function signOut(reason: string | null = null): void {
  window.sessionStorage.removeItem(KEY);
  for (const listener of listeners) {
    listener(reason);
  }
}

export function onSignOut(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Take a `#token=…` fragment as the credential, and clear it from the URL. */
export function takeFragment(): void {
  const hash = window.location.hash.replace(/^#/, "");
  const token = new URLSearchParams(hash).get("token");
  if (token) {
    signIn(token);
    const { pathname, search } = window.location;
    window.history.replaceState(null, "", pathname + search);
  }
}
