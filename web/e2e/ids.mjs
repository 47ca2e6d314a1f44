// Browser test of the IDS/IPS page. The Go test
// internal/console/ids_e2e_test.go starts a manager holding the IDS
// corpus's lab (web1, db1, a client), the corpus rules as signature set
// "corpus", a detect profile for the shop and a prevent profile for its
// web tier, and the alerts the real engine raised on the corpus captures
// (HTTP inline, TLS and DNS as copies; the DNS alert three hours old),
// then runs this script:
//
//   BULKHEAD_URL=https://127.0.0.1:8443 BULKHEAD_ADMIN_TOKEN=bh_... \
//   BULKHEAD_AUDITOR_TOKEN=bh_... IDS_ALERTS_24H=17 IDS_ALERTS_1H=16 \
//   IDS_SET_RULES=36 IDS_DB1_LEFTOUT_SID=1000001 IDS_DB1_LEFTOUT_REASON=... \
//   IDS_DB1_SIGNATURES=12 IDS_LATE_SIGNAL=/tmp/x IDS_LATE_ALERTS=3 node e2e/ids.mjs
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { env, launch, login, newSession, shot, step, tally } from "./lib.mjs";

const url = env("BULKHEAD_URL");
const adminToken = env("BULKHEAD_ADMIN_TOKEN");
const auditorToken = env("BULKHEAD_AUDITOR_TOKEN");
const all = Number(env("IDS_ALERTS_24H"));
const lastHour = Number(env("IDS_ALERTS_1H"));
const setRules = Number(env("IDS_SET_RULES"));
const leftSid = env("IDS_DB1_LEFTOUT_SID");
const leftReason = env("IDS_DB1_LEFTOUT_REASON");
const db1Signatures = Number(env("IDS_DB1_SIGNATURES"));
// Creating this file makes the Go test send IDS_LATE_ALERTS more alerts.
const lateSignal = env("IDS_LATE_SIGNAL");
const late = Number(env("IDS_LATE_ALERTS"));

// alertRows waits until the alert table shows n rows (0: the empty
// notice) and returns their sids, severities, actions and text.
async function alertRows(page, n, timeout) {
  const count = page.getByTestId("alert-count");
  await count.filter({ hasText: new RegExp(`^${n} alerts?,`) }).waitFor({ timeout });
  if (n === 0) {
    await page.getByText(/No alert in this window/).waitFor();
    return [];
  }
  const rows = page.getByTestId("alerts").locator("tbody tr");
  await rows.nth(n - 1).waitFor();
  assert.equal(await rows.count(), n);
  return rows.evaluateAll((trs) =>
    trs.map((tr) => ({
      sid: tr.dataset.sid,
      severity: Number(tr.querySelector(".sev").textContent.trim().split(" ")[0]),
      action: tr.querySelector(".action").textContent.trim(),
      text: tr.textContent,
    })),
  );
}

