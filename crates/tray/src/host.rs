//! Hosts the node: in the tray process the embedded runtime (finds the data directory, creates a
//! standalone node on first run, starts it, hands every request to its one admin handler); in the
//! window process the same node reached through its HTTPS admin API (`remote`). The rest of the
//! app reaches the node only through `Host::admin` — the Tauri crate holds glue, no failover policy.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the app needs from a node: the admin handler and a clean stop. `understudy_node::Node`
/// is the real one; tests hand in their own.
pub trait Admin: Send + Sync + 'static {
    /// Same paths and JSON as the HTTPS admin API; returns (HTTP status, JSON body).
    fn admin<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        body: Option<Value>,
    ) -> BoxFuture<'a, (u16, Value)>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// Where the node is in its life, as the tray shows it.
#[derive(Clone)]
enum Slot {
    Starting,
    Running(Arc<dyn Admin>),
    Failed(String),
    Stopping,
    /// "Run a node on this computer" is off (UI-5): no node, none starting.
    Off,
}

/// Cheap to clone; managed as Tauri state and shared with the pollers.
#[derive(Clone)]
pub struct Host {
    slot: Arc<RwLock<Slot>>,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            slot: Arc::new(RwLock::new(Slot::Starting)),
        }
    }
}

/// The status and body the app answers with while no node is running.
pub const NOT_RUNNING: u16 = 503;
/// Why no node runs while the setting is off (the tray menu's node line says it).
pub const NO_NODE: &str = "no node on this computer";
/// The status of an answer that never came: the node could not be reached at all (the console's
/// `UNREACHABLE`, ui/src/api.ts).
pub const UNREACHABLE: u16 = 0;

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_running(&self, node: Arc<dyn Admin>) {
        self.set(Slot::Running(node));
    }

    pub fn set_failed(&self, reason: String) {
        self.set(Slot::Failed(reason));
    }

    /// A node is about to be started (the setting was turned on).
    pub fn set_starting(&self) {
        self.set(Slot::Starting);
    }

    /// No node runs on this computer, by the user's setting.
    pub fn set_off(&self) {
        self.set(Slot::Off);
    }

    pub fn is_off(&self) -> bool {
        matches!(self.get(), Slot::Off)
    }

    fn set(&self, slot: Slot) {
        // A poisoned lock only means a panic elsewhere while holding it; the slot is still valid.
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = slot;
    }

    fn get(&self) -> Slot {
        self.slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The running node, or why there is none ("starting", the start error, "stopping").
    pub fn node(&self) -> Result<Arc<dyn Admin>, String> {
        match self.get() {
            Slot::Running(node) => Ok(node),
            Slot::Starting => Err("starting".into()),
            Slot::Failed(reason) => Err(reason),
            Slot::Stopping => Err("stopping".into()),
            Slot::Off => Err(NO_NODE.into()),
        }
    }

    /// Forwards to the node's admin handler; `503 {"error": …}` while no node runs.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        match self.node() {
            Ok(node) => node.admin(method, path, body).await,
            Err(reason) => (
                NOT_RUNNING,
                json!({ "error": format!("the node is not running ({reason})") }),
            ),
        }
    }

    /// One typed request, through the route table (`understudy_api`).
    pub async fn request(&self, request: &understudy_api::Request) -> (u16, Value) {
        let call = request.to_http();
        self.admin(call.method, &call.path, call.body).await
    }

    /// Stops the node cleanly (agents leave their servers, store closed), at most `limit` long.
    pub async fn shutdown(&self, limit: Duration) {
        let slot = self.get();
        self.set(Slot::Stopping);
        if let Slot::Running(node) = slot {
            if tokio::time::timeout(limit, node.shutdown()).await.is_err() {
                tracing::warn!("the node did not stop within {limit:?}; exiting anyway");
            }
        }
    }
}

/// The node's data directory: `UNDERSTUDY_DATA_DIR`, else the platform's data directory
/// (`~/.local/share/understudy` on Linux).
pub fn data_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("UNDERSTUDY_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("org", "Understudy", "understudy")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| "no home directory: set UNDERSTUDY_DATA_DIR".to_string())
}

/// The admin listener of a node created on first run: `UNDERSTUDY_LISTEN` or 127.0.0.1:7400.
pub fn listen_addr() -> String {
    std::env::var("UNDERSTUDY_LISTEN")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "127.0.0.1:7400".into())
}

/// The name of a node created on first run: this host's name.
fn node_name() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "desktop".into()
    } else {
        name
    }
}

/// AL-7: shows a message of a `desktop` alert channel; `Ok` once shown.
pub type DesktopSink =
    Arc<dyn Fn(&understudy_api::status::DesktopMessage) -> Result<(), String> + Send + Sync>;

