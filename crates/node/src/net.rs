//! The node's network IO: the one listening port (ALPN `understudy/1` for agents and the peer,
//! `http/1.1` for the admin API and the console), the agent's outgoing links and probes, and the
//! hot-standby peer polls. Tasks here move bytes and report to the core; they decide nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use understudy_engine::{Admission, Hello, PeerStatus, ProbeResult, TokenCheck, Welcome};

use crate::frame::{read_frame, read_frame_max, write_frame, FrameReader};
use crate::group_commit::{Batch, Stored};
use crate::limits::{ConnLimits, Permit, HANDSHAKE_TIMEOUT};
use crate::logsafe;
use crate::mailbox::{Input, LinkCmd, LinkEvent, Shared};
use crate::store::StoredRecord;
use crate::tls::{self, ALPN_HTTP, ALPN_WIRE};
use crate::wire::{MemberReport, PeerState, ToAgent, ToServer};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
/// How long a new link may take to say what it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest first frame from anyone but the peer: a Hello fits in a few KiB (the peer's first
/// frame may be a Merge of records, up to [`crate::frame::MAX_FRAME`]).
pub const MAX_FIRST_FRAME: usize = 16 * 1024;
/// HS-8: how often a server beats on the peer's watch connection, and how long the watcher waits
/// for a beat before it takes the connection for one a cut link left behind.
const WATCH_BEAT: Duration = Duration::from_secs(1);
const WATCH_STALE: Duration = Duration::from_secs(3);
/// HS-3, AL-5: the least time between two `PeerChanged` on one watch (news in between go with
/// the next).
const PEER_NEWS_SPACING: Duration = Duration::from_millis(20);
/// Records per frame (well under the 1 MiB frame limit).
const BATCH: usize = 500;

/// Accepts connections until the node shuts down. Each holds a [`Permit`] until it shows who it
/// is (issue 12 item 4): connections over the per-address or total limit are closed at once.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    admin: Arc<crate::admin::Admin>,
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: Arc<ConnLimits>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut shutdown = shared.shutdown.subscribe();
    // This machine's own CLI and desktop app are never strangers.
    for ip in [
        shared.listen.ip(),
        std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ] {
        limits.mark_known(ip);
    }
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = limits.acquire(remote.ip(), Instant::now()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let admin = admin.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let (_, conn) = tls.get_ref();
            let alpn = conn.alpn_protocol().map(|p| p.to_vec());
            let fingerprint = tls::peer_fingerprint(conn);
            let link = Unauthenticated {
                remote,
                permit,
                limits,
            };
            match alpn.as_deref() {
                Some(p) if p == ALPN_WIRE.as_bytes() => {
                    wire_connection(shared, tls, fingerprint, link).await
                }
                // An admin connection keeps its permit: its timeouts keep it short.
                Some(p) if p == ALPN_HTTP.as_bytes() => crate::admin::serve_http(admin, tls).await,
                None => crate::admin::serve_http(admin, tls).await,
                Some(other) => {
                    tracing::warn!(%remote, "unknown ALPN protocol {}", logsafe::text(&String::from_utf8_lossy(other)))
                }
            }
        });
    }
}

/// A wire connection not yet known to be an agent or the peer: where it comes from, and its place
/// among the unauthenticated connections, given back once it is.
struct Unauthenticated {
    remote: std::net::SocketAddr,
    permit: Permit,
    limits: Arc<ConnLimits>,
}

impl Unauthenticated {
    /// An agent was admitted or the peer recognised on this connection: its address is the
    /// site's own from now on, and the connection no longer counts against the limits.
    fn authenticated(self) {
        self.limits.mark_known(self.remote.ip());
        drop(self.permit);
    }
}

async fn reply<W: AsyncWrite + Unpin>(w: &mut W, msg: &ToAgent) {
    match write_frame(w, msg).await {
        Ok(()) => {}
        // Not the other side going away: a reply this node could not send at all.
        Err(e @ crate::frame::FrameError::Oversized { .. }) => {
            tracing::warn!("writing a reply: {e}")
        }
        Err(e) => tracing::debug!("writing a reply: {e}"),
    }
}

/// HS-3: at most this many records, events and outbox rows in one peer reply.
const REPLY_RECORDS: usize = 5000;
const REPLY_EVENTS: usize = 1000;
const REPLY_OUTBOX: usize = 500;
/// The JSON a peer reply, a merge or an agent's batch may carry, leaving room in a frame for the
/// rest of the message (its peer state, field names).
const FRAME_BUDGET: usize = crate::frame::MAX_FRAME - 64 * 1024;

/// The length of `value` as JSON.
fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// Keeps the longest prefix of `items` whose JSON fits in `budget` bytes, and takes its length
/// from `budget`. Returns whether any item was cut. (A record is bounded by `check_labels`, a few
/// dozen KiB at most, so the first one always fits an empty frame.)
fn keep_within<T: serde::Serialize>(items: &mut Vec<T>, budget: &mut usize) -> bool {
    let mut used = 0;
    for (i, item) in items.iter().enumerate() {
        let len = json_len(item).saturating_add(1);
        if used + len > *budget {
            items.truncate(i);
            *budget -= used;
            return true;
        }
        used += len;
    }
    *budget -= used;
    false
}

