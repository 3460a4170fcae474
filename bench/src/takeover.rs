//! Issue 4: (a) hot standby: the ACTIVE server is SIGKILLed → time until every agent delivers to
//! the new ACTIVE; (b) pair failover: the active primary agent is SIGKILLed → time until the
//! acting server shows the secondary active.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::site::{deliver, poll, wait_link, Ctx, Node, FAST_AGENT, FAST_SERVER};
use crate::stats::{fmt_s, secs};
use crate::switchover::{table, Series};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Runs of each kind with fast settings.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Server-takeover runs with default settings, for SIGKILL and for SIGTERM each (HS-8).
    #[arg(long, default_value_t = 30)]
    pub default_runs: usize,
    /// Server-takeover runs with default settings by SIGSTOP (silence: about 35 s each).
    #[arg(long, default_value_t = 5)]
    pub default_stop_runs: usize,
    /// Pair-failover runs with default settings (about 13 s each).
    #[arg(long, default_value_t = 30)]
    pub default_pair_runs: usize,
    /// Agents in the hot-standby site.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                runs: 2,
                default_runs: 1,
                default_stop_runs: 1,
                default_pair_runs: 1,
                agents: 3,
            }
        } else {
            Opts {
                runs: 30,
                default_runs: 30,
                default_stop_runs: 5,
                default_pair_runs: 15,
                agents: 3,
            }
        }
    }
}

const LONG: Duration = Duration::from_secs(120);

pub(crate) async fn wait_state(node: &Node, state: &str) -> Result<u64, String> {
    let r = poll(LONG, Duration::from_millis(50), || async {
        match node.failover().await {
            Some((s, e)) if s == state => Some(e),
            _ => None,
        }
    })
    .await;
    match r {
        Some(e) => Ok(e),
        None => Err(format!(
            "{} never became {state} (now {:?})",
            node.name,
            node.failover().await
        )),
    }
}

/// How the ACTIVE server is stopped in a takeover run (HS-8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stop {
    /// A crash: its port refuses at once, the STANDBY promotes after `crash_confirm` refusals.
    Sigkill,
    /// A planned stop: the ACTIVE hands the role over, then exits.
    Sigterm,
    /// A frozen process: silence, the STANDBY promotes after `failover_timeout`.
    Sigstop,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Sigkill => "SIGKILL",
            Stop::Sigterm => "SIGTERM",
            Stop::Sigstop => "SIGSTOP",
        }
    }
}

