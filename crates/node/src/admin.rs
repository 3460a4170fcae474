//! The admin API's edge: HTTPS requests become [`Request`]s through the route table of
//! `understudy-api`, and answers become JSON there too. Requests that read or change what the
//! engine decides go to the core as `Input::Admin`; store-only reads are answered here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, oneshot, watch};
use understudy_api::status::{CertInfo, RecordView, Records, Settings};
use understudy_api::{
    defaults, Done, EventQuery, EventView, Permission, RecordQuery, Refusal, Request,
};
use understudy_engine::{self as engine};

use crate::config::{self, Config, CONFIG_FILE};
use crate::mailbox::{now_ms, store_event, CheckRun, CoreSender, Input, Trust};
use crate::store::{NewRecord, RecordFilter, Store};
use crate::tls;

/// What a request answers: a JSON document, or a typed refusal.
pub(crate) type Answer = Result<Value, Refusal>;

pub(crate) fn to_value(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v).map_err(Refusal::failed)
}

pub(crate) fn done(message: impl Into<String>) -> Answer {
    to_value(Done::new(message))
}

/// What the admin edge needs of its node (issue 11): the store and configuration, the core's
/// mailbox for what the engine decides, the TLS trust for `cert generate` and `trust` — not the
/// link tasks' state.
pub(crate) struct Admin {
    pub token: String,
    /// MX-1: the read-only scrape token (`metrics.token`), good for `GET /metrics` only.
    pub metrics_token: String,
    /// CK-4: the push token (`push.token`), good for `POST /api/v1/write` only.
    pub push_token: String,
    /// MX-1: each check's last stored run (set where records are stored).
    pub check_runs: Arc<Mutex<BTreeMap<String, CheckRun>>>,
    pub data_dir: PathBuf,
    pub config: Arc<Mutex<Config>>,
    pub store: Arc<Mutex<Store>>,
    pub events: broadcast::Sender<u64>,
    pub core: CoreSender,
    /// Whether this node is the acting server (AL-4: channels change there only).
    pub acting: watch::Receiver<bool>,
    pub trust: Arc<Trust>,
    /// Where `desktop` alert channels' messages go (AL-7; `alert channel test`).
    pub desktop: crate::alerts::Desktop,
    /// The pairs whose duty this agent holds: records sent under a pair's alias carry its
    /// counter (issue 12 item 3).
    pub leases: Arc<Mutex<HashMap<String, crate::checks::Lease>>>,
    /// UI-5: when each invitation token was last presented here.
    pub invitations_used: crate::invite::LastUsed,
}

