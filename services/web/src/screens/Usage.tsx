import { useEffect, useState } from "react";
import { api, call, type Problem, type Schemas } from "../api/client";
import { BarChart, type Point } from "../components/Chart";
import { bytes } from "../components/format";
import { ProblemView } from "../components/ProblemView";

const QUOTA_LABELS: Record<string, string> = {
  requests_per_minute: "Requests this minute",
  concurrent_requests: "Requests in flight",
  db_connections: "Database connections",
  query_cache_bytes: "Query cache",
  vector_storage_bytes: "Vector storage",
};

const METRICS = ["api_calls", "searches", "analyses", "documents_ingested", "chunks_ingested", "embedding_tokens"];

/** Each limit with what is used and left, and the counters hour by hour. */
export function Usage() {
  const [usage, setUsage] = useState<Schemas["UsageView"] | null>(null);
  const [history, setHistory] = useState<Schemas["UsageHistory"] | null>(null);
  const [metric, setMetric] = useState("api_calls");
  const [hours, setHours] = useState(24);
  const [problem, setProblem] = useState<Problem | null>(null);

  useEffect(() => {
    void (async () => {
      const r = await call(api.GET("/v1/usage"));
      if (r.ok) {
        setUsage(r.data);
      } else {
        setProblem(r.problem);
      }
    })();
  }, []);

  useEffect(() => {
    void (async () => {
      const now = new Date();
      now.setUTCMinutes(0, 0, 0);
      const to = new Date(now.getTime() + 3600_000);
      const from = new Date(to.getTime() - hours * 3600_000);
      const r = await call(
        api.GET("/v1/usage/history", {
          params: { query: { from: from.toISOString(), to: to.toISOString() } },
        }),
      );
      if (r.ok) {
        setHistory(r.data);
      } else {
        setProblem(r.problem);
      }
    })();
  }, [hours]);

  return (
    <section>
      <h1>Usage</h1>
      <ProblemView problem={problem} />
      {usage && (
        <>
          <p>
            Tier <strong>{usage.tier}</strong> · {usage.documents} documents · {usage.chunks}{" "}
            chunks · {bytes(usage.text_bytes)} of text · {bytes(usage.vector_bytes)} of vectors
          </p>
          <h2>Limits</h2>
          <dl className="quotas">
            {Object.entries(usage.quotas).map(([name, q]) => (
              <div key={name} className="quota">
                <dt id={`quota-${name}`}>{QUOTA_LABELS[name] ?? name}</dt>
                <dd>
                  <meter
                    min={0}
                    max={Math.max(1, q.limit)}
                    value={q.used}
                    high={q.limit * 0.8}
                    aria-labelledby={`quota-${name}`}
                  />
                  <span>
                    {show(name, q.used)} used of {show(name, q.limit)} · {show(name, q.remaining)}{" "}
                    left
                  </span>
                </dd>
              </div>
            ))}
          </dl>
          <h2>Since the start</h2>
          <table>
            <tbody>
              {Object.entries(usage.counters).map(([name, value]) => (
                <tr key={name}>
                  <th scope="row">{name}</th>
                  <td className="num">{value.toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <h2>Over time</h2>
      <div className="row">
        <label>
          Counter{" "}
          <select value={metric} onChange={(e) => setMetric(e.target.value)}>
            {METRICS.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        <label>
          Period{" "}
          <select value={hours} onChange={(e) => setHours(Number(e.target.value))}>
            <option value={24}>last 24 hours</option>
            <option value={168}>last 7 days</option>
            <option value={744}>last 31 days</option>
          </select>
        </label>
      </div>
      {history && <BarChart title={metric} points={series(history, metric)} />}
    </section>
  );
}

function show(name: string, n: number): string {
  return name.endsWith("_bytes") ? bytes(n) : n.toLocaleString();
}

/** Every hour of the period, zeros included (the API leaves idle hours out). */
export function series(history: Schemas["UsageHistory"], metric: string): Point[] {
  const byHour = new Map(history.hours.map((h) => [Date.parse(h.hour), h.counters[metric] ?? 0]));
  const points: Point[] = [];
  for (let t = Date.parse(history.from); t < Date.parse(history.to); t += 3600_000) {
    const d = new Date(t);
    points.push({
      label: `${d.toISOString().slice(5, 10)} ${d.toISOString().slice(11, 13)}h`,
      value: byHour.get(t) ?? 0,
    });
  }
  return points;
}
