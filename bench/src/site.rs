//! The benchmark harness: real `understudy serve` processes (the release binary) on 127.0.9.x,
//! initialised with the product's own `init`, driven through their admin API.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use understudy_api::event::Events;
use understudy_api::status::{RecordView, Records};
use understudy_api::{EventView, PairStatus};
use understudy_node::config::{Config, CONFIG_FILE};
use understudy_node::http_client::AdminClient;
use understudy_node::{InitOptions, Role};

/// The fast timing profile (sub-second failover), the same one `demo --fast` uses.
pub use understudy_api::defaults::fast::{AGENT as FAST_AGENT, SERVER as FAST_SERVER};
pub const TOKEN: &str = "bench-enroll-token-0123456789";

static NEXT_HOST: AtomicU32 = AtomicU32::new(2);

/// A fresh `127.0.9.H:PORT` whose port was free a moment ago.
pub fn fresh_addr() -> String {
    loop {
        let host = 2 + (NEXT_HOST.fetch_add(1, Ordering::Relaxed) - 2) % 250;
        let ip = format!("127.0.9.{host}");
        if let Ok(l) = TcpListener::bind((ip.as_str(), 0)) {
            let port = l.local_addr().expect("local address").port();
            return format!("{ip}:{port}");
        }
    }
}

pub struct Ctx {
    pub bin: PathBuf,
    dir: PathBuf,
    /// Removed at the end unless `UNDERSTUDY_BENCH_KEEP` is set.
    _tmp: Option<tempfile::TempDir>,
}

impl Ctx {
    pub fn new(bin: &Path, base: &Path, what: &str) -> Ctx {
        std::fs::create_dir_all(base).expect("creating the work directory");
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .tempdir_in(base)
            .expect("a work directory");
        if std::env::var_os("UNDERSTUDY_BENCH_KEEP").is_some() {
            let dir = tmp.keep();
            eprintln!("{what}: keeping {}", dir.display());
            return Ctx {
                bin: bin.to_path_buf(),
                dir,
                _tmp: None,
            };
        }
        Ctx {
            bin: bin.to_path_buf(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `understudy init` (the same function the CLI calls) for a node `name` on a fresh address.
    pub fn init(&self, name: &str, role: Role, servers: &[String], sets: &[String]) -> Node {
        let dir = self.path().join(name);
        let listen = fresh_addr();
        let report = understudy_node::init(&InitOptions {
            data_dir: dir.clone(),
            name: name.to_string(),
            listen: listen.clone(),
            role,
            servers: servers.to_vec(),
            sets: sets.to_vec(),
        })
        .unwrap_or_else(|e| panic!("init {name}: {e}"));
        let admin = understudy_node::admin_client(&dir)
            .unwrap_or_else(|e| panic!("admin client of {name}: {e}"))
            .with_timeout(Duration::from_secs(3));
        Node {
            name: name.to_string(),
            dir,
            listen,
            fingerprint: report.fingerprint,
            child: None,
            admin,
            bin: self.bin.clone(),
        }
    }

    pub fn server(&self, name: &str, extra: &[&str]) -> Node {
        let mut sets = vec![format!("server.enroll_token={TOKEN}")];
        sets.extend(extra.iter().map(|s| s.to_string()));
        self.init(name, Role::Server, &[], &sets)
    }

    pub fn agent(&self, name: &str, servers: &[String], extra: &[&str]) -> Node {
        let mut sets = vec![format!("agent.enroll_token={TOKEN}")];
        sets.extend(extra.iter().map(|s| s.to_string()));
        self.init(name, Role::Agent, servers, &sets)
    }
}

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub listen: String,
    pub fingerprint: String,
    child: Option<Child>,
    admin: AdminClient,
    bin: PathBuf,
}

impl Node {
    pub fn url(&self) -> String {
        format!("https://{}#{}", self.listen, self.fingerprint)
    }

    /// Edits config.toml (node stopped): `SECTION.KEY=VALUE`.
    pub fn configure(&self, sets: &[String]) {
        let path = self.dir.join(CONFIG_FILE);
        let mut config = Config::load(&path).expect("loading config.toml");
        for s in sets {
            config
                .apply_set(s)
                .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        }
        config.save(&path).expect("saving config.toml");
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .expect("log");
        let _ = writeln!(&log, "==== understudy serve ({}) ====", self.name);
        let child = Command::new(&self.bin)
            .args(["serve", "--data-dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Spawns and waits until the admin API answers.
    pub async fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "{} exited with {st}; see {}",
                        self.name,
                        self.dir.join("serve.log").display()
                    );
                }
            }
            if self.status().await.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within 60s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL; returns the instant the signal was sent.
    pub fn kill9(&mut self) -> Instant {
        let mut child = self.child.take().expect("not running");
        let t = Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        t
    }

    /// HS-1: pins `s` as each other's hot-standby peer (s[0] primary, s[1] secondary), each
    /// reaching the other at `via` (its own address, or a relay to it).
    pub fn pin_hot_standby(s: &[Node; 2], via: [&str; 2]) {
        for (i, mode) in [(0, "primary"), (1, "secondary")] {
            let peer = &s[1 - i];
            s[i].configure(&[
                format!("failover.peer=https://{}#{}", via[1 - i], peer.fingerprint),
                format!("failover.mode={mode}"),
            ]);
        }
    }

    /// Sends `sig` (SIGTERM, SIGSTOP, SIGCONT) without waiting; returns the instant it was sent.
    pub fn signal(&self, sig: i32) -> Instant {
        let child = self.child.as_ref().expect("not running");
        let t = Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        t
    }

    /// Waits (up to `within`) for the process to exit by itself; SIGKILL after that.
    pub fn reap(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// One admin call; `None` on a transport error or a non-2xx answer.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        match self.admin.call(method, path, body.as_ref()).await {
            Ok((code, v)) if (200..300).contains(&code) => Some(v),
            _ => None,
        }
    }

    /// Like [`Node::call`] but reports the failure.
    pub async fn call_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        match self.admin.call(method, path, body.as_ref()).await {
            Ok((code, v)) if (200..300).contains(&code) => Ok(v),
            Ok((code, v)) => Err(format!("{method} {path} on {}: {code} {v}", self.name)),
            Err(e) => Err(format!("{method} {path} on {}: {e}", self.name)),
        }
    }

