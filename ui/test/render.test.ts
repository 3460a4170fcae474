import { beforeEach, describe, expect, it } from 'vitest';
import { App } from '../src/app';
import { byTestId, makeStatus, RECORDS, standardTransport } from './fixtures';

let root: HTMLElement;

beforeEach(() => {
  document.body.innerHTML = '<div id="app"></div>';
  root = document.getElementById('app')!;
});

async function mounted(status = makeStatus()) {
  const t = standardTransport(status);
  const app = new App({ root, transport: t });
  await app.refresh();
  return { app, t };
}

describe('status rendering', () => {
  it('shows this node', async () => {
    await mounted();
    expect(byTestId(root, 'node-name').textContent).toBe('srv-a');
    expect(byTestId(root, 'node-roles').textContent).toContain('standalone');
    expect(byTestId(root, 'node-state').textContent).toBe('active');
    expect(byTestId(root, 'node-epoch').textContent).toBe('3');
    expect(byTestId(root, 'node-peer').textContent).toBe('https://127.0.0.2:7443');
    expect(byTestId(root, 'header-node').textContent).toBe('srv-a');
  });

  it('shows the server link and its state colour', async () => {
    const s = makeStatus({ link: { server: 'https://127.0.0.2:7443', state: 'standby', cached: 42, held: 0, held_by: [], error: null, cache_error: null, untrusted: [] } });
    await mounted(s);
    const state = byTestId(root, 'link-state');
    expect(state.textContent).toBe('standby');
    expect(state.classList.contains('tone-warn')).toBe(true);
    expect(byTestId(root, 'link-cached').textContent).toBe('42');
    expect(byTestId(root, 'link-server').textContent).toBe('https://127.0.0.2:7443');
  });

  it('says when there is no link', async () => {
    await mounted(makeStatus({ link: null }));
    expect(byTestId(root, 'link-none').textContent).toMatch(/no server link/i);
  });

  it('lists servers in order with their role', async () => {
    await mounted();
    expect(byTestId(root, 'server-url-0').textContent).toBe('https://127.0.0.1:7443');
    expect(byTestId(root, 'server-role-0').textContent).toBe('home');
    expect(byTestId(root, 'server-role-1').textContent).toBe('standby');
  });

  it('shows a pair whose secondary is active', async () => {
    await mounted();
    const active = byTestId(root, 'pair-active-db');
    expect(active.dataset.active).toBe('secondary');
    expect(active.dataset.member).toBe('db-2');
    expect(active.textContent).toContain('db-2');
    expect(active.textContent).toContain('secondary');
    expect(active.classList.contains('on-secondary')).toBe(true);
    expect(byTestId(root, 'pair-secondary-db').classList.contains('is-active')).toBe(true);
    expect(byTestId(root, 'pair-primary-db').classList.contains('is-active')).toBe(false);
    expect(byTestId(root, 'pair-epoch-db').textContent).toBe('4');

    const web = byTestId(root, 'pair-active-web');
    expect(web.dataset.active).toBe('primary');
    expect(web.textContent).toContain('web-1');
  });

  it('styles a degraded pair amber and shows why', async () => {
    await mounted();
    const row = byTestId(root, 'pair-row-db');
    expect(row.classList.contains('tone-warn')).toBe(true);
    expect(row.classList.contains('state-degraded')).toBe(true);
    expect(byTestId(root, 'pair-state-db').classList.contains('tone-warn')).toBe(true);
    expect(byTestId(root, 'pair-degraded-db').textContent).toBe('on_activate hook timed out');

    const ok = byTestId(root, 'pair-row-web');
    expect(ok.classList.contains('tone-ok')).toBe(true);
    expect(byTestId(root, 'pair-state-web').classList.contains('tone-ok')).toBe(true);
  });

  it('treats a normal pair carrying a degraded reason as degraded', async () => {
    const s = makeStatus();
    s.pairs[0].degraded = 'on_deactivate hook failed (exit 1)';
    await mounted(s);
    expect(byTestId(root, 'pair-row-web').classList.contains('tone-warn')).toBe(true);
    expect(byTestId(root, 'pair-state-web').textContent).toBe('degraded');
  });

  it('styles blackout red and shows no active member', async () => {
    const s = makeStatus();
    s.pairs[0] = { ...s.pairs[0], active: 'none', state: 'blackout' };
    await mounted(s);
    expect(byTestId(root, 'pair-row-web').classList.contains('tone-bad')).toBe(true);
    expect(byTestId(root, 'pair-active-web').dataset.active).toBe('none');
    expect(byTestId(root, 'overall-state').dataset.state).toBe('blackout');
  });

  it('lists agents with pending ones first and their actions', async () => {
    await mounted();
    const rows = [...root.querySelectorAll<HTMLElement>('[data-testid^="agent-row-"]')].map((r) => r.dataset.testid);
    expect(rows[0]).toBe('agent-row-new-box');
    expect(byTestId(root, 'agent-pending-new-box').textContent).toBe('yes');
    expect(byTestId(root, 'accept-new-box')).toBeTruthy();
    expect(byTestId(root, 'reject-new-box')).toBeTruthy();
    expect(root.querySelector('[data-testid="recall-new-box"]')).toBeNull();
    expect(root.querySelector('[data-testid="accept-web-1"]')).toBeNull();
    expect(byTestId(root, 'recall-web-1')).toBeTruthy();
    expect(byTestId(root, 'agent-state-db-1').classList.contains('tone-bad')).toBe(true);
    expect(byTestId(root, 'agent-server-web-1').textContent).toBe('https://127.0.0.1:7443');
  });

  it('shows the latest result of each check', async () => {
    await mounted();
    const http = byTestId(root, 'check-row-http-home');
    expect(http.dataset.result).toBe('down'); // the newer record (web-2) is down
    expect(byTestId(root, 'check-value-http-home').textContent).toBe('40');
    expect(byTestId(root, 'check-row-ssh').dataset.result).toBe('up');
  });

  it('AG-2: shows records held for home and records taken for another home', async () => {
    const s = makeStatus({
      link: {
        server: 'https://127.0.0.2:7443',
        state: 'standby',
        cached: 0,
        held: 1200,
        held_by: [{ server: 'https://127.0.0.2:7443', records: 1200 }],
        error: null,
        cache_error: null,
        untrusted: [],
      },
    });
    const t = standardTransport(s).on('GET /api/records', () => ({
      records: [{ ...RECORDS[2], taken_for: 'https://10.0.0.5:7400' }],
    }));
    const app = new App({ root, transport: t });
    await app.refresh();
    const held = byTestId(root, 'link-held').textContent ?? '';
    expect(held).toContain('1200');
    expect(held).toContain('1200 by https://127.0.0.2:7443');
    expect(byTestId(root, 'check-taken-for-ssh').textContent).toBe('taken for https://10.0.0.5:7400');
  });

  it('§4 disk full: an agent whose check results are not written says so and is degraded', async () => {
    const s = makeStatus();
    s.pairs = [s.pairs[0]];
    s.agents = s.agents.filter((a) => a.state !== 'disconnected');
    s.link = { ...s.link!, cache_error: 'check results not written since 2026-12-02T00:10:00Z: disk full' };
    await mounted(s);
    expect(byTestId(root, 'link-cache-error').textContent).toContain('disk full');
    expect(byTestId(root, 'overall-state').dataset.state).toBe('degraded');
  });

  it('shows the certificate', async () => {
    await mounted();
    expect(byTestId(root, 'cert-fingerprint').textContent).toBe('AA:BB:CC');
    expect(byTestId(root, 'cert-sans').textContent).toBe('127.0.0.1, srv-a');
    expect(byTestId(root, 'cert-not-after').textContent).toBe('2027-01-01T00:00:00Z');
  });

  it('escapes names', async () => {
    const s = makeStatus();
    s.agents[0].name = '<img src=x onerror=alert(1)>';
    await mounted(s);
    expect(root.querySelector('img')).toBeNull();
  });

  it('overall state: degraded with a degraded pair, stopped when unreachable', async () => {
    const { app, t } = await mounted();
    expect(byTestId(root, 'overall-state').dataset.state).toBe('degraded');
    t.on('GET /api/status', () => {
      throw new TypeError('Failed to fetch');
    });
    await app.refresh();
    expect(byTestId(root, 'overall-state').dataset.state).toBe('stopped');
    expect(byTestId(root, 'conn-error').hidden).toBe(false);
  });

  it('overall state: normal when everything is fine', async () => {
    const s = makeStatus();
    s.pairs = [s.pairs[0]];
    s.agents = s.agents.filter((a) => a.state !== 'disconnected');
    await mounted(s);
    expect(byTestId(root, 'overall-state').dataset.state).toBe('normal');
  });
});
