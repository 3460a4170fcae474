//! The whole-system test harness: real `understudy` processes on loopback addresses, driven
//! through the CLI (PRODUCT.md §3) the way an operator or a script drives them, with kill -9,
//! SIGSTOP/SIGCONT and link cuts (a relay the test controls).
//!
//! Rules for tests built on it: wait for conditions ([`wait_until`]) with generous timeouts and
//! never assert on elapsed time (timings are benchmarks, not tests); give each test its own
//! `127.0.N.x` network ([`Site::new`]) so tests run in parallel; every child is killed when its
//! [`Node`] is dropped, also on panic, and a failing test keeps its directory and prints the
//! tail of every node's log.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};
pub use understudy_api::event::Events;
pub use understudy_api::status::{RecordView, Records};
pub use understudy_api::{AgentView, EventView, LinkView, PairStatus, Status};

pub mod netlab;
mod prom;
pub use prom::{expected, wait_forwarded, NodeExporter, SampleKey, Scrape, Scrapes, Vm};
use understudy_node::config::{Config, CONFIG_FILE};

/// The generous default for anything a test waits for: a slow shared CI machine must not fail a
/// test whose product settings are sub-second.
pub const WAIT: Duration = Duration::from_secs(60);

/// The fast timing profile (sub-second failover), the same one `demo --fast` uses.
pub use understudy_api::defaults::fast::{AGENT as FAST_AGENT, SERVER as FAST_SERVER};

// ---------------------------------------------------------------------------------------------
// The binary under test.

/// The `understudy` binary: `$UNDERSTUDY_BIN`, else `target/<profile>/understudy` beside this
/// test executable (`target/<profile>/deps/<test>`).
pub fn understudy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("UNDERSTUDY_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("understudy");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p understudy-cli` first (or set UNDERSTUDY_BIN)",
        bin.display()
    );
    bin
}

