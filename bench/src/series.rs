//! MX-3: the latency of the console's pictures (`GET /api/series/…`) for a week of a 5 s check
//! (≈120,960 runs) on a server. The runs are the records a check's agent stores
//! (`Store::records_insert`, kind `check`, one in 20 down) with the check's CHECK_DOWN/CHECK_UP
//! events, put in the server's store before it starts; each request asks for the whole week in
//! 300 points over TLS with the admin token (a new connection each time, handshake included).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use understudy_node::config::{Config, CONFIG_FILE};
use understudy_node::http_client::AdminClient;
use understudy_node::store::{EventRow, Record, Store};
use understudy_node::tls::Pins;

use crate::site::Ctx;
use crate::stats::percentile;
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Days of runs stored.
    #[arg(long, default_value_t = 7)]
    pub days: i64,
    /// The check's interval, in seconds.
    #[arg(long, default_value_t = 5)]
    pub every: i64,
    /// Requests measured per endpoint.
    #[arg(long, default_value_t = 30)]
    pub requests: usize,
}

const CHECK: &str = "db-ping";

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "series");
    let mut node = ctx.server("s", &[]);
    let config = Config::load(&node.dir.join(CONFIG_FILE)).expect("config.toml");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let from = now - o.days * 86_400_000;
    let runs = (o.days * 86_400 / o.every.max(1)) as u64;
    {
        let mut store = Store::open(&node.dir.join("store.db"), &config.node.id).expect("store");
        let doc = serde_json::json!({"kind": "tcp", "target": "127.0.0.1:9", "every": format!("{}s", o.every), "agent": "a1"});
        store.check_put(CHECK, &doc).expect("the check");
        let mut batch = Vec::with_capacity(2000);
        for seq in 1..=runs {
            let up = seq % 20 != 0;
            batch.push(Record {
                seq,
                name: CHECK.into(),
                value: 0.2 + (seq % 97) as f64 / 100.0,
                time_ms: from + seq as i64 * o.every * 1000,
                pair: None,
                kind: "check".into(),
                detail: Some(format!(r#"{{"up":{up},"detail":"x"}}"#)),
                labels: Default::default(),
                pair_epoch: None,
            });
            if batch.len() == 2000 || seq == runs {
                store
                    .records_insert("00000000-0000-4000-8000-000000000001", "a1", &batch, None)
                    .expect("runs");
                batch.clear();
            }
        }
        for day in 0..o.days {
            for (code, at) in [("CHECK_DOWN", 3_600_000), ("CHECK_UP", 3_900_000)] {
                store
                    .event_append(&EventRow {
                        time_ms: from + day * 86_400_000 + at,
                        code: code.into(),
                        subject: CHECK.into(),
                        detail: format!("{CHECK} {code}"),
                        data: serde_json::json!({}),
                    })
                    .expect("an event");
            }
        }
    }
    node.start().await;
    let token = std::fs::read_to_string(node.dir.join("admin.token")).expect("admin.token");
    let client = AdminClient::new(&node.url(), token.trim(), Pins::default())
        .expect("a client")
        .with_timeout(Duration::from_secs(60));
    let window = format!("from={from}&to={}&points=300", now + 1000);
    let mut rows = Vec::new();
    for (what, path) in [
        ("check", format!("/api/series/check/{CHECK}?{window}")),
        ("records", format!("/api/series/records?{window}")),
    ] {
        let mut times = Vec::new();
        let mut points = 0;
        let mut counted = 0u64;
        for _ in 0..o.requests + 1 {
            let t = Instant::now();
            let (status, body) = client.call("GET", &path, None).await.expect("an answer");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{path}: {body}");
            let list = body["points"].as_array().cloned().unwrap_or_default();
            points = list.len();
            counted = list
                .iter()
                .map(|p| p["runs"].as_u64().or(p["records"].as_u64()).unwrap_or(0))
                .sum();
        }
        times.remove(0); // the first warms SQLite's page cache
        let (p50, p99) = (percentile(&times, 50.0), percentile(&times, 99.0));
        eprintln!("series {what}: {points} points covering {counted} records, p50 {p50:.1} ms, p99 {p99:.1} ms");
        rows.push((what, path, points, counted, p50, p99));
    }
    node.stop();
    let mut md = String::from("## MX-3 /api/series for a week of a 5 s check (issue 16)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** A server whose store holds {runs} runs of one check ({} days every {} s, \
         the records its agent would store, one in 20 down) and a CHECK_DOWN/CHECK_UP pair per \
         day, put there before it starts; each endpoint asked for the whole window in 300 points \
         {} times in a row over TLS with the admin token (a new connection each time) after one \
         warm-up request. The server downsamples (per bucket min/max/mean/runs/failed for the \
         check, a count for records/s) reading through the indexes of store migration 6.\n\n",
        o.days, o.every, o.requests
    ));
    md.push_str("| request | points | records covered | p50 | p99 |\n|---|---:|---:|---:|---:|\n");
    for (what, _, points, counted, p50, p99) in rows {
        let route = if what == "check" {
            "`/api/series/check/NAME`"
        } else {
            "`/api/series/records`"
        };
        md.push_str(&format!(
            "| {route} | {points} | {counted} | **{p50:.1} ms** | **{p99:.1} ms** |\n"
        ));
    }
    Section {
        key: "series",
        body: md,
    }
}
