//! The admin API: one request vocabulary (method, path, JSON body → status, JSON) shared by the
//! HTTPS API, the CLI and the desktop app, plus the embedded web console. Requests that read or
//! change what the engine decides go through the core; store-only reads are answered here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use understudy_engine::{
    self as engine, validate_role_change, PairConfig, RoleChange, RoleContext, Roles,
    SwitchbackPolicy,
};

use crate::config::{self, parse_duration, CONFIG_FILE};
use crate::runtime::{self, error, ok, pair_doc, Core, Input, LinkCmd, Shared};
use crate::store::{NewRecord, RecordFilter};
use crate::tls;
use crate::wire::ToAgent;

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
        let (s, v) = error(
            401,
            "a valid admin token is required (Authorization: Bearer <token>)",
        );
        return response(s, "application/json", v.to_string().into_bytes());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let (s, v) = error(400, format!("request body: {e}"));
            return response(s, "application/json", v.to_string().into_bytes());
        }
    };
    let body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                let (s, v) = error(400, format!("the body is not JSON: {e}"));
                return response(s, "application/json", v.to_string().into_bytes());
            }
        }
    };
    let (status, value) = handle(&shared, &method, &path, body).await;
    response(status, "application/json", value.to_string().into_bytes())
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

fn query(path: &str) -> (String, Vec<(String, String)>) {
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
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

/// The route's segments, each percent-decoded (a name with a space arrives as `web%201`).
fn path_segments(route: &str) -> Vec<String> {
    route
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The one request handler.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (route, q) = query(path);
    let segments = path_segments(&route);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, segments.as_slice()) {
        ("GET", ["api", "records"]) => records(shared, &q),
        ("GET", ["api", "events"]) => events(shared, &q),
        ("GET", ["api", "cert"]) => match tls::load_or_generate(&shared.data_dir) {
            Ok(c) => (
                200,
                json!({ "fingerprint": c.fingerprint, "sans": c.sans, "not_after": c.not_after }),
            ),
            Err(e) => error(500, e.to_string()),
        },
        ("POST", ["api", "cert", "generate"]) => generate_cert(shared, body).await,
        ("POST", ["api", "send"]) => send(shared, body),
        ("POST", ["api", "link", "trust"]) => trust(shared, body),
        ("GET", ["api", "settings"]) => (
            200,
            json!({ "ui.notifications": shared.config().ui.notifications }),
        ),
        ("POST", ["api", "settings"]) => settings(shared, body),
        _ => {
            let (tx, rx) = oneshot::channel();
            let input = Input::Admin {
                method: method.to_string(),
                path: path.to_string(),
                body,
                reply: tx,
            };
            if shared.core.send(input).is_err() {
                return error(503, "the node is stopping");
            }
            rx.await
                .unwrap_or_else(|_| error(503, "the node is stopping"))
        }
    }
}

fn records(shared: &Shared, q: &[(String, String)]) -> (u16, Value) {
    let limit = match param(q, "limit").map(str::parse::<usize>) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(400, "limit must be a number"),
        None => None,
    };
    let filter = RecordFilter {
        agent: param(q, "agent").map(String::from),
        pair: param(q, "pair").map(String::from),
        limit,
    };
    let kind = param(q, "kind");
    match shared.store().records_list(&filter) {
        Ok(list) => {
            let records: Vec<Value> = list
                .iter()
                .filter(|r| kind.is_none_or(|k| r.record.kind == k))
                .map(|r| {
                    json!({
                        "agent": r.agent_name, "agent_id": r.agent_id, "seq": r.record.seq, "pair": r.record.pair,
                        "name": r.record.name, "value": r.record.value, "time_ms": r.record.time_ms,
                        "kind": r.record.kind, "detail": r.record.detail, "taken_for": r.taken_for,
                    })
                })
                .collect();
            (200, json!({ "records": records }))
        }
        Err(e) => error(500, e.to_string()),
    }
}

