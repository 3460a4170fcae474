//! The collection duty (CK-1…CK-3): checks given to this agent by its server, each run on its own
//! tokio task and turned into a record on the agent's durable path. A pair's checks run only
//! while this agent holds the pair's duty, and are recorded under the pair's alias.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use understudy_api::defaults;

use crate::allowlist::command_allowed;
use crate::config::parse_duration;
use crate::config::Config;
use crate::mailbox::{now_ms, CoreSender, Input, Shared};
use crate::store::{NewRecord, Store};

/// At most this much of a command's stdout is read; the rest is discarded (a flood never stalls).
const MAX_STDOUT: usize = 64 * 1024;

/// The argv of a command check's target: a JSON list, or a string split on spaces.
fn argv_of(target: &Value) -> Vec<String> {
    match target {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::String(s) => s.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub kind: String,
    pub target: Value,
    pub every: Duration,
    pub timeout: Duration,
    /// The pair alias whose duty this check belongs to, if any.
    pub pair: Option<String>,
    pub expect: u16,
    /// CK-4: the bearer token a `prometheus` check sends.
    pub token: Option<String>,
    /// CK-4: a scrape with more samples than this fails (`max_samples`).
    pub max_samples: usize,
}

/// CK-4: a scrape of more samples than this fails unless the check says otherwise.
pub const SCRAPE_MAX_SAMPLES: usize = 20_000;
/// CK-4: an exposition larger than this fails the scrape (read no further).
pub const SCRAPE_MAX_BYTES: usize = 16 * 1024 * 1024;

impl Check {
    pub fn from_json(v: &Value) -> Option<Check> {
        let dur = |k: &str, d: Duration| {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(|s| parse_duration(s).ok())
                .unwrap_or(d)
        };
        Some(Check {
            name: v.get("name")?.as_str()?.to_string(),
            kind: v.get("kind")?.as_str()?.to_string(),
            target: v.get("target")?.clone(),
            every: dur("every", defaults::CHECK_EVERY).max(defaults::CHECK_EVERY_MIN),
            timeout: dur("timeout", defaults::CHECK_TIMEOUT),
            pair: v.get("pair").and_then(Value::as_str).map(String::from),
            expect: v
                .get("expect")
                .and_then(Value::as_u64)
                .map_or(defaults::CHECK_HTTP_EXPECT, |e| e as u16),
            token: v.get("token").and_then(Value::as_str).map(String::from),
            max_samples: v
                .get("max_samples")
                .and_then(Value::as_u64)
                .map_or(SCRAPE_MAX_SAMPLES, |n| n as usize),
        })
    }
}

/// The result of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub up: bool,
    /// Latency in milliseconds, or the number a command printed.
    pub value: f64,
    pub detail: String,
}

/// The reason this agent refuses to run `check` at all (a command its configuration does not
/// allow), or `None` when it may run it.
pub fn refusal(check: &Check, allow: &[String]) -> Option<String> {
    (check.kind == "command")
        .then(|| command_allowed(&argv_of(&check.target), allow).err())
        .flatten()
}

/// Runs one probe to completion or its timeout; `allow` is `agent.allow_commands`.
pub async fn run_once(check: &Check, allow: &[String]) -> Outcome {
    if let Some(why) = refusal(check, allow) {
        return Outcome {
            up: false,
            value: 0.0,
            detail: format!("down: {why}"),
        };
    }
    let started = Instant::now();
    let result = tokio::time::timeout(check.timeout, probe(check)).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(Some(value))) => Outcome {
            up: true,
            value,
            detail: "up".into(),
        },
        Ok(Ok(None)) => Outcome {
            up: true,
            value: ms,
            detail: "up".into(),
        },
        Ok(Err(why)) => Outcome {
            up: false,
            value: ms,
            detail: format!("down: {why}"),
        },
        Err(_) => Outcome {
            up: false,
            value: ms,
            detail: format!(
                "down: timeout after {}",
                crate::config::format_duration(check.timeout)
            ),
        },
    }
}

