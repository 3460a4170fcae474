//! Issue 7: how many checks a second one agent sustains, with the CPU it uses. `tcp` checks every
//! 100 ms against a listener of the benchmark's own; each run is a record on the durable path.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::site::{tcp_target, wait_link, Ctx, Node};
use crate::stats::{met, vm, CpuMeter};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Numbers of checks (cumulative steps), each every `every`.
    #[arg(long, value_delimiter = ',', default_value = "20,100,300,600")]
    pub counts: Vec<usize>,
    #[arg(long, default_value = "100ms")]
    pub every: String,
    /// Seconds of measurement per step (after 5 s of settling).
    #[arg(long, default_value_t = 20)]
    pub window: u64,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                counts: vec![10, 50],
                every: "100ms".into(),
                window: 4,
            }
        } else {
            Opts {
                counts: vec![20, 100, 300, 600],
                every: "100ms".into(),
                window: 20,
            }
        }
    }
}

async fn stored(server: &Node, agent: &str) -> u64 {
    server
        .records(agent, 1)
        .await
        .and_then(|r| r.first().map(|r| r.seq))
        .unwrap_or(0)
}

/// Records in the agent's cache, not yet acknowledged by a server.
pub(crate) async fn cached(agent: &Node) -> u64 {
    agent
        .status()
        .await
        .and_then(|s| s.link.map(|l| l.cached))
        .unwrap_or(0)
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "checks");
    let (target, accepter) = tcp_target().await;
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let mut agent = ctx.agent("agent", &[server.url()], &[]);
    agent.start().await;
    wait_link(&agent, "home", &server.listen, Duration::from_secs(60))
        .await
        .expect("agent home");
    let (apid, spid) = (agent.pid().expect("pid"), server.pid().expect("pid"));
    let every_s = understudy_node::config::parse_duration(&o.every)
        .expect("--every")
        .as_secs_f64();
    let mut have = 0usize;
    let mut rows = Vec::new();
    for &n in &o.counts {
        while have < n {
            server
                .call_ok(
                    "POST",
                    "/api/checks",
                    Some(json!({"name": format!("c{have}"), "kind": "tcp", "target": target, "every": o.every, "timeout": "1s", "agent": "agent"})),
                )
                .await
                .expect("check add");
            have += 1;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (s0, c0) = (stored(&server, "agent").await, cached(&agent).await);
        let (am, sm) = (CpuMeter::start(apid), CpuMeter::start(spid));
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(o.window)).await;
        let (s1, c1) = (stored(&server, "agent").await, cached(&agent).await);
        let el = t0.elapsed().as_secs_f64();
        let (acpu, scpu) = (am.percent(), sm.percent());
        let produced = ((s1 + c1) as f64 - (s0 + c0) as f64) / el;
        let stored_rate = (s1 - s0) as f64 / el;
        let offered = n as f64 / every_s;
        let rss = vm(apid, "VmRSS:").unwrap_or(f64::NAN);
        eprintln!("checks {n}: offered {offered:.0}/s, produced {produced:.0}/s, stored {stored_rate:.0}/s, backlog {c0}→{c1}, agent CPU {acpu:.1}%, server CPU {scpu:.1}%");
        rows.push((n, offered, produced, stored_rate, c0, c1, acpu, scpu, rss));
    }
    // Down results would mean the listener was not reached.
    let recent = server.records("agent", 200).await.unwrap_or_default();
    let up = recent
        .iter()
        .filter(|r| r.value > 0.0 || r.detail.as_deref().is_some_and(|d| d.contains("up")))
        .count();
    let sample = recent.last().cloned();
    accepter.abort();
    agent.stop();
    server.stop();
    let mut md = String::from("## 7. Checks per second on one agent (issue 7)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** One server and one agent (release binaries, default settings). `tcp` checks \
         (`check add cN --kind tcp --target {target} --every {} --agent agent`, through the admin API) \
         against a listener in the benchmark process, added in steps; after 5 s of settling, over {} s: \
         check runs produced by the agent (records stored on the server plus the growth of the agent's \
         cache), records stored by the server, and the agent's and server's CPU (% of one core). A step \
         is sustained when the agent produces what is offered and its cache does not grow.\n\n",
        o.every, o.window
    ));
    md.push_str("| checks | offered runs/s | **produced/s** | stored/s | agent cache (start→end) | **agent CPU** | server CPU | agent RSS | sustained |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (n, offered, produced, stored_rate, c0, c1, acpu, scpu, rss) in &rows {
        let ok = *produced >= 0.95 * offered && *c1 <= c0 + (*offered as u64);
        md.push_str(&format!(
            "| {n} | {offered:.0} | **{produced:.0}** | {stored_rate:.0} | {c0}→{c1} | **{acpu:.1} %** | {scpu:.1} % | {rss:.1} MiB | {} |\n",
            met(ok)
        ));
    }
    md.push_str(&format!(
        "\n{up} of the last {} records were up results (a sample: `{}`).\n\nThe gap in a pair's series at a \
         handover is section 8.\n",
        recent.len(),
        sample
            .and_then(|s| serde_json::to_string(&s).ok())
            .unwrap_or_default()
    ));
    Section {
        key: "checks",
        body: md,
    }
}
