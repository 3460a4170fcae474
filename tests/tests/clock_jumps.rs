//! PRODUCT.md §4 "clock jumps": timers use a monotonic clock, so stepping the wall clock an hour
//! forward and back while a site runs causes no failover and loses no record. Each node process
//! runs under libfaketime with its own offset file (`Node::fake_clock`); the machine's clock is
//! never touched.

use std::path::PathBuf;
use std::time::Duration;

use understudy_system_tests::*;

const TOKEN: &str = "clock-token-0123456789abcdef-12c";

/// Settings where a wall-clock timer would misfire at once: an hour is far beyond every one.
fn server_sets() -> Vec<String> {
    vec![
        format!("server.enroll_token={TOKEN}"),
        "failover.sync_interval=300ms".into(),
        "failover.failover_timeout=3s".into(),
    ]
}

fn agent_sets() -> Vec<String> {
    vec![
        format!("agent.enroll_token={TOKEN}"),
        "agent.heartbeat=300ms".into(),
        "agent.switchover_after=2s".into(),
        "agent.switchback_interval=1s".into(),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The wall-clock offset of one node, as libfaketime reads it.
struct Clock(PathBuf);

impl Clock {
    fn new(site: &Site, node: &mut Node) -> Clock {
        let path = site.dir().join(format!("{}.faketime", node.name));
        std::fs::write(&path, "+0\n").expect("offset file");
        node.fake_clock(&path);
        Clock(path)
    }

    fn step(&self, offset: &str) {
        std::fs::write(&self.0, format!("{offset}\n")).expect("offset file");
    }
}

const FAILOVER_CODES: [&str; 6] = [
    "PROMOTED",
    "DEMOTED",
    "FAILOVER",
    "SWITCHOVER",
    "BLACKOUT",
    "PAIR_BLACKOUT",
];

/// How many failover events of each kind both servers hold (s1's start-up PROMOTED included),
/// or `None` when a server did not list its events this time (a busy machine). Events are
/// stored, so a poll that could not list them hides nothing from the next one.
fn failover_events(s1: &Node, s2: &Node) -> Option<Vec<usize>> {
    let (e1, e2) = (
        s1.typed::<Events>(
            &["events", "--json"],
            Duration::from_secs(10),
            serde_json::from_value,
        )?,
        s2.typed::<Events>(
            &["events", "--json"],
            Duration::from_secs(10),
            serde_json::from_value,
        )?,
    );
    let count = |v: &Events, code: &str| v.events.iter().filter(|e| e.code == code).count();
    Some(
        FAILOVER_CODES
            .iter()
            .flat_map(|code| [count(&e1, code), count(&e2, code)])
            .collect(),
    )
}

/// What must not change while the clocks jump: who is ACTIVE, at which epoch, which pair member
/// is active, and that no failover of any kind was decided since `baseline`.
fn steady(s1: &Node, s2: &Node, epoch: u64, baseline: &[usize]) -> Result<(), String> {
    // A status that did not answer in time (a busy machine) tells nothing; the next poll sees
    // any change, which would be lasting (failback is manual, the pair's switchback too).
    let (Some(f1), Some(f2), Some(pair)) = (s1.failover(), s2.failover(), s1.pair("web")) else {
        return Ok(());
    };
    if f1 != ("active".to_string(), epoch) || f2.0 != "standby" {
        return Err(format!("servers are {f1:?} and {f2:?}, epoch was {epoch}"));
    }
    if pair.active != "primary" || pair.state != "normal" {
        return Err(format!("pair is {pair:?}"));
    }
    let Some(now) = failover_events(s1, s2) else {
        return Ok(());
    };
    if now != baseline {
        return Err(format!(
            "failover events of {FAILOVER_CODES:?} on s1, s2 were {baseline:?}, now {now:?}"
        ));
    }
    Ok(())
}

#[test]
fn clock_jumps_an_hour_both_ways_cause_no_failover_and_lose_no_record() {
    let site = Site::new(127);
    let (mut s1, mut s2) = site.hot_standby(&refs(&server_sets()), None);
    let agents = agent_sets();
    let mut p = site.agent("p", &[&s1, &s2], &refs(&agents));
    let mut q = site.agent("q", &[&s1, &s2], &refs(&agents));
    let mut a = site.agent("a", &[&s1, &s2], &refs(&agents));
    let clocks: Vec<Clock> = [&mut s1, &mut s2, &mut p, &mut q, &mut a]
        .into_iter()
        .map(|n| Clock::new(&site, n))
        .collect();
    s1.start();
    let epoch = s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    for n in [&mut p, &mut q, &mut a] {
        n.start();
    }
    for n in [&p, &q, &a] {
        n.wait_link("home", Some(&s1));
    }
    s1.add_pair(
        "web",
        "p",
        "q",
        &["--failover-after", "2s", "--switchback", "manual"],
    );
    s1.wait_pair("web", "active primary", |w| {
        w.active == "primary" && w.state == "normal"
    });
    wait_until(WAIT, "the site replicated to s2", || {
        s2.pair("web").and_then(|_| s2.agent_entry("a"))
    });
    let baseline = wait_until(WAIT, "the servers' events", || failover_events(&s1, &s2));
    let sender = Sender::start(&a, 20);
    sender.wait_more(100);
    holds_for(Duration::from_secs(2), "the site before any jump", || {
        steady(&s1, &s2, epoch, &baseline)
    });

    // Every process an hour ahead; then the servers and one member back to an hour behind
    // (two hours back at once), the others stay ahead; then everyone back to the true time.
    for (step, offsets) in [
        ("an hour forward", ["+1h", "+1h", "+1h", "+1h", "+1h"]),
        (
            "two hours back on s1, q and a",
            ["-1h", "+1h", "+1h", "-1h", "-1h"],
        ),
        (
            "s2 and p two hours back",
            ["-1h", "-1h", "-1h", "-1h", "-1h"],
        ),
        ("back to the true time", ["+0", "+0", "+0", "+0", "+0"]),
    ] {
        for (clock, offset) in clocks.iter().zip(offsets) {
            clock.step(offset);
        }
        // Timers of seconds: a wall-clock one would have fired (or stalled) well within this.
        holds_for(
            Duration::from_secs(8),
            &format!("the site after {step}"),
            || steady(&s1, &s2, epoch, &baseline),
        );
        sender.wait_more(50);
    }

    // The jumps reached the processes: their records carry the faked times.
    let stats = sender.finish();
    wait_records(&[&s1], &[("a", stats.last_seq)]);
    let times: Vec<i64> = s1
        .records()
        .expect("records")
        .iter()
        .map(|r| r.time_ms)
        .collect();
    let (lo, hi) = (
        times.iter().min().copied().unwrap_or(0),
        times.iter().max().copied().unwrap_or(0),
    );
    assert!(
        hi - lo > 90 * 60 * 1000,
        "records span {} minutes: the wall clocks did jump",
        (hi - lo) / 60_000
    );
    let end = wait_until(WAIT, "the servers' events", || failover_events(&s1, &s2));
    assert_eq!(
        end, baseline,
        "no failover event of {FAILOVER_CODES:?} at the end"
    );
    assert_eq!(s1.wait_failover_state("active"), epoch, "s1 kept its role");
    s2.wait_failover_state("standby");
    s1.wait_pair("web", "still on its primary", |w| {
        w.active == "primary" && w.state == "normal"
    });
}
