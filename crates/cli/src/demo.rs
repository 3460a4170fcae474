//! `understudy demo`: a whole site on this machine, as separate processes of this same binary on
//! loopback addresses (PRODUCT.md §3): servers s1 (primary) and s2 (secondary) in hot standby,
//! pairs `web` (web-1/web-2, switchback auto) and `db` (db-1/db-2, manual), and `solo`, an agent
//! with a home and a standby server. It writes `D/site.json` for scripts, prints a live table, and
//! stops every node on SIGINT/SIGTERM.
//!
//! Re-running it on the same `--dir` restarts the same site: existing nodes are not initialised
//! again and pairs that exist are left as they are.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use understudy_node::admin_auth::{METRICS_TOKEN_FILE, TOKEN_FILE};
use understudy_node::config::{Config, CONFIG_FILE};
use understudy_node::fsutil;
use understudy_node::tls;

use understudy_api::defaults::{self, fast};
use understudy_api::{CheckSpec, PairSpec, RecordQuery, Request, Status, Switchback};

use crate::api::{Api, Failure, Unreachable};
use crate::node::Stop;
use crate::output::{field, render};
use crate::status::{active_member, pair_state};
use crate::Target;

#[derive(Args)]
pub struct DemoArgs {
    /// Where the nodes' data directories, their logs (D/<name>/log) and site.json go
    /// [default: a new temporary directory, printed at start]
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,
    /// Sub-second timings: heartbeat 200ms, switchover after 600ms, pair failover after 1s,
    /// server failover after 1s, hold-downs of 3s
    #[arg(long)]
    fast: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Primary,
    Secondary,
    Agent,
}

struct Spec {
    name: &'static str,
    listen: &'static str,
    kind: Kind,
}

const SITE: &[Spec] = &[
    Spec {
        name: "s1",
        listen: "127.0.0.11:7401",
        kind: Kind::Primary,
    },
    Spec {
        name: "s2",
        listen: "127.0.0.12:7402",
        kind: Kind::Secondary,
    },
    Spec {
        name: "web-1",
        listen: "127.0.0.21:7411",
        kind: Kind::Agent,
    },
    Spec {
        name: "web-2",
        listen: "127.0.0.22:7412",
        kind: Kind::Agent,
    },
    Spec {
        name: "db-1",
        listen: "127.0.0.23:7413",
        kind: Kind::Agent,
    },
    Spec {
        name: "db-2",
        listen: "127.0.0.24:7414",
        kind: Kind::Agent,
    },
    Spec {
        name: "solo",
        listen: "127.0.0.25:7415",
        kind: Kind::Agent,
    },
];

/// `(name, primary, secondary, switchback)`.
const PAIRS: &[(&str, &str, &str, Switchback)] = &[
    ("web", "web-1", "web-2", Switchback::Auto),
    ("db", "db-1", "db-2", Switchback::Manual),
];

/// How long stopped nodes get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct DemoNode {
    spec: &'static Spec,
    data_dir: PathBuf,
    fingerprint: String,
    child: Option<Child>,
    pid: Option<u32>,
    api: Option<Arc<Api>>,
}

impl DemoNode {
    fn is_server(&self) -> bool {
        self.spec.kind != Kind::Agent
    }

    fn admin_url(&self) -> String {
        format!("https://{}", self.spec.listen)
    }
}

