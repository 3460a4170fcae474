//! `status`: this node, its server link, the servers it knows, pairs, agents and checks.
//! `--json` is the admin API's answer as it came.

use understudy_api::duration;
use understudy_api::{AgentView, CheckSpec, PairStatus, Request, Status};

use crate::api::{print_json, typed, Api, Failure};
use crate::output::{cell, render, short};
use crate::Target;

pub async fn run(target: &Target, json: bool) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let status = api.request(&Request::Status).await?;
    if json {
        print_json(&status);
    } else {
        print!("{}", human(&typed(status)?));
    }
    Ok(())
}

/// An optional text as a table cell.
fn text(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// The compact human form of `/api/status`.
pub fn human(status: &Status) -> String {
    let node = &status.node;
    let mut out = String::new();
    let mut role_names = Vec::new();
    if node.roles.server {
        role_names.push("server");
    }
    if node.roles.agent {
        role_names.push("agent");
    }
    out.push_str(&format!(
        "node    {}  ({})  roles: {}  listen: {}\n",
        text(Some(&node.name)),
        text(Some(&node.id)),
        if role_names.is_empty() {
            "-".to_string()
        } else {
            role_names.join("+")
        },
        text(Some(&node.listen)),
    ));
    if let Some(cert) = &node.cert {
        out.push_str(&format!("cert    {}\n", cert.fingerprint));
    }
    let failover = &node.failover;
    if failover.mode != "off" {
        out.push_str(&format!(
            "ha      {} {}  epoch {}  peer {}\n",
            failover.mode,
            failover.state,
            failover.epoch,
            short(&text(failover.peer.as_deref()), 40),
        ));
        if let Some(reason) = failover.reason.as_deref().filter(|r| !r.is_empty()) {
            out.push_str(&format!("        {reason}\n"));
        }
    }
    if let Some(link) = &status.link {
        out.push_str(&format!(
            "link    {}  {}  cached {}\n",
            link.state,
            short(&text(link.server.as_deref()), 40),
            link.cached,
        ));
        // AG-2: records a standby of another site holds, waiting to go home.
        for h in &link.held_by {
            out.push_str(&format!(
                "        held {} by {} (delivered home after the switchback)\n",
                h.records, h.server
            ));
        }
    }
    let servers: Vec<Vec<String>> = status
        .servers
        .iter()
        .map(|s| {
            vec![
                short(&text(s.url.as_deref()), 40),
                s.role.clone(),
                s.state.clone(),
            ]
        })
        .collect();
    if !servers.is_empty() {
        out.push_str("\nservers\n");
        out.push_str(&render(&["URL", "ROLE", "STATE"], &servers, "  "));
    }
    let pairs: Vec<Vec<String>> = status.pairs.iter().map(pair_row).collect();
    if !pairs.is_empty() {
        out.push_str("\npairs\n");
        out.push_str(&render(PAIR_HEADER, &pairs, "  "));
    }
    let agents: Vec<Vec<String>> = status.agents.iter().map(agent_row).collect();
    if !agents.is_empty() {
        out.push_str("\nagents\n");
        out.push_str(&render(AGENT_HEADER, &agents, "  "));
    }
    let checks: Vec<Vec<String>> = status.checks.iter().map(check_row).collect();
    if !checks.is_empty() {
        out.push_str("\nchecks\n");
        out.push_str(&render(CHECK_HEADER, &checks, "  "));
    }
    out
}

pub const PAIR_HEADER: &[&str] = &[
    "NAME",
    "PRIMARY",
    "SECONDARY",
    "ACTIVE",
    "STATE",
    "EPOCH",
    "SWITCHBACK",
    "FAILOVER",
    "HOLD",
];

/// The member's name when the pair has one active, else `none`.
pub fn active_member(pair: &PairStatus) -> String {
    pair.active_member()
        .map_or_else(|| pair.active.clone(), str::to_string)
}

pub fn pair_row(pair: &PairStatus) -> Vec<String> {
    let active = match pair.active_member() {
        Some(name) => format!("{name} ({})", pair.active),
        None => pair.active.clone(),
    };
    vec![
        pair.name.clone(),
        pair.primary.clone(),
        pair.secondary.clone(),
        active,
        pair_state(pair),
        pair.epoch.to_string(),
        match pair.switchback {
            understudy_api::Switchback::Auto => "auto",
            understudy_api::Switchback::Manual => "manual",
        }
        .to_string(),
        duration::format(pair.failover_after),
        duration::format(pair.hold_down),
    ]
}

/// The pair's state, with why it is degraded when it is (PR-7).
pub fn pair_state(pair: &PairStatus) -> String {
    match pair.degraded.as_deref() {
        Some(reason) if !reason.is_empty() => format!("{} (degraded: {reason})", pair.state),
        _ => pair.state.clone(),
    }
}

pub const AGENT_HEADER: &[&str] = &["NAME", "STATE", "SERVER", "PENDING", "FINGERPRINT"];

pub fn agent_row(agent: &AgentView) -> Vec<String> {
    vec![
        agent.name.clone(),
        agent.state.clone(),
        short(&text(agent.server.as_deref()), 40),
        if agent.pending { "yes" } else { "no" }.to_string(),
        short(&text(agent.fingerprint.as_deref()), 16),
    ]
}

pub const CHECK_HEADER: &[&str] = &["NAME", "KIND", "TARGET", "EVERY", "TIMEOUT", "ON", "LAST"];

pub fn check_row(check: &CheckSpec) -> Vec<String> {
    let on = match (&check.agent, &check.pair) {
        (_, Some(p)) if !p.is_empty() => format!("pair {p}"),
        (Some(a), _) if !a.is_empty() => format!("agent {a}"),
        _ => "-".to_string(),
    };
    let last = match check.more.get("last") {
        Some(last @ serde_json::Value::Object(_)) => {
            let mut text = cell(last.get("state"));
            if let Some(value) = last.get("value").filter(|v| !v.is_null()) {
                text.push_str(&format!(" {value}"));
            }
            text
        }
        other => cell(other),
    };
    vec![
        check.name.clone(),
        check.kind.clone(),
        cell(Some(&check.target)),
        check.every.map_or("-".into(), duration::format),
        check.timeout.map_or("-".into(), duration::format),
        on,
        last,
    ]
}
