//! One test (at least) per rule of PRODUCT.md §2 that has engine logic, named after it, each
//! asserting the decision and its reason. A whole site runs in simulated time (tests/sim).

mod sim;

use std::time::Duration;

use sim::*;
use understudy_engine::agent::{AgentAction, Restored};
use understudy_engine::*;

fn t() -> Timings {
    Timings::default()
}

/// Home server A, standby server B, one agent.
fn home_and_standby(capacity: u32) -> Site {
    let mut site = Site::new(1);
    site.add_server("a", 100, t());
    site.add_server("b", capacity, t());
    site.add_agent("x", &[0, 1], t());
    site.start_all();
    site
}

/// A hot-standby pair of servers (a primary, b secondary) and agents listing both.
fn hot_standby(agents: usize, failback: FailbackPolicy) -> Site {
    let mut site = Site::new(2);
    site.add_server("a", 100, t());
    site.add_server("b", 100, t());
    site.pair_servers(0, 1, failback);
    for i in 0..agents {
        site.add_agent(&format!("m{i}"), &[0, 1], t());
    }
    site.start_all();
    site
}

fn settle(site: &mut Site) {
    site.run_for(10 * SEC);
}

// ----- agents and their servers -----

#[test]
fn ag1_agent_connects_out_to_its_home_first() {
    let config = AgentConfig {
        name: "x".into(),
        servers: vec!["https://home".into(), "https://standby".into()],
        heartbeat: SEC,
        switchover_after: 3 * SEC,
        switchback_interval: 5 * SEC,
        held_limit: u64::MAX,
    };
    let mut agent = Agent::new(config, Restored::default(), std::time::Instant::now());
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::Connect { server: 0 })
    );
    let mut site = home_and_standby(10);
    settle(&mut site);
    assert_eq!(site.agent_server(0), Some(0));
    assert_eq!(site.agent(0).state(), LinkState::Home);
}

#[test]
fn ag2_records_leave_the_cache_only_after_the_server_acknowledges() {
    let config = AgentConfig {
        name: "x".into(),
        servers: vec!["https://home".into()],
        heartbeat: SEC,
        switchover_after: 3 * SEC,
        switchback_interval: 5 * SEC,
        held_limit: u64::MAX,
    };
    let now = std::time::Instant::now();
    let mut agent = Agent::new(config, Restored::default(), now);
    while agent.poll_action().is_some() {}
    agent.handle_cached(now, 10);
    assert_eq!(
        agent.poll_action(),
        None,
        "nothing is sent before a server accepted the agent"
    );
    agent.handle_connected(
        now,
        0,
        Welcome {
            cluster: None,
            epoch: 0,
        },
    );
    let actions: Vec<_> = std::iter::from_fn(|| agent.poll_action()).collect();
    assert!(
        actions.contains(&AgentAction::Send {
            server: 0,
            after: 0,
            upto: 10,
            taken_for: None,
        }),
        "{actions:?}"
    );
    assert!(!actions
        .iter()
        .any(|a| matches!(a, AgentAction::DeleteCached { .. })));
    agent.handle_ack(now, 0, 4);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::DeleteCached { upto: 4 })
    );
    // A server cannot acknowledge what it was never sent.
    agent.handle_ack(now, 0, 99);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::DeleteCached { upto: 10 })
    );
    assert_eq!(agent.cached(), 0);

    // Across a crash of the home server, a kill of the agent and restarts: nothing lost.
    let mut site = home_and_standby(10);
    settle(&mut site);
    site.produce(0, 500);
    site.run_for(3 * MS);
    site.kill(Node::Server(0));
    site.produce(0, 500);
    site.kill(Node::Agent(0));
    site.run_for(SEC);
    site.start_agent(0);
    site.produce(0, 500);
    site.run_for(20 * SEC);
    site.start_server(0);
    site.run_for(30 * SEC);
    assert_eq!(site.count_records(0).0, 0, "records lost");
    assert_eq!(site.agent(0).cached(), 0, "everything delivered");
}

fn welcome() -> Welcome {
    Welcome {
        cluster: None,
        epoch: 0,
    }
}

/// An agent of home `https://home` with a standby of another site, moving at once and never
/// going home on its own.
fn home_and_standby_config(held_limit: u64) -> AgentConfig {
    AgentConfig {
        name: "x".into(),
        servers: vec!["https://home".into(), "https://standby".into()],
        heartbeat: SEC,
        switchover_after: Duration::ZERO,
        switchback_interval: Duration::ZERO,
        held_limit,
    }
}

/// An agent with a home and a standby of another site, `held_limit` as given, on the standby
/// with nothing sent yet.
fn agent_on_standby(held_limit: u64) -> (Agent, std::time::Instant) {
    let config = home_and_standby_config(held_limit);
    let now = std::time::Instant::now();
    let mut agent = Agent::new(config, Restored::default(), now);
    agent.handle_connected(now, 0, welcome());
    agent.handle_disconnected(now, 0, "home killed".into());
    agent.handle_connect_failed(now, 0, "refused".into());
    agent.handle_connected(now, 1, welcome());
    assert_eq!(agent.state(), LinkState::Standby);
    while agent.poll_action().is_some() {}
    while agent.poll_event().is_some() {}
    (agent, now)
}

#[test]
fn ag2_records_a_standby_of_another_site_acknowledged_are_held_then_delivered_home() {
    let (mut agent, now) = agent_on_standby(u64::MAX);
    agent.handle_cached(now, 10);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::Send {
            server: 1,
            after: 0,
            upto: 10,
            taken_for: Some("https://home".into()),
        }),
        "the standby stores them marked as taken for home"
    );
    agent.handle_ack(now, 1, 10);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::HoldCached {
            after: 0,
            upto: 10,
            server: "https://standby".into()
        }),
        "kept, marked as held by the standby, not deleted"
    );
    assert_eq!((agent.cached(), agent.held()), (0, 10));
    assert_eq!(agent.held_by(), vec![("https://standby".to_string(), 10)]);
    // Held records do not block new ones: the standby gets only what nobody holds.
    agent.handle_cached(now, 15);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::Send {
            server: 1,
            after: 10,
            upto: 15,
            taken_for: Some("https://home".into()),
        })
    );
    agent.handle_ack(now, 1, 15);
    while agent.poll_action().is_some() {}
    // Switchback: home gets everything still cached, in sequence order, held records first.
    agent.handle_recall(now, 1);
    let actions: Vec<_> = std::iter::from_fn(|| agent.poll_action()).collect();
    assert!(
        actions.contains(&AgentAction::Leave { server: 1 }),
        "{actions:?}"
    );
    agent.handle_connected(now, 0, welcome());
    let actions: Vec<_> = std::iter::from_fn(|| agent.poll_action()).collect();
    assert!(
        actions.contains(&AgentAction::Send {
            server: 0,
            after: 0,
            upto: 15,
            taken_for: None,
        }),
        "{actions:?}"
    );
    // Deleted only on home's acknowledgement.
    agent.handle_ack(now, 0, 6);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::DeleteCached { upto: 6 })
    );
    assert_eq!(agent.held(), 9);
    agent.handle_ack(now, 0, 15);
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::DeleteCached { upto: 15 })
    );
    assert_eq!((agent.cached(), agent.held()), (0, 0));
}

#[test]
fn ag2_held_limit_drops_the_oldest_held_records_with_an_event() {
    let (mut agent, now) = agent_on_standby(4);
    agent.handle_cached(now, 10);
    while agent.poll_action().is_some() {}
    agent.handle_ack(now, 1, 10);
    let actions: Vec<_> = std::iter::from_fn(|| agent.poll_action()).collect();
    assert_eq!(
        actions,
        vec![
            AgentAction::HoldCached {
                after: 0,
                upto: 10,
                server: "https://standby".into()
            },
            AgentAction::DropHeld { upto: 6 },
        ]
    );
    assert_eq!(agent.held(), 4);
    let ev = agent.poll_event().expect("HELD_DROPPED");
    assert_eq!(ev.code, EventCode::HeldDropped);
    assert_eq!(
        ev.reason,
        "held_limit 4 reached: dropped the oldest 6 held records from the cache up to seq 6 \
         (6 held by https://standby); they stay there and will be missing at home https://home"
    );
    // Home later gets what is still held, from seq 7.
    agent.handle_recall(now, 1);
    agent.handle_connected(now, 0, welcome());
    let actions: Vec<_> = std::iter::from_fn(|| agent.poll_action()).collect();
    assert!(
        actions.contains(&AgentAction::Send {
            server: 0,
            after: 6,
            upto: 10,
            taken_for: None,
        }),
        "{actions:?}"
    );
}

#[test]
fn ag2_held_records_survive_a_restart_of_the_agent() {
    let config = home_and_standby_config(u64::MAX);
    let now = std::time::Instant::now();
    let restored = Restored {
        acked_upto: 3,
        cached_upto: 20,
        held: vec![(12, "https://standby".into())],
        ..Restored::default()
    };
    let mut agent = Agent::new(config, restored, now);
    assert_eq!((agent.cached(), agent.held()), (8, 9));
    agent.handle_connect_failed(now, 0, "refused".into());
    agent.handle_connect_failed(now, 0, "refused".into());
    agent.handle_connected(now, 1, welcome());
    let actions: Vec<_> = std::iter::from_fn(|| agent.poll_action()).collect();
    assert!(
        actions.contains(&AgentAction::Send {
            server: 1,
            after: 12,
            upto: 20,
            taken_for: Some("https://home".into()),
        }),
        "held records are not sent to a standby again: {actions:?}"
    );
}

#[test]
fn ag2_home_complete_and_exactly_once_after_switchover_blackout_and_crashes() {
    let mut site = home_and_standby(10);
    settle(&mut site);
    site.produce(0, 300);
    site.run_for(2 * MS);
    site.kill(Node::Server(0)); // mid-stream
    site.produce(0, 300);
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(1), "switched over");
    site.produce(0, 300);
    site.run_for(SEC);
    assert!(site.agent(0).held() > 0, "the standby's records are held");
    site.kill(Node::Server(1)); // blackout
    site.produce(0, 100);
    site.run_for(10 * SEC);
    assert_eq!(site.agent(0).state(), LinkState::Blackout);
    site.kill(Node::Agent(0));
    site.start_server(1);
    site.start_server(0);
    site.start_agent(0);
    site.produce(0, 100);
    site.run_for(30 * SEC);
    assert_eq!(site.agent_server(0), Some(0), "back home");
    assert_eq!((site.agent(0).cached(), site.agent(0).held()), (0, 0));
    site.home_complete(0).expect("home complete");
    assert!(
        site.servers[1].disk.records.iter().any(|(a, _)| *a == 0),
        "the standby keeps its copy"
    );
}

