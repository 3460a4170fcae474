//! Conversions between the engine's values and the documents the store keeps and the wire
//! carries: a pair's stored document, an agent's row, the hot-standby settings, the checks an
//! agent is given. The core and the edges use them; they decide nothing.

use serde_json::{json, Value};
use std::time::Duration;
use understudy_api::CheckSpec;
use understudy_engine as engine;
use understudy_engine::{
    AgentEntry, FailbackPolicy, HotStandbyConfig, Member, PairConfig, PairState, SwitchbackPolicy,
};

use crate::config::{self, Config};
use crate::mailbox::Shared;
use crate::store::{AgentRow, AgentStatus};

pub(crate) fn pair_config_from_doc(name: &str, doc: &Value) -> Option<(PairConfig, PairState)> {
    let dur = |k: &str, d: Duration| {
        doc.get(k)
            .and_then(Value::as_str)
            .and_then(|s| config::parse_duration(s).ok())
            .unwrap_or(d)
    };
    let switchback = match doc.get("switchback").and_then(Value::as_str) {
        Some("manual") => SwitchbackPolicy::Manual,
        _ => SwitchbackPolicy::Auto {
            hold_down: dur("hold_down", understudy_api::defaults::PAIR_HOLD_DOWN),
        },
    };
    let config = PairConfig {
        name: name.to_string(),
        primary: doc.get("primary")?.as_str()?.to_string(),
        secondary: doc.get("secondary")?.as_str()?.to_string(),
        failover_after: dur(
            "failover_after",
            understudy_api::defaults::PAIR_FAILOVER_AFTER,
        ),
        switchback,
    };
    let state = PairState {
        epoch: doc.get("epoch").and_then(Value::as_u64).unwrap_or(0),
        active: match doc.get("active").and_then(Value::as_str) {
            Some("primary") => Some(Member::Primary),
            Some("secondary") => Some(Member::Secondary),
            _ => None,
        },
        held: doc.get("held").and_then(Value::as_bool).unwrap_or(false),
        holders: doc
            .get("holders")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(epoch, m)| {
                let m = match m.as_str()? {
                    "primary" => Member::Primary,
                    "secondary" => Member::Secondary,
                    _ => return None,
                };
                Some((epoch.parse().ok()?, m))
            })
            .collect(),
    };
    Some((config, state))
}

pub(crate) fn pair_doc(config: &PairConfig, state: &PairState) -> Value {
    let (switchback, hold_down) = match config.switchback {
        SwitchbackPolicy::Auto { hold_down } => ("auto", config::format_duration(hold_down)),
        SwitchbackPolicy::Manual => ("manual", "0s".to_string()),
    };
    json!({
        "primary": config.primary, "secondary": config.secondary,
        "failover_after": config::format_duration(config.failover_after),
        "switchback": switchback, "hold_down": hold_down,
        "epoch": state.epoch, "active": state.active.map(|m| m.as_str()), "held": state.held,
        "holders": state.holders.iter().map(|(e, m)| (e.to_string(), Value::from(m.as_str()))).collect::<serde_json::Map<String, Value>>(),
    })
}

pub(crate) fn agent_entry(row: &AgentRow) -> AgentEntry {
    AgentEntry {
        id: row.id.clone(),
        name: row.name.clone(),
        fingerprint: row.fingerprint.clone(),
        status: match row.status {
            AgentStatus::Pending => engine::AgentStatus::Pending,
            AgentStatus::Accepted => engine::AgentStatus::Accepted,
            AgentStatus::Rejected => engine::AgentStatus::Rejected,
        },
        home: row.home,
        announced: row.announced.clone(),
    }
}

/// `server.silent_after` and `alert.group_wait`, as the engine's watch takes them.
pub(crate) fn watch_config(config: &Config) -> understudy_engine::WatchConfig {
    understudy_engine::WatchConfig {
        silent_after: config.server.silent_after,
        group_wait: config.alert.group_wait,
    }
}

pub(crate) fn ha_config(config: &Config) -> HotStandbyConfig {
    HotStandbyConfig {
        name: config.node.name.clone(),
        mode: match config.failover.mode {
            config::FailoverMode::Off => engine::FailoverMode::Off,
            config::FailoverMode::Primary => engine::FailoverMode::Primary,
            config::FailoverMode::Secondary => engine::FailoverMode::Secondary,
        },
        sync_interval: config.failover.sync_interval,
        failover_timeout: config.failover.failover_timeout,
        failback: match config.failover.failback {
            config::Failback::Manual => FailbackPolicy::Manual,
            config::Failback::Auto => FailbackPolicy::Auto {
                hold_down: config.failover.hold_down,
            },
        },
        crash_confirm: config.failover.crash_confirm,
    }
}

/// The checks of the site assigned to this agent, directly or through its pairs (CK-2).
pub(crate) fn checks_for(shared: &Shared, agent: &str) -> Value {
    let store = shared.store();
    let checks = store.checks_list().unwrap_or_default();
    let pairs = store.pairs_list().unwrap_or_default();
    let member_of = |pair: &str| {
        pairs.get(pair).is_some_and(|d| {
            d.get("primary").and_then(Value::as_str) == Some(agent)
                || d.get("secondary").and_then(Value::as_str) == Some(agent)
        })
    };
    let list: Vec<Value> = checks
        .iter()
        .filter(|(_, c)| {
            c.get("agent").and_then(Value::as_str) == Some(agent)
                || c.get("pair").and_then(Value::as_str).is_some_and(member_of)
        })
        .map(|(name, c)| {
            let mut c = c.clone();
            c["name"] = json!(name);
            c
        })
        .collect();
    json!(list)
}

/// What a listed check shows of its secret (a prometheus check's bearer token): that it has one.
pub(crate) const SECRET_SET: &str = "set";

/// The site's checks as stored, secrets shown as "set" (only the agents running them get them).
pub(crate) fn check_list(shared: &Shared) -> Vec<CheckSpec> {
    shared
        .store()
        .checks_list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, mut doc)| {
            doc["name"] = json!(name);
            if doc.get("token").is_some_and(Value::is_string) {
                doc["token"] = json!(SECRET_SET);
            }
            serde_json::from_value(doc).ok()
        })
        .collect()
}
