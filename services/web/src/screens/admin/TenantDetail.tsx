import { useCallback, useEffect, useState } from "react";
import { api, call, type Problem, type Schemas } from "../../api/client";
import { navigate } from "../../app/router";
import { Empty } from "../../components/Empty";
import { when } from "../../components/format";
import { Link } from "../../components/Link";
import { ProblemView } from "../../components/ProblemView";
import { Secret } from "../../components/Secret";
import type { Tenant, Tier } from "./Tenants";

type Key = Schemas["KeyView"];

/** One tenant: tier and status, API keys, tokens, deletion. */
export function TenantDetail({ id }: { id: string }) {
  const [tenant, setTenant] = useState<Tenant | null>(null);
  const [keys, setKeys] = useState<Key[]>([]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [secret, setSecret] = useState<{ label: string; value: string } | null>(null);
  const [keyName, setKeyName] = useState("");
  const [ttl, setTtl] = useState(3600);
  const [signedOut, setSignedOut] = useState<string | null>(null);
  const path = { params: { path: { id } } };

  const load = useCallback(async () => {
    const [t, k] = await Promise.all([
      call(api.GET("/v1/admin/tenants/{id}", { params: { path: { id } } })),
      call(api.GET("/v1/admin/tenants/{id}/keys", { params: { path: { id } } })),
    ]);
    if (t.ok) {
      setTenant(t.data);
    } else {
      setProblem(t.problem);
    }
    if (k.ok) {
      setKeys(k.data.keys);
    }
  }, [id]);
  useEffect(() => {
    void load();
  }, [load]);

  const outcome = async (r: { ok: true } | { ok: false; problem: Problem }) => {
    if (r.ok) {
      setProblem(null);
      await load();
    } else {
      setProblem(r.problem);
    }
  };

  const update = async (change: { tier?: Tier; status?: "active" | "suspended" }) =>
    outcome(await call(api.PATCH("/v1/admin/tenants/{id}", { ...path, body: change })));

  const createKey = async () => {
    const r = await call(api.POST("/v1/admin/tenants/{id}/keys", { ...path, body: { name: keyName } }));
    if (r.ok) {
      setSecret({ label: `API key ${r.data.name} (${r.data.prefix}…).`, value: r.data.key });
      setKeyName("");
    }
    await outcome(r);
  };

  const revokeKey = async (key: Key) => {
    if (!window.confirm(`Revoke the key ${key.name}? Programs using it are refused at once.`)) {
      return;
    }
    await outcome(
      await call(
        api.DELETE("/v1/admin/tenants/{id}/keys/{key_id}", {
          params: { path: { id, key_id: key.id } },
        }),
      ),
    );
  };

  const mint = async () => {
    const r = await call(
      api.POST("/v1/admin/tenants/{id}/tokens", { ...path, body: { ttl_seconds: ttl } }),
    );
    if (r.ok) {
      setSecret({ label: `A token valid for ${r.data.expires_in} s.`, value: r.data.token });
    }
    await outcome(r);
  };

  const signOutEverywhere = async () => {
    if (!window.confirm("Sign this tenant out everywhere? Every token issued until now is refused.")) {
      return;
    }
    const r = await call(api.POST("/v1/admin/tenants/{id}/tokens/revoke", path));
    if (r.ok) {
      setSignedOut(r.data.tokens_valid_after);
    }
    await outcome(r);
  };

  const remove = async () => {
    if (
      !window.confirm(
        `Delete ${tenant?.name ?? id}? Its documents, vectors, collections and keys are removed; its usage is kept for billing.`,
      )
    ) {
      return;
    }
    const r = await call(api.DELETE("/v1/admin/tenants/{id}", path));
    if (r.ok) {
      navigate("/admin/tenants");
    } else {
      setProblem(r.problem);
    }
  };

  return (
    <section>
      <p>
        <Link to="/admin/tenants">← Tenants</Link>
      </p>
      <h1>{tenant?.name ?? id}</h1>
      <ProblemView problem={problem} />
      {secret && <Secret label={secret.label} value={secret.value} />}
      {tenant && (
        <>
          <p>
            <code>{tenant.id}</code> · created {when(tenant.created_at)} · status{" "}
            <span className={`status ${tenant.status}`}>{tenant.status}</span>
          </p>
          {tenant.status !== "deleted" && (
            <div className="row">
              <label>
                Tier{" "}
                <select
                  value={tenant.tier}
                  onChange={(e) => void update({ tier: e.target.value as Tier })}
                >
                  <option value="standard">standard</option>
                  <option value="premium">premium</option>
                </select>
              </label>
              {tenant.status === "active" ? (
                <button type="button" onClick={() => void update({ status: "suspended" })}>
                  Suspend
                </button>
              ) : (
                <button type="button" onClick={() => void update({ status: "active" })}>
                  Reactivate
                </button>
              )}
              <button type="button" className="danger" onClick={() => void remove()}>
                Delete tenant
              </button>
            </div>
          )}

          <h2>API keys</h2>
          <form
            className="inline"
            onSubmit={(e) => {
              e.preventDefault();
              void createKey();
            }}
          >
            <label htmlFor="key-name">New key named</label>
            <input
              id="key-name"
              value={keyName}
              onChange={(e) => setKeyName(e.target.value)}
              placeholder="ingest-job"
            />
            <button type="submit">Create key</button>
          </form>
          {keys.length === 0 ? (
            <Empty title="No API keys.">Create one for a program that calls the API.</Empty>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Prefix</th>
                  <th scope="col">Created</th>
                  <th scope="col">Last used</th>
                  <th scope="col">State</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {keys.map((k) => (
                  <tr key={k.id}>
                    <td>{k.name}</td>
                    <td>
                      <code>{k.prefix}</code>
                    </td>
                    <td>{when(k.created_at)}</td>
                    <td>{when(k.last_used_at)}</td>
                    <td>{k.revoked_at ? `revoked ${when(k.revoked_at)}` : "active"}</td>
                    <td className="actions">
                      {!k.revoked_at && (
                        <button type="button" className="danger" onClick={() => void revokeKey(k)}>
                          Revoke {k.name}
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}

          <h2>Tokens</h2>
          <form
            className="inline"
            onSubmit={(e) => {
              e.preventDefault();
              void mint();
            }}
          >
            <label htmlFor="ttl">Valid for (seconds)</label>
            <input
              id="ttl"
              type="number"
              min={1}
              value={ttl}
              onChange={(e) => setTtl(Number(e.target.value))}
            />
            <button type="submit">Mint a token</button>
          </form>
          <button type="button" className="danger" onClick={() => void signOutEverywhere()}>
            Sign out everywhere
          </button>
          {signedOut && (
            <p role="status">Signed out everywhere: tokens issued before {when(signedOut)} are refused.</p>
          )}
        </>
      )}
    </section>
  );
}
