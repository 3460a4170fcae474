//! Issue 4: false failovers under heartbeat jitter. A TCP relay of ours stands between the agents
//! and their home server; it delays each chunk by a random 0–50 ms and ~5% of chunks by another
//! 200 ms (what a lost segment costs on TCP: a retransmit), keeping the byte order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use crate::site::{fresh_addr, poll, wait_link, Ctx, Node};
use crate::stats::{met, now_ms, Rng};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Seconds of observation.
    #[arg(long, default_value_t = 180)]
    pub seconds: u64,
    /// Largest random delay per chunk, ms.
    #[arg(long, default_value_t = 50)]
    pub jitter_ms: u64,
    /// Share of chunks given the extra "retransmit" delay.
    #[arg(long, default_value_t = 0.05)]
    pub loss: f64,
    /// The extra delay of a "lost" chunk, ms.
    #[arg(long, default_value_t = 200)]
    pub retransmit_ms: u64,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        Opts {
            seconds: if quick { 10 } else { 150 },
            jitter_ms: 50,
            loss: 0.05,
            retransmit_ms: 200,
        }
    }
}

#[derive(Default)]
pub struct RelayStats {
    pub chunks: u64,
    pub delayed: u64,
}

/// One direction: chunks read from `rd` are written to `wr` at `max(previous, now + delay)`.
async fn pipe(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    o: Opts,
    stats: Arc<Mutex<RelayStats>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, buf)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut rng = Rng::seeded();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut delay = Duration::from_micros((rng.unit() * o.jitter_ms as f64 * 1000.0) as u64);
        let lost = rng.unit() < o.loss;
        if lost {
            delay += Duration::from_millis(o.retransmit_ms);
        }
        {
            let mut s = stats.lock().await;
            s.chunks += 1;
            s.delayed += lost as u64;
        }
        last = last.max(Instant::now() + delay);
        if tx.send((last, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Listens on a fresh 127.0.9.x address and relays to `upstream`; returns the address.
pub async fn relay(upstream: String, o: Opts, stats: Arc<Mutex<RelayStats>>) -> String {
    let addr = fresh_addr();
    let listener = TcpListener::bind(&addr).await.expect("relay bind");
    tokio::spawn(async move {
        loop {
            let Ok((down, _)) = listener.accept().await else {
                continue;
            };
            let (upstream, o, stats) = (upstream.clone(), o.clone(), stats.clone());
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::join!(
                    pipe(dr, uw, o.clone(), stats.clone()),
                    pipe(ur, dw, o, stats)
                );
            });
        }
    });
    addr
}

