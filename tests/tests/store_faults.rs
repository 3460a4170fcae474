//! PRODUCT.md §4 "disk full, database locked or corrupt" on a *server* (issue 12, "Also"; the
//! agent's full disk is disk_full.rs): a clear error, the agents keep their records cached, no
//! acknowledged record is lost, and delivery resumes when the fault is cleared.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use understudy_system_tests::*;

const TOKEN: &str = "store-faults-token-0123456789abcdef";

fn sets(extra: &[&'static str]) -> Vec<String> {
    let mut v = vec![
        format!("server.enroll_token={TOKEN}"),
        format!("agent.enroll_token={TOKEN}"),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Fills the file system holding `path` with it, then gives back `leave` bytes.
fn fill(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![7u8; 64 << 10];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    f.set_len(written.saturating_sub(leave)).expect("truncate");
}

fn cached(agent: &Node) -> u64 {
    agent
        .status()
        .and_then(|s| s.link.map(|l| l.cached))
        .unwrap_or(0)
}

#[test]
fn disk_full_on_a_server_keeps_records_on_the_agent_and_recovers_when_space_returns() {
    let site = Site::new(129);
    let disk = Tmpfs::mount(&site.dir().join("s"), "16m");
    let all = sets(&[]);
    let mut s = site.server("s", &refs(&all));
    let agent_sets = [refs(&all), FAST_AGENT.to_vec()].concat();
    let mut a = site.agent("a", &[&s], &agent_sets);
    s.start();
    a.start();
    a.wait_link("home", Some(&s));
    let (_, first) = a.send(50);
    wait_records(&[&s], &[("a", first)]);

    // The server's disk fills up while records keep coming.
    let filler = disk.path().join("filler");
    fill(&filler, 512 << 10);
    let sender = Sender::start(&a, 200);
    wait_until(WAIT, "the server to refuse records: disk full", || {
        s.log_text().contains("records not stored").then_some(())
    });
    sender.wait_more(2000);
    wait_until(WAIT, "records kept in the agent's cache", || {
        (cached(&a) > 1000).then_some(())
    });
    let log = s.log_text();
    assert!(
        log.contains("full"),
        "the error says the disk is full: {}",
        log.lines()
            .rfind(|l| l.contains("not stored"))
            .unwrap_or("")
    );
    assert!(
        s.status().is_some(),
        "the server keeps running and answering"
    );
    assert!(a.status().is_some(), "the agent keeps running");

    // Space returns: everything the agent holds is delivered, each record once.
    std::fs::remove_file(&filler).expect("free the space");
    let stats = sender.finish();
    wait_records(&[&s], &[("a", stats.last_seq)]);
    wait_until(WAIT, "the agent's cache drained", || {
        (cached(&a) == 0).then_some(())
    });
    a.stop();
    s.stop();
}

/// Holds an exclusive SQLite lock on `db` (another program on the store) until killed.
fn lock_store(db: &Path) -> Child {
    let script = format!(
        "import sqlite3, time\n\
         c = sqlite3.connect({db:?}, isolation_level=None, timeout=30)\n\
         c.execute('BEGIN EXCLUSIVE')\n\
         print('locked', flush=True)\n\
         time.sleep(3600)\n",
        db = db.display().to_string()
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 holding the lock");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 7];
    std::io::Read::read_exact(&mut out, &mut buf).expect("the lock taken");
    assert_eq!(&buf[..6], b"locked");
    child
}

#[test]
fn locked_store_on_a_server_keeps_records_on_the_agent_and_recovers_when_released() {
    let site = Site::new(130);
    let all = sets(&[]);
    let mut s = site.server("s", &refs(&all));
    let agent_sets = [refs(&all), FAST_AGENT.to_vec()].concat();
    let mut a = site.agent("a", &[&s], &agent_sets);
    s.start();
    a.start();
    a.wait_link("home", Some(&s));
    let (_, first) = a.send(50);
    wait_records(&[&s], &[("a", first)]);

    let mut lock = lock_store(&s.dir.join("store.db"));
    let sender = Sender::start(&a, 50);
    wait_until(WAIT, "the server to say its store is locked", || {
        s.log_text().contains("locked").then_some(())
    });
    sender.wait_more(500);
    assert!(cached(&a) > 0, "the agent keeps what was not stored");
    let _ = lock.kill();
    let _ = lock.wait();

    let stats = sender.finish();
    wait_records(&[&s], &[("a", stats.last_seq)]);
    wait_until(WAIT, "the agent's cache drained", || {
        (cached(&a) == 0).then_some(())
    });
    assert!(s.status().is_some(), "the server kept running");
}

#[test]
fn corrupt_store_on_a_server_is_a_clear_error_and_the_agent_keeps_its_records() {
    let site = Site::new(131);
    let all = sets(&[]);
    let mut s = site.server("s", &refs(&all));
    let agent_sets = [refs(&all), FAST_AGENT.to_vec()].concat();
    let mut a = site.agent("a", &[&s], &agent_sets);
    s.start();
    a.start();
    a.wait_link("home", Some(&s));
    let (_, first) = a.send(500);
    wait_records(&[&s], &[("a", first)]);

    // The store is damaged on disk (a bad disk, a stray write): every page after the first
    // overwritten. The server was stopped (its log checkpointed into the file) and is started
    // again on the damaged file.
    s.stop();
    let db = s.dir.join("store.db");
    let _ = std::fs::remove_file(s.dir.join("store.db-wal"));
    let _ = std::fs::remove_file(s.dir.join("store.db-shm"));
    let len = std::fs::metadata(&db).expect("store").len();
    let mut bytes = std::fs::read(&db).expect("store");
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("corrupt");
    assert!(len > 3 * 4096, "the records are in the file: {len} bytes");

    // The agent keeps its records while its server is gone.
    let (_, last) = a.send(300);
    let out = s.serve_once(Duration::from_secs(30)).expect("serve exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a corrupt store does not start: {stderr}"
    );
    assert!(
        stderr.contains("store.db") && (stderr.contains("malformed") || stderr.contains("corrupt")),
        "a clear error naming the store: {stderr}"
    );
    assert_eq!(
        std::fs::read(&db).expect("store"),
        bytes,
        "the damaged store is left for the operator, not overwritten"
    );
    assert!(
        cached(&a) >= 300,
        "the agent keeps what it could not deliver"
    );

    // The operator moves the damaged store aside: the server starts empty and the agent
    // delivers everything it still holds (what was acknowledged before the damage was on the
    // damaged disk: the operator restores it from a backup or the hot-standby peer).
    std::fs::rename(&db, s.dir.join("store.db.damaged")).expect("move aside");
    s.start();
    wait_until(WAIT, "the agent's cache delivered", || {
        let stored = s.records()?;
        let mine: Vec<u64> = stored
            .iter()
            .filter(|r| r.agent == "a")
            .map(|r| r.seq)
            .collect();
        (mine.len() as u64 >= 300 && mine.iter().max() == Some(&last)).then_some(())
    });
}
