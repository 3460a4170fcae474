//! AL-2, AL-3, AL-6: the acting server's watch over check states and silent agents, in
//! simulated time (the server machine driven directly; every decision asserted with its reason).

use std::time::{Duration, Instant};

use understudy_engine::*;

const SEC: Duration = Duration::from_secs(1);
const T: Thresholds = Thresholds {
    fail_after: 3,
    ok_after: 2,
};

fn entry(name: &str) -> AgentEntry {
    AgentEntry {
        id: format!("id-{name}"),
        name: name.into(),
        fingerprint: format!("fp-{name}"),
        status: AgentStatus::Accepted,
        home: Some(true),
        announced: None,
    }
}

/// A lone acting server with these accepted agents.
fn server(agents: &[&str], silent_after: Duration, group_wait: Duration, now: Instant) -> Server {
    let mut server = Server::new(
        ServerConfig {
            name: "s".into(),
            standby_capacity: 10,
            ha: HotStandbyConfig {
                name: "s".into(),
                mode: FailoverMode::Off,
                sync_interval: SEC,
                failover_timeout: 3 * SEC,
                failback: FailbackPolicy::Manual,
                crash_confirm: 3,
            },
            peer_url: None,
            cluster: None,
            watch: WatchConfig {
                silent_after,
                group_wait,
            },
        },
        agents.iter().map(|a| entry(a)).collect(),
        Vec::new(),
        0,
        now,
    );
    assert!(server.is_acting());
    drain(&mut server);
    server
}

fn drain(server: &mut Server) -> Vec<Event> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

/// Steps simulated time to `until`, firing every deadline on the way; returns the events.
fn run_until(server: &mut Server, now: &mut Instant, until: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(at) = server.poll_timeout().filter(|at| *at <= until) {
        *now = at.max(*now);
        server.handle_timeout(*now);
        events.extend(drain(server));
    }
    *now = until;
    server.handle_timeout(*now);
    events.extend(drain(server));
    events
}

fn codes(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.code.as_str()).collect()
}

#[test]
fn al2_a_check_is_down_after_exactly_fail_after_failed_runs_and_up_after_ok_after() {
    let mut now = Instant::now();
    let mut s = server(&[], 120 * SEC, 10 * SEC, now);
    s.handle_check_result(now, "db-ping", T, true, "up");
    s.handle_check_result(now, "db-ping", T, true, "up");
    assert_eq!(drain(&mut s), vec![], "a first state is not news");
    assert_eq!(s.watch().check_state("db-ping"), CheckState::Up);
    for run in 1..=2 {
        now += SEC;
        s.handle_check_result(now, "db-ping", T, false, "down: connection refused");
        assert_eq!(drain(&mut s), vec![], "run {run} of 3 is not yet down");
    }
    // A good run in between starts the count again.
    s.handle_check_result(now, "db-ping", T, true, "up");
    for _ in 1..=2 {
        s.handle_check_result(now, "db-ping", T, false, "down: connection refused");
    }
    assert_eq!(drain(&mut s), vec![]);
    s.handle_check_result(now, "db-ping", T, false, "down: connection refused");
    let down = drain(&mut s);
    assert_eq!(codes(&down), ["CHECK_DOWN"]);
    assert_eq!(down[0].subject, "db-ping");
    assert_eq!(
        down[0].reason,
        "db-ping failed 3 times in a row: connection refused"
    );
    assert_eq!(s.watch().check_state("db-ping"), CheckState::Down);
    // Further failures say nothing more.
    s.handle_check_result(now, "db-ping", T, false, "down: connection refused");
    s.handle_check_result(now, "db-ping", T, true, "up");
    assert_eq!(drain(&mut s), vec![], "one good run of 2");
    s.handle_check_result(now, "db-ping", T, true, "up");
    let up = drain(&mut s);
    assert_eq!(codes(&up), ["CHECK_UP"]);
    assert_eq!(up[0].reason, "db-ping is up again: 2 good runs in a row");
}

#[test]
fn al2_thresholds_are_per_check() {
    let now = Instant::now();
    let mut s = server(&[], 120 * SEC, 10 * SEC, now);
    let quick = Thresholds {
        fail_after: 1,
        ok_after: 1,
    };
    s.handle_check_result(now, "quick", quick, false, "down: timeout after 5s");
    s.handle_check_result(now, "slow", T, false, "down: timeout after 5s");
    let events = drain(&mut s);
    assert_eq!(codes(&events), ["CHECK_DOWN"]);
    assert_eq!(
        events[0].reason,
        "quick failed 1 times in a row: timeout after 5s"
    );
    s.handle_check_result(now, "quick", quick, true, "up");
    assert_eq!(codes(&drain(&mut s)), ["CHECK_UP"]);
}

