//! How a command reaches its node and how outcomes become exit codes: the target (a local data
//! directory or `--node URL --token T`), admin API calls with the API's statuses mapped to
//! PRODUCT.md §3's exit codes, and the one error type every command returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use understudy_api::{Done, Refusal, RefusalKind, Request, Status};
use understudy_node::http_client::{AdminClient, ClientError};
use understudy_node::runtime::{self, NodeError};
use understudy_node::tls::{Pins, TlsError};

use crate::Target;

/// Why a command did not do its work, and the exit status that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Exit 2: bad usage or bad configuration.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Exit 1: refused, or could not be done.
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Failure {
        Failure {
            code: if e.exit_code() == 2 { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

/// The data directory: `--data-dir`, else `$UNDERSTUDY_DATA_DIR`, else the platform's: on Windows
/// `%ProgramData%\Understudy` (IN-3: the daemon's, like a service's), elsewhere the user's data
/// directory (`~/.local/share/understudy`).
pub fn data_dir(target: &Target) -> Result<PathBuf, Failure> {
    if let Some(dir) = &target.data_dir {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("UNDERSTUDY_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    #[cfg(windows)]
    if let Some(dir) = std::env::var_os("ProgramData").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("Understudy"));
    }
    directories::ProjectDirs::from("org", "understudy", "understudy")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| {
            Failure::usage("no home directory to find the data directory in: give --data-dir D")
        })
}

/// The admin token for `--node`: `--token`, `--token-file` or, with `--node` only,
/// `$UNDERSTUDY_TOKEN` (a token on the command line is visible in `ps`).
fn token(target: &Target) -> Result<Option<String>, Failure> {
    match (&target.token, &target.token_file) {
        (Some(_), Some(_)) => Err(Failure::usage(
            "give either --token or --token-file, not both",
        )),
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| Failure::usage(format!("reading --token-file {}: {e}", file.display()))),
        (None, None) if target.node.is_some() => Ok(std::env::var("UNDERSTUDY_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())),
        (None, None) => Ok(None),
    }
}

/// A connection to one node's admin API.
pub struct Api {
    client: AdminClient,
    /// What the error messages call the node: its URL or its data directory.
    label: String,
    /// Set when the node was found through its data directory.
    pub data_dir: Option<PathBuf>,
}

/// Why a call got no answer from the node: it is down, or unreachable.
pub struct Unreachable(pub Failure);

impl Api {
    pub fn connect(target: &Target) -> Result<Api, Failure> {
        match (&target.node, &token(target)?) {
            (Some(url), Some(token)) => {
                if target.data_dir.is_some() {
                    return Err(Failure::usage(
                        "give either --data-dir or --node URL --token T, not both",
                    ));
                }
                let client = AdminClient::new(url, token.trim(), Pins::new([]))
                    .map_err(|e| Failure::usage(e.to_string()))?;
                Ok(Api {
                    client,
                    label: url.clone(),
                    data_dir: None,
                })
            }
            (Some(_), None) => Err(Failure::usage(
                "--node needs a token: --token-file F, $UNDERSTUDY_TOKEN or --token T",
            )),
            (None, Some(_)) => Err(Failure::usage("--token and --token-file need --node URL")),
            (None, None) => {
                let dir = data_dir(target)?;
                Api::local(&dir)
            }
        }
    }

    /// The node whose data directory this is.
    pub fn local(dir: &Path) -> Result<Api, Failure> {
        let client = runtime::admin_client(dir)?;
        Ok(Api {
            client,
            label: dir.display().to_string(),
            data_dir: Some(dir.to_path_buf()),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Api {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// One request through the route table; a refusal by the node is `Ok(Err(..))`, no
    /// answer at all is `Err(Unreachable)`.
    pub async fn try_request(
        &self,
        request: &Request,
    ) -> Result<Result<Value, Failure>, Unreachable> {
        let call = request.to_http();
        match self
            .client
            .call(call.method, &call.path, call.body.as_ref())
            .await
        {
            Ok((status, value)) => Ok(outcome(status, value)),
            Err(e) => Err(Unreachable(self.unreachable(e))),
        }
    }

    pub async fn request(&self, request: &Request) -> Result<Value, Failure> {
        match self.try_request(request).await {
            Ok(result) => result,
            Err(Unreachable(failure)) => Err(failure),
        }
    }

    /// A request whose answer is a typed document.
    pub async fn fetch<T: DeserializeOwned>(&self, request: &Request) -> Result<T, Failure> {
        let value = self.request(request).await?;
        typed(value)
    }

    pub async fn status(&self) -> Result<Status, Failure> {
        self.fetch(&Request::Status).await
    }

    /// The node's status, or `None` when it does not answer one.
    pub async fn try_status(&self) -> Option<Status> {
        match self.try_request(&Request::Status).await {
            Ok(Ok(value)) => typed(value).ok(),
            _ => None,
        }
    }

    fn unreachable(&self, e: ClientError) -> Failure {
        let hint = match &e {
            ClientError::Tls(TlsError::Connect { .. })
            | ClientError::Tls(TlsError::Timeout { .. }) => {
                " (is `understudy serve` running for it?)"
            }
            _ => "",
        };
        Failure::refused(format!(
            "no answer from the node at {}: {e}{hint}",
            self.label
        ))
    }
}

/// A document read into its type; a node that answers something else is refused (exit 1).
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_json::from_value(value)
        .map_err(|e| Failure::refused(format!("the node's answer was not understood: {e}")))
}

/// PRODUCT.md §3: 2xx done; an invalid request is bad usage (2); any other refusal 1, with the
/// node's sentence.
fn outcome(status: u16, value: Value) -> Result<Value, Failure> {
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let refusal = Refusal::from_http(status, &value);
    match refusal.kind {
        RefusalKind::Invalid => Err(Failure::usage(refusal.reason)),
        RefusalKind::Unauthorized => Err(Failure::refused(format!(
            "unauthorized: {}",
            refusal.reason
        ))),
        _ => Err(Failure::refused(refusal.reason)),
    }
}

/// Prints what a request that changed something said (`{ok, message}`).
pub fn print_done(value: Value, fallback: &str) {
    match typed::<Done>(value) {
        Ok(done) if !done.message.is_empty() => println!("{}", done.message),
        _ => println!("{fallback}"),
    }
}

pub fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}
