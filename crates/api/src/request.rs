//! What a shell may ask a node: one [`Request`] per operation of PRODUCT.md §3, and the one
//! route table ([`ROUTES`]) that maps a request to `(method, path, body)` for the client and back
//! for the server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use crate::channel::{ChannelEdit, ChannelSpec};
use crate::defaults;
use crate::invite::{InviteSpec, PeerJoin, Permission};
use crate::refusal::Refusal;
use crate::series::Window;

/// One operation of the admin API.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `status`: this node, its link, servers, pairs, agents, checks, peer.
    Status,
    /// `pair list`.
    Pairs,
    /// `pair add` (PR-1).
    PutPair(PairSpec),
    RemovePair {
        name: String,
    },
    /// `pair force-failover` (PR-5).
    ForceFailover {
        name: String,
    },
    /// `pair revert` (PR-5).
    Revert {
        name: String,
    },
    /// `agent list`.
    Agents,
    /// `agent accept` (AG-9).
    AcceptAgent {
        name: String,
    },
    RejectAgent {
        name: String,
    },
    /// `agent forget`: an agent removed from the registry.
    ForgetAgent {
        name: String,
    },
    /// `agent recall` (AG-6).
    RecallAgent {
        name: String,
    },
    /// `ha standby` (HS-5).
    HaStandby,
    /// `role set` (HS-7).
    SetRole(RoleSpec),
    /// `check list`.
    Checks,
    /// `check add` (CK-1, CK-2).
    PutCheck(CheckSpec),
    RemoveCheck {
        name: String,
    },
    /// `records`.
    Records(RecordQuery),
    /// `events`.
    Events(EventQuery),
    /// `alert list` (AL-1, AL-5): alerts and their delivery per channel.
    Alerts(AlertQuery),
    /// `alert channel list` (AL-4).
    Channels,
    /// `alert channel add` (AL-4).
    PutChannel(ChannelSpec),
    /// `alert channel edit` (AL-4): new settings for a channel, its secrets kept unless given
    /// or cleared, its queued deliveries kept ([`ChannelEdit`]).
    EditChannel(ChannelEdit),
    /// `alert channel remove`.
    RemoveChannel {
        name: String,
    },
    /// `alert channel test`: one test message sent to the channel now.
    TestChannel {
        name: String,
    },
    /// `cert show`.
    Cert,
    /// `cert generate` (CT-1).
    GenerateCert(CertRequest),
    /// `send`: records handed to the local agent (AG-2).
    Send {
        records: Vec<NewRecord>,
    },
    /// CT-2: accept a server certificate seen on first contact.
    Trust {
        fingerprint: String,
    },
    /// The desktop app's settings.
    Settings,
    SetSettings {
        notifications: bool,
    },
    /// MX-3: a check's values over time with its down periods.
    CheckSeries {
        name: String,
        window: Window,
    },
    /// MX-3: which member of a pair held the duty over time, with its handovers.
    PairSeries {
        name: String,
        window: Window,
    },
    /// MX-3: each hot-standby server's ACTIVE/STANDBY history.
    RoleSeries(Window),
    /// MX-3: records stored per second.
    RecordSeries(Window),
    /// `invite` (UI-5): a new token and the one-line invitation carrying it.
    Invite(InviteSpec),
    /// `invite list`: the tokens, never their secrets.
    Invitations,
    /// `invite revoke ID`.
    RevokeInvitation {
        name: String,
    },
    /// `init --join` of a `--peer` invitation: the joining server becomes this one's
    /// hot-standby peer (UI-5, issue 14 item 3).
    JoinPeer(PeerJoin),
}

/// Which operation, without its arguments: the key of the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Status,
    Pairs,
    PutPair,
    RemovePair,
    ForceFailover,
    Revert,
    Agents,
    AcceptAgent,
    RejectAgent,
    ForgetAgent,
    RecallAgent,
    HaStandby,
    SetRole,
    Checks,
    PutCheck,
    RemoveCheck,
    Records,
    Events,
    Alerts,
    Channels,
    PutChannel,
    EditChannel,
    RemoveChannel,
    TestChannel,
    Cert,
    GenerateCert,
    Send,
    Trust,
    Settings,
    SetSettings,
    CheckSeries,
    PairSeries,
    RoleSeries,
    RecordSeries,
    Invite,
    Invitations,
    RevokeInvitation,
    JoinPeer,
}