/// One `understudy/1` connection on the server side: an agent link, a probe, or the peer.
async fn wire_connection<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    stream: S,
    fingerprint: Option<String>,
    link: Unauthenticated,
) {
    let remote = link.remote;
    let (mut rd, mut wr) = tokio::io::split(stream);
    // The client certificate is checked before anything it sends is read.
    let Some(fingerprint) = fingerprint else {
        tracing::warn!(%remote, "refused: no client certificate");
        reply(
            &mut wr,
            &ToAgent::Error {
                reason: "a client certificate is required".into(),
            },
        )
        .await;
        return;
    };
    let max = if is_peer(&shared, &fingerprint) {
        crate::frame::MAX_FRAME
    } else {
        MAX_FIRST_FRAME
    };
    let first = match tokio::time::timeout(
        HELLO_TIMEOUT,
        read_frame_max::<ToServer, _>(&mut rd, max),
    )
    .await
    {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            // PRODUCT.md §4: a malformed or oversized message closes that connection, nothing else.
            tracing::warn!(%remote, "closing connection: {}", logsafe::text(&e.to_string()));
            reply(
                &mut wr,
                &ToAgent::Error {
                    reason: e.to_string(),
                },
            )
            .await;
            return;
        }
    };
    match first {
        ToServer::Hello {
            id,
            name,
            home: claimed_home,
            token,
            probe,
            home_fingerprints,
        } => {
            let config = shared.config();
            if !config.node.server {
                reply(
                    &mut wr,
                    &ToAgent::Refused {
                        reason: "this node has no server role".into(),
                        capacity: false,
                    },
                )
                .await;
                return;
            }
            // Issue 12 item 5: an id is a UUID, a name short and plain; the rest is refused
            // before the engine sees it, and the refusal does not echo what was sent.
            let invalid = if crate::config::validate_id(&id).is_err() {
                Some("the agent id is not a UUID".to_string())
            } else {
                crate::config::validate_name(&name)
                    .err()
                    .map(|m| format!("the agent name {m}"))
            };
            if let Some(why) = invalid {
                tracing::warn!(%remote, name = %logsafe::text(&name), "refused a hello: {why}");
                reply(
                    &mut wr,
                    &ToAgent::Refused {
                        reason: why,
                        capacity: false,
                    },
                )
                .await;
                return;
            }
            let expected = config.server.enroll_token.trim();
            // Issue 14 item 3: an `--agent` invitation's token enrolls as many new agents as
            // it has uses; spent, the agent waits for an operator.
            let invited = if token.is_empty() {
                crate::invite::Enrollment::NotInvited
            } else {
                let known = shared.store().agent_get(&id).ok().flatten().is_some();
                crate::invite::enroll(&mut shared.store(), &token, known)
            };
            let token = match invited {
                crate::invite::Enrollment::Valid { .. } => TokenCheck::Valid,
                crate::invite::Enrollment::Spent { id: invitation } => {
                    tracing::info!(
                        %remote,
                        agent = %logsafe::text(&name),
                        "invitation {invitation} has no uses left: the agent waits for an operator"
                    );
                    TokenCheck::Absent
                }
                crate::invite::Enrollment::NotInvited => {
                    if token.is_empty() || expected.is_empty() {
                        TokenCheck::Absent
                    } else if crate::admin_auth::token_matches(expected, &format!("Bearer {token}"))
                    {
                        TokenCheck::Valid
                    } else {
                        TokenCheck::Invalid
                    }
                }
            };
            // A standalone node's own agent is this node: it needs no operator to accept it.
            let own = id == config.node.id && fingerprint == shared.trust.identity.fingerprint();
            let token = if own { TokenCheck::Valid } else { token };
            // An enrollment attempt: a wrong token, or an unknown agent without a valid one.
            // Each address gets a burst of them, then a trickle; every wrong token is logged.
            let known = || shared.store().agent_get(&id).ok().flatten().is_some();
            let attempt = token == TokenCheck::Invalid || (token != TokenCheck::Valid && !known());
            if attempt {
                if let Err(wait) = link.limits.enroll.take(remote.ip(), Instant::now()) {
                    tracing::debug!(%remote, "refused an enrollment attempt: too many from this address");
                    reply(
                        &mut wr,
                        &ToAgent::Refused {
                            reason: format!(
                                "too many enrollment attempts from this address: try again in {} s",
                                wait.as_secs() + 1
                            ),
                            capacity: false,
                        },
                    )
                    .await;
                    return;
                }
            }
            if token == TokenCheck::Invalid {
                let n = link.limits.bad_tokens.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    %remote,
                    agent = %logsafe::text(&name),
                    "wrong enrollment token ({n} since the node started)"
                );
            }
            let hello = Hello {
                id: id.clone(),
                name: name.clone(),
                fingerprint,
                token,
                home: claimed_home || is_home_cluster(&shared, &home_fingerprints),
            };
            if probe {
                let (tx, rx) = oneshot::channel();
                let _ = shared.core.send(Input::ProbeHello { hello, reply: tx });
                let (result, reason) = match rx.await {
                    Ok(ProbeResult::Available) => ("available", String::new()),
                    Ok(ProbeResult::Redirect) => ("redirect", String::new()),
                    Ok(ProbeResult::Refused(r)) => ("refused", r),
                    Ok(ProbeResult::Unreachable(r)) => ("refused", r),
                    Err(_) => ("refused", "node stopping".into()),
                };
                reply(
                    &mut wr,
                    &ToAgent::ProbeResult {
                        result: result.into(),
                        reason,
                    },
                )
                .await;
                return;
            }
            let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
            let (tx, mut rx) = mpsc::unbounded_channel();
            let (answer_tx, answer_rx) = oneshot::channel();
            let _ = shared.core.send(Input::Hello {
                hello,
                conn,
                tx,
                reply: answer_tx,
            });
            let Ok((admission, home)) = answer_rx.await else {
                return;
            };
            match admission {
                Admission::Accepted(w) => {
                    link.authenticated();
                    let checks = crate::docs::checks_for(&shared, &name);
                    // CK-2: an agent that changes server keeps the checks it was given. A server
                    // that is not its home and has none for it (a standby server of another site)
                    // sends null, "keep yours"; its home, or a hot-standby peer holding the
                    // replicated site configuration, sends the list (an empty one included).
                    let checks = if home || checks.as_array().is_some_and(|c| !c.is_empty()) {
                        checks
                    } else {
                        serde_json::Value::Null
                    };
                    reply(
                        &mut wr,
                        &ToAgent::Welcome {
                            cluster: w.cluster,
                            epoch: w.epoch,
                            checks,
                            peer: crate::mailbox::peer_fingerprints(&shared),
                        },
                    )
                    .await;
                }
                Admission::Redirect { to, welcome } => {
                    let to = crate::mailbox::redirect_target(&shared, to);
                    let fingerprint = config.peer().ok().flatten().and_then(|p| p.fingerprint);
                    reply(
                        &mut wr,
                        &ToAgent::Redirect {
                            to,
                            fingerprint,
                            cluster: welcome.cluster,
                            epoch: welcome.epoch,
                        },
                    )
                    .await;
                    return;
                }
                Admission::Refused(r) => {
                    tracing::debug!(%name, "refused: {}", r.reason());
                    reply(
                        &mut wr,
                        &ToAgent::Refused {
                            reason: r.reason(),
                            capacity: r.is_capacity(),
                        },
                    )
                    .await;
                    return;
                }
            }
            agent_connection(&shared, conn, &id, &name, &mut rd, &mut wr, &mut rx).await;
            let _ = shared.core.send(Input::AgentGone { conn, id, name });
        }
        ToServer::PeerPoll {
            replicate,
            site_version,
            records_after,
            events_after,
            outbox_after,
        } => {
            if !is_peer(&shared, &fingerprint) {
                return refuse_not_peer(&mut wr, remote, &fingerprint, "a peer poll").await;
            }
            link.authenticated();
            if replicate {
                use std::sync::atomic::Ordering::SeqCst;
                shared
                    .peer_pulled
                    .records_after
                    .store(records_after, SeqCst);
                shared.peer_pulled.events_after.store(events_after, SeqCst);
                shared.peer_pulled.outbox_after.store(outbox_after, SeqCst);
            }
            let (tx, rx) = oneshot::channel();
            let _ = shared.core.send(Input::PeerState { reply: tx });
            let Ok(state) = rx.await else { return };
            let answer = {
                let store = shared.store();
                let acting = state.state == "active";
                let site =
                    if replicate && acting && store.site_version().unwrap_or(0) != site_version {
                        store.site_snapshot().ok()
                    } else {
                        None
                    };
                let mut records = if replicate && acting {
                    store
                        .records_since(records_after, REPLY_RECORDS)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let mut events = if replicate && acting {
                    store
                        .events_list(events_after, None, REPLY_EVENTS)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                // AL-5: the outbox and its delivery marks.
                let mut outbox = if replicate && acting {
                    store
                        .outbox_since(outbox_after, REPLY_OUTBOX)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                // HS-3: whatever the records' labels weigh, the reply fits in one frame; what
                // is cut (at a count or at the size) comes with the next poll, at once.
                let mut more = records.len() == REPLY_RECORDS
                    || events.len() == REPLY_EVENTS
                    || outbox.len() == REPLY_OUTBOX;
                let mut budget = FRAME_BUDGET.saturating_sub(json_len(&site));
                more |= keep_within(&mut records, &mut budget);
                more |= keep_within(&mut events, &mut budget);
                more |= keep_within(&mut outbox, &mut budget);
                // MX-2: the forwarding cursor, no further than what the STANDBY will hold.
                let forwarded = if replicate && acting {
                    let holds = records.last().map_or(records_after, |r| r.rowid);
                    let cursor = store.forward_cursor().unwrap_or(0).min(holds);
                    store.forward_mark_at(cursor).ok().flatten()
                } else {
                    None
                };
                ToAgent::PeerReply {
                    state,
                    site,
                    records,
                    events,
                    outbox,
                    forwarded,
                    more,
                }
            };
            reply(&mut wr, &answer).await;
        }
        ToServer::Merge { records } => {
            if !is_peer(&shared, &fingerprint) {
                return refuse_not_peer(&mut wr, remote, &fingerprint, "a merge").await;
            }
            link.authenticated();
            let mut batch = records;
            loop {
                // Issue 18: stored in the group of the agents' batches waiting meanwhile.
                let done = shared.group_commit.submit(Batch::Merge(batch));
                let Ok((_, stored)) = done.await else { return };
                let inserted = stored.map_or(0, |new| new.len());
                reply(&mut wr, &ToAgent::MergeDone { inserted }).await;
                match read_frame::<ToServer, _>(&mut rd).await {
                    Ok(Some(ToServer::Merge { records })) => batch = records,
                    _ => return,
                }
            }
        }
        ToServer::PeerWatch => {
            if !is_peer(&shared, &fingerprint) {
                return refuse_not_peer(&mut wr, remote, &fingerprint, "a peer watch").await;
            }
            link.authenticated();
            // Held open until this node stops or the peer goes; a beat every second lets the
            // peer tell a live connection from one a cut link left behind. While this node acts,
            // a stored event or a delivery mark tells the peer at once (`PeerChanged`, HS-3 and
            // AL-5: a STANDBY replicates now, not at its next poll), at most one per
            // `PEER_NEWS_SPACING`.
            let mut shutdown = shared.shutdown.subscribe();
            let mut bell = shared.events.subscribe();
            let mut beat = tokio::time::interval(WATCH_BEAT);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let news = tokio::select! {
                    _ = beat.tick() => false,
                    _ = shutdown.changed() => return,
                    // The peer sends nothing on a watch: whatever arrives (its close) ends it.
                    _ = read_frame::<ToServer, _>(&mut rd) => return,
                    r = bell.recv() => {
                        if let Err(broadcast::error::RecvError::Closed) = r {
                            return;
                        }
                        true
                    }
                    _ = shared.peer_news.notified() => true,
                };
                if news && !*shared.acting.borrow() {
                    continue;
                }
                let frame = if news {
                    ToAgent::PeerChanged
                } else {
                    ToAgent::PeerWatching
                };
                if write_frame(&mut wr, &frame).await.is_err() {
                    return;
                }
                if news {
                    tokio::time::sleep(PEER_NEWS_SPACING).await;
                }
            }
        }
        ToServer::PeerHandover {
            epoch,
            reason,
            events,
            outbox,
            forwarded,
        } => {
            if !is_peer(&shared, &fingerprint) {
                return refuse_not_peer(&mut wr, remote, &fingerprint, "a handover").await;
            }
            link.authenticated();
            if let Err(e) = shared.store().events_merge(&events) {
                tracing::error!("storing the events handed over by the peer: {e}");
            }
            tell_checks(&shared, &events);
            apply_outbox(&shared, &outbox);
            adopt_forwarded(&shared, forwarded.as_ref());
            let (tx, rx) = oneshot::channel();
            let _ = shared.core.send(Input::PeerHandover {
                epoch,
                reason,
                reply: tx,
            });
            let answer = match rx.await {
                Ok(Ok(epoch)) => ToAgent::PeerHandoverDone { epoch },
                Ok(Err(reason)) => ToAgent::Error { reason },
                Err(_) => ToAgent::Error {
                    reason: "this server is stopping".into(),
                },
            };
            reply(&mut wr, &answer).await;
        }
        ToServer::PeerCertRotated { fingerprint: fp } => {
            if !is_peer(&shared, &fingerprint) {
                return refuse_not_peer(
                    &mut wr,
                    remote,
                    &fingerprint,
                    "a peer certificate rotation",
                )
                .await;
            }
            // Announced over a link made with the peer's current certificate: trusted for the
            // peer link, and for this node's agent role wherever it pinned that certificate.
            let now = crate::mailbox::now_ms();
            let grace = understudy_api::defaults::PIN_RETIRE_AFTER;
            shared
                .trust
                .peer_pins
                .rotate(crate::mailbox::PEER_PINS, &fp, now, grace);
            shared
                .trust
                .pins
                .rotate_everywhere(&fingerprint, &fp, now, grace);
            shared.save_pins();
            reply(&mut wr, &ToAgent::MergeDone { inserted: 0 }).await;
        }
        other => {
            tracing::warn!(%remote, "closing connection: unexpected first message {}", logsafe::text(&format!("{other:?}")));
            reply(
                &mut wr,
                &ToAgent::Error {
                    reason: "expected hello".into(),
                },
            )
            .await;
        }
    }
}

