//! Servers in hot standby (HS-1…HS-6): which of two server nodes is ACTIVE (acting) and which is
//! STANDBY, under a server epoch that grows at every promotion.
//!
//! ```text
//!   Starting ──peer ACTIVE──▶ Standby ──ACTIVE silent for failover_timeout──▶ Active (PROMOTED)
//!      │                        │ ▲      or its port refused crash_confirm polls in a row (HS-8)
//!      │                        │ │      or peer not ACTIVE and we are preferred
//!      │ peer not ACTIVE and    │ │      or the ACTIVE peer handed its role over (HS-8)
//!      │ we are preferred, or   │ └── planned stop / `ha standby` (HANDOVER) / lower epoch meets higher
//!      │ nobody for             │     (SPLIT_BRAIN) / auto failback of the secondary (DEMOTED)
//!      └─failover_timeout──▶ Active
//! ```
//!
//! Both nodes poll each other every `sync_interval`; the STANDBY also replicates then (HS-3).
//!
//! HS-8, crash or silence: a refused connection (nothing listens on the ACTIVE's port while its
//! host answers) is proof that its process is gone, so `crash_confirm` refusals in a row,
//! [`CRASH_CONFIRM_INTERVAL`] apart, promote at once. Silence (timeouts, an unreachable host, a
//! frozen process) proves nothing and still waits `failover_timeout`. Any answer, or any silence,
//! breaks a row of refusals. The runtime learns of a crash at once from the connection it keeps
//! open to the peer ([`HotStandby::handle_peer_closed`]), and then polls to confirm.
//! HS-8, planned stop: break-before-make. The ACTIVE steps down first ([`HotStandby::hand_over`]:
//! HANDOVER), the runtime closes its record intake, hands the peer the records and events it has
//! not replicated and asks it to promote ([`HaAction::HandOver`]); the peer promotes past the
//! handed-over epoch ([`HotStandby::handle_handover_request`]) and only then are agents sent to it.
//! While handing over, a preferred node does not take the role back from its STANDBY peer; if no
//! answer comes, silence rules as usual (`failover_timeout`).
//! "Preferred" is the configured PRIMARY (HS-2: when both start together the primary wins; HS-5:
//! once the acting secondary is set to STANDBY, the primary becomes ACTIVE by itself).
//!
//! Split-brain cases and what prevents each:
//! 1. Both start at once: only the preferred node promotes on seeing a non-ACTIVE peer; the
//!    other waits `failover_timeout` for an ACTIVE one.
//! 2. A partition: both may act. When they meet, the lower epoch steps down (HS-6); at equal
//!    epochs the non-preferred one does. The one stepping down hands over the records only it
//!    holds (`HaAction::MergeToPeer`).
//! 3. A former ACTIVE returns with an old epoch: it finds a higher epoch and becomes STANDBY (HS-5),
//!    handing over the records it acknowledged after the peer last replicated (`MergeToPeer`).
//! 4. An ACTIVE peer reports an epoch below ours (restored from an old copy): inconsistent, so we
//!    promote past it and case 2 settles it.
//! 5. Both promote while they cannot see each other: the PRIMARY only takes odd epochs and the
//!    SECONDARY even ones, so no epoch ever has two ACTIVE servers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::event::{Event, EventCode};
use crate::fmt_duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverMode {
    Off,
    Primary,
    Secondary,
}

impl FailoverMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverMode::Off => "off",
            FailoverMode::Primary => "primary",
            FailoverMode::Secondary => "secondary",
        }
    }
    pub fn parse(s: &str) -> Option<FailoverMode> {
        match s {
            "off" => Some(FailoverMode::Off),
            "primary" => Some(FailoverMode::Primary),
            "secondary" => Some(FailoverMode::Secondary),
            _ => None,
        }
    }
}

