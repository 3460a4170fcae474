//! MX-1 against real components: a real Prometheus 2.42 (Debian's `prometheus`, started here on a
//! loopback port with its own TSDB directory, stopped by pid) scrapes a running hot-standby site
//! with the scrape token, and its query API answers the pair's active member, the ACTIVE server
//! and a check's state, before and after a forced pair failover and a server failover;
//! `promtool check metrics` accepts the exposition; the scrape token is 0600, opens `/metrics`
//! and nothing else. Issue 16 item 4: `server.retention` deletes old records and keeps new ones.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use understudy_node::http_client::AdminClient;
use understudy_node::tls::Pins;
use understudy_system_tests::*;

const FAST: &[&str] = &[
    "agent.heartbeat=200ms",
    "agent.switchover_after=600ms",
    "server.enroll_token=mx-token-0123456789abcdef",
    "agent.enroll_token=mx-token-0123456789abcdef",
];

fn token_of(node: &Node, file: &str) -> String {
    std::fs::read_to_string(node.dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", node.dir.display()))
        .trim()
        .to_string()
}

/// `GET /metrics` on `node` with `Authorization: Bearer <token>`: the status and the text.
fn scrape(node: &Node, token: &str) -> (u16, String) {
    let client = AdminClient::new(&node.url(), token, Pins::default()).expect("a client");
    let (status, body) = rt()
        .block_on(client.call("GET", "/metrics", None))
        .expect("an answer");
    let text = match body {
        Value::String(s) => s,
        other => other.to_string(),
    };
    (status, text)
}

/// A real Prometheus scraping each node every second with that node's scrape token, verifying
/// its certificate (the node's own `cert.pem`, under one of its names), as README shows.
struct Prometheus {
    child: Child,
    listen: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(site: &Site, nodes: &[&Node]) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("understudy-prometheus-")
            .tempdir()
            .expect("a directory for Prometheus");
        let listen = site.addr();
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for n in nodes {
            let shown = n.cli_ok(&["cert", "show", "--json"]);
            let cert: Value = serde_json::from_str(&shown).expect("cert show --json");
            // The certificate names the host and its interfaces' addresses, not 127.0.N.x.
            let name = cert["sans"]
                .as_array()
                .and_then(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .find(|s| s.parse::<std::net::IpAddr>().is_err())
                })
                .unwrap_or("localhost")
                .to_string();
            config.push_str(&format!(
                "  - job_name: {job}\n    scheme: https\n    authorization:\n      type: Bearer\n      credentials_file: {token}\n    tls_config:\n      ca_file: {ca}\n      server_name: {name}\n    static_configs:\n      - targets: ['{target}']\n",
                job = n.name,
                token = n.dir.join("metrics.token").display(),
                ca = n.dir.join("cert.pem").display(),
                target = n.listen,
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting prometheus (Debian package `prometheus`, scripts/packages.txt)");
        let p = Prometheus {
            child,
            listen,
            _dir: dir,
        };
        wait_until(WAIT, "Prometheus to be ready", || {
            (http_get(&p.listen, "/-/ready").0 == 200).then_some(())
        });
        p
    }

    /// An instant query: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let path = format!("/api/v1/query?query={}", percent(promql));
        let (status, body) = http_get(&self.listen, &path);
        if status != 200 {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        let value = r["value"][1]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(f64::NAN);
                        (r["metric"].clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `promql` answers exactly one series whose `label` is `want`; the series.
    fn wait_one(&self, promql: &str, label: &str, want: &str) -> Value {
        wait_ok(
            WAIT,
            &format!("Prometheus: {promql} with {label}={want}"),
            || {
                let got = self.query(promql);
                match got.as_slice() {
                    [(m, _)] if m[label] == want => Ok(m.clone()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
    }

    fn targets_log(&self) -> String {
        http_get(&self.listen, "/api/v1/targets").1
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Only the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET to Prometheus on loopback: the status and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut conn) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    if conn
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return (0, String::new());
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// What the acting server says, as PromQL: `series` on the instance whose
/// `understudy_server_acting` is 1.
fn on_acting(series: &str) -> String {
    format!("({series}) and on(instance) (understudy_server_acting == 1)")
}

/// Pair `web` of `a1` and `a2` on `server` (with `pair_args`) and its tcp check `ping` every
/// 200 ms (with `check_args`) on a target the test controls.
fn pair_web_with_check(
    site: &Site,
    server: &Node,
    pair_args: &[&str],
    check_args: &[&str],
) -> CheckTarget {
    server.add_pair("web", "a1", "a2", pair_args);
    let target = CheckTarget::start(site);
    let mut args = vec![
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
    ];
    args.extend_from_slice(check_args);
    server.cli_ok(&args);
    target
}

#[test]
fn mx1_prometheus_scrapes_the_site_and_follows_a_pair_failover_and_a_server_failover() {
    let site = Site::new(171);
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
    let target = pair_web_with_check(
        &site,
        &s1,
        &["--switchback", "manual"],
        &["--fail-after", "2", "--ok-after", "1"],
    );
    let prometheus = Prometheus::start(&site, &[&s1, &s2]);
    wait_until(WAIT, "Prometheus to scrape both servers", || {
        let up = prometheus.query("up == 1");
        (up.len() == 2).then_some(())
    });

    // Before: s1 ACTIVE, the pair on a1, the check up.
    prometheus.wait_one(
        r#"understudy_server_state{state="active"} == 1"#,
        "job",
        "s1",
    );
    prometheus.wait_one(
        r#"understudy_server_state{state="standby"} == 1"#,
        "job",
        "s2",
    );
    let pair = on_acting(r#"understudy_pair_active{pair="web"} == 1"#);
    let m = prometheus.wait_one(&pair, "agent", "a1");
    assert_eq!(m["member"], "primary", "{m}");
    let up = on_acting(r#"understudy_check_up{check="ping"} == 1"#);
    prometheus.wait_one(&up, "job", "s1");

    // PR-5: a forced failover moves the duty to a2; Prometheus sees it.
    s1.cli_ok(&["pair", "force-failover", "web"]);
    let m = prometheus.wait_one(&pair, "agent", "a2");
    assert_eq!(m["member"], "secondary", "{m}");

    // HS-3: the STANDBY has replicated the pair's new state (a kill within one sync_interval of
    // the failover would leave it the state before).
    let forced = s1.pair("web").expect("the pair on s1").epoch;
    s2.wait_pair("web", "the forced failover replicated to s2", |p| {
        p.held && p.epoch >= forced
    });
    // HS-4: the ACTIVE server dies; s2 is promoted and is what Prometheus sees as ACTIVE, with
    // the pair and the check reported by it.
    s1.kill9();
    s2.wait_failover_state("active");
    prometheus.wait_one(
        r#"understudy_server_state{state="active"} == 1"#,
        "job",
        "s2",
    );
    prometheus.wait_one(r#"understudy_server_acting == 1"#, "job", "s2");
    // The promoted server keeps the pair where the operator put it (HS-4 with PR-5): even when
    // it replicated the pair mid-handover and the primary reaches it first, the duty stays on
    // a2 (engine rule hs4_a_promoted_standby_finishes_the_forced_failover_the_dead_active_had_begun).
    let m = prometheus.wait_one(&pair, "job", "s2");
    assert_eq!(
        m["agent"], "a2",
        "the held pair on the promoted server: {m}"
    );
    prometheus.wait_one(&up, "job", "s2");
    let epoch = prometheus.query(r#"understudy_server_epoch{job="s2"}"#);
    assert!(
        epoch.first().is_some_and(|(_, e)| *e >= 2.0),
        "the promoted server's epoch grew: {epoch:?}"
    );

    // AL-2: the target stops answering; the check goes down in Prometheus.
    target.stop();
    let down = on_acting(r#"understudy_check_up{check="ping"} == 0"#);
    prometheus.wait_one(&down, "job", "s2");
    // Counters: PROMOTED was stored on s2, and records are being stored.
    let promoted = prometheus.query(r#"understudy_events_total{job="s2",code="PROMOTED"}"#);
    assert!(
        promoted.first().is_some_and(|(_, n)| *n >= 1.0),
        "{promoted:?}\n{}",
        prometheus.targets_log()
    );
}

#[test]
fn mx1_promtool_accepts_the_exposition_with_every_kind_of_series() {
    let site = Site::new(172);
    let mut s = site.server("s", FAST);
    s.start();
    let mut a1 = site.agent("a1", &[&s], FAST);
    let mut a2 = site.agent("a2", &[&s], FAST);
    a1.start();
    a2.start();
    a1.wait_link("home", Some(&s));
    a2.wait_link("home", Some(&s));
    let _target = pair_web_with_check(&site, &s, &[], &[]);
    a1.send(5);
    let token = token_of(&s, "metrics.token");
    let text = wait_ok(
        WAIT,
        "an exposition with the check's run and a delivery",
        || {
            let (status, text) = scrape(&s, &token);
            (status == 200
                && text.contains("understudy_check_duration_seconds{check=\"ping\"}")
                && text.contains("understudy_check_up{check=\"ping\"} 1"))
            .then_some(text.clone())
            .ok_or(text)
        },
    );
    for name in [
        "understudy_node_info{",
        "understudy_node_role{role=\"server\"} 1",
        "understudy_server_state{state=\"active\"} 1",
        "understudy_server_acting 1",
        "understudy_server_epoch ",
        "understudy_pair_active{pair=\"web\",member=\"primary\",agent=\"a1\"} 1",
        "understudy_pair_epoch{pair=\"web\"} ",
        "understudy_agent_connected{agent=\"a1\"} 1",
        "understudy_records_stored_total ",
        "understudy_events_total{code=",
    ] {
        assert!(text.contains(name), "{name} missing in\n{text}");
    }
    // The agents' own ports: their link state and cache.
    let (status, agent_text) = scrape(&a1, &token_of(&a1, "metrics.token"));
    assert_eq!(status, 200, "{agent_text}");
    assert!(
        agent_text.contains("understudy_link_state{state=\"home\"} 1")
            && agent_text.contains("understudy_link_cached_records "),
        "{agent_text}"
    );
    for (who, exposition) in [("server", &text), ("agent", &agent_text)] {
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package `prometheus`)");
        promtool
            .stdin
            .take()
            .expect("stdin")
            .write_all(exposition.as_bytes())
            .expect("piping the scrape");
        let out = promtool.wait_with_output().expect("promtool ran");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on the {who}'s exposition: {}{}\n{exposition}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn mx1_the_scrape_token_is_private_opens_metrics_only_and_is_made_for_an_older_node() {
    let site = Site::new(173);
    let mut s = site.server("s", FAST);
    // A node initialised before the scrape token existed: it is made at the next start.
    let path: PathBuf = s.dir.join("metrics.token");
    std::fs::remove_file(&path).expect("init made metrics.token");
    s.start();
    let token = token_of(&s, "metrics.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "metrics.token must be readable by its owner only"
        );
    }
    let admin = token_of(&s, "admin.token");
    assert_ne!(token, admin);
    let pins = Pins::new([s.fingerprint.clone()]);
    let rt = rt();
    let get = |path: &str, auth: Option<&str>| {
        rt.block_on(raw_http(&s.listen, &pins, "GET", path, auth, None))
    };

    let (status, text) = get("/metrics", None);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.contains("metrics.token"),
        "the 401 says what is needed: {text}"
    );
    let wrong = format!("Bearer {}", "0".repeat(64));
    assert_eq!(get("/metrics", Some(&wrong)).0, 401);
    let (status, text) = get("/metrics", Some(&format!("Bearer {token}")));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("understudy_node_info{"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert_eq!(get("/metrics", Some(&format!("Bearer {admin}"))).0, 200);

    // The scrape token authorizes nothing else: not a read, not a change.
    let scrape_auth = format!("Bearer {token}");
    let (status, text) = get("/api/status", Some(&scrape_auth));
    assert_eq!(status, 401, "{text}");
    let (status, text) = rt.block_on(raw_http(
        &s.listen,
        &pins,
        "POST",
        "/api/pairs",
        Some(&scrape_auth),
        Some(&json!({"name": "web", "primary": "a1", "secondary": "a2"})),
    ));
    assert_eq!(status, 401, "{text}");
    assert!(s.status_now().pairs.is_empty(), "nothing changed");
    assert_eq!(get("/api/status", Some(&format!("Bearer {admin}"))).0, 200);
}

#[test]
fn retention_deletes_records_older_than_server_retention_and_keeps_new_ones() {
    let site = Site::new(174);
    let mut sets = FAST.to_vec();
    sets.push("server.retention=4s");
    let mut s = site.server("s", &sets);
    s.start();
    let mut a = site.agent("a", &[&s], FAST);
    a.start();
    a.wait_link("home", Some(&s));
    let (_, old_last) = a.send(20);
    wait_records(&[&s], &[("a", old_last)]);
    // The first records become older than the retention.
    std::thread::sleep(Duration::from_millis(4500));
    let (new_first, new_last) = a.send(20);
    let stored = wait_ok(WAIT, "the old records deleted", || {
        let records = s.records().ok_or_else(|| "no answer".to_string())?;
        let seqs: Vec<u64> = records
            .iter()
            .filter(|r| r.agent == "a")
            .map(|r| r.seq)
            .collect();
        if seqs.iter().any(|q| *q <= old_last) {
            return Err(format!("old records left: {seqs:?}"));
        }
        Ok(seqs)
    });
    assert_eq!(
        stored,
        (new_first..=new_last).collect::<Vec<_>>(),
        "every new record is kept while it is younger than the retention"
    );
    // Later the new ones go too, all but the newest (the replication cursor stays).
    wait_ok(WAIT, "the newer records deleted but the newest", || {
        let seqs: Vec<u64> = s
            .records()
            .ok_or_else(|| "no answer".to_string())?
            .iter()
            .map(|r| r.seq)
            .collect();
        (seqs == vec![new_last])
            .then_some(())
            .ok_or(format!("{seqs:?}"))
    });
    let (_, text) = scrape(&s, &token_of(&s, "metrics.token"));
    assert!(
        text.lines()
            .any(|l| l == "understudy_records_deleted_total 39"),
        "{text}"
    );
}
