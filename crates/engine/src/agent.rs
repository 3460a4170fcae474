//! The agent's side of its server link (AG-1…AG-8) and of the pairs it belongs to (PR-2, PR-3).
//! It decides where to connect, what to send, what may leave the cache, and whether this agent
//! holds a pair's duty; the runtime only opens connections and moves bytes.
//!
//! ```text
//!  Connecting{home} ──accepted──▶ Connected{server} ◀──────────────────────────┐
//!       │ failed                    │ dropped / no answer for 3 heartbeats       │ accepted:
//!       ▼                           ▼                                             │  same server: nothing
//!  Failing{since, from} ── retry `from` every heartbeat until switchover_after ──┤  another:  SWITCHOVER
//!       │ switchover_after passed: rounds over the whole list, home first       │  after blackout: BLACKOUT_END
//!       ├─ a server refused (capacity) ─▶ Staged   (STAGED once per episode) ───┤
//!       └─ nobody answered ─────────────▶ Blackout (BLACKOUT once per episode) ──┘
//!  Connected{standby} ──home probe answers / recall──▶ Leaving{standby} ──drained──▶ Connecting{home}
//!                                                     (SWITCHBACK when home accepts)
//! ```
//!
//! | from | to | when | rule |
//! |---|---|---|---|
//! | Connected | Failing | connection dropped, or no answer for [`LIVENESS_BEATS`] heartbeats | AG-3 |
//! | Failing | Connected(other) | `switchover_after` passed and another server accepted | AG-3 |
//! | Failing | Staged | a round ended with a refusal and no acceptance | AG-4 |
//! | Failing | Blackout | a round ended with no server answering | AG-5 |
//! | Connected(standby) | Leaving | home answered a probe, or the agent was recalled | AG-6 |
//! | any | same | redirect to the ACTIVE server: no failure, no switchover | AG-7 |
//! | any | ShutDown | shutting down: no more switching | AG-8 |
//! | Failing(from a hot-standby pair) | Connected(its peer) | at once: the pair is one server; the two are tried in turn (100 ms apart, doubling to a heartbeat), no SWITCHOVER | AG-10 |
//!
//! **Which records may leave the cache (AG-2).** The cache is one sequence range in three parts:
//!
//! ```text
//!   deleted ≤ acked_upto < held ≤ held_upto < pending ≤ cached_upto
//! ```
//!
//! A server of the home cluster (home, or a server whose welcome names home's hot-standby
//! cluster) acknowledging a record deletes it. A server outside it (a standby of another site)
//! acknowledging a record makes it *held by* that server: it stays cached, is not sent to any other
//! standby and does not count against the send window, and is delivered home, in sequence order
//! with what follows, once the agent is home again (home stores each `(agent, seq)` once, so a
//! record home already had costs nothing). Held records beyond `held_limit` are dropped from the
//! cache, oldest first, with HELD_DROPPED: they are safe on the standby, only missing at home.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{Event, EventCode};
use crate::fmt_duration;
use crate::pair::PairEpoch;
use crate::timers::Timers;

/// AG-6: probes of the home server are never more frequent than this (Tivoli enforces a minimum
/// on CTIRA_PRIMARY_FALLBACK_INTERVAL for the same reason: a flapping home must not pull agents).
pub const MIN_SWITCHBACK_INTERVAL: Duration = Duration::from_secs(1);
/// Heartbeats without any answer before a connected link counts as failed (a half-open link
/// looks alive to TCP; only missing answers reveal it).
pub const LIVENESS_BEATS: u32 = 3;
/// At most this many records are sent and not yet acknowledged.
pub const SEND_WINDOW: u64 = 8192;
/// Redirects followed in a row before the attempt counts as failed (a loop guard).
const MAX_REDIRECTS: u32 = 3;
/// AG-10: the pause between attempts on the two servers of a hot-standby pair. It stays at this
/// for [`PAIR_FAST_TURNS`] attempts — the half second in which a STANDBY confirms a crashed
/// ACTIVE (HS-8: `crash_confirm` 3 refusals 100 ms apart) and promotes — then doubles up to a
/// heartbeat, so a pair that stays down is not hammered.
pub const PAIR_RETRY: Duration = Duration::from_millis(100);
pub const PAIR_FAST_TURNS: u32 = 6;

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This agent's name, the subject of its events.
    pub name: String,
    /// Its servers, home first (as URLs; the engine only compares and names them).
    pub servers: Vec<String>,
    pub heartbeat: Duration,
    /// ELM's "cache duration": how long to keep retrying the failed server before trying others.
    pub switchover_after: Duration,
    /// How often to probe home while on a standby; zero means never (wait for a recall).
    pub switchback_interval: Duration,
    /// AG-2: the most records kept for home that a server outside the home cluster holds.
    pub held_limit: u64,
}

impl AgentConfig {
    /// The switchback interval actually used, and why when it differs from the configured one.
    pub fn effective_switchback_interval(&self) -> (Option<Duration>, Option<String>) {
        if self.switchback_interval.is_zero() {
            return (None, None);
        }
        if self.switchback_interval < MIN_SWITCHBACK_INTERVAL {
            return (
                Some(MIN_SWITCHBACK_INTERVAL),
                Some(format!(
                    "switchback_interval {} raised to the minimum of {}",
                    fmt_duration(self.switchback_interval),
                    fmt_duration(MIN_SWITCHBACK_INTERVAL)
                )),
            );
        }
        (Some(self.switchback_interval), None)
    }

    fn retry_interval(&self) -> Duration {
        self.heartbeat.max(Duration::from_millis(50))
    }