/// HS-8: how far apart the polls that confirm a crash are.
pub const CRASH_CONFIRM_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailbackPolicy {
    /// HS-5 default: the acting secondary keeps the role until an operator sets it to STANDBY.
    Manual,
    /// The acting secondary steps down once the primary has been a healthy STANDBY for `hold_down`.
    Auto { hold_down: Duration },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotStandbyConfig {
    /// This node's name (the subject of its events); ties are broken by name.
    pub name: String,
    pub mode: FailoverMode,
    pub sync_interval: Duration,
    pub failover_timeout: Duration,
    pub failback: FailbackPolicy,
    /// HS-8: refused polls in a row that prove the ACTIVE's process is gone (0: never; wait
    /// `failover_timeout` as for silence).
    pub crash_confirm: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaState {
    Starting { since: Instant },
    Active { since: Instant },
    Standby { since: Instant },
}

impl HaState {
    pub fn as_str(&self) -> &'static str {
        match self {
            HaState::Starting { .. } => "starting",
            HaState::Active { .. } => "active",
            HaState::Standby { .. } => "standby",
        }
    }
}

/// What the peer said when polled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub name: String,
    pub mode: FailoverMode,
    /// "starting" | "active" | "standby"
    pub state: String,
    pub epoch: u64,
    /// The peer's site configuration version (what a STANDBY replicates, HS-3).
    pub site_version: u64,
}

