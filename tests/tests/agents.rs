//! Issue 3, item 5: agents and their home/standby servers over the wire (AG-2…AG-9), real
//! processes, records counted by the checker: none lost, none duplicated.

use std::time::Duration;

use understudy_system_tests::*;

fn server_sets(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["server.enroll_token=s3cret-enroll-0123456789abcdef"];
    v.extend_from_slice(extra);
    v
}

fn agent_sets(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["agent.enroll_token=s3cret-enroll-0123456789abcdef"];
    v.extend_from_slice(FAST_AGENT);
    v.extend_from_slice(extra);
    v
}

fn stored_on(node: &Node, agent: &str) -> usize {
    node.records()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.agent == agent)
        .count()
}

#[test]
fn ag3_ag6_sigkill_of_home_switchover_then_switchback_loses_nothing() {
    let site = Site::new(11);
    let mut home = site.server("home", &server_sets(&[]));
    let mut standby = site.server("standby", &server_sets(&[]));
    let mut agent = site.agent("a1", &[&home, &standby], &agent_sets(&[]));
    home.start();
    standby.start();
    agent.start();
    agent.wait_link("home", Some(&home));

    let sender = Sender::start(&agent, 50);
    sender.wait_more(1000);
    home.kill9();
    agent.wait_link("standby", Some(&standby));
    sender.wait_more(1000);
    wait_until(WAIT, "records on the standby", || {
        (stored_on(&standby, "a1") > 0).then_some(())
    });

    home.start();
    agent.wait_link("home", Some(&home));
    let on_home_before = stored_on(&home, "a1");
    sender.wait_more(1000);
    let stats = sender.finish();
    assert!(stats.last_seq >= 3000, "{stats:?}");
    wait_records(&[&home, &standby], &[("a1", stats.last_seq)]);
    assert!(
        stored_on(&home, "a1") > on_home_before,
        "records went home after the switchback"
    );
    agent.wait_event("SWITCHOVER", |_| true);
    agent.wait_event("SWITCHBACK", |_| true);
    assert_eq!(agent.link_now().cached, 0);
}

#[test]
fn ag4_standby_capacity_stages_one_agent_and_it_is_delivered_later() {
    let site = Site::new(12);
    let mut home = site.server("home", &server_sets(&[]));
    let mut standby = site.server("standby", &server_sets(&["server.standby_capacity=1"]));
    let mut a1 = site.agent("a1", &[&home, &standby], &agent_sets(&[]));
    let mut a2 = site.agent("a2", &[&home, &standby], &agent_sets(&[]));
    home.start();
    standby.start();
    a1.start();
    a2.start();
    a1.wait_link("home", Some(&home));
    a2.wait_link("home", Some(&home));

    let (s1, s2) = (Sender::start(&a1, 40), Sender::start(&a2, 40));
    s1.wait_more(400);
    s2.wait_more(400);
    home.kill9();
    // First come, first served: one gets the only standby slot, the other is staged.
    let (staged, on_standby) = wait_ok(WAIT, "one agent on the standby and one staged", || {
        let st = (
            a1.link_state().unwrap_or_default(),
            a2.link_state().unwrap_or_default(),
        );
        match (st.0.as_str(), st.1.as_str()) {
            ("staged", "standby") => Ok((&a1, &a2)),
            ("standby", "staged") => Ok((&a2, &a1)),
            _ => Err(format!("a1 {}, a2 {}", st.0, st.1)),
        }
    });
    staged.wait_event("STAGED", |_| true);
    wait_until(WAIT, "the staged agent caching", || {
        (staged.link_now().cached > 0).then_some(())
    });
    s1.wait_more(400);
    s2.wait_more(400);
    let staged_name = staged.name.clone();
    wait_until(
        WAIT,
        "the standby storing the agent that holds the slot",
        || (stored_on(&standby, &on_standby.name) > 0).then_some(()),
    );

    home.start();
    a1.wait_link("home", Some(&home));
    a2.wait_link("home", Some(&home));
    let (n1, n2) = (s1.finish().last_seq, s2.finish().last_seq);
    wait_records(&[&home, &standby], &[("a1", n1), ("a2", n2)]);
    assert_eq!(
        stored_on(&standby, &staged_name),
        0,
        "the staged agent never delivered to the full standby"
    );
}

#[test]
fn ag5_blackout_then_one_server_returns_and_everything_is_flushed() {
    let site = Site::new(13);
    let mut home = site.server("home", &server_sets(&[]));
    let mut standby = site.server("standby", &server_sets(&[]));
    let mut agent = site.agent("a1", &[&home, &standby], &agent_sets(&[]));
    home.start();
    standby.start();
    agent.start();
    agent.wait_link("home", Some(&home));

    let sender = Sender::start(&agent, 50);
    sender.wait_more(500);
    home.kill9();
    standby.kill9();
    agent.wait_link("blackout", None);
    agent.wait_event("BLACKOUT", |_| true);
    sender.wait_more(1000);
    let cached = agent.link_now().cached;
    assert!(cached > 0, "records are cached during the blackout");

    standby.start();
    agent.wait_link("standby", Some(&standby));
    agent.wait_event("BLACKOUT_END", |_| true);
    sender.wait_more(500);
    let n = sender.finish().last_seq;
    home.start();
    wait_records(&[&home, &standby], &[("a1", n)]);
    assert_eq!(
        agent.events("BLACKOUT").len(),
        1,
        "one BLACKOUT event per episode"
    );
}

