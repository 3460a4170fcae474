//! `init` (a new node's data directory) and `serve` (the node in the foreground until
//! SIGINT/SIGTERM). These two work on files and this process, not through the admin API.

use std::path::{Path, PathBuf};

use clap::Args;
use understudy_api::{Invitation, PeerJoin, Request, TokenKind};
use understudy_node::config::{Config, ServerUrl, CONFIG_FILE};
use understudy_node::http_client::AdminClient;
use understudy_node::runtime::{self, InitOptions, Node};
use understudy_node::tls::{self, Pins};

use crate::api::{self, Failure};
use crate::{Role, Target};

#[derive(Args)]
pub struct InitArgs {
    /// The node's name, as pairs, the UI and events call it
    #[arg(long, value_name = "N")]
    name: String,
    /// IP:PORT to listen on, for agents, the peer server and the admin API
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// standalone = server and agent in one node
    #[arg(
        long,
        value_enum,
        default_value = "standalone",
        conflicts_with = "join"
    )]
    role: Role,
    /// An agent's server, home first, then standby ones: https://HOST:PORT[#FINGERPRINT]
    #[arg(long = "server", value_name = "URL[#FINGERPRINT]", value_parser = parse_server_url,
          conflicts_with = "join")]
    servers: Vec<String>,
    /// Join a site with an invitation of `understudy invite --agent` (an agent with the site's
    /// servers pinned and enrolled) or `--peer` (the hot-standby secondary of the server that
    /// made it); the servers' certificates are checked before anything is written
    #[arg(long, value_name = "INVITATION")]
    join: Option<String>,
    /// Any configuration key, e.g. agent.heartbeat=200ms (repeatable)
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The node's config.toml (its data directory is the one the file names, else its folder)
    #[arg(long, value_name = "F")]
    config: Option<PathBuf>,
}

fn parse_server_url(s: &str) -> Result<String, String> {
    ServerUrl::parse(s).map(|_| s.trim().to_string())
}

pub async fn init(target: &Target, args: &InitArgs) -> Result<(), Failure> {
    if target.node.is_some() {
        return Err(Failure::usage(
            "init works on a data directory (--data-dir D), not --node",
        ));
    }
    let data_dir = api::data_dir(target)?;
    if let Some(invitation) = &args.join {
        return join(&data_dir, args, invitation).await;
    }
    let role = match args.role {
        Role::Standalone => runtime::Role::Standalone,
        Role::Server => runtime::Role::Server,
        Role::Agent => runtime::Role::Agent,
    };
    let report = runtime::init(&InitOptions {
        data_dir: data_dir.clone(),
        name: args.name.clone(),
        listen: args.listen.clone(),
        role,
        servers: args.servers.clone(),
        sets: args.sets.clone(),
    })?;
    print_initialised(&data_dir, args, &report);
    Ok(())
}

/// Issue 14 item 3: `init --join INVITATION`. The inviting server must present the certificate
/// the invitation names before anything is written; a `--peer` join then asks it to take this
/// server as its hot-standby peer, and a refusal there removes what was written.
async fn join(data_dir: &Path, args: &InitArgs, text: &str) -> Result<(), Failure> {
    let invitation = Invitation::parse(text).map_err(|e| Failure::usage(format!("--join: {e}")))?;
    let role = match invitation.kind {
        TokenKind::Agent => runtime::Role::Agent,
        TokenKind::Peer => runtime::Role::Server,
        kind => {
            return Err(Failure::usage(format!(
                "--join: this is an {} invitation, for the desktop app or `--node URL --token-file F`; \
                 an agent joins with `understudy invite --agent`'s, a standby server with `--peer`'s",
                kind.as_str()
            )))
        }
    };
    let first = &invitation.servers[0];
    let pins = Pins::new([first.fingerprint.clone()]);
    if let Err(e) = tls::connect(&first.address, &pins, None, &[tls::ALPN_HTTP]).await {
        return Err(Failure::refused(format!(
            "--join: {} does not present the certificate the invitation names ({e}); nothing was stored",
            first.address
        )));
    }
    let mut sets = Vec::new();
    let mut servers = Vec::new();
    match invitation.kind {
        TokenKind::Agent => {
            servers = invitation.servers.iter().map(|s| s.url()).collect();
            sets.push(format!("agent.enroll_token={}", invitation.token));
        }
        _ => {
            sets.push(format!("failover.peer={}", first.url()));
            sets.push("failover.mode=secondary".into());
        }
    }
    sets.extend(args.sets.iter().cloned());
    let existed = data_dir.exists();
    let report = runtime::init(&InitOptions {
        data_dir: data_dir.to_path_buf(),
        name: args.name.clone(),
        listen: args.listen.clone(),
        role,
        servers,
        sets,
    })?;
    if invitation.kind == TokenKind::Peer {
        let own = format!("https://{}#{}", args.listen, report.fingerprint);
        let joined = ask_to_join(&first.url(), &invitation.token, &args.name, &own).await;
        if let Err(failure) = joined {
            // Nothing of this failed join stays behind.
            let _ = if existed {
                std::fs::remove_file(&report.config_path)
            } else {
                std::fs::remove_dir_all(data_dir)
            };
            return Err(failure);
        }
        println!(
            "{} takes this server as its hot-standby peer (this one is the secondary)",
            first.address
        );
    }
    print_initialised(data_dir, args, &report);
    Ok(())
}

