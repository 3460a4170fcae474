//! A whole site in simulated time: servers, agents, pairs and the messages between them, driven
//! through the engine's public API exactly as the runtime drives it. Time jumps to the next
//! deadline; links can be cut and healed (one way too), delayed and made lossy; nodes can be
//! killed and restarted (a restart keeps only what was durable). Invariants are checked at
//! every step.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use understudy_engine::agent::{AgentAction, Restored};
use understudy_engine::*;

pub const MS: Duration = Duration::from_millis(1);
pub const SEC: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Server(usize),
    Agent(usize),
}

#[derive(Clone, Debug)]
enum Msg {
    // agent -> server
    Hello {
        conn: u64,
        agent: usize,
        probe: bool,
        ix: usize,
    },
    Heartbeat {
        conn: u64,
        id: u64,
        reports: Vec<(String, PairEpoch, bool)>,
    },
    Records {
        conn: u64,
        seqs: Vec<u64>,
    },
    Leave {
        conn: u64,
    },
    Close {
        conn: u64,
    },
    HookResult {
        conn: u64,
        pair: String,
        hook: String,
        epoch: u64,
        ok: bool,
    },
    // server -> agent
    Admission {
        conn: u64,
        server: usize,
        admission: Admission,
    },
    ProbeAnswer {
        server: usize,
        result: ProbeResult,
    },
    HeartbeatAck {
        conn: u64,
        server: usize,
        id: u64,
        views: Vec<PairView>,
    },
    Ack {
        conn: u64,
        server: usize,
        upto: u64,
    },
    Views {
        conn: u64,
        server: usize,
        views: Vec<PairView>,
    },
    Recall {
        conn: u64,
        server: usize,
    },
    Redirect {
        conn: u64,
        server: usize,
        to: String,
        welcome: Welcome,
    },
    Reset {
        conn: u64,
        server: usize,
    },
    ConnectRefused {
        server: usize,
    },
    // server <-> server
    PeerPoll {
        from: usize,
        id: u64,
        replicate: bool,
    },
    PeerReply {
        id: u64,
        status: PeerStatus,
        snapshot: Option<Snapshot>,
    },
    Merge {
        records: BTreeSet<(usize, u64)>,
    },
    /// HS-8: the stepping-down ACTIVE hands over its records and asks the peer to promote.
    Handover {
        from: usize,
        epoch: u64,
        reason: String,
        records: BTreeSet<(usize, u64)>,
    },
    HandoverDone {
        result: Result<u64, String>,
    },
}

impl Msg {
    /// The connection a message travels on, if any.
    fn conn(&self) -> Option<u64> {
        match self {
            Msg::Hello {
                conn, probe: false, ..
            }
            | Msg::Heartbeat { conn, .. }
            | Msg::Records { conn, .. }
            | Msg::Leave { conn }
            | Msg::HookResult { conn, .. }
            | Msg::Admission { conn, .. }
            | Msg::HeartbeatAck { conn, .. }
            | Msg::Ack { conn, .. }
            | Msg::Views { conn, .. }
            | Msg::Recall { conn, .. }
            | Msg::Redirect { conn, .. } => Some(*conn),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Snapshot {
    agents: Vec<AgentEntry>,
    pairs: Vec<(PairConfig, PairState)>,
    records: BTreeSet<(usize, u64)>,
}

#[derive(Clone, Copy, Debug)]
pub struct LinkCfg {
    pub up: bool,
    pub delay: Duration,
    pub jitter: Duration,
    /// Loss in percent.
    pub loss: u32,
}

impl Default for LinkCfg {
    fn default() -> Self {
        LinkCfg {
            up: true,
            delay: Duration::from_millis(2),
            jitter: Duration::ZERO,
            loss: 0,
        }
    }
}

/// What a server keeps on disk.
#[derive(Clone, Debug, Default)]
pub struct ServerDisk {
    pub records: BTreeSet<(usize, u64)>,
    pub duplicates: u64,
    pub epoch: u64,
    pub agents: BTreeMap<String, AgentEntry>,
    pub pairs: BTreeMap<String, (PairConfig, PairState)>,
}

pub struct SimServer {
    pub name: String,
    pub url: String,
    pub config: ServerConfig,
    pub engine: Option<Server>,
    pub disk: ServerDisk,
    pub peer: Option<usize>,
    /// conn id -> (agent index, this server's index in the agent's list), for accepted links.
    conns: HashMap<u64, (usize, usize)>,
    pending_poll: Option<(u64, Instant)>,
    pub events: Vec<(Instant, Event)>,
}

/// What an agent keeps on disk.
#[derive(Clone, Debug, Default)]
pub struct AgentDisk {
    pub cache: BTreeSet<u64>,
    pub next_seq: u64,
    pub acked_upto: u64,
    pub epochs: BTreeMap<String, u64>,
    /// Cached records held by a server outside the home cluster: seq -> server URL (AG-2).
    pub held: BTreeMap<u64, String>,
    pub home_cluster: Option<String>,
}

pub struct SimAgent {
    pub name: String,
    pub id: String,
    pub config: AgentConfig,
    pub engine: Option<Agent>,
    pub disk: AgentDisk,
    /// The link the runtime holds: (server, conn id).
    conn: Option<(usize, u64)>,
    pub token: TokenCheck,
    pub failing_hook: bool,
    pub events: Vec<(Instant, Event)>,
    /// (pair, epoch, activated at, deactivated at)
    pub duty: Vec<(String, PairEpoch, Instant, Option<Instant>)>,
}

pub struct Site {
    pub start: Instant,
    pub now: Instant,
    pub servers: Vec<SimServer>,
    pub agents: Vec<SimAgent>,
    links: HashMap<(Node, Node), LinkCfg>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    messages: HashMap<u64, (Node, Msg)>,
    next_id: u64,
    rng: u64,
    /// Invariant bookkeeping: highest server epoch seen per server, highest ACTIVE epochs.
    max_server_epoch: Vec<u64>,
    max_pair_epoch: BTreeMap<String, u64>,
    pub active_servers_by_epoch: BTreeMap<u64, BTreeSet<usize>>,
    pub steps: u64,
    /// Connections on which a message was lost: nothing more gets through them.
    stalled: BTreeSet<u64>,
    /// Latest delivery time per direction, to keep each link in order.
    fifo: HashMap<(Node, Node), Instant>,
    last_step_at: Option<Instant>,
    steps_at_now: u64,
}

/// Timings used by most tests: short enough to simulate quickly, shaped like the defaults.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub heartbeat: Duration,
    pub switchover_after: Duration,
    pub switchback_interval: Duration,
    pub sync_interval: Duration,
    pub failover_timeout: Duration,
    pub failover_after: Duration,
    pub hold_down: Duration,
    pub held_limit: u64,
    pub silent_after: Duration,
    pub group_wait: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat: SEC,
            switchover_after: 3 * SEC,
            switchback_interval: 5 * SEC,
            sync_interval: SEC,
            failover_timeout: 4 * SEC,
            failover_after: 4 * SEC,
            hold_down: 6 * SEC,
            held_limit: u64::MAX,
            silent_after: 120 * SEC,
            group_wait: 10 * SEC,
        }
    }
}

