//! Issue 19: exactly once across independent servers (PRODUCT.md AG-2 as worded now). An
//! agent's home server ends up holding every record of that agent exactly once, whatever a
//! standby of another site took while standing in; the standby keeps its copy, marked
//! `taken_for`; no store holds an `(agent, seq)` twice. Real processes, counted by the checker.

use std::time::Duration;

use understudy_system_tests::*;

const TOKEN_SERVER: &str = "server.enroll_token=tok19-0123456789abcdef";
const TOKEN_AGENT: &str = "agent.enroll_token=tok19-0123456789abcdef";

fn agent_sets(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec![TOKEN_AGENT];
    v.extend_from_slice(FAST_AGENT);
    v.extend_from_slice(extra);
    v
}

/// Waits until the agent is home with nothing cached and nothing held.
fn wait_home_and_empty(agent: &Node, home: &Node) {
    agent.wait_link("home", Some(home));
    wait_ok(WAIT, "an empty cache, nothing held", || {
        let l = agent.link().ok_or("no status")?;
        (l.cached == 0 && l.held == 0)
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
}

/// The scenario, 20 times with short timings: two independent servers, one agent
/// sending batches of 20 while home is SIGKILLed mid-stream, then the standby too (blackout),
/// both restarted, the agent back home. Every run: home complete and exactly once, each store
/// without a duplicate, the standby's copy marked.
#[test]
fn ag2_home_killed_mid_stream_then_blackout_home_complete_exactly_once_20_runs() {
    let site = Site::new(191);
    let mut took_over = 0;
    for run in 0..20 {
        let mut home = site.server(&format!("home{run}"), &[TOKEN_SERVER]);
        let mut standby = site.server(&format!("standby{run}"), &[TOKEN_SERVER]);
        let mut agent = site.agent(&format!("a{run}"), &[&home, &standby], &agent_sets(&[]));
        home.start();
        standby.start();
        agent.start();
        agent.wait_link("home", Some(&home));

        let sender = Sender::start(&agent, 20);
        sender.wait_more(60 + 20 * (run % 5) as u64);
        home.kill9(); // mid-stream
        agent.wait_link("standby", Some(&standby));
        sender.wait_more(100);
        standby.kill9(); // blackout
        wait_ok(WAIT, "blackout", || {
            let l = agent.link().ok_or("no status")?;
            (l.state == "blackout")
                .then_some(())
                .ok_or(format!("{l:?}"))
        });
        sender.wait_more(60);
        home.start();
        standby.start();
        agent.wait_link("home", Some(&home));
        let stats = sender.finish();
        let (_, n) = agent.send(1);
        assert!(n > stats.last_seq, "{stats:?} then {n}");
        let name = agent.name.clone();
        let taken = wait_home_records(&home, &[&standby], &[(name.as_str(), n)]);
        assert!(
            taken[0] > 0,
            "run {run}: the standby took records while home was down"
        );
        took_over += taken[0];
        wait_home_and_empty(&agent, &home);
        eprintln!(
            "run {run}: {n} records, all at home once; the standby keeps {} marked taken_for",
            taken[0]
        );
    }
    assert!(took_over > 0);
}

/// Item 3: home commits a send and is SIGKILLed before its acknowledgement reaches the agent;
/// the agent sends the same records to the standby, which stores them (marked), and the
/// agent holds them. Home already has each of them once: after the switchback the resend
/// stores nothing twice and the agent's cache empties.
#[test]
fn ag2_a_send_home_committed_whose_ack_was_lost_is_already_complete_at_home() {
    let site = Site::new(192);
    let mut home = site.server("home", &[TOKEN_SERVER]);
    let mut standby = site.server("standby", &[TOKEN_SERVER]);
    // The agent reaches home through a relay that holds each chunk 1.5 s, both ways: home
    // commits 1.5 s after the send and its acknowledgement would arrive 1.5 s later. Heartbeats
    // every 2 s keep a link with 3 s round trips alive.
    let relay_addr = site.addr();
    let relay = Relay::start(&relay_addr, &home.listen);
    let via_relay = format!("https://{relay_addr}#{}", home.fingerprint);
    let mut agent = site.init(
        "a1",
        "agent",
        &[via_relay, standby.url()],
        &[
            TOKEN_AGENT,
            "agent.heartbeat=2s",
            "agent.switchover_after=0s",
            "agent.switchback_interval=1s",
        ],
    );
    home.start();
    standby.start();
    agent.start();
    wait_ok(WAIT, "a1 home", || {
        let l = agent.link().ok_or("no status")?;
        (l.state == "home").then_some(()).ok_or(format!("{l:?}"))
    });
    relay.set_delay(Duration::from_millis(1500), Duration::ZERO);
    let (first, last) = agent.send(20);
    assert_eq!((first, last), (1, 20));
    // Home commits; its acknowledgement is still in the relay: kill home and cut the link now.
    wait_until(WAIT, "home to commit the 20 records", || {
        let n = home.records()?.iter().filter(|r| r.agent == "a1").count();
        (n == 20).then_some(())
    });
    home.kill9();
    relay.cut();
    // The agent never got the acknowledgement: it sends the 20 to the standby, which keeps them.
    wait_ok(WAIT, "the standby to hold the 20 records", || {
        let l = agent.link().ok_or("no status")?;
        (l.state == "standby" && l.held == 20 && l.cached == 0)
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    let on_standby = standby.records().expect("standby records");
    assert_eq!(on_standby.len(), 20, "the standby stored the same send");
    assert!(
        on_standby
            .iter()
            .all(|r| r.taken_for.as_deref() == Some(format!("https://{relay_addr}").as_str())),
        "{on_standby:?}"
    );
    // Home is already complete: nothing more to do there but the agent's cache.
    relay.set_delay(Duration::ZERO, Duration::ZERO);
    relay.heal();
    home.start();
    check_home_records(&home, &[&standby], &[("a1", 20)]).expect("complete at home already");
    wait_ok(WAIT, "a1 home with nothing held", || {
        let l = agent.link().ok_or("no status")?;
        (l.state == "home" && l.held == 0 && l.cached == 0)
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    let taken = wait_home_records(&home, &[&standby], &[("a1", 20)]);
    assert_eq!(taken, vec![20]);
    agent.wait_event("SWITCHBACK", |_| true);
}

/// A standby of another site takes a fast agent's records for a long stretch (30,000 records:
/// ten minutes of an agent sending 50 a second), then home returns and gets every one of
/// them, in order, once.
#[test]
fn ag2_a_long_stretch_on_a_standby_of_another_site_then_home_complete() {
    let site = Site::new(193);
    let mut home = site.server("home", &[TOKEN_SERVER]);
    let mut standby = site.server("standby", &[TOKEN_SERVER]);
    let mut agent = site.agent("a1", &[&home, &standby], &agent_sets(&[]));
    home.start();
    standby.start();
    agent.start();
    agent.wait_link("home", Some(&home));
    agent.send(500);
    wait_records(&[&home], &[("a1", 500)]);
    wait_home_and_empty(&agent, &home);
    home.kill9();
    agent.wait_link("standby", Some(&standby));
    let mut n = 0;
    for _ in 0..60 {
        n = agent.send(500).1;
    }
    wait_ok(WAIT, "the standby to hold everything", || {
        let l = agent.link().ok_or("no status")?;
        (l.held == n - 500 && l.cached == 0)
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    home.start();
    wait_home_and_empty(&agent, &home);
    let taken = wait_home_records(&home, &[&standby], &[("a1", n)]);
    assert_eq!(taken, vec![n - 500], "the standby keeps its copy");
    agent.wait_event("SWITCHBACK", |_| true);
}

/// `agent.held_limit`: beyond it the oldest held records leave the agent's cache with a
/// HELD_DROPPED event; they stay on the standby. After the switchback home holds everything
/// else, and whatever home lacks is on the standby.
#[test]
fn ag2_held_limit_drops_the_oldest_held_records_they_stay_on_the_standby() {
    let site = Site::new(194);
    let mut home = site.server("home", &[TOKEN_SERVER]);
    let mut standby = site.server("standby", &[TOKEN_SERVER]);
    let mut agent = site.agent(
        "a1",
        &[&home, &standby],
        &agent_sets(&["agent.held_limit=500"]),
    );
    home.start();
    standby.start();
    agent.start();
    agent.wait_link("home", Some(&home));
    let (_, before) = agent.send(100);
    wait_records(&[&home], &[("a1", before)]);
    home.kill9();
    agent.wait_link("standby", Some(&standby));
    let mut n = before;
    for _ in 0..3 {
        n = agent.send(500).1;
    }
    let ev = agent.wait_event("HELD_DROPPED", |_| true);
    let sentence = ev.sentence;
    assert!(sentence.contains("held_limit 500 reached"), "{sentence}");
    assert!(sentence.contains(&standby.listen), "{sentence}");
    wait_ok(WAIT, "at most held_limit records held", || {
        let l = agent.link().ok_or("no status")?;
        (l.held == 500 && l.cached == 0)
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    assert_eq!(agent.link_now().held_by[0].records, 500);
    home.start();
    wait_home_and_empty(&agent, &home);
    wait_until(WAIT, "the held records at home", || {
        let have = home.records()?.iter().filter(|r| r.agent == "a1").count() as u64;
        (have == before + 500).then_some(())
    });
    // Home holds 1..=before and the newest 500; what it lacks is exactly what was dropped, and
    // the standby holds every one of those. No store holds a record twice.
    let at_home: Vec<u64> = home
        .records()
        .expect("home records")
        .iter()
        .filter(|r| r.agent == "a1")
        .map(|r| r.seq)
        .collect();
    let dropped: Vec<u64> = (before + 1..=n - 500).collect();
    let expected_home: Vec<u64> = (1..=before).chain(n - 499..=n).collect();
    assert_eq!(at_home, expected_home);
    let on_standby: Vec<u64> = standby
        .records()
        .expect("standby records")
        .iter()
        .filter(|r| r.agent == "a1")
        .map(|r| r.seq)
        .collect();
    assert!(dropped.iter().all(|s| on_standby.contains(s)));
    check_records(&[&home, &standby], &[("a1", n)])
        .expect("every record somewhere, once per store");
}
