// The console: builds the page skeleton once, polls the node every second and
// re-renders each panel (only when its HTML changed, so buttons under the
// mouse are not replaced needlessly), and runs operator actions.

import { ApiError, UNREACHABLE, errorText, type TokenStore, type Transport } from './api';
import {
  esc,
  fmtTime,
  renderAgents,
  renderCert,
  renderChecks,
  renderEventFilterOptions,
  renderEvents,
  renderLink,
  renderNode,
  renderOverall,
  renderPairs,
  renderServers,
  renderAlerts,
  renderChannels,
} from './render';
import { Charts, WINDOWS } from './charts';
import { eventCodes, filterEvents, maxEventId, mergeEvents, overallState } from './rules';
import { EMPTY_FIELDS, channelRequest, fieldsOf, type ChannelFields } from './channels';
import type { AlertItem, CertInfo, Channel, EventItem, RecordItem, Status } from './types';

export interface AppOptions {
  root: HTMLElement;
  transport: Transport;
  tokens?: TokenStore;
  pollMs?: number;
  /**
   * Why a 401 cannot be answered with the admin-token form, or null when it can: the desktop
   * window showing a joined site (UI-5), whose token only a new invitation replaces.
   */
  revoked?: () => string | null;
}

const SKELETON = `
<div class="login" data-testid="login" hidden>
  <form class="login-box" data-testid="login-form" autocomplete="off">
    <h1>Understudy</h1>
    <p>Enter the admin token of this node. It is in the node's data directory,
       or open the console with <code>#token=…</code> in the address.</p>
    <input type="password" name="token" placeholder="admin token" data-testid="login-token" required />
    <button type="submit" class="btn primary" data-testid="login-submit">Sign in</button>
    <p class="login-error" data-testid="login-error" role="alert"></p>
  </form>
</div>
<div class="console" data-testid="console">
  <header class="topbar">
    <span class="brand">Understudy</span>
    <span class="h-node" data-testid="header-node"></span>
    <span class="h-overall"></span>
    <span class="spacer"></span>
    <span class="h-sites" data-testid="site-switch" hidden></span>
    <span class="small muted" data-testid="last-update"></span>
    <span class="small muted" data-testid="transport-kind"></span>
    <button type="button" class="btn small-btn" data-testid="logout" hidden>Sign out</button>
  </header>
  <div class="banner tone-bad" data-testid="conn-error" role="alert" hidden></div>
  <div class="flash tone-bad" role="alert" hidden><span data-testid="action-error"></span><button type="button" class="x" data-dismiss aria-label="dismiss">×</button></div>
  <div class="flash tone-ok" role="status" hidden><span data-testid="action-message"></span><button type="button" class="x" data-dismiss aria-label="dismiss">×</button></div>
  <main class="layout">
    <section class="panel" data-panel="node"><h2>This node</h2><div class="body" data-view="node"></div></section>
    <section class="panel" data-panel="link"><h2>Server link</h2><div class="body" data-view="link"></div></section>
    <section class="panel" data-panel="servers"><h2>Servers</h2><div class="body" data-view="servers"></div></section>
    <section class="panel wide" data-panel="pairs"><h2>Pairs</h2><div class="body" data-view="pairs"></div></section>
    <section class="panel wide" data-panel="agents"><h2>Agents</h2><div class="body" data-view="agents"></div></section>
    <section class="panel wide" data-panel="checks"><h2>Latest check results</h2><div class="body" data-view="checks"></div></section>
    <section class="panel wide" data-panel="charts" data-testid="charts-panel">
      <h2>Charts
        <span class="tools">
          <label class="small">window
            <select data-testid="chart-window">
              <option value="5m">5 min</option>
              <option value="15m">15 min</option>
              <option value="1h" selected>1 hour</option>
              <option value="6h">6 hours</option>
              <option value="24h">24 hours</option>
              <option value="7d">7 days</option>
            </select>
          </label>
        </span>
      </h2>
      <div class="body charts" data-view="charts"></div>
    </section>
    <section class="panel wide" data-panel="alerts" data-testid="alerts-panel">
      <h2>Alerts</h2>
      <div class="body">
        <div data-view="alerts"></div>
        <h3 class="sub">Channels</h3>
        <div data-view="channels"></div>
        <form class="cert-form channel-form" data-testid="channel-form" autocomplete="off">
          <label>name <input name="name" data-testid="channel-name" required /></label>
          <label>kind
            <select name="kind" data-testid="channel-kind">
              <option value="webhook">webhook</option>
              <option value="ntfy">ntfy</option>
              <option value="email">email</option>
              <option value="command">command</option>
              <option value="desktop">desktop</option>
            </select>
          </label>
          <label>URL <input name="url" data-testid="channel-url" placeholder="webhook, ntfy: https://…" /></label>
          <label>to <input name="to" data-testid="channel-to" placeholder="email: addresses, comma separated" /></label>
          <label>from <input name="from" data-testid="channel-from" placeholder="email: understudy@localhost" /></label>
          <label>SMTP <input name="smtp" data-testid="channel-smtp" placeholder="email: smtp://user:password@host:587" /></label>
          <label>secret <input type="password" name="secret" data-testid="channel-secret" placeholder="webhook: HMAC key" /></label>
          <label data-edit-only hidden><input type="checkbox" name="clear_secret" data-testid="channel-clear-secret" /> remove the secret</label>
          <label>token <input type="password" name="token" data-testid="channel-token" placeholder="ntfy: access token" /></label>
          <label data-edit-only hidden><input type="checkbox" name="clear_token" data-testid="channel-clear-token" /> remove the token</label>
          <label>argv <input name="argv" data-testid="channel-argv" placeholder="command: program and arguments, or a JSON array" /></label>
          <label>timeout <input name="timeout" data-testid="channel-timeout" placeholder="10s" /></label>
          <label>codes <input name="codes" data-testid="channel-codes" placeholder="all, or CHECK_DOWN,CHECK_UP" /></label>
          <label>min severity
            <select name="min_severity" data-testid="channel-min-severity">
              <option value="">any</option>
              <option value="info">info</option>
              <option value="warning">warning</option>
              <option value="critical">critical</option>
            </select>
          </label>
          <button type="submit" class="btn primary" data-testid="channel-add">Add channel</button>
          <button type="button" class="btn" data-testid="channel-edit-cancel" data-edit-only hidden>Cancel</button>
        </form>
        <p class="small muted">Channels are site configuration, changed on the acting server and replicated to the standby; the node checks every setting and says why it refuses one.</p>
      </div>
    </section>
    <section class="panel wide" data-panel="events">
      <h2>Events
        <span class="tools">
          <label class="small">code <select data-testid="event-filter"></select></label>
          <button type="button" class="btn small-btn" data-testid="export-events">Export</button>
        </span>
      </h2>
      <div class="body scroll" data-view="events"></div>
    </section>
    <section class="panel" data-panel="roles">
      <h2>Roles</h2>
      <div class="body">
        <form class="role-form" data-testid="role-form">
          <label><input type="checkbox" name="server" data-testid="role-server" /> server</label>
          <label><input type="checkbox" name="agent" data-testid="role-agent" /> agent</label>
          <label>failover
            <select name="failover" data-testid="role-failover">
              <option value="off">off</option>
              <option value="primary">primary</option>
              <option value="secondary">secondary</option>
            </select>
          </label>
          <button type="submit" class="btn primary" data-testid="role-apply">Apply</button>
          <button type="button" class="btn" data-testid="role-reset">Reset</button>
        </form>
        <p class="small muted">Changes are validated, saved and applied without a restart.</p>
        <div class="ha">
          <button type="button" class="btn" data-action="ha-standby" data-name="" data-testid="ha-standby">Set this server to standby</button>
          <p class="small muted" data-testid="ha-standby-hint"></p>
        </div>
      </div>
    </section>
    <section class="panel" data-panel="cert">
      <h2>Certificate</h2>
      <div class="body">
        <div data-view="cert"></div>
        <form class="cert-form" data-testid="cert-form">
          <label>IPs <input name="ips" placeholder="extra IPs, comma separated" data-testid="cert-ips" /></label>
          <label>DNS <input name="dns" placeholder="extra names, comma separated" data-testid="cert-dns" /></label>
          <button type="submit" class="btn primary" data-testid="generate-cert">Generate certificate</button>
        </form>
        <p class="small muted">Bound to this node's current IP addresses and host name. Agents stay connected through a rotation.</p>
      </div>
    </section>
  </main>
</div>`;

