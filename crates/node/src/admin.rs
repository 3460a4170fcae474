//! The admin API's edge: HTTPS requests become [`Request`]s through the route table of
//! `understudy-api`, and answers become JSON there too. Requests that read or change what the
//! engine decides go to the core as `Input::Admin`; store-only reads are answered here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use understudy_api::status::{Agents, CertInfo, Checks, Pairs, RecordView, Records, Settings};
use understudy_api::{
    defaults, AgentView, CertView, CheckSpec, Done, EventQuery, EventView, FailoverView, LinkView,
    MemberView, NodeView, PairSpec, PairStatus, RecordQuery, Refusal, Request, RoleSpec,
    Roles as RolesView, ServerView, Status, Switchback,
};
use understudy_engine::{
    self as engine, validate_role_change, PairConfig, RoleChange, RoleContext, Roles,
    SwitchbackPolicy,
};

use crate::config::{self, CONFIG_FILE};
use crate::runtime::{self, pair_doc, Core, Input, Shared};
use crate::store::{NewRecord, RecordFilter};
use crate::tls;
use crate::wire::ToAgent;

/// What a request answers: a JSON document, or a typed refusal.
type Answer = Result<Value, Refusal>;

fn to_value(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v).map_err(Refusal::failed)
}

fn done(message: impl Into<String>) -> Answer {
    to_value(Done::new(message))
}

/// The console's files, embedded at build time from `ui/dist` (see build.rs).
mod assets {
    include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));
}

const MAX_BODY: usize = 1024 * 1024;

/// The console's Content-Security-Policy (issue 12 item 6): its own scripts, styles and API only,
/// never framed. The desktop window has the same in `src-tauri/tauri.conf.json`.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// How long an admin client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an admin connection may sit with no request in progress and nothing moving.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP/1.1 on an accepted TLS connection, closing it when idle (issue 12 item 4).
pub(crate) async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    stream: S,
) {
    let activity = crate::limits::Activity::new();
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = shared.clone();
        let busy = busy.clone();
        async move {
            let _request = busy.request();
            Ok::<_, std::convert::Infallible>(http_request(shared, req).await)
        }
    });
    let io = hyper_util::rt::TokioIo::new(crate::limits::Tracked::new(stream, activity.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let idle = activity.idle_for();
        if idle >= IDLE_TIMEOUT {
            tracing::debug!("closing an admin connection idle for {IDLE_TIMEOUT:?}");
            return;
        }
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    tracing::debug!("admin connection: {e}");
                }
                return;
            }
            _ = tokio::time::sleep(IDLE_TIMEOUT - idle) => {}
        }
    }
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("content-security-policy", CONSOLE_CSP)
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

async fn http_request(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if !path.starts_with("/api/") {
        return static_file(&path);
    }
    // PRODUCT.md §4: without valid credentials, 401 and no action taken.
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| crate::admin_auth::token_matches(&shared.token, v));
    if !authorized {
        return json_response(Err(Refusal::new(
            understudy_api::RefusalKind::Unauthorized,
            "a valid admin token is required (Authorization: Bearer <token>)",
        )));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return json_response(Err(Refusal::invalid(format!("request body: {e}")))),
    };
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return json_response(Err(Refusal::invalid(format!("the body is not JSON: {e}"))))
            }
        }
    };
    let (status, value) = handle(&shared, &method, &path, body).await;
    response(status, "application/json", value.to_string().into_bytes())
}

fn json_response(answer: Answer) -> hyper::Response<Full<Bytes>> {
    let (status, value) = http_answer(answer);
    response(status, "application/json", value.to_string().into_bytes())
}

/// An answer as HTTP: 200 with the document, or the refusal's status (the one mapping is
/// [`understudy_api::RefusalKind::http_status`]).
fn http_answer(answer: Answer) -> (u16, Value) {
    match answer {
        Ok(v) => (200, v),
        Err(r) => (
            r.http_status(),
            serde_json::to_value(&r).unwrap_or_else(|_| json!({ "error": r.reason })),
        ),
    }
}

fn static_file(path: &str) -> hyper::Response<Full<Bytes>> {
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let path = if path == "/" { "/index.html" } else { path };
    match assets::FILES.iter().find(|(p, _)| *p == path) {
        Some((p, bytes)) => {
            let ct = match p.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            response(200, ct, bytes.to_vec())
        }
        None if assets::FILES.is_empty() => response(
            404,
            "text/plain",
            b"the console was not built into this binary: run `npm ci && npm run build` in ui/ and rebuild".to_vec(),
        ),
        None => response(404, "text/plain", b"not found".to_vec()),
    }
}

/// The one request handler, for callers that hold `(method, path, body)` (the HTTPS API, the
/// desktop window's `admin` command): the route table turns them into a [`Request`].
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let answer = match Request::from_http(method, path, body) {
        Ok(request) => answer(shared, request).await,
        Err(refusal) => Err(refusal),
    };
    http_answer(answer)
}