#[test]
fn ag2_a_record_home_committed_whose_ack_was_lost_is_already_complete_at_home() {
    let mut site = home_and_standby(10);
    settle(&mut site);
    // Home commits and its acknowledgements die with it.
    site.link(Node::Server(0), Node::Agent(0)).up = false;
    site.produce(0, 20);
    site.run_for(50 * MS);
    assert!(
        (1..=20).all(|seq| site.servers[0].disk.records.contains(&(0, seq))),
        "home committed"
    );
    site.kill(Node::Server(0));
    site.heal_all();
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(1));
    assert!(
        (1..=20).all(|seq| site.servers[1].disk.records.contains(&(0, seq))),
        "the standby took them too"
    );
    assert_eq!(site.agent(0).held(), 20);
    site.start_server(0);
    site.run_for(20 * SEC);
    assert_eq!(site.agent_server(0), Some(0));
    assert_eq!(site.agent(0).held(), 0);
    site.home_complete(0)
        .expect("home complete, each record once");
    assert_eq!(
        site.servers[0].disk.duplicates, 20,
        "the resend home stored nothing twice"
    );
}

#[test]
fn ag2_the_home_servers_hot_standby_peer_counts_as_home() {
    let mut site = hot_standby(1, FailbackPolicy::Manual);
    settle(&mut site);
    site.kill(Node::Server(0));
    site.run_for(20 * SEC);
    assert_eq!(site.agent_server(0), Some(1));
    site.produce(0, 50);
    site.run_for(SEC);
    assert_eq!(
        (site.agent(0).cached(), site.agent(0).held()),
        (0, 0),
        "acknowledged by home's peer: deleted, not held"
    );
}

#[test]
fn ag3_switchover_after_switchover_after_with_its_reason() {
    let mut site = home_and_standby(10);
    settle(&mut site);
    site.produce(0, 100);
    site.run_for(SEC);
    site.kill(Node::Server(0));
    let killed = site.now;
    site.produce(0, 100);
    let took = site
        .run_until_pred(60 * SEC, |s| s.agent_server(0) == Some(1))
        .expect("switched over");
    assert!(
        took >= t().switchover_after,
        "switched over before switchover_after: {took:?}"
    );
    assert!(
        took <= t().switchover_after + 2 * t().heartbeat,
        "switchover took {took:?}"
    );
    let ev = site.agent_events(0, EventCode::Switchover);
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0].reason.starts_with("https://a stopped answering"),
        "{}",
        ev[0].reason
    );
    assert!(
        ev[0]
            .reason
            .contains("(switchover_after 3s): switched over to https://b"),
        "{}",
        ev[0].reason
    );
    site.run_for(5 * SEC);
    assert_eq!(site.agent(0).cached(), 0, "cache flushed on the standby");
    assert_eq!(site.count_records(0).0, 0);
    let _ = killed;
}

#[test]
fn ag3_switchover_after_zero_moves_at_once() {
    let mut site = Site::new(3);
    let t0 = Timings {
        switchover_after: Duration::ZERO,
        ..t()
    };
    site.add_server("a", 10, t0);
    site.add_server("b", 10, t0);
    site.add_agent("x", &[0, 1], t0);
    site.start_all();
    settle(&mut site);
    site.kill(Node::Server(0));
    let took = site
        .run_until_pred(10 * SEC, |s| s.agent_server(0) == Some(1))
        .unwrap();
    assert!(took < SEC, "switchover_after 0 took {took:?}");
}

#[test]
fn ag3_a_short_outage_within_switchover_after_raises_no_switchover() {
    let mut site = home_and_standby(10);
    settle(&mut site);
    site.cut(Node::Agent(0), Node::Server(0), false);
    site.run_for(SEC);
    site.cut(Node::Agent(0), Node::Server(0), true);
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(0));
    assert!(site.agent_events(0, EventCode::Switchover).is_empty());
}

#[test]
fn ag4_standby_capacity_stages_the_second_agent_once_and_frees_slots() {
    let mut site = Site::new(4);
    site.add_server("a", 10, t());
    site.add_server("b", 1, t());
    site.add_agent("x", &[0, 1], t());
    site.add_agent("y", &[0, 1], t());
    site.start_all();
    settle(&mut site);
    site.kill(Node::Server(0));
    site.run_for(30 * SEC);
    let on_b: Vec<usize> = (0..2)
        .filter(|a| site.agent_server(*a) == Some(1))
        .collect();
    assert_eq!(on_b.len(), 1, "first come first served: exactly one slot");
    let staged = 1 - on_b[0];
    assert_eq!(site.agent(staged).state(), LinkState::Staged);
    let ev = site.agent_events(staged, EventCode::Staged);
    assert_eq!(ev.len(), 1, "STAGED once per episode");
    assert!(
        ev[0].reason.contains("standby capacity full (1 agents)"),
        "{}",
        ev[0].reason
    );
    // The agent holding the slot leaves: the slot is released and the staged agent gets it.
    site.produce(staged, 10);
    site.kill(Node::Agent(on_b[0]));
    site.run_for(20 * SEC);
    assert_eq!(site.agent_server(staged), Some(1));
    assert_eq!(site.agent(staged).cached(), 0);
}

#[test]
fn ag5_blackout_once_then_blackout_end_and_flush() {
    let mut site = home_and_standby(10);
    settle(&mut site);
    site.kill(Node::Server(0));
    site.kill(Node::Server(1));
    site.produce(0, 50);
    site.run_for(60 * SEC);
    assert_eq!(site.agent(0).state(), LinkState::Blackout);
    let ev = site.agent_events(0, EventCode::Blackout);
    assert_eq!(ev.len(), 1, "one BLACKOUT per episode");
    assert!(
        ev[0].reason.starts_with("none of 2 servers answers"),
        "{}",
        ev[0].reason
    );
    assert_eq!(site.agent(0).cached(), 50, "keeps caching");
    site.start_server(1);
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(1));
    let end = site.agent_events(0, EventCode::BlackoutEnd);
    assert_eq!(end.len(), 1);
    assert!(
        end[0].reason.contains("flushing 50 cached records"),
        "{}",
        end[0].reason
    );
    assert_eq!(site.agent(0).cached(), 0);
}

#[test]
fn ag6_switchback_when_home_answers_again_and_the_standby_frees_the_slot() {
    let mut site = home_and_standby(1);
    settle(&mut site);
    site.kill(Node::Server(0));
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(1));
    assert_eq!(site.server(1).registry().slots_used(), 1);
    site.start_server(0);
    let took = site
        .run_until_pred(30 * SEC, |s| s.agent_server(0) == Some(0))
        .expect("switched back");
    assert!(
        took <= t().switchback_interval + 2 * SEC,
        "switchback took {took:?}"
    );
    let ev = site.agent_events(0, EventCode::Switchback);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].reason,
        "home server https://a answers again: switched back from https://b"
    );
    site.run_for(SEC);
    assert_eq!(
        site.server(1).registry().slots_used(),
        0,
        "the standby freed the slot"
    );
}

#[test]
fn ag6_switchback_interval_has_an_enforced_minimum() {
    let config = AgentConfig {
        name: "x".into(),
        servers: vec!["a".into(), "b".into()],
        heartbeat: SEC,
        switchover_after: SEC,
        switchback_interval: Duration::from_millis(10),
        held_limit: u64::MAX,
    };
    let (every, why) = config.effective_switchback_interval();
    assert_eq!(every, Some(MIN_SWITCHBACK_INTERVAL));
    assert_eq!(
        why.unwrap(),
        "switchback_interval 10ms raised to the minimum of 1s"
    );
}

#[test]
fn ag6_switchback_interval_zero_waits_for_a_recall() {
    let mut site = Site::new(6);
    let t0 = Timings {
        switchback_interval: Duration::ZERO,
        ..t()
    };
    site.add_server("a", 10, t0);
    site.add_server("b", 10, t0);
    site.add_agent("x", &[0, 1], t0);
    site.start_all();
    settle(&mut site);
    site.kill(Node::Server(0));
    site.run_for(10 * SEC);
    site.start_server(0);
    site.run_for(120 * SEC);
    assert_eq!(site.agent_server(0), Some(1), "never goes back on its own");
    // Recalling from the home server, where it is not connected, is refused with the reason.
    let err = site.operate(0, |s, now| s.recall(now, "x")).unwrap_err();
    assert_eq!(
        err,
        "x is not connected to this server: recall it where it is connected"
    );
    let ok = site.operate(1, |s, now| s.recall(now, "x")).unwrap();
    assert_eq!(ok, "x recalled to its home server");
    site.run_for(5 * SEC);
    assert_eq!(site.agent_server(0), Some(0));
    assert_eq!(site.agent_events(0, EventCode::Recalled).len(), 1);
    assert_eq!(site.agent_events(0, EventCode::Switchback).len(), 1);
}

#[test]
fn ag7_standby_server_redirects_to_the_active_without_a_switchover() {
    let mut site = Site::new(7);
    site.add_server("a", 100, t());
    site.add_server("b", 100, t());
    site.pair_servers(0, 1, FailbackPolicy::Manual);
    site.add_agent("x", &[1, 0], t()); // home is b, the STANDBY
    site.start_server(0);
    site.start_server(1);
    site.run_for(5 * SEC);
    assert!(site.server(0).is_acting());
    site.start_agent(0);
    site.run_for(5 * SEC);
    assert_eq!(site.agent_server(0), Some(0), "on the ACTIVE server");
    let ev = site.agent_events(0, EventCode::Redirected);
    assert_eq!(
        ev[0].reason,
        "https://b is STANDBY: redirected to the ACTIVE server https://a"
    );
    assert!(site.agent_events(0, EventCode::Switchover).is_empty());
}

