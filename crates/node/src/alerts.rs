//! Alerts beyond the desktop (AL-4…AL-6): the channels an operator defines, and the sender, the
//! task that delivers the outbox (`store.rs`, migration 3) while this node is the acting server.
//!
//! The sender reads the due deliveries, groups each channel's for `alert.group_wait` (AL-6) into
//! one message, sends it (webhook, ntfy, email, command) within the channel's timeout and marks
//! each delivery: done on HTTP 2xx, SMTP 250 or exit status 0, otherwise retried with backoff
//! (`store::retry_after`) until `alert.give_up_after`, then failed, raising DELIVERY_FAILED on
//! the other channels. What to send when is decided by [`batch`], a pure function of the due
//! deliveries and the time; the rest is IO.
//!
//! It takes what it needs (the store, the configuration, the event bell, whether this node
//! acts), not the node's whole `Shared`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};
use understudy_api::channel::{parse_http_url, SmtpTls, SmtpUrl};
use understudy_api::status::DesktopMessage;
use understudy_api::{ChannelEdit, ChannelSpec, Channels, Refusal, RefusalKind, Severity};
use understudy_engine::EventCode;

use crate::config::Config;
use crate::store::{DeliveryState, DueDelivery, EventRow, NewAlert, Store, StoreError};

/// At most this many alerts go in one message (a webhook body of about 250 KiB); more go in the
/// next one.
const MAX_PER_MESSAGE: usize = 1000;
/// A message's text lists at most this many alerts, then "and N more" (AL-6).
const LISTED: usize = 20;
/// How often the sender looks at the outbox when nothing woke it.
const IDLE_LOOK: Duration = Duration::from_secs(1);

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---- the desktop (AL-7) ----

/// Shows one message on this machine's desktop: `Ok` once it is shown.
pub type DesktopNotifier = Arc<dyn Fn(&DesktopMessage) -> Result<(), String> + Send + Sync>;

/// AL-7: where a `desktop` channel's messages go. The tray app that embeds this node registers
/// its notifier (`Node::set_desktop_notifier`); a server without one (headless) fails such a
/// delivery, which is then retried and given up like any other.
#[derive(Clone, Default)]
pub struct Desktop(Arc<Mutex<Option<DesktopNotifier>>>);

impl Desktop {
    pub fn set(&self, notifier: Option<DesktopNotifier>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = notifier;
    }

    fn show(&self, message: &DesktopMessage) -> Result<(), String> {
        let notifier = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match notifier {
            Some(show) => show(message),
            None => Err("no desktop: this server runs without the tray app".into()),
        }
    }
}

// ---- channels (AL-4): site configuration ----

/// The stored channels, by name (a document this version cannot read is logged and left out).
pub(crate) fn channels(store: &Store) -> BTreeMap<String, ChannelSpec> {
    let docs = match store.channels_list() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("reading the alert channels: {e}");
            return BTreeMap::new();
        }
    };
    docs.into_iter()
        .filter_map(|(name, mut doc)| {
            // Stored under its name, without it.
            if let Some(o) = doc.as_object_mut() {
                o.insert("name".into(), Value::String(name.clone()));
            }
            let spec: ChannelSpec = serde_json::from_value(doc)
                .map_err(|e| tracing::error!("alert channel {name} is unreadable: {e}"))
                .ok()?;
            Some((name, spec))
        })
        .collect()
}

/// AL-4: the channels whose filter takes an alert with `code` (one delivery row each).
pub(crate) fn channels_for(store: &Store, code: EventCode) -> Vec<String> {
    let severity = Severity::from(code.severity());
    channels(store)
        .into_values()
        .filter(|c| c.accepts(code.as_str(), severity))
        .map(|c| c.name)
        .collect()
}

/// `alert channel list`: secrets "set".
pub(crate) fn list(store: &Store) -> Channels {
    Channels {
        channels: channels(store).values().map(ChannelSpec::view).collect(),
    }
}