/// AL-2: a pair's check is one series under its name whichever member ran it, so a handover in
/// the middle of a failure neither resets the count nor raises CHECK_DOWN twice.
#[test]
fn al2_a_pairs_check_is_one_series_across_a_handover() {
    let now = Instant::now();
    let mut s = server(&["p1", "p2"], 120 * SEC, 10 * SEC, now);
    // Two runs by the primary, one by the secondary after a handover: three in a row.
    s.handle_check_result(now, "web", T, false, "down: status 500, expected 200");
    s.handle_check_result(now, "web", T, false, "down: status 500, expected 200");
    s.handle_check_result(now, "web", T, false, "down: status 500, expected 200");
    assert_eq!(codes(&drain(&mut s)), ["CHECK_DOWN"]);
    s.handle_check_result(now, "web", T, false, "down: status 500, expected 200");
    assert_eq!(drain(&mut s), vec![], "not doubled");
}

/// The STANDBY `b` of an ACTIVE that answered under epoch 1, with these accepted agents.
fn standby(agents: &[&str], now: Instant) -> Server {
    let mut b = Server::new(
        ServerConfig {
            name: "b".into(),
            standby_capacity: 10,
            ha: HotStandbyConfig {
                name: "b".into(),
                mode: FailoverMode::Secondary,
                sync_interval: SEC,
                failover_timeout: 3 * SEC,
                failback: FailbackPolicy::Manual,
                crash_confirm: 0,
            },
            peer_url: Some("https://a.example:7443".into()),
            cluster: None,
            watch: WatchConfig {
                silent_after: 120 * SEC,
                group_wait: 10 * SEC,
            },
        },
        agents.iter().map(|a| entry(a)).collect(),
        Vec::new(),
        0,
        now,
    );
    b.handle_peer_status(
        now,
        PeerStatus {
            name: "a".into(),
            mode: FailoverMode::Primary,
            state: "active".into(),
            epoch: 1,
            site_version: 0,
        },
    );
    assert!(!b.is_acting());
    drain(&mut b);
    while b.poll_action().is_some() {}
    b
}

/// Steps simulated time until `b` promotes itself, its ACTIVE answering no poll (a crash).
fn promote(b: &mut Server, now: &mut Instant) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..100 {
        *now += SEC / 2;
        b.handle_timeout(*now);
        while let Some(a) = b.poll_action() {
            if matches!(a, ServerAction::Ha(HaAction::PollPeer { .. })) {
                b.handle_peer_unreachable(*now);
            }
        }
        events.extend(drain(b));
        if b.is_acting() {
            return events;
        }
    }
    panic!("b did not promote itself: {events:?}");
}

/// AL-2 across a crash of the ACTIVE: the STANDBY keeps what the operator was told about each
/// check (the CHECK_DOWN / CHECK_UP events it replicated); once promoted, a check already told
/// DOWN is not raised again by the runs that keep failing, and comes UP after `ok_after` good
/// runs; a check told UP again goes DOWN after `fail_after` failed runs, once. (Before this rule
/// the promoted server's watch started empty and raised CHECK_DOWN again for every check still
/// down: ~2,500 alerts for 150 checks across 30 SIGKILLs in the bench.)
#[test]
fn al2_a_server_promoted_after_a_crash_neither_raises_again_nor_resets_a_check_told_down() {
    let mut now = Instant::now();
    let mut b = standby(&["p1"], now);
    // Replicated from the ACTIVE while STANDBY: db-ping was told DOWN; web DOWN then UP again.
    b.handle_check_told("db-ping", true);
    b.handle_check_told("web", true);
    b.handle_check_told("web", false);
    // A STANDBY watches nothing: runs stored while standby raise nothing.
    b.handle_check_result(now, "other", T, false, "down: connection refused");
    b.handle_check_result(now, "other", T, false, "down: connection refused");
    b.handle_check_result(now, "other", T, false, "down: connection refused");
    assert_eq!(drain(&mut b), vec![]);
    let promoted = promote(&mut b, &mut now);
    assert!(codes(&promoted).contains(&"PROMOTED"), "{promoted:?}");
    assert_eq!(b.watch().check_state("db-ping"), CheckState::Down);
    assert_eq!(b.watch().check_state("web"), CheckState::Up);
    for _ in 0..5 {
        b.handle_check_result(now, "db-ping", T, false, "down: connection refused");
    }
    assert_eq!(
        drain(&mut b),
        vec![],
        "db-ping was told DOWN already: not again"
    );
    b.handle_check_result(now, "db-ping", T, true, "up");
    assert_eq!(drain(&mut b), vec![], "one good run of 2");
    b.handle_check_result(now, "db-ping", T, true, "up");
    let up = drain(&mut b);
    assert_eq!(codes(&up), ["CHECK_UP"]);
    assert_eq!(up[0].reason, "db-ping is up again: 2 good runs in a row");
    for _ in 0..3 {
        b.handle_check_result(now, "web", T, false, "down: status 500, expected 200");
    }
    assert_eq!(
        codes(&drain(&mut b)),
        ["CHECK_DOWN"],
        "web was UP: down once"
    );
    // A check never told about starts from unknown, as before.
    for _ in 0..3 {
        b.handle_check_result(now, "other", T, false, "down: connection refused");
    }
    assert_eq!(codes(&drain(&mut b)), ["CHECK_DOWN"]);
    // A removed check forgets what was told about it.
    b.handle_check_removed("db-ping");
    assert_eq!(b.watch().check_state("db-ping"), CheckState::Unknown);
}

