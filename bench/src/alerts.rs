//! Issue 15: alerts beyond the desktop. From an event to its webhook delivery (p50/p99, with
//! `alert.group_wait = 0`), and how many messages a channel gets when many checks go down at
//! once (with the default `group_wait` of 10 s). The receiver is a small HTTP server in this
//! process; every alert is found by its id.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::site::{fresh_addr, poll, tcp_target, wait_link, Ctx, Node};
use crate::stats::{met, now_ms, summary};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Alerts measured one at a time with `group_wait = 0`.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Checks going down together (their target closes) with the default `group_wait`.
    #[arg(long, default_value_t = 1000)]
    pub storm: usize,
    /// SIGKILLs of the ACTIVE server while alerts are being delivered.
    #[arg(long, default_value_t = 30)]
    pub kills: usize,
    /// Alerts queued for a webhook that comes back (outbox throughput); 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                runs: 3,
                storm: 20,
                kills: 3,
                backlog: 200,
            }
        } else {
            Opts {
                runs: 30,
                storm: 1000,
                kills: 30,
                backlog: 10_000,
            }
        }
    }
}

/// What the receiver took: arrival (wall ms) and the body.
type Inbox = Arc<Mutex<Vec<(i64, Value)>>>;

/// An HTTP/1.1 webhook receiver that answers 200 to everything.
async fn receiver() -> (String, Inbox, tokio::task::JoinHandle<()>) {
    let addr = fresh_addr();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("receiver");
    let inbox: Inbox = Arc::default();
    let got = inbox.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let got = got.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(stream);
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let at = now_ms();
                got.lock()
                    .unwrap()
                    .push((at, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), inbox, task)
}

/// The alerts of the inbox: (id, arrival in wall ms).
fn arrived(inbox: &Inbox) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (arrival, body) in inbox.lock().unwrap().iter() {
        for a in body["alerts"].as_array().into_iter().flatten() {
            out.push((a["id"].as_str().unwrap_or("").to_string(), *arrival));
        }
    }
    out
}