/// A channel as its row stores it: under its name, without it.
fn stored_doc(spec: &ChannelSpec) -> Result<Value, Refusal> {
    let mut doc = serde_json::to_value(spec).map_err(Refusal::failed)?;
    if let Some(o) = doc.as_object_mut() {
        o.remove("name");
    }
    Ok(doc)
}

/// `alert channel add`: validated, then stored; a name in use is refused and nothing changes.
pub(crate) fn add(store: &mut Store, spec: ChannelSpec) -> Result<String, Refusal> {
    spec.validate()?;
    let doc = stored_doc(&spec)?;
    match store.channel_add(&spec.name, &doc) {
        Ok(_) => Ok(format!("alert channel {} added", spec.name)),
        Err(StoreError::Conflict { .. }) => Err(Refusal::conflict(format!(
            "an alert channel named {} exists: remove it first",
            spec.name
        ))),
        Err(e) => Err(Refusal::failed(e)),
    }
}

/// `alert channel edit`: the new settings over the stored ones ([`ChannelEdit::apply`]: validated
/// like `add`, secrets kept unless given or cleared), stored in place. The deliveries queued for
/// the channel stay and go out with the new settings, those waiting for a retry at once. A
/// refusal changes nothing.
pub(crate) fn edit(store: &mut Store, edit: &ChannelEdit, now_ms: i64) -> Result<String, Refusal> {
    let name = &edit.channel.name;
    let missing = || Refusal::not_found(format!("no alert channel named {name}"));
    let stored = channels(store).remove(name).ok_or_else(missing)?;
    let spec = edit.apply(&stored)?;
    match store.channel_replace(name, &stored_doc(&spec)?, now_ms) {
        Ok(Some(0)) => Ok(format!("alert channel {name} changed")),
        Ok(Some(n)) => Ok(format!(
            "alert channel {name} changed: its {n} deliveries waiting for a retry go now"
        )),
        Ok(None) => Err(missing()),
        Err(e) => Err(Refusal::failed(e)),
    }
}

/// `alert channel remove`.
pub(crate) fn remove(store: &mut Store, name: &str) -> Result<String, Refusal> {
    match store.channel_remove(name) {
        Ok(Some(_)) => Ok(format!("alert channel {name} removed")),
        Ok(None) => Err(Refusal::not_found(format!("no alert channel named {name}"))),
        Err(e) => Err(Refusal::failed(e)),
    }
}

/// `alert channel test`: one message with a test alert, sent now, from whichever server asked.
pub(crate) async fn test(
    store: &Mutex<Store>,
    desktop: &Desktop,
    site: &str,
    name: &str,
) -> Result<String, Refusal> {
    let Some(channel) = channels(&lock(store)).remove(name) else {
        return Err(Refusal::not_found(format!("no alert channel named {name}")));
    };
    let alert = Item {
        id: uuid::Uuid::new_v4().to_string(),
        code: "TEST".into(),
        severity: "info".into(),
        subject: name.to_string(),
        sentence: format!("a test message from {site} to alert channel {name}"),
        time_ms: now_ms(),
    };
    let message = Message::new(site, vec![alert]);
    match deliver(&channel, desktop, &message).await {
        Ok(()) => Ok(format!("test message sent to alert channel {name}")),
        Err(why) => Err(Refusal::new(
            RefusalKind::Unavailable,
            format!("alert channel {name}: {why}"),
        )),
    }
}

// ---- grouping (AL-6): a pure decision ----

/// What to do with one channel's due deliveries now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Send these (indexes into the due list) as one message.
    Send(Vec<usize>),
    /// Nothing yet: look again at this wall-clock time.
    WaitUntil(i64),
}

