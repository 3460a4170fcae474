//! Issue 6: a randomized fault schedule over a real site (PRODUCT.md §5 "zero records lost or
//! duplicated across hundreds of randomized faults").
//!
//! The site: two servers in hot standby whose peer links go through relays (so the test can
//! partition them, and delay them), a pair of agents (`web`: p primary, q secondary,
//! `--failover-after 1s`, switchback auto after 2 s) and one more agent, all with sub-second
//! settings. Senders keep records flowing into every agent while a seeded RNG picks faults:
//! SIGKILL (and later restart) of any node, SIGSTOP (and later SIGCONT) of any node, cutting
//! (and later healing) the server–server relays. Background samplers read `status --json` of
//! every node every ~200 ms and record who claims to be ACTIVE at which epoch, and which member
//! is active per pair epoch.
//!
//! Two topologies: `Loopback` (every node on a 127.0.N.x address) and `Netns` (every node in its
//! own network namespace on a private bridge, `netlab`), where the RNG also picks: link down (a
//! node's veth on the bridge), one-way loss (nftables `numgen random` on a node's ingress or
//! egress, 10–70 %), and delay with jitter on the servers' link (the relays hold each chunk
//! d ± j, keeping byte order).
//!
//! Afterwards everything is healed and restarted, the site must converge (s1 ACTIVE since
//! failback is auto, s2 STANDBY, every agent on s1 with an empty cache, the pair on its primary),
//! and the checker counts every record sent against every record stored, per home store: s1 (the
//! acting server) and s2 (its peer, a3's home) must each hold every record exactly once (AG-2).
//!
//! Replay: `UNDERSTUDY_FAULT_SEED=<seed>`; number of faults: `UNDERSTUDY_FAULTS=<n>` (quick
//! profiles 8 and 10, in CI). The long profiles, on demand: `cargo test -p
//! understudy-system-tests --test faults randomized_faults_long -- --ignored` (or
//! `randomized_faults_netns_long`; 200 faults unless `UNDERSTUDY_FAULTS` says otherwise).
//! Also here: 30 % loss on a server's link in a namespace (no switchover, nothing lost).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use understudy_system_tests::*;

