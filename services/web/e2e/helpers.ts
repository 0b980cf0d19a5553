import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { APIRequestContext, Page } from "@playwright/test";
import { expect } from "@playwright/test";

export const ADMIN = process.env.ADMIN_TOKEN ?? "";
export const FIXTURES = process.env.FIXTURES ?? "";
const SHOTS = process.env.SCREENSHOTS;

/** A tenant made through the API, with a token for it. */
export async function tenant(
  request: APIRequestContext,
  name: string,
  tier: "standard" | "premium",
): Promise<{ id: string; token: string }> {
  const auth = { Authorization: `Bearer ${ADMIN}` };
  const created = await request.post("/v1/admin/tenants", { headers: auth, data: { name, tier } });
  expect(created.status()).toBe(201);
  const { id } = (await created.json()) as { id: string };
  const minted = await request.post(`/v1/admin/tenants/${id}/tokens`, {
    headers: auth,
    data: { ttl_seconds: 3600 },
  });
  expect(minted.status()).toBe(200);
  const { token } = (await minted.json()) as { token: string };
  return { id, token };
}

/** The axe-core engine, run in the page (not injected as a script: the CSP forbids that). */
const AXE = readFileSync(join(process.cwd(), "node_modules/axe-core/axe.min.js"), "utf8");

interface Violation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** Serious and critical accessibility violations on the page as it is. */
export async function axeViolations(page: Page): Promise<string[]> {
  // A string is evaluated by the debugging protocol, outside the page's CSP.
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: () => Promise<{ violations: Violation[] }> } }).axe;
    const result = await axe.run();
    return result.violations;
  });
  return violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/** A screenshot for docs/console.md, when SCREENSHOTS names a folder. */
export async function shot(page: Page, name: string): Promise<void> {
  if (SHOTS) {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }
}

export function fixture(name: string): string {
  return join(FIXTURES, name);
}
