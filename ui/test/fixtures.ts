import { ApiError, type Transport } from '../src/api';
import { App } from '../src/app';
import type { AlertItem, Channel, EventItem, RecordItem, Status } from '../src/types';

export function makeStatus(over: Partial<Status> = {}): Status {
  return {
    node: {
      id: '7b0c6a1e-0000-4000-8000-000000000001',
      name: 'srv-a',
      roles: { server: true, agent: true },
      failover: { mode: 'primary', state: 'active', epoch: 3, peer: 'https://127.0.0.2:7443', standby: { allowed: true, reason: null } },
      listen: '127.0.0.1:7443',
      acting: true,
      cert: { fingerprint: 'AA:BB:CC' },
    },
    link: { server: 'https://127.0.0.1:7443', state: 'home', cached: 0, held: 0, held_by: [], error: null, cache_error: null, untrusted: [] },
    servers: [
      { url: 'https://127.0.0.1:7443', role: 'home', state: 'up' },
      { url: 'https://127.0.0.2:7443', role: 'standby', state: 'up' },
    ],
    pairs: [
      {
        name: 'web',
        primary: 'web-1',
        secondary: 'web-2',
        active: 'primary',
        state: 'normal',
        epoch: 1,
        degraded: null,
        switchback: 'auto',
        failover_after: '3s',
        hold_down: '10s',
        held: false,
        primary_connected: true,
        secondary_connected: true,
        actions: {
          force_failover: { allowed: true, reason: null },
          revert: { allowed: false, reason: 'web is already active on the primary web-1' },
        },
      },
      {
        name: 'db',
        primary: 'db-1',
        secondary: 'db-2',
        active: 'secondary',
        state: 'degraded',
        epoch: 4,
        degraded: 'on_activate hook timed out',
        switchback: 'manual',
        failover_after: '500ms',
        hold_down: '0s',
        held: true,
        primary_connected: false,
        secondary_connected: true,
        actions: {
          force_failover: { allowed: false, reason: 'db is already active on the secondary db-2' },
          revert: { allowed: false, reason: 'the primary db-1 is not connected' },
        },
      },
    ],
    agents: [
      { name: 'web-1', id: 'a1', state: 'connected', server: 'https://127.0.0.1:7443', pending: false, fingerprint: null, standby_slot: false },
      { name: 'web-2', id: 'a2', state: 'connected', server: 'https://127.0.0.1:7443', pending: false, fingerprint: null, standby_slot: false },
      { name: 'db-1', id: 'a3', state: 'disconnected', server: null, pending: false, fingerprint: null, standby_slot: false },
      { name: 'db-2', id: 'a4', state: 'connected', server: 'https://127.0.0.1:7443', pending: false, fingerprint: null, standby_slot: false },
      { name: 'new-box', id: 'a5', state: 'pending', server: 'https://127.0.0.1:7443', pending: true, fingerprint: 'DE:AD', standby_slot: false },
    ],
    members: [],
    agent_checks: [],
    checks: [
      { name: 'http-home', kind: 'http', target: 'http://10.0.0.5/', every: '5s', timeout: '2s', agent: null, pair: 'web' },
      { name: 'ssh', kind: 'tcp', target: '10.0.0.6:22', every: '10s', timeout: '1s', agent: 'db-2', pair: null },
    ],
    alerts: { pending: 1, failing: 1, failed: 1 },
    forward: null,
    ...over,
  };
}

export const EVENTS: EventItem[] = [
  { id: 1, time_ms: 1_700_000_000_000, code: 'SWITCHOVER', subject: 'web-1', sentence: 'web-1 switched over to srv-b.', origin: null, notify: true, severity: 'warning', title: 'Switchover', key: 'n1:1' },
  { id: 2, time_ms: 1_700_000_001_000, code: 'FAILOVER', subject: 'db', sentence: 'Pair db failed over to db-2.', origin: null, notify: true, severity: 'critical', title: 'Pair failover', key: 'n1:2' },
  { id: 3, time_ms: 1_700_000_002_000, code: 'SWITCHBACK', subject: 'web-1', sentence: 'web-1 switched back home.', origin: null, notify: true, severity: 'info', title: 'Switchback', key: 'n1:3' },
];