export class App {
  readonly root: HTMLElement;
  readonly transport: Transport;
  private readonly tokens: TokenStore | undefined;
  private readonly pollMs: number;
  private readonly revokedReason: (() => string | null) | undefined;
  /** The shown site refused its token: no more polls until the window switches target. */
  revoked = false;

  status: Status | null = null;
  reachable = false;
  events: EventItem[] = [];
  records: RecordItem[] = [];
  alerts: AlertItem[] = [];
  channels: Channel[] = [];
  cert: CertInfo | null = null;
  eventFilter = '';
  loginShown = false;
  /** The channel the form is editing (AL-4), or null: the form adds one. */
  editingChannel: string | null = null;

  private roleDirty = false;
  private certLoading = false;
  private statusCertFp: string | null = null;
  private lastRendered = new WeakMap<Element, string>();
  /** MX-3: the pictures, refreshed every few seconds (not at every poll). */
  readonly charts: Charts;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  private again = false;
  private stopped = true;

  constructor(opts: AppOptions) {
    this.root = opts.root;
    this.transport = opts.transport;
    this.tokens = opts.tokens;
    this.pollMs = opts.pollMs ?? 1000;
    this.revokedReason = opts.revoked;
    this.root.innerHTML = SKELETON;
    this.charts = new Charts(this.view('charts'), this.transport);
    this.q('transport-kind').textContent = this.transport.kind === 'tauri' ? 'desktop' : 'browser';
    this.q('logout').hidden = this.transport.kind !== 'http';
    this.wire();
    this.renderAll();
  }

