//! Which events become desktop notifications and how bursts are coalesced (UI-2): every event of
//! a notified code that arrives within one window (1 s) after the first of a burst is grouped per
//! code into one notice that says how many ("50 agents switched over").
//! Pure: the caller passes `now` and sleeps until `deadline()` — timers are data, as in the engine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use understudy_api::status::DesktopMessage;
use understudy_api::ChannelSpec;
use understudy_engine::{EventCode, Severity};

/// How long a burst is collected before its notices go out.
pub const WINDOW: Duration = Duration::from_secs(1);

/// One event as listed by `GET /api/events`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Event {
    pub id: u64,
    #[serde(default)]
    pub time_ms: u64,
    pub code: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub sentence: String,
}

/// One desktop notification to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub code: String,
    pub count: usize,
    pub summary: String,
    pub body: String,
    /// Red (critical) for losses of service, so the platform keeps them on screen.
    pub critical: bool,
}

/// How a burst of n events of a code is said. Wording only: which codes notify, their titles and
/// whether they are critical come from the engine's event table ([`EventCode`]), so the tray
/// cannot drift from it (it once left out SPLIT_BRAIN and PAIR_BLACKOUT_END).
const BURSTS: &[(&str, &str)] = &[
    ("SWITCHOVER", "{n} agents switched over to a standby server"),
    (
        "SWITCHBACK",
        "{n} agents switched back to their home server",
    ),
    ("BLACKOUT", "{n} agents reach no server (blackout)"),
    ("BLACKOUT_END", "{n} agents reach a server again"),
    ("FAILOVER", "{n} pairs failed over to their secondary"),
    (
        "PAIR_SWITCHBACK",
        "{n} pairs switched back to their primary",
    ),
    (
        "FORCED_FAILOVER",
        "{n} pairs were forced to their secondary",
    ),
    ("REVERTED", "{n} pairs were reverted to their primary"),
    ("PAIR_BLACKOUT", "{n} pairs have no reachable member"),
    ("PROMOTED", "{n} promotions to ACTIVE"),
    ("DEMOTED", "{n} demotions to STANDBY"),
    (
        "HANDOVER",
        "{n} planned handovers between the hot-standby servers",
    ),
    ("AGENT_PENDING", "{n} agents are waiting to be accepted"),
    ("CERT_GENERATED", "{n} certificates were generated"),
    ("HOOK_FAILED", "{n} hooks failed"),
    (
        "SPLIT_BRAIN",
        "{n} split brains between the hot-standby servers",
    ),
    (
        "PAIR_BLACKOUT_END",
        "{n} pairs have a reachable member again",
    ),
    (
        "HELD_DROPPED",
        "{n} agents let go of records held for their home server",
    ),
    ("CHECK_REFUSED", "{n} checks were refused by their agents"),
    ("CHECK_DOWN", "{n} checks are down"),
    ("CHECK_UP", "{n} checks are up again"),
    ("CHECK_FLAPPING", "{n} checks are flapping"),
    ("AGENT_SILENT", "{n} agents fell silent"),
    ("AGENT_BACK", "{n} silent agents are heard again"),
    (
        "SITE_OUTAGE",
        "{n} site outages: most agents fell silent together",
    ),
    ("DELIVERY_FAILED", "{n} alert deliveries failed"),
    (
        "FORWARD_REJECTED",
        "{n} batches of records were rejected by the remote-write receiver",
    ),
];

/// True for the codes the engine marks as notifying (UI-2); every other code is only listed.
pub fn is_notified(code: &str) -> bool {
    EventCode::parse(code).is_some_and(EventCode::notify)
}

/// AL-7: whether this desktop is told of an event's alert by a `desktop` alert channel (this
/// node acts and one of the site's desktop channels takes the code, by the channel's own filter,
/// [`understudy_api::ChannelSpec::accepts`]): it is then shown as the channel's message, grouped
/// like every channel's, and not a second time from the event log.
pub fn taken_by_desktop_channel(acting: bool, channels: &[ChannelSpec], code: &str) -> bool {
    let Some(code) = EventCode::parse(code).filter(|c| c.notify()) else {
        return false;
    };
    acting
        && channels
            .iter()
            .any(|c| c.kind == "desktop" && c.accepts(code.as_str(), code.severity().into()))
}

/// AL-7: a desktop channel's message as a notification: the sender's title and text, critical
/// when its worst alert is.
pub fn desktop_notice(m: &DesktopMessage) -> Notice {
    Notice {
        code: m.channel.clone(),
        count: m.alerts.len(),
        summary: m.title.clone(),
        body: m.text.clone(),
        critical: m.severity == understudy_api::Severity::Critical,
    }
}

/// How many subjects a burst's body names before "and N more".
const NAMED: usize = 5;

/// Collects events and hands out coalesced notices.
///
/// Calling contract: `handle_events` with every new batch (in id order), then `poll_notices(now)`
/// whenever `deadline()` has passed; calling `poll_notices` early returns nothing and is harmless.
#[derive(Debug, Default)]
pub struct Coalescer {
    /// When the current burst's first event arrived.
    burst_started: Option<Instant>,
    /// Events of the current burst, per code in order of first arrival.
    pending: Vec<(String, Vec<Event>)>,
}