export const RECORDS: RecordItem[] = [
  { agent: 'web-1', agent_id: 'a1', seq: 10, pair: 'web', name: 'http-home', value: 12.5, time_ms: 1_700_000_000_000, kind: 'check', detail: '{"up":true}', taken_for: null },
  { agent: 'web-2', agent_id: 'a2', seq: 3, pair: 'web', name: 'http-home', value: 40, time_ms: 1_700_000_005_000, kind: 'check', detail: 'down: connection refused', taken_for: null },
  { agent: 'db-2', agent_id: 'a4', seq: 7, pair: null, name: 'ssh', value: 1.2, time_ms: 1_700_000_001_000, kind: 'check', detail: '{"up":true}', taken_for: null },
];

export const CHANNELS: Channel[] = [
  { name: 'hook', kind: 'webhook', url: 'https://hooks.example.org/u', secret: 'set', timeout: '10s', codes: ['CHECK_DOWN', 'CHECK_UP'] },
  { name: 'mail', kind: 'email', to: ['ops@example.org'], smtp: 'smtps://ops:set@mail.example.org', timeout: '10s', min_severity: 'critical' },
];

export const ALERTS: AlertItem[] = [
  {
    id: 'al-1', event_id: 2, time_ms: 1_700_000_001_000, code: 'FAILOVER', severity: 'critical', subject: 'db', sentence: 'Pair db failed over to db-2.',
    deliveries: [
      { channel: 'hook', state: 'sent', attempts: 1 },
      { channel: 'mail', state: 'failed', attempts: 9, last_error: 'SMTP: 554 no' },
    ],
  },
  {
    id: 'al-2', event_id: 4, time_ms: 1_700_000_003_000, code: 'CHECK_DOWN', severity: 'critical', subject: 'ssh', sentence: 'ssh failed 3 times in a row.',
    deliveries: [{ channel: 'hook', state: 'pending', attempts: 2, last_error: 'HTTP 503' }],
  },
];

export interface Call {
  method: string;
  path: string;
  body?: unknown;
}

type Handler = (call: Call) => unknown;

/** A scripted Transport: routes "METHOD /path" (query ignored unless given) to handlers. */
export class FakeTransport implements Transport {
  readonly kind: 'http' | 'tauri';
  calls: Call[] = [];
  routes = new Map<string, Handler>();

  constructor(kind: 'http' | 'tauri' = 'http') {
    this.kind = kind;
  }

  on(route: string, handler: Handler): this {
    this.routes.set(route, handler);
    return this;
  }

  async call(method: string, path: string, body?: unknown): Promise<any> {
    const call = { method, path, body };
    this.calls.push(call);
    const h = this.routes.get(`${method} ${path}`) ?? this.routes.get(`${method} ${path.split('?')[0]}`);
    if (!h) throw new ApiError(404, `no route ${method} ${path}`);
    return h(call);
  }

  posts(): Call[] {
    return this.calls.filter((c) => c.method === 'POST');
  }
}

export function standardTransport(status: Status = makeStatus()): FakeTransport {
  return new FakeTransport()
    .on('GET /api/status', () => status)
    .on('GET /api/events', () => ({ events: EVENTS }))
    .on('GET /api/records', () => ({ records: RECORDS }))
    .on('GET /api/alerts', () => ({ alerts: ALERTS }))
    .on('GET /api/alerts/channels', () => ({ channels: CHANNELS }))
    .on('GET /api/cert', () => ({ fingerprint: 'AA:BB:CC', sans: ['127.0.0.1', 'srv-a'], not_after: '2027-01-01T00:00:00Z' }));
}

export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 0));
}

export function byTestId<T extends HTMLElement = HTMLElement>(root: ParentNode, id: string): T {
  const el = root.querySelector<T>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`no element with data-testid=${id}`);
  return el;
}

/** A fresh `<div id="app">` in the document, the console mounted on it and polled once. */
export async function mountApp(status: Status = makeStatus()): Promise<{ root: HTMLElement; app: App; t: FakeTransport }> {
  document.body.innerHTML = '<div id="app"></div>';
  const root = document.getElementById('app')!;
  const t = standardTransport(status);
  const app = new App({ root, transport: t });
  await app.refresh();
  return { root, app, t };
}
