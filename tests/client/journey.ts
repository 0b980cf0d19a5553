// A tenant's journey through a client generated from the server's own
// /openapi.json: if the description is wrong, this stops type-checking
// (tsc --strict) or fails against the live server. Run by
// tests/api/contract.rs with ANALYZER_URL and ANALYZER_TOKEN set.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

type Problem = components["schemas"]["Problem"];

const baseUrl = process.env.ANALYZER_URL ?? "";
const token = process.env.ANALYZER_TOKEN ?? "";
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${token}` },
});

function check(condition: boolean, what: string, detail?: unknown): void {
  if (!condition) {
    throw new Error(`${what}: ${JSON.stringify(detail)}`);
  }
}

const me = await client.GET("/v1/me");
check(me.response.status === 200 && me.data !== undefined, "GET /v1/me", me.error);
const tenantId: string = me.data!.tenant_id;
const perMinute: number = me.data!.limits.requests_per_minute;
check(perMinute > 0, "a tier's limits", me.data);

const ingested = await client.POST("/v1/documents", {
  body: {
    collection: "handbooks",
    documents: [
      {
        id: "crane-handbook",
        text: "The harbour crane is inspected every Monday before the first shift.",
        metadata: { lang: "en", year: 2026, reviewed: true, owner: null },
      },
    ],
  },
});
check(ingested.response.status === 201, "POST /v1/documents", ingested.error);
check(ingested.response.headers.get("location") === "/v1/documents/crane-handbook", "Location");
const chunks: number = ingested.data!.chunks;
check(chunks >= 1, "chunks stored", ingested.data);

const page = await client.GET("/v1/documents", {
  params: { query: { collection: "handbooks", limit: "10", filter: JSON.stringify({ lang: "en" }) } },
});
check(page.response.status === 200, "GET /v1/documents", page.error);
const first = page.data!.documents[0];
check(first?.id === "crane-handbook" && first.metadata.year === 2026, "the listing", page.data);
check(page.data!.next_cursor === undefined, "one page only", page.data);

const read = await client.GET("/v1/documents/{id}", { params: { path: { id: "crane-handbook" } } });
check(read.data?.text.includes("Monday") === true, "GET /v1/documents/{id}", read.error);

const found = await client.POST("/v1/search", {
  body: { query: "when is the crane inspected", collection: "handbooks", filter: { reviewed: true } },
});
check(found.data?.hits[0]?.document_id === "crane-handbook", "POST /v1/search", found.data ?? found.error);
check(found.response.headers.get("ratelimit-limit") === String(perMinute), "RateLimit-Limit");

const answered = await client.POST("/v1/analyze", {
  body: { question: "When is the crane inspected?", collection: "handbooks" },
});
// The operation answers JSON, or an event stream with `stream: true`.
const analysis = typeof answered.data === "object" ? answered.data : undefined;
check(analysis?.citations[0]?.document_id === "crane-handbook", "POST /v1/analyze", answered.error);

const refused = await client.POST("/v1/search", { body: { query: "", top_k: 0 } });
const problem: Problem | undefined = refused.error;
check(refused.response.status === 400 && problem?.code === "validation_failed", "a problem", problem);
check(problem?.errors?.length === 2, "every invalid field", problem);

const removed = await client.DELETE("/v1/documents/{id}", { params: { path: { id: "crane-handbook" } } });
check(removed.response.status === 204, "DELETE /v1/documents/{id}", removed.error);
const gone = await client.GET("/v1/documents/{id}", { params: { path: { id: "crane-handbook" } } });
check(gone.error?.code === "not_found", "a deleted document", gone.error);

console.log(`journey ok for tenant ${tenantId}`);
