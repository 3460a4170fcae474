// How the console renders the status: colours, the overall state, event merging/filtering,
// latest check results. It keeps no policy: whether an action is allowed (and why not) is the
// engine's answer in `pair.actions`, and an event's colour is its severity.

import type { EventItem, Overall, Pair, RecordItem, Severity, Status } from './types';

export type Tone = 'ok' | 'warn' | 'bad' | 'off' | 'info';

/** Colour of a state word: normal green, degraded amber, blackout red, stopped grey. */
export function tone(state: string | null | undefined): Tone {
  switch ((state ?? '').toLowerCase()) {
    case 'normal':
    case 'home':
    case 'connected':
    case 'active':
    case 'acting':
    case 'up':
    case 'ok':
    case 'reachable':
      return 'ok';
    case 'degraded':
    case 'standby':
    case 'staged':
    case 'pending':
    case 'connecting':
    case 'switching':
    case 'failover':
      return 'warn';
    case 'blackout':
    case 'disconnected':
    case 'down':
    case 'unreachable':
    case 'failed':
    case 'error':
    case 'timeout':
      return 'bad';
    case 'stopped':
    case 'off':
    case 'none':
    case 'rejected':
    case 'unknown':
    case '':
      return 'off';
    default:
      return 'info';
  }
}

/** A hot-standby STANDBY node is normal operation, not a warning. */
export function nodeStateTone(state: string): Tone {
  const s = state.toLowerCase();
  if (s === 'standby') return 'info';
  return tone(s);
}

/** A pair is shown degraded when its state says so or it carries a reason. */
export function pairTone(p: Pair): Tone {
  const t = tone(p.state);
  if (t === 'ok' && p.degraded) return 'warn';
  return t;
}

export interface Allowed {
  allowed: boolean;
  reason: string; // why not (the engine's sentence), for the button's tooltip
}

/** PR-5: the engine's answer for an action, as `status` reports it. */
export function actionOf(p: Pair, action: 'force_failover' | 'revert'): Allowed {
  const a = p.actions[action];
  return { allowed: a.allowed, reason: a.reason ?? '' };
}

export function activeMemberName(p: Pair): string | null {
  if (p.active === 'primary') return p.primary;
  if (p.active === 'secondary') return p.secondary;
  return null;
}

/** The at-a-glance state, as on the tray icon (UI-3). */
export function overallState(status: Status | null, reachable: boolean): Overall {
  if (!status || !reachable) return 'stopped';
  const link = status.link;
  if (link && link.state === 'blackout') return 'blackout';
  if (status.pairs.some((p) => tone(p.state) === 'bad')) return 'blackout';
  if (status.pairs.some((p) => pairTone(p) !== 'ok')) return 'degraded';
  if (link && link.state !== 'home') return 'degraded';
  if (link && link.cache_error) return 'degraded';
  if (status.agents.some((a) => a.state === 'disconnected')) return 'degraded';
  return 'normal';
}

// --------------------------------------------------------------- events ----

export const MAX_EVENTS = 1000;

/** Merge new events into the list by id; newest (highest id) first. */
export function mergeEvents(current: EventItem[], incoming: EventItem[]): EventItem[] {
  if (incoming.length === 0) return current;
  const byId = new Map<number, EventItem>();
  for (const e of current) byId.set(e.id, e);
  for (const e of incoming) byId.set(e.id, e);
  return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, MAX_EVENTS);
}

export function filterEvents(events: EventItem[], code: string): EventItem[] {
  if (!code) return events;
  return events.filter((e) => e.code === code);
}

export function maxEventId(events: EventItem[]): number | null {
  return events.length ? events.reduce((m, e) => Math.max(m, e.id), events[0].id) : null;
}

/** The codes seen, for the filter. */
export function eventCodes(events: EventItem[]): string[] {
  return [...new Set(events.map((e) => e.code))].sort();
}

/** An event's colour: its severity, as the engine's table says. */
export function severityTone(severity: Severity): Tone {
  switch (severity) {
    case 'critical':
      return 'bad';
    case 'warning':
      return 'warn';
    default:
      return 'info';
  }
}

// --------------------------------------------------------------- checks ----

/** Latest record per check (keyed by pair alias or agent, and check name). */
export function latestChecks(records: RecordItem[]): RecordItem[] {
  const latest = new Map<string, RecordItem>();
  for (const r of records) {
    if (r.kind && r.kind !== 'check') continue;
    const key = `${r.pair ?? r.agent}\u0000${r.name}`;
    const prev = latest.get(key);
    if (!prev || r.time_ms > prev.time_ms || (r.time_ms === prev.time_ms && r.seq > prev.seq))
      latest.set(key, r);
  }
  return [...latest.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** up / down / null (unknown) from a check record's detail. */
export function checkUp(r: RecordItem): boolean | null {
  // A check's detail is stored as JSON text ({"up": true, …}); other records' as plain text.
  let d: unknown = r.detail;
  if (typeof d === 'string' && d.trimStart().startsWith('{')) {
    try {
      d = JSON.parse(d);
    } catch {
      // not JSON after all: read it as text
    }
  }
  if (d && typeof d === 'object') {
    const o = d as Record<string, unknown>;
    if (typeof o.up === 'boolean') return o.up;
    if (typeof o.ok === 'boolean') return o.ok;
    if (typeof o.status === 'string') return checkWord(o.status);
    if (typeof o.result === 'string') return checkWord(o.result);
  }
  if (typeof d === 'string') return checkWord(d);
  if (typeof d === 'boolean') return d;
  return null;
}

function checkWord(s: string): boolean | null {
  if (/^\s*(up|ok|pass)/i.test(s)) return true;
  if (/^\s*(down|fail|error|timeout|timed out|refused)/i.test(s)) return false;
  return null;
}
