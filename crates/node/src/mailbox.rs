//! What a node's tasks share and tell each other: the core's inputs, the commands it gives agent
//! links, and [`Shared`], the node's state that outlives any one task. Every task module (`net`,
//! `admin`, `checks`, `hooks`) imports from here; this module imports none of them, so the tasks
//! and the core (`runtime`) form no circle.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use understudy_engine as engine;
use understudy_engine::{Admission, Event, Hello, PairEpoch, PeerStatus, ProbeResult, Welcome};

use crate::config::{self, Config};
use crate::store::{EventRow, Store};
use crate::tls::{NodeIdentity, PinBook, Pins};

/// Where a task sends what it has to tell the core.
pub(crate) type CoreSender = mpsc::UnboundedSender<Input>;

/// Records under a pair's alias, made under a pair counter (issue 12 item 3).
pub(crate) type AliasClaim = (String, Option<u64>);

/// What IO tasks tell the core.
pub(crate) enum Input {
    /// Something happened on the agent's link number `conn` to its server `server`.
    Link {
        server: usize,
        conn: u64,
        event: LinkEvent,
    },
    Probe {
        server: usize,
        result: ProbeResult,
    },
    Cached(u64),
    /// A check this agent refuses to run (SECURITY.md): told to the server once per reason.
    CheckRefused {
        check: String,
        reason: String,
    },
    HookDone {
        pair: String,
        hook: &'static str,
        epoch: PairEpoch,
        result: Result<(), String>,
    },
    // --- server role ---
    Hello {
        hello: Hello,
        conn: u64,
        tx: mpsc::UnboundedSender<crate::wire::ToAgent>,
        /// The admission, and whether this cluster is the agent's home: the engine's entry
        /// decides, not the Hello's claim (issue 12 item 3).
        reply: oneshot::Sender<(Admission, bool)>,
    },
    ProbeHello {
        hello: Hello,
        reply: oneshot::Sender<ProbeResult>,
    },
    Heartbeat {
        conn: u64,
        agent: String,
        id: u64,
        reports: Vec<(String, PairEpoch, bool)>,
    },
    AgentGone {
        conn: u64,
        id: String,
        name: String,
    },
    HookResult {
        agent: String,
        pair: String,
        hook: String,
        epoch: u64,
        error: Option<String>,
    },
    AgentCertRotated {
        id: String,
        fingerprint: String,
    },
    /// Issue 12 item 3: may `agent` send records under these pair aliases, made under these
    /// pair counters? Answers the refused claims with the reason.
    MayRecordUnder {
        agent: String,
        claims: Vec<AliasClaim>,
        reply: oneshot::Sender<Vec<(AliasClaim, String)>>,
    },
    AgentCheckRefused {
        agent: String,
        check: String,
        reason: String,
    },
    /// Records from a connected agent were stored (AL-3: it was heard); the check runs among
    /// them that were new here, in order, as `(check, up, detail)` (AL-2).
    Stored {
        agent: String,
        checks: Vec<(String, bool, String)>,
    },
    /// AL-2: CHECK_DOWN / CHECK_UP events the peer's replication or handover stored here, in
    /// order, as `(check, down)`: what the operator was told, where a promoted server starts.
    ChecksTold(Vec<(String, bool)>),
    PeerState {
        reply: oneshot::Sender<crate::wire::PeerState>,
    },
    PeerAnswer(Result<(PeerStatus, Option<crate::store::SiteSnapshot>), String>),
    /// HS-8: a poll found nothing listening on the peer's port (what the connection was told).
    PeerRefused(String),
    /// HS-8: the connection kept open to the peer (`net::peer_watch`) closed.
    PeerClosed,
    /// HS-3, AL-5: the acting peer said on that connection that it stored something to replicate.
    PeerChanged,
    /// An admin request that reads or changes what the engine decides.
    Admin {
        request: understudy_api::Request,
        reply: oneshot::Sender<Result<Value, understudy_api::Refusal>>,
    },
    /// MX-1: what a scrape of `GET /metrics` reads of the engine's state.
    Metrics(oneshot::Sender<MetricsSnapshot>),
    /// CT-2: this node has a new certificate; announce it over every link before it is used.
    CertRotated {
        fingerprint: String,
        done: oneshot::Sender<()>,
    },
    /// HS-8: a planned stop (SIGTERM, SIGINT, quitting the app): hand the role to a healthy
    /// STANDBY peer first. Answers what was done, or why there was no handover.
    PlannedStop {
        why: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// HS-8: the peer's answer to this node's handover (its new epoch, or why not).
    HandoverResult(Result<u64, String>),
    /// HS-8, on the STANDBY: the ACTIVE peer hands over its role (it stepped down at `epoch`).
    PeerHandover {
        epoch: u64,
        reason: String,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    Shutdown(oneshot::Sender<()>),
}

pub(crate) enum LinkEvent {
    Connected {
        welcome: Welcome,
        checks: Value,
        /// The fingerprint of the certificate the server presented.
        presented: String,
        /// The fingerprints the server named for its hot-standby peer.
        peer: Vec<String>,
    },
    Refused {
        reason: String,
        capacity: bool,
    },
    Redirect {
        to: String,
        fingerprint: Option<String>,
        welcome: Welcome,
        presented: String,
    },
    ConnectFailed(String),
    Disconnected(String),
    HeartbeatAck {
        id: u64,
        views: Vec<engine::PairView>,
    },
    Views(Vec<engine::PairView>),
    Ack(u64),
    Recall,
    CertRotated(String),
    Checks(Value),
}

/// What the core tells one agent link task.
pub(crate) enum LinkCmd {
    Heartbeat {
        id: u64,
        pairs: Vec<crate::wire::MemberReport>,
    },
    Send {
        after: u64,
        upto: u64,
        taken_for: Option<String>,
    },
    Leave,
    HookResult {
        pair: String,
        hook: String,
        epoch: u64,
        error: Option<String>,
    },
    CertRotated(String),
    CheckRefused {
        check: String,
        reason: String,
    },
}

/// Shared by every task of a node.
pub(crate) struct Shared {
    pub data_dir: PathBuf,
    pub config: Arc<Mutex<Config>>,
    pub store: Arc<Mutex<Store>>,
    pub listen: SocketAddr,
    pub core: CoreSender,
    /// The node's certificate and whom it trusts (CT-1, CT-2): shared with the admin edge.
    pub trust: Arc<Trust>,
    pub events: broadcast::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    /// Whether this node is the acting server (ACTIVE, or `failover.mode = off`): the alert
    /// sender sends only then (AL-5). Set by the core.
    pub acting: watch::Sender<bool>,
    /// Where `desktop` alert channels' messages go (AL-7): the tray app's notifier, if any.
    pub desktop: crate::alerts::Desktop,
    /// The lease of each pair whose duty this agent holds: a check run after it is not recorded
    /// (CK-3), even if its task has not been stopped yet (a process resumed from SIGSTOP).
    pub leases: Arc<Mutex<HashMap<String, crate::checks::Lease>>>,
    /// Check results on their way to the cache (written in batches by `checks::write_results`).
    /// One run's records (a check's result; a scrape's samples with it, CK-4).
    pub check_results: mpsc::UnboundedSender<Vec<crate::store::NewRecord>>,
    /// §4 "disk full": since when (ms) and why check results could not be cached; cleared by
    /// the next write that succeeds (status: the link's `cache_error`).
    pub cache_error: Arc<Mutex<Option<(i64, String)>>>,
    /// HS-8: the gate agents' records pass to be stored here.
    pub intake: Intake,
    /// Issue 18: where agents' batches and the peer's merges are stored, several in one
    /// transaction.
    pub group_commit: crate::group_commit::GroupCommit,
    /// HS-8: how far the STANDBY peer said it holds this node's records and events (the cursors
    /// of its last replicating poll): a handover sends only what lies beyond.
    pub peer_pulled: PeerPulled,
    /// MX-2: what the forwarder last measured (cursor, lag, error).
    pub forward: Arc<ForwardProgress>,
    /// HS-3, AL-5: rung when this node marks an alert's delivery, so that a STANDBY watching it
    /// (`PeerWatch`) is told to replicate at once (stored events ring `events`).
    pub peer_news: Arc<tokio::sync::Notify>,
    /// MX-1: the last stored run of each check (by check name), for its duration on `/metrics`.
    pub check_runs: Arc<Mutex<BTreeMap<String, CheckRun>>>,
}

/// MX-1: one stored run of a check, as the server stored it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CheckRun {
    pub up: bool,
    /// Latency in milliseconds (`tcp`, `http`), or the number a `command` printed.
    pub value: f64,
    pub time_ms: i64,
}

/// MX-1: the engine's state a scrape renders: the typed `status` the admin API answers, and each
/// check's state (AL-2) as the acting server's watch holds it.
pub(crate) struct MetricsSnapshot {
    pub status: understudy_api::Status,
    pub check_states: Vec<(String, engine::CheckState)>,
}

/// The node's own certificate and the certificates it trusts (CT-1, CT-2, issue 12 item 2): what
/// the link tasks and the admin edge (`cert generate`, `trust`) share about TLS.
pub(crate) struct Trust {
    pub identity: Arc<NodeIdentity>,
    /// The agent's server pins, per server address (CT-2: grows on rotation; issue 12 item 2).
    pub pins: PinBook,
    /// The rotations the hot-standby peer announced (besides `failover.peer`'s fingerprint),
    /// under [`PEER_PINS`].
    pub peer_pins: PinBook,
    /// Server certificates an agent link was refused for, by address: the operator may accept
    /// one on first contact (CT-2).
    pub untrusted: Mutex<HashMap<String, String>>,
}

impl Trust {
    pub fn new(identity: Arc<NodeIdentity>, pins: PinBook, peer_pins: PinBook) -> Trust {
        Trust {
            identity,
            pins,
            peer_pins,
            untrusted: Mutex::new(HashMap::new()),
        }
    }

