//! CK-4 (issue 18): the ingest ceiling of one agent, samples per second from the source to
//! durable on the server: (1) a `prometheus` check scraping an exposition served by the
//! benchmark (every sample a record, one commit per scrape), (2) remote-write pushes into the
//! agent's `POST /api/v1/write` (one commit per push, answered once durable).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::checks::cached;
use crate::site::{wait_link, Ctx, Node};
use crate::stats::{met, CpuMeter};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Seconds of measurement per mode (after 3 s of settling).
    #[arg(long, default_value_t = 20)]
    pub window: u64,
    /// Samples in the exposition the check scrapes.
    #[arg(long, default_value_t = 10_000)]
    pub samples: usize,
    /// The check's interval.
    #[arg(long, default_value = "100ms")]
    pub every: String,
    /// Samples per remote-write push.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Concurrent pushers.
    #[arg(long, default_value_t = 4)]
    pub pushers: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        Opts {
            window: if quick { 4 } else { 20 },
            samples: 10_000,
            every: "100ms".into(),
            batch: 2_000,
            pushers: 4,
        }
    }
}

/// The newest sequence number the server stored for the agent (its records so far).
async fn stored(server: &Node) -> u64 {
    server
        .records("agent", 1)
        .await
        .and_then(|r| r.first().map(|r| r.seq))
        .unwrap_or(0)
}

/// An exposition of `n` gauges with two labels each, served over plain HTTP on loopback.
async fn exposition_server(n: usize) -> (String, tokio::task::JoinHandle<()>) {
    let mut text = String::from("# TYPE bench_value gauge\n");
    for i in 0..n {
        text.push_str(&format!(
            "bench_value{{instance=\"host-{}\",slot=\"{i}\"}} {}\n",
            i % 10,
            i as f64 / 7.0
        ));
    }
    let answer = Arc::new(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/metrics"), task)
}

/// One remote-write POST over TLS (the agent's certificate is not checked: loopback); the status.
async fn push(listen: &str, token: &str, body: &[u8]) -> Result<u16, String> {
    let config = understudy_node::tls::insecure_client_config().map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(listen)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(body).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no answer: {text}"))
}

/// A push of `n` samples (series `bench_push{slot}`) at `time_ms`.
fn body(n: usize, time_ms: i64) -> Vec<u8> {
    use understudy_node::forward::{encode, Label, Sample, TimeSeries, WriteRequest};
    let timeseries = (0..n)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "bench_push".into(),
                },
                Label {
                    name: "slot".into(),
                    value: i.to_string(),
                },
            ],
            samples: vec![Sample {
                value: i as f64,
                timestamp: time_ms,
            }],
        })
        .collect();
    encode(&WriteRequest { timeseries })
}

/// One mode's figures over the window.
struct Measured {
    /// Samples/s stored by the server.
    rate: f64,
    /// The agent's cache (taken, not yet acknowledged) at the start and the end of the window:
    /// growing, the agent takes samples faster than the link and the server store them.
    cached: (u64, u64),
    /// % of one core: the agent, the server, and this benchmark (the exposition or the pushers).
    agent: f64,
    server: f64,
    bench: f64,
}

impl Measured {
    /// CPU time per 1000 samples (ms), agent and server together.
    fn ms_per_1000(&self) -> f64 {
        if self.rate > 0.0 {
            10.0 * (self.agent + self.server) / self.rate * 1000.0
        } else {
            f64::NAN
        }
    }
}