  // ------------------------------------------------------------ dom ------

  /** Element by data-testid (throws when the skeleton lacks it). */
  q<T extends HTMLElement = HTMLElement>(testid: string): T {
    const el = this.root.querySelector<T>(`[data-testid="${testid}"]`);
    if (!el) throw new Error(`missing element ${testid}`);
    return el;
  }

  private view(name: string): HTMLElement {
    return this.root.querySelector<HTMLElement>(`[data-view="${name}"]`)!;
  }

  /** Replace the element's content only when the HTML differs from last time. */
  private setHtml(el: Element, html: string): void {
    if (this.lastRendered.get(el) === html) return;
    this.lastRendered.set(el, html);
    el.innerHTML = html;
  }

  private wire(): void {
    this.root.addEventListener('click', (ev) => {
      const target = ev.target as Element | null;
      if (!target) return;
      const dismiss = target.closest('[data-dismiss]');
      if (dismiss) {
        (dismiss.parentElement as HTMLElement).hidden = true;
        return;
      }
      const btn = target.closest<HTMLButtonElement>('button[data-action]');
      if (btn && !btn.disabled) void this.onAction(btn);
    });

    this.q<HTMLFormElement>('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = this.q<HTMLInputElement>('login-token');
      const token = input.value.trim();
      if (!token) return;
      this.tokens?.set(token);
      input.value = '';
      this.hideLogin();
      this.kick();
    });

    this.q('logout').addEventListener('click', () => {
      this.tokens?.clear();
      this.showLogin('Signed out.');
    });

    this.q<HTMLSelectElement>('event-filter').addEventListener('change', (ev) => {
      this.setEventFilter((ev.target as HTMLSelectElement).value);
    });
    this.q('export-events').addEventListener('click', () => this.exportEvents());
    this.q<HTMLSelectElement>('chart-window').addEventListener('change', (ev) => {
      const ms = WINDOWS[(ev.target as HTMLSelectElement).value];
      if (ms) this.charts.setWindow(ms);
      this.refreshCharts(true);
    });

