// Browser test of the console with a data center of 2,000 workloads. The
// Go test internal/console/scale_e2e_test.go starts a manager holding 24
// apps of four tiers (20 workloads each) in three environments, a portal
// of 80 web servers, tens of thousands of flow records, and a CMDB import
// that disagrees with the operators on one workload; it also starts a
// simulated vCenter. Then it runs this script:
//
//   BULKHEAD_URL=https://127.0.0.1:8443 BULKHEAD_ADMIN_TOKEN=bh_... \
//   BULKHEAD_VCENTER_URL=https://127.0.0.1:PORT/sdk BULKHEAD_VCENTER_USER=... \
//   BULKHEAD_VCENTER_PASSWORD=... BULKHEAD_SCALE_WORKLOADS=2001 \
//   BULKHEAD_CONFLICT_WORKLOAD=app-01-web-00 node e2e/scale.mjs
//
// The map must stay bounded: the app level first, then only what is
// expanded, at most 24 workloads of a tier. Timings are printed, not
// asserted.
import assert from "node:assert/strict";
import { env, launch, login, newSession, shot, step, tally } from "./lib.mjs";

const url = env("BULKHEAD_URL");
const adminToken = env("BULKHEAD_ADMIN_TOKEN");
const vcURL = env("BULKHEAD_VCENTER_URL");
const vcUser = env("BULKHEAD_VCENTER_USER");
const vcPassword = env("BULKHEAD_VCENTER_PASSWORD");
const total = Number(env("BULKHEAD_SCALE_WORKLOADS"));
const conflicted = env("BULKHEAD_CONFLICT_WORKLOAD");
const claimed = env("BULKHEAD_VCENTER_CLAIM");
const declared = env("BULKHEAD_DECLARED_WORKLOAD");
const fmt = (n) => n.toLocaleString("en-US");

// The map's shape: 3 envs, 25 apps, outside ranges; an expanded app adds
// its tiers, an expanded tier at most maxPerTier workloads and one "more"
// node.
const maxPerTier = 24;
const envs = 3;
const apps = 25;
const outside = 4;

async function mapState(page, ok) {
  let last;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const m = await page.evaluate(() => {
      const h = window.__bulkheadMap;
      return h && h.ready ? { edges: h.edges(), nodes: h.nodes() } : null;
    });
    if (m) {
      last = { ...m, byId: Object.fromEntries([...m.nodes, ...m.edges].map((x) => [x.id, x])) };
      if (ok(last)) return last;
    }
    await page.waitForTimeout(50);
  }
  throw new Error(`map never reached the expected state; last: ${last?.nodes.length} nodes, ${last?.edges.length} edges`);
}

function count(m) {
  const kinds = {};
  for (const n of m.nodes) kinds[n.kind] = (kinds[n.kind] ?? 0) + 1;
  return { nodes: m.nodes.length, edges: m.edges.length, kinds };
}

// bounded checks the drawn elements against what is expanded.
function bounded(m, tiers, expandedTiers) {
  const c = count(m);
  const most = envs + apps + outside + tiers + expandedTiers * (maxPerTier + 1);
  assert.ok(c.nodes <= most, `${c.nodes} nodes drawn, at most ${most} expected: ${JSON.stringify(c.kinds)}`);
  assert.ok((c.kinds.workload ?? 0) <= expandedTiers * maxPerTier, `${c.kinds.workload} workloads drawn`);
  // Edges join drawn nodes: never more than one per ordered pair, far
  // fewer than the data center's thousands of workload pairs.
  assert.ok(c.edges <= 400, `${c.edges} edges drawn`);
  return c;
}

