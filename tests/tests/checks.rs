//! CK-1…CK-3 with real processes: a pair's check runs only on its active member, under the pair's
//! alias, through planned handovers (force failover, revert) and unplanned ones (SIGKILL, SIGSTOP).
//! The series must never interleave two members, and every gap at a handover must stay within
//! CK-3's bound (the benchmark `understudy-bench check-gap` measures their distribution).

use understudy_system_tests::*;

const FAST: &[&str] = &[
    "agent.heartbeat=200ms",
    "agent.switchover_after=600ms",
    "server.enroll_token=ck-token-0123456789abcdef",
    "agent.enroll_token=ck-token-0123456789abcdef",
];

/// The pair's check records in time order, as (agent, time_ms).
fn series(server: &Node, check: &str) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = server
        .records()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.name == check && r.pair.as_deref() == Some("web"))
        .map(|r| (r.agent.clone(), r.time_ms))
        .collect();
    out.sort_by_key(|r| r.1);
    out
}

/// The members in the order they held the duty: consecutive runs by one member collapse.
fn holders(series: &[(String, i64)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (agent, _) in series {
        if out.last() != Some(agent) {
            out.push(agent.clone());
        }
    }
    out
}

/// The pair check's interval and the pair's `failover_after` in the CK-3 test.
const EVERY_MS: i64 = 500;
const FAILOVER_AFTER_MS: i64 = 1000;
/// What a loaded 2-core machine may add to a bound: process wake-ups and a commit or two. A lost
/// bound shows up as a whole extra interval or `failover_after`, well beyond this.
const SLACK_MS: i64 = 300;

/// At each change of holder: (from, to, time between the old holder's last run and the new
/// holder's first run in ms).
fn handover_gaps(series: &[(String, i64)]) -> Vec<(String, String, i64)> {
    series
        .windows(2)
        .filter(|w| w[0].0 != w[1].0)
        .map(|w| (w[0].0.clone(), w[1].0.clone(), w[1].1 - w[0].1))
        .collect()
}

/// A running server `s` and agents `a1`, `a2` at home on it.
fn server_and_two_agents(site: &Site) -> (Node, Node, Node) {
    let mut s = site.server("s", FAST);
    s.start();
    let mut a1 = site.agent("a1", &[&s], FAST);
    let mut a2 = site.agent("a2", &[&s], FAST);
    a1.start();
    a2.start();
    a1.wait_link("home", Some(&s));
    a2.wait_link("home", Some(&s));
    (s, a1, a2)
}

fn wait_runs_by(server: &Node, agent: &str, after: usize) {
    wait_until(WAIT, &format!("check runs by {agent}"), || {
        let s = series(server, "ping");
        (s.len() > after && s.last().is_some_and(|r| r.0 == agent)).then_some(())
    });
}

#[test]
fn ck3_pair_checks_follow_the_active_member_and_never_interleave() {
    let site = Site::new(61);
    let (s, mut a1, a2) = server_and_two_agents(&site);
    s.add_pair(
        "web",
        "a1",
        "a2",
        &[
            "--failover-after",
            &format!("{FAILOVER_AFTER_MS}ms"),
            "--switchback",
            "manual",
        ],
    );
    let target = s.listen.clone();
    s.cli_ok(&[
        "check",
        "add",
        "ping",
        "--kind",
        "tcp",
        "--target",
        &target,
        "--every",
        &format!("{EVERY_MS}ms"),
        "--pair",
        "web",
    ]);
    // CK-2: checks are site configuration, listed by the server.
    let status = s.status_now();
    assert!(
        status
            .checks
            .iter()
            .any(|c| c.name == "ping" && c.pair.as_deref() == Some("web")),
        "{status:?}"
    );

    wait_runs_by(&s, "a1", 3);
    // Planned handovers.
    s.cli_ok(&["pair", "force-failover", "web"]);
    wait_runs_by(&s, "a2", series(&s, "ping").len());
    s.cli_ok(&["pair", "revert", "web"]);
    wait_runs_by(&s, "a1", series(&s, "ping").len());
    // Unplanned: the active primary is killed.
    a1.kill9();
    wait_runs_by(&s, "a2", series(&s, "ping").len());
    a1.start();
    a1.wait_link("home", Some(&s));
    // Unplanned: the active secondary freezes; the primary takes over; the secondary resumes idle.
    a2.sigstop();
    wait_runs_by(&s, "a1", series(&s, "ping").len());
    a2.sigcont();
    a2.wait_link("home", Some(&s));
    let n = series(&s, "ping").len();
    wait_until(WAIT, "more runs after the resume", || {
        (series(&s, "ping").len() > n + 5).then_some(())
    });

    let all = series(&s, "ping");
    let order = holders(&all);
    assert_eq!(
        order,
        vec!["a1", "a2", "a1", "a2", "a1"],
        "the duty moved exactly at each handover, never interleaved: {all:?}"
    );
    // CK-3's bounds: a planned handover misses at most one interval (the gap is at most two);
    // an unplanned one leaves a gap of at most failover_after plus one interval.
    let gaps = handover_gaps(&all);
    let bounds = [
        ("force failover", 2 * EVERY_MS),
        ("revert", 2 * EVERY_MS),
        ("SIGKILL of the active member", FAILOVER_AFTER_MS + EVERY_MS),
        ("SIGSTOP of the active member", FAILOVER_AFTER_MS + EVERY_MS),
    ];
    for ((what, bound), (from, to, gap)) in bounds.iter().zip(&gaps) {
        eprintln!("[ck3] {what}: {from} → {to}: gap {gap} ms (bound {bound} ms)");
        assert!(
            gap <= &(bound + SLACK_MS),
            "{what} ({from} → {to}) left a gap of {gap} ms; CK-3 allows {bound} ms: {all:?}"
        );
    }
    let pair = s.pair("web").expect("pair web");
    assert_eq!(pair.active, "primary");
    let records: Vec<RecordView> = s.records().unwrap_or_default();
    assert!(records
        .iter()
        .filter(|r| r.name == "ping")
        .all(|r| r.kind == "check" && r.pair.as_deref() == Some("web")));
}

#[test]
fn ck3_auto_switchback_misses_at_most_one_interval() {
    let site = Site::new(63);
    let (s, mut a1, _a2) = server_and_two_agents(&site);
    let after = format!("{FAILOVER_AFTER_MS}ms");
    s.add_pair(
        "web",
        "a1",
        "a2",
        &[
            "--failover-after",
            &after,
            "--switchback",
            "auto",
            "--hold-down",
            "1s",
        ],
    );
    let target = s.listen.clone();
    s.cli_ok(&[
        "check",
        "add",
        "ping",
        "--kind",
        "tcp",
        "--target",
        &target,
        "--every",
        &format!("{EVERY_MS}ms"),
        "--pair",
        "web",
    ]);
    wait_runs_by(&s, "a1", 3);
    a1.kill9();
    wait_runs_by(&s, "a2", series(&s, "ping").len());
    // The primary returns; after the hold-down the duty goes back to it (a planned handover).
    a1.start();
    wait_runs_by(&s, "a1", series(&s, "ping").len());
    let n = series(&s, "ping").len();
    wait_until(WAIT, "more runs after the switchback", || {
        (series(&s, "ping").len() > n + 3).then_some(())
    });

    let all = series(&s, "ping");
    assert_eq!(holders(&all), vec!["a1", "a2", "a1"], "{all:?}");
    let gaps = handover_gaps(&all);
    let (from, to, gap) = &gaps[1];
    eprintln!(
        "[ck3] switchback: {from} → {to}: gap {gap} ms (bound {} ms)",
        2 * EVERY_MS
    );
    assert!(
        *gap <= 2 * EVERY_MS + SLACK_MS,
        "the switchback left a gap of {gap} ms; CK-3 allows one missed interval: {all:?}"
    );
    assert!(
        s.events("PAIR_SWITCHBACK")
            .iter()
            .any(|e| e.subject == "web"),
        "a PAIR_SWITCHBACK event for web"
    );
}

/// The newest time_ms of a record named `name` from `agent` stored on `server`.
fn newest(server: &Node, agent: &str, name: &str) -> Option<i64> {
    server
        .records()?
        .iter()
        .filter(|r| r.agent == agent && r.name == name)
        .map(|r| r.time_ms)
        .max()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn ck2_an_agent_keeps_its_checks_on_a_standby_server_of_another_site() {
    let site = Site::new(64);
    let mut home = site.server("home", FAST);
    let mut standby = site.server("standby", FAST);
    home.start();
    standby.start();
    let mut a = site.agent("a", &[&home, &standby], FAST);
    a.start();
    a.wait_link("home", Some(&home));
    let target = home.listen.clone();
    home.cli_ok(&[
        "check", "add", "own", "--kind", "tcp", "--target", &target, "--every", "200ms", "--agent",
        "a",
    ]);
    wait_until(WAIT, "a run of the check on home", || {
        newest(&home, "a", "own")
    });
    // The standby server knows no checks at all; the agent switches over to it and keeps running
    // the one its home gave it.
    assert!(standby.status_now().checks.is_empty());
    home.kill9();
    a.wait_link("standby", Some(&standby));
    let since = now_ms();
    wait_until(
        WAIT,
        "runs of the check stored on the standby server",
        || newest(&standby, "a", "own").filter(|t| *t > since + 1000),
    );
    // Across a restart on the standby server too (the checks are kept in the agent's store).
    a.stop();
    a.start();
    a.wait_link("standby", Some(&standby));
    let since = now_ms();
    wait_until(WAIT, "runs after the agent's restart", || {
        newest(&standby, "a", "own").filter(|t| *t > since + 500)
    });
}

#[test]
fn ck2_checks_are_replicated_to_the_standby_server_and_run_on_after_its_promotion() {
    let site = Site::new(65);
    let mut sets = FAST.to_vec();
    sets.extend_from_slice(FAST_SERVER);
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    let mut a = site.agent("a", &[&s1, &s2], FAST);
    a.start();
    a.wait_link("home", Some(&s1));
    let target = s1.listen.clone();
    s1.cli_ok(&[
        "check", "add", "own", "--kind", "tcp", "--target", &target, "--every", "200ms", "--agent",
        "a",
    ]);
    wait_until(WAIT, "a run of the check on s1", || newest(&s1, "a", "own"));
    // HS-3: the STANDBY lists the check once it has replicated the site configuration.
    let listed = |n: &Node| {
        n.status()
            .is_some_and(|s| s.checks.iter().any(|c| c.name == "own"))
    };
    wait_until(WAIT, "the check replicated to s2", || {
        listed(&s2).then_some(())
    });
    s1.kill9();
    s2.wait_failover_state("active");
    let since = now_ms();
    wait_until(WAIT, "runs of the check stored on the promoted s2", || {
        newest(&s2, "a", "own").filter(|t| *t > since + 1000)
    });
    assert!(listed(&s2), "{:?}", s2.status_now());
}

#[test]
fn ck1_agent_check_results_including_bad_targets_never_stall_the_agent() {
    let site = Site::new(62);
    let mut s = site.server("s", FAST);
    s.start();
    let mut a = site.agent(
        "a",
        &[&s],
        &[
            FAST,
            &[r#"agent.allow_commands=["/bin/sleep *", "/bin/echo *"]"#],
        ]
        .concat(),
    );
    a.start();
    a.wait_link("home", Some(&s));
    s.cli_ok(&[
        "check",
        "add",
        "closed",
        "--kind",
        "tcp",
        "--target",
        "127.0.62.250:1",
        "--every",
        "200ms",
        "--timeout",
        "300ms",
        "--agent",
        "a",
    ]);
    s.cli_ok(&[
        "check",
        "add",
        "hang",
        "--kind",
        "command",
        "--target",
        "/bin/sleep 30",
        "--every",
        "200ms",
        "--timeout",
        "300ms",
        "--agent",
        "a",
    ]);
    s.cli_ok(&[
        "check",
        "add",
        "number",
        "--kind",
        "command",
        "--target",
        "/bin/echo 7",
        "--every",
        "200ms",
        "--agent",
        "a",
    ]);
    let out = s.cli(&[
        "check", "add", "bad", "--kind", "smtp", "--target", "x", "--agent", "a",
    ]);
    assert_eq!(out.status.code(), Some(2), "an unknown kind is bad usage");
    let detail = |name: &str| -> Option<(f64, String)> {
        let rs = s.records()?;
        let r = rs.iter().rev().find(|r| r.name == name)?;
        Some((r.value, r.detail.as_deref()?.to_string()))
    };
    let (_, closed) = wait_until(WAIT, "a result of the closed port", || detail("closed"));
    assert!(closed.contains("\"up\":false"), "{closed}");
    let (_, hang) = wait_until(WAIT, "a result of the hanging command", || detail("hang"));
    assert!(hang.contains("timeout after 300ms"), "{hang}");
    let (value, number) = wait_until(WAIT, "a result of the number command", || detail("number"));
    assert_eq!(value, 7.0, "{number}");
    // The agent keeps delivering other records while its checks fail.
    let (_, last) = a.send(3);
    wait_until(WAIT, "the sent records", || {
        s.records()?
            .iter()
            .any(|r| r.agent == "a" && r.seq == last)
            .then_some(())
    });
}

/// CK-4 with CK-3: a pair's `prometheus` check scrapes a real node_exporter every second on its
/// active member; every sample is a record under the pair's alias with its labels, at its
/// scrape's time, stored in the same commit as the scrape's check record. Across a SIGKILL of
/// the active member the other member takes the scrape: no scrape is recorded twice (one
/// member and one `node_time_seconds` per scrape time), every successful scrape's samples are
/// all there (as many as its check record says), and the gap stays within `failover_after`
/// plus one interval. A check whose exposition has more samples than its `--max-samples` is
/// down with the reason and records no sample.
#[test]
fn ck4_a_pairs_prometheus_check_records_each_node_exporter_scrape_once_across_a_sigkill() {
    let site = Site::new(66);
    let exporter = NodeExporter::start(&site);
    let (s, mut a1, _a2) = server_and_two_agents(&site);
    s.add_pair(
        "web",
        "a1",
        "a2",
        &[
            "--failover-after",
            &format!("{FAILOVER_AFTER_MS}ms"),
            "--switchback",
            "manual",
        ],
    );
    let url = exporter.url();
    let add = |name: &str, owner: &[&str], more: &[&str]| {
        let mut args = vec![
            "check",
            "add",
            name,
            "--kind",
            "prometheus",
            "--target",
            url.as_str(),
            "--every",
            "1s",
        ];
        args.extend_from_slice(owner);
        args.extend_from_slice(more);
        s.cli_ok(&args);
    };
    add("node", &["--pair", "web"], &[]);
    add("tiny", &["--agent", "a1"], &["--max-samples", "5"]);
    let runs = |s: &Node| series(s, "node");
    wait_until(WAIT, "scrapes by a1", || {
        (runs(&s).iter().filter(|r| r.0 == "a1").count() >= 3).then_some(())
    });
    a1.kill9();
    let n = runs(&s).len();
    wait_until(WAIT, "scrapes by a2", || {
        let all = runs(&s);
        (all.len() >= n + 3 && all.last().is_some_and(|r| r.0 == "a2")).then_some(())
    });
    // a1 may have cached a scrape it had not sent when it was killed: it sends it when back.
    a1.start();
    a1.wait_link("home", Some(&s));
    std::thread::sleep(std::time::Duration::from_secs(2));

    let records = s.records().expect("records --json");
    let scrapes: Vec<&RecordView> = records
        .iter()
        .filter(|r| r.name == "node" && r.pair.as_deref() == Some("web"))
        .collect();
    let all = runs(&s);
    assert_eq!(holders(&all), ["a1", "a2"], "{all:?}");
    let gaps = handover_gaps(&all);
    assert!(
        gaps[0].2 <= FAILOVER_AFTER_MS + 1000 + SLACK_MS,
        "the SIGKILL left a gap of {} ms: {all:?}",
        gaps[0].2
    );
    let audit = Scrapes::of(&records, "node", "web");
    assert_eq!(audit.runs.len(), scrapes.len());
    for run in &audit.runs {
        assert!(run.up, "node_exporter answers: {run:?}");
        assert!(
            run.samples
                .iter()
                .any(|r| r.name == "go_gc_duration_seconds"
                    && r.labels.get("quantile").map(String::as_str) == Some("0.5")),
            "a summary's quantile is a label"
        );
        assert!(run
            .samples
            .iter()
            .any(|r| r.name == "node_scrape_collector_success"
                && r.labels.get("collector").map(String::as_str) == Some("loadavg")));
    }
    // --max-samples: down with the reason, and no sample.
    let tiny: Vec<&RecordView> = records.iter().filter(|r| r.name == "tiny").collect();
    assert!(!tiny.is_empty());
    for r in &tiny {
        let detail = r.detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("\"up\":false") && detail.contains("more than the 5 a scrape may hold"),
            "{detail}"
        );
    }
    assert!(records
        .iter()
        .all(|r| r.kind != "metric" || r.pair.is_some()));
}

/// CK-4 (issue 18 item 2): Prometheus 2.42 in agent mode scrapes a real node_exporter every
/// second and remote-writes to an agent's `POST /api/v1/write` with the push token the agent
/// made in its data directory (0600). Every pushed sample reaches the server once: no series
/// has two samples at one time, and each scrape is whole (its `up` and its `node_load1`). The
/// receiver refuses a missing token (401) and a body that is not remote write (400) and caches
/// nothing for them.
#[test]
fn ck4_prometheus_agent_mode_pushes_node_exporter_samples_through_an_agent_once() {
    let site = Site::new(67);
    let exporter = NodeExporter::start(&site);
    let mut s = site.server("s", FAST);
    s.start();
    let mut a1 = site.agent("a1", &[&s], FAST);
    a1.start();
    a1.wait_link("home", Some(&s));
    let token_file = a1.dir.join("push.token");
    let token = std::fs::read_to_string(&token_file).expect("push.token");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "push.token is private");
    }
    assert_eq!(push_status(&a1, "wrong", b"x"), 401);
    assert_eq!(push_status(&a1, token.trim(), b"not snappy"), 400);

    let prom_dir = site.dir().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{}']\n\
             remote_write:\n  - url: https://{}/api/v1/write\n    authorization:\n      \
             credentials_file: {}\n    tls_config:\n      insecure_skip_verify: true\n    \
             queue_config:\n      batch_send_deadline: 1s\n",
            exporter.addr,
            a1.listen,
            token_file.display()
        ),
    )
    .expect("prometheus.yml");
    let log = std::fs::File::create(prom_dir.join("prometheus.log")).expect("log");
    let mut prometheus = std::process::Command::new("prometheus")
        .arg("--enable-feature=agent")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.agent.path={}",
            prom_dir.join("wal").display()
        ))
        .arg(format!("--web.listen-address={}", site.addr()))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting prometheus (apt-get install prometheus)");
    let pushed = |s: &Node, name: &str| -> usize {
        s.records()
            .unwrap_or_default()
            .iter()
            .filter(|r| r.agent == "a1" && r.name == name && r.kind == "metric")
            .count()
    };
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(WAIT, "5 scrapes pushed through a1", || {
            (pushed(&s, "node_load1") >= 5).then_some(())
        })
    }));
    // SAFETY: kill(2) on our own child's pid; SIGTERM lets it send what it holds.
    unsafe { libc::kill(prometheus.id() as i32, libc::SIGTERM) };
    let _ = prometheus.wait();
    if waited.is_err() {
        panic!(
            "no samples arrived; prometheus said: {}",
            std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default()
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let records = s.records().expect("records --json");
    let mut seen = std::collections::BTreeSet::new();
    for r in records
        .iter()
        .filter(|r| r.agent == "a1" && r.kind == "metric")
    {
        let labels: Vec<(String, String)> = r.labels.clone().into_iter().collect();
        assert!(
            seen.insert((r.name.clone(), labels, r.time_ms)),
            "a sample stored twice: {r:?}"
        );
    }
    let times = |name: &str| -> std::collections::BTreeSet<i64> {
        records
            .iter()
            .filter(|r| r.agent == "a1" && r.name == name)
            .map(|r| r.time_ms)
            .collect()
    };
    let up = times("up");
    assert!(up.len() >= 5, "{up:?}");
    assert_eq!(times("node_load1"), up, "every scrape whole");
    let sample = records
        .iter()
        .find(|r| r.name == "up")
        .expect("an up sample");
    assert_eq!(sample.labels.get("job").map(String::as_str), Some("node"));
    assert_eq!(
        sample.labels.get("instance").map(String::as_str),
        Some(exporter.addr.as_str())
    );
}

/// The bearer token a scrape sends, as an exporter on `listener` sees it: answers each scrape
/// with a one-sample exposition and sends the `Authorization` header's value on `tx`.
fn exporter(listener: std::net::TcpListener, tx: std::sync::mpsc::Sender<String>) {
    use std::io::{BufRead, BufReader, Write};
    for stream in listener.incoming().flatten() {
        let mut reader = BufReader::new(&stream);
        let mut auth = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("authorization:") {
                auth = v.trim().to_string();
            }
            line.clear();
        }
        let body = "up_metric 1\n";
        let _ = write!(
            &stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if tx.send(auth).is_err() {
            return;
        }
    }
}

/// A prometheus check's bearer token is a secret: `check list` and `status --json` show it as
/// "set"; a listed check given back with "set" keeps its token (the agent's scrapes still
/// send it), and "set" for a check that has none is refused.
#[test]
fn ck4_a_prometheus_checks_bearer_token_is_shown_as_set_and_kept() {
    let site = Site::new(68);
    let mut server = site.server("srv", FAST);
    server.start();
    let mut a = site.agent("a", &[&server], FAST);
    a.start();
    a.wait_link("home", Some(&server));
    let (listener, _) = site.listener();
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || exporter(listener, tx));
    let secret = "S3CRET-bearer-0123456789";
    let add = |token: &str| {
        server.cli(&[
            "check",
            "add",
            "scrape",
            "--kind",
            "prometheus",
            "--target",
            &url,
            "--every",
            "200ms",
            "--agent",
            "a",
            "--bearer-token",
            token,
        ])
    };
    assert!(add(secret).status.success());
    let seen = rx.recv_timeout(WAIT).expect("a scrape");
    assert_eq!(seen, format!("bearer {}", secret.to_ascii_lowercase()));
    let listed = server.cli_ok(&["check", "list"]);
    let status = server.cli_ok(&["status", "--json"]);
    for (what, text) in [("check list", &listed), ("status --json", &status)] {
        assert!(!text.contains(secret), "{what} shows the token: {text}");
    }
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    let scrape = status["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "scrape")
        .cloned();
    assert_eq!(scrape.map(|c| c["token"].clone()), Some("set".into()));
    // Given back as listed: the token stays.
    assert!(add("set").status.success());
    while rx.try_recv().is_ok() {}
    let seen = rx.recv_timeout(WAIT).expect("a scrape after the change");
    assert_eq!(seen, format!("bearer {}", secret.to_ascii_lowercase()));
    let refused = server.cli(&[
        "check",
        "add",
        "other",
        "--kind",
        "prometheus",
        "--target",
        &url,
        "--agent",
        "a",
        "--bearer-token",
        "set",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is what a listed check shows"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
