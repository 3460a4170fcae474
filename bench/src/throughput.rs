//! Throughput: (a) this machine's SQLite group-commit limit through the product's own
//! `Store::records_insert`; (b) records/s end to end, one agent → one server, durable on both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use understudy_node::store::{Record, Store};

use crate::site::{newest_seq, poll, wait_link, Ctx};
use crate::stats::met;
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Seconds of `records_insert` per batch size.
    #[arg(long, default_value_t = 5.0)]
    pub store_seconds: f64,
    /// Seconds of sending, end to end.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Concurrent admin-API callers pushing into the agent.
    #[arg(long, default_value_t = 4)]
    pub callers: usize,
    /// Records per `POST /api/send`.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                store_seconds: 1.0,
                seconds: 4.0,
                callers: 4,
                batch: 500,
            }
        } else {
            Opts {
                store_seconds: 5.0,
                seconds: 20.0,
                callers: 4,
                batch: 500,
            }
        }
    }
}

fn record(seq: u64) -> Record {
    Record {
        seq,
        name: format!("m{}", seq % 10),
        value: seq as f64,
        time_ms: 1_700_000_000_000 + seq as i64,
        pair: None,
        kind: "metric".into(),
        detail: None,
        labels: Default::default(),
        pair_epoch: None,
    }
}

/// (commits/s, records/s) of `records_insert` with `batch` records per call.
fn group_commit(dir: &std::path::Path, batch: usize, seconds: f64) -> (f64, f64) {
    let mut store =
        Store::open(&dir.join(format!("store-{batch}.db")), "bench").expect("opening a Store");
    let mut seq = 0u64;
    let mut commits = 0u64;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < seconds {
        let records: Vec<Record> = (0..batch)
            .map(|_| {
                seq += 1;
                record(seq)
            })
            .collect();
        store
            .records_insert(
                "00000000-0000-4000-8000-000000000001",
                "bench-agent",
                &records,
                None,
            )
            .expect("records_insert");
        commits += 1;
    }
    let el = t0.elapsed().as_secs_f64();
    (commits as f64 / el, seq as f64 / el)
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "throughput");
    // (a) group-commit limit.
    let mut limit = Vec::new();
    for batch in [1usize, 50, 500] {
        let dir = ctx.path().to_path_buf();
        let secs = o.store_seconds;
        let (c, r) = tokio::task::spawn_blocking(move || group_commit(&dir, batch, secs))
            .await
            .expect("store bench");
        eprintln!("throughput: store batch {batch}: {c:.0} commits/s, {r:.0} records/s");
        limit.push((batch, c, r));
    }
    let at_batch = limit
        .iter()
        .find(|l| l.0 == o.batch)
        .map(|l| l.2)
        .unwrap_or(limit[2].2);

    // (b) end to end.
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let mut agent = ctx.agent("agent", &[server.url()], &[]);
    agent.start().await;
    wait_link(&agent, "home", &server.listen, Duration::from_secs(60))
        .await
        .expect("agent home");
    let agent = Arc::new(agent);
    let sent = Arc::new(AtomicU64::new(0));
    let last_seq = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let mut tasks = Vec::new();
    for c in 0..o.callers {
        let (agent, sent, last_seq, batch) =
            (agent.clone(), sent.clone(), last_seq.clone(), o.batch);
        tasks.push(tokio::spawn(async move {
            let records: Vec<(String, f64)> = (0..batch)
                .map(|i| (format!("c{c}m{}", i % 10), i as f64))
                .collect();
            while Instant::now() < deadline {
                match agent.send(&records).await {
                    Ok(seq) => {
                        sent.fetch_add(batch as u64, Ordering::Relaxed);
                        last_seq.fetch_max(seq, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("send: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    // Sample what the server has stored once a second (its newest sequence number).
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let aname = agent.name.clone();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((
            t0.elapsed().as_secs_f64(),
            newest_seq(&server, &aname).await,
        ));
    }
    for t in tasks {
        let _ = t.await;
    }
    let accepted_at = t0.elapsed().as_secs_f64();
    let total_sent = sent.load(Ordering::Relaxed);
    let last = last_seq.load(Ordering::Relaxed);
    let drained = poll(
        Duration::from_secs(600),
        Duration::from_millis(20),
        || async {
            let s = agent.status().await?;
            let cached = s.link?.cached;
            (cached == 0 && newest_seq(&server, &aname).await >= last).then(Instant::now)
        },
    )
    .await
    .expect("the agent's cache to drain");
    let total_s = drained.duration_since(t0).as_secs_f64();
    let on_server = newest_seq(&server, &aname).await;
    let e2e = on_server as f64 / total_s;
    let accept_rate = total_sent as f64 / accepted_at;
    // Steady rate while sending: the server's growth between the first and last sample.
    let steady = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0),
        _ => f64::NAN,
    };
    eprintln!("throughput: e2e {e2e:.0} rec/s (accepted {accept_rate:.0}/s, steady {steady:.0}/s), {on_server} stored");
    let ratio = e2e / at_batch;
    let cpu_note = format!(
        "server CPU time {:.1} s, agent CPU time {:.1} s over the {total_s:.1} s run",
        server
            .pid()
            .and_then(crate::stats::cpu_time)
            .unwrap_or(f64::NAN),
        agent
            .pid()
            .and_then(crate::stats::cpu_time)
            .unwrap_or(f64::NAN)
    );
    drop(agent);
    server.stop();

    let mut md = String::from("## 1. Throughput (issue 3)\n\n");
    md.push_str(stamp);
    md.push_str(
        "**Method.** (a) The group-commit limit: the product's own `understudy_node::store::Store` \
         (WAL, `synchronous=FULL`) opened in a fresh directory on the same disk as the nodes, and \
         `records_insert` (one IMMEDIATE transaction per call, what the server does per frame) called \
         back to back with batches of 1, 50 and 500 records. (b) End to end: one `understudy serve` \
         server and one agent (release binaries, default settings); ",
    );
    md.push_str(&format!(
        "{} concurrent callers push records into the agent through `POST /api/send` ({} records per call, \
         each call returns once the records are durable in the agent's SQLite cache) for {:.0} s; the \
         clock stops when the agent's `link.cached` is 0 and the server's newest record (`records \
         --limit 1`) is the last one sent, i.e. every record is durable on both sides and acknowledged.\n\n",
        o.callers, o.batch, o.seconds
    ));
    md.push_str("| `records_insert` batch | commits/s | records/s |\n|---:|---:|---:|\n");
    for (b, c, r) in &limit {
        md.push_str(&format!("| {b} | {c:.0} | {r:.0} |\n"));
    }
    md.push_str("\n| end to end, one agent | figure | target | |\n|---|---:|---|---|\n");
    md.push_str(&format!(
        "| records/s durable on both sides (send → drained) | **{e2e:.0}** | ≥ ½ × {at_batch:.0} = {:.0} (group-commit limit at batch {}) | {} ({:.0}% of the limit) |\n",
        at_batch / 2.0,
        o.batch,
        met(ratio >= 0.5),
        ratio * 100.0
    ));
    md.push_str(&format!(
        "| records/s accepted by the agent (durable in its cache) | {accept_rate:.0} | | |\n"
    ));
    md.push_str(&format!(
        "| records/s stored by the server while sending (steady) | {steady:.0} | | |\n"
    ));
    md.push_str(&format!(
        "| records stored / sent | {on_server} / {total_sent} | equal | {} |\n\n",
        met(on_server == total_sent)
    ));
    md.push_str(&format!("{cpu_note}.\n"));
    Section {
        key: "throughput",
        body: md,
    }
}
