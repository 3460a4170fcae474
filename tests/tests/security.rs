//! SECURITY.md with real processes: who may send what. Command checks are off on an agent unless
//! its own configuration allows them; only the home server and its hot-standby peer direct an
//! agent; the peer is only the peer; an enrolled agent acts only for itself.

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
        .find(|r| r["agent"] == agent && r["name"] == name)?;
    Some(r["detail"].as_str()?.to_string())
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
    let event = s.wait_event("CHECK_REFUSED", |e| e["subject"] == "a");
    assert!(
        event.to_string().contains("evil"),
        "the event names the check: {event}"
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
                .filter(|r| r["agent"] == "a" && r["name"] == "home-port")
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
