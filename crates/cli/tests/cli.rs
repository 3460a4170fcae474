//! The `understudy` binary as scripts see it: arguments, exit codes (0 done, 1 refused, 2 bad usage
//! or bad configuration), `init`, configuration errors, and one standalone node end to end.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_understudy");

fn understudy(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("UNDERSTUDY_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run understudy")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

fn dir_arg(dir: &Path) -> String {
    dir.to_str().expect("utf-8 temp path").to_string()
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["events", "--help"],
        &["demo", "--help"],
    ] {
        assert_exit(&understudy(args), 0);
    }
    let help = stdout(&understudy(&["events", "--help"]));
    assert!(help.contains("#123") && help.contains("5m"), "{help}");
}

#[test]
fn bad_usage_exits_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["status", "--nonsense"],
        &["init", "--name", "n"],
        &[
            "init",
            "--name",
            "n",
            "--listen",
            "127.0.0.1:1",
            "--role",
            "boss",
        ],
        &[
            "init",
            "--name",
            "n",
            "--listen",
            "127.0.0.1:1",
            "--server",
            "http://a:1",
        ],
        &["pair", "add", "p", "--primary", "a"],
        &[
            "pair",
            "add",
            "p",
            "--primary",
            "a",
            "--secondary",
            "b",
            "--failover-after",
            "10",
        ],
        &[
            "pair",
            "add",
            "p",
            "--primary",
            "a",
            "--secondary",
            "b",
            "--switchback",
            "sometimes",
        ],
        &["role", "set"],
        &["role", "set", "--server", "maybe"],
        &["role", "set", "--failover", "tertiary"],
        &["check", "add", "c", "--kind", "tcp", "--target", "a:1"],
        &[
            "check", "add", "c", "--kind", "tcp", "--target", "a:1", "--agent", "a", "--pair", "p",
        ],
        &[
            "check", "add", "c", "--kind", "smtp", "--target", "a:1", "--agent", "a",
        ],
        &["cert", "generate", "--ip", "not-an-ip"],
        &["events", "--since", "yesterday"],
        &["events", "--since", "#abc"],
        &["records", "--limit", "many"],
        &["status", "--node", "https://127.0.0.1:1"],
        &["status", "--token", "abc"],
    ];
    for args in cases {
        let out = understudy(args);
        assert_exit(&out, 2);
        assert!(!stderr(&out).is_empty(), "{args:?}: no reason on stderr");
    }
}

#[test]
fn send_validates_its_records() {
    for (arg, expect) in [
        ("cpu", "NAME=VALUE"),
        ("=1", "no name"),
        ("cpu=high", "not a number"),
        ("cpu=", "not a number"),
        ("cpu=NaN", "not a finite number"),
    ] {
        let out = understudy(&["send", "ok=1", arg]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(expect), "{arg}: {}", stderr(&out));
    }
    assert_exit(&understudy(&["send"]), 2);
}

#[test]
fn init_creates_a_config_and_refuses_a_second_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let out = understudy(&[
        "init",
        "--data-dir",
        &d,
        "--name",
        "alpha",
        "--listen",
        "127.0.0.1:7499",
        "--set",
        "agent.heartbeat=200ms",
    ]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("fingerprint:"), "{text}");
    assert!(text.contains("https://127.0.0.1:7499"), "{text}");
    let config = std::fs::read_to_string(dir.join("config.toml")).expect("config written");
    assert!(config.contains("name = \"alpha\""), "{config}");
    assert!(config.contains("heartbeat = \"200ms\""), "{config}");
    assert!(dir.join("cert.pem").exists() && dir.join("admin.token").exists());

    let out = understudy(&[
        "init",
        "--data-dir",
        &d,
        "--name",
        "beta",
        "--listen",
        "127.0.0.1:7498",
    ]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
    let after = std::fs::read_to_string(dir.join("config.toml")).expect("config kept");
    assert_eq!(after, config, "a refused init changes nothing");

    // The data directory can also come from the environment.
    let env_dir = tmp.path().join("from-env");
    let out = Command::new(BIN)
        .args(["init", "--name", "gamma", "--listen", "127.0.0.1:7497"])
        .env("UNDERSTUDY_DATA_DIR", &env_dir)
        .output()
        .expect("run");
    assert_exit(&out, 0);
    assert!(env_dir.join("config.toml").exists());
}

#[test]
fn init_with_a_bad_setting_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = dir_arg(&tmp.path().join("node"));
    let out = understudy(&[
        "init",
        "--data-dir",
        &d,
        "--name",
        "a",
        "--listen",
        "127.0.0.1:7499",
        "--set",
        "agent.heartbeat=soon",
    ]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("agent.heartbeat"), "{}", stderr(&out));
    assert!(!tmp.path().join("node").join("config.toml").exists());
}