/// Creates a standalone node in `dir` if it has no config.toml yet, then starts it; its
/// `desktop` alert channels' messages go to `desktop` (AL-7).
pub async fn start_node(dir: &Path, desktop: DesktopSink) -> Result<Arc<dyn Admin>, String> {
    let config = dir.join("config.toml");
    if !config.exists() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let listen = listen_addr();
        tracing::info!(dir = %dir.display(), %listen, "first run: creating a standalone node");
        runtime::init(dir, &node_name(), &listen)?;
    }
    let node = runtime::start(dir, desktop).await?;
    Ok(node)
}

/// The node of another process — the tray's — whose data directory this is, for the window
/// process. Reached as the CLI reaches it: the directory gives the address, the admin token and
/// the certificate to pin.
pub fn remote(data_dir: &Path) -> Arc<dyn Admin> {
    Arc::new(runtime::Remote::new(data_dir))
}

/// A joined site (UI-5), for the window: its servers (`https://HOST:PORT#FINGERPRINT`, pinned)
/// reached with the site's token. Requests go to the server that says it is ACTIVE; when it
/// stops answering or says STANDBY, the next request looks again (`runtime::Site`).
pub fn site(name: &str, servers: &[String], token: &str) -> Result<Arc<dyn Admin>, String> {
    Ok(Arc::new(runtime::Site::new(name, servers, token)?))
}

/// Whether a status answer says its server is the STANDBY of a hot-standby pair.
fn says_standby(status: &Value) -> bool {
    status["node"]["failover"]["state"].as_str() == Some("standby")
}

/// The one place that names the runtime crate's API.
mod runtime {
    use std::sync::Mutex;

    use super::*;
    use understudy_node::http_client::{AdminClient, ClientError};
    use understudy_node::{InitOptions, Node, Role};

    /// How long one forwarded request may take, connecting included.
    const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

