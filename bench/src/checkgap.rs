//! Issue 7: the gap in a pair's check series at a handover (CK-3). One server, two agents in pair
//! `web` with a `tcp` check every `I` under the pair's alias. Planned handovers (force failover,
//! revert, alternating) and unplanned ones (the active member SIGKILLed, restarted afterwards).
//! Afterwards the whole series is read from the server: at each change of holder the gap is the
//! time between the old holder's last run and the new holder's first run (the agents' clocks:
//! one machine), and the intervals missed are `round(gap / I) − 1`. CK-3's bounds: a planned
//! handover misses at most one interval; an unplanned one leaves a gap of at most
//! `failover_after + I`.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::site::{poll, tcp_target, wait_link, Ctx, Node, FAST_AGENT};
use crate::stats::{fmt_s, summary};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Handovers of each kind (planned, unplanned) with fast settings.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Handovers of each kind with default settings (an unplanned one takes about 25 s).
    #[arg(long, default_value_t = 10)]
    pub default_runs: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                runs: 2,
                default_runs: 1,
            }
        } else {
            Opts {
                runs: 30,
                default_runs: 10,
            }
        }
    }
}

const LONG: Duration = Duration::from_secs(120);

struct Profile {
    label: &'static str,
    agent_sets: &'static [&'static str],
    failover_after: Duration,
    every: Duration,
}

fn dur(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The pair's check runs stored on the server, oldest first: (member, time_ms).
async fn series(server: &Node) -> Vec<(String, i64)> {
    let query = understudy_api::RecordQuery {
        pair: Some("web".into()),
        kind: Some("check".into()),
        ..Default::default()
    };
    let mut out: Vec<(String, i64)> = server
        .records_where(query)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.agent, r.time_ms))
        .collect();
    out.sort_by_key(|r| r.1);
    out
}

/// Waits until `member` has made a run newer than `since_ms`.
async fn run_by(server: &Node, member: &str, since_ms: i64) -> Option<i64> {
    poll(LONG, Duration::from_millis(50), || async {
        series(server)
            .await
            .iter()
            .rev()
            .find(|r| r.0 == member && r.1 > since_ms)
            .map(|r| r.1)
    })
    .await
}

async fn pair_on(server: &Node, active: &str, both: bool) -> Option<()> {
    poll(LONG, Duration::from_millis(50), || async {
        let p = server.pair("web").await?;
        let connected = p.primary_connected && p.secondary_connected;
        (p.active == active && (!both || connected)).then_some(())
    })
    .await
}

/// Gaps at every change of holder, in seconds, and how many times the series went back to a
/// member within one handover (interleaving: CK-3 says never).
fn holder_gaps(series: &[(String, i64)]) -> (Vec<f64>, usize) {
    let mut gaps = Vec::new();
    let mut last_change: Option<i64> = None;
    let mut interleaved = 0;
    for (i, w) in series.windows(2).enumerate() {
        if w[0].0 != w[1].0 {
            // Two changes within 300 ms of each other: both members ran at once.
            if last_change.is_some_and(|t| w[1].1 - t < 300) {
                interleaved += 1;
                eprintln!(
                    "interleaved: {:?}",
                    &series[i.saturating_sub(3)..(i + 4).min(series.len())]
                );
            }
            last_change = Some(w[1].1);
            gaps.push((w[1].1 - w[0].1) as f64 / 1000.0);
        }
    }
    (gaps, interleaved)
}

struct Outcome {
    planned: Vec<f64>,
    unplanned: Vec<f64>,
    interleaved: usize,
    failed: usize,
    runs: usize,
}

