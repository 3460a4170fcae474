//! MX-2: forwarding every stored record to a Prometheus remote-write receiver (protocol 1.0:
//! protobuf messages from `prompb`, snappy block compression, HTTP POST).
//!
//! One task, given the store, the configuration, the event bell and whether this node acts.
//! Only while the node is the acting server it reads up to `forward.batch` records after the
//! durable cursor (`Store::forward_cursor`, a local record id), sends them as one request and
//! moves the cursor past them after a 2xx, or after a 4xx other than 429 (the batch is dropped
//! with FORWARD_REJECTED). Anything else (5xx, 429, a timeout, no connection) sends the same
//! batch again after [`retry_after`]. Nothing is queued in memory: a batch is read from the
//! store when it is sent, so memory stays bounded whatever the receiver does.
//!
//! The cursor is replicated to the STANDBY as a [`ForwardMark`] (the identity of the last
//! forwarded record, since ids are local to each store) in the peer poll's answer, so a promoted
//! STANDBY resumes from it; records forwarded since the last poll are sent again (a receiver
//! keeps one sample per series and time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use tokio::sync::{broadcast, watch};
use understudy_api::defaults::{FORWARD_RETRY_FIRST, FORWARD_RETRY_MAX};
use understudy_engine::{Event, EventCode};

use crate::config::{Config, ForwardConfig};
use crate::mailbox::{now_ms, store_event};
use crate::store::{Store, StoredRecord};

// ---- the remote-write 1.0 messages (prometheus/prompb/remote.proto, types.proto) ----

/// `prometheus.WriteRequest` (field 3, metadata, is not sent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples by time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A record's name as a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`): every other
/// character becomes `_`, and a name starting with a digit (or empty) gets a leading `_`.
pub fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// One sample per record, named after it, with the record's own labels (issue 18 item 3), then
/// `agent`, `pair` (a pair's record) and `extra` (each of these replaces a record label of the
/// same name); records of one series share a `TimeSeries`. Labels are sorted by name (bytes, as
/// the protocol asks: `__name__` comes before every lower-case name).
pub fn write_request(records: &[StoredRecord], extra: &BTreeMap<String, String>) -> WriteRequest {
    let mut series: BTreeMap<Vec<Label>, Vec<Sample>> = BTreeMap::new();
    for r in records {
        let mut names: BTreeMap<&str, &str> = r
            .record
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let metric = metric_name(&r.record.name);
        names.insert("__name__", &metric);
        names.insert("agent", &r.agent_name);
        if let Some(pair) = &r.record.pair {
            names.insert("pair", pair);
        }
        names.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // A BTreeMap of &str iterates in byte order, the order the protocol asks for.
        let labels = names
            .into_iter()
            .map(|(name, value)| Label {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        series.entry(labels).or_default().push(Sample {
            value: r.record.value,
            timestamp: r.record.time_ms,
        });
    }
    WriteRequest {
        timeseries: series
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.timestamp);
                TimeSeries { labels, samples }
            })
            .collect(),
    }
}

/// The request body: the protobuf encoding, snappy block-compressed.
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    use prost::Message;
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        // Only an input beyond snappy's 4 GiB block limit fails; a batch is far below it.
        .unwrap_or_default()
}

/// What a receiver gets, read back: snappy, then protobuf.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    use prost::Message;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("not snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("not a WriteRequest: {e}"))
}

/// How long to wait before sending a batch again after `failures` failed attempts in a row
/// (1 or more): 1 s, doubling, at most 1 min.
pub fn retry_after(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (FORWARD_RETRY_FIRST * (1u32 << shift)).min(FORWARD_RETRY_MAX)
}

/// What to do with a batch after the receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the cursor moves past the batch.
    Accepted,
    /// 4xx other than 429: the batch is dropped (FORWARD_REJECTED) and the cursor moves past it.
    Rejected { status: u16, body: String },
    /// Anything else (5xx, 429, no answer): the same batch is sent again after a while.
    Retry(String),
}