    /// One typed request, answered with its typed document (None when refused or unreachable).
    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        request: understudy_api::Request,
    ) -> Option<T> {
        let call = request.to_http();
        serde_json::from_value(self.call(call.method, &call.path, call.body).await?).ok()
    }

    /// `status --json`, read as the admin API's typed answer.
    pub async fn status(&self) -> Option<understudy_api::Status> {
        self.request(understudy_api::Request::Status).await
    }

    /// Hands records to this agent (returns once they are durable in its cache) and answers the
    /// last sequence number they were given.
    pub async fn send(&self, records: &[(String, f64)]) -> Result<u64, String> {
        let records = records
            .iter()
            .map(|(name, value)| understudy_api::NewRecord {
                name: name.clone(),
                value: *value,
                time_ms: None,
                pair: None,
                kind: None,
                detail: None,
                labels: Default::default(),
            })
            .collect();
        let call = understudy_api::Request::Send { records }.to_http();
        let done: understudy_api::Done =
            serde_json::from_value(self.call_ok(call.method, &call.path, call.body).await?)
                .map_err(|e| format!("send on {}: {e}", self.name))?;
        Ok(done
            .more
            .get("last_seq")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// The records this server stored that match `query`.
    pub async fn records_where(
        &self,
        query: understudy_api::RecordQuery,
    ) -> Option<Vec<RecordView>> {
        let records: Records = self
            .request(understudy_api::Request::Records(query))
            .await?;
        Some(records.records)
    }

    /// The newest `limit` records this server stored from `agent`.
    pub async fn records(&self, agent: &str, limit: usize) -> Option<Vec<RecordView>> {
        self.records_where(understudy_api::RecordQuery {
            agent: Some(agent.to_string()),
            limit: Some(limit),
            ..Default::default()
        })
        .await
    }

    /// Events since `since_ms` (wall clock, Unix ms).
    pub async fn events_since(&self, since_ms: i64) -> Vec<EventView> {
        let query = understudy_api::EventQuery {
            since_ms,
            limit: Some(100_000),
            ..Default::default()
        };
        self.request::<Events>(understudy_api::Request::Events(query))
            .await
            .map(|e| e.events)
            .unwrap_or_default()
    }

    /// `(link.state, link.server)` of an agent.
    pub async fn link(&self) -> Option<(String, String)> {
        let link = self.status().await?.link?;
        Some((link.state, link.server.unwrap_or_default()))
    }

    /// `node.failover.state` and epoch of a server.
    pub async fn failover(&self) -> Option<(String, u64)> {
        let f = self.status().await?.node.failover;
        Some((f.state, f.epoch))
    }

    pub async fn pair(&self, name: &str) -> Option<PairStatus> {
        self.status()
            .await?
            .pairs
            .into_iter()
            .find(|p| p.name == name)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub async fn poll<T, F, Fut>(timeout: Duration, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits for an agent's link to be `state` (any of `|`-separated) on the server at `listen`.
pub async fn wait_link(
    agent: &Node,
    states: &str,
    listen: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let l = agent.link().await;
        if matches!(&l, Some((s, srv)) if states.split('|').any(|x| x == s) && srv.contains(listen))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}'s link to be {states} on {listen}: last {l:?}",
                agent.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The newest sequence number `server` stored from `agent` (0 when none).
pub async fn newest_seq(server: &Node, agent: &str) -> u64 {
    server
        .records(agent, 1)
        .await
        .and_then(|r| r.first().map(|r| r.seq))
        .unwrap_or(0)
}

/// Sends one record named `name` through `agent` and waits until `server` stored it.
pub async fn deliver(
    agent: &Node,
    server: &Node,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    agent.send(&[(name.to_string(), 1.0)]).await?;
    seen(
        server,
        &agent.name,
        name,
        timeout,
        Duration::from_millis(50),
    )
    .await
    .map(|_| ())
}

/// Polls `server` until it stored a record `name` from `agent`; returns when it saw it.
pub async fn seen(
    server: &Node,
    agent: &str,
    name: &str,
    timeout: Duration,
    every: Duration,
) -> Result<Instant, String> {
    poll(timeout, every, || async {
        let recs = server.records(agent, 20).await?;
        recs.iter().any(|r| r.name == name).then(Instant::now)
    })
    .await
    .ok_or_else(|| format!("record {name} from {agent} never reached {}", server.name))
}

/// A TCP listener of the benchmark's own on a fresh address that accepts and closes every
/// connection (the target of `tcp` checks); aborting the handle stops it.
pub async fn tcp_target() -> (String, tokio::task::JoinHandle<()>) {
    let target = fresh_addr();
    let listener = tokio::net::TcpListener::bind(&target)
        .await
        .expect("listener");
    let accepter = tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        }
    });
    (target, accepter)
}
