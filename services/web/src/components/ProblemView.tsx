import { useEffect, useState } from "react";
import type { Problem } from "../api/client";

/** A server problem as a person reads it: its detail, each invalid field, and for a 429 when to retry. */
export function ProblemView({ problem }: { problem: Problem | null }) {
  const [left, setLeft] = useState<number | null>(problem?.retryAfter ?? null);
  useEffect(() => {
    setLeft(problem?.retryAfter ?? null);
    if (problem?.retryAfter == null) {
      return;
    }
    const timer = window.setInterval(
      () => setLeft((s) => (s === null || s <= 1 ? null : s - 1)),
      1000,
    );
    return () => window.clearInterval(timer);
  }, [problem]);
  if (!problem) {
    return null;
  }
  return (
    <div className="problem" role="alert">
      <p>
        <strong>{problem.detail}</strong> <code>{problem.code}</code>
      </p>
      {problem.errors.length > 0 && (
        <ul>
          {problem.errors.map((e) => (
            <li key={e.field + e.message}>
              <code>{e.field}</code>: {e.message}
            </li>
          ))}
        </ul>
      )}
      {problem.status === 429 && (
        <p className="retry">
          {left !== null
            ? `Too many requests: try again in ${left} s.`
            : "Too many requests: you can try again now."}
        </p>
      )}
    </div>
  );
}