/// The route table: `(method, path, operation)`; `{name}` is the one path parameter.
pub const ROUTES: &[(&str, &str, Op)] = &[
    ("GET", "/api/status", Op::Status),
    ("GET", "/api/pairs", Op::Pairs),
    ("POST", "/api/pairs", Op::PutPair),
    ("DELETE", "/api/pairs/{name}", Op::RemovePair),
    (
        "POST",
        "/api/pairs/{name}/force-failover",
        Op::ForceFailover,
    ),
    ("POST", "/api/pairs/{name}/revert", Op::Revert),
    ("GET", "/api/agents", Op::Agents),
    ("POST", "/api/agents/{name}/accept", Op::AcceptAgent),
    ("POST", "/api/agents/{name}/reject", Op::RejectAgent),
    ("POST", "/api/agents/{name}/forget", Op::ForgetAgent),
    ("POST", "/api/agents/{name}/recall", Op::RecallAgent),
    ("POST", "/api/ha/standby", Op::HaStandby),
    ("POST", "/api/role", Op::SetRole),
    ("GET", "/api/checks", Op::Checks),
    ("POST", "/api/checks", Op::PutCheck),
    ("DELETE", "/api/checks/{name}", Op::RemoveCheck),
    ("GET", "/api/records", Op::Records),
    ("GET", "/api/events", Op::Events),
    ("GET", "/api/alerts", Op::Alerts),
    ("GET", "/api/alerts/channels", Op::Channels),
    ("POST", "/api/alerts/channels", Op::PutChannel),
    ("PUT", "/api/alerts/channels/{name}", Op::EditChannel),
    ("DELETE", "/api/alerts/channels/{name}", Op::RemoveChannel),
    ("POST", "/api/alerts/channels/{name}/test", Op::TestChannel),
    ("GET", "/api/cert", Op::Cert),
    ("POST", "/api/cert/generate", Op::GenerateCert),
    ("POST", "/api/send", Op::Send),
    ("POST", "/api/link/trust", Op::Trust),
    ("GET", "/api/settings", Op::Settings),
    ("POST", "/api/settings", Op::SetSettings),
    ("GET", "/api/series/check/{name}", Op::CheckSeries),
    ("GET", "/api/series/pair/{name}", Op::PairSeries),
    ("GET", "/api/series/roles", Op::RoleSeries),
    ("GET", "/api/series/records", Op::RecordSeries),
    ("POST", "/api/invitations", Op::Invite),
    ("GET", "/api/invitations", Op::Invitations),
    ("DELETE", "/api/invitations/{name}", Op::RevokeInvitation),
    ("POST", "/api/invitations/peer", Op::JoinPeer),
];

/// A request as HTTP: what the client sends.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCall {
    pub method: &'static str,
    /// Path and query, encoded.
    pub path: String,
    pub body: Option<Value>,
}

/// `pair add`: what an operator gives; the node fills in the defaults.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairSpec {
    pub name: String,
    pub primary: String,
    pub secondary: String,
    #[cfg_attr(feature = "ts", ts(type = "string", optional))]
    #[serde(
        default,
        with = "crate::duration::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub failover_after: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchback: Option<Switchback>,
    #[cfg_attr(feature = "ts", ts(type = "string", optional))]
    #[serde(
        default,
        with = "crate::duration::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub hold_down: Option<Duration>,
}

impl PairSpec {
    pub fn failover_after(&self) -> Duration {
        self.failover_after.unwrap_or(defaults::PAIR_FAILOVER_AFTER)
    }
    pub fn hold_down(&self) -> Duration {
        self.hold_down.unwrap_or(defaults::PAIR_HOLD_DOWN)
    }
}

/// PR-1's switchback policy.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switchback {
    Auto,
    Manual,
}

/// `role set`: only the given roles change.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleSpec {
    #[serde(
        default,
        deserialize_with = "on_off",
        skip_serializing_if = "Option::is_none"
    )]
    pub server: Option<bool>,
    #[serde(
        default,
        deserialize_with = "on_off",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent: Option<bool>,
    /// `off`, `primary` or `secondary` (HS-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
}

/// `true`/`false` or `"on"`/`"off"`.
fn on_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s == "on" => Ok(Some(true)),
        Some(Value::String(s)) if s == "off" => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "must be on or off, not {other}"
        ))),
    }
}

/// A check definition (CK-1), as given and as listed; fields this version does not know are
/// kept as they came (`more`).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    pub kind: String,
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    pub target: Value,
    #[cfg_attr(feature = "ts", ts(type = "string", optional))]
    #[serde(
        default,
        with = "crate::duration::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    #[cfg_attr(feature = "ts", ts(type = "string", optional))]
    #[serde(
        default,
        with = "crate::duration::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<String>,
    /// AL-2: DOWN after this many failed runs in a row (default
    /// [`crate::defaults::CHECK_FAIL_AFTER`]).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_after: Option<u32>,
    /// AL-2: UP again after this many good runs in a row (default
    /// [`crate::defaults::CHECK_OK_AFTER`]).
    #[cfg_attr(feature = "ts", ts(optional))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_after: Option<u32>,
    #[serde(flatten)]
    #[cfg_attr(feature = "ts", ts(skip))]
    pub more: Map<String, Value>,
}