impl Site {
    pub fn new(seed: u64) -> Site {
        let start = Instant::now();
        Site {
            start,
            now: start,
            servers: Vec::new(),
            agents: Vec::new(),
            links: HashMap::new(),
            queue: BinaryHeap::new(),
            messages: HashMap::new(),
            next_id: 1,
            rng: seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                | 1,
            max_server_epoch: Vec::new(),
            max_pair_epoch: BTreeMap::new(),
            active_servers_by_epoch: BTreeMap::new(),
            steps: 0,
            stalled: BTreeSet::new(),
            fifo: HashMap::new(),
            last_step_at: None,
            steps_at_now: 0,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    // ----- building -----

    /// Adds a server. `mode` Off for a lone server; the peer is set with [`Site::pair_servers`].
    pub fn add_server(&mut self, name: &str, capacity: u32, t: Timings) -> usize {
        let ix = self.servers.len();
        let config = ServerConfig {
            name: name.into(),
            standby_capacity: capacity,
            ha: HotStandbyConfig {
                name: name.into(),
                mode: FailoverMode::Off,
                sync_interval: t.sync_interval,
                failover_timeout: t.failover_timeout,
                failback: FailbackPolicy::Manual,
                crash_confirm: 3,
            },
            peer_url: None,
            cluster: None,
            watch: WatchConfig {
                silent_after: t.silent_after,
                group_wait: t.group_wait,
            },
        };
        self.servers.push(SimServer {
            name: name.into(),
            url: format!("https://{name}"),
            config,
            engine: None,
            disk: ServerDisk::default(),
            peer: None,
            conns: HashMap::new(),
            pending_poll: None,
            events: Vec::new(),
        });
        self.max_server_epoch.push(0);
        ix
    }

    /// Makes two servers a hot-standby pair: `a` primary, `b` secondary.
    pub fn pair_servers(&mut self, a: usize, b: usize, failback: FailbackPolicy) {
        let cluster = format!("{}+{}", self.servers[a].name, self.servers[b].name);
        for (me, peer, mode) in [
            (a, b, FailoverMode::Primary),
            (b, a, FailoverMode::Secondary),
        ] {
            let peer_url = self.servers[peer].url.clone();
            let s = &mut self.servers[me];
            s.config.ha.mode = mode;
            s.config.ha.failback = failback;
            s.config.peer_url = Some(peer_url);
            s.config.cluster = Some(cluster.clone());
            s.peer = Some(peer);
        }
    }

    pub fn add_agent(&mut self, name: &str, servers: &[usize], t: Timings) -> usize {
        let ix = self.agents.len();
        let config = AgentConfig {
            name: name.into(),
            servers: servers
                .iter()
                .map(|s| self.servers[*s].url.clone())
                .collect(),
            heartbeat: t.heartbeat,
            switchover_after: t.switchover_after,
            switchback_interval: t.switchback_interval,
            held_limit: t.held_limit,
        };
        self.agents.push(SimAgent {
            name: name.into(),
            id: format!("id-{name}"),
            config,
            engine: None,
            disk: AgentDisk {
                next_seq: 1,
                ..Default::default()
            },
            conn: None,
            token: TokenCheck::Valid,
            failing_hook: false,
            events: Vec::new(),
            duty: Vec::new(),
        });
        ix
    }

    /// Defines a pair on a server's disk (site configuration), before or after start.
    pub fn define_pair(
        &mut self,
        server: usize,
        name: &str,
        primary: usize,
        secondary: usize,
        failover_after: Duration,
        switchback: SwitchbackPolicy,
    ) {
        let config = PairConfig {
            name: name.into(),
            primary: self.agents[primary].name.clone(),
            secondary: self.agents[secondary].name.clone(),
            failover_after,
            switchback,
        };
        let now = self.now;
        self.servers[server]
            .disk
            .pairs
            .insert(name.into(), (config.clone(), PairState::default()));
        if let Some(engine) = &mut self.servers[server].engine {
            engine.put_pair(now, config, None).expect("pair");
        }
        self.drain_server(server);
    }

    pub fn start_all(&mut self) {
        for s in 0..self.servers.len() {
            self.start_server(s);
        }
        for a in 0..self.agents.len() {
            self.start_agent(a);
        }
    }

    pub fn start_server(&mut self, s: usize) {
        let now = self.now;
        let srv = &mut self.servers[s];
        let engine = Server::new(
            srv.config.clone(),
            srv.disk.agents.values().cloned().collect(),
            srv.disk.pairs.values().cloned().collect(),
            srv.disk.epoch,
            now,
        );
        srv.engine = Some(engine);
        srv.conns.clear();
        srv.pending_poll = None;
        self.drain_server(s);
    }

    pub fn start_agent(&mut self, a: usize) {
        let now = self.now;
        let ag = &mut self.agents[a];
        let restored = Restored {
            acked_upto: ag.disk.acked_upto,
            cached_upto: ag
                .disk
                .cache
                .iter()
                .next_back()
                .copied()
                .unwrap_or(ag.disk.acked_upto),
            epochs: ag.disk.epochs.clone(),
            held: held_ranges(&ag.disk.held),
            home_cluster: ag.disk.home_cluster.clone(),
            home_peer: Default::default(),
        };
        ag.engine = Some(Agent::new(ag.config.clone(), restored, now));
        ag.conn = None;
        self.drain_agent(a);
    }

    /// kill -9: everything not on disk is gone; the peers see the sockets close.
    pub fn kill(&mut self, node: Node) {
        match node {
            Node::Server(s) => {
                if self.servers[s].engine.take().is_none() {
                    return;
                }
                let conns: Vec<(u64, (usize, usize))> = self.servers[s].conns.drain().collect();
                for (conn, (a, ix)) in conns {
                    self.send(node, Node::Agent(a), Msg::Reset { conn, server: ix });
                }
                self.servers[s].pending_poll = None;
            }
            Node::Agent(a) => {
                if self.agents[a].engine.take().is_none() {
                    return;
                }
                let now = self.now;
                for d in self.agents[a].duty.iter_mut() {
                    if d.3.is_none() {
                        d.3 = Some(now);
                    }
                }
                if let Some((s, conn)) = self.agents[a].conn.take() {
                    self.send(node, Node::Server(s), Msg::Close { conn });
                }
            }
        }
    }

    pub fn is_alive(&self, node: Node) -> bool {
        match node {
            Node::Server(s) => self.servers[s].engine.is_some(),
            Node::Agent(a) => self.agents[a].engine.is_some(),
        }
    }

    pub fn link(&mut self, from: Node, to: Node) -> &mut LinkCfg {
        self.links.entry((from, to)).or_default()
    }

    /// Cuts (or heals) both directions between two nodes.
    pub fn cut(&mut self, a: Node, b: Node, up: bool) {
        self.link(a, b).up = up;
        self.link(b, a).up = up;
    }

    pub fn heal_all(&mut self) {
        for l in self.links.values_mut() {
            *l = LinkCfg::default();
        }
    }

    /// Writes `n` records to an agent's cache (durably) and tells its engine.
    pub fn produce(&mut self, a: usize, n: u64) {
        let now = self.now;
        let ag = &mut self.agents[a];
        if ag.engine.is_none() {
            return;
        }
        for _ in 0..n {
            ag.disk.cache.insert(ag.disk.next_seq);
            ag.disk.next_seq += 1;
        }
        let upto = ag.disk.next_seq - 1;
        ag.engine.as_mut().unwrap().handle_cached(now, upto);
        self.drain_agent(a);
    }

    // ----- running -----

    fn send(&mut self, from: Node, to: Node, msg: Msg) {
        let cfg = self.links.get(&(from, to)).copied().unwrap_or_default();
        let conn = msg.conn();
        if conn.is_some_and(|c| self.stalled.contains(&c)) {
            return;
        }
        let lost = !cfg.up || (cfg.loss > 0 && (self.rand() % 100) < cfg.loss as u64);
        if lost {
            // TCP never loses one message of a stream: a lost segment stalls the connection
            // for good (as far as these timers go), so everything after it is lost too.
            if let Some(c) = conn {
                self.stalled.insert(c);
            }
            return;
        }
        let jitter = if cfg.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rand() % cfg.jitter.as_micros() as u64)
        };
        // Links are FIFO, like the TCP streams they stand for: jitter never reorders.
        let at = (self.now + cfg.delay + jitter)
            .max(self.fifo.get(&(from, to)).copied().unwrap_or(self.now));
        self.fifo.insert((from, to), at);
        let id = self.next_id;
        self.next_id += 1;
        self.messages.insert(id, (to, msg));
        self.queue.push(Reverse((at, id)));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = self.queue.peek().map(|Reverse((t, _))| *t);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for s in &self.servers {
            if let Some(e) = &s.engine {
                consider(e.poll_timeout());
                consider(s.pending_poll.map(|(_, t)| t));
            }
        }
        for a in &self.agents {
            if let Some(e) = &a.engine {
                consider(e.poll_timeout());
            }
        }
        next
    }

