//! Issue 4, item 5: pairs of agents (PR) and servers in hot standby (HS) across real processes:
//! kill -9, SIGSTOP/SIGCONT, a partition between the servers, failing and hanging hooks.

use std::time::Duration;

use understudy_system_tests::*;

const SERVER: &[&str] = &["server.enroll_token=tok-0123456789abcdef"];

fn agent_sets(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["agent.enroll_token=tok-0123456789abcdef"];
    v.extend_from_slice(FAST_AGENT);
    v.extend_from_slice(extra);
    v
}

fn server_sets(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = SERVER.to_vec();
    v.extend_from_slice(FAST_SERVER);
    v.extend_from_slice(extra);
    v
}

// ---------------------------------------------------------------------------------------------
// Hot standby (HS).

/// Starts s1 (primary) first so it is ACTIVE, then s2 as STANDBY (HS-2), then the agents.
fn start_hot_standby(s1: &mut Node, s2: &mut Node) -> u64 {
    s1.start();
    let epoch = s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    // HS-8: the ACTIVE hands over on a stop only to a peer it has heard answer as STANDBY (its
    // own poll, every sync_interval); the STANDBY replicates sooner than that (PeerChanged).
    s1.wait_peer_state("standby");
    epoch
}

/// a1 delivers to the ACTIVE s1 and is replicated to s2; s1 is SIGKILLed with records in flight.
fn deliver_then_kill_the_active(a1: &mut Node, s1: &mut Node, s2: &Node) -> Sender {
    a1.start();
    wait_on(a1, s1);
    wait_until(WAIT, "a1 replicated to s2", || {
        s2.agent_entry("a1").map(|_| ())
    });
    let load = Sender::start(a1, 50);
    load.wait_more(300);
    s1.kill9();
    load
}

/// The agent is delivering to `server` (home or standby, whichever it is in its list).
fn wait_on(agent: &Node, server: &Node) {
    wait_on_any(agent, &server.name, &[&server.listen]);
}

/// The agent is delivering to one of `addrs` (a server's own address, or a relay to it: a
/// STANDBY redirects agents to its peer at the address it knows the peer by).
fn wait_on_any(agent: &Node, what: &str, addrs: &[&str]) {
    wait_ok(
        WAIT,
        &format!("{} delivering to {what}", agent.name),
        || {
            let link = agent.link().ok_or("no status")?;
            let on = link.server.as_deref().unwrap_or("");
            let state = link.state.as_str();
            if addrs.iter().any(|a| on.contains(a)) && (state == "home" || state == "standby") {
                Ok(())
            } else {
                Err(format!("{link:?}"))
            }
        },
    );
}

#[test]
fn hs4_hs5_sigkill_of_active_promotes_standby_then_primary_returns_as_standby_and_takes_over_on_ha_standby(
) {
    let site = Site::new(31);
    let (mut s1, mut s2) = site.hot_standby(&server_sets(&[]), None);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets(&[]));
    let mut a2 = site.agent("a2", &[&s2, &s1], &agent_sets(&[]));
    let epoch0 = start_hot_standby(&mut s1, &mut s2);
    a1.start();
    a2.start();
    // AG-7: a2's home is the STANDBY; it is redirected to the ACTIVE one.
    wait_on(&a1, &s1);
    wait_on(&a2, &s1);
    // HS-3: the standby has the accepted agents replicated before the active one dies.
    wait_until(WAIT, "a1 and a2 replicated to s2", || {
        (s2.agent_entry("a1").is_some() && s2.agent_entry("a2").is_some()).then_some(())
    });

    let (l1, l2) = (Sender::start(&a1, 50), Sender::start(&a2, 50));
    l1.wait_more(500);
    l2.wait_more(500);
    s1.kill9();
    let epoch1 = s2.wait_failover_state("active");
    assert!(
        epoch1 > epoch0,
        "the epoch grew at the promotion: {epoch0} -> {epoch1}"
    );
    s2.wait_event("PROMOTED", |_| true);
    wait_on(&a1, &s2);
    wait_on(&a2, &s2);
    l1.wait_more(500);
    l2.wait_more(500);

    // HS-5: the former ACTIVE finds a higher epoch and becomes STANDBY; agents stay on s2.
    s1.start();
    s1.wait_failover_state("standby");
    assert_eq!(s2.failover().map(|f| f.0).as_deref(), Some("active"));
    l1.wait_more(300);
    wait_on(&a1, &s2);
    let (n1, n2) = (l1.finish().last_seq, l2.finish().last_seq);
    wait_records(&[&s2], &[("a1", n1), ("a2", n2)]);

    // The manual switchback of the servers: the acting secondary is set to STANDBY.
    s2.cli_ok(&["ha", "standby"]);
    let epoch2 = s1.wait_failover_state("active");
    s2.wait_failover_state("standby");
    assert!(epoch2 > epoch1, "{epoch1} -> {epoch2}");
    wait_on(&a1, &s1);
    wait_on(&a2, &s1);
    let (_, m1) = a1.send(100);
    let (_, m2) = a2.send(100);
    wait_records(&[&s1], &[("a1", m1), ("a2", m2)]);
}