#[test]
fn config_errors_name_file_and_line_and_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("config.toml");
    std::fs::write(
        &path,
        "[node]\nname = \"x\"\n\n[agent]\nheartbaet = \"1s\"\n",
    )
    .expect("write");
    let d = dir_arg(tmp.path());
    for args in [
        vec!["serve", "--data-dir", d.as_str()],
        vec!["serve", "--config", path.to_str().expect("utf-8")],
    ] {
        let out = understudy(&args);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("config.toml:5:1:"), "{err}");
        assert!(err.contains("heartbaet"), "{err}");
    }

    std::fs::write(&path, "[node]\nname = \"x\"\nlisten = \"localhost\"\n").expect("write");
    let out = understudy(&["serve", "--data-dir", &d]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("config.toml:3:"), "{}", stderr(&out));

    let out = understudy(&["serve", "--data-dir", &dir_arg(&tmp.path().join("missing"))]);
    assert_exit(&out, 2);
}

#[test]
fn commands_against_a_stopped_node_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = dir_arg(tmp.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    assert_exit(
        &understudy(&["init", "--data-dir", &d, "--name", "a", "--listen", &listen]),
        0,
    );
    let out = understudy(&["status", "--data-dir", &d]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("no answer"), "{}", stderr(&out));

    // cert works on disk while the node is down.
    let shown = understudy(&["cert", "show", "--json", "--data-dir", &d]);
    assert_exit(&shown, 0);
    let before: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_exit(
        &understudy(&[
            "cert",
            "generate",
            "--dns",
            "demo.example",
            "--data-dir",
            &d,
        ]),
        0,
    );
    let after: serde_json::Value =
        serde_json::from_slice(&understudy(&["cert", "show", "--json", "--data-dir", &d]).stdout)
            .expect("json");
    assert_ne!(before["fingerprint"], after["fingerprint"]);
    assert!(after["sans"]
        .as_array()
        .expect("sans")
        .iter()
        .any(|s| s == "demo.example"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills the server even when an assertion fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_of(args: &[&str]) -> Option<serde_json::Value> {
    let out = understudy(args);
    if out.status.success() {
        serde_json::from_slice(&out.stdout).ok()
    } else {
        None
    }
}

#[test]
fn standalone_node_stores_what_it_is_sent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = dir_arg(tmp.path());
    let listen = format!("127.0.0.1:{}", free_port());
    assert_exit(
        &understudy(&[
            "init",
            "--data-dir",
            &d,
            "--name",
            "alpha",
            "--listen",
            &listen,
        ]),
        0,
    );
    let log = std::fs::File::create(tmp.path().join("log")).expect("log");
    let _server = Server(
        Command::new(BIN)
            .args(["serve", "--data-dir", &d])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("serve"),
    );

    let status = eventually("status", || {
        json_of(&["status", "--json", "--data-dir", &d])
    });
    assert_eq!(status["node"]["name"], "alpha", "{status}");

    // A standalone node's own agent may wait for acceptance (AG-9); accepting it is harmless.
    let _ = understudy(&["agent", "accept", "alpha", "--data-dir", &d]);
    let out = understudy(&["send", "a=1", "b=2", "--data-dir", &d]);
    assert_exit(&out, 0);

    let records = eventually("the records to be stored", || {
        let listed = json_of(&["records", "--json", "--data-dir", &d])?;
        let records = listed["records"].as_array()?.clone();
        (records.len() >= 2).then_some(records)
    });
    let names: Vec<(&str, f64)> = records
        .iter()
        .filter_map(|r| Some((r["name"].as_str()?, r["value"].as_f64()?)))
        .collect();
    assert_eq!(names, vec![("a", 1.0), ("b", 2.0)], "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r["agent"] == "alpha" && r["seq"].is_u64()),
        "{records:?}"
    );

    // Refusals by the node: unknown names exit 1 with the reason.
    let out = understudy(&["pair", "force-failover", "no-such-pair", "--data-dir", &d]);
    assert_exit(&out, 1);
    assert!(!stderr(&out).is_empty());
    let out = understudy(&["agent", "accept", "no-such-agent", "--data-dir", &d]);
    assert_exit(&out, 1);

    // PR-5: an action the engine's guard refuses exits 1 with exactly the sentence that
    // `status --json` showed for it (`pairs[].actions.*.reason`).
    let out = understudy(&[
        "pair",
        "add",
        "web",
        "--primary",
        "alpha",
        "--secondary",
        "ghost",
        "--switchback",
        "manual",
        "--data-dir",
        &d,
    ]);
    assert_exit(&out, 0);
    let actions = eventually("web active on alpha", || {
        let status = json_of(&["status", "--json", "--data-dir", &d])?;
        let pair = status["pairs"].as_array()?.first()?.clone();
        (pair["active"] == "primary").then(|| pair["actions"].clone())
    });
    for (command, action) in [("force-failover", "force_failover"), ("revert", "revert")] {
        let reason = actions[action]["reason"].as_str().expect("a reason");
        let out = understudy(&["pair", command, "web", "--data-dir", &d]);
        assert_exit(&out, 1);
        assert_eq!(stderr(&out).trim(), format!("error: {reason}"));
    }

    // A wrong token is refused as unauthorized.
    let fp = status["node"]["cert"]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let url = format!("https://{listen}#{fp}");
    let out = understudy(&["status", "--node", &url, "--token", "0000"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let token = std::fs::read_to_string(tmp.path().join("admin.token")).expect("token");
    let out = understudy(&["status", "--json", "--node", &url, "--token", token.trim()]);
    assert_exit(&out, 0);
}

// ----- issue 17 item 5: the demo's processes behave -----
// Unix signals and /proc: the Windows build (IN-3) is tried under Wine by tests/windows/run-wine.sh.
#[cfg(unix)]
mod in5 {
    use super::*;

    /// The pids of the demo's nodes, once site.json lists every one of them running.
    fn demo_pids(dir: &Path) -> Option<Vec<i32>> {
        let text = std::fs::read_to_string(dir.join("site.json")).ok()?;
        let site: serde_json::Value = serde_json::from_str(&text).ok()?;
        let nodes = site["nodes"].as_array()?;
        let pids: Vec<i32> = nodes
            .iter()
            .filter_map(|n| n["pid"].as_i64())
            .map(|p| p as i32)
            .collect();
        (pids.len() == nodes.len() && pids.len() == 7 && pids.iter().all(|p| running(*p)))
            .then_some(pids)
    }

    /// Alive and not a zombie (an orphan's zombie waits for whoever adopted it).
    fn running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    fn start_demo(dir: &Path, runtime: &Path) -> Child {
        Command::new(BIN)
            .args(["demo", "--fast", "--dir", &dir_arg(dir)])
            .env("XDG_RUNTIME_DIR", runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the demo")
    }

    fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(t) = f() {
                return t;
            }
            assert!(Instant::now() < deadline, "{what} within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closing the demo's terminal (SIGHUP) stops every node it started; a second demo while one
    /// runs says so in one line; a demo killed outright (SIGKILL) takes its nodes with it, so the
    /// next demo starts on the same addresses.
    #[test]
    fn in5_the_demos_nodes_stop_with_it_however_it_ends_and_one_demo_runs_at_a_time() {
        let runtime = tempfile::tempdir().expect("tempdir");
        let tmp = tempfile::tempdir().expect("tempdir");
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));

        let mut demo = start_demo(&one, runtime.path());
        let pids = wait_for(
            "the demo's 7 nodes running",
            Duration::from_secs(90),
            || demo_pids(&one),
        );
        let second = Command::new(BIN)
            .args(["demo", "--fast", "--dir", &dir_arg(&two)])
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdin(Stdio::null())
            .output()
            .expect("second demo");
        assert_exit(&second, 1);
        let err = stderr(&second);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("another demo is running (pid {})", demo.id())),
            "{err}"
        );
        assert!(
            !two.join("site.json").exists(),
            "the second demo started nothing"
        );

        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(demo.id() as i32, libc::SIGHUP) };
        let status = wait_for(
            "the demo to exit on SIGHUP",
            Duration::from_secs(60),
            || demo.try_wait().expect("wait"),
        );
        assert!(status.success(), "{status}");
        let mut out = String::new();
        std::io::Read::read_to_string(demo.stderr.as_mut().expect("stderr"), &mut out).ok();
        assert!(out.contains("SIGHUP: stopping every node"), "{out}");
        for pid in &pids {
            assert!(!running(*pid), "node {pid} outlived the demo");
        }

        let mut demo = start_demo(&one, runtime.path());
        let pids = wait_for(
            "the demo's 7 nodes running again",
            Duration::from_secs(90),
            || demo_pids(&one),
        );
        demo.kill().expect("SIGKILL the demo");
        demo.wait().expect("reap the demo");
        wait_for(
            "every node gone with its demo",
            Duration::from_secs(30),
            || pids.iter().all(|p| !running(*p)).then_some(()),
        );
    }
}
