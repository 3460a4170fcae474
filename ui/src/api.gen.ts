// Generated from crates/api by `cargo test -p understudy-api --features ts` (UPDATE_BINDINGS=1 writes it). Do not edit.

export type Status = { node: NodeView, 
/**
 * The agent role's link to its server; `null` without the agent role.
 */
link: LinkView | null, 
/**
 * The agent's servers, home first.
 */
servers: Array<ServerView>, 
/**
 * The agent's memberships in pairs, as it holds them.
 */
members: Array<MemberView>, 
/**
 * The checks this agent was given (CK-2).
 */
agent_checks: unknown[], pairs: Array<PairStatus>, agents: Array<AgentView>, checks: Array<CheckSpec>, 
/**
 * The outbox at a glance (AL-5): what the tray's "N alert deliveries failing" and the
 * console's Alerts page show. Zero without the server role.
 */
alerts: AlertSummary, 
/**
 * MX-2 forwarding to a remote-write receiver; `null` when `forward.remote_write` is not
 * set or the node has no server role.
 */
forward: ForwardView | null, };

export type NodeView = { id: string, name: string, listen: string, roles: Roles, failover: FailoverView, 
/**
 * Whether this node is the acting server of its site.
 */
acting: boolean, cert: CertView | null, };

export type Roles = { server: boolean, agent: boolean, };

export type FailoverView = { 
/**
 * `off`, `primary` or `secondary`.
 */
mode: string, 
/**
 * `active`, `standby`, `starting`, or `stopped` without the server role.
 */
state: string, epoch: number, peer: string | null, peer_state?: string | null, 
/**
 * Why the state is what it is (the engine's sentence).
 */
reason?: string | null, replicated_version?: number | null, 
/**
 * HS-5 "set this server to standby" (`ha standby`): whether the engine would allow it now
 * and the sentence it refuses with, a dry run of the guard that decides
 * (`HotStandby::can_hand_over`).
 */
standby: Action, };

export type ForwardView = { 
/**
 * `forward.remote_write`.
 */
remote_write: string, 
/**
 * The store id of the last record the receiver acknowledged (2xx) or rejected (4xx): the
 * durable cursor, replicated to the STANDBY.
 */
cursor: number, 
/**
 * Records stored after the cursor (not yet forwarded).
 */
lag_records: number, 
/**
 * How old (by its time) the oldest record not yet forwarded is, in seconds; 0 when none.
 */
lag_seconds: number, 
/**
 * Whether this node forwards now (it is the acting server).
 */
forwarding: boolean, 
/**
 * Why the last request failed, while it is being retried.
 */
error: string | null, };

export type CertView = { fingerprint: string, };

export type LinkView = { server: string | null, 
/**
 * `home`, `standby`, `staged`, `blackout` or `connecting`.
 */
state: string, cached: number, 
/**
 * AG-2: records a standby of another site acknowledged, kept until home has them.
 */
held: number, held_by: Array<HeldBy>, error: string | null, 
/**
 * PRODUCT.md §4 "disk full": why this agent's last check results could not be written to
 * its cache, and since when (none once a write succeeds again). Those runs are lost, as a
 * run is when the agent is down; nothing acknowledged is.
 */
cache_error: string | null, 
/**
 * Server certificates seen on first contact, waiting for the operator (CT-2).
 */
untrusted: Array<Untrusted>, };

export type Untrusted = { address: string, fingerprint: string, };

export type HeldBy = { server: string, records: number, };

export type ServerView = { url: string | null, 
/**
 * `home` or `standby`.
 */
role: string, 
/**
 * `connected` or `idle`.
 */
state: string, };

export type MemberView = { pair: string, epoch: number, server_epoch: number, active: boolean, };

export type PairStatus = { name: string, primary: string, secondary: string, 
/**
 * `primary`, `secondary` or `none`.
 */
active: string, 
/**
 * `normal`, `failed-over`, `handing-over`, `degraded`, `blackout` or `waiting`.
 */
state: string, epoch: number, 
/**
 * Why the pair is degraded (a hook failed, PR-7).
 */
degraded: string | null, switchback: Switchback, failover_after: string, hold_down: string, 
/**
 * An operator holds the pair on its secondary (PR-5).
 */
held: boolean, primary_connected: boolean, secondary_connected: boolean, actions: PairActions, };

export type PairActions = { force_failover: Action, revert: Action, };

export type Action = { allowed: boolean, 
/**
 * Why not: the sentence the engine refuses with. `null` when allowed.
 */
reason: string | null, };