fn events(shared: &Shared, q: &[(String, String)]) -> (u16, Value) {
    let since = param(q, "since")
        .and_then(|s| s.trim_start_matches('#').parse().ok())
        .unwrap_or(0);
    let since_ms: i64 = param(q, "since_ms")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let limit = param(q, "limit")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000usize);
    let code = param(q, "code").filter(|c| !c.is_empty());
    match shared.store().events_list(since, code, limit) {
        Ok(list) => {
            let events: Vec<Value> = list
                .iter()
                .filter(|e| e.event.time_ms >= since_ms)
                .map(|e| json!({ "id": e.id, "time_ms": e.event.time_ms, "code": e.event.code, "subject": e.event.subject, "sentence": e.event.detail, "origin": e.origin }))
                .collect();
            (200, json!({ "events": events }))
        }
        Err(e) => error(500, e.to_string()),
    }
}

fn send(shared: &Shared, body: Option<Value>) -> (u16, Value) {
    if !shared.config().node.agent {
        return error(
            409,
            "this node has no agent role: records are handed to an agent",
        );
    }
    let Some(list) = body
        .as_ref()
        .and_then(|b| b.get("records"))
        .and_then(Value::as_array)
    else {
        return error(400, "expected {\"records\": [{\"name\": …, \"value\": …}]}");
    };
    let mut records = Vec::with_capacity(list.len());
    for r in list {
        let (Some(name), Some(value)) = (
            r.get("name").and_then(Value::as_str),
            r.get("value").and_then(Value::as_f64),
        ) else {
            return error(
                400,
                format!("each record needs a name and a numeric value: {r}"),
            );
        };
        if name.is_empty() {
            return error(400, "a record name may not be empty");
        }
        records.push(NewRecord {
            name: name.to_string(),
            value,
            time_ms: r
                .get("time_ms")
                .and_then(Value::as_i64)
                .unwrap_or_else(runtime::now_ms),
            pair: r.get("pair").and_then(Value::as_str).map(String::from),
            kind: r
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("metric")
                .to_string(),
            detail: r.get("detail").and_then(Value::as_str).map(String::from),
        });
    }
    if records.is_empty() {
        return error(400, "no records given");
    }
    // AG-2: durable in the cache before anything is sent.
    match shared.store().cache_append(&records) {
        Ok(seqs) => {
            let (first, last) = (
                seqs.first().copied().unwrap_or(0),
                seqs.last().copied().unwrap_or(0),
            );
            let _ = shared.core.send(Input::Cached(last));
            (
                200,
                json!({ "ok": true, "message": format!("{} records cached", seqs.len()), "first_seq": first, "last_seq": last }),
            )
        }
        Err(e) => error(507, format!("records not written: {e}")),
    }
}

/// CT-2: the operator accepts a server certificate seen on first contact (listed in
/// `status.link.untrusted`); it is pinned from now on.
fn trust(shared: &Shared, body: Option<Value>) -> (u16, Value) {
    let Some(fp) = body
        .as_ref()
        .and_then(|b| b.get("fingerprint"))
        .and_then(Value::as_str)
    else {
        return error(400, "expected {\"fingerprint\": \"<sha256 hex>\"}");
    };
    let fp = match config::normalize_fingerprint(fp) {
        Ok(fp) => fp,
        Err(m) => return error(400, m),
    };
    let mut untrusted = shared.untrusted.lock().unwrap_or_else(|p| p.into_inner());
    let Some(addr) = untrusted
        .iter()
        .find(|(_, seen)| **seen == fp)
        .map(|(a, _)| a.clone())
    else {
        return error(404, format!("no server presented {fp}: only a certificate seen on first contact can be accepted"));
    };
    untrusted.remove(&addr);
    shared.pins.add(&fp);
    if let Err(e) = shared.store().state_set("pins", &json!(shared.pins.list())) {
        return error(500, e.to_string());
    }
    ok(format!("{addr} trusted with certificate {fp}"))
}