/// AL-2 across a restart: an acting server (here `failover.mode = off`) told at start-up what
/// its store says was last told about a check does not raise CHECK_DOWN again.
#[test]
fn al2_a_restarted_server_does_not_raise_again_a_check_its_store_told_down() {
    let now = Instant::now();
    let mut s = server(&[], 120 * SEC, 10 * SEC, now);
    s.handle_check_told("db-ping", true);
    for _ in 0..4 {
        s.handle_check_result(now, "db-ping", T, false, "down: connection refused");
    }
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.watch().check_state("db-ping"), CheckState::Down);
    // A series already watched is left to its own runs.
    s.handle_check_told("db-ping", false);
    assert_eq!(s.watch().check_state("db-ping"), CheckState::Down);
}

#[test]
fn al2_a_flapping_check_raises_check_flapping_once_and_is_held_until_stable() {
    let mut now = Instant::now();
    let mut s = server(&[], 3600 * SEC, 10 * SEC, now);
    let one = Thresholds {
        fail_after: 1,
        ok_after: 1,
    };
    s.handle_check_result(now, "web", one, true, "up");
    let mut told = Vec::new();
    // 10 changes, 20 s apart: the 6th raises CHECK_FLAPPING, the rest are held.
    for i in 0..10 {
        now += 20 * SEC;
        s.handle_check_result(now, "web", one, i % 2 == 1, "down: refused");
        told.extend(drain(&mut s));
    }
    assert_eq!(
        codes(&told),
        [
            "CHECK_DOWN",
            "CHECK_UP",
            "CHECK_DOWN",
            "CHECK_UP",
            "CHECK_DOWN",
            "CHECK_FLAPPING"
        ]
    );
    assert_eq!(
        told[5].reason,
        "web changed state 6 times within 10m; further changes are held until it is stable for 10m"
    );
    // Last run was up (i = 9); the last told was DOWN. Stable for 10 minutes: told UP.
    let until = now + 599 * SEC;
    assert_eq!(run_until(&mut s, &mut now, until), vec![]);
    let settled = run_until(&mut s, &mut now, until + SEC);
    assert_eq!(codes(&settled), ["CHECK_UP"]);
    assert_eq!(settled[0].reason, "web stopped flapping: up for 10m");
    // And it alerts normally again.
    s.handle_check_result(now, "web", one, false, "down: refused");
    assert_eq!(codes(&drain(&mut s)), ["CHECK_DOWN"]);
}

