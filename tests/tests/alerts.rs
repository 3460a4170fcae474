//! AL-1…AL-6 with real processes: check states raised from the check records a server stores,
//! and what an operator sees of them.

use serde_json::Value;
use understudy_api::{AlertView, Alerts, Severity};
use understudy_system_tests::*;

/// The check's runs stored on `server`, oldest first, as (up, time_ms).
fn runs(server: &Node, check: &str) -> Vec<(bool, i64)> {
    let mut out: Vec<(bool, i64)> = server
        .records()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.name == check && r.kind == "check")
        .map(|r| {
            let detail: Value = r
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            (detail["up"].as_bool().unwrap_or(false), r.time_ms)
        })
        .collect();
    out.sort_by_key(|r| r.1);
    out
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// AL-2 (a): a tcp check on a closed port goes DOWN after exactly `fail_after` runs, and UP
/// again after `ok_after` good runs once the port opens; each told once.
#[test]
fn al2_a_tcp_check_on_a_closed_port_is_down_after_fail_after_runs_and_up_after_ok_after() {
    let site = Site::new(215);
    let (s, _a1) = server_with_agent(&site);
    // A port that was free a moment ago: closed until the test listens on it.
    let target = site.addr();
    s.cli_ok(&[
        "check",
        "add",
        "db-ping",
        "--kind",
        "tcp",
        "--target",
        &target,
        "--every",
        "200ms",
        "--timeout",
        "1s",
        "--agent",
        "a1",
        "--fail-after",
        "4",
        "--ok-after",
        "3",
    ]);
    let down = s.wait_event("CHECK_DOWN", |e| e.subject == "db-ping");
    let sentence = down.sentence.clone();
    assert!(
        sentence.starts_with("db-ping failed 4 times in a row: "),
        "{down:?}"
    );
    // The four failed runs were stored before the event was raised.
    let at = down.time_ms;
    let before: Vec<bool> = runs(&s, "db-ping")
        .into_iter()
        .filter(|r| r.1 <= at)
        .map(|r| r.0)
        .collect();
    assert!(
        before.len() >= 4 && before.iter().all(|up| !up),
        "{before:?}"
    );
    // The port opens: UP after three good runs.
    let listener = std::net::TcpListener::bind(&target).expect("the check's port");
    let up = s.wait_event("CHECK_UP", |e| e.subject == "db-ping");
    assert_eq!(up.sentence, "db-ping is up again: 3 good runs in a row");
    assert_eq!(s.events("CHECK_DOWN").len(), 1, "told once");
    assert_eq!(s.events("CHECK_UP").len(), 1, "told once");
    drop(listener);
    // AL-1: each is an alert of the acting server, with a stable id, written with its event.
    let listed: Alerts = s
        .typed(
            &["alert", "list", "--json"],
            std::time::Duration::from_secs(10),
            serde_json::from_value,
        )
        .expect("alert list");
    let alerts: Vec<&AlertView> = listed
        .alerts
        .iter()
        .filter(|a| a.subject == "db-ping")
        .collect();
    let codes: Vec<&str> = alerts.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(codes, ["CHECK_DOWN", "CHECK_UP"], "{listed:?}");
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].sentence, down.sentence);
    assert_eq!(alerts[0].event_id, down.id);
    let id = alerts[0].id.as_str();
    assert!(uuid_like(id), "{id}");
    assert_ne!(alerts[0].id, alerts[1].id);
}

/// AL-2 and PRODUCT.md §4: thresholds count runs; zero is refused and nothing is stored.
#[test]
fn al2_a_zero_threshold_is_refused_and_nothing_is_stored() {
    let site = Site::new(216);
    let mut s = site.server("s", &[]);
    s.start();
    for flag in ["--fail-after", "--ok-after"] {
        let out = s.cli(&[
            "check",
            "add",
            "c",
            "--kind",
            "tcp",
            "--target",
            "127.0.0.1:1",
            "--agent",
            "x",
            flag,
            "0",
        ]);
        // An invalid request is bad usage for the CLI (exit 2), 400 from the API.
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("counts runs in a row: at least 1"), "{err}");
    }
    let checks = s.cli_ok(&["check", "list"]);
    assert!(checks.contains("no checks"), "{checks}");
}
