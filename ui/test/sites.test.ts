import { beforeEach, describe, expect, it } from 'vitest';
import { ApiError, type TauriInternals } from '../src/api';
import { App } from '../src/app';
import {
  SiteSwitcher,
  Sites,
  TargetedTransport,
  chooseTarget,
  reasonOf,
  revokedFor,
  siteRevoked,
  renderOptions,
  type SiteInfo,
  type Targets,
} from '../src/sites';
import { byTestId, makeStatus, settle } from './fixtures';

const s1: SiteInfo = { name: 'rack', label: 'office', servers: ['https://10.0.0.1:7400#aa', 'https://10.0.0.2:7400#bb'] };
const s2: SiteInfo = { name: 'shop', label: '', servers: ['https://10.1.0.1:7400#cc'] };

/** The window's commands, answered from a script, every call recorded. */
class FakeWindow implements TauriInternals {
  calls: { cmd: string; args?: Record<string, unknown> }[] = [];
  targets: Targets = { local: true, sites: [] };
  joinRefusal: unknown = null;
  nodes: Record<string, string> = { '': 'laptop', rack: 's1', shop: 'till' };
  refuse: Record<string, unknown> = {};

  async invoke(cmd: string, args?: Record<string, unknown>): Promise<any> {
    this.calls.push({ cmd, args });
    switch (cmd) {
      case 'targets':
        return structuredClone(this.targets);
      case 'site_join': {
        if (this.joinRefusal !== null) throw this.joinRefusal;
        this.targets.sites.push(s1);
        return s1;
      }
      case 'site_remove':
        this.targets.sites = this.targets.sites.filter((s) => s.name !== args?.site);
        return null;
      case 'admin': {
        const site = (args?.site as string | null) ?? '';
        const key = `${args?.method} ${args?.path}`;
        if (this.refuse[key]) throw this.refuse[key];
        if (key === 'GET /api/status') {
          const s = makeStatus();
          s.node.name = this.nodes[site];
          return s;
        }
        if (key.startsWith('GET /api/events')) return { events: [] };
        if (key.startsWith('GET /api/records')) return { records: [] };
        if (key.startsWith('GET /api/alerts')) return { alerts: [], channels: [] };
        if (key === 'GET /api/cert') return { fingerprint: 'f', not_after: '', sans: [] };
        return {};
      }
    }
    throw new Error(`unknown command ${cmd}`);
  }

  adminSites(): (string | null)[] {
    return this.calls.filter((c) => c.cmd === 'admin').map((c) => c.args?.site as string | null);
  }
}

describe('ui5 choosing the target', () => {
  it('ui5_keeps_the_current_target_while_it_is_offered', () => {
    expect(chooseTarget({ local: true, sites: [s1, s2] }, 'shop')).toBe('shop');
    expect(chooseTarget({ local: true, sites: [s1] }, null)).toBe(null);
  });

  it('ui5_falls_back_to_this_computer_then_the_first_site', () => {
    expect(chooseTarget({ local: true, sites: [s1] }, 'shop')).toBe(null);
    expect(chooseTarget({ local: false, sites: [s1, s2] }, null)).toBe('rack');
    expect(chooseTarget({ local: false, sites: [s2] }, undefined)).toBe('shop');
    expect(chooseTarget({ local: false, sites: [] }, 'rack')).toBe(undefined);
  });

  it('ui5_lists_this_computer_only_when_it_runs_a_node', () => {
    const both = renderOptions({ local: true, sites: [s1] }, 'rack');
    expect(both).toContain('<option value="">This computer</option>');
    expect(both).toContain('<option value="rack" selected>Site rack (office)</option>');
    const remote = renderOptions({ local: false, sites: [s2] }, 'shop');
    expect(remote).not.toContain('This computer');
    expect(remote).toContain('Site shop');
  });

  it('ui5_escapes_site_names_and_labels', () => {
    const html = renderOptions({ local: false, sites: [{ name: 'a"<b', label: '<i>', servers: [] }] }, 'a"<b');
    expect(html).not.toContain('<i>');
    expect(html).not.toContain('"<b');
  });
});

describe('ui5 the window routes admin requests to the chosen target', () => {
  it('ui5_sends_the_selected_site_with_each_request', async () => {
    const w = new FakeWindow();
    const t = new TargetedTransport(w);
    await t.call('GET', '/api/status');
    t.target = 'rack';
    await t.call('POST', '/api/pairs/web/force-failover', {});
    expect(w.calls.map((c) => c.args)).toEqual([
      { method: 'GET', path: '/api/status', body: null, site: null },
      { method: 'POST', path: '/api/pairs/web/force-failover', body: {}, site: 'rack' },
    ]);
  });

  it("ui5_a_refused_action_keeps_the_server's_status_and_reason", async () => {
    const w = new FakeWindow();
    const reason = 'PUT /api/role: needs the admin permission and this token has operate';
    w.refuse['PUT /api/role'] = { status: 403, error: reason };
    const t = new TargetedTransport(w);
    t.target = 'rack';
    const err = await t.call('PUT', '/api/role', { server: true }).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(403);
    expect(err.message).toBe(reason);
  });

  it('ui5_a_join_refusal_is_passed_on_word_for_word', async () => {
    const w = new FakeWindow();
    w.joinRefusal = 'server 127.0.0.1:7400 presented certificate 12ab…, not the invited 34cd…';
    await expect(new Sites(w).join('understudy://join/1?x')).rejects.toThrow(
      'server 127.0.0.1:7400 presented certificate 12ab…, not the invited 34cd…',
    );
    expect(reasonOf({ status: 0, error: 'cannot reach' })).toBe('cannot reach');
  });
});