/// Answers one request: store-only reads and local IO here, the rest in the core.
pub(crate) async fn answer(shared: &Arc<Shared>, request: Request) -> Answer {
    match request {
        Request::Records(q) => records(shared, &q),
        Request::Events(q) => events(shared, &q),
        Request::Cert => match tls::load_or_generate(&shared.data_dir) {
            Ok(c) => to_value(CertInfo {
                fingerprint: c.fingerprint,
                sans: c.sans,
                not_after: c.not_after,
            }),
            Err(e) => Err(Refusal::failed(e)),
        },
        Request::GenerateCert(c) => generate_cert(shared, c).await,
        Request::Send { records } => send(shared, records),
        Request::Trust { fingerprint } => trust(shared, &fingerprint),
        Request::Settings => to_value(Settings {
            notifications: shared.config().ui.notifications,
        }),
        Request::SetSettings { notifications } => settings(shared, notifications),
        request => {
            let (tx, rx) = oneshot::channel();
            let stopping = || {
                Refusal::new(
                    understudy_api::RefusalKind::Unavailable,
                    "the node is stopping",
                )
            };
            if shared
                .core
                .send(Input::Admin { request, reply: tx })
                .is_err()
            {
                return Err(stopping());
            }
            rx.await.unwrap_or_else(|_| Err(stopping()))
        }
    }
}

fn records(shared: &Shared, q: &RecordQuery) -> Answer {
    let filter = RecordFilter {
        agent: q.agent.clone(),
        pair: q.pair.clone(),
        limit: q.limit,
    };
    let list = shared
        .store()
        .records_list(&filter)
        .map_err(Refusal::failed)?;
    let records = list
        .into_iter()
        .filter(|r| q.kind.as_ref().is_none_or(|k| &r.record.kind == k))
        .map(|r| RecordView {
            agent: r.agent_name,
            agent_id: r.agent_id,
            seq: r.record.seq,
            pair: r.record.pair,
            name: r.record.name,
            value: r.record.value,
            time_ms: r.record.time_ms,
            kind: r.record.kind,
            detail: r.record.detail,
            taken_for: r.taken_for,
        })
        .collect();
    to_value(Records { records })
}

fn events(shared: &Shared, q: &EventQuery) -> Answer {
    let list = shared
        .store()
        .events_list(
            q.since,
            q.code.as_deref(),
            q.limit.unwrap_or(defaults::EVENTS_LIMIT),
        )
        .map_err(Refusal::failed)?;
    let events = list
        .into_iter()
        .filter(|e| e.event.time_ms >= q.since_ms)
        .map(|e| {
            EventView::new(
                e.id,
                e.event.time_ms,
                &e.event.code,
                e.event.subject,
                e.event.detail,
                Some(e.origin),
            )
        })
        .collect();
    to_value(understudy_api::event::Events { events })
}

fn send(shared: &Shared, list: Vec<understudy_api::NewRecord>) -> Answer {
    if !shared.config().node.agent {
        return Err(Refusal::conflict(
            "this node has no agent role: records are handed to an agent",
        ));
    }
    if list.is_empty() {
        return Err(Refusal::invalid("no records given"));
    }
    let mut records = Vec::with_capacity(list.len());
    for r in list {
        if r.name.is_empty() {
            return Err(Refusal::invalid("a record name may not be empty"));
        }
        records.push(NewRecord {
            name: r.name,
            value: r.value,
            time_ms: r.time_ms.unwrap_or_else(runtime::now_ms),
            pair: r.pair,
            kind: r.kind.unwrap_or_else(|| "metric".to_string()),
            detail: r.detail,
        });
    }
    // AG-2: durable in the cache before anything is sent.
    match shared.store().cache_append(&records) {
        Ok(seqs) => {
            let (first, last) = (
                seqs.first().copied().unwrap_or(0),
                seqs.last().copied().unwrap_or(0),
            );
            let _ = shared.core.send(Input::Cached(last));
            to_value(
                Done::new(format!("{} records cached", seqs.len()))
                    .with("first_seq", first)
                    .with("last_seq", last),
            )
        }
        Err(e) => Err(Refusal::new(
            understudy_api::RefusalKind::Full,
            format!("records not written: {e}"),
        )),
    }
}

/// CT-2: the operator accepts a server certificate seen on first contact (listed in
/// `status.link.untrusted`); it is pinned from now on.
fn trust(shared: &Shared, fp: &str) -> Answer {
    let fp = config::normalize_fingerprint(fp).map_err(Refusal::invalid)?;
    let mut untrusted = shared.untrusted.lock().unwrap_or_else(|p| p.into_inner());
    let Some(addr) = untrusted
        .iter()
        .find(|(_, seen)| **seen == fp)
        .map(|(a, _)| a.clone())
    else {
        return Err(Refusal::not_found(format!(
            "no server presented {fp}: only a certificate seen on first contact can be accepted"
        )));
    };
    untrusted.remove(&addr);
    shared.pins.add(&fp);
    shared
        .store()
        .state_set("pins", &json!(shared.pins.list()))
        .map_err(Refusal::failed)?;
    done(format!("{addr} trusted with certificate {fp}"))
}