fn settings(shared: &Shared, body: Option<Value>) -> (u16, Value) {
    let Some(v) = body
        .as_ref()
        .and_then(|b| b.get("ui.notifications"))
        .and_then(Value::as_bool)
    else {
        return error(400, "expected {\"ui.notifications\": true|false}");
    };
    let mut config = shared.config.lock().unwrap_or_else(|p| p.into_inner());
    config.ui.notifications = v;
    if let Err(e) = config.save(&shared.data_dir.join(CONFIG_FILE)) {
        return error(500, e.to_string());
    }
    ok(format!("notifications {}", if v { "on" } else { "muted" }))
}

/// CT-1/CT-2: a new certificate, announced over the existing (old-certificate) links first, so
/// agents and the peer pin it before it is taken into use.
async fn generate_cert(shared: &Arc<Shared>, body: Option<Value>) -> (u16, Value) {
    let body = body.unwrap_or(json!({}));
    let mut ips = Vec::new();
    for ip in body
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match ip.as_str().and_then(|s| s.parse().ok()) {
            Some(ip) => ips.push(ip),
            None => return error(400, format!("{ip} is not an IP address")),
        }
    }
    let dns: Vec<String> = body
        .get("dns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(String::from))
        .collect();
    let info = match tls::generate_certificate(&shared.data_dir, &ips, &dns) {
        Ok(i) => i,
        Err(e) => return error(500, e.to_string()),
    };
    let fp = info.fingerprint.clone();
    shared.pins.add(&fp);
    let _ = shared.store().state_set("pins", &json!(shared.pins.list()));
    crate::net::announce_cert_to_peer(shared, &fp).await;
    let (tx, rx) = oneshot::channel();
    let _ = shared.core.send(Input::Admin {
        method: "POST".into(),
        path: "/internal/cert-rotated".into(),
        body: Some(json!({ "fingerprint": fp })),
        reply: tx,
    });
    let _ = rx.await;
    if let Err(e) = shared.identity.reload(&shared.data_dir) {
        return error(500, e.to_string());
    }
    runtime::record_event(
        shared,
        &engine::Event::new(
            engine::EventCode::CertGenerated,
            shared.config().node.name,
            format!("new certificate {fp} in use ({} names)", info.sans.len()),
        ),
    );
    (
        200,
        json!({ "ok": true, "message": format!("certificate generated: {fp}"), "fingerprint": fp, "sans": info.sans, "not_after": info.not_after }),
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

pub(crate) fn core_request(
    core: &mut Core,
    now: Instant,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (route, _q) = query(path);
    let segments = path_segments(&route);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let r = match (method, segments.as_slice()) {
        ("GET", ["api", "status"]) => (200, status(core)),
        ("GET", ["api", "pairs"]) => (200, json!({ "pairs": status(core)["pairs"] })),
        ("POST", ["api", "pairs"]) => put_pair(core, now, body),
        ("DELETE", ["api", "pairs", name]) => {
            with_acting_server(core, |s| s.remove_pair(now, name)).and_then_persist(core, |c| {
                let _ = c.shared().store().pair_remove(name);
            })
        }
        ("POST", ["api", "pairs", name, "force-failover"]) => {
            with_acting_server(core, |s| s.force_failover(now, name)).into()
        }
        ("POST", ["api", "pairs", name, "revert"]) => {
            with_acting_server(core, |s| s.revert(now, name)).into()
        }
        ("GET", ["api", "agents"]) => (200, json!({ "agents": status(core)["agents"] })),
        ("POST", ["api", "agents", name, "accept"]) => {
            with_server(core, |s| s.accept_agent(now, name)).into()
        }
        ("POST", ["api", "agents", name, "reject"]) => {
            with_server(core, |s| s.reject_agent(now, name)).into()
        }
        ("POST", ["api", "agents", name, "forget"]) => {
            with_server(core, |s| s.forget_agent(now, name)).into()
        }
        ("POST", ["api", "agents", name, "recall"]) => {
            with_server(core, |s| s.recall(now, name)).into()
        }
        ("POST", ["api", "ha", "standby"]) => with_server(core, |s| s.operator_standby(now)).into(),
        ("POST", ["api", "role"]) => set_role(core, now, body),
        ("GET", ["api", "checks"]) => {
            let checks = core.shared().store().checks_list().unwrap_or_default();
            let list: Vec<Value> = checks
                .into_iter()
                .map(|(n, mut c)| {
                    c["name"] = json!(n);
                    c
                })
                .collect();
            (200, json!({ "checks": list }))
        }
        ("POST", ["api", "checks"]) => put_check(core, body),
        ("DELETE", ["api", "checks", name]) => {
            let removed = core.shared().store().check_remove(name);
            match removed {
                Ok(Some(_)) => {
                    push_checks(core);
                    ok(format!("check {name} removed"))
                }
                Ok(None) => error(404, format!("no check named {name}")),
                Err(e) => error(500, e.to_string()),
            }
        }
        ("POST", ["internal", "cert-rotated"]) => {
            let fp = body
                .as_ref()
                .and_then(|b| b.get("fingerprint"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for (_, tx) in core.server_conns() {
                let _ = tx.send(ToAgent::CertRotated {
                    fingerprint: fp.clone(),
                });
            }
            for tx in core.agent_links() {
                let _ = tx.send(LinkCmd::CertRotated(fp.clone()));
            }
            ok("announced")
        }
        _ => error(404, format!("no such request: {method} {route}")),
    };
    core.drain_now();
    r
}

/// An engine answer as an HTTP answer: refusals are 409 with their reason.
struct Answer(Result<String, (u16, String)>);

impl From<Answer> for (u16, Value) {
    fn from(a: Answer) -> Self {
        match a.0 {
            Ok(m) => ok(m),
            Err((s, m)) => error(s, m),
        }
    }
}

impl Answer {
    fn and_then_persist(self, core: &mut Core, f: impl FnOnce(&mut Core)) -> (u16, Value) {
        if self.0.is_ok() {
            f(core);
        }
        self.into()
    }
}

fn with_server(
    core: &mut Core,
    f: impl FnOnce(&mut engine::Server) -> Result<String, String>,
) -> Answer {
    match core.server_engine_mut() {
        Some(s) => Answer(f(s).map_err(|m| (if m.starts_with("no ") { 404 } else { 409 }, m))),
        None => Answer(Err((409, "this node has no server role".into()))),
    }
}

fn with_acting_server(
    core: &mut Core,
    f: impl FnOnce(&mut engine::Server) -> Result<String, String>,
) -> Answer {
    match core.server_engine_mut() {
        Some(s) if !s.is_acting() => Answer(Err((
            409,
            "this server is not the acting server of the site".into(),
        ))),
        _ => with_server(core, f),
    }
}

fn put_pair(core: &mut Core, now: Instant, body: Option<Value>) -> (u16, Value) {
    let Some(b) = body else {
        return error(400, "expected a pair definition");
    };
    let text = |k: &str| b.get(k).and_then(Value::as_str).map(String::from);
    let dur = |k: &str, d: &str| {
        parse_duration(b.get(k).and_then(Value::as_str).unwrap_or(d))
            .map_err(|m| format!("{k}: {m}"))
    };
    let (Some(name), Some(primary), Some(secondary)) =
        (text("name"), text("primary"), text("secondary"))
    else {
        return error(400, "a pair needs name, primary and secondary");
    };
    let failover_after = match dur("failover_after", "10s") {
        Ok(d) => d,
        Err(m) => return error(400, m),
    };
    let hold_down = match dur("hold_down", "60s") {
        Ok(d) => d,
        Err(m) => return error(400, m),
    };
    let switchback = match text("switchback").as_deref() {
        None | Some("auto") => SwitchbackPolicy::Auto { hold_down },
        Some("manual") => SwitchbackPolicy::Manual,
        Some(other) => {
            return error(
                400,
                format!("switchback must be auto or manual, not {other}"),
            )
        }
    };
    let config = PairConfig {
        name: name.clone(),
        primary,
        secondary,
        failover_after,
        switchback,
    };
    let answer = with_acting_server(core, |s| s.put_pair(now, config.clone(), None));
    if answer.0.is_ok() {
        let state = core
            .server_engine()
            .and_then(|s| s.pair(&name))
            .map(|p| p.state().clone())
            .unwrap_or_default();
        if let Err(e) = core
            .shared()
            .store()
            .pair_put(&name, &pair_doc(&config, &state))
        {
            return error(500, e.to_string());
        }
        push_checks(core);
    }
    answer.into()
}

fn put_check(core: &mut Core, body: Option<Value>) -> (u16, Value) {
    let Some(b) = body else {
        return error(400, "expected a check definition");
    };
    let Some(name) = b
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return error(400, "a check needs a name");
    };
    match b.get("kind").and_then(Value::as_str) {
        Some("tcp" | "http" | "command") => {}
        Some(other) => {
            return error(
                400,
                format!("unknown check kind {other}: expected tcp, http or command"),
            )
        }
        None => return error(400, "a check needs a kind: tcp, http or command"),
    }
    if b.get("target").is_none() {
        return error(400, "a check needs a target");
    }
    for k in ["every", "timeout"] {
        if let Some(v) = b.get(k) {
            if let Err(m) = v
                .as_str()
                .ok_or_else(|| "must be a duration".to_string())
                .and_then(parse_duration)
            {
                return error(400, format!("{k}: {m}"));
            }
        }
    }
    let (agent, pair) = (
        b.get("agent").and_then(Value::as_str),
        b.get("pair").and_then(Value::as_str),
    );
    if agent.is_some() == pair.is_some() {
        return error(
            400,
            "a check is assigned to exactly one of --agent or --pair",
        );
    }
    if let Some(p) = pair {
        if core.server_engine().and_then(|s| s.pair(p)).is_none() {
            return error(404, format!("no pair named {p}"));
        }
    }
    let mut doc = b.clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("name");
    }
    if let Err(e) = core.shared().store().check_put(name, &doc) {
        return error(500, e.to_string());
    }
    push_checks(core);
    ok(format!("check {name} defined"))
}

/// CK-2: every connected agent gets its (possibly changed) list of checks.
fn push_checks(core: &mut Core) {
    for (agent, tx) in core.server_conns() {
        let checks = checks_for(core.shared(), &agent);
        let _ = tx.send(ToAgent::Checks { checks });
    }
}

fn set_role(core: &mut Core, now: Instant, body: Option<Value>) -> (u16, Value) {
    let b = body.unwrap_or(json!({}));
    let flag = |k: &str| -> Result<Option<bool>, String> {
        match b.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(Value::String(s)) if s == "on" => Ok(Some(true)),
            Some(Value::String(s)) if s == "off" => Ok(Some(false)),
            Some(other) => Err(format!("{k} must be on or off, not {other}")),
        }
    };
    let (server, agent) = match (flag("server"), flag("agent")) {
        (Ok(s), Ok(a)) => (s, a),
        (Err(m), _) | (_, Err(m)) => return error(400, m),
    };
    let failover = match b.get("failover").and_then(Value::as_str) {
        None => None,
        Some(m) => match engine::FailoverMode::parse(m) {
            Some(m) => Some(m),
            None => {
                return error(
                    400,
                    format!("failover must be off, primary or secondary, not {m}"),
                )
            }
        },
    };
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
        Err(reason) => return error(409, reason),
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
        return error(409, format!("{key}: {message}"));
    }
    // Persisted first: a crash after this point restarts with the new roles.
    if let Err(e) = config.save(&core.shared().data_dir.join(CONFIG_FILE)) {
        return error(500, e.to_string());
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
            return error(500, e.to_string());
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
            return error(500, e.to_string());
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
    ok(reason)
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn dur(d: std::time::Duration) -> String {
    config::format_duration(d)
}

/// `status --json` (PRODUCT.md §3).
fn status(core: &Core) -> Value {
    let config = core.shared().config();
    let server = core.server_engine();
    let failover = match server {
        Some(s) => json!({
            "mode": s.ha().mode().as_str(), "state": s.ha().state().as_str(), "epoch": s.ha().epoch(),
            "peer": if config.failover.peer.is_empty() { Value::Null } else { json!(config.failover.peer) },
            "peer_state": s.ha().peer().map(|p| p.state.clone()), "reason": s.ha().reason(),
            "replicated_version": s.ha().replicated_version(),
        }),
        None => json!({ "mode": "off", "state": "stopped", "epoch": 0, "peer": Value::Null }),
    };
    let agent = core.agent_engine();
    let link = agent.map(|a| {
        json!({
            "server": a.server().and_then(|s| a.server_url(s)),
            "state": a.state().as_str(),
            "cached": a.cached(),
            "held": a.held(),
            "held_by": a.held_by().into_iter().map(|(server, records)| json!({ "server": server, "records": records })).collect::<Vec<_>>(),
            "error": a.last_error(),
            "untrusted": core.shared().untrusted.lock().unwrap_or_else(|p| p.into_inner()).iter()
                .map(|(addr, fp)| json!({ "address": addr, "fingerprint": fp })).collect::<Vec<_>>(),
        })
    });
    let servers: Vec<Value> = agent
        .map(|a| {
            (0..a.config().servers.len())
                .map(|i| {
                    json!({
                        "url": a.server_url(i), "role": if i == 0 { "home" } else { "standby" },
                        "state": if a.server() == Some(i) { "connected" } else { "idle" },
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let members: Vec<Value> = agent
        .map(|a| a.members().iter().map(|(p, m)| json!({ "pair": p, "epoch": m.epoch().pair, "server_epoch": m.epoch().server, "active": m.is_active() })).collect())
        .unwrap_or_default();
    let pairs: Vec<Value> = server
        .map(|s| {
            s.pairs()
                .map(|p| {
                    let (switchback, hold_down) = match p.config().switchback {
                        SwitchbackPolicy::Auto { hold_down } => ("auto", dur(hold_down)),
                        SwitchbackPolicy::Manual => ("manual", "0s".into()),
                    };
                    json!({
                        "name": p.name(), "primary": p.config().primary, "secondary": p.config().secondary,
                        "active": p.active().map_or("none", |m| m.as_str()), "state": p.status(), "epoch": p.epoch(),
                        "degraded": p.degraded(), "switchback": switchback, "failover_after": dur(p.config().failover_after),
                        "hold_down": hold_down, "held": p.state().held,
                        "primary_connected": p.is_connected(engine::Member::Primary),
                        "secondary_connected": p.is_connected(engine::Member::Secondary),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let agents: Vec<Value> = server
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
                    json!({
                        "name": e.name, "id": e.id, "state": state,
                        "server": if connected { json!(config.node.name) } else { Value::Null },
                        "pending": e.status == engine::AgentStatus::Pending, "fingerprint": e.fingerprint,
                        "standby_slot": s.registry().holds_slot(&e.id),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let checks = core.shared().store().checks_list().unwrap_or_default();
    let checks: Vec<Value> = checks
        .into_iter()
        .map(|(n, mut c)| {
            c["name"] = json!(n);
            c
        })
        .collect();
    json!({
        "node": {
            "id": config.node.id, "name": config.node.name, "listen": config.node.listen,
            "roles": { "server": config.node.server, "agent": config.node.agent },
            "failover": failover,
            "acting": server.is_some_and(|s| s.is_acting()),
            "cert": { "fingerprint": core.shared().identity.fingerprint() },
        },
        "link": link,
        "servers": servers,
        "members": members,
        "agent_checks": core.agent_checks().cloned().unwrap_or(json!([])),
        "pairs": pairs,
        "agents": agents,
        "checks": checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_split_and_decoded() {
        let (p, q) = query("/api/records?agent=web%2D1&limit=5&pair=a+b");
        assert_eq!(p, "/api/records");
        assert_eq!(param(&q, "agent"), Some("web-1"));
        assert_eq!(param(&q, "limit"), Some("5"));
        assert_eq!(param(&q, "pair"), Some("a b"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            path_segments("/api/agents/web%201/accept"),
            ["api", "agents", "web 1", "accept"]
        );
        // An encoded slash stays inside its segment; a plus is a plus in a path.
        assert_eq!(
            path_segments("/api/checks/a%2Fb+c"),
            ["api", "checks", "a/b+c"]
        );
    }
}