impl Admin {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
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
    node: Arc<Admin>,
    stream: S,
) {
    let activity = crate::limits::Activity::new();
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let node = node.clone();
        let busy = busy.clone();
        async move {
            let _request = busy.request();
            Ok::<_, std::convert::Infallible>(http_request(node, req).await)
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
    node: Arc<Admin>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if path.split('?').next() == Some("/metrics") {
        return metrics(&node, &method, &req).await;
    }
    if path.split('?').next() == Some("/api/v1/write") {
        return push(&node, &method, req).await;
    }
    if !path.starts_with("/api/") {
        return static_file(&path);
    }
    // PRODUCT.md §4: without valid credentials, 401 and no action taken. UI-5: the node's own
    // admin token may do everything, an invitation's token what its kind grants.
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let grant = crate::invite::grant(
        &node.token,
        &node.store,
        &node.invitations_used,
        header,
        now_ms(),
    );
    // A `--peer` invitation's token is good for one thing: joining as the hot-standby peer.
    let peer_invitation = match grant {
        Some(_) => None,
        None => header.and_then(|h| match crate::invite::presented(&node.store(), h) {
            Some((id, understudy_api::TokenKind::Peer)) => Some(id),
            _ => None,
        }),
    };
    if grant.is_none() && peer_invitation.is_none() {
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
    let (status, value) = match (grant, peer_invitation) {
        (Some(grant), _) => handle_as(&node, grant, &method, &path, body).await,
        (None, Some(id)) => join_as_peer(&node, &id, &method, &path, body).await,
        (None, None) => http_answer(Err(Refusal::failed("no credential"))),
    };
    response(status, "application/json", value.to_string().into_bytes())
}

/// Issue 14 item 3: the holder of a `--peer` invitation's token may ask this server once to
/// take it as its hot-standby peer; the token is revoked when that is done.
async fn join_as_peer(
    node: &Arc<Admin>,
    id: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let answer = match Request::from_http(method, path, body) {
        Ok(request @ Request::JoinPeer(_)) => {
            let answer = answer(node, request).await;
            if answer.is_ok() {
                if let Err(e) = crate::invite::revoke(&mut node.store(), id) {
                    tracing::warn!(
                        "revoking the peer invitation {id} after its use: {}",
                        e.reason
                    );
                }
            }
            answer
        }
        Ok(_) => Err(Refusal::new(
            understudy_api::RefusalKind::Forbidden,
            "a --peer invitation's token is good only for joining as the hot-standby peer \
             (understudy init --join)",
        )),
        Err(refusal) => Err(refusal),
    };
    http_answer(answer)
}

/// CK-4: `POST /api/v1/write` with the push token: the samples are in the cache (one commit)
/// before the 204; 400 for what cannot be taken, 413 for what is beyond the receiver's limits
/// (`receiver::MAX_*`), 5xx (a full disk: 507) for what a sender should send again.
async fn push(
    node: &Arc<Admin>,
    method: &str,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let text = |status: u16, body: String| {
        response(
            status,
            "text/plain; charset=utf-8",
            format!("{body}\n").into_bytes(),
        )
    };
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| crate::admin_auth::token_matches(&node.push_token, v));
    if !authorized {
        return text(
            401,
            "the push token is required (Authorization: Bearer <push.token of the agent's data directory>)".into(),
        );
    }
    if method != "POST" {
        return text(405, "/api/v1/write answers POST only".into());
    }
    if !node.config().node.agent {
        return text(409, "this node has no agent role: push to an agent".into());
    }
    let body = match Limited::new(req.into_body(), crate::receiver::MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(413, format!("request body: {e}")),
    };
    let (records, _skipped) = match crate::receiver::records_of(&body) {
        Ok(r) => r,
        Err(refused) => return text(refused.status(), refused.reason().to_string()),
    };
    if records.is_empty() {
        return response(204, "text/plain", Vec::new());
    }
    let store = node.store.clone();
    let appended = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cache_append(&records)
    })
    .await;
    match appended {
        // AG-2: durable in the cache before the answer.
        Ok(Ok(seqs)) => {
            if let Some(last) = seqs.last() {
                let _ = node.core.send(Input::Cached(*last));
            }
            response(204, "text/plain", Vec::new())
        }
        Ok(Err(e @ crate::store::StoreError::DiskFull { .. })) => {
            text(507, format!("not written, send again: {e}"))
        }
        Ok(Err(e)) => text(503, format!("not written, send again: {e}")),
        Err(_) => text(503, "not written, send again".into()),
    }
}