    /// Runs until `until` (absolute), stepping through every message and deadline.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next = match self.next_deadline() {
                Some(t) if t <= until => t,
                _ => {
                    self.now = until;
                    return;
                }
            };
            self.now = self.now.max(next);
            self.step();
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `pred` holds (checked after each step) or `limit` passes; returns the time taken.
    pub fn run_until_pred(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Site) -> bool,
    ) -> Option<Duration> {
        let from = self.now;
        let until = self.now + limit;
        loop {
            if pred(self) {
                return Some(self.now - from);
            }
            let next = match self.next_deadline() {
                Some(t) if t <= until => t,
                _ => {
                    self.now = until;
                    return if pred(self) {
                        Some(self.now - from)
                    } else {
                        None
                    };
                }
            };
            self.now = self.now.max(next);
            self.step();
        }
    }

    fn step(&mut self) {
        self.steps += 1;
        let now = self.now;
        // A deadline that never clears would spin here forever: fail loudly instead.
        if self.last_step_at == Some(now) {
            self.steps_at_now += 1;
            assert!(
                self.steps_at_now < 10_000,
                "busy loop at {:?}: a deadline is not cleared",
                now - self.start
            );
        } else {
            self.last_step_at = Some(now);
            self.steps_at_now = 0;
        }
        // Messages due now.
        while let Some(Reverse((t, id))) = self.queue.peek().copied() {
            if t > now {
                break;
            }
            self.queue.pop();
            if let Some((to, msg)) = self.messages.remove(&id) {
                if msg.conn().is_some_and(|c| self.stalled.contains(&c)) {
                    continue;
                }
                self.deliver(to, msg);
            }
        }
        // Timers due now.
        for s in 0..self.servers.len() {
            if let Some((id, t)) = self.servers[s].pending_poll {
                if t <= now {
                    self.servers[s].pending_poll = None;
                    let _ = id;
                    if let Some(e) = &mut self.servers[s].engine {
                        e.handle_peer_unreachable(now);
                    }
                }
            }
            if let Some(e) = &mut self.servers[s].engine {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now);
                }
            }
            self.drain_server(s);
        }
        for a in 0..self.agents.len() {
            if let Some(e) = &mut self.agents[a].engine {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now);
                }
            }
            self.drain_agent(a);
        }
        self.check_invariants();
    }

    fn hello(&self, a: usize, s: usize) -> Hello {
        let ag = &self.agents[a];
        Hello {
            id: ag.id.clone(),
            name: ag.name.clone(),
            fingerprint: format!("fp-{}", ag.name),
            token: ag.token,
            home: ag.config.servers.first() == Some(&self.servers[s].url),
        }
    }

    fn deliver(&mut self, to: Node, msg: Msg) {
        let now = self.now;
        match to {
            Node::Server(s) => {
                if self.servers[s].engine.is_none() {
                    // A dead process: a new connection is refused by the host.
                    if let Msg::Hello { agent, ix, .. } = msg {
                        self.send(to, Node::Agent(agent), Msg::ConnectRefused { server: ix });
                    }
                    return;
                }
                self.deliver_to_server(s, msg);
                self.drain_server(s);
            }
            Node::Agent(a) => {
                if self.agents[a].engine.is_none() {
                    return;
                }
                let cur = self.agents[a].conn;
                let engine = self.agents[a].engine.as_mut().unwrap();
                match msg {
                    Msg::Admission {
                        conn,
                        server,
                        admission,
                    } => {
                        if cur != Some((server, conn)) {
                            return;
                        }
                        match admission {
                            Admission::Accepted(w) => engine.handle_connected(now, server, w),
                            Admission::Refused(r) => {
                                self.agents[a].conn = None;
                                let engine = self.agents[a].engine.as_mut().unwrap();
                                engine.handle_refused(now, server, r.reason(), r.is_capacity())
                            }
                            Admission::Redirect { to, welcome } => {
                                self.agents[a].conn = None;
                                let engine = self.agents[a].engine.as_mut().unwrap();
                                engine.handle_redirect(now, server, &to, welcome)
                            }
                        }
                    }
                    Msg::ProbeAnswer { server, result } => {
                        engine.handle_probe_result(now, server, result)
                    }
                    Msg::HeartbeatAck {
                        conn,
                        server,
                        id,
                        views,
                    } if cur == Some((server, conn)) => {
                        engine.handle_heartbeat_ack(now, server, id, &views)
                    }
                    Msg::Ack { conn, server, upto } if cur == Some((server, conn)) => {
                        engine.handle_ack(now, server, upto)
                    }
                    Msg::Views {
                        conn,
                        server,
                        views,
                    } if cur == Some((server, conn)) => {
                        engine.handle_pair_views(now, server, &views)
                    }
                    Msg::Recall { conn, server } if cur == Some((server, conn)) => {
                        engine.handle_recall(now, server)
                    }
                    Msg::Redirect {
                        conn,
                        server,
                        to,
                        welcome,
                    } if cur == Some((server, conn)) => {
                        self.agents[a].conn = None;
                        let engine = self.agents[a].engine.as_mut().unwrap();
                        engine.handle_redirect(now, server, &to, welcome)
                    }
                    Msg::Reset { conn, server } if cur == Some((server, conn)) => {
                        self.agents[a].conn = None;
                        let engine = self.agents[a].engine.as_mut().unwrap();
                        engine.handle_disconnected(now, server, "connection reset".into())
                    }
                    Msg::ConnectRefused { server } => {
                        if cur.map(|c| c.0) == Some(server) {
                            self.agents[a].conn = None;
                        }
                        let engine = self.agents[a].engine.as_mut().unwrap();
                        engine.handle_connect_failed(now, server, "connection refused".into());
                        engine.handle_probe_result(
                            now,
                            server,
                            ProbeResult::Unreachable("connection refused".into()),
                        );
                    }
                    _ => {}
                }
                self.drain_agent(a);
            }
        }
    }

    fn deliver_to_server(&mut self, s: usize, msg: Msg) {
        let now = self.now;
        let me = Node::Server(s);
        match msg {
            Msg::Hello {
                conn,
                agent,
                probe,
                ix,
            } => {
                let hello = self.hello(agent, s);
                let engine = self.servers[s].engine.as_mut().unwrap();
                if probe {
                    let result = engine.handle_probe(now, &hello);
                    self.send(
                        me,
                        Node::Agent(agent),
                        Msg::ProbeAnswer { server: ix, result },
                    );
                    return;
                }
                let admission = engine.handle_hello(now, &hello);
                if matches!(admission, Admission::Accepted(_)) {
                    self.servers[s].conns.insert(conn, (agent, ix));
                }
                self.send(
                    me,
                    Node::Agent(agent),
                    Msg::Admission {
                        conn,
                        server: ix,
                        admission,
                    },
                );
            }
            Msg::Heartbeat { conn, id, reports } => {
                let Some(&(a, ix)) = self.servers[s].conns.get(&conn) else {
                    return;
                };
                let name = self.agents[a].name.clone();
                let views = self.servers[s]
                    .engine
                    .as_mut()
                    .unwrap()
                    .handle_heartbeat(now, &name, &reports);
                self.send(
                    me,
                    Node::Agent(a),
                    Msg::HeartbeatAck {
                        conn,
                        server: ix,
                        id,
                        views,
                    },
                );
            }
            Msg::Records { conn, seqs } => {
                let Some(&(a, ix)) = self.servers[s].conns.get(&conn) else {
                    return;
                };
                let disk = &mut self.servers[s].disk;
                for seq in &seqs {
                    if !disk.records.insert((a, *seq)) {
                        disk.duplicates += 1;
                    }
                }
                if let Some(upto) = seqs.last() {
                    self.send(
                        me,
                        Node::Agent(a),
                        Msg::Ack {
                            conn,
                            server: ix,
                            upto: *upto,
                        },
                    );
                }
            }
            Msg::Leave { conn } | Msg::Close { conn } => {
                if let Some((a, _)) = self.servers[s].conns.remove(&conn) {
                    let (id, name) = (self.agents[a].id.clone(), self.agents[a].name.clone());
                    self.servers[s]
                        .engine
                        .as_mut()
                        .unwrap()
                        .handle_agent_gone(now, &id, &name);
                }
            }
            Msg::HookResult {
                conn,
                pair,
                hook,
                epoch,
                ok,
            } => {
                let Some(&(a, _)) = self.servers[s].conns.get(&conn) else {
                    return;
                };
                let name = self.agents[a].name.clone();
                let result = if ok {
                    Ok(())
                } else {
                    Err("exit status 1".to_string())
                };
                // A result for a pair redefined since is refused with a reason (as the node
                // logs it); nothing else to do here.
                let _ = self.servers[s]
                    .engine
                    .as_mut()
                    .unwrap()
                    .handle_hook_result(now, &name, &pair, &hook, epoch, result);
            }
            Msg::PeerPoll {
                from,
                id,
                replicate,
            } => {
                let engine = self.servers[s].engine.as_ref().unwrap();
                let status = PeerStatus {
                    name: self.servers[s].name.clone(),
                    mode: engine.ha().mode(),
                    state: engine.ha().state().as_str().into(),
                    epoch: engine.ha().epoch(),
                    site_version: 0,
                };
                let snapshot = (replicate && engine.is_acting()).then(|| Snapshot {
                    agents: self.servers[s].disk.agents.values().cloned().collect(),
                    pairs: self.servers[s].disk.pairs.values().cloned().collect(),
                    records: self.servers[s].disk.records.clone(),
                });
                self.send(
                    me,
                    Node::Server(from),
                    Msg::PeerReply {
                        id,
                        status,
                        snapshot,
                    },
                );
            }
            Msg::PeerReply {
                id,
                status,
                snapshot,
            } => {
                if self.servers[s].pending_poll.map(|p| p.0) != Some(id) {
                    return;
                }
                self.servers[s].pending_poll = None;
                let srv = &mut self.servers[s];
                let engine = srv.engine.as_mut().unwrap();
                if let Some(snap) = snapshot {
                    if !engine.is_acting() {
                        srv.disk.records.extend(snap.records);
                        srv.disk.agents = snap
                            .agents
                            .iter()
                            .map(|a| (a.id.clone(), a.clone()))
                            .collect();
                        engine.replace_agents(snap.agents);
                        for (config, state) in snap.pairs {
                            let keep = srv
                                .disk
                                .pairs
                                .get(&config.name)
                                .map(|p| p.1.epoch)
                                .unwrap_or(0);
                            if state.epoch >= keep {
                                srv.disk
                                    .pairs
                                    .insert(config.name.clone(), (config.clone(), state.clone()));
                                let _ = engine.put_pair(now, config, Some(state));
                            }
                        }
                    }
                }
                engine.handle_peer_status(now, status);
            }
            Msg::Merge { records } => {
                self.servers[s].disk.records.extend(records);
            }
            Msg::Handover {
                from,
                epoch,
                reason,
                records,
            } => {
                self.servers[s].disk.records.extend(records);
                let status = PeerStatus {
                    name: self.servers[from].name.clone(),
                    mode: self.servers[from].config.ha.mode,
                    state: "standby".into(),
                    epoch,
                    site_version: 0,
                };
                let result = self.servers[s]
                    .engine
                    .as_mut()
                    .unwrap()
                    .handle_handover_request(now, status, &reason);
                self.send(me, Node::Server(from), Msg::HandoverDone { result });
            }
            Msg::HandoverDone { result } => {
                self.servers[s]
                    .engine
                    .as_mut()
                    .unwrap()
                    .handle_handover_result(now, result);
            }
            _ => {}
        }
    }

    fn drain_server(&mut self, s: usize) {
        let me = Node::Server(s);
        loop {
            let now = self.now;
            let Some(engine) = self.servers[s].engine.as_mut() else {
                return;
            };
            if let Some(e) = engine.poll_event() {
                self.servers[s].events.push((now, e));
                continue;
            }
            let Some(action) = engine.poll_action() else {
                return;
            };
            match action {
                ServerAction::PushViews { agent, views } => {
                    if let Some((&conn, &(a, ix))) = self.servers[s]
                        .conns
                        .iter()
                        .find(|(_, a)| self.agents[a.0].name == agent)
                    {
                        self.send(
                            me,
                            Node::Agent(a),
                            Msg::Views {
                                conn,
                                server: ix,
                                views,
                            },
                        );
                    }
                }
                ServerAction::PersistPair { name, state } => {
                    if let Some(p) = self.servers[s].disk.pairs.get_mut(&name) {
                        p.1 = state;
                    }
                }
                ServerAction::PersistAgents(entries) => {
                    for e in entries {
                        self.servers[s].disk.agents.insert(e.id.clone(), e);
                    }
                }
                ServerAction::ForgetAgent { id } => {
                    self.servers[s].disk.agents.remove(&id);
                }
                ServerAction::Recall { agent } => {
                    if let Some((&conn, &(a, ix))) = self.servers[s]
                        .conns
                        .iter()
                        .find(|(_, a)| self.agents[a.0].name == agent)
                    {
                        self.send(me, Node::Agent(a), Msg::Recall { conn, server: ix });
                    }
                }
                ServerAction::RedirectAll { to } => {
                    let welcome = {
                        let e = self.servers[s].engine.as_ref().unwrap();
                        Welcome {
                            cluster: self.servers[s].config.cluster.clone(),
                            epoch: e.ha().epoch(),
                        }
                    };
                    let conns: Vec<(u64, (usize, usize))> = self.servers[s].conns.drain().collect();
                    for (conn, (a, ix)) in conns {
                        self.send(
                            me,
                            Node::Agent(a),
                            Msg::Redirect {
                                conn,
                                server: ix,
                                to: to.clone(),
                                welcome: welcome.clone(),
                            },
                        );
                    }
                }
                ServerAction::Ha(HaAction::PollPeer { replicate }) => {
                    if let Some(peer) = self.servers[s].peer {
                        let id = self.next_id;
                        self.next_id += 1;
                        let timeout = self.servers[s].config.ha.sync_interval;
                        self.servers[s].pending_poll = Some((id, now + timeout));
                        self.send(
                            me,
                            Node::Server(peer),
                            Msg::PeerPoll {
                                from: s,
                                id,
                                replicate,
                            },
                        );
                    }
                }
                ServerAction::Ha(HaAction::SaveEpoch { epoch }) => {
                    self.servers[s].disk.epoch = epoch;
                }
                ServerAction::Ha(HaAction::MergeToPeer) => {
                    if let Some(peer) = self.servers[s].peer {
                        let records = self.servers[s].disk.records.clone();
                        self.send(me, Node::Server(peer), Msg::Merge { records });
                    }
                }
                ServerAction::Ha(HaAction::HandOver { epoch, reason }) => {
                    if let Some(peer) = self.servers[s].peer {
                        let records = self.servers[s].disk.records.clone();
                        let msg = Msg::Handover {
                            from: s,
                            epoch,
                            reason,
                            records,
                        };
                        self.send(me, Node::Server(peer), msg);
                    }
                }
            }
        }
    }

    fn drain_agent(&mut self, a: usize) {
        let me = Node::Agent(a);
        loop {
            let now = self.now;
            let Some(engine) = self.agents[a].engine.as_mut() else {
                return;
            };
            if let Some(e) = engine.poll_event() {
                self.agents[a].events.push((now, e));
                continue;
            }
            let Some(action) = engine.poll_action() else {
                return;
            };
            let urls: Vec<String> = (0..)
                .map_while(|i| engine.server_url(i).map(String::from))
                .collect();
            let reports = engine.member_reports();
            let servers = &self.servers;
            let server_ix = |server: usize| -> Option<usize> {
                let url = urls.get(server)?;
                servers.iter().position(|s| &s.url == url)
            };
            match action {
                AgentAction::Connect { server } => {
                    let Some(s) = server_ix(server) else { continue };
                    let conn = self.next_id;
                    self.next_id += 1;
                    let old = self.agents[a].conn.replace((server, conn));
                    if let Some((old_s, old)) = old {
                        if let Some(os) = server_ix(old_s) {
                            self.send(me, Node::Server(os), Msg::Close { conn: old });
                        }
                    }
                    self.send(
                        me,
                        Node::Server(s),
                        Msg::Hello {
                            conn,
                            agent: a,
                            probe: false,
                            ix: server,
                        },
                    );
                }
                AgentAction::Probe { server } => {
                    let Some(s) = server_ix(server) else { continue };
                    self.send(
                        me,
                        Node::Server(s),
                        Msg::Hello {
                            conn: 0,
                            agent: a,
                            probe: true,
                            ix: server,
                        },
                    );
                }
                AgentAction::Disconnect { server } | AgentAction::Leave { server } => {
                    let leave = matches!(action, AgentAction::Leave { .. });
                    if let Some((cs, conn)) = self.agents[a].conn {
                        if cs == server {
                            self.agents[a].conn = None;
                            if let Some(s) = server_ix(server) {
                                let msg = if leave {
                                    Msg::Leave { conn }
                                } else {
                                    Msg::Close { conn }
                                };
                                self.send(me, Node::Server(s), msg);
                            }
                        }
                    }
                }
                AgentAction::SendHeartbeat { server, id } => {
                    if let (Some((cs, conn)), Some(s)) = (self.agents[a].conn, server_ix(server)) {
                        if cs == server {
                            self.send(me, Node::Server(s), Msg::Heartbeat { conn, id, reports });
                        }
                    }
                }
                AgentAction::Send {
                    server,
                    after,
                    upto,
                    ..
                } => {
                    if let (Some((cs, conn)), Some(s)) = (self.agents[a].conn, server_ix(server)) {
                        if cs == server {
                            let seqs: Vec<u64> = self.agents[a]
                                .disk
                                .cache
                                .range(after + 1..=upto)
                                .copied()
                                .collect();
                            self.send(me, Node::Server(s), Msg::Records { conn, seqs });
                        }
                    }
                }
                AgentAction::DeleteCached { upto } => {
                    // Invariant (AG-2): a record leaves the cache only once its home cluster
                    // (home or home's hot-standby peer) holds it durably.
                    let home = self.home_cluster_of(a);
                    let disk = &mut self.agents[a].disk;
                    let gone: Vec<u64> = disk.cache.range(..=upto).copied().collect();
                    for seq in gone {
                        assert!(
                            home.iter()
                                .any(|s| self.servers[*s].disk.records.contains(&(a, seq))),
                            "agent {} deleted record {seq} that its home cluster does not hold",
                            self.agents[a].name
                        );
                        self.agents[a].disk.cache.remove(&seq);
                        self.agents[a].disk.held.remove(&seq);
                    }
                    let disk = &mut self.agents[a].disk;
                    disk.acked_upto = disk.acked_upto.max(upto);
                }
                AgentAction::HoldCached {
                    after,
                    upto,
                    server,
                } => {
                    // Invariant: a record is marked held only when that server holds it.
                    let s = self
                        .servers
                        .iter()
                        .position(|x| x.url == server)
                        .expect("a known server");
                    let marked: Vec<u64> = self.agents[a]
                        .disk
                        .cache
                        .range(after + 1..=upto)
                        .copied()
                        .collect();
                    for seq in marked {
                        assert!(
                            self.servers[s].disk.records.contains(&(a, seq)),
                            "agent {} marked record {seq} held by {server}, which does not hold it",
                            self.agents[a].name
                        );
                        self.agents[a].disk.held.insert(seq, server.clone());
                    }
                }
                AgentAction::DropHeld { upto } => {
                    let disk = &mut self.agents[a].disk;
                    let gone: Vec<u64> = disk.cache.range(..=upto).copied().collect();
                    for seq in gone {
                        assert!(
                            self.agents[a].disk.held.contains_key(&seq),
                            "agent {} dropped record {seq}, which nobody holds",
                            self.agents[a].name
                        );
                        self.agents[a].disk.cache.remove(&seq);
                        self.agents[a].disk.held.remove(&seq);
                    }
                    let disk = &mut self.agents[a].disk;
                    disk.acked_upto = disk.acked_upto.max(upto);
                }
                AgentAction::SaveHomeCluster { cluster } => {
                    self.agents[a].disk.home_cluster = Some(cluster);
                }
                AgentAction::Activate { pair, epoch } => {
                    self.agents[a].duty.push((pair.clone(), epoch, now, None));
                    self.hook(a, &pair, "on_activate", epoch);
                }
                AgentAction::Deactivate { pair, epoch, .. } => {
                    for d in self.agents[a].duty.iter_mut() {
                        if d.0 == pair && d.1 == epoch && d.3.is_none() {
                            d.3 = Some(now);
                        }
                    }
                    self.hook(a, &pair, "on_deactivate", epoch);
                }
                AgentAction::SaveEpoch { cluster, epoch } => {
                    self.agents[a].disk.epochs.insert(cluster, epoch);
                }
            }
        }
    }

    fn hook(&mut self, a: usize, pair: &str, hook: &str, epoch: PairEpoch) {
        let ok = !self.agents[a].failing_hook;
        if let Some((server, conn)) = self.agents[a].conn {
            let url = self.agents[a].config.servers.get(server).cloned();
            if let Some(s) = url.and_then(|u| self.servers.iter().position(|x| x.url == u)) {
                self.send(
                    Node::Agent(a),
                    Node::Server(s),
                    Msg::HookResult {
                        conn,
                        pair: pair.into(),
                        hook: hook.into(),
                        epoch: epoch.pair,
                        ok,
                    },
                );
            }
        }
    }

    // ----- invariants -----

    fn check_invariants(&mut self) {
        // Epochs never decrease; at most one ACTIVE server per epoch.
        for s in 0..self.servers.len() {
            let Some(e) = &self.servers[s].engine else {
                continue;
            };
            let epoch = e.ha().epoch();
            assert!(
                epoch >= self.servers[s].disk.epoch.min(self.max_server_epoch[s]),
                "server epoch went back"
            );
            assert!(
                epoch >= self.max_server_epoch[s],
                "server {} epoch went back from {} to {epoch}",
                self.servers[s].name,
                self.max_server_epoch[s]
            );
            self.max_server_epoch[s] = epoch;
            if e.is_acting() && e.ha().mode() != FailoverMode::Off {
                let set = self.active_servers_by_epoch.entry(epoch).or_default();
                set.insert(s);
                assert!(
                    set.len() <= 1,
                    "two ACTIVE servers under epoch {epoch}: {set:?}"
                );
            }
        }
        // Never two active members of a pair under the same pair epoch; pair epochs never decrease.
        let mut holders: BTreeMap<(String, PairEpoch), Vec<String>> = BTreeMap::new();
        for ag in &self.agents {
            let Some(e) = &ag.engine else { continue };
            for (pair, m) in e.members() {
                if let MemberState::Active { epoch, .. } = m {
                    holders
                        .entry((pair.clone(), *epoch))
                        .or_default()
                        .push(ag.name.clone());
                }
            }
        }
        for ((pair, epoch), names) in &holders {
            assert!(
                names.len() <= 1,
                "pair {pair} has two active members under epoch {epoch}: {names:?}"
            );
        }
        for s in &self.servers {
            let Some(e) = &s.engine else { continue };
            for p in e.pairs() {
                let max = self
                    .max_pair_epoch
                    .entry(format!("{}/{}", s.name, p.name()))
                    .or_default();
                assert!(
                    p.epoch() >= *max,
                    "pair {} epoch went back on {}",
                    p.name(),
                    s.name
                );
                *max = p.epoch();
            }
        }
    }

    /// Two members holding a pair's duty at the same moment (under different epochs), as
    /// (pair, overlap). Planned handovers must give none (break-before-make).
    pub fn duty_overlaps(&self, pair: &str) -> Vec<Duration> {
        let mut spans: Vec<(Instant, Instant, &str)> = Vec::new();
        for ag in &self.agents {
            for d in &ag.duty {
                if d.0 == pair {
                    spans.push((d.2, d.3.unwrap_or(self.now), &ag.name));
                }
            }
        }
        let mut out = Vec::new();
        for i in 0..spans.len() {
            for j in i + 1..spans.len() {
                let (a, b) = (spans[i], spans[j]);
                if a.2 != b.2 {
                    let start = a.0.max(b.0);
                    let end = a.1.min(b.1);
                    if end > start {
                        out.push(end - start);
                    }
                }
            }
        }
        out
    }

    // ----- views for assertions -----

    pub fn agent(&self, a: usize) -> &Agent {
        self.agents[a].engine.as_ref().expect("agent alive")
    }

    pub fn server(&self, s: usize) -> &Server {
        self.servers[s].engine.as_ref().expect("server alive")
    }

    pub fn server_mut(&mut self, s: usize) -> &mut Server {
        self.servers[s].engine.as_mut().expect("server alive")
    }

    /// Runs an operator action on a server and processes what it decided.
    pub fn operate<R>(&mut self, s: usize, f: impl FnOnce(&mut Server, Instant) -> R) -> R {
        let now = self.now;
        let r = f(self.servers[s].engine.as_mut().expect("server alive"), now);
        self.drain_server(s);
        r
    }

    /// Which server (index into `servers`) an agent is connected to.
    pub fn agent_server(&self, a: usize) -> Option<usize> {
        let e = self.agents[a].engine.as_ref()?;
        let url = e.server_url(e.server()?)?;
        self.servers.iter().position(|s| s.url == url)
    }

    pub fn agent_events(&self, a: usize, code: EventCode) -> Vec<&Event> {
        self.agents[a]
            .events
            .iter()
            .filter(|(_, e)| e.code == code)
            .map(|(_, e)| e)
            .collect()
    }

    pub fn server_events(&self, s: usize, code: EventCode) -> Vec<&Event> {
        self.servers[s]
            .events
            .iter()
            .filter(|(_, e)| e.code == code)
            .map(|(_, e)| e)
            .collect()
    }

    /// The active member's agent name of a pair on a server.
    pub fn pair_holder(&self, s: usize, pair: &str) -> Option<String> {
        let p = self.server(s).pair(pair)?;
        p.active().map(|m| p.agent(m).to_string())
    }

    /// The servers of an agent's home cluster: its home and home's hot-standby peer.
    pub fn home_cluster_of(&self, a: usize) -> Vec<usize> {
        let url = &self.agents[a].config.servers[0];
        let Some(home) = self.servers.iter().position(|s| &s.url == url) else {
            return Vec::new();
        };
        std::iter::once(home)
            .chain(self.servers[home].peer)
            .collect()
    }

    /// AG-2 across independent servers: the agent's home cluster holds every record it produced
    /// exactly once, and no store holds one twice. Records dropped beyond `held_limit` are
    /// excused only when the standby that held them still holds them.
    pub fn home_complete(&self, a: usize) -> Result<(), String> {
        let produced = self.agents[a].disk.next_seq - 1;
        let home = self.home_cluster_of(a);
        let missing: Vec<u64> = (1..=produced)
            .filter(|seq| {
                !home
                    .iter()
                    .any(|s| self.servers[*s].disk.records.contains(&(a, *seq)))
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "home of {} misses {} of {produced} records (first {:?})",
                self.agents[a].name,
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        for s in &self.servers {
            // A store is a set keyed by (agent, seq), like UNIQUE(agent_id, seq): count per key.
            let mut count: BTreeMap<u64, u32> = BTreeMap::new();
            for (_, seq) in s.disk.records.iter().filter(|(x, _)| *x == a) {
                *count.entry(*seq).or_default() += 1;
            }
            if let Some((seq, n)) = count.iter().find(|(_, n)| **n > 1) {
                return Err(format!(
                    "{} holds seq {seq} of {} {n} times",
                    s.name, self.agents[a].name
                ));
            }
            if let Some(seq) = count.keys().find(|seq| **seq > produced || **seq == 0) {
                return Err(format!(
                    "{} holds seq {seq} that {} never produced",
                    s.name, self.agents[a].name
                ));
            }
        }
        Ok(())
    }

    /// Records produced by an agent that no server holds (lost so far) and extra copies.
    pub fn count_records(&self, a: usize) -> (u64, u64) {
        let produced = self.agents[a].disk.next_seq - 1;
        let mut missing = 0;
        for seq in 1..=produced {
            let held = self
                .servers
                .iter()
                .any(|s| s.disk.records.contains(&(a, seq)));
            if !held && !self.agents[a].disk.cache.contains(&seq) {
                missing += 1;
            }
        }
        let dups = self.servers.iter().map(|s| s.disk.duplicates).sum();
        (missing, dups)
    }
}

/// Held records as the ranges [`Restored::held`] wants: `(upto, server)`, ascending.
fn held_ranges(held: &BTreeMap<u64, String>) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for (seq, server) in held {
        match out.last_mut() {
            Some((upto, s)) if s == server => *upto = *seq,
            _ => out.push((*seq, server.clone())),
        }
    }
    out
}
