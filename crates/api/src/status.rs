//! Typed answers: `status` (PRODUCT.md §3, fields may be added, never renamed) and the small
//! answers of the other requests. A pair carries, for each operator action, what the engine's
//! own guard says now ([`PairStatus::from_engine`]), so a button, its tooltip and the refusal
//! cannot differ.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use understudy_engine::{Instant, Member, Pair, SwitchbackPolicy};

use crate::request::{CheckSpec, Switchback};

/// `GET /api/status`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeView,
    /// The agent role's link to its server; `null` without the agent role.
    pub link: Option<LinkView>,
    /// The agent's servers, home first.
    #[serde(default)]
    pub servers: Vec<ServerView>,
    /// The agent's memberships in pairs, as it holds them.
    #[serde(default)]
    pub members: Vec<MemberView>,
    /// The checks this agent was given (CK-2).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "unknown[]"))]
    pub agent_checks: Vec<Value>,
    #[serde(default)]
    pub pairs: Vec<PairStatus>,
    #[serde(default)]
    pub agents: Vec<AgentView>,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// The outbox at a glance (AL-5): what the tray's "N alert deliveries failing" and the
    /// console's Alerts page show. Zero without the server role.
    #[serde(default)]
    pub alerts: AlertSummary,
    /// MX-2 forwarding to a remote-write receiver; `null` when `forward.remote_write` is not
    /// set or the node has no server role.
    #[serde(default)]
    pub forward: Option<ForwardView>,
}

/// How many deliveries of the outbox are waiting, failing (pending, their last attempt failed:
/// retried with backoff) and failed (given up after `alert.give_up_after`).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSummary {
    pub pending: u64,
    pub failing: u64,
    pub failed: u64,
}

/// MX-2: where the server's records go and how far behind the receiver is.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForwardView {
    /// `forward.remote_write`.
    pub remote_write: String,
    /// The store id of the last record the receiver acknowledged (2xx) or rejected (4xx): the
    /// durable cursor, replicated to the STANDBY.
    pub cursor: u64,
    /// Records stored after the cursor (not yet forwarded).
    pub lag_records: u64,
    /// How old (by its time) the oldest record not yet forwarded is, in seconds; 0 when none.
    pub lag_seconds: f64,
    /// Whether this node forwards now (it is the acting server).
    pub forwarding: bool,
    /// Why the last request failed, while it is being retried.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub listen: String,
    pub roles: Roles,
    pub failover: FailoverView,
    /// Whether this node is the acting server of its site.
    #[serde(default)]
    pub acting: bool,
    #[serde(default)]
    pub cert: Option<CertView>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    pub server: bool,
    pub agent: bool,
}

/// Hot standby (HS-1…HS-6) as this server sees it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverView {
    /// `off`, `primary` or `secondary`.
    pub mode: String,
    /// `active`, `standby`, `starting`, or `stopped` without the server role.
    pub state: String,
    pub epoch: u64,
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_state: Option<String>,
    /// Why the state is what it is (the engine's sentence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_version: Option<u64>,
    /// HS-5 "set this server to standby" (`ha standby`): whether the engine would allow it now
    /// and the sentence it refuses with, a dry run of the guard that decides
    /// (`HotStandby::can_hand_over`).
    pub standby: Action,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    pub fingerprint: String,
}

/// The agent's link (AG-3…AG-6).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkView {
    pub server: Option<String>,
    /// `home`, `standby`, `staged`, `blackout` or `connecting`.
    pub state: String,
    pub cached: u64,
    /// AG-2: records a standby of another site acknowledged, kept until home has them.
    #[serde(default)]
    pub held: u64,
    #[serde(default)]
    pub held_by: Vec<HeldBy>,
    #[serde(default)]
    pub error: Option<String>,
    /// PRODUCT.md §4 "disk full": why this agent's last check results could not be written to
    /// its cache, and since when (none once a write succeeds again). Those runs are lost, as a
    /// run is when the agent is down; nothing acknowledged is.
    #[serde(default)]
    pub cache_error: Option<String>,
    /// Server certificates seen on first contact, waiting for the operator (CT-2).
    #[serde(default)]
    pub untrusted: Vec<Untrusted>,
}

/// Records held by one standby server of another site (AG-2).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBy {
    pub server: String,
    pub records: u64,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Untrusted {
    pub address: String,
    pub fingerprint: String,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub url: Option<String>,
    /// `home` or `standby`.
    pub role: String,
    /// `connected` or `idle`.
    pub state: String,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub pair: String,
    pub epoch: u64,
    pub server_epoch: u64,
    pub active: bool,
}

/// A pair (PR-1…PR-7) as the acting server supervises it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairStatus {
    pub name: String,
    pub primary: String,
    pub secondary: String,
    /// `primary`, `secondary` or `none`.
    pub active: String,
    /// `normal`, `failed-over`, `handing-over`, `degraded`, `blackout` or `waiting`.
    pub state: String,
    pub epoch: u64,
    /// Why the pair is degraded (a hook failed, PR-7).
    #[serde(default)]
    pub degraded: Option<String>,
    pub switchback: Switchback,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    #[serde(with = "crate::duration::text")]
    pub failover_after: Duration,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    #[serde(with = "crate::duration::text")]
    pub hold_down: Duration,
    /// An operator holds the pair on its secondary (PR-5).
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub primary_connected: bool,
    #[serde(default)]
    pub secondary_connected: bool,
    pub actions: PairActions,
}