impl Coalescer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn handle_events(&mut self, events: impl IntoIterator<Item = Event>, now: Instant) {
        for event in events.into_iter().filter(|e| is_notified(&e.code)) {
            self.burst_started.get_or_insert(now);
            match self
                .pending
                .iter_mut()
                .find(|(code, _)| *code == event.code)
            {
                Some((_, list)) => list.push(event),
                None => self.pending.push((event.code.clone(), vec![event])),
            }
        }
    }

    /// When the current burst is due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.burst_started.map(|t| t + WINDOW)
    }

    /// The notices of the current burst once its window has passed, one per code.
    pub fn poll_notices(&mut self, now: Instant) -> Vec<Notice> {
        match self.deadline() {
            Some(due) if now >= due => {}
            _ => return Vec::new(),
        }
        self.burst_started = None;
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(code, events)| notice(&code, &events))
            .collect()
    }
}

fn notice(code: &str, events: &[Event]) -> Notice {
    let known = EventCode::parse(code);
    let title: &str = match known {
        Some(c) => c.title(),
        None => code,
    };
    let critical = known.is_some_and(|c| c.severity() == Severity::Critical);
    let burst = BURSTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("{n} events", |(_, b)| *b);
    let count = events.len();
    let (summary, body) = if count == 1 {
        let e = &events[0];
        // The sentence, led by its subject when it does not name it ("web: operator forced
        // failover to the secondary a2"): a notification must say which pair or agent it is about.
        let body = if e.sentence.is_empty() {
            e.subject.clone()
        } else if e.subject.is_empty() || e.sentence.contains(&e.subject) {
            e.sentence.clone()
        } else {
            format!("{}: {}", e.subject, e.sentence)
        };
        (title.to_string(), body)
    } else {
        // Distinct subjects, in order, so "web-1 switched over" twice names web-1 once.
        let mut seen = BTreeMap::new();
        let subjects: Vec<&str> = events
            .iter()
            .map(|e| e.subject.as_str())
            .filter(|s| !s.is_empty() && seen.insert(*s, ()).is_none())
            .collect();
        let mut body = burst.replace("{n}", &count.to_string());
        if !subjects.is_empty() {
            let named = subjects
                .iter()
                .take(NAMED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            body.push_str(&format!(": {named}"));
            if subjects.len() > NAMED {
                body.push_str(&format!(" and {} more", subjects.len() - NAMED));
            }
        }
        (format!("{title} ×{count}"), body)
    };
    Notice {
        code: code.to_string(),
        count,
        summary,
        body,
        critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, code: &str, subject: &str) -> Event {
        Event {
            id,
            time_ms: 0,
            code: code.into(),
            subject: subject.into(),
            sentence: format!("{subject} did {code}."),
        }
    }

    #[test]
    fn fifty_switchovers_in_one_window_give_one_notice_that_says_fifty() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        for i in 0..50u64 {
            c.handle_events(
                [ev(i, "SWITCHOVER", &format!("agent-{i}"))],
                t0 + Duration::from_millis(i * 10),
            );
        }
        assert_eq!(
            c.poll_notices(t0 + Duration::from_millis(999)),
            vec![],
            "window not over yet"
        );
        let notices = c.poll_notices(t0 + WINDOW);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].count, 50);
        assert_eq!(notices[0].summary, "Switchover ×50");
        assert_eq!(
            notices[0].body,
            "50 agents switched over to a standby server: agent-0, agent-1, agent-2, agent-3, agent-4 and 45 more"
        );
        assert_eq!(c.deadline(), None, "burst done");
    }

    #[test]
    fn a_single_event_uses_its_own_sentence() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.handle_events([ev(7, "CERT_GENERATED", "srv-a")], t0);
        let n = c.poll_notices(t0 + WINDOW);
        assert_eq!(
            n,
            vec![Notice {
                code: "CERT_GENERATED".into(),
                count: 1,
                summary: "New certificate".into(),
                body: "srv-a did CERT_GENERATED.".into(),
                critical: false,
            }]
        );
    }

    #[test]
    fn a_single_event_names_its_subject_when_the_sentence_does_not() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        let mut e = ev(8, "FORCED_FAILOVER", "web");
        e.sentence = "operator forced failover to the secondary a2 (pair epoch 2)".into();
        c.handle_events([e], t0);
        let n = c.poll_notices(t0 + WINDOW);
        assert_eq!(n[0].summary, "Forced failover");
        assert_eq!(
            n[0].body,
            "web: operator forced failover to the secondary a2 (pair epoch 2)"
        );
    }

    #[test]
    fn a_burst_is_grouped_per_code_in_order_of_first_arrival() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.handle_events(
            [
                ev(1, "BLACKOUT", "a"),
                ev(2, "FAILOVER", "web"),
                ev(3, "BLACKOUT", "b"),
                ev(4, "FAILOVER", "db"),
            ],
            t0,
        );
        let n = c.poll_notices(t0 + WINDOW);
        assert_eq!(
            n.iter()
                .map(|n| (n.code.as_str(), n.count))
                .collect::<Vec<_>>(),
            [("BLACKOUT", 2), ("FAILOVER", 2)]
        );
        assert!(n[0].critical);
        assert_eq!(n[1].body, "2 pairs failed over to their secondary: web, db");
    }

    #[test]
    fn events_after_the_window_start_a_new_burst() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.handle_events([ev(1, "SWITCHOVER", "a")], t0);
        assert_eq!(c.poll_notices(t0 + WINDOW).len(), 1);
        let t1 = t0 + Duration::from_secs(5);
        c.handle_events([ev(2, "SWITCHOVER", "b")], t1);
        assert_eq!(c.deadline(), Some(t1 + WINDOW));
        let n = c.poll_notices(t1 + WINDOW);
        assert_eq!((n[0].count, n[0].body.as_str()), (1, "b did SWITCHOVER."));
    }

    #[test]
    fn codes_that_are_not_notified_are_ignored() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.handle_events([ev(1, "STAGED", "a"), ev(2, "RECORD_STORED", "b")], t0);
        assert_eq!(c.deadline(), None);
        assert!(c.poll_notices(t0 + WINDOW).is_empty());
        for code in [
            "SWITCHOVER",
            "SWITCHBACK",
            "BLACKOUT",
            "BLACKOUT_END",
            "FAILOVER",
            "PAIR_SWITCHBACK",
            "FORCED_FAILOVER",
            "REVERTED",
            "PAIR_BLACKOUT",
            "PROMOTED",
            "DEMOTED",
            "AGENT_PENDING",
            "CERT_GENERATED",
            "HOOK_FAILED",
        ] {
            assert!(is_notified(code), "{code}");
        }
    }

    #[test]
    fn repeated_subjects_are_named_once() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.handle_events(
            [ev(1, "HOOK_FAILED", "web"), ev(2, "HOOK_FAILED", "web")],
            t0,
        );
        assert_eq!(c.poll_notices(t0 + WINDOW)[0].body, "2 hooks failed: web");
    }

    #[test]
    fn ui2_the_tray_notifies_exactly_the_codes_the_engine_marks_notify() {
        for code in EventCode::ALL {
            assert_eq!(
                is_notified(code.as_str()),
                code.notify(),
                "{code}: the tray and the engine disagree"
            );
            if code.notify() {
                assert!(
                    BURSTS.iter().any(|(c, _)| *c == code.as_str()),
                    "{code} notifies but has no burst wording"
                );
            }
        }
        assert!(!is_notified("NOT_A_CODE"));
    }

    #[test]
    fn hs6_a_split_brain_raises_a_critical_notice() {
        let t0 = Instant::now();
        let mut c = Coalescer::new();
        c.handle_events([ev(1, "SPLIT_BRAIN", "s1")], t0);
        let n = c.poll_notices(t0 + WINDOW);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].summary, "Split brain");
        assert!(n[0].critical);
    }

    fn desktop(codes: &[&str]) -> ChannelSpec {
        ChannelSpec {
            name: "tray".into(),
            kind: "desktop".into(),
            codes: codes.iter().map(|c| c.to_string()).collect(),
            ..ChannelSpec::default()
        }
    }

    #[test]
    fn al7_an_event_a_desktop_channel_takes_is_shown_by_the_channel_not_twice() {
        let all = [desktop(&[])];
        assert!(taken_by_desktop_channel(true, &all, "CHECK_DOWN"));
        // Not acting: the channel's messages go to the acting server's desktop, not this one.
        assert!(!taken_by_desktop_channel(false, &all, "CHECK_DOWN"));
        // The channel's own filter decides.
        let only_up = [desktop(&["CHECK_UP"])];
        assert!(!taken_by_desktop_channel(true, &only_up, "CHECK_DOWN"));
        assert!(taken_by_desktop_channel(true, &only_up, "CHECK_UP"));
        let mut critical = desktop(&[]);
        critical.min_severity = Some(understudy_api::Severity::Critical);
        assert!(!taken_by_desktop_channel(
            true,
            &[critical],
            "CERT_GENERATED"
        ));
        // Other kinds are not the desktop; codes that never alert stay the event log's.
        let mut hook = desktop(&[]);
        hook.kind = "webhook".into();
        assert!(!taken_by_desktop_channel(true, &[hook], "CHECK_DOWN"));
        assert!(!taken_by_desktop_channel(
            true,
            &all,
            "RECORDS_STORED_NOT_A_CODE"
        ));
    }

    #[test]
    fn al7_a_desktop_message_is_notified_with_the_senders_title_and_text() {
        let m = DesktopMessage {
            id: "m1".into(),
            channel: "tray".into(),
            title: "12 alerts: 12 CHECK_DOWN".into(),
            text: "line 1\nline 2".into(),
            severity: understudy_api::Severity::Critical,
            alerts: (0..12).map(|i| i.to_string()).collect(),
        };
        let n = desktop_notice(&m);
        assert_eq!(
            (n.summary.as_str(), n.body.as_str()),
            (m.title.as_str(), m.text.as_str())
        );
        assert_eq!(n.count, 12);
        assert!(n.critical);
    }
}
