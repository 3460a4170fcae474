//! PRODUCT.md §4 "disk full": a clear error, no acknowledged record lost, recovery when space
//! returns. The agent's data directory is a small tmpfs (issue 6: "a full disk under an agent's
//! cache"); its server goes away, so every record sent stays in the cache until the disk is full.

use std::path::{Path, PathBuf};
use std::process::Command;

use understudy_system_tests::*;

const SETS: &[&str] = &["server.enroll_token=df-token", "agent.enroll_token=df-token"];

/// A tmpfs mounted at a directory for the test's lifetime; unmounted on drop, also on panic.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "understudy-test"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (root, as in CI): mount said {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn bad_input_disk_full_under_the_agent_cache_loses_nothing_and_recovers() {
    let site = Site::new(66);
    let mut s = site.server("s", SETS);
    // The agent's whole data directory (store, certificate, log) on 4 MiB, 1 MiB of it taken by
    // a file the "operator" deletes later to give space back.
    let _disk = Tmpfs::mount(&site.dir().join("a"), "4m");
    let mut a = site.agent("a", &[&s], SETS);
    let filler = a.dir.join("filler");
    std::fs::write(&filler, vec![7u8; 1 << 20]).expect("filler");
    s.start();
    a.start();
    a.wait_link("home", Some(&s));
    let (_, mut accepted) = a.send(100);
    wait_records(&[&s], &[("a", accepted)]);

    // The server goes away: records pile up in the agent's cache until the disk is full.
    s.kill9();
    let refusal = loop {
        match a.try_send(500) {
            Ok((_, last)) => accepted = last,
            Err(e) => break e,
        }
        assert!(accepted < 1_000_000, "the disk never filled up");
    };
    eprintln!("[disk full] {accepted} records accepted, then: {refusal}");
    assert!(refusal.contains("disk full"), "a clear error names the cause: {refusal}");
    assert!(accepted > 1_000, "the cache held only {accepted} records before the disk filled");
    // The agent keeps running and answering; a second attempt is refused the same way.
    let status = a.status_now();
    assert!(status["link"]["cached"].as_u64().is_some(), "{status}");
    assert!(a.try_send(500).is_err_and(|e| e.contains("disk full")), "the same batch is refused again");

    // Space returns: the operator deletes a file. New records are accepted again...
    std::fs::remove_file(&filler).expect("removing the filler");
    let (_, last) = wait_ok(WAIT, "a send accepted after space returned", || a.try_send(10));
    assert_eq!(last, accepted + 10, "sequence numbers continue without a gap");
    accepted = last;
    // ...and once the server is back, every accepted record is stored exactly once.
    s.start();
    a.wait_link("home", Some(&s));
    wait_records(&[&s], &[("a", accepted)]);
    wait_until(WAIT, "the agent's cache drained", || (a.status()?["link"]["cached"].as_u64()? == 0).then_some(()));
}
