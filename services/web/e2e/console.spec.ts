import { readFileSync } from "node:fs";
import { expect, test } from "@playwright/test";
import { ADMIN, axeViolations, fixture, shot, tenant } from "./helpers";

// A failed dialog (confirm) is accepted: the tests confirm deletions.
test.beforeEach(({ page }) => {
  page.on("dialog", (d) => void d.accept());
});

test("a tenant uploads, lists, searches, analyzes with citations and deletes", async ({
  page,
  request,
}) => {
  const { token } = await tenant(request, "Harbour Logistics", "premium");
  // The fragment signs in; it never reaches the server and leaves the address bar.
  await page.goto(`/console/#token=${token}`);
  await expect(page.getByTestId("who")).toHaveText("Harbour Logistics · premium");
  expect(page.url()).not.toContain("token=");
  await expect(page.getByRole("heading", { name: "Documents" })).toBeVisible();
  await expect(page.getByText("No documents in default yet.")).toBeVisible();

  await page.getByLabel("Upload files").setInputFiles([fixture("crane-manual.pdf"), fixture("canteen.md")]);
  const uploads = page.getByRole("list", { name: "Uploads" });
  await expect(uploads.getByText("done")).toHaveCount(2);
  const table = page.locator("table.documents");
  await expect(table.getByText("crane-manual.pdf")).toBeVisible();
  await expect(table.getByText("canteen.md")).toBeVisible();
  await shot(page, "documents");
  expect(await axeViolations(page), "documents with uploads").toEqual([]);

  await page.getByRole("link", { name: "Search" }).click();
  const search = page.getByRole("searchbox", { name: "Search the documents" });
  await search.fill("crane load limit");
  await search.press("Enter");
  const hits = page.locator(".hit");
  await expect(hits.first()).toContainText("crane");
  await expect(hits.first()).toContainText("page 2");
  await shot(page, "search");
  expect(await axeViolations(page), "search results").toEqual([]);

  await page.getByRole("link", { name: "Analyze" }).click();
  await page.getByLabel("Question").fill("What is the crane's load limit?");
  await page.getByRole("button", { name: "Ask" }).click();
  await expect(page.getByTestId("answer")).toContainText("tonnes");
  const citation = page.locator(".citations button").first();
  await expect(citation).toBeVisible();
  await shot(page, "analyze");
  await citation.click();
  const dialog = page.getByRole("dialog");
  await expect(dialog.locator("blockquote")).toContainText("tonnes");
  await shot(page, "citation");
  expect(await axeViolations(page), "an answer and its cited chunk").toEqual([]);
  await dialog.getByRole("button", { name: "Close" }).click();

  await page.getByRole("link", { name: "Usage" }).click();
  await expect(page.getByText("Requests this minute")).toBeVisible();
  await expect(page.getByRole("img", { name: /api_calls/ })).toBeVisible();
  await shot(page, "usage");

  await page.getByRole("link", { name: "Documents" }).click();
  const row = table.getByRole("row").filter({ hasText: "canteen.md" });
  await row.getByRole("button", { name: "Delete" }).click();
  await expect(table.getByText("canteen.md")).toHaveCount(0);
  await expect(table.getByText("crane-manual.pdf")).toBeVisible();
});

test("an upload that fails says which file and why", async ({ page, request }) => {
  const { token } = await tenant(request, "Bad Files Ltd", "standard");
  await page.goto(`/console/#token=${token}`);
  await expect(page.getByText("No documents in default yet.")).toBeVisible();
  // Dropped on the drop zone, as a person drags a file from their desktop.
  const dropped = await page.evaluateHandle(() => {
    const data = new DataTransfer();
    data.items.add(new File(["plain text pretending to be a PDF"], "invoice.pdf", { type: "application/pdf" }));
    return data;
  });
  await page.locator(".dropzone").dispatchEvent("drop", { dataTransfer: dropped });
  const failed = page.getByRole("list", { name: "Uploads" }).locator("li.failed");
  await expect(failed).toContainText("invoice.pdf");
  await expect(failed.getByRole("alert")).toContainText("unsupported_file");
});

