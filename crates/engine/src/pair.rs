//! Pair supervision by the acting server (PR-1…PR-7): which member of a pair holds its duty,
//! under which pair epoch, and when it moves.
//!
//! ```text
//!            primary silent for failover_after (FAILOVER)
//!   ┌────────────┐ ───────────────────────────────────────▶ ┌──────────────┐
//!   │ primary    │  force failover (FORCED_FAILOVER)          │ secondary    │
//!   │ active     │ ◀─────────────────────────────────────── │ active       │
//!   └────────────┘  revert (REVERTED) / auto after hold_down └──────────────┘
//!         │            (PAIR_SWITCHBACK)                             │
//!         └──────── neither member reachable (PAIR_BLACKOUT) ───────┘──▶ none active
//! ```
//!
//! Every handover grows the pair epoch. A member holds the duty under a lease of
//! `failover_after` counted from its last answered heartbeat, and the server counts the same
//! `failover_after` from the last heartbeat it received, so an unreachable member has stood down
//! before the other is activated (fencing without a shared disk). A planned handover is
//! break-before-make: the old member is told to stand down first, and the new one is activated
//! when the old one confirms (or its lease has surely run out) — at most one interval is missed
//! and no check run is recorded twice (CK-3).
//!
//! | from | to | when | event |
//! |---|---|---|---|
//! | none | primary (else secondary) | a member is connected | PAIR_ACTIVE / PAIR_BLACKOUT_END |
//! | primary | secondary | primary silent for `failover_after`, secondary connected | FAILOVER |
//! | secondary | primary | secondary silent for `failover_after`, primary connected | FAILOVER |
//! | either | none | the active member silent and the other not connected | PAIR_BLACKOUT |
//! | secondary | primary | `auto`, primary healthy for `hold_down`, not held by an operator | PAIR_SWITCHBACK |
//! | primary | secondary | operator: force failover | FORCED_FAILOVER |
//! | secondary | primary | operator: revert | REVERTED |

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::agent::PairView;
use crate::event::{Event, EventCode};
use crate::fmt_duration;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    Primary,
    Secondary,
}

impl Member {
    pub fn other(self) -> Member {
        match self {
            Member::Primary => Member::Secondary,
            Member::Secondary => Member::Primary,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Member::Primary => "primary",
            Member::Secondary => "secondary",
        }
    }
    fn ix(self) -> usize {
        match self {
            Member::Primary => 0,
            Member::Secondary => 1,
        }
    }
}

/// A pair epoch, fenced by the epoch of the server that issued it: a handover decided by an
/// ACTIVE server always outranks one decided by a server it replaced (HS-6 meets PR-3), so two
/// servers acting during a partition can never issue the same epoch to two members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairEpoch {
    /// The issuing server's epoch (compared first).
    pub server: u64,
    /// The pair's own counter, grown at every handover.
    pub pair: u64,
}

impl std::fmt::Display for PairEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.pair)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchbackPolicy {
    /// Move back to the primary once it has been healthy for `hold_down`.
    Auto { hold_down: Duration },
    /// Stay on the secondary until an operator reverts.
    Manual,
}

/// PR-1: a pair as an operator defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairConfig {
    /// The alias its data is stored under, whichever member sends it.
    pub name: String,
    pub primary: String,
    pub secondary: String,
    pub failover_after: Duration,
    pub switchback: SwitchbackPolicy,
}

/// What a pair keeps across restarts and replicates to the standby server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairState {
    pub epoch: u64,
    pub active: Option<Member>,
    /// Set by force failover: auto switchback waits for a revert.
    pub held: bool,
    /// Who held the duty under each recent pair counter (the newest [`HOLDERS_KEPT`]): records
    /// under the pair's alias are checked against it (issue 12 item 3).
    pub holders: BTreeMap<u64, Member>,
}

/// How many pair counters [`PairState::holders`] remembers: far more handovers than a member can
/// sit through with records still in its cache.
pub const HOLDERS_KEPT: usize = 256;

