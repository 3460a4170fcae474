//! The Prometheus side of a site (CK-4, MX-2): a real `prometheus-node-exporter` to scrape, a
//! real VictoriaMetrics to forward to (both Debian packages, started on loopback ports and
//! killed by their pids), and what a test compares between them and a server's store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{wait_ok, wait_until, Node, RecordView, Site, WAIT};

/// A real `prometheus-node-exporter` (Debian) on a loopback port of the site, with a few
/// collectors (load, memory, time, and its own Go and process metrics: gauges, counters and
/// summaries); killed by its pid when dropped.
pub struct NodeExporter {
    pub addr: String,
    child: Child,
}

impl NodeExporter {
    pub fn start(site: &Site) -> NodeExporter {
        let addr = site.addr();
        let child = Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address={addr}"))
            .args([
                "--collector.disable-defaults",
                "--collector.loadavg",
                "--collector.meminfo",
                "--collector.time",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus-node-exporter (apt-get install prometheus-node-exporter)");
        wait_until(WAIT, "node_exporter to listen", || {
            std::net::TcpStream::connect(&addr).ok()
        });
        NodeExporter { addr, child }
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample: metric name, labels (sorted, `__name__` left out), time, value bits.
pub type SampleKey = (String, Vec<(String, String)>, i64, u64);

/// A VictoriaMetrics process on a loopback port, killed (by its pid) when dropped. Dedup at
/// 1 ms keeps one sample per series and millisecond: "distinct samples".
pub struct Vm {
    pub addr: String,
    data: PathBuf,
    child: Option<Child>,
}

impl Vm {
    pub fn start(site: &Site) -> Vm {
        let mut vm = Vm {
            addr: site.addr(),
            data: site.dir().join("victoria-metrics"),
            child: None,
        };
        vm.spawn();
        vm
    }

    /// Starts it (again) on its address and data directory.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "VictoriaMetrics runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .expect("the VictoriaMetrics log");
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr={}", self.addr))
            .arg(format!("-storageDataPath={}", self.data.display()))
            .args([
                "-retentionPeriod=100y",
                "-dedup.minScrapeInterval=1ms",
                "-search.disableCache",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting victoria-metrics (apt-get install victoria-metrics)");
        self.child = Some(child);
        wait_until(WAIT, "VictoriaMetrics to answer", || {
            self.get("/health").filter(|b| b.trim() == "OK")
        });
    }

    /// SIGTERM and wait: VictoriaMetrics writes what it holds in memory to disk first (a
    /// SIGKILL would lose the last seconds it took, which is not what these tests are about).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// A GET on loopback; the body of a 200.
    fn get(&self, path: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
    }

    /// Every sample it holds, after a flush of what it buffers.
    pub fn samples(&self) -> Option<BTreeSet<SampleKey>> {
        self.samples_of("%7B__name__!=%22%22%7D")
    }

    /// The samples of the series `selector` (URL-encoded) matches, after a flush.
    pub fn samples_of(&self, selector: &str) -> Option<BTreeSet<SampleKey>> {
        self.get("/internal/force_flush")?;
        let body = self.get(&format!("/api/v1/export?match[]={selector}"))?;
        let mut out = BTreeSet::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let series: Value = serde_json::from_str(line).ok()?;
            let metric = series["metric"].as_object()?;
            let name = metric.get("__name__")?.as_str()?.to_string();
            let mut labels: Vec<(String, String)> = metric
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            labels.sort();
            let values = series["values"].as_array()?;
            let times = series["timestamps"].as_array()?;
            for (v, t) in values.iter().zip(times) {
                out.insert((
                    name.clone(),
                    labels.clone(),
                    t.as_i64()?,
                    v.as_f64()?.to_bits(),
                ));
            }
        }
        Some(out)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The samples `server`'s stored records (after `after_seq`) must become in the receiver
/// (`extra`: `forward.labels`); two records that are one sample (same series and time) fail.
pub fn expected(server: &Node, extra: &[(&str, &str)], after_seq: u64) -> BTreeSet<SampleKey> {
    let records = server.records().expect("records --json");
    let mut out = BTreeSet::new();
    let mut series_times = BTreeSet::new();
    for r in records.iter().filter(|r| r.seq > after_seq) {
        let mut labels: Vec<(String, String)> = r.labels.clone().into_iter().collect();
        labels.push(("agent".to_string(), r.agent.clone()));
        if let Some(pair) = &r.pair {
            labels.push(("pair".to_string(), pair.clone()));
        }
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels.sort();
        let name = understudy_node::forward::metric_name(&r.name);
        let new = series_times.insert((name.clone(), labels.clone(), r.time_ms));
        assert!(
            new,
            "two records are one sample (same series and time): {r:?}"
        );
        out.insert((name, labels, r.time_ms, r.value.to_bits()));
    }
    out
}

/// Waits until the receiver holds exactly the samples of `server`'s records (after
/// `after_seq`); how many.
pub fn wait_forwarded(
    vm: &Vm,
    server: &Node,
    extra: &[(&str, &str)],
    after_seq: u64,
    within: Duration,
) -> usize {
    wait_ok(
        within,
        "the receiver to hold every record as a sample",
        || {
            let want = expected(server, extra, after_seq);
            let got = vm.samples().ok_or("no export")?;
            if got == want {
                return Ok(want.len());
            }
            let missing = want.difference(&got).count();
            let extra = got.difference(&want).take(3).collect::<Vec<_>>();
            Err(format!(
                "{} records, {} samples; {missing} missing; not records: {extra:?}",
                want.len(),
                got.len()
            ))
        },
    )
}

/// One run of a `prometheus` check as a server stored it: its check record's time, member and
/// result, and the samples stored with it.
#[derive(Debug)]
pub struct Scrape {
    pub time_ms: i64,
    pub agent: String,
    pub up: bool,
    pub samples: Vec<RecordView>,
}

/// What a server holds of a pair's `prometheus` check, read from its records and checked whole
/// (CK-4: a scrape's samples and its check record are one commit).
pub struct Scrapes {
    /// In time order.
    pub runs: Vec<Scrape>,
    /// Samples over all runs.
    pub samples: usize,
}

impl Scrapes {
    /// Reads and checks the runs of check `check` of pair `pair` in `records`: every up run has
    /// exactly the samples its check record counts (`up: N samples`), all by its member, each
    /// series once; a down run has none; no sample is without its run; no run time is
    /// recorded twice.
    pub fn of(records: &[RecordView], check: &str, pair: &str) -> Scrapes {
        let mut by_time: BTreeMap<i64, Vec<RecordView>> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.kind == "metric" && r.pair.as_deref() == Some(pair))
        {
            by_time.entry(r.time_ms).or_default().push(r.clone());
        }
        let mut runs = Vec::new();
        let mut samples = 0;
        let mut times = BTreeSet::new();
        for run in records
            .iter()
            .filter(|r| r.name == check && r.pair.as_deref() == Some(pair))
        {
            assert!(times.insert(run.time_ms), "a run recorded twice: {run:?}");
            let detail: Value = serde_json::from_str(run.detail.as_deref().unwrap_or("{}"))
                .expect("a check record's detail");
            let up = detail["up"] == true;
            let got = by_time.remove(&run.time_ms).unwrap_or_default();
            if up {
                let said: usize = detail["detail"]
                    .as_str()
                    .and_then(|d| d.strip_prefix("up: "))
                    .and_then(|d| d.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .expect("up: N samples");
                assert_eq!(got.len(), said, "the run at {} is not whole", run.time_ms);
                assert!(
                    got.iter().all(|r| r.agent == run.agent),
                    "one member per run"
                );
                let series: BTreeSet<(&str, Vec<(&String, &String)>)> = got
                    .iter()
                    .map(|r| (r.name.as_str(), r.labels.iter().collect()))
                    .collect();
                assert_eq!(series.len(), got.len(), "each series once per run");
            } else {
                assert!(got.is_empty(), "a failed run with samples: {detail}");
            }
            samples += got.len();
            runs.push(Scrape {
                time_ms: run.time_ms,
                agent: run.agent.clone(),
                up,
                samples: got,
            });
        }
        assert!(
            by_time.is_empty(),
            "samples without their run's check record: {:?}",
            by_time.keys()
        );
        runs.sort_by_key(|r| r.time_ms);
        Scrapes { runs, samples }
    }

    /// Runs after `since` (a wall-clock time in ms).
    pub fn after(&self, since: i64) -> impl Iterator<Item = &Scrape> {
        self.runs.iter().filter(move |r| r.time_ms > since)
    }

    /// The longest time between two consecutive runs after `since`.
    pub fn longest_gap(&self, since: i64) -> i64 {
        let runs: Vec<_> = self.after(since).collect();
        runs.windows(2)
            .map(|w| w[1].time_ms - w[0].time_ms)
            .max()
            .unwrap_or(0)
    }

    /// The members in the order they held the duty.
    pub fn holders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for run in &self.runs {
            if out.last() != Some(&run.agent) {
                out.push(run.agent.clone());
            }
        }
        out
    }
}
