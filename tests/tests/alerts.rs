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

// ---- AL-4…AL-6: channels and the sender, with real receivers ----

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_rustls::rustls;

/// One request a [`Receiver`] took: its headers (names lowercased), body, and what it answered.
#[derive(Clone, Debug)]
struct Got {
    answered: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn alert_ids(&self) -> Vec<String> {
        self.json()["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A webhook receiver on loopback (a real HTTP/1.1 server on its own thread): records every
/// request and answers with the status `answer` holds when the request arrives.
struct Receiver {
    addr: String,
    got: Arc<Mutex<Vec<Got>>>,
    answer: Arc<AtomicU16>,
}

impl Receiver {
    fn start(site: &Site, answer: u16) -> Receiver {
        let (listener, addr) = site.listener();
        Receiver::serve(listener, addr, answer, None)
    }

    /// The same receiver over HTTPS with `tls` (a certificate from a test CA).
    fn start_https(
        (listener, addr): (TcpListener, String),
        tls: Arc<rustls::ServerConfig>,
    ) -> Receiver {
        Receiver::serve(listener, addr, 200, Some(tls))
    }

    fn serve(
        listener: TcpListener,
        addr: String,
        answer: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(AtomicU16::new(answer));
        let (g, a) = (got.clone(), answer.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                match &tls {
                    None => take_one(stream, &g, &a),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                            continue;
                        };
                        take_one(rustls::StreamOwned::new(conn, stream), &g, &a);
                    }
                }
            }
        });
        Receiver { addr, got, answer }
    }

    fn url(&self) -> String {
        format!("http://{}/hook?from=understudy", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request from `stream`, records it, and answers with `answer`'s status.
fn take_one(mut stream: impl Read + Write, got: &Mutex<Vec<Got>>, answer: &AtomicU16) {
    let Some((headers, body)) = read_http_request(&mut stream) else {
        return;
    };
    let answered = answer.load(Ordering::SeqCst);
    got.lock().unwrap().push(Got {
        answered,
        headers,
        body,
    });
    let _ = stream.write_all(
        format!("HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let _ = stream.flush();
}

/// `alert channel add NAME --kind webhook --url <the receiver's> EXTRA…`.
fn add_webhook(server: &Node, name: &str, to: &Receiver, extra: &[&str]) {
    let url = to.url();
    let mut args = vec![
        "alert", "channel", "add", name, "--kind", "webhook", "--url", &url,
    ];
    args.extend_from_slice(extra);
    server.cli_ok(&args);
}

/// `hex HMAC-SHA256(key, body)` as `X-Understudy-Signature` carries it.
fn hmac_sha256(key: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// `alert channel add ARGS… --codes CHECK_DOWN` for each channel.
fn add_check_down_channels(server: &Node, channels: &[&[&str]]) {
    for args in channels {
        let mut all = vec!["alert", "channel", "add"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--codes", "CHECK_DOWN"]);
        server.cli_ok(&all);
    }
}

/// `check add NAME --kind tcp --target ADDR --every 200ms --agent a1 --fail-after N`.
fn closed_port_check(server: &Node, name: &str, target: &str, fail_after: &str) {
    server.cli_ok(&[
        "check",
        "add",
        name,
        "--kind",
        "tcp",
        "--target",
        target,
        "--every",
        "200ms",
        "--timeout",
        "1s",
        "--agent",
        "a1",
        "--fail-after",
        fail_after,
    ]);
}

/// The alert of `code` about `subject` in `alert list --json`.
fn alert_of(server: &Node, code: &str, subject: &str) -> Option<Value> {
    server.try_json(&["alert", "list", "--json"])?["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["code"] == code && a["subject"] == subject)
        .cloned()
}

/// AL-4 and PRODUCT.md §4 "bad channel settings": refused with the reason (exit 1), nothing
/// stored; a stored secret is shown as "set" and nowhere else (status, events, the log).
#[test]
fn al4_bad_channel_settings_are_refused_and_nothing_is_stored_and_secrets_are_shown_as_set() {
    let site = Site::new(217);
    let mut s = site.server("s", &[]);
    s.start();
    let refused = |args: &[&str], reason: &str| {
        let mut all = vec!["alert", "channel", "add"];
        all.extend_from_slice(args);
        let out = s.cli(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    };
    refused(
        &["h", "--kind", "webhook", "--url", "ftp://x/"],
        "expected http:// or https://",
    );
    refused(&["h", "--kind", "webhook"], "needs --url");
    refused(
        &["h", "--kind", "pager", "--url", "http://127.0.0.1:1/"],
        "unknown kind pager",
    );
    refused(
        &[
            "h",
            "--kind",
            "webhook",
            "--url",
            "http://127.0.0.1:1/",
            "--codes",
            "CHECK_DOWN,NOPE",
        ],
        "unknown code NOPE",
    );
    refused(
        &[
            "m",
            "--kind",
            "email",
            "--to",
            "ops",
            "--smtp",
            "smtp://127.0.0.1:1?tls=none",
        ],
        "is not an email address",
    );
    let listed = s.cli_ok(&["alert", "channel", "list"]);
    assert!(listed.contains("no alert channels"), "{listed}");

    let secret = "s3cret-hook-key-417";
    s.cli_ok(&[
        "alert",
        "channel",
        "add",
        "hook",
        "--kind",
        "webhook",
        "--url",
        "http://127.0.0.1:1/h",
        "--secret",
        secret,
        "--min-severity",
        "warning",
    ]);
    refused(
        &["hook", "--kind", "ntfy", "--url", "http://127.0.0.1:1/t"],
        "an alert channel named hook exists",
    );
    let list = s
        .try_json(&["alert", "channel", "list", "--json"])
        .expect("list");
    let channels = list["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 1, "{list}");
    assert_eq!(
        channels[0]["kind"], "webhook",
        "the first one stays: {list}"
    );
    assert_eq!(channels[0]["secret"], "set");
    assert_eq!(channels[0]["min_severity"], "warning");
    let shown = [
        list.to_string(),
        s.cli_ok(&["alert", "channel", "list"]),
        s.cli_ok(&["status", "--json"]),
        s.cli_ok(&["events", "--json"]),
        s.log_text(),
    ];
    for text in shown {
        assert!(!text.contains(secret), "the secret is shown: {text}");
    }
    // The store that holds it is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.join("store.db"))
        .expect("store")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "store.db mode {mode:o}");
    s.cli_ok(&["alert", "channel", "remove", "hook"]);
    let out = s.cli(&["alert", "channel", "remove", "hook"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// AL-5 (issue 15 test c): CHECK_DOWN reaches a webhook signed with its secret; while the
/// receiver answers 503 it is retried with backoff, and once it answers 200 the alert arrives
/// and is never sent again.
#[test]
fn al5_a_webhook_gets_check_down_signed_retried_while_it_answers_503_and_accepted_once() {
    let site = Site::new(218);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=0s"]);
    let hook = Receiver::start(&site, 503);
    let secret = "hook-key-218";
    add_webhook(
        &s,
        "hook",
        &hook,
        &["--secret", secret, "--codes", "CHECK_DOWN"],
    );
    closed_port_check(&s, "db-ping", &site.addr(), "2");
    wait_ok(WAIT, "three refused deliveries", || {
        let got = hook.got();
        (got.len() >= 3)
            .then_some(())
            .ok_or(format!("{} deliveries", got.len()))
    });
    hook.answer.store(200, Ordering::SeqCst);
    let down = wait_ok(WAIT, "the alert accepted", || {
        alert_of(&s, "CHECK_DOWN", "db-ping")
            .filter(|a| a["deliveries"][0]["state"] == "sent")
            .ok_or("not yet sent".to_string())
    });
    let id = down["id"].as_str().expect("id").to_string();
    assert!(uuid_like(&id), "{down}");
    assert!(
        down["deliveries"][0]["attempts"].as_u64() >= Some(4),
        "{down}"
    );
    // Nothing more comes: a sent delivery is never sent again.
    std::thread::sleep(Duration::from_secs(3));
    let got = hook.got();
    assert_eq!(
        got.iter().filter(|g| g.answered == 200).count(),
        1,
        "{got:?}"
    );
    for g in &got {
        assert_eq!(
            g.alert_ids(),
            std::slice::from_ref(&id),
            "one alert, the same id every time"
        );
        assert_eq!(
            g.header("x-understudy-signature"),
            Some(hmac_sha256(secret, &g.body).as_str()),
            "signed with the channel's secret"
        );
        let body = g.json();
        assert_eq!(body["site"], "srv");
        assert!(uuid_like(body["id"].as_str().unwrap_or_default()), "{body}");
        let alert = &body["alerts"][0];
        assert_eq!(alert["code"], "CHECK_DOWN");
        assert_eq!(alert["severity"], "critical");
        assert_eq!(alert["subject"], "db-ping");
        assert_eq!(alert["sentence"], down["sentence"]);
        assert!(
            alert["at"].as_str().is_some_and(|t| t.contains('T')),
            "{body}"
        );
    }
    // Only CHECK_DOWN goes to this channel (its filter): CHECK_UP would not.
    assert!(!s.log_text().contains(secret));
}

/// AL-6 (issue 15 test b): ten checks going down together reach each channel as one message
/// that says how many: a webhook, and an ntfy topic with its headers (Title, Priority, Tags,
/// X-Understudy-Alert with every alert id, the access token).
#[test]
fn al6_ten_checks_down_within_group_wait_are_one_message_per_channel() {
    let site = Site::new(219);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=5s"]);
    let hook = Receiver::start(&site, 200);
    let topic = Receiver::start(&site, 200);
    add_webhook(&s, "hook", &hook, &["--codes", "CHECK_DOWN"]);
    let topic_url = format!("http://{}/understudy-alerts", topic.addr);
    s.cli_ok(&[
        "alert",
        "channel",
        "add",
        "phone",
        "--kind",
        "ntfy",
        "--url",
        &topic_url,
        "--access-token",
        "tk_ntfy219",
        "--min-severity",
        "critical",
    ]);
    for i in 0..10 {
        closed_port_check(&s, &format!("c{i}"), &site.addr(), "1");
    }
    let got = wait_ok(WAIT, "ten CHECK_DOWN delivered", || {
        let got = hook.got();
        let n: usize = got.iter().map(|g| g.alert_ids().len()).sum();
        (n >= 10)
            .then(|| got.clone())
            .ok_or(format!("{n} alerts so far"))
    });
    assert_eq!(got.len(), 1, "one message: {got:?}");
    let body = got[0].json();
    assert_eq!(body["title"], "10 alerts: 10 CHECK_DOWN", "{body}");
    assert_eq!(body["text"].as_str().map(|t| t.lines().count()), Some(10));
    let mut ids = got[0].alert_ids();
    ids.sort();
    let pushed = wait_ok(WAIT, "the ntfy message", || {
        topic
            .got()
            .first()
            .cloned()
            .ok_or("nothing yet".to_string())
    });
    assert_eq!(topic.got().len(), 1, "one message: {:?}", topic.got());
    assert_eq!(pushed.header("title"), Some("10 alerts: 10 CHECK_DOWN"));
    assert_eq!(pushed.header("priority"), Some("5"));
    assert_eq!(pushed.header("tags"), Some("rotating_light,check_down"));
    assert_eq!(pushed.header("authorization"), Some("Bearer tk_ntfy219"));
    let mut pushed_ids: Vec<String> = pushed
        .header("x-understudy-alert")
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    pushed_ids.sort();
    assert_eq!(pushed_ids, ids, "the same alerts, by id");
    let text = String::from_utf8_lossy(&pushed.body);
    assert_eq!(text.lines().count(), 10, "{text}");
}

/// A child process killed when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// AL-4 (issue 15 tests a, f): one CHECK_DOWN through a real SMTP server (aiosmtpd, Debian's
/// python3-aiosmtpd) with its alert id as Message-ID, and through a command that gets the message
/// JSON on stdin; a command that hangs is killed after its timeout and retried, and the other
/// channels are not held up by it.
#[test]
fn al4_email_through_a_real_smtp_server_and_a_command_with_json_on_stdin_and_a_hanging_command_times_out(
) {
    let site = Site::new(220);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=0s"]);
    let smtp = site.addr();
    let (_aiosmtpd, mail_log) = aiosmtpd(&site, "smtp", &smtp, &[]);
    let out = site.dir().join("command.json");
    let script = format!("cat > {0}.tmp && mv {0}.tmp {0}", out.display());
    let smtp_url = format!("smtp://{smtp}?tls=none");
    // STARTTLS is the default and required: this server offers none.
    let starttls = format!("smtp://ops:pw-220@{smtp}");
    add_check_down_channels(
        &s,
        &[
            &[
                "mail",
                "--kind",
                "email",
                "--to",
                "ops@example.org",
                "--from",
                "understudy@example.org",
                "--smtp",
                &smtp_url,
            ][..],
            &[
                "cmd", "--kind", "command", "--argv", "sh", "--argv", "-c", "--argv", &script,
            ][..],
            &[
                "plain",
                "--kind",
                "email",
                "--to",
                "ops@example.org",
                "--smtp",
                &starttls,
            ][..],
            &[
                "hang",
                "--kind",
                "command",
                "--argv",
                "sleep",
                "--argv",
                "60",
                "--timeout",
                "1s",
            ][..],
        ],
    );
    closed_port_check(&s, "db-ping", &site.addr(), "2");
    let down = wait_ok(WAIT, "sent by email and command", || {
        let a = alert_of(&s, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        let state = |ch: &str| {
            a["deliveries"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["channel"] == ch))
                .map(|d| d["state"].as_str().unwrap_or("").to_string())
        };
        match (state("mail").as_deref(), state("cmd").as_deref()) {
            (Some("sent"), Some("sent")) => Ok(a),
            other => Err(format!("{other:?}: {a}")),
        }
    });
    let id = down["id"].as_str().expect("id");
    let mail = std::fs::read_to_string(&mail_log).expect("smtp.out");
    assert!(
        mail.contains(&format!("Message-ID: <{id}@understudy>")),
        "{mail}"
    );
    assert!(mail.contains("To: ops@example.org"), "{mail}");
    assert!(mail.contains("CHECK_DOWN db-ping"), "{mail}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("command.json")).expect("json");
    assert_eq!(json["alerts"][0]["id"], id, "{json}");
    assert_eq!(json["site"], "srv");
    // The hanging command: killed after 1s, retried, still pending, with why.
    let hang = wait_ok(WAIT, "the hanging command timed out twice", || {
        let a = alert_of(&s, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        let d = a["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["channel"] == "hang").cloned())
            .ok_or("no delivery")?;
        (d["attempts"].as_u64() >= Some(2))
            .then_some(d.clone())
            .ok_or(format!("{d}"))
    });
    assert_eq!(hang["state"], "pending", "{hang}");
    let a = alert_of(&s, "CHECK_DOWN", "db-ping").expect("alert");
    let plain = a["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["channel"] == "plain").cloned())
        .expect("the delivery to plain");
    assert_eq!(plain["state"], "pending", "{plain}");
    assert!(
        plain["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("STARTTLS refused")),
        "{plain}"
    );
    let mail = std::fs::read_to_string(&mail_log).expect("smtp.out");
    assert!(!mail.contains("pw-220"), "no password in the clear");
    assert!(
        hang["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer within 1s")),
        "{hang}"
    );
}

/// A hot-standby pair at fast timings with `group_wait = 0` (s1 ACTIVE, s2 STANDBY), an agent at
/// home on s1, and a webhook channel "hook" for CHECK_DOWN to a receiver answering 503, with
/// `hook_args` (more `alert channel add` flags).
fn active_standby_agent_and_failing_hook(
    site: &Site,
    hook_args: &[&str],
) -> (Node, Node, Node, Receiver) {
    let token = format!("server.enroll_token={ENROLL_TOKEN}");
    let agent_token = format!("agent.enroll_token={ENROLL_TOKEN}");
    let sets = [&[&token[..], "alert.group_wait=0s"][..], FAST_SERVER].concat();
    let (mut s1, mut s2) = site.hot_standby(&sets, None);
    let mut a1 = site.agent(
        "a1",
        &[&s1, &s2],
        &[&[&agent_token[..]][..], FAST_AGENT].concat(),
    );
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    a1.start();
    a1.wait_link("home", Some(&s1));
    let hook = Receiver::start(site, 503);
    add_webhook(
        &s1,
        "hook",
        &hook,
        &[&["--codes", "CHECK_DOWN"][..], hook_args].concat(),
    );
    (s1, s2, a1, hook)
}

/// AL-5 (issue 15 test d): the ACTIVE is SIGKILLed while an alert waits behind a failing
/// receiver. The STANDBY replicated the outbox and its marks; promoted, it delivers the alert
/// under the same id. Copies the receiver accepted are counted: only one may arrive, since every
/// copy before the kill was refused.
#[test]
fn al5_a_promoted_standby_delivers_the_alert_the_killed_active_had_not_delivered() {
    let site = Site::new(221);
    let (mut s1, s2, _a1, hook) = active_standby_agent_and_failing_hook(&site, &[]);
    closed_port_check(&s1, "db-ping", &site.addr(), "2");
    let id = wait_ok(WAIT, "the alert refused twice on s1", || {
        let a = alert_of(&s1, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        match a["deliveries"][0]["attempts"].as_u64() {
            Some(n) if n >= 2 => Ok(a["id"].as_str().unwrap_or_default().to_string()),
            _ => Err(format!("{a}")),
        }
    });
    wait_ok(WAIT, "the alert and its marks replicated to s2", || {
        let a = alert_of(&s2, "CHECK_DOWN", "db-ping").ok_or("not replicated".to_string())?;
        let d = &a["deliveries"][0];
        (a["id"] == id.as_str() && d["state"] == "pending" && d["attempts"].as_u64() >= Some(1))
            .then_some(())
            .ok_or(format!("{a}"))
    });
    s1.kill9();
    hook.answer.store(200, Ordering::SeqCst);
    s2.wait_failover_state("active");
    wait_ok(WAIT, "the alert delivered by s2", || {
        alert_of(&s2, "CHECK_DOWN", "db-ping")
            .filter(|a| a["id"] == id.as_str() && a["deliveries"][0]["state"] == "sent")
            .map(|_| ())
            .ok_or("not yet".to_string())
    });
    std::thread::sleep(Duration::from_secs(2));
    let got = hook.got();
    let accepted = got
        .iter()
        .filter(|g| g.answered == 200 && g.alert_ids().contains(&id))
        .count();
    let refused = got.iter().filter(|g| g.answered != 200).count();
    eprintln!(
        "alert {id}: {refused} refused deliveries before the kill, {accepted} accepted after"
    );
    assert_eq!(accepted, 1, "delivered once by its id: {got:?}");
    // Only the acting server sends: s1 before the kill (the STANDBY held the same pending
    // delivery and sent nothing), s2 after its promotion.
    for g in &got {
        let from = if g.answered == 200 { "s2" } else { "s1" };
        assert_eq!(g.json()["site"], from, "{got:?}");
    }
}

/// AL-5 with AL-2 (issue 15 test d, many alerts): ten checks go DOWN on the ACTIVE while the
/// receiver answers 503, so their alerts queue; the receiver comes back and the ACTIVE is
/// SIGKILLed at once, in the middle of delivering. After the STANDBY's promotion (and the killed
/// server's return as STANDBY) every alert id either server lists reaches the receiver, each
/// check's CHECK_DOWN under one id only (the promoted server does not raise again a check the
/// operator was told is DOWN: before issue 15's AL-2-across-a-crash rule it raised all ten
/// again), and the ids delivered twice are counted and printed: only what was in flight at the
/// kill (sent by the killed server, its mark not yet replicated) may repeat.
#[test]
fn al5_al2_every_queued_alert_is_delivered_across_a_sigkill_of_the_active_and_none_raised_twice() {
    let site = Site::new(226);
    let (mut s1, s2, _a1, hook) = active_standby_agent_and_failing_hook(&site, &[]);
    let checks: Vec<String> = (0..10).map(|i| format!("q{i}")).collect();
    for name in &checks {
        closed_port_check(&s1, name, &site.addr(), "1");
    }
    wait_ok(WAIT, "ten CHECK_DOWN queued on s1, refused", || {
        let n = checks
            .iter()
            .filter(|c| {
                alert_of(&s1, "CHECK_DOWN", c)
                    .is_some_and(|a| a["deliveries"][0]["attempts"].as_u64() >= Some(1))
            })
            .count();
        (n == checks.len())
            .then_some(())
            .ok_or(format!("{n} of 10"))
    });
    wait_ok(WAIT, "the ten replicated to s2", || {
        let n = checks
            .iter()
            .filter(|c| alert_of(&s2, "CHECK_DOWN", c).is_some())
            .count();
        (n == checks.len())
            .then_some(())
            .ok_or(format!("{n} of 10"))
    });
    // The receiver comes back; s1 is killed while its retries go out.
    hook.answer.store(200, Ordering::SeqCst);
    wait_ok(WAIT, "s1 delivering", || {
        hook.got()
            .iter()
            .any(|g| g.answered == 200)
            .then_some(())
            .ok_or("nothing accepted yet".to_string())
    });
    s1.kill9();
    s2.wait_failover_state("active");
    s1.start();
    s1.wait_failover_state("standby");
    let listed = |n: &Node| -> Vec<(String, String)> {
        n.try_json(&["alert", "list", "--json"])
            .and_then(|v| v["alerts"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|a| a["deliveries"].as_array().is_some_and(|d| !d.is_empty()))
            .filter_map(|a| Some((a["id"].as_str()?.into(), a["subject"].as_str()?.into())))
            .collect()
    };
    let accepted = |hook: &Receiver| -> Vec<(String, String)> {
        hook.got()
            .iter()
            .filter(|g| g.answered == 200)
            .flat_map(|g| {
                let site = g.json()["site"].as_str().unwrap_or_default().to_string();
                g.alert_ids().into_iter().map(move |id| (id, site.clone()))
            })
            .collect()
    };
    wait_ok(WAIT, "every alert either server lists delivered", || {
        let got: HashSet<String> = accepted(&hook).into_iter().map(|(id, _)| id).collect();
        let missing: Vec<(String, String)> = listed(&s1)
            .into_iter()
            .chain(listed(&s2))
            .filter(|(id, _)| !got.contains(id))
            .collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or(format!("{missing:?}"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let all: BTreeMap<String, String> = listed(&s1).into_iter().chain(listed(&s2)).collect();
    let delivered = accepted(&hook);
    let mut copies: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, from) in &delivered {
        copies.entry(id).or_default().push(from);
    }
    let twice: Vec<(&&str, &Vec<&str>)> = copies.iter().filter(|(_, f)| f.len() > 1).collect();
    eprintln!(
        "al5 across a SIGKILL: {} alerts, {} copies accepted, {} delivered more than once: {twice:?}",
        all.len(),
        delivered.len(),
        twice.len()
    );
    for name in &checks {
        let ids: Vec<&String> = all
            .iter()
            .filter(|(_, s)| *s == name)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{name}: one CHECK_DOWN, not raised again: {all:?}"
        );
    }
    // A repeat is a delivery the killed s1 made whose mark s2 had not yet replicated.
    for (id, from) in &twice {
        assert!(
            from.contains(&"s1") && from.contains(&"s2"),
            "{id}: {from:?}"
        );
    }
}

/// AL-5: a channel whose receiver keeps refusing is given up after `alert.give_up_after`; then
/// DELIVERY_FAILED goes to the other channels (not to the failing one). `channel test` sends a
/// test message now, and says why when the receiver refuses it.
#[test]
fn al5_a_delivery_given_up_raises_delivery_failed_on_the_other_channels_and_channel_test_says_why()
{
    let site = Site::new(222);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=0s", "alert.give_up_after=3s"]);
    let dead = Receiver::start(&site, 503);
    let ok = Receiver::start(&site, 200);
    for (name, r) in [("dead", &dead), ("ok", &ok)] {
        add_webhook(&s, name, r, &[]);
    }
    let out = s.cli(&["alert", "channel", "test", "dead"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alert channel dead: HTTP 503"), "{err}");
    s.cli_ok(&["alert", "channel", "test", "ok"]);
    let test = ok.got();
    assert_eq!(test.len(), 1, "{test:?}");
    assert_eq!(test[0].json()["alerts"][0]["code"], "TEST");

    closed_port_check(&s, "db-ping", &site.addr(), "1");
    let failed = s.wait_event("DELIVERY_FAILED", |e| e.subject == "dead");
    let down = alert_of(&s, "CHECK_DOWN", "db-ping").expect("the CHECK_DOWN alert");
    let dead_delivery = down["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["channel"] == "dead").cloned())
        .expect("the delivery to dead");
    assert_eq!(dead_delivery["state"], "failed", "{down}");
    assert!(failed.sentence.contains("HTTP 503"), "{failed:?}");
    let told = alert_of(&s, "DELIVERY_FAILED", "dead").expect("DELIVERY_FAILED alerts");
    let channels: Vec<&str> = told["deliveries"]
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["channel"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(channels, ["ok"], "only the other channels: {told}");
    wait_ok(WAIT, "DELIVERY_FAILED delivered to ok", || {
        ok.got()
            .iter()
            .any(|g| g.json()["alerts"][0]["code"] == "DELIVERY_FAILED")
            .then_some(())
            .ok_or(format!("{:?}", ok.got()))
    });
}

/// AL-6 (issue 15 test e): two of three agents fall silent together (their processes stopped):
/// the webhook gets one SITE_OUTAGE instead of their AGENT_SILENTs.
#[test]
fn al6_most_agents_silent_together_reach_the_webhook_as_one_site_outage() {
    let site = Site::new(223);
    let token = format!("server.enroll_token={ENROLL_TOKEN}");
    let agent_token = format!("agent.enroll_token={ENROLL_TOKEN}");
    let mut s = site.server(
        "srv",
        &[&token, "server.silent_after=2s", "alert.group_wait=3s"],
    );
    s.start();
    let mut agents: Vec<Node> = ["a1", "a2", "a3"]
        .iter()
        .map(|name| site.agent(name, &[&s], &[&[&agent_token[..]][..], FAST_AGENT].concat()))
        .collect();
    for a in &mut agents {
        a.start();
    }
    for a in &agents {
        a.wait_link("home", Some(&s));
    }
    let hook = Receiver::start(&site, 200);
    add_webhook(&s, "hook", &hook, &[]);
    agents[0].sigstop();
    agents[1].sigstop();
    let outage = wait_ok(WAIT, "SITE_OUTAGE at the webhook", || {
        hook.got()
            .iter()
            .flat_map(|g| g.json()["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| a["code"] == "SITE_OUTAGE")
            .ok_or(format!("{:?}", hook.got()))
    });
    std::thread::sleep(Duration::from_secs(4));
    agents[0].sigcont();
    agents[1].sigcont();
    let codes: Vec<String> = hook
        .got()
        .iter()
        .flat_map(|g| g.json()["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["code"].as_str().map(String::from))
        .collect();
    assert_eq!(
        codes.iter().filter(|c| *c == "SITE_OUTAGE").count(),
        1,
        "{codes:?}"
    );
    assert!(!codes.iter().any(|c| c == "AGENT_SILENT"), "{codes:?}");
    assert_eq!(outage["severity"], "critical", "{outage}");
}

/// A test certificate authority and a server certificate it signed for `ips`, as PEM files in
/// `dir`: (`ca.pem`, `cert.pem`, `key.pem`).
fn test_ca(dir: &std::path::Path, ips: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Understudy test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("a server key");
    let sans: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(sans)
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("the server certificate");
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("a PEM file");
        path.display().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

/// `python3 -m aiosmtpd` (Debian's python3-aiosmtpd) on `addr` with `tls` options, printing
/// each message it takes to `<name>.out`.
fn aiosmtpd(site: &Site, name: &str, addr: &str, tls: &[&str]) -> (Child, std::path::PathBuf) {
    let args = [&["-m", "aiosmtpd", "-n", "-l", addr][..], tls].concat();
    python_smtp(site, name, addr, &args)
}

/// An SMTP server of aiosmtpd's run by `/usr/bin/python3 -u ARGS…` on `addr`, its standard
/// output (each message it takes) in `<name>.out`; the test waits until it listens.
fn python_smtp(site: &Site, name: &str, addr: &str, args: &[&str]) -> (Child, std::path::PathBuf) {
    let log = site.dir().join(format!("{name}.out"));
    let child = Child(
        std::process::Command::new("/usr/bin/python3")
            .arg("-u")
            .args(args)
            .stdout(std::fs::File::create(&log).expect("the SMTP log"))
            .stderr(std::fs::File::create(log.with_extension("err")).expect("the SMTP errors"))
            .spawn()
            .expect("python3 with aiosmtpd (package python3-aiosmtpd)"),
    );
    wait_until(WAIT, "aiosmtpd listening", || {
        std::net::TcpStream::connect(addr).ok()
    });
    (child, log)
}

/// AL-4 over TLS (issue 15 tests a, f; PRODUCT.md §4 "bad TLS, hanging"): one CHECK_DOWN reaches
/// a real SMTP server over STARTTLS and another over TLS from the first byte (aiosmtpd with a
/// certificate from a test CA the channels trust with `--ca FILE`), and an HTTPS webhook
/// receiver that verifies the signature; the same STARTTLS server without `--ca` is refused
/// (certificate not trusted, nothing sent); a receiver that accepts and never answers is given
/// up after the channel's timeout and retried, and the other channels are not held up by it. A
/// `--ca` that is not PEM is refused and nothing is stored.
#[test]
fn al4_email_over_starttls_and_tls_and_an_https_webhook_trust_the_channels_ca_and_a_hanging_receiver_times_out(
) {
    let site = Site::new(224);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=0s"]);
    let (starttls, smtps, https) = (site.addr(), site.addr(), site.listener());
    let ip = |a: &str| a.split(':').next().expect("an ip").to_string();
    let (ca, cert, key) = test_ca(site.dir(), &[&ip(&starttls), &ip(&smtps), &ip(&https.1)]);
    let (_starttls_server, starttls_log) = aiosmtpd(
        &site,
        "starttls",
        &starttls,
        &["--tlscert", &cert, "--tlskey", &key],
    );
    let (_smtps_server, smtps_log) = aiosmtpd(
        &site,
        "smtps",
        &smtps,
        &["--smtpscert", &cert, "--smtpskey", &key],
    );
    let tls = {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(&cert)
            .expect("cert.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(&key).expect("key.pem");
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the receiver's certificate")
    };
    let hook = Receiver::start_https(https, Arc::new(tls));
    // Accepts connections and never answers.
    let (hanging, _) = site.listener();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().expect("addr"));
    let held: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for c in hanging.incoming().flatten() {
            keep.lock().unwrap().push(c);
        }
    });

    let not_pem = site.dir().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("not.pem");
    let out = s.cli(&[
        "alert",
        "channel",
        "add",
        "bad-ca",
        "--kind",
        "webhook",
        "--url",
        &hook.https_url(),
        "--ca",
        not_pem.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PEM"),
        "{out:?}"
    );
    assert!(!s.cli_ok(&["alert", "channel", "list"]).contains("bad-ca"));

    let starttls_url = format!("smtp://{starttls}");
    let smtps_url = format!("smtps://{smtps}");
    let https_url = hook.https_url();
    add_check_down_channels(
        &s,
        &[
            &[
                "starttls",
                "--kind",
                "email",
                "--to",
                "ops@example.org",
                "--smtp",
                &starttls_url,
                "--ca",
                &ca,
            ][..],
            &[
                "smtps",
                "--kind",
                "email",
                "--to",
                "ops@example.org",
                "--smtp",
                &smtps_url,
                "--ca",
                &ca,
            ][..],
            &[
                "untrusted",
                "--kind",
                "email",
                "--to",
                "ops@example.org",
                "--smtp",
                &starttls_url,
            ][..],
            &[
                "https", "--kind", "webhook", "--url", &https_url, "--secret", "k-224", "--ca", &ca,
            ][..],
            &[
                "hang",
                "--kind",
                "webhook",
                "--url",
                &hanging_url,
                "--timeout",
                "1s",
            ][..],
        ],
    );
    closed_port_check(&s, "db-ping", &site.addr(), "2");
    let state = |a: &Value, ch: &str| -> Value {
        a["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["channel"] == ch).cloned())
            .unwrap_or(Value::Null)
    };
    let down = wait_ok(WAIT, "sent over STARTTLS, TLS and HTTPS", || {
        let a = alert_of(&s, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        let sent = ["starttls", "smtps", "https"]
            .iter()
            .all(|ch| state(&a, ch)["state"] == "sent");
        sent.then_some(a.clone()).ok_or(format!("{a}"))
    });
    let id = down["id"].as_str().expect("id");
    for log in [&starttls_log, &smtps_log] {
        let mail = std::fs::read_to_string(log).expect("the SMTP log");
        assert!(
            mail.contains(&format!("Message-ID: <{id}@understudy>")),
            "{mail}"
        );
        assert!(mail.contains("X-Understudy-Alert: "), "{mail}");
    }
    let got = hook.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].alert_ids(), [id.to_string()]);
    assert_eq!(
        got[0].header("x-understudy-signature"),
        Some(hmac_sha256("k-224", &got[0].body).as_str())
    );
    // Not trusted without --ca: refused before anything was sent, retried.
    let untrusted = state(&down, "untrusted");
    let why = untrusted["last_error"].as_str().unwrap_or("");
    assert_eq!(untrusted["state"], "pending", "{untrusted}");
    assert!(
        why.contains("certificate") || why.contains("Certificate"),
        "{untrusted}"
    );
    assert_eq!(
        std::fs::read_to_string(&starttls_log)
            .expect("log")
            .matches(&format!("Message-ID: <{id}@understudy>"))
            .count(),
        1,
        "only the trusting channel's copy arrived"
    );
    // The hanging receiver: given up after 1s each time, retried, still pending.
    let hang = wait_ok(WAIT, "the hanging receiver timed out twice", || {
        let a = alert_of(&s, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        let d = state(&a, "hang");
        (d["attempts"].as_u64() >= Some(2))
            .then_some(d.clone())
            .ok_or(format!("{d}"))
    });
    assert_eq!(hang["state"], "pending", "{hang}");
    assert!(
        hang["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer within 1s")),
        "{hang}"
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the hanging receiver was reached"
    );
}

/// AL-5 (issue 15 item 4): a channel removed while its deliveries wait behind a failing
/// receiver: they end failed ("the alert channel was removed") with one DELIVERY_FAILED about
/// the channel, which goes to the other channels — nothing is dropped silently.
#[test]
fn al5_a_removed_channels_queued_deliveries_fail_with_delivery_failed_on_the_other_channels() {
    let site = Site::new(225);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=0s"]);
    let dead = Receiver::start(&site, 503);
    let ok = Receiver::start(&site, 200);
    for (name, r) in [("gone", &dead), ("ok", &ok)] {
        add_webhook(&s, name, r, &["--codes", "CHECK_DOWN,DELIVERY_FAILED"]);
    }
    closed_port_check(&s, "db-ping", &site.addr(), "1");
    wait_ok(WAIT, "the delivery to gone failing", || {
        let a = alert_of(&s, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        let d = a["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["channel"] == "gone").cloned())
            .ok_or("no delivery")?;
        (d["state"] == "pending" && d["attempts"].as_u64() >= Some(1))
            .then_some(())
            .ok_or(format!("{d}"))
    });
    s.cli_ok(&["alert", "channel", "remove", "gone"]);
    let failed = s.wait_event("DELIVERY_FAILED", |e| e.subject == "gone");
    assert!(
        failed.sentence.contains("the alert channel was removed"),
        "{failed:?}"
    );
    let down = alert_of(&s, "CHECK_DOWN", "db-ping").expect("the CHECK_DOWN alert");
    let gone = down["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["channel"] == "gone").cloned())
        .expect("the delivery to gone");
    assert_eq!(gone["state"], "failed", "{down}");
    wait_ok(WAIT, "DELIVERY_FAILED delivered to ok", || {
        ok.got()
            .iter()
            .any(|g| {
                g.json()["alerts"][0]["code"] == "DELIVERY_FAILED"
                    && g.json()["alerts"][0]["subject"] == "gone"
            })
            .then_some(())
            .ok_or(format!("{:?}", ok.got()))
    });
}

/// The deliveries of `channel` in `alert list --json`, by alert id: (state, attempts, last error).
fn deliveries_to(server: &Node, channel: &str) -> BTreeMap<String, (String, u64, String)> {
    let list = server
        .try_json(&["alert", "list", "--json"])
        .unwrap_or(Value::Null);
    let mut out = BTreeMap::new();
    for a in list["alerts"].as_array().into_iter().flatten() {
        for d in a["deliveries"].as_array().into_iter().flatten() {
            if d["channel"] == channel {
                out.insert(
                    a["id"].as_str().unwrap_or_default().to_string(),
                    (
                        d["state"].as_str().unwrap_or_default().to_string(),
                        d["attempts"].as_u64().unwrap_or(0),
                        d["last_error"].as_str().unwrap_or_default().to_string(),
                    ),
                );
            }
        }
    }
    out
}

/// AL-4, `alert channel edit` (issue 15 item 2, PRODUCT.md §4): three CHECK_DOWN alerts queue
/// behind a webhook answering 503. Editing an unknown channel is refused (not found), and so is
/// a bad URL or another kind, each with its reason and nothing changed. Then the channel's URL
/// is edited to a working receiver, without giving the secret again: the edit is replicated to
/// the STANDBY, the queued alerts (the same ids, not raised again) each reach the new receiver
/// once, signed with the kept secret, and the secret is shown nowhere. The STANDBY refuses the
/// edit (channels change on the acting server).
#[test]
fn al4_a_channel_edited_keeps_its_secret_and_its_queued_alerts_which_reach_the_new_url_once() {
    let site = Site::new(227);
    let secret = "edit-key-227";
    let (s1, s2, _a1, dead) = active_standby_agent_and_failing_hook(&site, &["--secret", secret]);
    let good = Receiver::start(&site, 200);
    let checks = ["e0", "e1", "e2"];
    for name in checks {
        closed_port_check(&s1, name, &site.addr(), "1");
    }
    let queued = wait_ok(WAIT, "three alerts refused at least twice", || {
        let d = deliveries_to(&s1, "hook");
        let failing = d
            .values()
            .filter(|(state, attempts, _)| state == "pending" && *attempts >= 2)
            .count();
        (failing == 3).then_some(d.clone()).ok_or(format!("{d:?}"))
    });
    let before = s1
        .try_json(&["alert", "channel", "list", "--json"])
        .expect("list");
    let edit_refused = |node: &Node, args: &[&str], reason: &str| {
        let out = node.cli(&[&["alert", "channel", "edit"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    };
    let good_url = good.url();
    edit_refused(
        &s1,
        &["nope", "--url", &good_url],
        "no alert channel named nope",
    );
    edit_refused(
        &s1,
        &["hook", "--url", "ftp://x/"],
        "expected http:// or https://",
    );
    edit_refused(
        &s1,
        &["hook", "--url", &good_url, "--codes", "CHECK_DOWN,NOPE"],
        "unknown code NOPE",
    );
    edit_refused(
        &s1,
        &["hook", "--kind", "ntfy", "--url", &good_url],
        "a webhook channel stays a webhook channel",
    );
    edit_refused(&s2, &["hook", "--url", &good_url], "not the acting server");
    assert_eq!(
        s1.try_json(&["alert", "channel", "list", "--json"]),
        Some(before),
        "a refused edit changes nothing"
    );
    assert!(good.got().is_empty(), "{:?}", good.got());

    // `alert channel edit hook --url <the working receiver> MORE…`.
    let edit_to_good = |more: &[&str]| {
        s1.cli_ok(
            &[
                &["alert", "channel", "edit", "hook", "--url", &good_url][..],
                more,
            ]
            .concat(),
        )
    };
    let said = edit_to_good(&["--codes", "CHECK_DOWN"]);
    assert!(said.contains("alert channel hook changed"), "{said}");
    let listed = s1
        .try_json(&["alert", "channel", "list", "--json"])
        .expect("list");
    let hook = &listed["channels"][0];
    assert_eq!(hook["url"], good_url.as_str(), "{listed}");
    assert_eq!(hook["secret"], "set", "the secret kept: {listed}");
    wait_ok(WAIT, "the edit replicated to the STANDBY", || {
        let l = s2.try_json(&["alert", "channel", "list", "--json"]);
        (l.as_ref() == Some(&listed))
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    wait_ok(WAIT, "the queued alerts sent to the new URL", || {
        let d = deliveries_to(&s1, "hook");
        d.values()
            .all(|(state, _, _)| state == "sent")
            .then_some(())
            .ok_or(format!("{d:?}"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let got = good.got();
    let mut arrived: Vec<String> = got.iter().flat_map(Got::alert_ids).collect();
    arrived.sort();
    let ids: Vec<String> = queued.keys().cloned().collect();
    assert_eq!(
        arrived, ids,
        "each queued alert once, under its id: {got:?}"
    );
    for g in &got {
        assert_eq!(
            g.header("x-understudy-signature"),
            Some(hmac_sha256(secret, &g.body).as_str()),
            "signed with the kept secret"
        );
    }
    assert_eq!(deliveries_to(&s1, "hook").len(), 3, "no alert raised again");
    for node in [&s1, &s2] {
        for text in [
            node.cli_ok(&["alert", "channel", "list", "--json"]),
            node.cli_ok(&["status", "--json"]),
            node.cli_ok(&["events", "--json"]),
            node.log_text(),
        ] {
            assert!(!text.contains(secret), "the secret is shown: {text}");
        }
    }
    // An explicit clear: the next message goes unsigned.
    edit_to_good(&["--clear-secret"]);
    let listed = s1
        .try_json(&["alert", "channel", "list", "--json"])
        .expect("list");
    assert!(listed["channels"][0].get("secret").is_none(), "{listed}");
    s1.cli_ok(&["alert", "channel", "test", "hook"]);
    let last = good.got().pop().expect("the test message");
    assert_eq!(last.json()["alerts"][0]["code"], "TEST");
    assert_eq!(last.header("x-understudy-signature"), None, "{last:?}");
    assert!(dead.got().iter().all(|g| g.answered == 503));
}

/// aiosmtpd requiring a login over STARTTLS (AUTH PLAIN or LOGIN, only after STARTTLS, no mail
/// without it), printing each message it takes: `ADDR CERT KEY USER PASSWORD`.
const SMTP_WITH_LOGIN: &str = r#"
import sys, ssl, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Debugging
from aiosmtpd.smtp import AuthResult, LoginPassword
addr, cert, key, user, password = sys.argv[1:]
host, port = addr.rsplit(":", 1)
def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
    print("AUTH", mechanism, "accepted" if ok else "refused", flush=True)
    return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535 itself
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
Controller(Debugging(sys.stdout), hostname=host, port=int(port), tls_context=tls,
           require_starttls=True, authenticator=authenticate, auth_required=True,
           auth_require_tls=True).start()
threading.Event().wait()
"#;

/// AL-4's SMTP login (issue 15 item 2): a real SMTP server (aiosmtpd) that takes mail only
/// after STARTTLS and a login. The channel with the right login delivers the CHECK_DOWN (its
/// alert id as Message-ID); the one with a wrong password is refused, retried, and its last
/// error says the authentication failed. Neither password appears in `alert channel list
/// --json`, `alert list --json`, status, events or the node's log.
#[test]
fn al4_email_with_an_smtp_login_delivers_and_a_wrong_password_is_retried_as_authentication_failed()
{
    let site = Site::new(228);
    let (s, _a1) = server_with_agent_and(&site, &["alert.group_wait=0s"]);
    let smtp = site.addr();
    let (ca, cert, key) = test_ca(site.dir(), &[smtp.split(':').next().expect("an ip")]);
    let script = site.dir().join("smtp_login.py");
    std::fs::write(&script, SMTP_WITH_LOGIN).expect("the script");
    let (password, wrong) = ("pw-228-right", "pw-228-wrong");
    let (_server, mail_log) = python_smtp(
        &site,
        "login",
        &smtp,
        &[
            script.to_str().expect("utf-8"),
            &smtp,
            &cert,
            &key,
            "ops",
            password,
        ],
    );
    let right_url = format!("smtp://ops:{password}@{smtp}");
    let wrong_url = format!("smtp://ops:{wrong}@{smtp}");
    let mail = |name: &'static str, url: &str| -> Vec<String> {
        [
            name,
            "--kind",
            "email",
            "--to",
            "ops@example.org",
            "--smtp",
            url,
            "--ca",
            ca.as_str(),
        ]
        .map(String::from)
        .to_vec()
    };
    let (right, bad) = (mail("login", &right_url), mail("wrong", &wrong_url));
    let right: Vec<&str> = right.iter().map(String::as_str).collect();
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    add_check_down_channels(&s, &[&right[..], &bad[..]]);
    closed_port_check(&s, "db-ping", &site.addr(), "2");
    let down = wait_ok(WAIT, "sent with the login, refused twice without", || {
        let a = alert_of(&s, "CHECK_DOWN", "db-ping").ok_or("no alert".to_string())?;
        let d = |ch: &str| {
            a["deliveries"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["channel"] == ch).cloned())
                .unwrap_or(Value::Null)
        };
        let (login, wrong) = (d("login"), d("wrong"));
        (login["state"] == "sent"
            && wrong["state"] == "pending"
            && wrong["attempts"].as_u64() >= Some(2))
        .then_some((a.clone(), wrong))
        .ok_or(format!("{a}"))
    });
    let (alert, wrong_delivery) = down;
    let id = alert["id"].as_str().expect("id");
    let log = std::fs::read_to_string(&mail_log).expect("the SMTP log");
    assert!(
        log.contains(&format!("Message-ID: <{id}@understudy>")),
        "{log}"
    );
    assert_eq!(
        log.matches("Message-ID: ").count(),
        1,
        "only the channel with the login got through: {log}"
    );
    let auth: Vec<&str> = log.lines().filter(|l| l.starts_with("AUTH ")).collect();
    assert!(
        auth.iter().any(|l| l.ends_with(" accepted"))
            && auth.iter().any(|l| l.ends_with(" refused")),
        "{auth:?}"
    );
    let why = wrong_delivery["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("authentication failed for ops"),
        "{wrong_delivery}"
    );
    let listed = s.cli_ok(&["alert", "channel", "list", "--json"]);
    assert!(listed.contains("smtp://ops:set@"), "{listed}");
    for text in [
        listed,
        s.cli_ok(&["alert", "channel", "list"]),
        s.cli_ok(&["alert", "list", "--json"]),
        s.cli_ok(&["status", "--json"]),
        s.cli_ok(&["events", "--json"]),
        s.log_text(),
    ] {
        for pw in [password, wrong] {
            assert!(!text.contains(pw), "a password is shown: {text}");
        }
    }
}
