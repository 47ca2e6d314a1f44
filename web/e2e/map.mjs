// Browser test of the Map, Recommendations and Compliance pages. The Go
// test internal/console/map_e2e_test.go starts a manager holding a small
// shop's workloads and a day of its flows (plus an outsider's port scan)
// but no policy, then runs this script:
//
//   BULKHEAD_URL=https://127.0.0.1:8443 BULKHEAD_ADMIN_TOKEN=bh_... \
//   BULKHEAD_AUDITOR_TOKEN=bh_... node e2e/map.mjs
//
// Colours are read from Cytoscape's elements (window.__bulkheadMap), not
// from pixels.
import assert from "node:assert/strict";
import { env, launch, login, newSession, shot, step, tally } from "./lib.mjs";

const url = env("BULKHEAD_URL");
const adminToken = env("BULKHEAD_ADMIN_TOKEN");
const auditorToken = env("BULKHEAD_AUDITOR_TOKEN");

const colour = { green: "rgb(22,121,74)", amber: "rgb(217,142,4)", red: "rgb(180,35,24)" };
const shopClients = "a:prod/clients->a:prod/shop";
const shopInside = "a:prod/shop->a:prod/shop";
const internet = "x:internet->a:prod/shop";
const outsider = "a:prod/outsider->a:prod/shop";

// mapEdges waits until the map has drawn what ok accepts and returns its
// edges by id.
async function mapEdges(page, ok = () => true) {
  let last;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const m = await page.evaluate(() => {
      const h = window.__bulkheadMap;
      return h && h.ready ? { revision: h.revision, edges: h.edges(), nodes: h.nodes() } : null;
    });
    if (m) {
      last = { ...m, byId: Object.fromEntries(m.edges.map((e) => [e.id, e])) };
      if (ok(last)) return last;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`map never reached the expected state; last: ${JSON.stringify(last?.edges.map((e) => [e.id, e.cls]))}`);
}

async function revision(page) {
  const revs = await page.evaluate(
    async (t) => (await fetch("/api/v1/revisions?limit=1", { headers: { Authorization: `Bearer ${t}` } })).json(),
    adminToken,
  );
  return revs[0]?.number ?? 0;
}

