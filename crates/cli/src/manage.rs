//! The operator's site commands, each one admin API call: `pair`, `agent`, `role`, `ha`, `check`.

use serde_json::{json, Map, Value};

use crate::api::{encode, print_message, Api, Failure};
use crate::output::{items, table};
use crate::status::{agent_row, check_row, pair_row, AGENT_HEADER, CHECK_HEADER, PAIR_HEADER};
use crate::{
    choice, AgentCommand, CheckCommand, HaCommand, OnOff, PairCommand, RoleCommand, Target,
};

pub async fn pair(target: &Target, cmd: PairCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match cmd {
        PairCommand::List => {
            let status = api.get("/api/status").await?;
            let rows: Vec<Vec<String>> = items(&status, "pairs").iter().map(pair_row).collect();
            if rows.is_empty() {
                println!("no pairs");
            } else {
                table(PAIR_HEADER, &rows);
            }
            Ok(())
        }
        PairCommand::Add {
            name,
            primary,
            secondary,
            failover_after,
            switchback,
            hold_down,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("primary".into(), json!(primary));
            body.insert("secondary".into(), json!(secondary));
            if let Some(d) = failover_after {
                body.insert("failover_after".into(), json!(d));
            }
            if let Some(s) = switchback {
                body.insert("switchback".into(), json!(choice(s)));
            }
            if let Some(d) = hold_down {
                body.insert("hold_down".into(), json!(d));
            }
            let answer = api.post("/api/pairs", &Value::Object(body)).await?;
            print_message(&answer, &format!("pair {name} added"));
            Ok(())
        }
        PairCommand::ForceFailover { name } => {
            post_action(
                &api,
                &format!("/api/pairs/{}/force-failover", encode(&name)),
            )
            .await
        }
        PairCommand::Revert { name } => {
            post_action(&api, &format!("/api/pairs/{}/revert", encode(&name))).await
        }
    }
}

pub async fn agent(target: &Target, cmd: AgentCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let (action, name) = match cmd {
        AgentCommand::List => {
            let status = api.get("/api/status").await?;
            let rows: Vec<Vec<String>> = items(&status, "agents").iter().map(agent_row).collect();
            if rows.is_empty() {
                println!("no agents");
            } else {
                table(AGENT_HEADER, &rows);
            }
            return Ok(());
        }
        AgentCommand::Accept { name } => ("accept", name),
        AgentCommand::Reject { name } => ("reject", name),
        AgentCommand::Recall { name } => ("recall", name),
        AgentCommand::Forget { name } => ("forget", name),
    };
    post_action(&api, &format!("/api/agents/{}/{action}", encode(&name))).await
}

pub async fn role(target: &Target, cmd: RoleCommand) -> Result<(), Failure> {
    let RoleCommand::Set {
        server,
        agent,
        failover,
    } = cmd;
    let mut body = Map::new();
    let on = |v: OnOff| matches!(v, OnOff::On);
    if let Some(v) = server {
        body.insert("server".into(), json!(on(v)));
    }
    if let Some(v) = agent {
        body.insert("agent".into(), json!(on(v)));
    }
    if let Some(v) = failover {
        body.insert("failover".into(), json!(choice(v)));
    }
    let api = Api::connect(target)?;
    let answer = api.post("/api/role", &Value::Object(body)).await?;
    print_message(&answer, "roles changed");
    Ok(())
}

pub async fn ha(target: &Target, cmd: HaCommand) -> Result<(), Failure> {
    let HaCommand::Standby = cmd;
    let api = Api::connect(target)?;
    post_action(&api, "/api/ha/standby").await
}

pub async fn check(target: &Target, cmd: CheckCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match cmd {
        CheckCommand::List => {
            let answer = api.get("/api/checks").await?;
            let rows: Vec<Vec<String>> = items(&answer, "checks").iter().map(check_row).collect();
            if rows.is_empty() {
                println!("no checks");
            } else {
                table(CHECK_HEADER, &rows);
            }
            Ok(())
        }
        CheckCommand::Add {
            name,
            kind,
            target,
            every,
            timeout,
            agent,
            pair,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("kind".into(), json!(choice(kind)));
            body.insert("target".into(), json!(target));
            for (key, value) in [
                ("every", every),
                ("timeout", timeout),
                ("agent", agent),
                ("pair", pair),
            ] {
                if let Some(v) = value {
                    body.insert(key.into(), json!(v));
                }
            }
            let answer = api.post("/api/checks", &Value::Object(body)).await?;
            print_message(&answer, &format!("check {name} added"));
            Ok(())
        }
        CheckCommand::Remove { name } => {
            let answer = api
                .call("DELETE", &format!("/api/checks/{}", encode(&name)), None)
                .await?;
            print_message(&answer, &format!("check {name} removed"));
            Ok(())
        }
    }
}

/// A POST without a body whose answer is `{ok, message}`.
async fn post_action(api: &Api, path: &str) -> Result<(), Failure> {
    let answer = api.post(path, &json!({})).await?;
    print_message(&answer, "done");
    Ok(())
}