test("a tenant pages through its documents and edits one's metadata", async ({ page, request }) => {
  const { token } = await tenant(request, "Many Papers", "premium");
  const documents = Array.from({ length: 25 }, (_, i) => ({
    id: `memo-${String(i).padStart(2, "0")}`,
    text: `Memo number ${i} about the quarterly shipping schedule.`,
  }));
  const stored = await request.post("/v1/documents", {
    headers: { Authorization: `Bearer ${token}` },
    data: { documents },
  });
  expect(stored.status()).toBe(201);
  await page.goto(`/console/#token=${token}`);
  const rows = page.locator("table.documents tbody tr");
  await expect(rows).toHaveCount(20);
  await page.getByRole("button", { name: "Next page" }).click();
  await expect(rows).toHaveCount(5);
  await expect(page.getByRole("button", { name: "Next page" })).toBeDisabled();
  await page.getByRole("button", { name: "Previous page" }).click();
  await expect(rows).toHaveCount(20);

  const row = rows.filter({ hasText: "memo-24" });
  await row.getByRole("button", { name: "Metadata" }).click();
  const dialog = page.getByRole("dialog", { name: /Metadata of memo-24/ });
  await dialog.getByRole("textbox").fill("not json");
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog.getByRole("alert")).toContainText("Not JSON");
  await dialog.getByRole("textbox").fill('{"quarter": 3, "team": "ops"}');
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toHaveCount(0);
  await expect(row).toContainText('{"quarter":3,"team":"ops"}');
});

test("an operator creates a tenant, creates and revokes a key, reads the audit log and downloads the usage CSV", async ({
  page,
}) => {
  await page.goto("/console/");
  // Signed in with the keyboard alone: the field first, then the button.
  await page.keyboard.press("Tab");
  await expect(page.getByLabel("Token or API key")).toBeFocused();
  await page.keyboard.insertText(ADMIN);
  await page.keyboard.press("Tab");
  await expect(page.getByRole("button", { name: "Sign in" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("who")).toHaveText("Operator (admin token)");
  await expect(page.getByRole("heading", { name: "Tenants" })).toBeVisible();

  await page.getByLabel("New tenant").fill("Northwind Freight");
  await page.getByLabel("Tier").selectOption("premium");
  await page.getByRole("button", { name: "Create tenant" }).click();
  await expect(page.getByRole("heading", { name: "Northwind Freight" })).toBeVisible();
  const tenantId = decodeURIComponent(page.url().split("/admin/tenants/")[1] ?? "");
  expect(tenantId).not.toBe("");

  await page.getByLabel("New key named").fill("nightly-import");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = page.getByTestId("secret");
  await expect(secret).toHaveText(/^ak_/);
  const key = (await secret.textContent()) ?? "";
  await shot(page, "tenant");
  // The key works until it is revoked (and counts as the tenant's usage).
  const accepted = await page.request.get("/v1/me", { headers: { Authorization: `Bearer ${key}` } });
  expect(accepted.status()).toBe(200);
  const keyRow = page.getByRole("row").filter({ hasText: "nightly-import" });
  await keyRow.getByRole("button", { name: "Revoke nightly-import" }).click();
  await expect(keyRow).toContainText("revoked");
  // The revoked key is refused by the API.
  const refused = await page.request.get("/v1/me", { headers: { Authorization: `Bearer ${key}` } });
  expect(refused.status()).toBe(401);

  // A token minted here opens the console as the tenant (in another tab).
  await page.getByRole("button", { name: "Mint a token" }).click();
  await expect(secret).toHaveText(/^eyJ/);
  const minted = (await secret.textContent()) ?? "";
  const tab = await page.context().newPage();
  await tab.goto(`/console/#token=${minted}`);
  await expect(tab.getByTestId("who")).toHaveText("Northwind Freight · premium");
  await tab.close();

  // Tier and status.
  const status = page.locator(".status");
  await page.getByLabel("Tier").selectOption("standard");
  await expect(page.getByLabel("Tier")).toHaveValue("standard");
  await page.getByRole("button", { name: "Suspend" }).click();
  await expect(status).toHaveText("suspended");
  await page.getByRole("button", { name: "Reactivate" }).click();
  await expect(status).toHaveText("active");

  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByLabel("Tenant id").fill(tenantId);
  await page.getByRole("button", { name: "Filter" }).click();
  const audit = page.locator("table.audit");
  const actions = ["tenant.reactivate", "tenant.suspend", "tenant.update", "token.mint", "key.revoke", "key.create", "tenant.create"];
  await expect(audit.getByRole("row")).toHaveCount(actions.length + 1); // the header, then newest first
  for (const [i, action] of actions.entries()) {
    await expect(audit.getByRole("row").nth(i + 1)).toContainText(action);
  }
  await shot(page, "audit");

  await page.getByRole("link", { name: "Usage report" }).click();
  await page.getByRole("button", { name: "Show the report" }).click();
  await expect(page.getByRole("rowheader", { name: "Northwind Freight" }).first()).toBeVisible();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download CSV" }).click(),
  ]);
  const path = await download.path();
  const csv = readFileSync(path, "utf8");
  expect(csv.split("\n")[0]).toMatch(/^tenant_id,name,tier,api_calls/);
  expect(download.suggestedFilename()).toMatch(/^usage-.*\.csv$/);
  await shot(page, "usage-report");

  // Deleting the tenant asks first (accepted here), then lists it as deleted.
  await page.getByRole("link", { name: "Tenants" }).click();
  await page.locator(`a[href="/console/admin/tenants/${tenantId}"]`).click();
  await page.getByRole("button", { name: "Delete tenant" }).click();
  await expect(page.getByRole("heading", { name: "Tenants" })).toBeVisible();
  const listed = page.getByRole("row").filter({ hasText: tenantId });
  await expect(listed).toContainText("deleted");
});

