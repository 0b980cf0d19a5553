// Who the credential speaks for: a tenant (`GET /v1/me`), or an operator
// (an admin token: `/v1/me` is 403 for it, and the admin API answers).
import { api, call, type Problem, type Schemas } from "../api/client";

export type Identity =
  | { kind: "tenant"; me: Schemas["Me"] }
  | { kind: "admin" };

export async function whoAmI(): Promise<{ ok: true; who: Identity } | { ok: false; problem: Problem }> {
  const me = await call(api.GET("/v1/me"));
  if (me.ok) {
    return { ok: true, who: { kind: "tenant", me: me.data } };
  }
  if (me.problem.status !== 403) {
    return me;
  }
  const admin = await call(api.GET("/v1/admin/tenants"));
  if (admin.ok) {
    return { ok: true, who: { kind: "admin" } };
  }
  return admin;
}