/// MX-1: `GET /metrics` with the scrape token or the admin token; 401 with the reason without.
async fn metrics(
    node: &Admin,
    method: &str,
    req: &hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    // UI-5: an operator token reads metrics too.
    let invited = || {
        crate::invite::grant(
            &node.token,
            &node.store,
            &node.invitations_used,
            header,
            now_ms(),
        )
        .is_some()
    };
    if !crate::metrics::authorized(&node.metrics_token, &node.token, header) && !invited() {
        let mut r = response(
            401,
            "text/plain; charset=utf-8",
            crate::metrics::UNAUTHORIZED.as_bytes().to_vec(),
        );
        r.headers_mut().insert(
            "www-authenticate",
            hyper::header::HeaderValue::from_static("Bearer realm=\"understudy metrics\""),
        );
        return r;
    }
    if method != "GET" {
        return response(
            405,
            "text/plain; charset=utf-8",
            b"/metrics answers GET only\n".to_vec(),
        );
    }
    match crate::metrics::scrape(&node.core, &node.store, &node.check_runs).await {
        Ok(text) => response(200, crate::metrics::CONTENT_TYPE, text.into_bytes()),
        Err(why) => response(
            503,
            "text/plain; charset=utf-8",
            format!("{why}\n").into_bytes(),
        ),
    }
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

/// The one request handler, for callers that hold `(method, path, body)` (the desktop window's
/// `admin` command, which is this node's own and has every right): the route table turns them
/// into a [`Request`].
pub(crate) async fn handle(
    node: &Arc<Admin>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    handle_as(node, Permission::Admin, method, path, body).await
}

/// [`handle`] for a caller holding `grant` (UI-5): a request that needs more is refused with
/// 403 and the reason, and nothing is done.
async fn handle_as(
    node: &Arc<Admin>,
    grant: Permission,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let answer = match Request::from_http(method, path, body) {
        Ok(request) if request.needs() > grant => Err(Refusal::new(
            understudy_api::RefusalKind::Forbidden,
            format!(
                "{method} {}: needs the {} permission and this token has {} \
                 (an operator token may read and carry out operator actions: force failover, \
                 revert, recall, accept or reject agents, ha standby; not change roles, \
                 certificates, invitations or site configuration)",
                path.split('?').next().unwrap_or(path),
                request.needs().as_str(),
                grant.as_str()
            ),
        )),
        Ok(request) => answer(node, request).await,
        Err(refusal) => Err(refusal),
    };
    http_answer(answer)
}

/// Answers one request: store-only reads and local IO here, the rest in the core.
pub(crate) async fn answer(node: &Arc<Admin>, request: Request) -> Answer {
    match request {
        Request::Records(q) => records(node, &q),
        Request::Events(q) => events(node, &q).await,
        Request::Invite(spec) => {
            may_change_site(node)?;
            let config = node.config();
            let fingerprint = node.trust.identity.fingerprint();
            to_value(crate::invite::create(
                &mut node.store(),
                &config,
                &fingerprint,
                &spec,
                now_ms(),
            )?)
        }
        Request::Invitations => {
            to_value(crate::invite::list(&node.store(), &node.invitations_used)?)
        }
        Request::RevokeInvitation { name } => {
            may_change_site(node)?;
            done(crate::invite::revoke(&mut node.store(), &name)?)
        }
        Request::Alerts(q) => alerts(node, &q),
        Request::Channels => to_value(crate::alerts::list(&node.store())),
        Request::PutChannel(spec) => {
            may_change_site(node)?;
            done(crate::alerts::add(&mut node.store(), spec)?)
        }
        Request::EditChannel(edit) => {
            may_change_site(node)?;
            done(crate::alerts::edit(&mut node.store(), &edit, now_ms())?)
        }
        Request::RemoveChannel { name } => {
            may_change_site(node)?;
            done(crate::alerts::remove(&mut node.store(), &name)?)
        }
        Request::TestChannel { name } => {
            let site = node.config().node.name.clone();
            done(crate::alerts::test(&node.store, &node.desktop, &site, &name).await?)
        }
        Request::Cert => match tls::load_or_generate(&node.data_dir) {
            Ok(c) => to_value(CertInfo {
                fingerprint: c.fingerprint,
                sans: c.sans,
                not_after: c.not_after,
            }),
            Err(e) => Err(Refusal::failed(e)),
        },
        Request::GenerateCert(c) => generate_cert(node, c).await,
        Request::Send { records } => send(node, records),
        Request::Trust { fingerprint } => trust(node, &fingerprint),
        Request::Settings => to_value(Settings {
            notifications: node.config().ui.notifications,
        }),
        Request::SetSettings { notifications } => settings(node, notifications),
        // MX-3: the console's pictures, read from the store and downsampled here.
        Request::CheckSeries { name, window } => to_value(crate::series::check(
            &node.store(),
            &name,
            &window,
            now_ms(),
        )?),
        Request::PairSeries { name, window } => to_value(crate::series::pair(
            &node.store(),
            &name,
            &window,
            now_ms(),
        )?),
        Request::RoleSeries(window) => to_value(crate::series::role_strips(
            &node.store(),
            &window,
            now_ms(),
        )?),
        Request::RecordSeries(window) => {
            to_value(crate::series::records(&node.store(), &window, now_ms())?)
        }
        request => {
            let (tx, rx) = oneshot::channel();
            let stopping = || {
                Refusal::new(
                    understudy_api::RefusalKind::Unavailable,
                    "the node is stopping",
                )
            };
            if node.core.send(Input::Admin { request, reply: tx }).is_err() {
                return Err(stopping());
            }
            rx.await.unwrap_or_else(|_| Err(stopping()))
        }
    }
}

/// AL-4, UI-5: channels and invitations are site configuration, changed on the acting server (a
/// STANDBY takes them from it, HS-3).
fn may_change_site(node: &Admin) -> Result<(), Refusal> {
    if !node.config().node.server {
        return Err(Refusal::conflict("this node has no server role"));
    }
    if !*node.acting.borrow() {
        return Err(Refusal::conflict(
            "this server is not the acting server of the site",
        ));
    }
    Ok(())
}

/// `alert list` (AL-1, AL-5): the outbox as stored, newest `limit` (default 100).
fn alerts(node: &Admin, q: &understudy_api::AlertQuery) -> Answer {
    let list = node
        .store()
        .alerts_list(q.limit.unwrap_or(100), q.pending)
        .map_err(Refusal::failed)?;
    let severity =
        |s: &str| understudy_api::Severity::parse(s).unwrap_or(understudy_api::Severity::Info);
    to_value(understudy_api::Alerts {
        alerts: list
            .into_iter()
            .map(|a| understudy_api::AlertView {
                severity: severity(&a.severity),
                id: a.id,
                event_id: a.event_id,
                time_ms: a.time_ms,
                code: a.code,
                subject: a.subject,
                sentence: a.sentence,
                deliveries: a
                    .deliveries
                    .into_iter()
                    .map(|d| understudy_api::DeliveryView {
                        channel: d.channel,
                        state: d.state,
                        attempts: d.attempts,
                        last_error: d.last_error,
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn records(node: &Admin, q: &RecordQuery) -> Answer {
    let filter = RecordFilter {
        agent: q.agent.clone(),
        pair: q.pair.clone(),
        limit: q.limit,
    };
    let list = node
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
            labels: r.record.labels,
        })
        .collect();
    to_value(Records { records })
}

/// `events`; with `follow` (UI-5) a long poll: the answer waits up to
/// [`defaults::EVENTS_FOLLOW_WAIT`] for an event after the cursor, then answers what there is
/// (possibly nothing; the client asks again). `after` is a stable key `ORIGIN:N`: on either
/// server of a hot-standby pair, the events stored after that event (or after the last event
/// of that origin numbered below it that this store holds, when it never got that one).
async fn events(node: &Admin, q: &EventQuery) -> Answer {
    let mut wake = node.events.subscribe();
    let deadline = tokio::time::Instant::now() + defaults::EVENTS_FOLLOW_WAIT;
    loop {
        let since = match &q.after {
            Some(key) => {
                let (origin, n) = EventView::parse_key(key).ok_or_else(|| {
                    Refusal::invalid(format!(
                        "after {key:?} is not an event key (ORIGIN:N, an event's `key`)"
                    ))
                })?;
                node.store()
                    .event_position(origin, n)
                    .map_err(Refusal::failed)?
                    .max(q.since)
            }
            None => q.since,
        };
        let list = node
            .store()
            .events_list(
                since,
                q.code.as_deref(),
                q.limit.unwrap_or(defaults::EVENTS_LIMIT),
            )
            .map_err(Refusal::failed)?;
        let events: Vec<EventView> = list
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
                .keyed(e.origin_id)
            })
            .collect();
        let now = tokio::time::Instant::now();
        if !q.follow || !events.is_empty() || now >= deadline {
            return to_value(understudy_api::event::Events { events });
        }
        // Woken by an event this node stores; replicated events (a STANDBY's) are not
        // announced, so look again within a second anyway.
        let wait = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(wait, wake.recv()).await;
    }
}

fn send(node: &Admin, list: Vec<understudy_api::NewRecord>) -> Answer {
    if !node.config().node.agent {
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
        understudy_api::check_labels(&r.labels)
            .map_err(|e| Refusal::invalid(format!("record {}: {e}", r.name)))?;
        // Issue 12 item 3: under a pair's alias, the counter this agent holds (none if it does
        // not hold the duty: the server takes such records only from the holder).
        let pair_epoch = r.pair.as_ref().and_then(|p| {
            let leases = node.leases.lock().unwrap_or_else(|p| p.into_inner());
            leases.get(p).map(|l| l.epoch)
        });
        records.push(NewRecord {
            pair_epoch,
            name: r.name,
            value: r.value,
            time_ms: r.time_ms.unwrap_or_else(now_ms),
            pair: r.pair,
            kind: r.kind.unwrap_or_else(|| "metric".to_string()),
            detail: r.detail,
            labels: r.labels,
        });
    }
    // AG-2: durable in the cache before anything is sent.
    match node.store().cache_append(&records) {
        Ok(seqs) => {
            let (first, last) = (
                seqs.first().copied().unwrap_or(0),
                seqs.last().copied().unwrap_or(0),
            );
            let _ = node.core.send(Input::Cached(last));
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
fn trust(node: &Admin, fp: &str) -> Answer {
    let fp = config::normalize_fingerprint(fp).map_err(Refusal::invalid)?;
    let mut untrusted = node
        .trust
        .untrusted
        .lock()
        .unwrap_or_else(|p| p.into_inner());
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
    // Trusted for the address it was seen at only (issue 12 item 2).
    node.trust.pins.add(&addr, &fp);
    node.trust.save(&node.store);
    done(format!("{addr} trusted with certificate {fp}"))
}

fn settings(node: &Admin, notifications: bool) -> Answer {
    let mut config = node.config.lock().unwrap_or_else(|p| p.into_inner());
    config.ui.notifications = notifications;
    config
        .save(&node.data_dir.join(CONFIG_FILE))
        .map_err(Refusal::failed)?;
    done(format!(
        "notifications {}",
        if notifications { "on" } else { "muted" }
    ))
}

/// CT-1/CT-2: a new certificate, announced over the existing (old-certificate) links first, so
/// agents and the peer pin it before it is taken into use.
async fn generate_cert(node: &Arc<Admin>, request: understudy_api::CertRequest) -> Answer {
    let mut ips = Vec::new();
    for ip in &request.ips {
        match ip.parse() {
            Ok(ip) => ips.push(ip),
            Err(_) => return Err(Refusal::invalid(format!("{ip} is not an IP address"))),
        }
    }
    let info =
        tls::generate_certificate(&node.data_dir, &ips, &request.dns).map_err(Refusal::failed)?;
    let fp = info.fingerprint.clone();
    // This node's own agent role (standalone) pins the new certificate where it pinned the old.
    node.trust.pins.rotate_everywhere(
        &node.trust.identity.fingerprint(),
        &fp,
        crate::mailbox::now_ms(),
        understudy_api::defaults::PIN_RETIRE_AFTER,
    );
    node.trust.save(&node.store);
    let (tx, rx) = oneshot::channel();
    let _ = node.core.send(Input::CertRotated {
        fingerprint: fp.clone(),
        done: tx,
    });
    let _ = rx.await;
    node.trust
        .identity
        .reload(&node.data_dir)
        .map_err(Refusal::failed)?;
    store_event(
        &node.store,
        &node.events,
        &engine::Event::new(
            engine::EventCode::CertGenerated,
            node.config().node.name,
            format!("new certificate {fp} in use ({} names)", info.sans.len()),
        ),
        // AL-1: it alerts like the engines' events while this node acts.
        *node.acting.borrow(),
    );
    to_value(
        Done::new(format!("certificate generated: {fp}"))
            .with("fingerprint", &fp)
            .with("sans", &info.sans)
            .with("not_after", &info.not_after),
    )
}
