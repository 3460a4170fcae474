//! Abuse (issue 12): a server with simulated agents delivering records while strangers hold idle
//! and slow-handshake connections against its port. Measured: the server's RSS, the admin API's
//! latency (`GET /api/status`, a new TLS connection each) and the records the agents got
//! acknowledged, before and during the attack.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};
use understudy_node::tls::{self, Pins, ALPN_HTTP, ALPN_WIRE};

use crate::scale::{fake_uuid, identity, sim_agent, Counters};
use crate::site::Ctx;
use crate::stats::{met, percentile, vm, Rng};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Simulated agents, each sending a record with its heartbeat every second.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Idle connections the strangers hold (TLS done, ALPN http/1.1, nothing sent).
    #[arg(long, default_value_t = 1000)]
    pub idle: usize,
    /// Slow-handshake connections the strangers hold (one byte of a ClientHello, then nothing).
    #[arg(long, default_value_t = 1000)]
    pub slow: usize,
    /// Source addresses the strangers spread over (127.0.10.1 …).
    #[arg(long, default_value_t = 40)]
    pub addresses: usize,
    /// Seconds measured before and during the attack.
    #[arg(long, default_value_t = 30)]
    pub window: u64,
}

#[derive(Default)]
struct Attack {
    /// Connections open now.
    held: AtomicU64,
    /// Connections opened in all.
    opened: AtomicU64,
    /// Connections the server closed within a second of opening (refused at the limit).
    refused: AtomicU64,
    /// Connections the server closed later (a timeout).
    cut: AtomicU64,
}

