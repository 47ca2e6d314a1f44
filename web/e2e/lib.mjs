// What the browser tests share: the environment, steps with timings,
// screenshots, a headless chromium and fresh sessions in it.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export function env(k, d) {
  const v = process.env[k] ?? d;
  if (v === undefined) {
    console.error(`e2e: set ${k}`);
    process.exit(2);
  }
  return v;
}

const shots = process.env.BULKHEAD_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });

export const tally = { passed: 0, failed: 0 };

export async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    tally.passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    tally.failed++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

export async function shot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

// launch starts chromium with a fresh profile of its own, removed on close.
export function launch() {
  return chromium.launch({
    executablePath: env("BULKHEAD_CHROMIUM", "/usr/bin/chromium"),
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
}

// newSession opens a browser context (its own sessionStorage) that trusts
// the manager's self-signed CA only for this test, and collects the
// page's errors.
export async function newSession(browser) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 } });
  ctx.setDefaultTimeout(10_000);
  const page = await ctx.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  return { ctx, page, problems };
}

export async function login(page, url, secret) {
  await page.goto(url + "/");
  await page.getByLabel("API token").fill(secret);
  await page.getByRole("button", { name: "Log in" }).click();
}