    /// How long a connection attempt may take before it counts as failed.
    pub fn attempt_timeout(&self) -> Duration {
        (self.heartbeat * LIVENESS_BEATS).max(Duration::from_millis(500))
    }
}

/// What a server said when it accepted this agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The hot-standby pair the server belongs to, if any: epochs are compared only within it.
    pub cluster: Option<String>,
    pub epoch: u64,
}

/// The answer to a switchback probe of the home server (AG-6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Home would accept this agent.
    Available,
    /// Home is the STANDBY of a hot-standby pair whose ACTIVE is alive: stay (AG-7).
    Redirect,
    Refused(String),
    Unreachable(String),
}

/// The link's state as shown to operators (`status --json` `link.state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Home,
    Standby,
    Staged,
    Blackout,
    ShutDown,
}

impl LinkState {
    pub fn as_str(&self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Home => "home",
            LinkState::Standby => "standby",
            LinkState::Staged => "staged",
            LinkState::Blackout => "blackout",
            LinkState::ShutDown => "stopped",
        }
    }
}

/// The server's word on one pair this agent belongs to, carried by heartbeat answers and pushed
/// on every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairView {
    pub pair: String,
    pub epoch: PairEpoch,
    /// Whether this agent is to hold the pair's duty under `epoch`.
    pub active: bool,
    /// How long an active member may go without a heartbeat answer before it stands down by
    /// itself; the server uses the same `failover_after` before activating the other member.
    pub lease: Duration,
}

/// This agent's part in one pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberState {
    Idle {
        epoch: PairEpoch,
    },
    Active {
        epoch: PairEpoch,
        lease_until: Instant,
    },
}

