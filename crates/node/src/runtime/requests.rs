//! Admin requests answered by the core: they read or change what the engine decides. The edge
//! (`crate::admin`) routes them here as `Input::Admin`; the answer goes back as a typed document.

use std::time::Instant;

use understudy_api::status::{Agents, Checks, Pairs};
use understudy_api::{
    AgentView, CertView, CheckSpec, FailoverView, LinkView, MemberView, NodeView, PairSpec,
    PairStatus, Refusal, Request, RoleSpec, Roles as RolesView, ServerView, Status, Switchback,
};
use understudy_engine::{
    self as engine, validate_role_change, PairConfig, RoleChange, RoleContext, Roles,
    SwitchbackPolicy,
};

use super::Core;
use crate::admin::{done, to_value, Answer};
use crate::config::{self, CONFIG_FILE};
use crate::docs::{check_list, checks_for, ha_config, pair_doc};
use crate::mailbox::record_event;
use crate::wire::ToAgent;

/// What a request for the server role is refused with on a node without it.
const NO_SERVER_ROLE: &str = "this node has no server role";

pub(crate) fn core_request(core: &mut Core, now: Instant, request: Request) -> Answer {
    let r = match request {
        Request::Status => to_value(status(core, now)),
        Request::Pairs => to_value(Pairs {
            pairs: status(core, now).pairs,
        }),
        Request::PutPair(spec) => put_pair(core, now, spec),
        Request::RemovePair { name } => {
            let r = with_server(core, Subject::Pair(&name), |s| s.remove_pair(now, &name));
            if r.is_ok() {
                let _ = core.shared().store().pair_remove(&name);
            }
            r
        }
        // PR-5: the pair's own guard decides (the same one `status` dry-runs for `actions`).
        Request::ForceFailover { name } => {
            with_server(core, Subject::Pair(&name), |s| s.force_failover(now, &name))
        }
        Request::Revert { name } => {
            with_server(core, Subject::Pair(&name), |s| s.revert(now, &name))
        }
        Request::Agents => to_value(Agents {
            agents: status(core, now).agents,
        }),
        Request::AcceptAgent { name } => {
            with_server(core, Subject::Agent(&name), |s| s.accept_agent(now, &name))
        }
        Request::RejectAgent { name } => {
            with_server(core, Subject::Agent(&name), |s| s.reject_agent(now, &name))
        }
        Request::ForgetAgent { name } => {
            with_server(core, Subject::Agent(&name), |s| s.forget_agent(now, &name))
        }
        Request::RecallAgent { name } => {
            with_server(core, Subject::Agent(&name), |s| s.recall(now, &name))
        }
        Request::HaStandby => with_server(core, Subject::Node, |s| s.operator_standby(now)),
        Request::SetRole(spec) => set_role(core, now, spec),
        Request::Checks => to_value(Checks {
            checks: check_list(core.shared()),
        }),
        Request::PutCheck(spec) => put_check(core, spec),
        Request::RemoveCheck { name } => {
            let removed = core.shared().store().check_remove(&name);
            match removed {
                Ok(Some(_)) => {
                    if let Some(s) = core.server_engine_mut() {
                        s.handle_check_removed(&name);
                    }
                    push_checks(core);
                    done(format!("check {name} removed"))
                }
                Ok(None) => Err(Refusal::not_found(format!("no check named {name}"))),
                Err(e) => Err(Refusal::failed(e)),
            }
        }
        // Answered at the edge (admin::answer); never sent to the core.
        Request::Records(_)
        | Request::Alerts(_)
        | Request::Channels
        | Request::PutChannel(_)
        | Request::EditChannel(_)
        | Request::RemoveChannel { .. }
        | Request::TestChannel { .. }
        | Request::Events(_)
        | Request::Cert
        | Request::GenerateCert(_)
        | Request::Send { .. }
        | Request::Trust { .. }
        | Request::Settings
        | Request::SetSettings { .. }
        | Request::CheckSeries { .. }
        | Request::PairSeries { .. }
        | Request::RoleSeries(_)
        | Request::RecordSeries(_)
        | Request::Invite(_)
        | Request::Invitations
        | Request::RevokeInvitation { .. } => Err(Refusal::failed("not a request for the core")),
        Request::JoinPeer(join) => join_peer(core, now, join),
    };
    core.drain_now();
    r
}

