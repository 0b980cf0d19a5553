import { useState } from "react";
import type { Problem } from "../api/client";
import { ProblemView } from "../components/ProblemView";

/** Paste a tenant token, an API key or an admin token. */
export function SignIn(props: {
  reason: string | null;
  problem: Problem | null;
  busy: boolean;
  onSubmit: (token: string) => void;
}) {
  const [token, setToken] = useState("");
  return (
    <main className="signin">
      <h1>Analyzer console</h1>
      {props.reason && (
        <p className="problem" role="alert">
          The server refused the credential: {props.reason}
        </p>
      )}
      <ProblemView problem={props.problem} />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) {
            props.onSubmit(token);
          }
        }}
      >
        <label htmlFor="credential">Token or API key</label>
        <textarea
          id="credential"
          rows={4}
          value={token}
          spellCheck={false}
          autoComplete="off"
          placeholder="eyJ… (a tenant or admin token) or ak_… (an API key)"
          onChange={(e) => setToken(e.target.value)}
        />
        <p className="hint">
          It is kept in this tab only (session storage) and sent only in the Authorization header.
        </p>
        <button type="submit" disabled={props.busy || !token.trim()}>
          {props.busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