impl MemberState {
    pub fn epoch(&self) -> PairEpoch {
        match self {
            MemberState::Idle { epoch } | MemberState::Active { epoch, .. } => *epoch,
        }
    }
    pub fn is_active(&self) -> bool {
        matches!(self, MemberState::Active { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentAction {
    /// Open a link to this server and introduce the agent (whether it is home is `server == 0`).
    Connect {
        server: usize,
    },
    /// Ask this server whether it would take the agent now, without moving (AG-6).
    Probe {
        server: usize,
    },
    /// Close the link to this server (it failed, or the engine gave up on it).
    Disconnect {
        server: usize,
    },
    /// Tell this server the agent is leaving (it frees the standby slot), then close.
    Leave {
        server: usize,
    },
    SendHeartbeat {
        server: usize,
        id: u64,
    },
    /// Send the cached records with `after < seq <= upto`, in order. `taken_for` is the home
    /// server's URL when `server` is outside the home cluster: it stores them marked as taken for
    /// that home (AG-2).
    Send {
        server: usize,
        after: u64,
        upto: u64,
        taken_for: Option<String>,
    },
    /// The home cluster made these durable: delete cached records with `seq <= upto` (AG-2).
    DeleteCached {
        upto: u64,
    },
    /// A server outside the home cluster made these durable: keep the cached records with
    /// `after < seq <= upto`, marked as held by `server`, to be delivered home (AG-2).
    HoldCached {
        after: u64,
        upto: u64,
        server: String,
    },
    /// `held_limit` reached: delete held records with `seq <= upto` now (they stay on the
    /// standby that holds them; HELD_DROPPED says so).
    DropHeld {
        upto: u64,
    },
    /// Remember (durably) which hot-standby cluster home belongs to: its peer counts as home.
    SaveHomeCluster {
        cluster: String,
    },
    /// Start the pair's duty: run `on_activate`, start its checks.
    Activate {
        pair: String,
        epoch: PairEpoch,
    },
    /// Stop the pair's duty: stop its checks, run `on_deactivate`.
    Deactivate {
        pair: String,
        epoch: PairEpoch,
        reason: String,
    },
    /// Remember (durably) the highest epoch seen from a hot-standby pair of servers (AG-8).
    SaveEpoch {
        cluster: String,
        epoch: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Heartbeat,
    Liveness,
    Attempt,
    Retry,
    Switchback,
    Probe,
    Drain,
    Lease,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Retrying the failed server until `switchover_after` has passed.
    Retrying,
    /// Trying the whole list, home first.
    Searching,
    Staged {
        reason: String,
    },
    Blackout,
}

#[derive(Clone, Debug)]
struct Episode {
    since: Instant,
    from: usize,
    phase: Phase,
    /// Position in the current round over the server list.
    next: usize,
    /// A refusal seen during the current round (AG-4: the server answered, so no blackout).
    refused: Option<String>,
    staged_raised: bool,
    blackout_raised: bool,
    /// AG-10: the other server of `from`'s hot-standby pair, when it is in this agent's list.
    partner: Option<usize>,
    /// AG-10: attempts so far within the pair (they alternate, and their pause doubles).
    turns: u32,
}

#[derive(Clone, Debug)]
enum Link {
    Connecting { switchback_from: Option<usize> },
    Connected { server: usize },
    Leaving { from: usize },
    Failing(Episode),
    ShutDown,
}

/// The agent's state machine. See the module docs for the states and the crate docs for the
/// calling contract.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    link: Link,
    /// The server a connection attempt is under way to, and redirects followed for it.
    attempt: Option<(usize, u32)>,
    probing: Option<usize>,
    /// Highest sequence written to the cache, highest gone from it (acknowledged by the home
    /// cluster, or dropped beyond `held_limit`), highest held by servers outside the home cluster,
    /// highest sent on this link.
    cached_upto: u64,
    acked_upto: u64,
    held_upto: u64,
    sent_upto: u64,
    /// Who holds the held records: `(upto, server URL)`, ascending; a range starts after the
    /// previous one's `upto` (or after `acked_upto`).
    holders: VecDeque<(u64, String)>,
    /// The hot-standby cluster home belongs to, once home said so.
    home_cluster: Option<String>,
    /// AG-10: the hot-standby cluster each server of the list named in its welcome or redirect.
    clusters: BTreeMap<usize, String>,
    /// Whether the server of the current link is in the home cluster.
    on_home: bool,
    next_heartbeat_id: u64,
    heartbeats_sent: VecDeque<(u64, Instant)>,
    /// Send time of the newest heartbeat the server answered: leases count from it.
    last_answered_heartbeat: Option<Instant>,
    last_heard: Instant,
    epochs: BTreeMap<String, u64>,
    /// Fingerprints of the home server's hot-standby peer, as the home server (or a redirect
    /// from it) named them: the only server besides home that may direct this agent.
    home_peer: BTreeSet<String>,
    members: BTreeMap<String, MemberState>,
    last_error: Option<String>,
    timers: Timers<Timer>,
    actions: VecDeque<AgentAction>,
    events: VecDeque<Event>,
}

/// What an agent recovers from its disk at start-up.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Highest acknowledged sequence (everything at or below it has left the cache).
    pub acked_upto: u64,
    /// Highest sequence in the cache.
    pub cached_upto: u64,
    /// Highest epoch seen from each hot-standby pair of servers.
    pub epochs: BTreeMap<String, u64>,
    /// Held records (AG-2) as `(upto, server URL)` ranges, ascending, from `acked_upto + 1`.
    pub held: Vec<(u64, String)>,
    /// The hot-standby cluster home belongs to, if known.
    pub home_cluster: Option<String>,
    /// The certificate fingerprints the home server named for its hot-standby peer.
    pub home_peer: BTreeSet<String>,
}

impl Agent {
    /// Starts the agent: its first action is to connect home (AG-1: agents connect out).
    pub fn new(config: AgentConfig, restored: Restored, now: Instant) -> Agent {
        assert!(
            !config.servers.is_empty(),
            "an agent needs at least one server"
        );
        let held_upto = restored
            .held
            .last()
            .map_or(restored.acked_upto, |(upto, _)| *upto)
            .max(restored.acked_upto);
        let mut agent = Agent {
            config,
            link: Link::Connecting {
                switchback_from: None,
            },
            attempt: None,
            probing: None,
            cached_upto: restored.cached_upto.max(held_upto),
            acked_upto: restored.acked_upto,
            held_upto,
            sent_upto: restored.acked_upto,
            holders: restored
                .held
                .into_iter()
                .filter(|(upto, _)| *upto > restored.acked_upto)
                .collect(),
            clusters: restored
                .home_cluster
                .iter()
                .map(|c| (0, c.clone()))
                .collect(),
            home_cluster: restored.home_cluster,
            on_home: false,
            next_heartbeat_id: 1,
            heartbeats_sent: VecDeque::new(),
            last_answered_heartbeat: None,
            last_heard: now,
            epochs: restored.epochs,
            home_peer: restored.home_peer,
            members: BTreeMap::new(),
            last_error: None,
            timers: Timers::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        agent.enforce_held_limit();
        agent.connect(0, now);
        agent
    }

    // ----- getters -----

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    pub fn state(&self) -> LinkState {
        match &self.link {
            Link::Connecting { .. } | Link::Leaving { .. } => LinkState::Connecting,
            Link::Connected { server: 0 } => LinkState::Home,
            Link::Connected { .. } => LinkState::Standby,
            Link::Failing(ep) => match ep.phase {
                Phase::Staged { .. } => LinkState::Staged,
                Phase::Blackout => LinkState::Blackout,
                Phase::Retrying | Phase::Searching => LinkState::Connecting,
            },
            Link::ShutDown => LinkState::ShutDown,
        }
    }

    /// The server the agent is connected to, if any.
    pub fn server(&self) -> Option<usize> {
        match self.link {
            Link::Connected { server } | Link::Leaving { from: server } => Some(server),
            _ => None,
        }
    }

    pub fn server_url(&self, server: usize) -> Option<&str> {
        self.config.servers.get(server).map(String::as_str)
    }

    /// Records in the cache that no server has acknowledged yet.
    pub fn cached(&self) -> u64 {
        self.cached_upto - self.held_upto
    }

    /// Records in the cache that a server outside the home cluster holds, waiting to go home.
    pub fn held(&self) -> u64 {
        self.held_upto - self.acked_upto
    }

    /// Held records by the server that holds them: `(server URL, records)`, oldest first.
    pub fn held_by(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut from = self.acked_upto;
        for (upto, server) in &self.holders {
            let n = upto.saturating_sub(from);
            from = from.max(*upto);
            match out.iter_mut().find(|(s, _)| s == server) {
                Some((_, total)) => *total += n,
                None if n > 0 => out.push((server.clone(), n)),
                None => {}
            }
        }
        out
    }

    /// The hot-standby cluster home belongs to, once known.
    pub fn home_cluster(&self) -> Option<&str> {
        self.home_cluster.as_deref()
    }

    pub fn acked_upto(&self) -> u64 {
        self.acked_upto
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn members(&self) -> &BTreeMap<String, MemberState> {
        &self.members
    }

    /// What the agent tells its server about its pairs with every heartbeat: (pair, epoch, active).
    pub fn member_reports(&self) -> Vec<(String, PairEpoch, bool)> {
        self.members
            .iter()
            .map(|(p, m)| (p.clone(), m.epoch(), m.is_active()))
            .collect()
    }

    pub fn epochs(&self) -> &BTreeMap<String, u64> {
        &self.epochs
    }

    pub fn home_peer(&self) -> &BTreeSet<String> {
        &self.home_peer
    }

    /// SECURITY.md: whether the server this agent reached as `servers[server]`, presenting the
    /// certificate `fingerprint`, may direct it — send checks, pair views, redirects and
    /// certificate rotations. Only its home server and the hot-standby peer the home server
    /// named may; a standby server of another site stores records and answers heartbeats, and
    /// the agent keeps its current checks and pair duties there.
    pub fn may_direct(&self, server: usize, fingerprint: &str) -> Result<(), String> {
        if server == 0 {
            return Ok(());
        }
        if self.home_peer.contains(&fingerprint.to_ascii_lowercase()) {
            return Ok(());
        }
        let url = self.server_url(server).unwrap_or("this server");
        Err(format!(
            "{url} is not the home server nor its hot-standby peer: it may not direct this agent"
        ))
    }

    /// The home server (or its peer, when it directs this agent) named the hot-standby peer's
    /// fingerprints. Returns whether the set changed (the runtime persists it).
    pub fn handle_home_peer(&mut self, server: usize, from: &str, named: &[String]) -> bool {
        if self.may_direct(server, from).is_err() {
            return false;
        }
        let before = self.home_peer.len();
        if server == 0 && !named.is_empty() {
            // Home says who its peer is now; its word replaces the old one.
            let named: BTreeSet<String> = named.iter().map(|f| f.to_ascii_lowercase()).collect();
            if named != self.home_peer {
                self.home_peer = named;
                return true;
            }
            return false;
        }
        self.home_peer
            .extend(named.iter().map(|f| f.to_ascii_lowercase()));
        self.home_peer.len() != before
    }

    // ----- polls -----

    pub fn poll_action(&mut self) -> Option<AgentAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- inputs -----

    /// New records were written durably to the cache, up to `upto`.
    pub fn handle_cached(&mut self, now: Instant, upto: u64) {
        self.cached_upto = self.cached_upto.max(upto);
        self.pump(now);
    }

    /// The server accepted the agent (AG-3/AG-5/AG-6 decide which event this is).
    pub fn handle_connected(&mut self, now: Instant, server: usize, welcome: Welcome) {
        if self.attempt.map(|(s, _)| s) != Some(server) {
            return; // a late answer to an attempt already given up on
        }
        self.attempt = None;
        self.timers.stop(Timer::Attempt);
        // AG-8: never follow a node of a hot-standby pair whose epoch is lower than one seen.
        if let Some(cluster) = &welcome.cluster {
            let seen = self.epochs.get(cluster).copied().unwrap_or(0);
            if welcome.epoch < seen {
                let reason = format!(
                    "{} has epoch {} but epoch {} of {} was seen: not followed",
                    self.config.servers[server], welcome.epoch, seen, cluster
                );
                self.event(EventCode::StaleEpoch, reason.clone());
                self.actions.push_back(AgentAction::Disconnect { server });
                self.attempt_failed(now, server, reason);
                return;
            }
            if welcome.epoch > seen {
                self.epochs.insert(cluster.clone(), welcome.epoch);
                self.actions.push_back(AgentAction::SaveEpoch {
                    cluster: cluster.clone(),
                    epoch: welcome.epoch,
                });
            }
        }
        if server == 0 {
            self.learn_home_cluster(welcome.cluster.as_deref());
        }
        if let Some(cluster) = &welcome.cluster {
            self.clusters.insert(server, cluster.clone());
        }
        // AG-2: home, or its hot-standby peer, takes records for good; anyone else holds them.
        self.on_home =
            server == 0 || (welcome.cluster.is_some() && welcome.cluster == self.home_cluster);
        let url = self.config.servers[server].clone();
        match std::mem::replace(&mut self.link, Link::Connected { server }) {
            Link::Failing(ep) => {
                let since = fmt_duration(now.saturating_duration_since(ep.since));
                if ep.phase == Phase::Blackout {
                    self.event(
                        EventCode::BlackoutEnd,
                        format!("reached {url} after {since} without any server; flushing {} cached records", self.cached()),
                    );
                } else if server != ep.from && Some(server) != ep.partner {
                    // (AG-10: the other server of the pair is the same server: no switchover.)
                    let from = &self.config.servers[ep.from];
                    self.event(
                        EventCode::Switchover,
                        format!(
                            "{from} stopped answering {since} ago (switchover_after {}): switched over to {url}, flushing {} cached records",
                            fmt_duration(self.config.switchover_after),
                            self.cached()
                        ),
                    );
                }
            }
            Link::Connecting {
                switchback_from: Some(from),
                ..
            } => {
                let from = &self.config.servers[from];
                self.event(
                    EventCode::Switchback,
                    format!("home server {url} answers again: switched back from {from}"),
                );
            }
            _ => {}
        }
        self.last_error = None;
        self.last_heard = now;
        self.sent_upto = self.link_acked();
        self.heartbeats_sent.clear();
        self.timers.stop(Timer::Retry);
        self.timers.set(Timer::Heartbeat, now);
        self.arm_liveness();
        if server != 0 {
            if let (Some(every), _) = self.config.effective_switchback_interval() {
                self.timers.set(Timer::Switchback, now + every);
            }
        }
        self.pump(now);
    }

    /// The server refused the agent, with its reason (capacity: AG-4; pending/rejected: AG-9).
    pub fn handle_refused(&mut self, now: Instant, server: usize, reason: String, capacity: bool) {
        if self.attempt.map(|(s, _)| s) != Some(server) {
            return;
        }
        self.attempt = None;
        self.timers.stop(Timer::Attempt);
        let url = &self.config.servers[server];
        let reason = format!("{url} refused: {reason}");
        if let Link::Failing(ep) = &mut self.link {
            if ep.phase != Phase::Retrying || capacity {
                ep.refused = Some(reason.clone());
            }
        } else {
            self.begin_episode(now, server);
            if let Link::Failing(ep) = &mut self.link {
                ep.refused = Some(reason.clone());
            }
        }
        self.last_error = Some(reason);
        self.next_attempt_after_failure(now);
    }

    /// The server is the STANDBY of a hot-standby pair and sent the agent to the ACTIVE one (AG-7).
    pub fn handle_redirect(&mut self, now: Instant, server: usize, to: &str, welcome: Welcome) {
        let connected_here = matches!(self.link, Link::Connected { server: s } if s == server);
        let attempting_here = self.attempt.map(|(s, _)| s) == Some(server);
        if !connected_here && !attempting_here {
            return;
        }
        let redirects = self.attempt.map(|(_, r)| r).unwrap_or(0) + 1;
        if server == 0 {
            self.learn_home_cluster(welcome.cluster.as_deref());
        }
        if let Some(cluster) = &welcome.cluster {
            self.clusters.insert(server, cluster.clone());
        }
        if let Some(cluster) = &welcome.cluster {
            let seen = self.epochs.get(cluster).copied().unwrap_or(0);
            if welcome.epoch < seen {
                let reason = format!(
                    "redirect from {} carries epoch {} below {} seen: ignored",
                    self.config.servers[server], welcome.epoch, seen
                );
                self.event(EventCode::StaleEpoch, reason.clone());
                if attempting_here {
                    self.attempt = None;
                    self.attempt_failed(now, server, reason);
                }
                return;
            }
        }
        if redirects > MAX_REDIRECTS {
            self.attempt = None;
            self.attempt_failed(
                now,
                server,
                format!("more than {MAX_REDIRECTS} redirects in a row"),
            );
            return;
        }
        let target = match self.config.servers.iter().position(|s| s == to) {
            Some(i) => i,
            None => {
                self.config.servers.push(to.to_string());
                self.config.servers.len() - 1
            }
        };
        let from = self.config.servers[server].clone();
        self.event(
            EventCode::Redirected,
            format!("{from} is STANDBY: redirected to the ACTIVE server {to}"),
        );
        if connected_here {
            // The server stepped down under us: follow it without counting a failure.
            self.actions.push_back(AgentAction::Disconnect { server });
            self.stop_link_timers();
            self.link = Link::Connecting {
                switchback_from: None,
            };
        }
        self.actions
            .push_back(AgentAction::Connect { server: target });
        self.attempt = Some((target, redirects));
        self.timers
            .set(Timer::Attempt, now + self.config.attempt_timeout());
    }

    /// A connection attempt failed before the server answered.
    pub fn handle_connect_failed(&mut self, now: Instant, server: usize, reason: String) {
        if self.attempt.map(|(s, _)| s) != Some(server) {
            return;
        }
        self.attempt = None;
        self.timers.stop(Timer::Attempt);
        self.attempt_failed(now, server, reason);
    }

    /// An established link broke (closed, reset, or a protocol error).
    pub fn handle_disconnected(&mut self, now: Instant, server: usize, reason: String) {
        match self.link {
            Link::Connected { server: s } if s == server => self.link_failed(now, server, reason),
            Link::Leaving { from } if from == server => self.finish_leaving(now),
            _ => {}
        }
    }

    /// The server answered a heartbeat; `views` is its word on this agent's pairs.
    pub fn handle_heartbeat_ack(
        &mut self,
        now: Instant,
        server: usize,
        id: u64,
        views: &[PairView],
    ) {
        if self.server() != Some(server) {
            return;
        }
        self.heard(now);
        while let Some(&(sent_id, sent_at)) = self.heartbeats_sent.front() {
            if sent_id > id {
                break;
            }
            self.heartbeats_sent.pop_front();
            if sent_id == id {
                self.last_answered_heartbeat = Some(sent_at);
            }
        }
        self.apply_views(now, views);
    }

    /// The server pushed a change of this agent's pairs (a handover) between heartbeats.
    pub fn handle_pair_views(&mut self, now: Instant, server: usize, views: &[PairView]) {
        if self.server() != Some(server) {
            return;
        }
        self.heard(now);
        self.apply_views(now, views);
    }

    /// The server made records durable up to `upto` (AG-2): a server of the home cluster lets
    /// them leave the cache; any other server holds them until they are delivered home.
    pub fn handle_ack(&mut self, now: Instant, server: usize, upto: u64) {
        if self.server() != Some(server) {
            return;
        }
        self.heard(now);
        // Never acknowledge beyond what was sent on this link: a confused server cannot make
        // the agent delete records it never received.
        let upto = upto.min(self.sent_upto);
        if self.on_home {
            if upto > self.acked_upto {
                self.acked_upto = upto;
                self.held_upto = self.held_upto.max(upto);
                while self.holders.front().is_some_and(|(u, _)| *u <= upto) {
                    self.holders.pop_front();
                }
                self.actions.push_back(AgentAction::DeleteCached { upto });
            }
        } else if upto > self.held_upto {
            let url = self.config.servers[server].clone();
            match self.holders.back_mut() {
                Some((last, s)) if *s == url => *last = upto,
                _ => self.holders.push_back((upto, url.clone())),
            }
            let after = self.held_upto;
            self.held_upto = upto;
            self.actions.push_back(AgentAction::HoldCached {
                after,
                upto,
                server: url,
            });
            self.enforce_held_limit();
        }
        if matches!(self.link, Link::Leaving { .. }) && self.link_acked() >= self.sent_upto {
            self.finish_leaving(now);
            return;
        }
        self.pump(now);
    }

    /// The answer to a switchback probe (AG-6).
    pub fn handle_probe_result(&mut self, now: Instant, server: usize, result: ProbeResult) {
        if self.probing != Some(server) {
            return;
        }
        self.probing = None;
        self.timers.stop(Timer::Probe);
        match result {
            ProbeResult::Available => self.begin_switchback(now),
            ProbeResult::Redirect | ProbeResult::Refused(_) | ProbeResult::Unreachable(_) => {}
        }
    }

    /// The server the agent is on recalled it to its home server (AG-6, `switchback_interval = 0`).
    pub fn handle_recall(&mut self, now: Instant, server: usize) {
        if self.server() != Some(server) || server == 0 {
            return;
        }
        self.event(
            EventCode::Recalled,
            format!(
                "recalled by an operator to its home server {}",
                self.config.servers[0]
            ),
        );
        self.begin_switchback(now);
    }

    /// AG-8: a shutting-down agent does not switch servers.
    pub fn handle_shutdown(&mut self, _now: Instant) {
        if let Some(server) = self.server() {
            self.actions.push_back(AgentAction::Leave { server });
        }
        if let Some((server, _)) = self.attempt.take() {
            self.actions.push_back(AgentAction::Disconnect { server });
        }
        for (pair, m) in std::mem::take(&mut self.members) {
            if let MemberState::Active { epoch, .. } = m {
                self.actions.push_back(AgentAction::Deactivate {
                    pair,
                    epoch,
                    reason: "agent shutting down".into(),
                });
            }
        }
        self.link = Link::ShutDown;
        self.timers = Timers::default();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(Timer::Lease, now) {
            self.expire_leases(now);
        }
        if self.timers.expired(Timer::Attempt, now) {
            if let Some((server, _)) = self.attempt.take() {
                self.actions.push_back(AgentAction::Disconnect { server });
                let reason = format!(
                    "no answer within {}",
                    fmt_duration(self.config.attempt_timeout())
                );
                self.attempt_failed(now, server, reason);
            }
        }
        if self.timers.expired(Timer::Probe, now) {
            self.probing = None;
        }
        if self.timers.expired(Timer::Liveness, now) {
            if let Link::Connected { server } = self.link {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent >= self.config.heartbeat * LIVENESS_BEATS {
                    let reason = format!(
                        "no answer for {} ({LIVENESS_BEATS} heartbeats)",
                        fmt_duration(silent)
                    );
                    self.actions.push_back(AgentAction::Disconnect { server });
                    self.link_failed(now, server, reason);
                } else {
                    self.arm_liveness();
                }
            }
        }
        if self.timers.expired(Timer::Heartbeat, now) {
            if let Link::Connected { server } = self.link {
                let id = self.next_heartbeat_id;
                self.next_heartbeat_id += 1;
                self.heartbeats_sent.push_back((id, now));
                if self.heartbeats_sent.len() > 64 {
                    self.heartbeats_sent.pop_front();
                }
                self.actions
                    .push_back(AgentAction::SendHeartbeat { server, id });
                self.timers
                    .set(Timer::Heartbeat, now + self.config.heartbeat);
            }
        }
        if self.timers.expired(Timer::Switchback, now) {
            if let Link::Connected { server } = self.link {
                if server != 0 {
                    if let (Some(every), _) = self.config.effective_switchback_interval() {
                        if self.probing.is_none() {
                            self.probing = Some(0);
                            self.actions.push_back(AgentAction::Probe { server: 0 });
                            self.timers
                                .set(Timer::Probe, now + self.config.attempt_timeout());
                        }
                        self.timers.set(Timer::Switchback, now + every);
                    }
                }
            }
        }
        if self.timers.expired(Timer::Drain, now) && matches!(self.link, Link::Leaving { .. }) {
            self.finish_leaving(now);
        }
        if self.timers.expired(Timer::Retry, now) {
            self.try_next(now);
        }
    }

    // ----- internals -----

    fn event(&mut self, code: EventCode, reason: String) {
        self.events
            .push_back(Event::new(code, self.config.name.clone(), reason));
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    fn arm_liveness(&mut self) {
        self.timers.set(
            Timer::Liveness,
            self.last_heard + self.config.heartbeat * LIVENESS_BEATS,
        );
    }

    fn stop_link_timers(&mut self) {
        for t in [
            Timer::Heartbeat,
            Timer::Liveness,
            Timer::Switchback,
            Timer::Probe,
            Timer::Drain,
        ] {
            self.timers.stop(t);
        }
        self.probing = None;
    }

    fn connect(&mut self, server: usize, now: Instant) {
        self.attempt = Some((server, 0));
        self.actions.push_back(AgentAction::Connect { server });
        self.timers
            .set(Timer::Attempt, now + self.config.attempt_timeout());
    }

    /// Sends what the window allows when the link is up: home gets everything still cached, in
    /// sequence order (held records first); a server outside the home cluster only what nobody
    /// holds yet, so held records never block new ones (AG-2).
    fn pump(&mut self, _now: Instant) {
        let Link::Connected { server } = self.link else {
            return;
        };
        let limit = self.link_acked() + SEND_WINDOW;
        let upto = self.cached_upto.min(limit);
        if upto > self.sent_upto {
            self.actions.push_back(AgentAction::Send {
                server,
                after: self.sent_upto,
                upto,
                taken_for: (!self.on_home).then(|| self.config.servers[0].clone()),
            });
            self.sent_upto = upto;
        }
    }

    /// What the current link's server has acknowledged: everything gone from the cache for the
    /// home cluster, everything held or gone for any other server.
    fn link_acked(&self) -> u64 {
        if self.on_home {
            self.acked_upto
        } else {
            self.held_upto
        }
    }

    fn learn_home_cluster(&mut self, cluster: Option<&str>) {
        if let Some(cluster) = cluster {
            if self.home_cluster.as_deref() != Some(cluster) {
                self.home_cluster = Some(cluster.to_string());
                self.actions.push_back(AgentAction::SaveHomeCluster {
                    cluster: cluster.to_string(),
                });
            }
        }
    }

    /// AG-2: beyond `held_limit`, the oldest held records leave the cache (a home that never
    /// returns must not fill the disk); they stay on the standby that holds them.
    fn enforce_held_limit(&mut self) {
        let held = self.held();
        if held <= self.config.held_limit {
            return;
        }
        let floor = self.held_upto - self.config.held_limit;
        let mut dropped: Vec<(String, u64)> = Vec::new();
        let mut from = self.acked_upto;
        while let Some((upto, server)) = self.holders.front().cloned() {
            let n = upto.min(floor).saturating_sub(from);
            if n > 0 {
                match dropped.iter_mut().find(|(s, _)| *s == server) {
                    Some((_, total)) => *total += n,
                    None => dropped.push((server.clone(), n)),
                }
            }
            if upto > floor {
                break;
            }
            from = upto;
            self.holders.pop_front();
        }
        self.acked_upto = floor;
        self.sent_upto = self.sent_upto.max(floor);
        self.actions
            .push_back(AgentAction::DropHeld { upto: floor });
        let by = dropped
            .iter()
            .map(|(s, n)| format!("{n} held by {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.event(
            EventCode::HeldDropped,
            format!(
                "held_limit {} reached: dropped the oldest {} held records from the cache up to seq {floor} ({by}); they stay there and will be missing at home {}",
                self.config.held_limit,
                held - self.config.held_limit,
                self.config.servers[0]
            ),
        );
    }

    fn link_failed(&mut self, now: Instant, server: usize, reason: String) {
        self.stop_link_timers();
        self.sent_upto = self.acked_upto;
        self.last_error = Some(format!("{}: {reason}", self.config.servers[server]));
        self.begin_episode(now, server);
        self.try_next(now);
    }

    fn begin_episode(&mut self, now: Instant, from: usize) {
        if matches!(self.link, Link::Failing(_)) {
            return;
        }
        let partner = self.pair_partner(from);
        self.link = Link::Failing(Episode {
            since: now,
            from,
            phase: Phase::Retrying,
            next: 0,
            refused: None,
            staged_raised: false,
            blackout_raised: false,
            partner,
            turns: 0,
        });
    }

    /// AG-10: the other server of `server`'s hot-standby pair in this agent's list: the cluster
    /// it named (`HOST:PORT+HOST:PORT`) holds both addresses.
    fn pair_partner(&self, server: usize) -> Option<usize> {
        let cluster = self.clusters.get(&server)?;
        let members: Vec<&str> = cluster.split('+').collect();
        let address = |url: &str| {
            let rest = url.strip_prefix("https://").unwrap_or(url);
            rest.split(['#', '/']).next().unwrap_or(rest).to_string()
        };
        let in_pair = |i: usize| members.contains(&address(&self.config.servers[i]).as_str());
        if !in_pair(server) {
            return None;
        }
        (0..self.config.servers.len()).find(|&i| i != server && in_pair(i))
    }

    fn attempt_failed(&mut self, now: Instant, server: usize, reason: String) {
        self.last_error = Some(format!("{}: {reason}", self.config.servers[server]));
        match self.link {
            Link::ShutDown => return,
            Link::Failing(_) => {}
            _ => self.begin_episode(now, server),
        }
        self.next_attempt_after_failure(now);
    }

    fn next_attempt_after_failure(&mut self, now: Instant) {
        let Link::Failing(ep) = &self.link else {
            return;
        };
        if ep.phase == Phase::Retrying && now < ep.since + self.config.switchover_after {
            let pause = match ep.partner {
                // AG-10: within the pair, every 100 ms while the peer may be promoting, then
                // slower (doubling to a heartbeat).
                Some(_) => PAIR_RETRY
                    .saturating_mul(1 << ep.turns.saturating_sub(PAIR_FAST_TURNS).min(8))
                    .min(self.config.retry_interval()),
                None => self.config.retry_interval(),
            };
            self.timers.set(Timer::Retry, now + pause);
        } else {
            self.try_next(now);
        }
    }

    /// The next connection attempt of a failure episode (AG-3, AG-4, AG-5).
    fn try_next(&mut self, now: Instant) {
        if self.attempt.is_some() {
            return;
        }
        let n = self.config.servers.len();
        let switchover_at = match &self.link {
            Link::Failing(ep) => ep.since + self.config.switchover_after,
            _ => return,
        };
        let Link::Failing(ep) = &mut self.link else {
            return;
        };
        if ep.phase == Phase::Retrying {
            if now < switchover_at {
                // AG-10: a hot-standby pair is one server: its peer first (it is, or is about to
                // be, the ACTIVE), then the two in turn; outside a pair, the same server again.
                let target = match ep.partner {
                    Some(partner) if ep.turns % 2 == 0 => partner,
                    _ => ep.from,
                };
                ep.turns += 1;
                self.timers.stop(Timer::Retry);
                self.connect(target, now);
                return;
            }
            ep.phase = Phase::Searching;
            ep.next = 0;
        }
        if ep.next < n {
            let target = ep.next;
            ep.next += 1;
            self.timers.stop(Timer::Retry);
            self.connect(target, now);
            return;
        }
        // A whole round without acceptance: staged if anyone answered, blackout otherwise.
        let since = ep.since;
        let (code, reason) = match ep.refused.take() {
            Some(reason) => {
                ep.phase = Phase::Staged {
                    reason: reason.clone(),
                };
                let raise = !ep.staged_raised;
                ep.staged_raised = true;
                (
                    raise.then_some(EventCode::Staged),
                    format!(
                        "{reason}; keeping {} records cached and retrying",
                        self.cached_upto - self.acked_upto
                    ),
                )
            }
            None => {
                ep.phase = Phase::Blackout;
                let raise = !ep.blackout_raised;
                ep.blackout_raised = true;
                (
                    raise.then_some(EventCode::Blackout),
                    format!(
                        "none of {n} servers answers (first failure {} ago); caching {} records and retrying all",
                        fmt_duration(now.saturating_duration_since(since)),
                        self.cached_upto - self.acked_upto
                    ),
                )
            }
        };
        ep.next = 0;
        if let Some(code) = code {
            self.event(code, reason);
        }
        self.timers
            .set(Timer::Retry, now + self.config.retry_interval());
    }

    fn begin_switchback(&mut self, now: Instant) {
        let Link::Connected { server } = self.link else {
            return;
        };
        if server == 0 {
            return;
        }
        self.stop_link_timers();
        self.link = Link::Leaving { from: server };
        if self.link_acked() >= self.sent_upto {
            self.finish_leaving(now);
        } else {
            // Let the standby acknowledge what it was sent, so nothing is stored twice.
            self.timers
                .set(Timer::Drain, now + self.config.attempt_timeout());
        }
    }

    fn finish_leaving(&mut self, now: Instant) {
        let Link::Leaving { from } = self.link else {
            return;
        };
        self.timers.stop(Timer::Drain);
        self.actions.push_back(AgentAction::Leave { server: from });
        self.sent_upto = self.acked_upto;
        self.link = Link::Connecting {
            switchback_from: Some(from),
        };
        self.connect(0, now);
    }

    /// PR-2/PR-3: take the server's word on each pair, fenced by the pair epoch.
    fn apply_views(&mut self, now: Instant, views: &[PairView]) {
        for view in views {
            let current = self.members.get(&view.pair).cloned();
            if let Some(m) = &current {
                if view.epoch < m.epoch() {
                    continue; // a stale word from a server that has not seen the latest handover
                }
            }
            let lease_base = self.last_answered_heartbeat.unwrap_or(now).min(now);
            let lease_until = lease_base + view.lease;
            match (current, view.active) {
                (
                    Some(MemberState::Active {
                        epoch,
                        lease_until: old,
                    }),
                    true,
                ) if epoch == view.epoch => {
                    self.members.insert(
                        view.pair.clone(),
                        MemberState::Active {
                            epoch,
                            lease_until: old.max(lease_until),
                        },
                    );
                }
                (Some(MemberState::Active { epoch, .. }), _) => {
                    let reason = if view.active {
                        format!("server moved the duty to epoch {}", view.epoch)
                    } else {
                        format!("server says stand by under pair epoch {}", view.epoch)
                    };
                    self.actions.push_back(AgentAction::Deactivate {
                        pair: view.pair.clone(),
                        epoch,
                        reason,
                    });
                    self.members
                        .insert(view.pair.clone(), MemberState::Idle { epoch: view.epoch });
                    if view.active && lease_until > now {
                        self.members.insert(
                            view.pair.clone(),
                            MemberState::Active {
                                epoch: view.epoch,
                                lease_until,
                            },
                        );
                        self.actions.push_back(AgentAction::Activate {
                            pair: view.pair.clone(),
                            epoch: view.epoch,
                        });
                    }
                }
                (_, true) if lease_until > now => {
                    self.members.insert(
                        view.pair.clone(),
                        MemberState::Active {
                            epoch: view.epoch,
                            lease_until,
                        },
                    );
                    self.actions.push_back(AgentAction::Activate {
                        pair: view.pair.clone(),
                        epoch: view.epoch,
                    });
                }
                _ => {
                    self.members
                        .insert(view.pair.clone(), MemberState::Idle { epoch: view.epoch });
                }
            }
        }
        self.arm_lease();
    }

    fn arm_lease(&mut self) {
        let next = self
            .members
            .values()
            .filter_map(|m| match m {
                MemberState::Active { lease_until, .. } => Some(*lease_until),
                MemberState::Idle { .. } => None,
            })
            .min();
        match next {
            Some(at) => self.timers.set(Timer::Lease, at),
            None => self.timers.stop(Timer::Lease),
        }
    }

    /// PR-3: an active member that cannot renew its lease stands down before the server can
    /// activate the other member, so the two never hold the duty at once.
    fn expire_leases(&mut self, now: Instant) {
        let expired: Vec<(String, PairEpoch)> = self
            .members
            .iter()
            .filter_map(|(p, m)| match m {
                MemberState::Active { epoch, lease_until } if *lease_until <= now => {
                    Some((p.clone(), *epoch))
                }
                _ => None,
            })
            .collect();
        for (pair, epoch) in expired {
            let reason = format!("no word from the server on pair {pair} for its lease: standing down (epoch {epoch})");
            self.members
                .insert(pair.clone(), MemberState::Idle { epoch });
            self.actions.push_back(AgentAction::Deactivate {
                pair: pair.clone(),
                epoch,
                reason: reason.clone(),
            });
            self.events
                .push_back(Event::new(EventCode::LeaseExpired, pair, reason));
        }
        self.arm_lease();
    }
}