    /// Persists both pin books (after a pin was added or rotated).
    pub fn save(&self, store: &Mutex<Store>) {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = store
            .state_set(PINS_KEY, &self.pins.to_json())
            .and_then(|_| store.state_set("peer.pins", &self.peer_pins.to_json()))
        {
            tracing::error!("saving the certificate pins: {e}");
        }
    }

    /// The fingerprints the peer link trusts: `failover.peer`'s and the rotations it announced,
    /// each until a later rotation retired it ([`PinBook::configure`]).
    pub fn peer_trust(&self, config: &Config) -> Pins {
        if let Some(fp) = config.peer().ok().flatten().and_then(|p| p.fingerprint) {
            self.peer_pins.configure(PEER_PINS, &fp);
        }
        self.peer_pins.pins_for(PEER_PINS, now_ms())
    }
}

/// HS-8 break-before-make: a node handing its role over stops storing agents' records, and knows
/// when the last batch that got in is durable (so the handover carries it).
#[derive(Default)]
pub(crate) struct Intake {
    closed: std::sync::atomic::AtomicBool,
    fence: tokio::sync::RwLock<()>,
}

impl Intake {
    /// Held while one batch is stored and acknowledged; `None` when the intake is closed or
    /// closing. Never waits: a connection holding the guards of batches still being committed
    /// (issue 18) must not wait behind a `close` that waits for them.
    pub fn enter(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        let guard = self.fence.try_read().ok()?;
        (!self.closed.load(std::sync::atomic::Ordering::SeqCst)).then_some(guard)
    }
    /// Closes the intake and returns once every batch that got in is stored.
    pub async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(self.fence.write().await);
    }
    pub fn open(&self) {
        self.closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The replication cursors the STANDBY peer sent in its last poll (HS-3).
#[derive(Default)]
pub(crate) struct PeerPulled {
    pub records_after: std::sync::atomic::AtomicU64,
    pub events_after: std::sync::atomic::AtomicU64,
    pub outbox_after: std::sync::atomic::AtomicU64,
}

/// Where the peer's announced rotations are kept in [`Shared::peer_pins`].
pub(crate) const PEER_PINS: &str = "peer";
/// The store key of the agent's server pins ([`PinBook::to_json`]).
pub(crate) const PINS_KEY: &str = "pins.by_address";

impl Shared {
    /// Persists both pin books (after a pin was added or rotated).
    pub fn save_pins(&self) {
        self.trust.save(&self.store);
    }

    /// The fingerprints the peer link trusts ([`Trust::peer_trust`]).
    pub fn peer_trust(&self) -> Pins {
        self.trust.peer_trust(&self.config())
    }

    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The fingerprints of this server's hot-standby peer that agents may trust as their home's
/// peer (SECURITY.md): empty without hot standby.
pub(crate) fn peer_fingerprints(shared: &Shared) -> Vec<String> {
    let config = shared.config();
    if config.failover.mode == config::FailoverMode::Off || config.peer().ok().flatten().is_none() {
        return Vec::new();
    }
    shared.peer_trust().list()
}

/// AG-7: where to send agents: the peer's own listen address when it told us, else its URL.
pub(crate) fn redirect_target(shared: &Shared, to: String) -> String {
    match shared.store().state_get("peer.listen") {
        Ok(Some(Value::String(listen))) if !listen.is_empty() => format!("https://{listen}"),
        _ => to,
    }
}

/// Stores an event raised outside the engines (a role change, a new certificate), logs it and
/// wakes whoever follows events (UI-1); it alerts like the engines' events while this node acts
/// (AL-1).
pub(crate) fn record_event(shared: &Shared, e: &Event) {
    let acting = *shared.acting.borrow();
    record_event_alerting(shared, e, acting)
}

/// [`record_event`]; on the acting server (`alerting`) an event whose code notifies is also an
/// alert, written to the outbox in the same transaction (AL-1, AL-5).
pub(crate) fn record_event_alerting(shared: &Shared, e: &Event, alerting: bool) {
    store_event(&shared.store, &shared.events, e, alerting)
}

/// [`record_event_alerting`] for a task that holds only the store and the events' wake-up.
pub(crate) fn store_event(
    store: &Mutex<Store>,
    events: &broadcast::Sender<u64>,
    e: &Event,
    alerting: bool,
) {
    // Subjects and reasons carry text agents and servers chose (names, hook errors, refusals).
    tracing::info!(
        code = e.code.as_str(),
        subject = %crate::logsafe::text(&e.subject),
        "{}",
        crate::logsafe::text(&e.reason)
    );
    let row = EventRow {
        time_ms: now_ms(),
        code: e.code.as_str().to_string(),
        subject: e.subject.clone(),
        detail: e.reason.clone(),
        data: json!({ "rule": e.code.rule(), "notify": e.code.notify() }),
    };
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    let alert = (alerting && e.code.notify()).then(|| crate::store::NewAlert {
        id: uuid::Uuid::new_v4().to_string(),
        severity: e.code.severity().as_str().to_string(),
        // AL-4: one delivery per channel whose filter takes it.
        channels: crate::alerts::channels_for(&store, e.code),
    });
    let stored = store.event_append_alerting(&row, alert.as_ref());
    drop(store);
    match stored {
        Ok(id) => {
            let _ = events.send(id);
        }
        Err(err) => tracing::error!("storing event {}: {err}", e.code),
    }
}

/// MX-2: what the forwarder (`forward.rs`) last measured, read by `status` and the metrics.
#[derive(Debug, Default)]
pub(crate) struct ForwardProgress {
    inner: Mutex<ForwardNow>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardNow {
    pub cursor: u64,
    pub lag_records: u64,
    pub lag_seconds: f64,
    pub forwarding: bool,
    pub error: Option<String>,
}

impl ForwardProgress {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ForwardNow> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn now(&self) -> ForwardNow {
        self.lock().clone()
    }
    /// The `forward` part of `status`, when `forward.remote_write` is set.
    pub fn view(&self, config: &Config) -> Option<understudy_api::ForwardView> {
        if config.forward.remote_write.is_empty() || !config.node.server {
            return None;
        }
        let p = self.now();
        Some(understudy_api::ForwardView {
            remote_write: config.forward.remote_write.clone(),
            cursor: p.cursor,
            lag_records: p.lag_records,
            lag_seconds: p.lag_seconds,
            forwarding: p.forwarding,
            error: p.error,
        })
    }
}
