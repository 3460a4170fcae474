//! Property tests: random fault schedules over a whole simulated site. The harness checks at
//! every step that no pair has two active members under one pair epoch, that no epoch goes back,
//! that no record leaves an agent's cache before a server holds it, and that no two servers are
//! ACTIVE under one epoch. After the schedule the network is made stable and every node
//! restarted; then, within [`CONVERGENCE_BOUND`], every record is delivered, one server acts,
//! every pair is on its primary and every agent on its preferred server (auto policies), and every
//! agent's home (with its hot-standby peer) holds each of its records exactly once (AG-2), including
//! those a standby of another site took while standing in.

mod sim;

use std::time::Duration;

use proptest::prelude::*;
use sim::*;
use understudy_engine::*;

/// With the timings below: failover_timeout 4s + failback hold_down 8s + switchback probes 5s +
/// switchover_after 3s + pair hold_down 6s + failover_after 4s, with room for retries.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
enum Fault {
    Kill(Node),
    Restart(Node),
    Cut(Node, Node),
    CutOneWay(Node, Node),
    Lossy(Node, Node, u32),
    Slow(Node, Node, u64),
    Heal,
    Produce(usize, u64),
    ForceFailover,
    Revert,
    OperatorStandby(usize),
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (0..2usize).prop_map(Node::Server),
        (0..3usize).prop_map(Node::Agent)
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => node().prop_map(Fault::Kill),
        3 => node().prop_map(Fault::Restart),
        3 => (node(), node()).prop_map(|(a, b)| Fault::Cut(a, b)),
        2 => (node(), node()).prop_map(|(a, b)| Fault::CutOneWay(a, b)),
        1 => (node(), node(), 5..60u32).prop_map(|(a, b, l)| Fault::Lossy(a, b, l)),
        1 => (node(), node(), 1..1500u64).prop_map(|(a, b, d)| Fault::Slow(a, b, d)),
        2 => Just(Fault::Heal),
        4 => (0..3usize, 1..40u64).prop_map(|(a, n)| Fault::Produce(a, n)),
        1 => Just(Fault::ForceFailover),
        1 => Just(Fault::Revert),
        1 => (0..2usize).prop_map(Fault::OperatorStandby),
    ]
}

fn schedule() -> impl Strategy<Value = (bool, u64, Vec<(u64, Fault)>)> {
    (
        any::<bool>(),
        any::<u64>(),
        prop::collection::vec((0..6000u64, fault()), 1..14),
    )
}

fn timings() -> Timings {
    Timings::default()
}

/// Two servers (in hot standby when `ha`, else home a / standby b with one standby slot),
/// a pair "web" of agents p and s, and a lone agent x.
fn build(ha: bool, seed: u64) -> Site {
    let t = timings();
    let mut site = Site::new(seed);
    site.add_server("a", 100, t);
    site.add_server("b", if ha { 100 } else { 1 }, t);
    if ha {
        site.pair_servers(0, 1, FailbackPolicy::Auto { hold_down: 8 * SEC });
    }
    site.add_agent("p", &[0, 1], t);
    site.add_agent("s", &[0, 1], t);
    site.add_agent("x", &[0, 1], t);
    site.define_pair(
        0,
        "web",
        0,
        1,
        t.failover_after,
        SwitchbackPolicy::Auto {
            hold_down: t.hold_down,
        },
    );
    site.start_all();
    site.run_for(8 * SEC);
    site
}