/// `Ok(Some(v))` when the probe produced its own value, `Ok(None)` to record the latency.
async fn probe(check: &Check) -> Result<Option<f64>, String> {
    match check.kind.as_str() {
        "tcp" => {
            let target = check.target.as_str().ok_or("a tcp target is HOST:PORT")?;
            tokio::net::TcpStream::connect(target)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        "http" => http_get(check).await.map(|_| None),
        "command" => command(check).await,
        other => Err(format!("unknown check kind {other}")),
    }
}

async fn http_get(check: &Check) -> Result<(), String> {
    let url = check.target.as_str().ok_or("an http target is a URL")?;
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("{url} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: understudy\r\nConnection: close\r\n\r\n");
    let head = if tls {
        // The check measures availability; trust is the business of the service's clients.
        let config = crate::tls::insecure_client_config().map_err(|e| e.to_string())?;
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_head(&mut stream).await?
    } else {
        let mut stream = tcp;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_head(&mut stream).await?
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {}", head.lines().next().unwrap_or("")))?;
    if status == check.expect {
        Ok(())
    } else {
        Err(format!("status {status}, expected {}", check.expect))
    }
}

/// CK-4: one scrape of a `prometheus` check: its outcome (up with the scrape's latency, or
/// down with why) and, when up, every sample as a record at `time_ms` (the scrape's time).
pub async fn scrape_once(check: &Check, time_ms: i64) -> (Outcome, Vec<NewRecord>) {
    let started = Instant::now();
    let result = tokio::time::timeout(check.timeout, scrape_text(check)).await;
    let value = started.elapsed().as_secs_f64() * 1000.0;
    let down = |detail: String| Outcome {
        up: false,
        value,
        detail: format!("down: {detail}"),
    };
    let text = match result {
        Ok(Ok(text)) => text,
        Ok(Err(why)) => return (down(why), Vec::new()),
        Err(_) => {
            let after = crate::config::format_duration(check.timeout);
            return (down(format!("timeout after {after}")), Vec::new());
        }
    };
    match samples_of(&text, time_ms, check.pair.as_deref(), check.max_samples) {
        Ok((records, skipped)) => {
            let mut detail = format!("up: {} samples", records.len());
            if skipped > 0 {
                detail.push_str(&format!(", {skipped} NaN or infinite not recorded"));
            }
            let outcome = Outcome {
                up: true,
                value,
                detail,
            };
            (outcome, records)
        }
        Err(why) => (down(why), Vec::new()),
    }
}

/// The exposition at the check's URL: a GET with the bearer token, a 2xx, at most
/// [`SCRAPE_MAX_BYTES`] of UTF-8.
async fn scrape_text(check: &Check) -> Result<String, String> {
    use http_body_util::{BodyExt, Full, Limited};
    let url = check
        .target
        .as_str()
        .ok_or("a prometheus target is a URL")?;
    let (https, host, port, path) = understudy_api::channel::parse_http_url(url)?;
    let mut sender = crate::alerts::http1_connect(https, &host, port).await?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "understudy")
        .header(hyper::header::ACCEPT, "text/plain;version=0.0.4");
    if let Some(token) = &check.token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(hyper::body::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    let body = Limited::new(response.into_body(), SCRAPE_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| format!("the exposition is not read: {e} (at most {SCRAPE_MAX_BYTES} bytes)"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the exposition is not UTF-8".to_string())
}

/// CK-4: the samples of a text exposition as records named after each sample (a histogram's
/// `_bucket`, `_sum`, `_count` and a summary's `_sum`, `_count` as Prometheus names them), at
/// `time_ms`, with their labels (a label named like one of the record's own, `agent` or
/// `pair`, is kept as `exported_agent`, `exported_pair`); and how many NaN or infinite
/// values were left out (a record holds a finite number). An exposition that does not parse,
/// has more than `max` samples or a sample whose labels a record may not carry
/// (`understudy_api::check_labels`) gives the reason, and no record.
pub fn samples_of(
    text: &str,
    time_ms: i64,
    pair: Option<&str>,
    max: usize,
) -> Result<(Vec<NewRecord>, usize), String> {
    use prom_text_format_parser::{Type, ValueType};
    // Every sample is a line of its own: more lines than `max` are refused before the parser
    // builds them all (a million-line exposition would cost hundreds of MB to parse first).
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    if lines > max {
        return Err(format!(
            "{lines} samples, more than the {max} a scrape may hold (max_samples)"
        ));
    }
    let metrics = prom_text_format_parser::Scrape::parse(text)
        .map_err(|e| {
            let text = match e {
                prom_text_format_parser::ScrapeParseError::Parse(p) => p,
                prom_text_format_parser::ScrapeParseError::Collect(errors) => errors
                    .first()
                    .map(|m| format!("lines {:?}: {}", m.line_no, m.error))
                    .unwrap_or_default(),
            };
            let first: String = text.lines().take(3).collect::<Vec<_>>().join(" ");
            format!(
                "not a Prometheus exposition: {}",
                crate::logsafe::text(&first)
            )
        })?
        .metrics;
    let total: usize = metrics.iter().map(|m| m.samples.len()).sum();
    if total > max {
        return Err(format!(
            "{total} samples, more than the {max} a scrape may hold (max_samples)"
        ));
    }
    let mut records = Vec::with_capacity(total);
    let mut skipped = 0;
    for metric in &metrics {
        for sample in &metric.samples {
            let suffix = match (metric.kind, sample.value.value_type) {
                (Type::Histogram, ValueType::Sample) => "_bucket",
                (Type::Histogram | Type::Summary, ValueType::Sum) => "_sum",
                (Type::Histogram | Type::Summary, ValueType::Count) => "_count",
                _ => "",
            };
            let name = format!("{}{suffix}", metric.name);
            let value = sample.value.value.as_f64();
            if !value.is_finite() {
                skipped += 1;
                continue;
            }
            let labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|l| (exported(&l.key), unescape(&l.value)))
                .collect();
            understudy_api::check_labels(&labels)
                .map_err(|e| format!("sample {}: {e}", crate::logsafe::text(&name)))?;
            records.push(NewRecord {
                name,
                value,
                time_ms,
                pair: pair.map(String::from),
                kind: "metric".into(),
                detail: None,
                labels,
                // Set by the caller from the lease it holds (issue 12 item 3).
                pair_epoch: None,
            });
        }
    }
    Ok((records, skipped))
}

/// CK-4: a sample's label name as a record's label: one of a record's own (`agent`, `pair`,
/// `__name__`) is kept as `exported_agent`, `exported_pair`, `exported_name`.
pub fn exported(name: &str) -> String {
    if understudy_api::request::RESERVED_LABELS.contains(&name) {
        format!("exported_{}", name.trim_start_matches('_'))
    } else {
        name.to_string()
    }
}

/// A label value as the exposition escapes it (`\\`, `\"`, `\n`), unescaped.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Result<String, String> {
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

async fn command(check: &Check) -> Result<Option<f64>, String> {
    let argv = argv_of(&check.target);
    let Some((program, args)) = argv.split_first() else {
        return Err("a command target is an argv list".into());
    };
    let mut child = crate::procgroup::command(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    // Dropped with this future when the check times out: the whole group is killed.
    let mut group = crate::procgroup::GroupGuard::new(&child);
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        let n = stdout.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if out.len() < MAX_STDOUT {
            out.extend_from_slice(&chunk[..n.min(MAX_STDOUT - out.len())]);
        } else {
            truncated = true;
        }
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    group.disarm();
    if !status.success() {
        return Err(match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        });
    }
    let text = String::from_utf8_lossy(&out);
    let number = text
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    if truncated && number.is_none() {
        return Err(format!("stdout truncated at {MAX_STDOUT} bytes"));
    }
    Ok(number)
}

/// The checks this agent runs now: its own, and those of the pairs whose duty it holds.
pub(crate) struct Runner {
    running: BTreeMap<(String, Option<String>), (Check, JoinHandle<()>)>,
}

impl Runner {
    pub fn new() -> Runner {
        Runner {
            running: BTreeMap::new(),
        }
    }

    /// Starts and stops tasks so that exactly `wanted` run (CK-3: a pair check stops the moment
    /// its member stands down, and starts when it is activated).
    pub fn reconcile(&mut self, context: &CheckContext, wanted: Vec<Check>) {
        let keys: Vec<(String, Option<String>)> = wanted
            .iter()
            .map(|c| (c.name.clone(), c.pair.clone()))
            .collect();
        self.running.retain(|k, (c, task)| {
            let keep = keys.contains(k) && wanted.iter().any(|w| w == c);
            if !keep {
                task.abort();
            }
            keep
        });
        for check in wanted {
            let key = (check.name.clone(), check.pair.clone());
            if let std::collections::btree_map::Entry::Vacant(slot) = self.running.entry(key) {
                let task = tokio::spawn(run_forever(context.clone(), check.clone()));
                slot.insert((check, task));
            }
        }
    }

    pub fn stop_all(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.running) {
            task.abort();
        }
    }
}

/// A pair's duty as this agent holds it (CK-3): until when, under which pair counter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lease {
    pub until: Instant,
    pub epoch: u64,
}

/// What a check's task needs of its node: the agent's configuration (`agent.allow_commands`),
/// the leases of the pairs it holds (CK-3), where results go, and the core.
#[derive(Clone)]
pub(crate) struct CheckContext {
    config: Arc<Mutex<Config>>,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
    results: mpsc::UnboundedSender<Vec<NewRecord>>,
    core: CoreSender,
}

impl CheckContext {
    pub(crate) fn of(shared: &Shared) -> CheckContext {
        CheckContext {
            config: shared.config.clone(),
            leases: shared.leases.clone(),
            results: shared.check_results.clone(),
            core: shared.core.clone(),
        }
    }
}

async fn run_forever(context: CheckContext, check: Check) {
    let mut tick = tokio::time::interval(check.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let allow = context
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .agent
            .allow_commands
            .clone();
        if let Some(why) = refusal(&check, &allow) {
            // Told to the server once per check and reason (it raises CHECK_REFUSED).
            let _ = context.core.send(Input::CheckRefused {
                check: check.name.clone(),
                reason: why,
            });
        }
        let time_ms = now_ms();
        let (outcome, mut samples) = if check.kind == "prometheus" {
            scrape_once(&check, time_ms).await
        } else {
            (run_once(&check, &allow).await, Vec::new())
        };
        let mut pair_epoch = None;
        if let Some(pair) = &check.pair {
            let lease = context
                .leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(pair)
                .copied()
                .filter(|l| Instant::now() < l.until);
            let Some(lease) = lease else {
                // The duty moved (or the lease ran out while this process was frozen): this run
                // belongs to nobody and is not recorded.
                continue;
            };
            // Issue 12 item 3: the server takes them only from the holder of this counter.
            pair_epoch = Some(lease.epoch);
            for sample in &mut samples {
                sample.pair_epoch = pair_epoch;
            }
        }
        let record = NewRecord {
            name: check.name.clone(),
            value: outcome.value,
            time_ms,
            pair: check.pair.clone(),
            kind: "check".into(),
            detail: Some(json!({ "up": outcome.up, "detail": outcome.detail }).to_string()),
            labels: Default::default(),
            pair_epoch,
        };
        // CK-4: a scrape's samples and its result go to the cache in one commit.
        samples.push(record);
        if context.results.send(samples).is_err() {
            return;
        }
    }
}

/// Writes check results to the cache in batches, off the async workers: one durable commit
/// holds every result that arrived while the previous one was being written (AG-2 holds: a
/// result is in the cache before it is sent).
pub(crate) async fn write_results(
    store: Arc<Mutex<Store>>,
    core: CoreSender,
    failing: Arc<Mutex<Option<(i64, String)>>>,
    mut rx: mpsc::UnboundedReceiver<Vec<NewRecord>>,
) {
    let failed = |why: String| {
        tracing::error!("check results not written: {why}");
        let mut failing = failing.lock().unwrap_or_else(|p| p.into_inner());
        let since = failing.as_ref().map_or_else(now_ms, |(since, _)| *since);
        *failing = Some((since, why));
    };
    while let Some(mut batch) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        let store = store.clone();
        let appended = tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .cache_append(&batch)
        })
        .await;
        match appended {
            Ok(Ok(seqs)) => {
                *failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if let Some(last) = seqs.last() {
                    let _ = core.send(Input::Cached(*last));
                }
            }
            Ok(Err(e)) => failed(e.to_string()),
            // A panic while writing loses this batch (never acknowledged, so nothing a server
            // was promised), not every later one: ending here would stop every check for good.
            Err(e) if e.is_panic() => failed(e.to_string()),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    const EXPOSITION: &str = r#"# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.25
# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5",service="a,b=c"} 0.01
rpc_seconds{quantile="0.9",service="a,b=c"} NaN
rpc_seconds_sum{service="a,b=c"} 1.5
rpc_seconds_count{service="a,b=c"} 3
# TYPE http_duration histogram
http_duration_bucket{le="0.1"} 1
http_duration_bucket{le="+Inf"} 2
http_duration_sum 0.3
http_duration_count 2
up{agent="x",job="say \"hi\"\nthere"} 1
"#;

    #[test]
    fn ck4_every_sample_becomes_a_record_with_its_labels_at_the_scrape_time() {
        let (records, skipped) =
            samples_of(EXPOSITION, 1234, Some("web"), SCRAPE_MAX_SAMPLES).expect("parses");
        assert_eq!(skipped, 1, "the NaN quantile is not recorded");
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_load1",
                "rpc_seconds",
                "rpc_seconds_sum",
                "rpc_seconds_count",
                "http_duration_bucket",
                "http_duration_bucket",
                "http_duration_sum",
                "http_duration_count",
                "up"
            ]
        );
        assert!(records
            .iter()
            .all(|r| r.time_ms == 1234 && r.pair.as_deref() == Some("web") && r.kind == "metric"));
        assert_eq!(records[1].labels["quantile"], "0.5");
        assert_eq!(records[1].labels["service"], "a,b=c", "a comma in a value");
        assert_eq!(records[5].labels["le"], "+Inf");
        let up = &records[8];
        assert_eq!(
            up.labels["exported_agent"], "x",
            "agent is the record's own"
        );
        assert!(!up.labels.contains_key("agent"));
        assert_eq!(up.labels["job"], "say \"hi\"\nthere", "unescaped");
        assert_eq!(up.value, 1.0);
    }

    #[test]
    fn ck4_a_malformed_oversized_or_exploding_exposition_fails_with_the_reason_and_no_record() {
        let err = samples_of("node_load1 not-a-number\n", 1, None, 100).expect_err("bad value");
        assert!(err.starts_with("not a Prometheus exposition"), "{err}");
        let err = samples_of("{{{\n", 1, None, 100).expect_err("garbage");
        assert!(err.starts_with("not a Prometheus exposition"), "{err}");
        let many: String = (0..11).map(|i| format!("m{i} 1\n")).collect();
        let err = samples_of(&many, 1, None, 10).expect_err("too many");
        assert!(err.contains("11 samples, more than the 10"), "{err}");
        // Counted before the exposition is parsed: a million lines are not built first.
        let err = samples_of(&format!("{many}{{{{{{\n"), 1, None, 10).expect_err("too many");
        assert!(err.contains("12 samples, more than the 10"), "{err}");
        let commented = format!("# HELP m0 x\n# TYPE m0 gauge\n\n{many}");
        assert_eq!(
            samples_of(&commented, 1, None, 11).expect("fits").0.len(),
            11
        );
        assert_eq!(samples_of(&many, 1, None, 11).expect("fits").0.len(), 11);
        let long = format!(
            "m{{l=\"{}\"}} 1\n",
            "x".repeat(defaults::LABEL_VALUE_MAX + 1)
        );
        let err = samples_of(&long, 1, None, 10).expect_err("a value too long");
        assert!(err.contains("sample m: the value of label `l`"), "{err}");
        let labels: Vec<String> = (0..40).map(|i| format!("l{i}=\"v\"")).collect();
        let wide = format!("m{{{}}} 1\n", labels.join(","));
        let err = samples_of(&wide, 1, None, 10).expect_err("too many labels");
        assert!(err.contains("40 labels"), "{err}");
    }

    #[tokio::test]
    async fn ck4_a_scrape_sends_the_bearer_token_and_a_non_2xx_or_a_timeout_is_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let got = seen.clone();
        tokio::spawn(async move {
            for answer in ["200 OK", "401 Unauthorized", "hang"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                got.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if answer == "hang" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                let body = "m 1\n";
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {answer}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        let mut c = check("prometheus", json!(format!("http://{addr}/metrics")), 1000);
        c.token = Some("s3cret".into());
        let (outcome, records) = scrape_once(&c, 7).await;
        assert!(outcome.up, "{outcome:?}");
        assert_eq!(outcome.detail, "up: 1 samples");
        assert_eq!(records.len(), 1);
        assert!(seen.lock().unwrap()[0].contains("authorization: Bearer s3cret"));
        let (outcome, records) = scrape_once(&c, 8).await;
        assert_eq!(outcome.detail, "down: status 401");
        assert!(records.is_empty());
        let (outcome, _) = scrape_once(&c, 9).await;
        assert_eq!(outcome.detail, "down: timeout after 1s");
    }

    use super::*;

    fn check(kind: &str, target: Value, timeout_ms: u64) -> Check {
        Check {
            name: "c".into(),
            kind: kind.into(),
            target,
            every: Duration::from_secs(1),
            timeout: Duration::from_millis(timeout_ms),
            pair: None,
            expect: 200,
            token: None,
            max_samples: SCRAPE_MAX_SAMPLES,
        }
    }

    #[tokio::test]
    async fn ck1_tcp_up_and_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(run_once(&check("tcp", json!(addr), 2000), &[]).await.up);
        drop(listener);
        // Port 1 on loopback: nothing listens there (a freed port could be reused by a parallel test).
        let down = run_once(&check("tcp", json!("127.0.0.1:1"), 2000), &[]).await;
        assert!(!down.up);
        assert!(down.detail.starts_with("down: "), "{}", down.detail);
    }

    #[tokio::test]
    async fn ck1_http_expected_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let c = check("http", json!(format!("http://{addr}/health")), 2000);
        assert!(run_once(&c, &[]).await.up);
        let down = run_once(&c, &[]).await;
        assert_eq!(down.detail, "down: status 503, expected 200");
    }

    #[tokio::test]
    async fn ck1_command_value_exit_status_hang_and_flood() {
        let allow = vec!["/bin/sh -c *".to_string(), "/bin/sleep *".to_string()];
        let c = check("command", json!(["/bin/sh", "-c", "echo 42.5"]), 2000);
        assert_eq!(
            run_once(&c, &allow).await,
            Outcome {
                up: true,
                value: 42.5,
                detail: "up".into()
            }
        );
        let fail = run_once(
            &check("command", json!(["/bin/sh", "-c", "exit 2"]), 2000),
            &allow,
        )
        .await;
        assert_eq!(fail.detail, "down: exit status 2");
        let hang = run_once(&check("command", json!(["/bin/sleep", "30"]), 300), &allow).await;
        assert_eq!(hang.detail, "down: timeout after 300ms");
        let flood = run_once(
            &check(
                "command",
                json!(["/bin/sh", "-c", "yes x | head -c 1000000"]),
                5000,
            ),
            &allow,
        )
        .await;
        assert_eq!(
            flood.detail,
            format!("down: stdout truncated at {MAX_STDOUT} bytes")
        );
        let unknown = run_once(&check("smtp", json!("x"), 300), &[]).await;
        assert_eq!(unknown.detail, "down: unknown check kind smtp");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn ck1_a_hung_command_check_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let allow = vec!["/bin/sh -c *".to_string()];
        let hang = run_once(
            &check("command", json!(["/bin/sh", "-c", script]), 500),
            &allow,
        )
        .await;
        assert_eq!(hang.detail, "down: timeout after 500ms");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        let alive = crate::procgroup::alive;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive(pid), "the check's own child {pid} was killed too");
    }

    use crate::allowlist::ArgvPattern;

    /// SECURITY.md: command checks are off unless the agent's own configuration allows them.
    #[tokio::test]
    async fn command_checks_are_refused_unless_allow_commands_matches() {
        let sh = check("command", json!(["/bin/sh", "-c", "echo 1"]), 2000);
        let off = run_once(&sh, &[]).await;
        assert!(!off.up);
        assert_eq!(
            off.detail,
            "down: not allowed on this agent: command checks are off (agent.allow_commands is empty), refused `/bin/sh -c echo 1`"
        );
        let allow = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(run_once(&sh, &allow(&["/bin/sh -c *"])).await.up);
        assert!(
            run_once(&sh, &allow(&["/bin/*"])).await.up,
            "one word allows any arguments"
        );
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let plugins = allow(&["/usr/lib/nagios/plugins/*"]);
        assert!(
            command_allowed(&argv("/usr/lib/nagios/plugins/check_load -w 1"), &plugins).is_ok()
        );
        for refused in [
            "/usr/lib/nagios/plugins/../../../bin/sh -c id",
            "/usr/lib/nagios/plugins/sub/check_x",
            "/bin/sh -c id",
            "check_load",
        ] {
            let why = command_allowed(&argv(refused), &plugins).expect_err(refused);
            assert!(why.starts_with("not allowed on this agent: "), "{why}");
        }
        // More words: the arguments match one for one, and their number must be the same.
        let exact = allow(&["/bin/echo 7"]);
        assert!(command_allowed(&argv("/bin/echo 7"), &exact).is_ok());
        assert!(command_allowed(&argv("/bin/echo 7 8"), &exact).is_err());
        assert!(command_allowed(&argv("/bin/echo"), &exact).is_err());
        assert!(
            ArgvPattern::parse("sh -c *").is_err(),
            "a pattern names an absolute path"
        );
        // tcp and http checks are never refused.
        assert_eq!(refusal(&check("tcp", json!("127.0.0.1:1"), 100), &[]), None);
    }
}