async fn ask_to_join(url: &str, token: &str, name: &str, own: &str) -> Result<(), Failure> {
    let client =
        AdminClient::new(url, token, Pins::new([])).map_err(|e| Failure::usage(e.to_string()))?;
    let call = Request::JoinPeer(PeerJoin {
        name: name.to_string(),
        url: own.to_string(),
    })
    .to_http();
    match client
        .call(call.method, &call.path, call.body.as_ref())
        .await
    {
        Ok((200, _)) => Ok(()),
        Ok((status, answer)) => Err(Failure::refused(format!(
            "--join: {url} refused ({status}): {}; nothing was stored",
            answer["error"].as_str().unwrap_or(&answer.to_string())
        ))),
        Err(e) => Err(Failure::refused(format!(
            "--join: {url} did not answer: {e}; nothing was stored"
        ))),
    }
}

fn print_initialised(data_dir: &Path, args: &InitArgs, report: &runtime::InitReport) {
    println!("initialised node {} in {}", args.name, data_dir.display());
    println!("config:      {}", report.config_path.display());
    println!("fingerprint: {}", report.fingerprint);
    println!("admin URL:   {}", report.admin_url);
    println!(
        "start it with: understudy serve --data-dir {}",
        data_dir.display()
    );
}

/// Which data directory `serve` runs. The runtime reads `<data dir>/config.toml`, so `--config F`
/// must be that file; it is loaded here first so a bad file is reported as `file:line:col` (§4).
fn serve_dir(target: &Target, args: &ServeArgs) -> Result<PathBuf, Failure> {
    if target.node.is_some() {
        return Err(Failure::usage(
            "serve runs a local node: give --config F or --data-dir D",
        ));
    }
    let (config_path, dir_given) = match (&args.config, &target.data_dir) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give either --config F or --data-dir D, not both",
            ))
        }
        (Some(file), None) => (file.clone(), None),
        (None, _) => {
            let dir = api::data_dir(target)?;
            (dir.join(CONFIG_FILE), Some(dir))
        }
    };
    if !config_path.exists() {
        return Err(Failure::usage(format!(
            "{}: no such file (create the node with `understudy init`)",
            config_path.display()
        )));
    }
    let config = Config::load(&config_path).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(dir) = dir_given {
        return Ok(dir);
    }
    let dir = config.node.data_dir.clone();
    if !same_file(&dir.join(CONFIG_FILE), &config_path) {
        return Err(Failure::usage(format!(
            "{}: node.data_dir is {}, whose config.toml is another file; the node reads the \
             config.toml in its data directory, so serve that one (--data-dir {})",
            config_path.display(),
            dir.display(),
            dir.display()
        )));
    }
    Ok(dir)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub fn serve(target: &Target, args: &ServeArgs) -> Result<(), Failure> {
    let dir = serve_dir(target, args)?;
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::refused(format!("starting the async runtime: {e}")))?;
    rt.block_on(async {
        // Signal handlers go in before the node starts so an early SIGTERM still stops it cleanly.
        let mut stop = Stop::new()?;
        let node = Node::start(&dir).await?;
        say(&format!(
            "understudy: node running from {}; SIGINT or SIGTERM stops it",
            dir.display()
        ));
        // The store is open and the port listens: a Type=notify service is up (IN-1).
        tell_service_manager(ServiceState::Ready(&format!(
            "running from {}",
            dir.display()
        )));
        let signal = stop.wait().await;
        say(&format!("understudy: {signal}: stopping"));
        tell_service_manager(ServiceState::Stopping);
        node.stop(&format!("planned stop ({signal})")).await;
        Ok(())
    })
}