impl PairState {
    /// `m` holds the duty under counter `epoch`.
    fn held_by(&mut self, epoch: u64, m: Member) {
        self.holders.insert(epoch, m);
        while self.holders.len() > HOLDERS_KEPT {
            self.holders.pop_first();
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairAction {
    /// Push this member its view of the pair now (a handover), instead of at its next heartbeat.
    Push { agent: String },
    /// The pair's state changed: persist it and replicate it.
    Persist,
}

#[derive(Clone, Debug, Default)]
struct Health {
    connected: bool,
    last_seen: Option<Instant>,
    up_since: Option<Instant>,
    /// What the member last said of itself: (epoch, active).
    report: Option<(PairEpoch, bool)>,
}

#[derive(Clone, Debug)]
struct Handover {
    from: Option<Member>,
    to: Member,
}

#[derive(Debug)]
pub struct Pair {
    config: PairConfig,
    state: PairState,
    handover: Option<Handover>,
    health: [Health; 2],
    degraded: Option<String>,
    blackout: bool,
    /// When this server began supervising: members get `failover_after` from then to show up.
    supervising_since: Option<Instant>,
    /// The epoch of this server while it supervises: it fences every pair epoch it issues.
    server_epoch: u64,
    /// The latest `now` seen: deadlines already handled are not reported again.
    last_tick: Option<Instant>,
    actions: VecDeque<PairAction>,
    events: VecDeque<Event>,
}

impl Pair {
    pub fn new(config: PairConfig, mut state: PairState) -> Pair {
        // A pair stored before holders were kept: its current holder is known.
        if let Some(m) = state.active {
            state.holders.entry(state.epoch).or_insert(m);
        }
        Pair {
            config,
            state,
            handover: None,
            health: Default::default(),
            degraded: None,
            blackout: false,
            supervising_since: None,
            server_epoch: 0,
            last_tick: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- getters -----

    pub fn config(&self) -> &PairConfig {
        &self.config
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    pub fn state(&self) -> &PairState {
        &self.state
    }
    /// The pair's counter, as shown to operators.
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }
    /// The full pair epoch, fenced by this server's epoch.
    pub fn pair_epoch(&self) -> PairEpoch {
        PairEpoch {
            server: self.server_epoch,
            pair: self.state.epoch,
        }
    }
    /// The member holding the duty (none during a blackout or a handover).
    pub fn active(&self) -> Option<Member> {
        if self.handover.is_some() {
            None
        } else {
            self.state.active
        }
    }
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }
    pub fn is_blackout(&self) -> bool {
        self.blackout
    }
    pub fn agent(&self, member: Member) -> &str {
        match member {
            Member::Primary => &self.config.primary,
            Member::Secondary => &self.config.secondary,
        }
    }
    pub fn member_of(&self, agent: &str) -> Option<Member> {
        if agent == self.config.primary {
            Some(Member::Primary)
        } else if agent == self.config.secondary {
            Some(Member::Secondary)
        } else {
            None
        }
    }
    /// Issue 12 item 3: may `agent` store records it made under this pair's alias while it held
    /// the duty under pair counter `epoch` (`None`: records cached by an agent older than this
    /// check)? Records are cached and may arrive long after a handover, so what counts is who
    /// held the duty under the counter they carry, not who holds it now. A counter this server
    /// never saw held (one a server it replaced gave out and did not replicate, or older than
    /// the holders kept) cannot be checked and is let through from a member; a counter held by
    /// the other member, or no counter from a member that does not hold the duty now, is
    /// refused.
    pub fn may_record(&self, agent: &str, epoch: Option<u64>) -> Result<(), String> {
        let name = &self.config.name;
        let Some(m) = self.member_of(agent) else {
            return Err(format!(
                "refused records from {agent} under pair {name}: {agent} is not a member"
            ));
        };
        let holder = |e: u64| self.state.holders.get(&e).copied();
        match epoch {
            Some(e) => match holder(e) {
                Some(h) if h != m => Err(format!(
                    "refused records from {agent} under pair {name}: made under pair epoch {e}, which {} held",
                    self.agent(h)
                )),
                _ => Ok(()),
            },
            None if self.state.active == Some(m) => Ok(()),
            None => Err(format!(
                "refused records from {agent} under pair {name}: they carry no pair epoch and {agent} does not hold the duty"
            )),
        }
    }
    pub fn is_connected(&self, member: Member) -> bool {
        self.health[member.ix()].connected
    }

    /// The pair's state for operators: normal, failed-over, degraded, handing-over, blackout, waiting.
    pub fn status(&self) -> &'static str {
        if self.blackout {
            "blackout"
        } else if self.handover.is_some() {
            "handing-over"
        } else if self.degraded.is_some() {
            "degraded"
        } else {
            match self.state.active {
                Some(Member::Primary) => "normal",
                Some(Member::Secondary) => "failed-over",
                None => "waiting",
            }
        }
    }

    /// What `member` is told about this pair.
    pub fn view(&self, member: Member) -> PairView {
        PairView {
            pair: self.config.name.clone(),
            epoch: self.pair_epoch(),
            active: self.active() == Some(member),
            lease: self.config.failover_after,
        }
    }

    pub fn poll_action(&mut self) -> Option<PairAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next moment supervision may decide something by itself.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.supervising_since?;
        let mut next: Vec<Instant> = Vec::new();
        if let Some(h) = &self.handover {
            if let Some(from) = h.from {
                next.push(self.lease_end(from, since));
            }
            next.push(since + self.config.failover_after);
        } else if let Some(m) = self.state.active {
            next.push(self.lease_end(m, since));
            if m == Member::Secondary {
                if let (SwitchbackPolicy::Auto { hold_down }, Some(up)) =
                    (self.config.switchback, self.health[0].up_since)
                {
                    next.push(up + hold_down);
                }
            }
        } else if !self.blackout {
            next.push(since + self.config.failover_after);
        }
        for h in &self.health {
            if let Some(seen) = h.last_seen {
                if h.connected {
                    next.push(seen + self.config.failover_after);
                }
            }
        }
        next.into_iter()
            .filter(|t| self.last_tick.is_none_or(|l| *t > l))
            .min()
    }

    // ----- inputs -----

    /// This server became (or stopped being) the one that supervises pairs (HS-4, HS-5).
    pub fn handle_supervising(&mut self, now: Instant, supervising: bool, server_epoch: u64) {
        self.supervising_since = supervising.then_some(now);
        self.server_epoch = server_epoch;
        self.handover = None;
        // HS-4 with PR-5: a pair stored with nobody active under an epoch was in the middle of a
        // handover when its previous supervisor stopped (a promotion, a restart). This server
        // finishes it: the duty goes where the operator sent it (the secondary while held, else
        // the primary) once the other member has surely stood down, and that member gets
        // `failover_after` to reach this server before whoever is there is picked instead.
        if supervising && self.state.active.is_none() && self.state.epoch > 0 && !self.blackout {
            let to = if self.state.held {
                Member::Secondary
            } else {
                Member::Primary
            };
            self.handover = Some(Handover {
                from: Some(to.other()),
                to,
            });
        }
        if supervising {
            self.supervise(now);
        }
    }

    /// The definition changed (an operator edited the pair, or replication brought a new copy).
    pub fn handle_config(&mut self, now: Instant, config: PairConfig, state: Option<PairState>) {
        self.config = config;
        if let Some(state) = state {
            if state.epoch > self.state.epoch {
                self.state = state;
                self.handover = None;
            }
        }
        self.supervise(now);
    }

    /// A heartbeat from a member, with what it says of itself: (epoch, active).
    pub fn handle_member_seen(
        &mut self,
        now: Instant,
        agent: &str,
        report: Option<(PairEpoch, bool)>,
    ) {
        let Some(m) = self.member_of(agent) else {
            return;
        };
        let h = &mut self.health[m.ix()];
        h.connected = true;
        h.last_seen = Some(now);
        h.up_since.get_or_insert(now);
        h.report = report;
        if let Some((epoch, active)) = report {
            // A member knows of a handover this server never saw (made by the server it
            // replaced, after the last replication): continue the counter above it, so the
            // number operators see only grows. The server epoch keeps this server's word first.
            if epoch.pair > self.state.epoch {
                self.state.epoch = epoch.pair;
                if epoch.server == self.server_epoch {
                    self.state.active = if active {
                        Some(m)
                    } else {
                        self.state.active.filter(|a| *a != m)
                    };
                    self.handover = None;
                }
                if active {
                    self.state.held_by(epoch.pair, m);
                }
                self.actions.push_back(PairAction::Persist);
            }
            let view = self.view(m);
            if (epoch, active) != (view.epoch, view.active) {
                self.actions.push_back(PairAction::Push {
                    agent: agent.to_string(),
                });
            }
        }
        self.supervise(now);
    }

    /// The member's link closed. Its lease may still run: nothing moves before `failover_after`.
    pub fn handle_member_gone(&mut self, now: Instant, agent: &str) {
        let Some(m) = self.member_of(agent) else {
            return;
        };
        let h = &mut self.health[m.ix()];
        h.connected = false;
        h.up_since = None;
        self.supervise(now);
    }

    /// PR-7: the result of a member's hook. A failed or hung hook marks the pair degraded.
    pub fn handle_hook_result(
        &mut self,
        _now: Instant,
        agent: &str,
        hook: &str,
        epoch: u64,
        result: Result<(), String>,
    ) {
        match result {
            Err(why) => {
                let reason = format!("{hook} hook on {agent} failed (pair epoch {epoch}): {why}");
                self.degraded = Some(reason.clone());
                self.events.push_back(Event::new(
                    EventCode::HookFailed,
                    self.config.name.clone(),
                    reason,
                ));
            }
            Ok(()) => {
                if epoch >= self.state.epoch {
                    self.degraded = None;
                }
            }
        }
    }

    /// PR-5: move a healthy pair to its secondary. Guards in order, each with its reason.
    pub fn force_failover(&mut self, now: Instant) -> Result<String, String> {
        self.operator_guard(now, Member::Secondary)?;
        self.state.held = true;
        let reason = format!(
            "operator forced failover to the secondary {} (pair epoch {})",
            self.config.secondary,
            self.state.epoch + 1
        );
        self.begin_handover(
            now,
            Member::Secondary,
            EventCode::ForcedFailover,
            reason.clone(),
        );
        Ok(reason)
    }

    /// PR-5: move the pair back to its primary.
    pub fn revert(&mut self, now: Instant) -> Result<String, String> {
        self.operator_guard(now, Member::Primary)?;
        self.state.held = false;
        let reason = format!(
            "operator reverted to the primary {} (pair epoch {})",
            self.config.primary,
            self.state.epoch + 1
        );
        self.begin_handover(now, Member::Primary, EventCode::Reverted, reason.clone());
        Ok(reason)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.supervise(now);
    }

    /// PR-5, dry run: whether [`Pair::force_failover`] would be allowed now, and if not the
    /// sentence it would refuse with (the same guard decides both, so a button, its tooltip
    /// and the refusal never differ).
    pub fn can_force_failover(&self, now: Instant) -> Result<(), String> {
        self.operator_guard(now, Member::Secondary)
    }

    /// PR-5, dry run of [`Pair::revert`].
    pub fn can_revert(&self, now: Instant) -> Result<(), String> {
        self.operator_guard(now, Member::Primary)
    }

    // ----- internals -----

    fn operator_guard(&self, now: Instant, target: Member) -> Result<(), String> {
        let agent = self.agent(target);
        // 1. Only the acting server moves pairs.
        if self.supervising_since.is_none() {
            return Err("this server is not the acting server of the site".into());
        }
        // 2. One handover at a time.
        if self.handover.is_some() {
            return Err(format!(
                "a handover of {} is already under way",
                self.config.name
            ));
        }
        // 3. Nothing to do.
        if self.state.active == Some(target) {
            return Err(format!(
                "{} is already active on the {} {agent}",
                self.config.name,
                target.as_str()
            ));
        }
        // 4. The target must be there to take the duty.
        if !self.alive(target, now) {
            return Err(format!("the {} {agent} is not connected", target.as_str()));
        }
        Ok(())
    }

    /// A member counts as alive when connected and heard within `failover_after`.
    fn alive(&self, m: Member, now: Instant) -> bool {
        let h = &self.health[m.ix()];
        h.connected
            && h.last_seen
                .is_some_and(|t| now < t + self.config.failover_after)
    }

    /// When a member's lease has surely run out: `failover_after` after the server last heard
    /// it, and never earlier than `failover_after` after supervision began.
    fn lease_end(&self, m: Member, since: Instant) -> Instant {
        let seen = self.health[m.ix()]
            .last_seen
            .map_or(since, |t| t.max(since));
        seen + self.config.failover_after
    }

    fn silent_for(&self, m: Member, now: Instant) -> String {
        match self.health[m.ix()].last_seen {
            Some(t) => fmt_duration(now.saturating_duration_since(t)),
            None => "its whole start-up".into(),
        }
    }

    fn begin_handover(&mut self, now: Instant, to: Member, code: EventCode, reason: String) {
        self.state.epoch += 1;
        let from = self.state.active.take();
        self.handover = Some(Handover { from, to });
        self.events
            .push_back(Event::new(code, self.config.name.clone(), reason));
        self.actions.push_back(PairAction::Persist);
        if let Some(from) = from {
            self.actions.push_back(PairAction::Push {
                agent: self.agent(from).to_string(),
            });
        }
        self.supervise(now);
    }

    fn activate(&mut self, m: Member, code: EventCode, reason: String) {
        self.state.epoch += 1;
        self.state.active = Some(m);
        self.state.held_by(self.state.epoch, m);
        self.handover = None;
        self.blackout = false;
        self.events
            .push_back(Event::new(code, self.config.name.clone(), reason));
        self.actions.push_back(PairAction::Persist);
        self.actions.push_back(PairAction::Push {
            agent: self.agent(m).to_string(),
        });
        self.actions.push_back(PairAction::Push {
            agent: self.agent(m.other()).to_string(),
        });
    }

    /// One supervision step. Guard clauses in a fixed order; each move carries its reason.
    fn supervise(&mut self, now: Instant) {
        self.last_tick = Some(self.last_tick.map_or(now, |l| l.max(now)));
        let Some(since) = self.supervising_since else {
            return;
        };
        let fa = fmt_duration(self.config.failover_after);

        // 1. A planned handover completes when the old member confirmed it stood down under
        //    the new epoch, or its lease has surely run out (it died meanwhile).
        if let Some(h) = self.handover.clone() {
            let done = match h.from {
                None => true,
                Some(from) => {
                    let current = self.pair_epoch();
                    let confirmed =
                        matches!(self.health[from.ix()].report, Some((e, false)) if e >= current);
                    confirmed || now >= self.lease_end(from, since)
                }
            };
            // A handover taken over at the start of supervision waits for its target to reach
            // this server (at most `failover_after`); one begun here found it connected.
            let target_due = self.alive(h.to, now) || now >= since + self.config.failover_after;
            if !done || !target_due {
                return;
            }
            self.handover = None;
            if self.alive(h.to, now) {
                self.state.active = Some(h.to);
                self.state.held_by(self.state.epoch, h.to);
                self.actions.push_back(PairAction::Persist);
                self.actions.push_back(PairAction::Push {
                    agent: self.agent(h.to).to_string(),
                });
            }
            // Otherwise the target vanished meanwhile: step 3 picks whoever is there.
        }

        // 2. The holder fell silent: its lease has run out, so the other may take over (PR-3),
        //    or nobody can (PR-6).
        if let Some(m) = self.state.active {
            if now >= self.lease_end(m, since) {
                let other = m.other();
                if self.alive(other, now) {
                    let reason = format!(
                        "{} {} silent for {} (failover_after {fa}): {} {} activated under pair epoch {}",
                        m.as_str(),
                        self.agent(m),
                        self.silent_for(m, now),
                        other.as_str(),
                        self.agent(other),
                        self.state.epoch + 1
                    );
                    self.activate(other, EventCode::Failover, reason);
                } else {
                    self.state.active = None;
                    self.enter_blackout(now);
                }
                return;
            }
        }

        // 3. Nobody holds the duty: give it to the primary if it is there, else the secondary.
        if self.state.active.is_none() && self.handover.is_none() {
            let pick = [Member::Primary, Member::Secondary]
                .into_iter()
                .find(|m| self.alive(*m, now));
            // At start-up the primary gets `failover_after` to show up before the secondary is
            // activated, so a site that boots in any order does not begin with a handover.
            let first_start =
                !self.blackout && self.state.epoch == 0 && now < since + self.config.failover_after;
            let pick = pick.filter(|m| *m == Member::Primary || !first_start);
            match pick {
                Some(m) => {
                    let (code, what) = if self.blackout {
                        (EventCode::PairBlackoutEnd, "reachable again")
                    } else {
                        (EventCode::PairActive, "connected")
                    };
                    let reason = format!(
                        "{} {} {what}: activated under pair epoch {}",
                        m.as_str(),
                        self.agent(m),
                        self.state.epoch + 1
                    );
                    self.activate(m, code, reason);
                }
                None if now >= since + self.config.failover_after => self.enter_blackout(now),
                None => {}
            }
            return;
        }

        // 4. PR-4: auto switchback once the primary has been healthy for hold_down, unless an
        //    operator holds the pair on the secondary (force failover).
        if self.state.active == Some(Member::Secondary)
            && self.handover.is_none()
            && !self.state.held
        {
            if let SwitchbackPolicy::Auto { hold_down } = self.config.switchback {
                let up = self.health[0].up_since;
                if self.alive(Member::Primary, now) && up.is_some_and(|t| now >= t + hold_down) {
                    let reason = format!(
                        "primary {} healthy for {} (hold_down {}): switching back under pair epoch {}",
                        self.config.primary,
                        fmt_duration(now.saturating_duration_since(up.unwrap_or(now))),
                        fmt_duration(hold_down),
                        self.state.epoch + 1
                    );
                    self.begin_handover(now, Member::Primary, EventCode::PairSwitchback, reason);
                }
            }
        }
    }

    fn enter_blackout(&mut self, _now: Instant) {
        if self.blackout {
            return;
        }
        self.blackout = true;
        self.actions.push_back(PairAction::Persist);
        let reason = format!(
            "neither {} nor {} is reachable (failover_after {})",
            self.config.primary,
            self.config.secondary,
            fmt_duration(self.config.failover_after)
        );
        self.events.push_back(Event::new(
            EventCode::PairBlackout,
            self.config.name.clone(),
            reason,
        ));
    }
}
