//! `understudy-bench`: the benchmarks of PRODUCT.md §5 (and issues 3, 4, 7), each a subcommand
//! that runs real `understudy serve` processes (the release binary) on 127.0.9.x and prints a
//! Markdown section; `all` runs them in turn and rewrites those sections of BENCHMARKS.md.
//!
//! Timings are measured here and written down; nothing asserts on them.

mod abuse;
mod alerts;
mod checkgap;
mod checks;
mod forward;
mod homecomplete;
mod idle;
mod ingest;
mod jitter;
mod metrics;
mod scale;
mod series;
mod site;
mod stats;
mod switchover;
mod takeover;
mod throughput;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "understudy-bench",
    about = "Benchmarks of Understudy; figures go to BENCHMARKS.md"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
pub struct Common {
    /// The `understudy` binary to run (default: `understudy` beside this executable, i.e.
    /// target/release/understudy under `cargo run --release`).
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    /// Where the nodes' data directories go (a real disk: SQLite commits are measured).
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// Rewrite this benchmark's section of BENCHMARKS.md (`all` always does).
    #[arg(long, global = true)]
    write: bool,
    /// The Markdown file to rewrite.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// SQLite group-commit limit (product Store) and records/s end to end, one agent.
    Throughput(throughput::Opts),
    /// Home server SIGKILLed → agent delivers to its standby (default and fast settings).
    Switchover(switchover::Opts),
    /// Hot standby: ACTIVE server SIGKILLed → every agent delivers to the new ACTIVE; and pair
    /// failover: active primary agent SIGKILLed → secondary active.
    Takeover(takeover::Opts),
    /// False failovers/switchovers under 0–50 ms jitter with 5% "loss" (200 ms retransmit delay).
    Jitter(jitter::Opts),
    /// Idle standalone daemon: RSS and CPU.
    Idle(idle::Opts),
    /// One server holding thousands of simulated agents at a 1 s heartbeat.
    Scale(scale::Opts),
    /// Checks per second one agent sustains, with its CPU.
    Checks(checks::Opts),
    /// The gap in a pair's check series at planned and unplanned handovers (CK-3).
    CheckGap(checkgap::Opts),
    /// Home complete after a switchback with 100,000 records held by a standby (AG-2), and
    /// the agent's cache size during the outage.
    HomeComplete(homecomplete::Opts),
    /// A server with agents delivering while strangers hold idle and slow-handshake connections.
    Abuse(abuse::Opts),
    /// Alerts (issue 15): event → webhook latency, and messages for many checks down at once.
    Alerts(alerts::Opts),
    /// Forwarding (MX-2): records/s forwarded to a local VictoriaMetrics beside one agent's
    /// ingest at full speed, and whether the lag stays bounded.
    Forward(forward::Opts),
    /// MX-1: time and size of a /metrics scrape with 5,000 agents and 1,000 checks.
    Metrics(metrics::Opts),
    /// MX-3: /api/series latency for a week of a 5 s check.
    Series(series::Opts),
    /// CK-4 (issue 18): samples/s one agent carries to the server, scraped and pushed.
    Ingest(ingest::Opts),
    /// Everything, then rewrite BENCHMARKS.md.
    All(AllOpts),
}