/// Decides from a status and the answer's body.
pub fn outcome(status: u16, body: &str) -> Outcome {
    let line = crate::logsafe::text(body.lines().next().unwrap_or("").trim()).to_string();
    match status {
        200..=299 => Outcome::Accepted,
        429 => Outcome::Retry(format!("HTTP 429 (too many requests): {line}")),
        400..=499 => Outcome::Rejected { status, body: line },
        _ => Outcome::Retry(format!("HTTP {status}: {line}")),
    }
}

// ---- the HTTP client ----

/// The most of a receiver's answer that is read (only its first line is kept).
const MAX_ANSWER: usize = 64 * 1024;

/// A keep-alive HTTP/1.1 connection to the receiver, made again when it breaks.
struct Client {
    url: String,
    https: bool,
    host: String,
    port: u16,
    path: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(url: &str) -> Result<Client, String> {
        let (https, host, port, path) = understudy_api::channel::parse_http_url(url)?;
        Ok(Client {
            url: url.to_string(),
            https,
            host,
            port,
            path,
            sender: None,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
        crate::alerts::http1_connect(self.https, &self.host, self.port).await
    }

    /// POSTs one body; answers the status and the body's text.
    async fn post(&mut self, body: Bytes, token: &str) -> Result<(u16, String), String> {
        // A kept connection the receiver closed meanwhile fails before any answer: one more
        // try on a new connection.
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        match self.post_once(body.clone(), token).await {
            Err(_) if reused => {
                self.sender = None;
                self.post_once(body, token).await
            }
            other => other,
        }
    }

    async fn post_once(&mut self, body: Bytes, token: &str) -> Result<(u16, String), String> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let mut request = hyper::Request::builder()
            .method("POST")
            .uri(&self.path)
            .header(hyper::header::HOST, self.authority())
            .header(hyper::header::USER_AGENT, "understudy")
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(hyper::header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if !token.is_empty() {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("{}: {e}", self.url))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = response.status().as_u16();
        let text = match Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            // The status is what counts; a long or broken body only loses its text, and the
            // connection (which may be mid-body) is not kept.
            Err(e) => {
                return Ok((status, format!("(answer not read: {e})")));
            }
        };
        self.sender = Some(sender);
        Ok((status, text))
    }
}

// ---- progress, for `status` and `/metrics` ----

/// What the forwarder last measured lives with the node's shared state (`Shared::forward`).
use crate::mailbox::ForwardProgress as Progress;

// ---- the task ----

/// How often the lag is measured (a count over the records after the cursor).
const MEASURE_EVERY: Duration = Duration::from_secs(1);
/// How long the forwarder waits when it has sent everything.
const IDLE: Duration = Duration::from_millis(200);

/// What the forwarder needs of its node.
pub(crate) struct Forwarder {
    pub store: Arc<Mutex<Store>>,
    pub config: Arc<Mutex<Config>>,
    pub events: broadcast::Sender<u64>,
    /// Whether this node is the acting server (ACTIVE, or `failover.mode = off`).
    pub acting: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
    pub progress: Arc<Progress>,
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

impl Forwarder {
    fn forward_config(&self) -> ForwardConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forward
            .clone()
    }

    /// Sleeps `d`, or less when the node stops or starts or stops acting.
    async fn wait(&mut self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.acting.changed() => {}
            _ = self.shutdown.changed() => {}
        }
    }

