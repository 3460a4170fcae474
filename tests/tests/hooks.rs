//! PR-7 hooks on real processes: `on_deactivate` runs on the member that goes idle (and only
//! there), `on_activate` on the one that takes the duty, each with the pair context in
//! environment variables (issue 12, "Also").

use std::path::Path;

use understudy_system_tests::*;

const TOKEN: &str = "hooks-token-0123456789abcdef-12c";

/// One line per hook run: what the hook saw in its environment.
const HOOK: &str = r#"#!/bin/sh
echo "$UNDERSTUDY_HOOK pair=$UNDERSTUDY_PAIR node=$UNDERSTUDY_NODE pair_epoch=$UNDERSTUDY_PAIR_EPOCH server_epoch=$UNDERSTUDY_SERVER_EPOCH" >> "$1"
"#;

fn runs(log: &Path, hook: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{hook} ")))
        .map(String::from)
        .collect()
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
        .to_string()
}

#[test]
fn pr7_on_deactivate_runs_on_the_member_that_goes_idle_with_the_pair_context() {
    let site = Site::new(128);
    let script = site.dir().join("hook.sh");
    std::fs::write(&script, HOOK).expect("hook script");
    let server_token = format!("server.enroll_token={TOKEN}");
    let mut server = site.server("srv", &[&server_token]);
    let member = |name: &str| {
        let log = site.dir().join(format!("{name}.hooks"));
        let argv = format!(
            "[\"/bin/sh\", \"{}\", \"{}\"]",
            script.display(),
            log.display()
        );
        let sets = [
            format!("agent.enroll_token={TOKEN}"),
            format!("agent.on_activate={argv}"),
            format!("agent.on_deactivate={argv}"),
        ];
        let mut all: Vec<&str> = sets.iter().map(String::as_str).collect();
        all.extend_from_slice(FAST_AGENT);
        (site.agent(name, &[&server], &all), log)
    };
    let (mut p, p_log) = member("p");
    let (mut q, q_log) = member("q");
    server.start();
    p.start();
    q.start();
    p.wait_link("home", Some(&server));
    q.wait_link("home", Some(&server));
    server.add_pair("web", "p", "q", &["--switchback", "manual"]);
    // PR-5's guard: a forced failover needs the secondary connected for the pair (its first
    // heartbeat since the pair was added), as status's actions say.
    server.wait_pair("web", "active primary, force failover allowed", |w| {
        w.active == "primary" && w.actions.force_failover.allowed
    });
    wait_until(WAIT, "p's on_activate", || {
        runs(&p_log, "on_activate").first().cloned()
    });
    assert!(
        runs(&q_log, "on_activate").is_empty(),
        "the idle member does not activate"
    );

    // Force failover: p goes idle and runs on_deactivate; q takes the duty.
    server.cli_ok(&["pair", "force-failover", "web"]);
    let pair = server.wait_pair("web", "active secondary", |w| w.active == "secondary");
    let deactivated = wait_until(WAIT, "p's on_deactivate", || {
        runs(&p_log, "on_deactivate").first().cloned()
    });
    let activated = wait_until(WAIT, "q's on_activate", || {
        runs(&q_log, "on_activate").first().cloned()
    });
    assert_eq!(field(&deactivated, "pair"), "web", "{deactivated}");
    assert_eq!(field(&deactivated, "node"), "p", "{deactivated}");
    assert_eq!(field(&activated, "node"), "q", "{activated}");
    let epoch_of = |line: &str| -> (u64, u64) {
        (
            field(line, "server_epoch").parse().unwrap_or(0),
            field(line, "pair_epoch").parse().unwrap_or(0),
        )
    };
    let (p_server, p_pair) = epoch_of(&deactivated);
    let (q_server, q_pair) = epoch_of(&activated);
    assert!(
        p_pair > 0 && q_pair > 0,
        "epochs in the env: {deactivated} / {activated}"
    );
    assert!(
        (q_server, q_pair) >= (p_server, p_pair),
        "the new active member's epoch is not older: {deactivated} / {activated}"
    );
    assert!(
        runs(&q_log, "on_deactivate").is_empty(),
        "the member taking the duty does not deactivate: {pair:?}"
    );

    // Revert: now q goes idle and runs on_deactivate, p activates again.
    server.cli_ok(&["pair", "revert", "web"]);
    server.wait_pair("web", "active primary", |w| w.active == "primary");
    let q_deactivated = wait_until(WAIT, "q's on_deactivate", || {
        runs(&q_log, "on_deactivate").first().cloned()
    });
    assert_eq!(field(&q_deactivated, "node"), "q", "{q_deactivated}");
    assert_eq!(field(&q_deactivated, "pair"), "web", "{q_deactivated}");
    wait_until(WAIT, "p's second on_activate", || {
        (runs(&p_log, "on_activate").len() == 2).then_some(())
    });
    assert_eq!(runs(&p_log, "on_deactivate").len(), 1, "p deactivated once");
    assert!(
        server.events("HOOK_FAILED").is_empty(),
        "every hook succeeded"
    );
}
