// UI-5 in the desktop window: which node the console shows, and joining sites.
//
//  * TargetedTransport – the window's `admin` command with a target: this computer's node
//    (`site: null`) or a joined site by name; the window process routes the request (to the
//    site's ACTIVE server, with the site's token, over pinned TLS).
//  * Sites – the window's site commands: `targets` (this computer's node when it runs one, and
//    the joined sites), `site_join` (an invitation line; the refusal's reason comes back as is),
//    `site_remove`.
//  * chooseTarget – which target stays selected when the list changes.
//  * SiteSwitcher – the switcher and the "Connect to a site…" dialog in the top bar.
//
// Only the desktop app has these (the browser console is served by one node).

import { ApiError, errorText, toApiError, type TauriInternals, type Transport } from './api';
import { esc } from './render';

/** A joined site as the window lists it (never its token). */
export interface SiteInfo {
  name: string;
  label: string;
  servers: string[];
}

/** `targets`: what the switcher offers. */
export interface Targets {
  /** This computer runs a node ("Run a node on this computer" is on). */
  local: boolean;
  sites: SiteInfo[];
}

/** The selected target: `null` for this computer's node, else a site's name. */
export type Target = string | null;

export class TargetedTransport implements Transport {
  readonly kind = 'tauri' as const;
  private readonly internals: TauriInternals;
  target: Target = null;

  constructor(internals: TauriInternals) {
    this.internals = internals;
  }

  async call(method: string, path: string, body?: unknown): Promise<any> {
    try {
      return await this.internals.invoke('admin', { method, path, body: body ?? null, site: this.target });
    } catch (e) {
      throw toApiError(e);
    }
  }
}

export class Sites {
  private readonly internals: TauriInternals;

  constructor(internals: TauriInternals) {
    this.internals = internals;
  }

  async targets(): Promise<Targets> {
    const t = (await this.internals.invoke('targets')) as Partial<Targets> | null;
    return { local: t?.local === true, sites: Array.isArray(t?.sites) ? t!.sites : [] };
  }

  /** Joins the site of an invitation line; rejects with the reason, word for word. */
  async join(invitation: string): Promise<SiteInfo> {
    try {
      return (await this.internals.invoke('site_join', { invitation })) as SiteInfo;
    } catch (e) {
      throw new Error(reasonOf(e));
    }
  }

  async remove(site: string): Promise<void> {
    try {
      await this.internals.invoke('site_remove', { site });
    } catch (e) {
      throw new Error(reasonOf(e));
    }
  }
}

/** A command's rejection is the plain reason (a string) or an admin error `{status, error}`. */
/** The window's banner when a joined site answers 401 (the tray's menu says "access revoked"). */
export function siteRevoked(site: string): string {
  return `Access to site ${site} revoked: its server refused this computer's token. Remove the site, then join it again with a new invitation (understudy invite on one of its servers).`;
}

/** The App's `revoked` option in the window: this computer's node has the login form. */
export function revokedFor(transport: TargetedTransport): () => string | null {
  return () => (transport.target === null ? null : siteRevoked(transport.target));
}

export function reasonOf(e: unknown): string {
  if (typeof e === 'string') return e;
  if (e instanceof Error && !(e instanceof ApiError)) return e.message;
  return toApiError(e).message || errorText(e);
}

/**
 * The target to show after the list changed: the current one while it is still offered; else
 * this computer's node if it runs one; else the first site; `undefined` when there is nothing.
 */
export function chooseTarget(targets: Targets, current: Target | undefined): Target | undefined {
  const offered = (t: Target | undefined) =>
    t === null ? targets.local : t !== undefined && targets.sites.some((s) => s.name === t);
  if (current !== undefined && offered(current)) return current;
  if (targets.local) return null;
  return targets.sites[0]?.name;
}

/** The switcher's option value of a target (a site name cannot be empty). */
export function optionValue(t: Target): string {
  return t === null ? '' : t;
}

export function renderOptions(targets: Targets, selected: Target | undefined): string {
  const opts: string[] = [];
  if (targets.local) {
    opts.push(`<option value=""${selected === null ? ' selected' : ''}>This computer</option>`);
  }
  for (const s of targets.sites) {
    const text = s.label ? `${s.name} (${s.label})` : s.name;
    const sel = selected === s.name ? ' selected' : '';
    opts.push(`<option value="${esc(s.name)}"${sel}>Site ${esc(text)}</option>`);
  }
  if (opts.length === 0) opts.push('<option value="" disabled selected>No node and no site</option>');
  return opts.join('');
}

