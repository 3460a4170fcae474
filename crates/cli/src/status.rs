//! `status`: this node, its server link, the servers it knows, pairs, agents and checks.
//! `--json` is the admin API's answer as it came.

use serde_json::Value;

use crate::api::{print_json, Api, Failure};
use crate::output::{field, items, render, short};
use crate::Target;

pub async fn run(target: &Target, json: bool) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let status = api.get("/api/status").await?;
    if json {
        print_json(&status);
    } else {
        print!("{}", human(&status));
    }
    Ok(())
}

/// The compact human form of `/api/status`.
pub fn human(status: &Value) -> String {
    let null = Value::Null;
    let node = status.get("node").unwrap_or(&null);
    let mut out = String::new();
    let roles = node.get("roles").unwrap_or(&null);
    let mut role_names = Vec::new();
    if roles.get("server").and_then(Value::as_bool) == Some(true) {
        role_names.push("server");
    }
    if roles.get("agent").and_then(Value::as_bool) == Some(true) {
        role_names.push("agent");
    }
    out.push_str(&format!(
        "node    {}  ({})  roles: {}  listen: {}\n",
        field(node, "name"),
        field(node, "id"),
        if role_names.is_empty() {
            "-".to_string()
        } else {
            role_names.join("+")
        },
        field(node, "listen"),
    ));
    if let Some(fp) = node.pointer("/cert/fingerprint").and_then(Value::as_str) {
        out.push_str(&format!("cert    {fp}\n"));
    }
    let failover = node.get("failover").unwrap_or(&null);
    if failover
        .get("mode")
        .and_then(Value::as_str)
        .is_some_and(|m| m != "off")
    {
        out.push_str(&format!(
            "ha      {} {}  epoch {}  peer {}\n",
            field(failover, "mode"),
            field(failover, "state"),
            field(failover, "epoch"),
            short(&field(failover, "peer"), 40),
        ));
        if let Some(reason) = failover.get("reason").and_then(Value::as_str) {
            out.push_str(&format!("        {reason}\n"));
        }
    }
    match status.get("link") {
        Some(link) if !link.is_null() => {
            out.push_str(&format!(
                "link    {}  {}  cached {}\n",
                field(link, "state"),
                short(&field(link, "server"), 40),
                field(link, "cached"),
            ));
            // AG-2: records a standby of another site holds, waiting to go home.
            for h in items(link, "held_by") {
                out.push_str(&format!(
                    "        held {} by {} (delivered home after the switchback)\n",
                    field(h, "records"),
                    field(h, "server")
                ));
            }
        }
        _ => {}
    }
    let servers: Vec<Vec<String>> = items(status, "servers")
        .iter()
        .map(|s| {
            vec![
                short(&field(s, "url"), 40),
                field(s, "role"),
                field(s, "state"),
            ]
        })
        .collect();
    if !servers.is_empty() {
        out.push_str("\nservers\n");
        out.push_str(&render(&["URL", "ROLE", "STATE"], &servers, "  "));
    }
    let pairs: Vec<Vec<String>> = items(status, "pairs").iter().map(pair_row).collect();
    if !pairs.is_empty() {
        out.push_str("\npairs\n");
        out.push_str(&render(PAIR_HEADER, &pairs, "  "));
    }
    let agents: Vec<Vec<String>> = items(status, "agents").iter().map(agent_row).collect();
    if !agents.is_empty() {
        out.push_str("\nagents\n");
        out.push_str(&render(AGENT_HEADER, &agents, "  "));
    }
    let checks: Vec<Vec<String>> = items(status, "checks").iter().map(check_row).collect();
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
pub fn active_member(pair: &Value) -> String {
    match pair.get("active").and_then(Value::as_str) {
        Some("primary") => field(pair, "primary"),
        Some("secondary") => field(pair, "secondary"),
        Some(other) => other.to_string(),
        None => "-".to_string(),
    }
}

pub fn pair_row(pair: &Value) -> Vec<String> {
    let state = pair_state(pair);
    let active = match pair.get("active").and_then(Value::as_str) {
        Some(side @ ("primary" | "secondary")) => format!("{} ({side})", active_member(pair)),
        _ => active_member(pair),
    };
    vec![
        field(pair, "name"),
        field(pair, "primary"),
        field(pair, "secondary"),
        active,
        state,
        field(pair, "epoch"),
        field(pair, "switchback"),
        field(pair, "failover_after"),
        field(pair, "hold_down"),
    ]
}

/// The pair's state, with why it is degraded when it is (PR-7).
pub fn pair_state(pair: &Value) -> String {
    let state = field(pair, "state");
    match pair.get("degraded") {
        Some(Value::Bool(true)) => format!("{state} (degraded)"),
        Some(Value::String(reason)) if !reason.is_empty() => {
            format!("{state} (degraded: {reason})")
        }
        _ => state,
    }
}

pub const AGENT_HEADER: &[&str] = &["NAME", "STATE", "SERVER", "PENDING", "FINGERPRINT"];

pub fn agent_row(agent: &Value) -> Vec<String> {
    vec![
        field(agent, "name"),
        field(agent, "state"),
        short(&field(agent, "server"), 40),
        field(agent, "pending"),
        short(&field(agent, "fingerprint"), 16),
    ]
}

pub const CHECK_HEADER: &[&str] = &["NAME", "KIND", "TARGET", "EVERY", "TIMEOUT", "ON", "LAST"];

pub fn check_row(check: &Value) -> Vec<String> {
    let on = match (check.get("agent"), check.get("pair")) {
        (_, Some(Value::String(p))) if !p.is_empty() => format!("pair {p}"),
        (Some(Value::String(a)), _) if !a.is_empty() => format!("agent {a}"),
        _ => "-".to_string(),
    };
    let last = match check.get("last") {
        Some(Value::Object(_)) => {
            let last = &check["last"];
            let mut text = field(last, "state");
            if let Some(value) = last.get("value").filter(|v| !v.is_null()) {
                text.push_str(&format!(" {value}"));
            }
            text
        }
        Some(other) => crate::output::cell(Some(other)),
        None => "-".to_string(),
    };
    vec![
        field(check, "name"),
        field(check, "kind"),
        field(check, "target"),
        field(check, "every"),
        field(check, "timeout"),
        on,
        last,
    ]
}