/// A check run as the agent recorded it (`kind = "check"`, detail `{"up", "detail"}`), for AL-2.
fn check_run(r: &crate::store::Record) -> Option<(String, bool, String)> {
    if r.kind != "check" {
        return None;
    }
    let detail: serde_json::Value = serde_json::from_str(r.detail.as_deref()?).ok()?;
    let up = detail.get("up")?.as_bool()?;
    let text = detail
        .get("detail")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((r.name.clone(), up, text))
}

/// Issue 12 item 2: the peer is `failover.peer`'s fingerprint, or a rotation it announced over a
/// link made with one of those (`Shared.peer_pins`); never any other pinned certificate (an
/// agent's server, a first-contact one).
fn is_peer(shared: &Shared, fingerprint: &str) -> bool {
    let config = shared.config();
    config.peer().ok().flatten().is_some() && shared.peer_trust().contains(fingerprint)
}

/// Whether an agent whose first server presents one of `home_fingerprints` has this server's
/// hot-standby cluster as its home: this server is that first server, or is its configured peer.
/// The agent's word, like `Hello.home`, taken once (the entry keeps the decision); what
/// it adds is that an agent whose first contact with its home cluster is home's peer is home
/// there, not a guest needing a standby slot (SECURITY.md "Hello.home").
fn is_home_cluster(shared: &Shared, home_fingerprints: &[String]) -> bool {
    let own = shared.trust.identity.fingerprint();
    home_fingerprints
        .iter()
        .any(|fp| *fp == own || is_peer(shared, fp))
}

/// The fingerprints this agent pins for its first server (its home), for its Hello.
fn home_fingerprints(shared: &Shared) -> Vec<String> {
    let config = shared.config();
    let Some(first) = config.agent.servers.first() else {
        return Vec::new();
    };
    match crate::config::ServerUrl::parse(first) {
        Ok(url) => shared
            .trust
            .pins
            .pins_for(&url.address(), crate::mailbox::now_ms())
            .list(),
        Err(_) => Vec::new(),
    }
}