    impl Admin for Node {
        fn admin<'a>(
            &'a self,
            method: &'a str,
            path: &'a str,
            body: Option<Value>,
        ) -> BoxFuture<'a, (u16, Value)> {
            Box::pin(Node::admin(self, method, path, body))
        }
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(Node::shutdown(self))
        }
    }

    pub struct Remote {
        data_dir: PathBuf,
        /// Made from the data directory on first use, and again after a TLS failure.
        client: Mutex<Option<AdminClient>>,
    }

    impl Remote {
        pub fn new(data_dir: &Path) -> Remote {
            Remote {
                data_dir: data_dir.to_path_buf(),
                client: Mutex::new(None),
            }
        }

        fn client(&self, fresh: bool) -> Result<AdminClient, String> {
            let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
            if fresh || slot.is_none() {
                let client = understudy_node::admin_client(&self.data_dir)
                    .map_err(|e| format!("no node found in {}: {e}", self.data_dir.display()))?;
                *slot = Some(client.with_timeout(REMOTE_TIMEOUT));
            }
            slot.clone().ok_or_else(|| "no admin client".to_string())
        }

        fn unreachable(&self, reason: String) -> (u16, Value) {
            unreachable(format!(
                "cannot reach the node: {reason} (is Understudy running in the tray?)"
            ))
        }
    }

    impl Admin for Remote {
        fn admin<'a>(
            &'a self,
            method: &'a str,
            path: &'a str,
            body: Option<Value>,
        ) -> BoxFuture<'a, (u16, Value)> {
            Box::pin(async move {
                // "Generate certificate" gives the node a new certificate, so the pinned one goes
                // stale: after a TLS failure read the directory again and try once more. Nothing
                // was sent when TLS failed, so the retry cannot do an action twice.
                let mut fresh = false;
                loop {
                    let client = match self.client(fresh) {
                        Ok(client) => client,
                        Err(reason) => return self.unreachable(reason),
                    };
                    match client.call(method, path, body.as_ref()).await {
                        Ok(answer) => return answer,
                        Err(ClientError::Tls(_)) if !fresh => fresh = true,
                        Err(e) => return self.unreachable(e.to_string()),
                    }
                }
            })
        }

        /// The node belongs to the tray process: the window never stops it.
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    /// The answer when no server answered: status 0 and why, logged.
    fn unreachable(error: String) -> (u16, Value) {
        tracing::warn!("{error}");
        (UNREACHABLE, json!({ "error": error }))
    }

    /// A joined site's servers, each with a pinned client; `current` is the one that last
    /// answered as the ACTIVE, `None` until the first request (or after it failed), when every
    /// server is asked for its status in turn.
    pub struct Site {
        name: String,
        clients: Vec<AdminClient>,
        current: Mutex<Option<usize>>,
    }

    impl Site {
        pub fn new(name: &str, servers: &[String], token: &str) -> Result<Site, String> {
            if servers.is_empty() {
                return Err(format!("site {name}: no server"));
            }
            let clients = servers
                .iter()
                .map(|url| {
                    AdminClient::new(url, token, Default::default())
                        .map(|c| c.with_timeout(REMOTE_TIMEOUT))
                        .map_err(|e| format!("site {name}: {e}"))
                })
                .collect::<Result<_, _>>()?;
            Ok(Site {
                name: name.to_string(),
                clients,
                current: Mutex::new(None),
            })
        }

        fn current(&self) -> Option<usize> {
            *self.current.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn set_current(&self, i: Option<usize>) {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = i;
        }

        /// Asks each server for its status: the first that says it is not STANDBY is chosen,
        /// else the first that answered. `Err`: why none answered.
        async fn choose(&self) -> Result<usize, String> {
            let mut answered = None;
            let mut reasons = Vec::new();
            for (i, client) in self.clients.iter().enumerate() {
                match client.call("GET", "/api/status", None).await {
                    Ok((200, status)) if !says_standby(&status) => return Ok(i),
                    Ok(_) => {
                        answered.get_or_insert(i);
                    }
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            answered.ok_or_else(|| reasons.join("; "))
        }

        fn unreachable(&self, reason: &str) -> (u16, Value) {
            unreachable(format!("cannot reach site {}: {reason}", self.name))
        }
    }

    impl Admin for Site {
        fn admin<'a>(
            &'a self,
            method: &'a str,
            path: &'a str,
            body: Option<Value>,
        ) -> BoxFuture<'a, (u16, Value)> {
            Box::pin(async move {
                let mut chose_now = false;
                loop {
                    let i = match self.current() {
                        Some(i) => i,
                        None => match self.choose().await {
                            Ok(i) => {
                                chose_now = true;
                                self.set_current(Some(i));
                                i
                            }
                            Err(reason) => return self.unreachable(&reason),
                        },
                    };
                    match self.clients[i].call(method, path, body.as_ref()).await {
                        Ok((status, answer)) => {
                            // A server that says STANDBY: the next request looks for the ACTIVE.
                            if status == 200 && path == "/api/status" && says_standby(&answer) {
                                self.set_current(None);
                            }
                            return (status, answer);
                        }
                        Err(e) => {
                            self.set_current(None);
                            // Try the others once: a TLS failure sent nothing, and reading is
                            // harmless twice; an action that may have reached the server is not
                            // sent again.
                            let resend = method == "GET" || matches!(e, ClientError::Tls(_));
                            if chose_now || !resend {
                                return self.unreachable(&e.to_string());
                            }
                        }
                    }
                }
            })
        }

        /// The site's servers are not this app's: nothing to stop.
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    pub fn init(dir: &Path, name: &str, listen: &str) -> Result<(), String> {
        let opts = InitOptions {
            data_dir: dir.to_path_buf(),
            name: name.to_string(),
            listen: listen.to_string(),
            role: Role::Standalone,
            servers: Vec::new(),
            sets: Vec::new(),
        };
        let report = understudy_node::init(&opts)
            .map_err(|e| format!("creating the node in {}: {e}", dir.display()))?;
        tracing::info!(config = %report.config_path.display(), fingerprint = %report.fingerprint, "node created");
        Ok(())
    }

    pub async fn start(dir: &Path, desktop: DesktopSink) -> Result<Arc<dyn Admin>, String> {
        let node = Node::start(dir)
            .await
            .map_err(|e| format!("starting the node in {}: {e}", dir.display()))?;
        node.set_desktop_notifier(move |m| desktop(m));
        Ok(Arc::new(node))
    }
}

/// How a refused request reaches the window: the HTTP-like status and the node's plain reason,
/// which the console turns into an `ApiError(status, reason)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminError {
    pub status: u16,
    pub error: String,
}

/// Splits a (status, body) answer into success or a rejection carrying the node's reason.
pub fn into_result(status: u16, json: Value) -> Result<Value, AdminError> {
    if status != UNREACHABLE && status < 400 {
        return Ok(json);
    }
    let error = match json.get("error").and_then(Value::as_str) {
        Some(reason) => reason.to_string(),
        None => format!("request failed with status {status}"),
    };
    Err(AdminError { status, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_follows_the_environment() {
        // Only this test touches UNDERSTUDY_DATA_DIR.
        std::env::set_var("UNDERSTUDY_DATA_DIR", "/tmp/understudy-test-dir");
        assert_eq!(
            data_dir().unwrap(),
            PathBuf::from("/tmp/understudy-test-dir")
        );
        std::env::remove_var("UNDERSTUDY_DATA_DIR");
        let d = data_dir().unwrap();
        assert!(d.ends_with("understudy"), "{}", d.display());
    }

    #[tokio::test]
    async fn without_a_node_requests_get_503_with_the_reason() {
        let host = Host::new();
        let (status, body) = host.admin("GET", "/api/status", None).await;
        assert_eq!(status, NOT_RUNNING);
        assert_eq!(body["error"], "the node is not running (starting)");
        host.set_failed("port in use".into());
        assert_eq!(
            host.admin("GET", "/api/status", None).await.1["error"],
            "the node is not running (port in use)"
        );
    }
}
