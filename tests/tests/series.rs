//! MX-3 against a real site: the console's pictures (`GET /api/series/…`) answer what the server
//! stored — a check's runs per bucket and its down period (a TCP target that stops answering and
//! comes back), which member of a pair held the duty across a forced failover (PR-5) with the
//! handover's event, each hot-standby server's ACTIVE/STANDBY strip across a planned handover
//! (HS-8), records per second — downsampled to the points asked; bad parameters are 400 with
//! their reason, an unknown check 404, no token 401.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use understudy_api::{CheckSeries, PairSeries, RecordSeries, RoleSeries};
use understudy_node::http_client::AdminClient;
use understudy_node::tls::Pins;
use understudy_system_tests::*;

const FAST: &[&str] = &[
    "agent.heartbeat=200ms",
    "agent.switchover_after=600ms",
    "server.enroll_token=mx3-token-0123456789abcdef",
    "agent.enroll_token=mx3-token-0123456789abcdef",
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `GET path` on `node` with `token`: the status and the JSON answer.
fn get(node: &Node, token: &str, path: &str) -> (u16, Value) {
    let client = AdminClient::new(&node.url(), token, Pins::default()).expect("a client");
    rt().block_on(client.call("GET", path, None))
        .expect("an answer")
}

/// A 200 answer read as the admin API's type (`read` is `serde_json::from_value`).
fn typed<T>(node: &Node, token: &str, path: &str, read: fn(Value) -> serde_json::Result<T>) -> T {
    let (status, v) = get(node, token, path);
    assert_eq!(status, 200, "{path}: {v}");
    read(v.clone()).unwrap_or_else(|e| panic!("{path}: {e}: {v}"))
}

fn admin_token(node: &Node) -> String {
    std::fs::read_to_string(node.dir.join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_string()
}

#[test]
fn mx3_series_answer_what_was_stored_across_a_check_outage_a_pair_failover_and_a_handover() {
    let site = Site::new(251);
    let mut sets = FAST.to_vec();
    sets.extend_from_slice(FAST_SERVER);
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    let mut a1 = site.agent("a1", &[&s1, &s2], FAST);
    let mut a2 = site.agent("a2", &[&s1, &s2], FAST);
    a1.start();
    a2.start();
    a1.wait_link("home", Some(&s1));
    a2.wait_link("home", Some(&s1));
    let from = now_ms() - 60_000;
    s1.add_pair("web", "a1", "a2", &["--switchback", "manual"]);
    let target = CheckTarget::start(&site);
    s1.cli_ok(&[
        "check",
        "add",
        "ping",
        "--kind",
        "tcp",
        "--target",
        &target.addr,
        "--every",
        "200ms",
        "--pair",
        "web",
        "--fail-after",
        "2",
        "--ok-after",
        "1",
    ]);
    s1.wait_event("PAIR_ACTIVE", |e| e.subject == "web");
    // AL-2: the target stops answering, the check goes down, and comes back up.
    std::thread::sleep(Duration::from_secs(1));
    target.set_up(false);
    s1.wait_event("CHECK_DOWN", |e| e.subject == "ping");
    std::thread::sleep(Duration::from_millis(600));
    target.set_up(true);
    s1.wait_event("CHECK_UP", |e| e.subject == "ping");
    // PR-5: the duty moves to a2; its runs are stored.
    s1.cli_ok(&["pair", "force-failover", "web"]);
    wait_until(WAIT, "a2's runs of ping stored on s1", || {
        let records = s1.records()?;
        (records.iter().filter(|r| r.agent == "a2").count() >= 5).then_some(())
    });
    // HS-8: a planned handover: s2 ACTIVE, s1 STANDBY.
    s1.cli_ok(&["ha", "standby"]);
    s2.wait_failover_state("active");
    s1.wait_failover_state("standby");
    std::thread::sleep(Duration::from_secs(1));
    // Nothing more is stored from here on: what s2 holds is what the answers must say.
    a1.stop();
    a2.stop();
    std::thread::sleep(Duration::from_millis(500));
    let to = now_ms() + 1_000;
    let token = admin_token(&s2);
    let stored = s2.records().expect("records on s2");
    let window = |points: usize| format!("from={from}&to={to}&points={points}");

    // A check: every stored run in exactly one bucket, with its bucket's min/max and failures.
    let check: CheckSeries = typed(
        &s2,
        &token,
        &format!("/api/series/check/ping?{}", window(40)),
        serde_json::from_value,
    );
    assert_eq!((check.from_ms, check.to_ms), (from, to));
    assert!(
        check.points.len() <= 40 && !check.points.is_empty(),
        "{check:?}"
    );
    let step = check.step_ms;
    assert!(step * 40 >= to - from, "{step}");
    let mut want: BTreeMap<i64, (u32, u32, f64, f64)> = BTreeMap::new();
    for r in stored
        .iter()
        .filter(|r| r.kind == "check" && r.name == "ping")
    {
        let up = r
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|d| d["up"].as_bool())
            .expect("a check run says whether it was up");
        let bucket = from + (r.time_ms - from) / step * step;
        let e = want
            .entry(bucket)
            .or_insert((0, 0, f64::INFINITY, f64::NEG_INFINITY));
        e.0 += 1;
        e.1 += u32::from(!up);
        e.2 = e.2.min(r.value);
        e.3 = e.3.max(r.value);
    }
    let got: BTreeMap<i64, (u32, u32, f64, f64)> = check
        .points
        .iter()
        .map(|p| (p.time_ms, (p.runs, p.failed, p.min, p.max)))
        .collect();
    assert_eq!(got, want, "the check's points are the stored runs");
    assert!(
        check.points.iter().any(|p| p.failed > 0),
        "the outage's runs: {check:?}"
    );
    let down = s2.events("CHECK_DOWN");
    let up = s2.events("CHECK_UP");
    let down_at = down
        .iter()
        .find(|e| e.subject == "ping")
        .expect("CHECK_DOWN")
        .time_ms;
    let up_at = up
        .iter()
        .find(|e| e.subject == "ping")
        .expect("CHECK_UP")
        .time_ms;
    assert_eq!(check.down.len(), 1, "{:?}", check.down);
    assert_eq!(
        (check.down[0].from_ms, check.down[0].to_ms),
        (down_at, up_at)
    );

    // A pair: a1, then a2 from the forced failover on; the handover is listed with its event.
    let pair: PairSeries = typed(
        &s2,
        &token,
        &format!("/api/series/pair/web?{}", window(40)),
        serde_json::from_value,
    );
    assert_eq!(
        (pair.primary.as_str(), pair.secondary.as_str()),
        ("a1", "a2")
    );
    let members: Vec<&str> = pair.held.iter().map(|h| h.member.as_str()).collect();
    assert_eq!(members, vec!["a1", "a2"], "{:?}", pair.held);
    let forced = pair
        .handovers
        .iter()
        .find(|e| e.code == "FORCED_FAILOVER")
        .unwrap_or_else(|| panic!("the forced failover: {:?}", pair.handovers));
    assert!(pair.handovers.iter().any(|e| e.code == "PAIR_ACTIVE"));
    assert!(pair.held[0].to_ms <= pair.held[1].from_ms);
    assert!(
        pair.held[1].from_ms >= forced.time_ms,
        "a2 recorded from the failover on: {:?} {forced:?}",
        pair.held
    );
    let pair_records = stored.iter().filter(|r| r.pair.as_deref() == Some("web"));
    assert_eq!(
        pair.held.iter().map(|h| h.records).sum::<u64>(),
        pair_records.count() as u64
    );

    // Roles: s1 ACTIVE then STANDBY, s2 the other way round, with the PROMOTED events.
    let roles: RoleSeries = typed(
        &s2,
        &token,
        &format!("/api/series/roles?{}", window(40)),
        serde_json::from_value,
    );
    let strip = |server: &str| -> Vec<String> {
        roles
            .servers
            .iter()
            .find(|s| s.server == server)
            .map(|s| s.spans.iter().map(|r| r.role.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(strip("s1"), vec!["ACTIVE", "STANDBY"], "{roles:?}");
    assert_eq!(
        strip("s2").last().map(String::as_str),
        Some("ACTIVE"),
        "{roles:?}"
    );
    assert!(roles
        .events
        .iter()
        .any(|e| e.code == "PROMOTED" && e.subject == "s2"));

    // Records per second: every stored record in the window counted once.
    let rate: RecordSeries = typed(
        &s2,
        &token,
        &format!("/api/series/records?{}", window(30)),
        serde_json::from_value,
    );
    assert_eq!(rate.points.len(), 30);
    let in_window = stored
        .iter()
        .filter(|r| r.time_ms >= from && r.time_ms < to)
        .count() as u64;
    assert_eq!(
        rate.points.iter().map(|p| p.records).sum::<u64>(),
        in_window
    );

    // Bad parameters: 400 with the reason; an unknown check 404; no token 401.
    let (status, v) = get(&s2, &token, "/api/series/check/ping?from=9&to=3");
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"], "from (9) must be before to (3)");
    let (status, v) = get(&s2, &token, "/api/series/records?points=lots");
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"],
        format!(
            "points must be a number from 2 to {}, not lots",
            understudy_api::series::MAX_POINTS
        )
    );
    let (status, v) = get(&s2, &token, "/api/series/check/nope");
    assert_eq!(status, 404, "{v}");
    let (status, _) = get(&s2, "not-the-token", "/api/series/roles");
    assert_eq!(status, 401);
}
