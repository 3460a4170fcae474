//! MX-2 with real processes: the acting server forwards every record it stores to a real
//! VictoriaMetrics (Debian `victoria-metrics`, remote write 1.0 on `/api/v1/write`) started by
//! the test on a loopback port. The distinct samples it holds must be the records stored: the
//! same names, labels, timestamps and values, none missing, across a SIGKILL of the ACTIVE
//! server and a receiver that is down for a minute; a receiver answering 400 gets
//! FORWARD_REJECTED and forwarding goes on.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use understudy_system_tests::*;

const TOKEN: &str = "tok-0123456789abcdef";

/// Sends `rounds` × 7 records (`m0`…`m6`, one of each name per call, so no two share a series
/// and a millisecond).
fn send_rounds(agent: &Node, rounds: usize) -> u64 {
    let mut last = 0;
    for _ in 0..rounds {
        last = agent.send(7).1;
    }
    last
}

fn server_sets(extra: &[String]) -> Vec<String> {
    let mut v = vec![format!("server.enroll_token={TOKEN}")];
    v.extend(FAST_SERVER.iter().map(|s| s.to_string()));
    v.extend(extra.iter().cloned());
    v
}

fn agent_sets() -> Vec<&'static str> {
    let mut v = vec!["agent.enroll_token=tok-0123456789abcdef"];
    v.extend_from_slice(FAST_AGENT);
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// MX-2 (a): every record a standalone server stores is one sample in VictoriaMetrics, named
/// after it, labelled `agent` and `forward.labels`, at the record's time; `status` shows the
/// cursor at the last record and no lag.
#[test]
fn mx2_every_stored_record_is_one_sample_in_victoria_metrics() {
    let site = Site::new(246);
    let vm = Vm::start(&site);
    let sets = server_sets(&[
        format!("forward.remote_write={}", vm.write_url()),
        "forward.batch=50".into(),
        "forward.labels.site=lab".into(),
    ]);
    let mut s = site.server("srv", &refs(&sets));
    let mut a1 = site.agent("a1", &[&s], &agent_sets());
    s.start();
    a1.start();
    a1.wait_link("home", Some(&s));
    let last = send_rounds(&a1, 40);
    wait_records(&[&s], &[("a1", last)]);
    let n = wait_forwarded(&vm, &s, &[("site", "lab")], 0, WAIT);
    assert_eq!(n, 280);
    let status = wait_ok(WAIT, "no lag in status", || {
        let f = s.status_now().forward.ok_or("no forward in status")?;
        (f.lag_records == 0 && f.cursor > 0)
            .then_some(f.clone())
            .ok_or(format!("{f:?}"))
    });
    assert!(status.forwarding && status.error.is_none(), "{status:?}");
    assert_eq!(status.remote_write, vm.write_url());
}

