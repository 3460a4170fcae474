//! PRODUCT.md §4 "disk full": a clear error, no acknowledged record lost, recovery when space
//! returns. The agent's data directory is a small tmpfs (issue 6: "a full disk under an agent's
//! cache"); its server goes away, so every record sent stays in the cache until the disk is full.

use std::path::PathBuf;

use understudy_system_tests::*;

const SETS: &[&str] = &[
    "server.enroll_token=df-token-0123456789abcdef",
    "agent.enroll_token=df-token-0123456789abcdef",
];

/// A server `s` and an agent `a` whose whole data directory (store, certificate, log) is a
/// 12 MiB tmpfs, 6 MiB of it taken by a file the "operator" may delete to give space back (and
/// 4 MiB by the agent's own reserve, `understudy_node::store::RESERVE_BYTES`). The
/// server goes away and records pile up in the agent's cache until the disk is full; returns
/// the last sequence number accepted.
struct FullDisk {
    // Dropped in this order: the processes, then the mount, then the site's directory.
    a: Node,
    s: Node,
    _disk: Tmpfs,
    filler: PathBuf,
    accepted: u64,
    _site: Site,
}

fn fill_the_agents_disk(net: u8) -> FullDisk {
    let site = Site::new(net);
    let mut s = site.server("s", SETS);
    let disk = Tmpfs::mount(&site.dir().join("a"), "12m");
    let mut a = site.agent("a", &[&s], SETS);
    let filler = a.dir.join("filler");
    std::fs::write(&filler, vec![7u8; 6 << 20]).expect("filler");
    s.start();
    a.start();
    a.wait_link("home", Some(&s));
    let (_, mut accepted) = a.send(100);
    wait_records(&[&s], &[("a", accepted)]);

    s.kill9();
    let refusal = loop {
        match a.try_send(500) {
            Ok((_, last)) => accepted = last,
            Err(e) => break e,
        }
        assert!(accepted < 1_000_000, "the disk never filled up");
    };
    eprintln!("[disk full] {accepted} records accepted, then: {refusal}");
    assert!(
        refusal.contains("disk full"),
        "a clear error names the cause: {refusal}"
    );
    assert!(
        accepted > 1_000,
        "the cache held only {accepted} records before the disk filled"
    );
    // The agent keeps running and answering; a second attempt is refused the same way.
    let status = a.status_now();
    assert!(status.link.is_some(), "{status:?}");
    assert!(
        a.try_send(500).is_err_and(|e| e.contains("disk full")),
        "the same batch is refused again"
    );
    FullDisk {
        a,
        s,
        _disk: disk,
        filler,
        accepted,
        _site: site,
    }
}

/// The operator frees space while the server is still down: new records are accepted again, and
/// once the server is back every accepted record is stored exactly once.
#[test]
fn bad_input_disk_full_under_the_agent_cache_loses_nothing_and_recovers() {
    let mut f = fill_the_agents_disk(66);
    std::fs::remove_file(&f.filler).expect("removing the filler");
    let (_, last) = wait_ok(WAIT, "a send accepted after space returned", || {
        f.a.try_send(10)
    });
    assert_eq!(
        last,
        f.accepted + 10,
        "sequence numbers continue without a gap"
    );
    f.accepted = last;
    f.s.start();
    f.a.wait_link("home", Some(&f.s));
    wait_records(&[&f.s], &[("a", f.accepted)]);
    wait_until(WAIT, "the agent's cache drained", || {
        (f.a.link()?.cached == 0).then_some(())
    });
}

/// Nobody frees space: the server comes back to an agent whose disk is still full. Deleting
/// acknowledged records must work on the full disk, so the cache drains, every accepted record
/// is stored once, and the space the cache gave back takes new records.
#[test]
fn bad_input_disk_full_cache_drains_when_the_server_returns_and_takes_records_again() {
    let mut f = fill_the_agents_disk(67);
    f.s.start();
    f.a.wait_link("home", Some(&f.s));
    wait_records(&[&f.s], &[("a", f.accepted)]);
    wait_until(WAIT, "the agent's cache drained on the full disk", || {
        (f.a.link()?.cached == 0).then_some(())
    });
    let (_, last) = wait_ok(
        WAIT,
        "a send accepted in the space the drained cache gave back",
        || f.a.try_send(500),
    );
    assert_eq!(
        last,
        f.accepted + 500,
        "sequence numbers continue without a gap"
    );
    wait_records(&[&f.s], &[("a", last)]);
    // The filler was never removed: the space came from the cache itself.
    assert!(f.filler.exists());
}

