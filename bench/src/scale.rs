//! Scale: one server holding thousands of simulated agents at a 1 s heartbeat. The simulated
//! agents live in this process; each is a real TLS connection (client certificate, ALPN
//! `understudy/1`) speaking the wire protocol: Hello with the enrollment token, then a
//! Heartbeat a second, reading whatever the server answers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{watch, Semaphore};
use understudy_node::frame::{read_frame, write_frame};
use understudy_node::store::Record;
use understudy_node::tls::{self, NodeIdentity, Pins, ALPN_WIRE};
use understudy_node::wire::{ToAgent, ToServer};

use crate::site::{Ctx, TOKEN};
use crate::stats::{met, vm, CpuMeter, Rng};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Agent counts, cumulative (the first ones stay connected while more are added).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub agents: Vec<usize>,
    /// Simulated agents sharing one client certificate (each has its own id and name).
    #[arg(long, default_value_t = 10)]
    pub per_cert: usize,
    /// Seconds of measurement at each step (after a 10 s settle).
    #[arg(long, default_value_t = 20)]
    pub window: u64,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                agents: vec![100, 300],
                per_cert: 10,
                window: 5,
            }
        } else {
            Opts {
                agents: vec![1000, 5000],
                per_cert: 10,
                window: 20,
            }
        }
    }
}

#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub heartbeats: AtomicU64,
    pub acks: AtomicU64,
    /// Records sent with each heartbeat (when asked to) and acknowledged as stored.
    pub records: AtomicU64,
    pub records_acked: AtomicU64,
}