/// Lines shown under the table: what the demo did and what went wrong.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn add(&self, line: String) {
        if let Ok(mut notes) = self.0.lock() {
            notes.push(line);
            let excess = notes.len().saturating_sub(8);
            notes.drain(..excess);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

pub fn run(target: &Target, args: &DemoArgs) -> Result<(), Failure> {
    if target.node.is_some() || target.data_dir.is_some() {
        return Err(Failure::usage(
            "demo makes its own nodes: give --dir D, not --data-dir or --node",
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("starting the async runtime: {e}")))?;
    rt.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> Result<(), Failure> {
    // Closing the demo's terminal (SIGHUP) stops the site as Ctrl-C does (issue 17 item 5).
    let mut stop = Stop::with_hangup()?;
    // The site's addresses are fixed: one demo at a time, said in one line.
    let _lock = DemoLock::take()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| Failure::refused(format!("creating {}: {e}", d.display())))?;
            d.canonicalize().unwrap_or_else(|_| d.clone())
        }
        None => new_temp_dir()?,
    };
    println!("understudy demo: site in {}", dir.display());
    println!("  site.json: {}", dir.join("site.json").display());
    println!("  logs:      {}/<name>/log", dir.display());
    let exe = std::env::current_exe()
        .map_err(|e| Failure::refused(format!("finding this program's path: {e}")))?;
    let notes = Notes::default();
    let mut nodes: Vec<DemoNode> = Vec::new();

    let started = tokio::select! {
        r = start_site(&exe, &dir, args.fast, &mut nodes) => Some(r),
        signal = stop.wait() => {
            eprintln!("understudy demo: {signal} during start-up: stopping");
            None
        }
    };
    match started {
        Some(Ok(())) => {}
        Some(Err(failure)) => {
            stop_all(&mut nodes).await;
            return Err(failure);
        }
        None => {
            stop_all(&mut nodes).await;
            return Ok(());
        }
    }
    write_site(&dir, &nodes)?;
    notes.add(format!("started {} nodes", nodes.len()));
    // MX-1: where Prometheus scrapes each server (every node answers /metrics the same way).
    for n in nodes.iter().filter(|n| n.is_server()) {
        println!(
            "  metrics:   {}/metrics  (Authorization: Bearer $(cat {}))",
            n.admin_url(),
            n.data_dir.join(METRICS_TOKEN_FILE).display()
        );
    }

    let servers: Vec<Arc<Api>> = nodes
        .iter()
        .filter(|n| n.is_server())
        .filter_map(|n| n.api.clone())
        .collect();
    // Issue 15: a webhook receiver of the demo's own; what arrives is shown under the table.
    let (hook_url, hook_task) = webhook_receiver(notes.clone()).await?;
    notes.add(format!("alert webhook receiver on {hook_url}"));
    let pairs_task = tokio::spawn(add_pairs(servers, args.fast, notes.clone(), hook_url));

    let interactive = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            signal = stop.wait() => {
                eprintln!("understudy demo: {signal}: stopping every node");
                break;
            }
        }
        if reap(&mut nodes, &dir, &notes) {
            if let Err(e) = write_site(&dir, &nodes) {
                notes.add(e.message);
            }
        }
        let frame = frame(&dir, &nodes, &notes).await;
        if interactive {
            print!("\x1b[H\x1b[2J{frame}");
        } else {
            println!("{frame}");
        }
    }
    pairs_task.abort();
    hook_task.abort();
    stop_all(&mut nodes).await;
    if let Err(e) = write_site(&dir, &nodes) {
        eprintln!("understudy demo: {}", e.message);
    }
    eprintln!(
        "understudy demo: stopped; the site stays in {}",
        dir.display()
    );
    Ok(())
}

/// Issue 17 item 5: a node started by the demo gets SIGTERM (a clean stop) when the demo dies,
/// even by SIGKILL. Linux ties this to the thread that spawned the child: here a worker of the
/// demo's runtime, which lives as long as the demo.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The demo died before prctl took effect: do not outlive it.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the demo has exited"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// One demo at a time per user: an exclusive lock on a file in the runtime directory, held while
/// the demo runs (the kernel releases it however the demo ends).
struct DemoLock {
    _file: File,
}

impl DemoLock {
    fn path() -> PathBuf {
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        #[cfg(unix)]
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() }.to_string();
        // Windows: the temporary directory is already the user's own.
        #[cfg(not(unix))]
        let uid = std::env::var("USERNAME").unwrap_or_default();
        dir.join(format!("understudy-demo-{uid}.lock"))
    }

    fn take() -> Result<DemoLock, Failure> {
        use std::io::{Seek, Write};
        let path = Self::path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Failure::refused(format!("opening {}: {e}", path.display())))?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Failure::refused(format!(
                "another demo is running ({}): stop it first (Ctrl-C in its terminal)",
                if holder.is_empty() {
                    "its lock is held"
                } else {
                    holder
                }
            )));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(DemoLock { _file: file })
    }
}