/// A line on stderr for a running node: not `eprintln!`, which panics when stderr is a file on
/// a full disk (PRODUCT.md §4 "disk full": the node keeps running).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What the node tells its service manager.
#[cfg_attr(not(unix), allow(dead_code))]
enum ServiceState<'a> {
    Ready(&'a str),
    Stopping,
}

/// IN-1: tells systemd's service manager what the node is doing (`Type=notify`); does nothing
/// when not started by one (no `NOTIFY_SOCKET`).
#[cfg(unix)]
fn tell_service_manager(state: ServiceState) {
    use sd_notify::NotifyState;
    let states = match state {
        ServiceState::Ready(status) => vec![NotifyState::Ready, NotifyState::Status(status)],
        ServiceState::Stopping => vec![NotifyState::Stopping],
    };
    if let Err(e) = sd_notify::notify(false, &states) {
        say(&format!(
            "understudy: telling the service manager {states:?}: {e}"
        ));
    }
}

/// Windows has no systemd (IN-3): a service wrapper sees the process itself.
#[cfg(not(unix))]
fn tell_service_manager(_state: ServiceState) {}

/// SIGINT and SIGTERM (and SIGHUP for the demo), whichever comes first.
#[cfg(unix)]
pub struct Stop {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Stop {
    pub fn new() -> Result<Stop, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let err = |e: std::io::Error| Failure::refused(format!("installing signal handlers: {e}"));
        Ok(Stop {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
            hup: None,
        })
    }

    /// Also stops on SIGHUP: its terminal closed (the demo, issue 17 item 5).
    pub fn with_hangup() -> Result<Stop, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut stop = Stop::new()?;
        stop.hup = Some(
            signal(SignalKind::hangup())
                .map_err(|e| Failure::refused(format!("installing signal handlers: {e}")))?,
        );
        Ok(stop)
    }

    /// Waits for a signal and names it.
    pub async fn wait(&mut self) -> &'static str {
        let hup = async {
            match &mut self.hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = hup => "SIGHUP",
        }
    }
}

/// Windows (IN-3): Ctrl-C, Ctrl-Break, the console window closed, logoff or shutdown.
#[cfg(windows)]
pub struct Stop {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    shutdown: tokio::signal::windows::CtrlShutdown,
}

#[cfg(windows)]
impl Stop {
    pub fn new() -> Result<Stop, Failure> {
        use tokio::signal::windows;
        let err = |e: std::io::Error| Failure::refused(format!("installing console handlers: {e}"));
        Ok(Stop {
            c: windows::ctrl_c().map_err(err)?,
            brk: windows::ctrl_break().map_err(err)?,
            close: windows::ctrl_close().map_err(err)?,
            shutdown: windows::ctrl_shutdown().map_err(err)?,
        })
    }

    /// The console window closing is already one of the stops.
    pub fn with_hangup() -> Result<Stop, Failure> {
        Stop::new()
    }

    /// Waits for a console event and names it.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.c.recv() => "Ctrl-C",
            _ = self.brk.recv() => "Ctrl-Break",
            _ = self.close.recv() => "console closed",
            _ = self.shutdown.recv() => "system shutdown",
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
///
/// A log line the disk refuses is dropped: tracing-subscriber's own report of a failed write
/// (`log_internal_errors`) goes through `eprintln!`, which panics when stderr is a file on a
/// full disk, and took the thread that logged with it (issue 18: the task writing check
/// results, and with it every check, on an agent whose log shared its full disk).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