    const roleForm = this.q<HTMLFormElement>('role-form');
    roleForm.addEventListener('change', () => {
      this.roleDirty = true;
    });
    roleForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.applyRoles();
    });
    this.q('role-reset').addEventListener('click', () => {
      this.roleDirty = false;
      this.syncRoleForm(true);
    });

    this.q<HTMLFormElement>('channel-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.saveChannel();
    });
    this.q('channel-edit-cancel').addEventListener('click', () => this.editChannel(null));

    this.q<HTMLFormElement>('cert-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.generateCert();
    });
  }

  /** Where the desktop window's site switcher goes (UI-5, sites.ts); shown by it. */
  siteSwitchHost(): HTMLElement {
    const el = this.q('site-switch');
    el.hidden = false;
    return el;
  }

  /**
   * The transport now reaches another node (UI-5: the window switched site): forget everything
   * read from the previous one and read the new one now.
   */
  switched(): void {
    this.status = null;
    this.reachable = false;
    this.events = [];
    this.records = [];
    this.alerts = [];
    this.channels = [];
    this.cert = null;
    this.statusCertFp = null;
    this.roleDirty = false;
    this.editingChannel = null;
    this.revoked = false;
    this.q('conn-error').hidden = true;
    this.renderAll();
    this.refreshCharts(true);
    this.kick();
  }

  // --------------------------------------------------------- polling -----

  start(): void {
    this.stopped = false;
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Poll now (and then every pollMs). Never runs two polls at once. */
  kick(): void {
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try {
      await this.refresh();
    } finally {
      this.running = false;
    }
    if (this.again) {
      this.again = false;
      return this.tick();
    }
    if (!this.stopped && !this.loginShown && !this.revoked) {
      this.timer = setTimeout(() => void this.tick(), this.pollMs);
    }
  }

  /** One poll: status, then events and check records; then render. */
  async refresh(): Promise<void> {
    if (this.loginShown || this.revoked) return;
    let status: Status;
    try {
      status = (await this.transport.call('GET', '/api/status')) as Status;
    } catch (e) {
      this.onPollError(e);
      return;
    }
    this.status = status;
    this.reachable = true;
    this.q('conn-error').hidden = true;

    const [ev, rec, al] = await Promise.allSettled([
      this.fetchEvents(),
      this.fetchRecords(status),
      this.fetchAlerts(status),
    ]);
    for (const r of [ev, rec, al]) {
      if (r.status === 'rejected' && r.reason instanceof ApiError && r.reason.status === 401) {
        this.refused('The token was refused.');
        return;
      }
    }

    // The certificate is read once, then again whenever the status shows a new fingerprint.
    const fp = status.node.cert?.fingerprint ?? null;
    if (!this.certLoading && (!this.cert || fp !== this.statusCertFp)) {
      await this.loadCert();
    }
    this.statusCertFp = fp;
    this.q('last-update').textContent = `updated ${fmtTime(Date.now()).slice(11, 19)}`;
    this.renderAll();
    this.refreshCharts(false);
  }

  /** MX-3: the Charts panel, for a node with the server role (not awaited: the poll goes on). */
  private refreshCharts(force: boolean): void {
    const s = this.status;
    if (!s) return;
    void this.charts.refresh(
      s.node.roles.server,
      s.checks.map((c) => c.name),
      s.pairs.map((p) => p.name),
      force,
    );
  }

  private onPollError(e: unknown): void {
    if (e instanceof ApiError && e.status === 401) {
      this.refused(this.tokens?.get() ? 'The token was refused.' : '');
      return;
    }
    this.reachable = false;
    const banner = this.q('conn-error');
    banner.textContent =
      e instanceof ApiError && e.status !== UNREACHABLE
        ? `Status unavailable: ${e.message}`
        : `Cannot reach the node: ${errorText(e).replace(/^cannot reach the node: /, '')}`;
    banner.hidden = false;
    this.renderAll();
  }

  private async fetchEvents(): Promise<void> {
    const last = maxEventId(this.events);
    const path = last === null ? '/api/events?limit=200' : `/api/events?since=${last}&limit=500`;
    const res = (await this.transport.call('GET', path)) as { events?: EventItem[] } | null;
    this.events = mergeEvents(this.events, res?.events ?? []);
  }

  private async fetchRecords(status: Status): Promise<void> {
    if (!status.node.roles.server) {
      this.records = [];
      return;
    }
    const res = (await this.transport.call('GET', '/api/records?kind=check&limit=200')) as {
      records?: RecordItem[];
    } | null;
    this.records = res?.records ?? [];
  }

  /** AL-1, AL-4, AL-5: the outbox's latest alerts and the site's channels (server role). */
  private async fetchAlerts(status: Status): Promise<void> {
    if (!status.node.roles.server) {
      this.alerts = [];
      this.channels = [];
      return;
    }
    const [alerts, channels] = await Promise.all([
      this.transport.call('GET', '/api/alerts?limit=50') as Promise<{ alerts?: AlertItem[] } | null>,
      this.transport.call('GET', '/api/alerts/channels') as Promise<{ channels?: Channel[] } | null>,
    ]);
    this.alerts = alerts?.alerts ?? [];
    this.channels = channels?.channels ?? [];
  }

  private async loadCert(): Promise<void> {
    this.certLoading = true;
    try {
      this.cert = (await this.transport.call('GET', '/api/cert')) as CertInfo;
    } catch {
      /* the fingerprint from the status is still shown */
    } finally {
      this.certLoading = false;
    }
  }

  // ----------------------------------------------------------- login -----

  /**
   * A 401: the admin-token form (the browser console, this computer's node), or, for a joined
   * site in the desktop window, why no token typed here can help (UI-5: access revoked), shown
   * in the banner with nothing more asked of that site.
   */
  private refused(loginMessage: string): void {
    const revoked = this.revokedReason?.() ?? null;
    if (revoked === null) {
      this.showLogin(loginMessage);
      return;
    }
    this.revoked = true;
    this.reachable = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const banner = this.q('conn-error');
    banner.textContent = revoked;
    banner.hidden = false;
    this.renderAll();
  }

  showLogin(message: string): void {
    this.loginShown = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.q('login').hidden = false;
    this.q('console').hidden = true;
    this.q('login-error').textContent = message;
    const input = this.q<HTMLInputElement>('login-token');
    try {
      input.focus();
    } catch {
      /* ignore */
    }
  }

  hideLogin(): void {
    this.loginShown = false;
    this.q('login').hidden = true;
    this.q('console').hidden = false;
    this.q('login-error').textContent = '';
  }

  // --------------------------------------------------------- actions -----

  private actionPath(action: string, name: string): string | null {
    const n = encodeURIComponent(name);
    switch (action) {
      case 'channel-test':
        return `/api/alerts/channels/${n}/test`;
      case 'channel-remove':
        return `/api/alerts/channels/${n}`;
      case 'force-failover':
      case 'revert':
        return `/api/pairs/${n}/${action}`;
      case 'accept':
      case 'reject':
      case 'recall':
        return `/api/agents/${n}/${action}`;
      case 'ha-standby':
        return '/api/ha/standby';
      default:
        return null;
    }
  }

  private async onAction(btn: HTMLButtonElement): Promise<void> {
    const action = btn.dataset.action ?? '';
    const name = btn.dataset.name ?? '';
    if (action === 'channel-edit') {
      this.editChannel(name);
      return;
    }
    const path = this.actionPath(action, name);
    if (!path) return;
    btn.disabled = true;
    btn.classList.add('busy');
    try {
      const method = action === 'channel-remove' ? 'DELETE' : 'POST';
      await this.act(method, path, undefined, `${btn.textContent?.trim() ?? action}${name ? ' ' + name : ''}`);
    } finally {
      btn.classList.remove('busy');
    }
  }

  /** Run one action; show its message or its plain error; then refresh. */
  async act(method: string, path: string, body: unknown, label: string): Promise<any | undefined> {
    this.flash('', '');
    try {
      const res = await this.transport.call(method, path, body);
      const msg = res && typeof res.message === 'string' && res.message ? res.message : `${label}: done`;
      this.flash('ok', msg);
      this.kick();
      return res ?? {};
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.refused('The token was refused.');
        return undefined;
      }
      this.flash('bad', `${label} failed: ${errorText(e)}`);
      this.kick();
      return undefined;
    }
  }

  flash(kind: '' | 'ok' | 'bad', text: string): void {
    const err = this.q('action-error');
    const msg = this.q('action-message');
    err.textContent = kind === 'bad' ? text : '';
    msg.textContent = kind === 'ok' ? text : '';
    (err.parentElement as HTMLElement).hidden = kind !== 'bad';
    (msg.parentElement as HTMLElement).hidden = kind !== 'ok';
  }

  async applyRoles(): Promise<void> {
    if (!this.status) return;
    const cur = this.status.node;
    const server = this.q<HTMLInputElement>('role-server').checked;
    const agent = this.q<HTMLInputElement>('role-agent').checked;
    const failover = this.q<HTMLSelectElement>('role-failover').value;
    const body: { server?: boolean; agent?: boolean; failover?: string } = {};
    if (server !== cur.roles.server) body.server = server;
    if (agent !== cur.roles.agent) body.agent = agent;
    if (failover !== cur.failover.mode) body.failover = failover;
    if (Object.keys(body).length === 0) {
      this.flash('ok', 'Roles unchanged.');
      this.roleDirty = false;
      return;
    }
    const res = await this.act('POST', '/api/role', body, 'Role change');
    if (res !== undefined) this.roleDirty = false;
  }

  async generateCert(): Promise<void> {
    const list = (testid: string) =>
      this.q<HTMLInputElement>(testid)
        .value.split(/[\s,]+/)
        .map((s) => s.trim())
        .filter(Boolean);
    const res = await this.act('POST', '/api/cert/generate', { ips: list('cert-ips'), dns: list('cert-dns') }, 'Generate certificate');
    if (res && typeof res.fingerprint === 'string') {
      this.cert = res as CertInfo;
      if (!res.message) this.flash('ok', `New certificate: ${res.fingerprint}`);
      this.renderAll();
    } else if (res !== undefined) {
      await this.loadCert();
      this.renderAll();
    }
  }

  /** The channel form's fields. */
  private channelFields(): ChannelFields {
    const form = this.q<HTMLFormElement>('channel-form');
    const el = (name: string) => form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement;
    const f = { ...EMPTY_FIELDS };
    for (const k of Object.keys(EMPTY_FIELDS) as Array<keyof ChannelFields>) {
      const input = el(k);
      if (typeof f[k] === 'boolean') (f as Record<string, unknown>)[k] = (input as HTMLInputElement).checked;
      else (f as Record<string, unknown>)[k] = input.value;
    }
    return f;
  }

  /**
   * Opens the channel form on `name` (AL-4's edit), prefilled as listed, its secrets empty with
   * "set" as placeholder (empty keeps them); `null` goes back to adding a channel.
   */
  editChannel(name: string | null): void {
    const form = this.q<HTMLFormElement>('channel-form');
    const channel = name === null ? undefined : this.channels.find((c) => c.name === name);
    this.editingChannel = channel ? channel.name : null;
    const f = channel ? fieldsOf(channel) : EMPTY_FIELDS;
    for (const [k, v] of Object.entries(f)) {
      const input = form.elements.namedItem(k) as HTMLInputElement | HTMLSelectElement;
      if (typeof v === 'boolean') (input as HTMLInputElement).checked = v;
      else input.value = v;
    }
    const editing = channel !== undefined;
    this.q<HTMLInputElement>('channel-name').readOnly = editing;
    this.q<HTMLSelectElement>('channel-kind').disabled = editing;
    this.q<HTMLInputElement>('channel-secret').placeholder = channel?.secret ? 'set: empty keeps it' : 'webhook: HMAC key';
    this.q<HTMLInputElement>('channel-token').placeholder = channel?.token ? 'set: empty keeps it' : 'ntfy: access token';
    this.q('channel-add').textContent = editing ? `Save ${channel.name}` : 'Add channel';
    for (const el of form.querySelectorAll<HTMLElement>('[data-edit-only]')) el.hidden = !editing;
    if (editing) this.q('channel-url').focus();
  }

  /** `alert channel add`, or `edit` of the channel being edited, from the form (AL-4). */
  async saveChannel(): Promise<void> {
    const editing = this.editingChannel;
    const { method, path, body } = channelRequest(this.channelFields(), editing);
    const label = editing === null ? `Add alert channel ${body.name}` : `Edit alert channel ${editing}`;
    const res = await this.act(method, path, body, label);
    if (res !== undefined) {
      this.q<HTMLFormElement>('channel-form').reset();
      this.editChannel(null);
    }
  }

  setEventFilter(code: string): void {
    this.eventFilter = code;
    this.renderEvents();
    if (code) {
      // Backfill older events of this code that are not in the recent window.
      this.transport
        .call('GET', `/api/events?code=${encodeURIComponent(code)}&limit=200`)
        .then((res: { events?: EventItem[] } | null) => {
          this.events = mergeEvents(this.events, res?.events ?? []);
          this.renderEvents();
        })
        .catch(() => undefined);
    }
  }

  private exportEvents(): void {
    const data = JSON.stringify(filterEvents(this.events, this.eventFilter), null, 2);
    const url = URL.createObjectURL(new Blob([data], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `understudy-events${this.eventFilter ? '-' + this.eventFilter : ''}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---------------------------------------------------------- render -----

  renderAll(): void {
    const s = this.status;
    const overall = overallState(s, this.reachable);
    this.setHtml(this.root.querySelector('.h-overall')!, renderOverall(overall));
    this.q('header-node').textContent = s ? s.node.name : '';
    if (s) {
      this.setHtml(this.view('node'), renderNode(s));
      this.setHtml(this.view('link'), renderLink(s));
      this.setHtml(this.view('servers'), renderServers(s));
      this.setHtml(this.view('pairs'), renderPairs(s));
      this.setHtml(this.view('agents'), renderAgents(s));
      this.setHtml(this.view('checks'), renderChecks(s, this.records));
      const acting = s.node.roles.server && s.node.acting;
      this.setHtml(this.view('alerts'), renderAlerts(this.alerts, s.alerts));
      this.setHtml(
        this.view('channels'),
        renderChannels(this.channels, acting, 'channels are changed on the acting server of the site'),
      );
      (this.root.querySelector('[data-panel="alerts"]') as HTMLElement).hidden = !s.node.roles.server;
      (this.root.querySelector('[data-panel="charts"]') as HTMLElement).hidden = !s.node.roles.server;
      this.syncRoleForm(false);
      this.syncStandby(s);
    }
    this.setHtml(this.view('cert'), renderCert(this.cert, s?.node.cert?.fingerprint ?? null));
    this.renderEvents();
  }

  renderEvents(): void {
    const select = this.q<HTMLSelectElement>('event-filter');
    this.setHtml(select, renderEventFilterOptions(eventCodes(this.events), this.eventFilter));
    if (select.value !== this.eventFilter) select.value = this.eventFilter;
    const shown = filterEvents(this.events, this.eventFilter);
    this.setHtml(this.view('events'), renderEvents(shown, this.events.length));
  }

  /** Put the node's current roles in the form, unless the operator is editing it. */
  private syncRoleForm(force: boolean): void {
    const s = this.status;
    if (!s || (this.roleDirty && !force)) return;
    this.q<HTMLInputElement>('role-server').checked = s.node.roles.server;
    this.q<HTMLInputElement>('role-agent').checked = s.node.roles.agent;
    this.q<HTMLSelectElement>('role-failover').value = s.node.failover.mode;
  }

  private syncStandby(s: Status): void {
    const btn = this.q<HTMLButtonElement>('ha-standby');
    const hint = this.q('ha-standby-hint');
    const f = s.node.failover;
    // The engine's dry run of `ha standby` (HS-5): enabled and worded as it decides.
    const reason = f.standby.allowed ? '' : (f.standby.reason ?? '');
    btn.disabled = !f.standby.allowed;
    btn.title = reason || 'hand the ACTIVE role back to the peer (manual switchback of the servers)';
    this.setHtml(hint, reason
      ? esc(reason)
      : `Hands the ACTIVE role to <span class="mono">${esc(f.peer ?? 'the peer')}</span>.`);
  }
}
