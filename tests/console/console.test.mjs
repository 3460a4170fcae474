// The console served by the understudy daemon, in Debian's headless Chromium, against a real site
// started by run.sh: opens https://IP:PORT/#token=…, checks the pair is shown on its primary,
// clicks "Force failover", waits until the page shows the secondary active and the server agrees
// (`understudy status --json`), then takes a screenshot. PR-5: for each of the four causes the
// engine's guard refuses an operator action (not the acting server, a handover under way, the
// target already active, the target not connected) the button is disabled and its title is
// exactly the sentence `status --json` carries for it and the CLI refuses with.
//
// Environment (run.sh sets it): CONSOLE_URL (with #token=…), CLI (understudy binary), DATA_DIR
// (the server's data directory), PAIR (default web; the agents are a1 and a2), STANDBY_URL and
// STANDBY_DATA_DIR (its hot-standby peer, STANDBY), A1_PID and A2_PID (the agents' processes),
// SCREENSHOT (a .png path, optional), CHROMIUM (default /usr/bin/chromium).
// MX-3: a tcp check "ping" of the pair on a port this script opens, closes (the check goes down)
// and opens again; after the forced failover the Charts panel draws records/s, the servers' role
// strip, the pair's timeline (both members, the FORCED_FAILOVER listed) and the check's chart
// with its down period, in uPlot canvases; screenshots SHOTS_DIR/charts.png (wide) and
// charts-narrow.png (the window's smallest width).
// AL-4, AL-5: the Alerts page adds two webhook channels to receivers this script starts on
// loopback (one answers 200, one 503), sends a test message, and after the forced failover shows
// its alert delivered to one channel and failing on the other; a secret is only ever "set".
// Then the failing channel is edited from the page (Edit: the form prefilled, its secret left
// empty, so kept) to point at a third receiver: the queued alert reaches it, signed with the
// kept secret, and the page shows it sent.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { chromium } from 'playwright-core';

const { CONSOLE_URL, CLI, DATA_DIR, STANDBY_URL, STANDBY_DATA_DIR, A1_PID, A2_PID } = process.env;
const PAIR = process.env.PAIR || 'web';
const SCREENSHOT = process.env.SCREENSHOT;
const SHOTS_DIR = process.env.SHOTS_DIR;
if (!CONSOLE_URL || !CLI || !DATA_DIR || !STANDBY_URL || !STANDBY_DATA_DIR || !A1_PID || !A2_PID) {
  console.error('set CONSOLE_URL, CLI, DATA_DIR, STANDBY_URL, STANDBY_DATA_DIR, A1_PID and A2_PID (tests/console/run.sh does)');
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

function pairOf(name, dataDir = DATA_DIR) {
  const status = JSON.parse(execFileSync(CLI, ['status', '--json', '--data-dir', dataDir], { encoding: 'utf8' }));
  return status.pairs.find((p) => p.name === name) || {};
}

function pairActive(name) {
  return pairOf(name).active;
}

// PR-5: `page`'s button for `action` (force-failover | revert) becomes disabled with exactly
// `sentence` as its title; `status --json` on that server says the same for the action, and
// `understudy pair ACTION PAIR` there exits 1 with that sentence on stderr.
async function refusedEverywhere(page, dataDir, action, sentence) {
  const key = action.replace('-', '_');
  const button = page.locator(`[data-testid="${action}-${PAIR}"]`);
  await until(`${action} disabled with its reason`, async () =>
    (await button.isDisabled()) && (await button.getAttribute('title')) === sentence, 20000)
    .catch(async (e) => {
      throw new Error(`${e.message}: title "${await button.getAttribute('title')}"`);
    });
  const shown = pairOf(PAIR, dataDir).actions?.[key];
  if (!shown || shown.allowed !== false || shown.reason !== sentence)
    throw new Error(`status --json says ${JSON.stringify(shown)}`);
  const cli = spawnSync(CLI, ['pair', action, PAIR, '--data-dir', dataDir], { encoding: 'utf8' });
  if (cli.status !== 1 || cli.stderr !== `error: ${sentence}\n`)
    throw new Error(`the CLI exited ${cli.status} with ${JSON.stringify(cli.stderr)}`);
  console.log(`[console]   ${action}: disabled, title "${sentence}"`);
}

// A webhook receiver on loopback answering `status` to every POST; what it received is kept.
function receiver(status) {
  const got = [];
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d)).on('end', () => {
        got.push({ headers: req.headers, body });
        res.writeHead(status);
        res.end();
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve({ srv, got, url: `http://127.0.0.1:${srv.address().port}/hook` }));
  });
}