describe('ui5 the switcher and the Connect dialog', () => {
  let root: HTMLElement;
  beforeEach(() => {
    document.body.innerHTML = '<div id="app"></div>';
    root = document.getElementById('app')!;
  });

  async function setUp(w: FakeWindow): Promise<{ app: App; sw: SiteSwitcher }> {
    const transport = new TargetedTransport(w);
    const app = new App({ root, transport, pollMs: 60_000, revoked: revokedFor(transport) });
    const sw = new SiteSwitcher(app.siteSwitchHost(), new Sites(w), transport, () => app.switched());
    await sw.refresh();
    await app.refresh();
    return { app, sw };
  }

  it('ui5_switching_shows_the_sites_node', async () => {
    const w = new FakeWindow();
    w.targets = { local: true, sites: [s1] };
    const { app, sw } = await setUp(w);
    expect(app.status?.node.name).toBe('laptop');
    const select = byTestId<HTMLSelectElement>(root, 'site-switcher');
    expect([...select.options].map((o) => o.textContent)).toEqual(['This computer', 'Site rack (office)']);
    expect(byTestId(root, 'remove-site').hidden).toBe(true);

    select.value = 'rack';
    select.dispatchEvent(new Event('change'));
    expect(sw.selected).toBe('rack');
    expect(app.status).toBe(null); // nothing of the previous node is kept
    await settle();
    await app.refresh();
    expect(app.status?.node.name).toBe('s1');
    expect(byTestId(root, 'header-node').textContent).toContain('s1');
    expect(w.adminSites().at(-1)).toBe('rack');
    expect(byTestId(root, 'remove-site').hidden).toBe(false);
  });

  it('ui5_connect_joins_and_switches_to_the_new_site', async () => {
    const w = new FakeWindow();
    w.targets = { local: false, sites: [] };
    const { sw } = await setUp(w);
    byTestId(root, 'connect-site').click();
    expect(byTestId(root, 'join-dialog').hidden).toBe(false);
    byTestId<HTMLTextAreaElement>(root, 'join-invitation').value = '  understudy://join/1?site=rack  ';
    await sw.join();
    expect(w.calls.find((c) => c.cmd === 'site_join')?.args).toEqual({ invitation: 'understudy://join/1?site=rack' });
    expect(byTestId(root, 'join-dialog').hidden).toBe(true);
    expect(sw.selected).toBe('rack');
  });

  it('ui5_a_refused_invitation_shows_the_reason_and_keeps_the_dialog', async () => {
    const w = new FakeWindow();
    w.joinRefusal = 'the invitation is for an agent (understudy init --join), not for the desktop app';
    const { sw } = await setUp(w);
    byTestId(root, 'connect-site').click();
    byTestId<HTMLTextAreaElement>(root, 'join-invitation').value = 'understudy://join/1?kind=agent';
    await sw.join();
    expect(byTestId(root, 'join-error').textContent).toBe(
      'the invitation is for an agent (understudy init --join), not for the desktop app',
    );
    expect(byTestId(root, 'join-dialog').hidden).toBe(false);
    expect(sw.targets.sites).toEqual([]);
  });

  it('ui5_a_revoked_site_says_so_instead_of_asking_for_an_admin_token', async () => {
    const w = new FakeWindow();
    w.targets = { local: true, sites: [s1] };
    const { app, sw } = await setUp(w);
    w.refuse['GET /api/status'] = { status: 401, error: 'the token was refused' };
    // This computer's node: a 401 asks for its admin token.
    await app.refresh();
    expect(app.loginShown).toBe(true);
    app.hideLogin();
    // A joined site: no token typed here can help, and nothing more is asked of it.
    sw.select('rack');
    await settle();
    await app.refresh();
    expect(app.loginShown).toBe(false);
    expect(app.revoked).toBe(true);
    const banner = byTestId(root, 'conn-error');
    expect(banner.hidden).toBe(false);
    expect(banner.textContent).toBe(siteRevoked('rack'));
    expect(banner.textContent).toContain('join it again with a new invitation');
    const asked = w.adminSites().length;
    await app.refresh();
    expect(w.adminSites().length).toBe(asked);
    // Back to this computer: polled again.
    delete w.refuse['GET /api/status'];
    sw.select(null);
    await settle();
    expect(app.revoked).toBe(false);
    await app.refresh();
    expect(app.status?.node.name).toBe('laptop');
  });

  it('ui5_removing_a_site_goes_back_to_this_computer', async () => {
    const w = new FakeWindow();
    w.targets = { local: true, sites: [s1] };
    const { app, sw } = await setUp(w);
    sw.select('rack');
    await sw.removeSelected();
    expect(w.calls.find((c) => c.cmd === 'site_remove')?.args).toEqual({ site: 'rack' });
    expect(sw.selected).toBe(null);
    await settle();
    await app.refresh();
    expect(app.status?.node.name).toBe('laptop');
  });
});