export const SWITCHER_HTML = `
<label class="small site-switch">show
  <select data-testid="site-switcher"></select>
</label>
<button type="button" class="btn small-btn" data-testid="remove-site" hidden>Remove site</button>
<button type="button" class="btn small-btn" data-testid="connect-site">Connect to a site…</button>
<span class="small site-error" data-testid="site-error" role="alert"></span>
<div class="join-dialog" data-testid="join-dialog" role="dialog" aria-label="Connect to a site" hidden>
  <form class="join-box" data-testid="join-form" autocomplete="off">
    <h2>Connect to a site</h2>
    <p class="small">Paste the line <code>understudy invite</code> printed on one of the site's servers.</p>
    <textarea name="invitation" rows="4" data-testid="join-invitation" placeholder="understudy://join/1?…" required></textarea>
    <p class="login-error" data-testid="join-error" role="alert"></p>
    <button type="submit" class="btn primary" data-testid="join-submit">Connect</button>
    <button type="button" class="btn" data-testid="join-cancel">Cancel</button>
  </form>
</div>`;

/**
 * The switcher in `host`: lists the targets, routes `transport` to the chosen one and calls
 * `onSwitch` after every change of target (the console then starts over on the new node).
 */
export class SiteSwitcher {
  private readonly host: HTMLElement;
  private readonly sites: Sites;
  private readonly transport: TargetedTransport;
  private readonly onSwitch: () => void;
  targets: Targets = { local: false, sites: [] };
  selected: Target | undefined = undefined;

  constructor(host: HTMLElement, sites: Sites, transport: TargetedTransport, onSwitch: () => void) {
    this.host = host;
    this.sites = sites;
    this.transport = transport;
    this.onSwitch = onSwitch;
    host.innerHTML = SWITCHER_HTML;
    this.q<HTMLSelectElement>('site-switcher').addEventListener('change', (ev) => {
      const value = (ev.target as HTMLSelectElement).value;
      this.select(value === '' ? null : value);
    });
    this.q('connect-site').addEventListener('click', () => this.openDialog());
    this.q('join-cancel').addEventListener('click', () => this.closeDialog());
    this.q<HTMLFormElement>('join-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.join();
    });
    this.q('remove-site').addEventListener('click', () => void this.removeSelected());
  }

  q<T extends HTMLElement = HTMLElement>(testid: string): T {
    const el = this.host.querySelector<T>(`[data-testid="${testid}"]`);
    if (!el) throw new Error(`missing element ${testid}`);
    return el;
  }

  /** Reads the targets again and keeps (or picks) the selection. */
  async refresh(): Promise<void> {
    this.targets = await this.sites.targets();
    const next = chooseTarget(this.targets, this.selected);
    this.render(next);
    if (next !== this.selected) this.apply(next);
  }

  /** The user picked a target. */
  select(t: Target): void {
    if (t === this.selected) return;
    this.render(t);
    this.apply(t);
  }

  private apply(t: Target | undefined): void {
    this.selected = t;
    this.transport.target = t ?? null;
    this.onSwitch();
  }

  private render(selected: Target | undefined): void {
    this.q('site-switcher').innerHTML = renderOptions(this.targets, selected);
    this.q('remove-site').hidden = selected === null || selected === undefined;
  }

  openDialog(): void {
    this.q('join-error').textContent = '';
    this.q('join-dialog').hidden = false;
    try {
      this.q('join-invitation').focus();
    } catch {
      /* ignore */
    }
  }

  closeDialog(): void {
    this.q('join-dialog').hidden = true;
    this.q<HTMLTextAreaElement>('join-invitation').value = '';
  }

  /** Joins the pasted invitation; on success shows the new site, else the reason as given. */
  async join(): Promise<void> {
    const input = this.q<HTMLTextAreaElement>('join-invitation');
    const line = input.value.trim();
    if (!line) return;
    const submit = this.q<HTMLButtonElement>('join-submit');
    submit.disabled = true;
    this.q('join-error').textContent = '';
    try {
      const site = await this.sites.join(line);
      this.closeDialog();
      await this.refresh();
      this.select(site.name);
    } catch (e) {
      this.q('join-error').textContent = errorText(e);
    } finally {
      submit.disabled = false;
    }
  }

  async removeSelected(): Promise<void> {
    const site = this.selected;
    if (site === null || site === undefined) return;
    this.q('site-error').textContent = '';
    try {
      await this.sites.remove(site);
    } catch (e) {
      this.q('site-error').textContent = errorText(e);
      return;
    }
    await this.refresh();
  }
}
