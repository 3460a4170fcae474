//! MX-1: the time and size of a `/metrics` scrape on a server that knows 5,000 agents and 1,000
//! checks. The agents are the registry rows `agent accept` writes (`Store::agent_put`, status
//! accepted) and the checks the rows `check add` writes (`Store::check_put`), put in the server's
//! store before it starts; the server loads them as it would after a restart. None of the agents
//! is connected, so the checks have no runs: the series are the agents' and the checks'
//! definitions' (`understudy_agent_connected`, `understudy_agents`), not the last runs'.

use std::time::{Duration, Instant};

use clap::Args;
use understudy_node::config::{Config, CONFIG_FILE};
use understudy_node::http_client::AdminClient;
use understudy_node::store::{AgentRow, AgentStatus, Store};
use understudy_node::tls::Pins;

use crate::site::Ctx;
use crate::stats::met;
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    #[arg(long, default_value_t = 5000)]
    pub agents: usize,
    #[arg(long, default_value_t = 1000)]
    pub checks: usize,
    /// Scrapes measured.
    #[arg(long, default_value_t = 50)]
    pub scrapes: usize,
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "metrics");
    let mut node = ctx.server("m", &[]);
    let config = Config::load(&node.dir.join(CONFIG_FILE)).expect("config.toml");
    {
        let mut store = Store::open(&node.dir.join("store.db"), &config.node.id).expect("store");
        for i in 0..o.agents {
            store
                .agent_put(&AgentRow {
                    id: format!("00000000-0000-4000-8000-{i:012}"),
                    name: format!("agent-{i}"),
                    fingerprint: format!("{i:064x}"),
                    status: AgentStatus::Accepted,
                    first_seen_ms: 0,
                    home: Some(true),
                    announced: None,
                })
                .expect("an agent row");
        }
        for i in 0..o.checks {
            let doc = serde_json::json!({
                "kind": "tcp", "target": "127.0.0.1:9", "every": "5s",
                "agent": format!("agent-{}", i % o.agents.max(1)),
            });
            store
                .check_put(&format!("check-{i}"), &doc)
                .expect("a check row");
        }
    }
    node.start().await;
    let token = std::fs::read_to_string(node.dir.join("metrics.token")).expect("metrics.token");
    let client = AdminClient::new(&node.url(), token.trim(), Pins::default())
        .expect("a client")
        .with_timeout(Duration::from_secs(30));
    let mut times = Vec::new();
    let mut size = 0;
    let mut agents_seen = 0;
    for _ in 0..o.scrapes + 1 {
        let t = Instant::now();
        let (status, body) = client
            .call("GET", "/metrics", None)
            .await
            .expect("a scrape");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, 200, "{body}");
        let text = body.as_str().unwrap_or_default();
        size = text.len();
        agents_seen = text
            .lines()
            .filter(|l| l.starts_with("understudy_agent_connected{"))
            .count();
        times.push(ms);
    }
    times.remove(0); // the first warms the connection pool of nothing: TLS handshake included anyway
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    node.stop();
    eprintln!(
        "metrics: {agents_seen} agents in the exposition, {size} bytes, p50 {p50:.1} ms, p99 {p99:.1} ms"
    );
    let mut md = String::from("## MX-1 /metrics scrape (issue 16)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** A server whose store holds {} accepted agents and {} checks (the rows `agent \
         accept` and `check add` write, put there before it starts; none connected, so no check \
         has runs), scraped {} times in a row with the scrape token over TLS (a new connection \
         each time, handshake included) after one warm-up scrape.\n\n",
        o.agents, o.checks, o.scrapes
    ));
    md.push_str("| figure | value | target | |\n|---|---:|---|---|\n");
    md.push_str(&format!(
        "| scrape time p50 / p99 | **{p50:.1} / {p99:.1} ms** | < 100 ms | {} |\n",
        met(p99 < 100.0)
    ));
    md.push_str(&format!(
        "| exposition size | **{:.2} MB** ({agents_seen} agents listed) | < 5 MB | {} |\n",
        size as f64 / 1e6,
        met(size < 5_000_000)
    ));
    Section {
        key: "metrics",
        body: md,
    }
}