const CONVERGE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// A small seeded RNG (splitmix64): the same seed gives the same schedule.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn seed() -> u64 {
    if let Ok(s) = std::env::var("UNDERSTUDY_FAULT_SEED") {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        return parsed.unwrap_or_else(|_| panic!("UNDERSTUDY_FAULT_SEED={s} is not a number"));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

fn fault_count(default: usize) -> usize {
    std::env::var("UNDERSTUDY_FAULTS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// Prints the seed and the schedule when the test fails (also on panic), so it can be replayed.
struct Report {
    seed: u64,
    faults: usize,
    schedule: Arc<Mutex<Vec<String>>>,
}

impl Report {
    fn log(&self, start: Instant, line: String) {
        let line = format!("t={:>7.2}s {line}", start.elapsed().as_secs_f64());
        eprintln!("[faults] {line}");
        self.schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!(
                "==== FAULT SUITE FAILED: replay with UNDERSTUDY_FAULT_SEED={} UNDERSTUDY_FAULTS={} ====\n{}",
                self.seed,
                self.faults,
                schedule.join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Invariant observations from `status --json` samples.

/// When a claim was seen: first and last sample time (seconds since the samplers started) and
/// whether the server link was cut at any of those samples.
#[derive(Clone, Copy, Debug)]
struct Seen {
    first: f64,
    last: f64,
    partitioned: bool,
}

impl Seen {
    fn at(entry: Option<Seen>, t: f64, partitioned: bool) -> Seen {
        match entry {
            Some(s) => Seen {
                first: s.first,
                last: t,
                partitioned: s.partitioned || partitioned,
            },
            None => Seen {
                first: t,
                last: t,
                partitioned,
            },
        }
    }
}

fn describe(claims: &BTreeMap<String, Seen>) -> String {
    let parts: Vec<String> = claims
        .iter()
        .map(|(who, s)| {
            format!(
                "{who} {:.1}–{:.1}s{}",
                s.first,
                s.last,
                if s.partitioned { " (partitioned)" } else { "" }
            )
        })
        .collect();
    let spans: Vec<&Seen> = claims.values().collect();
    let overlap = spans.iter().enumerate().any(|(i, a)| {
        spans[i + 1..]
            .iter()
            .any(|b| a.first <= b.last && b.first <= a.last)
    });
    format!(
        "{}; {}",
        parts.join(", "),
        if overlap {
            "OVERLAPPING in time"
        } else {
            "not overlapping in time"
        }
    )
}

#[derive(Default)]
struct Observed {
    samples: u64,
    /// server epoch → servers seen ACTIVE at it.
    server_active: BTreeMap<u64, BTreeMap<String, Seen>>,
    /// (pair, server epoch, pair epoch) → active members reported by a server that was ACTIVE at
    /// that moment (`member@server`).
    pair_active: BTreeMap<(String, u64, u64), BTreeMap<String, Seen>>,
    /// (pair, server epoch, pair epoch) → agents that believed they held the duty under it
    /// (`members[].server_epoch` and `.epoch` of their status: the full fenced epoch).
    member_active: BTreeMap<(String, u64, u64), BTreeMap<String, Seen>>,
}

impl Observed {
    fn record(&mut self, node: &str, status: &Status, t: f64, partitioned: bool) {
        self.samples += 1;
        let failover = &status.node.failover;
        if failover.state == "active" {
            let epoch = failover.epoch;
            let m = self.server_active.entry(epoch).or_default();
            m.insert(
                node.to_string(),
                Seen::at(m.get(node).copied(), t, partitioned),
            );
            for pair in &status.pairs {
                let (name, pepoch, active) = (pair.name.as_str(), pair.epoch, pair.active.as_str());
                if active != "none" {
                    // The pair epoch is fenced by the issuing server's epoch (engine::PairEpoch):
                    // the full epoch is (server epoch, pair epoch).
                    let key = format!("{active}@{node}");
                    let m = self
                        .pair_active
                        .entry((name.to_string(), epoch, pepoch))
                        .or_default();
                    m.insert(key.clone(), Seen::at(m.get(&key).copied(), t, partitioned));
                }
            }
        }
        for member in &status.members {
            if member.active {
                let (pair, epoch) = (member.pair.as_str(), member.epoch);
                let server_epoch = member.server_epoch;
                let m = self
                    .member_active
                    .entry((pair.to_string(), server_epoch, epoch))
                    .or_default();
                m.insert(
                    node.to_string(),
                    Seen::at(m.get(node).copied(), t, partitioned),
                );
            }
        }
    }

    /// (violations, notes). A violation: two ACTIVE servers at one epoch; an ACTIVE server
    /// reporting two active members for one full pair epoch; two agents active under the same
    /// full pair epoch at overlapping times while no network fault was in force. A note: the
    /// same otherwise (a sampler sees an agent only now and then, so a span from its first to
    /// its last active sample may cover a time when it had stood down, cut off).
    fn violations(&self) -> (Vec<String>, Vec<String>) {
        let (mut v, mut notes) = (Vec::new(), Vec::new());
        for (epoch, servers) in &self.server_active {
            if servers.len() > 1 {
                v.push(format!(
                    "two ACTIVE servers at epoch {epoch}: {}",
                    describe(servers)
                ));
            }
        }
        for ((pair, server_epoch, epoch), seen) in &self.pair_active {
            let members: BTreeSet<&str> = seen
                .keys()
                .map(|s| s.split('@').next().unwrap_or(""))
                .collect();
            if members.len() > 1 {
                v.push(format!(
                    "pair {pair} epoch ({server_epoch}, {epoch}): two active members reported: {}",
                    describe(seen)
                ));
            }
        }
        for ((pair, server_epoch, epoch), agents) in &self.member_active {
            if agents.len() > 1 {
                let spans: Vec<&Seen> = agents.values().collect();
                let clash = spans.iter().enumerate().any(|(i, a)| {
                    spans[i + 1..].iter().any(|b| {
                        a.first <= b.last && b.first <= a.last && !a.partitioned && !b.partitioned
                    })
                });
                let line = format!("pair {pair} epoch ({server_epoch}, {epoch}): several agents believed they were active: {}", describe(agents));
                if clash {
                    v.push(line);
                } else {
                    notes.push(line);
                }
            }
        }
        (v, notes)
    }
}

/// One thread per node polling `status --json` every ~200 ms (a frozen node blocks only its own
/// thread, for the CLI's timeout). `partitioned` tells them whether the server link is cut.
struct Samplers {
    stop: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Samplers {
    fn start(nodes: &[&Node], partitioned: Arc<AtomicBool>, t0: Instant) -> Samplers {
        let stop = Arc::new(AtomicBool::new(false));
        let observed = Arc::new(Mutex::new(Observed::default()));
        let threads = nodes
            .iter()
            .map(|n| {
                let (name, dir) = (n.name.clone(), n.dir.display().to_string());
                let (stop, observed, partitioned) =
                    (stop.clone(), observed.clone(), partitioned.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let cut_before = partitioned.load(Ordering::Relaxed);
                        let out = run_understudy(
                            &["--data-dir", &dir, "status", "--json"],
                            Duration::from_secs(5),
                        );
                        let cut = cut_before || partitioned.load(Ordering::Relaxed);
                        if let Some(status) = out
                            .filter(|o| o.status.success())
                            .and_then(|o| serde_json::from_slice::<Status>(&o.stdout).ok())
                        {
                            let t = t0.elapsed().as_secs_f64();
                            observed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .record(&name, &status, t, cut);
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                })
            })
            .collect();
        Samplers {
            stop,
            observed,
            threads,
        }
    }

    fn finish(mut self) -> (u64, (Vec<String>, Vec<String>)) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        (o.samples, o.violations())
    }
}

impl Drop for Samplers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Counting records: lost and duplicated, per agent.

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    sent: u64,
    stored: u64,
    lost: u64,
    duplicated: u64,
    unexpected: u64,
}

fn count_records(store: &Node, expected: &[(&str, u64)]) -> Option<Count> {
    let records = store.records()?;
    let mut seen: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for r in &records {
        let (agent, seq) = (r.agent.as_str(), r.seq);
        *seen.entry(agent).or_default().entry(seq).or_default() += 1;
    }
    let mut c = Count {
        stored: records.len() as u64,
        ..Count::default()
    };
    for (agent, n) in expected {
        c.sent += n;
        let have = seen.remove(agent).unwrap_or_default();
        c.lost += (1..=*n).filter(|s| !have.contains_key(s)).count() as u64;
        c.duplicated += have.values().map(|k| k - 1).sum::<u64>();
        c.unexpected += have.keys().filter(|s| **s == 0 || **s > *n).count() as u64;
    }
    c.unexpected += seen.values().map(|m| m.len() as u64).sum::<u64>();
    Some(c)
}

// ---------------------------------------------------------------------------------------------
// The site and the schedule.

fn agent_sets() -> Vec<&'static str> {
    let mut v = vec!["agent.enroll_token=tok-0123456789abcdef"];
    v.extend_from_slice(FAST_AGENT);
    v
}

fn server_sets() -> Vec<&'static str> {
    let mut v = vec![
        "server.enroll_token=tok-0123456789abcdef",
        "failover.failback=auto",
        "failover.hold_down=2s",
    ];
    v.extend_from_slice(FAST_SERVER);
    v
}

/// The agent delivers to one of `addrs` (home or standby).
fn on_server(agent: &Node, addrs: &[&str]) -> Result<(), String> {
    let link = agent.link().ok_or("no status")?;
    let on = link.server.as_deref().unwrap_or("");
    let state = link.state.as_str();
    if addrs.iter().any(|a| on.contains(a)) && (state == "home" || state == "standby") {
        Ok(())
    } else {
        Err(format!("{}: {link:?}", agent.name))
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Health {
    Running,
    Frozen,
    Dead,
}

/// At most this many faults are in force at once (the site must keep making progress).
const MAX_CONCURRENT: usize = 2;

/// The nodes, in the order of `nodes` below (and of the namespaces' host numbers).
const NAMES: [&str; 5] = ["s1", "s2", "p", "q", "a3"];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Topology {
    /// Every node on its own 127.0.N.x address; faults: SIGKILL, SIGSTOP, partition.
    Loopback,
    /// Every node in its own network namespace on a bridge; faults also: link down, one-way
    /// loss (nftables), delay and jitter on the servers' link (the relays).
    Netns,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum NetFault {
    LinkDown,
    Loss,
}

fn heal_net(lab: Option<&netlab::Lab>, i: usize, net: &mut [Option<NetFault>; 5]) {
    let (Some(lab), Some(fault)) = (lab, net[i].take()) else {
        return;
    };
    match fault {
        NetFault::LinkDown => lab
            .set_link(NAMES[i], true)
            .unwrap_or_else(|e| panic!("{e}")),
        NetFault::Loss => lab.clear_loss(NAMES[i]),
    }
}

fn fault_schedule(net: u8, faults: usize, topology: Topology) {
    let seed = seed();
    let report = Report {
        seed,
        faults,
        schedule: Arc::new(Mutex::new(Vec::new())),
    };
    eprintln!("[faults] {topology:?} seed {seed} ({faults} faults): replay with UNDERSTUDY_FAULT_SEED={seed} UNDERSTUDY_FAULTS={faults}");
    let mut rng = Rng(seed);
    let wall = Instant::now();

    let site = Site::new(net);
    // Netns: every node in its own namespace on a private bridge (nodes listen on 10.201.N.i:7400);
    // the servers' peer links go through relays in the root namespace either way.
    let lab = match topology {
        Topology::Loopback => None,
        Topology::Netns => Some(
            netlab::Lab::create(net, &NAMES)
                .unwrap_or_else(|e| panic!("making the namespaces: {e}")),
        ),
    };
    let relay_addr = |lab: &Option<netlab::Lab>| match lab {
        None => site.addr(),
        Some(lab) => {
            let l = std::net::TcpListener::bind((lab.gateway().as_str(), 0))
                .expect("a port on the bridge");
            format!(
                "{}:{}",
                lab.gateway(),
                l.local_addr().expect("address").port()
            )
        }
    };
    let (relay_to_s2_addr, relay_to_s1_addr) = (relay_addr(&lab), relay_addr(&lab));
    let init = |name: &str, role: &str, servers: &[String], sets: &[&str]| -> Node {
        match &lab {
            None => site.init(name, role, servers, sets),
            Some(lab) => {
                let host = lab.host(name);
                let mut node =
                    site.init_at(name, role, &format!("{}:7400", host.ip), servers, sets);
                node.netns = Some(host.netns.clone());
                node
            }
        }
    };
    let s1 = init("s1", "server", &[], &server_sets());
    let s2 = init("s2", "server", &[], &server_sets());
    s1.configure(&[
        &format!(
            "failover.peer=https://{relay_to_s2_addr}#{}",
            s2.fingerprint
        ),
        "failover.mode=primary",
    ]);
    s2.configure(&[
        &format!(
            "failover.peer=https://{relay_to_s1_addr}#{}",
            s1.fingerprint
        ),
        "failover.mode=secondary",
    ]);
    let relay_to_s2 = Relay::start(&relay_to_s2_addr, &s2.listen);
    let relay_to_s1 = Relay::start(&relay_to_s1_addr, &s1.listen);
    let p = init("p", "agent", &[s1.url(), s2.url()], &agent_sets());
    let q = init("q", "agent", &[s1.url(), s2.url()], &agent_sets());
    let a3 = init("a3", "agent", &[s2.url(), s1.url()], &agent_sets());
    // nodes[0..2] are the servers, nodes[2..] the agents.
    let mut nodes = [s1, s2, p, q, a3];
    let s1_addrs = [nodes[0].listen.clone(), relay_to_s1_addr.clone()];
    let s1_addrs: Vec<&str> = s1_addrs.iter().map(String::as_str).collect();

    nodes[0].start();
    nodes[0].wait_failover_state("active");
    nodes[1].start();
    nodes[1].wait_failover_state("standby");
    for n in &mut nodes[2..] {
        n.start();
    }
    for n in &nodes[2..] {
        wait_ok(WAIT, &format!("{} on s1", n.name), || {
            on_server(n, &s1_addrs)
        });
    }
    nodes[0].add_pair(
        "web",
        "p",
        "q",
        &[
            "--failover-after",
            "1s",
            "--switchback",
            "auto",
            "--hold-down",
            "2s",
        ],
    );
    nodes[0].wait_pair("web", "active primary", |p| p.active == "primary");
    wait_until(WAIT, "the agents and the pair replicated to s2", || {
        let s2 = &nodes[1];
        (s2.agent_entry("p").is_some()
            && s2.agent_entry("q").is_some()
            && s2.agent_entry("a3").is_some()
            && s2.pair("web").is_some())
        .then_some(())
    });

    let node_refs: Vec<&Node> = nodes.iter().collect();
    let partitioned = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let samplers = Samplers::start(&node_refs, partitioned.clone(), t0);
    let senders: Vec<Sender> = nodes[2..].iter().map(|a| Sender::start(a, 5)).collect();
    for s in &senders {
        s.wait_more(40);
    }
    let start = t0;
    report.log(
        start,
        format!(
            "site up in {:.1}s; senders running",
            wall.elapsed().as_secs_f64()
        ),
    );

    // The schedule.
    let mut health = [Health::Running; 5];
    let mut net: [Option<NetFault>; 5] = [None; 5];
    let (mut cut, mut delayed) = (false, false);
    let mut applied = 0usize;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let kinds_here = match &lab {
        None => 3,
        Some(_) => 6,
    };
    // Any network fault in force (a cut, a delay, a node's link down or lossy) may separate the
    // servers or a member from them, so agent-side claims sampled then count as partitioned
    // (notes, not violations); the server-side invariants hold regardless.
    let network_fault = |cut: bool, delayed: bool, net: &[Option<NetFault>; 5]| {
        cut || delayed || net.iter().any(Option::is_some)
    };
    while applied < faults {
        let in_force: Vec<usize> = (0..5).filter(|i| health[*i] != Health::Running).collect();
        let net_in_force: Vec<usize> = (0..5).filter(|i| net[*i].is_some()).collect();
        let impaired =
            in_force.len() + net_in_force.len() + usize::from(cut) + usize::from(delayed);
        let apply = impaired == 0 || (impaired < MAX_CONCURRENT && rng.chance(50));
        if apply {
            // Loopback draws as it did before the namespaced kinds existed (below 2 while
            // partitioned), so the seeds in BENCHMARKS.md still replay their schedules.
            let kind = rng.below(if lab.is_none() && cut { 2 } else { kinds_here });
            let running: Vec<usize> = (0..5).filter(|i| health[*i] == Health::Running).collect();
            let linked: Vec<usize> = (0..5).filter(|i| net[*i].is_none()).collect();
            match kind {
                0 | 1 if running.is_empty() => continue,
                0 => {
                    let i = running[rng.below(running.len())];
                    // A stop that is the third, sixth… fault applied is planned (SIGTERM: the
                    // ACTIVE's port closes and its STANDBY takes over at once, HS-8), the others
                    // are crashes. Decided without a draw: recorded seeds draw as before (their
                    // third, sixth… fault, if a stop, is now a SIGTERM).
                    if applied % 3 == 2 {
                        nodes[i].stop();
                        report.log(start, format!("fault: SIGTERM {}", nodes[i].name));
                        *kinds.entry("sigterm").or_default() += 1;
                    } else {
                        nodes[i].kill9();
                        report.log(start, format!("fault: SIGKILL {}", nodes[i].name));
                        *kinds.entry("sigkill").or_default() += 1;
                    }
                    health[i] = Health::Dead;
                }
                1 => {
                    let i = running[rng.below(running.len())];
                    nodes[i].sigstop();
                    health[i] = Health::Frozen;
                    report.log(start, format!("fault: SIGSTOP {}", nodes[i].name));
                    *kinds.entry("sigstop").or_default() += 1;
                }
                2 if cut => continue,
                2 => {
                    relay_to_s1.cut();
                    relay_to_s2.cut();
                    cut = true;
                    report.log(start, "fault: partition (both server relays cut)".into());
                    *kinds.entry("partition").or_default() += 1;
                }
                3 | 4 if linked.is_empty() => continue,
                3 => {
                    let i = linked[rng.below(linked.len())];
                    let lab = lab.as_ref().expect("netns");
                    lab.set_link(NAMES[i], false)
                        .unwrap_or_else(|e| panic!("{e}"));
                    net[i] = Some(NetFault::LinkDown);
                    report.log(start, format!("fault: link down {}", NAMES[i]));
                    *kinds.entry("link_down").or_default() += 1;
                }
                4 => {
                    let i = linked[rng.below(linked.len())];
                    let direction = if rng.chance(50) {
                        netlab::Direction::Ingress
                    } else {
                        netlab::Direction::Egress
                    };
                    let percent = 10 + rng.below(61) as u8;
                    let lab = lab.as_ref().expect("netns");
                    lab.set_loss(NAMES[i], direction, percent)
                        .unwrap_or_else(|e| panic!("{e}"));
                    net[i] = Some(NetFault::Loss);
                    report.log(
                        start,
                        format!("fault: {percent}% loss {direction:?} only at {}", NAMES[i]),
                    );
                    *kinds.entry("one_way_loss").or_default() += 1;
                }
                _ if delayed => continue,
                _ => {
                    let base = rng.ms(20, 300);
                    let jitter = Duration::from_millis(
                        rng.ms(0, base.as_millis() as u64).as_millis() as u64,
                    );
                    relay_to_s1.set_delay(base, jitter);
                    relay_to_s2.set_delay(base, jitter);
                    delayed = true;
                    report.log(
                        start,
                        format!("fault: server link delay {base:?} ± {jitter:?}"),
                    );
                    *kinds.entry("delay_jitter").or_default() += 1;
                }
            }
            applied += 1;
        } else {
            let pick = rng.below(impaired);
            if pick < in_force.len() {
                let i = in_force[pick];
                match health[i] {
                    // A node whose link is down (or lossy) may not answer the harness until its
                    // network heals: start its process now and let the convergence wait find it.
                    Health::Dead if net[i].is_some() => {
                        nodes[i].spawn();
                        report.log(
                            start,
                            format!("heal: restarted {} (link impaired)", nodes[i].name),
                        );
                    }
                    Health::Dead => {
                        nodes[i].start();
                        report.log(start, format!("heal: restarted {}", nodes[i].name));
                    }
                    Health::Frozen => {
                        nodes[i].sigcont();
                        report.log(start, format!("heal: SIGCONT {}", nodes[i].name));
                    }
                    Health::Running => unreachable!(),
                }
                health[i] = Health::Running;
            } else if pick < in_force.len() + net_in_force.len() {
                let i = net_in_force[pick - in_force.len()];
                heal_net(lab.as_ref(), i, &mut net);
                report.log(start, format!("heal: network of {}", NAMES[i]));
            } else if cut && pick == in_force.len() + net_in_force.len() {
                relay_to_s1.heal();
                relay_to_s2.heal();
                cut = false;
                report.log(start, "heal: partition".into());
            } else {
                relay_to_s1.set_delay(Duration::ZERO, Duration::ZERO);
                relay_to_s2.set_delay(Duration::ZERO, Duration::ZERO);
                delayed = false;
                report.log(start, "heal: server link delay".into());
            }
        }
        partitioned.store(network_fault(cut, delayed, &net), Ordering::Relaxed);
        std::thread::sleep(rng.ms(300, 3000));
    }

    // Heal everything.
    relay_to_s1.heal();
    relay_to_s2.heal();
    relay_to_s1.set_delay(Duration::ZERO, Duration::ZERO);
    relay_to_s2.set_delay(Duration::ZERO, Duration::ZERO);
    for i in 0..5 {
        heal_net(lab.as_ref(), i, &mut net);
    }
    partitioned.store(false, Ordering::Relaxed);
    for i in 0..5 {
        match health[i] {
            Health::Frozen => nodes[i].sigcont(),
            Health::Dead => {
                nodes[i].start();
            }
            Health::Running => {}
        }
    }
    report.log(
        start,
        format!("schedule done: {applied} faults {kinds:?}; everything healed"),
    );
    // "Restart everything": a clean restart of every node, one after the other, under load.
    for n in nodes.iter_mut() {
        n.stop();
        n.start();
    }
    report.log(start, "every node restarted".into());

    // Convergence: s1 ACTIVE (failback auto), s2 STANDBY, the pair on its primary, every agent on
    // s1 with an empty cache.
    let (s1, s2) = (&nodes[0], &nodes[1]);
    wait_ok(CONVERGE, "s1 ACTIVE and s2 STANDBY", || {
        match (s1.failover(), s2.failover()) {
            (Some((a, _)), Some((b, _))) if a == "active" && b == "standby" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_ok(CONVERGE, "the pair active on its primary", || {
        let pair = s1.pair("web").ok_or("no pair")?;
        (pair.active == "primary" && pair.state == "normal")
            .then_some(())
            .ok_or(format!("{pair:?}"))
    });
    for n in &nodes[2..] {
        wait_ok(CONVERGE, &format!("{} on s1", n.name), || {
            on_server(n, &s1_addrs)
        });
    }
    let stats: Vec<SendStats> = senders.into_iter().map(Sender::finish).collect();
    // One last send per agent bounds what was handed over (a send cut short by a fault may have
    // cached its records without reporting them).
    let mut expected: Vec<(&str, u64)> = Vec::new();
    for (n, st) in nodes[2..].iter().zip(&stats) {
        let (_, last) = n.send(5);
        assert!(
            last >= st.last_seq,
            "{}: seq went back from {} to {last}",
            n.name,
            st.last_seq
        );
        expected.push((n.name.as_str(), last));
    }
    for n in &nodes[2..] {
        wait_ok(CONVERGE, &format!("{}'s cache flushed", n.name), || {
            let link = n.link().ok_or("no status")?;
            (link.cached == 0).then_some(()).ok_or(format!("{link:?}"))
        });
    }
    let converged = start.elapsed();
    report.log(start, "converged".into());
    let (samples, (violations, notes)) = samplers.finish();

    // Count everything per home store (AG-2: the home cluster ends up holding every record of
    // its agents exactly once): s1, the ACTIVE, and s2, which replicates it, are the home
    // cluster of every agent here (a3's home is s2). Waiting a little for the last flushes and
    // for s2's replication.
    let count_at = |store: &Node| {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = count_records(store, &expected);
            if let Some(c) = c.filter(|c| c.lost == 0) {
                break c;
            }
            if Instant::now() > deadline {
                // Never a count of nothing: a checker that cannot list the records must fail.
                break c.unwrap_or_else(|| {
                    panic!(
                        "{} did not list its records (records --json) within {}s",
                        store.name,
                        WAIT.as_secs()
                    )
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let count = count_at(s1);
    let count_s2 = count_at(s2);
    let sends: u64 = stats.iter().map(|s| s.ok_calls).sum();
    let failed: u64 = stats.iter().map(|s| s.failed_calls).sum();
    eprintln!(
        "[faults] RESULT s2 (home of a3, peer of s1): sent={} stored={} lost={} duplicated={} unexpected={}",
        count_s2.sent, count_s2.stored, count_s2.lost, count_s2.duplicated, count_s2.unexpected
    );
    eprintln!(
        "[faults] RESULT topology={topology:?} seed={seed} faults={applied} kinds={kinds:?} sent={} stored={} lost={} duplicated={} unexpected={} \
         violations={} notes={} samples={samples} send_calls_ok={sends} send_calls_failed={failed} schedule_and_convergence={:.1}s wall={:.1}s",
        count.sent,
        count.stored,
        count.lost,
        count.duplicated,
        count.unexpected,
        violations.len(),
        notes.len(),
        converged.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    for v in &violations {
        eprintln!("[faults] VIOLATION: {v}");
    }
    for n in &notes {
        eprintln!("[faults] NOTE: {n}");
    }
    assert!(
        violations.is_empty(),
        "invariant violations (seed {seed}): {violations:#?}"
    );
    assert!(
        count.sent > 0 && count.stored > 0,
        "nothing was counted (seed {seed}): {count:?}"
    );
    assert!(
        count.lost == 0 && count.duplicated == 0 && count.unexpected == 0,
        "records on s1 (seed {seed}): {count:?} (expected {expected:?})"
    );
    assert!(
        count_s2.lost == 0 && count_s2.duplicated == 0 && count_s2.unexpected == 0,
        "records on s2 (seed {seed}): {count_s2:?} (expected {expected:?})"
    );
    drop(report);
}

/// The quick profile (CI): ~8 faults, a minute or two.
#[test]
fn randomized_faults_quick() {
    fault_schedule(71, fault_count(8), Topology::Loopback);
}

/// The quick profile with every node in its own network namespace (CI): link down, one-way
/// loss and delay/jitter join the faults.
#[test]
fn randomized_faults_netns_quick() {
    netlab::require();
    fault_schedule(74, fault_count(10), Topology::Netns);
}

/// The long profile in namespaces, on demand (see the module docs).
#[test]
#[ignore]
fn randomized_faults_netns_long() {
    netlab::require();
    fault_schedule(75, fault_count(200), Topology::Netns);
}

/// The long profile, on demand: `cargo test -p understudy-system-tests --test faults -- --ignored`.
#[test]
#[ignore]
fn randomized_faults_long() {
    fault_schedule(72, fault_count(200), Topology::Loopback);
}

// ---------------------------------------------------------------------------------------------
// 30 % packet loss between an agent and its server, in network namespaces.

/// The server runs in its own namespace on a bridge and drops 30 % of its packets (both ways,
/// nftables `numgen random`); with default heartbeats no record is lost, and the agent does not
/// switch over while home keeps accepting it. Under this loss a link does break now and then
/// (3 heartbeats unanswered) and a reconnection can take several 3 s attempts; should home not
/// accept one for `switchover_after` (10 s), AG-3 says to switch over, so a SWITCHOVER is
/// accepted only when its sentence says home had stopped answering at least that long.
#[test]
fn lossy_link_30_percent_loses_nothing_and_no_early_switchover() {
    netlab::require();
    let lab =
        netlab::Lab::create(73, &["srv"]).unwrap_or_else(|e| panic!("making the namespace: {e}"));
    let site = Site::new(73);
    let host = lab.host("srv");
    let mut server = site.init_at(
        "srv",
        "server",
        &format!("{}:7400", host.ip),
        &[],
        &["server.enroll_token=tok-0123456789abcdef"],
    );
    server.netns = Some(host.netns.clone());
    let mut standby = site.server("standby", &["server.enroll_token=tok-0123456789abcdef"]);
    let mut agent = site.agent(
        "a1",
        &[&server, &standby],
        &["agent.enroll_token=tok-0123456789abcdef"],
    );
    server.start();
    standby.start();
    agent.start();
    agent.wait_link("home", Some(&server));
    lab.set_loss("srv", netlab::Direction::Both, 30)
        .unwrap_or_else(|e| panic!("nft: {e}"));
    // 30 s of load: 30 default heartbeats, three times the default switchover_after.
    let load = Sender::start(&agent, 5);
    let end = Instant::now() + Duration::from_secs(30);
    // A lossy link may drop the connection (the agent reconnects home: `connecting`); leaving
    // home is checked against AG-3 below.
    let mut reconnecting = 0;
    let mut left_home = None;
    while Instant::now() < end {
        let link = agent.link().expect("the agent's link");
        let on = link.server.as_deref().unwrap_or("");
        match link.state.as_str() {
            "home" => {}
            "connecting" if !on.contains(&standby.listen) => {
                reconnecting += 1;
                eprintln!("[lossy] reconnecting home: {link:?}");
            }
            _ => {
                eprintln!("[lossy] left home: {link:?}");
                left_home.get_or_insert(link);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let switchovers = agent.events("SWITCHOVER");
    for e in &switchovers {
        let text = &e.sentence;
        let silent = text
            .split("stopped answering ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(parse_duration);
        assert!(
            silent.is_some_and(|d| d >= Duration::from_secs(10)),
            "a switchover before home had stopped answering for switchover_after (10s): {e:?}"
        );
        eprintln!("[lossy] NOTE: home accepted no connection for switchover_after, so the agent switched over (AG-3): {e:?}");
    }
    if switchovers.is_empty() {
        assert!(
            left_home.is_none(),
            "the agent left home without a switchover: {left_home:?}"
        );
    }
    let n = load.finish().last_seq;
    let (_, n) = (n, agent.send(1).1);
    // The standby stores what was flushed to it after a switchover; each record once in all.
    wait_records(&[&server, &standby], &[("a1", n)]);
    let dropped = lab.dropped("srv");
    eprintln!("[lossy] {n} records stored exactly once; {dropped} packets dropped by nftables; {reconnecting} samples reconnecting");
    assert!(dropped > 0, "nftables dropped nothing");
    if switchovers.is_empty() {
        // The link may be between a drop and its reconnection when the loss stops: once the
        // link is clean again the agent is home (not on the standby).
        lab.clear_loss("srv");
        agent.wait_link("home", Some(&server));
    }
}

/// `fmt_duration`'s `10s`, `10500ms`, `2m`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim_end_matches([',', ')', ';']);
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs.parse().ok().map(Duration::from_secs);
    }
    s.strip_suffix('m')?
        .parse::<u64>()
        .ok()
        .map(|m| Duration::from_secs(m * 60))
}

/// Servers s1 (primary) and s2 (secondary) in hot standby, each in its namespace of `lab`; s2
/// waits `s2_failover_timeout` of silence. Neither is started. (Each namespaced test has a lab
/// number of its own, since tests run two at a time: 71–75 the randomized suites and the lossy
/// link, 76–77 the HS-8 tests.)
fn netns_hot_standby(site: &Site, lab: &netlab::Lab, s2_failover_timeout: &str) -> (Node, Node) {
    let (h1, h2) = (lab.host("s1"), lab.host("s2"));
    let sets = [
        "server.enroll_token=tok-0123456789abcdef",
        "failover.sync_interval=500ms",
        "failover.failover_timeout=2s",
    ];
    let mut s1 = site.init_at("s1", "server", &format!("{}:7400", h1.ip), &[], &sets);
    let mut s2 = site.init_at("s2", "server", &format!("{}:7400", h2.ip), &[], &sets);
    s1.configure(&[
        &format!("failover.peer={}", s2.url()),
        "failover.mode=primary",
    ]);
    s2.configure(&[
        &format!("failover.peer={}", s1.url()),
        "failover.mode=secondary",
        &format!("failover.failover_timeout={s2_failover_timeout}"),
    ]);
    s1.netns = Some(h1.netns.clone());
    s2.netns = Some(h2.netns.clone());
    (s1, s2)
}

/// HS-8: the ACTIVE's host unreachable (its link down) is silence, not a crash: nothing refuses,
/// so the STANDBY promotes only after `failover_timeout`, and says so.
#[test]
fn hs8_the_active_host_unreachable_is_silence_and_waits_failover_timeout() {
    netlab::require();
    let lab = netlab::Lab::create(77, &["s1", "s2"])
        .unwrap_or_else(|e| panic!("making the namespaces: {e}"));
    let site = Site::new(77);
    let (mut s1, mut s2) = netns_hot_standby(&site, &lab, "3s");
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    lab.set_link("s1", false)
        .unwrap_or_else(|e| panic!("link down: {e}"));
    s2.wait_failover_state("active");
    let promotion = s2
        .events("PROMOTED")
        .into_iter()
        .rfind(|e| e.subject == "s2")
        .expect("s2's promotion");
    let sentence = promotion.sentence.as_str();
    assert!(
        sentence.starts_with("peer s1 has not answered for")
            && sentence.contains("(failover_timeout 3s)"),
        "{promotion:?}"
    );
    lab.set_link("s1", true)
        .unwrap_or_else(|e| panic!("link up: {e}"));
    // HS-6 when they meet again: one ACTIVE.
    s1.wait_failover_state("standby");
}

/// HS-8's trade-off (issue 13): a firewall that rejects the peer link with TCP resets looks like
/// a crash to the STANDBY, which promotes on the refusals while the ACTIVE still serves its
/// agents. The ACTIVE's own polls still pass, so it meets the higher epoch and steps down (HS-6),
/// handing over its records: nothing is lost. README: `failover.crash_confirm = 0` is the escape.
#[test]
fn hs8_a_firewall_rejecting_the_peer_link_with_resets_promotes_and_hs6_settles_it() {
    netlab::require();
    let lab = netlab::Lab::create(76, &["s1", "s2"])
        .unwrap_or_else(|e| panic!("making the namespaces: {e}"));
    let site = Site::new(76);
    let (h1, h2) = (lab.host("s1"), lab.host("s2"));
    // Only refusals can promote s2 within this test: its failover_timeout is two minutes.
    let (mut s1, mut s2) = netns_hot_standby(&site, &lab, "2m");
    let mut a1 = site.agent("a1", &[&s1, &s2], &agent_sets());
    s1.start();
    let epoch = s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    a1.start();
    a1.wait_link("home", Some(&s1));
    wait_until(WAIT, "a1 replicated to s2", || {
        s2.agent_entry("a1").map(|_| ())
    });
    let load = Sender::start(&a1, 20);
    load.wait_more(200);
    // In s1's namespace, connections from s2 to s1's port are answered with a reset.
    let nft = |words: &[&str]| {
        let mut args = vec!["netns", "exec", h1.netns.as_str(), "nft"];
        args.extend_from_slice(words);
        netlab::sh("ip", &args).unwrap_or_else(|e| panic!("nft: {e}"));
    };
    nft(&["add", "table", "inet", "usfreject"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "usfreject",
        "input",
        "{ type filter hook input priority 0 ; policy accept ; }",
    ]);
    let rule = format!("ip saddr {} tcp dport 7400 reject with tcp reset", h2.ip);
    let mut words = vec!["add", "rule", "inet", "usfreject", "input"];
    words.extend(rule.split(' '));
    nft(&words);
    let promoted = s2.wait_failover_state("active");
    assert!(promoted > epoch, "{epoch} -> {promoted}");
    let promotion = s2
        .events("PROMOTED")
        .into_iter()
        .rfind(|e| e.subject == "s2")
        .expect("s2's promotion");
    assert!(
        promotion.sentence.contains("port refused 3 polls in a row"),
        "{promotion:?}"
    );
    // HS-6: s1 meets the higher epoch, steps down and hands its records over.
    s1.wait_failover_state("standby");
    s1.wait_event("SPLIT_BRAIN", |_| true);
    a1.wait_link("standby", Some(&s2));
    load.wait_more(200);
    netlab::sh(
        "ip",
        &[
            "netns",
            "exec",
            &h1.netns,
            "nft",
            "delete",
            "table",
            "inet",
            "usfreject",
        ],
    )
    .unwrap_or_else(|e| panic!("nft: {e}"));
    let n = load.finish().last_seq;
    wait_records(&[&s2], &[("a1", n)]);
    assert_eq!(s1.failover().map(|f| f.0).as_deref(), Some("standby"));
}