/// The alerts a server lists with a delivery to some channel (an alert no channel takes, such as
/// PROMOTED to a channel filtered to CHECK_DOWN, is nobody's to deliver), and their times.
async fn alert_times(server: &Node) -> std::collections::HashMap<String, i64> {
    let list = server
        .call("GET", "/api/alerts?limit=100000", None)
        .await
        .unwrap_or(Value::Null);
    list["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["deliveries"].as_array().is_some_and(|d| !d.is_empty()))
        .filter_map(|a| Some((a["id"].as_str()?.to_string(), a["time_ms"].as_i64()?)))
        .collect()
}

/// A `tcp` check on the agent, DOWN after `fail_after` failed runs (UP after the default).
async fn add_check(server: &Node, name: &str, target: &str, every: &str, fail_after: u32) {
    server
        .call_ok(
            "POST",
            "/api/checks",
            Some(
                json!({"name": name, "kind": "tcp", "target": target, "every": every,
                        "timeout": "1s", "agent": "agent", "fail_after": fail_after}),
            ),
        )
        .await
        .expect("check add");
}

/// A webhook channel `hook` to `url`, for these codes (all when none).
async fn add_hook(server: &Node, url: &str, codes: &[&str]) {
    let mut spec = json!({"name": "hook", "kind": "webhook", "url": url});
    if !codes.is_empty() {
        spec["codes"] = json!(codes);
    }
    server
        .call_ok("POST", "/api/alerts/channels", Some(spec))
        .await
        .expect("channel add");
}

async fn site(ctx: &Ctx, sets: &[&str], hook: &str) -> (Node, Node) {
    let mut server = ctx.server("server", sets);
    server.start().await;
    let mut agent = ctx.agent("agent", &[server.url()], &[]);
    agent.start().await;
    wait_link(&agent, "home", &server.listen, Duration::from_secs(60))
        .await
        .expect("agent home");
    add_hook(&server, hook, &["CHECK_DOWN"]).await;
    (server, agent)
}

/// What the SIGKILL runs found: alerts raised, their ids never delivered, delivered more than
/// once, and runs that did not complete.
struct Kills {
    alerts: usize,
    lost: Vec<String>,
    /// Of the lost: those whose check's CHECK_DOWN reached the receiver under another id (the
    /// promoted server raised it again).
    lost_covered: usize,
    duplicated: usize,
    extra_copies: usize,
    failed: usize,
}

/// AL-5 across crashes: a hot-standby pair (fast timings, `group_wait = 0`) and one agent;
/// each run adds checks on closed ports through the ACTIVE (each raises a CHECK_DOWN at its first
/// run), SIGKILLs the ACTIVE 300 ms later while those alerts are being delivered, waits for the
/// STANDBY's promotion and restarts the killed server as STANDBY. At the end, every alert either
/// server lists is looked for at the receiver by its id.
async fn kills(env: &Env, runs: usize) -> Kills {
    use crate::site::{FAST_AGENT, FAST_SERVER};
    use crate::takeover::wait_state;
    let ctx = Ctx::new(&env.bin, &env.work, "alerts-kills");
    let (hook, inbox, rx) = receiver().await;
    let sets: Vec<&str> = FAST_SERVER
        .iter()
        .copied()
        .chain(["alert.group_wait=0s"])
        .collect();
    let mut s = [ctx.server("s1", &sets), ctx.server("s2", &sets)];
    Node::pin_hot_standby(&s, [&s[0].listen.clone(), &s[1].listen.clone()]);
    s[0].start().await;
    wait_state(&s[0], "active").await.expect("s1 active");
    s[1].start().await;
    wait_state(&s[1], "standby").await.expect("s2 standby");
    let mut agent = ctx.agent("agent", &[s[0].url(), s[1].url()], FAST_AGENT);
    agent.start().await;
    wait_link(&agent, "home", &s[0].listen, Duration::from_secs(60))
        .await
        .expect("agent home");
    add_hook(&s[0], &hook, &["CHECK_DOWN"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut active = 0usize;
    let mut failed = 0;
    for run in 0..runs {
        let other = 1 - active;
        for i in 0..5 {
            add_check(
                &s[active],
                &format!("k{run}-{i}"),
                &fresh_addr(),
                "200ms",
                1,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        s[active].kill9();
        if let Err(e) = wait_state(&s[other], "active").await {
            eprintln!("alerts kills: run {run}: {e}");
            failed += 1;
            break;
        }
        s[active].start().await;
        if let Err(e) = wait_state(&s[active], "standby").await {
            eprintln!("alerts kills: run {run}: {e}");
            failed += 1;
            break;
        }
        active = other;
        eprintln!(
            "alerts kills: run {run} done, {} alert(s) arrived",
            arrived(&inbox).len()
        );
    }
    // Everything pending on the acting server delivered (or given up on).
    let _ = poll(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let v = s[active]
                .call("GET", "/api/alerts?pending=true&limit=100000", None)
                .await?;
            v["alerts"]
                .as_array()
                .is_some_and(|a| a.is_empty())
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ids = HashSet::new();
    let mut subject: std::collections::HashMap<String, String> = Default::default();
    for n in &s {
        ids.extend(alert_times(n).await.into_keys());
        let list = n
            .call("GET", "/api/alerts?limit=100000", None)
            .await
            .unwrap_or(Value::Null);
        for a in list["alerts"].as_array().into_iter().flatten() {
            if let (Some(id), Some(sub)) = (a["id"].as_str(), a["subject"].as_str()) {
                subject.insert(id.to_string(), sub.to_string());
            }
        }
    }
    let mut copies: std::collections::HashMap<String, usize> = Default::default();
    for (id, _) in arrived(&inbox) {
        *copies.entry(id).or_default() += 1;
    }
    let lost: Vec<String> = ids
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .cloned()
        .collect();
    let told: HashSet<&String> = copies.keys().filter_map(|id| subject.get(id)).collect();
    let lost_covered = lost
        .iter()
        .filter(|id| subject.get(*id).is_some_and(|sub| told.contains(sub)))
        .count();
    let duplicated = copies.values().filter(|n| **n > 1).count();
    let extra_copies = copies.values().map(|n| n.saturating_sub(1)).sum();
    agent.stop();
    for n in s.iter_mut() {
        n.stop();
    }
    rx.abort();
    Kills {
        alerts: ids.len(),
        lost,
        lost_covered,
        duplicated,
        extra_copies,
        failed,
    }
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    if o.runs == 0 && o.storm == 0 {
        return kills_section(env, o, stamp).await;
    }
    // 1. Latency, one alert at a time, group_wait = 0.
    let ctx = Ctx::new(&env.bin, &env.work, "alerts-latency");
    let (hook, inbox, rx) = receiver().await;
    let (mut server, mut agent) = site(&ctx, &["alert.group_wait=0s"], &hook).await;
    let mut lat = Vec::new();
    for i in 0..o.runs {
        // A port nobody listens on: DOWN at the first run.
        add_check(&server, &format!("l{i}"), &fresh_addr(), "200ms", 1).await;
        let want = i + 1;
        poll(Duration::from_secs(30), Duration::from_millis(20), || {
            let n = arrived(&inbox).len();
            async move { (n >= want).then_some(()) }
        })
        .await
        .expect("the alert delivered");
    }
    let times = alert_times(&server).await;
    for (id, arrival) in arrived(&inbox) {
        if let Some(at) = times.get(&id) {
            lat.push((arrival - at) as f64 / 1000.0);
        }
    }
    agent.stop();
    server.stop();
    rx.abort();
    let l = summary(&lat);
    eprintln!(
        "alerts: event → webhook, group_wait 0: p50 {:.3}s p99 {:.3}s (n={})",
        l.p50, l.p99, l.n
    );

    // 2. A storm: `storm` checks up against one listener, which then closes.
    let ctx = Ctx::new(&env.bin, &env.work, "alerts-storm");
    let (hook, inbox, rx) = receiver().await;
    let (mut server, mut agent) = site(&ctx, &[], &hook).await;
    let (target, accepter) = tcp_target().await;
    for i in 0..o.storm {
        add_check(&server, &format!("s{i}"), &target, "1s", 3).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    accepter.abort();
    let closed_at = now_ms();
    // Anything before the close (a run timed out under load) is not the storm.
    let before = inbox.lock().unwrap().len();
    let storm_ids = |inbox: &Inbox| -> HashSet<String> {
        let got = inbox.lock().unwrap();
        got[before..]
            .iter()
            .flat_map(|(_, b)| b["alerts"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["id"].as_str().map(String::from))
            .collect()
    };
    let all = poll(Duration::from_secs(180), Duration::from_millis(100), || {
        let n = storm_ids(&inbox).len();
        let storm = o.storm;
        async move { (n >= storm).then_some(()) }
    })
    .await
    .is_some();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let messages = inbox.lock().unwrap().len() - before;
    let delivered = storm_ids(&inbox);
    let last = arrived(&inbox)
        .iter()
        .map(|a| a.1)
        .max()
        .unwrap_or(closed_at);
    let spread = {
        let times = alert_times(&server).await;
        let ats: Vec<i64> = delivered
            .iter()
            .filter_map(|id| times.get(id).copied())
            .collect();
        (ats.iter().max().unwrap_or(&0) - ats.iter().min().unwrap_or(&0)) as f64 / 1000.0
    };
    agent.stop();
    server.stop();
    rx.abort();
    eprintln!(
        "alerts: {} CHECK_DOWN within {spread:.1}s → {messages} message(s), {} delivered, last {:.1}s after the close",
        o.storm,
        delivered.len(),
        (last - closed_at) as f64 / 1000.0
    );

    let mut md = String::from("## Alerts: event to webhook, and a storm (issue 15)\n\n");
    md.push_str(stamp);
    md.push_str(
        "**Method.** One server and one agent; a webhook channel (`--codes CHECK_DOWN`) to an HTTP \
         receiver in the benchmark process. Latency: `tcp` checks on closed ports added one at a \
         time (`fail_after 1`, every 200 ms) with `alert.group_wait = 0`; each alert's `at` (the \
         event's time) to its arrival at the receiver. Storm: checks (every 1 s) against one \
         listener of the benchmark's, which then closes, with the default `group_wait` (10 s) and \
         `fail_after` (3); the messages the receiver got after the close.\n\n",
    );
    md.push_str("| measure | value | target |\n|---|---:|---|\n");
    md.push_str(&format!(
        "| event → webhook, `group_wait = 0` (n={}) | p50 **{:.3} s**, p99 **{:.3} s** (max {:.3} s) | p99 < 1 s {} |\n",
        l.n,
        l.p50,
        l.p99,
        l.max,
        met(l.p99 < 1.0)
    ));
    md.push_str(&format!(
        "| {} checks down, their CHECK_DOWN raised within {spread:.1} s | **{messages} message(s)** carrying {} CHECK_DOWN | one per channel per `group_wait` {} |\n",
        o.storm,
        delivered.len(),
        met(all && messages as f64 <= (spread / 10.0).ceil().max(1.0))
    ));
    if before > 0 {
        md.push_str(&format!(
            "\n{before} message(s) before the close are left out: runs that timed out under load \
             (1,000 connections a second to one listener).\n"
        ));
    }
    if spread > 10.0 {
        md.push_str(&format!(
            "\nThe server raised the CHECK_DOWNs over {spread:.1} s (it stores and watches the agent's \
             {} check results a second), longer than one `group_wait`: one message per window.\n",
            o.storm
        ));
    }
    if o.kills > 0 {
        md.push_str(&kills_md(env, o.kills).await);
    }
    if o.backlog > 0 {
        md.push_str(&backlog_md(env, o.backlog).await);
    }
    Section {
        key: "alerts",
        body: md,
    }
}

/// Outbox throughput: `n` alerts queued for a webhook while it was away (appended to the
/// stopped server's outbox as its watch appends them: one CHECK_DOWN event and its alert, one
/// delivery to the channel, in one transaction each), then the server starts with the receiver
/// answering: how fast the sender empties the backlog.
struct Backlog {
    delivered: usize,
    messages: usize,
    /// From the server's start (its process spawned) to the last alert's arrival.
    seconds: f64,
    /// From the first alert's arrival to the last's.
    first_to_last: f64,
    pending_after: usize,
}

async fn backlog(env: &Env, n: usize) -> Backlog {
    use understudy_node::store::{EventRow, NewAlert, Store};
    let ctx = Ctx::new(&env.bin, &env.work, "alerts-backlog");
    let (hook, inbox, rx) = receiver().await;
    let mut server = ctx.server("server", &[]);
    server.start().await;
    add_hook(&server, &hook, &[]).await;
    server.stop();
    {
        let mut store =
            Store::open(&server.dir.join("store.db"), "bench-backlog").expect("the store");
        let at = now_ms() - 60_000;
        for i in 0..n {
            let subject = format!("b{i}");
            let row = EventRow {
                time_ms: at,
                code: "CHECK_DOWN".into(),
                detail: format!("{subject} failed 3 times in a row: connection refused"),
                subject,
                data: json!({"rule": "AL-2", "notify": true}),
            };
            let alert = NewAlert {
                id: format!("00000000-0000-4000-8000-{i:012}"),
                severity: "critical".into(),
                channels: vec!["hook".into()],
            };
            store
                .event_append_alerting(&row, Some(&alert))
                .expect("queueing an alert");
        }
    }
    let started = now_ms();
    server.start().await;
    let ids = |inbox: &Inbox| -> HashSet<String> {
        arrived(inbox).into_iter().map(|(id, _)| id).collect()
    };
    let _ = poll(Duration::from_secs(600), Duration::from_millis(100), || {
        let done = ids(&inbox).len() >= n;
        async move { done.then_some(()) }
    })
    .await;
    let times: Vec<i64> = arrived(&inbox).iter().map(|a| a.1).collect();
    let last = times.iter().copied().max().unwrap_or(started);
    let first = times.iter().copied().min().unwrap_or(started);
    let pending_after = server
        .call("GET", "/api/alerts?pending=true&limit=100000", None)
        .await
        .and_then(|v| v["alerts"].as_array().map(Vec::len))
        .unwrap_or(0);
    let b = Backlog {
        delivered: ids(&inbox).len(),
        messages: inbox.lock().unwrap().len(),
        seconds: (last - started) as f64 / 1000.0,
        first_to_last: (last - first) as f64 / 1000.0,
        pending_after,
    };
    server.stop();
    rx.abort();
    b
}

async fn backlog_md(env: &Env, n: usize) -> String {
    let b = backlog(env, n).await;
    let rate = b.delivered as f64 / b.seconds.max(0.001);
    eprintln!(
        "alerts: backlog of {n}: {} delivered in {:.2}s ({rate:.0}/s) in {} messages, {} pending after",
        b.delivered, b.seconds, b.messages, b.pending_after
    );
    format!(
        "\n**Outbox throughput.** {n} CHECK_DOWN alerts queued for a webhook channel while its \
         receiver was away (appended to the stopped server's outbox, one event, alert and \
         delivery per transaction, as the watch appends them); the server then starts with the \
         receiver answering 200, default `group_wait` (the backlog is older than it). Time from \
         the server's start (process spawned) to the last alert's arrival.\n\n\
         | measure | value |\n|---|---:|\n\
         | alerts delivered | {} of {n} ({} still pending after) |\n\
         | messages (at most 1,000 alerts each) | {} |\n\
         | time to empty the backlog, from the start | {:.2} s |\n\
         | first to last arrival | {:.2} s |\n\
         | **outbox throughput** (delivered / time from the start) | **{rate:.0} alerts/s** |\n",
        b.delivered, b.pending_after, b.messages, b.seconds, b.first_to_last
    )
}

/// `--runs 0 --storm 0`: only the SIGKILL runs (and the backlog).
async fn kills_section(env: &Env, o: &Opts, stamp: &str) -> Section {
    let mut md = String::from("## Alerts across SIGKILLs of the ACTIVE (issue 15)\n\n");
    md.push_str(stamp);
    if o.kills > 0 {
        md.push_str(&kills_md(env, o.kills).await);
    }
    if o.backlog > 0 {
        md.push_str(&backlog_md(env, o.backlog).await);
    }
    Section {
        key: "alerts",
        body: md,
    }
}

async fn kills_md(env: &Env, runs: usize) -> String {
    let k = kills(env, runs).await;
    eprintln!(
        "alerts: {} SIGKILLs: {} alerts, {} never delivered ({} covered), {} delivered more than once ({} extra copies), {} failed runs",
        runs, k.alerts, k.lost.len(), k.lost_covered, k.duplicated, k.extra_copies, k.failed
    );
    let mut md = format!(
        "\n**Deliveries across SIGKILLs of the ACTIVE.** A hot-standby pair (fast timings, \
         `group_wait = 0`), one agent, a webhook channel; each of {runs} runs adds 5 checks on \
         closed ports through the ACTIVE (each a CHECK_DOWN at its first run), SIGKILLs the ACTIVE \
         300 ms later while they are being delivered, waits for the promotion and restarts the \
         killed server as STANDBY. Then every alert either server lists is looked for at the \
         receiver by id.\n\n| measure | value | target |\n|---|---:|---|\n"
    );
    md.push_str(&format!(
        "| alerts raised ({runs} SIGKILLs, {} run(s) incomplete) | {} | |\n",
        k.failed, k.alerts
    ));
    md.push_str(&format!(
        "| alert ids never delivered | **{}** ({} of them about a check whose CHECK_DOWN arrived under another id) | 0 {} |\n",
        k.lost.len(),
        k.lost_covered,
        met(k.lost.is_empty() && k.failed == 0)
    ));
    md.push_str(&format!(
        "| delivered more than once (same alert id) | **{}** ({} extra copies) | reported (only a delivery in flight at a kill may repeat) |\n",
        k.duplicated, k.extra_copies
    ));
    md
}
