//! What the acting server watches to raise alerts (PRODUCT.md AL-2, AL-3, AL-6): the state of
//! each check, fed by the check records it stores, and how long ago it heard each accepted agent.
//!
//! ```text
//!   check series (AL-2), one per check name (a pair's check is one series under its alias,
//!   whichever member ran it)
//!              fail_after failed runs in a row (CHECK_DOWN)
//!   ┌────────┐ ──────────────────────────────────▶ ┌──────┐
//!   │unknown │                                     │ down │
//!   │  / up  │ ◀────────────────────────────────── └──────┘
//!   └────────┘   ok_after good runs in a row (CHECK_UP)
//!   6 changes within 10 minutes: CHECK_FLAPPING once; further changes are held until the
//!   check has kept one state for 10 minutes, then the state it settled in is told if it
//!   differs from the last one told.
//!
//!   agents (AL-3): heard (hello, heartbeat, record) ──silent_after──▶ silent (AGENT_SILENT)
//!                  silent ──heard again──▶ heard (AGENT_BACK)
//!   AL-6: silences are held for one group_wait; when more than half of the accepted agents
//!   fell silent within it, one SITE_OUTAGE replaces their AGENT_SILENT events.
//! ```
//!
//! | from | to | when | event |
//! |---|---|---|---|
//! | unknown | up | `ok_after` good runs in a row | — (a first state is not news) |
//! | unknown / up | down | `fail_after` failed runs in a row | CHECK_DOWN |
//! | down | up | `ok_after` good runs in a row | CHECK_UP |
//! | any | flapping | the 6th change within 10 minutes | CHECK_FLAPPING |
//! | flapping | up / down | no change for 10 minutes | CHECK_UP / CHECK_DOWN if it differs from the last told |
//! | heard | silent | not heard for `silent_after` | AGENT_SILENT (after `group_wait`) |
//! | silent | heard | heard again | AGENT_BACK |
//! | heard | silent (outage) | more than half of the accepted agents silent within `group_wait` | SITE_OUTAGE |
//!
//! Only the acting server watches: a STANDBY holds no series and no silences, and a server that
//! becomes acting starts every accepted agent's `silent_after` from that moment (HS-4: agents
//! need a moment to move to it). What it does keep is what the operator was last told about
//! each check (the CHECK_DOWN / CHECK_UP events it stored or replicated, fed by the runtime):
//! a server that becomes acting — after a planned handover or a crash of the ACTIVE — starts
//! each check's series in that state, so a check already told DOWN is not raised again and
//! comes UP after `ok_after` good runs (AL-2: a handover neither resets nor doubles its state).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{Event, EventCode};
use crate::fmt_duration;

/// AL-2: this many changes within [`FLAP_WINDOW`] make a check flap.
pub const FLAP_CHANGES: usize = 6;
/// AL-2: the window changes are counted in, and how long a flapping check must keep one state.
pub const FLAP_WINDOW: Duration = Duration::from_secs(600);

/// The watch's settings (`server.silent_after`, `alert.group_wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// AL-3: an accepted agent not heard for this long is silent.
    pub silent_after: Duration,
    /// AL-6: silences within this window are counted together.
    pub group_wait: Duration,
}

/// AL-2: how many runs in a row change a check's state (per check; `check add --fail-after N
/// --ok-after N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub fail_after: u32,
    pub ok_after: u32,
}

/// A check's state as told to the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    Unknown,
    Up,
    Down,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Unknown => "unknown",
            CheckState::Up => "up",
            CheckState::Down => "down",
        }
    }
}

#[derive(Clone, Debug)]
struct Series {
    /// The state the runs say (changes while flapping too).
    state: CheckState,
    /// The last state told by an event (what the operator believes).
    told: CheckState,
    fails: u32,
    oks: u32,
    /// When the state changed, within the last [`FLAP_WINDOW`].
    changes: VecDeque<Instant>,
    /// Flapping since the last change at this instant: held until it is [`FLAP_WINDOW`] old.
    flapping: Option<Instant>,
}

