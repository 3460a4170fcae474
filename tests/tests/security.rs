//! SECURITY.md with real processes: who may send what. Command checks are off on an agent unless
//! its own configuration allows them; only the home server and its hot-standby peer direct an
//! agent; the peer is only the peer; an enrolled agent acts only for itself.

use std::sync::Arc;

use understudy_node::frame::{read_frame, write_frame};
use understudy_node::store::{AgentRow, AgentStatus, Record, SiteSnapshot, StoredRecord};
use understudy_node::tls::{self, NodeIdentity, Pins, ALPN_WIRE};
use understudy_node::wire::{PeerState, ToAgent, ToServer};
use understudy_system_tests::*;

const TOKEN: &[&str] = &[
    "agent.heartbeat=200ms",
    "agent.switchover_after=600ms",
    "server.enroll_token=security-test-token",
    "agent.enroll_token=security-test-token",
];

/// The newest stored record named `name` from agent `agent`: its detail.
fn newest_detail(server: &Node, agent: &str, name: &str) -> Option<String> {
    let records = server.records()?;
    let r = records
        .iter()
        .rev()
        .find(|r| r.agent == agent && r.name == name)?;
    Some(r.detail.as_deref()?.to_string())
}

/// Issue 12, item 1: a server (or whoever holds its admin token) cannot run a program on an agent
/// whose configuration does not allow it; the refusal is a result and a CHECK_REFUSED event, and
/// tcp checks keep working.
#[test]
fn command_checks_are_off_unless_the_agent_allows_them() {
    let site = Site::new(97);
    let mut s = site.server("s", TOKEN);
    s.start();
    let mut a = site.agent("a", &[&s], TOKEN);
    a.start();
    a.wait_link("home", Some(&s));
    let pwned = site.dir().join("pwned");
    let target = format!("/usr/bin/touch {}", pwned.display());
    s.cli_ok(&[
        "check", "add", "evil", "--kind", "command", "--target", &target, "--every", "200ms",
        "--agent", "a",
    ]);
    s.cli_ok(&[
        "check", "add", "port", "--kind", "tcp", "--target", &s.listen, "--every", "200ms",
        "--agent", "a",
    ]);
    let refused = wait_until(WAIT, "a result of the refused command", || {
        newest_detail(&s, "a", "evil")
    });
    assert!(
        refused.contains("not allowed on this agent"),
        "the result says why: {refused}"
    );
    let event = s.wait_event("CHECK_REFUSED", |e| e.subject == "a");
    assert!(
        event.sentence.contains("evil"),
        "the event names the check: {event:?}"
    );
    let up = wait_until(WAIT, "a result of the tcp check", || {
        newest_detail(&s, "a", "port")
    });
    assert!(up.contains("\"up\":true"), "tcp checks stay allowed: {up}");
    assert!(!pwned.exists(), "the command must not have run");
    assert_eq!(
        s.events("CHECK_REFUSED").len(),
        1,
        "one event per agent and check, not one per run"
    );
}