#[test]
fn ag6_switchback_interval_zero_waits_for_recall() {
    let site = Site::new(14);
    let mut home = site.server("home", &server_sets(&[]));
    let mut standby = site.server("standby", &server_sets(&[]));
    let mut agent = site.agent(
        "a1",
        &[&home, &standby],
        &agent_sets(&["agent.switchback_interval=0s"]),
    );
    home.start();
    standby.start();
    agent.start();
    agent.wait_link("home", Some(&home));

    let sender = Sender::start(&agent, 50);
    sender.wait_more(500);
    home.kill9();
    agent.wait_link("standby", Some(&standby));
    home.start();
    // Home is back, but with switchback_interval = 0 the agent does not go on its own.
    holds_for(
        Duration::from_secs(4),
        "the agent staying on the standby",
        || match agent.link_state().as_deref() {
            Some("standby") | None => Ok(()),
            other => Err(format!("link is {other:?}")),
        },
    );
    // Recall is refused where the agent is not connected, with the reason.
    let refused = home.cli(&["agent", "recall", "a1"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "recall on the home server, where a1 is not connected"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not connected"));
    standby.cli_ok(&["agent", "recall", "a1"]);
    agent.wait_link("home", Some(&home));
    agent.wait_event("SWITCHBACK", |_| true);
    sender.wait_more(500);
    let n = sender.finish().last_seq;
    wait_records(&[&home, &standby], &[("a1", n)]);
}

#[test]
fn ag2_sigkill_of_the_agent_mid_batch_loses_and_duplicates_nothing() {
    let site = Site::new(15);
    let mut home = site.server("home", &server_sets(&[]));
    let mut agent = site.agent("a1", &[&home], &agent_sets(&[]));
    home.start();
    agent.start();
    agent.wait_link("home", Some(&home));

    // Sends of 200 records each while the agent is killed three times; some sends fail, and
    // one may be cached without its answer reaching the sender: the final send tells the exact
    // count.
    let sender = Sender::start(&agent, 200);
    for _ in 0..3 {
        sender.wait_more(1000);
        agent.kill9();
        agent.start();
    }
    sender.wait_more(1000);
    let stats = sender.finish();
    assert!(stats.ok_calls > 0);
    let (_, n) = agent.send(1);
    assert!(n >= stats.last_seq);
    wait_records(&[&home], &[("a1", n)]);
    agent.wait_link("home", Some(&home));
    wait_until(WAIT, "an empty cache", || {
        (agent.link_now().cached == 0).then_some(())
    });
}

/// Issue 18: the server stores the batches of several agents' links in one transaction (group
/// commit) and acknowledges each only after it committed. SIGKILLed while three agents flush
/// their caches into it at once (their batches grouped), it loses and duplicates nothing: what
/// was acknowledged is durable, what was not is sent again and stored once.
#[test]
fn ag2_ck4_sigkill_of_the_server_mid_group_commit_loses_and_duplicates_nothing() {
    let site = Site::new(39);
    let mut home = site.server("home", &server_sets(&[]));
    let mut agents: Vec<Node> = ["a1", "a2", "a3"]
        .iter()
        .map(|name| site.agent(name, &[&home], &agent_sets(&[])))
        .collect();
    home.start();
    for agent in &mut agents {
        agent.start();
        agent.wait_link("home", Some(&home));
    }
    let senders: Vec<Sender> = agents.iter().map(|a| Sender::start(a, 200)).collect();
    for _ in 0..3 {
        // A backlog in every agent's cache while the server is down...
        home.kill9();
        for sender in &senders {
            sender.wait_more(1000);
        }
        // ...flushed by the three links at once when it returns: killed as they reconnect,
        // with their batches in flight and in groups.
        home.start();
        for agent in &agents {
            agent.wait_link("home", Some(&home));
        }
        home.kill9();
        home.start();
        for sender in &senders {
            sender.wait_more(400);
        }
    }
    let mut expected = Vec::new();
    for (agent, sender) in agents.iter().zip(senders) {
        let stats = sender.finish();
        // A send cut by a kill may have cached records without its answer: one more tells
        // the exact count.
        let (_, n) = agent.send(1);
        assert!(n > stats.last_seq, "{stats:?}");
        expected.push((agent.name.clone(), n));
    }
    let expected: Vec<(&str, u64)> = expected.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    wait_records(&[&home], &expected);
    for agent in &agents {
        wait_until(WAIT, "an empty cache", || {
            (agent.link_now().cached == 0).then_some(())
        });
    }
}

#[test]
fn ag9_unknown_agent_waits_pending_until_an_operator_accepts_it() {
    let site = Site::new(16);
    let mut server = site.server("srv", &[]);
    let mut agent = site.init("a1", "agent", &[server.url()], FAST_AGENT);
    server.start();
    agent.start();
    let entry = wait_ok(WAIT, "a1 in the pending list", || {
        let e = server.agent_entry("a1").ok_or("not listed")?;
        if e.pending {
            Ok(e)
        } else {
            Err(format!("{e:?}"))
        }
    });
    assert_eq!(entry.state, "pending");
    server.wait_event("AGENT_PENDING", |e| e.subject == "a1");
    wait_ok(WAIT, "the agent to show why it is not connected", || {
        let link = agent.link().ok_or("no status")?;
        let error = link.error.as_deref().unwrap_or("");
        if error.contains("waiting for an operator") && link.state != "home" {
            Ok(())
        } else {
            Err(format!("{link:?}"))
        }
    });
    let (_, n) = agent.send(25);
    assert_eq!(
        stored_on(&server, "a1"),
        0,
        "nothing stored from a pending agent"
    );

    server.cli_ok(&["agent", "accept", "a1"]);
    agent.wait_link("home", Some(&server));
    wait_records(&[&server], &[("a1", n)]);
    server.wait_event("AGENT_ACCEPTED", |e| e.subject == "a1");
}

#[test]
fn ag9_valid_enrollment_token_is_accepted_at_once() {
    let site = Site::new(17);
    let mut server = site.server("srv", &server_sets(&[]));
    let mut agent = site.agent("a1", &[&server], &agent_sets(&[]));
    server.start();
    agent.start();
    agent.wait_link("home", Some(&server));
    let entry = server.agent_entry("a1").expect("a1 listed");
    assert!(!entry.pending);
    assert_eq!(entry.state, "connected");
    let accepted = server.wait_event("AGENT_ACCEPTED", |e| e.subject == "a1");
    assert!(
        accepted.sentence.contains("enrollment token"),
        "{accepted:?}"
    );
    let (_, n) = agent.send(25);
    wait_records(&[&server], &[("a1", n)]);
}

/// PRODUCT.md §3: the `--json` that scripts read keeps its field names. Every other test reads
/// the admin API's typed answers (crates/api) through the harness; this one reads the JSON as a
/// script does, so a rename in crates/api that the types would follow silently fails here.
#[test]
fn contract_status_events_and_records_json_carry_product_md_field_names() {
    let site = Site::new(18);
    let mut server = site.server("srv", &server_sets(&[]));
    let mut p = site.agent("p", &[&server], &agent_sets(&[]));
    let mut q = site.agent("q", &[&server], &agent_sets(&[]));
    server.start();
    p.start();
    q.start();
    p.wait_link("home", Some(&server));
    q.wait_link("home", Some(&server));
    server.add_pair("web", "p", "q", &["--failover-after", "1500ms"]);
    server.wait_pair("web", "active primary", |w| w.active == "primary");
    let (_, n) = p.send(3);
    wait_records(&[&server], &[("p", n)]);

    let raw = |node: &Node, args: &[&str]| -> Value {
        let out = node.cli_ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    };
    let has = |v: &Value, at: &str, keys: &[&str]| {
        for key in keys {
            assert!(v.get(key).is_some(), "{at}.{key} is missing: {v}");
        }
    };
    let status = raw(&server, &["status", "--json"]);
    has(&status, "status", &["node", "link", "pairs", "agents"]);
    has(
        &status["node"],
        "node",
        &["id", "name", "roles", "failover"],
    );
    has(&status["node"]["roles"], "node.roles", &["server", "agent"]);
    has(
        &status["node"]["failover"],
        "node.failover",
        &["mode", "state", "epoch", "peer"],
    );
    let pair = &status["pairs"][0];
    has(
        pair,
        "pairs[]",
        &[
            "name",
            "primary",
            "secondary",
            "active",
            "state",
            "epoch",
            "actions",
        ],
    );
    assert_eq!(pair["active"], "primary", "{pair}");
    assert_eq!(
        pair["failover_after"], "1500ms",
        "durations as PRODUCT.md writes them"
    );
    for action in ["force_failover", "revert"] {
        has(
            &pair["actions"][action],
            &format!("pairs[].actions.{action}"),
            &["allowed", "reason"],
        );
    }
    let agent = status["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "p"))
        .unwrap_or_else(|| panic!("agent p in {status}"));
    has(agent, "agents[]", &["name", "state", "server", "pending"]);

    let of_p = raw(&p, &["status", "--json"]);
    has(&of_p["link"], "link", &["server", "state", "cached"]);
    assert_eq!(of_p["link"]["state"], "home", "{of_p}");

    let events = raw(&server, &["events", "--json"]);
    let event = &events["events"][0];
    has(
        event,
        "events[]",
        &[
            "id", "time_ms", "code", "subject", "sentence", "notify", "severity",
        ],
    );

    let records = raw(&server, &["records", "--json"]);
    let record = records["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["agent"] == "p"))
        .unwrap_or_else(|| panic!("a record of p in {records}"));
    has(
        record,
        "records[]",
        &["agent", "seq", "pair", "name", "value", "time_ms"],
    );
}