/// Refuses a peer message from a certificate that is not the peer's: logged, answered, closed.
async fn refuse_not_peer<W: AsyncWrite + Unpin>(
    wr: &mut W,
    remote: std::net::SocketAddr,
    fingerprint: &str,
    what: &str,
) {
    tracing::warn!(
        %remote,
        fingerprint = %logsafe::text(fingerprint),
        "refused {what}: the certificate is not the configured failover.peer"
    );
    reply(
        wr,
        &ToAgent::Error {
            reason: "this certificate is not the configured failover.peer".into(),
        },
    )
    .await;
}

/// Issue 18: the most batches of one agent being stored at once (read ahead while earlier ones
/// are committed); the agent's send window keeps far fewer in flight.
const AGENT_PENDING: usize = 32;

/// Issue 18: one batch of an agent on its way through a group commit, acknowledged in its turn.
struct Pending<'a> {
    upto: u64,
    /// `None` when nothing of it is to be stored (refused): acknowledged in its turn all the same,
    /// since an acknowledgement covers every record before it.
    done: Option<oneshot::Receiver<(Batch, Stored)>>,
    /// HS-8: held until the batch is stored.
    _intake: Option<tokio::sync::RwLockReadGuard<'a, ()>>,
}

/// How a pending batch ended.
enum Settled {
    Stored(Option<Batch>, Vec<usize>),
    Failed(String),
    /// The writer stopped: the node is stopping.
    Gone,
}

fn settled(answer: Result<(Batch, Stored), oneshot::error::RecvError>) -> Settled {
    match answer {
        Ok((batch, Ok(new))) => Settled::Stored(Some(batch), new),
        Ok((_, Err(e))) => Settled::Failed(e),
        Err(_) => Settled::Gone,
    }
}

/// The oldest pending batch's end, once it comes (cancel-safe).
async fn oldest_settled(pending: &mut std::collections::VecDeque<Pending<'_>>) -> Settled {
    match pending.front_mut().map(|p| p.done.as_mut()) {
        None => std::future::pending().await,
        Some(None) => Settled::Stored(None, Vec::new()),
        Some(Some(rx)) => settled(rx.await),
    }
}

/// The oldest pending batch's end if it has come already.
fn oldest_settled_now(pending: &mut std::collections::VecDeque<Pending<'_>>) -> Option<Settled> {
    match pending.front_mut()?.done.as_mut() {
        None => Some(Settled::Stored(None, Vec::new())),
        Some(rx) => match rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Ok(answer) => Some(settled(Ok(answer))),
            Err(oneshot::error::TryRecvError::Closed) => Some(Settled::Gone),
        },
    }
}

async fn agent_connection<R, W>(
    shared: &Arc<Shared>,
    conn: u64,
    id: &str,
    name: &str,
    rd: &mut R,
    wr: &mut W,
    rx: &mut mpsc::UnboundedReceiver<ToAgent>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pending = std::collections::VecDeque::new();
    agent_frames(shared, (conn, id, name), (rd, wr, rx), &mut pending).await;
    // HS-8: a batch that got in is stored before its intake guard goes, acknowledged or not.
    for p in pending {
        if let Some(done) = p.done {
            let _ = done.await;
        }
    }
}