/// `records` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordQuery {
    pub agent: Option<String>,
    pub pair: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<usize>,
}

/// `alert list` filters: only alerts with a delivery still pending; the newest `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub pending: bool,
    pub limit: Option<usize>,
}

/// `events` filters: after event `since` (an id), not before `since_ms`, of `code`. With
/// `follow` (UI-5) the answer waits (long polling, up to [`defaults::EVENTS_FOLLOW_WAIT`]) for
/// events after `after`, an event's stable [`key`](crate::EventView::key) (`ORIGIN:N`), which
/// both servers of a hot-standby pair understand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub follow: bool,
    pub after: Option<String>,
    pub since: u64,
    pub since_ms: i64,
    pub code: Option<String>,
    pub limit: Option<usize>,
}

/// `cert generate`: extra addresses and names for the certificate.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CertRequest {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
}

/// One record handed to the local agent.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Issue 18 item 3: the record's labels (a sample's Prometheus labels), checked by
    /// [`check_labels`]; none by default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "ts", ts(as = "Option<BTreeMap<String, String>>", optional))]
    pub labels: BTreeMap<String, String>,
}

/// Label names a record may not carry: the metric's name and the labels a forwarded sample gets
/// from the record itself (MX-2).
pub const RESERVED_LABELS: &[&str] = &["__name__", "agent", "pair"];

/// Issue 18 item 3: whether `labels` may go on a record: at most [`defaults::LABELS_MAX`], each
/// name a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, at most [`defaults::LABEL_NAME_MAX`]
/// bytes) other than the [`RESERVED_LABELS`], each value at most [`defaults::LABEL_VALUE_MAX`]
/// bytes. The error says which label and why.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > defaults::LABELS_MAX {
        return Err(format!(
            "{} labels; a record carries at most {}",
            labels.len(),
            defaults::LABELS_MAX
        ));
    }
    for (name, value) in labels {
        let shown: String = name.chars().take(40).collect();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "the label name `{shown}` is not [a-zA-Z_][a-zA-Z0-9_]*"
            ));
        }
        if name.len() > defaults::LABEL_NAME_MAX {
            return Err(format!(
                "the label name `{shown}…` is longer than {} bytes",
                defaults::LABEL_NAME_MAX
            ));
        }
        if RESERVED_LABELS.contains(&name.as_str()) {
            return Err(format!(
                "the label name `{name}` is reserved (a record's name, agent and pair are its own)"
            ));
        }
        if value.len() > defaults::LABEL_VALUE_MAX {
            return Err(format!(
                "the value of label `{name}` is longer than {} bytes",
                defaults::LABEL_VALUE_MAX
            ));
        }
    }
    Ok(())
}

impl Request {
    pub fn op(&self) -> Op {
        match self {
            Request::Status => Op::Status,
            Request::Pairs => Op::Pairs,
            Request::PutPair(_) => Op::PutPair,
            Request::RemovePair { .. } => Op::RemovePair,
            Request::ForceFailover { .. } => Op::ForceFailover,
            Request::Revert { .. } => Op::Revert,
            Request::Agents => Op::Agents,
            Request::AcceptAgent { .. } => Op::AcceptAgent,
            Request::RejectAgent { .. } => Op::RejectAgent,
            Request::ForgetAgent { .. } => Op::ForgetAgent,
            Request::RecallAgent { .. } => Op::RecallAgent,
            Request::HaStandby => Op::HaStandby,
            Request::SetRole(_) => Op::SetRole,
            Request::Checks => Op::Checks,
            Request::PutCheck(_) => Op::PutCheck,
            Request::RemoveCheck { .. } => Op::RemoveCheck,
            Request::Records(_) => Op::Records,
            Request::Events(_) => Op::Events,
            Request::Alerts(_) => Op::Alerts,
            Request::Channels => Op::Channels,
            Request::PutChannel(_) => Op::PutChannel,
            Request::EditChannel(_) => Op::EditChannel,
            Request::RemoveChannel { .. } => Op::RemoveChannel,
            Request::TestChannel { .. } => Op::TestChannel,
            Request::Cert => Op::Cert,
            Request::GenerateCert(_) => Op::GenerateCert,
            Request::Send { .. } => Op::Send,
            Request::Trust { .. } => Op::Trust,
            Request::Settings => Op::Settings,
            Request::SetSettings { .. } => Op::SetSettings,
            Request::CheckSeries { .. } => Op::CheckSeries,
            Request::PairSeries { .. } => Op::PairSeries,
            Request::RoleSeries(_) => Op::RoleSeries,
            Request::RecordSeries(_) => Op::RecordSeries,
            Request::Invite(_) => Op::Invite,
            Request::Invitations => Op::Invitations,
            Request::RevokeInvitation { .. } => Op::RevokeInvitation,
            Request::JoinPeer(_) => Op::JoinPeer,
        }
    }