// A TCP port that accepts while open; close() refuses connections, open() accepts again.
function tcpTarget() {
  let srv = null;
  const t = {
    port: 0,
    open: () => new Promise((resolve) => {
      srv = net.createServer((c) => c.destroy());
      srv.listen(t.port, '127.0.0.1', () => { t.port = srv.address().port; resolve(); });
    }),
    close: () => new Promise((resolve) => { srv.close(() => resolve()); }),
  };
  return t;
}

function eventsOf(code) {
  const out = execFileSync(CLI, ['events', '--json', '--data-dir', DATA_DIR], { encoding: 'utf8' });
  const parsed = JSON.parse(out);
  return (parsed.events ?? parsed).filter((e) => e.code === code);
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
const target = tcpTarget();
await target.open();
const hook = await receiver(200);
const down = await receiver(503);
const fixed = await receiver(200);
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
  await step('PR-5 the target already active: Revert disabled with the engine\'s sentence', async () => {
    await refusedEverywhere(page, DATA_DIR, 'revert', `${PAIR} is already active on the primary a1`);
  });
  await step('AL-4 the Alerts page adds channels; a secret is shown only as "set"', async () => {
    for (const [name, url, codes] of [['hook', hook.url, ''], ['down', down.url, 'FORCED_FAILOVER']]) {
      await page.fill('[data-testid="channel-name"]', name);
      await page.selectOption('[data-testid="channel-kind"]', 'webhook');
      await page.fill('[data-testid="channel-url"]', url);
      await page.fill('[data-testid="channel-secret"]', 's3cret-of-the-console');
      await page.fill('[data-testid="channel-codes"]', codes);
      await page.click('[data-testid="channel-add"]');
      await page.locator(`[data-testid="channel-row-${name}"]`).waitFor({ timeout: 10000 });
    }
    const secret = await page.locator('[data-testid="channel-secret-hook"]').textContent();
    if (secret !== 'secret set') throw new Error(`the secret column says ${secret}`);
    if ((await page.content()).includes('s3cret-of-the-console')) throw new Error('the secret is in the page');
  });
  await step('AL-4 Send test reaches the receiver, signed', async () => {
    await page.click('[data-testid="channel-test-hook"]');
    await until('the test message received', () => hook.got.some((m) => m.body.includes('"TEST"')), 10000);
    const m = hook.got.find((x) => x.body.includes('"TEST"'));
    if (!/^sha256=[0-9a-f]{64}$/.test(m.headers['x-understudy-signature'] ?? ''))
      throw new Error(`signature header ${m.headers['x-understudy-signature']}`);
    // The receiver has the message before the page has the API's answer: wait for the page.
    const flashEl = page.locator('[data-testid="action-message"]');
    await until('the page reports the test', async () => ((await flashEl.textContent()) ?? '') !== '', 10000).catch(() => {});
    const flash = await flashEl.textContent();
    if (flash !== 'test message sent to alert channel hook') throw new Error(`the page says ${flash}`);
  });
  await step('MX-3 a check of the pair goes down and up again', async () => {
    execFileSync(CLI, ['check', 'add', 'ping', '--kind', 'tcp', '--target', `127.0.0.1:${target.port}`,
      '--every', '300ms', '--pair', PAIR, '--fail-after', '2', '--ok-after', '1', '--data-dir', DATA_DIR]);
    await new Promise((r) => setTimeout(r, 2000));
    await target.close();
    await until('CHECK_DOWN', () => eventsOf('CHECK_DOWN').length > 0, 15000);
    await new Promise((r) => setTimeout(r, 1000));
    await target.open();
    await until('CHECK_UP', () => eventsOf('CHECK_UP').length > 0, 15000);
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
  await step('AL-5 the Alerts page shows FORCED_FAILOVER sent to hook and failing on down', async () => {
    const row = page.locator('[data-testid="alerts-table"] tr[data-code="FORCED_FAILOVER"]').first();
    await row.waitFor({ timeout: 15000 });
    const sent = row.locator('[data-testid$="-hook"]');
    const failing = row.locator('[data-testid$="-down"]');
    await until('hook sent and down failing', async () =>
      (await sent.textContent()) === 'hook sent' && (await failing.textContent()) === 'down failing', 15000)
      .catch(async (e) => {
        throw new Error(`${e.message}: "${await sent.textContent()}", "${await failing.textContent()}"`);
      });
    if (!(await failing.getAttribute('class')).includes('tone-warn')) throw new Error('the failing delivery is not marked');
    if (!(await failing.getAttribute('title')).includes('503')) throw new Error(`title ${await failing.getAttribute('title')}`);
    if (!hook.got.some((m) => m.body.includes('"FORCED_FAILOVER"'))) throw new Error('hook did not receive it');
    const summary = await page.locator('[data-testid="alerts-failing"]').textContent();
    if (summary === '0 failing') throw new Error('the summary counts no failing delivery');
  });
  const drawn = async (id) => page.evaluate((sel) => {
    const c = document.querySelector(`${sel} canvas`);
    return !!c && c.width > 0 && c.height > 0 && c.getBoundingClientRect().width > 0;
  }, `[data-testid="chart-${id}"]`);
  await step('MX-3 the Charts panel draws records/s, the role strip, the pair and the check (uPlot canvases)', async () => {
    // The last 5 minutes: this site's whole life.
    await page.selectOption('[data-testid="chart-window"]', '5m');
    for (const id of ['records', 'roles', `pair-${PAIR}`, 'check-ping']) {
      await until(`chart-${id} drawn`, () => drawn(id), 20000);
    }
    const legend = await page.locator('[data-testid="charts-panel"] .u-legend').allTextContents();
    const text = legend.join(' ');
    for (const want of ['records/s', 'srv ACTIVE', 'a1 (primary)', 'a2 (secondary)', 'mean', 'min', 'max'])
      if (!text.includes(want)) throw new Error(`legend lacks ${want}: ${text}`);
  });
  await step('MX-3 the check chart has points and its down period', async () => {
    const box = page.locator('[data-testid="chart-check-ping"]');
    await until('points and a down period', async () =>
      Number(await box.getAttribute('data-points')) > 0 && Number(await box.getAttribute('data-down')) >= 1, 20000)
      .catch(async (e) => {
        throw new Error(`${e.message}: points ${await box.getAttribute('data-points')}, down ${await box.getAttribute('data-down')}`);
      });
  });
  await step(`MX-3 the timeline of ${PAIR} shows both members and lists the FORCED_FAILOVER`, async () => {
    const box = page.locator(`[data-testid="chart-pair-${PAIR}"]`);
    await until('a1 and a2 on the timeline', async () => (await box.getAttribute('data-members')) === 'a1 a2', 20000)
      .catch(async (e) => { throw new Error(`${e.message}: ${await box.getAttribute('data-members')}`); });
    const item = page.locator(`[data-testid="handovers-${PAIR}"] [data-code="FORCED_FAILOVER"]`).first();
    await item.waitFor({ timeout: 10000 });
    const text = await item.textContent();
    if (!text.includes('operator forced failover to the secondary a2')) throw new Error(`the handover says ${text}`);
  });
  if (SHOTS_DIR) {
    await step('MX-3 screenshots of the charts, wide and in the window\'s narrowest size', async () => {
      const panel = page.locator('[data-testid="charts-panel"]');
      await panel.scrollIntoViewIfNeeded();
      await panel.screenshot({ path: `${SHOTS_DIR}/charts.png` });
      await page.setViewportSize({ width: 640, height: 900 });
      await until('redrawn narrow', () => page.evaluate(() => {
        const c = document.querySelector('[data-testid="chart-records"] canvas');
        return !!c && c.getBoundingClientRect().width <= 640;
      }), 15000);
      await panel.scrollIntoViewIfNeeded();
      await panel.screenshot({ path: `${SHOTS_DIR}/charts-narrow.png` });
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.evaluate(() => window.scrollTo(0, 0));
    });
  }
  if (SCREENSHOT) {
    await step(`screenshot ${SCREENSHOT}`, async () => {
      await page.screenshot({ path: SCREENSHOT, fullPage: false });
    });
  }
  await step('AL-4 Edit: the failing channel pointed at a working receiver keeps its secret and its queued alert', async () => {
    await page.click('[data-testid="channel-edit-down"]');
    const url = page.locator('[data-testid="channel-url"]');
    if ((await url.inputValue()) !== down.url) throw new Error(`the form shows ${await url.inputValue()}`);
    const secret = page.locator('[data-testid="channel-secret"]');
    if ((await secret.inputValue()) !== '' || (await secret.getAttribute('placeholder')) !== 'set: empty keeps it')
      throw new Error(`the secret field holds "${await secret.inputValue()}" (${await secret.getAttribute('placeholder')})`);
    if ((await page.locator('[data-testid="channel-codes"]').inputValue()) !== 'FORCED_FAILOVER')
      throw new Error('the filter is not prefilled');
    await url.fill(fixed.url);
    await page.click('[data-testid="channel-add"]');
    const flashEl = page.locator('[data-testid="action-message"]');
    await until('the page reports the edit', async () => ((await flashEl.textContent()) ?? '').startsWith('alert channel down changed'), 10000)
      .catch(async (e) => { throw new Error(`${e.message}: ${await flashEl.textContent()} / ${await page.locator('[data-testid="action-error"]').textContent()}`); });
    await until('the row shows the new URL', async () =>
      ((await page.locator('[data-testid="channel-row-down"]').textContent()) ?? '').includes(fixed.url), 10000);
    await until('the queued FORCED_FAILOVER at the new receiver', () => fixed.got.some((m) => m.body.includes('"FORCED_FAILOVER"')), 20000);
    const m = fixed.got.find((x) => x.body.includes('"FORCED_FAILOVER"'));
    const want = `sha256=${createHmac('sha256', 's3cret-of-the-console').update(m.body).digest('hex')}`;
    if (m.headers['x-understudy-signature'] !== want) throw new Error(`signed ${m.headers['x-understudy-signature']}, not with the kept secret`);
    const row = page.locator('[data-testid="alerts-table"] tr[data-code="FORCED_FAILOVER"]').first();
    await until('down sent on the page', async () => (await row.locator('[data-testid$="-down"]').textContent()) === 'down sent', 15000);
    const listed = JSON.parse(execFileSync(CLI, ['alert', 'channel', 'list', '--json', '--data-dir', DATA_DIR], { encoding: 'utf8' }));
    const ch = listed.channels.find((c) => c.name === 'down');
    if (ch.url !== fixed.url || ch.secret !== 'set') throw new Error(`alert channel list says ${JSON.stringify(ch)}`);
  });
  await step('PR-5 a handover under way: both buttons disabled with the engine\'s sentence', async () => {
    // a2 holds the duty and is frozen: its lease runs on (failover_after 30s), so it cannot
    // confirm it stood down and the revert stays under way.
    process.kill(Number(A2_PID), 'SIGSTOP');
    try {
      execFileSync(CLI, ['pair', 'revert', PAIR, '--data-dir', DATA_DIR], { encoding: 'utf8' });
      const sentence = `a handover of ${PAIR} is already under way`;
      await refusedEverywhere(page, DATA_DIR, 'revert', sentence);
      await refusedEverywhere(page, DATA_DIR, 'force-failover', sentence);
    } finally {
      process.kill(Number(A2_PID), 'SIGCONT');
    }
    await until('the revert completes', () => pairActive(PAIR) === 'primary', 20000);
  });
  await step('PR-5 the target not connected: Force failover disabled with the engine\'s sentence', async () => {
    process.kill(Number(A2_PID), 'SIGKILL');
    await refusedEverywhere(page, DATA_DIR, 'force-failover', 'the secondary a2 is not connected');
  });
  await step('PR-5 not the acting server: the STANDBY\'s buttons disabled with the engine\'s sentence', async () => {
    const standby = await context.newPage();
    await standby.goto(STANDBY_URL);
    await standby.locator(`[data-testid="pair-active-${PAIR}"]`).waitFor({ timeout: 20000 });
    const sentence = 'this server is not the acting server of the site';
    await refusedEverywhere(standby, STANDBY_DATA_DIR, 'force-failover', sentence);
    await refusedEverywhere(standby, STANDBY_DATA_DIR, 'revert', sentence);
  });
} finally {
  await browser.close();
  hook.srv.close();
  await target.close().catch(() => {});
  down.srv.close();
  fixed.srv.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