#[test]
fn ag8_never_follows_a_lower_epoch_and_does_not_switch_while_shutting_down() {
    let config = AgentConfig {
        name: "x".into(),
        servers: vec!["https://a".into(), "https://b".into()],
        heartbeat: SEC,
        switchover_after: Duration::ZERO,
        switchback_interval: 5 * SEC,
        held_limit: u64::MAX,
    };
    let now = std::time::Instant::now();
    let mut restored = Restored::default();
    restored.epochs.insert("ab".into(), 5);
    let mut agent = Agent::new(config.clone(), restored, now);
    while agent.poll_action().is_some() {}
    agent.handle_connected(
        now,
        0,
        Welcome {
            cluster: Some("ab".into()),
            epoch: 3,
        },
    );
    let ev = agent.poll_event().unwrap();
    assert_eq!(ev.code, EventCode::StaleEpoch);
    assert_eq!(
        ev.reason,
        "https://a has epoch 3 but epoch 5 of ab was seen: not followed"
    );
    assert_eq!(
        agent.poll_action(),
        Some(AgentAction::Disconnect { server: 0 })
    );
    assert_ne!(agent.state(), LinkState::Home);

    let mut agent = Agent::new(config, Restored::default(), now);
    agent.handle_connected(
        now,
        0,
        Welcome {
            cluster: None,
            epoch: 0,
        },
    );
    while agent.poll_action().is_some() {}
    agent.handle_shutdown(now);
    assert_eq!(agent.poll_action(), Some(AgentAction::Leave { server: 0 }));
    agent.handle_disconnected(now, 0, "closed".into());
    agent.handle_timeout(now + 60 * SEC);
    assert_eq!(
        agent.poll_action(),
        None,
        "no switching while shutting down"
    );
    assert_eq!(agent.state(), LinkState::ShutDown);
}

#[test]
fn ag9_enrollment_pending_then_accepted_or_by_token() {
    let mut site = home_and_standby(10);
    site.agents[0].token = TokenCheck::Absent;
    site.kill(Node::Agent(0));
    site.start_agent(0);
    site.run_for(5 * SEC);
    assert_eq!(site.agent_server(0), None);
    let pending = site.server_events(0, EventCode::AgentPending);
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0]
            .reason
            .starts_with("new agent x (fp-x) waits to be accepted"),
        "{}",
        pending[0].reason
    );
    assert!(site
        .agent(0)
        .last_error()
        .unwrap()
        .contains("waiting for an operator to accept this agent"));
    site.operate(0, |s, now| s.accept_agent(now, "x")).unwrap();
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(0));

    // A valid token enrolls at once; a wrong one is refused with its reason.
    let mut reg = AgentRegistry::new(1, []);
    let now = std::time::Instant::now();
    let hello = Hello {
        id: "i".into(),
        name: "n".into(),
        fingerprint: "f".into(),
        token: TokenCheck::Valid,
        home: true,
    };
    assert_eq!(reg.handle_hello(now, &hello), Ok(()));
    assert_eq!(reg.by_name("n").unwrap().status, AgentStatus::Accepted);
    let bad = Hello {
        id: "j".into(),
        name: "m".into(),
        token: TokenCheck::Invalid,
        ..hello.clone()
    };
    assert_eq!(
        reg.handle_hello(now, &bad).unwrap_err().reason(),
        "wrong enrollment token"
    );
    let imposter = Hello {
        fingerprint: "other".into(),
        ..hello
    };
    assert_eq!(
        reg.handle_hello(now, &imposter).unwrap_err().reason(),
        "certificate fingerprint does not match the accepted one (f)"
    );
}

// ----- pairs -----

/// Servers a (acting) and b in hot standby; pair "web" of p (primary) and s (secondary).
fn pair_site(switchback: SwitchbackPolicy) -> Site {
    let mut site = hot_standby(0, FailbackPolicy::Manual);
    site.add_agent("p", &[0, 1], t());
    site.add_agent("s", &[0, 1], t());
    site.define_pair(0, "web", 0, 1, t().failover_after, switchback);
    site.start_agent(0);
    site.start_agent(1);
    site.run_for(10 * SEC);
    site
}

fn auto() -> SwitchbackPolicy {
    SwitchbackPolicy::Auto {
        hold_down: t().hold_down,
    }
}

#[test]
fn pr1_pr2_exactly_one_member_is_active_and_runs_on_activate() {
    let mut site = pair_site(auto());
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("p"));
    assert!(site.agent(0).members()["web"].is_active());
    assert!(!site.agent(1).members()["web"].is_active());
    let pair = site.server(0).pair("web").unwrap();
    assert_eq!((pair.epoch(), pair.status()), (1, "normal"));
    let ev = site.server_events(0, EventCode::PairActive);
    assert_eq!(
        ev[0].reason,
        "primary p connected: activated under pair epoch 1"
    );
    site.run_for(30 * SEC);
    assert_eq!(site.agents[0].duty.len(), 1, "no flapping");
}

#[test]
fn pr3_failover_when_the_primary_is_silent_and_it_does_not_resume_on_its_own() {
    let mut site = pair_site(SwitchbackPolicy::Manual);
    site.kill(Node::Agent(0));
    let took = site
        .run_until_pred(30 * SEC, |s| {
            s.pair_holder(0, "web").as_deref() == Some("s")
        })
        .unwrap();
    // Silence counts from the last heartbeat, up to one heartbeat before the kill.
    assert!(
        took + t().heartbeat >= t().failover_after && took <= t().failover_after + t().heartbeat,
        "failover took {took:?}"
    );
    let ev = site.server_events(0, EventCode::Failover);
    assert_eq!(
        ev[0].reason,
        "primary p silent for 4s (failover_after 4s): secondary s activated under pair epoch 2"
    );
    site.start_agent(0);
    site.run_for(30 * SEC);
    assert!(
        !site.agent(0).members()["web"].is_active(),
        "the returning primary stays idle"
    );
    assert_eq!(
        site.agent(0).members()["web"].epoch().pair,
        2,
        "it knows the new pair epoch"
    );
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
}

