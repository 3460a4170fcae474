//! `understudy`: the command-line front end over the runtime (PRODUCT.md §3). `init`, `serve` and
//! `demo` work on data directories and processes; every other command talks to a running node
//! through its admin API. Exit status: 0 done, 1 refused (reason on stderr), 2 bad usage or bad
//! configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod alerts;
mod api;
mod cert;
mod demo;
mod events;
mod invite;
mod manage;
mod node;
mod output;
mod records;
mod status;

use api::Failure;

#[derive(Parser)]
#[command(
    name = "understudy",
    version,
    about = "Understudy: failover for small-site monitoring",
    long_about = "Understudy: failover for small-site monitoring.\n\n\
        `init`, `serve` and `demo` work on data directories; every other command talks to a \
        running node through its admin API: the local one found by --data-dir (which holds its \
        admin token), or --node URL with --token-file F, $UNDERSTUDY_TOKEN or --token T.\n\n\
        Exit status: 0 done, 1 refused (the reason on stderr), 2 bad usage or bad configuration."
)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Command,
}

/// Which node a command is about.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The node's data directory [default: $UNDERSTUDY_DATA_DIR, else the platform's data
    /// directory for understudy]
    #[arg(long, global = true, value_name = "D")]
    pub data_dir: Option<PathBuf>,
    /// Talk to the node at this admin URL instead of a local data directory:
    /// https://IP:PORT[#FINGERPRINT] (needs --token)
    #[arg(long, global = true, value_name = "URL")]
    pub node: Option<String>,
    /// The admin token for --node (the content of the node's admin.token). Visible to other
    /// users in the process list: prefer --token-file or $UNDERSTUDY_TOKEN
    #[arg(long, global = true, value_name = "T")]
    pub token: Option<String>,
    /// A file holding the admin token for --node
    #[arg(long, global = true, value_name = "F")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node's data directory: config.toml, certificate and admin token
    Init(node::InitArgs),
    /// Run a node in the foreground until SIGINT/SIGTERM
    Serve(node::ServeArgs),
    /// This node, its server link, pairs, agents and hot-standby peer
    Status {
        /// Print the admin API's JSON
        #[arg(long)]
        json: bool,
    },
    /// Pairs of agents sharing one collection duty
    #[command(subcommand)]
    Pair(PairCommand),
    /// Agents of this server: list, enrollment, recall
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Change this node's roles and failover mode at run time (HS-7)
    #[command(subcommand)]
    Role(RoleCommand),
    /// Hot standby of servers
    #[command(subcommand)]
    Ha(HaCommand),
    /// This node's TLS certificate
    #[command(subcommand)]
    Cert(CertCommand),
    /// The event log, oldest first
    Events(events::EventsArgs),
    /// Checks: the collection duty run by agents and pairs
    #[command(subcommand)]
    Check(CheckCommand),
    /// Hand records to the local agent: NAME=VALUE...
    Send {
        /// NAME=NUMBER, e.g. cpu=0.5
        #[arg(required = true, value_name = "NAME=VALUE", value_parser = records::parse_assignment)]
        records: Vec<(String, f64)>,
        /// A label every record of this call carries (issue 18), e.g. --label host=web-1;
        /// repeatable
        #[arg(long = "label", value_name = "NAME=VALUE", value_parser = records::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// The records this server has stored
    Records(records::RecordsArgs),
    /// Alerts raised by the acting server and their delivery per channel (AL-1, AL-5)
    #[command(subcommand)]
    Alert(alerts::AlertCommand),
    /// One-line invitations to this site (UI-5): operator tokens for desktops and scripts,
    /// `--admin`, `--agent`, `--peer`; `invite list`, `invite revoke ID`
    Invite(invite::InviteArgs),
    /// Run a whole site on this machine: two servers in hot standby, two pairs, one lone agent
    Demo(demo::DemoArgs),
    /// Write the manual pages (understudy.1 and one per command) into DIR (the packages do)
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum PairCommand {
    /// List the pairs with their active member
    List,
    /// Add a pair
    Add {
        /// The pair's alias (its data is stored under this name)
        name: String,
        /// The primary agent
        #[arg(long, value_name = "A")]
        primary: String,
        /// The secondary agent
        #[arg(long, value_name = "B")]
        secondary: String,
        /// How long the active primary may be silent before the secondary takes over (e.g. 10s)
        #[arg(long, value_name = "D", value_parser = parse_duration_arg)]
        failover_after: Option<std::time::Duration>,
        /// Go back to the primary by itself after --hold-down (auto), or only when told (manual)
        #[arg(long, value_enum)]
        switchback: Option<Switchback>,
        /// How long the primary must be healthy before an automatic switchback (e.g. 60s)
        #[arg(long, value_name = "D", value_parser = parse_duration_arg)]
        hold_down: Option<std::time::Duration>,
    },
    /// Move a healthy pair to its secondary
    ForceFailover { name: String },
    /// Move a pair back to its primary
    Revert { name: String },
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// List the agents, pending ones included
    List,
    /// Accept a pending agent
    Accept { name: String },
    /// Reject a pending agent
    Reject { name: String },
    /// Tell an agent of ours that is on a standby server to come home
    Recall { name: String },
    /// Delete a pending or rejected agent's entry (after an enrollment flood, say)
    Forget { name: String },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Switch roles and failover mode; validated, persisted and applied without a restart
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)
        .args(["server", "agent", "failover"])))]
    Set {
        #[arg(long, value_enum)]
        server: Option<OnOff>,
        #[arg(long, value_enum)]
        agent: Option<OnOff>,
        #[arg(long, value_enum)]
        failover: Option<FailoverMode>,
    },
}

