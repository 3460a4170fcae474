// The console served by the understudy daemon, in Debian's headless Chromium, against a real site
// started by run.sh: opens https://IP:PORT/#token=…, checks the pair is shown on its primary,
// clicks "Force failover", waits until the page shows the secondary active and the server agrees
// (`understudy status --json`), then takes a screenshot.
//
// Environment (run.sh sets it): CONSOLE_URL (with #token=…), CLI (understudy binary), DATA_DIR
// (the server's data directory), PAIR (default web), SCREENSHOT (a .png path, optional),
// CHROMIUM (default /usr/bin/chromium).
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';

const { CONSOLE_URL, CLI, DATA_DIR } = process.env;
const PAIR = process.env.PAIR || 'web';
const SCREENSHOT = process.env.SCREENSHOT;
if (!CONSOLE_URL || !CLI || !DATA_DIR) {
  console.error('set CONSOLE_URL, CLI and DATA_DIR (tests/console/run.sh does)');
  process.exit(2);
}

let passed = 0;
let failed = 0;
async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`[console] PASS ${name}`);
  } catch (e) {
    failed++;
    console.log(`[console] FAIL ${name}: ${e.message.split('\n')[0]}`);
  }
}

function pairActive(name) {
  const status = JSON.parse(execFileSync(CLI, ['status', '--json', '--data-dir', DATA_DIR], { encoding: 'utf8' }));
  return (status.pairs.find((p) => p.name === name) || {}).active;
}

async function until(what, cond, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[console] page error: ${e.message}`));
  const active = page.locator(`[data-testid="pair-active-${PAIR}"]`);
  const force = page.locator(`[data-testid="force-failover-${PAIR}"]`);

  await step('console loads with the token from the address (browser transport)', async () => {
    await page.goto(CONSOLE_URL);
    await page.locator('[data-testid="console"]').waitFor({ timeout: 15000 });
    const kind = await page.locator('[data-testid="transport-kind"]').textContent({ timeout: 5000 });
    if (!/browser/.test(kind)) throw new Error(`transport-kind is ${kind}`);
    if (page.url().includes('token=')) throw new Error('the token stays in the address bar');
  });
  await step(`pair ${PAIR} shown on its primary`, async () => {
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.active === 'primary',
      `[data-testid="pair-active-${PAIR}"]`, { timeout: 20000 });
  });
  await step('Force failover enabled and clicked', async () => {
    await until('Force failover enabled', () => force.isEnabled(), 20000);
    await force.click();
  });
  await step(`the page shows ${PAIR} on its secondary`, async () => {
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.active === 'secondary',
      `[data-testid="pair-active-${PAIR}"]`, { timeout: 15000 });
    console.log(`[console]   pair-active-${PAIR}: ${(await active.textContent()).trim()}`);
  });
  await step(`understudy status --json: ${PAIR} active secondary`, async () => {
    await until('status says secondary', () => pairActive(PAIR) === 'secondary', 10000);
  });
  await step('the event timeline shows FORCED_FAILOVER', async () => {
    await page.locator('[data-testid="event-list"] [data-code="FORCED_FAILOVER"]').first().waitFor({ timeout: 10000 });
  });
  if (SCREENSHOT) {
    await step(`screenshot ${SCREENSHOT}`, async () => {
      await page.screenshot({ path: SCREENSHOT, fullPage: false });
    });
  }
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
