//! The operator's site commands, each one admin request: `pair`, `agent`, `role`, `ha`, `check`.

use understudy_api::status::Checks;
use understudy_api::{CheckSpec, PairSpec, Request, RoleSpec};

use crate::api::{print_done, Api, Failure};
use crate::output::table;
use crate::status::{agent_row, check_row, pair_row, AGENT_HEADER, CHECK_HEADER, PAIR_HEADER};
use crate::{
    choice, AgentCommand, CheckCommand, HaCommand, OnOff, PairCommand, RoleCommand, Switchback,
    Target,
};

pub async fn pair(target: &Target, cmd: PairCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let (request, fallback) = match cmd {
        PairCommand::List => {
            let status = api.status().await?;
            let rows: Vec<Vec<String>> = status.pairs.iter().map(pair_row).collect();
            if rows.is_empty() {
                println!("no pairs");
            } else {
                table(PAIR_HEADER, &rows);
            }
            return Ok(());
        }
        PairCommand::Add {
            name,
            primary,
            secondary,
            failover_after,
            switchback,
            hold_down,
        } => (
            Request::PutPair(PairSpec {
                name: name.clone(),
                primary,
                secondary,
                failover_after,
                switchback: switchback.map(|s| match s {
                    Switchback::Auto => understudy_api::Switchback::Auto,
                    Switchback::Manual => understudy_api::Switchback::Manual,
                }),
                hold_down,
            }),
            format!("pair {name} added"),
        ),
        PairCommand::ForceFailover { name } => (Request::ForceFailover { name }, "done".into()),
        PairCommand::Revert { name } => (Request::Revert { name }, "done".into()),
    };
    print_done(api.request(&request).await?, &fallback);
    Ok(())
}

pub async fn agent(target: &Target, cmd: AgentCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    let request = match cmd {
        AgentCommand::List => {
            let status = api.status().await?;
            let rows: Vec<Vec<String>> = status.agents.iter().map(agent_row).collect();
            if rows.is_empty() {
                println!("no agents");
            } else {
                table(AGENT_HEADER, &rows);
            }
            return Ok(());
        }
        AgentCommand::Accept { name } => Request::AcceptAgent { name },
        AgentCommand::Reject { name } => Request::RejectAgent { name },
        AgentCommand::Recall { name } => Request::RecallAgent { name },
        AgentCommand::Forget { name } => Request::ForgetAgent { name },
    };
    print_done(api.request(&request).await?, "done");
    Ok(())
}

pub async fn role(target: &Target, cmd: RoleCommand) -> Result<(), Failure> {
    let RoleCommand::Set {
        server,
        agent,
        failover,
    } = cmd;
    let on = |v: OnOff| matches!(v, OnOff::On);
    let request = Request::SetRole(RoleSpec {
        server: server.map(on),
        agent: agent.map(on),
        failover: failover.map(choice),
    });
    let api = Api::connect(target)?;
    print_done(api.request(&request).await?, "roles changed");
    Ok(())
}

pub async fn ha(target: &Target, cmd: HaCommand) -> Result<(), Failure> {
    let HaCommand::Standby = cmd;
    let api = Api::connect(target)?;
    print_done(api.request(&Request::HaStandby).await?, "done");
    Ok(())
}

pub async fn check(target: &Target, cmd: CheckCommand) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match cmd {
        CheckCommand::List => {
            let answer: Checks = api.fetch(&Request::Checks).await?;
            let rows: Vec<Vec<String>> = answer.checks.iter().map(check_row).collect();
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
            fail_after,
            ok_after,
            token,
            max_samples,
        } => {
            let mut more = serde_json::Map::new();
            if let Some(token) = token {
                more.insert("token".into(), token.into());
            }
            if let Some(n) = max_samples {
                more.insert("max_samples".into(), n.into());
            }
            let request = Request::PutCheck(CheckSpec {
                name: name.clone(),
                kind: choice(kind),
                target: target.into(),
                every,
                timeout,
                agent,
                pair,
                fail_after,
                ok_after,
                more,
            });
            print_done(api.request(&request).await?, &format!("check {name} added"));
            Ok(())
        }
        CheckCommand::Remove { name } => {
            let answer = api
                .request(&Request::RemoveCheck { name: name.clone() })
                .await?;
            print_done(answer, &format!("check {name} removed"));
            Ok(())
        }
    }
}