fn new_temp_dir() -> Result<PathBuf, Failure> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("understudy-demo-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::refused(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

fn random_hex(bytes: usize) -> Result<String, Failure> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Failure::refused(format!("reading /dev/urandom: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Initialises the nodes that are new, pins the servers to each other and starts every node.
async fn start_site(
    exe: &Path,
    dir: &Path,
    fast: bool,
    nodes: &mut Vec<DemoNode>,
) -> Result<(), Failure> {
    let enroll_token = random_hex(16)?;
    let mut fingerprints: HashMap<&str, String> = HashMap::new();
    // Servers first: the agents' configuration names them with their fingerprints.
    for spec in SITE.iter().filter(|s| s.kind != Kind::Agent) {
        let mut sets = vec![format!("server.enroll_token={enroll_token}")];
        if fast {
            sets.extend(fast::SERVER.iter().map(|s| s.to_string()));
        }
        let fp = init_node(exe, dir, spec, "server", &[], &sets).await?;
        fingerprints.insert(spec.name, fp);
    }
    let url = |name: &str| -> String {
        let spec = SITE
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.listen)
            .unwrap_or_default();
        format!(
            "https://{spec}#{}",
            fingerprints.get(name).cloned().unwrap_or_default()
        )
    };
    // Each server's peer is pinned to the other's certificate, which exists only once both are
    // initialised; mode needs a peer, so the peer goes in first.
    for (name, peer, mode) in [("s1", "s2", "primary"), ("s2", "s1", "secondary")] {
        let path = dir.join(name).join(CONFIG_FILE);
        let mut config = Config::load(&path).map_err(|e| Failure::usage(e.to_string()))?;
        for set in [
            format!("failover.peer={}", url(peer)),
            format!("failover.mode={mode}"),
        ] {
            config
                .apply_set(&set)
                .map_err(|e| Failure::usage(e.to_string()))?;
        }
        config
            .save(&path)
            .map_err(|e| Failure::refused(e.to_string()))?;
    }
    let servers = [url("s1"), url("s2")];
    for spec in SITE.iter().filter(|s| s.kind == Kind::Agent) {
        let mut sets = vec![format!("agent.enroll_token={enroll_token}")];
        if fast {
            sets.extend(fast::AGENT.iter().map(|s| s.to_string()));
        }
        if spec.name == "solo" {
            // Its `load` check is a command: an agent runs only the commands it allows.
            sets.push(r#"agent.allow_commands=["/bin/sh -c *"]"#.to_string());
        }
        let fp = init_node(exe, dir, spec, "agent", &servers, &sets).await?;
        fingerprints.insert(spec.name, fp);
    }
    for spec in SITE {
        let data_dir = dir.join(spec.name);
        let api = Api::local(&data_dir)?.with_timeout(Duration::from_millis(800));
        let mut node = DemoNode {
            spec,
            fingerprint: fingerprints.get(spec.name).cloned().unwrap_or_default(),
            data_dir,
            child: None,
            pid: None,
            api: Some(Arc::new(api)),
        };
        spawn_serve(exe, &mut node)?;
        nodes.push(node);
    }
    Ok(())
}

/// `understudy init` for one node unless it exists; returns its certificate's fingerprint.
async fn init_node(
    exe: &Path,
    dir: &Path,
    spec: &Spec,
    role: &str,
    servers: &[String],
    sets: &[String],
) -> Result<String, Failure> {
    let data_dir = dir.join(spec.name);
    if !data_dir.join(CONFIG_FILE).exists() {
        let mut cmd = Command::new(exe);
        cmd.arg("init").arg("--data-dir").arg(&data_dir).args([
            "--name",
            spec.name,
            "--listen",
            spec.listen,
            "--role",
            role,
        ]);
        for server in servers {
            cmd.args(["--server", server]);
        }
        for set in sets {
            cmd.args(["--set", set]);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Failure::refused(format!("running {} init: {e}", exe.display())))?;
        if !out.status.success() {
            return Err(Failure::refused(format!(
                "initialising {}: {}",
                spec.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let info = tls::load_or_generate(&data_dir).map_err(|e| Failure::refused(e.to_string()))?;
    Ok(info.fingerprint)
}

/// Starts `understudy serve` for a node, its output appended to `<data dir>/log`. Each child has
/// its own process group, so a Ctrl-C in the terminal reaches only the demo, which then stops
/// the nodes in order; and each dies with the demo if the demo is killed outright.
fn spawn_serve(exe: &Path, node: &mut DemoNode) -> Result<(), Failure> {
    let log_path = node.data_dir.join("log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Failure::refused(format!("opening {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Failure::refused(format!("opening {}: {e}", log_path.display())))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&node.data_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true);
    // Ctrl-C in the demo's terminal is the demo's to handle: it stops the nodes in order.
    #[cfg(unix)]
    cmd.process_group(0);
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| Failure::refused(format!("starting {}: {e}", node.spec.name)))?;
    node.pid = child.id();
    node.child = Some(child);
    Ok(())
}

/// Notes nodes that have exited; true when a pid changed.
fn reap(nodes: &mut [DemoNode], dir: &Path, notes: &Notes) -> bool {
    let mut changed = false;
    for node in nodes.iter_mut() {
        let Some(child) = node.child.as_mut() else {
            continue;
        };
        if let Ok(Some(status)) = child.try_wait() {
            notes.add(format!(
                "{} exited ({status}); see {}",
                node.spec.name,
                dir.join(node.spec.name).join("log").display()
            ));
            node.child = None;
            node.pid = None;
            changed = true;
        }
    }
    changed
}

fn write_site(dir: &Path, nodes: &[DemoNode]) -> Result<(), Failure> {
    let list: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.spec.name,
                "roles": if n.is_server() { ["server"] } else { ["agent"] },
                "admin_url": n.admin_url(),
                "fingerprint": n.fingerprint,
                "token_file": n.data_dir.join(TOKEN_FILE),
                "metrics_url": format!("{}/metrics", n.admin_url()),
                "metrics_token_file": n.data_dir.join(METRICS_TOKEN_FILE),
                "pid": n.pid,
                "data_dir": n.data_dir,
                "listen": n.spec.listen,
                "log": n.data_dir.join("log"),
            })
        })
        .collect();
    let site = json!({
        "nodes": list,
        "pairs": PAIRS.iter().map(|(name, primary, secondary, switchback)| json!({
            "name": name, "primary": primary, "secondary": secondary, "switchback": switchback,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&site).unwrap_or_else(|_| site.to_string());
    let path = dir.join("site.json");
    fsutil::write_atomic(&path, format!("{text}\n").as_bytes(), 0o644)
        .map_err(|e| Failure::refused(format!("writing {}: {e}", path.display())))
}

/// Adds the pairs through whichever server is ACTIVE (s1 first), retrying until both exist.
/// An HTTP receiver on loopback for the demo's webhook channel: each message becomes a note
/// ("webhook: 3 alerts: 2 CHECK_DOWN, 1 FAILOVER").
async fn webhook_receiver(notes: Notes) -> Result<(String, tokio::task::JoinHandle<()>), Failure> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::refused(format!("the demo's webhook receiver: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::refused(format!("the demo's webhook receiver: {e}")))?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let notes = notes.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(stream);
                let (mut len, mut line) = (0usize, String::new());
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0).min(1 << 20);
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                notes.add(format!(
                    "webhook: {}",
                    message["title"].as_str().unwrap_or("(no title)")
                ));
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}/demo"), task))
}

async fn add_pairs(servers: Vec<Arc<Api>>, fast: bool, notes: Notes, hook_url: String) {
    let failover_after = if fast {
        fast::PAIR_FAILOVER_AFTER
    } else {
        defaults::PAIR_FAILOVER_AFTER
    };
    let started = Instant::now();
    let mut complained = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut active: Option<(&Arc<Api>, Status)> = None;
        for api in &servers {
            if let Some(status) = api.try_status().await {
                if is_active(&status) {
                    active = Some((api, status));
                    break;
                }
            }
        }
        let Some((api, status)) = active else {
            continue;
        };
        let existing: Vec<String> = status.pairs.iter().map(|p| p.name.clone()).collect();
        let mut missing = 0;
        for (name, primary, secondary, switchback) in PAIRS {
            if existing.iter().any(|e| e == name) {
                continue;
            }
            missing += 1;
            let request = Request::PutPair(PairSpec {
                name: name.to_string(),
                primary: primary.to_string(),
                secondary: secondary.to_string(),
                failover_after: Some(failover_after),
                switchback: Some(*switchback),
                hold_down: fast.then_some(fast::PAIR_HOLD_DOWN),
            });
            match api.try_request(&request).await {
                Ok(Ok(answer)) => {
                    missing -= 1;
                    let message = answer
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("added");
                    notes.add(format!("pair {name}: {message}"));
                }
                Ok(Err(failure)) | Err(Unreachable(failure)) => {
                    // Agents take a moment to enroll; only a lasting refusal is worth showing.
                    if !complained && started.elapsed() > Duration::from_secs(20) {
                        notes.add(format!("pair {name} not added yet: {}", failure.message));
                        complained = true;
                    }
                }
            }
        }
        if missing == 0 {
            add_checks(api, fast, &notes).await;
            let channel = Request::PutChannel(understudy_api::ChannelSpec {
                name: "demo-hook".into(),
                kind: "webhook".into(),
                url: Some(hook_url),
                ..Default::default()
            });
            match api.try_request(&channel).await {
                Ok(Ok(_)) => notes.add("alert channel demo-hook added".into()),
                Ok(Err(f)) | Err(Unreachable(f)) => {
                    notes.add(format!("alert channel demo-hook not added: {}", f.message))
                }
            }
            return;
        }
    }
}

/// CK-1…3: checks that give the demo live data: one per pair (run only by its active member,
/// under the pair's alias) and one for the lone agent.
async fn add_checks(api: &Arc<Api>, fast: bool, notes: &Notes) {
    let every = if fast {
        fast::CHECK_EVERY
    } else {
        Duration::from_secs(5)
    };
    let check = |name: &str, kind: &str, target: Value, timeout: u64| CheckSpec {
        name: name.to_string(),
        kind: kind.to_string(),
        target,
        every: Some(every),
        timeout: Some(Duration::from_secs(timeout)),
        ..CheckSpec::default()
    };
    let checks = [
        CheckSpec {
            pair: Some("web".into()),
            ..check("s1-port", "tcp", json!("127.0.0.11:7401"), 1)
        },
        CheckSpec {
            pair: Some("db".into()),
            ..check("s2-console", "http", json!("https://127.0.0.12:7402/"), 2)
        },
        CheckSpec {
            agent: Some("solo".into()),
            ..check(
                "load",
                "command",
                json!(["/bin/sh", "-c", "cut -d' ' -f1 /proc/loadavg"]),
                2,
            )
        },
    ];
    for check in checks {
        let name = check.name.clone();
        match api.try_request(&Request::PutCheck(check)).await {
            Ok(Ok(_)) => notes.add(format!("check {name} added")),
            Ok(Err(f)) | Err(Unreachable(f)) => {
                notes.add(format!("check {name} not added: {}", f.message))
            }
        }
    }
}

/// Whether this server is the site's ACTIVE one.
fn is_active(status: &Status) -> bool {
    status.node.failover.state.eq_ignore_ascii_case("active")
}

/// One screen of the live table.
async fn frame(dir: &Path, nodes: &[DemoNode], notes: &Notes) -> String {
    let mut asks = Vec::new();
    for node in nodes {
        let api = node.api.clone().filter(|_| node.child.is_some());
        asks.push(tokio::spawn(async move {
            match api {
                Some(api) => api.try_status().await,
                None => None,
            }
        }));
    }
    let mut statuses = Vec::new();
    for ask in asks {
        statuses.push(ask.await.ok().flatten());
    }
    let by_address: HashMap<&str, &str> = nodes
        .iter()
        .filter(|n| n.is_server())
        .map(|n| (n.spec.listen, n.spec.name))
        .collect();
    let server_name = |url: &str| -> String {
        let address = url
            .trim_start_matches("https://")
            .split('#')
            .next()
            .unwrap_or("");
        by_address
            .get(address)
            .map(|s| s.to_string())
            .unwrap_or_else(|| url.to_string())
    };

    let mut rows = Vec::new();
    for (node, status) in nodes.iter().zip(&statuses) {
        let pid = node
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        let role = if node.is_server() { "server" } else { "agent" };
        let (state, epoch, server) = match (status, node.child.is_some()) {
            (_, false) => ("down".to_string(), "-".to_string(), "-".to_string()),
            (None, true) => ("no answer".to_string(), "-".to_string(), "-".to_string()),
            (Some(s), true) if node.is_server() => (
                s.node.failover.state.clone(),
                s.node.failover.epoch.to_string(),
                "-".to_string(),
            ),
            (Some(s), true) => match &s.link {
                Some(link) => {
                    let mut state = link.state.clone();
                    if link.cached > 0 {
                        state.push_str(&format!(" ({} cached)", link.cached));
                    }
                    let server = link.server.as_deref().map_or("-".into(), server_name);
                    (state, "-".to_string(), server)
                }
                None => ("-".to_string(), "-".to_string(), "-".to_string()),
            },
        };
        rows.push(vec![
            node.spec.name.to_string(),
            role.to_string(),
            pid,
            state,
            epoch,
            server,
        ]);
    }

    let active_server = nodes
        .iter()
        .zip(&statuses)
        .filter(|(n, _)| n.is_server())
        .filter_map(|(_, s)| s.as_ref())
        .find(|s| is_active(s));
    let pair_rows: Vec<Vec<String>> = match active_server {
        Some(s) => s
            .pairs
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    active_member(p),
                    p.epoch.to_string(),
                    pair_state(p),
                ]
            })
            .collect(),
        None => Vec::new(),
    };

    let mut out = format!(
        "understudy demo in {}   {}   (Ctrl-C stops every node)\n\n",
        dir.display(),
        crate::output::format_time_ms(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        )
    );
    out.push_str(&render(
        &["NODE", "ROLE", "PID", "STATE", "EPOCH", "SERVER"],
        &rows,
        "",
    ));
    out.push('\n');
    if pair_rows.is_empty() {
        out.push_str("pairs: none yet (waiting for an ACTIVE server and the agents)\n");
    } else {
        out.push_str(&render(
            &["PAIR", "ACTIVE", "EPOCH", "STATE"],
            &pair_rows,
            "",
        ));
    }
    if let Some(api) = nodes
        .iter()
        .zip(&statuses)
        .find(|(n, s)| n.is_server() && s.as_ref().is_some_and(is_active))
        .and_then(|(n, _)| n.api.clone())
    {
        let checks = Request::Records(RecordQuery {
            kind: Some("check".into()),
            limit: Some(50),
            ..RecordQuery::default()
        });
        if let Ok(Ok(answer)) = api.try_request(&checks).await {
            let mut latest: Vec<(String, Value)> = Vec::new();
            for r in crate::output::items(&answer, "records").iter().rev() {
                let name = field(r, "name");
                if !latest.iter().any(|(n, _)| *n == name) {
                    latest.push((name, r.clone()));
                }
            }
            latest.sort_by(|a, b| a.0.cmp(&b.0));
            let rows: Vec<Vec<String>> = latest
                .iter()
                .map(|(name, r)| {
                    let detail = r
                        .get("detail")
                        .and_then(Value::as_str)
                        .and_then(|d| serde_json::from_str::<Value>(d).ok());
                    let up = detail
                        .as_ref()
                        .and_then(|d| d.get("up"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    vec![
                        name.clone(),
                        if up { "up".into() } else { "down".into() },
                        format!(
                            "{:.1}",
                            r.get("value").and_then(Value::as_f64).unwrap_or(0.0)
                        ),
                        field(r, "agent"),
                        r.get("pair")
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_string(),
                        field(r, "seq"),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                out.push('\n');
                out.push_str(&render(
                    &["CHECK", "RESULT", "VALUE", "RUN BY", "PAIR", "SEQ"],
                    &rows,
                    "",
                ));
            }
        }
    }
    let lines = notes.lines();
    if !lines.is_empty() {
        out.push('\n');
        for line in lines {
            out.push_str(&format!("* {line}\n"));
        }
    }
    out
}

/// SIGTERM to every running node, then SIGKILL to those still running after [`STOP_GRACE`].
/// Windows has no SIGTERM: its nodes are ended at once.
async fn stop_all(nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut() {
        if let (Some(pid), Some(child)) = (node.pid, node.child.as_mut()) {
            #[cfg(unix)]
            {
                let _ = child;
                // SAFETY: kill(2) with a pid of our own child; it has no memory effects here.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
            #[cfg(not(unix))]
            {
                let _ = pid;
                let _ = child.start_kill();
            }
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for node in nodes.iter_mut() {
        let Some(child) = node.child.as_mut() else {
            continue;
        };
        if tokio::time::timeout_at(deadline, child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "understudy demo: {} did not stop within {}s: killing it",
                node.spec.name,
                STOP_GRACE.as_secs()
            );
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        node.child = None;
        node.pid = None;
    }
}
