// End-to-end test of the web console in a real browser (Debian's chromium
// driven by playwright-core) against a running manager. The Go test
// internal/console/e2e_test.go starts the manager, loads a policy and runs
// this script; it can also run by hand:
//
//   BULKHEAD_URL=https://127.0.0.1:8443 BULKHEAD_ADMIN_TOKEN=bh_... \
//   BULKHEAD_AUDITOR_TOKEN=bh_... node e2e/console.mjs
//
// BULKHEAD_SCREENSHOTS=DIR writes a PNG of each page to DIR.
// The manager must hold examples/shop.yaml as revision 1 (and nothing newer).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) {
    console.error(`console e2e: set ${k}`);
    process.exit(2);
  }
  return v;
};
const url = env("BULKHEAD_URL");
const adminToken = env("BULKHEAD_ADMIN_TOKEN");
const auditorToken = env("BULKHEAD_AUDITOR_TOKEN");
const executablePath = env("BULKHEAD_CHROMIUM", "/usr/bin/chromium");
const shots = process.env.BULKHEAD_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });

let passed = 0;
let failed = 0;
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

async function shot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

// launch() gives the browser a fresh profile directory of its own and removes
// it on close.
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30_000,
});

// newSession opens a fresh browser context (its own sessionStorage) that
// trusts the manager's self-signed CA only for this test.
async function newSession() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1360, height: 860 } });
  ctx.setDefaultTimeout(10_000);
  const page = await ctx.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // The console shows 4xx answers itself (a wrong token, a validation
  // error); the browser also logs them, which is not a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  return { ctx, page, problems };
}

async function login(page, secret) {
  await page.goto(url + "/");
  await page.getByLabel("API token").fill(secret);
  await page.getByRole("button", { name: "Log in" }).click();
}

async function ruleOrder(page, section) {
  const rows = page.locator(`[data-testid="section-${section}"] tbody tr[data-rule]`);
  await rows.first().waitFor();
  return rows.evaluateAll((trs) => trs.map((r) => r.dataset.rule));
}

const original = ["web-from-anywhere", "web-to-api", "web-to-api-plain", "api-to-db", "deny-rest"];
const edited = ["web-from-anywhere", "web-to-api", "api-to-db", "web-to-api-plain", "deny-rest"];