impl PeerStatus {
    fn is_active(&self) -> bool {
        self.state == "active"
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaAction {
    /// Ask the peer for its status now; when `replicate`, also pull its site configuration,
    /// events and records (HS-3).
    PollPeer { replicate: bool },
    /// Persist the epoch before acting on it.
    SaveEpoch { epoch: u64 },
    /// After stepping down, or when a former ACTIVE returns: give the peer every record only this
    /// node holds.
    MergeToPeer,
    /// HS-8 planned handover: this node has stepped down; stop taking records, hand the peer every
    /// record and event it lacks, then ask it to promote past `epoch`. The answer comes back as
    /// [`HotStandby::handle_handover_result`].
    HandOver { epoch: u64, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Poll,
    Decide,
}

#[derive(Debug)]
pub struct HotStandby {
    config: HotStandbyConfig,
    state: HaState,
    epoch: u64,
    /// Last time the peer answered as ACTIVE with an epoch at least ours.
    peer_active_seen: Instant,
    peer: Option<PeerStatus>,
    peer_answered: Option<Instant>,
    /// Since when the peer has been a healthy STANDBY (for `failback = auto`).
    peer_standby_since: Option<Instant>,
    /// HS-8: whether the peer's last answer was ACTIVE with an epoch at least ours (only such a
    /// peer's refusals can mean a crashed ACTIVE).
    peer_was_active: bool,
    /// HS-8: the refusals of the current row (what each poll was told), and when the row began.
    refusals: Vec<String>,
    refusals_since: Option<Instant>,
    /// HS-8: since when the connection kept open to an ACTIVE peer has been closed without an
    /// answer since. Its kernel closed it, so its host is up: a poll that then fails without a
    /// refusal (a reset while the port was closing) is tried again soon, not after sync_interval.
    closed_since: Option<Instant>,
    /// The site configuration version replicated from the ACTIVE peer.
    replicated_version: u64,
    split_brain_reported: bool,
    /// HS-8: a planned handover to the peer is under way (since when): this node has stepped
    /// down and must not take the role back by preference while the peer promotes.
    handing_over: Option<Instant>,
    reason: String,
    timers: crate::timers::Timers<Timer>,
    actions: VecDeque<HaAction>,
    events: VecDeque<Event>,
}

impl HotStandby {
    /// Starts with the epoch persisted by the last run.
    pub fn new(config: HotStandbyConfig, epoch: u64, now: Instant) -> HotStandby {
        let mut ha = HotStandby {
            config,
            state: HaState::Starting { since: now },
            epoch,
            peer_active_seen: now,
            peer: None,
            peer_answered: None,
            peer_standby_since: None,
            peer_was_active: false,
            refusals: Vec::new(),
            refusals_since: None,
            closed_since: None,
            replicated_version: 0,
            split_brain_reported: false,
            handing_over: None,
            reason: "starting".into(),
            timers: Default::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        ha.start(now);
        ha
    }

    fn start(&mut self, now: Instant) {
        self.timers = Default::default();
        if self.config.mode == FailoverMode::Off {
            self.state = HaState::Active { since: now };
            self.reason = "failover mode off: this server acts alone".into();
            return;
        }
        self.state = HaState::Starting { since: now };
        self.peer_active_seen = now;
        self.reason = format!(
            "starting: waiting up to {} for an ACTIVE peer",
            fmt_duration(self.config.failover_timeout)
        );
        self.actions
            .push_back(HaAction::PollPeer { replicate: false });
        self.timers
            .set(Timer::Poll, now + self.config.sync_interval);
        self.timers
            .set(Timer::Decide, now + self.config.failover_timeout);
    }

    // ----- getters -----

    pub fn state(&self) -> HaState {
        self.state
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn mode(&self) -> FailoverMode {
        self.config.mode
    }
    pub fn config(&self) -> &HotStandbyConfig {
        &self.config
    }
    /// Whether this node acts: accepts agents, supervises pairs, takes operator actions.
    pub fn is_acting(&self) -> bool {
        matches!(self.state, HaState::Active { .. })
    }
    /// The reason for the current state, as shown to operators.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub fn peer(&self) -> Option<&PeerStatus> {
        self.peer.as_ref()
    }
    /// Whether the ACTIVE peer answered within `failover_timeout` (AG-7 redirects go there).
    pub fn peer_acting(&self, now: Instant) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| p.is_active() && p.epoch >= self.epoch)
            && now < self.peer_active_seen + self.config.failover_timeout
    }
    pub fn replicated_version(&self) -> u64 {
        self.replicated_version
    }

    pub fn poll_action(&mut self) -> Option<HaAction> {
        self.actions.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- inputs -----

    /// HS-7: the failover settings changed at run time (already validated).
    pub fn handle_config(&mut self, now: Instant, config: HotStandbyConfig) {
        let mode_changed = config.mode != self.config.mode;
        self.config = config;
        if mode_changed {
            if self.config.mode == FailoverMode::Off && !self.is_acting() {
                self.promote(
                    now,
                    "failover mode set to off: this server acts alone".into(),
                );
            } else if self.config.mode != FailoverMode::Off
                && self.timers.get(Timer::Poll).is_none()
            {
                self.timers.set(Timer::Poll, now);
                self.peer_active_seen = now;
                self.timers
                    .set(Timer::Decide, now + self.config.failover_timeout);
            }
        }
    }

    /// HS-3: the STANDBY holds the peer's site configuration up to `version`.
    pub fn handle_replicated(&mut self, version: u64) {
        self.replicated_version = self.replicated_version.max(version);
    }

    /// The peer answered a poll.
    pub fn handle_peer_status(&mut self, now: Instant, peer: PeerStatus) {
        if self.config.mode == FailoverMode::Off {
            return;
        }
        self.peer_answered = Some(now);
        self.refusals.clear();
        self.refusals_since = None;
        self.closed_since = None;
        self.peer_was_active = peer.is_active() && peer.epoch >= self.epoch;
        if self.peer_was_active {
            self.peer_active_seen = now;
        }
        if peer.state == "standby" {
            self.peer_standby_since.get_or_insert(now);
        } else {
            self.peer_standby_since = None;
        }
        self.peer = Some(peer.clone());
        match self.state {
            HaState::Active { .. } => self.decide_while_active(now, &peer),
            HaState::Starting { .. } | HaState::Standby { .. } => {
                self.decide_while_waiting(now, &peer)
            }
        }
    }

    /// The peer did not answer a poll.
    pub fn handle_peer_unreachable(&mut self, now: Instant) {
        self.peer_standby_since = None;
        // Silence breaks a row of refusals: it proves nothing about the peer's process.
        self.refusals.clear();
        self.refusals_since = None;
        if let Some(p) = &mut self.peer {
            p.state = "unreachable".into();
        }
        if !self.is_acting() {
            if self
                .closed_since
                .is_some_and(|t| now < t + self.config.failover_timeout)
            {
                self.timers.set(Timer::Poll, now + CRASH_CONFIRM_INTERVAL);
            }
            self.check_silence(now);
        }
    }

    /// HS-8: the connection this node keeps open to its peer closed. If the peer was the ACTIVE,
    /// it may have crashed: poll it now instead of at the next `sync_interval`.
    pub fn handle_peer_closed(&mut self, now: Instant) {
        if self.config.mode == FailoverMode::Off || self.is_acting() || !self.peer_was_active {
            return;
        }
        self.closed_since.get_or_insert(now);
        self.actions
            .push_back(HaAction::PollPeer { replicate: false });
    }

    /// HS-3, AL-5: the ACTIVE peer said (on the connection this node keeps open to it) that it
    /// stored something a STANDBY replicates — an event, an alert's delivery mark, a change of
    /// the site configuration: a STANDBY replicates now instead of at the next `sync_interval`,
    /// so that what a crash of the ACTIVE would take with it is as little as one poll's worth.
    pub fn handle_peer_changed(&mut self, _now: Instant) {
        if self.config.mode == FailoverMode::Off || self.is_acting() || !self.peer_was_active {
            return;
        }
        self.actions
            .push_back(HaAction::PollPeer { replicate: true });
    }

    /// HS-8: a poll found nothing listening on the peer's port (`why`: what the connection was
    /// told, e.g. "Connection refused"). `crash_confirm` of them in a row, from a peer that was
    /// the ACTIVE, promote at once; otherwise this counts as silence.
    pub fn handle_peer_refused(&mut self, now: Instant, why: String) {
        if self.config.mode == FailoverMode::Off {
            return;
        }
        self.peer_standby_since = None;
        if let Some(p) = &mut self.peer {
            p.state = "unreachable".into();
        }
        if self.is_acting() {
            // An ACTIVE has nobody to take over from; if both acted, HS-6 settles it when the
            // peer answers again.
            return;
        }
        if self.config.crash_confirm == 0 || !self.peer_was_active {
            self.check_silence(now);
            return;
        }
        self.refusals.push(why);
        let since = *self.refusals_since.get_or_insert(now);
        if self.refusals.len() < self.config.crash_confirm as usize {
            // Confirm soon rather than at the next sync_interval.
            self.timers.set(Timer::Poll, now + CRASH_CONFIRM_INTERVAL);
            return;
        }
        let name = self
            .peer
            .as_ref()
            .map_or_else(|| "the peer".to_string(), |p| format!("peer {}", p.name));
        let mut told: Vec<&str> = self.refusals.iter().map(String::as_str).collect();
        told.dedup();
        let reason = format!(
            "{name}'s port refused {} polls in a row over {} ({}): its process is gone while its host answers (crash_confirm {}): promoting",
            self.refusals.len(),
            fmt_duration(now.saturating_duration_since(since)),
            told.join("; "),
            self.config.crash_confirm
        );
        self.refusals.clear();
        self.refusals_since = None;
        self.peer_was_active = false;
        self.promote(now, reason);
    }

    /// HS-5 manual switchback: an operator sets this (acting) server to STANDBY; the peer takes
    /// the role at once by a planned handover (HS-8).
    pub fn operator_standby(&mut self, now: Instant) -> Result<String, String> {
        self.hand_over(now, "set to STANDBY by an operator")
    }

    /// Whether this server could hand its role to the peer now (the guard of `ha standby` and of
    /// a planned stop, HS-5/HS-8), and if not, why.
    pub fn can_hand_over(&self, now: Instant) -> Result<(), String> {
        // 1. Only a server in hot standby has a peer to hand over to.
        if self.config.mode == FailoverMode::Off {
            return Err("failover mode is off: there is no peer to hand the role to".into());
        }
        // 2. Nothing to do.
        if !self.is_acting() {
            return Err(format!(
                "this server is already {}",
                self.state.as_str().to_uppercase()
            ));
        }
        // 3. The peer must be there to take over, or the site would have no acting server.
        let peer_ok = self.peer.as_ref().is_some_and(|p| p.state == "standby")
            && self
                .peer_answered
                .is_some_and(|t| now < t + self.config.failover_timeout);
        if !peer_ok {
            return Err(
                "the peer is not answering as STANDBY: stepping down would leave no acting server"
                    .into(),
            );
        }
        Ok(())
    }

    /// HS-8 planned handover (`why`: "planned stop (SIGTERM)", an operator's `ha standby`):
    /// break-before-make. This node steps down first and raises HANDOVER; the runtime then stops
    /// taking records, hands the peer what it lacks and asks it to promote
    /// ([`HaAction::HandOver`]). Refused, with the reason, when [`Self::can_hand_over`] says no.
    pub fn hand_over(&mut self, now: Instant, why: &str) -> Result<String, String> {
        self.can_hand_over(now)?;
        let peer = self.peer.as_ref().map_or("the peer", |p| p.name.as_str());
        let reason = format!(
            "{why}: handing the ACTIVE role (epoch {}) to peer {peer}",
            self.epoch
        );
        self.state = HaState::Standby { since: now };
        self.peer_was_active = false;
        self.peer_active_seen = now;
        self.handing_over = Some(now);
        self.reason = reason.clone();
        self.actions
            .push_back(HaAction::SaveEpoch { epoch: self.epoch });
        self.actions.push_back(HaAction::HandOver {
            epoch: self.epoch,
            reason: why.to_string(),
        });
        // Should the peer never take the role, silence rules as usual: this node promotes again
        // after failover_timeout (a stopping node is gone by then).
        self.timers
            .set(Timer::Decide, now + self.config.failover_timeout);
        self.events.push_back(Event::new(
            EventCode::Handover,
            self.config.name.clone(),
            reason.clone(),
        ));
        Ok(reason)
    }

    /// Whether a planned handover is under way (the runtime holds agents' redirects until the
    /// peer has taken the role).
    pub fn handing_over(&self) -> bool {
        self.handing_over.is_some()
    }

    /// HS-8: the peer's answer to [`HaAction::HandOver`]: its new epoch, or why it did not take
    /// the role (then this node acts again, with the epoch it had: nobody else took it).
    pub fn handle_handover_result(&mut self, now: Instant, result: Result<u64, String>) {
        let Some(since) = self.handing_over.take() else {
            return;
        };
        let peer = self
            .peer
            .as_ref()
            .map_or_else(|| "the peer".to_string(), |p| format!("peer {}", p.name));
        match result {
            Ok(epoch) if epoch > self.epoch => {
                self.epoch = epoch;
                self.actions.push_back(HaAction::SaveEpoch { epoch });
                if let Some(p) = &mut self.peer {
                    p.state = "active".into();
                    p.epoch = epoch;
                }
                self.peer_was_active = true;
                self.peer_active_seen = now;
                self.reason = format!(
                    "handed the ACTIVE role to {peer} in {} (epoch {epoch}): this server is STANDBY",
                    fmt_duration(now.saturating_duration_since(since))
                );
            }
            Ok(epoch) => self.resume(
                now,
                format!("{peer} answered the handover with epoch {epoch}, not above ours"),
            ),
            Err(why) => self.resume(now, format!("{peer} did not take the ACTIVE role: {why}")),
        }
    }

    fn resume(&mut self, now: Instant, what: String) {
        self.state = HaState::Active { since: now };
        self.timers.stop(Timer::Decide);
        self.reason = format!("{what}: this server stays ACTIVE (epoch {})", self.epoch);
        self.events.push_back(Event::new(
            EventCode::Handover,
            self.config.name.clone(),
            self.reason.clone(),
        ));
    }

    /// HS-8, on the STANDBY: the ACTIVE peer `from` (which has stepped down, at epoch
    /// `from.epoch`) asks this node to take the role. Promotes at once and answers the new epoch.
    pub fn handle_handover_request(
        &mut self,
        now: Instant,
        from: PeerStatus,
        why: &str,
    ) -> Result<u64, String> {
        if self.config.mode == FailoverMode::Off {
            return Err("failover mode is off on this server".into());
        }
        if self.is_acting() {
            // It may have promoted by itself already (the preferred one, seeing its peer step
            // down): past the handed-over epoch, the handover is done.
            if self.epoch > from.epoch {
                return Ok(self.epoch);
            }
            return Err(format!(
                "this server is already ACTIVE (epoch {})",
                self.epoch
            ));
        }
        if from.epoch < self.epoch {
            return Err(format!(
                "the handover is for epoch {}, below this server's {}",
                from.epoch, self.epoch
            ));
        }
        let reason = format!(
            "peer {} handed over the ACTIVE role of epoch {} ({why})",
            from.name, from.epoch
        );
        self.peer = Some(from);
        self.peer_was_active = false;
        self.refusals.clear();
        self.refusals_since = None;
        self.promote(now, reason);
        Ok(self.epoch)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(Timer::Poll, now) {
            let replicate = !self.is_acting();
            self.actions.push_back(HaAction::PollPeer { replicate });
            self.timers
                .set(Timer::Poll, now + self.config.sync_interval);
        }
        if self.timers.expired(Timer::Decide, now) && !self.is_acting() {
            self.check_silence(now);
        }
    }

    // ----- internals -----

    /// Whether this node wins a tie against `peer`: the PRIMARY, else the lower name.
    fn preferred_over(&self, peer: &PeerStatus) -> bool {
        match (self.config.mode, peer.mode) {
            (FailoverMode::Primary, FailoverMode::Secondary) => true,
            (FailoverMode::Secondary, FailoverMode::Primary) => false,
            _ => self.config.name < peer.name,
        }
    }

    fn decide_while_waiting(&mut self, now: Instant, peer: &PeerStatus) {
        // 1. An ACTIVE peer with an epoch at least ours: stay (or become) STANDBY (HS-2, HS-5).
        if peer.is_active() && peer.epoch >= self.epoch {
            self.handing_over = None;
            if peer.epoch > self.epoch {
                // Split-brain case 3: a former ACTIVE coming back (a restart after kill -9) may
                // hold records it acknowledged after the peer's last replication poll; only it
                // has them, so it hands them over as a node stepping down does (HS-5, AG-2).
                let returning = matches!(self.state, HaState::Starting { .. }) && self.epoch > 0;
                // Remembered durably, so a restart never comes back with an older epoch.
                self.epoch = peer.epoch;
                self.actions
                    .push_back(HaAction::SaveEpoch { epoch: self.epoch });
                if returning {
                    self.actions.push_back(HaAction::MergeToPeer);
                }
            }
            if !matches!(self.state, HaState::Standby { .. }) {
                self.state = HaState::Standby { since: now };
                self.reason = format!(
                    "peer {} is ACTIVE with epoch {}: this server is STANDBY",
                    peer.name, peer.epoch
                );
            }
            self.timers
                .set(Timer::Decide, now + self.config.failover_timeout);
            return;
        }
        // 2. An ACTIVE peer with a lower epoch is inconsistent (HS-4): promote past it.
        if peer.is_active() {
            let reason = format!(
                "peer {} reports ACTIVE with epoch {} below this server's {}: inconsistent state, promoting",
                peer.name, peer.epoch, self.epoch
            );
            self.promote(now, reason);
            return;
        }
        // 3. Nobody acts and this node is preferred: take the role now (HS-2, HS-5) — unless
        // it is handing the role to that peer (HS-8).
        if self.preferred_over(peer) && self.handing_over.is_none() {
            let reason = format!(
                "peer {} is {} and this server is the preferred one ({}): promoting",
                peer.name,
                peer.state.to_uppercase(),
                self.config.mode.as_str().to_uppercase()
            );
            self.promote(now, reason);
            return;
        }
        // 4. Otherwise wait for the preferred peer; silence for failover_timeout promotes us.
        self.check_silence(now);
    }

    fn decide_while_active(&mut self, now: Instant, peer: &PeerStatus) {
        if peer.is_active() {
            // HS-6: both acted during a partition. The lower epoch steps down; at equal epochs
            // the non-preferred node does.
            let we_lose =
                peer.epoch > self.epoch || (peer.epoch == self.epoch && !self.preferred_over(peer));
            if we_lose {
                let reason = format!(
                    "peer {} is also ACTIVE with epoch {} (ours {}): this server steps down and hands over its records",
                    peer.name, peer.epoch, self.epoch
                );
                self.events.push_back(Event::new(
                    EventCode::SplitBrain,
                    self.config.name.clone(),
                    reason.clone(),
                ));
                self.epoch = peer.epoch;
                self.peer_active_seen = now;
                self.demote(now, reason);
            } else if !self.split_brain_reported {
                self.split_brain_reported = true;
                let reason = format!(
                    "peer {} is also ACTIVE with epoch {} (ours {}): it steps down",
                    peer.name, peer.epoch, self.epoch
                );
                self.events.push_back(Event::new(
                    EventCode::SplitBrain,
                    self.config.name.clone(),
                    reason,
                ));
            }
            return;
        }
        self.split_brain_reported = false;
        // HS-5 option: an acting secondary hands the role back once the primary has been a
        // healthy STANDBY for hold_down.
        if let FailbackPolicy::Auto { hold_down } = self.config.failback {
            if self.config.mode == FailoverMode::Secondary && peer.mode == FailoverMode::Primary {
                if let Some(since) = self.peer_standby_since {
                    if now >= since + hold_down {
                        let reason = format!(
                            "failback auto: primary {} healthy as STANDBY for {} (hold_down {}): stepping down",
                            peer.name,
                            fmt_duration(now.saturating_duration_since(since)),
                            fmt_duration(hold_down)
                        );
                        self.demote(now, reason);
                    }
                }
            }
        }
    }

    /// HS-4: promote when no ACTIVE peer has answered for `failover_timeout`.
    fn check_silence(&mut self, now: Instant) {
        let deadline = self.peer_active_seen + self.config.failover_timeout;
        if now >= deadline {
            let what = match &self.peer {
                Some(p) if p.state == "unreachable" => format!("peer {} has not answered", p.name),
                Some(p) => format!("peer {} has not been ACTIVE", p.name),
                None => "no peer has answered".to_string(),
            };
            let reason = format!(
                "{what} for {} (failover_timeout {}): promoting",
                fmt_duration(now.saturating_duration_since(self.peer_active_seen)),
                fmt_duration(self.config.failover_timeout)
            );
            self.promote(now, reason);
        } else {
            self.timers.set(Timer::Decide, deadline);
        }
    }

    fn promote(&mut self, now: Instant, reason: String) {
        let peer_epoch = self.peer.as_ref().map_or(0, |p| p.epoch);
        let mut epoch = self.epoch.max(peer_epoch) + 1;
        // Split-brain case 5: two nodes promoting during a partition must not claim the same
        // epoch. The preferred node takes odd epochs and the other even ones, so the epoch
        // grows by one when the role alternates, by two when one node promotes twice in a row.
        let odd = match (self.config.mode, self.peer.as_ref()) {
            (FailoverMode::Off, _) => epoch % 2 == 1,
            (FailoverMode::Primary, _) => true,
            (FailoverMode::Secondary, _) => false,
        };
        if (epoch % 2 == 1) != odd {
            epoch += 1;
        }
        self.epoch = epoch;
        self.actions
            .push_back(HaAction::SaveEpoch { epoch: self.epoch });
        self.state = HaState::Active { since: now };
        self.split_brain_reported = false;
        self.handing_over = None;
        self.closed_since = None;
        self.reason = format!("{reason} (epoch {})", self.epoch);
        self.timers.stop(Timer::Decide);
        self.events.push_back(Event::new(
            EventCode::Promoted,
            self.config.name.clone(),
            self.reason.clone(),
        ));
    }

    /// Every way of stepping down (operator, auto failback, split brain) hands the peer the
    /// records this node acknowledged: the peer replicated them only up to its last poll, and
    /// once it acts it no longer pulls from us (AG-2, HS-5, HS-6).
    fn demote(&mut self, now: Instant, reason: String) {
        self.state = HaState::Standby { since: now };
        self.peer_was_active = false;
        self.reason = reason.clone();
        self.peer_active_seen = now;
        self.actions
            .push_back(HaAction::SaveEpoch { epoch: self.epoch });
        self.actions.push_back(HaAction::MergeToPeer);
        self.timers
            .set(Timer::Decide, now + self.config.failover_timeout);
        self.events.push_back(Event::new(
            EventCode::Demoted,
            self.config.name.clone(),
            reason,
        ));
    }
}