test("a credential refused by the server returns to sign-in with the problem's detail", async ({
  page,
  request,
}) => {
  const { id, token } = await tenant(request, "Signed Out Co", "standard");
  await page.goto(`/console/#token=${token}`);
  await expect(page.getByTestId("who")).toContainText("Signed Out Co");
  await expect(page.getByText("No documents in default yet.")).toBeVisible();
  const revoked = await request.post(`/v1/admin/tenants/${id}/tokens/revoke`, {
    headers: { Authorization: `Bearer ${ADMIN}` },
  });
  expect(revoked.status()).toBe(200);
  await page.getByRole("link", { name: "Collections" }).click();
  await expect(page.getByRole("button", { name: "Sign in" })).toBeVisible();
  await expect(page.getByRole("alert")).toContainText("The server refused the credential:");
  await expect(page.getByRole("alert")).toContainText("signed out");

  await page.getByLabel("Token or API key").fill("not.a.token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("The server refused the credential:");
  expect(await page.evaluate(() => window.sessionStorage.length)).toBe(0);
});

test("a rate-limited request says when to retry", async ({ page, request }) => {
  // The server under test gives standard tenants a small rate limit.
  const { token } = await tenant(request, "Busy Standard", "standard");
  await page.goto(`/console/#token=${token}`);
  await page.getByRole("link", { name: "Search" }).click();
  const search = page.getByRole("searchbox", { name: "Search the documents" });
  await search.fill("anything");
  const retry = page.getByText(/Too many requests: try again in \d+ s\./);
  for (let i = 0; i < 40 && !(await retry.isVisible()); i += 1) {
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForTimeout(50);
  }
  await expect(retry).toBeVisible();
  await expect(page.getByRole("alert")).toContainText("rate_limited");
});

test("every main screen passes axe-core with no serious violation", async ({ page, request }) => {
  const { id, token } = await tenant(request, "Accessible Inc", "premium");
  await page.goto(`/console/#token=${token}`);
  await expect(page.getByTestId("who")).toContainText("Accessible Inc");
  for (const screen of ["Documents", "Collections", "Search", "Analyze", "Usage"]) {
    await page.getByRole("link", { name: screen, exact: true }).click();
    await expect(page.getByRole("heading", { level: 1, name: screen })).toBeVisible();
    expect(await axeViolations(page), screen).toEqual([]);
  }
  await page.getByRole("button", { name: "Sign out" }).click();
  expect(await axeViolations(page), "sign-in").toEqual([]);
  await page.getByLabel("Token or API key").fill(ADMIN);
  await page.getByRole("button", { name: "Sign in" }).click();
  for (const screen of ["Usage report", "Audit log", "Tenants"]) {
    await page.getByRole("link", { name: screen, exact: true }).click();
    await expect(page.getByRole("heading", { level: 1, name: screen })).toBeVisible();
    expect(await axeViolations(page), screen).toEqual([]);
  }
  await page.locator(`a[href="/console/admin/tenants/${id}"]`).click();
  await expect(page.getByRole("heading", { name: "Accessible Inc" })).toBeVisible();
  expect(await axeViolations(page), "tenant").toEqual([]);
});
