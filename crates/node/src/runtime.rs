//! The node: one core task owns the engine's machines (the agent link and the server role) and
//! is the only place that feeds them; IO tasks (links, connections, peer polls, hooks) report
//! to it over a channel and carry out what it decides. One timer: the machines' earliest deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use understudy_engine as engine;
use understudy_engine::agent::{AgentAction, Restored};
use understudy_engine::{
    Admission, Agent, HaAction, PeerStatus, ProbeResult, Server, ServerAction,
};

use crate::config::{self, Config, ConfigError, ServerUrl, CONFIG_FILE};
use crate::docs::{agent_entry, ha_config, pair_config_from_doc, pair_doc, watch_config};
use crate::http_client::AdminClient;
use crate::mailbox::{
    now_ms, record_event_alerting, redirect_target, Input, LinkCmd, LinkEvent, Shared, Trust,
    PEER_PINS, PINS_KEY,
};
use crate::store::{AgentRow, AgentStatus, Store, StoreError};
use crate::tls::{self, NodeIdentity, PinBook, Pins};
use crate::{admin, admin_auth, hooks, net};

mod requests;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl NodeError {
    /// PRODUCT.md §3: 2 for bad configuration, 1 for everything else refused.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::Config(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Server,
    Agent,
}

pub struct InitOptions {
    pub data_dir: PathBuf,
    pub name: String,
    pub listen: String,
    pub role: Role,
    pub servers: Vec<String>,
    pub sets: Vec<String>,
}

pub struct InitReport {
    pub config_path: PathBuf,
    pub fingerprint: String,
    pub admin_url: String,
}

/// `understudy init`: a new node's data directory, config file, certificate and admin token.
pub fn init(opts: &InitOptions) -> Result<InitReport, NodeError> {
    let config_path = opts.data_dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(NodeError::Refused(format!(
            "{} exists already: this node is initialised",
            config_path.display()
        )));
    }
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| NodeError::Io {
        doing: format!("creating {}", opts.data_dir.display()),
        source,
    })?;
    let data_dir = opts
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| opts.data_dir.clone());
    secure_data_dir(&data_dir)?;
    let cert = tls::load_or_generate(&data_dir)?;
    admin_auth::load_or_create_token(&data_dir).map_err(|e| NodeError::Refused(e.to_string()))?;
    admin_auth::load_or_create_metrics_token(&data_dir)
        .map_err(|e| NodeError::Refused(e.to_string()))?;
    admin_auth::load_or_create_push_token(&data_dir)
        .map_err(|e| NodeError::Refused(e.to_string()))?;
    let mut config = Config::new(&opts.name, &data_dir);
    config.node.listen = opts.listen.clone();
    config.node.server = opts.role != Role::Agent;
    config.node.agent = opts.role != Role::Server;
    config.agent.servers = opts.servers.clone();
    if opts.role == Role::Standalone && opts.servers.is_empty() {
        // Standalone: the agent role reports to this node's own server role (Pro.Monitor).
        config.agent.servers = vec![format!("https://{}#{}", opts.listen, cert.fingerprint)];
    }
    for set in &opts.sets {
        config.apply_set(set)?;
    }
    if let Err((key, message)) = config.validate() {
        return Err(ConfigError::Invalid {
            path: config_path,
            key,
            message,
        }
        .into());
    }
    config.save(&config_path)?;
    Ok(InitReport {
        config_path,
        fingerprint: cert.fingerprint,
        admin_url: format!("https://{}", opts.listen),
    })
}

/// Makes the data directory 0700 and its secrets 0600, warning for each that was looser.
fn secure_data_dir(data_dir: &Path) -> Result<(), NodeError> {
    let fixed = crate::fsutil::secure_data_dir(data_dir).map_err(|source| NodeError::Io {
        doing: format!("checking the permissions in {}", data_dir.display()),
        source,
    })?;
    for sentence in fixed {
        tracing::warn!("{sentence}");
    }
    Ok(())
}

/// An admin API client for the node whose data directory this is.
pub fn admin_client(data_dir: &Path) -> Result<AdminClient, NodeError> {
    let config = Config::load(&data_dir.join(CONFIG_FILE))?;
    let token =
        std::fs::read_to_string(data_dir.join(admin_auth::TOKEN_FILE)).map_err(|source| {
            NodeError::Io {
                doing: format!("reading the admin token in {}", data_dir.display()),
                source,
            }
        })?;
    let cert = tls::load_or_generate(data_dir)?;
    let client = AdminClient::new(
        &format!("https://{}", config.node.listen),
        token.trim(),
        Pins::new([cert.fingerprint]),
    )
    .map_err(|e| NodeError::Refused(e.to_string()))?;
    Ok(client)
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<Shared>,
    admin: Arc<admin::Admin>,
}