#[test]
fn hs5_failback_auto_after_hold_down() {
    let site = Site::new(32);
    let (mut s1, mut s2) = site.hot_standby(
        &server_sets(&["failover.failback=auto", "failover.hold_down=2s"]),
        None,
    );
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets(&[]));
    start_hot_standby(&mut s1, &mut s2);
    let load = deliver_then_kill_the_active(&mut a1, &mut s1, &s2);
    let promoted = s2.wait_failover_state("active");
    wait_on(&a1, &s2);
    load.wait_more(300);
    s1.start();
    // It comes back STANDBY, and after hold_down takes the role back by itself.
    let back = s1.wait_failover_state("active");
    assert!(back > promoted, "{promoted} -> {back}");
    s2.wait_failover_state("standby");
    wait_on(&a1, &s1);
    load.wait_more(300);
    let n = load.finish().last_seq;
    wait_records(&[&s1], &[("a1", n)]);
}

/// CT-2 between servers: the ACTIVE's new certificate is announced to its STANDBY over the old
/// one before it is used, so the STANDBY's next polls (which pin the peer) go on succeeding and
/// it never takes silence for a failure: no promotion, no split brain.
#[test]
fn ct2_a_rotated_certificate_is_announced_to_the_standby_which_stays_standby() {
    let site = Site::new(34);
    let (mut s1, mut s2) = site.hot_standby(&server_sets(&[]), None);
    let epoch = start_hot_standby(&mut s1, &mut s2);
    let fingerprint = |n: &Node| {
        n.status_now()
            .node
            .cert
            .map(|c| c.fingerprint)
            .unwrap_or_default()
    };
    let old = fingerprint(&s1);
    s1.cli_ok(&["cert", "generate"]);
    let new = fingerprint(&s1);
    assert_ne!(old, new, "the certificate changed");
    // Five failover timeouts (1 s each in the fast profile) of polls with the new certificate.
    holds_for(
        Duration::from_secs(5),
        "s2 stays STANDBY under s1",
        || match (s1.failover(), s2.failover()) {
            (Some((a, e1)), Some((b, _))) if a == "active" && b == "standby" && e1 == epoch => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    );
    // (s1's own PROMOTED from its start is replicated to s2: only s2's would be a failover.)
    let failovers: Vec<_> = s2
        .events("PROMOTED")
        .into_iter()
        .chain(s1.events("SPLIT_BRAIN"))
        .filter(|e| e.subject != "s1" || e.code == "SPLIT_BRAIN")
        .collect();
    assert!(failovers.is_empty(), "no failover: {failovers:?}");
}

/// The PROMOTED sentence of `server`'s own promotion (the peer's are replicated to it too).
fn own_promotion(server: &Node) -> String {
    let own = server
        .events("PROMOTED")
        .into_iter()
        .rfind(|e| e.subject == server.name.as_str())
        .expect("a promotion of its own");
    own.sentence.as_str().to_string()
}

/// HS-8: a crashed ACTIVE's port refuses connections while its host answers: the STANDBY
/// promotes on the refusals, long before its `failover_timeout` (two minutes here, longer than
/// this test waits for anything), the agent follows, and nothing is lost.
#[test]
fn hs8_sigkill_of_the_active_promotes_the_standby_on_refusals_and_nothing_is_lost() {
    let site = Site::new(35);
    let mut sets = SERVER.to_vec();
    sets.extend(["failover.sync_interval=1s", "failover.failover_timeout=2s"]);
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    // s1 starts alone and waits its own 2 s for an ACTIVE peer; s2 would wait two minutes.
    s2.configure(&["failover.failover_timeout=2m"]);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets(&[]));
    let epoch = start_hot_standby(&mut s1, &mut s2);
    let load = deliver_then_kill_the_active(&mut a1, &mut s1, &s2);
    let promoted = s2.wait_failover_state("active");
    assert!(promoted > epoch);
    let reason = own_promotion(&s2);
    assert!(
        reason.starts_with("peer s1's port refused 3 polls in a row over ")
            && reason.contains("its process is gone while its host answers (crash_confirm 3)"),
        "{reason}"
    );
    wait_on(&a1, &s2);
    // AG-10: the pair is one server to the agent: it moved without a SWITCHOVER.
    assert!(
        a1.events("SWITCHOVER").is_empty(),
        "{:?}",
        a1.events("SWITCHOVER")
    );
    load.wait_more(300);
    // What s1 acknowledged after s2's last replication poll is on s1's disk: s1 comes back
    // STANDBY (HS-5) and hands it over.
    s1.configure(&["failover.failover_timeout=2m"]);
    s1.start();
    s1.wait_failover_state("standby");
    let n = load.finish().last_seq;
    wait_records(&[&s2], &[("a1", n)]);
}