async function checkPage(s, who, all, lastHour) {
  const { page } = s;
  await step(`${who}: the alerts are listed newest first with workloads, app and host`, async () => {
    await page.getByRole("link", { name: "IDS/IPS" }).click();
    await page.getByRole("tab", { name: "Alerts" }).waitFor();
    const rows = await alertRows(page, all);
    // Newest first: the DNS alert, three hours old, is last.
    assert.equal(rows[rows.length - 1].sid, "1000021", "the oldest alert (DNS) last");
    assert.match(rows[rows.length - 1].text, /dns/);
    const log4j = rows.find((r) => r.sid === "1000005");
    assert.ok(log4j, "the Log4j drop rule alerted");
    assert.equal(log4j.action, "blocked");
    assert.ok(rows.some((r) => r.action === "allowed"), "alert rules only alert");
    for (const r of rows) {
      assert.match(r.text, /client:\d+ → web1:\d+|web1:\d+ → client:\d+/, `workload names, not addresses: ${r.text}`);
      assert.match(r.text, /host-1/);
    }
    assert.ok(new Set(rows.map((r) => r.severity)).size >= 2, "several severities");
  });

  await step(`${who}: the filters narrow the list (window, severity, workload, sid)`, async () => {
    await page.getByLabel("Window").selectOption("1h");
    await alertRows(page, lastHour);
    await page.getByLabel("Window").selectOption("24h");
    await alertRows(page, all);
    const before = await alertRows(page, all);
    const high = before.filter((r) => r.severity === 1).length;
    assert.ok(high > 0 && high < all, `some but not all alerts are severity 1 (${high} of ${all})`);
    await page.getByLabel("Severity").selectOption("1");
    const rows = await alertRows(page, high);
    assert.ok(rows.every((r) => r.severity === 1));
    await page.getByLabel("Severity").selectOption("0");
    await alertRows(page, all);
    await page.getByLabel("Workload").selectOption("db1");
    await alertRows(page, 0);
    await page.getByLabel("Workload").selectOption("web1");
    await alertRows(page, all);
    await page.getByLabel("Workload").selectOption("");
    await page.getByLabel("Signature id").fill("1000005");
    const one = await alertRows(page, before.filter((r) => r.sid === "1000005").length);
    assert.ok(one.every((r) => r.sid === "1000005"));
  });

  await step(`${who}: clicking an alert shows its whole EVE record`, async () => {
    await page.getByTestId("alerts").locator("tbody tr").first().click();
    const detail = page.getByTestId("alert-detail");
    await detail.getByText("sid 1000005").waitFor();
    const eve = JSON.parse(await detail.getByTestId("eve-json").textContent());
    assert.equal(eve.event_type, "alert");
    assert.equal(eve.alert.signature_id, 1000005);
    assert.equal(eve.alert.action, "blocked");
    assert.equal(eve.app_proto, "http");
    assert.match(eve.http.http_user_agent, /jndi:ldap/);
    assert.equal(eve.bulkhead.host, "host-1");
    assert.equal(eve.bulkhead.src_workload, "client");
    assert.equal(eve.bulkhead.dest_workload, "web1");
    assert.equal(eve.bulkhead.mode, "prevent");
    assert.equal(eve.bulkhead.profile, "web-prevent");
    // flow_id (52 bits, as the engine writes it) is shown as stored.
    const raw = await page.evaluate(
      async ([t]) => await (await fetch("/api/v1/ids/alerts?sid=1000005&limit=1", { headers: { Authorization: `Bearer ${t}` } })).text(),
      [adminToken],
    );
    const flowID = raw.match(/"flow_id":\s*(\d+)/)?.[1];
    assert.ok(flowID, `a flow_id in ${raw.slice(0, 300)}`);
    assert.match(await detail.getByTestId("eve-json").textContent(), new RegExp(`"flow_id": ${flowID}[,\\n]`));
    await shot(page, "ids-alerts");
    await page.getByLabel("Signature id").fill("");
    await alertRows(page, all);
    // A TLS alert carries its tls object.
    await page.getByTestId("alerts").locator('tbody tr[data-sid="1000019"]').first().click();
    const tls = JSON.parse(await page.getByTestId("eve-json").textContent());
    assert.equal(tls.tls.sni, "legacy.lab.test");
    await detail.getByRole("button", { name: "Close" }).click();
    await detail.waitFor({ state: "detached" });
  });

  await step(`${who}: the profiles tab lists the profiles and the signature set`, async () => {
    await page.getByRole("tab", { name: /Profiles/ }).click();
    const profiles = page.getByTestId("ids-profiles");
    await profiles.waitFor();
    const detect = profiles.locator('tr[data-profile="shop-detect"]');
    assert.match(await detect.textContent(), /detect/);
    assert.match(await detect.textContent(), /shop/);
    assert.match(await detect.textContent(), /from corpus/);
    const prevent = profiles.locator('tr[data-profile="web-prevent"]');
    const t = await prevent.textContent();
    assert.match(t, /prevent/);
    assert.match(t, /shop-web/);
    assert.match(t, /severity ≤ 1/);
    assert.match(t, /classtype web-application-attack, attempted-admin/);
    const set = page.getByTestId("ids-sets").locator('tr[data-set="corpus"]');
    const st = await set.textContent();
    assert.match(st, /v1/);
    assert.match(st, new RegExp(`${setRules}`));
    await shot(page, "ids-profiles");
  });

  await step(`${who}: the workload tab shows db1's mode, signatures and why web signatures were left out`, async () => {
    await page.getByRole("tab", { name: "Per workload" }).click();
    await page.getByLabel("Inspect workload").selectOption("db1");
    await page.waitForURL(/\/ids\/workloads\/db1$/);
    const w = page.getByTestId("workload-ids");
    await w.waitFor();
    assert.equal((await w.getByTestId("workload-mode").textContent()).trim(), "detect");
    assert.equal((await w.getByTestId("workload-profiles").textContent()).trim(), "shop-detect");
    assert.equal((await w.getByTestId("signature-count").textContent()).trim(), db1Signatures.toLocaleString("en-US"));
    const left = w.getByTestId("workload-leftout").locator(`tr[data-sid="${leftSid}"]`).first();
    assert.equal((await left.locator(".why").textContent()).trim(), leftReason);
    assert.match(leftReason, /web/, "db1 is left out of web signatures");
    await shot(page, "ids-workload");
    // web1 gets both profiles, prevent wins, and some signatures block.
    await page.getByLabel("Inspect workload").selectOption("web1");
    await w.getByTestId("workload-mode").getByText("prevent").waitFor();
    assert.equal((await w.getByTestId("workload-profiles").textContent()).trim(), "shop-detect, web-prevent");
    await w.getByTestId("workload-signatures").locator('tr[data-sid="1000005"]').getByText(/blocks/).waitFor();
  });

  await step(`${who}: a deep link opens the workload view; nothing on the page edits`, async () => {
    await page.goto(url + "/ids/workloads/db1");
    await page.getByTestId("workload-ids").waitFor();
    assert.equal(await page.getByLabel("Inspect workload").inputValue(), "db1");
    assert.equal(await page.locator("main").getByRole("button", { name: /delete|apply|edit|save/i }).count(), 0);
  });
}

const browser = await launch();
let exitCode = 1;
try {
  const admin = await newSession(browser);
  await step("log in as admin", () => login(admin.page, url, adminToken));
  await checkPage(admin, "admin", all, lastHour);
  await step("admin: alerts that arrive while the page is open show up within 10 s", async () => {
    const { page } = admin;
    await page.getByRole("tab", { name: "Alerts" }).click();
    assert.equal(await page.getByLabel("Refresh every 10 s").isChecked(), true);
    await alertRows(page, all);
    writeFileSync(lateSignal, "");
    const rows = await alertRows(page, all + late, 20_000);
    assert.ok(rows.slice(0, late).every((r) => /ssh|tcp/i.test(r.text)), "the SSH alerts are the newest");
  });
  await step("no errors in the admin's browser console", async () => assert.deepEqual(admin.problems, []));

  const auditor = await newSession(browser);
  await step("log in as auditor", () => login(auditor.page, url, auditorToken));
  await checkPage(auditor, "auditor", all + late, lastHour + late);
  await step("no errors in the auditor's browser console", async () => assert.deepEqual(auditor.problems, []));
  exitCode = 0;
} catch {
  exitCode = 1;
} finally {
  await browser.close();
  console.log(`${tally.passed} passed, ${tally.failed} failed`);
}
process.exit(exitCode);