    /// UI-5: the one place that says what each request needs of its credential. The node's own
    /// admin token has [`Permission::Admin`]; an operator token [`Permission::Operate`].
    pub fn needs(&self) -> Permission {
        match self {
            // What a watcher reads.
            Request::Status
            | Request::Pairs
            | Request::Agents
            | Request::Checks
            | Request::Records(_)
            | Request::Events(_)
            | Request::Alerts(_)
            | Request::Channels
            | Request::Cert
            | Request::Settings
            | Request::CheckSeries { .. }
            | Request::PairSeries { .. }
            | Request::RoleSeries(_)
            | Request::RecordSeries(_) => Permission::Read,
            // The operator actions of PR-5, AG-6, AG-9 and HS-5.
            Request::ForceFailover { .. }
            | Request::Revert { .. }
            | Request::RecallAgent { .. }
            | Request::AcceptAgent { .. }
            | Request::RejectAgent { .. }
            | Request::HaStandby => Permission::Operate,
            // Roles, certificates, tokens, site configuration and this node's own settings.
            Request::PutPair(_)
            | Request::RemovePair { .. }
            | Request::ForgetAgent { .. }
            | Request::SetRole(_)
            | Request::PutCheck(_)
            | Request::RemoveCheck { .. }
            | Request::PutChannel(_)
            | Request::EditChannel(_)
            | Request::RemoveChannel { .. }
            | Request::TestChannel { .. }
            | Request::GenerateCert(_)
            | Request::Send { .. }
            | Request::Trust { .. }
            | Request::SetSettings { .. }
            | Request::Invite(_)
            | Request::Invitations
            | Request::RevokeInvitation { .. }
            | Request::JoinPeer(_) => Permission::Admin,
        }
    }