const WATCHED: &[&str] = &[
    "FAILOVER",
    "SWITCHOVER",
    "BLACKOUT",
    "PAIR_BLACKOUT",
    "STAGED",
    "SWITCHBACK",
    "PROMOTED",
    "DEMOTED",
    "SPLIT_BRAIN",
    "HANDOVER",
];

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "jitter");
    let stats = Arc::new(Mutex::new(RelayStats::default()));
    let mut home = ctx.server("home", &[]);
    let mut standby = ctx.server("standby", &[]);
    home.start().await;
    standby.start().await;
    // HS-8: two servers in hot standby at default settings (crash_confirm 3) whose peer link,
    // both ways, goes through the same kind of relay: a late or "lost" chunk must never look
    // like a crashed peer.
    let mut hs = [ctx.server("s1", &[]), ctx.server("s2", &[])];
    let to_s2 = relay(hs[1].listen.clone(), o.clone(), stats.clone()).await;
    let to_s1 = relay(hs[0].listen.clone(), o.clone(), stats.clone()).await;
    Node::pin_hot_standby(&hs, [&to_s1, &to_s2]);
    hs[0].start().await;
    hs[1].start().await;
    for (n, want) in [(&hs[0], "active"), (&hs[1], "standby")] {
        poll(
            Duration::from_secs(120),
            Duration::from_millis(100),
            || async { (n.failover().await?.0 == want).then_some(()) },
        )
        .await
        .unwrap_or_else(|| panic!("{} never {want}", n.name));
    }
    let via = relay(home.listen.clone(), o.clone(), stats.clone()).await;
    let home_url = format!("https://{via}#{}", home.fingerprint);
    let servers = [home_url, standby.url()];
    let mut agents: Vec<Node> = Vec::new();
    for name in ["p1", "p2", "a3"] {
        let mut a = ctx.agent(name, &servers, &[]);
        a.start().await;
        agents.push(a);
    }
    for a in &agents {
        wait_link(a, "home", &via, Duration::from_secs(120))
            .await
            .expect("agents home through the relay");
    }
    home.call_ok(
        "POST",
        "/api/pairs",
        Some(json!({"name": "web", "primary": "p1", "secondary": "p2", "switchback": "manual"})),
    )
    .await
    .expect("pair add");
    poll(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let p = home.pair("web").await?;
            (p.active == "primary").then_some(())
        },
    )
    .await
    .expect("pair active on the primary");
    // Records flowing too: each agent sends one record a second.
    let since = now_ms();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(o.seconds);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for a in &agents {
            let _ = a.send(&[("jitter".to_string(), n as f64)]).await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut counts: BTreeMap<String, u64> = WATCHED.iter().map(|c| (c.to_string(), 0)).collect();
    let mut lines = Vec::new();
    for node in [&home, &standby, &hs[0], &hs[1]]
        .into_iter()
        .chain(agents.iter())
    {
        for e in node.events_since(since).await {
            let code = e.code.clone();
            if let Some(c) = counts.get_mut(&code) {
                *c += 1;
                lines.push(format!("{}: {code} {}", node.name, e.sentence));
            }
        }
    }
    let pair = home.pair("web").await;
    let links: Vec<String> = {
        let mut v = Vec::new();
        for a in &agents {
            v.push(format!("{} {:?}", a.name, a.link().await.map(|l| l.0)));
        }
        v
    };
    let s = stats.lock().await;
    let (chunks, delayed) = (s.chunks, s.delayed);
    drop(s);
    for a in agents.iter_mut() {
        a.stop();
    }
    home.stop();
    standby.stop();
    for n in hs.iter_mut() {
        n.stop();
    }
    let false_total: u64 = counts.values().sum();
    eprintln!("jitter: {counts:?}; {chunks} chunks, {delayed} delayed 200ms; {lines:?}");
    let mut md = String::from("## 4. False failovers under jitter and loss (issue 4)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** A home server and a standby server at default settings; agents p1, p2 (a pair \
         `web`, default `failover_after` 10s, switchback manual) and a3, all at default settings \
         (heartbeat 1s, switchover_after 10s), whose home server is reached through a TCP relay of the \
         benchmark's: every chunk, both ways, is delayed by a random 0–{} ms and {:.0}% of chunks by \
         another {} ms (a lost segment on TCP costs a retransmit, not a gap), in order. Each agent also \
         sends one record a second. Beside them, two servers in hot standby (s1 primary ACTIVE, s2 \
         secondary STANDBY) at default settings (`failover_timeout` 15s, `crash_confirm` 3, sync 5s) whose \
         peer link, both ways, goes through relays of the same kind: a late chunk must never look like a \
         crashed peer (HS-8). After {} s, the events of every node since the start are counted.\n\n",
        o.jitter_ms,
        o.loss * 100.0,
        o.retransmit_ms,
        o.seconds
    ));
    md.push_str("| figure | value | target | |\n|---|---:|---|---|\n");
    for (code, c) in &counts {
        md.push_str(&format!("| {code} events | {c} | 0 | {} |\n", met(*c == 0)));
    }
    md.push_str(&format!(
        "| all of the above | **{false_total}** | 0 | {} |\n\nThe relay moved {chunks} chunks, {delayed} of them \
         with the extra {} ms. At the end the pair was {} and the agents' links were {}.\n",
        met(false_total == 0),
        o.retransmit_ms,
        pair.map(|p| format!("active on {}", p.active)).unwrap_or_else(|| "unknown".into()),
        links.join(", ")
    ));
    if !lines.is_empty() {
        md.push_str("\nEvents seen:\n\n");
        for l in lines.iter().take(20) {
            md.push_str(&format!("- {l}\n"));
        }
    }
    Section {
        key: "jitter",
        body: md,
    }
}