impl Node {
    /// Loads `<data_dir>/config.toml`, opens the store, binds the listener and starts every role.
    pub async fn start(data_dir: &Path) -> Result<Node, NodeError> {
        let config = Config::load(&data_dir.join(CONFIG_FILE))?;
        let data_dir = config.node.data_dir.clone();
        // Re-checked at every start: a copy or an old install may have left them readable.
        secure_data_dir(&data_dir)?;
        let mut store = Store::open(&data_dir.join("store.db"), &config.node.id)?;
        // The store may have been created just now (with the umask's mode), its WAL with it.
        secure_data_dir(&data_dir)?;
        tls::load_or_generate(&data_dir)?;
        let identity = NodeIdentity::load(&data_dir)?;
        let token = admin_auth::load_or_create_token(&data_dir)
            .map_err(|e| NodeError::Refused(e.to_string()))?;
        // MX-1: made here too for a node initialised before the scrape token existed.
        let metrics_token = admin_auth::load_or_create_metrics_token(&data_dir)
            .map_err(|e| NodeError::Refused(e.to_string()))?;
        // CK-4: likewise the push token of the remote-write receiver.
        let push_token = admin_auth::load_or_create_push_token(&data_dir)
            .map_err(|e| NodeError::Refused(e.to_string()))?;
        let listen: SocketAddr = config.listen_addr().map_err(|m| ConfigError::Invalid {
            path: data_dir.join(CONFIG_FILE),
            key: "node.listen".into(),
            message: m,
        })?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| NodeError::Io {
                doing: format!("listening on {listen}"),
                source,
            })?;
        let listen = listener.local_addr().unwrap_or(listen);
        let peer_pins = match store.state_get("peer.pins") {
            // Before issue 12 item 2: a plain list, all in use.
            Ok(Some(Value::Array(learned))) => {
                let book = PinBook::default();
                for fp in learned.iter().filter_map(Value::as_str) {
                    book.add(PEER_PINS, fp);
                }
                book
            }
            Ok(Some(learned)) => PinBook::from_json(&learned),
            _ => PinBook::default(),
        };
        let servers = config.servers().unwrap_or_default();
        let pins = match store.state_get(PINS_KEY) {
            Ok(Some(learned)) => PinBook::from_json(&learned),
            // Issue 12 item 4: pins learned before they were kept per address (a global list)
            // apply to every server the configuration lists.
            _ => {
                let book = PinBook::default();
                if let Ok(Some(Value::Array(learned))) = store.state_get("pins") {
                    let learned: Vec<String> = learned
                        .iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect();
                    let addrs: Vec<String> = servers.iter().map(|u| u.address()).collect();
                    book.carry_over(&learned, &addrs);
                }
                book
            }
        };
        let peer = config.peer().ok().flatten();
        for url in servers.iter().chain(&peer) {
            if let Some(fp) = &url.fingerprint {
                pins.configure(&url.address(), fp);
            }
        }
        // The configured peer fingerprint is one of the peer link's pins: it retires after a
        // rotation the peer announced, like the others (issue 12).
        if let Some(fp) = peer.as_ref().and_then(|p| p.fingerprint.as_deref()) {
            peer_pins.configure(PEER_PINS, fp);
        }
        let (core_tx, core_rx) = mpsc::unbounded_channel();
        let (check_tx, check_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let (acting, _) = watch::channel(false);
        // HS-3: a committed change of the site configuration tells a STANDBY watching this node
        // at once (`PeerChanged`), as a stored event does: an acknowledged change is not left
        // for the next `sync_interval`.
        let peer_news: Arc<tokio::sync::Notify> = Default::default();
        store.on_site_change(peer_news.clone());
        let store = Arc::new(Mutex::new(store));
        let shared = Arc::new(Shared {
            data_dir: data_dir.clone(),
            config: Arc::new(Mutex::new(config)),
            group_commit: crate::group_commit::GroupCommit::start(store.clone()),
            store,
            listen,
            core: core_tx,
            trust: Arc::new(Trust::new(identity, pins, peer_pins)),
            events,
            shutdown,
            acting,
            desktop: Default::default(),
            leases: Arc::new(Mutex::new(HashMap::new())),
            check_results: check_tx,
            cache_error: Default::default(),
            intake: Default::default(),
            peer_pulled: Default::default(),
            forward: Default::default(),
            peer_news,
            check_runs: Default::default(),
        });
        shared.save_pins();
        tokio::spawn(crate::checks::write_results(
            shared.store.clone(),
            shared.core.clone(),
            shared.cache_error.clone(),
            check_rx,
        ));
        let core = Core::new(shared.clone())?;
        tokio::spawn(core.run(core_rx));
        tokio::spawn(crate::alerts::run(crate::alerts::Sender {
            store: shared.store.clone(),
            config: shared.config.clone(),
            events: shared.events.clone(),
            acting: shared.acting.subscribe(),
            shutdown: shared.shutdown.subscribe(),
            desktop: shared.desktop.clone(),
            peer_news: shared.peer_news.clone(),
        }));
        tokio::spawn(crate::forward::run(crate::forward::Forwarder {
            store: shared.store.clone(),
            config: shared.config.clone(),
            events: shared.events.clone(),
            acting: shared.acting.subscribe(),
            shutdown: shared.shutdown.subscribe(),
            progress: shared.forward.clone(),
        }));
        tokio::spawn(crate::retention::run(crate::retention::Retention {
            store: shared.store.clone(),
            config: shared.config.clone(),
            shutdown: shared.shutdown.subscribe(),
        }));
        let admin = Arc::new(admin::Admin {
            token,
            metrics_token,
            push_token,
            check_runs: shared.check_runs.clone(),
            data_dir: shared.data_dir.clone(),
            config: shared.config.clone(),
            store: shared.store.clone(),
            events: shared.events.clone(),
            core: shared.core.clone(),
            acting: shared.acting.subscribe(),
            trust: shared.trust.clone(),
            desktop: shared.desktop.clone(),
            leases: shared.leases.clone(),
            invitations_used: Default::default(),
        });
        let server_config = tls::server_config(shared.trust.identity.clone())?;
        let nofile = crate::limits::raise_nofile();
        let limits = crate::limits::ConnLimits::new(
            crate::limits::PER_ADDRESS,
            crate::limits::global_limit(nofile),
        );
        tokio::spawn(net::serve(
            shared.clone(),
            admin.clone(),
            listener,
            server_config,
            limits,
        ));
        tokio::spawn(net::peer_watch(shared.clone()));
        tracing::info!(%listen, "node started");
        Ok(Node { shared, admin })
    }

    /// AL-7: shows the messages of the site's `desktop` alert channels while this node is the
    /// acting server (the tray app's notifier); `Ok` once shown. Without one, such a delivery
    /// fails and is retried like any other.
    pub fn set_desktop_notifier(
        &self,
        show: impl Fn(&understudy_api::status::DesktopMessage) -> Result<(), String>
            + Send
            + Sync
            + 'static,
    ) {
        self.shared.desktop.set(Some(Arc::new(show)));
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The one request handler behind the HTTPS admin API, the CLI and the desktop app.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        admin::handle(&self.admin, method, path, body).await
    }

    /// One typed admin request, answered like the HTTPS API answers it.
    pub async fn request(
        &self,
        request: understudy_api::Request,
    ) -> Result<Value, understudy_api::Refusal> {
        admin::answer(&self.admin, request).await
    }

    /// Stops cleanly: an ACTIVE server with a healthy STANDBY hands its role over first (HS-8),
    /// then the agent leaves its server, links close, the listener stops.
    pub async fn shutdown(&self) {
        self.stop("planned stop").await;
    }