async fn profile(env: &Env, p: &Profile, runs: usize) -> Outcome {
    let ctx = Ctx::new(&env.bin, &env.work, "checkgap");
    let (target, accepter) = tcp_target().await;
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let mut members = [
        ctx.agent("m1", &[server.url()], p.agent_sets),
        ctx.agent("m2", &[server.url()], p.agent_sets),
    ];
    for m in members.iter_mut() {
        m.start().await;
    }
    for m in &members {
        wait_link(m, "home", &server.listen, LONG)
            .await
            .expect("member home");
    }
    let pair = json!({"name": "web", "primary": "m1", "secondary": "m2", "failover_after": dur(p.failover_after), "switchback": "manual"});
    server
        .call_ok("POST", "/api/pairs", Some(pair))
        .await
        .expect("pair add");
    let check = json!({"name": "ping", "kind": "tcp", "target": target, "every": dur(p.every), "pair": "web"});
    server
        .call_ok("POST", "/api/checks", Some(check))
        .await
        .expect("check add");
    let mut failed = 0;
    let settle = p.every * 2 + Duration::from_millis(500);

    // Planned: force failover and revert, alternating; each waits for the new holder's run.
    let mut planned_at = Vec::new();
    let mut holder = "m1";
    if run_by(&server, holder, 0).await.is_none() {
        panic!(
            "the pair's check never ran on m1: {:?}",
            server.pair("web").await
        );
    }
    for run in 0..runs {
        tokio::time::sleep(settle).await;
        let (path, next, side) = if holder == "m1" {
            ("force-failover", "m2", "secondary")
        } else {
            ("revert", "m1", "primary")
        };
        let since = series(&server).await.last().map(|r| r.1).unwrap_or(0);
        if let Err(e) = server
            .call_ok("POST", &format!("/api/pairs/web/{path}"), None)
            .await
        {
            eprintln!("checkgap {}: planned {run}: {e}", p.label);
            failed += 1;
            continue;
        }
        match (
            pair_on(&server, side, false).await,
            run_by(&server, next, since).await,
        ) {
            (Some(()), Some(t)) => planned_at.push(t),
            _ => {
                eprintln!("checkgap {}: planned {run}: {next} never ran", p.label);
                failed += 1;
                break;
            }
        }
        holder = next;
    }
    // Back on the primary for the unplanned runs.
    if holder == "m2" {
        let since = series(&server).await.last().map(|r| r.1).unwrap_or(0);
        let _ = server.call_ok("POST", "/api/pairs/web/revert", None).await;
        let _ = run_by(&server, "m1", since).await;
        holder = "m1";
    }
    let split = series(&server).await.last().map(|r| r.1).unwrap_or(0);

    // Unplanned: the holder is SIGKILLed; the other member takes over; the killed one restarts
    // (delivering what it had cached) and stays the standby member until the next run kills the
    // holder again.
    for run in 0..runs {
        tokio::time::sleep(settle).await;
        let (i, next, side) = if holder == "m1" {
            (0, "m2", "secondary")
        } else {
            (1, "m1", "primary")
        };
        let since = series(&server).await.last().map(|r| r.1).unwrap_or(0);
        members[i].kill9();
        let took = run_by(&server, next, since).await;
        members[i].start().await;
        if took.is_none()
            || wait_link(&members[i], "home", &server.listen, LONG)
                .await
                .is_err()
        {
            eprintln!(
                "checkgap {}: unplanned {run}: {next} never took over",
                p.label
            );
            failed += 1;
            break;
        }
        if pair_on(&server, side, true).await.is_none() {
            eprintln!(
                "checkgap {}: unplanned {run}: pair not steady: {:?}",
                p.label,
                server.pair("web").await
            );
            failed += 1;
            break;
        }
        holder = next;
    }
    // Every member's cache delivered: a run made just before a SIGKILL arrives after its restart.
    tokio::time::sleep(settle).await;
    for m in &members {
        let _ = poll(LONG, Duration::from_millis(100), || async {
            (m.status().await?.link?.cached == 0).then_some(())
        })
        .await;
    }
    let all = series(&server).await;
    for m in members.iter_mut() {
        m.stop();
    }
    server.stop();
    accepter.abort();

    let (before, after): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.1 <= split);
    let (planned, i1) = holder_gaps(&before);
    let (unplanned, i2) = holder_gaps(&after);
    // The revert back onto m1 between the two parts is planned as well.
    eprintln!(
        "checkgap {}: {} planned gaps, {} unplanned gaps, {} handovers asked",
        p.label,
        planned.len(),
        unplanned.len(),
        planned_at.len()
    );
    Outcome {
        planned,
        unplanned,
        interleaved: i1 + i2,
        failed,
        runs,
    }
}

