import { useCallback, useEffect, useState } from "react";
import { api, call, type Problem, type Schemas } from "../../api/client";
import { navigate } from "../../app/router";
import { Empty } from "../../components/Empty";
import { when } from "../../components/format";
import { Link } from "../../components/Link";
import { ProblemView } from "../../components/ProblemView";

export type Tenant = Schemas["Tenant"];
export type Tier = Tenant["tier"];

export function Tenants() {
  const [tenants, setTenants] = useState<Tenant[] | null>(null);
  const [name, setName] = useState("");
  const [tier, setTier] = useState<Tier>("standard");
  const [problem, setProblem] = useState<Problem | null>(null);

  const load = useCallback(async () => {
    const r = await call(api.GET("/v1/admin/tenants"));
    if (r.ok) {
      setTenants(r.data);
    } else {
      setProblem(r.problem);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const create = async () => {
    const r = await call(api.POST("/v1/admin/tenants", { body: { name, tier } }));
    if (r.ok) {
      setName("");
      setProblem(null);
      navigate(`/admin/tenants/${encodeURIComponent(r.data.id)}`);
    } else {
      setProblem(r.problem);
    }
  };

  return (
    <section>
      <h1>Tenants</h1>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <label htmlFor="tenant-name">New tenant</label>
        <input
          id="tenant-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="Acme Analytics"
        />
        <label htmlFor="tenant-tier">Tier</label>
        <select id="tenant-tier" value={tier} onChange={(e) => setTier(e.target.value as Tier)}>
          <option value="standard">standard</option>
          <option value="premium">premium</option>
        </select>
        <button type="submit">Create tenant</button>
      </form>
      <ProblemView problem={problem} />
      {tenants && tenants.length === 0 && (
        <Empty title="No tenants yet.">Create the first one above, then mint it a token or an API key.</Empty>
      )}
      {tenants && tenants.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Tier</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {tenants.map((t) => (
              <tr key={t.id}>
                <td>
                  <Link to={`/admin/tenants/${encodeURIComponent(t.id)}`}>{t.name}</Link>
                  <br />
                  <code className="muted">{t.id}</code>
                </td>
                <td>{t.tier}</td>
                <td>
                  <span className={`status ${t.status}`}>{t.status}</span>
                </td>
                <td>{when(t.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