async fn measure(server: &Node, agent: &Node, window: u64) -> Measured {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = CpuMeter::start(agent.pid().expect("pid"));
    let server_cpu = CpuMeter::start(server.pid().expect("pid"));
    let bench_cpu = CpuMeter::start(std::process::id());
    let (s0, c0, t0) = (stored(server).await, cached(agent).await, Instant::now());
    tokio::time::sleep(Duration::from_secs(window)).await;
    let (s1, c1, el) = (
        stored(server).await,
        cached(agent).await,
        t0.elapsed().as_secs_f64(),
    );
    Measured {
        rate: (s1 - s0) as f64 / el,
        cached: (c0, c1),
        agent: cpu.percent(),
        server: server_cpu.percent(),
        bench: bench_cpu.percent(),
    }
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "ingest");
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let mut agent = ctx.agent("agent", &[server.url()], &[]);
    agent.start().await;
    wait_link(&agent, "home", &server.listen, Duration::from_secs(60))
        .await
        .expect("agent home");

    // (1) scrape.
    let (url, exporter) = exposition_server(o.samples).await;
    server
        .call_ok(
            "POST",
            "/api/checks",
            Some(json!({"name": "scrape", "kind": "prometheus", "target": url, "every": o.every, "timeout": "5s", "agent": "agent"})),
        )
        .await
        .expect("check add");
    let scrape = measure(&server, &agent, o.window).await;
    server
        .call_ok("DELETE", "/api/checks/scrape", None)
        .await
        .expect("check remove");
    exporter.abort();
    eprintln!(
        "ingest: scrape {:.0} samples/s, agent CPU {:.0}%, server CPU {:.0}%, bench CPU {:.0}%, agent cache {} -> {}",
        scrape.rate, scrape.agent, scrape.server, scrape.bench, scrape.cached.0, scrape.cached.1
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // (2) remote write.
    let token = std::fs::read_to_string(agent.dir.join("push.token")).expect("push.token");
    let token = token.trim().to_string();
    let stop = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..o.pushers {
        let (listen, token, stop, refused, n) = (
            agent.listen.clone(),
            token.clone(),
            stop.clone(),
            refused.clone(),
            o.batch,
        );
        tasks.push(tokio::spawn(async move {
            let mut t = 1_700_000_000_000i64 + p as i64;
            while stop.load(Ordering::Relaxed) == 0 {
                t += 1000;
                match push(&listen, &token, &body(n, t)).await {
                    Ok(204) => {}
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    let pushed = measure(&server, &agent, o.window).await;
    stop.store(1, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "ingest: push {:.0} samples/s, agent CPU {:.0}%, server CPU {:.0}%, bench CPU {:.0}%, agent cache {} -> {}, {refused} pushes not 204",
        pushed.rate, pushed.agent, pushed.server, pushed.bench, pushed.cached.0, pushed.cached.1
    );
    agent.stop();
    server.stop();

    let mut md = String::from("## Ingest ceiling of one agent (issue 18, CK-4)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** One server and one agent. (1) A `prometheus` check every {} on the agent \
         scrapes an exposition of {} gauges (two labels each) served by the benchmark over \
         loopback HTTP: every sample is a record, one commit per scrape. (2) {} pushers POST \
         remote-write bodies of {} samples each to the agent's `/api/v1/write` (one TLS \
         connection per push), each answered 204 once durable in the cache. After 3 s of \
         settling, over {} s: records stored by the server per second (its newest sequence \
         number of the agent), and the CPU of the agent, the server and the benchmark itself \
         (% of one core, from /proc; the benchmark serves the exposition or sends the pushes).\n\n",
        o.every, o.samples, o.pushers, o.batch, o.window
    ));
    md.push_str(
        "| source | samples/s durable on the server | agent CPU | server CPU | benchmark CPU | \
         agent + server CPU per 1000 samples | agent's cache, start → end of the window | target ≥ 100,000/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (what, m) in [
        ("`prometheus` check (scrape)", &scrape),
        ("remote-write push", &pushed),
    ] {
        md.push_str(&format!(
            "| {what} | **{:.0}** | {:.0} % | {:.0} % | {:.0} % | {:.1} ms | {} → {} | {} |\n",
            m.rate,
            m.agent,
            m.server,
            m.bench,
            m.ms_per_1000(),
            m.cached.0,
            m.cached.1,
            met(m.rate >= 100_000.0)
        ));
    }
    md.push_str(&format!("\n{refused} pushes were not answered 204.\n"));
    Section {
        key: "ingest",
        body: md,
    }
}