/// Runs `understudy ARGS`, killing it if it has not finished within `timeout` (a SIGSTOPped
/// node must not hang the test). `None` when it had to be killed.
pub fn run_understudy(args: &[&str], timeout: Duration) -> Option<Output> {
    let mut child = Command::new(understudy_bin())
        .args(args)
        .env_remove("UNDERSTUDY_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting understudy");
    // Read both pipes on threads so a large `records --json` cannot block the child.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

// ---------------------------------------------------------------------------------------------
// Waiting.

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`. The only way a
/// test waits: no fixed sleeps before asserting.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {}s waiting for {what}",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`wait_until`], for conditions that can say why they do not hold yet; the last reason is
/// in the panic message.
/// Holds for a while: negative conditions ("does not go back on its own") are observed over a
/// window, polling, not assumed after a sleep.
pub fn holds_for(window: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        if let Err(why) = f() {
            panic!("{what} stopped holding: {why}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn wait_ok<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(why) => assert!(
                Instant::now() < deadline,
                "timed out after {}s waiting for {what}: {why}",
                timeout.as_secs()
            ),
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

// ---------------------------------------------------------------------------------------------
// Sites and nodes.

/// At most this many sites run at once in one test binary (2 shared cores: too many processes
/// with sub-second heartbeats would only measure the scheduler). `UNDERSTUDY_TEST_SITES`
/// overrides it.
fn site_slots() -> &'static (Mutex<usize>, Condvar) {
    static SLOTS: std::sync::OnceLock<(Mutex<usize>, Condvar)> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::env::var("UNDERSTUDY_TEST_SITES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3);
        (Mutex::new(n), Condvar::new())
    })
}

struct SiteSlot;

impl SiteSlot {
    fn acquire() -> SiteSlot {
        let (lock, cvar) = site_slots();
        let mut free = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = cvar.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SiteSlot
    }
}

impl Drop for SiteSlot {
    fn drop(&mut self) {
        let (lock, cvar) = site_slots();
        *lock.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cvar.notify_one();
    }
}

/// One test's site: a directory and the loopback network `127.0.N.0/24`. Declare it before the
/// nodes so it is dropped after them (it prints their logs when the test failed).
pub struct Site {
    dir: Option<tempfile::TempDir>,
    net: u8,
    next_host: AtomicU8,
    logs: Mutex<Vec<(String, PathBuf)>>,
    _slot: SiteSlot,
}

impl Site {
    /// `net` is this test's own third octet: no two tests may share it.
    pub fn new(net: u8) -> Site {
        let slot = SiteSlot::acquire();
        let dir = tempfile::Builder::new()
            .prefix(&format!("understudy-system-{net}-"))
            .tempdir()
            .expect("a temporary directory");
        Site {
            dir: Some(dir),
            net,
            next_host: AtomicU8::new(1),
            logs: Mutex::new(Vec::new()),
            _slot: slot,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the site directory").path()
    }

    /// A listener of the test's own on a fresh `127.0.N.H`, with its `IP:PORT`: bound once and
    /// kept, so no other socket can take the port between choosing it and binding it (as with
    /// [`Site::addr`], which only a child process's address should use).
    pub fn listener(&self) -> (TcpListener, String) {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(host < 255, "too many addresses in one site");
        let ip = format!("127.0.{}.{host}", self.net);
        let listener = TcpListener::bind((ip.as_str(), 0)).expect("binding a loopback address");
        let port = listener.local_addr().expect("local address").port();
        (listener, format!("{ip}:{port}"))
    }

    /// A fresh `127.0.N.H:PORT` with a port that was free a moment ago.
    pub fn addr(&self) -> String {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(host < 255, "too many addresses in one site");
        let ip = format!("127.0.{}.{host}", self.net);
        let listener = TcpListener::bind((ip.as_str(), 0)).expect("binding a loopback address");
        let port = listener.local_addr().expect("local address").port();
        format!("{ip}:{port}")
    }

    /// `understudy init --data-dir <site>/NAME --name NAME --listen <fresh address> --role ROLE
    /// [--server URL]... [--set K=V]...`; the node is not started.
    pub fn init(&self, name: &str, role: &str, servers: &[String], sets: &[&str]) -> Node {
        self.init_at(name, role, &self.addr(), servers, sets)
    }

    /// Like [`Site::init`] with a given `IP:PORT` to listen on (an address in a network
    /// namespace, see [`netlab`]).
    pub fn init_at(
        &self,
        name: &str,
        role: &str,
        listen: &str,
        servers: &[String],
        sets: &[&str],
    ) -> Node {
        let mut extra = vec!["--role", role];
        for s in servers {
            extra.extend(["--server", s.as_str()]);
        }
        let (dir, listen, args, out) = self.run_init(name, listen, &extra, sets);
        assert!(
            out.status.success(),
            "understudy {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        self.node_in(name, dir, listen)
    }

    /// `understudy init --data-dir <site>/NAME --name NAME --listen <fresh address> --join
    /// INVITATION [--set K=V]...` (issue 14 item 3): its output, and the node when it succeeded.
    pub fn join(&self, name: &str, invitation: &str, sets: &[&str]) -> (Output, Option<Node>) {
        let (dir, listen, _, out) =
            self.run_init(name, &self.addr(), &["--join", invitation], sets);
        let node = out
            .status
            .success()
            .then(|| self.node_in(name, dir, listen.clone()));
        (out, node)
    }

    /// `understudy init --data-dir <site>/NAME --name NAME --listen LISTEN EXTRA... [--set
    /// K=V]...`: the directory, the address, the arguments and the output.
    fn run_init(
        &self,
        name: &str,
        listen: &str,
        extra: &[&str],
        sets: &[&str],
    ) -> (PathBuf, String, Vec<String>, Output) {
        let dir = self.dir().join(name);
        let dir_s = dir.display().to_string();
        let mut args: Vec<&str> = vec![
            "init",
            "--data-dir",
            &dir_s,
            "--name",
            name,
            "--listen",
            listen,
        ];
        args.extend_from_slice(extra);
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = run_understudy(&args, Duration::from_secs(30)).expect("init finished");
        let args = args.iter().map(|a| a.to_string()).collect();
        (dir, listen.to_string(), args, out)
    }

    /// The [`Node`] of an initialised data directory.
    fn node_in(&self, name: &str, dir: PathBuf, listen: String) -> Node {
        let dir_s = dir.display().to_string();
        let shown = run_understudy(
            &["cert", "show", "--json", "--data-dir", &dir_s],
            Duration::from_secs(30),
        )
        .expect("cert show");
        let cert: Value = serde_json::from_slice(&shown.stdout).expect("cert show --json is JSON");
        let fingerprint = cert["fingerprint"]
            .as_str()
            .expect("cert.fingerprint")
            .to_string();
        let log = dir.join("serve.log");
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), log.clone()));
        Node {
            name: name.to_string(),
            dir,
            listen,
            fingerprint,
            log,
            child: None,
            netns: None,
            env: Vec::new(),
        }
    }

    /// A server of role `server` (no agent role).
    pub fn server(&self, name: &str, sets: &[&str]) -> Node {
        self.init(name, "server", &[], sets)
    }

    /// An agent reporting to `servers`, home first, each pinned by fingerprint.
    pub fn agent(&self, name: &str, servers: &[&Node], sets: &[&str]) -> Node {
        let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
        self.init(name, "agent", &urls, sets)
    }

    /// Two servers in hot standby (HS-1): `s1` primary, `s2` secondary, each naming the other as
    /// its peer at `peer_of_s1` / `peer_of_s2` (their own addresses unless a relay stands
    /// between). Neither is started.
    pub fn hot_standby(&self, sets: &[&str], relays: Option<(&str, &str)>) -> (Node, Node) {
        let s1 = self.server("s1", sets);
        let s2 = self.server("s2", sets);
        let (to_s2, to_s1) = match relays {
            Some((to_s2, to_s1)) => (to_s2.to_string(), to_s1.to_string()),
            None => (s2.listen.clone(), s1.listen.clone()),
        };
        s1.configure(&[
            &format!("failover.peer=https://{to_s2}#{}", s2.fingerprint),
            "failover.mode=primary",
        ]);
        s2.configure(&[
            &format!("failover.peer=https://{to_s1}#{}", s1.fingerprint),
            "failover.mode=secondary",
        ]);
        (s1, s2)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, log) in self.logs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "---- {name}: last {} lines of {} ----\n{}",
                tail.len(),
                log.display(),
                tail.join("\n")
            );
        }
        if let Some(dir) = self.dir.take() {
            eprintln!("---- the site is kept in {} ----", dir.keep().display());
        }
    }
}

