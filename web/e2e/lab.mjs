// The map user story against the real lab (bulkhead lab up): its
// manager, agents enforcing with nftables, flow records of real
// connections. The Go test internal/lab/e2e_console_test.go runs it after
// the lab's traffic has been recorded and any policy rolled back:
//
//   BULKHEAD_URL=https://127.0.0.1:8443 BULKHEAD_ADMIN_TOKEN=bh_... \
//   BULKHEAD_REVISION=N node e2e/lab.mjs
//
// BULKHEAD_REVISION is the latest revision (no policy in it). The script
// opens the map (amber: nothing protects the lab), recommends a policy
// for the whole data center over the last hour (the attacker, a scanner,
// left out), enforces it with one click, waits until every host realized
// it, and checks the map again: no amber edge, red only where the
// attacker (app ci) is an end. It leaves the policy published; the Go
// test rolls it back.
import assert from "node:assert/strict";
import { env, launch, login, newSession, shot, step, tally } from "./lib.mjs";

const url = env("BULKHEAD_URL");
const adminToken = env("BULKHEAD_ADMIN_TOKEN");
const before = Number(env("BULKHEAD_REVISION"));

// The attacker's app: an edge with it at one end may be red.
const attackerEnd = (id) => /^a:(?:[^/]+\/)?ci$/.test(id);

async function mapEdges(page, ok, what, timeout = 20_000) {
  let last;
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const m = await page.evaluate(() => {
      const h = window.__bulkheadMap;
      return h && h.ready ? { revision: h.revision, edges: h.edges(), nodes: h.nodes() } : null;
    });
    if (m) {
      last = m;
      if (ok(m)) return m;
    }
    await page.waitForTimeout(200);
  }
  throw new Error(`map: ${what}; last: revision ${last?.revision}, ${JSON.stringify(last?.edges.map((e) => [e.id, e.cls]))}`);
}

const api = (page, path) =>
  page.evaluate(
    async ([p, t]) => {
      const r = await fetch(`/api/v1${p}`, { headers: { Authorization: `Bearer ${t}` } });
      if (!r.ok) throw new Error(`GET ${p}: ${r.status}`);
      return r.json();
    },
    [path, adminToken],
  );