/// CK-4 with §4 "disk full": a remote-write push into an agent whose disk is full is answered
/// 5xx (507), so the sender keeps its samples; once space returns the same push is answered 204
/// and its samples reach the server once.
#[test]
fn ck4_a_push_into_a_full_disk_is_answered_5xx_and_taken_once_space_returns() {
    let mut f = fill_the_agents_disk(68);
    let token = std::fs::read_to_string(f.a.dir.join("push.token")).expect("push.token");
    // A small push may still fit in pages SQLite has free: push until one does not.
    let mut taken = 0;
    let body = loop {
        let body = remote_write_body("pushed", 200, 1_700_000_000_000 + taken);
        match push_status(&f.a, token.trim(), &body) {
            204 => taken += 1,
            507 => break body,
            other => panic!("a push into a full disk answered {other}"),
        }
        assert!(taken < 100, "the disk never refused a push");
    };
    std::fs::remove_file(&f.filler).expect("removing the filler");
    wait_until(WAIT, "the push taken once space returned", || {
        (push_status(&f.a, token.trim(), &body) == 204).then_some(())
    });
    f.s.start();
    f.a.wait_link("home", Some(&f.s));
    wait_until(WAIT, "the agent's cache drained", || {
        (f.a.link()?.cached == 0).then_some(())
    });
    let pushed: Vec<RecordView> =
        f.s.records()
            .expect("records")
            .into_iter()
            .filter(|r| r.name == "pushed")
            .collect();
    let want = (taken as usize + 1) * 200;
    assert_eq!(pushed.len(), want, "every sample of every push taken, once");
    let samples: std::collections::BTreeSet<(i64, &str)> = pushed
        .iter()
        .filter_map(|r| Some((r.time_ms, r.labels.get("slot")?.as_str())))
        .collect();
    assert_eq!(samples.len(), want);
}

/// §4 "disk full" under a running check, with the agent's log on the same disk (as when the
/// log and /var/lib share one): a log line the disk refuses must not stop the agent's checks.
/// Before, tracing-subscriber reported its failed write with `eprintln!`, which panics on the
/// same full disk; the panic ended the task that writes check results to the cache, and with
/// it every check, for good, while the agent kept answering its server (issue 18's phase (d)
/// defect). Now the check's runs on the full disk are refused and logged where possible, and
/// once space returns the check is recorded again.
#[test]
fn bad_input_disk_full_under_the_agents_log_stops_no_check_for_good() {
    let site = Site::new(69);
    let mut s = site.server("s", SETS);
    let disk = Tmpfs::mount(&site.dir().join("a"), "12m");
    let mut a = site.agent("a", &[&s], SETS);
    s.start();
    a.start();
    a.wait_link("home", Some(&s));
    s.cli_ok(&[
        "check",
        "add",
        "probe",
        "--kind",
        "tcp",
        "--target",
        "127.0.0.1:9",
        "--agent",
        "a",
        "--every",
        "200ms",
    ]);
    let recorded_after = |since: i64| {
        s.records()
            .into_iter()
            .flatten()
            .filter(|r| r.name == "probe" && r.time_ms > since)
            .count()
    };
    wait_until(WAIT, "the check recorded", || {
        (recorded_after(0) >= 3).then_some(())
    });

    // The disk full for 10 s: about 50 runs refused, each logged onto the same full disk.
    let filler = a.dir.join("filler");
    let full = std::time::Instant::now();
    while full.elapsed() < std::time::Duration::from_secs(10) {
        fill_up(&filler);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The agent answers on the full disk, and its status says why its checks are not recorded.
    let why = a
        .link_now()
        .cache_error
        .expect("status names the failed writes");
    eprintln!("[disk full] status: {why}");
    assert!(
        why.contains("check results not written since") && why.contains("disk full"),
        "{why}"
    );
    std::fs::remove_file(&filler).expect("removing the filler");
    let freed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    wait_until(WAIT, "the check recorded again once space returned", || {
        (recorded_after(freed) >= 3).then_some(())
    });
    assert_eq!(a.link_now().cache_error, None, "cleared by the first write");
    drop(a);
    drop(disk);
}