    /// The request as the client sends it (through [`ROUTES`]).
    pub fn to_http(&self) -> HttpCall {
        let op = self.op();
        let (method, pattern) = ROUTES
            .iter()
            .find(|(_, _, o)| *o == op)
            .map(|(m, p, _)| (*m, *p))
            .unwrap_or(("GET", "/api/status"));
        let name = match self {
            Request::RemovePair { name }
            | Request::ForceFailover { name }
            | Request::Revert { name }
            | Request::AcceptAgent { name }
            | Request::RejectAgent { name }
            | Request::ForgetAgent { name }
            | Request::RecallAgent { name }
            | Request::RemoveCheck { name }
            | Request::RemoveChannel { name }
            | Request::TestChannel { name }
            | Request::RevokeInvitation { name }
            | Request::CheckSeries { name, .. }
            | Request::PairSeries { name, .. } => encode(name),
            Request::EditChannel(edit) => encode(&edit.channel.name),
            _ => String::new(),
        };
        let mut path = pattern.replace("{name}", &name);
        let query: Vec<(&str, String)> = match self {
            Request::Records(q) => [
                ("agent", q.agent.clone()),
                ("pair", q.pair.clone()),
                ("kind", q.kind.clone()),
                ("limit", q.limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
            Request::Alerts(q) => [
                ("pending", q.pending.then(|| "true".to_string())),
                ("limit", q.limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
            Request::Events(q) => [
                ("follow", q.follow.then(|| "1".to_string())),
                ("after", q.after.clone()),
                ("since", (q.since > 0).then(|| q.since.to_string())),
                ("since_ms", (q.since_ms > 0).then(|| q.since_ms.to_string())),
                ("code", q.code.clone()),
                ("limit", q.limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
            Request::CheckSeries { window, .. }
            | Request::PairSeries { window, .. }
            | Request::RoleSeries(window)
            | Request::RecordSeries(window) => window.query(),
            _ => Vec::new(),
        };
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            path = format!("{path}?{}", q.join("&"));
        }
        let to = |v: &dyn erased::Ser| v.value();
        let body = match self {
            Request::PutPair(p) => Some(to(p)),
            Request::SetRole(r) => Some(to(r)),
            Request::PutCheck(c) => Some(to(c)),
            Request::PutChannel(c) => Some(to(c)),
            Request::EditChannel(e) => Some(to(e)),
            Request::GenerateCert(c) => Some(to(c)),
            Request::Invite(i) => Some(to(i)),
            Request::JoinPeer(j) => Some(to(j)),
            Request::Send { records } => Some(json!({ "records": to(records) })),
            Request::Trust { fingerprint } => Some(json!({ "fingerprint": fingerprint })),
            Request::SetSettings { notifications } => {
                Some(json!({ "ui.notifications": notifications }))
            }
            _ if method == "POST" => Some(json!({})),
            _ => None,
        };
        HttpCall { method, path, body }
    }

    /// The request a server received, through [`ROUTES`]: an unknown route is `NotFound`, a
    /// body or query that does not fit is `Invalid`.
    pub fn from_http(method: &str, path: &str, body: Option<Value>) -> Result<Request, Refusal> {
        let (route, query) = split_query(path);
        let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
        let matched = ROUTES.iter().find_map(|(m, pattern, op)| {
            if *m != method {
                return None;
            }
            let parts: Vec<&str> = pattern.trim_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut name = None;
            for (p, s) in parts.iter().zip(&segments) {
                if *p == "{name}" {
                    name = Some(percent_decode_path(s));
                } else if p != s {
                    return None;
                }
            }
            Some((*op, name.unwrap_or_default()))
        });
        let Some((op, name)) = matched else {
            return Err(Refusal::not_found(format!(
                "no such request: {method} {route}"
            )));
        };
        let param = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let number = |key: &str| -> Result<Option<usize>, Refusal> {
            param(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| Refusal::invalid(format!("{key} must be a number")))
                })
                .transpose()
        };
        fn body_of<T: serde::de::DeserializeOwned>(
            body: Option<Value>,
            what: &str,
        ) -> Result<T, Refusal> {
            serde_json::from_value(body.unwrap_or_else(|| json!({})))
                .map_err(|e| Refusal::invalid(format!("{what}: {e}")))
        }
        Ok(match op {
            Op::Status => Request::Status,
            Op::Pairs => Request::Pairs,
            Op::PutPair => Request::PutPair(body_of(body, "a pair definition")?),
            Op::RemovePair => Request::RemovePair { name },
            Op::ForceFailover => Request::ForceFailover { name },
            Op::Revert => Request::Revert { name },
            Op::Agents => Request::Agents,
            Op::AcceptAgent => Request::AcceptAgent { name },
            Op::RejectAgent => Request::RejectAgent { name },
            Op::ForgetAgent => Request::ForgetAgent { name },
            Op::RecallAgent => Request::RecallAgent { name },
            Op::HaStandby => Request::HaStandby,
            Op::SetRole => Request::SetRole(body_of(body, "a role change")?),
            Op::Checks => Request::Checks,
            Op::PutCheck => Request::PutCheck(body_of(body, "a check definition")?),
            Op::RemoveCheck => Request::RemoveCheck { name },
            Op::Records => Request::Records(RecordQuery {
                agent: param("agent"),
                pair: param("pair"),
                kind: param("kind"),
                limit: number("limit")?,
            }),
            Op::Alerts => Request::Alerts(AlertQuery {
                pending: match param("pending").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(Refusal::invalid(format!(
                            "pending must be true or false, not {other}"
                        )))
                    }
                },
                limit: number("limit")?,
            }),
            Op::Channels => Request::Channels,
            Op::PutChannel => Request::PutChannel(body_of(body, "a channel definition")?),
            Op::EditChannel => {
                let mut edit: ChannelEdit = body_of(body, "a channel's new settings")?;
                if edit.channel.name.is_empty() {
                    edit.channel.name = name;
                } else if edit.channel.name != name {
                    return Err(Refusal::invalid(format!(
                        "the body names channel {:?}, the path {name:?}: an edit does not rename",
                        edit.channel.name
                    )));
                }
                Request::EditChannel(edit)
            }
            Op::RemoveChannel => Request::RemoveChannel { name },
            Op::TestChannel => Request::TestChannel { name },
            Op::Events => Request::Events(EventQuery {
                follow: match param("follow").as_deref() {
                    None | Some("0") | Some("false") => false,
                    Some("1") | Some("true") => true,
                    Some(other) => {
                        return Err(Refusal::invalid(format!(
                            "follow must be 1 or 0, not {other}"
                        )))
                    }
                },
                after: param("after"),
                since: param("since")
                    .and_then(|s| s.trim_start_matches('#').parse().ok())
                    .unwrap_or(0),
                // A time before 1970 filters nothing, as 0 (no filter) does: kept as 0, so that
                // the request encodes back to itself (found by the admin_request fuzzer).
                since_ms: param("since_ms")
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0)
                    .max(0),
                code: param("code"),
                limit: number("limit")?,
            }),
            Op::Cert => Request::Cert,
            Op::GenerateCert => Request::GenerateCert(body_of(body, "a certificate request")?),
            Op::Send => {
                #[derive(Deserialize)]
                struct Body {
                    records: Vec<NewRecord>,
                }
                let b: Body = body_of(
                    body,
                    "expected {\"records\": [{\"name\": …, \"value\": …}]}",
                )?;
                Request::Send { records: b.records }
            }
            Op::Trust => {
                #[derive(Deserialize)]
                struct Body {
                    fingerprint: String,
                }
                let b: Body = body_of(body, "expected {\"fingerprint\": \"<sha256 hex>\"}")?;
                Request::Trust {
                    fingerprint: b.fingerprint,
                }
            }
            Op::CheckSeries | Op::PairSeries | Op::RoleSeries | Op::RecordSeries => {
                let window = Window::parse(
                    param("from").as_deref(),
                    param("to").as_deref(),
                    param("points").as_deref(),
                )?;
                match op {
                    Op::CheckSeries => Request::CheckSeries { name, window },
                    Op::PairSeries => Request::PairSeries { name, window },
                    Op::RoleSeries => Request::RoleSeries(window),
                    _ => Request::RecordSeries(window),
                }
            }
            Op::Invite => Request::Invite(body_of(body, "an invitation request")?),
            Op::Invitations => Request::Invitations,
            Op::RevokeInvitation => Request::RevokeInvitation { name },
            Op::JoinPeer => Request::JoinPeer(body_of(body, "a peer joining")?),
            Op::Settings => Request::Settings,
            Op::SetSettings => {
                #[derive(Deserialize)]
                struct Body {
                    #[serde(rename = "ui.notifications")]
                    notifications: bool,
                }
                let b: Body = body_of(body, "expected {\"ui.notifications\": true|false}")?;
                Request::SetSettings {
                    notifications: b.notifications,
                }
            }
        })
    }
}