    fn measure(&self, forwarding: bool) {
        let (cursor, lag) = {
            let store = lock(&self.store);
            let cursor = store.forward_cursor().unwrap_or(0);
            (cursor, store.forward_lag(cursor))
        };
        let mut p = self.progress.lock();
        p.cursor = cursor;
        p.forwarding = forwarding;
        match lag {
            Ok((records, first)) => {
                p.lag_records = records;
                p.lag_seconds = first.map_or(0.0, |t| ((now_ms() - t).max(0) as f64) / 1000.0);
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// FORWARD_REJECTED, an event that alerts like the others (the forwarder runs only on the
    /// acting server).
    fn rejected(&self, url: &str, batch: &[StoredRecord], status: u16, body: &str) {
        let (first, last) = (
            batch.first().map_or(0, |r| r.rowid),
            batch.last().map_or(0, |r| r.rowid),
        );
        let sentence = format!(
            "the remote-write receiver {url} refused {} records (store ids {first}–{last}) with \
             HTTP {status}; they were dropped and forwarding goes on: {body}",
            batch.len()
        );
        let event = Event::new(EventCode::ForwardRejected, url, sentence);
        store_event(&self.store, &self.events, &event, true);
    }
}

pub(crate) async fn run(mut f: Forwarder) {
    let mut client: Option<Client> = None;
    let mut failures: u32 = 0;
    let mut measured: Option<Instant> = None;
    loop {
        if *f.shutdown.borrow() {
            return;
        }
        let config = f.forward_config();
        let forwarding = *f.acting.borrow() && !config.remote_write.is_empty();
        if measured.is_none_or(|t| t.elapsed() >= MEASURE_EVERY) {
            f.measure(forwarding);
            measured = Some(Instant::now());
        }
        if !forwarding {
            client = None;
            failures = 0;
            f.wait(MEASURE_EVERY).await;
            continue;
        }
        if client.as_ref().is_none_or(|c| c.url != config.remote_write) {
            match Client::new(&config.remote_write) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    f.progress.lock().error = Some(e);
                    f.wait(FORWARD_RETRY_MAX).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let batch = {
            let store = lock(&f.store);
            store
                .forward_cursor()
                .and_then(|cursor| store.records_since(cursor, config.batch))
        };
        let batch = match batch {
            Ok(b) if b.is_empty() => {
                f.wait(IDLE).await;
                continue;
            }
            Ok(b) => b,
            Err(e) => {
                tracing::error!("reading records to forward: {e}");
                f.wait(MEASURE_EVERY).await;
                continue;
            }
        };
        let body = Bytes::from(encode(&write_request(&batch, &config.labels)));
        let answer = tokio::time::timeout(config.timeout, c.post(body, &config.bearer_token))
            .await
            .unwrap_or_else(|_| {
                // The connection may be mid-request: it is not kept.
                c.sender = None;
                Err(format!(
                    "{}: no answer within {}",
                    config.remote_write,
                    understudy_api::duration::format(config.timeout)
                ))
            });
        let outcome = match answer {
            Ok((status, body)) => outcome(status, &body),
            Err(why) => Outcome::Retry(why),
        };
        let last = batch.last().map_or(0, |r| r.rowid);
        match outcome {
            Outcome::Accepted | Outcome::Rejected { .. } => {
                if let Outcome::Rejected { status, body } = &outcome {
                    f.rejected(&config.remote_write, &batch, *status, body);
                }
                let saved = lock(&f.store).forward_advance(last);
                if let Err(e) = saved {
                    // Not moved: the batch goes again (a duplicate the receiver keeps once).
                    tracing::error!("saving the forwarding cursor: {e}");
                    f.wait(MEASURE_EVERY).await;
                }
                if failures > 0 {
                    tracing::info!(
                        "remote-write receiver {} takes records again",
                        crate::logsafe::text(&config.remote_write)
                    );
                }
                failures = 0;
                f.progress.lock().error = None;
            }
            Outcome::Retry(why) => {
                failures += 1;
                let pause = retry_after(failures);
                if failures == 1 {
                    tracing::warn!(
                        "forwarding {} records failed, retried with backoff: {}",
                        batch.len(),
                        crate::logsafe::text(&why)
                    );
                }
                f.progress.lock().error = Some(why);
                f.wait(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Record;

    fn stored(
        rowid: u64,
        name: &str,
        value: f64,
        time_ms: i64,
        pair: Option<&str>,
    ) -> StoredRecord {
        StoredRecord {
            rowid,
            agent_id: "id-1".into(),
            agent_name: "web-1".into(),
            record: Record {
                seq: rowid,
                name: name.into(),
                value,
                time_ms,
                pair: pair.map(String::from),
                kind: "metric".into(),
                detail: None,
                labels: Default::default(),
                pair_epoch: None,
            },
            taken_for: None,
        }
    }

    #[test]
    fn ck4_a_records_labels_are_forwarded_with_agent_and_pair_which_win() {
        let mut a = stored(1, "node_load1", 0.5, 1_000, Some("web"));
        a.record.labels = BTreeMap::from([
            ("instance".to_string(), "h1:9100".to_string()),
            ("agent".to_string(), "spoofed".to_string()),
        ]);
        let mut b = a.clone();
        b.record.seq = 2;
        b.record.time_ms = 2_000;
        let mut c = stored(3, "node_load1", 0.9, 1_000, Some("web"));
        c.record.labels = BTreeMap::from([("instance".to_string(), "h2:9100".to_string())]);
        let extra = BTreeMap::from([("site".to_string(), "paris".to_string())]);
        let request = write_request(&[a, b, c], &extra);
        assert_eq!(request.timeseries.len(), 2, "one series per label set");
        let labels: Vec<(&str, &str)> = request.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("__name__", "node_load1"),
                ("agent", "web-1"),
                ("instance", "h1:9100"),
                ("pair", "web"),
                ("site", "paris"),
            ]
        );
        assert_eq!(request.timeseries[0].samples.len(), 2);
        assert_eq!(request.timeseries[1].labels[2].value, "h2:9100");
    }

    #[test]
    fn mx2_record_names_become_valid_metric_names() {
        assert_eq!(metric_name("cpu.load-1m"), "cpu_load_1m");
        assert_eq!(metric_name("http:latency_ms"), "http:latency_ms");
        assert_eq!(metric_name("5xx rate"), "_5xx_rate");
        assert_eq!(metric_name(""), "_");
        assert_eq!(metric_name("température"), "temp_rature");
        for name in ["a", "cpu.load", "9", "ü", "a b/c", "::x"] {
            let m = metric_name(name);
            let mut chars = m.chars();
            let first = chars.next().expect("not empty");
            assert!(
                first.is_ascii_alphabetic() || first == '_' || first == ':',
                "{m}"
            );
            assert!(
                chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{m}"
            );
        }
    }

    #[test]
    fn mx2_a_batch_encodes_and_decodes_back_with_sorted_labels_per_series() {
        let mut extra = BTreeMap::new();
        extra.insert("site".to_string(), "paris".to_string());
        extra.insert("Zone".to_string(), "b".to_string());
        let batch = vec![
            stored(1, "cpu.load", 0.5, 2_000, None),
            stored(2, "db-ping", 1.0, 1_000, Some("db")),
            stored(3, "cpu.load", 0.7, 1_500, None),
        ];
        let request = write_request(&batch, &extra);
        let body = encode(&request);
        // Snappy block format, not the framed one (which starts with a stream identifier).
        assert_ne!(body.first(), Some(&0xff));
        let back = decode(&body).expect("decodes");
        assert_eq!(back, request);
        assert_eq!(back.timeseries.len(), 2);
        let cpu = &back.timeseries[0];
        let names: Vec<&str> = cpu.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Zone", "__name__", "agent", "site"]);
        assert_eq!(cpu.labels[1].value, "cpu_load");
        assert_eq!(cpu.labels[2].value, "web-1");
        let times: Vec<i64> = cpu.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, [1_500, 2_000], "samples in time order");
        let db = &back.timeseries[1];
        let pair = db
            .labels
            .iter()
            .find(|l| l.name == "pair")
            .expect("pair label");
        assert_eq!(pair.value, "db");
        assert_eq!(
            db.samples,
            [Sample {
                value: 1.0,
                timestamp: 1_000
            }]
        );
        assert!(decode(b"not snappy at all").is_err());
    }

    #[test]
    fn mx2_retries_back_off_from_one_second_doubling_to_one_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(u32::MAX), FORWARD_RETRY_MAX);
    }

    #[test]
    fn mx2_a_2xx_advances_a_4xx_drops_and_5xx_429_are_retried() {
        assert_eq!(outcome(204, ""), Outcome::Accepted);
        assert_eq!(
            outcome(400, "out of order sample\nmore"),
            Outcome::Rejected {
                status: 400,
                body: "out of order sample".into()
            }
        );
        assert!(matches!(outcome(429, "slow down"), Outcome::Retry(_)));
        assert!(matches!(outcome(503, ""), Outcome::Retry(_)));
        assert!(matches!(outcome(302, ""), Outcome::Retry(_)));
    }
}