async fn servers_series(
    env: &Env,
    label: &str,
    fast: bool,
    stop: Stop,
    target: f64,
    runs: usize,
    n_agents: usize,
) -> (Series, Series) {
    let label = &format!("{label}, {}", stop.name());
    let ctx = Ctx::new(&env.bin, &env.work, "takeover");
    let server_sets: &[&str] = if fast { FAST_SERVER } else { &[] };
    let agent_sets: &[&str] = if fast {
        FAST_AGENT
    } else {
        &["agent.switchback_interval=1s"]
    };
    let sync = if fast {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let mut s = [ctx.server("s1", server_sets), ctx.server("s2", server_sets)];
    Node::pin_hot_standby(&s, [&s[0].listen.clone(), &s[1].listen.clone()]);
    s[0].start().await;
    wait_state(&s[0], "active").await.expect("s1 active");
    s[1].start().await;
    wait_state(&s[1], "standby").await.expect("s2 standby");
    let urls = [s[0].url(), s[1].url()];
    let mut agents = Vec::new();
    for i in 0..n_agents {
        let mut a = ctx.agent(&format!("a{}", i + 1), &urls, agent_sets);
        a.start().await;
        agents.push(a);
    }
    let mut all = Vec::new();
    let mut first = Vec::new();
    let mut failed = 0;
    let mut active = 0usize;
    for run in 0..runs {
        let other = 1 - active;
        // Steady state: every agent delivers to the ACTIVE, the STANDBY has replicated.
        let mut ok = true;
        for a in &agents {
            if let Err(e) = deliver(a, &s[active], &format!("warm-{run}"), LONG).await {
                eprintln!("takeover {label}: run {run}: {e}");
                ok = false;
            }
        }
        if !ok {
            failed += 1;
            break;
        }
        tokio::time::sleep(sync * 2 + Duration::from_millis(200)).await;
        let probe = format!("probe-{run}");
        let t0 = match stop {
            Stop::Sigkill => s[active].kill9(),
            Stop::Sigterm => s[active].signal(libc::SIGTERM),
            Stop::Sigstop => s[active].signal(libc::SIGSTOP),
        };
        for a in &agents {
            let _ = a.send(&[(probe.clone(), run as f64)]).await;
        }
        let mut when: Vec<Option<Instant>> = vec![None; agents.len()];
        let deadline = Instant::now() + LONG;
        let done = loop {
            for (i, a) in agents.iter().enumerate() {
                if when[i].is_none() {
                    if let Some(recs) = s[other].records(&a.name, 20).await {
                        if recs.iter().any(|r| r.name == probe.as_str()) {
                            when[i] = Some(Instant::now());
                        }
                    }
                }
            }
            if when.iter().all(Option::is_some) {
                break Some(());
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if done.is_some() {
            let ts: Vec<f64> = when
                .iter()
                .flatten()
                .map(|t| secs(t.duration_since(t0)))
                .collect();
            let max = ts.iter().copied().fold(0.0, f64::max);
            let min = ts.iter().copied().fold(f64::INFINITY, f64::min);
            eprintln!(
                "takeover {label}: run {run}: first agent {}, every agent {}",
                fmt_s(min),
                fmt_s(max)
            );
            all.push(max);
            first.push(min);
        } else {
            eprintln!(
                "takeover {label}: run {run}: not every agent reached {} ({when:?})",
                s[other].name
            );
            failed += 1;
        }
        // The former ACTIVE comes back as STANDBY (HS-5; a frozen one resumes and HS-6 settles it).
        match stop {
            Stop::Sigkill => s[active].start().await,
            Stop::Sigterm => {
                if !s[active].reap(Duration::from_secs(30)) {
                    eprintln!(
                        "takeover {label}: run {run}: the stopped server did not exit within 30 s"
                    );
                    failed += 1;
                }
                s[active].start().await;
            }
            Stop::Sigstop => {
                s[active].signal(libc::SIGCONT);
            }
        }
        if let Err(e) = wait_state(&s[active], "standby").await {
            eprintln!("takeover {label}: {e}");
            failed += 1;
            break;
        }
        active = other;
    }
    for a in agents.iter_mut() {
        a.stop();
    }
    for n in s.iter_mut() {
        n.stop();
    }
    (
        Series {
            label: format!("{label}: every agent on the new ACTIVE"),
            target,
            xs: all,
            failed,
        },
        Series {
            label: format!("{label}: first agent on the new ACTIVE"),
            target,
            xs: first,
            failed: 0,
        },
    )
}

async fn pair_series(env: &Env, label: &str, fast: bool, target: f64, runs: usize) -> Series {
    let ctx = Ctx::new(&env.bin, &env.work, "pair");
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let agent_sets: &[&str] = if fast { FAST_AGENT } else { &[] };
    let mut p1 = ctx.agent("p1", &[server.url()], agent_sets);
    let mut p2 = ctx.agent("p2", &[server.url()], agent_sets);
    p1.start().await;
    p2.start().await;
    wait_link(&p1, "home", &server.listen, LONG)
        .await
        .expect("p1 home");
    wait_link(&p2, "home", &server.listen, LONG)
        .await
        .expect("p2 home");
    let after = if fast { "600ms" } else { "10s" };
    server
        .call_ok(
            "POST",
            "/api/pairs",
            Some(json!({"name": "web", "primary": "p1", "secondary": "p2", "failover_after": after, "switchback": "manual"})),
        )
        .await
        .expect("pair add");
    let mut xs = Vec::new();
    let mut failed = 0;
    for run in 0..runs {
        let ready = poll(LONG, Duration::from_millis(50), || async {
            let p = server.pair("web").await?;
            (p.active == "primary" && p.primary_connected && p.secondary_connected).then_some(())
        })
        .await;
        if ready.is_none() {
            eprintln!(
                "pair {label}: run {run}: pair never steady on the primary: {:?}",
                server.pair("web").await
            );
            failed += 1;
            break;
        }
        // A heartbeat or two of steady state.
        tokio::time::sleep(if fast {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        })
        .await;
        let t0 = p1.kill9();
        let t1 = poll(LONG, Duration::from_millis(20), || async {
            let p = server.pair("web").await?;
            (p.active == "secondary").then(Instant::now)
        })
        .await;
        match t1 {
            Some(t1) => {
                let x = secs(t1.duration_since(t0));
                eprintln!("pair {label}: run {run}: {}", fmt_s(x));
                xs.push(x);
            }
            None => {
                eprintln!("pair {label}: run {run}: the secondary never became active");
                failed += 1;
            }
        }
        p1.start().await;
        let back = poll(LONG, Duration::from_millis(100), || async {
            let p = server.pair("web").await?;
            if p.active == "primary" {
                return Some(());
            }
            if p.primary_connected {
                let _ = server.call("POST", "/api/pairs/web/revert", None).await;
            }
            None
        })
        .await;
        if back.is_none() {
            eprintln!(
                "pair {label}: revert failed: {:?}",
                server.pair("web").await
            );
            failed += 1;
            break;
        }
    }
    p1.stop();
    p2.stop();
    server.stop();
    Series {
        label: label.to_string(),
        target,
        xs,
        failed,
    }
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let mut servers = Vec::new();
    const DEFAULT: &str =
        "default (failover_timeout 15s, crash_confirm 3, sync 5s, heartbeat 1s, switchover_after 10s)";
    // HS-8 targets: a crash or a planned stop is replaced within 0.5 s at default settings;
    // silence still waits failover_timeout (+ one heartbeat).
    for (stop, target, runs) in [
        (Stop::Sigkill, 0.5, o.default_runs),
        (Stop::Sigterm, 0.5, o.default_runs),
        // Silence: the STANDBY promotes failover_timeout (15 s) after the frozen ACTIVE's last
        // answer, and the agents, whose links to it stay open, leave it after their own silence
        // detection (3 heartbeats): 15 s + 3 s + one heartbeat. Unchanged by HS-8.
        (Stop::Sigstop, 19.0, o.default_stop_runs),
    ] {
        if runs > 0 {
            let (a, b) = servers_series(env, DEFAULT, false, stop, target, runs, o.agents).await;
            servers.extend([a, b]);
        }
    }
    if o.runs > 0 {
        let (a, b) = servers_series(
            env,
            "fast (failover_timeout 1s, sync 200ms, heartbeat 200ms, switchover_after 600ms)",
            true,
            Stop::Sigkill,
            0.5,
            o.runs,
            o.agents,
        )
        .await;
        servers.extend([a, b]);
    }
    let mut pairs = Vec::new();
    if o.default_pair_runs > 0 {
        pairs.push(
            pair_series(
                env,
                "default (heartbeat 1s, failover_after 10s)",
                false,
                11.0,
                o.default_pair_runs,
            )
            .await,
        );
    }
    if o.runs > 0 {
        pairs.push(
            pair_series(
                env,
                "fast (heartbeat 200ms, failover_after 600ms)",
                true,
                0.8,
                o.runs,
            )
            .await,
        );
    }
    let mut md = String::from("## 3. Takeover: hot-standby servers and pairs (issue 4)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Servers.** Two servers in hot standby (`failover.mode` primary/secondary, each pinning the \
         other as `failover.peer`) and {} agents whose server list is both servers. Each run: every \
         agent has just delivered a record to the ACTIVE and two `sync_interval`s have passed; the ACTIVE \
         gets SIGKILL (a crash: the STANDBY promotes on `crash_confirm` refused polls, HS-8), SIGTERM (a \
         planned stop: the ACTIVE hands the role over, HS-8) or SIGSTOP (a frozen process: silence, \
         `failover_timeout`); right after, one record is handed to every agent; the clock stops, per agent, \
         when the survivor's `records` (polled every 20 ms) lists that agent's record. \"Every agent\" is \
         the slowest agent of the run. The stopped server is restarted (or resumed with SIGCONT) and comes \
         back as STANDBY (HS-5, HS-6), so the roles alternate from run to run. Targets: SIGKILL and SIGTERM \
         at default settings 0.5 s (issue 13); silence (SIGSTOP) `failover_timeout` + the agents' own \
         silence detection (3 heartbeats) + one heartbeat, 19 s.\n\n",
        o.agents
    ));
    md.push_str(&table(&servers));
    md.push_str(
        "\n**Pairs.** One server, two agents, `pair add web --primary p1 --secondary p2 --failover-after D \
         --switchback manual`. Each run: the pair is on p1 with both members connected; p1 gets SIGKILL; \
         the clock stops when the server's `status` (polled every 20 ms) shows `pairs[web].active == \
         \"secondary\"`. p1 is restarted and the pair reverted before the next run. Target (§5): \
         `failover_after` + one heartbeat.\n\n",
    );
    md.push_str(&table(&pairs));
    if o.default_runs < 30 || o.default_pair_runs < 30 || o.default_stop_runs < 30 {
        md.push_str(&format!(
            "\nFewer runs were taken where a run is long: {} server takeovers per SIGKILL/SIGTERM, {} by \
             SIGSTOP (about 35 s each) and {} pair failovers (p99 is then the slowest run).\n",
            o.default_runs, o.default_stop_runs, o.default_pair_runs
        ));
    }
    Section {
        key: "takeover",
        body: md,
    }
}