/// CK-4 (issue 18 item 3): a record's labels go with it end to end: `send --label` caches them
/// on the agent, the server stores them, `records --json` shows them, and VictoriaMetrics holds
/// each record as a sample with its own labels plus `agent`; records without labels stay as they
/// were. Labels the agent may not take (a reserved name, too many) are refused with the reason and
/// nothing of that call is cached.
#[test]
fn ck4_a_records_labels_reach_the_store_records_json_and_victoria_metrics() {
    let site = Site::new(250);
    let vm = Vm::start(&site);
    let sets = server_sets(&[format!("forward.remote_write={}", vm.write_url())]);
    let mut s = site.server("srv", &refs(&sets));
    let mut a1 = site.agent("a1", &[&s], &agent_sets());
    s.start();
    a1.start();
    a1.wait_link("home", Some(&s));
    let plain = send_rounds(&a1, 1);
    a1.cli_ok(&[
        "send",
        "node_load1=0.25",
        "node_load5=0.5",
        "--label",
        "instance=h1:9100",
        "--label",
        "job=node \"one\"",
    ]);
    for bad in ["agent=x", "__name__=x", "9lives=x", "a-b=x"] {
        let out = a1.cli(&["send", "bad=1", "--label", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--label {bad} was taken");
        assert!(err.contains("label"), "--label {bad}: {err}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("l{i}=v")).collect();
    let mut args = vec!["send", "bad=1"];
    for l in &many {
        args.extend(["--label", l.as_str()]);
    }
    let out = a1.cli(&args);
    assert!(!out.status.success(), "33 labels were taken");
    let last = a1.send(1).1;
    assert_eq!(last, plain + 3, "the refused calls cached nothing");
    wait_records(&[&s], &[("a1", last)]);
    let records = s.records().expect("records --json");
    let labelled: Vec<_> = records.iter().filter(|r| !r.labels.is_empty()).collect();
    assert_eq!(labelled.len(), 2, "{records:?}");
    for r in &labelled {
        assert_eq!(
            r.labels.get("instance").map(String::as_str),
            Some("h1:9100")
        );
        assert_eq!(
            r.labels.get("job").map(String::as_str),
            Some("node \"one\"")
        );
    }
    let json = s.cli_ok(&["records", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let without = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r.get("labels").is_none())
        .count();
    assert_eq!(
        without,
        records.len() - 2,
        "no labels key on a record without"
    );
    let table = s.cli_ok(&["records"]);
    assert!(table.contains("node_load1{instance=\"h1:9100\""), "{table}");
    let n = wait_forwarded(&vm, &s, &[], 0, WAIT);
    assert_eq!(n, records.len());
    let got = vm.samples().expect("export");
    assert!(
        got.iter().any(|(name, labels, _, _)| name == "node_load5"
            && labels.contains(&("instance".to_string(), "h1:9100".to_string()))
            && labels.contains(&("agent".to_string(), "a1".to_string()))),
        "{got:?}"
    );
}

/// MX-2 (b): the ACTIVE server of a hot-standby pair is SIGKILLed while it forwards; the
/// STANDBY had the cursor replicated (it is past 0 before the kill), promotes and resumes from
/// it. Once the killed server is back (STANDBY, handing over what it stored last), the
/// receiver holds every record the site stored: none missing.
#[test]
fn mx2_a_promoted_standby_resumes_from_the_replicated_cursor_after_a_sigkill_and_nothing_is_missing(
) {
    let site = Site::new(247);
    let vm = Vm::start(&site);
    let sets = server_sets(&[
        format!("forward.remote_write={}", vm.write_url()),
        "forward.batch=20".into(),
        "failover.sync_interval=500ms".into(),
    ]);
    let (mut s1, mut s2) = site.hot_standby(&refs(&sets), None);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets());
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    a1.start();
    a1.wait_link("home", Some(&s1));
    // Five records a call, `load0`…`load4`: no two share a series and a millisecond.
    let load = Sender::start(&a1, 5);
    load.wait_more(300);
    let cursor = wait_ok(WAIT, "the forwarding cursor replicated to s2", || {
        let f = s2.status_now().forward.ok_or("no forward in s2's status")?;
        (f.cursor > 0 && !f.forwarding)
            .then_some(f.cursor)
            .ok_or(format!("{f:?}"))
    });
    eprintln!("s2's replicated cursor before the kill: {cursor}");
    s1.kill9();
    s2.wait_failover_state("active");
    load.wait_more(300);
    s1.start();
    s1.wait_failover_state("standby");
    let last = load.finish().last_seq;
    wait_records(&[&s2], &[("a1", last)]);
    let n = wait_forwarded(&vm, &s2, &[], 0, WAIT);
    eprintln!("{n} records forwarded across the SIGKILL");
    let f = s2.status_now().forward.expect("forward in status");
    assert!(f.forwarding, "the promoted server forwards: {f:?}");
}

/// MX-2 (c): the receiver is down for a minute while records keep coming: the lag and the error
/// show in `status`, nothing is dropped, and once it is back every record arrives.
#[test]
fn mx2_a_receiver_down_for_a_minute_misses_nothing() {
    let site = Site::new(248);
    let mut vm = Vm::start(&site);
    let sets = server_sets(&[format!("forward.remote_write={}", vm.write_url())]);
    let mut s = site.server("srv", &refs(&sets));
    let mut a1 = site.agent("a1", &[&s], &agent_sets());
    s.start();
    a1.start();
    a1.wait_link("home", Some(&s));
    let last = send_rounds(&a1, 5);
    wait_records(&[&s], &[("a1", last)]);
    wait_forwarded(&vm, &s, &[], 0, WAIT);
    vm.stop();
    let down = std::time::Instant::now();
    let mut last = 0;
    while down.elapsed() < Duration::from_secs(60) {
        last = send_rounds(&a1, 1);
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_records(&[&s], &[("a1", last)]);
    let f = s.status_now().forward.expect("forward in status");
    assert!(f.lag_records > 0, "{f:?}");
    assert!(f.lag_seconds > 0.0, "{f:?}");
    assert!(f.error.is_some(), "the failure is shown: {f:?}");
    vm.spawn();
    // The forwarder may be in its longest pause (1 min) when the receiver returns.
    let n = wait_forwarded(&vm, &s, &[], 0, Duration::from_secs(150));
    eprintln!("{n} records forwarded after a minute down");
    let f = s.status_now().forward.expect("forward in status");
    assert!(f.error.is_none(), "{f:?}");
}

/// One request a [`Refuser`] took: its headers (names lowercased) and body.
#[derive(Clone, Debug)]
struct Got {
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
}

/// A receiver on loopback that answers every request 400 with a two-line body (no package
/// answers 4xx on demand).
struct Refuser {
    addr: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Refuser {
    fn start(site: &Site) -> Refuser {
        let (listener, addr) = site.listener();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((headers, body)) = read_http_request(&stream) else {
                    continue;
                };
                g.lock().unwrap().push(Got { headers, body });
                let text = "sample out of bounds\nsecond line\n";
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                );
            }
        });
        Refuser { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }
}

/// MX-2 (d): a receiver that answers 400 gets the records once each as remote write 1.0
/// (headers, snappy, protobuf), raises FORWARD_REJECTED (an alert like the others, with the
/// status and the first line of the answer), the server keeps running and the cursor moves
/// past the dropped batches; switched to a good receiver, the records stored after go there.
#[test]
fn mx2_a_4xx_receiver_raises_forward_rejected_and_later_records_go_to_a_good_receiver() {
    let site = Site::new(249);
    let refuser = Refuser::start(&site);
    let sets = server_sets(&[
        format!("forward.remote_write={}", refuser.url()),
        "forward.batch=10".into(),
    ]);
    let mut s = site.server("srv", &refs(&sets));
    let mut a1 = site.agent("a1", &[&s], &agent_sets());
    s.start();
    a1.start();
    a1.wait_link("home", Some(&s));
    let before = send_rounds(&a1, 3);
    wait_records(&[&s], &[("a1", before)]);
    let event = s.wait_event("FORWARD_REJECTED", |_| true);
    assert_eq!(event.subject, refuser.url());
    assert!(
        event.sentence.contains("HTTP 400") && event.sentence.contains("sample out of bounds"),
        "{event:?}"
    );
    assert!(!event.sentence.contains("second line"), "{event:?}");
    // Every record offered to the refusing receiver (the lag in status is measured once a
    // second, so it may still show the moment after the first batch: read the receiver).
    let offered = || -> u64 {
        refuser
            .got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|g| understudy_node::forward::decode(&g.body).ok())
            .flat_map(|r| r.timeseries)
            .map(|ts| ts.samples.len() as u64)
            .sum()
    };
    wait_until(
        WAIT,
        "every record offered to the refusing receiver",
        || (offered() >= before).then_some(()),
    );
    let f = wait_ok(WAIT, "the cursor past the rejected records", || {
        let f = s.status_now().forward.ok_or("no forward in status")?;
        (f.lag_records == 0)
            .then_some(f.clone())
            .ok_or(format!("{f:?}"))
    });
    assert!(f.error.is_none(), "a rejection is not retried: {f:?}");
    let alerts = s
        .try_json(&["alert", "list", "--json"])
        .expect("alert list");
    assert!(
        alerts["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["code"] == "FORWARD_REJECTED")),
        "{alerts}"
    );
    // What reached the receiver: every record once, as remote write 1.0.
    let got = refuser.got.lock().unwrap().clone();
    for g in &got {
        assert_eq!(g.header("content-encoding"), Some("snappy"));
        assert_eq!(g.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(g.header("x-prometheus-remote-write-version"), Some("0.1.0"));
        let request = understudy_node::forward::decode(&g.body).expect("snappy protobuf");
        for ts in &request.timeseries {
            assert_eq!(ts.labels[0].name, "__name__");
        }
    }
    assert_eq!(offered(), before, "each record sent once: {got:?}");
    // Switched to a good receiver: the records stored from now on go there.
    let vm = Vm::start(&site);
    s.stop();
    s.configure(&[&format!("forward.remote_write={}", vm.write_url())]);
    s.start();
    let last = send_rounds(&a1, 3);
    wait_records(&[&s], &[("a1", last)]);
    let n = wait_forwarded(&vm, &s, &[], before, WAIT);
    assert_eq!(n, 21);
}

/// A remote-write receiver on loopback that answers 204 and counts every sample it is sent
/// (VictoriaMetrics, deduplicating, cannot say how often a sample came).
struct Counter {
    addr: String,
    got: Arc<Mutex<std::collections::BTreeMap<SampleKey, usize>>>,
}

impl Counter {
    fn start(site: &Site) -> Counter {
        let (listener, addr) = site.listener();
        let got = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((_, body)) = read_http_request(&stream) else {
                    continue;
                };
                let status = match understudy_node::forward::decode(&body) {
                    Ok(request) => {
                        let mut got = g.lock().unwrap();
                        for series in request.timeseries {
                            let mut name = String::new();
                            let mut labels = Vec::new();
                            for l in series.labels {
                                if l.name == "__name__" {
                                    name = l.value;
                                } else {
                                    labels.push((l.name, l.value));
                                }
                            }
                            labels.sort();
                            for s in series.samples {
                                let key =
                                    (name.clone(), labels.clone(), s.timestamp, s.value.to_bits());
                                *got.entry(key).or_insert(0) += 1;
                            }
                        }
                        "204 No Content"
                    }
                    Err(_) => "400 Bad Request",
                };
                let _ = (&stream).write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Counter { addr, got }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// The distinct samples received, and how many arrived more than once (counting each repeat).
    fn samples(&self) -> (BTreeSet<SampleKey>, usize) {
        let got = self.got.lock().unwrap();
        let repeats = got.values().map(|n| n - 1).sum();
        (got.keys().cloned().collect(), repeats)
    }
}

/// MX-2 with HS-8: a planned stop (SIGTERM) of the forwarding ACTIVE hands its forwarding
/// cursor over with the role, so the new ACTIVE does not send again what was forwarded since
/// the STANDBY's last poll (`sync_interval` 5 s here, thousands of records). Only the batch in
/// flight at the stop may arrive twice (at most `forward.batch` samples); every record arrives.
/// On the code before the cursor went with the handover, up to 5 s of records came twice.
#[test]
fn mx2_hs8_a_planned_handover_carries_the_forwarding_cursor_and_nothing_is_sent_again() {
    let site = Site::new(252);
    let counter = Counter::start(&site);
    let sets = server_sets(&[
        format!("forward.remote_write={}", counter.url()),
        "forward.batch=20".into(),
        "failover.sync_interval=5s".into(),
        "failover.failover_timeout=20s".into(),
    ]);
    let (mut s1, mut s2) = site.hot_standby(&refs(&sets), None);
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets());
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    // HS-8: the ACTIVE hands over only to a peer it has heard answer as STANDBY.
    s1.wait_peer_state("standby");
    a1.start();
    a1.wait_link("home", Some(&s1));
    let load = Sender::start(&a1, 5);
    load.wait_more(1000);
    s1.stop();
    s2.wait_failover_state("active");
    s2.wait_event("HANDOVER", |_| true);
    load.wait_more(300);
    let last = load.finish().last_seq;
    wait_records(&[&s2], &[("a1", last)]);
    let (n, repeats) = wait_ok(WAIT, "every record forwarded by s2", || {
        let want = expected(&s2, &[], 0);
        let (got, repeats) = counter.samples();
        if got == want {
            return Ok((want.len(), repeats));
        }
        Err(format!(
            "{} records, {} samples, {} missing",
            want.len(),
            got.len(),
            want.difference(&got).count()
        ))
    });
    eprintln!("{n} records forwarded across a planned handover; {repeats} samples sent twice");
    assert!(
        repeats <= 20,
        "{repeats} samples sent again after the handover: the cursor did not go with the role"
    );
}