export type AgentView = { name: string, id: string, 
/**
 * `connected`, `disconnected`, `pending` or `rejected`.
 */
state: string, 
/**
 * The server it is connected to, when connected.
 */
server: string | null, pending: boolean, fingerprint: string | null, standby_slot: boolean, };

export type CheckSpec = { name: string, kind: string, target: unknown, every?: string, timeout?: string, agent?: string | null, pair?: string | null, 
/**
 * AL-2: DOWN after this many failed runs in a row (default
 * [`crate::defaults::CHECK_FAIL_AFTER`]).
 */
fail_after?: number, 
/**
 * AL-2: UP again after this many good runs in a row (default
 * [`crate::defaults::CHECK_OK_AFTER`]).
 */
ok_after?: number, };

export type Switchback = "auto" | "manual";

export type EventView = { id: number, time_ms: number, code: string, subject: string, sentence: string, 
/**
 * Where the event was raised: this node, or the peer it was replicated from.
 */
origin: string | null, 
/**
 * Whether the desktop app raises a notification for it (the engine's flag, UI-2).
 */
notify: boolean, severity: Severity, 
/**
 * A short heading for a notification or a list.
 */
title: string, 
/**
 * UI-5: the event's stable id, `ORIGIN:N` (the node that raised it and its number there),
 * the same on both servers of a hot-standby pair (`id` is each store's own): what a
 * follower resumes after (`GET /api/events?follow=1&after=KEY`).
 */
key: string, };

export type Events = { events: Array<EventView>, };

export type Severity = "info" | "warning" | "critical";

export type RecordView = { agent: string, agent_id: string, seq: number, pair: string | null, name: string, value: number, time_ms: number, kind: string, detail: string | null, 
/**
 * AG-2: set on a standby server that stored the record for an agent whose home is elsewhere.
 */
taken_for: string | null, 
/**
 * Issue 18 item 3: the record's labels; left out when it has none.
 */
labels?: { [key in string]: string }, };

export type Records = { records: Array<RecordView>, };

export type AlertSummary = { pending: number, failing: number, failed: number, };

export type Alerts = { alerts: Array<AlertView>, };

export type AlertView = { id: string, event_id: number, time_ms: number, code: string, severity: Severity, subject: string, sentence: string, deliveries: Array<DeliveryView>, };

export type DeliveryView = { channel: string, state: string, attempts: number, last_error?: string, };

export type ChannelSpec = { 
/**
 * (Absent: refused by [`ChannelSpec::validate`]; an edit takes it from its path.)
 */
name: string, 
/**
 * `webhook`, `ntfy`, `email`, `command`, or `desktop` (AL-7: a notification on the
 * desktop of the acting server's tray app). (Absent: refused by `add`; an edit keeps the
 * stored kind.)
 */
kind: string, 
/**
 * webhook and ntfy: where to POST (`http://` or `https://`).
 */
url?: string, 
/**
 * email: the recipients.
 */
to?: Array<string>, 
/**
 * email: the sender (default `understudy@localhost`).
 */
from?: string, 
/**
 * email: `smtp://[USER:PASSWORD@]HOST[:PORT]` with STARTTLS (port 587),
 * `smtps://…` with TLS from the start (465), or `smtp://…?tls=none` in the clear (25).
 */
smtp?: string, 
/**
 * webhook: the HMAC-SHA256 key of `X-Understudy-Signature`.
 */
secret?: string, 
/**
 * ntfy: the access token (`Authorization: Bearer`).
 */
token?: string, 
/**
 * webhook, ntfy and email: certificate authorities (PEM) trusted for this channel's TLS
 * besides the system's, for a receiver with a private CA (`--ca FILE`: the file's content,
 * kept and replicated with the channel, so the STANDBY needs no copy of the file).
 */
ca?: string, 
/**
 * command: the program and its arguments; the message JSON on its stdin.
 */
argv?: Array<string>, 
/**
 * How long one delivery may take (default [`CHANNEL_TIMEOUT`]).
 */
timeout?: string, 
/**
 * Filter: only these event codes (empty: every code that alerts).
 */
codes?: Array<string>, 
/**
 * Filter: only alerts at least this severe.
 */
min_severity?: Severity, };

export type Channels = { channels: Array<ChannelSpec>, };