fn settings(shared: &Shared, notifications: bool) -> Answer {
    let mut config = shared.config.lock().unwrap_or_else(|p| p.into_inner());
    config.ui.notifications = notifications;
    config
        .save(&shared.data_dir.join(CONFIG_FILE))
        .map_err(Refusal::failed)?;
    done(format!(
        "notifications {}",
        if notifications { "on" } else { "muted" }
    ))
}

/// CT-1/CT-2: a new certificate, announced over the existing (old-certificate) links first, so
/// agents and the peer pin it before it is taken into use.
async fn generate_cert(shared: &Arc<Shared>, request: understudy_api::CertRequest) -> Answer {
    let mut ips = Vec::new();
    for ip in &request.ips {
        match ip.parse() {
            Ok(ip) => ips.push(ip),
            Err(_) => return Err(Refusal::invalid(format!("{ip} is not an IP address"))),
        }
    }
    let info =
        tls::generate_certificate(&shared.data_dir, &ips, &request.dns).map_err(Refusal::failed)?;
    let fp = info.fingerprint.clone();
    shared.pins.add(&fp);
    let _ = shared.store().state_set("pins", &json!(shared.pins.list()));
    crate::net::announce_cert_to_peer(shared, &fp).await;
    let (tx, rx) = oneshot::channel();
    let _ = shared.core.send(Input::CertRotated {
        fingerprint: fp.clone(),
        done: tx,
    });
    let _ = rx.await;
    shared
        .identity
        .reload(&shared.data_dir)
        .map_err(Refusal::failed)?;
    runtime::record_event(
        shared,
        &engine::Event::new(
            engine::EventCode::CertGenerated,
            shared.config().node.name,
            format!("new certificate {fp} in use ({} names)", info.sans.len()),
        ),
    );
    to_value(
        Done::new(format!("certificate generated: {fp}"))
            .with("fingerprint", &fp)
            .with("sans", &info.sans)
            .with("not_after", &info.not_after),
    )
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

// ---------------------------------------------------------------------------------------------
// Requests answered by the core (they read or change what the engine decides).

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
                    push_checks(core);
                    done(format!("check {name} removed"))
                }
                Ok(None) => Err(Refusal::not_found(format!("no check named {name}"))),
                Err(e) => Err(Refusal::failed(e)),
            }
        }
        // Answered at the edge (admin::answer); never sent to the core.
        Request::Records(_)
        | Request::Events(_)
        | Request::Cert
        | Request::GenerateCert(_)
        | Request::Send { .. }
        | Request::Trust { .. }
        | Request::Settings
        | Request::SetSettings { .. } => Err(Refusal::failed("not a request for the core")),
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
        return Err(Refusal::conflict("this node has no server role"));
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

/// The site's checks as stored.
fn check_list(shared: &Shared) -> Vec<CheckSpec> {
    shared
        .store()
        .checks_list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, mut doc)| {
            doc["name"] = json!(name);
            serde_json::from_value(doc).ok()
        })
        .collect()
}

fn put_check(core: &mut Core, spec: CheckSpec) -> Answer {
    if spec.name.is_empty() {
        return Err(Refusal::invalid("a check needs a name"));
    }
    match spec.kind.as_str() {
        "tcp" | "http" | "command" => {}
        "" => {
            return Err(Refusal::invalid(
                "a check needs a kind: tcp, http or command",
            ))
        }
        other => {
            return Err(Refusal::invalid(format!(
                "unknown check kind {other}: expected tcp, http or command"
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
    if let Some(p) = &spec.pair {
        if core.server_engine().and_then(|s| s.pair(p)).is_none() {
            return Err(Refusal::not_found(format!("no pair named {p}")));
        }
    }
    let mut doc = serde_json::to_value(&spec).map_err(Refusal::failed)?;
    if let Some(o) = doc.as_object_mut() {
        o.remove("name");
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
        failover: runtime::ha_config(&config).mode,
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
            core.shared().identity.fingerprint()
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
        if let Some(s) = core.server_engine_mut() {
            let peer_url = config
                .peer()
                .ok()
                .flatten()
                .map(|p| format!("https://{}", p.address()));
            s.handle_ha_config(now, runtime::ha_config(&config), peer_url);
        }
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
    runtime::record_event(
        core.shared(),
        &engine::Event::new(
            engine::EventCode::RoleChanged,
            config.node.name.clone(),
            reason.clone(),
        ),
    );
    done(reason)
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `status --json` (PRODUCT.md §3).
fn status(core: &Core, now: Instant) -> Status {
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
        },
        None => FailoverView {
            mode: "off".into(),
            state: "stopped".into(),
            epoch: 0,
            peer: None,
            peer_state: None,
            reason: None,
            replicated_version: None,
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
        untrusted: core
            .shared()
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
                fingerprint: core.shared().identity.fingerprint(),
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
    }
}