mod erased {
    use serde_json::Value;
    /// Serializes to a JSON value (a body); our types always serialize.
    pub trait Ser {
        fn value(&self) -> Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> Value {
            serde_json::to_value(self).unwrap_or(Value::Null)
        }
    }
}

/// `path?k=v&…` split into the path and its decoded parameters.
pub fn split_query(path: &str) -> (String, Vec<(String, String)>) {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let pairs = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect();
    (p.to_string(), pairs)
}

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path segment: `%XX` decoded, a `+` kept (it means a space only in a query).
fn percent_decode_path(s: &str) -> String {
    percent_decode(&s.replace('+', "%2B"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ck4_labels_are_bounded_named_like_prometheus_and_not_reserved() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(check_labels(&BTreeMap::new()), Ok(()));
        assert_eq!(check_labels(&one("instance", "h1:9100")), Ok(()));
        assert_eq!(check_labels(&one("_x9", "")), Ok(()));
        for bad in ["", "9a", "a-b", "é", "a b", "__name__", "agent", "pair"] {
            assert!(check_labels(&one(bad, "v")).is_err(), "{bad:?}");
        }
        let long = "a".repeat(defaults::LABEL_NAME_MAX + 1);
        assert!(check_labels(&one(&long, "v")).is_err());
        assert!(check_labels(&one("a", &"v".repeat(defaults::LABEL_VALUE_MAX))).is_ok());
        assert!(check_labels(&one("a", &"v".repeat(defaults::LABEL_VALUE_MAX + 1))).is_err());
        let many: BTreeMap<String, String> = (0..=defaults::LABELS_MAX)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let err = check_labels(&many).expect_err("too many");
        assert!(err.contains("at most 32"), "{err}");
    }

    use super::*;

    fn every_request() -> Vec<Request> {
        let name = "web a/b".to_string();
        vec![
            Request::Status,
            Request::Pairs,
            Request::PutPair(PairSpec {
                name: "web".into(),
                primary: "p".into(),
                secondary: "s".into(),
                failover_after: Some(Duration::from_millis(500)),
                switchback: Some(Switchback::Manual),
                hold_down: None,
            }),
            Request::RemovePair { name: name.clone() },
            Request::ForceFailover { name: name.clone() },
            Request::Revert { name: name.clone() },
            Request::Agents,
            Request::AcceptAgent { name: name.clone() },
            Request::RejectAgent { name: name.clone() },
            Request::ForgetAgent { name: name.clone() },
            Request::RecallAgent { name: name.clone() },
            Request::HaStandby,
            Request::SetRole(RoleSpec {
                server: Some(true),
                agent: None,
                failover: Some("primary".into()),
            }),
            Request::Checks,
            Request::PutCheck(CheckSpec {
                name: "db".into(),
                kind: "tcp".into(),
                target: json!("10.0.0.5:5432"),
                every: Some(Duration::from_secs(2)),
                pair: Some("web".into()),
                ..CheckSpec::default()
            }),
            Request::RemoveCheck { name: name.clone() },
            Request::Records(RecordQuery {
                agent: Some("a 1".into()),
                limit: Some(5),
                ..RecordQuery::default()
            }),
            Request::Alerts(AlertQuery {
                pending: true,
                limit: Some(3),
            }),
            Request::Channels,
            Request::PutChannel(ChannelSpec {
                name: "hook".into(),
                kind: "webhook".into(),
                url: Some("http://127.0.0.1:9/a?b=c".into()),
                secret: Some("s".into()),
                timeout: Some(Duration::from_secs(3)),
                codes: vec!["CHECK_DOWN".into()],
                min_severity: Some(crate::Severity::Warning),
                ..ChannelSpec::default()
            }),
            Request::EditChannel(ChannelEdit {
                channel: ChannelSpec {
                    name: "mail a/b".into(),
                    to: vec!["ops@example.org".into()],
                    smtp: Some("smtps://ops:set@mail.example.org".into()),
                    ..ChannelSpec::default()
                },
                clear: vec![crate::KeptSetting::Ca],
            }),
            Request::RemoveChannel { name: name.clone() },
            Request::TestChannel { name: name.clone() },
            Request::Events(EventQuery {
                follow: true,
                after: Some("8d1f-node:12".into()),
                since: 7,
                code: Some("FAILOVER".into()),
                ..EventQuery::default()
            }),
            Request::Cert,
            Request::GenerateCert(CertRequest {
                ips: vec!["10.0.0.1".into()],
                dns: vec![],
            }),
            Request::Send {
                records: vec![NewRecord {
                    name: "cpu".into(),
                    value: 0.5,
                    time_ms: None,
                    pair: None,
                    kind: None,
                    detail: None,
                    labels: BTreeMap::from([("host".into(), "a".into())]),
                }],
            },
            Request::Trust {
                fingerprint: "ab".into(),
            },
            Request::Settings,
            Request::SetSettings {
                notifications: false,
            },
            Request::CheckSeries {
                name: name.clone(),
                window: Window {
                    from_ms: Some(1_000),
                    to_ms: Some(605_000_000),
                    points: Some(400),
                },
            },
            Request::PairSeries {
                name: name.clone(),
                window: Window::default(),
            },
            Request::RoleSeries(Window {
                to_ms: Some(7),
                ..Window::default()
            }),
            Request::RecordSeries(Window {
                points: Some(60),
                ..Window::default()
            }),
            Request::Invite(InviteSpec {
                kind: crate::TokenKind::Operator,
                label: Some("laptop a".into()),
                address: None,
                uses: None,
            }),
            Request::Invitations,
            Request::RevokeInvitation {
                name: "0a1b2c3d".into(),
            },
            Request::JoinPeer(PeerJoin {
                name: "s2".into(),
                url: "https://10.0.0.2:7400#ab".into(),
            }),
        ]
    }

    /// UI-5: what each request needs, written out once more as a table: an operator token may
    /// read and carry out the operator actions, never change roles, certificates, tokens or
    /// site configuration.
    #[test]
    fn ui5_each_request_needs_its_permission() {
        use Permission::*;
        let table = [
            (Op::Status, Read),
            (Op::Pairs, Read),
            (Op::PutPair, Admin),
            (Op::RemovePair, Admin),
            (Op::ForceFailover, Operate),
            (Op::Revert, Operate),
            (Op::Agents, Read),
            (Op::AcceptAgent, Operate),
            (Op::RejectAgent, Operate),
            (Op::ForgetAgent, Admin),
            (Op::RecallAgent, Operate),
            (Op::HaStandby, Operate),
            (Op::SetRole, Admin),
            (Op::Checks, Read),
            (Op::PutCheck, Admin),
            (Op::RemoveCheck, Admin),
            (Op::Records, Read),
            (Op::Events, Read),
            (Op::Alerts, Read),
            (Op::Channels, Read),
            (Op::PutChannel, Admin),
            (Op::EditChannel, Admin),
            (Op::RemoveChannel, Admin),
            (Op::TestChannel, Admin),
            (Op::Cert, Read),
            (Op::GenerateCert, Admin),
            (Op::Send, Admin),
            (Op::Trust, Admin),
            (Op::Settings, Read),
            (Op::SetSettings, Admin),
            (Op::CheckSeries, Read),
            (Op::PairSeries, Read),
            (Op::RoleSeries, Read),
            (Op::RecordSeries, Read),
            (Op::Invite, Admin),
            (Op::Invitations, Admin),
            (Op::RevokeInvitation, Admin),
            (Op::JoinPeer, Admin),
        ];
        assert_eq!(table.len(), ROUTES.len(), "one line per route");
        for r in every_request() {
            let want = table
                .iter()
                .find(|(op, _)| *op == r.op())
                .map(|(_, p)| *p)
                .expect("in the table");
            assert_eq!(r.needs(), want, "{:?}", r.op());
            let operator = crate::TokenKind::Operator.grants().expect("operator");
            assert_eq!(operator >= r.needs(), want != Admin, "{:?}", r.op());
        }
    }

    #[test]
    fn every_request_goes_through_the_route_table_and_back() {
        let all = every_request();
        assert_eq!(all.len(), ROUTES.len(), "one example per route");
        for r in all {
            let call = r.to_http();
            let back = Request::from_http(call.method, &call.path, call.body.clone());
            assert_eq!(back.as_ref(), Ok(&r), "{call:?}");
        }
    }

    /// Found by the admin_request fuzzer (2026-12-02): `since_ms=-077` was routed with
    /// since_ms -77, which encodes as no filter at all, so the request did not encode back to
    /// itself. A time before 1970 filters nothing: it is read as 0.
    #[test]
    fn events_since_a_negative_time_is_no_filter_and_encodes_back() {
        let r = Request::from_http("GET", "api/events?since_ms=-077", None).unwrap();
        assert_eq!(r, Request::Events(EventQuery::default()));
        let call = r.to_http();
        assert_eq!(call.path, "/api/events");
        assert_eq!(Request::from_http(call.method, &call.path, None), Ok(r));
        let r = Request::from_http("GET", "/api/events?since_ms=1700000000000", None).unwrap();
        let Request::Events(q) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(q.since_ms, 1_700_000_000_000);
        assert_eq!(Request::from_http("GET", &r.to_http().path, None), Ok(r));
    }

    #[test]
    fn unknown_routes_are_not_found_and_bad_bodies_invalid() {
        use crate::RefusalKind;
        let e = Request::from_http("GET", "/api/nope", None).unwrap_err();
        assert_eq!(e.kind, RefusalKind::NotFound);
        assert_eq!(e.reason, "no such request: GET /api/nope");
        let e = Request::from_http("POST", "/api/pairs", Some(json!({"name": "x"}))).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Invalid);
        let e = Request::from_http(
            "POST",
            "/api/pairs",
            Some(json!({"name": "x", "primary": "a", "secondary": "b", "failover_after": "5"})),
        )
        .unwrap_err();
        assert!(e.reason.contains("no unit"), "{}", e.reason);
        let e = Request::from_http("GET", "/api/records?limit=x", None).unwrap_err();
        assert_eq!(e.reason, "limit must be a number");
        let e = Request::from_http("GET", "/api/series/check/db?from=10&to=5", None).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Invalid);
        assert_eq!(e.reason, "from (10) must be before to (5)");
        let e = Request::from_http("GET", "/api/series/records?points=0", None).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Invalid);
        let e =
            Request::from_http("POST", "/api/role", Some(json!({"server": "maybe"}))).unwrap_err();
        assert!(e.reason.contains("must be on or off"), "{}", e.reason);
    }

    #[test]
    fn al4_a_channel_edit_takes_its_name_from_the_path_and_does_not_rename() {
        let r = Request::from_http(
            "PUT",
            "/api/alerts/channels/hook",
            Some(json!({"url": "http://h/", "clear": ["secret"]})),
        );
        let Ok(Request::EditChannel(edit)) = r else {
            panic!("{r:?}");
        };
        assert_eq!(edit.channel.name, "hook");
        assert_eq!(edit.channel.kind, "");
        assert_eq!(edit.clear, [crate::KeptSetting::Secret]);
        let e = Request::from_http(
            "PUT",
            "/api/alerts/channels/hook",
            Some(json!({"name": "other", "kind": "webhook"})),
        )
        .unwrap_err();
        assert!(e.reason.contains("does not rename"), "{}", e.reason);
        let e = Request::from_http(
            "PUT",
            "/api/alerts/channels/hook",
            Some(json!({"clear": ["password"]})),
        )
        .unwrap_err();
        assert_eq!(e.kind, crate::RefusalKind::Invalid);
    }

    #[test]
    fn query_strings_are_split_and_decoded() {
        let (p, q) = split_query("/api/records?agent=web%2D1&limit=5&pair=a+b");
        assert_eq!(p, "/api/records");
        assert_eq!(q[0], ("agent".into(), "web-1".into()));
        assert_eq!(q[2], ("pair".into(), "a b".into()));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn path_names_are_percent_decoded_and_a_plus_stays_a_plus() {
        let r = Request::from_http("POST", "/api/agents/web%201/accept", None);
        assert_eq!(
            r,
            Ok(Request::AcceptAgent {
                name: "web 1".into()
            })
        );
        let r = Request::from_http("DELETE", "/api/checks/a%2Fb+c", None);
        assert_eq!(
            r,
            Ok(Request::RemoveCheck {
                name: "a/b+c".into()
            })
        );
    }
}