/// One node: its data directory, address, certificate fingerprint and (when started) process.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    /// `IP:PORT`
    pub listen: String,
    pub fingerprint: String,
    log: PathBuf,
    child: Option<Child>,
    /// The network namespace `serve` runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Extra environment for `serve` (a faked wall clock, [`Node::fake_clock`]).
    pub env: Vec<(String, String)>,
}

impl Node {
    /// `https://IP:PORT#FINGERPRINT`, as an agent's `--server` names it.
    pub fn url(&self) -> String {
        format!("https://{}#{}", self.listen, self.fingerprint)
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// Changes `config.toml` (the node should be stopped): `SECTION.KEY=VALUE` as `--set` reads it.
    pub fn configure(&self, sets: &[&str]) {
        let path = self.dir.join(CONFIG_FILE);
        let mut config = Config::load(&path).expect("loading config.toml");
        for set in sets {
            config
                .apply_set(set)
                .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        }
        config.save(&path).expect("saving config.toml");
    }

    /// `understudy serve --data-dir D` in the background, output appended to `serve.log`; returns
    /// once the admin API answers.
    pub fn start(&mut self) -> &mut Node {
        self.spawn();
        let name = self.name.clone();
        wait_until(WAIT, &format!("{name}'s admin API to answer"), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{name} exited with {status} while starting; see {}",
                        self.log.display()
                    );
                }
            }
            self.status()
        });
        self
    }

    /// Starts the process without waiting for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running already", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the log");
        let _ = writeln!(&log, "==== understudy serve ({}) ====", self.name);
        // `ip netns exec` enters the namespace and execs the binary: the child's pid is the
        // node's, so signals reach it directly.
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(understudy_bin());
                c
            }
            None => Command::new(understudy_bin()),
        };
        let child = command
            .args(["serve", "--data-dir", &self.dir_arg()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting understudy serve");
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("the node is not running")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// kill -9: the process dies at once, wherever it was.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{} did not stop within 20s of SIGTERM", self.name);
    }

    /// Runs `serve` (from its next start) under libfaketime with its wall clock offset by what
    /// `offset_file` says (`+0`, `+1h`, `-1h`; re-read every second), its monotonic clock left
    /// alone: the step of an NTP correction or an operator's `date -s`, for this process only.
    /// Needs the `faketime` package (scripts/packages.txt).
    pub fn fake_clock(&mut self, offset_file: &Path) {
        const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
        assert!(
            Path::new(LIB).exists(),
            "{LIB} is missing: install the faketime package (scripts/setup.sh)"
        );
        self.env = vec![
            ("LD_PRELOAD".into(), LIB.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                offset_file.display().to_string(),
            ),
            ("FAKETIME_CACHE_DURATION".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_DONT_RESET".into(), "1".into()),
        ];
    }

    /// SIGSTOP: the process is frozen, its sockets stay open (a hung machine).
    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// `understudy serve` once in the foreground, for tests of start-up errors.
    pub fn serve_once(&self, timeout: Duration) -> Option<Output> {
        run_understudy(&["serve", "--data-dir", &self.dir_arg()], timeout)
    }

    /// `understudy --data-dir D ARGS`, killed after 15 s.
    pub fn cli(&self, args: &[&str]) -> Output {
        let dir = self.dir_arg();
        let mut all = vec!["--data-dir", dir.as_str()];
        all.extend_from_slice(args);
        run_understudy(&all, Duration::from_secs(15)).unwrap_or_else(|| {
            panic!(
                "understudy {} on {} did not finish within 15s",
                args.join(" "),
                self.name
            )
        })
    }

    /// [`Node::cli`] that must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "understudy {} on {} exited {:?}: {}",
            args.join(" "),
            self.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command's JSON output, or `None` when it failed (the node is down, or busy).
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        self.try_json_within(args, Duration::from_secs(10))
    }

    /// [`Node::try_json`] with the command killed after `timeout`.
    pub fn try_json_within(&self, args: &[&str], timeout: Duration) -> Option<Value> {
        let dir = self.dir_arg();
        let mut all = vec!["--data-dir", dir.as_str()];
        all.extend_from_slice(args);
        let out = run_understudy(&all, timeout)?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `pair add NAME --primary PRIMARY --secondary SECONDARY MORE...` on this server, which must
    /// accept it; returns its answer.
    pub fn add_pair(&self, name: &str, primary: &str, secondary: &str, more: &[&str]) -> String {
        let mut args = vec![
            "pair",
            "add",
            name,
            "--primary",
            primary,
            "--secondary",
            secondary,
        ];
        args.extend_from_slice(more);
        self.cli_ok(&args)
    }

    /// A command's `--json` answer read as the admin API's typed answer `T`, or `None` when the
    /// command failed (the node is down, or busy). An answer that does not read as `T` panics:
    /// a change of the wire shape in crates/api must fail the tests, not time them out. `read`
    /// is `serde_json::from_value`.
    pub fn typed<T>(
        &self,
        args: &[&str],
        timeout: Duration,
        read: fn(Value) -> serde_json::Result<T>,
    ) -> Option<T> {
        let v = self.try_json_within(args, timeout)?;
        Some(read(v.clone()).unwrap_or_else(|e| {
            panic!(
                "understudy {} on {} answered JSON that is not the admin API's type ({e}): {v}",
                args.join(" "),
                self.name
            )
        }))
    }

    /// `status --json` as the admin API's typed answer, or `None` when the node does not answer.
    pub fn status(&self) -> Option<Status> {
        self.typed(
            &["status", "--json"],
            Duration::from_secs(10),
            serde_json::from_value,
        )
    }

    /// `status --json` that must answer.
    pub fn status_now(&self) -> Status {
        wait_until(WAIT, &format!("{}'s status", self.name), || self.status())
    }

    /// The agent role's link (`status.link`), or `None` when the node does not answer.
    pub fn link(&self) -> Option<LinkView> {
        self.status()?.link
    }

    /// The agent role's link, which must be there.
    pub fn link_now(&self) -> LinkView {
        self.status_now()
            .link
            .unwrap_or_else(|| panic!("{} has no agent link in its status", self.name))
    }

    /// The agent link's state (`link.state`: home, standby, staged, blackout, connecting).
    pub fn link_state(&self) -> Option<String> {
        self.status()?.link.map(|l| l.state)
    }

    /// Waits until `link.state` is `state` and, when given, `link.server` names `server`.
    pub fn wait_link(&self, state: &str, server: Option<&Node>) -> Status {
        let what = format!(
            "{}'s link to be {state}{}",
            self.name,
            server
                .map(|s| format!(" on {}", s.name))
                .unwrap_or_default()
        );
        wait_ok(WAIT, &what, || {
            let status = self.status().ok_or("no status")?;
            let link = status.link.as_ref().ok_or("no link (not an agent)")?;
            let on = link.server.as_deref().unwrap_or("");
            let right_server = server.is_none_or(|s| on.contains(&s.listen));
            if link.state == state && right_server {
                Ok(status)
            } else {
                Err(format!("link is {link:?}"))
            }
        })
    }

    /// `node.failover.state` (active, standby, …) and epoch.
    pub fn failover(&self) -> Option<(String, u64)> {
        let f = self.status()?.node.failover;
        Some((f.state, f.epoch))
    }

    pub fn wait_failover_state(&self, state: &str) -> u64 {
        wait_ok(
            WAIT,
            &format!("{} to be {state}", self.name),
            || match self.failover() {
                Some((s, epoch)) if s == state => Ok(epoch),
                other => Err(format!("{other:?}")),
            },
        )
    }

    /// One pair as `status --json` shows it on this server.
    /// Waits until this server has heard its hot-standby peer answer as `state` (HS-8: an
    /// ACTIVE hands over on a stop only to a peer it has heard as STANDBY).
    pub fn wait_peer_state(&self, state: &str) {
        wait_ok(
            WAIT,
            &format!("{} to hear its peer as {state}", self.name),
            || match self.status().and_then(|s| s.node.failover.peer_state) {
                Some(p) if p == state => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }

    /// `check add NAME --kind tcp --target 127.0.0.1:9 --agent AGENT` (a port nothing answers).
    pub fn add_tcp_check(&self, name: &str, agent: &str) -> String {
        self.cli_ok(&[
            "check",
            "add",
            name,
            "--kind",
            "tcp",
            "--target",
            "127.0.0.1:9",
            "--agent",
            agent,
        ])
    }

    pub fn pair(&self, name: &str) -> Option<PairStatus> {
        self.status()?.pairs.into_iter().find(|p| p.name == name)
    }

    /// Waits until `pairs[name]` satisfies `f`; returns it.
    pub fn wait_pair(&self, name: &str, what: &str, f: impl Fn(&PairStatus) -> bool) -> PairStatus {
        wait_ok(
            WAIT,
            &format!("pair {name} on {}: {what}", self.name),
            || {
                let p = self.pair(name).ok_or("no such pair (or no status)")?;
                if f(&p) {
                    Ok(p)
                } else {
                    Err(format!("pair is {p:?}"))
                }
            },
        )
    }

    /// One agent as this server lists it in `status --json`.
    pub fn agent_entry(&self, name: &str) -> Option<AgentView> {
        self.status()?.agents.into_iter().find(|a| a.name == name)
    }

    /// `events --json`, those with `code` (all of them when `code` is empty).
    pub fn events(&self, code: &str) -> Vec<EventView> {
        let Some(Events { events }) = self.typed(
            &["events", "--json"],
            Duration::from_secs(10),
            serde_json::from_value,
        ) else {
            return Vec::new();
        };
        events
            .into_iter()
            .filter(|e| code.is_empty() || e.code == code)
            .collect()
    }

    pub fn wait_event(&self, code: &str, f: impl Fn(&EventView) -> bool) -> EventView {
        wait_ok(WAIT, &format!("a {code} event on {}", self.name), || {
            let events = self.events(code);
            events
                .iter()
                .find(|e| f(e))
                .cloned()
                .ok_or_else(|| format!("{code} events: {events:?}"))
        })
    }

    /// `send NAME=VALUE...` with `n` records; returns their (first, last) sequence numbers.
    pub fn send(&self, n: usize) -> (u64, u64) {
        let out = self
            .try_send(n)
            .unwrap_or_else(|e| panic!("send on {}: {e}", self.name));
        out
    }

    pub fn try_send(&self, n: usize) -> Result<(u64, u64), String> {
        let args: Vec<String> = (0..n).map(|i| format!("m{}={i}", i % 7)).collect();
        let mut all = vec!["send"];
        all.extend(args.iter().map(String::as_str));
        let dir = self.dir_arg();
        let mut full = vec!["--data-dir", dir.as_str()];
        full.extend(all);
        let out = run_understudy(&full, Duration::from_secs(10)).ok_or("send did not finish")?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        parse_seq_range(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| "no seq range in send's answer".into())
    }

    /// `records --json` of this server: every stored record.
    /// A fault suite's hundreds of thousands of records take a while on a loaded machine: the
    /// CLI's own 30 s limit applies, not the 10 s of other commands.
    pub fn records(&self) -> Option<Vec<RecordView>> {
        let Records { records } = self.typed(
            &["records", "--json"],
            Duration::from_secs(45),
            serde_json::from_value,
        )?;
        Some(records)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too; nothing is left running after a test.
        self.kill9();
    }
}

/// `handed 5 records to the agent (seq 11..15)` → (11, 15).
fn parse_seq_range(text: &str) -> Option<(u64, u64)> {
    let inner = text.split("(seq ").nth(1)?.split(')').next()?;
    let (a, b) = inner.split_once("..")?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Load: an agent sending while faults happen.

/// A background loop of `send` calls of `batch` records each on one agent, until stopped.
pub struct Sender {
    stop: Arc<AtomicBool>,
    sent_upto: Arc<AtomicU64>,
    handle: Option<JoinHandle<SendStats>>,
}

#[derive(Debug, Default, Clone)]
pub struct SendStats {
    pub ok_calls: u64,
    pub failed_calls: u64,
    /// The highest sequence number a successful `send` reported.
    pub last_seq: u64,
}

impl Sender {
    pub fn start(agent: &Node, batch: usize) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let sent_upto = Arc::new(AtomicU64::new(0));
        let probe = NodeRef {
            name: agent.name.clone(),
            dir: agent.dir.clone(),
        };
        let (stop2, upto2) = (stop.clone(), sent_upto.clone());
        let handle = std::thread::spawn(move || {
            let mut stats = SendStats::default();
            while !stop2.load(Ordering::Relaxed) {
                match probe.send(batch) {
                    Ok((_, last)) => {
                        stats.ok_calls += 1;
                        stats.last_seq = stats.last_seq.max(last);
                        upto2.store(stats.last_seq, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.failed_calls += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            stats
        });
        Sender {
            stop,
            sent_upto,
            handle: Some(handle),
        }
    }

    /// The highest sequence number handed to the agent so far.
    pub fn sent_upto(&self) -> u64 {
        self.sent_upto.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more records than now have been handed over.
    pub fn wait_more(&self, n: u64) {
        let target = self.sent_upto() + n;
        wait_until(
            WAIT,
            &format!("the sender to hand over record {target}"),
            || (self.sent_upto() >= target).then_some(()),
        );
    }

    pub fn finish(mut self) -> SendStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("the sender thread")
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the sender thread needs of a node.
struct NodeRef {
    #[allow(dead_code)]
    name: String,
    dir: PathBuf,
}

impl NodeRef {
    fn send(&self, n: usize) -> Result<(u64, u64), String> {
        let args: Vec<String> = (0..n).map(|i| format!("load{}={i}", i % 5)).collect();
        let dir = self.dir.display().to_string();
        let mut full = vec!["--data-dir", dir.as_str(), "send"];
        full.extend(args.iter().map(String::as_str));
        let out = run_understudy(&full, Duration::from_secs(10)).ok_or("send did not finish")?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        parse_seq_range(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| "no seq range".into())
    }
}

// ---------------------------------------------------------------------------------------------
// The record checker (AG-2: every record stored exactly once).

/// The `(agent, seq)`s one store holds, by agent; `DUPLICATE` when it holds one twice (every
/// store holds each at most once, AG-2).
fn store_seqs(store: &Node) -> Result<BTreeMap<String, BTreeSet<u64>>, String> {
    let records = store
        .records()
        .ok_or_else(|| format!("{} did not list its records", store.name))?;
    let mut by_agent: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for r in &records {
        let (agent, seq) = (r.agent.clone(), r.seq);
        if !by_agent.entry(agent.clone()).or_default().insert(seq) {
            return Err(format!(
                "DUPLICATE: {} stores ({agent}, {seq}) twice",
                store.name
            ));
        }
    }
    Ok(by_agent)
}

/// Whether `have` is exactly `1..=n`.
fn exactly(agent: &str, have: &BTreeSet<u64>, n: u64, whose: &str) -> Result<(), String> {
    let missing: Vec<u64> = (1..=n).filter(|s| !have.contains(s)).collect();
    let extra: Vec<u64> = have.iter().copied().filter(|s| *s > n || *s == 0).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{agent}: {} of 1..={n} stored {whose}; missing {} (first {:?}); unexpected {:?}",
        have.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        &extra[..extra.len().min(10)]
    ))
}

/// Checks, for each `(agent, n)`, that the sequence numbers `1..=n` are stored exactly once
/// across `stores`: each store holds an `(agent, seq)` at most once, the union holds every one of
/// `1..=n` and nothing beyond. Pass the acting server alone for a hot-standby pair (it holds
/// everything), or the home and standby servers of independent servers.
pub fn check_records(stores: &[&Node], expected: &[(&str, u64)]) -> Result<(), String> {
    let mut union: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for store in stores {
        for (agent, seqs) in store_seqs(store)? {
            union.entry(agent).or_default().extend(seqs);
        }
    }
    for (agent, n) in expected {
        let have = union.get(*agent).cloned().unwrap_or_default();
        exactly(agent, &have, *n, "across the stores")?;
    }
    Ok(())
}

/// AG-2 across independent servers: `home` (the agents' home server) holds every one of `1..=n`
/// of each `(agent, n)` exactly once by itself; every store in `home` and `standbys` holds each
/// `(agent, seq)` at most once; and what a standby of another site holds of these agents is
/// marked `taken_for` (their home's URL as the agent names it). Returns how many records each standby holds for them.
pub fn check_home_records(
    home: &Node,
    standbys: &[&Node],
    expected: &[(&str, u64)],
) -> Result<Vec<u64>, String> {
    let at_home = store_seqs(home)?;
    for (agent, n) in expected {
        let have = at_home.get(*agent).cloned().unwrap_or_default();
        exactly(agent, &have, *n, &format!("at home on {}", home.name))?;
    }
    let mut taken = Vec::new();
    for standby in standbys {
        store_seqs(standby)?;
        let records = standby
            .records()
            .ok_or_else(|| format!("{} did not list its records", standby.name))?;
        let mut n = 0;
        for r in &records {
            if !expected.iter().any(|(a, _)| r.agent == *a) {
                continue;
            }
            n += 1;
            if r.taken_for.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "{} holds a record not marked as taken for its home: {r:?}",
                    standby.name
                ));
            }
        }
        taken.push(n);
    }
    Ok(taken)
}

/// Waits until [`check_home_records`] holds.
pub fn wait_home_records(home: &Node, standbys: &[&Node], expected: &[(&str, u64)]) -> Vec<u64> {
    wait_ok(WAIT, "home complete, every record exactly once", || {
        check_home_records(home, standbys, expected)
    })
}

/// Waits (the agents flush their caches) until [`check_records`] holds.
pub fn wait_records(stores: &[&Node], expected: &[(&str, u64)]) {
    wait_ok(WAIT, "every record stored exactly once", || {
        check_records(stores, expected)
    });
}

// ---------------------------------------------------------------------------------------------
// A link the test can cut: a TCP relay.

/// Forwards TCP connections from `listen` to `target` until cut. While cut it drops every
/// forwarded connection and closes new ones at once (a partition, seen as an unreachable peer).
pub struct Relay {
    pub listen: String,
    /// Delay and jitter added to every chunk forwarded, in ms (`base << 32 | jitter`).
    delay: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(listen: &str, target: &str) -> Relay {
        let listener = TcpListener::bind(listen).expect("binding the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let delay = Arc::new(AtomicU64::new(0));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (cut2, stop2, live2, target, delay2) = (
            cut.clone(),
            stop.clone(),
            live.clone(),
            target.to_string(),
            delay.clone(),
        );
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let (inbound, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                if cut2.load(Ordering::Relaxed) {
                    drop(inbound);
                    continue;
                }
                let _ = inbound.set_nonblocking(false);
                let Ok(outbound) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                {
                    let mut live = live2.lock().unwrap_or_else(|p| p.into_inner());
                    live.retain(|s| s.peer_addr().is_ok());
                    for s in [&inbound, &outbound] {
                        if let Ok(c) = s.try_clone() {
                            live.push(c);
                        }
                    }
                }
                for (mut from, mut to) in [
                    (
                        inbound.try_clone().expect("clone"),
                        outbound.try_clone().expect("clone"),
                    ),
                    (outbound, inbound),
                ] {
                    let delay = delay2.clone();
                    std::thread::spawn(move || {
                        forward(&mut from, &mut to, &delay);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            listen: listen.to_string(),
            delay,
            cut,
            live,
            stop,
        }
    }

    /// Delays every chunk by `base` ± `jitter` (uniform); the byte order of each stream is kept,
    /// as TCP keeps it. `(0, 0)` forwards at once again.
    pub fn set_delay(&self, base: Duration, jitter: Duration) {
        let (b, j) = (
            base.as_millis() as u64,
            jitter.as_millis().min(base.as_millis()) as u64,
        );
        self.delay.store((b << 32) | j, Ordering::Relaxed);
    }

    /// Partition: drop every forwarded connection and refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for s in self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` chunk by chunk, sleeping the relay's current delay ± jitter before
/// each write (one thread per direction, so the order within the stream is kept).
fn forward(from: &mut TcpStream, to: &mut TcpStream, delay: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let d = delay.load(Ordering::Relaxed);
        let (base, jitter) = (d >> 32, d & 0xFFFF_FFFF);
        if base > 0 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let offset = if jitter > 0 {
                rng % (2 * jitter + 1)
            } else {
                0
            };
            std::thread::sleep(Duration::from_millis(base + offset - jitter));
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

// ---------------------------------------------------------------------------------------------
// A hostile or lying `understudy/1` server the test controls.

/// A frame as the node writes it (4-byte big-endian length, then JSON): what [`FakeServer`]
/// answers are made of, so a test can also answer bytes no real node would send.
pub fn frame_of(message: &understudy_node::wire::ToAgent) -> Vec<u8> {
    let payload = serde_json::to_vec(message).expect("json");
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

/// A stand-in for a server (a fake hot-standby peer, a broken or hostile home) at `listen`,
/// presenting `identity`'s certificate. Every frame a client sends goes to `answer` with the
/// client's certificate fingerprint; the bytes it returns are written back as they are (an
/// empty answer closes the connection). Stops on drop.
pub struct FakeServer {
    /// Frames received, over all connections.
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type Answer = dyn Fn(&understudy_node::wire::ToServer, &str) -> Vec<u8> + Send + Sync;

impl FakeServer {
    pub fn start(
        listen: &str,
        identity: Arc<understudy_node::tls::NodeIdentity>,
        answer: impl Fn(&understudy_node::wire::ToServer, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind(listen).expect("binding the fake server");
        listener.set_nonblocking(true).expect("nonblocking");
        let config = understudy_node::tls::server_config(identity).expect("TLS server config");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let answer: Arc<Answer> = Arc::new(answer);
        let (stop2, received2) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            let rt = rt();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                while !stop2.load(Ordering::Relaxed) {
                    let Ok(Ok((tcp, _))) =
                        tokio::time::timeout(Duration::from_millis(100), listener.accept()).await
                    else {
                        continue;
                    };
                    let (acceptor, answer, received) =
                        (acceptor.clone(), answer.clone(), received2.clone());
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let Ok(Ok(mut tls)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                                .await
                        else {
                            return;
                        };
                        let client = understudy_node::tls::peer_fingerprint(tls.get_ref().1)
                            .unwrap_or_default();
                        while let Ok(Ok(Some(msg))) =
                            tokio::time::timeout(
                                Duration::from_secs(30),
                                understudy_node::frame::read_frame::<
                                    understudy_node::wire::ToServer,
                                    _,
                                >(&mut tls),
                            )
                            .await
                        {
                            received.fetch_add(1, Ordering::Relaxed);
                            let bytes = answer(&msg, &client);
                            if bytes.is_empty()
                                || tls.write_all(&bytes).await.is_err()
                                || tls.flush().await.is_err()
                            {
                                break;
                            }
                        }
                        let _ = tls.shutdown().await;
                    });
                }
            });
        });
        FakeServer {
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until `n` more frames than `since` were received.
    pub fn wait_received(&self, since: u64, n: u64, what: &str) {
        wait_until(WAIT, what, || {
            (self.received.load(Ordering::Relaxed) >= since + n).then_some(())
        });
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The enrollment token of the bad-input, abuse and hostile-input sites (16+ characters).
pub const ENROLL_TOKEN: &str = "tok-0123456789abcdef";

/// A current-thread tokio runtime for tests that speak the wire themselves.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A server `srv` with one connected agent `a1` whose records flow: what a bad or hostile
/// connection must not disturb.
pub fn server_with_agent(site: &Site) -> (Node, Node) {
    server_with_agent_and(site, &[])
}

/// [`server_with_agent`] with the server's configuration given `sets` (`alert.group_wait=0s`…).
pub fn server_with_agent_and(site: &Site, sets: &[&str]) -> (Node, Node) {
    let token = format!("server.enroll_token={ENROLL_TOKEN}");
    let agent_token = format!("agent.enroll_token={ENROLL_TOKEN}");
    let mut server = site.server("srv", &[&[&token[..]][..], sets].concat());
    let mut agent = site.agent(
        "a1",
        &[&server],
        &[&[&agent_token[..]][..], FAST_AGENT].concat(),
    );
    server.start();
    agent.start();
    agent.wait_link("home", Some(&server));
    (server, agent)
}

/// The node still answers its admin API and `agent` (of [`server_with_agent`]) is still home and
/// delivering: 20 more records, past `sent_before`, stored.
pub fn assert_still_serving(server: &Node, agent: &Node, sent_before: u64) {
    assert!(server.status().is_some(), "the node answers its admin API");
    assert_eq!(
        agent.link_state().as_deref(),
        Some("home"),
        "the other agent is unaffected"
    );
    let (_, last) = agent.send(20);
    assert!(last > sent_before);
    wait_records(&[server], &[("a1", last)]);
}

/// A client certificate of its own, made in the site's directory `name` (an agent nobody
/// configured), for tests that open raw connections.
pub fn client_identity(site: &Site, name: &str) -> Arc<understudy_node::tls::NodeIdentity> {
    let dir = site.dir().join(name);
    std::fs::create_dir_all(&dir).expect("client dir");
    understudy_node::tls::load_or_generate(&dir).expect("a client certificate");
    understudy_node::tls::NodeIdentity::load(&dir).expect("the client identity")
}

/// Appends to `path` until its disk refuses a byte more (a megabyte at a time, then a page,
/// then a byte): PRODUCT.md §4 "disk full" to the last byte.
pub fn fill_up(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the filler");
    for step in [1 << 20, 4096, 1] {
        let chunk = vec![7u8; step];
        while file.write_all(&chunk).is_ok() {}
    }
}

/// A tmpfs mounted at a directory for the test's lifetime; unmounted on drop, also on panic
/// (after its files are copied beside it, `<dir>.kept`, so a failed test leaves its evidence).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "understudy-test",
            ])
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

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = self.0.with_extension("kept");
            let _ = Command::new("cp")
                .arg("-a")
                .arg(&self.0)
                .arg(&kept)
                .status();
            eprintln!("---- the tmpfs's files are kept in {} ----", kept.display());
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One HTTP/1.1 request over TLS (pinned) with exactly the `Authorization` header given (or
/// none): the status and the whole answer as text.
pub async fn raw_http(
    addr: &str,
    pins: &understudy_node::tls::Pins,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut stream =
        understudy_node::tls::connect(addr, pins, None, &[understudy_node::tls::ALPN_HTTP])
            .await
            .expect("TLS connection");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = authorization {
        request.push_str(&format!("Authorization: {a}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// An HTTP request's headers, names lowercased.
pub type Headers = Vec<(String, String)>;

/// One HTTP/1.1 request read from a test receiver's connection (plain or TLS): its headers
/// and its `Content-Length` body; `None` when the connection closed or broke first.
pub fn read_http_request(stream: impl Read) -> Option<(Headers, Vec<u8>)> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some((headers, body))
}

/// A TCP target for a check (MX-1, MX-3): accepts (and closes) connections while up; `stop`
/// closes its port, so the check is refused, and `set_up(true)` opens it again on the same
/// address. The thread ends when the target is dropped.
pub struct CheckTarget {
    pub addr: String,
    up: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl CheckTarget {
    pub fn start(site: &Site) -> CheckTarget {
        let addr = site.addr();
        let up = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicBool::new(false));
        let (a, u, d) = (addr.clone(), up.clone(), done.clone());
        let mut listener = Some(TcpListener::bind(&addr).expect("binding the check target"));
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let want = u.load(Ordering::Relaxed);
                if want && listener.is_none() {
                    listener = TcpListener::bind(&a).ok();
                } else if !want {
                    listener = None;
                }
                if let Some(l) = &listener {
                    let _ = l.set_nonblocking(true);
                    if let Ok((conn, _)) = l.accept() {
                        drop(conn);
                        continue;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        CheckTarget { addr, up, done }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn stop(&self) {
        self.set_up(false);
    }
}

impl Drop for CheckTarget {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// CK-4: `curl -k` of an agent's remote-write receiver (`POST /api/v1/write`): the HTTP status
/// of a push with this token and body.
pub fn push_status(agent: &Node, token: &str, body: &[u8]) -> u16 {
    push_answer(agent, token, body).0
}

/// [`push_status`] with the answer's body (the receiver's reason for a refusal).
pub fn push_answer(agent: &Node, token: &str, body: &[u8]) -> (u16, String) {
    // Beside the data directory, not in it: that disk may be the full one.
    let body_file = agent.dir.with_extension("push-body.bin");
    let answer_file = agent.dir.with_extension("push-answer.txt");
    std::fs::write(&body_file, body).expect("the body");
    // No `Expect: 100-continue` (curl's default above 1 MiB): a body refused before it is read
    // whole could leave curl with the interim 100 as its last status. A push with no final
    // answer (none, or only an interim one: nothing was taken) is asked again, up to 3 times.
    let mut answered = (0, String::new());
    for _ in 0..3 {
        let out = Command::new("curl")
            .args(["-sk", "-w", "%{http_code}", "--max-time", "30"])
            .arg("-o")
            .arg(&answer_file)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", "Content-Encoding: snappy"])
            .args(["-H", "Expect:"])
            .args(["--data-binary", &format!("@{}", body_file.display())])
            .arg(format!("https://{}/api/v1/write", agent.listen))
            .output()
            .expect("curl");
        let answer = std::fs::read_to_string(&answer_file).unwrap_or_default();
        let _ = std::fs::remove_file(&answer_file);
        let status: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        answered = (status, answer);
        if status >= 200 {
            break;
        }
    }
    let _ = std::fs::remove_file(&body_file);
    answered
}

/// CK-4: a remote-write body of `n` samples of `name` (series `slot=0…n-1`) at `time_ms`.
pub fn remote_write_body(name: &str, n: usize, time_ms: i64) -> Vec<u8> {
    use understudy_node::forward::{encode, Label, Sample, TimeSeries, WriteRequest};
    let label = |name: &str, value: String| Label {
        name: name.into(),
        value,
    };
    let timeseries = (0..n)
        .map(|i| TimeSeries {
            labels: vec![label("__name__", name.into()), label("slot", i.to_string())],
            samples: vec![Sample {
                value: i as f64,
                timestamp: time_ms,
            }],
        })
        .collect();
    encode(&WriteRequest { timeseries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ranges_are_read_from_sends_answer() {
        assert_eq!(
            parse_seq_range("handed 5 records to the agent (seq 11..15)\n"),
            Some((11, 15))
        );
        assert_eq!(parse_seq_range("handed 1 record to the agent"), None);
    }
}