    /// [`Node::shutdown`], naming why in the HANDOVER event (e.g. "planned stop (SIGTERM)").
    pub async fn stop(&self, why: &str) {
        let (tx, rx) = oneshot::channel();
        let stop = Input::PlannedStop {
            why: why.to_string(),
            reply: tx,
        };
        if self.shared.core.send(stop).is_ok() {
            match tokio::time::timeout(HANDOVER_TIMEOUT, rx).await {
                Ok(Ok(Ok(done))) => tracing::info!("HS-8 handover: {done}"),
                Ok(Ok(Err(why))) => tracing::info!("stopping without a handover: {why}"),
                _ => tracing::warn!(
                    "stopping without a handover: no answer within {HANDOVER_TIMEOUT:?}"
                ),
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.shared.core.send(Input::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
        let _ = self.shared.shutdown.send(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The core task.

struct AgentSide {
    engine: Agent,
    /// Addresses (`HOST:PORT`) of the engine's servers, by index.
    addrs: Vec<String>,
    links: HashMap<usize, (u64, mpsc::UnboundedSender<LinkCmd>)>,
    checks: Value,
    /// Highest sequence deleted from the cache (deletes lag acknowledgements by up to DELETE_STEP).
    deleted_upto: u64,
    /// The link (server, conn) that may direct this agent: home or its peer (SECURITY.md).
    directing: Option<(usize, u64)>,
    /// Checks this agent refuses, with the reason told to the servers it connects to.
    refused_checks: std::collections::BTreeMap<String, String>,
}

const DELETE_STEP: u64 = 4096;
/// HS-8: how long a planned stop waits for its handover before stopping anyway (systemd allows a
/// service 90 s to stop).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

struct ServerSide {
    engine: Server,
    /// Connected agents: name -> (conn id, agent id, writer).
    conns: HashMap<String, (u64, String, mpsc::UnboundedSender<crate::wire::ToAgent>)>,
    peer_addr: Option<String>,
    peer_poll_busy: bool,
    /// A poll the engine asked for while one was in flight (with `replicate`): sent when that one
    /// ends. HS-8: the poll that follows a closed watch connection must not be lost because a
    /// replication poll was under way when the peer crashed (that poll then fails as silence).
    peer_poll_again: Option<bool>,
}

pub(crate) struct Core {
    shared: Arc<Shared>,
    agent: Option<AgentSide>,
    server: Option<ServerSide>,
    next_conn: u64,
    shutting_down: bool,
    /// HS-8: a planned stop waiting for the peer's answer to the handover.
    stopping: Option<oneshot::Sender<Result<String, String>>>,
    checks: crate::checks::Runner,
}

fn std_to_tokio(t: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(t)
}

fn cluster_of(config: &Config) -> Option<(String, String)> {
    let peer = config.peer().ok().flatten()?;
    if config.failover.mode == config::FailoverMode::Off {
        return None;
    }
    let mut both = [config.node.listen.clone(), peer.address()];
    both.sort();
    Some((both.join("+"), peer.address()))
}

impl Core {
    fn new(shared: Arc<Shared>) -> Result<Core, NodeError> {
        let mut core = Core {
            shared,
            agent: None,
            server: None,
            next_conn: 1,
            shutting_down: false,
            stopping: None,
            checks: crate::checks::Runner::new(),
        };
        let config = core.shared.config();
        if config.node.server {
            core.start_server(&config)?;
        }
        if config.node.agent {
            core.start_agent(&config)?;
        }
        Ok(core)
    }

    pub(crate) fn start_server(&mut self, config: &Config) -> Result<(), NodeError> {
        let now = Instant::now();
        let store = self.shared.store();
        let agents = store.agents_list()?.iter().map(agent_entry).collect();
        let pairs = store
            .pairs_list()?
            .iter()
            .filter_map(|(n, d)| pair_config_from_doc(n, d))
            .collect();
        let epoch = store
            .state_get("server.epoch")?
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        // AL-2: what the operator was last told about each check, by this server or its peer.
        let told = store.checks_told()?;
        drop(store);
        let cluster = cluster_of(config);
        let mut engine = Server::new(
            engine::ServerConfig {
                name: config.node.name.clone(),
                standby_capacity: config.server.standby_capacity,
                ha: ha_config(config),
                peer_url: cluster.as_ref().map(|(_, p)| format!("https://{p}")),
                cluster: cluster.as_ref().map(|(c, _)| c.clone()),
                watch: watch_config(config),
            },
            agents,
            pairs,
            epoch,
            now,
        );
        for (check, down) in &told {
            engine.handle_check_told(check, *down);
        }
        self.server = Some(ServerSide {
            engine,
            conns: HashMap::new(),
            peer_addr: cluster.map(|(_, p)| p),
            peer_poll_busy: false,
            peer_poll_again: None,
        });
        Ok(())
    }

    pub(crate) fn start_agent(&mut self, config: &Config) -> Result<(), NodeError> {
        let urls = config.servers().map_err(|m| ConfigError::Invalid {
            path: self.shared.data_dir.join(CONFIG_FILE),
            key: "agent.servers".into(),
            message: m,
        })?;
        if urls.is_empty() {
            return Err(NodeError::Refused(
                "the agent role needs at least one server (agent.servers)".into(),
            ));
        }
        let store = self.shared.store();
        let first = store.cache_first_seq()?;
        let len = store.cache_len()?;
        let acked = store
            .state_get("agent.acked")?
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let epochs = store
            .state_get("agent.epochs")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let checks = store.state_get("agent.checks")?.unwrap_or(json!([]));
        let held = store.cache_held()?;
        let home_cluster = store
            .state_get("agent.home_cluster")?
            .and_then(|v| v.as_str().map(String::from));
        let home_peer = store
            .state_get("agent.home_peer")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        drop(store);
        let acked_upto = first.map(|f| f - 1).unwrap_or(acked);
        let restored = Restored {
            acked_upto,
            cached_upto: acked_upto + len,
            epochs,
            held,
            home_cluster,
            home_peer,
        };
        let engine = Agent::new(
            engine::AgentConfig {
                name: config.node.name.clone(),
                servers: urls
                    .iter()
                    .map(|u| format!("https://{}", u.address()))
                    .collect(),
                heartbeat: config.agent.heartbeat,
                switchover_after: config.agent.switchover_after,
                switchback_interval: config.agent.switchback_interval,
                held_limit: config.agent.held_limit,
            },
            restored,
            Instant::now(),
        );
        if let (_, Some(why)) = engine.config().effective_switchback_interval() {
            tracing::warn!("{why}");
        }
        self.agent = Some(AgentSide {
            engine,
            addrs: urls.iter().map(ServerUrl::address).collect(),
            links: HashMap::new(),
            checks,
            deleted_upto: acked_upto,
            directing: None,
            refused_checks: Default::default(),
        });
        Ok(())
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        self.drain();
        loop {
            let deadline = self.poll_timeout().map(std_to_tokio);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { return };
                    if let Input::Shutdown(done) = input {
                        self.shut_down();
                        let _ = done.send(());
                        continue;
                    }
                    self.handle(input);
                }
                _ = sleep => {
                    let now = Instant::now();
                    if let Some(a) = &mut self.agent { a.engine.handle_timeout(now); }
                    if let Some(s) = &mut self.server { s.engine.handle_timeout(now); }
                }
            }
            self.drain();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let a = self.agent.as_ref().and_then(|a| a.engine.poll_timeout());
        let s = self.server.as_ref().and_then(|s| s.engine.poll_timeout());
        match (a, s) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        }
    }

    fn shut_down(&mut self) {
        self.shutting_down = true;
        let now = Instant::now();
        if let Some(a) = &mut self.agent {
            a.engine.handle_shutdown(now);
        }
        self.drain();
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Link {
                server,
                conn,
                event,
            } => self.link_event(now, server, conn, event),
            Input::Probe { server, result } => {
                if let Some(a) = &mut self.agent {
                    a.engine.handle_probe_result(now, server, result);
                }
            }
            Input::Cached(upto) => {
                if let Some(a) = &mut self.agent {
                    a.engine.handle_cached(now, upto);
                }
            }
            Input::CheckRefused { check, reason } => {
                let Some(a) = &mut self.agent else { return };
                if a.refused_checks.get(&check) == Some(&reason) {
                    return;
                }
                tracing::warn!(%check, "check refused: {reason}");
                a.refused_checks.insert(check.clone(), reason.clone());
                if let Some((_, tx)) = a.engine.server().and_then(|s| a.links.get(&s)) {
                    let _ = tx.send(LinkCmd::CheckRefused { check, reason });
                }
            }
            Input::HookDone {
                pair,
                hook,
                epoch,
                result,
            } => {
                if let Err(why) = &result {
                    tracing::warn!(%pair, hook, "hook failed: {why}");
                }
                if let Some(a) = &mut self.agent {
                    if let Some(server) = a.engine.server() {
                        if let Some((_, tx)) = a.links.get(&server) {
                            let _ = tx.send(LinkCmd::HookResult {
                                pair,
                                hook: hook.to_string(),
                                epoch: epoch.pair,
                                error: result.err(),
                            });
                        }
                    }
                }
            }
            Input::Hello {
                hello,
                conn,
                tx,
                reply,
            } => {
                let admission = match &mut self.server {
                    Some(s) => {
                        let admission = s.engine.handle_hello(now, &hello);
                        if matches!(admission, Admission::Accepted(_)) {
                            s.conns
                                .insert(hello.name.clone(), (conn, hello.id.clone(), tx));
                            s.engine.handle_agent_heard(now, &hello.name, &seen_now());
                        }
                        let home = s.engine.registry().connected_is_home(&hello.id);
                        (admission, home.unwrap_or(false))
                    }
                    None => (Admission::Refused(engine::Refusal::NotServing), false),
                };
                let _ = reply.send(admission);
            }
            Input::ProbeHello { hello, reply } => {
                let result = match &mut self.server {
                    Some(s) => s.engine.handle_probe(now, &hello),
                    None => ProbeResult::Refused(engine::Refusal::NotServing.reason()),
                };
                let _ = reply.send(result);
            }
            Input::Heartbeat {
                conn,
                agent,
                id,
                reports,
            } => {
                if let Some(s) = &mut self.server {
                    let Some((c, _, tx)) = s.conns.get(&agent) else {
                        return;
                    };
                    if *c != conn {
                        return;
                    }
                    let tx = tx.clone();
                    s.engine.handle_agent_heard(now, &agent, &seen_now());
                    let views = s.engine.handle_heartbeat(now, &agent, &reports);
                    let views = views.iter().map(Into::into).collect();
                    let _ = tx.send(crate::wire::ToAgent::HeartbeatAck { id, views });
                }
            }
            Input::AgentGone { conn, id, name } => {
                if let Some(s) = &mut self.server {
                    if s.conns.get(&name).is_some_and(|(c, _, _)| *c == conn) {
                        s.conns.remove(&name);
                        s.engine.handle_agent_gone(now, &id, &name);
                    }
                }
            }
            Input::HookResult {
                agent,
                pair,
                hook,
                epoch,
                error,
            } => {
                if let Some(s) = &mut self.server {
                    if let Err(why) = s.engine.handle_hook_result(
                        now,
                        &agent,
                        &pair,
                        &hook,
                        epoch,
                        error.map_or(Ok(()), Err),
                    ) {
                        tracing::warn!("{}", crate::logsafe::text(&why));
                    }
                }
            }
            Input::MayRecordUnder {
                agent,
                claims,
                reply,
            } => {
                let refused = match &mut self.server {
                    Some(s) => claims
                        .into_iter()
                        .filter_map(|(p, e)| {
                            let why = s.engine.handle_records_under(now, &agent, &p, e).err()?;
                            Some(((p, e), why))
                        })
                        .collect(),
                    None => Vec::new(),
                };
                let _ = reply.send(refused);
            }
            Input::AgentCertRotated { id, fingerprint } => {
                if let Some(s) = &mut self.server {
                    let why = s.engine.handle_agent_cert_rotated(now, &id, &fingerprint);
                    tracing::info!("{}", crate::logsafe::text(&why));
                }
            }
            Input::AgentCheckRefused {
                agent,
                check,
                reason,
            } => {
                if let Some(s) = &mut self.server {
                    s.engine.handle_check_refused(now, &agent, &check, &reason);
                }
            }
            Input::Stored { agent, checks } => {
                let thresholds: Vec<engine::Thresholds> = checks
                    .iter()
                    .map(|(name, _, _)| check_thresholds(&self.shared, name))
                    .collect();
                if let Some(s) = &mut self.server {
                    s.engine.handle_agent_heard(now, &agent, &seen_now());
                    for ((name, up, detail), t) in checks.iter().zip(thresholds) {
                        s.engine.handle_check_result(now, name, t, *up, detail);
                    }
                }
            }
            Input::ChecksTold(told) => {
                if let Some(s) = &mut self.server {
                    for (check, down) in &told {
                        s.engine.handle_check_told(check, *down);
                    }
                }
            }
            Input::PeerState { reply } => {
                let _ = reply.send(self.peer_state());
            }
            Input::PeerAnswer(answer) => self.peer_answer(now, answer),
            Input::PeerRefused(why) => {
                if let Some(s) = &mut self.server {
                    s.peer_poll_busy = false;
                    // A refusal starts or continues a row the engine confirms on its own timer.
                    s.peer_poll_again = None;
                    tracing::debug!("peer poll refused: {why}");
                    s.engine.handle_peer_refused(now, why);
                }
            }
            Input::PlannedStop { why, reply } => {
                let r = match &mut self.server {
                    Some(s) => s.engine.hand_over(now, &why),
                    None => Err("this node is not a server".into()),
                };
                match r {
                    Ok(_) => self.stopping = Some(reply),
                    Err(why) => {
                        let _ = reply.send(Err(why));
                    }
                }
            }
            Input::HandoverResult(result) => {
                let answer = match &result {
                    Ok(epoch) => Ok(format!("the peer took the ACTIVE role (epoch {epoch})")),
                    Err(why) => Err(format!("the peer did not take the ACTIVE role: {why}")),
                };
                if let Some(s) = &mut self.server {
                    s.engine.handle_handover_result(now, result);
                }
                if let Some(reply) = self.stopping.take() {
                    let _ = reply.send(answer);
                }
            }
            Input::PeerHandover {
                epoch,
                reason,
                reply,
            } => {
                let r = match &mut self.server {
                    Some(s) => {
                        let known = s.engine.ha().peer().cloned();
                        let from = engine::PeerStatus {
                            name: known
                                .as_ref()
                                .map_or_else(|| "peer".into(), |p| p.name.clone()),
                            mode: known.as_ref().map_or(engine::FailoverMode::Off, |p| p.mode),
                            state: "standby".into(),
                            epoch,
                            site_version: known.map_or(0, |p| p.site_version),
                        };
                        s.engine.handle_handover_request(now, from, &reason)
                    }
                    None => Err("this node is not a server".into()),
                };
                let _ = reply.send(r);
            }
            Input::PeerClosed => {
                if let Some(s) = &mut self.server {
                    s.engine.handle_peer_closed(now);
                }
            }
            Input::PeerChanged => {
                if let Some(s) = &mut self.server {
                    s.engine.handle_peer_changed(now);
                }
            }
            Input::Admin { request, reply } => {
                let r = requests::core_request(self, now, request);
                let _ = reply.send(r);
            }
            Input::Metrics(reply) => {
                let status = requests::status(self, now);
                let check_states = match self.server_engine() {
                    Some(s) => status
                        .checks
                        .iter()
                        .map(|c| (c.name.clone(), s.watch().check_state(&c.name)))
                        .collect(),
                    None => Vec::new(),
                };
                let _ = reply.send(crate::mailbox::MetricsSnapshot {
                    status,
                    check_states,
                });
            }
            Input::CertRotated { fingerprint, done } => {
                self.announce_cert(&fingerprint);
                // The peer is told over its own connection; the rotation waits for it.
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    net::announce_cert_to_peer(&shared, &fingerprint).await;
                    let _ = done.send(());
                });
            }
            Input::Shutdown(_) => {}
        }
    }

    /// CT-2: every agent connected here and every link of this node's agent learn the new
    /// fingerprint over the old certificate, before it is taken into use.
    fn announce_cert(&self, fingerprint: &str) {
        for (_, tx) in self.server_conns() {
            let _ = tx.send(crate::wire::ToAgent::CertRotated {
                fingerprint: fingerprint.to_string(),
            });
        }
        for tx in self.agent_links() {
            let _ = tx.send(LinkCmd::CertRotated(fingerprint.to_string()));
        }
    }

    pub(crate) fn peer_state(&self) -> crate::wire::PeerState {
        let config = self.shared.config();
        let (state, epoch) = match &self.server {
            Some(s) => (
                s.engine.ha().state().as_str().to_string(),
                s.engine.ha().epoch(),
            ),
            None => ("stopped".into(), 0),
        };
        crate::wire::PeerState {
            name: config.node.name.clone(),
            mode: serde_json::to_value(config.failover.mode)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            state,
            epoch,
            site_version: self.shared.store().site_version().unwrap_or(0),
            fingerprint: self.shared.trust.identity.fingerprint(),
            listen: config.node.listen.clone(),
        }
    }

    fn peer_answer(
        &mut self,
        now: Instant,
        answer: Result<(PeerStatus, Option<crate::store::SiteSnapshot>), String>,
    ) {
        let Some(s) = &mut self.server else { return };
        s.peer_poll_busy = false;
        if let Some(replicate) = s.peer_poll_again.take() {
            self.server_action(ServerAction::Ha(HaAction::PollPeer { replicate }));
        }
        let Some(s) = &mut self.server else { return };
        match answer {
            Ok((status, site)) => {
                if let Some(site) = site {
                    if let Err(why) = s.engine.may_apply_replicated_site(&status) {
                        tracing::warn!("{}", crate::logsafe::text(&why));
                    } else {
                        // HS-3: the site configuration as the ACTIVE server holds it, in the
                        // store and in the engine.
                        if let Err(e) = self.shared.store().site_replace(&site) {
                            tracing::error!("replicating the site configuration: {e}");
                        }
                        s.engine
                            .replace_agents(site.agents.iter().map(agent_entry).collect());
                        for (name, doc) in &site.pairs {
                            if let Some((c, st)) = pair_config_from_doc(name, doc) {
                                let _ = s.engine.put_pair(now, c, Some(st));
                            }
                        }
                        s.engine.handle_replicated(site.version);
                    }
                }
                s.engine.handle_peer_status(now, status);
            }
            Err(why) => {
                tracing::debug!("peer poll failed: {why}");
                s.engine.handle_peer_unreachable(now);
            }
        }
    }

    fn link_event(&mut self, now: Instant, server: usize, conn: u64, event: LinkEvent) {
        let Some(a) = &mut self.agent else { return };
        if a.links.get(&server).map(|l| l.0) != Some(conn) {
            return; // a task of a link the engine already gave up on
        }
        match event {
            LinkEvent::Connected {
                welcome,
                checks,
                presented,
                peer,
            } => {
                a.engine.handle_connected(now, server, welcome);
                if a.engine.server() != Some(server) {
                    return; // not followed (AG-8)
                }
                // SECURITY.md: only home and its peer direct this agent; a standby server of
                // another site keeps the agent's checks and pair duties as they are.
                match a.engine.may_direct(server, &presented) {
                    Ok(()) => {
                        a.directing = Some((server, conn));
                        if a.engine.handle_home_peer(server, &presented, &peer) {
                            let home_peer = json!(a.engine.home_peer());
                            let _ = self.shared.store().state_set("agent.home_peer", &home_peer);
                        }
                        if a.checks != checks && !checks.is_null() {
                            a.checks = checks.clone();
                            a.refused_checks.clear();
                            let _ = self.shared.store().state_set("agent.checks", &checks);
                        }
                    }
                    Err(why) => {
                        a.directing = None;
                        tracing::info!("{why}; keeping this agent's checks");
                    }
                }
                if let Some((_, tx)) = a.links.get(&server) {
                    for (check, reason) in &a.refused_checks {
                        let _ = tx.send(LinkCmd::CheckRefused {
                            check: check.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
            }
            LinkEvent::Refused { reason, capacity } => {
                a.links.remove(&server);
                a.engine.handle_refused(now, server, reason, capacity);
            }
            LinkEvent::Redirect {
                to,
                fingerprint,
                welcome,
                presented,
            } => {
                a.links.remove(&server);
                if let Err(why) = a.engine.may_direct(server, &presented) {
                    // SECURITY.md: a foreign standby cannot send the agent (and a pin) elsewhere.
                    let why = format!("redirect refused: {why}");
                    tracing::warn!("{why}");
                    a.engine.handle_connect_failed(now, server, why.clone());
                    a.engine.handle_disconnected(now, server, why);
                    return;
                }
                let addr = to.trim_start_matches("https://").to_string();
                if let Some(fp) = &fingerprint {
                    // Pinned for the address home sent the agent to, not for any server.
                    self.shared.trust.pins.add(&addr, fp);
                    self.shared.save_pins();
                    // Home (or its peer) named where to go: that server may direct this agent.
                    if a.engine
                        .handle_home_peer(server, &presented, std::slice::from_ref(fp))
                    {
                        let home_peer = json!(a.engine.home_peer());
                        let _ = self.shared.store().state_set("agent.home_peer", &home_peer);
                    }
                }
                if !a.addrs.contains(&addr) {
                    a.addrs.push(addr);
                }
                a.engine.handle_redirect(now, server, &to, welcome);
            }
            LinkEvent::ConnectFailed(why) => {
                a.links.remove(&server);
                a.engine.handle_connect_failed(now, server, why);
            }
            LinkEvent::Disconnected(why) => {
                a.links.remove(&server);
                a.engine.handle_disconnected(now, server, why);
            }
            LinkEvent::HeartbeatAck { id, views } => {
                // A server that may not direct this agent gives no word on its pairs.
                let views = if a.directing == Some((server, conn)) {
                    views
                } else {
                    Vec::new()
                };
                a.engine.handle_heartbeat_ack(now, server, id, &views)
            }
            LinkEvent::Views(views) => {
                let views = if a.directing == Some((server, conn)) {
                    views
                } else {
                    tracing::warn!(
                        "ignored pair views from a server that may not direct this agent"
                    );
                    Vec::new()
                };
                a.engine.handle_pair_views(now, server, &views)
            }
            LinkEvent::Ack(upto) => a.engine.handle_ack(now, server, upto),
            LinkEvent::Recall => a.engine.handle_recall(now, server),
            LinkEvent::CertRotated(fp) => {
                if a.directing != Some((server, conn)) {
                    tracing::warn!(%fp, "ignored a certificate rotation from a server that may not direct this agent");
                    return;
                }
                // The new certificate is pinned for this server's address only; its older
                // ones retire after the grace period (issue 12 item 2).
                if let Some(addr) = a.addrs.get(server) {
                    self.shared.trust.pins.rotate(
                        addr,
                        &fp,
                        now_ms(),
                        understudy_api::defaults::PIN_RETIRE_AFTER,
                    );
                    self.shared.save_pins();
                }
                if server != 0
                    && a.engine
                        .handle_home_peer(server, &fp, std::slice::from_ref(&fp))
                {
                    let home_peer = json!(a.engine.home_peer());
                    let _ = self.shared.store().state_set("agent.home_peer", &home_peer);
                }
            }
            LinkEvent::Checks(checks) => {
                if a.directing != Some((server, conn)) {
                    tracing::warn!("ignored checks from a server that may not direct this agent");
                    return;
                }
                a.checks = checks.clone();
                a.refused_checks.clear();
                let _ = self.shared.store().state_set("agent.checks", &checks);
            }
        }
    }

    /// Carries out what the machines decided, and records their events.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            // AL-1: the acting server alerts, for its own events and its local agent's.
            let alerting = self.server.as_ref().is_some_and(|s| s.engine.is_acting());
            self.shared
                .acting
                .send_if_modified(|a| std::mem::replace(a, alerting) != alerting);
            if let Some(a) = &mut self.agent {
                while let Some(e) = a.engine.poll_event() {
                    record_event_alerting(&self.shared, &e, alerting);
                }
                let actions: Vec<_> = std::iter::from_fn(|| a.engine.poll_action()).collect();
                progressed |= !actions.is_empty();
                for action in actions {
                    self.agent_action(action);
                }
            }
            if let Some(s) = &mut self.server {
                if s.engine.is_acting() {
                    // HS-8: a node that acts (again) stores records.
                    self.shared.intake.open();
                }
                while let Some(e) = s.engine.poll_event() {
                    let alerting = s.engine.is_acting();
                    record_event_alerting(&self.shared, &e, alerting);
                }
                let actions: Vec<_> = std::iter::from_fn(|| s.engine.poll_action()).collect();
                progressed |= !actions.is_empty();
                for action in actions {
                    self.server_action(action);
                }
            }
            if !progressed {
                break;
            }
        }
        self.reconcile_checks();
    }

    /// CK-2/CK-3: the agent runs its own checks, and a pair's checks only while it holds the
    /// pair's duty (under the pair's alias).
    fn reconcile_checks(&mut self) {
        let leases: HashMap<String, crate::checks::Lease> = match &self.agent {
            Some(a) if !self.shutting_down => a
                .engine
                .members()
                .iter()
                .filter_map(|(p, m)| match m {
                    engine::MemberState::Active { lease_until, epoch } => Some((
                        p.clone(),
                        crate::checks::Lease {
                            until: *lease_until,
                            epoch: epoch.pair,
                        },
                    )),
                    engine::MemberState::Idle { .. } => None,
                })
                .collect(),
            _ => HashMap::new(),
        };
        *self.shared.leases.lock().unwrap_or_else(|p| p.into_inner()) = leases;
        let wanted: Vec<crate::checks::Check> = match &self.agent {
            Some(a) if !self.shutting_down => a
                .checks
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(crate::checks::Check::from_json)
                .filter(|c| match &c.pair {
                    Some(p) => a.engine.members().get(p).is_some_and(|m| m.is_active()),
                    None => true,
                })
                .collect(),
            _ => Vec::new(),
        };
        self.checks
            .reconcile(&crate::checks::CheckContext::of(&self.shared), wanted);
    }

    fn agent_action(&mut self, action: AgentAction) {
        let shared = self.shared.clone();
        let Some(a) = &mut self.agent else { return };
        match action {
            AgentAction::Connect { server } => {
                if self.shutting_down {
                    return;
                }
                let conn = self.next_conn;
                self.next_conn += 1;
                let (tx, rx) = mpsc::unbounded_channel();
                a.links.insert(server, (conn, tx));
                let addr = a.addrs.get(server).cloned().unwrap_or_default();
                let home = server == 0;
                tokio::spawn(net::agent_link(shared, server, conn, addr, home, rx));
            }
            AgentAction::Probe { server } => {
                let addr = a.addrs.get(server).cloned().unwrap_or_default();
                tokio::spawn(net::agent_probe(shared, server, addr));
            }
            AgentAction::Disconnect { server } => {
                a.links.remove(&server);
            }
            AgentAction::Leave { server } => {
                if let Some((_, tx)) = a.links.remove(&server) {
                    let _ = tx.send(LinkCmd::Leave);
                }
            }
            AgentAction::SendHeartbeat { server, id } => {
                let pairs = a
                    .engine
                    .member_reports()
                    .into_iter()
                    .map(|(pair, epoch, active)| crate::wire::MemberReport {
                        pair,
                        epoch: epoch.into(),
                        active,
                    })
                    .collect();
                if let Some((_, tx)) = a.links.get(&server) {
                    let _ = tx.send(LinkCmd::Heartbeat { id, pairs });
                }
            }
            AgentAction::Send {
                server,
                after,
                upto,
                taken_for,
            } => {
                if let Some((_, tx)) = a.links.get(&server) {
                    let _ = tx.send(LinkCmd::Send {
                        after,
                        upto,
                        taken_for,
                    });
                }
            }
            AgentAction::HoldCached {
                after,
                upto,
                server,
            } => {
                // Unmarked after a failure means only that, after a restart, these are sent to a
                // standby again (stored there once) before they go home: nothing is lost.
                if let Err(e) = shared.store().cache_hold(after, upto, &server) {
                    tracing::error!("marking records held by {server}: {e}");
                }
            }
            AgentAction::DropHeld { upto } => {
                let mut store = shared.store();
                match store
                    .cache_ack(upto)
                    .and_then(|_| store.state_set("agent.acked", &json!(upto)))
                {
                    Ok(_) => a.deleted_upto = a.deleted_upto.max(upto),
                    Err(e) => tracing::error!("dropping held records beyond held_limit: {e}"),
                }
            }
            AgentAction::SaveHomeCluster { cluster } => {
                if let Err(e) = shared
                    .store()
                    .state_set("agent.home_cluster", &json!(cluster))
                {
                    tracing::error!("saving the home cluster: {e}");
                }
            }
            AgentAction::DeleteCached { upto } => {
                // Acknowledged records leave the cache in steps of DELETE_STEP (or when it is
                // empty): each delete is a durable commit, and a record acknowledged but not yet
                // deleted is at worst sent again after a crash, where the server stores it once.
                if a.engine.cached() + a.engine.held() > 0 && upto < a.deleted_upto + DELETE_STEP {
                    return;
                }
                let mut store = shared.store();
                match store
                    .cache_ack(upto)
                    .and_then(|_| store.state_set("agent.acked", &json!(upto)))
                {
                    Ok(()) => a.deleted_upto = upto,
                    // Tried again at the next acknowledgement; until then the records stay
                    // cached (sent again after a restart, stored once).
                    Err(e) => tracing::error!("deleting acknowledged records: {e}"),
                }
            }
            AgentAction::Activate { pair, epoch } => {
                let argv = shared.config().agent.on_activate;
                spawn_hook(&shared, pair, "on_activate", epoch, argv);
            }
            AgentAction::Deactivate {
                pair,
                epoch,
                reason,
            } => {
                tracing::info!(%pair, "standing by: {reason}");
                let argv = shared.config().agent.on_deactivate;
                spawn_hook(&shared, pair, "on_deactivate", epoch, argv);
            }
            AgentAction::SaveEpoch { .. } => {
                let epochs = json!(a.engine.epochs());
                if let Err(e) = shared.store().state_set("agent.epochs", &epochs) {
                    tracing::error!("saving server epochs: {e}");
                }
            }
        }
    }

    fn server_action(&mut self, action: ServerAction) {
        let shared = self.shared.clone();
        let Some(s) = &mut self.server else { return };
        match action {
            ServerAction::PushViews { agent, views } => {
                if let Some((_, _, tx)) = s.conns.get(&agent) {
                    let _ = tx.send(crate::wire::ToAgent::Views {
                        views: views.iter().map(Into::into).collect(),
                    });
                }
            }
            ServerAction::PersistPair { name, state } => {
                if let Some(pair) = s.engine.pair(&name) {
                    let doc = pair_doc(pair.config(), &state);
                    if let Err(e) = shared.store().pair_put(&name, &doc) {
                        tracing::error!(%name, "saving pair: {e}");
                    }
                }
            }
            ServerAction::ForgetAgent { id } => {
                if let Err(e) = shared.store().agent_remove(&id) {
                    tracing::error!("forgetting agent {id}: {e}");
                }
            }
            ServerAction::PersistAgents(entries) => {
                let mut store = shared.store();
                for e in entries {
                    let first_seen_ms = store
                        .agent_get(&e.id)
                        .ok()
                        .flatten()
                        .map_or(now_ms(), |r| r.first_seen_ms);
                    let row = AgentRow {
                        id: e.id,
                        name: e.name,
                        fingerprint: e.fingerprint,
                        status: match e.status {
                            engine::AgentStatus::Pending => AgentStatus::Pending,
                            engine::AgentStatus::Accepted => AgentStatus::Accepted,
                            engine::AgentStatus::Rejected => AgentStatus::Rejected,
                        },
                        first_seen_ms,
                        home: e.home,
                        announced: e.announced,
                    };
                    if let Err(e) = store.agent_put(&row) {
                        tracing::error!("saving agent: {e}");
                    }
                }
            }
            ServerAction::Recall { agent } => {
                if let Some((_, _, tx)) = s.conns.get(&agent) {
                    let _ = tx.send(crate::wire::ToAgent::Recall);
                }
            }
            ServerAction::RedirectAll { to } => {
                let to = redirect_target(&shared, to);
                let epoch = s.engine.ha().epoch();
                let cluster = s.engine.config().cluster.clone();
                let fingerprint = shared
                    .config()
                    .peer()
                    .ok()
                    .flatten()
                    .and_then(|p| p.fingerprint);
                for (_, (_, _, tx)) in s.conns.drain() {
                    let _ = tx.send(crate::wire::ToAgent::Redirect {
                        to: to.clone(),
                        fingerprint: fingerprint.clone(),
                        cluster: cluster.clone(),
                        epoch,
                    });
                }
            }
            ServerAction::Ha(HaAction::PollPeer { replicate }) => {
                if s.peer_poll_busy {
                    s.peer_poll_again = Some(s.peer_poll_again.unwrap_or(false) || replicate);
                    return;
                }
                if let Some(addr) = s.peer_addr.clone() {
                    s.peer_poll_busy = true;
                    let timeout = shared
                        .config()
                        .failover
                        .sync_interval
                        .max(Duration::from_millis(200));
                    tokio::spawn(net::peer_poll(shared, addr, replicate, timeout));
                }
            }
            ServerAction::Ha(HaAction::SaveEpoch { epoch }) => {
                if let Err(e) = shared.store().state_set("server.epoch", &json!(epoch)) {
                    tracing::error!("saving the server epoch: {e}");
                }
            }
            ServerAction::Ha(HaAction::MergeToPeer) => {
                if let Some(addr) = s.peer_addr.clone() {
                    tokio::spawn(net::merge_to_peer(shared, addr));
                }
            }
            ServerAction::Ha(HaAction::HandOver { epoch, reason }) => match s.peer_addr.clone() {
                Some(addr) => {
                    tokio::spawn(net::hand_over(shared, addr, epoch, reason));
                }
                None => {
                    let _ = shared.core.send(Input::HandoverResult(Err(
                        "no peer address is configured".into(),
                    )));
                }
            },
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
    pub(crate) fn agent_engine(&self) -> Option<&Agent> {
        self.agent.as_ref().map(|a| &a.engine)
    }
    pub(crate) fn agent_checks(&self) -> Option<&Value> {
        self.agent.as_ref().map(|a| &a.checks)
    }
    pub(crate) fn server_engine(&self) -> Option<&Server> {
        self.server.as_ref().map(|s| &s.engine)
    }
    /// HS-7, issue 14 item 3: the failover mode or peer changed at run time: the engine's
    /// hot-standby configuration and cluster, and where this server polls its peer.
    pub(crate) fn reconfigure_ha(&mut self, now: Instant, config: &Config) {
        let cluster = cluster_of(config);
        if let Some(s) = self.server.as_mut() {
            s.peer_addr = cluster.as_ref().map(|(_, p)| p.clone());
            s.engine.handle_ha_config(
                now,
                ha_config(config),
                cluster.as_ref().map(|(_, p)| format!("https://{p}")),
                cluster.map(|(c, _)| c),
            );
        }
    }

    pub(crate) fn server_engine_mut(&mut self) -> Option<&mut Server> {
        self.server.as_mut().map(|s| &mut s.engine)
    }
    pub(crate) fn server_conns(
        &self,
    ) -> Vec<(String, mpsc::UnboundedSender<crate::wire::ToAgent>)> {
        self.server
            .as_ref()
            .map(|s| {
                s.conns
                    .iter()
                    .map(|(n, (_, _, tx))| (n.clone(), tx.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub(crate) fn agent_links(&self) -> Vec<mpsc::UnboundedSender<LinkCmd>> {
        self.agent
            .as_ref()
            .map(|a| a.links.values().map(|(_, tx)| tx.clone()).collect())
            .unwrap_or_default()
    }
    pub(crate) fn stop_agent(&mut self) {
        self.checks.stop_all();
        let now = Instant::now();
        if let Some(a) = &mut self.agent {
            a.engine.handle_shutdown(now);
        }
        self.drain();
        self.agent = None;
    }
    pub(crate) fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            drop(s.conns);
        }
    }
    pub(crate) fn drain_now(&mut self) {
        self.drain();
    }
}

/// PR-7: runs one of this member's hooks, with this node's name and `agent.hook_timeout`.
fn spawn_hook(
    shared: &Shared,
    pair: String,
    hook: &'static str,
    epoch: engine::PairEpoch,
    argv: Vec<String>,
) {
    let config = shared.config();
    hooks::spawn(
        shared.core.clone(),
        hooks::Hook {
            pair,
            hook,
            epoch,
            argv,
            node: config.node.name,
            timeout: config.agent.hook_timeout,
        },
    );
}

/// AL-3: where and when an agent was last heard, as AGENT_SILENT tells it.
fn seen_now() -> String {
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!("at {at} on its link to this server")
}

/// AL-2: a check's `fail_after` / `ok_after` as the site configuration has them.
fn check_thresholds(shared: &Shared, check: &str) -> engine::Thresholds {
    let doc = shared.store().check_get(check).ok().flatten();
    let n = |key: &str, default: u32| {
        doc.as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    engine::Thresholds {
        fail_after: n("fail_after", understudy_api::defaults::CHECK_FAIL_AFTER),
        ok_after: n("ok_after", understudy_api::defaults::CHECK_OK_AFTER),
    }
}