const browser = await launch();
let exitCode = 1;
try {
  const admin = await newSession(browser);
  const { page } = admin;
  let before;

  await step("log in and open the map: the shop's edges are amber (no policy yet)", async () => {
    await login(page, url, adminToken);
    await page.getByRole("link", { name: "Map" }).click();
    await page.getByTestId("legend").waitFor();
    const m = await mapEdges(page, (m) => [shopClients, shopInside, internet, outsider].every((id) => m.byId[id]));
    for (const id of [shopClients, shopInside, internet, outsider]) {
      assert.equal(m.byId[id].cls, "amber", `${id} before any policy`);
      assert.equal(m.byId[id].colour, colour.amber, `${id} is drawn amber`);
    }
    assert.ok(m.nodes.some((n) => n.id === "e:prod" && n.kind === "env"), "env compound node");
    assert.ok(m.nodes.some((n) => n.id === "a:prod/shop" && n.parent === "e:prod"), "the shop inside prod");
    before = await revision(page);
    assert.equal(m.revision, before);
  });

  await step("click an edge: its flows and the rule that decided each", async () => {
    await page.evaluate((id) => window.__bulkheadMap.select(id), shopClients);
    const panel = page.getByTestId("edge-panel");
    await panel.getByTestId("edge-class").getByText("amber").waitFor();
    const rows = panel.getByTestId("edge-flows").locator("tbody tr");
    await rows.first().waitFor();
    assert.ok((await rows.count()) >= 3, "flows of several workload pairs");
    const first = await rows.first().textContent();
    assert.match(first, /desk-\d → web-\d tcp\/443/);
    assert.match(first, /allow default/, "recorded: the default rule decided it");
    await shot(page, "map-before");
  });

  await step("expand the shop to its tiers and the web tier to its workloads", async () => {
    await page.evaluate(() => window.__bulkheadMap.select("a:prod/shop"));
    const panel = page.getByTestId("node-panel");
    await panel.getByTestId("node-workloads").getByText("web-1").waitFor();
    await panel.getByRole("button", { name: "Show tiers" }).click();
    let m = await mapEdges(page, (m) => m.byId["t:prod/shop/web->t:prod/shop/api"]);
    assert.equal(m.byId["t:prod/shop/web->t:prod/shop/api"].cls, "amber");
    assert.ok(m.byId["a:prod/clients->t:prod/shop/web"], "the clients' edge now ends at the web tier");
    assert.ok(!m.byId[shopInside], "no app-level edge inside an expanded app");
    assert.ok(m.nodes.some((n) => n.id === "t:prod/shop/db" && n.parent === "a:prod/shop"));
    await page.evaluate(() => window.__bulkheadMap.expand("t:prod/shop/web"));
    m = await mapEdges(page, (m) => m.byId["w:web-1->t:prod/shop/api"]);
    assert.ok(m.byId["w:web-2->t:prod/shop/api"], "web-2's own edge");
    assert.ok(m.byId["a:prod/outsider->w:web-1"], "the outsider reached web-1");
    // Counting no flow twice: the edges out of the web tier add up to the
    // tier-level edge.
    const sum = m.byId["w:web-1->t:prod/shop/api"].counts.total + m.byId["w:web-2->t:prod/shop/api"].counts.total;
    assert.equal(sum, 18);
    await shot(page, "map-expanded");
    await page.getByRole("button", { name: "Collapse all" }).click();
    await mapEdges(page, (m) => m.byId[shopInside]);
  });

  await step("recommendations: draft the shop's policy, with evidence and the what-if", async () => {
    await page.getByRole("link", { name: "Recommendations" }).click();
    await page.getByLabel("Scope").selectOption({ label: "app prod/shop" });
    await page.getByRole("button", { name: "Recommend" }).click();
    const rules = page.getByTestId("draft-rules");
    await rules.waitFor();
    const names = await rules.locator("tbody tr").evaluateAll((trs) => trs.map((r) => r.dataset.rule));
    assert.ok(names.length >= 4, `rules: ${names}`);
    const evidence = page.locator('[data-testid^="evidence-"]');
    assert.ok((await evidence.count()) >= 3, "rules carry evidence");
    assert.match(await evidence.first().textContent(), /\d+ flows/);
    await page.getByTestId("scanners").getByText("intruder").waitFor();
    const summary = page.getByTestId("whatif-summary");
    await summary.waitFor();
    assert.match(await summary.textContent(), /would have dropped \d+ of \d+ flow records/);
    const dropped = Number((await summary.textContent()).match(/dropped (\d+)/)[1]);
    assert.ok(dropped >= 30, `the outsider's ${dropped} attempts would be dropped`);
    // Leave a rule out: the what-if follows the edit; then keep it again.
    await page.getByLabel(`Keep ${names[0]}`).uncheck();
    await page.getByTestId("whatif").getByRole("heading", { name: "What if (as edited)" }).waitFor();
    await page.getByLabel(`Keep ${names[0]}`).check();
    await page.getByTestId("whatif").getByRole("heading", { name: "What if", exact: true }).waitFor();
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, "recommendations");
  });

  await step("apply the recommendation (enforce): a new revision", async () => {
    await page.getByRole("button", { name: "Apply (enforce)" }).click();
    await page.getByTestId("applied").getByText(`Applied as revision ${before + 1}`).waitFor();
    assert.equal(await revision(page), before + 1);
  });

  await step("the map turns green for the shop, red for the outsider", async () => {
    await page.getByRole("link", { name: "Map" }).click();
    const m = await mapEdges(page, (m) => m.revision === before + 1 && m.byId[shopClients]);
    for (const id of [shopClients, shopInside, internet]) {
      assert.equal(m.byId[id].cls, "green", `${id} after apply`);
      assert.equal(m.byId[id].colour, colour.green, `${id} is drawn green`);
    }
    assert.equal(m.byId[outsider].cls, "red", "the outsider's scan is blocked now");
    assert.equal(m.byId[outsider].colour, colour.red);
    await page.evaluate((id) => window.__bulkheadMap.select(id), shopInside);
    const rows = page.getByTestId("edge-flows").locator("tbody tr");
    await rows.first().waitFor();
    assert.match(await rows.first().textContent(), /allow recommended-/, "now decided by a recommended rule");
    await page.evaluate(() => window.__bulkheadMap.select("a:prod/shop"));
    await page.getByTestId("node-rules").waitFor();
    assert.match(await page.getByTestId("node-groups").textContent(), /\w/);
    await shot(page, "map-after");
  });

  await step("compliance: per app, total line and per edge", async () => {
    await page.getByRole("link", { name: "Compliance" }).click();
    const total = page.getByTestId("compliance-total");
    await total.getByText(`r${before + 1}`).waitFor();
    const shop = page.getByTestId("compliance-nodes").locator('tr[data-node="prod/shop"]');
    await shop.waitFor();
    assert.ok(Number((await shop.locator("td.cls-green").textContent()).replace(/,/g, "")) > 0);
    const edge = page.getByTestId("compliance-edges").locator('tr[data-edge="prod/outsider->prod/shop"]');
    assert.equal((await edge.locator("td.cls-red").textContent()).trim(), "33");
    await shot(page, "compliance");
  });

  await step("inventory: the recommended groups with their live members", async () => {
    await page.getByRole("link", { name: "Inventory" }).click();
    const groups = page.getByTestId("groups");
    await groups.waitFor();
    const row = groups.locator("tr", { has: page.getByText("shop-web", { exact: true }) });
    assert.equal((await row.getByTestId("members").textContent()).trim(), "2 workloads: web-1, web-2");
    await groups.locator("tr", { has: page.getByText("scope-env-prod-app-shop", { exact: true }) }).getByText("4 workloads").waitFor();
    await shot(page, "inventory-members");
  });
  await step("no errors in the admin's browser console", async () => assert.deepEqual(admin.problems, []));

  const auditor = await newSession(browser);
  await step("an auditor reads the map; recommendations are not offered", async () => {
    const p = auditor.page;
    await login(p, url, auditorToken);
    await p.getByRole("link", { name: "Map" }).click();
    const m = await mapEdges(p, (m) => m.byId[shopClients]);
    assert.equal(m.byId[shopClients].cls, "green");
    await p.getByRole("link", { name: "Recommendations" }).click();
    await p.getByTestId("readonly").waitFor();
    assert.equal(await p.getByRole("button", { name: "Recommend" }).isDisabled(), true);
    assert.equal(await p.getByRole("button", { name: /^Apply/ }).count(), 0);
  });
  await step("no errors in the auditor's browser console", async () => assert.deepEqual(auditor.problems, []));
  exitCode = 0;
} catch {
  exitCode = 1;
} finally {
  await browser.close();
  console.log(`${tally.passed} passed, ${tally.failed} failed`);
}
process.exit(exitCode);