pub fn fake_uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next(), rng.next());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// One simulated agent: Hello, then a heartbeat a second (and a record with it when `records`).
#[allow(clippy::too_many_arguments)]
pub async fn sim_agent(
    i: usize,
    id: String,
    addr: String,
    config: Arc<rustls::ClientConfig>,
    c: Arc<Counters>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    offset: Duration,
    records: bool,
) {
    let stream = {
        let _permit = gate.acquire().await;
        match tls::connect_with(config, &addr, Duration::from_secs(60)).await {
            Ok(s) => s,
            Err(e) => {
                if c.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("scale: agent {i}: {e}");
                }
                return;
            }
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let hello = ToServer::Hello {
        id,
        name: format!("sim-{i}"),
        home: true,
        token: TOKEN.into(),
        probe: false,
        home_fingerprints: Vec::new(),
    };
    if write_frame(&mut wr, &hello).await.is_err() {
        c.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match read_frame::<ToAgent, _>(&mut rd).await {
        Ok(Some(ToAgent::Welcome { .. })) => {
            c.connected.fetch_add(1, Ordering::Relaxed);
        }
        other => {
            if c.refused.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("scale: agent {i}: {other:?}");
            }
            return;
        }
    }
    let c2 = c.clone();
    let reader = tokio::spawn(async move {
        loop {
            match read_frame::<ToAgent, _>(&mut rd).await {
                Ok(Some(ToAgent::HeartbeatAck { .. })) => {
                    c2.acks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(ToAgent::Ack { .. })) => {
                    c2.records_acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                _ => {
                    c2.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        n += 1;
        if write_frame(
            &mut wr,
            &ToServer::Heartbeat {
                id: n,
                pairs: vec![],
            },
        )
        .await
        .is_err()
        {
            break;
        }
        c.heartbeats.fetch_add(1, Ordering::Relaxed);
        if records {
            let record = Record {
                seq: n,
                name: "bench".into(),
                value: n as f64,
                time_ms: crate::stats::now_ms(),
                pair: None,
                kind: "metric".into(),
                detail: None,
                labels: Default::default(),
                pair_epoch: None,
            };
            let sent = ToServer::Records {
                records: vec![record],
                taken_for: None,
            };
            if write_frame(&mut wr, &sent).await.is_err() {
                break;
            }
            c.records.fetch_add(1, Ordering::Relaxed);
        }
    }
    reader.abort();
}

pub fn identity(dir: &Path) -> Arc<NodeIdentity> {
    std::fs::create_dir_all(dir).expect("cert dir");
    tls::generate_certificate(dir, &[], &[]).expect("generating a client certificate");
    NodeIdentity::load(dir).expect("loading it")
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "scale");
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let pid = server.pid().expect("pid");
    let pins = Pins::new([server.fingerprint.clone()]);
    let c = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(64));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut rng = Rng::seeded();
    let mut configs = Vec::new();
    let mut tasks = Vec::new();
    let mut rows = Vec::new();
    let mut have = 0usize;
    let certs_dir = ctx.path().join("sim-certs");
    for &target in &o.agents {
        let t_ramp = Instant::now();
        let cpu_ramp = CpuMeter::start(pid);
        while have < target {
            let k = have / o.per_cert;
            if k >= configs.len() {
                let dir = certs_dir.join(format!("c{k}"));
                let id = tokio::task::spawn_blocking(move || identity(&dir))
                    .await
                    .expect("identity");
                configs.push(
                    tls::client_config(pins.clone(), Some(id), &[ALPN_WIRE])
                        .expect("client config"),
                );
            }
            let offset = Duration::from_micros(rng.next() % 1_000_000);
            tasks.push(tokio::spawn(sim_agent(
                have,
                fake_uuid(&mut rng),
                server.listen.clone(),
                configs[k].clone(),
                c.clone(),
                gate.clone(),
                stop_rx.clone(),
                offset,
                false,
            )));
            have += 1;
        }
        // Wait until every agent has an answer.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let done = c.connected.load(Ordering::Relaxed)
                + c.refused.load(Ordering::Relaxed)
                + c.failed.load(Ordering::Relaxed);
            if done as usize >= have || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ramp = t_ramp.elapsed().as_secs_f64();
        let ramp_cpu = cpu_ramp.percent();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let meter = CpuMeter::start(pid);
        let me = CpuMeter::start(std::process::id());
        let (hb0, ack0) = (
            c.heartbeats.load(Ordering::Relaxed),
            c.acks.load(Ordering::Relaxed),
        );
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(o.window)).await;
        let el = t0.elapsed().as_secs_f64();
        let cpu = meter.percent();
        let my_cpu = me.percent();
        let hb = (c.heartbeats.load(Ordering::Relaxed) - hb0) as f64 / el;
        let acks = (c.acks.load(Ordering::Relaxed) - ack0) as f64 / el;
        let rss = vm(pid, "VmRSS:").unwrap_or(f64::NAN);
        let status = server.status().await;
        let listed = status
            .as_ref()
            .map(|s| {
                s.agents
                    .iter()
                    .filter(|x| x.state != "disconnected" && x.state != "gone")
                    .count()
            })
            .unwrap_or(0);
        let connected = c.connected.load(Ordering::Relaxed);
        let dropped = c.dropped.load(Ordering::Relaxed);
        eprintln!(
            "scale {target}: connected {connected}, refused {}, failed {}, dropped {dropped}, server CPU {cpu:.1}% RSS {rss:.1} MiB, hb {hb:.0}/s acks {acks:.0}/s, bench CPU {my_cpu:.1}%",
            c.refused.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed)
        );
        rows.push((
            target, connected, dropped, ramp, ramp_cpu, cpu, rss, hb, acks, my_cpu, listed,
        ));
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    server.stop();
    let mut md =
        String::from("## 6. Scale: one server, thousands of agents at a 1 s heartbeat\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** One `understudy serve` server (release binary, default settings, an enrollment \
         token). The benchmark process simulates the agents: each is its own TLS connection with a client \
         certificate (generated by `understudy_node::tls::generate_certificate`, one per {} agents; each \
         agent has its own id and name), ALPN `understudy/1`, a `Hello` with the enrollment token, then a \
         `Heartbeat` every second (phases spread over the second), reading the server's answers. Agents \
         are added cumulatively (at most 64 handshakes at once); after every agent has its answer and 10 s \
         of settling, the server's CPU (utime+stime, % of one core) and RSS are measured over {} s. The \
         simulated agents run on the same 2 cores, so the server had less than the whole machine.\n\n",
        o.per_cert, o.window
    ));
    md.push_str("| agents | connected (welcomed) | links dropped | ramp-up | server CPU in ramp-up | **server CPU steady** | **server RSS** | heartbeats sent/s | acks received/s | bench process CPU | target | |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for (target, connected, dropped, ramp, ramp_cpu, cpu, rss, hb, acks, my_cpu, _listed) in &rows {
        let ok =
            *connected as usize == *target && *dropped == 0 && *acks >= 0.95 * *hb && *cpu < 200.0;
        md.push_str(&format!(
            "| {target} | {connected} | {dropped} | {ramp:.1} s | {ramp_cpu:.0} % | **{cpu:.1} %** | **{rss:.1} MiB** | {hb:.0} | {acks:.0} | {my_cpu:.0} % | held, every heartbeat answered, on 2 cores | {} |\n",
            met(ok)
        ));
    }
    Section {
        key: "scale",
        body: md,
    }
}