#[derive(Args)]
struct AllOpts {
    /// Small run counts and short windows: a smoke test of the harness, not figures.
    #[arg(long)]
    quick: bool,
    /// Only these benchmarks (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// One benchmark's Markdown section.
pub struct Section {
    pub key: &'static str,
    pub body: String,
}

pub struct Env {
    pub bin: PathBuf,
    pub work: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn stamp(command: &str) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "_Taken {date}; load average at the start {} on {}; command: `{command}`._\n\n",
        stats::loadavg(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

fn write_sections(out: &Path, sections: &[Section]) {
    let mut text =
        std::fs::read_to_string(out).unwrap_or_else(|_| "# Understudy benchmarks\n".to_string());
    for s in sections {
        let (open, close) = (
            format!("<!-- bench:{} -->", s.key),
            format!("<!-- /bench:{} -->", s.key),
        );
        let block = format!("{open}\n{}\n{close}", s.body.trim_end());
        match (text.find(&open), text.find(&close)) {
            (Some(a), Some(b)) if b > a => text.replace_range(a..b + close.len(), &block),
            _ => {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push('\n');
                text.push_str(&block);
                text.push('\n');
            }
        }
    }
    std::fs::write(out, text).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    eprintln!("wrote {}", out.display());
}

/// Raises the soft open-files limit to the hard one (children inherit it).
fn raise_nofile() {
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() {
    let cli = Cli::parse();
    raise_nofile();
    let bin = cli.common.bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("this executable's path");
        exe.parent().expect("a directory").join("understudy")
    });
    assert!(
        bin.exists(),
        "{} does not exist: `cargo build --release -p understudy-cli` first, or --bin",
        bin.display()
    );
    let work = cli
        .common
        .work_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("target").join("bench-work"));
    let env = Env { bin, work };
    let out = cli
        .common
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo run --release -p understudy-bench -- {}",
        args.join(" ")
    );
    let mut write = cli.common.write;
    let sections: Vec<Section> = rt.block_on(async {
        match cli.cmd {
            Cmd::Throughput(o) => vec![throughput::run(&env, &o, &stamp(&command)).await],
            Cmd::Switchover(o) => vec![switchover::run(&env, &o, &stamp(&command)).await],
            Cmd::Takeover(o) => vec![takeover::run(&env, &o, &stamp(&command)).await],
            Cmd::Jitter(o) => vec![jitter::run(&env, &o, &stamp(&command)).await],
            Cmd::Idle(o) => vec![idle::run(&env, &o, &stamp(&command)).await],
            Cmd::Scale(o) => vec![scale::run(&env, &o, &stamp(&command)).await],
            Cmd::Checks(o) => vec![checks::run(&env, &o, &stamp(&command)).await],
            Cmd::CheckGap(o) => vec![checkgap::run(&env, &o, &stamp(&command)).await],
            Cmd::HomeComplete(o) => vec![homecomplete::run(&env, &o, &stamp(&command)).await],
            Cmd::Abuse(o) => vec![abuse::run(&env, &o, &stamp(&command)).await],
            Cmd::Alerts(o) => vec![alerts::run(&env, &o, &stamp(&command)).await],
            Cmd::Forward(o) => vec![forward::run(&env, &o, &stamp(&command)).await],
            Cmd::Metrics(o) => vec![metrics::run(&env, &o, &stamp(&command)).await],
            Cmd::Series(o) => vec![series::run(&env, &o, &stamp(&command)).await],
            Cmd::Ingest(o) => vec![ingest::run(&env, &o, &stamp(&command)).await],
            Cmd::All(a) => {
                write = true;
                let want = |k: &str| a.only.is_empty() || a.only.iter().any(|o| o == k);
                let mut v = vec![Section {
                    key: "machine",
                    body: format!(
                        "## Machine\n\n{}\n\n{}",
                        stats::machine(),
                        stamp(&command).trim_end()
                    ),
                }];
                let q = a.quick;
                let mut push = |s: Section| {
                    if !q {
                        // Keep what is done even if a later benchmark panics.
                        write_sections(&out, std::slice::from_ref(&s));
                    }
                    v.push(s);
                };
                if want("throughput") {
                    push(
                        throughput::run(
                            &env,
                            &throughput::Opts::for_all(q),
                            &stamp(&format!("{command} (throughput)")),
                        )
                        .await,
                    );
                }
                if want("switchover") {
                    push(
                        switchover::run(
                            &env,
                            &switchover::Opts::for_all(q),
                            &stamp(&format!("{command} (switchover)")),
                        )
                        .await,
                    );
                }
                if want("idle") {
                    push(
                        idle::run(
                            &env,
                            &idle::Opts::for_all(q),
                            &stamp(&format!("{command} (idle)")),
                        )
                        .await,
                    );
                }
                if want("takeover") {
                    push(
                        takeover::run(
                            &env,
                            &takeover::Opts::for_all(q),
                            &stamp(&format!("{command} (takeover)")),
                        )
                        .await,
                    );
                }
                if want("jitter") {
                    push(
                        jitter::run(
                            &env,
                            &jitter::Opts::for_all(q),
                            &stamp(&format!("{command} (jitter)")),
                        )
                        .await,
                    );
                }
                if want("scale") {
                    push(
                        scale::run(
                            &env,
                            &scale::Opts::for_all(q),
                            &stamp(&format!("{command} (scale)")),
                        )
                        .await,
                    );
                }
                if want("checks") {
                    push(
                        checks::run(
                            &env,
                            &checks::Opts::for_all(q),
                            &stamp(&format!("{command} (checks)")),
                        )
                        .await,
                    );
                }
                if want("checkgap") {
                    push(
                        checkgap::run(
                            &env,
                            &checkgap::Opts::for_all(q),
                            &stamp(&format!("{command} (checkgap)")),
                        )
                        .await,
                    );
                }
                if want("homecomplete") {
                    push(
                        homecomplete::run(
                            &env,
                            &homecomplete::Opts::for_all(q),
                            &stamp(&format!("{command} (homecomplete)")),
                        )
                        .await,
                    );
                }
                if want("alerts") {
                    push(
                        alerts::run(
                            &env,
                            &alerts::Opts::for_all(q),
                            &stamp(&format!("{command} (alerts)")),
                        )
                        .await,
                    );
                }
                if want("ingest") {
                    push(
                        ingest::run(
                            &env,
                            &ingest::Opts::for_all(q),
                            &stamp(&format!("{command} (ingest)")),
                        )
                        .await,
                    );
                }
                if want("forward") {
                    push(
                        forward::run(
                            &env,
                            &forward::Opts::for_all(q),
                            &stamp(&format!("{command} (forward)")),
                        )
                        .await,
                    );
                }
                if q {
                    write = false;
                }
                v
            }
        }
    });
    for s in &sections {
        println!("{}\n", s.body);
    }
    if write {
        write_sections(&out, &sections);
    }
}