impl Series {
    /// A series that starts in the state last told (no runs counted yet).
    fn told(state: CheckState) -> Series {
        Series {
            state,
            told: state,
            fails: 0,
            oks: 0,
            changes: VecDeque::new(),
            flapping: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Heard {
    at: Instant,
    /// Where it was last heard (the runtime's words: an address and a wall-clock time).
    seen: String,
    silent: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Watch {
    config: Option<WatchConfig>,
    acting: bool,
    series: BTreeMap<String, Series>,
    /// AL-2: the state last told about each check, by this server or its peer (kept while not
    /// acting too): where a series starts when this server becomes acting.
    told: BTreeMap<String, CheckState>,
    agents: BTreeMap<String, Heard>,
    /// AL-6: agents fallen silent in the open window, and when it closes.
    window: Option<(Instant, Vec<String>)>,
    events: VecDeque<Event>,
}

impl Watch {
    pub fn new(config: WatchConfig) -> Watch {
        Watch {
            config: Some(config),
            ..Watch::default()
        }
    }

    fn config(&self) -> WatchConfig {
        self.config.unwrap_or(WatchConfig {
            silent_after: Duration::from_secs(120),
            group_wait: Duration::from_secs(10),
        })
    }

    pub fn set_config(&mut self, config: WatchConfig) {
        self.config = Some(config);
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The state of a check as last told, for status views.
    pub fn check_state(&self, check: &str) -> CheckState {
        self.series
            .get(check)
            .map_or(CheckState::Unknown, |s| s.told)
    }

    /// AL-2: a CHECK_DOWN (`down`) or CHECK_UP about `check` was stored — raised by this
    /// server, replicated from the ACTIVE peer, handed over by it, or read from the store at
    /// start-up. Remembered while not acting; an acting server that has no series for the check
    /// yet starts it there; a series it already watches is left as it is (its own runs decide).
    pub fn handle_told(&mut self, check: &str, down: bool) {
        let state = if down {
            CheckState::Down
        } else {
            CheckState::Up
        };
        self.told.insert(check.to_string(), state);
        if self.acting && !self.series.contains_key(check) {
            self.series.insert(check.to_string(), Series::told(state));
        }
    }

    /// Whether an accepted agent is silent now (AL-3).
    pub fn is_silent(&self, agent: &str) -> bool {
        self.agents.get(agent).is_some_and(|h| h.silent)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.acting {
            return None;
        }
        let silent_after = self.config().silent_after;
        let silences = self
            .agents
            .values()
            .filter(|h| !h.silent)
            .map(|h| h.at + silent_after);
        let flaps = self
            .series
            .values()
            .filter_map(|s| s.flapping.map(|at| at + FLAP_WINDOW));
        let window = self.window.as_ref().map(|w| w.0);
        silences.chain(flaps).chain(window).min()
    }

    /// The server became acting (or stopped): a STANDBY watches nothing, and a new ACTIVE gives
    /// every accepted agent `silent_after` from now to reach it.
    pub fn handle_acting(&mut self, now: Instant, acting: bool, accepted: &[String]) {
        if acting == self.acting {
            return;
        }
        self.acting = acting;
        self.series.clear();
        self.window = None;
        self.agents.clear();
        if acting {
            // AL-2: each check starts where the operator was last told it is (by whichever
            // server told it): a check already DOWN is not raised again.
            for (check, state) in &self.told {
                self.series.insert(check.clone(), Series::told(*state));
            }
            self.handle_accepted(now, accepted);
        }
    }

    /// The accepted agents (after an enrollment, a rejection or a replicated change): new ones
    /// are watched from now, forgotten ones no longer.
    pub fn handle_accepted(&mut self, now: Instant, accepted: &[String]) {
        if !self.acting {
            return;
        }
        self.agents.retain(|name, _| accepted.contains(name));
        for name in accepted {
            self.agents.entry(name.clone()).or_insert_with(|| Heard {
                at: now,
                seen: "never by this server (watched since it became acting)".into(),
                silent: false,
            });
        }
    }

    /// AL-3: an accepted agent was heard (a hello, a heartbeat or a record); `seen` says where
    /// and when, in the runtime's words.
    pub fn handle_heard(&mut self, now: Instant, agent: &str, seen: &str) {
        if !self.acting {
            return;
        }
        let Some(heard) = self.agents.get_mut(agent) else {
            return;
        };
        let was_silent = heard.silent;
        let silent_for = now.saturating_duration_since(heard.at);
        heard.at = now;
        heard.seen = seen.to_string();
        heard.silent = false;
        if let Some((_, names)) = &mut self.window {
            if let Some(i) = names.iter().position(|n| n == agent) {
                // Back within the window: its silence was never told, so neither is this.
                names.remove(i);
                return;
            }
        }
        if was_silent {
            self.events.push_back(Event::new(
                EventCode::AgentBack,
                agent,
                format!(
                    "{agent} is heard again after {} of silence ({seen})",
                    fmt_duration(round_ms(silent_for))
                ),
            ));
        }
    }

    /// AL-2: one run of a check, as stored (the caller feeds each stored record once).
    pub fn handle_check_result(
        &mut self,
        now: Instant,
        check: &str,
        thresholds: Thresholds,
        up: bool,
        detail: &str,
    ) {
        if !self.acting {
            return;
        }
        let series = self
            .series
            .entry(check.to_string())
            .or_insert_with(|| Series::told(CheckState::Unknown));
        if up {
            series.oks = series.oks.saturating_add(1);
            series.fails = 0;
        } else {
            series.fails = series.fails.saturating_add(1);
            series.oks = 0;
        }
        let fail_after = thresholds.fail_after.max(1);
        let ok_after = thresholds.ok_after.max(1);
        let next = match series.state {
            CheckState::Down if series.oks >= ok_after => CheckState::Up,
            CheckState::Unknown if series.oks >= ok_after => CheckState::Up,
            CheckState::Up | CheckState::Unknown if series.fails >= fail_after => CheckState::Down,
            same => same,
        };
        if next == series.state {
            return;
        }
        let from = series.state;
        series.state = next;
        let reason = match next {
            CheckState::Down => format!(
                "{check} failed {} times in a row: {}",
                series.fails,
                detail.strip_prefix("down: ").unwrap_or(detail)
            ),
            _ => format!("{check} is up again: {} good runs in a row", series.oks),
        };
        if from == CheckState::Unknown && next == CheckState::Up {
            // A first state is not news.
            series.told = CheckState::Up;
            self.told.insert(check.to_string(), CheckState::Up);
            return;
        }
        while series
            .changes
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= FLAP_WINDOW)
        {
            series.changes.pop_front();
        }
        series.changes.push_back(now);
        if series.flapping.is_some() {
            // Held: told when it has been stable for FLAP_WINDOW.
            series.flapping = Some(now);
            return;
        }
        if series.changes.len() >= FLAP_CHANGES {
            series.flapping = Some(now);
            self.events.push_back(Event::new(
                EventCode::CheckFlapping,
                check,
                format!(
                    "{check} changed state {} times within {}; further changes are held until it is stable for {}",
                    series.changes.len(),
                    fmt_duration(FLAP_WINDOW),
                    fmt_duration(FLAP_WINDOW)
                ),
            ));
            return;
        }
        series.told = next;
        self.told.insert(check.to_string(), next);
        let code = match next {
            CheckState::Down => EventCode::CheckDown,
            _ => EventCode::CheckUp,
        };
        self.events.push_back(Event::new(code, check, reason));
    }

    /// A check was removed: its series goes with it.
    pub fn handle_check_removed(&mut self, check: &str) {
        self.series.remove(check);
        self.told.remove(check);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.acting {
            return;
        }
        let config = self.config();
        // AL-2: a flapping check stable for FLAP_WINDOW is told again if it settled elsewhere.
        for (name, series) in self.series.iter_mut() {
            let Some(since) = series.flapping else {
                continue;
            };
            if now.saturating_duration_since(since) < FLAP_WINDOW {
                continue;
            }
            series.flapping = None;
            series.changes.clear();
            if series.state != series.told && series.state != CheckState::Unknown {
                series.told = series.state;
                self.told.insert(name.clone(), series.state);
                let (code, word) = match series.state {
                    CheckState::Down => (EventCode::CheckDown, "down"),
                    _ => (EventCode::CheckUp, "up"),
                };
                self.events.push_back(Event::new(
                    code,
                    name.as_str(),
                    format!(
                        "{name} stopped flapping: {word} for {}",
                        fmt_duration(FLAP_WINDOW)
                    ),
                ));
            }
        }
        // AL-3: agents not heard for silent_after fall silent, into the AL-6 window.
        let mut fallen = Vec::new();
        for (name, heard) in self.agents.iter_mut() {
            if !heard.silent && now.saturating_duration_since(heard.at) >= config.silent_after {
                heard.silent = true;
                fallen.push(name.clone());
            }
        }
        if !fallen.is_empty() {
            let window = self
                .window
                .get_or_insert_with(|| (now + config.group_wait, Vec::new()));
            window.1.extend(fallen);
        }
        if self.window.as_ref().is_some_and(|w| w.0 <= now) {
            self.close_window();
        }
    }

    /// AL-6: the silences of one group_wait, told as one SITE_OUTAGE when they are more than
    /// half of the accepted agents (and at least two), else one by one.
    fn close_window(&mut self) {
        let Some((_, names)) = self.window.take() else {
            return;
        };
        if names.is_empty() {
            return;
        }
        let accepted = self.agents.len();
        let silent_after = fmt_duration(self.config().silent_after);
        let group_wait = fmt_duration(self.config().group_wait);
        // One silent agent is that agent's trouble, even when it is the only one.
        if names.len() >= 2 && names.len() * 2 > accepted {
            let listed: BTreeSet<&str> = names.iter().map(String::as_str).collect();
            let shown: Vec<&str> = listed.iter().take(20).copied().collect();
            let more = listed.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            self.events.push_back(Event::new(
                EventCode::SiteOutage,
                "site",
                format!(
                    "{} of {accepted} agents fell silent within {group_wait} ({}{tail}): the likelier cause is this server's own network",
                    names.len(),
                    shown.join(", ")
                ),
            ));
            return;
        }
        for name in names {
            let seen = self
                .agents
                .get(&name)
                .map_or(String::new(), |h| h.seen.clone());
            self.events.push_back(Event::new(
                EventCode::AgentSilent,
                name.as_str(),
                format!("{name} not heard for {silent_after}; last seen {seen}"),
            ));
        }
    }
}

/// Durations in reasons are told to the millisecond.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