/// HS-8 planned stop: SIGTERM of the ACTIVE hands the role to the healthy STANDBY before the
/// process exits. The STANDBY here could promote neither on refusals (`crash_confirm = 0`) nor on
/// silence (`failover_timeout = 2m`, longer than this test waits): only the handover can promote
/// it. Every record the old ACTIVE acknowledged is on the new one without the old one ever
/// coming back, and the agent follows without a SWITCHOVER.
#[test]
fn hs8_sigterm_of_the_active_hands_over_at_once_and_nothing_is_lost() {
    let site = Site::new(37);
    let mut sets = SERVER.to_vec();
    sets.extend(["failover.sync_interval=1s", "failover.failover_timeout=2s"]);
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    s2.configure(&["failover.failover_timeout=2m", "failover.crash_confirm=0"]);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets(&[]));
    let epoch = start_hot_standby(&mut s1, &mut s2);
    a1.start();
    wait_on(&a1, &s1);
    wait_until(WAIT, "a1 replicated to s2", || {
        s2.agent_entry("a1").map(|_| ())
    });
    let load = Sender::start(&a1, 50);
    load.wait_more(300);
    s1.stop();
    let promoted = s2.wait_failover_state("active");
    assert!(promoted > epoch);
    let reason = own_promotion(&s2);
    assert!(
        reason.starts_with(&format!(
            "peer s1 handed over the ACTIVE role of epoch {epoch} (planned stop (SIGTERM))"
        )),
        "{reason}"
    );
    // s1's HANDOVER event came over with the handover.
    let handover = s2.events("HANDOVER");
    assert!(
        handover.iter().any(|e| e.subject == "s1"
            && e.sentence
                .starts_with("planned stop (SIGTERM): handing the ACTIVE role")),
        "{handover:?}"
    );
    assert!(
        s1.log_text()
            .contains("HS-8 handover: the peer took the ACTIVE role"),
        "{}",
        s1.log_text()
    );
    wait_on(&a1, &s2);
    assert!(
        a1.events("SWITCHOVER").is_empty(),
        "{:?}",
        a1.events("SWITCHOVER")
    );
    load.wait_more(300);
    let n = load.finish().last_seq;
    // Nothing lost, with s1 still stopped: what it acknowledged was handed over before it exited.
    wait_records(&[&s2], &[("a1", n)]);
    s1.configure(&["failover.failover_timeout=2m"]);
    s1.start();
    s1.wait_failover_state("standby");
    s2.wait_failover_state("active");
}

/// HS-8: a frozen ACTIVE refuses nothing (its kernel still accepts connections): the STANDBY
/// promotes only on silence, after `failover_timeout`; when the frozen one resumes, HS-6 settles
/// the two ACTIVE servers.
#[test]
fn hs8_sigstop_of_the_active_is_silence_and_waits_failover_timeout() {
    let site = Site::new(36);
    let mut sets = SERVER.to_vec();
    sets.extend([
        "failover.sync_interval=500ms",
        "failover.failover_timeout=3s",
    ]);
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    start_hot_standby(&mut s1, &mut s2);
    s1.sigstop();
    s2.wait_failover_state("active");
    let reason = own_promotion(&s2);
    assert!(
        reason.starts_with("peer s1 has not answered for")
            && reason.contains("(failover_timeout 3s)"),
        "{reason}"
    );
    s1.sigcont();
    s1.wait_failover_state("standby");
    s2.wait_failover_state("active");
}