export type ChannelEdit = { 
/**
 * Stored settings to remove rather than keep.
 */
clear?: Array<KeptSetting>, 
/**
 * (Absent: refused by [`ChannelSpec::validate`]; an edit takes it from its path.)
 */
name: string, 
/**
 * `webhook`, `ntfy`, `email`, `command`, or `desktop` (AL-7: a notification on the
 * desktop of the acting server's tray app). (Absent: refused by `add`; an edit keeps the
 * stored kind.)
 */
kind: string, 
/**
 * webhook and ntfy: where to POST (`http://` or `https://`).
 */
url?: string, 
/**
 * email: the recipients.
 */
to?: Array<string>, 
/**
 * email: the sender (default `understudy@localhost`).
 */
from?: string, 
/**
 * email: `smtp://[USER:PASSWORD@]HOST[:PORT]` with STARTTLS (port 587),
 * `smtps://…` with TLS from the start (465), or `smtp://…?tls=none` in the clear (25).
 */
smtp?: string, 
/**
 * webhook: the HMAC-SHA256 key of `X-Understudy-Signature`.
 */
secret?: string, 
/**
 * ntfy: the access token (`Authorization: Bearer`).
 */
token?: string, 
/**
 * webhook, ntfy and email: certificate authorities (PEM) trusted for this channel's TLS
 * besides the system's, for a receiver with a private CA (`--ca FILE`: the file's content,
 * kept and replicated with the channel, so the STANDBY needs no copy of the file).
 */
ca?: string, 
/**
 * command: the program and its arguments; the message JSON on its stdin.
 */
argv?: Array<string>, 
/**
 * How long one delivery may take (default [`CHANNEL_TIMEOUT`]).
 */
timeout?: string, 
/**
 * Filter: only these event codes (empty: every code that alerts).
 */
codes?: Array<string>, 
/**
 * Filter: only alerts at least this severe.
 */
min_severity?: Severity, };

export type KeptSetting = "secret" | "token" | "ca";

export type CertInfo = { fingerprint: string, sans: Array<string>, not_after: string, };

export type Settings = { "ui.notifications": boolean, };

export type Done = { ok: boolean, message: string, };

export type Refusal = { kind: RefusalKind, error: string, };

export type RefusalKind = "invalid" | "unauthorized" | "forbidden" | "not_found" | "conflict" | "failed" | "unavailable" | "full";

export type PairSpec = { name: string, primary: string, secondary: string, failover_after?: string, switchback?: Switchback | null, hold_down?: string, };

export type RoleSpec = { server?: boolean | null, agent?: boolean | null, 
/**
 * `off`, `primary` or `secondary` (HS-1).
 */
failover?: string | null, };

export type CertRequest = { ips: Array<string>, dns: Array<string>, };

export type NewRecord = { name: string, value: number, time_ms?: number | null, pair?: string | null, kind?: string | null, detail?: string | null, 
/**
 * Issue 18 item 3: the record's labels (a sample's Prometheus labels), checked by
 * [`check_labels`]; none by default.
 */
labels?: { [key in string]: string }, };

export type CheckPoint = { time_ms: number, min: number, max: number, mean: number, runs: number, failed: number, };

export type Span = { from_ms: number, to_ms: number, };

export type CheckSeries = { name: string, from_ms: number, to_ms: number, 
/**
 * The width of a bucket.
 */
step_ms: number, points: Array<CheckPoint>, down: Array<Span>, };

export type HeldSpan = { 
/**
 * The agent's name.
 */
member: string, from_ms: number, to_ms: number, 
/**
 * Records it stored for the pair in the period.
 */
records: number, };

export type PairSeries = { name: string, primary: string, secondary: string, from_ms: number, to_ms: number, step_ms: number, held: Array<HeldSpan>, handovers: Array<EventView>, };

export type RoleSpan = { role: string, from_ms: number, to_ms: number, };

export type ServerRoles = { server: string, spans: Array<RoleSpan>, };

export type RoleSeries = { from_ms: number, to_ms: number, servers: Array<ServerRoles>, events: Array<EventView>, };

export type RatePoint = { time_ms: number, records: number, per_second: number, };

export type RecordSeries = { from_ms: number, to_ms: number, step_ms: number, points: Array<RatePoint>, };

export type Permission = "read" | "operate" | "admin";

export type TokenKind = "operator" | "admin" | "agent" | "peer";

export type InviteSpec = { kind: TokenKind, label?: string | null, address?: string | null, 
/**
 * `--agent --uses N`: enrollments this token allows (default 1).
 */
uses?: number | null, };

export type Invited = { id: string, invitation: string, };

export type InvitationView = { id: string, label: string, kind: TokenKind, created_ms: number, 
/**
 * When a request last presented it to the server answering this list (each server keeps
 * its own; `None`: never there).
 */
last_used_ms: number | null, 
/**
 * Agent tokens: enrollments left.
 */
uses_left?: number | null, };

export type Invitations = { invitations: Array<InvitationView>, };

export type PeerJoin = { name: string, url: string, };