/// [`agent_connection`]'s frames and answers, until the connection ends.
async fn agent_frames<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    shared: &'a Arc<Shared>,
    (conn, id, name): (u64, &str, &str),
    (rd, wr, rx): (&mut R, &mut W, &mut mpsc::UnboundedReceiver<ToAgent>),
    pending: &mut std::collections::VecDeque<Pending<'a>>,
) {
    // Cancel-safe: the select below may drop a read halfway through a frame.
    let mut frames = FrameReader::new(rd);
    loop {
        tokio::select! {
            frame = frames.read::<ToServer>(), if pending.len() < AGENT_PENDING => match frame {
                Ok(Some(ToServer::Heartbeat { id: hb, pairs })) => {
                    let reports = pairs.into_iter().map(|r: MemberReport| (r.pair, r.epoch.into(), r.active)).collect();
                    let _ = shared.core.send(Input::Heartbeat { conn, agent: name.to_string(), id: hb, reports });
                }
                Ok(Some(ToServer::Records { mut records, taken_for })) => {
                    let Some(upto) = records.iter().map(|r| r.seq).max() else { continue };
                    let refused = refused_aliases(shared, name, &records).await;
                    if !refused.is_empty() {
                        // Issue 12 item 3: not stored, but acknowledged (sending them again
                        // would not make them allowed).
                        let before = records.len();
                        records.retain(|r| r.pair.as_ref().is_none_or(|p| !refused.iter().any(|((q, e), _)| q == p && *e == r.pair_epoch)));
                        for (_, why) in &refused {
                            tracing::warn!(agent = %logsafe::text(name), "{} ({} records not stored)", logsafe::text(why), before - records.len());
                        }
                    }
                    // Issue 18 item 3: an agent checks labels before it caches a record; one that
                    // did not (an older or a hostile agent) has those records acknowledged and
                    // not stored, like the refused aliases above.
                    let before = records.len();
                    let mut bad_labels = None;
                    records.retain(|r| understudy_api::check_labels(&r.labels).map_err(|e| bad_labels = Some(e)).is_ok());
                    if let Some(why) = bad_labels {
                        tracing::warn!(agent = %logsafe::text(name), "{} ({} records with bad labels not stored)", logsafe::text(&why), before - records.len());
                    }
                    if records.is_empty() {
                        pending.push_back(Pending { upto, done: None, _intake: None });
                        continue;
                    }
                    // HS-8: a server handing its role over stores nothing more; the agent keeps
                    // the batch and sends it to the peer.
                    let Some(intake) = shared.intake.enter() else {
                        reply(wr, &ToAgent::Error { reason: "this server is handing its role to its peer: send there".into() }).await;
                        return;
                    };
                    // Issue 18: stored with whatever else waits for the next commit; the next
                    // frames are read meanwhile.
                    let done = shared.group_commit.submit(Batch::Agent { agent_id: id.to_string(), agent_name: name.to_string(), records, taken_for });
                    pending.push_back(Pending { upto, done: Some(done), _intake: Some(intake) });
                }
                Ok(Some(ToServer::Leave)) => return,
                Ok(Some(ToServer::HookResult { pair, hook, epoch, error })) => {
                    let _ = shared.core.send(Input::HookResult { agent: name.to_string(), pair, hook, epoch, error });
                }
                Ok(Some(ToServer::CertRotated { fingerprint })) => {
                    let _ = shared.core.send(Input::AgentCertRotated { id: id.to_string(), fingerprint });
                }
                Ok(Some(ToServer::CheckRefused { check, reason })) => {
                    let _ = shared.core.send(Input::AgentCheckRefused { agent: name.to_string(), check, reason });
                }
                Ok(Some(other)) => {
                    tracing::warn!(agent = %name, "closing connection: unexpected message {}", logsafe::text(&format!("{other:?}")));
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(agent = %name, "closing connection: {}", logsafe::text(&e.to_string()));
                    reply(wr, &ToAgent::Error { reason: e.to_string() }).await;
                    return;
                }
            },
            first = oldest_settled(pending), if !pending.is_empty() => {
                // The batches stored by now, oldest first, answered with one acknowledgement
                // (it covers every record up to its `upto`).
                let mut next = Some(first);
                let mut acked = None;
                while let Some(settled) = next {
                    let upto = pending.pop_front().map_or(0, |p| p.upto);
                    match settled {
                        Settled::Stored(batch, new) => {
                            if let Some(Batch::Agent { records, .. }) = batch {
                                stored_runs(shared, name, &records, &new);
                            }
                            acked = Some(upto);
                        }
                        Settled::Failed(e) => {
                            if let Some(upto) = acked {
                                reply(wr, &ToAgent::Ack { upto }).await;
                            }
                            tracing::error!(agent = %name, "records not stored, not acknowledged: {e}");
                            reply(wr, &ToAgent::Error { reason: format!("records not stored: {e}") }).await;
                            return;
                        }
                        Settled::Gone => return,
                    }
                    next = oldest_settled_now(pending);
                }
                // AG-2: acknowledged only once the records are durable here.
                if let Some(upto) = acked {
                    reply(wr, &ToAgent::Ack { upto }).await;
                }
            }
            msg = rx.recv() => match msg {
                Some(msg) => {
                    let last = matches!(msg, ToAgent::Redirect { .. });
                    if write_frame(wr, &msg).await.is_err() || last {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

/// After an agent's batch is stored: each check run among the records new here feeds the watch
/// once, however often it is resent (AL-2), and is each check's last run for `/metrics` (MX-1).
fn stored_runs(shared: &Shared, name: &str, records: &[crate::store::Record], new: &[usize]) {
    let runs: Vec<(usize, (String, bool, String))> = new
        .iter()
        .filter_map(|i| Some((*i, check_run(&records[*i])?)))
        .collect();
    let mut last = shared.check_runs.lock().unwrap_or_else(|p| p.into_inner());
    for (i, (check, up, _)) in &runs {
        let r = &records[*i];
        last.insert(
            check.clone(),
            crate::mailbox::CheckRun {
                up: *up,
                value: r.value,
                time_ms: r.time_ms,
            },
        );
    }
    drop(last);
    let checks = runs.into_iter().map(|(_, c)| c).collect();
    let _ = shared.core.send(Input::Stored {
        agent: name.to_string(),
        checks,
    });
}

/// The claims among `records` (a pair alias, the pair counter they were made under) that
/// `agent` may not send records under, with the engine's reason (issue 12 item 3).
async fn refused_aliases(
    shared: &Shared,
    agent: &str,
    records: &[crate::store::Record],
) -> Vec<(crate::mailbox::AliasClaim, String)> {
    let mut claims: Vec<crate::mailbox::AliasClaim> = records
        .iter()
        .filter_map(|r| Some((r.pair.clone()?, r.pair_epoch)))
        .collect();
    if claims.is_empty() {
        return Vec::new();
    }
    claims.sort();
    claims.dedup();
    let (tx, rx) = oneshot::channel();
    let _ = shared.core.send(Input::MayRecordUnder {
        agent: agent.to_string(),
        claims: claims.clone(),
        reply: tx,
    });
    // A core that stopped answers nothing: refuse them all rather than store them unchecked.
    rx.await.unwrap_or_else(|_| {
        claims
            .into_iter()
            .map(|c| (c, "the node is stopping".to_string()))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// The agent's side.

fn report(shared: &Shared, server: usize, conn: u64, event: LinkEvent) {
    let _ = shared.core.send(Input::Link {
        server,
        conn,
        event,
    });
}

fn attempt_timeout(shared: &Shared) -> Duration {
    let hb = shared.config().agent.heartbeat;
    (hb * understudy_engine::agent::LIVENESS_BEATS).max(Duration::from_millis(500))
}

/// One link from this agent to a server: introduce, then carry heartbeats, records and acks
/// until the core drops it or the link breaks.
pub(crate) async fn agent_link(
    shared: Arc<Shared>,
    server: usize,
    conn: u64,
    addr: String,
    home: bool,
    mut rx: mpsc::UnboundedReceiver<LinkCmd>,
) {
    let config = shared.config();
    let client = match tls::client_config(
        shared.trust.pins.pins_for(&addr, crate::mailbox::now_ms()),
        Some(shared.trust.identity.clone()),
        &[ALPN_WIRE],
    ) {
        Ok(c) => c,
        Err(e) => {
            return report(
                &shared,
                server,
                conn,
                LinkEvent::ConnectFailed(e.to_string()),
            )
        }
    };
    let stream = match tls::connect_with(client, &addr, attempt_timeout(&shared)).await {
        Ok(s) => s,
        Err(e) => {
            note_untrusted(&shared, &addr, &e);
            return report(
                &shared,
                server,
                conn,
                LinkEvent::ConnectFailed(e.to_string()),
            );
        }
    };
    // Who answered: the agent lets only its home server and that server's peer direct it.
    let presented = tls::peer_fingerprint(stream.get_ref().1).unwrap_or_default();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let hello = ToServer::Hello {
        id: config.node.id.clone(),
        name: config.node.name.clone(),
        home,
        token: config.agent.enroll_token.clone(),
        probe: false,
        home_fingerprints: home_fingerprints(&shared),
    };
    if let Err(e) = write_frame(&mut wr, &hello).await {
        return report(
            &shared,
            server,
            conn,
            LinkEvent::ConnectFailed(e.to_string()),
        );
    }
    match tokio::time::timeout(attempt_timeout(&shared), read_frame::<ToAgent, _>(&mut rd)).await {
        Ok(Ok(Some(ToAgent::Welcome {
            cluster,
            epoch,
            checks,
            peer,
        }))) => report(
            &shared,
            server,
            conn,
            LinkEvent::Connected {
                welcome: Welcome { cluster, epoch },
                checks,
                presented: presented.clone(),
                peer,
            },
        ),
        Ok(Ok(Some(ToAgent::Refused { reason, capacity }))) => {
            return report(
                &shared,
                server,
                conn,
                LinkEvent::Refused { reason, capacity },
            )
        }
        Ok(Ok(Some(ToAgent::Redirect {
            to,
            fingerprint,
            cluster,
            epoch,
        }))) => {
            return report(
                &shared,
                server,
                conn,
                LinkEvent::Redirect {
                    to,
                    fingerprint,
                    welcome: Welcome { cluster, epoch },
                    presented,
                },
            )
        }
        Ok(Ok(Some(ToAgent::Error { reason }))) => {
            return report(
                &shared,
                server,
                conn,
                LinkEvent::Refused {
                    reason,
                    capacity: false,
                },
            )
        }
        Ok(Ok(other)) => {
            let why = format!("unexpected answer to hello: {other:?}");
            tracing::warn!(server = %addr, "link refused: {}", logsafe::text(&why));
            return report(&shared, server, conn, LinkEvent::ConnectFailed(why));
        }
        Ok(Err(e)) => {
            // PRODUCT.md §4: a bad frame from a server fails this link only; the cache stays.
            tracing::warn!(server = %addr, "link refused: bad frame from the server: {}", logsafe::text(&e.to_string()));
            return report(
                &shared,
                server,
                conn,
                LinkEvent::ConnectFailed(e.to_string()),
            );
        }
        Err(_) => {
            return report(
                &shared,
                server,
                conn,
                LinkEvent::ConnectFailed("no answer to hello".into()),
            )
        }
    }
    let reader_shared = shared.clone();
    let reader_addr = addr.clone();
    let reader = tokio::spawn(async move {
        loop {
            let event = match read_frame::<ToAgent, _>(&mut rd).await {
                Ok(Some(ToAgent::HeartbeatAck { id, views })) => LinkEvent::HeartbeatAck {
                    id,
                    views: views.iter().map(Into::into).collect(),
                },
                Ok(Some(ToAgent::Ack { upto })) => LinkEvent::Ack(upto),
                Ok(Some(ToAgent::Views { views })) => {
                    LinkEvent::Views(views.iter().map(Into::into).collect())
                }
                Ok(Some(ToAgent::Recall)) => LinkEvent::Recall,
                Ok(Some(ToAgent::CertRotated { fingerprint })) => {
                    LinkEvent::CertRotated(fingerprint)
                }
                Ok(Some(ToAgent::Checks { checks })) => LinkEvent::Checks(checks),
                Ok(Some(ToAgent::Redirect {
                    to,
                    fingerprint,
                    cluster,
                    epoch,
                })) => {
                    report(
                        &reader_shared,
                        server,
                        conn,
                        LinkEvent::Redirect {
                            to,
                            fingerprint,
                            welcome: Welcome { cluster, epoch },
                            presented,
                        },
                    );
                    return;
                }
                Ok(Some(ToAgent::Error { reason })) => {
                    report(
                        &reader_shared,
                        server,
                        conn,
                        LinkEvent::Disconnected(format!("server closed the link: {reason}")),
                    );
                    return;
                }
                Ok(Some(other)) => {
                    let why = format!("unexpected message {other:?}");
                    tracing::warn!(server = %reader_addr, "link closed: {}", logsafe::text(&why));
                    report(&reader_shared, server, conn, LinkEvent::Disconnected(why));
                    return;
                }
                Ok(None) => {
                    report(
                        &reader_shared,
                        server,
                        conn,
                        LinkEvent::Disconnected("closed by the server".into()),
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(server = %reader_addr, "link closed: bad frame from the server: {}", logsafe::text(&e.to_string()));
                    report(
                        &reader_shared,
                        server,
                        conn,
                        LinkEvent::Disconnected(e.to_string()),
                    );
                    return;
                }
            };
            report(&reader_shared, server, conn, event);
        }
    });
    while let Some(cmd) = rx.recv().await {
        let result = match cmd {
            LinkCmd::Heartbeat { id, pairs } => {
                write_frame(&mut wr, &ToServer::Heartbeat { id, pairs }).await
            }
            LinkCmd::Send {
                after,
                upto,
                taken_for,
            } => send_records(&shared, &mut wr, after, upto, taken_for).await,
            LinkCmd::Leave => {
                let _ = write_frame(&mut wr, &ToServer::Leave).await;
                let _ = wr.shutdown().await;
                break;
            }
            LinkCmd::HookResult {
                pair,
                hook,
                epoch,
                error,
            } => {
                write_frame(
                    &mut wr,
                    &ToServer::HookResult {
                        pair,
                        hook,
                        epoch,
                        error,
                    },
                )
                .await
            }
            LinkCmd::CertRotated(fingerprint) => {
                write_frame(&mut wr, &ToServer::CertRotated { fingerprint }).await
            }
            LinkCmd::CheckRefused { check, reason } => {
                write_frame(&mut wr, &ToServer::CheckRefused { check, reason }).await
            }
        };
        if let Err(e) = result {
            report(
                &shared,
                server,
                conn,
                LinkEvent::Disconnected(e.to_string()),
            );
            break;
        }
    }
    reader.abort();
}

async fn send_records<W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    wr: &mut W,
    after: u64,
    upto: u64,
    taken_for: Option<String>,
) -> Result<(), crate::frame::FrameError> {
    let mut after = after;
    while after < upto {
        let batch = {
            let store = shared.store();
            match store.cache_batch(after, BATCH.min((upto - after) as usize)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("reading the cache: {e}");
                    return Ok(());
                }
            }
        };
        let mut batch: Vec<_> = batch.into_iter().filter(|r| r.seq <= upto).collect();
        // Whatever the records' labels weigh, one frame; the rest in the next batch.
        let mut budget = FRAME_BUDGET;
        keep_within(&mut batch, &mut budget);
        let Some(last) = batch.last().map(|r| r.seq) else {
            return Ok(());
        };
        let frame = ToServer::Records {
            records: batch,
            taken_for: taken_for.clone(),
        };
        write_frame(wr, &frame).await?;
        after = last;
    }
    Ok(())
}

/// CT-2: a server at `addr` presented a certificate this agent does not pin for it (on a link or
/// a probe): shown to the operator under `link.untrusted`, who may accept it
/// (`POST /api/link/trust`).
fn note_untrusted(shared: &Shared, addr: &str, error: &tls::TlsError) {
    if let tls::TlsError::NotPinned { refused, .. } = error {
        shared
            .trust
            .untrusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.to_string(), refused.presented.clone());
    }
}

/// AG-6: would the home server take this agent now? A short connection that moves nothing.
pub(crate) async fn agent_probe(shared: Arc<Shared>, server: usize, addr: String) {
    let config = shared.config();
    let result = async {
        let client = tls::client_config(
            shared.trust.pins.pins_for(&addr, crate::mailbox::now_ms()),
            Some(shared.trust.identity.clone()),
            &[ALPN_WIRE],
        )
        .map_err(|e| e.to_string())?;
        let stream = tls::connect_with(client, &addr, attempt_timeout(&shared))
            .await
            .map_err(|e| {
                note_untrusted(&shared, &addr, &e);
                e.to_string()
            })?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let hello = ToServer::Hello {
            id: config.node.id.clone(),
            name: config.node.name.clone(),
            home: server == 0,
            token: config.agent.enroll_token.clone(),
            probe: true,
            home_fingerprints: home_fingerprints(&shared),
        };
        write_frame(&mut wr, &hello)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(attempt_timeout(&shared), read_frame::<ToAgent, _>(&mut rd))
            .await
        {
            Ok(Ok(Some(ToAgent::ProbeResult { result, reason }))) => Ok(match result.as_str() {
                "available" => ProbeResult::Available,
                "redirect" => ProbeResult::Redirect,
                _ => ProbeResult::Refused(reason),
            }),
            other => Err(format!("no probe answer: {other:?}")),
        }
    }
    .await;
    let result = result.unwrap_or_else(ProbeResult::Unreachable);
    let _ = shared.core.send(Input::Probe { server, result });
}

// ---------------------------------------------------------------------------------------------
// Servers in hot standby.

/// The peer link trusts only the peer's fingerprints (issue 12 item 2), not the agent's pins.
fn peer_client(shared: &Shared) -> Result<Arc<rustls::ClientConfig>, String> {
    tls::client_config(
        shared.peer_trust(),
        Some(shared.trust.identity.clone()),
        &[ALPN_WIRE],
    )
    .map_err(|e| e.to_string())
}

/// HS-3: polls the peer; when `replicate`, pulls its site configuration, records and events.
pub(crate) async fn peer_poll(
    shared: Arc<Shared>,
    addr: String,
    replicate: bool,
    timeout: Duration,
) {
    let answer = async {
        let started = Instant::now();
        let (records_after, events_after, outbox_after, site_version) = {
            let store = shared.store();
            let get = |k: &str| {
                store
                    .state_get(k)
                    .ok()
                    .flatten()
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            };
            (
                get("peer.records_after"),
                get("peer.events_after"),
                get("peer.outbox_after"),
                store.site_version().unwrap_or(0),
            )
        };
        let stream = match tls::connect_with(peer_client(&shared)?, &addr, timeout).await {
            Ok(stream) => stream,
            Err(tls::TlsError::Connect { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                return Err(PollFailure::Refused(source.to_string()));
            }
            Err(e) => return Err(e.to_string().into()),
        };
        let (mut rd, mut wr) = tokio::io::split(stream);
        write_frame(
            &mut wr,
            &ToServer::PeerPoll {
                replicate,
                site_version,
                records_after,
                events_after,
                outbox_after,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let reply = tokio::time::timeout(left, read_frame::<ToAgent, _>(&mut rd))
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map_err(|e| {
                // PRODUCT.md §4: a malformed or oversized reply is refused whole, nothing of it
                // applied.
                let why = format!("refused a reply from the peer: {e}");
                tracing::warn!(peer = %addr, "{}", logsafe::text(&why));
                why
            })?;
        let Some(ToAgent::PeerReply {
            state,
            site,
            records,
            events,
            outbox,
            forwarded,
            more,
        }) = reply
        else {
            let why = format!("refused a reply from the peer: unexpected answer {reply:?}");
            tracing::warn!(peer = %addr, "{}", logsafe::text(&why));
            return Err(why.into());
        };
        // Issue 12 item 2: records and events are taken only from a poll that asked for them (a
        // STANDBY's); the site snapshot goes to the core, where the engine decides.
        if !state.listen.is_empty() {
            let _ = shared
                .store()
                .state_set("peer.listen", &json!(state.listen));
        }
        if replicate {
            apply_replication(&shared, &records, &events);
            apply_outbox(&shared, &outbox);
            adopt_forwarded(&shared, forwarded.as_ref());
        } else if site.is_some()
            || !records.is_empty()
            || !events.is_empty()
            || !outbox.is_empty()
            || forwarded.is_some()
        {
            tracing::warn!(
                "ignored replicated data in a peer reply to a status-only poll (this node acts)"
            );
        }
        let site = if replicate { site } else { None };
        if replicate && state.state == "active" {
            push_local_records(&shared, &addr).await;
        }
        Ok((peer_status(&state), site, replicate && more))
    }
    .await;
    let more = matches!(answer, Ok((_, _, true)));
    let _ = shared.core.send(match answer {
        Err(PollFailure::Refused(why)) => Input::PeerRefused(why),
        Ok((state, site, _)) => Input::PeerAnswer(Ok((state, site))),
        Err(PollFailure::Failed(why)) => Input::PeerAnswer(Err(why)),
    });
    // HS-3: the ACTIVE holds more than one reply carried: replicate the rest now, not at the
    // next `sync_interval`.
    if more {
        let _ = shared.core.send(Input::PeerChanged);
    }
}

/// Why a peer poll got no answer: nothing listens on the peer's port (HS-8: its process is gone
/// while its host answers), or anything else (silence, a TLS or protocol error).
enum PollFailure {
    Refused(String),
    Failed(String),
}

impl From<String> for PollFailure {
    fn from(why: String) -> PollFailure {
        PollFailure::Failed(why)
    }
}

/// HS-8: keeps a connection open to the hot-standby peer while this node runs, so that a crash of
/// the peer's process (its kernel closes the connection) reaches the core at once
/// (`Input::PeerClosed`) instead of at the next poll. The engine decides what it means.
pub(crate) async fn peer_watch(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let config = shared.config();
        let peer = if config.node.server && config.failover.mode != crate::config::FailoverMode::Off
        {
            config.peer().ok().flatten()
        } else {
            None
        };
        if let Some(peer) = peer {
            match watch_once(&shared, &peer.address()).await {
                Ok(()) => {
                    let _ = shared.core.send(Input::PeerClosed);
                }
                Err(why) => tracing::debug!("peer watch: {why}"),
            }
        }
        let pause = config.failover.sync_interval.min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One watch connection: `Ok` when the peer accepted it and it then closed (or broke); `Err` when
/// it could not be opened, was refused, went stale, or this node is stopping.
async fn watch_once(shared: &Arc<Shared>, addr: &str) -> Result<(), String> {
    let stream = tls::connect_with(peer_client(shared)?, addr, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    write_frame(&mut wr, &ToServer::PeerWatch)
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(WATCH_STALE, read_frame::<ToAgent, _>(&mut rd)).await {
        Ok(Ok(Some(ToAgent::PeerWatching))) => {}
        other => return Err(format!("the peer did not take the watch: {other:?}")),
    }
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            beat = tokio::time::timeout(WATCH_STALE, read_frame::<ToAgent, _>(&mut rd)) => match beat {
                Ok(Ok(Some(ToAgent::PeerWatching))) => {}
                Ok(Ok(Some(ToAgent::PeerChanged))) => {
                    let _ = shared.core.send(Input::PeerChanged);
                }
                Ok(_) => return Ok(()),
                Err(_) => return Err("no beat: the connection went stale".into()),
            },
            _ = shutdown.changed() => return Err("stopping".into()),
        }
    }
}

/// MX-2: takes the peer's forwarding cursor (the last record it forwarded), replicated by a poll
/// or handed over with the role (HS-8).
fn adopt_forwarded(shared: &Shared, mark: Option<&crate::store::ForwardMark>) {
    if let Some(mark) = mark {
        if let Err(e) = shared.store().forward_adopt(mark) {
            tracing::error!("{e}");
        }
    }
}

fn peer_status(state: &PeerState) -> PeerStatus {
    PeerStatus {
        name: state.name.clone(),
        mode: understudy_engine::FailoverMode::parse(&state.mode)
            .unwrap_or(understudy_engine::FailoverMode::Off),
        state: state.state.clone(),
        epoch: state.epoch,
        site_version: state.site_version,
    }
}

fn apply_replication(
    shared: &Shared,
    records: &[StoredRecord],
    events: &[crate::store::StoredEvent],
) {
    let mut store = shared.store();
    if let Some(last) = records.iter().map(|r| r.rowid).max() {
        let pushed = store
            .state_get("peer.pushed_upto")
            .ok()
            .flatten()
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let caught_up = store.records_max_rowid().unwrap_or(0) <= pushed;
        match store.records_merge(records) {
            Ok(_) => {
                let _ = store.state_set("peer.records_after", &json!(last));
                if caught_up {
                    // What was just pulled came from the peer: nothing to hand back.
                    let max = store.records_max_rowid().unwrap_or(pushed);
                    let _ = store.state_set("peer.pushed_upto", &json!(max));
                }
            }
            Err(e) => tracing::error!("replicating records: {e}"),
        }
    }
    if let Some(last) = events.iter().map(|e| e.id).max() {
        match store.events_merge(events) {
            Ok(_) => {
                let _ = store.state_set("peer.events_after", &json!(last));
                drop(store);
                tell_checks(shared, events);
            }
            Err(e) => tracing::error!("replicating events: {e}"),
        }
    }
}

/// AL-2: the check states told in events the peer's replication or handover stored here, to the
/// engine (where a promoted server's check series start).
fn tell_checks(shared: &Shared, events: &[crate::store::StoredEvent]) {
    let told: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match e.event.code.as_str() {
            "CHECK_DOWN" => Some((e.event.subject.clone(), true)),
            "CHECK_UP" => Some((e.event.subject.clone(), false)),
            _ => None,
        })
        .collect();
    if !told.is_empty() {
        let _ = shared.core.send(Input::ChecksTold(told));
    }
}

/// AL-5: the acting server's outbox and marks, so that a promoted STANDBY sends what was not
/// yet done and nothing that was.
fn apply_outbox(shared: &Shared, outbox: &[crate::store::OutboxRow]) {
    let Some(last) = outbox.iter().map(|r| r.rev).max() else {
        return;
    };
    let mut store = shared.store();
    match store.outbox_merge(outbox) {
        Ok(_) => {
            let _ = store.state_set("peer.outbox_after", &json!(last));
        }
        Err(e) => tracing::error!("replicating the alert outbox: {e}"),
    }
}

/// HS-5, HS-6: after stepping down (or returning as a former ACTIVE), hand the acting peer every
/// record this node holds (it keeps what it has; `records_merge` stores each once).
pub(crate) async fn merge_to_peer(shared: Arc<Shared>, addr: String) {
    // Two passes: a batch an agent link was still storing when this node stepped down is
    // acknowledged after the first pass may have read past it.
    match push_records(&shared, &addr, 0, 2).await {
        Ok((n, last)) => {
            tracing::info!("handed {n} records the ACTIVE peer lacked");
            let _ = shared.store().state_set("peer.pushed_upto", &json!(last));
        }
        Err(e) => tracing::error!("handing records to the peer: {e}"),
    }
}

/// HS-8 planned handover, after the engine stepped down: stop storing agents' records, hand the
/// peer every record and event it has not replicated, and ask it to promote. The core hears the
/// peer's answer as `Input::HandoverResult`.
pub(crate) async fn hand_over(shared: Arc<Shared>, addr: String, epoch: u64, reason: String) {
    use std::sync::atomic::Ordering::SeqCst;
    let result = async {
        shared.intake.close().await;
        let records_after = shared.peer_pulled.records_after.load(SeqCst);
        let (n, _) = push_records(&shared, &addr, records_after, 1).await?;
        let events_after = shared.peer_pulled.events_after.load(SeqCst);
        let events = shared
            .store()
            .events_list(events_after, None, 1000)
            .map_err(|e| e.to_string())?;
        let outbox_after = shared.peer_pulled.outbox_after.load(SeqCst);
        let outbox = shared
            .store()
            .outbox_since(outbox_after, 500)
            .map_err(|e| e.to_string())?;
        // MX-2: every record up to the cursor was pushed above, so the peer can place it.
        let forwarded = {
            let store = shared.store();
            let cursor = store.forward_cursor().map_err(|e| e.to_string())?;
            store.forward_mark_at(cursor).map_err(|e| e.to_string())?
        };
        let stream = tls::connect_with(peer_client(&shared)?, &addr, Duration::from_secs(3))
            .await
            .map_err(|e| e.to_string())?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        write_frame(
            &mut wr,
            &ToServer::PeerHandover {
                epoch,
                reason,
                events,
                outbox,
                forwarded,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), read_frame::<ToAgent, _>(&mut rd)).await
        {
            Ok(Ok(Some(ToAgent::PeerHandoverDone { epoch }))) => {
                tracing::info!(
                    "handed the role to the peer (epoch {epoch}) with {n} records it lacked"
                );
                Ok(epoch)
            }
            Ok(Ok(Some(ToAgent::Error { reason }))) => Err(logsafe::text(&reason).to_string()),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(_) => Err("no answer in 5s".to_string()),
        }
    }
    .await;
    let _ = shared.core.send(Input::HandoverResult(result));
}

/// Sends the peer every local record with a rowid above `after`; returns how many it lacked and
/// the last rowid sent.
async fn push_records(
    shared: &Arc<Shared>,
    addr: &str,
    after: u64,
    passes: usize,
) -> Result<(usize, u64), String> {
    let stream = tls::connect_with(peer_client(shared)?, addr, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut after = after;
    let mut total = 0;
    for pass in 0..passes {
        if pass > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        loop {
            let mut batch = shared
                .store()
                .records_since(after, 2000)
                .map_err(|e| e.to_string())?;
            // Whatever the records' labels weigh, one frame; the rest in the next batch.
            let mut budget = FRAME_BUDGET;
            keep_within(&mut batch, &mut budget);
            let Some(last) = batch.last().map(|r| r.rowid) else {
                break;
            };
            write_frame(&mut wr, &ToServer::Merge { records: batch })
                .await
                .map_err(|e| e.to_string())?;
            match read_frame::<ToAgent, _>(&mut rd).await {
                Ok(Some(ToAgent::MergeDone { inserted })) => total += inserted,
                other => return Err(format!("unexpected answer {other:?}")),
            }
            after = last;
        }
    }
    Ok((total, after))
}

/// HS-6 belt and braces: while STANDBY, keep handing the ACTIVE peer any record only this node
/// holds (acknowledged while it acted, and not yet handed over when it stepped down — say the
/// step-down's merge was cut short by a restart). Records pulled from the peer are skipped.
async fn push_local_records(shared: &Arc<Shared>, addr: &str) {
    let cursor = shared
        .store()
        .state_get("peer.pushed_upto")
        .ok()
        .flatten()
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let max = shared.store().records_max_rowid().unwrap_or(0);
    if max <= cursor {
        return;
    }
    match push_records(shared, addr, cursor, 1).await {
        Ok((n, last)) => {
            if n > 0 {
                tracing::info!("handed {n} records the ACTIVE peer lacked");
            }
            let _ = shared.store().state_set("peer.pushed_upto", &json!(last));
        }
        Err(e) => tracing::debug!("handing records to the peer: {e}"),
    }
}

/// CT-2: tells the hot-standby peer the new fingerprint while the old certificate is in use.
pub(crate) async fn announce_cert_to_peer(shared: &Arc<Shared>, fingerprint: &str) {
    let Some(peer) = shared.config().peer().ok().flatten() else {
        return;
    };
    let result: Result<(), String> = async {
        let stream = tls::connect_with(
            peer_client(shared)?,
            &peer.address(),
            Duration::from_secs(3),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        write_frame(
            &mut wr,
            &ToServer::PeerCertRotated {
                fingerprint: fingerprint.to_string(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        read_frame::<ToAgent, _>(&mut rd)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!("could not tell the peer about the new certificate (it must be pinned there by hand): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HS-3, AG-1: a batch keeps the longest prefix that fits its budget, and the budget shrinks
    /// by what it kept; a batch that fits is kept whole.
    #[test]
    fn hs3_a_batch_keeps_what_fits_in_one_frame() {
        let mut items: Vec<String> = (0..10).map(|_| "x".repeat(98)).collect();
        // Each is 100 bytes of JSON (quotes included) plus a comma.
        let mut budget = 350;
        assert!(keep_within(&mut items, &mut budget), "cut");
        assert_eq!(items.len(), 3);
        assert_eq!(budget, 350 - 303);
        let mut budget = 10_000;
        assert!(!keep_within(&mut items, &mut budget), "nothing cut");
        assert_eq!((items.len(), budget), (3, 10_000 - 303));
        let mut none = 0;
        assert!(keep_within(&mut items, &mut none));
        assert!(items.is_empty());
    }
}