fn apply(site: &mut Site, f: &Fault) {
    match f {
        Fault::Kill(n) => site.kill(*n),
        Fault::Restart(n) if !site.is_alive(*n) => match n {
            Node::Server(s) => site.start_server(*s),
            Node::Agent(a) => site.start_agent(*a),
        },
        Fault::Cut(a, b) if a != b => site.cut(*a, *b, false),
        Fault::CutOneWay(a, b) if a != b => site.link(*a, *b).up = false,
        Fault::Lossy(a, b, loss) if a != b => site.link(*a, *b).loss = *loss,
        Fault::Slow(a, b, ms) if a != b => {
            let l = site.link(*a, *b);
            l.delay = Duration::from_millis(*ms);
            l.jitter = Duration::from_millis(*ms / 2 + 1);
        }
        Fault::Heal => site.heal_all(),
        Fault::Produce(a, n) => site.produce(*a, *n),
        Fault::ForceFailover | Fault::Revert | Fault::OperatorStandby(_) => {
            let acting =
                (0..2).find(|s| site.is_alive(Node::Server(*s)) && site.server(*s).is_acting());
            if let Some(s) = acting {
                let _ = match f {
                    Fault::ForceFailover => {
                        site.operate(s, |srv, now| srv.force_failover(now, "web"))
                    }
                    Fault::Revert => site.operate(s, |srv, now| srv.revert(now, "web")),
                    Fault::OperatorStandby(x) if *x == s => {
                        site.operate(s, |srv, now| srv.operator_standby(now))
                    }
                    _ => Ok(String::new()),
                };
            }
        }
        _ => {}
    }
}

fn run_schedule(ha: bool, seed: u64, faults: &[(u64, Fault)]) -> Result<(), TestCaseError> {
    let mut site = build(ha, seed);
    for (delay, f) in faults {
        site.run_for(Duration::from_millis(*delay));
        apply(&mut site, f);
    }
    // The network becomes stable and every node comes back.
    site.heal_all();
    for s in 0..2 {
        apply(&mut site, &Fault::Restart(Node::Server(s)));
    }
    for a in 0..3 {
        apply(&mut site, &Fault::Restart(Node::Agent(a)));
    }
    let stable_at = site.now;
    // An operator's force failover holds the pair on the secondary: revert it like an operator would.
    let settled = site.run_until_pred(CONVERGENCE_BOUND, |s| converged(s, ha).is_ok());
    if settled.is_none() {
        let acting = (0..2).find(|s| site.server(*s).is_acting());
        if let Some(s) = acting {
            if site.server(s).pair("web").is_some_and(|p| p.state().held) {
                let _ = site.operate(s, |srv, now| srv.revert(now, "web"));
                site.run_until_pred(CONVERGENCE_BOUND, |s| converged(s, ha).is_ok());
            }
        }
    }
    if let Err(why) = converged(&site, ha) {
        return Err(TestCaseError::fail(format!(
            "not converged {:?} after the network became stable: {why}",
            site.now - stable_at
        )));
    }
    Ok(())
}

/// Every pair and every agent on its preferred place, every record delivered.
fn converged(site: &Site, ha: bool) -> Result<(), String> {
    let acting: Vec<usize> = (0..2).filter(|s| site.server(*s).is_acting()).collect();
    let home = if ha {
        if acting != vec![0] {
            return Err(format!("acting servers {acting:?}, expected the primary a"));
        }
        0
    } else {
        0
    };
    for a in 0..3 {
        if site.agent_server(a) != Some(home) {
            return Err(format!(
                "agent {} on {:?} ({:?})",
                site.agents[a].name,
                site.agent_server(a),
                site.agent(a).last_error()
            ));
        }
        if site.agent(a).cached() != 0 || site.agent(a).held() != 0 {
            return Err(format!(
                "agent {} still caches {} and holds {}",
                site.agents[a].name,
                site.agent(a).cached(),
                site.agent(a).held()
            ));
        }
        // AG-2: home complete and exactly once; no store holds a sequence twice.
        site.home_complete(a)?;
        let (missing, _) = site.count_records(a);
        if missing != 0 {
            return Err(format!(
                "agent {} lost {missing} records",
                site.agents[a].name
            ));
        }
    }
    let holder = site.pair_holder(home, "web");
    if holder.as_deref() != Some("p") {
        return Err(format!("pair web held by {holder:?}"));
    }
    if !site
        .agent(0)
        .members()
        .get("web")
        .is_some_and(|m| m.is_active())
        || site
            .agent(1)
            .members()
            .get("web")
            .is_some_and(|m| m.is_active())
    {
        return Err("the pair's members disagree with the server".into());
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("UNDERSTUDY_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_and_the_site_converges_under_random_faults((ha, seed, faults) in schedule()) {
        run_schedule(ha, seed, &faults)?;
    }
}