/// PRODUCT.md §3: for each operator action, whether the engine would allow it now and why not.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairActions {
    pub force_failover: Action,
    pub revert: Action,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub allowed: bool,
    /// Why not: the sentence the engine refuses with. `null` when allowed.
    pub reason: Option<String>,
}

impl From<Result<(), String>> for Action {
    fn from(r: Result<(), String>) -> Action {
        match r {
            Ok(()) => Action {
                allowed: true,
                reason: None,
            },
            Err(reason) => Action {
                allowed: false,
                reason: Some(reason),
            },
        }
    }
}

impl PairStatus {
    /// The pair as the engine holds it at `now`; `actions` is a dry run of the engine's guard.
    pub fn from_engine(p: &Pair, now: Instant) -> PairStatus {
        let (switchback, hold_down) = match p.config().switchback {
            SwitchbackPolicy::Auto { hold_down } => (Switchback::Auto, hold_down),
            SwitchbackPolicy::Manual => (Switchback::Manual, Duration::ZERO),
        };
        PairStatus {
            name: p.name().to_string(),
            primary: p.config().primary.clone(),
            secondary: p.config().secondary.clone(),
            active: p.active().map_or("none", |m| m.as_str()).to_string(),
            state: p.status().to_string(),
            epoch: p.epoch(),
            degraded: p.degraded().map(str::to_string),
            switchback,
            failover_after: p.config().failover_after,
            hold_down,
            held: p.state().held,
            primary_connected: p.is_connected(Member::Primary),
            secondary_connected: p.is_connected(Member::Secondary),
            actions: PairActions {
                force_failover: p.can_force_failover(now).into(),
                revert: p.can_revert(now).into(),
            },
        }
    }

    /// The name of the active member, if any.
    pub fn active_member(&self) -> Option<&str> {
        match self.active.as_str() {
            "primary" => Some(&self.primary),
            "secondary" => Some(&self.secondary),
            _ => None,
        }
    }
}

/// An agent known to this server (AG-9).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub name: String,
    #[serde(default)]
    pub id: String,
    /// `connected`, `disconnected`, `pending` or `rejected`.
    pub state: String,
    /// The server it is connected to, when connected.
    pub server: Option<String>,
    pub pending: bool,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub standby_slot: bool,
}

/// What a request that changes something answers: `{ok, message}` (and, for some, more).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub ok: bool,
    pub message: String,
    #[serde(flatten)]
    #[cfg_attr(feature = "ts", ts(skip))]
    pub more: Map<String, Value>,
}

impl Done {
    pub fn new(message: impl Into<String>) -> Done {
        Done {
            ok: true,
            message: message.into(),
            more: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Done {
        self.more.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
}

/// `GET /api/pairs`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pairs {
    pub pairs: Vec<PairStatus>,
}

/// `GET /api/agents`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agents {
    pub agents: Vec<AgentView>,
}

/// `GET /api/checks`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub checks: Vec<CheckSpec>,
}

/// One stored record (`records --json`), enough for a checker to count every record.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub agent: String,
    pub agent_id: String,
    pub seq: u64,
    pub pair: Option<String>,
    pub name: String,
    pub value: f64,
    pub time_ms: i64,
    pub kind: String,
    pub detail: Option<String>,
    /// AG-2: set on a standby server that stored the record for an agent whose home is elsewhere.
    #[serde(default)]
    pub taken_for: Option<String>,
    /// Issue 18 item 3: the record's labels; left out when it has none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[cfg_attr(
        feature = "ts",
        ts(as = "Option<std::collections::BTreeMap<String, String>>", optional)
    )]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `GET /api/records`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub records: Vec<RecordView>,
}

/// `GET /api/alerts` (`alert list --json`, AL-1, AL-5): the newest alerts, oldest first.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    pub alerts: Vec<AlertView>,
}

/// One alert: its stable id, the event it came with, and its delivery per channel.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub id: String,
    pub event_id: u64,
    pub time_ms: i64,
    pub code: String,
    pub severity: crate::Severity,
    pub subject: String,
    pub sentence: String,
    pub deliveries: Vec<DeliveryView>,
}

/// An alert's delivery to one channel: `pending`, `sent` or `failed` (AL-5).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub channel: String,
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub last_error: Option<String>,
}

/// AL-7: one message to a `desktop` channel, as the acting server's sender grouped and worded it
/// (the same title and text as the other channels' messages), for the tray app to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopMessage {
    /// The message's own UUID.
    pub id: String,
    /// The channel it was sent to.
    pub channel: String,
    /// "CHECK_DOWN: db-ping", or "12 alerts: 11 CHECK_DOWN, 1 FAILOVER".
    pub title: String,
    /// One line per alert, at most 20, then "and N more".
    pub text: String,
    /// The most severe of its alerts.
    pub severity: crate::Severity,
    /// The ids of the alerts it carries.
    pub alerts: Vec<String>,
}

/// `GET /api/cert`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub fingerprint: String,
    pub sans: Vec<String>,
    pub not_after: String,
}

/// `GET /api/settings`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(rename = "ui.notifications")]
    pub notifications: bool,
}