/// AL-6: one channel's due deliveries (oldest first). A retry is sent at once, with whatever
/// else is due; a first attempt waits until the oldest first attempt is `group_wait` old, so
/// that the alerts of one `group_wait` go as one message. At most [`MAX_PER_MESSAGE`] at a time.
pub(crate) fn batch(due: &[DueDelivery], now_ms: i64, group_wait: Duration) -> Batch {
    let wait = group_wait.as_millis() as i64;
    let oldest_new = due
        .iter()
        .filter(|d| d.attempts == 0)
        .map(|d| d.time_ms)
        .min();
    let retry = due.iter().any(|d| d.attempts > 0);
    match oldest_new {
        Some(t) if !retry && now_ms < t.saturating_add(wait) => Batch::WaitUntil(t + wait),
        None if !retry => Batch::WaitUntil(now_ms + IDLE_LOOK.as_millis() as i64),
        _ => Batch::Send((0..due.len().min(MAX_PER_MESSAGE)).collect()),
    }
}

// ---- messages ----

/// One alert as a message lists it (the webhook body's `alerts[]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub id: String,
    pub code: String,
    pub severity: String,
    pub subject: String,
    pub sentence: String,
    pub time_ms: i64,
}

impl From<&DueDelivery> for Item {
    fn from(d: &DueDelivery) -> Item {
        Item {
            id: d.alert_id.clone(),
            code: d.code.clone(),
            severity: d.severity.clone(),
            subject: d.subject.clone(),
            sentence: d.sentence.clone(),
            time_ms: d.time_ms,
        }
    }
}

/// One message to one channel: a UUID of its own and the alerts it carries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub id: String,
    pub site: String,
    pub sent_at_ms: i64,
    pub alerts: Vec<Item>,
}

pub(crate) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Message {
    pub fn new(site: &str, alerts: Vec<Item>) -> Message {
        Message {
            id: uuid::Uuid::new_v4().to_string(),
            site: site.to_string(),
            sent_at_ms: now_ms(),
            alerts,
        }
    }

    /// The webhook body of PRODUCT.md §2 (stable), with `title` and `text` added.
    pub fn body(&self) -> Value {
        json!({
            "id": self.id,
            "site": self.site,
            "sent_at": rfc3339(self.sent_at_ms),
            "title": self.title(),
            "text": self.text(),
            "alerts": self.alerts.iter().map(|a| json!({
                "id": a.id,
                "code": a.code,
                "severity": a.severity,
                "subject": a.subject,
                "sentence": a.sentence,
                "at": rfc3339(a.time_ms),
            })).collect::<Vec<_>>(),
        })
    }

    /// "db-ping: CHECK_DOWN" for one alert; "12 alerts: 11 CHECK_DOWN, 1 FAILOVER" for more.
    pub fn title(&self) -> String {
        match self.alerts.as_slice() {
            [one] => format!("{}: {}", one.code, one.subject),
            many => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for a in many {
                    *counts.entry(a.code.as_str()).or_default() += 1;
                }
                let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
                counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
                format!("{} alerts: {}", many.len(), parts.join(", "))
            }
        }
    }

    /// One line per alert, at most [`LISTED`], then "and N more".
    pub fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .alerts
            .iter()
            .take(LISTED)
            .map(|a| {
                format!(
                    "{} [{}] {} {}: {}",
                    rfc3339(a.time_ms),
                    a.severity,
                    a.code,
                    a.subject,
                    a.sentence
                )
            })
            .collect();
        if self.alerts.len() > LISTED {
            lines.push(format!("and {} more", self.alerts.len() - LISTED));
        }
        lines.join("\n")
    }

    /// AL-7: the message as the tray shows it.
    pub fn desktop(&self, channel: &str) -> DesktopMessage {
        DesktopMessage {
            id: self.id.clone(),
            channel: channel.to_string(),
            title: self.title(),
            text: self.text(),
            severity: Severity::parse(self.worst()).unwrap_or(Severity::Info),
            alerts: self.alerts.iter().map(|a| a.id.clone()).collect(),
        }
    }

    fn worst(&self) -> &str {
        let rank = |s: &str| match s {
            "critical" => 2,
            "warning" => 1,
            _ => 0,
        };
        self.alerts
            .iter()
            .map(|a| a.severity.as_str())
            .max_by_key(|s| rank(s))
            .unwrap_or("info")
    }
}

