//! Forwarding (MX-2, issue 16): one agent sends at full speed into a server that forwards every
//! record to a local VictoriaMetrics over remote write; the server's own `status` gives the
//! records stored and the forwarding lag once a second. Does the lag stay bounded?

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::site::{fresh_addr, poll, wait_link, Ctx};
use crate::stats::met;
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Seconds of sending.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Concurrent admin-API callers pushing into the agent.
    #[arg(long, default_value_t = 4)]
    pub callers: usize,
    /// Records per `POST /api/send`.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// `forward.batch` of the server.
    #[arg(long, default_value_t = 500)]
    pub forward_batch: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        Opts {
            seconds: if quick { 5.0 } else { 30.0 },
            callers: 4,
            batch: 500,
            forward_batch: 500,
        }
    }
}

/// VictoriaMetrics (Debian `victoria-metrics`) on a loopback port, stopped with SIGTERM.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// One sample: seconds since the start, records stored, records after the cursor, the oldest
/// unforwarded record's age.
type Tick = (f64, u64, u64, f64);

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "forward");
    let vm_addr = fresh_addr();
    let vm = Vm(Command::new("victoria-metrics")
        .arg(format!("-httpListenAddr={vm_addr}"))
        .arg(format!(
            "-storageDataPath={}",
            ctx.path().join("vm").display()
        ))
        .args(["-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting victoria-metrics (apt-get install victoria-metrics)"));
    let url = format!("http://{vm_addr}/api/v1/write");
    let mut server = ctx.server(
        "server",
        &[
            &format!("forward.remote_write={url}"),
            &format!("forward.batch={}", o.forward_batch),
        ],
    );
    server.start().await;
    let mut agent = ctx.agent("agent", &[server.url()], &[]);
    agent.start().await;
    wait_link(&agent, "home", &server.listen, Duration::from_secs(60))
        .await
        .expect("agent home");
    let agent = Arc::new(agent);
    let sent = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let mut tasks = Vec::new();
    for c in 0..o.callers {
        let (agent, sent, batch) = (agent.clone(), sent.clone(), o.batch);
        tasks.push(tokio::spawn(async move {
            let records: Vec<(String, f64)> = (0..batch)
                .map(|i| (format!("c{c}m{}", i % 10), i as f64))
                .collect();
            while Instant::now() < deadline {
                match agent.send(&records).await {
                    Ok(_) => {
                        sent.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("send: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    let tick = |t: f64, s: &understudy_api::Status, stored: u64| -> Option<Tick> {
        let f = s.forward.as_ref()?;
        Some((t, stored, f.lag_records, f.lag_seconds))
    };
    let mut ticks: Vec<Tick> = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(s) = server.status().await else {
            continue;
        };
        let stored = server
            .call("GET", "/api/records?limit=1", None)
            .await
            .and_then(|v| v["records"][0]["seq"].as_u64())
            .unwrap_or(0);
        if let Some(t) = tick(t0.elapsed().as_secs_f64(), &s, stored) {
            eprintln!("forward: {t:?}");
            ticks.push(t);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let total_sent = sent.load(Ordering::Relaxed);
    let sending = t0.elapsed().as_secs_f64();
    // Everything stored, then everything forwarded.
    let stored_all = poll(
        Duration::from_secs(600),
        Duration::from_millis(100),
        || async {
            let s = agent.status().await?;
            (s.link?.cached == 0).then(Instant::now)
        },
    )
    .await
    .expect("the agent's cache to drain");
    let forwarded_all = poll(
        Duration::from_secs(600),
        Duration::from_millis(100),
        || async {
            let f = server.status().await?.forward?;
            (f.lag_records == 0).then(Instant::now)
        },
    )
    .await
    .expect("the forwarder to catch up");
    let drain_after_stored = forwarded_all
        .saturating_duration_since(stored_all)
        .as_secs_f64();
    let cpu = server
        .pid()
        .and_then(crate::stats::cpu_time)
        .unwrap_or(f64::NAN);
    drop(agent);
    server.stop();
    drop(vm);

    // Rates from the first to the last tick: stored and forwarded (stored − lag).
    let (stored_rate, fwd_rate) = match (ticks.first(), ticks.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (
            (b.1 as f64 - a.1 as f64) / (b.0 - a.0),
            ((b.1 - b.2.min(b.1)) as f64 - (a.1 - a.2.min(a.1)) as f64) / (b.0 - a.0),
        ),
        _ => (f64::NAN, f64::NAN),
    };
    let max_lag = ticks.iter().map(|t| t.2).max().unwrap_or(0);
    let max_lag_s = ticks.iter().map(|t| t.3).fold(0.0, f64::max);
    let half = ticks.len() / 2;
    let first_half = ticks[..half].iter().map(|t| t.2).max().unwrap_or(0);
    let second_half = ticks[half..].iter().map(|t| t.2).max().unwrap_or(0);
    // Bounded: the lag stopped growing (the second half's worst is no worse than 1.5 × the
    // first half's, or within two forward batches).
    let bounded =
        second_half as f64 <= 1.5 * first_half as f64 || second_half <= 2 * o.forward_batch as u64;
    eprintln!(
        "forward: stored {stored_rate:.0}/s, forwarded {fwd_rate:.0}/s, max lag {max_lag} records / {max_lag_s:.1} s, bounded {bounded}"
    );

    let mut md = String::from("## Forwarding to a remote-write receiver (issue 16, MX-2)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** One server with `forward.remote_write` = a local VictoriaMetrics 1.79 \
         (Debian `victoria-metrics`, `/api/v1/write`), `forward.batch = {}`, and one agent; {} \
         callers push records into the agent through `POST /api/send` ({} records per call) for \
         {:.0} s. Once a second the server's `status` gives its forwarding lag (records stored \
         after the durable cursor, and the age of the oldest) and `records --limit 1` the newest \
         stored record; forwarded = stored − lag. After the sending stops, the clock runs until \
         the agent's cache is empty and then until the lag is 0.\n\n",
        o.forward_batch, o.callers, o.batch, o.seconds
    ));
    md.push_str("| | figure |\n|---|---:|\n");
    md.push_str(&format!(
        "| records/s stored by the server while sending (end-to-end ingest) | {stored_rate:.0} |\n"
    ));
    md.push_str(&format!(
        "| records/s forwarded (acknowledged by VictoriaMetrics) while sending | **{fwd_rate:.0}** |\n"
    ));
    md.push_str(&format!(
        "| largest lag while sending | {max_lag} records, {max_lag_s:.1} s |\n"
    ));
    md.push_str(&format!(
        "| largest lag, first half / second half of the run | {first_half} / {second_half} records |\n"
    ));
    md.push_str(&format!(
        "| lag 0 after the last record was stored | {drain_after_stored:.1} s |\n"
    ));
    md.push_str(&format!(
        "| records sent | {total_sent} in {sending:.1} s |\n"
    ));
    md.push_str(&format!(
        "| target: the lag stays bounded while one agent sends at full speed | {} |\n\n",
        met(bounded)
    ));
    md.push_str(&format!("Server CPU time {cpu:.1} s over the run.\n"));
    Section {
        key: "forward",
        body: md,
    }
}
