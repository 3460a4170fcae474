//! Switchover (AG-3): the home server is SIGKILLed → time until the agent delivers a new record
//! to its standby server. Home is restarted between runs and the agent switches back (AG-6).

use std::time::Duration;

use clap::Args;

use crate::site::{deliver, seen, wait_link, Ctx};
use crate::stats::{fmt_s, met, secs, summary};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Runs with sub-second settings.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Runs with default settings (about 13 s each).
    #[arg(long, default_value_t = 30)]
    pub default_runs: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                runs: 3,
                default_runs: 1,
            }
        } else {
            Opts {
                runs: 30,
                default_runs: 30,
            }
        }
    }
}

pub struct Series {
    pub label: String,
    pub target: f64,
    pub xs: Vec<f64>,
    pub failed: usize,
}

/// One site: home + standby server + an agent; `runs` kills of home.
async fn series(env: &Env, label: &str, agent_sets: &[&str], target: f64, runs: usize) -> Series {
    let ctx = Ctx::new(&env.bin, &env.work, "switchover");
    let mut home = ctx.server("home", &[]);
    let mut standby = ctx.server("standby", &[]);
    home.start().await;
    standby.start().await;
    let mut agent = ctx.agent("agent", &[home.url(), standby.url()], agent_sets);
    agent.start().await;
    let mut xs = Vec::new();
    let mut failed = 0;
    let long = Duration::from_secs(120);
    for run in 0..runs {
        if let Err(e) = wait_link(&agent, "home", &home.listen, long).await {
            eprintln!("switchover {label}: run {run}: {e}");
            failed += 1;
            break;
        }
        // Steady state: a record reaches home now.
        if let Err(e) = deliver(&agent, &home, &format!("warm-{run}"), long).await {
            eprintln!("switchover {label}: {e}");
            failed += 1;
            continue;
        }
        let probe = format!("probe-{run}");
        let t0 = home.kill9();
        if let Err(e) = agent.send(&[(probe.clone(), run as f64)]).await {
            eprintln!("switchover {label}: send: {e}");
        }
        match seen(
            &standby,
            &agent.name,
            &probe,
            long,
            Duration::from_millis(20),
        )
        .await
        {
            Ok(t1) => {
                let x = secs(t1.duration_since(t0));
                eprintln!("switchover {label}: run {run}: {}", fmt_s(x));
                xs.push(x);
            }
            Err(e) => {
                eprintln!("switchover {label}: run {run}: {e}");
                failed += 1;
            }
        }
        home.start().await;
    }
    agent.stop();
    standby.stop();
    home.stop();
    Series {
        label: label.to_string(),
        target,
        xs,
        failed,
    }
}

pub fn table(rows: &[Series]) -> String {
    let mut md = String::from("| settings | runs | p50 | p99 | min | max | target (p99) | |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
    for s in rows {
        let m = summary(&s.xs);
        let fails = if s.failed > 0 {
            format!(" ({} failed)", s.failed)
        } else {
            String::new()
        };
        md.push_str(&format!(
            "| {} | {}{fails} | {} | **{}** | {} | {} | {} | {} |\n",
            s.label,
            m.n,
            fmt_s(m.p50),
            fmt_s(m.p99),
            fmt_s(m.min),
            fmt_s(m.max),
            fmt_s(s.target),
            met(m.n > 0 && s.failed == 0 && m.p99 <= s.target)
        ));
    }
    md
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let mut rows = Vec::new();
    if o.default_runs > 0 {
        // switchback_interval only decides how fast the agent goes home between runs.
        rows.push(
            series(
                env,
                "default (heartbeat 1s, switchover_after 10s)",
                &["agent.switchback_interval=1s"],
                11.0,
                o.default_runs,
            )
            .await,
        );
    }
    if o.runs > 0 {
        rows.push(
            series(
                env,
                "fast (heartbeat 200ms, switchover_after 600ms)",
                crate::site::FAST_AGENT,
                0.8,
                o.runs,
            )
            .await,
        );
    }
    let mut md = String::from(
        "## 2. Switchover: home server killed → agent delivering to its standby (issue 3)\n\n",
    );
    md.push_str(stamp);
    md.push_str(
        "**Method.** A home server, a standby server and one agent (`--server home --server standby`), \
         release binaries. Each run: the agent is on home and a record has just reached home; home gets \
         SIGKILL; right after, one record is handed to the agent (`POST /api/send`); the clock stops when \
         the standby's `records` (polled every 20 ms) lists it. Home is restarted and the agent switches \
         back before the next run (`switchback_interval=1s`, the enforced minimum, in both series: it does \
         not take part in the measured path). p99 is nearest-rank (with 30 runs, the slowest run). \
         Target: `switchover_after` + one heartbeat.\n\n",
    );
    md.push_str(&table(&rows));
    Section {
        key: "switchover",
        body: md,
    }
}