/// `X-Understudy-Signature`: `sha256=<hex HMAC-SHA256(secret, body)>` (AL-4).
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

// ---- transports ----

/// Sends one message within the channel's timeout: `Ok` when the receiver accepted it.
pub(crate) async fn deliver(
    channel: &ChannelSpec,
    desktop: &Desktop,
    message: &Message,
) -> Result<(), String> {
    let timeout = channel.timeout();
    let send = async {
        match channel.kind.as_str() {
            "desktop" => desktop.show(&message.desktop(&channel.name)),
            "webhook" => webhook(channel, message).await,
            "ntfy" => ntfy(channel, message).await,
            "email" => email(channel, message).await,
            "command" => command(channel, message).await,
            other => Err(format!("unknown channel kind {other}")),
        }
    };
    match tokio::time::timeout(timeout, send).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            crate::config::format_duration(timeout)
        )),
    }
}

async fn webhook(channel: &ChannelSpec, message: &Message) -> Result<(), String> {
    let body = serde_json::to_vec(&message.body()).map_err(|e| e.to_string())?;
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(secret) = &channel.secret {
        headers.push(("X-Understudy-Signature".into(), signature(secret, &body)));
    }
    post(channel, &headers, &body).await
}

async fn ntfy(channel: &ChannelSpec, message: &Message) -> Result<(), String> {
    let (priority, tag) = match message.worst() {
        "critical" => ("5", "rotating_light"),
        "warning" => ("4", "warning"),
        _ => ("3", "information_source"),
    };
    let codes: Vec<String> = message
        .alerts
        .iter()
        .map(|a| a.code.to_lowercase())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<&str> = message.alerts.iter().map(|a| a.id.as_str()).collect();
    // Header values are one line of visible ASCII: names and sentences are not.
    let header_safe = |s: String| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    };
    let mut headers = vec![
        ("Title".to_string(), header_safe(message.title())),
        ("Priority".into(), priority.into()),
        ("Tags".into(), format!("{tag},{}", codes.join(","))),
        ("X-Understudy-Alert".into(), ids.join(",")),
        ("Content-Type".into(), "text/plain; charset=utf-8".into()),
    ];
    if let Some(token) = &channel.token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    post(channel, &headers, message.text().as_bytes()).await
}

/// The certificate authorities a channel's TLS verifies servers with: the system's
/// (`/etc/ssl/certs/ca-certificates.crt`) and the channel's own (`--ca FILE`, stored with the
/// channel). A webhook, ntfy or SMTP server is somebody else's: it is verified, not pinned.
fn trusted_roots(
    channel: &ChannelSpec,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = Vec::new();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(pem) = std::fs::read(path) {
            roots.extend(CertificateDer::pem_slice_iter(&pem).flatten());
            break;
        }
    }
    if let Some(ca) = &channel.ca {
        let own = CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the channel's --ca is not PEM certificates: {e}"))?;
        roots.extend(own);
    }
    if roots.is_empty() {
        return Err(
            "no certificate authorities (/etc/ssl/certs/ca-certificates.crt, or the channel's --ca)"
                .into(),
        );
    }
    Ok(roots)
}

fn web_tls(channel: &ChannelSpec) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted_roots(channel)? {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(rustls::DEFAULT_VERSIONS)
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A TLS connection verified against the system's certificate authorities (the forwarding's
/// remote-write receiver, MX-2).
pub(crate) async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    channel_tls_connect(&ChannelSpec::default(), host, tcp).await
}