#[test]
fn al3_an_agent_not_heard_for_silent_after_is_silent_and_back_when_heard() {
    let mut now = Instant::now();
    let start = now;
    let mut s = server(&["a", "b", "c"], 120 * SEC, 10 * SEC, now);
    // b and c keep talking; a is last heard at +5s.
    s.handle_agent_heard(now + 5 * SEC, "a", "at 10.0.0.7:41234, 04:00:05 UTC");
    let mut events = Vec::new();
    for step in 1..=30 {
        let at = start + step * 5 * SEC;
        events.extend(run_until(&mut s, &mut now, at));
        s.handle_agent_heard(now, "b", "at 10.0.0.8:1");
        s.handle_agent_heard(now, "c", "at 10.0.0.9:1");
        events.extend(drain(&mut s));
        if !events.is_empty() {
            break;
        }
    }
    assert_eq!(codes(&events), ["AGENT_SILENT"]);
    assert_eq!(events[0].subject, "a");
    assert_eq!(
        events[0].reason,
        "a not heard for 2m; last seen at 10.0.0.7:41234, 04:00:05 UTC"
    );
    // Told after its group_wait: silent at +125s, told when the window closes at +135s.
    assert_eq!(now - start, 135 * SEC);
    assert!(s.watch().is_silent("a"));
    now += 5 * SEC;
    s.handle_agent_heard(now, "a", "at 10.0.0.7:41300");
    let back = drain(&mut s);
    assert_eq!(codes(&back), ["AGENT_BACK"]);
    assert_eq!(
        back[0].reason,
        "a is heard again after 135s of silence (at 10.0.0.7:41300)"
    );
}

#[test]
fn al3_an_agent_never_heard_is_silent_after_silent_after_from_when_the_server_became_acting() {
    let mut now = Instant::now();
    let mut s = server(&["a"], 120 * SEC, Duration::ZERO, now);
    // Heard, then silent_after minus one second passes: nothing yet.
    let until = now + 119 * SEC;
    let events = run_until(&mut s, &mut now, until);
    assert_eq!(events, vec![]);
    let until = now + SEC;
    let events = run_until(&mut s, &mut now, until);
    assert_eq!(codes(&events), ["AGENT_SILENT"]);
    assert_eq!(
        events[0].reason,
        "a not heard for 2m; last seen never by this server (watched since it became acting)"
    );
}

#[test]
fn al6_more_than_half_of_the_agents_silent_within_group_wait_is_one_site_outage() {
    let mut now = Instant::now();
    let names: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = server(&refs, 120 * SEC, 10 * SEC, now);
    // Six of ten fall silent within 4 s of each other (their links cut together); four talk on.
    for (i, name) in refs.iter().enumerate().take(6) {
        s.handle_agent_heard(now + (i as u32) * 800 * Duration::from_millis(1), name, "x");
    }
    let mut events = Vec::new();
    let end = now + 200 * SEC;
    while now < end {
        let next = now + SEC;
        events.extend(run_until(&mut s, &mut now, next));
        for name in &refs[6..] {
            s.handle_agent_heard(now, name, "y");
        }
    }
    assert_eq!(codes(&events), ["SITE_OUTAGE"], "{events:?}");
    assert_eq!(events[0].subject, "site");
    assert_eq!(
        events[0].reason,
        "6 of 10 agents fell silent within 10s (m0, m1, m2, m3, m4, m5): the likelier cause is this server's own network"
    );
    // Coming back, each is told (grouped per channel like any alert).
    s.handle_agent_heard(now, "m0", "z");
    assert_eq!(codes(&drain(&mut s)), ["AGENT_BACK"]);
}

#[test]
fn al6_half_or_fewer_silent_within_group_wait_are_told_one_by_one() {
    let mut now = Instant::now();
    let mut s = server(&["a", "b", "c", "d"], 120 * SEC, 10 * SEC, now);
    let mut events = Vec::new();
    let end = now + 200 * SEC;
    while now < end {
        let next = now + SEC;
        events.extend(run_until(&mut s, &mut now, next));
        s.handle_agent_heard(now, "c", "y");
        s.handle_agent_heard(now, "d", "y");
    }
    assert_eq!(codes(&events), ["AGENT_SILENT", "AGENT_SILENT"]);
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, ["a", "b"]);
}

/// AL-6: an agent heard again before the window closes was never told silent, so its return is
/// not told either.
#[test]
fn al6_an_agent_back_within_group_wait_is_not_told_at_all() {
    let mut now = Instant::now();
    let mut s = server(&["a", "b", "c"], 120 * SEC, 10 * SEC, now);
    let until = now + 121 * SEC;
    let mut events = run_until(&mut s, &mut now, until);
    s.handle_agent_heard(now, "a", "back");
    s.handle_agent_heard(now, "b", "back");
    s.handle_agent_heard(now, "c", "back");
    events.extend(drain(&mut s));
    let until = now + 20 * SEC;
    events.extend(run_until(&mut s, &mut now, until));
    assert_eq!(events, vec![]);
}