#[derive(Subcommand)]
pub enum HaCommand {
    /// Make this acting server STANDBY so the primary takes over again (HS-5)
    Standby,
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Show the certificate's fingerprint, names and expiry (read from disk if the node is down)
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Generate a new self-signed certificate for this machine's addresses and host name
    Generate {
        /// An extra IP address to put in the certificate
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// An extra DNS name to put in the certificate
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum CheckCommand {
    /// List the checks
    List,
    /// Define a check, run by an agent or by a pair's active member
    #[command(group(clap::ArgGroup::new("owner").required(true).args(["agent", "pair"])))]
    Add {
        name: String,
        #[arg(long, value_enum)]
        kind: CheckKind,
        /// host:port (tcp), URL (http, prometheus) or command line (command)
        #[arg(long, value_name = "T")]
        target: String,
        /// prometheus: the bearer token sent with each scrape (not `--token`: that is every
        /// command's admin token for --node)
        #[arg(id = "bearer_token", long = "bearer-token", value_name = "T")]
        token: Option<String>,
        /// prometheus: a scrape of more samples than this fails (default 20000)
        #[arg(long, value_name = "N")]
        max_samples: Option<u64>,
        /// Interval between runs (e.g. 10s)
        #[arg(long, value_name = "D", value_parser = parse_duration_arg)]
        every: Option<std::time::Duration>,
        /// How long one run may take (e.g. 5s)
        #[arg(long, value_name = "D", value_parser = parse_duration_arg)]
        timeout: Option<std::time::Duration>,
        /// Run on this agent
        #[arg(long, value_name = "A")]
        agent: Option<String>,
        /// Run on this pair's active member
        #[arg(long, value_name = "P")]
        pair: Option<String>,
        /// DOWN after this many failed runs in a row (AL-2; default 3)
        #[arg(long, value_name = "N")]
        fail_after: Option<u32>,
        /// UP again after this many good runs in a row (AL-2; default 2)
        #[arg(long, value_name = "N")]
        ok_after: Option<u32>,
    },
    /// Remove a check
    Remove { name: String },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Server,
    Agent,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Switchback {
    Auto,
    Manual,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum OnOff {
    On,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum FailoverMode {
    Off,
    Primary,
    Secondary,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CheckKind {
    Tcp,
    Http,
    Command,
    /// CK-4: scrape a Prometheus text exposition; every sample becomes a record
    Prometheus,
}

/// The name clap and the API share for a value-enum choice.
pub fn choice<T: ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Durations are checked here so a typo is bad usage (exit 2) before anything is sent.
fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    understudy_api::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // `serve` and `demo` own their runtime and signal handling.
        Command::Serve(args) => node::serve(&cli.target, &args),
        Command::Demo(args) => demo::run(&cli.target, &args),
        Command::Man { dir } => write_manual(&dir),
        command => match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(dispatch(&cli.target, command)),
            Err(e) => Err(Failure::refused(format!("starting the async runtime: {e}"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The manual pages, from the same definitions as `--help` (clap_mangen).
fn write_manual(dir: &std::path::Path) -> Result<(), Failure> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)
        .and_then(|_| clap_mangen::generate_to(Cli::command(), dir))
        .map_err(|e| {
            Failure::refused(format!(
                "writing the manual pages to {}: {e}",
                dir.display()
            ))
        })
}

async fn dispatch(target: &Target, command: Command) -> Result<(), Failure> {
    match command {
        Command::Init(args) => node::init(target, &args).await,
        Command::Status { json } => status::run(target, json).await,
        Command::Pair(cmd) => manage::pair(target, cmd).await,
        Command::Agent(cmd) => manage::agent(target, cmd).await,
        Command::Role(cmd) => manage::role(target, cmd).await,
        Command::Ha(cmd) => manage::ha(target, cmd).await,
        Command::Cert(cmd) => cert::run(target, cmd).await,
        Command::Events(args) => events::run(target, &args).await,
        Command::Check(cmd) => manage::check(target, cmd).await,
        Command::Send { records, labels } => records::send(target, &records, &labels).await,
        Command::Records(args) => records::list(target, &args).await,
        Command::Alert(cmd) => alerts::run(target, cmd).await,
        Command::Invite(args) => invite::run(target, args).await,
        Command::Serve(_) | Command::Demo(_) | Command::Man { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The admin token and a check's scrape token, as `args` give them.
    fn tokens(args: &[&str]) -> (Option<String>, Option<String>) {
        let cli = Cli::try_parse_from(args).expect("parses");
        match cli.command {
            Command::Check(CheckCommand::Add { token, .. }) => (cli.target.token, token),
            _ => panic!("not check add"),
        }
    }

    /// A command's own token options never take the admin token's `--token` (a global option):
    /// `check add --kind prometheus --bearer-token T` with a local data directory is the scrape's
    /// token, and `--token` stays the admin token.
    #[test]
    fn ck4_a_prometheus_checks_bearer_token_is_not_the_admin_token() {
        let add = [
            "check",
            "add",
            "node",
            "--kind",
            "prometheus",
            "--target",
            "http://127.0.0.1:9100/metrics",
            "--agent",
            "a",
        ];
        let local = [&["understudy"][..], &add, &["--bearer-token", "S"]].concat();
        assert_eq!(tokens(&local), (None, Some("S".into())));
        let remote = [
            &[
                "understudy",
                "--node",
                "https://127.0.0.1:7400",
                "--token",
                "ADMIN",
            ][..],
            &add,
        ]
        .concat();
        assert_eq!(tokens(&remote), (Some("ADMIN".into()), None));
    }
}