fn missed(gap: f64, every: f64) -> f64 {
    ((gap / every).round() - 1.0).max(0.0)
}

fn rows(md: &mut String, p: &Profile, o: &Outcome) {
    let every = p.every.as_secs_f64();
    let bound_unplanned = p.failover_after.as_secs_f64() + every;
    for (kind, gaps, bound_text, ok) in [
        (
            "planned (force failover / revert)",
            &o.planned,
            "misses ≤ 1 interval".to_string(),
            o.planned
                .iter()
                .filter(|g| missed(**g, every) <= 1.0)
                .count(),
        ),
        (
            "unplanned (SIGKILL of the active member)",
            &o.unplanned,
            format!("gap ≤ failover_after + I = {}", fmt_s(bound_unplanned)),
            o.unplanned
                .iter()
                .filter(|g| **g <= bound_unplanned)
                .count(),
        ),
    ] {
        let gs = summary(gaps);
        let ms: Vec<f64> = gaps.iter().map(|g| missed(*g, every)).collect();
        let m = summary(&ms);
        md.push_str(&format!(
            "| {} | {kind} | {} | {} / {} | **{} / {}** | {} / {} | {bound_text}: {ok} of {} |\n",
            p.label,
            gs.n,
            fmt_s(gs.p50),
            fmt_s(gs.p99),
            m.p50,
            m.p99,
            fmt_s(gs.min),
            fmt_s(gs.max),
            gs.n
        ));
    }
    if o.failed > 0 || o.interleaved > 0 {
        md.push_str(&format!(
            "\n{}: {} of {} runs failed, {} interleavings.\n\n",
            p.label, o.failed, o.runs, o.interleaved
        ));
    }
}

fn profiles() -> [Profile; 2] {
    [
        Profile {
            label: "fast (heartbeat 200ms, failover_after 1s, I = 500ms)",
            agent_sets: FAST_AGENT,
            failover_after: Duration::from_secs(1),
            every: Duration::from_millis(500),
        },
        Profile {
            label: "default (heartbeat 1s, failover_after 10s, I = 5s)",
            agent_sets: &[],
            failover_after: Duration::from_secs(10),
            every: Duration::from_secs(5),
        },
    ]
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let mut results = Vec::new();
    for (p, runs) in profiles().into_iter().zip([o.runs, o.default_runs]) {
        if runs > 0 {
            let out = profile(env, &p, runs).await;
            results.push((p, out));
        }
    }
    let mut md = String::from("## 8. Gap in a pair's check series at a handover (issue 7)\n\n");
    md.push_str(stamp);
    md.push_str(
        "**Method.** One server, agents m1 and m2 in `pair add web --primary m1 --secondary m2 \
         --failover-after F --switchback manual`, a `tcp` check every I under the pair (`check add ping \
         --kind tcp --pair web`) against a listener of the benchmark's own. Planned: force failover and \
         revert alternating, each after two intervals of steady state. Unplanned: the member holding the \
         duty gets SIGKILL; once the other member's run is stored the killed one is restarted (it delivers \
         what it had cached) and becomes the standing-by member; the next run kills the new holder. \
         Afterwards the whole series is read from the server (`records --json`, pair `web`): at each \
         change of holder the gap is the time between the old holder's last run and the new holder's \
         first run, and the intervals missed are round(gap / I) − 1. CK-3's bounds are in the last column.\n\n",
    );
    md.push_str("| settings | handover | n | gap p50 / p99 | **intervals missed p50 / p99** | gap min / max | CK-3 bound held |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---|\n");
    for (p, out) in &results {
        rows(&mut md, p, out);
    }
    let interleaved: usize = results.iter().map(|r| r.1.interleaved).sum();
    md.push_str(&format!(
        "\nRuns recorded by both members at once (interleavings within 300 ms): {interleaved}. With default \
         settings an unplanned run takes about 25 s, so fewer runs were taken.\n"
    ));
    Section {
        key: "checkgap",
        body: md,
    }
}
