// The API client: openapi-fetch typed by the schema generated from the
// server's /openapi.json (schema.d.ts; never edited by hand). Every call
// carries the signed-in credential; a 401 on any call signs out.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
import { credential, signOut } from "./session";

export type Schemas = components["schemas"];

export const api = createClient<paths>({ baseUrl: window.location.origin });

const authorize: Middleware = {
  onRequest({ request }) {
    const token = credential();
    if (token && !request.headers.has("Authorization")) {
      request.headers.set("Authorization", `Bearer ${token}`);
    }
    return request;
  },
  async onResponse({ response }) {
    if (response.status === 401 && credential()) {
      const problem = await readProblem(response.clone());
      signOut(problem.detail);
    }
    return response;
  },
};
api.use(authorize);

/** A server problem (RFC 9457), as the console shows it. */
export interface Problem {
  status: number;
  code: string;
  detail: string;
  /** Each invalid field, when the server named them. */
  errors: { field: string; message: string }[];
  /** Seconds until a retry may succeed (429, 503). */
  retryAfter: number | null;
}

/** The problem in a failed response's body (or one made from its status). */
export async function readProblem(response: Response): Promise<Problem> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return toProblem(body, response);
}

/** The problem openapi-fetch parsed as `error`, with its response. */
export function toProblem(body: unknown, response: Response): Problem {
  const fields = (body ?? {}) as Partial<Schemas["Problem"]> & {
    errors?: { field: string; message: string }[];
  };
  const retry = response.headers.get("Retry-After");
  const seconds = retry === null ? NaN : Number.parseInt(retry, 10);
  return {
    status: response.status,
    code: typeof fields.code === "string" ? fields.code : `http_${response.status}`,
    detail:
      typeof fields.detail === "string" && fields.detail
        ? fields.detail
        : `${response.status} ${response.statusText || "error"}`,
    errors: Array.isArray(fields.errors) ? fields.errors : [],
    retryAfter: Number.isFinite(seconds) ? seconds : null,
  };
}

/** A problem the console states itself (status 0 unless it stands for an HTTP one). */
export function localProblem(code: string, detail: string, status = 0): Problem {
  return { status, code, detail, errors: [], retryAfter: null };
}

/** A network failure (the server unreachable) as a problem. */
export function networkProblem(e: unknown): Problem {
  return localProblem(
    "network_error",
    `The server could not be reached: ${e instanceof Error ? e.message : String(e)}`,
  );
}

/**
 * The data of a call, or its problem: `const r = await call(api.GET(...))`.
 * Keeps each screen to one shape of result.
 */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<{ ok: true; data: T } | { ok: false; problem: Problem }> {
  try {
    const { data, error, response } = await request;
    if (response.ok) {
      return { ok: true, data: data as T };
    }
    return { ok: false, problem: toProblem(error, response) };
  } catch (e) {
    return { ok: false, problem: networkProblem(e) };
  }
}
