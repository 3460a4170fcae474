// Shapes returned by the admin API (PRODUCT.md §3 and the admin API brief).
// Fields the console does not strictly need are optional so that a node
// running an older/newer engine still renders.

export interface NodeInfo {
  id: string;
  name: string;
  roles: { server: boolean; agent: boolean };
  failover: { mode: string; state: string; epoch: number; peer: string | null };
  listen?: string;
  cert?: { fingerprint: string } | null;
}

export interface LinkInfo {
  server: string;
  state: string; // home | standby | staged | blackout | connecting
  cached: number;
  /** AG-2: records a standby of another site acknowledged, kept until home has them. */
  held?: number;
  held_by?: { server: string; records: number }[];
}

export interface ServerEntry {
  url: string;
  role: string; // home | standby
  state: string;
}

export type ActiveMember = 'primary' | 'secondary' | 'none';

export interface Pair {
  name: string;
  primary: string;
  secondary: string;
  active: ActiveMember | string;
  state: string; // normal | degraded | blackout | ...
  epoch: number;
  degraded?: string | null;
  switchback?: string; // auto | manual
  failover_after?: string | number;
  hold_down?: string | number;
}

export interface Agent {
  name: string;
  id?: string;
  state: string; // connected | disconnected | pending | rejected
  server?: string | null;
  pending: boolean;
  fingerprint?: string | null;
}

export interface CheckDef {
  name: string;
  kind: string;
  target: string;
  every?: string | number;
  timeout?: string | number;
  agent?: string | null;
  pair?: string | null;
}

export interface Status {
  node: NodeInfo;
  link: LinkInfo | null;
  servers: ServerEntry[];
  pairs: Pair[];
  agents: Agent[];
  checks?: CheckDef[];
}

export interface EventItem {
  id: number;
  time_ms: number;
  code: string;
  subject: string;
  sentence: string;
}

export interface RecordItem {
  agent: string;
  seq: number;
  pair: string | null;
  name: string;
  value: unknown;
  time_ms: number;
  kind: string;
  detail: unknown;
  /** AG-2: set on a standby server that stored the record for an agent whose home is elsewhere. */
  taken_for?: string | null;
}

export interface CertInfo {
  fingerprint: string;
  sans: string[];
  not_after: string | number;
}

export type Overall = 'normal' | 'degraded' | 'blackout' | 'stopped';
