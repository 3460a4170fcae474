//! Home complete after a switchback (AG-2 across independent servers): a standby of another
//! site holds N records (100,000 by default) taken while home was down; home returns; time until
//! home holds every one of them (the agent's cache is empty: it deletes a record only on home's
//! acknowledgement), and the agent's cache size on disk before, during and after the outage.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use understudy_node::store::{RecordFilter, Store, STORE_FILE};

use crate::site::{poll, wait_link, Ctx, Node, FAST_AGENT};
use crate::stats::{fmt_s, secs};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Records the standby holds when home returns.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Records per `POST /api/send` while home is down.
    #[arg(long, default_value_t = 1000)]
    pub batch: u64,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        Opts {
            records: if quick { 5000 } else { 100_000 },
            batch: 1000,
        }
    }
}

/// The agent's store on disk (database and WAL), in MiB.
fn cache_mib(dir: &Path) -> f64 {
    let bytes: u64 = ["store.db", "store.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    bytes as f64 / (1024.0 * 1024.0)
}

/// `(link.state, link.cached, link.held)` of an agent.
async fn link_counts(agent: &Node) -> Option<(String, u64, u64)> {
    let l = agent.status().await?.link?;
    Some((l.state, l.cached, l.held))
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "homecomplete");
    let mut home = ctx.server("home", &[]);
    let mut standby = ctx.server("standby", &[]);
    home.start().await;
    standby.start().await;
    let mut agent = ctx.agent("agent", &[home.url(), standby.url()], FAST_AGENT);
    agent.start().await;
    let long = Duration::from_secs(600);
    wait_link(&agent, "home", &home.listen, long)
        .await
        .expect("the agent at home");
    let before = cache_mib(&agent.dir);

    home.kill9();
    wait_link(&agent, "standby", &standby.listen, long)
        .await
        .expect("the agent on the standby");
    let t_send = Instant::now();
    let mut sent = 0;
    while sent < o.records {
        let n = o.batch.min(o.records - sent);
        let batch: Vec<(String, f64)> =
            (0..n).map(|i| (format!("m{}", i % 10), i as f64)).collect();
        agent.send(&batch).await.expect("send");
        sent += n;
    }
    let held = poll(long, Duration::from_millis(100), || async {
        let (_, cached, held) = link_counts(&agent).await?;
        (cached == 0 && held == o.records).then_some(held)
    })
    .await
    .expect("the standby to hold every record");
    let outage_s = secs(t_send.elapsed());
    let during = cache_mib(&agent.dir);

    let t_home = Instant::now();
    home.start().await;
    wait_link(&agent, "home", &home.listen, long)
        .await
        .expect("the switchback");
    let t_switchback = Instant::now();
    poll(long, Duration::from_millis(20), || async {
        let (state, cached, held) = link_counts(&agent).await?;
        (state == "home" && cached == 0 && held == 0).then_some(())
    })
    .await
    .expect("home complete");
    let t_done = Instant::now();
    let after = cache_mib(&agent.dir);
    agent.stop();
    standby.stop();
    home.stop();
    // The agent's word checked against home's store: every record, once.
    let store = Store::open(&home.dir.join(STORE_FILE), "bench").expect("home's store");
    let seqs: BTreeSet<u64> = store
        .records_list(&RecordFilter {
            agent: Some("agent".into()),
            ..RecordFilter::default()
        })
        .expect("home's records")
        .iter()
        .map(|r| r.record.seq)
        .collect();
    let stored = seqs.len() as u64;
    let expected = seqs.last().copied().unwrap_or(0);
    assert_eq!(stored, expected, "home holds 1..={expected} exactly once");
    let complete = secs(t_done.duration_since(t_switchback));
    let from_start = secs(t_done.duration_since(t_home));
    eprintln!(
        "homecomplete: {held} held; home complete {} after the switchback ({} after home was started); home stores {stored}",
        fmt_s(complete),
        fmt_s(from_start)
    );

    let mut md = String::from(
        "## 9. Home complete after a switchback: records a standby of another site held (issue 19)\n\n",
    );
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** Two independent servers (home and a standby of another site, no hot standby) and one \
         agent with sub-second settings, release binaries. Home gets SIGKILL; the agent switches over and \
         is handed {} records ({} per `POST /api/send`); the standby acknowledges them and the agent keeps \
         them in its cache marked held by the standby (AG-2). Home is restarted; the clock starts when the \
         agent's link is home again (SWITCHBACK, polled every 50 ms) and stops when its `link.cached` and \
         `link.held` are both 0 (polled every 20 ms): the agent deletes a record only on home's \
         acknowledgement, so home then holds every one of them; home's store is counted afterwards (every sequence number from 1, once). \
         Cache size: the agent's `store.db` + `store.db-wal` (SQLite does not give pages back to the \
         file system without `VACUUM`, so the file keeps its peak size; the pages are reused).\n\n",
        o.records, o.batch
    ));
    md.push_str("| held by the standby | home complete after the switchback | after home was started | home stores (agent's records) | handing them over while home was down |\n|---:|---:|---:|---:|---:|\n");
    md.push_str(&format!(
        "| {held} | **{}** | {} | {stored} | {} |\n\n",
        fmt_s(complete),
        fmt_s(from_start),
        fmt_s(outage_s)
    ));
    md.push_str("| agent cache on disk | MiB |\n|---|---:|\n");
    md.push_str(&format!(
        "| before the outage | {before:.1} |\n| during the outage, {held} records held | {during:.1} |\n| after home is complete | {after:.1} |\n"
    ));
    Section {
        key: "homecomplete",
        body: md,
    }
}
