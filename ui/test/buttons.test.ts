import { beforeEach, describe, expect, it } from 'vitest';
import { App } from '../src/app';
import { ApiError } from '../src/api';
import { actionOf } from '../src/rules';
import { byTestId, makeStatus, settle, standardTransport } from './fixtures';

let root: HTMLElement;
beforeEach(() => {
  document.body.innerHTML = '<div id="app"></div>';
  root = document.getElementById('app')!;
});

describe('pair buttons render the engine\'s answer', () => {
  // The four causes the engine's guard refuses an action with (PR-5), in its own words.
  const REFUSALS = [
    'this server is not the acting server of the site',
    'a handover of web is already under way',
    'web is already active on the primary web-1',
    'the secondary web-2 is not connected',
  ];

  it('allowed actions are enabled', () => {
    const s = makeStatus();
    expect(actionOf(s.pairs[0], 'force_failover')).toEqual({ allowed: true, reason: '' });
  });

  for (const reason of REFUSALS) {
    it(`a refused action is disabled with the engine's sentence: ${reason}`, async () => {
      const s = makeStatus();
      s.pairs[0].actions.force_failover = { allowed: false, reason };
      s.pairs[0].actions.revert = { allowed: false, reason };
      const app = new App({ root, transport: standardTransport().on('GET /api/status', () => s) });
      await app.refresh();
      for (const id of ['force-failover-web', 'revert-web']) {
        const button = byTestId<HTMLButtonElement>(root, id);
        expect(button.disabled).toBe(true);
        expect(button.title).toBe(reason);
      }
    });
  }

  it('renders the status onto the buttons', async () => {
    const app = new App({ root, transport: standardTransport() });
    await app.refresh();
    expect(byTestId<HTMLButtonElement>(root, 'force-failover-web').disabled).toBe(false);
    expect(byTestId<HTMLButtonElement>(root, 'revert-web').disabled).toBe(true);
    expect(byTestId<HTMLButtonElement>(root, 'force-failover-db').disabled).toBe(true);
    expect(byTestId<HTMLButtonElement>(root, 'revert-db').disabled).toBe(true);
    expect(byTestId(root, 'revert-db').title).toBe('the primary db-1 is not connected');
  });
});

describe('actions', () => {
  it('force failover posts to the pair and shows the message', async () => {
    const t = standardTransport().on('POST /api/pairs/web/force-failover', () => ({ ok: true, message: 'web moved to web-2' }));
    const app = new App({ root, transport: t });
    await app.refresh();
    byTestId(root, 'force-failover-web').click();
    await settle();
    expect(t.posts()).toEqual([{ method: 'POST', path: '/api/pairs/web/force-failover', body: undefined }]);
    expect(byTestId(root, 'action-message').textContent).toBe('web moved to web-2');
    expect(byTestId(root, 'action-error').parentElement!.hidden).toBe(true);
  });

  it('shows a refusal plainly', async () => {
    const t = standardTransport().on('POST /api/pairs/web/force-failover', () => {
      throw new ApiError(409, 'secondary web-2 is not connected');
    });
    const app = new App({ root, transport: t });
    await app.refresh();
    byTestId(root, 'force-failover-web').click();
    await settle();
    const err = byTestId(root, 'action-error');
    expect(err.textContent).toContain('secondary web-2 is not connected');
    expect(err.parentElement!.hidden).toBe(false);
  });

  it('accept, reject and recall hit the agent endpoints', async () => {
    const ok = () => ({ ok: true, message: 'ok' });
    const t = standardTransport()
      .on('POST /api/agents/new-box/accept', ok)
      .on('POST /api/agents/new-box/reject', ok)
      .on('POST /api/agents/web-1/recall', ok);
    const app = new App({ root, transport: t });
    await app.refresh();
    byTestId(root, 'accept-new-box').click();
    await settle();
    byTestId(root, 'reject-new-box').click();
    await settle();
    byTestId(root, 'recall-web-1').click();
    await settle();
    expect(t.posts().map((c) => c.path)).toEqual([
      '/api/agents/new-box/accept',
      '/api/agents/new-box/reject',
      '/api/agents/web-1/recall',
    ]);
  });

  it('role change sends only what changed', async () => {
    const t = standardTransport().on('POST /api/role', () => ({ ok: true, message: 'roles updated' }));
    const app = new App({ root, transport: t });
    await app.refresh();
    const agent = byTestId<HTMLInputElement>(root, 'role-agent');
    expect(agent.checked).toBe(true);
    agent.checked = false;
    agent.dispatchEvent(new Event('change', { bubbles: true }));
    const fo = byTestId<HTMLSelectElement>(root, 'role-failover');
    fo.value = 'secondary';
    fo.dispatchEvent(new Event('change', { bubbles: true }));
    await app.refresh(); // a poll while editing does not undo the edit
    expect(byTestId<HTMLInputElement>(root, 'role-agent').checked).toBe(false);
    byTestId(root, 'role-apply').click();
    await settle();
    expect(t.posts()).toEqual([{ method: 'POST', path: '/api/role', body: { agent: false, failover: 'secondary' } }]);
    expect(byTestId(root, 'action-message').textContent).toBe('roles updated');
  });

  it('set to standby posts /api/ha/standby and is disabled with the engine\'s sentence', async () => {
    const t = standardTransport().on('POST /api/ha/standby', () => ({ ok: true, message: 'now standby' }));
    const app = new App({ root, transport: t });
    await app.refresh();
    byTestId(root, 'ha-standby').click();
    await settle();
    expect(t.posts().map((c) => c.path)).toEqual(['/api/ha/standby']);

    // HS-5: each cause the engine's guard refuses `ha standby` with, in its own words.
    for (const reason of [
      'failover mode is off: there is no peer to hand the role to',
      'this server is already STANDBY',
      'the peer is not answering as STANDBY: stepping down would leave no acting server',
      'this node has no server role',
    ]) {
      const s = makeStatus();
      s.node.failover.standby = { allowed: false, reason };
      t.on('GET /api/status', () => s);
      await app.refresh();
      const btn = byTestId<HTMLButtonElement>(root, 'ha-standby');
      expect(btn.disabled).toBe(true);
      expect(btn.title).toBe(reason);
      expect(byTestId(root, 'ha-standby-hint').textContent).toBe(reason);
    }
  });

  it('generate certificate posts the names and shows the new fingerprint', async () => {
    const t = standardTransport().on('POST /api/cert/generate', (c) => ({
      fingerprint: '11:22:33',
      sans: ['127.0.0.1', ...(c.body as { dns: string[] }).dns],
      not_after: '2028-01-01T00:00:00Z',
    }));
    const app = new App({ root, transport: t });
    await app.refresh();
    byTestId<HTMLInputElement>(root, 'cert-dns').value = 'mon.example, mon2.example';
    byTestId(root, 'generate-cert').click();
    await settle();
    expect(t.posts()[0]).toEqual({
      method: 'POST',
      path: '/api/cert/generate',
      body: { ips: [], dns: ['mon.example', 'mon2.example'] },
    });
    expect(byTestId(root, 'cert-fingerprint').textContent).toBe('11:22:33');
    expect(byTestId(root, 'action-message').textContent).toContain('11:22:33');
  });
});