const browser = await launch();
let exitCode = 1;
try {
  const admin = await newSession(browser);
  const { page } = admin;
  let applied;

  await step("log in and open the lab's map: amber, no rule allows anything yet", async () => {
    await login(page, url, adminToken);
    await page.getByRole("link", { name: "Map" }).click();
    await page.getByLabel("Window").selectOption("1h");
    const m = await mapEdges(page, (m) => m.revision === before && m.edges.length >= 5, `revision ${before} with the lab's edges`);
    // With no policy nothing is allowed by a rule or blocked now: every
    // edge is amber, except that drop records the previous subtest's
    // policy left (the attacker's, and any connection that policy did not
    // allow) stay red — they were dropped.
    const wrong = m.edges.filter((e) => e.cls !== "amber" && e.cls !== "red");
    assert.deepEqual(wrong.map((e) => `${e.id} ${e.cls}`), [], "edges allowed by a rule or staged without a policy");
    assert.ok(m.edges.some((e) => e.cls === "amber"), "amber edges without a policy");
    assert.ok(m.nodes.some((n) => n.id === "a:prod/shop"), "the shop on the map");
    assert.ok(m.nodes.some((n) => attackerEnd(n.id)), "the attacker's app on the map");
    console.log(`     ${m.nodes.length} nodes, ${m.edges.length} edges, ${m.edges.filter((e) => e.cls === "amber").length} amber`);
    await shot(page, "lab-map-before");
  });

  await step("recommend for the whole data center over the last hour: the attacker is left out", async () => {
    await page.getByRole("link", { name: "Recommendations" }).click();
    // The page picks the first app as the scope when the app list
    // arrives, if nothing is chosen yet: wait for the list, then choose.
    await page.locator("#scope option", { hasText: "app " }).first().waitFor({ state: "attached" });
    await page.getByLabel("Scope").selectOption("all()");
    assert.equal(await page.getByLabel("Scope").inputValue(), "all()", "the scope chosen");
    await page.getByLabel("Window").selectOption("1h");
    const t0 = Date.now();
    await page.getByRole("button", { name: "Recommend" }).click();
    await page.getByTestId("draft-rules").waitFor({ timeout: 30_000 });
    await page.getByTestId("scanners").getByText("attacker", { exact: true }).waitFor();
    const rules = await page.getByTestId("draft-rules").locator("tbody tr").count();
    assert.ok(rules >= 5, `${rules} rules drafted`);
    const summary = page.getByTestId("whatif-summary");
    await summary.waitFor({ timeout: 30_000 });
    console.log(`     ${rules} rules drafted in ${Date.now() - t0} ms; ${await summary.textContent()}`);
    for (const x of await page.locator('[data-testid^="evidence-"]').allTextContents()) {
      assert.ok(!x.includes("10.77.9.66"), `the attacker's connection as evidence: ${x}`);
    }
  });

  await step("apply (enforce) with one click; every host realizes it", async () => {
    await page.getByRole("button", { name: "Apply (enforce)" }).click();
    const notice = page.getByTestId("applied");
    await notice.getByText(`Applied as revision ${before + 1}`).waitFor({ timeout: 20_000 });
    applied = before + 1;
    const t0 = Date.now();
    for (;;) {
      const hosts = await api(page, "/hosts");
      const behind = hosts.filter((h) => !h.inSync || h.realizedRevision < applied || h.lastError);
      if (hosts.length > 0 && behind.length === 0) break;
      if (Date.now() - t0 > 30_000) throw new Error(`revision ${applied} not realized: ${JSON.stringify(behind)}`);
      await page.waitForTimeout(250);
    }
    console.log(`     revision ${applied} realized on every host in ${Date.now() - t0} ms`);
  });

  await step("the map again: no amber edge, red only where the attacker is an end", async () => {
    await page.getByRole("link", { name: "Map" }).click();
    await page.getByLabel("Window").selectOption("1h");
    const m = await mapEdges(page, (m) => m.revision === applied && m.edges.length >= 5, `revision ${applied}`);
    const amber = m.edges.filter((e) => e.cls === "amber" || e.cls === "dashed");
    const red = m.edges.filter((e) => e.cls === "red");
    assert.deepEqual(amber.map((e) => e.id), [], "amber edges left");
    // Away from the attacker, red may be drop records an earlier policy
    // left in the window, and the odd connection whose record reached the
    // manager after the recommendation read the window (agents report
    // every 10 s): a few per edge, never a flow the recommendation saw.
    // (The DiscoverRecommend subtest checks that strictly, with --until.)
    const blockedNow = red.filter((e) => !attackerEnd(e.from) && !attackerEnd(e.to) && e.counts.red > e.drops);
    for (const e of blockedNow) console.log(`     late: ${e.id} red ${e.counts.red} of ${e.counts.total}, drop records ${e.drops}`);
    const tooMany = blockedNow.filter((e) => e.counts.red - e.drops > 3);
    assert.deepEqual(tooMany.map((e) => `${e.id} red ${e.counts.red} of ${e.counts.total}, drop records ${e.drops}`), [], "red edges without the attacker");
    assert.ok(red.length > 0, "the attacker's edges are red");
    assert.ok(m.edges.some((e) => e.id === "a:prod/clients->a:prod/shop" && e.cls === "green"), "the shoppers' edge is green");
    console.log(`     ${m.edges.filter((e) => e.cls === "green").length} green edges, ${red.length} red (the attacker's)`);
    await page.evaluate(() => window.__bulkheadMap.select("a:dev/ci"));
    await page.getByTestId("node-panel").getByTestId("node-workloads").getByText("attacker").waitFor();
    await shot(page, "lab-map-after");
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