/// An HTTP/1.1 connection to `host:port` (TLS verified by [`tls_connect`] when `https`), for
/// the forwarder (MX-2) and the `prometheus` check's scrapes (CK-4); its driver runs on its own
/// task until the sender is dropped.
pub(crate) async fn http1_connect(
    https: bool,
    host: &str,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>, String>
{
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if https {
        http1_over(tls_connect(host, tcp).await?, &authority).await
    } else {
        http1_over(tcp, &authority).await
    }
}

/// The HTTP/1.1 handshake on a connected stream; the connection's driver on its own task.
async fn http1_over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    authority: &str,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>, String>
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP with {authority}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A channel's TLS connection: the system's authorities and the channel's `--ca`.
async fn channel_tls_connect(
    channel: &ChannelSpec,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    web_tls(channel)?
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

/// An HTTP/1.1 POST to the channel's URL; `Ok` on a 2xx answer.
async fn post(
    channel: &ChannelSpec,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), String> {
    let (https, host, port, path) = parse_http_url(channel.url.as_deref().unwrap_or_default())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: understudy\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if https {
        let mut s = channel_tls_connect(channel, &host, tcp).await?;
        exchange(&mut s, head.as_bytes(), body).await
    } else {
        let mut s = tcp;
        exchange(&mut s, head.as_bytes(), body).await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    head: &[u8],
    body: &[u8],
) -> Result<(), String> {
    s.write_all(head).await.map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 8192 {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    let line = line.lines().next().unwrap_or("");
    match line.split_whitespace().nth(1).map(str::parse::<u16>) {
        Some(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Some(Ok(status)) => Err(format!(
            "HTTP {status}: {}",
            crate::logsafe::text(line.trim())
        )),
        _ => Err("no HTTP answer".into()),
    }
}

async fn command(channel: &ChannelSpec, message: &Message) -> Result<(), String> {
    let Some((program, args)) = channel.argv.split_first() else {
        return Err("no command".into());
    };
    let mut child = crate::procgroup::command(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    // Dropped with this future when the channel's timeout ends it: the whole group is killed.
    let mut group = crate::procgroup::GroupGuard::new(&child);
    if let Some(mut stdin) = child.stdin.take() {
        let body = serde_json::to_vec(&message.body()).map_err(|e| e.to_string())?;
        // A command that does not read its input still decides by its exit status.
        let _ = stdin.write_all(&body).await;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    group.disarm();
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} ended with {status}"))
    }
}

/// `X-Understudy-Alert`: the ids of the alerts an email carries (AL-5).
#[derive(Clone)]
struct AlertIds(String);

impl lettre::message::header::Header for AlertIds {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Understudy-Alert")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AlertIds(s.to_string()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The message as an email: `Message-ID` from the alert id (one alert) or the message id (AL-5:
/// a repeated delivery carries the same id), the alert ids in `X-Understudy-Alert`.
fn email_message(channel: &ChannelSpec, message: &Message) -> Result<lettre::Message, String> {
    let from = channel.from.as_deref().unwrap_or("understudy@localhost");
    let id = match message.alerts.as_slice() {
        [one] => one.id.as_str(),
        _ => message.id.as_str(),
    };
    let ids: Vec<&str> = message.alerts.iter().map(|a| a.id.as_str()).collect();
    let mut mail = lettre::Message::builder()
        .from(from.parse().map_err(|e| format!("--from {from}: {e}"))?)
        .subject(format!("[{}] {}", message.site, message.title()))
        .message_id(Some(format!("<{id}@understudy>")))
        .date(std::time::UNIX_EPOCH + Duration::from_millis(message.sent_at_ms.max(0) as u64))
        .header(AlertIds(ids.join(",")))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &channel.to {
        mail = mail.to(to.parse().map_err(|e| format!("--to {to}: {e}"))?);
    }
    mail.body(message.text()).map_err(|e| e.to_string())
}

/// AL-4: one email over SMTP (lettre): STARTTLS required (never opportunistic: nothing, a
/// password least of all, goes in the clear), TLS from the first byte (`smtps://`), or in the
/// clear (`?tls=none`); login when the URL has one. `Ok` on the server's 250.
async fn email(channel: &ChannelSpec, message: &Message) -> Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let url = SmtpUrl::parse(channel.smtp.as_deref().unwrap_or_default())?;
    let mail = email_message(channel, message)?;
    let tls = || -> Result<TlsParameters, String> {
        let mut b =
            TlsParameters::builder(url.host.clone()).certificate_store(CertificateStore::None);
        for der in trusted_roots(channel)? {
            b = b.add_root_certificate(
                Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?,
            );
        }
        b.build_rustls()
            .map_err(|e| format!("TLS settings for {}: {e}", url.host))
    };
    let hello: String = gethostname::gethostname()
        .to_string_lossy()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-.".contains(*c))
        .collect();
    let hello = hello.trim_matches('.');
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
        .port(url.port)
        .timeout(Some(channel.timeout()))
        .hello_name(ClientId::Domain(
            if hello.is_empty() { "localhost" } else { hello }.to_string(),
        ))
        .tls(match url.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls()?),
            SmtpTls::Implicit => Tls::Wrapper(tls()?),
        });
    if let Some((user, password)) = &url.login {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    match transport.build().send(mail).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = crate::logsafe::text(&e.to_string()).to_string();
            // RFC 4954: 535, the login refused; said plainly, with whose (never the password).
            if let (Some(535), Some((user, _))) = (e.status().map(u16::from), &url.login) {
                return Err(format!(
                    "SMTP {}:{}: authentication failed for {} ({why})",
                    url.host,
                    url.port,
                    crate::logsafe::text(user)
                ));
            }
            if url.tls == SmtpTls::StartTls && why.contains("STARTTLS") {
                Err(format!("STARTTLS refused ({why}): nothing was sent"))
            } else {
                Err(format!("SMTP {}:{}: {why}", url.host, url.port))
            }
        }
    }
}

// ---- the sender task (AL-5, AL-6) ----

/// What the sender needs of its node.
pub(crate) struct Sender {
    pub store: Arc<Mutex<Store>>,
    pub config: Arc<Mutex<Config>>,
    /// Rung when an event (and so maybe an alert) is stored.
    pub events: broadcast::Sender<u64>,
    /// Whether this node is the acting server (ACTIVE, or `failover.mode = off`).
    pub acting: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
    /// Where `desktop` channels' messages go (AL-7).
    pub desktop: Desktop,
    /// Rung after each mark, for a STANDBY watching this node (`Shared::peer_news`).
    pub peer_news: Arc<tokio::sync::Notify>,
}

/// A message's outcome, for its deliveries' marks.
struct Sent {
    channel: String,
    alerts: Vec<Item>,
    outcome: Result<(), String>,
}

pub(crate) async fn run(mut s: Sender) {
    let mut bell = s.events.subscribe();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut tasks: tokio::task::JoinSet<Sent> = tokio::task::JoinSet::new();
    loop {
        if *s.shutdown.borrow() {
            return;
        }
        let mut next = now_ms() + IDLE_LOOK.as_millis() as i64;
        if *s.acting.borrow() {
            let (site, group_wait) = {
                let c = s.config.lock().unwrap_or_else(|p| p.into_inner());
                (c.node.name.clone(), c.alert.group_wait)
            };
            let now = now_ms();
            let (due, channels) = {
                let store = lock(&s.store);
                (
                    store.deliveries_due(now, 20_000).unwrap_or_else(|e| {
                        tracing::error!("reading the outbox: {e}");
                        Vec::new()
                    }),
                    channels(&store),
                )
            };
            let mut by_channel: BTreeMap<String, Vec<DueDelivery>> = BTreeMap::new();
            for d in due {
                by_channel.entry(d.channel.clone()).or_default().push(d);
            }
            for (name, due) in by_channel {
                if in_flight.contains(&name) {
                    continue;
                }
                let Some(channel) = channels.get(&name).cloned() else {
                    removed_channel(&s, &name, &due);
                    continue;
                };
                match batch(&due, now, group_wait) {
                    Batch::WaitUntil(t) => next = next.min(t),
                    Batch::Send(idx) => {
                        let alerts: Vec<Item> = idx.iter().map(|&i| Item::from(&due[i])).collect();
                        let message = Message::new(&site, alerts.clone());
                        in_flight.insert(name.clone());
                        let desktop = s.desktop.clone();
                        tasks.spawn(async move {
                            let outcome = deliver(&channel, &desktop, &message).await;
                            Sent {
                                channel: channel.name,
                                alerts,
                                outcome,
                            }
                        });
                    }
                }
            }
        }
        let sleep = Duration::from_millis((next - now_ms()).clamp(10, 1000) as u64);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            r = bell.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = r {
                    return;
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(sent) = done {
                    in_flight.remove(&sent.channel);
                    mark(&s, sent, None);
                } else {
                    // A delivery task panicked: its channel is looked at again.
                    in_flight.clear();
                }
            }
            _ = s.acting.changed() => {}
            _ = s.shutdown.changed() => {}
        }
    }
}

/// A channel removed while alerts were queued for it: those deliveries fail when they are due,
/// and, as for any delivery given up, one DELIVERY_FAILED says which and goes to the other
/// channels (the operator removed where they were going; they are not silently dropped).
fn removed_channel(s: &Sender, name: &str, due: &[DueDelivery]) {
    let sent = Sent {
        channel: name.to_string(),
        alerts: due.iter().map(Item::from).collect(),
        outcome: Err("the alert channel was removed".into()),
    };
    mark(s, sent, Some(0));
}

/// Marks each delivery of a message; those given up (after `alert.give_up_after`, read now,
/// or `give_up` when given) raise one DELIVERY_FAILED, alerting on the other channels (AL-5).
fn mark(s: &Sender, sent: Sent, give_up: Option<i64>) {
    let give_up = give_up.unwrap_or_else(|| {
        let c = s.config.lock().unwrap_or_else(|p| p.into_inner());
        c.alert.give_up_after.as_millis() as i64
    });
    let now = now_ms();
    let outcome = sent.outcome.as_ref().map(|_| ()).map_err(String::as_str);
    if let Err(why) = outcome {
        tracing::warn!(
            channel = %crate::logsafe::text(&sent.channel),
            "alert delivery failed: {}",
            crate::logsafe::text(why)
        );
    }
    let mut failed = Vec::new();
    {
        let mut store = lock(&s.store);
        for a in &sent.alerts {
            match store.delivery_mark(&a.id, &sent.channel, outcome, now, give_up) {
                Ok(DeliveryState::Failed) if a.code != EventCode::DeliveryFailed.as_str() => {
                    failed.push(a)
                }
                Ok(_) => {}
                Err(e) => tracing::error!("marking a delivery: {e}"),
            }
        }
    }
    if outcome.is_ok() {
        // A sent mark the STANDBY lacks is a delivery its promoted self would repeat.
        s.peer_news.notify_one();
    }
    if failed.is_empty() {
        return;
    }
    let why = sent.outcome.err().unwrap_or_default();
    let code = EventCode::DeliveryFailed;
    let row = EventRow {
        time_ms: now,
        code: code.as_str().to_string(),
        subject: sent.channel.clone(),
        detail: if give_up == 0 {
            format!(
                "{} alert(s) were not delivered to channel {}: {why}",
                failed.len(),
                sent.channel
            )
        } else {
            format!(
                "{} alert(s) could not be delivered to channel {} before alert.give_up_after: {why}",
                failed.len(),
                sent.channel
            )
        },
        data: json!({
            "rule": code.rule(),
            "notify": code.notify(),
            "alerts": failed.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        }),
    };
    let mut store = lock(&s.store);
    let alert = NewAlert {
        id: uuid::Uuid::new_v4().to_string(),
        severity: code.severity().as_str().to_string(),
        channels: channels_for(&store, code)
            .into_iter()
            .filter(|c| *c != sent.channel)
            .collect(),
    };
    match store.event_append_alerting(&row, Some(&alert)) {
        Ok(id) => {
            tracing::warn!(
                code = code.as_str(),
                "{}",
                crate::logsafe::text(&row.detail)
            );
            let _ = s.events.send(id);
        }
        Err(e) => tracing::error!("storing event {}: {e}", code.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(alert: &str, attempts: u32, time_ms: i64) -> DueDelivery {
        DueDelivery {
            alert_id: alert.into(),
            channel: "hook".into(),
            attempts,
            time_ms,
            code: "CHECK_DOWN".into(),
            severity: "critical".into(),
            subject: format!("check-{alert}"),
            sentence: "failed 3 times in a row".into(),
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn al6_first_attempts_wait_for_the_oldest_to_be_group_wait_old_then_go_as_one_message() {
        let list = vec![due("a", 0, 1_000), due("b", 0, 4_000), due("c", 0, 10_500)];
        assert_eq!(batch(&list, 1_000, WAIT), Batch::WaitUntil(11_000));
        assert_eq!(batch(&list, 10_999, WAIT), Batch::WaitUntil(11_000));
        assert_eq!(batch(&list, 11_000, WAIT), Batch::Send(vec![0, 1, 2]));
    }

    #[test]
    fn al6_a_group_wait_of_zero_sends_at_once() {
        let list = vec![due("a", 0, 1_000)];
        assert_eq!(batch(&list, 1_000, Duration::ZERO), Batch::Send(vec![0]));
    }

    #[test]
    fn al5_a_retry_goes_at_once_with_whatever_else_is_due() {
        let list = vec![due("a", 2, 1_000), due("b", 0, 5_000)];
        assert_eq!(batch(&list, 5_000, WAIT), Batch::Send(vec![0, 1]));
    }

    #[test]
    fn al6_one_message_takes_at_most_its_share_and_lists_twenty_then_and_n_more() {
        let list: Vec<DueDelivery> = (0..MAX_PER_MESSAGE + 7)
            .map(|i| due(&i.to_string(), 0, 0))
            .collect();
        let Batch::Send(idx) = batch(&list, 10_000, WAIT) else {
            panic!("not sent");
        };
        assert_eq!(idx.len(), MAX_PER_MESSAGE);
        let m = Message::new("s1", list[..12].iter().map(Item::from).collect());
        assert_eq!(m.title(), "12 alerts: 12 CHECK_DOWN");
        assert_eq!(m.text().lines().count(), 12);
        let m = Message::new("s1", list[..25].iter().map(Item::from).collect());
        let text = m.text();
        assert_eq!(text.lines().count(), LISTED + 1);
        assert_eq!(text.lines().last(), Some("and 5 more"));
        assert_eq!(m.body()["alerts"].as_array().map(Vec::len), Some(25));
    }

    #[test]
    fn al5_retries_back_off_from_one_second_doubling_to_five_minutes() {
        let secs: Vec<u64> = (1..=12)
            .map(|n| crate::store::retry_after(n).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn al4_the_webhook_signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn al4_an_email_carries_the_alert_ids() {
        let channel = ChannelSpec {
            name: "mail".into(),
            kind: "email".into(),
            to: vec!["ops@h.example".into()],
            from: Some("u@h.example".into()),
            ..ChannelSpec::default()
        };
        let m = Message::new("s1", vec![Item::from(&due("a-1", 0, 0))]);
        let mail = email_message(&channel, &m).expect("an email");
        let text = String::from_utf8_lossy(&mail.formatted()).to_string();
        assert!(text.contains("Message-ID: <a-1@understudy>"), "{text}");
        assert!(text.contains("X-Understudy-Alert: a-1"), "{text}");
        assert!(
            text.contains("Subject: [s1] CHECK_DOWN: check-a-1"),
            "{text}"
        );
        let bad = ChannelSpec {
            to: vec!["not an address".into()],
            ..channel
        };
        assert!(email_message(&bad, &m).unwrap_err().contains("--to"));
    }
}