/// Issue 12, item 1: an agent on a standby server of another site keeps its own checks; that
/// server's checks are not run, even when the agent allows the command.
#[test]
fn a_foreign_standby_cannot_give_an_agent_checks() {
    let site = Site::new(98);
    let mut home = site.server("home", TOKEN);
    home.start();
    let mut foreign = site.server("foreign", TOKEN);
    foreign.start();
    let mut a = site.agent(
        "a",
        &[&home, &foreign],
        &[TOKEN, &[r#"agent.allow_commands=["/usr/bin/touch *"]"#]].concat(),
    );
    a.start();
    a.wait_link("home", Some(&home));
    home.cli_ok(&[
        "check",
        "add",
        "home-port",
        "--kind",
        "tcp",
        "--target",
        &foreign.listen,
        "--every",
        "200ms",
        "--agent",
        "a",
    ]);
    wait_until(WAIT, "the home check's result at home", || {
        newest_detail(&home, "a", "home-port")
    });
    let pwned = site.dir().join("pwned");
    let target = format!("/usr/bin/touch {}", pwned.display());
    foreign.cli_ok(&[
        "check", "add", "evil", "--kind", "command", "--target", &target, "--every", "200ms",
        "--agent", "a",
    ]);
    home.kill9();
    a.wait_link("standby", Some(&foreign));
    // The home check keeps running while on the foreign standby: several results stored there.
    wait_until(
        WAIT,
        "home's check results stored on the foreign standby",
        || {
            let n = foreign
                .records()?
                .iter()
                .filter(|r| r.agent == "a" && r.name == "home-port")
                .count();
            (n >= 5).then_some(())
        },
    );
    assert!(
        !pwned.exists(),
        "a foreign standby's command check must not run on the agent"
    );
    assert!(
        newest_detail(&foreign, "a", "evil").is_none(),
        "no result of the foreign check either"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 12, item 2: the peer is really the peer.

/// A record as a peer hands it over in a Merge.
fn stored(agent: &str, seq: u64) -> StoredRecord {
    StoredRecord {
        rowid: seq,
        agent_id: "6f1c1d0e-8f9a-4c2b-9d7e-3a5b6c7d8e9f".into(),
        agent_name: agent.into(),
        record: Record {
            seq,
            name: "forged".into(),
            value: 1.0,
            time_ms: 1_700_000_000_000 + seq as i64,
            pair: None,
            kind: "metric".into(),
            detail: None,
            labels: Default::default(),
            pair_epoch: None,
        },
        taken_for: None,
    }
}

/// Sends `message` as the first frame of a new `understudy/1` connection to `server`, made with
/// the client certificate `identity`, and returns the first answer.
fn ask(server: &Node, identity: &Arc<NodeIdentity>, message: &ToServer) -> Option<ToAgent> {
    rt().block_on(async {
        let pins = Pins::new([server.fingerprint.clone()]);
        let mut tls = tls::connect(&server.listen, &pins, Some(identity.clone()), &[ALPN_WIRE])
            .await
            .expect("TLS connection");
        write_frame(&mut tls, message).await.expect("write");
        read_frame::<ToAgent, _>(&mut tls).await.ok().flatten()
    })
}

fn is_not_the_peer(answer: &Option<ToAgent>) -> bool {
    matches!(answer, Some(ToAgent::Error { reason }) if reason.contains("not the configured failover.peer"))
}

/// A certificate this server pins for something else (here: a server its own agent role reports
/// to) is not the peer's: it cannot poll the site's records, merge records into the store or
/// announce a "rotation" of the peer's certificate. Only `failover.peer`'s fingerprint can.
#[test]
fn security_a_pinned_certificate_that_is_not_the_peers_cannot_poll_merge_or_rotate() {
    let site = Site::new(231);
    let other = client_identity(&site, "other-server");
    let peer = client_identity(&site, "real-peer");
    // A standalone node (server + its own agent) whose agent role also reports to `other`, and
    // whose failover.peer is `peer` (not running: the node acts alone).
    let other_url = format!("https://{}#{}", site.addr(), other.fingerprint());
    let mut s = site.init(
        "s",
        "standalone",
        &[other_url],
        &[
            &format!(
                "failover.peer=https://{}#{}",
                site.addr(),
                peer.fingerprint()
            ),
            "failover.mode=primary",
            "failover.sync_interval=200ms",
            "failover.failover_timeout=1s",
        ],
    );
    s.start();
    s.wait_failover_state("active");

    let poll = ToServer::PeerPoll {
        replicate: true,
        site_version: 0,
        records_after: 0,
        events_after: 0,
        outbox_after: 0,
    };
    let answer = ask(&s, &other, &poll);
    assert!(
        is_not_the_peer(&answer),
        "a poll from a pinned non-peer: {answer:?}"
    );
    let merge = ToServer::Merge {
        records: vec![stored("forged-agent", 1), stored("forged-agent", 2)],
    };
    let answer = ask(&s, &other, &merge);
    assert!(
        is_not_the_peer(&answer),
        "a merge from a pinned non-peer: {answer:?}"
    );
    let rotate = ToServer::PeerCertRotated {
        fingerprint: "ab".repeat(32),
    };
    let answer = ask(&s, &other, &rotate);
    assert!(
        is_not_the_peer(&answer),
        "a rotation from a pinned non-peer: {answer:?}"
    );
    // A certificate nobody pinned (an agent's, a first contact) is refused the same way.
    let stranger = client_identity(&site, "stranger");
    assert!(is_not_the_peer(&ask(&s, &stranger, &poll)));

    // The real peer's certificate is answered (so the refusals above are about the certificate).
    let answer = ask(&s, &peer, &poll);
    assert!(
        matches!(answer, Some(ToAgent::PeerReply { .. })),
        "the configured peer is answered: {answer:?}"
    );
    let records = s.records().expect("records");
    assert!(
        !records.iter().any(|r| r.agent == "forged-agent"),
        "nothing merged from the fake peer: {records:?}"
    );
    let log = s.log_text();
    assert!(
        log.contains("refused a merge: the certificate is not the configured failover.peer"),
        "the refusal is logged"
    );
    // The fake rotation did not make `other` (or its announced key) the peer after a restart.
    s.stop();
    s.start();
    s.wait_failover_state("active");
    assert!(is_not_the_peer(&ask(&s, &other, &poll)));
}

/// HS-3: an ACTIVE server keeps its own site configuration. A site snapshot in the reply to its
/// status poll (a confused or lying peer that holds the peer's key) is not applied, in the
/// engine or the store (seen after a restart, when the store is all there is).
#[test]
fn security_an_active_server_does_not_apply_a_site_snapshot_from_a_poll_reply() {
    let site = Site::new(232);
    let peer_identity = client_identity(&site, "peer");
    let peer_addr = site.addr();
    let mut s = site.server(
        "s",
        &[
            &format!(
                "failover.peer=https://{peer_addr}#{}",
                peer_identity.fingerprint()
            ),
            "failover.mode=primary",
            "failover.sync_interval=200ms",
            "failover.failover_timeout=1s",
        ],
    );
    let (peer_fp, listen) = (peer_identity.fingerprint(), peer_addr.clone());
    let fake = FakeServer::start(&peer_addr, peer_identity, move |msg, _| {
        let ToServer::PeerPoll { .. } = msg else {
            return Vec::new();
        };
        let snapshot = SiteSnapshot {
            version: 1000,
            agents: vec![AgentRow {
                id: "6f1c1d0e-8f9a-4c2b-9d7e-3a5b6c7d8e9f".into(),
                name: "planted".into(),
                fingerprint: "cd".repeat(32),
                status: AgentStatus::Accepted,
                first_seen_ms: 1_700_000_000_000,
                home: Some(true),
                announced: None,
            }],
            ..SiteSnapshot::default()
        };
        frame_of(&ToAgent::PeerReply {
            state: PeerState {
                name: "peer".into(),
                mode: "secondary".into(),
                state: "standby".into(),
                epoch: 0,
                site_version: 1000,
                fingerprint: peer_fp.clone(),
                listen: listen.clone(),
            },
            site: Some(snapshot),
            forwarded: None,
            more: false,
            records: Vec::new(),
            events: Vec::new(),
            outbox: Vec::new(),
        })
    });
    s.start();
    s.wait_failover_state("active");
    let seen = fake.received.load(std::sync::atomic::Ordering::Relaxed);
    fake.wait_received(seen, 5, "five status polls answered with a site snapshot");
    assert!(s.agent_entry("planted").is_none(), "not in the engine");
    s.stop();
    drop(fake);
    s.start();
    assert!(
        s.agent_entry("planted").is_none(),
        "not in the store either: an ACTIVE keeps its own site configuration"
    );
}

/// A server certificate is pinned for its server's address: an agent that pinned home's
/// certificate does not accept it at its standby server's address (whoever holds home's key
/// cannot pose as the other server), and lists it as untrusted there instead.
#[test]
fn security_a_pin_learned_for_one_server_is_refused_at_another_address() {
    let site = Site::new(233);
    let mut home = site.server("home", TOKEN);
    home.start();
    let standby_addr = site.addr();
    let standby_fp = client_identity(&site, "standby").fingerprint();
    let mut a = site.init(
        "a",
        "agent",
        &[home.url(), format!("https://{standby_addr}#{standby_fp}")],
        TOKEN,
    );
    a.start();
    a.wait_link("home", Some(&home));
    // Home's key, at the standby's address.
    let home_identity = NodeIdentity::load(&home.dir).expect("home's identity");
    let imposter = FakeServer::start(&standby_addr, home_identity, |msg, _| match msg {
        ToServer::Hello { .. } => frame_of(&ToAgent::Welcome {
            cluster: None,
            epoch: 1,
            checks: serde_json::Value::Null,
            peer: Vec::new(),
        }),
        _ => frame_of(&ToAgent::Ack { upto: 0 }),
    });
    home.kill9();
    let home_fp = home.fingerprint.clone();
    wait_until(
        WAIT,
        "home's certificate listed as untrusted at the standby's address",
        || {
            let untrusted = format!("{:?}", a.link()?.untrusted);
            (untrusted.contains(&standby_addr) && untrusted.contains(&home_fp)).then_some(())
        },
    );
    assert_eq!(
        imposter.received.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the agent never completed a handshake with the imposter"
    );
    assert_ne!(a.link_state().as_deref(), Some("standby"));
}

/// A Hello from a raw client saying whether this server is its home.
fn hello_claiming(id: &str, name: &str, home: bool) -> ToServer {
    ToServer::Hello {
        id: id.into(),
        name: name.into(),
        home,
        token: "security-test-token".into(),
        probe: false,
        home_fingerprints: Vec::new(),
    }
}

fn is_capacity_refusal(answer: &Option<ToAgent>) -> bool {
    matches!(answer, Some(ToAgent::Refused { capacity: true, .. }))
}

/// Issue 12 item 3 (AG-4): the server decides whether it is an agent's home when it first
/// admits the agent, not from each Hello. On a server with no standby slot, an agent that came
/// as a guest stays a guest (refused for capacity) when it later claims `home: true`, and an
/// agent admitted as home stays home when it says `home: false` (as an agent does to its home's
/// hot-standby peer). The decision survives a restart of the server (it is in the store).
#[test]
fn security_a_foreign_agent_claiming_home_is_not_treated_as_home() {
    let site = Site::new(241);
    let mut s = site.server(
        "s",
        &[
            "server.enroll_token=security-test-token",
            "server.standby_capacity=0",
        ],
    );
    s.start();
    let guest = client_identity(&site, "guest");
    let own = client_identity(&site, "own");
    const GUEST: &str = "0d5e3f7a-1b2c-4d3e-8f4a-5b6c7d8e9f01";
    const OWN: &str = "0d5e3f7a-1b2c-4d3e-8f4a-5b6c7d8e9f02";
    let answer = ask(&s, &guest, &hello_claiming(GUEST, "guest", false));
    assert!(is_capacity_refusal(&answer), "a guest, no slot: {answer:?}");
    let answer = ask(&s, &own, &hello_claiming(OWN, "own", true));
    assert!(
        matches!(answer, Some(ToAgent::Welcome { .. })),
        "its own agent: {answer:?}"
    );
    let decided = |s: &Node, when: &str| {
        let answer = ask(s, &guest, &hello_claiming(GUEST, "guest", true));
        assert!(
            is_capacity_refusal(&answer),
            "{when}, the guest claiming home is still a guest: {answer:?}"
        );
        let answer = ask(s, &own, &hello_claiming(OWN, "own", false));
        assert!(
            matches!(answer, Some(ToAgent::Welcome { .. })),
            "{when}, its own agent saying 'not home' is still home: {answer:?}"
        );
    };
    decided(&s, "at once");
    s.stop();
    s.start();
    decided(&s, "after a restart");
}

/// Issue 12 item 3 (AG-4, SECURITY.md "Hello.home"): an agent whose first contact with its home
/// cluster is home's hot-standby peer (home down when the agent first starts) is home there, not
/// a guest: its Hello names the fingerprint it pins for its first server, which the peer knows as
/// its `failover.peer`. Neither server has a standby slot, so a guest would be refused. A real
/// agent delivers its records to the peer; a raw client naming another server's fingerprint (an
/// agent of another site) is still refused for capacity, and so is one naming none.
#[test]
fn security_an_agent_first_reaching_its_home_cluster_through_the_peer_is_home_there() {
    let site = Site::new(245);
    let sets = [
        &[
            "server.enroll_token=security-test-token",
            "server.standby_capacity=0",
        ][..],
        FAST_SERVER,
    ]
    .concat();
    let (s1, mut s2) = site.hot_standby(&sets, None);
    // s1, the agent's home, never starts: s2 is the first one up and takes the duty (HS-2).
    s2.start();
    s2.wait_failover_state("active");
    let mut a = site.agent(
        "a",
        &[&s1, &s2],
        &[&["agent.enroll_token=security-test-token"][..], FAST_AGENT].concat(),
    );
    a.start();
    let (_, last) = a.send(20);
    wait_records(&[&s2], &[("a", last)]);
    let entry = s2.agent_entry("a").expect("a's entry on s2");
    assert!(
        !entry.pending && !entry.standby_slot,
        "admitted as home, in no standby slot: {entry:?}"
    );

    let own = client_identity(&site, "own");
    let foreign = client_identity(&site, "foreign");
    let other_site = client_identity(&site, "other-site-server");
    let hello = |id: &str, name: &str, first: Vec<String>| ToServer::Hello {
        id: id.into(),
        name: name.into(),
        home: false,
        token: "security-test-token".into(),
        probe: false,
        home_fingerprints: first,
    };
    let answer = ask(
        &s2,
        &foreign,
        &hello(
            "0d5e3f7a-1b2c-4d3e-8f4a-5b6c7d8e9f11",
            "foreign",
            vec![other_site.fingerprint()],
        ),
    );
    assert!(
        is_capacity_refusal(&answer),
        "an agent whose home is another site's server is a guest: {answer:?}"
    );
    let answer = ask(
        &s2,
        &own,
        &hello("0d5e3f7a-1b2c-4d3e-8f4a-5b6c7d8e9f12", "own", Vec::new()),
    );
    assert!(
        is_capacity_refusal(&answer),
        "an agent naming no home is a guest: {answer:?}"
    );
}

/// Issue 12: the configured `failover.peer` fingerprint is one of the peer link's pins. After
/// the peer announced a rotation over a link made with it, both are trusted for
/// `PIN_RETIRE_AFTER` (7 days); then only the announced one, also after a restart that reads
/// the same `failover.peer` again. The node's wall clock is stepped by libfaketime.
#[test]
fn security_the_configured_peer_fingerprint_retires_after_an_announced_rotation() {
    let site = Site::new(243);
    let old = client_identity(&site, "peer-old");
    let new = client_identity(&site, "peer-new");
    let mut s = site.init(
        "s",
        "server",
        &[],
        &[
            &format!(
                "failover.peer=https://{}#{}",
                site.addr(),
                old.fingerprint()
            ),
            "failover.mode=primary",
            "failover.sync_interval=200ms",
            "failover.failover_timeout=1s",
        ],
    );
    let offset = site.dir().join("s.faketime");
    std::fs::write(&offset, "+0\n").expect("offset file");
    s.fake_clock(&offset);
    s.start();
    s.wait_failover_state("active");
    let poll = ToServer::PeerPoll {
        replicate: false,
        site_version: 0,
        records_after: 0,
        events_after: 0,
        outbox_after: 0,
    };
    let answered = |s: &Node, who: &Arc<NodeIdentity>| {
        matches!(ask(s, who, &poll), Some(ToAgent::PeerReply { .. }))
    };
    let rotate = ToServer::PeerCertRotated {
        fingerprint: new.fingerprint(),
    };
    let answer = ask(&s, &old, &rotate);
    assert!(
        matches!(answer, Some(ToAgent::MergeDone { .. })),
        "{answer:?}"
    );
    assert!(
        answered(&s, &old) && answered(&s, &new),
        "both, in the grace period"
    );
    std::fs::write(&offset, "+8d\n").expect("offset file");
    wait_until(WAIT, "the configured fingerprint retired", || {
        is_not_the_peer(&ask(&s, &old, &poll)).then_some(())
    });
    assert!(answered(&s, &new), "the announced one is the peer now");
    s.stop();
    s.start();
    s.wait_failover_state("active");
    assert!(
        is_not_the_peer(&ask(&s, &old, &poll)),
        "failover.peer naming it again does not revive it"
    );
    assert!(answered(&s, &new));
}

/// CT-2, issue 12: a switchback probe of home (AG-6) that meets a certificate the agent does not
/// pin for home's address lists it under `link.untrusted`, as a link does, for an operator to
/// accept or not; the agent stays on its standby server.
#[test]
fn security_a_probe_meeting_the_wrong_certificate_is_listed_as_untrusted() {
    let site = Site::new(244);
    let mut home = site.server("home", TOKEN);
    home.start();
    let mut standby = site.server("standby", TOKEN);
    standby.start();
    let mut a = site.agent(
        "a",
        &[&home, &standby],
        &[TOKEN, &["agent.switchback_interval=1s"][..]].concat(),
    );
    a.start();
    a.wait_link("home", Some(&home));
    home.kill9();
    a.wait_link("standby", Some(&standby));
    // Another certificate answers at home's address: only the agent's probes meet it.
    let other = client_identity(&site, "other");
    let _fake = FakeServer::start(&home.listen, other.clone(), |_, _| Vec::new());
    wait_until(WAIT, "home's new certificate listed as untrusted", || {
        let untrusted = a.link()?.untrusted;
        untrusted
            .iter()
            .any(|u| u.address.contains(&home.listen) && u.fingerprint == other.fingerprint())
            .then_some(())
    });
    assert_eq!(a.link_state().as_deref(), Some("standby"));
}
