import { useCallback, useEffect, useState } from "react";
import { api, call, type Problem, type Schemas } from "../../api/client";
import { Empty } from "../../components/Empty";
import { when } from "../../components/format";
import { Pager, useCursors } from "../../components/Pager";
import { ProblemView } from "../../components/ProblemView";

type Page = Schemas["AuditPage"];

/** Admin actions, newest first, by pages; filtered by tenant. */
export function Audit() {
  const [tenant, setTenant] = useState("");
  const [applied, setApplied] = useState("");
  const pages = useCursors();
  const { cursor, reset } = pages;
  const [page, setPage] = useState<Page | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);

  const load = useCallback(async () => {
    const r = await call(
      api.GET("/v1/admin/audit", {
        params: {
          query: { limit: "50", ...(applied ? { tenant: applied } : {}), ...(cursor ? { cursor } : {}) },
        },
      }),
    );
    if (r.ok) {
      setPage(r.data);
      setProblem(null);
    } else {
      setProblem(r.problem);
    }
  }, [applied, cursor]);
  useEffect(() => {
    void load();
  }, [load]);

  return (
    <section>
      <h1>Audit log</h1>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(tenant.trim());
          reset();
        }}
      >
        <label htmlFor="audit-tenant">Tenant id</label>
        <input id="audit-tenant" value={tenant} onChange={(e) => setTenant(e.target.value)} />
        <button type="submit">Filter</button>
      </form>
      <ProblemView problem={problem} />
      {page && page.entries.length === 0 && (
        <Empty title="Nothing recorded.">Admin actions (tenants, keys, tokens, exports) appear here.</Empty>
      )}
      {page && page.entries.length > 0 && (
        <table className="audit">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Tenant</th>
              <th scope="col">Target</th>
              <th scope="col">Outcome</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {page.entries.map((e) => (
              <tr key={`${e.at}-${e.request_id}-${e.action}`}>
                <td>{when(e.at)}</td>
                <td>{e.actor}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>
                  <code>{e.tenant_id ?? "—"}</code>
                </td>
                <td>{e.target ?? "—"}</td>
                <td>{e.outcome}</td>
                <td>{e.detail ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pages={pages} nextCursor={page?.next_cursor} labels={["Newer", "Older"]} />
    </section>
  );
}