/// One stranger's connection, opened again whenever the server closes it, until `stop`.
async fn stranger(
    from: IpAddr,
    to: SocketAddr,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    a: Arc<Attack>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let opened = Instant::now();
        let conn = async {
            let socket = TcpSocket::new_v4().ok()?;
            socket.bind(SocketAddr::new(from, 0)).ok()?;
            socket.connect(to).await.ok()
        }
        .await;
        let Some(mut tcp) = conn else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        a.opened.fetch_add(1, Ordering::Relaxed);
        a.held.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 512];
        let closed = match &tls_config {
            // Slow handshake: the first byte of a TLS record, then silence.
            None => {
                let _ = tcp.write_all(&[0x16]).await;
                tokio::select! {
                    _ = tcp.read(&mut buf) => true,
                    _ = stop.changed() => false,
                }
            }
            // Idle: a finished handshake on the admin protocol, then silence.
            Some(config) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
                match tokio::time::timeout(Duration::from_secs(20), connector.connect(name, tcp))
                    .await
                {
                    Ok(Ok(mut stream)) => tokio::select! {
                        _ = stream.read(&mut buf) => true,
                        _ = stop.changed() => false,
                    },
                    _ => true,
                }
            }
        };
        a.held.fetch_sub(1, Ordering::Relaxed);
        if closed {
            if opened.elapsed() < Duration::from_secs(1) {
                a.refused.fetch_add(1, Ordering::Relaxed);
                // A refused stranger tries again a little later.
                tokio::time::sleep(Duration::from_millis(500)).await;
            } else {
                a.cut.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Phase {
    admin_ms: Vec<f64>,
    admin_failed: usize,
    acked_per_s: f64,
    sent_per_s: f64,
    rss: f64,
    held: u64,
}

async fn measure(server: &crate::site::Node, c: &Counters, a: &Attack, window: u64) -> Phase {
    let pid = server.pid().expect("pid");
    let (sent0, acked0) = (
        c.records.load(Ordering::Relaxed),
        c.records_acked.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let mut admin_ms = Vec::new();
    let mut admin_failed = 0;
    let mut rss: f64 = 0.0;
    let mut held = 0;
    while t0.elapsed() < Duration::from_secs(window) {
        let t = Instant::now();
        match server.status().await {
            Some(_) => admin_ms.push(t.elapsed().as_secs_f64() * 1000.0),
            None => admin_failed += 1,
        }
        rss = rss.max(vm(pid, "VmRSS:").unwrap_or(0.0));
        held = held.max(a.held.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let el = t0.elapsed().as_secs_f64();
    Phase {
        admin_ms,
        admin_failed,
        acked_per_s: (c.records_acked.load(Ordering::Relaxed) - acked0) as f64 / el,
        sent_per_s: (c.records.load(Ordering::Relaxed) - sent0) as f64 / el,
        rss,
        held,
    }
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "abuse");
    let mut server = ctx.server("server", &[]);
    server.start().await;
    let pid = server.pid().expect("pid");
    let to: SocketAddr = server.listen.parse().expect("the server's address");
    let pins = Pins::new([server.fingerprint.clone()]);
    let c = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(16));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut rng = Rng::seeded();
    let certs = ctx.path().join("sim-certs");
    let mut tasks = Vec::new();
    for i in 0..o.agents {
        let dir = certs.join(format!("c{i}"));
        let id = tokio::task::spawn_blocking(move || identity(&dir))
            .await
            .expect("identity");
        let config = tls::client_config(pins.clone(), Some(id), &[ALPN_WIRE]).expect("config");
        tasks.push(tokio::spawn(sim_agent(
            i,
            fake_uuid(&mut rng),
            server.listen.clone(),
            config,
            c.clone(),
            gate.clone(),
            stop_rx.clone(),
            Duration::from_micros(rng.next() % 1_000_000),
            true,
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (c.connected.load(Ordering::Relaxed) as usize) < o.agents && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = Arc::new(Attack::default());
    eprintln!(
        "abuse: {} agents connected; measuring without an attack",
        c.connected.load(Ordering::Relaxed)
    );
    let before = measure(&server, &c, &a, o.window).await;
    let rss_before = vm(pid, "VmRSS:").unwrap_or(f64::NAN);
    let http = tls::client_config(pins.clone(), None, &[ALPN_HTTP]).expect("config");
    let (attack_tx, attack_rx) = watch::channel(false);
    let mut strangers = Vec::new();
    for i in 0..o.idle + o.slow {
        let host = 1 + (i % o.addresses.clamp(1, 250)) as u8;
        let from = IpAddr::from([127, 0, 10, host]);
        let config = (i < o.idle).then(|| http.clone());
        strangers.push(tokio::spawn(stranger(
            from,
            to,
            config,
            a.clone(),
            attack_rx.clone(),
        )));
        if i % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    // Let the crowd build up, then measure while it is held.
    tokio::time::sleep(Duration::from_secs(10)).await;
    eprintln!(
        "abuse: strangers hold {} connections ({} refused so far); measuring",
        a.held.load(Ordering::Relaxed),
        a.refused.load(Ordering::Relaxed)
    );
    let during = measure(&server, &c, &a, o.window).await;
    let hwm = vm(pid, "VmHWM:").unwrap_or(f64::NAN);
    let _ = attack_tx.send(true);
    let _ = stop_tx.send(true);
    for t in strangers.into_iter().chain(tasks) {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let dropped = c.dropped.load(Ordering::Relaxed);
    server.stop();
    let p = |xs: &[f64], q: f64| percentile(xs, q);
    let row = |label: &str, ph: &Phase| {
        format!(
            "| {label} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {:.0} / {:.0} | **{:.1} MiB** |\n",
            ph.held,
            p(&ph.admin_ms, 50.0),
            p(&ph.admin_ms, 99.0),
            ph.admin_ms.iter().cloned().fold(0.0, f64::max),
            ph.admin_failed,
            ph.acked_per_s,
            ph.sent_per_s,
            ph.rss,
        )
    };
    eprintln!(
        "abuse: before p50 {:.1} p99 {:.1} ms, {:.0}/{:.0} acked/sent per s, RSS {rss_before:.1}; during p50 {:.1} p99 {:.1} ms ({} failed), {:.0}/{:.0} acked/sent per s, RSS {:.1} (peak {hwm:.1}), held {}, refused {}, cut {}, links dropped {dropped}",
        p(&before.admin_ms, 50.0),
        p(&before.admin_ms, 99.0),
        before.acked_per_s,
        before.sent_per_s,
        p(&during.admin_ms, 50.0),
        p(&during.admin_ms, 99.0),
        during.admin_failed,
        during.acked_per_s,
        during.sent_per_s,
        during.rss,
        during.held,
        a.refused.load(Ordering::Relaxed),
        a.cut.load(Ordering::Relaxed),
    );
    let ok = dropped == 0
        && during.acked_per_s >= 0.95 * during.sent_per_s
        && during.admin_failed == 0
        && p(&during.admin_ms, 99.0) < 100.0
        && hwm < 100.0;
    let mut md = String::from(
        "## 9. Abuse: idle and slow-handshake connections held against a server (issue 12)\n\n",
    );
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** One `understudy serve` server (the `--bin` given, default settings, an enrollment \
         token) with {} simulated agents (the `scale` agents, each its own certificate, sending a record \
         with its heartbeat every second and counting the acknowledgements). Strangers then hold {} idle \
         connections (TLS handshake done, ALPN `http/1.1`, nothing sent) and {} slow-handshake \
         connections (one byte of a ClientHello, then nothing), spread over {} source addresses \
         127.0.10.x and opened again whenever the server closes them (after 0.5 s when refused at once). \
         Over {} s before and {} s during the attack (after 10 s of build-up): `GET /api/status` on the \
         admin API every 100 ms, a new TLS connection each time (as the CLI does), from this machine's \
         loopback; the server's RSS; records acknowledged. The limits in force: {} unauthenticated \
         connections per unknown address, at most min(1024, open-file limit / 4) from unknown addresses \
         in all, handshake and Hello 10 s each, admin headers 10 s, admin idle 30 s.\n\n",
        o.agents,
        o.idle,
        o.slow,
        o.addresses,
        o.window,
        o.window,
        understudy_node::limits::PER_ADDRESS,
    ));
    md.push_str("| phase | stranger connections held (max) | admin p50 | **admin p99** | admin max | admin failed | records acked / sent per s | **server RSS (max)** |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&row("no attack", &before));
    md.push_str(&row("under attack", &during));
    md.push_str(&format!(
        "\nStrangers opened {} connections in all: {} refused at once (over a limit), {} cut later by a \
         timeout. Agent links dropped: {dropped}. Peak RSS (VmHWM) {hwm:.1} MiB. Targets: agents keep \
         delivering, admin p99 < 100 ms, RSS < 100 MB: {}.\n",
        a.opened.load(Ordering::Relaxed),
        a.refused.load(Ordering::Relaxed),
        a.cut.load(Ordering::Relaxed),
        met(ok)
    ));
    Section {
        key: "abuse",
        body: md,
    }
}