#[test]
fn hs6_partition_both_active_then_lower_epoch_steps_down_and_nothing_is_lost() {
    let site = Site::new(33);
    // Each server reaches its peer only through a relay the test can cut; agents reach both.
    let (relay_to_s2_addr, relay_to_s1_addr) = (site.addr(), site.addr());
    let (mut s1, mut s2) = site.hot_standby(
        &server_sets(&[]),
        Some((&relay_to_s2_addr, &relay_to_s1_addr)),
    );
    let relay_to_s2 = Relay::start(&relay_to_s2_addr, &s2.listen);
    let relay_to_s1 = Relay::start(&relay_to_s1_addr, &s1.listen);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets(&[]));
    let mut a2 = site.agent("a2", &[&s2, &s1], &agent_sets(&[]));
    let epoch0 = start_hot_standby(&mut s1, &mut s2);
    a1.start();
    a2.start();
    wait_on(&a1, &s1);
    // a2 starts at its home s2, the STANDBY, and is redirected to s1 at the address s2 knows it by.
    wait_on_any(&a2, "s1", &[&s1.listen, &relay_to_s1_addr]);
    wait_until(WAIT, "a1 and a2 replicated to s2", || {
        (s2.agent_entry("a1").is_some() && s2.agent_entry("a2").is_some()).then_some(())
    });
    let (l1, l2) = (Sender::start(&a1, 50), Sender::start(&a2, 50));
    l1.wait_more(300);
    l2.wait_more(300);

    relay_to_s1.cut();
    relay_to_s2.cut();
    // s2 no longer hears s1: it promotes; s1 does not hear s2 and stays ACTIVE. Both act.
    let epoch_s2 = s2.wait_failover_state("active");
    assert!(epoch_s2 > epoch0);
    assert_eq!(s1.failover().map(|f| f.0).as_deref(), Some("active"));
    // a2's home is s2, which now answers as ACTIVE: it goes home, while a1 stays on s1, so
    // both servers acknowledge records during the partition.
    wait_on(&a2, &s2);
    l1.wait_more(300);
    l2.wait_more(300);
    wait_until(
        WAIT,
        "both servers storing records during the partition",
        || {
            let on1 = s1.records().unwrap_or_default().len();
            let on2 = s2.records().unwrap_or_default().len();
            (on1 > 0 && on2 > 0).then_some(())
        },
    );

    relay_to_s1.heal();
    relay_to_s2.heal();
    // HS-6: the lower epoch steps down; its records are merged into the acting one.
    let (acting, other) = wait_ok(WAIT, "one ACTIVE server after the partition", || {
        match (s1.failover(), s2.failover()) {
            (Some((a, ea)), Some((b, eb))) if a == "active" && b == "standby" => {
                Ok(((&s1, ea), (&s2, eb)))
            }
            (Some((a, ea)), Some((b, eb))) if a == "standby" && b == "active" => {
                Ok(((&s2, eb), (&s1, ea)))
            }
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        acting.0.name, "s2",
        "the higher epoch ({}) keeps acting over {}",
        acting.1, other.1
    );
    s1.wait_event("SPLIT_BRAIN", |_| true);
    wait_on_any(&a1, "s2", &[&s2.listen, &relay_to_s2_addr]);
    wait_on_any(&a2, "s2", &[&s2.listen, &relay_to_s2_addr]);
    l1.wait_more(300);
    let (n1, n2) = (l1.finish().last_seq, l2.finish().last_seq);
    wait_records(&[acting.0], &[("a1", n1), ("a2", n2)]);
}

// ---------------------------------------------------------------------------------------------
// Pairs (PR).

/// A server and two agents, p (primary) and q (secondary), in pair `web`.
fn pair_site(site: &Site, agent_extra: &[&'static str], pair_args: &[&str]) -> (Node, Node, Node) {
    let mut server = site.server("srv", SERVER);
    let mut p = site.agent("p", &[&server], &agent_sets(agent_extra));
    let mut q = site.agent("q", &[&server], &agent_sets(agent_extra));
    server.start();
    p.start();
    q.start();
    p.wait_link("home", Some(&server));
    q.wait_link("home", Some(&server));
    let mut args = vec!["--failover-after", "1s"];
    args.extend_from_slice(pair_args);
    server.add_pair("web", "p", "q", &args);
    (server, p, q)
}

/// Whether the agent itself believes it holds the pair's duty (`members[]` of its status).
fn member_active(agent: &Node, pair: &str) -> Option<bool> {
    let s = agent.status()?;
    s.members.iter().find(|m| m.pair == pair).map(|m| m.active)
}

#[test]
fn pr3_sigkill_of_the_active_primary_fails_over_to_the_secondary() {
    let site = Site::new(41);
    let (server, mut p, q) = pair_site(&site, &[], &["--switchback", "manual"]);
    let before = server.wait_pair("web", "active primary", |p| {
        p.active == "primary" && p.state == "normal"
    });
    wait_until(WAIT, "p to hold the duty", || {
        (member_active(&p, "web") == Some(true)).then_some(())
    });
    p.kill9();
    let after = server.wait_pair("web", "active secondary", |p| p.active == "secondary");
    assert!(
        after.epoch > before.epoch,
        "a handover grows the pair epoch"
    );
    wait_until(WAIT, "q to hold the duty", || {
        (member_active(&q, "web") == Some(true)).then_some(())
    });
    server.wait_event("FAILOVER", |e| e.subject == "web");
}

#[test]
fn pr3_sigstop_of_the_primary_fails_over_and_it_does_not_resume_on_its_own() {
    let site = Site::new(42);
    let (server, p, q) = pair_site(&site, &[], &["--switchback", "manual"]);
    server.wait_pair("web", "active primary", |p| p.active == "primary");
    wait_until(WAIT, "p to hold the duty", || {
        (member_active(&p, "web") == Some(true)).then_some(())
    });
    p.sigstop();
    server.wait_pair("web", "active secondary", |p| p.active == "secondary");
    wait_until(WAIT, "q to hold the duty", || {
        (member_active(&q, "web") == Some(true)).then_some(())
    });
    p.sigcont();
    // Thawed, p learns the new pair epoch and stands by; it never takes the duty back itself.
    server.wait_pair("web", "p connected again", |p| p.primary_connected);
    wait_until(WAIT, "p to stand by", || {
        (member_active(&p, "web") == Some(false)).then_some(())
    });
    holds_for(Duration::from_secs(3), "the pair staying on q", || {
        let pair = server.pair("web").ok_or("no pair")?;
        match (
            pair.active.as_str(),
            member_active(&p, "web"),
            member_active(&q, "web"),
        ) {
            ("secondary", Some(false), Some(true)) => Ok(()),
            other => Err(format!("{other:?} {pair:?}")),
        }
    });
}

#[test]
fn pr4_auto_switchback_after_hold_down() {
    let site = Site::new(43);
    let (server, mut p, _q) = pair_site(&site, &[], &["--switchback", "auto", "--hold-down", "2s"]);
    server.wait_pair("web", "active primary", |p| p.active == "primary");
    p.kill9();
    server.wait_pair("web", "active secondary", |p| p.active == "secondary");
    p.start();
    server.wait_pair("web", "back on the primary", |p| {
        p.active == "primary" && p.state == "normal"
    });
    server.wait_event("PAIR_SWITCHBACK", |e| e.subject == "web");
    wait_until(WAIT, "p to hold the duty", || {
        (member_active(&p, "web") == Some(true)).then_some(())
    });
}

#[test]
fn pr5_force_failover_and_revert_and_their_refusal_when_the_target_is_down() {
    let site = Site::new(44);
    let (server, mut p, mut q) = pair_site(&site, &[], &["--switchback", "manual"]);
    // Each action once the engine's own dry run allows it (both members heard since).
    server.wait_pair("web", "active primary, force failover allowed", |p| {
        p.active == "primary" && p.actions.force_failover.allowed
    });
    server.cli_ok(&["pair", "force-failover", "web"]);
    server.wait_pair("web", "active secondary, revert allowed", |p| {
        p.active == "secondary" && p.actions.revert.allowed
    });
    server.wait_event("FORCED_FAILOVER", |e| e.subject == "web");
    server.cli_ok(&["pair", "revert", "web"]);
    server.wait_pair("web", "active primary", |p| p.active == "primary");
    server.wait_event("REVERTED", |e| e.subject == "web");

    // Force failover with the secondary down: refused, exit 1, the reason on stderr.
    q.kill9();
    server.wait_pair("web", "q disconnected", |p| !p.secondary_connected);
    let out = server.cli(&["pair", "force-failover", "web"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the secondary q is not connected"),
        "names why: {stderr}"
    );
    assert_eq!(server.pair("web").expect("pair").active, "primary");

    // Revert with the primary down: refused the same way.
    q.start();
    // Connected is not yet enough for the guard (q must also have been heard since): wait for the
    // engine's own dry run.
    server.wait_pair("web", "force failover allowed again", |p| {
        p.secondary_connected && p.actions.force_failover.allowed
    });
    server.cli_ok(&["pair", "force-failover", "web"]);
    server.wait_pair("web", "active secondary", |p| p.active == "secondary");
    p.kill9();
    server.wait_pair("web", "p disconnected", |p| !p.primary_connected);
    let out = server.cli(&["pair", "revert", "web"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the primary p is not connected"),
        "names why: {stderr}"
    );
    assert_eq!(server.pair("web").expect("pair").active, "secondary");
}

/// PR-5, for each of the four causes the engine's guard refuses an operator action with: the CLI
/// exits 1 and its stderr is exactly the sentence `status --json` showed for that action
/// (`actions.*.reason`, a dry run of the same guard), the sentence the tray item and the console
/// button show. The causes in the guard's order: 1. not the acting server, 2. a handover under
/// way, 3. the target already active, 4. the target not connected.
#[test]
fn pr5_the_cli_refuses_with_exactly_the_sentence_status_showed_for_each_of_the_four_causes() {
    let site = Site::new(47);
    let (mut s1, mut s2) = site.hot_standby(&server_sets(&[]), None);
    let mut p = site.agent("p", &[&s1, &s2], &agent_sets(&[]));
    let mut q = site.agent("q", &[&s1, &s2], &agent_sets(&[]));
    start_hot_standby(&mut s1, &mut s2);
    p.start();
    q.start();
    wait_on(&p, &s1);
    wait_on(&q, &s1);
    // A long failover_after: a frozen member's lease runs that long, so cause 2 stays visible.
    s1.add_pair(
        "web",
        "p",
        "q",
        &["--failover-after", "30s", "--switchback", "manual"],
    );
    s1.wait_pair("web", "active primary", |p| p.active == "primary");

    // 3. The target already active.
    refused_as_status_says(&s1, "revert", "web is already active on the primary p");
    // 1. Not the acting server: the STANDBY holds the replicated pair but does not move it.
    s2.wait_pair("web", "replicated to the STANDBY", |_| true);
    refused_as_status_says(
        &s2,
        "force-failover",
        "this server is not the acting server of the site",
    );
    // 2. A handover under way: the active primary is frozen (its lease still runs), so it cannot
    //    confirm it stood down and the handover waits. First the secondary's first heartbeat
    //    since the pair was added (a CI run forced a moment earlier: "q is not connected").
    s1.wait_pair("web", "a forced failover allowed", |p| {
        p.actions.force_failover.allowed
    });
    p.sigstop();
    s1.cli_ok(&["pair", "force-failover", "web"]);
    refused_as_status_says(&s1, "revert", "a handover of web is already under way");
    p.sigcont();
    s1.wait_pair("web", "active secondary", |p| p.active == "secondary");
    // 4. The target not connected.
    p.kill9();
    s1.wait_pair("web", "p disconnected", |p| !p.primary_connected);
    refused_as_status_says(&s1, "revert", "the primary p is not connected");
    assert_eq!(s1.pair("web").expect("pair").active, "secondary");
}

/// `status --json` on `server` shows pair web's `action` refused with `sentence`, and
/// `understudy pair ACTION web` exits 1 with exactly that sentence on stderr.
fn refused_as_status_says(server: &Node, action: &str, sentence: &str) {
    let of = |p: &PairStatus| match action {
        "force-failover" => p.actions.force_failover.clone(),
        "revert" => p.actions.revert.clone(),
        other => panic!("no such pair action: {other}"),
    };
    let shown = server.wait_pair("web", &format!("{action} refused"), |p| !of(p).allowed);
    assert_eq!(of(&shown).reason.as_deref(), Some(sentence), "{shown:?}");
    assert_cli_refuses(server, &["pair", action, "web"], sentence);
}

/// The CLI exits 1 with exactly the engine's sentence on stderr (PR-5, HS-5).
fn assert_cli_refuses(node: &Node, args: &[&str], sentence: &str) {
    let out = node.cli(args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: {sentence}\n")
    );
}

#[test]
fn pr7_failing_hook_raises_hook_failed_and_shows_the_pair_degraded() {
    let site = Site::new(45);
    let (server, _p, _q) = pair_site(
        &site,
        &[r#"agent.on_activate=["/bin/false"]"#],
        &["--switchback", "manual"],
    );
    let pair = server.wait_pair("web", "degraded", |p| p.state == "degraded");
    assert!(
        pair.degraded
            .as_deref()
            .unwrap_or("")
            .contains("on_activate hook on p failed"),
        "the reason is shown: {pair:?}"
    );
    let event = server.wait_event("HOOK_FAILED", |e| e.subject == "web");
    assert!(event.sentence.contains("exit status 1"), "{event:?}");
}

#[test]
fn pr7_hanging_hook_is_killed_after_its_timeout_and_shows_the_pair_degraded() {
    let site = Site::new(46);
    let (server, p, _q) = pair_site(
        &site,
        &[
            r#"agent.on_activate=["/bin/sleep","30"]"#,
            "agent.hook_timeout=500ms",
        ],
        &["--switchback", "manual"],
    );
    let pair = server.wait_pair("web", "degraded", |p| p.state == "degraded");
    assert!(
        pair.degraded
            .as_deref()
            .unwrap_or("")
            .contains("on_activate hook on p failed"),
        "{pair:?}"
    );
    let event = server.wait_event("HOOK_FAILED", |e| e.subject == "web");
    assert!(
        event.sentence.contains("killed after hook_timeout"),
        "{event:?}"
    );
    // The hook process is gone: p has no `sleep` child left.
    wait_until(WAIT, "the hung hook killed", || {
        children_of(p.pid())
            .iter()
            .all(|c| !c.starts_with("/bin/sleep"))
            .then_some(())
    });
}

/// Issue 12 item 6: a hung hook is killed with everything it started (its process group), not
/// only the direct child: the `sleep` a shell script put in the background dies with it.
#[test]
fn pr7_hung_hook_is_killed_with_its_grandchildren() {
    let site = Site::new(167);
    let pidfile = site.dir().join("grandchild.pid");
    let hook: &'static str = Box::leak(
        format!(
            r#"agent.on_activate=["/bin/sh","-c","sleep 600 & echo $! > {}; wait"]"#,
            pidfile.display()
        )
        .into_boxed_str(),
    );
    let (server, _p, _q) = pair_site(
        &site,
        &[hook, "agent.hook_timeout=500ms"],
        &["--switchback", "manual"],
    );
    let event = server.wait_event("HOOK_FAILED", |e| e.subject == "web");
    assert!(
        event.sentence.contains("killed after hook_timeout"),
        "{event:?}"
    );
    let pid = wait_ok(WAIT, "the grandchild's pid", || {
        std::fs::read_to_string(&pidfile).map_err(|e| e.to_string())
    });
    let pid = pid.trim().to_string();
    wait_ok(WAIT, "the hook's grandchild killed", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        match state {
            Some(s) if !s.starts_with('Z') => Err(format!("{pid} still runs: {stat}")),
            _ => Ok(()),
        }
    });
}

/// The command lines of a process's children (from /proc).
fn children_of(pid: i32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(pid) {
            found.push(
                std::fs::read_to_string(entry.path().join("cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " "),
            );
        }
    }
    found
}

/// `status --json` on `node` shows `ha standby` (HS-5) refused with `sentence`
/// (`node.failover.standby`), and `understudy ha standby` exits 1 with exactly that sentence.
fn standby_refused_as_status_says(node: &Node, sentence: &str) {
    let shown = wait_ok(WAIT, &format!("{}: ha standby refused", node.name), || {
        let standby = node.status().ok_or("no status")?.node.failover.standby;
        if standby.reason.as_deref() == Some(sentence) {
            Ok(standby)
        } else {
            Err(format!("{standby:?}"))
        }
    });
    assert!(!shown.allowed, "{shown:?}");
    assert_cli_refuses(node, &["ha", "standby"], sentence);
}

/// HS-5: the operator's "set this server to standby" is shown as the engine's dry run of its
/// guard (the tray item, the console button), and the CLI is refused with the same sentence, for
/// each cause: no server role, failover off, not the acting server, the peer not answering.
#[test]
fn hs5_the_cli_refuses_ha_standby_with_exactly_the_sentence_status_showed() {
    let site = Site::new(38);
    let (mut s1, mut s2) = site.hot_standby(&server_sets(&[]), None);
    let mut alone = site.server("alone", &server_sets(&[]));
    let mut agent = site.agent("a1", &[&alone], &agent_sets(&[]));
    alone.start();
    agent.start();
    standby_refused_as_status_says(&agent, "this node has no server role");
    standby_refused_as_status_says(
        &alone,
        "failover mode is off: there is no peer to hand the role to",
    );
    start_hot_standby(&mut s1, &mut s2);
    standby_refused_as_status_says(&s2, "this server is already STANDBY");
    // Allowed on the ACTIVE while its STANDBY answers.
    wait_until(WAIT, "ha standby allowed on s1", || {
        s1.status()
            .filter(|s| s.node.failover.standby.allowed)
            .map(|_| ())
    });
    s2.kill9();
    standby_refused_as_status_says(
        &s1,
        "the peer is not answering as STANDBY: stepping down would leave no acting server",
    );
    assert_eq!(s1.failover().map(|f| f.0).as_deref(), Some("active"));
}

/// HS-3 (issue 15: an acknowledged change of the site configuration is not left waiting for the
/// STANDBY's next poll): the ACTIVE tells its watching STANDBY at once when it has committed a
/// change of the site configuration, as it does for a stored event (`PeerChanged`), and the
/// STANDBY replicates then. With a `sync_interval` of 10 minutes, an alert channel added on s1,
/// then removed, is on s2 and then gone from s2 within the test's wait (a minute); on the code
/// before, each change waited for the next poll. What a SIGKILL of the ACTIVE can take with it
/// shrinks from one `sync_interval` to the time of one poll.
#[test]
fn hs3_a_site_change_reaches_the_standby_at_once_not_at_its_next_poll() {
    let site = Site::new(28);
    let mut sets = server_sets(&[]);
    sets.extend([
        "failover.sync_interval=600s",
        "failover.failover_timeout=3s",
    ]);
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    let channels = |s: &Node| -> Vec<String> {
        s.try_json(&["alert", "channel", "list", "--json"])
            .and_then(|l| {
                l["channels"].as_array().map(|c| {
                    c.iter()
                        .filter_map(|c| c["name"].as_str().map(String::from))
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    s1.cli_ok(&[
        "alert",
        "channel",
        "add",
        "ops",
        "--kind",
        "webhook",
        "--url",
        "http://127.0.0.1:9/hook",
    ]);
    wait_until(WAIT, "the channel on the STANDBY", || {
        (channels(&s2) == ["ops"]).then_some(())
    });
    s1.cli_ok(&["alert", "channel", "remove", "ops"]);
    wait_until(WAIT, "the channel gone from the STANDBY", || {
        channels(&s2).is_empty().then_some(())
    });
    assert_eq!(
        s2.failover().map(|f| f.0).as_deref(),
        Some("standby"),
        "s2 stayed STANDBY throughout"
    );
}

/// HS-3, AG-1: records as heavy as labels allow them (four labels of 1,000 characters, about
/// 4 KiB each) go from the agent to the ACTIVE and from the ACTIVE to its STANDBY whatever a
/// batch of them weighs: each frame (an agent's batch, a peer reply, a merge) carries what fits
/// in it and the rest follows at once. The STANDBY starts 4 MiB behind and stays STANDBY. On the
/// code before, a 500-record batch or a 5,000-record reply outgrew the 1 MiB frame and was never
/// sent: the agent's records stayed in its cache, and a STANDBY hearing nothing promoted itself.
#[test]
fn hs3_ag1_records_heavier_than_a_frame_per_batch_reach_the_active_and_the_standby() {
    let site = Site::new(29);
    let (mut s1, mut s2) = site.hot_standby(&server_sets(&[]), None);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets(&[]));
    s1.start();
    let epoch = s1.wait_failover_state("active");
    a1.start();
    a1.wait_link("home", Some(&s1));
    let blob = "x".repeat(1000);
    let mut last = 0;
    for round in 0..10 {
        let mut args = vec!["send".to_string()];
        args.extend((0..100).map(|i| format!("m{i}={round}")));
        for l in 0..4 {
            args.push("--label".into());
            args.push(format!("l{l}={blob}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = a1.cli_ok(&refs);
        last = out
            .split("..")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("the last seq in {out:?}"));
    }
    assert_eq!(last, 1000);
    wait_records(&[&s1], &[("a1", last)]);
    s2.start();
    s2.wait_failover_state("standby");
    wait_records(&[&s2], &[("a1", last)]);
    assert_eq!(s1.failover(), Some(("active".to_string(), epoch)));
    assert_eq!(
        s2.failover().map(|f| f.0).as_deref(),
        Some("standby"),
        "the STANDBY heard every reply"
    );
}