const browser = await launch();
let exitCode = 1;
try {
  const admin = await newSession(browser);
  const { page } = admin;

  await step("the map of 2,000 workloads opens at the app level", async () => {
    await login(page, url, adminToken);
    await page.getByRole("heading", { name: "Policy" }).waitFor();
    const t0 = Date.now();
    await page.getByRole("link", { name: "Map" }).click();
    const m = await mapState(page, (m) => m.byId["a:staging/app-01"] && m.byId["a:prod/portal"] && m.edges.length > 0);
    const c = bounded(m, 0, 0);
    assert.equal(c.kinds.app, apps, "every app drawn");
    assert.equal(c.kinds.workload ?? 0, 0, "no workload drawn before anything is expanded");
    console.log(`     first draw: ${Date.now() - t0} ms, ${c.nodes} nodes, ${c.edges} edges ${JSON.stringify(c.kinds)}`);
    await shot(page, "scale-map");
  });

  await step("expand an app, then a tier: only their elements are added", async () => {
    let t0 = Date.now();
    await page.evaluate(() => window.__bulkheadMap.expand("a:staging/app-01"));
    let m = await mapState(page, (m) => m.byId["t:staging/app-01/api"] && m.byId["t:staging/app-01/db"]);
    let c = bounded(m, 4, 0);
    console.log(`     expand app: ${Date.now() - t0} ms, ${c.nodes} nodes, ${c.edges} edges`);
    assert.ok(m.byId["t:staging/app-01/web->t:staging/app-01/api"], "web -> api inside the app");
    t0 = Date.now();
    await page.evaluate(() => window.__bulkheadMap.expand("t:staging/app-01/api"));
    m = await mapState(page, (m) => m.byId["w:app-01-api-00"]);
    c = bounded(m, 4, 1);
    assert.equal(c.kinds.workload, 20, "the api tier's 20 workloads");
    console.log(`     expand tier: ${Date.now() - t0} ms, ${c.nodes} nodes, ${c.edges} edges`);
  });

  await step("a tier of 80 workloads draws 24 and one node for the rest", async () => {
    let t0 = Date.now();
    await page.evaluate(() => window.__bulkheadMap.expand("a:prod/portal"));
    await mapState(page, (m) => m.byId["t:prod/portal/web"]);
    await page.evaluate(() => window.__bulkheadMap.expand("t:prod/portal/web"));
    const m = await mapState(page, (m) => m.byId["m:prod/portal/web"]);
    const c = bounded(m, 5, 2);
    assert.equal(c.kinds.workload, 20 + maxPerTier);
    assert.equal(m.byId["m:prod/portal/web"].label, `${80 - maxPerTier} more`);
    console.log(`     expand portal and its web tier: ${Date.now() - t0} ms, ${c.nodes} nodes, ${c.edges} edges`);
    await shot(page, "scale-map-expanded");
    t0 = Date.now();
    await page.evaluate(() => window.__bulkheadMap.select("a:prod/portal"));
    await page.getByTestId("node-panel").getByTestId("node-workloads").getByText("portal-web-00", { exact: true }).waitFor();
    console.log(`     portal's side panel: ${Date.now() - t0} ms`);
    await page.getByRole("button", { name: "Collapse all" }).click();
    await mapState(page, (m) => !m.byId["t:prod/portal/web"] && m.byId["a:prod/portal"]);
  });

  await step("the manager's part of those timings: the map answers", async () => {
    const timed = (path) =>
      page.evaluate(
        async ([p, t]) => {
          const t0 = performance.now();
          const r = await fetch(`/api/v1${p}`, { headers: { Authorization: `Bearer ${t}` } });
          await r.json();
          return [r.status, Math.round(performance.now() - t0)];
        },
        [path, adminToken],
      );
    for (const [what, q] of [
      ["apps", "level=app"],
      ["one app's tiers", `level=tier&scope=${encodeURIComponent('env == "staging" && app == "app-01"')}`],
      ["the portal web tier's workloads", `level=workload&scope=${encodeURIComponent('env == "prod" && app == "portal" && tier == "web"')}`],
    ]) {
      const [status, ms] = await timed(`/map?${q}&since=24h`);
      assert.equal(status, 200);
      console.log(`     GET /map ${what}: ${ms} ms`);
    }
  });

  await step("from a workload on the map to its sources and facts", async () => {
    await page.getByRole("link", { name: "Map" }).click();
    await mapState(page, (m) => m.byId["a:prod/portal"]);
    await page.evaluate(() => window.__bulkheadMap.select("a:prod/portal"));
    await page.getByRole("link", { name: "Sources and facts of portal-web-00" }).click();
    const panel = page.getByTestId("workload-facts");
    await panel.getByRole("heading", { name: "portal-web-00" }).waitFor();
    assert.match(await panel.locator('tr[data-attribute="tag.app"]').textContent(), /portal.*operator.*used/);
    assert.equal(new URL(page.url()).pathname, "/inventory/portal-web-00");
    await page.getByRole("button", { name: "Close facts" }).click();
    await panel.waitFor({ state: "detached" });
  });

  await step("inventory: 2,000 workloads, a page at a time, filtered", async () => {
    const t0 = Date.now();
    await page.getByRole("link", { name: "Inventory" }).click();
    const counter = page.getByTestId("workload-count");
    await counter.getByText(`${fmt(total)} workloads, first 100 shown`).waitFor();
    const rows = page.getByTestId("workloads").locator("tbody tr");
    assert.equal(await rows.count(), 100);
    console.log(`     inventory page: ${Date.now() - t0} ms`);
    let t1 = Date.now();
    await page.getByRole("button", { name: "Show 500 more" }).click();
    await counter.getByText("first 600 shown").waitFor();
    assert.equal(await rows.count(), 600);
    console.log(`     600 rows: ${Date.now() - t1} ms`);
    t1 = Date.now();
    await page.getByLabel("Filter workloads").fill("app-05 tier=db");
    await counter.getByText(`20 of ${fmt(total)} match`).waitFor();
    assert.equal(await rows.count(), 20);
    console.log(`     filter: ${Date.now() - t1} ms`);
    await page.getByLabel("Filter workloads").fill("10.99.0.5");
    await page.getByTestId("workloads").locator('tr[data-workload="legacy-billing"]').waitFor();
  });

  await step("a workload's facts: sources, ages, used or not and why", async () => {
    await page.getByLabel("Filter workloads").fill(conflicted);
    await page.getByTestId("workloads").locator(`tr[data-workload="${conflicted}"]`).click();
    const panel = page.getByTestId("workload-facts");
    await panel.getByRole("heading", { name: conflicted }).waitFor();
    assert.match(await panel.getByTestId("fact-sources").textContent(), /cmdb.*operator/);
    const cmdbApp = panel.locator('tr[data-attribute="tag.app"][data-source="cmdb"]');
    assert.match(await cmdbApp.textContent(), /storefront/);
    assert.match(await cmdbApp.textContent(), /not used/);
    assert.match(await cmdbApp.textContent(), /ago/, "an imported fact has an age");
    const opApp = panel.locator('tr[data-attribute="tag.app"][data-source="operator"]');
    assert.match(await opApp.textContent(), /app-01.*used/);
    assert.match(await panel.locator('tr[data-attribute="owner"][data-source="cmdb"]').textContent(), /alice.*used/);
    assert.equal(new URL(page.url()).pathname, `/inventory/${conflicted}`, "the selection is a link");
    await shot(page, "inventory-facts");
  });

  await step("conflicts: the CMDB disagrees with the operators", async () => {
    const row = page.getByTestId("conflicts").locator(`tr[data-subject="${conflicted} tag.app"]`);
    await row.waitFor();
    const [used, lost] = await row.locator("td").evaluateAll((tds) => tds.slice(1).map((td) => td.textContent));
    assert.match(used, /app-01 for .* from operator/);
    assert.match(lost, /storefront for .* from cmdb/);
  });

  await step("sources: add a vCenter with the form, sync it now", async () => {
    const sources = page.getByTestId("sources");
    assert.equal((await sources.locator('tr[data-source="cmdb"]').getByTestId("records").textContent()).trim(), "2");
    await page.getByRole("button", { name: "+ Add vCenter source" }).click();
    const form = page.getByTestId("add-source");
    await form.getByLabel("Source name").fill("vc1");
    await form.getByLabel("vCenter URL").fill(vcURL);
    await form.getByLabel("vCenter user").fill(vcUser);
    await form.getByLabel("vCenter password").fill(vcPassword);
    await form.getByLabel("Sync interval").fill("0");
    await form.getByLabel("Do not check its certificate").check();
    await form.getByRole("button", { name: "Add source" }).click();
    const row = sources.locator('tr[data-source="vc1"]');
    await row.getByText("synced on request").waitFor();
    await row.getByText("never").waitFor();
    await row.getByRole("button", { name: "Sync vc1" }).click();
    await page.getByTestId("source-result").getByText(/^Synced vc1: 4 new/).waitFor();
    await row.getByTestId("records").getByText("4").waitFor();
    assert.equal(await row.getByTestId("last-error").count(), 0);
    await shot(page, "inventory-sources");
  });

  await step("the vCenter's VM claims a declared workload's address: a conflict", async () => {
    const row = page.getByTestId("conflicts").locator(`tr[data-subject="ip ${claimed}"]`);
    await row.waitFor();
    const [used, lost] = await row.locator("td").evaluateAll((tds) => tds.slice(1).map((td) => td.textContent));
    assert.match(used, new RegExp(`for ${declared} from operator`));
    assert.match(lost, /for dc0-h0-vm0 from vc1 \(vcenter, \d+s ago\)/);
    await row.getByRole("button", { name: "dc0-h0-vm0" }).click();
    const panel = page.getByTestId("workload-facts");
    await panel.getByText("Not a workload").waitFor();
    assert.match(await panel.locator('tr[data-attribute="ip"][data-source="vc1"]').textContent(), new RegExp(`not used.*claimed for workload ${declared}`));
  });

  await step("a deep link to a workload shows its facts", async () => {
    await page.goto(`${url}/inventory/${declared}`);
    const panel = page.getByTestId("workload-facts");
    await panel.getByRole("heading", { name: declared }).waitFor();
    assert.match(await panel.locator('tr[data-attribute="ip"][data-source="operator"]').textContent(), /used.*declared by an operator/);
  });

  await step("delete the CMDB source: its conflict goes", async () => {
    await page.getByRole("button", { name: "Delete cmdb" }).click();
    await page.getByRole("button", { name: "Confirm delete" }).click();
    await page.getByTestId("source-result").getByText(/^Removed cmdb: 0 new, 0 changed, 0 unchanged, 2 removed/).waitFor();
    await page.getByTestId("sources").locator('tr[data-source="cmdb"]').waitFor({ state: "detached" });
    await page.getByTestId("conflicts").locator(`tr[data-subject="${conflicted} tag.app"]`).waitFor({ state: "detached" });
  });
  await step("no errors in the browser console", async () => assert.deepEqual(admin.problems, []));
  exitCode = 0;
} catch {
  exitCode = 1;
} finally {
  await browser.close();
  console.log(`${tally.passed} passed, ${tally.failed} failed`);
}
process.exit(exitCode);