let exitCode = 1;
try {
  const admin = await newSession();
  const { page } = admin;

  await step("a wrong token is refused with the API's message", async () => {
    await login(page, "bh_not-a-real-token");
    await page.getByRole("alert").getByText("invalid or expired token").waitFor();
    await shot(page, "login");
  });

  await step("the admin logs in and sees the role", async () => {
    await login(page, adminToken);
    await page.getByRole("heading", { name: "Policy" }).waitFor();
    assert.equal(await page.getByTestId("role").textContent(), "admin");
  });

  await step("policy: categories, sections and rules in order", async () => {
    await page.getByTestId("published-revision").getByText("published revision r1").waitFor();
    for (const cat of ["Emergency", "Infrastructure", "Application"]) {
      await page.getByRole("heading", { name: cat, exact: true }).waitFor();
    }
    assert.deepEqual(await ruleOrder(page, "shop"), original);
    assert.deepEqual(await ruleOrder(page, "infra"), ["dns", "admin-ssh"]);
    await page.getByTestId("default-rule").waitFor();
    await shot(page, "policy");
  });

  await step("policy: reorder and edit a rule into a draft, diff it", async () => {
    await page.getByRole("button", { name: "Move api-to-db up" }).click();
    assert.deepEqual(await ruleOrder(page, "shop"), edited);
    await page.getByRole("button", { name: "Edit web-from-anywhere" }).click();
    await page.getByLabel("Services").fill("web, tcp/8443");
    await page.getByRole("button", { name: "Keep in draft" }).click();
    await page.locator('tr[data-rule="web-from-anywhere"]').getByText("web, tcp/8443").waitFor();
    await page.getByTestId("draft").getByText("1 section changed (shop)").waitFor();
    await page.getByRole("button", { name: "Diff against r1" }).click();
    const changes = page.getByTestId("changes");
    await changes.getByRole("heading", { name: "Policy shop updated" }).waitFor();
    const diff = await changes.locator("pre.diff").textContent();
    assert.match(diff, /\+ .*tcp\/8443/, "the diff shows the added service");
    await shot(page, "policy-draft");
  });

  await step("policy: a bad edit shows the API's validation error", async () => {
    await page.getByRole("button", { name: "Edit deny-rest" }).click();
    await page.getByLabel("Destinations").fill("no-such-group");
    await page.getByRole("button", { name: "Keep in draft" }).click();
    await page.getByRole("button", { name: "Diff against r1" }).click();
    await page.getByTestId("draft").getByRole("alert").getByText("no-such-group").waitFor();
    // Put it back: the draft then holds only the reorder and the edit.
    await page.getByRole("button", { name: "Edit deny-rest" }).click();
    await page.getByLabel("Destinations").fill("shop");
    await page.getByRole("button", { name: "Keep in draft" }).click();
  });

  await step("policy: publish makes revision 2", async () => {
    await page.getByLabel("Summary").fill("console: api-to-db before the staged rule, web on 8443");
    await page.getByRole("button", { name: "Publish" }).click();
    await page.getByRole("status").getByText("Published revision 2").waitFor();
    await page.getByTestId("published-revision").getByText("published revision r2").waitFor();
    assert.deepEqual(await ruleOrder(page, "shop"), edited);
    assert.equal(await page.getByTestId("draft").count(), 0);
  });

  await step("inventory: workloads with their tags, groups", async () => {
    await page.getByRole("link", { name: "Inventory" }).click();
    const row = page.getByTestId("workloads").locator("tr", { hasText: "web-1" });
    await row.getByText("tier=web").waitFor();
    await row.getByText("10.10.1.10").waitFor();
    assert.equal(await page.getByTestId("workloads").locator("tbody tr").count(), 5);
    await page.getByTestId("groups").locator("tr", { hasText: "shop-web" }).getByText('app == "shop" && tier == "web"').waitFor();
    await shot(page, "inventory");
  });

  await step("hosts: the agent, connected, with its revisions as the API reports them", async () => {
    await page.getByRole("link", { name: "Hosts" }).click();
    const row = page.getByTestId("hosts").locator("tr", { hasText: "host-1" });
    await row.getByText("connected").waitFor();
    await row.getByText("in sync").waitFor();
    const [h] = await page.evaluate(
      async (t) => (await fetch("/api/v1/hosts", { headers: { Authorization: `Bearer ${t}` } })).json(),
      adminToken,
    );
    const revs = await row.locator(".rev").allTextContents();
    assert.deepEqual(revs, [`r${h.realizedRevision}`, `r${h.desiredRevision}`, `r${h.publishedRevision}`], "realized, desired, published");
    assert.equal(await row.getByTestId("workloads").textContent(), String(h.workloads));
    assert.equal(h.publishedRevision, 2);
    await shot(page, "hosts");
  });

  await step("history: the new revision, its diff, roll back to revision 1", async () => {
    await page.getByRole("link", { name: "History & audit" }).click();
    const revs = page.getByTestId("revisions");
    await revs.locator("tr", { hasText: "console: api-to-db" }).getByText("published").waitFor();
    await revs.getByRole("link", { name: "Revision 2" }).click();
    await page.getByTestId("revision-detail").getByRole("heading", { name: "Policy shop updated" }).waitFor();
    await revs.getByRole("link", { name: "Revision 1" }).click();
    await page.getByRole("button", { name: "Roll back to r1…" }).click();
    await page.getByRole("button", { name: "Confirm rollback" }).click();
    await page.getByRole("status").getByText("Rolled back to revision 1 as revision 3").waitFor();
    await revs.locator("tr", { hasText: "rollback to r1" }).getByText("r3").waitFor();
    await page.getByTestId("audit").getByText("rollback").first().waitFor();
    await shot(page, "history");
  });

  await step("policy after the rollback: the original order", async () => {
    await page.getByRole("link", { name: "Policy" }).click();
    await page.getByTestId("published-revision").getByText("published revision r3").waitFor();
    assert.deepEqual(await ruleOrder(page, "shop"), original);
  });

  await step("map and compliance with no flows say so", async () => {
    await page.getByRole("link", { name: "Map" }).click();
    await page.getByText("No flows in this window").waitFor();
    await page.getByRole("link", { name: "Compliance" }).click();
    await page.getByTestId("compliance-total").getByText("r3").waitFor();
    await page.getByText("No flows in this window.").waitFor();
  });

  await step("a client route survives a reload; the session ends on log out", async () => {
    await page.getByRole("link", { name: "Hosts" }).click();
    await page.reload();
    await page.getByRole("heading", { name: "Hosts" }).waitFor();
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("API token").waitFor();
  });
  assert.deepEqual(admin.problems, [], "no errors in the admin's browser console");

  const auditor = await newSession();
  await step("an auditor sees policy and history read-only", async () => {
    const p = auditor.page;
    await login(p, auditorToken);
    assert.equal(await p.getByTestId("role").textContent(), "auditor");
    await p.getByTestId("readonly").waitFor();
    assert.deepEqual(await ruleOrder(p, "shop"), original);
    for (const name of [/^Edit /, /^Move /, /^Delete /, /^\+ Add rule/, /^Publish$/]) {
      assert.equal(await p.getByRole("button", { name }).count(), 0, `auditor is offered ${name}`);
    }
    await shot(p, "policy-auditor");
    await p.getByRole("link", { name: "History & audit" }).click();
    await p.getByTestId("revisions").getByRole("link", { name: "Revision 1" }).click();
    await p.getByTestId("revision-detail").getByRole("heading", { name: "Revision r1" }).waitFor();
    assert.equal(await p.getByRole("button", { name: /Roll back/ }).count(), 0, "auditor is offered a rollback");
    await p.getByRole("link", { name: "Inventory" }).click();
    await p.getByText("No source yet").waitFor();
    assert.equal(await p.getByRole("button", { name: /Add vCenter/ }).count(), 0, "auditor is offered to add a source");
  });
  assert.deepEqual(auditor.problems, [], "no errors in the auditor's browser console");
  exitCode = 0;
} catch {
  exitCode = 1;
} finally {
  await browser.close();
  console.log(`${passed} passed, ${failed} failed`);
}
process.exit(exitCode);
