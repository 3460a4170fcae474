// One render function per panel. Each returns an HTML string built from the
// status; every value is escaped. Buttons carry data-action / data-name and
// are handled by one delegated click handler in app.ts.

import type { AlertItem, Channel, CertInfo, CheckDef, EventItem, Overall, RecordItem, Status } from './types';
import {
  activeMemberName,
  actionOf,
  checkUp,
  severityTone,
  latestChecks,
  nodeStateTone,
  pairTone,
  tone,
  type Tone,
} from './rules';

// -------------------------------------------------------------- helpers ----

export function esc(v: unknown): string {
  return String(v ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** Local time, `YYYY-MM-DD HH:MM:SS.mmm`. */
export function fmtTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '';
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

/** Durations come as "5s" strings or as milliseconds. */
export function fmtDuration(v: string | number | null | undefined): string {
  if (v === null || v === undefined || v === '') return '';
  if (typeof v === 'string') return v;
  if (v < 1000) return `${v}ms`;
  if (v % 60000 === 0) return `${v / 60000}m`;
  if (v % 1000 === 0) return `${v / 1000}s`;
  return `${v}ms`;
}

export function fmtValue(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/\.?0+$/, '');
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function fmtDate(v: string | number): string {
  return typeof v === 'number' ? fmtTime(v) : v;
}

function badge(text: string, t: Tone, testid?: string, extra = ''): string {
  const tid = testid ? ` data-testid="${esc(testid)}"` : '';
  return `<span class="badge tone-${t}"${tid} data-state="${esc(text)}"${extra}>${esc(text)}</span>`;
}

function button(
  label: string,
  action: string,
  name: string,
  testid: string,
  allowed: boolean,
  title: string,
  cls = '',
): string {
  return (
    `<button type="button" class="btn ${cls}" data-action="${esc(action)}" data-name="${esc(name)}" ` +
    `data-testid="${esc(testid)}" title="${esc(title)}"${allowed ? '' : ' disabled'}>${esc(label)}</button>`
  );
}

function empty(cols: number, text: string, testid: string): string {
  return `<tr class="empty"><td colspan="${cols}" data-testid="${testid}">${esc(text)}</td></tr>`;
}

// ------------------------------------------------------------- header -----

export function renderOverall(overall: Overall): string {
  return `<span class="overall state-${overall}" data-testid="overall-state" data-state="${overall}">${overall}</span>`;
}

// --------------------------------------------------------------- node -----

export function rolesText(roles: { server: boolean; agent: boolean }): string {
  if (roles.server && roles.agent) return 'server + agent (standalone)';
  if (roles.server) return 'server';
  if (roles.agent) return 'agent';
  return 'none';
}

export function renderNode(s: Status): string {
  const n = s.node;
  const f = n.failover;
  return `
<dl class="kv">
  <dt>name</dt><dd data-testid="node-name">${esc(n.name)}</dd>
  <dt>id</dt><dd class="mono small" data-testid="node-id">${esc(n.id)}</dd>
  <dt>roles</dt><dd data-testid="node-roles">${esc(rolesText(n.roles))}</dd>
  <dt>failover</dt><dd data-testid="node-failover-mode">${esc(f.mode)}</dd>
  <dt>state</dt><dd>${badge(f.state, nodeStateTone(f.state), 'node-state')}</dd>
  <dt>epoch</dt><dd class="mono" data-testid="node-epoch">${esc(f.epoch)}</dd>
  <dt>peer</dt><dd class="mono" data-testid="node-peer">${esc(f.peer ?? '—')}</dd>
  <dt>listen</dt><dd class="mono" data-testid="node-listen">${esc(n.listen ?? '')}</dd>
</dl>`;
}

// --------------------------------------------------------------- link -----

export function renderLink(s: Status): string {
  const l = s.link;
  if (!l) {
    return `<p class="muted" data-testid="link-none">No server link (agent role is off).</p>`;
  }
  return `
<dl class="kv">
  <dt>server</dt><dd class="mono" data-testid="link-server">${esc(l.server)}</dd>
  <dt>state</dt><dd>${badge(l.state, tone(l.state), 'link-state')}</dd>
  <dt>cached</dt><dd class="mono" data-testid="link-cached">${esc(l.cached)}</dd>
  <dt>held for home</dt><dd class="mono" data-testid="link-held" title="acknowledged by a standby of another site; delivered home after the switchback">${esc(l.held ?? 0)}${(l.held_by ?? []).map((h) => ` <span class="small">(${esc(h.records)} by ${esc(h.server)})</span>`).join('')}</dd>${
    l.cache_error
      ? `
  <dt>cache</dt><dd>${badge('not written', 'bad', 'link-cache-state')} <span class="small" data-testid="link-cache-error">${esc(l.cache_error)}</span></dd>`
      : ''
  }
</dl>`;
}

// ------------------------------------------------------------ servers -----

export function renderServers(s: Status): string {
  const rows = s.servers.length
    ? s.servers
        .map(
          (sv, i) => `
<tr data-testid="server-row-${i}" data-url="${esc(sv.url)}">
  <td class="mono" data-testid="server-url-${i}">${esc(sv.url)}</td>
  <td data-testid="server-role-${i}">${esc(sv.role)}</td>
  <td>${badge(sv.state, tone(sv.state), `server-state-${i}`)}</td>
</tr>`,
        )
        .join('')
    : empty(3, 'No servers configured.', 'servers-empty');
  return `
<table class="grid" data-testid="servers-table">
  <thead><tr><th>server</th><th>role</th><th>state</th></tr></thead>
  <tbody>${rows}</tbody>
</table>`;
}

// -------------------------------------------------------------- pairs -----

export function renderPairs(s: Status): string {
  const rows = s.pairs.length
    ? s.pairs
        .map((p) => {
          const t = pairTone(p);
          const ff = actionOf(p, 'force_failover');
          const rv = actionOf(p, 'revert');
          const member = activeMemberName(p);
          const activeCls = p.active === 'secondary' ? ' on-secondary' : p.active === 'primary' ? '' : ' on-none';
          const stateText = t === 'warn' && tone(p.state) === 'ok' ? 'degraded' : p.state;
          const sb =
            p.switchback === 'auto' && p.hold_down !== undefined
              ? `auto, hold ${fmtDuration(p.hold_down)}`
              : (p.switchback ?? '');
          return `
<tr class="pair-row tone-${t} state-${esc(stateText)}" data-testid="pair-row-${esc(p.name)}" data-state="${esc(p.state)}" data-active="${esc(p.active)}">
  <td class="strong" data-testid="pair-name-${esc(p.name)}">${esc(p.name)}</td>
  <td class="${p.active === 'primary' ? 'is-active' : ''}" data-testid="pair-primary-${esc(p.name)}">${esc(p.primary)}</td>
  <td class="${p.active === 'secondary' ? 'is-active' : ''}" data-testid="pair-secondary-${esc(p.name)}">${esc(p.secondary)}</td>
  <td class="active-cell${activeCls}" data-testid="pair-active-${esc(p.name)}" data-active="${esc(p.active)}" data-member="${esc(member ?? '')}">${
    member ? `<span class="role-tag">${esc(p.active)}</span> ${esc(member)}` : '<span class="role-tag">none</span>'
  }</td>
  <td>${badge(stateText, t, `pair-state-${p.name}`)}${
    p.degraded ? ` <span class="reason" data-testid="pair-degraded-${esc(p.name)}">${esc(p.degraded)}</span>` : ''
  }</td>
  <td class="mono num" data-testid="pair-epoch-${esc(p.name)}">${esc(p.epoch)}</td>
  <td class="small">${esc(fmtDuration(p.failover_after))}</td>
  <td class="small" data-testid="pair-switchback-${esc(p.name)}">${esc(sb)}</td>
  <td class="actions">
    ${button('Force failover', 'force-failover', p.name, `force-failover-${p.name}`, ff.allowed, ff.reason)}
    ${button('Revert', 'revert', p.name, `revert-${p.name}`, rv.allowed, rv.reason)}
  </td>
</tr>`;
        })
        .join('')
    : empty(9, 'No pairs defined.', 'pairs-empty');
  return `
<table class="grid" data-testid="pairs-table">
  <thead><tr><th>pair</th><th>primary</th><th>secondary</th><th>active</th><th>state</th><th>epoch</th><th>failover after</th><th>switchback</th><th></th></tr></thead>
  <tbody>${rows}</tbody>
</table>`;
}

// ------------------------------------------------------------- agents -----

export function renderAgents(s: Status): string {
  const agents = [...s.agents].sort((a, b) => Number(b.pending) - Number(a.pending) || a.name.localeCompare(b.name));
  const rows = agents.length
    ? agents
        .map((a) => {
          const pending = a.pending || a.state === 'pending';
          const actions = pending
            ? button('Accept', 'accept', a.name, `accept-${a.name}`, true, `accept ${a.name}`, 'primary') +
              ' ' +
              button('Reject', 'reject', a.name, `reject-${a.name}`, true, `reject ${a.name}`, 'danger')
            : button(
                'Recall',
                'recall',
                a.name,
                `recall-${a.name}`,
                a.state !== 'rejected',
                a.state === 'rejected' ? 'agent is rejected' : `call ${a.name} back to its home server`,
              );
          return `
<tr class="agent-row tone-${tone(a.state)}${pending ? ' is-pending' : ''}" data-testid="agent-row-${esc(a.name)}" data-state="${esc(a.state)}">
  <td class="strong" data-testid="agent-name-${esc(a.name)}">${esc(a.name)}</td>
  <td>${badge(a.state, tone(a.state), `agent-state-${a.name}`)}</td>
  <td class="mono" data-testid="agent-server-${esc(a.name)}">${esc(a.server ?? '')}</td>
  <td data-testid="agent-pending-${esc(a.name)}">${pending ? 'yes' : ''}</td>
  <td class="mono small" title="${esc(a.fingerprint ?? '')}">${esc(shortFp(a.fingerprint))}</td>
  <td class="actions">${actions}</td>
</tr>`;
        })
        .join('')
    : empty(6, 'No agents.', 'agents-empty');
  return `
<table class="grid" data-testid="agents-table">
  <thead><tr><th>agent</th><th>state</th><th>server</th><th>pending</th><th>fingerprint</th><th></th></tr></thead>
  <tbody>${rows}</tbody>
</table>`;
}

function shortFp(fp: string | null | undefined): string {
  if (!fp) return '';
  return fp.length > 23 ? fp.slice(0, 23) + '…' : fp;
}

// ------------------------------------------------------------- checks -----

export function renderChecks(s: Status, records: RecordItem[]): string {
  const latest = latestChecks(records);
  const defs: CheckDef[] = s.checks ?? [];
  const seen = new Set<string>();
  const rows: string[] = [];
  const row = (name: string, on: string, def: CheckDef | undefined, r: RecordItem | undefined) => {
    const up = r ? checkUp(r) : null;
    const result = !r ? 'no result' : up === true ? 'up' : up === false ? 'down' : 'ran';
    const t: Tone = !r ? 'off' : up === true ? 'ok' : up === false ? 'bad' : 'info';
    const detail = r && r.detail !== null && r.detail !== undefined && typeof r.detail !== 'boolean' ? fmtValue(r.detail) : '';
    rows.push(`
<tr class="tone-${t}" data-testid="check-row-${esc(name)}" data-result="${result}">
  <td class="strong">${esc(name)}</td>
  <td>${esc(on)}</td>
  <td class="small">${def ? `${esc(def.kind)} <span class="mono">${esc(def.target)}</span>` : ''}</td>
  <td class="small">${def ? esc(fmtDuration(def.every)) : ''}</td>
  <td>${badge(result, t, `check-status-${name}`)}</td>
  <td class="mono num" data-testid="check-value-${esc(name)}">${r ? esc(fmtValue(r.value)) : ''}</td>
  <td class="small detail" title="${esc(detail)}">${esc(detail)}</td>
  <td>${r ? esc(r.agent) : ''}${r && r.taken_for ? ` <span class="badge tone-info small" data-testid="check-taken-for-${esc(name)}" title="stored here as a standby; the agent's home is ${esc(r.taken_for)}">taken for ${esc(r.taken_for)}</span>` : ''}</td>
  <td class="mono small" data-testid="check-time-${esc(name)}">${r ? esc(fmtTime(r.time_ms)) : ''}</td>
</tr>`);
  };
  for (const d of defs) {
    const on = d.pair ?? d.agent ?? '';
    const r = latest.find((x) => x.name === d.name && (x.pair ?? x.agent) === on) ?? latest.find((x) => x.name === d.name);
    if (r) seen.add(`${r.pair ?? r.agent}\u0000${r.name}`);
    row(d.name, on, d, r);
  }
  for (const r of latest) {
    if (seen.has(`${r.pair ?? r.agent}\u0000${r.name}`)) continue;
    row(r.name, r.pair ?? r.agent, undefined, r);
  }
  return `
<table class="grid" data-testid="checks-table">
  <thead><tr><th>check</th><th>on</th><th>probe</th><th>every</th><th>result</th><th>value</th><th>detail</th><th>ran on</th><th>time</th></tr></thead>
  <tbody>${rows.length ? rows.join('') : empty(9, 'No checks and no check results yet.', 'checks-empty')}</tbody>
</table>`;
}

// ------------------------------------------------------------- events -----

export function renderEvents(events: EventItem[], total: number): string {
  const items = events
    .map(
      (e) => `
<li class="event" data-testid="event-row-${esc(e.id)}" data-code="${esc(e.code)}" data-id="${esc(e.id)}">
  <span class="mono small time">${esc(fmtTime(e.time_ms))}</span>
  <span class="badge tone-${severityTone(e.severity)} code" data-testid="event-code">${esc(e.code)}</span>
  <span class="subject">${esc(e.subject)}</span>
  <span class="sentence" data-testid="event-sentence">${esc(e.sentence)}</span>
</li>`,
    )
    .join('');
  return `
<p class="small muted" data-testid="event-count">${events.length} of ${total} events shown</p>
<ol class="events" data-testid="event-list">${items || '<li class="empty muted">No events.</li>'}</ol>`;
}

export function renderEventFilterOptions(codes: string[], selected: string): string {
  return (
    `<option value=""${selected ? '' : ' selected'}>all codes</option>` +
    codes.map((c) => `<option value="${esc(c)}"${c === selected ? ' selected' : ''}>${esc(c)}</option>`).join('')
  );
}

// ------------------------------------------------------------- alerts -----

/** Where a channel sends, as the node lists it (secrets only ever "set"). */
function channelTarget(c: Channel): string {
  switch (c.kind) {
    case 'email':
      return `${(c.to ?? []).join(', ')} via ${c.smtp ?? ''}`;
    case 'command':
      return (c.argv ?? []).join(' ');
    case 'desktop':
      return "the acting server's tray app";
    default:
      return c.url ?? '';
  }
}

/** AL-4: the site's channels, each with Send test and Remove. */
export function renderChannels(channels: Channel[], mayChange: boolean, why: string): string {
  const rows = channels.map((c) => {
    const filter = [
      (c.codes ?? []).join(','),
      c.min_severity ? `≥ ${c.min_severity}` : '',
    ].filter(Boolean).join(' ') || 'all';
    const secrets = [c.secret ? `secret ${c.secret}` : '', c.token ? `token ${c.token}` : ''].filter(Boolean).join(', ') || '—';
    return `
<tr data-testid="channel-row-${esc(c.name)}">
  <td class="strong">${esc(c.name)}</td>
  <td>${esc(c.kind)}</td>
  <td class="mono small detail" title="${esc(channelTarget(c))}">${esc(channelTarget(c))}</td>
  <td class="small">${esc(filter)}</td>
  <td class="small" data-testid="channel-secret-${esc(c.name)}">${esc(secrets)}</td>
  <td class="small">${esc(c.timeout ?? '')}</td>
  <td class="actions">${button('Send test', 'channel-test', c.name, `channel-test-${c.name}`, true, 'send one test message to this channel now')}
    ${button('Edit', 'channel-edit', c.name, `channel-edit-${c.name}`, mayChange, mayChange ? 'change this channel (its secrets are kept unless given again)' : why)}
    ${button('Remove', 'channel-remove', c.name, `channel-remove-${c.name}`, mayChange, mayChange ? 'remove this channel' : why, 'danger')}</td>
</tr>`;
  });
  return `
<table class="grid" data-testid="channels-table">
  <thead><tr><th>channel</th><th>kind</th><th>to</th><th>filter</th><th>secrets</th><th>timeout</th><th></th></tr></thead>
  <tbody>${rows.length ? rows.join('') : empty(7, 'No alert channels.', 'channels-empty')}</tbody>
</table>`;
}

/** A delivery's tone: sent ok, failed bad, pending after a failed attempt (failing) warn. */
export function deliveryTone(d: { state: string; attempts: number }): Tone {
  if (d.state === 'sent') return 'ok';
  if (d.state === 'failed') return 'bad';
  return d.attempts > 0 ? 'warn' : 'info';
}

/** AL-1, AL-5: the latest alerts, newest first, with their delivery per channel. */
export function renderAlerts(alerts: AlertItem[], summary: Status['alerts'] | undefined): string {
  const rows = [...alerts].reverse().map((a) => {
    const worst = a.deliveries.some((d) => d.state === 'failed')
      ? 'bad'
      : a.deliveries.some((d) => deliveryTone(d) === 'warn')
        ? 'warn'
        : 'ok';
    const deliveries = a.deliveries.length
      ? a.deliveries
          .map((d) => {
            const t = deliveryTone(d);
            const word = t === 'warn' ? 'failing' : d.state;
            const title = `${d.attempts} attempt(s)${d.last_error ? `: ${d.last_error}` : ''}`;
            return badge(`${d.channel} ${word}`, t, `delivery-${a.id}-${d.channel}`, ` title="${esc(title)}"`);
          })
          .join(' ')
      : '<span class="small muted">no channel</span>';
    return `
<tr class="tone-${a.deliveries.length ? worst : 'off'}" data-testid="alert-row-${esc(a.id)}" data-code="${esc(a.code)}">
  <td class="mono small">${esc(fmtTime(a.time_ms))}</td>
  <td>${badge(a.code, severityTone(a.severity))}</td>
  <td>${esc(a.subject)}</td>
  <td class="small detail" title="${esc(a.sentence)}">${esc(a.sentence)}</td>
  <td>${deliveries}</td>
</tr>`;
  });
  const s = summary ?? { pending: 0, failing: 0, failed: 0 };
  return `
<p class="small" data-testid="alerts-summary">${esc(s.pending)} pending ·
  <span class="${s.failing ? 'reason' : 'muted'}" data-testid="alerts-failing">${esc(s.failing)} failing</span> ·
  <span class="${s.failed ? 'reason' : 'muted'}">${esc(s.failed)} given up</span></p>
<table class="grid" data-testid="alerts-table">
  <thead><tr><th>time</th><th>code</th><th>subject</th><th>sentence</th><th>delivery per channel</th></tr></thead>
  <tbody>${rows.length ? rows.join('') : empty(5, 'No alerts yet.', 'alerts-empty')}</tbody>
</table>`;
}

// --------------------------------------------------------------- cert -----

export function renderCert(cert: CertInfo | null, statusFp: string | null): string {
  if (!cert) {
    return `
<dl class="kv">
  <dt>fingerprint</dt><dd class="mono fp" data-testid="cert-fingerprint">${esc(statusFp ?? '')}</dd>
</dl>`;
  }
  return `
<dl class="kv">
  <dt>fingerprint</dt><dd class="mono fp" data-testid="cert-fingerprint">${esc(cert.fingerprint)}</dd>
  <dt>names</dt><dd class="mono" data-testid="cert-sans">${esc((cert.sans ?? []).join(', '))}</dd>
  <dt>not after</dt><dd class="mono" data-testid="cert-not-after">${esc(fmtDate(cert.not_after))}</dd>
</dl>`;
}
