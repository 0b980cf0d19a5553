import { useState } from "react";
import { api, call, type Problem, type Schemas } from "../../api/client";
import { BarChart } from "../../components/Chart";
import { Empty } from "../../components/Empty";
import { ProblemView } from "../../components/ProblemView";

const COLUMNS = ["api_calls", "searches", "analyses", "documents_ingested", "embedding_tokens"];

function today(offsetDays = 0): string {
  return new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
}

/** The usage report per tenant over a period: table, chart, CSV. */
export function UsageReport() {
  const [from, setFrom] = useState(today(-30));
  const [to, setTo] = useState(today());
  const [metric, setMetric] = useState("api_calls");
  const [report, setReport] = useState<Schemas["Report"] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [download, setDownload] = useState<{ url: string; name: string } | null>(null);

  const run = async () => {
    const r = await call(api.GET("/v1/admin/usage", { params: { query: { from, to } } }));
    if (!r.ok) {
      setProblem(r.problem);
    } else if (typeof r.data !== "string") {
      setReport(r.data);
      setProblem(null);
    }
  };

  const csv = async () => {
    const r = await call(
      api.GET("/v1/admin/usage", {
        params: { query: { from, to, format: "csv" } },
        parseAs: "blob",
      }),
    );
    if (!r.ok) {
      setProblem(r.problem);
      return;
    }
    if (download) {
      URL.revokeObjectURL(download.url);
    }
    const blob = r.data as unknown as Blob;
    const file = { url: URL.createObjectURL(blob), name: `usage-${from}-${to}.csv` };
    setDownload(file);
    const a = document.createElement("a");
    a.href = file.url;
    a.download = file.name;
    a.click();
  };

  return (
    <section>
      <h1>Usage report</h1>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void run();
        }}
      >
        <label htmlFor="from">From</label>
        <input id="from" type="date" value={from} onChange={(e) => setFrom(e.target.value)} />
        <label htmlFor="to">To (included)</label>
        <input id="to" type="date" value={to} onChange={(e) => setTo(e.target.value)} />
        <button type="submit">Show the report</button>
        <button type="button" onClick={() => void csv()}>
          Download CSV
        </button>
      </form>
      {download && (
        <p className="muted">
          Saved as <a href={download.url} download={download.name}>{download.name}</a>.
        </p>
      )}
      <ProblemView problem={problem} />
      {report && report.tenants.length === 0 && (
        <Empty title="No usage in this period.">Pick a longer period, or one when tenants were active.</Empty>
      )}
      {report && report.tenants.length > 0 && (
        <>
          <p className="muted">
            {report.from} to {report.to}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Tenant</th>
                <th scope="col">Tier</th>
                {COLUMNS.map((c) => (
                  <th scope="col" key={c}>
                    {c}
                  </th>
                ))}
                <th scope="col">Cost (USD)</th>
                <th scope="col">Compute (ms)</th>
              </tr>
            </thead>
            <tbody>
              {report.tenants.map((t) => (
                <tr key={t.tenant_id}>
                  <th scope="row">{t.name}</th>
                  <td>{t.tier}</td>
                  {COLUMNS.map((c) => (
                    <td className="num" key={c}>
                      {(t.counters[c] ?? 0).toLocaleString()}
                    </td>
                  ))}
                  <td className="num">{t.estimated_cost_usd.toFixed(4)}</td>
                  <td className="num">{t.compute_ms.toFixed(1)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <label>
            Chart of{" "}
            <select value={metric} onChange={(e) => setMetric(e.target.value)}>
              {COLUMNS.map((c) => (
                <option key={c}>{c}</option>
              ))}
            </select>
          </label>
          <BarChart
            title={`${metric} by tenant`}
            points={report.tenants.map((t) => ({ label: t.name, value: t.counters[metric] ?? 0 }))}
          />
        </>
      )}
    </section>
  );
}