#[test]
fn pr3_a_cut_off_primary_stands_down_before_the_secondary_takes_over() {
    let mut site = pair_site(SwitchbackPolicy::Manual);
    // The primary is alive but cannot reach either server (a frozen link, like SIGSTOP).
    site.cut(Node::Agent(0), Node::Server(0), false);
    site.cut(Node::Agent(0), Node::Server(1), false);
    site.run_for(20 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    assert!(!site.agent(0).members()["web"].is_active());
    let lease = site.agent_events(0, EventCode::LeaseExpired);
    assert!(
        lease[0]
            .reason
            .starts_with("no word from the server on pair web for its lease"),
        "{}",
        lease[0].reason
    );
    assert!(
        site.duty_overlaps("web").is_empty(),
        "both members held the duty at once: {:?}",
        site.duty_overlaps("web")
    );
}

#[test]
fn pr4_auto_switchback_after_hold_down() {
    let mut site = pair_site(auto());
    site.kill(Node::Agent(0));
    site.run_for(10 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    site.start_agent(0);
    let took = site
        .run_until_pred(60 * SEC, |s| {
            s.pair_holder(0, "web").as_deref() == Some("p")
        })
        .unwrap();
    assert!(
        took >= t().hold_down,
        "switched back before hold_down: {took:?}"
    );
    let ev = site.server_events(0, EventCode::PairSwitchback);
    assert!(
        ev[0].reason.starts_with(
            "primary p healthy for 6s (hold_down 6s): switching back under pair epoch 3"
        ),
        "{}",
        ev[0].reason
    );
    assert!(
        site.duty_overlaps("web").is_empty(),
        "planned handover is break-before-make"
    );
}

#[test]
fn pr4_manual_switchback_stays_on_the_secondary() {
    let mut site = pair_site(SwitchbackPolicy::Manual);
    site.kill(Node::Agent(0));
    site.run_for(10 * SEC);
    site.start_agent(0);
    site.run_for(120 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    assert_eq!(site.server(0).pair("web").unwrap().status(), "failed-over");
}

#[test]
fn pr5_force_failover_and_revert_and_their_refusals() {
    let mut site = pair_site(auto());
    let msg = site
        .operate(0, |s, now| s.force_failover(now, "web"))
        .unwrap();
    assert_eq!(
        msg,
        "operator forced failover to the secondary s (pair epoch 2)"
    );
    site.run_for(2 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    // Held by the operator: auto switchback does not pull it back.
    site.run_for(60 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    let err = site
        .operate(0, |s, now| s.force_failover(now, "web"))
        .unwrap_err();
    assert_eq!(err, "web is already active on the secondary s");
    site.kill(Node::Agent(0));
    site.run_for(10 * SEC);
    let err = site.operate(0, |s, now| s.revert(now, "web")).unwrap_err();
    assert_eq!(err, "the primary p is not connected");
    site.start_agent(0);
    site.run_for(5 * SEC);
    let msg = site.operate(0, |s, now| s.revert(now, "web")).unwrap();
    assert_eq!(msg, "operator reverted to the primary p (pair epoch 3)");
    site.run_for(2 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("p"));
    assert!(site.duty_overlaps("web").is_empty());
    let err = site
        .operate(1, |s, now| s.force_failover(now, "web"))
        .unwrap_err();
    assert_eq!(err, "this server is not the acting server of the site");
}

#[test]
fn pr6_pair_blackout_when_neither_member_is_reachable() {
    let mut site = pair_site(auto());
    site.kill(Node::Agent(0));
    site.kill(Node::Agent(1));
    site.run_for(20 * SEC);
    let ev = site.server_events(0, EventCode::PairBlackout);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].reason,
        "neither p nor s is reachable (failover_after 4s)"
    );
    assert_eq!(site.server(0).pair("web").unwrap().status(), "blackout");
    site.start_agent(1);
    site.run_for(5 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    assert_eq!(site.server_events(0, EventCode::PairBlackoutEnd).len(), 1);
}

#[test]
fn pr7_a_failing_hook_marks_the_pair_degraded() {
    let mut site = hot_standby(0, FailbackPolicy::Manual);
    site.add_agent("p", &[0, 1], t());
    site.add_agent("s", &[0, 1], t());
    site.agents[0].failing_hook = true;
    site.define_pair(0, "web", 0, 1, t().failover_after, auto());
    site.start_agent(0);
    site.start_agent(1);
    site.run_for(10 * SEC);
    let pair = site.server(0).pair("web").unwrap();
    assert_eq!(pair.status(), "degraded");
    let ev = site.server_events(0, EventCode::HookFailed);
    assert_eq!(
        ev[0].reason,
        "on_activate hook on p failed (pair epoch 1): exit status 1"
    );
}

// ----- servers in hot standby -----

#[test]
fn hs1_mode_off_acts_alone() {
    let mut site = home_and_standby(10);
    settle(&mut site);
    assert!(site.server(0).is_acting());
    assert_eq!(
        site.server(0).ha().reason(),
        "failover mode off: this server acts alone"
    );
}

#[test]
fn hs2_primary_wins_when_both_start_together() {
    let mut site = hot_standby(0, FailbackPolicy::Manual);
    site.run_for(10 * SEC);
    assert!(site.server(0).is_acting());
    assert!(!site.server(1).is_acting());
    assert_eq!(site.server(1).ha().state().as_str(), "standby");
    assert!(
        site.server(0).ha().reason().starts_with(
            "peer b is STARTING and this server is the preferred one (PRIMARY): promoting"
        ),
        "{}",
        site.server(0).ha().reason()
    );
}

#[test]
fn hs2_first_one_up_is_active_and_the_later_one_becomes_standby() {
    let mut site = Site::new(22);
    site.add_server("a", 100, t());
    site.add_server("b", 100, t());
    site.pair_servers(0, 1, FailbackPolicy::Manual);
    site.start_server(1);
    site.run_for(10 * SEC);
    assert!(
        site.server(1).is_acting(),
        "the secondary alone becomes ACTIVE after failover_timeout"
    );
    site.start_server(0);
    site.run_for(10 * SEC);
    assert!(site.server(1).is_acting());
    assert!(
        !site.server(0).is_acting(),
        "the primary finds an ACTIVE peer and stays STANDBY"
    );
}

#[test]
fn hs3_standby_replicates_site_configuration_and_records() {
    let mut site = pair_site(auto());
    site.produce(0, 20);
    site.run_for(5 * SEC);
    let b = &site.servers[1].disk;
    assert!(b.pairs.contains_key("web"));
    assert_eq!(b.agents.len(), 2);
    assert!((1..=20).all(|seq| b.records.contains(&(0, seq))));
}

#[test]
fn hs4_standby_promotes_when_the_active_is_silent_and_everyone_follows() {
    let mut site = pair_site(SwitchbackPolicy::Manual);
    site.produce(0, 100);
    site.run_for(2 * SEC);
    let epoch = site.server(0).ha().epoch();
    site.kill(Node::Server(0));
    let took = site
        .run_until_pred(30 * SEC, |s| s.server(1).is_acting())
        .unwrap();
    // Silence counts from the last answered poll, up to one sync_interval before the kill.
    assert!(
        took + t().sync_interval >= t().failover_timeout
            && took <= t().failover_timeout + t().sync_interval,
        "promotion took {took:?}"
    );
    assert_eq!(site.server(1).ha().epoch(), epoch + 1);
    let ev = site.server_events(1, EventCode::Promoted);
    assert!(
        ev[0].reason.starts_with("peer a has not answered for"),
        "{}",
        ev[0].reason
    );
    assert!(
        ev[0].reason.ends_with(&format!(
            "(failover_timeout 4s): promoting (epoch {})",
            epoch + 1
        )),
        "{}",
        ev[0].reason
    );
    site.produce(0, 100);
    site.run_for(20 * SEC);
    assert_eq!(site.agent_server(0), Some(1));
    assert_eq!(site.agent_server(1), Some(1));
    assert_eq!(
        site.pair_holder(1, "web").as_deref(),
        Some("p"),
        "the pair stays on its member under the new server"
    );
    assert_eq!(site.count_records(0).0, 0);
    assert_eq!(site.agent(0).cached(), 0);
}

#[test]
fn hs5_former_active_returns_as_standby_and_manual_switchback() {
    let mut site = hot_standby(1, FailbackPolicy::Manual);
    site.run_for(5 * SEC);
    site.kill(Node::Server(0));
    site.run_for(15 * SEC);
    assert!(site.server(1).is_acting());
    site.start_server(0);
    site.run_for(30 * SEC);
    assert!(
        !site.server(0).is_acting(),
        "retained role: the returning primary is STANDBY"
    );
    assert!(site.server(1).is_acting());
    assert!(
        site.server(0)
            .ha()
            .reason()
            .starts_with("peer b is ACTIVE with epoch"),
        "{}",
        site.server(0).ha().reason()
    );
    let epoch = site.server(1).ha().epoch();
    let msg = site.operate(1, |s, now| s.operator_standby(now)).unwrap();
    assert_eq!(
        msg,
        format!("set to STANDBY by an operator: handing the ACTIVE role (epoch {epoch}) to peer a")
    );
    // HS-8: the peer takes the role by a planned handover, at once.
    site.run_for(SEC);
    assert!(
        site.server(0).is_acting(),
        "the primary becomes ACTIVE by itself"
    );
    assert!(!site.server(1).is_acting());
    assert!(site.server(0).ha().epoch() > site.server(1).ha().epoch() - 1);
    assert_eq!(
        site.agent_server(0),
        Some(0),
        "agents follow the ACTIVE server"
    );
    let err = site
        .operate(1, |s, now| s.operator_standby(now))
        .unwrap_err();
    assert_eq!(err, "this server is already STANDBY");
}

#[test]
fn hs5_former_active_restarting_into_a_higher_epoch_hands_over_its_records() {
    let config = |name: &str, mode| HotStandbyConfig {
        name: name.into(),
        mode,
        sync_interval: Duration::from_secs(1),
        failover_timeout: Duration::from_secs(3),
        failback: FailbackPolicy::Manual,
        crash_confirm: 3,
    };
    let peer = |epoch| PeerStatus {
        name: "b".into(),
        mode: FailoverMode::Secondary,
        state: "active".into(),
        epoch,
        site_version: 0,
    };
    let actions = |ha: &mut HotStandby| std::iter::from_fn(|| ha.poll_action()).collect::<Vec<_>>();
    let now = Instant::now();
    // It acted under epoch 1 and was killed; the peer promoted to 2. Records it acknowledged
    // after the peer's last replication poll exist only on it: they are handed over.
    let mut returning = HotStandby::new(config("a", FailoverMode::Primary), 1, now);
    actions(&mut returning);
    returning.handle_peer_status(now, peer(2));
    assert_eq!(returning.state().as_str(), "standby");
    assert_eq!(
        actions(&mut returning),
        vec![HaAction::SaveEpoch { epoch: 2 }, HaAction::MergeToPeer]
    );
    // A node that never held an epoch has nothing of its own to hand over.
    let mut fresh = HotStandby::new(config("a", FailoverMode::Primary), 0, now);
    actions(&mut fresh);
    fresh.handle_peer_status(now, peer(2));
    assert_eq!(actions(&mut fresh), vec![HaAction::SaveEpoch { epoch: 2 }]);
}

#[test]
fn ag10_a_hot_standby_pair_is_one_server_the_agent_follows_without_switchover_after() {
    // switchover_after is a minute: only AG-10 can move the agent before it.
    let slow = Timings {
        switchover_after: 60 * SEC,
        ..t()
    };
    let mut site = Site::new(23);
    site.add_server("a", 100, t());
    site.add_server("b", 100, t());
    site.pair_servers(0, 1, FailbackPolicy::Manual);
    site.add_agent("m", &[0, 1], slow);
    site.start_all();
    site.run_for(10 * SEC);
    assert_eq!(site.agent_server(0), Some(0));
    site.kill(Node::Server(0));
    let took = site
        .run_until_pred(30 * SEC, |s| s.agent_server(0) == Some(1))
        .expect("the agent reached the promoted peer");
    // b promotes after failover_timeout of silence; the agent, trying the two in turn, is
    // there within a heartbeat of it.
    assert!(
        took <= t().failover_timeout + t().sync_interval + t().heartbeat,
        "took {took:?}"
    );
    assert!(
        site.agent_events(0, EventCode::Switchover).is_empty(),
        "the pair is one server: no SWITCHOVER"
    );
}

#[test]
fn ag10_outside_a_pair_switchover_after_keeps_its_meaning() {
    // The same outage with two servers that are not a pair (a home and another site's standby):
    // the agent waits switchover_after and raises SWITCHOVER.
    let mut site = home_and_standby(24);
    settle(&mut site);
    site.kill(Node::Server(0));
    let took = site
        .run_until_pred(30 * SEC, |s| s.agent_server(0) == Some(1))
        .expect("switched over");
    assert!(took >= t().switchover_after, "took {took:?}");
    assert_eq!(site.agent_events(0, EventCode::Switchover).len(), 1);
}

// ----- HS-8: a crash is proven by refusals, silence still waits -----

fn hs8_config(name: &str, mode: FailoverMode, crash_confirm: u32) -> HotStandbyConfig {
    HotStandbyConfig {
        name: name.into(),
        mode,
        sync_interval: Duration::from_secs(5),
        failover_timeout: Duration::from_secs(15),
        failback: FailbackPolicy::Manual,
        crash_confirm,
    }
}

fn hs8_peer(name: &str, mode: FailoverMode, state: &str, epoch: u64) -> PeerStatus {
    PeerStatus {
        name: name.into(),
        mode,
        state: state.into(),
        epoch,
        site_version: 0,
    }
}

fn hs8_actions(ha: &mut HotStandby) -> Vec<HaAction> {
    std::iter::from_fn(|| ha.poll_action()).collect()
}

fn hs8_events(ha: &mut HotStandby) -> Vec<Event> {
    std::iter::from_fn(|| ha.poll_event()).collect()
}

const REFUSED: &str = "Connection refused (os error 111)";

/// b is the STANDBY of a, which answered ACTIVE under epoch 1 at `now`.
fn hs8_standby(crash_confirm: u32, now: std::time::Instant) -> HotStandby {
    let mut b = HotStandby::new(
        hs8_config("b", FailoverMode::Secondary, crash_confirm),
        0,
        now,
    );
    b.handle_peer_status(now, hs8_peer("a", FailoverMode::Primary, "active", 1));
    assert_eq!(b.state().as_str(), "standby");
    hs8_actions(&mut b);
    hs8_events(&mut b);
    b
}

/// HS-3 with AL-5: a STANDBY told by its ACTIVE that something it replicates changed (an event,
/// a delivery mark) replicates at once; an ACTIVE, or a node whose peer is not the ACTIVE,
/// ignores it.
#[test]
fn hs3_a_standby_told_its_active_stored_something_replicates_at_once() {
    let start = std::time::Instant::now();
    let mut b = hs8_standby(3, start);
    let t1 = start + Duration::from_millis(300);
    b.handle_peer_changed(t1);
    assert_eq!(
        hs8_actions(&mut b),
        vec![HaAction::PollPeer { replicate: true }]
    );
    assert_eq!(hs8_events(&mut b), vec![]);
    assert_eq!(b.state().as_str(), "standby");
    // A lone ACTIVE (its peer answered as STANDBY) has nothing to pull.
    let mut a = HotStandby::new(hs8_config("a", FailoverMode::Primary, 3), 1, start);
    a.handle_peer_status(start, hs8_peer("b", FailoverMode::Secondary, "standby", 1));
    hs8_actions(&mut a);
    a.handle_peer_changed(t1);
    assert_eq!(hs8_actions(&mut a), vec![]);
}

#[test]
fn hs8_refusals_in_a_row_promote_at_once_quoting_them() {
    let start = std::time::Instant::now();
    let mut b = hs8_standby(3, start);
    // The connection b keeps open to a closes (a's process died): b polls now, not in 5 s.
    let t1 = start + Duration::from_secs(2);
    b.handle_peer_closed(t1);
    assert_eq!(
        hs8_actions(&mut b),
        vec![HaAction::PollPeer { replicate: false }]
    );
    b.handle_peer_refused(t1, REFUSED.into());
    assert_eq!(
        b.state().as_str(),
        "standby",
        "one refusal proves nothing yet"
    );
    assert_eq!(
        b.poll_timeout(),
        Some(t1 + CRASH_CONFIRM_INTERVAL),
        "confirmed soon"
    );
    let t2 = t1 + CRASH_CONFIRM_INTERVAL;
    b.handle_timeout(t2);
    assert!(matches!(
        hs8_actions(&mut b)[..],
        [HaAction::PollPeer { .. }]
    ));
    b.handle_peer_refused(t2, REFUSED.into());
    assert_eq!(b.state().as_str(), "standby");
    let t3 = t2 + CRASH_CONFIRM_INTERVAL;
    b.handle_timeout(t3);
    b.handle_peer_refused(t3, REFUSED.into());
    assert!(
        b.is_acting(),
        "three refusals in a row: promoted, 13 s before failover_timeout"
    );
    assert_eq!(b.epoch(), 2);
    let promoted = hs8_events(&mut b);
    assert_eq!(promoted.len(), 1);
    assert_eq!(promoted[0].code, EventCode::Promoted);
    assert_eq!(
        promoted[0].reason,
        "peer a's port refused 3 polls in a row over 200ms (Connection refused (os error 111)): its process is gone while its host answers (crash_confirm 3): promoting (epoch 2)"
    );
    assert!(hs8_actions(&mut b).contains(&HaAction::SaveEpoch { epoch: 2 }));
}

#[test]
fn hs8_refusals_interleaved_with_answers_or_silence_never_promote() {
    let start = std::time::Instant::now();
    let mut b = hs8_standby(3, start);
    let mut now = start;
    // Two refusals, then an answer or a silent poll, for ten seconds (a flapping port, a lossy
    // link): never three refusals in a row, and an ACTIVE answers within failover_timeout.
    for round in 0..50 {
        for _ in 0..2 {
            now += CRASH_CONFIRM_INTERVAL;
            b.handle_peer_refused(now, REFUSED.into());
        }
        now += CRASH_CONFIRM_INTERVAL;
        if round % 2 == 0 {
            b.handle_peer_status(now, hs8_peer("a", FailoverMode::Primary, "active", 1));
        } else {
            b.handle_peer_unreachable(now);
        }
        assert_eq!(b.state().as_str(), "standby", "round {round}");
    }
    assert!(hs8_events(&mut b).is_empty());
}

#[test]
fn hs8_silence_still_waits_failover_timeout_and_crash_confirm_0_turns_refusals_into_silence() {
    for (crash_confirm, refused) in [(3, false), (0, true)] {
        let start = std::time::Instant::now();
        let mut b = hs8_standby(crash_confirm, start);
        let mut now = start;
        while now < start + Duration::from_secs(14) {
            now += CRASH_CONFIRM_INTERVAL;
            if refused {
                b.handle_peer_refused(now, REFUSED.into());
            } else {
                b.handle_peer_unreachable(now);
            }
            assert_eq!(b.state().as_str(), "standby", "at {:?}", now - start);
        }
        b.handle_timeout(start + Duration::from_secs(15));
        assert!(
            b.is_acting(),
            "crash_confirm {crash_confirm}: promoted at failover_timeout"
        );
        let promoted = hs8_events(&mut b);
        assert!(
            promoted[0]
                .reason
                .starts_with("peer a has not answered for 15s (failover_timeout 15s)"),
            "{}",
            promoted[0].reason
        );
    }
}

#[test]
fn hs8_refusals_from_a_peer_never_seen_active_wait_failover_timeout() {
    // A server starting while its peer is not running yet: the peer was never the ACTIVE, so a
    // refusal proves no crash; HS-2 still waits for an ACTIVE peer.
    let start = std::time::Instant::now();
    let mut b = HotStandby::new(hs8_config("b", FailoverMode::Secondary, 3), 0, start);
    for i in 1..=20 {
        b.handle_peer_refused(start + i * CRASH_CONFIRM_INTERVAL, REFUSED.into());
    }
    assert_eq!(b.state().as_str(), "starting");
    b.handle_timeout(start + Duration::from_secs(15));
    assert!(b.is_acting());
}

#[test]
fn hs8_a_refusal_after_a_partition_heals_follows_hs6() {
    // Both acted during a partition, b under a higher epoch than a (primary). Refusals seen by
    // an ACTIVE change nothing; when they meet, the lower epoch steps down (HS-6).
    let start = std::time::Instant::now();
    let mut a = HotStandby::new(hs8_config("a", FailoverMode::Primary, 3), 1, start);
    a.handle_peer_status(start, hs8_peer("b", FailoverMode::Secondary, "standby", 0));
    assert!(a.is_acting());
    let epoch = a.epoch();
    hs8_events(&mut a);
    for i in 1..=5 {
        a.handle_peer_refused(start + i * CRASH_CONFIRM_INTERVAL, REFUSED.into());
    }
    assert!(
        a.is_acting() && a.epoch() == epoch,
        "an ACTIVE ignores refusals"
    );
    assert!(hs8_events(&mut a).is_empty());
    a.handle_peer_status(
        start + Duration::from_secs(1),
        hs8_peer("b", FailoverMode::Secondary, "active", epoch + 1),
    );
    assert_eq!(a.state().as_str(), "standby");
    let codes: Vec<EventCode> = hs8_events(&mut a).into_iter().map(|e| e.code).collect();
    assert_eq!(codes, vec![EventCode::SplitBrain, EventCode::Demoted]);
    assert!(hs8_actions(&mut a).contains(&HaAction::MergeToPeer));
}

#[test]
fn hs8_a_former_active_restarting_after_the_confirmation_comes_back_standby() {
    let start = std::time::Instant::now();
    let mut b = hs8_standby(3, start);
    for i in 1..=3 {
        b.handle_peer_refused(start + i * CRASH_CONFIRM_INTERVAL, REFUSED.into());
    }
    assert!(b.is_acting() && b.epoch() == 2);
    // a restarts with its persisted epoch 1 and finds b ACTIVE under 2: STANDBY, and it hands
    // over what it acknowledged after b's last replication (HS-5).
    let back = start + Duration::from_secs(1);
    let mut a = HotStandby::new(hs8_config("a", FailoverMode::Primary, 3), 1, back);
    hs8_actions(&mut a);
    a.handle_peer_status(back, hs8_peer("b", FailoverMode::Secondary, "active", 2));
    assert_eq!(a.state().as_str(), "standby");
    assert_eq!(
        hs8_actions(&mut a),
        vec![HaAction::SaveEpoch { epoch: 2 }, HaAction::MergeToPeer]
    );
    // And b, seeing a STANDBY, keeps the role (manual failback).
    b.handle_peer_status(back, hs8_peer("a", FailoverMode::Primary, "standby", 2));
    assert!(b.is_acting());
}

#[test]
fn hs8_a_reset_right_after_the_watch_closed_is_polled_again_soon() {
    // The ACTIVE's process died: its kernel closed the watch connection, and the poll that
    // followed met the port while it was closing (a reset, not a refusal). That proves nothing
    // yet, but the host is up: b polls again in 100 ms, not at the next sync_interval, and the
    // refusals that follow promote it.
    let start = std::time::Instant::now();
    let mut b = hs8_standby(3, start);
    let t1 = start + Duration::from_secs(2);
    b.handle_peer_closed(t1);
    hs8_actions(&mut b);
    b.handle_peer_unreachable(t1);
    assert_eq!(b.state().as_str(), "standby");
    assert_eq!(b.poll_timeout(), Some(t1 + CRASH_CONFIRM_INTERVAL));
    let mut t = t1;
    for _ in 0..3 {
        t += CRASH_CONFIRM_INTERVAL;
        b.handle_timeout(t);
        assert!(matches!(
            hs8_actions(&mut b)[..],
            [HaAction::PollPeer { .. }]
        ));
        b.handle_peer_refused(t, REFUSED.into());
    }
    assert!(b.is_acting(), "{}", b.reason());
    // Without a closed watch, a failed poll is silence and waits for the next sync_interval.
    let mut c = hs8_standby(3, start);
    c.handle_peer_unreachable(t1);
    assert!(c
        .poll_timeout()
        .is_some_and(|p| p > t1 + Duration::from_secs(1)));
}

#[test]
fn hs8_a_former_active_restarting_within_the_confirmation_window_breaks_the_row() {
    // a answers again (restarted, STARTING) after two refusals: b's row is broken, b does not
    // promote, and a (the preferred one) takes the role back under a new epoch; never two ACTIVE
    // under one epoch.
    let start = std::time::Instant::now();
    let mut b = hs8_standby(3, start);
    for i in 1..=2 {
        b.handle_peer_refused(start + i * CRASH_CONFIRM_INTERVAL, REFUSED.into());
    }
    let back = start + 3 * CRASH_CONFIRM_INTERVAL;
    b.handle_peer_status(back, hs8_peer("a", FailoverMode::Primary, "starting", 1));
    b.handle_peer_refused(back + CRASH_CONFIRM_INTERVAL, REFUSED.into());
    assert_eq!(
        b.state().as_str(),
        "standby",
        "a STARTING peer's refusals prove no crash"
    );
    let mut a = HotStandby::new(hs8_config("a", FailoverMode::Primary, 3), 1, back);
    a.handle_peer_status(back, hs8_peer("b", FailoverMode::Secondary, "standby", 1));
    assert!(a.is_acting() && a.epoch() == 3, "epoch {}", a.epoch());
    b.handle_peer_status(back, hs8_peer("a", FailoverMode::Primary, "active", 3));
    assert_eq!(b.state().as_str(), "standby");
}

#[test]
fn hs8_a_planned_stop_hands_the_role_over_break_before_make_and_nothing_is_lost() {
    let mut site = hot_standby(2, FailbackPolicy::Manual);
    settle(&mut site);
    site.produce(0, 50);
    site.produce(1, 50);
    site.run_for(SEC);
    let epoch = site.server(0).ha().epoch();
    let msg = site
        .operate(0, |s, now| s.hand_over(now, "planned stop (SIGTERM)"))
        .unwrap();
    assert_eq!(
        msg,
        format!("planned stop (SIGTERM): handing the ACTIVE role (epoch {epoch}) to peer b")
    );
    assert!(!site.server(0).is_acting(), "it steps down first");
    // Break before make: at no moment do both act, and b takes over without waiting for any
    // timer (failover_timeout is 15 s here).
    for _ in 0..100 {
        assert!(!(site.server(0).is_acting() && site.server(1).is_acting()));
        site.run_for(Duration::from_millis(10));
    }
    assert!(
        site.server(1).is_acting(),
        "{}",
        site.server(1).ha().reason()
    );
    assert!(site.server(1).ha().epoch() > epoch);
    let promoted = site.server_events(1, EventCode::Promoted);
    assert!(
        promoted.last().unwrap().reason.starts_with(&format!(
            "peer a handed over the ACTIVE role of epoch {epoch} (planned stop (SIGTERM))"
        )),
        "{}",
        promoted.last().unwrap().reason
    );
    assert_eq!(site.server_events(0, EventCode::Handover).len(), 1);
    assert!(
        site.server(0)
            .ha()
            .reason()
            .starts_with("handed the ACTIVE role to peer b"),
        "{}",
        site.server(0).ha().reason()
    );
    // a stops; every record it acknowledged is on b, and the agents follow b.
    site.kill(Node::Server(0));
    site.produce(0, 10);
    site.run_for(5 * SEC);
    for a in 0..2 {
        for seq in 1..=50 {
            assert!(
                site.servers[1].disk.records.contains(&(a, seq)),
                "record {seq} of agent {a} missing on the new ACTIVE"
            );
        }
        assert_eq!(site.agent_server(a), Some(1));
    }
    assert!(site.servers[1].disk.records.contains(&(0, 60)));
}

#[test]
fn hs8_a_planned_stop_without_a_healthy_standby_just_stops() {
    let mut site = hot_standby(1, FailbackPolicy::Manual);
    settle(&mut site);
    site.kill(Node::Server(1));
    site.run_for(20 * SEC);
    let err = site
        .operate(0, |s, now| s.hand_over(now, "planned stop (SIGTERM)"))
        .unwrap_err();
    assert_eq!(
        err,
        "the peer is not answering as STANDBY: stepping down would leave no acting server"
    );
    assert!(site.server(0).is_acting());
    assert!(site.server_events(0, EventCode::Handover).is_empty());
}

#[test]
fn hs8_a_handover_the_peer_refuses_leaves_this_server_active_with_its_epoch() {
    let now = std::time::Instant::now();
    let mut a = HotStandby::new(hs8_config("a", FailoverMode::Primary, 3), 1, now);
    a.handle_peer_status(now, hs8_peer("b", FailoverMode::Secondary, "standby", 1));
    assert!(a.is_acting());
    let epoch = a.epoch();
    hs8_actions(&mut a);
    hs8_events(&mut a);
    a.hand_over(now, "planned stop (SIGTERM)").unwrap();
    assert!(hs8_actions(&mut a).contains(&HaAction::HandOver {
        epoch,
        reason: "planned stop (SIGTERM)".into()
    }));
    // While handing over, the preferred primary does not take the role back from a STANDBY peer.
    a.handle_peer_status(now, hs8_peer("b", FailoverMode::Secondary, "standby", 1));
    assert_eq!(a.state().as_str(), "standby");
    a.handle_handover_result(now, Err("this server is already ACTIVE (epoch 4)".into()));
    assert!(a.is_acting());
    assert_eq!(a.epoch(), epoch, "nobody else took the role: same epoch");
    assert_eq!(
        a.reason(),
        format!("peer b did not take the ACTIVE role: this server is already ACTIVE (epoch 4): this server stays ACTIVE (epoch {epoch})")
    );
    let codes: Vec<EventCode> = hs8_events(&mut a).into_iter().map(|e| e.code).collect();
    assert_eq!(codes, vec![EventCode::Handover, EventCode::Handover]);
}

#[test]
fn hs8_a_handover_whose_answer_is_lost_falls_back_to_silence() {
    // The peer never answers: after failover_timeout of no ACTIVE peer, this server acts again.
    let now = std::time::Instant::now();
    let mut a = HotStandby::new(hs8_config("a", FailoverMode::Primary, 3), 1, now);
    a.handle_peer_status(now, hs8_peer("b", FailoverMode::Secondary, "standby", 1));
    a.hand_over(now, "set to STANDBY by an operator").unwrap();
    let later = now + Duration::from_secs(15);
    a.handle_timeout(later);
    assert!(a.is_acting(), "{}", a.reason());
    assert!(!a.handing_over());
}

#[test]
fn hs8_the_standby_refuses_a_handover_for_an_older_epoch() {
    let now = std::time::Instant::now();
    let mut b = hs8_standby(3, now);
    b.handle_peer_status(now, hs8_peer("a", FailoverMode::Primary, "active", 5));
    let err = b
        .handle_handover_request(now, hs8_peer("a", FailoverMode::Primary, "standby", 3), "x")
        .unwrap_err();
    assert_eq!(err, "the handover is for epoch 3, below this server's 5");
    assert_eq!(b.state().as_str(), "standby");
    let epoch = b
        .handle_handover_request(now, hs8_peer("a", FailoverMode::Primary, "standby", 5), "x")
        .unwrap();
    assert!(b.is_acting() && epoch == 6 && b.epoch() == 6);
    let err = b
        .handle_handover_request(now, hs8_peer("a", FailoverMode::Primary, "standby", 6), "x")
        .unwrap_err();
    assert_eq!(err, "this server is already ACTIVE (epoch 6)");
    // Already past the handed-over epoch (it promoted by itself when its peer stepped down):
    // the handover is done.
    assert_eq!(
        b.handle_handover_request(now, hs8_peer("a", FailoverMode::Primary, "standby", 5), "x"),
        Ok(6)
    );
}

#[test]
fn hs5_failback_auto_after_hold_down() {
    let mut site = hot_standby(1, FailbackPolicy::Auto { hold_down: 8 * SEC });
    site.run_for(5 * SEC);
    site.kill(Node::Server(0));
    site.run_for(15 * SEC);
    site.start_server(0);
    site.run_for(5 * SEC);
    assert!(site.server(1).is_acting(), "not before hold_down");
    site.run_for(20 * SEC);
    assert!(site.server(0).is_acting());
    let ev = site.server_events(1, EventCode::Demoted);
    assert!(
        ev.last()
            .unwrap()
            .reason
            .starts_with("failback auto: primary a healthy as STANDBY for"),
        "{}",
        ev.last().unwrap().reason
    );
}

#[test]
fn hs6_split_brain_lower_epoch_steps_down_and_no_record_is_lost() {
    let mut site = Site::new(66);
    site.add_server("a", 100, t());
    site.add_server("b", 100, t());
    site.pair_servers(0, 1, FailbackPolicy::Manual);
    site.add_agent("x", &[0, 1], t());
    site.add_agent("y", &[1, 0], t());
    site.start_all();
    site.run_for(10 * SEC);
    // Partition: the servers cannot see each other; y cannot reach a, x still can.
    site.cut(Node::Server(0), Node::Server(1), false);
    site.cut(Node::Agent(1), Node::Server(0), false);
    site.run_for(20 * SEC);
    assert!(
        site.server(0).is_acting() && site.server(1).is_acting(),
        "both act during the partition"
    );
    site.produce(0, 100);
    site.produce(1, 100);
    site.run_for(5 * SEC);
    assert_eq!(site.agent_server(1), Some(1));
    site.heal_all();
    site.run_for(20 * SEC);
    let acting: Vec<bool> = (0..2).map(|s| site.server(s).is_acting()).collect();
    assert_eq!(
        acting,
        vec![false, true],
        "the lower epoch (a) stepped down"
    );
    let ev = site.server_events(0, EventCode::SplitBrain);
    assert!(
        ev[0]
            .reason
            .contains("this server steps down and hands over its records"),
        "{}",
        ev[0].reason
    );
    // Every record either acknowledged is on the acting server now.
    for a in 0..2 {
        for seq in 1..=100 {
            assert!(
                site.servers[1].disk.records.contains(&(a, seq)),
                "record {seq} of agent {a} missing on the acting server"
            );
        }
    }
}

#[test]
fn hs7_failover_mode_changes_at_run_time() {
    let mut site = hot_standby(0, FailbackPolicy::Manual);
    site.run_for(10 * SEC);
    assert!(!site.server(1).is_acting());
    let mut config = site.servers[1].config.ha.clone();
    config.mode = FailoverMode::Off;
    site.operate(1, |s, now| s.handle_ha_config(now, config, None, None));
    assert!(site.server(1).is_acting());
    assert_eq!(
        site.server(1).ha().reason(),
        "failover mode set to off: this server acts alone (epoch 2)"
    );
}

/// HS-5: the dry run of the operator's "set this server to standby" (what `status` shows, the
/// tray's item and the console's button) is the guard that refuses it, for each of its causes.
#[test]
fn hs5_the_standby_dry_run_is_the_guard_that_refuses_operator_standby() {
    let mut site = hot_standby(0, FailbackPolicy::Manual);
    site.run_for(10 * SEC);
    assert!(site.server(0).is_acting() && !site.server(1).is_acting());
    let both = |site: &mut Site, s: usize| {
        let dry = site.operate(s, |srv, now| srv.ha().can_hand_over(now));
        let real = site.operate(s, |srv, now| srv.operator_standby(now));
        (dry, real)
    };
    // 1. Not the acting server.
    let (dry, real) = both(&mut site, 1);
    assert_eq!(dry, Err("this server is already STANDBY".to_string()));
    assert_eq!(real, Err(dry.unwrap_err()));
    // 2. The peer is not there to take over.
    site.kill(Node::Server(1));
    site.run_for(30 * SEC);
    let (dry, real) = both(&mut site, 0);
    assert_eq!(
        dry,
        Err(
            "the peer is not answering as STANDBY: stepping down would leave no acting server"
                .to_string()
        )
    );
    assert_eq!(real, Err(dry.unwrap_err()));
    assert!(site.server(0).is_acting(), "a refusal changes nothing");
    // 3. Allowed, and the dry run changes nothing: the real action then succeeds.
    site.start_server(1);
    site.run_for(10 * SEC);
    assert_eq!(
        site.operate(0, |srv, now| srv.ha().can_hand_over(now)),
        Ok(())
    );
    assert!(site.server(0).is_acting(), "a dry run changes nothing");
    let (dry, real) = both(&mut site, 0);
    assert_eq!(dry, Ok(()));
    assert!(real.is_ok(), "{real:?}");
    assert!(!site.server(0).is_acting());
    // 4. Failover mode off: no peer to hand the role to.
    let mut config = site.servers[0].config.ha.clone();
    config.mode = FailoverMode::Off;
    site.operate(0, |s, now| s.handle_ha_config(now, config, None, None));
    let (dry, real) = both(&mut site, 0);
    assert_eq!(
        dry,
        Err("failover mode is off: there is no peer to hand the role to".to_string())
    );
    assert_eq!(real, Err(dry.unwrap_err()));
}

/// SECURITY.md: only the home server and the hot-standby peer it named direct an agent; a
/// standby server of another site does not, whatever it claims.
#[test]
fn security_only_home_and_its_named_peer_direct_an_agent() {
    let config = AgentConfig {
        name: "x".into(),
        servers: vec![
            "https://home".into(),
            "https://peer".into(),
            "https://foreign".into(),
        ],
        heartbeat: SEC,
        switchover_after: Duration::ZERO,
        switchback_interval: 5 * SEC,
        held_limit: u64::MAX,
    };
    let now = std::time::Instant::now();
    let mut agent = Agent::new(config.clone(), Restored::default(), now);
    assert_eq!(agent.may_direct(0, "h0me"), Ok(()));
    let refused = agent.may_direct(1, "peerfp").unwrap_err();
    assert_eq!(
        refused,
        "https://peer is not the home server nor its hot-standby peer: it may not direct this agent"
    );
    // A foreign server cannot name a peer (nor itself).
    assert!(!agent.handle_home_peer(2, "foreignfp", &["foreignfp".into()]));
    assert!(agent.may_direct(2, "foreignfp").is_err());
    // Home names its peer; then the peer directs, and the foreign standby still does not.
    assert!(agent.handle_home_peer(0, "h0me", &["PEERFP".into()]));
    assert_eq!(agent.may_direct(1, "peerfp"), Ok(()));
    assert!(agent.may_direct(2, "foreignfp").is_err());
    // The peer announces its rotation: the new certificate directs too.
    assert!(agent.handle_home_peer(1, "peerfp", &["newpeerfp".into()]));
    assert_eq!(agent.may_direct(1, "newpeerfp"), Ok(()));
    // Home's word replaces the old set (a peer replaced by the operator is no longer trusted).
    assert!(agent.handle_home_peer(0, "h0me", &["otherpeer".into()]));
    assert!(agent.may_direct(1, "peerfp").is_err());
    // Kept across a restart.
    let restored = Restored {
        home_peer: agent.home_peer().clone(),
        ..Restored::default()
    };
    let agent = Agent::new(config, restored, now);
    assert_eq!(agent.may_direct(1, "otherpeer"), Ok(()));
}

/// CK-1, SECURITY.md: a check refused by an agent raises CHECK_REFUSED once per reason.
#[test]
fn ck1_a_refused_command_check_raises_one_event_per_agent_check_and_reason() {
    let now = std::time::Instant::now();
    let mut server = Server::new(
        ServerConfig {
            name: "s".into(),
            standby_capacity: 1,
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
                silent_after: 120 * SEC,
                group_wait: 10 * SEC,
            },
        },
        Vec::new(),
        Vec::new(),
        0,
        now,
    );
    while server.poll_event().is_some() {}
    for _ in 0..3 {
        server.handle_check_refused(now, "a", "load", "not allowed on this agent: off");
    }
    let ev = server.poll_event().expect("CHECK_REFUSED");
    assert_eq!(ev.code, EventCode::CheckRefused);
    assert_eq!(ev.subject, "a");
    assert_eq!(
        ev.reason,
        "a refused check load: not allowed on this agent: off"
    );
    assert_eq!(server.poll_event(), None, "told once");
    server.handle_check_refused(now, "b", "load", "not allowed on this agent: off");
    server.handle_check_refused(now, "a", "load", "another reason");
    assert_eq!(server.poll_event().map(|e| e.subject), Some("b".into()));
    assert_eq!(
        server.poll_event().map(|e| e.reason),
        Some("a refused check load: another reason".into())
    );
}

// ----- issue 12: each party acts only within its role (SECURITY.md) -----

/// Issue 12 item 3: a hook result for a pair the agent is not a member of is refused with its
/// reason and changes nothing; a member's is taken.
#[test]
fn security_hook_results_only_from_a_member_of_the_pair() {
    let mut site = pair_site(auto());
    site.add_agent("outsider", &[0, 1], t());
    let refused = site.operate(0, |s, now| {
        s.handle_hook_result(
            now,
            "outsider",
            "web",
            "on_activate",
            99,
            Err("forged".into()),
        )
    });
    assert_eq!(
        refused,
        Err("refused a hook result from outsider for pair web: outsider is not a member".into())
    );
    assert_eq!(site.server(0).pair("web").unwrap().status(), "normal");
    assert!(site.server_events(0, EventCode::HookFailed).is_empty());
    let unknown = site.operate(0, |s, now| {
        s.handle_hook_result(now, "p", "nope", "on_activate", 1, Ok(()))
    });
    assert_eq!(
        unknown,
        Err("refused a hook result from p for pair nope: no such pair".into())
    );
    let member = site.operate(0, |s, now| {
        s.handle_hook_result(now, "s", "web", "on_activate", 1, Err("exit 1".into()))
    });
    assert_eq!(member, Ok(()));
    assert_eq!(site.server(0).pair("web").unwrap().status(), "degraded");
}

/// Issue 12 item 3: records under a pair's alias only from a member of that pair; an alias no
/// pair of the site has speaks for nobody.
#[test]
fn security_records_under_a_pair_alias_only_from_a_member() {
    let site = pair_site(auto());
    let server = site.server(0);
    assert_eq!(server.may_record_under("p", "web", Some(1)), Ok(()));
    assert_eq!(
        server.may_record_under("outsider", "web", Some(1)),
        Err("refused records from outsider under pair web: outsider is not a member".into())
    );
    assert_eq!(
        server.may_record_under("outsider", "no-such-pair", None),
        Ok(())
    );
}

/// Issue 12 item 3 (the lease): records under a pair's alias carry the pair epoch their member
/// made them under, and count only under an epoch that member held — cached records arriving
/// after a handover are still taken from their maker, a member that never held that epoch is
/// refused. The holders survive a restart and reach the STANDBY in the pair's stored state, and
/// an epoch the server never saw held (given out by a server it replaced) cannot be checked.
#[test]
fn security_records_under_a_pair_alias_only_under_an_epoch_its_sender_held() {
    let mut site = pair_site(SwitchbackPolicy::Manual);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("p"));
    site.operate(0, |s, now| s.force_failover(now, "web"))
        .expect("force failover");
    site.run_for(10 * SEC);
    assert_eq!(site.pair_holder(0, "web").as_deref(), Some("s"));
    let server = site.server(0);
    assert_eq!(server.pair("web").unwrap().epoch(), 2);
    // p's records of epoch 1 reach the server after the handover: still p's.
    assert_eq!(server.may_record_under("p", "web", Some(1)), Ok(()));
    assert_eq!(server.may_record_under("s", "web", Some(2)), Ok(()));
    assert_eq!(
        server.may_record_under("s", "web", Some(1)),
        Err("refused records from s under pair web: made under pair epoch 1, which p held".into())
    );
    assert_eq!(
        server.may_record_under("p", "web", Some(2)),
        Err("refused records from p under pair web: made under pair epoch 2, which s held".into())
    );
    // No epoch (an agent older than this check): only from the member holding the duty now.
    assert_eq!(server.may_record_under("s", "web", None), Ok(()));
    assert_eq!(
        server.may_record_under("p", "web", None),
        Err("refused records from p under pair web: they carry no pair epoch and p does not hold the duty".into())
    );
    // An epoch this server never saw anybody hold cannot be checked.
    assert_eq!(server.may_record_under("p", "web", Some(7)), Ok(()));
    // The holders are part of the pair's stored state: a pair made from it checks the same.
    let state = server.pair("web").unwrap().state().clone();
    assert_eq!(
        state.holders.into_iter().collect::<Vec<_>>(),
        vec![(1, Member::Primary), (2, Member::Secondary)]
    );
}

/// Issue 12: a refused hook result (HOOK_RESULT_REFUSED) and records refused under a pair's
/// alias (RECORDS_REFUSED) raise an event with the refusal's sentence, once per agent and pair
/// (a pair no site has counts once), so a hostile agent cannot flood the event list. Neither
/// notifies.
#[test]
fn security_refused_hook_results_and_aliases_raise_an_event_once() {
    let mut site = pair_site(auto());
    for _ in 0..3 {
        let refused = site.operate(0, |s, now| {
            s.handle_hook_result(now, "outsider", "web", "on_activate", 9, Ok(()))
        });
        assert!(refused.is_err());
        let refused = site.operate(0, |s, now| {
            s.handle_records_under(now, "outsider", "web", Some(1))
        });
        assert!(refused.is_err());
    }
    for pair in ["nope-1", "nope-2"] {
        let refused = site.operate(0, |s, now| {
            s.handle_hook_result(now, "outsider", pair, "on_activate", 1, Ok(()))
        });
        assert!(refused.is_err());
    }
    assert_eq!(
        site.operate(0, |s, now| s.handle_records_under(now, "p", "web", Some(1))),
        Ok(()),
        "a member's records raise nothing"
    );
    let sentences = |code| -> Vec<String> {
        site.server_events(0, code)
            .iter()
            .map(|e| e.reason.clone())
            .collect()
    };
    assert_eq!(
        sentences(EventCode::HookResultRefused),
        vec![
            "refused a hook result from outsider for pair web: outsider is not a member",
            "refused a hook result from outsider for pair nope-1: no such pair",
        ]
    );
    assert_eq!(
        sentences(EventCode::RecordsRefused),
        vec!["refused records from outsider under pair web: outsider is not a member"]
    );
    for code in [EventCode::HookResultRefused, EventCode::RecordsRefused] {
        assert!(!code.notify());
        assert_eq!(code.severity(), Severity::Warning);
    }
}

/// Issue 12 item 3 (CT-2): an agent's announced certificate is taken into use only when the
/// agent connects with it; an announcement alone changes nothing, and another certificate is
/// still refused.
#[test]
fn security_an_agent_certificate_change_needs_proof_of_the_key() {
    let mut reg = AgentRegistry::new(1, []);
    let now = std::time::Instant::now();
    let hello = Hello {
        id: "i".into(),
        name: "n".into(),
        fingerprint: "old".into(),
        token: TokenCheck::Valid,
        home: true,
    };
    assert_eq!(reg.handle_hello(now, &hello), Ok(()));
    reg.take_changed();
    let why = reg.announce_rotation("i", "new");
    assert_eq!(
        why,
        "n announced certificate new: taken into use when it connects with it"
    );
    assert_eq!(
        reg.by_name("n").unwrap().fingerprint,
        "old",
        "not on the announcement alone"
    );
    let kept: Vec<_> = reg
        .take_changed()
        .into_iter()
        .map(|e| (e.fingerprint, e.announced))
        .collect();
    assert_eq!(
        kept,
        vec![("old".to_string(), Some("new".to_string()))],
        "the announcement is persisted with the entry, the fingerprint unchanged"
    );
    let other = Hello {
        fingerprint: "other".into(),
        ..hello.clone()
    };
    assert_eq!(
        reg.handle_hello(now, &other).unwrap_err().reason(),
        "certificate fingerprint does not match the accepted one (old)"
    );
    let proven = Hello {
        fingerprint: "new".into(),
        ..hello.clone()
    };
    assert_eq!(reg.handle_hello(now, &proven), Ok(()));
    assert_eq!(reg.by_name("n").unwrap().fingerprint, "new");
    assert_eq!(reg.take_changed().len(), 1, "persisted and replicated");
    assert_eq!(
        reg.handle_hello(now, &hello).unwrap_err().reason(),
        "certificate fingerprint does not match the accepted one (new)",
        "the old certificate is retired"
    );
    assert_eq!(
        reg.announce_rotation("unknown", "x"),
        "ignored a certificate announcement for agent unknown: not accepted here"
    );
}

/// Issue 12 item 3 (CT-2): an announced certificate is kept with the agent's entry, so a server
/// restarted before the agent reconnects still takes it when the agent connects with it.
#[test]
fn security_an_announced_agent_certificate_survives_a_restart_of_the_server() {
    let mut site = home_and_standby(1);
    settle(&mut site);
    let id = site
        .server(0)
        .registry()
        .by_name("x")
        .expect("enrolled")
        .id
        .clone();
    let why = site.operate(0, |s, now| s.handle_agent_cert_rotated(now, &id, "fp-new"));
    assert_eq!(
        why,
        "x announced certificate fp-new: taken into use when it connects with it"
    );
    site.kill(Node::Server(0));
    site.run_for(SEC);
    site.start_server(0);
    settle(&mut site);
    assert_eq!(
        site.server(0).registry().announced_rotation(&id),
        Some("fp-new"),
        "remembered across the restart"
    );
    let hello = Hello {
        id: id.clone(),
        name: "x".into(),
        fingerprint: "fp-new".into(),
        token: TokenCheck::Absent,
        home: true,
    };
    let admission = site.operate(0, |s, now| s.handle_hello(now, &hello));
    assert!(matches!(admission, Admission::Accepted(_)), "{admission:?}");
    let entry = site
        .server(0)
        .registry()
        .by_name("x")
        .expect("kept")
        .clone();
    assert_eq!(
        (entry.fingerprint.as_str(), entry.announced),
        ("fp-new", None)
    );
}

/// Issue 12 item 3 (AG-4): the server decides whether it is an agent's home when it makes the
/// agent's entry, and keeps it with the entry; a later Hello claiming otherwise changes nothing.
/// An agent that first came as the guest of a standby of another site cannot claim `home` there
/// to take no standby slot; an agent of a hot-standby cluster is home on both servers, also on
/// the peer it tells "not home" (the entry is replicated with the site).
#[test]
fn security_home_is_decided_by_the_server_not_claimed_by_the_agent() {
    // A foreign standby with one slot, taken by x when its home a is gone.
    let mut site = home_and_standby(1);
    settle(&mut site);
    site.kill(Node::Server(0));
    site.run_for(30 * SEC);
    assert_eq!(site.agent_server(0), Some(1));
    let guest = |home: bool| Hello {
        id: "id-z".into(),
        name: "z".into(),
        fingerprint: "fp-z".into(),
        token: TokenCheck::Valid,
        home,
    };
    let full = Admission::Refused(Refusal::Capacity { capacity: 1 });
    assert_eq!(
        site.operate(1, |s, now| s.handle_hello(now, &guest(false))),
        full
    );
    assert_eq!(
        site.server(1).registry().by_name("z").map(|e| e.home),
        Some(Some(false)),
        "decided when the entry was made"
    );
    assert_eq!(
        site.operate(1, |s, now| s.handle_hello(now, &guest(true))),
        full,
        "claiming home later takes no slot-free admission"
    );
    assert!(!site.server(1).registry().is_connected_by_name("z"));

    // A hot-standby cluster whose servers have no standby slot at all: its own agent, admitted
    // by a, is home on b after a is gone, though it tells b "not home".
    let mut site = Site::new(12);
    site.add_server("a", 0, t());
    site.add_server("b", 0, t());
    site.pair_servers(0, 1, FailbackPolicy::Manual);
    site.add_agent("m", &[0, 1], t());
    site.start_all();
    settle(&mut site);
    assert_eq!(
        site.server(1).registry().by_name("m").map(|e| e.home),
        Some(Some(true)),
        "replicated with the entry"
    );
    site.kill(Node::Server(0));
    site.run_for(30 * SEC);
    assert_eq!(
        site.agent_server(0),
        Some(1),
        "home on a's peer: no slot needed"
    );
    assert_eq!(site.server(1).registry().slots_used(), 0);
}

/// Issue 12 item 2 (HS-3): a site snapshot from the peer is applied only by a server that does
/// not act, and only from a peer that says it is ACTIVE.
#[test]
fn security_only_a_standby_applies_the_site_from_an_active_peer() {
    let site = pair_site(auto());
    let peer = |state: &str| PeerStatus {
        name: "x".into(),
        mode: FailoverMode::Secondary,
        state: state.into(),
        epoch: 1,
        site_version: 1,
    };
    assert!(site.server(0).is_acting());
    assert_eq!(
        site.server(0).may_apply_replicated_site(&peer("active")),
        Err("ignored a site snapshot from peer x: this server is ACTIVE and keeps its own site configuration".into())
    );
    assert!(!site.server(1).is_acting());
    assert_eq!(
        site.server(1).may_apply_replicated_site(&peer("active")),
        Ok(())
    );
    assert_eq!(
        site.server(1).may_apply_replicated_site(&peer("standby")),
        Err("ignored a site snapshot from peer x: it is standby, not ACTIVE".into())
    );
}

/// HS-4 with PR-5: the ACTIVE server dies in the middle of a forced failover (the pair was
/// persisted and replicated with nobody active under the new epoch while it waited for the
/// primary to stand down). The promoted STANDBY finishes that handover — the operator's choice,
/// the secondary, once the primary has surely stood down — instead of giving the duty to
/// whichever member connects first.
#[test]
fn hs4_a_promoted_standby_finishes_the_forced_failover_the_dead_active_had_begun() {
    let mut site = pair_site(SwitchbackPolicy::Manual);
    // The primary goes silent just as the operator forces the pair to the secondary: the
    // handover waits for the primary's lease, and the STANDBY replicates the pair meanwhile.
    site.kill(Node::Agent(0));
    site.operate(0, |s, now| s.force_failover(now, "web"))
        .unwrap();
    site.run_for(2 * t().sync_interval);
    let (_, replicated) = site.servers[1].disk.pairs["web"].clone();
    assert_eq!(replicated.active, None, "replicated mid-handover");
    assert!(replicated.held);
    // The secondary is away too when the ACTIVE dies: the primary reaches the promoted server
    // first and must not be given the duty the operator moved away from it.
    site.kill(Node::Server(0));
    site.kill(Node::Agent(1));
    site.start_agent(0);
    site.run_until_pred(30 * SEC, |s| {
        s.server(1).is_acting() && s.agent_server(0) == Some(1)
    })
    .unwrap();
    site.run_for(SEC);
    site.start_agent(1);
    site.run_for(30 * SEC);
    assert_eq!(
        site.pair_holder(1, "web").as_deref(),
        Some("s"),
        "the forced failover holds under the promoted server"
    );
    assert!(site.duty_overlaps("web").is_empty());
}