/// What an engine request names, so that a missing one is told apart from a refused one.
enum Subject<'a> {
    Pair(&'a str),
    Agent(&'a str),
    Node,
}

/// Runs an engine operation: a missing subject is `NotFound`, the engine's refusal `Conflict`
/// (with the engine's sentence), success `{ok, message}`.
fn with_server(
    core: &mut Core,
    subject: Subject<'_>,
    f: impl FnOnce(&mut engine::Server) -> Result<String, String>,
) -> Answer {
    let Some(s) = core.server_engine_mut() else {
        return Err(Refusal::conflict(NO_SERVER_ROLE));
    };
    match subject {
        Subject::Pair(name) if s.pair(name).is_none() => {
            return Err(Refusal::not_found(format!("no pair named {name}")))
        }
        Subject::Agent(name) if !s.registry().entries().any(|e| e.name == name) => {
            return Err(Refusal::not_found(format!("no agent named {name}")))
        }
        _ => {}
    }
    match f(s) {
        Ok(message) => done(message),
        Err(reason) => Err(Refusal::conflict(reason)),
    }
}

fn put_pair(core: &mut Core, now: Instant, spec: PairSpec) -> Answer {
    if spec.name.is_empty() || spec.primary.is_empty() || spec.secondary.is_empty() {
        return Err(Refusal::invalid("a pair needs name, primary and secondary"));
    }
    let config = PairConfig {
        name: spec.name.clone(),
        primary: spec.primary.clone(),
        secondary: spec.secondary.clone(),
        failover_after: spec.failover_after(),
        switchback: match spec.switchback.unwrap_or(Switchback::Auto) {
            Switchback::Auto => SwitchbackPolicy::Auto {
                hold_down: spec.hold_down(),
            },
            Switchback::Manual => SwitchbackPolicy::Manual,
        },
    };
    if core.server_engine().is_some_and(|s| !s.is_acting()) {
        return Err(Refusal::conflict(
            "this server is not the acting server of the site",
        ));
    }
    let answer = with_server(core, Subject::Node, |s| {
        s.put_pair(now, config.clone(), None)
    });
    if answer.is_ok() {
        let state = core
            .server_engine()
            .and_then(|s| s.pair(&spec.name))
            .map(|p| p.state().clone())
            .unwrap_or_default();
        core.shared()
            .store()
            .pair_put(&spec.name, &pair_doc(&config, &state))
            .map_err(Refusal::failed)?;
        push_checks(core);
    }
    answer
}

fn put_check(core: &mut Core, spec: CheckSpec) -> Answer {
    if spec.name.is_empty() {
        return Err(Refusal::invalid("a check needs a name"));
    }
    match spec.kind.as_str() {
        "tcp" | "http" | "command" => {}
        // CK-4: the target is the exposition's URL.
        "prometheus" => {
            let url = spec.target.as_str().ok_or_else(|| {
                Refusal::invalid("a prometheus check's target is an http:// or https:// URL")
            })?;
            understudy_api::channel::parse_http_url(url).map_err(Refusal::invalid)?;
        }
        "" => {
            return Err(Refusal::invalid(
                "a check needs a kind: tcp, http, command or prometheus",
            ))
        }
        other => {
            return Err(Refusal::invalid(format!(
                "unknown check kind {other}: expected tcp, http, command or prometheus"
            )))
        }
    }
    if spec.target.is_null() {
        return Err(Refusal::invalid("a check needs a target"));
    }
    if spec.agent.is_some() == spec.pair.is_some() {
        return Err(Refusal::invalid(
            "a check is assigned to exactly one of --agent or --pair",
        ));
    }
    for (key, n) in [("fail_after", spec.fail_after), ("ok_after", spec.ok_after)] {
        if n == Some(0) {
            return Err(Refusal::invalid(format!(
                "{key} counts runs in a row: at least 1"
            )));
        }
    }
    if let Some(p) = &spec.pair {
        if core.server_engine().and_then(|s| s.pair(p)).is_none() {
            return Err(Refusal::not_found(format!("no pair named {p}")));
        }
    }
    let mut doc = serde_json::to_value(&spec).map_err(Refusal::failed)?;
    if let Some(o) = doc.as_object_mut() {
        o.remove("name");
        // A check as listed (its token shown as "set") given back keeps the token it has.
        if o.get("token").and_then(serde_json::Value::as_str) == Some(crate::docs::SECRET_SET) {
            let stored = core.shared().store().check_get(&spec.name).ok().flatten();
            match stored.and_then(|d| d.get("token").cloned()) {
                Some(token) => o.insert("token".into(), token),
                None => {
                    return Err(Refusal::invalid(format!(
                        "check {}: the token \"{}\" is what a listed check shows; give the token itself",
                        spec.name,
                        crate::docs::SECRET_SET
                    )))
                }
            };
        }
    }
    core.shared()
        .store()
        .check_put(&spec.name, &doc)
        .map_err(Refusal::failed)?;
    push_checks(core);
    done(format!("check {} defined", spec.name))
}

/// CK-2: every connected agent gets its (possibly changed) list of checks.
fn push_checks(core: &mut Core) {
    for (agent, tx) in core.server_conns() {
        let checks = checks_for(core.shared(), &agent);
        let _ = tx.send(ToAgent::Checks { checks });
    }
}

fn set_role(core: &mut Core, now: Instant, spec: RoleSpec) -> Answer {
    let failover = match spec.failover.as_deref() {
        None => None,
        Some(m) => match engine::FailoverMode::parse(m) {
            Some(m) => Some(m),
            None => {
                return Err(Refusal::invalid(format!(
                    "failover must be off, primary or secondary, not {m}"
                )))
            }
        },
    };
    let (server, agent) = (spec.server, spec.agent);
    let mut config = core.shared().config();
    let current = Roles {
        server: config.node.server,
        agent: config.node.agent,
        failover: ha_config(&config).mode,
    };
    let ctx = RoleContext {
        connected_agents: core
            .server_conns()
            .iter()
            .filter(|(n, _)| *n != config.node.name)
            .count(),
        acting: core.server_engine().is_some_and(|s| s.is_acting()),
        peer_acting: core
            .server_engine()
            .is_some_and(|s| s.ha().peer_acting(now)),
        peer_configured: !config.failover.peer.is_empty(),
        servers_configured: !config.agent.servers.is_empty(),
        active_pairs: core
            .agent_engine()
            .map(|a| {
                a.members()
                    .iter()
                    .filter(|(_, m)| m.is_active())
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let wanted = match validate_role_change(
        current,
        RoleChange {
            server,
            agent,
            failover,
        },
        &ctx,
    ) {
        Ok(w) => w,
        Err(reason) => return Err(Refusal::conflict(reason)),
    };
    config.node.server = wanted.server;
    config.node.agent = wanted.agent;
    config.failover.mode = match wanted.failover {
        engine::FailoverMode::Off => config::FailoverMode::Off,
        engine::FailoverMode::Primary => config::FailoverMode::Primary,
        engine::FailoverMode::Secondary => config::FailoverMode::Secondary,
    };
    if wanted.agent && config.agent.servers.is_empty() {
        config.agent.servers = vec![format!(
            "https://{}#{}",
            config.node.listen,
            core.shared().trust.identity.fingerprint()
        )];
    }
    if let Err((key, message)) = config.validate() {
        return Err(Refusal::conflict(format!("{key}: {message}")));
    }
    // Persisted first: a crash after this point restarts with the new roles.
    if let Err(e) = config.save(&core.shared().data_dir.join(CONFIG_FILE)) {
        return Err(Refusal::failed(e));
    }
    *core
        .shared()
        .config
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = config.clone();
    if current.server && !wanted.server {
        core.stop_server();
    }
    if current.agent && !wanted.agent {
        core.stop_agent();
    }
    if !current.server && wanted.server {
        if let Err(e) = core.start_server(&config) {
            return Err(Refusal::failed(e));
        }
    } else if wanted.server && current.failover != wanted.failover {
        core.reconfigure_ha(now, &config);
    }
    if !current.agent && wanted.agent {
        if let Err(e) = core.start_agent(&config) {
            return Err(Refusal::failed(e));
        }
    }
    let describe = |r: Roles| {
        format!(
            "server {}, agent {}, failover {}",
            on(r.server),
            on(r.agent),
            r.failover.as_str()
        )
    };
    let reason = format!(
        "roles changed from {} to {}",
        describe(current),
        describe(wanted)
    );
    record_event(
        core.shared(),
        &engine::Event::new(
            engine::EventCode::RoleChanged,
            config.node.name.clone(),
            reason.clone(),
        ),
    );
    done(reason)
}

/// Issue 14 item 3 (`init --join` of a `--peer` invitation): this server takes the joining one
/// as its hot-standby peer, pinned by the fingerprint it gave, and becomes the primary — the
/// role change of HS-7 (validated, saved, applied without a restart).
fn join_peer(core: &mut Core, now: Instant, join: understudy_api::PeerJoin) -> Answer {
    let url = config::ServerUrl::parse(&join.url).map_err(Refusal::invalid)?;
    if url.fingerprint.is_none() {
        return Err(Refusal::invalid(
            "the joining server's URL carries no certificate fingerprint",
        ));
    }
    let before = core.shared().config();
    if !before.node.server {
        return Err(Refusal::conflict(NO_SERVER_ROLE));
    }
    let wanted = url.to_string();
    if !before.failover.peer.is_empty() && before.failover.peer != wanted {
        return Err(Refusal::conflict(format!(
            "this server already has a hot-standby peer ({}): a site has two servers",
            before.failover.peer
        )));
    }
    if before.failover.mode == config::FailoverMode::Secondary {
        return Err(Refusal::conflict(
            "this server is the secondary of a hot-standby pair: invite from its primary",
        ));
    }
    let set_peer = |core: &mut Core, peer: String| {
        core.shared()
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failover
            .peer = peer;
    };
    set_peer(core, wanted.clone());
    let spec = RoleSpec {
        server: None,
        agent: None,
        failover: Some("primary".into()),
    };
    match set_role(core, now, spec) {
        // set_role saved the configuration, the new peer with it.
        Ok(_) => done(format!(
            "{} ({wanted}) is now the hot-standby peer of {}",
            join.name, before.node.name
        )),
        Err(refusal) => {
            set_peer(core, before.failover.peer.clone());
            Err(refusal)
        }
    }
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `status --json` (PRODUCT.md §3); also what `/metrics` renders (MX-1).
pub(crate) fn status(core: &Core, now: Instant) -> Status {
    let config = core.shared().config();
    let server = core.server_engine();
    let failover = match server {
        Some(s) => FailoverView {
            mode: s.ha().mode().as_str().to_string(),
            state: s.ha().state().as_str().to_string(),
            epoch: s.ha().epoch(),
            peer: Some(config.failover.peer.clone()).filter(|p| !p.is_empty()),
            peer_state: s.ha().peer().map(|p| p.state.clone()),
            reason: Some(s.ha().reason().to_string()),
            replicated_version: Some(s.ha().replicated_version()),
            standby: s.ha().can_hand_over(now).into(),
        },
        None => FailoverView {
            mode: "off".into(),
            state: "stopped".into(),
            epoch: 0,
            peer: None,
            peer_state: None,
            reason: None,
            replicated_version: None,
            standby: Err(NO_SERVER_ROLE.to_string()).into(),
        },
    };
    let agent = core.agent_engine();
    let link = agent.map(|a| LinkView {
        server: a.server().and_then(|s| a.server_url(s)).map(str::to_string),
        state: a.state().as_str().to_string(),
        cached: a.cached(),
        held: a.held(),
        held_by: a
            .held_by()
            .into_iter()
            .map(|(server, records)| understudy_api::status::HeldBy { server, records })
            .collect(),
        error: a.last_error().map(str::to_string),
        cache_error: core
            .shared()
            .cache_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(since, why)| {
                format!(
                    "check results not written since {}: {why}",
                    crate::alerts::rfc3339(*since)
                )
            }),
        untrusted: core
            .shared()
            .trust
            .untrusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(address, fingerprint)| understudy_api::status::Untrusted {
                address: address.clone(),
                fingerprint: fingerprint.clone(),
            })
            .collect(),
    });
    let servers = agent
        .map(|a| {
            (0..a.config().servers.len())
                .map(|i| ServerView {
                    url: a.server_url(i).map(str::to_string),
                    role: if i == 0 { "home" } else { "standby" }.to_string(),
                    state: if a.server() == Some(i) {
                        "connected"
                    } else {
                        "idle"
                    }
                    .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let members = agent
        .map(|a| {
            a.members()
                .iter()
                .map(|(p, m)| MemberView {
                    pair: p.clone(),
                    epoch: m.epoch().pair,
                    server_epoch: m.epoch().server,
                    active: m.is_active(),
                })
                .collect()
        })
        .unwrap_or_default();
    let pairs = server
        .map(|s| s.pairs().map(|p| PairStatus::from_engine(p, now)).collect())
        .unwrap_or_default();
    let agents = server
        .map(|s| {
            s.registry()
                .entries()
                .map(|e| {
                    let connected = s.registry().is_connected(&e.id);
                    let state = match e.status {
                        engine::AgentStatus::Pending => "pending",
                        engine::AgentStatus::Rejected => "rejected",
                        engine::AgentStatus::Accepted if connected => "connected",
                        engine::AgentStatus::Accepted => "disconnected",
                    };
                    AgentView {
                        name: e.name.clone(),
                        id: e.id.clone(),
                        state: state.to_string(),
                        server: connected.then(|| config.node.name.clone()),
                        pending: e.status == engine::AgentStatus::Pending,
                        fingerprint: Some(e.fingerprint.clone()),
                        standby_slot: s.registry().holds_slot(&e.id),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Status {
        node: NodeView {
            id: config.node.id.clone(),
            name: config.node.name.clone(),
            listen: config.node.listen.clone(),
            roles: RolesView {
                server: config.node.server,
                agent: config.node.agent,
            },
            failover,
            acting: server.is_some_and(|s| s.is_acting()),
            cert: Some(CertView {
                fingerprint: core.shared().trust.identity.fingerprint(),
            }),
        },
        link,
        servers,
        members,
        agent_checks: core
            .agent_checks()
            .and_then(|c| c.as_array().cloned())
            .unwrap_or_default(),
        pairs,
        agents,
        checks: check_list(core.shared()),
        alerts: if config.node.server {
            core.shared()
                .store()
                .deliveries_summary()
                .unwrap_or_else(|e| {
                    tracing::error!("{e}");
                    Default::default()
                })
        } else {
            Default::default()
        },
        forward: core.shared().forward.view(&config),
    }
}
