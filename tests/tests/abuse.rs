//! Issue 12: a port that holds under abuse, against real processes. What one connection may cost
//! before it shows who it is (item 4), enrollment floods and guesses (item 5), and the smaller
//! ones (item 6).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use understudy_node::frame::read_frame;
use understudy_node::limits::PER_ADDRESS;
use understudy_node::tls::{self, Pins, ALPN_HTTP, ALPN_WIRE};
use understudy_node::wire::{ToAgent, ToServer};
use understudy_system_tests::*;

fn stranger_ip(site: &Site) -> std::net::IpAddr {
    let addr: SocketAddr = site.addr().parse().expect("an address");
    addr.ip()
}

async fn connect_from(from: std::net::IpAddr, to: &str) -> TcpStream {
    let to: SocketAddr = to.parse().expect("the server's address");
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("binding the stranger's address");
    socket.connect(to).await.expect("a TCP connection")
}

/// Has the server closed this connection (EOF or reset) already? Asks the kernel without
/// waiting.
fn is_closed(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: recv(2) into a one-byte local buffer on a socket this test owns.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0 || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
}

/// Has the server closed this connection (EOF or reset) within `within`?
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Item 4: idle connections from one address are held only up to its limit; the rest are
/// closed at once, and meanwhile the connected agent keeps delivering and the admin API answers.
#[test]
fn abuse_idle_connections_are_limited_per_address_while_agents_deliver() {
    let site = Site::new(151);
    let (server, agent) = server_with_agent(&site);
    let from = stranger_ip(&site);
    let extra = 8;
    rt().block_on(async {
        let mut held = Vec::new();
        let started = Instant::now();
        for _ in 0..PER_ADDRESS + extra {
            held.push(connect_from(from, &server.listen).await);
        }
        // While they are held (well within the handshake timeout), the site works.
        let (_, n) = agent.send(20);
        wait_records(&[&server], &[("a1", n)]);
        assert!(server.status().is_some(), "the admin API answers");
        assert!(
            started.elapsed() < understudy_node::limits::HANDSHAKE_TIMEOUT,
            "checked within the handshake timeout"
        );
        // Every connection looked at once (a non-blocking read), well before the handshake
        // timeout would close the held ones too.
        let closed = held.iter().filter(|s| is_closed(s)).count();
        assert_eq!(
            closed, extra,
            "connections past {PER_ADDRESS} from one address are closed at once, the others held"
        );
    });
    wait_until(WAIT, "the refusal in the log", || {
        server
            .log_text()
            .contains("unauthenticated connections from one address")
            .then_some(())
    });
}

/// Item 4: a connection that never finishes its TLS handshake is cut by the handshake timeout.
#[test]
fn abuse_slow_handshake_is_cut_by_its_timeout() {
    let site = Site::new(152);
    let (server, agent) = server_with_agent(&site);
    let from = stranger_ip(&site);
    rt().block_on(async {
        let mut s = connect_from(from, &server.listen).await;
        // A byte of a ClientHello, then nothing.
        s.write_all(&[0x16]).await.expect("write");
        assert!(
            closed_within(&mut s, Duration::from_secs(20)).await,
            "the half-done handshake is cut"
        );
    });
    assert_still_serving(&server, &agent, 0);
}

/// Item 4: an admin (HTTP) connection that sends half a request, or stays idle after one, is
/// closed by the header and idle timeouts (hyper's timer is set).
#[test]
fn abuse_admin_connection_without_headers_or_idle_is_closed() {
    let site = Site::new(153);
    let (server, agent) = server_with_agent(&site);
    let pins = Pins::new([server.fingerprint.clone()]);
    rt().block_on(async {
        let mut half = tls::connect(&server.listen, &pins, None, &[ALPN_HTTP])
            .await
            .expect("TLS connection");
        half.write_all(b"GET /api/status HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write");
        half.flush().await.expect("flush");
        let mut idle = tls::connect(&server.listen, &pins, None, &[ALPN_HTTP])
            .await
            .expect("TLS connection");
        let mut buf = [0u8; 4096];
        let cut = |r: Result<Result<usize, std::io::Error>, _>| matches!(r, Ok(Ok(0)) | Ok(Err(_)));
        let started = Instant::now();
        assert!(
            cut(tokio::time::timeout(Duration::from_secs(25), half.read(&mut buf)).await),
            "half a request is cut by the header timeout"
        );
        // The idle one (no request at all) is cut too, by the idle timeout at the latest.
        let left = Duration::from_secs(45).saturating_sub(started.elapsed());
        loop {
            match tokio::time::timeout(left, idle.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("an idle admin connection is never closed"),
            }
        }
    });
    assert_still_serving(&server, &agent, 0);
}

/// Item 4: a first frame announcing far more than a Hello is refused before it is read: the
/// answer comes at once, without the payload ever being sent.
#[test]
fn abuse_huge_first_frame_is_refused_before_it_is_read() {
    let site = Site::new(154);
    let (server, agent) = server_with_agent(&site);
    let identity = client_identity(&site, "raw-client");
    let pins = Pins::new([server.fingerprint.clone()]);
    rt().block_on(async {
        let mut stream = tls::connect(&server.listen, &pins, Some(identity), &[ALPN_WIRE])
            .await
            .expect("TLS connection");
        // 1,000,000 bytes announced (under the 1 MiB frame limit), none sent.
        stream
            .write_all(&1_000_000u32.to_be_bytes())
            .await
            .expect("write");
        stream.flush().await.expect("flush");
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            read_frame::<ToAgent, _>(&mut stream),
        )
        .await;
        match answer {
            Ok(Ok(Some(ToAgent::Error { reason }))) => {
                assert!(reason.contains("16384-byte limit"), "{reason}")
            }
            other => panic!("expected the first frame refused by its size, got {other:?}"),
        }
    });
    assert_still_serving(&server, &agent, 0);
}

/// Item 4: a wire connection without a client certificate is refused right after the handshake,
/// before it sends anything.
#[test]
fn abuse_no_client_certificate_is_refused_before_any_frame() {
    let site = Site::new(155);
    let (server, agent) = server_with_agent(&site);
    let pins = Pins::new([server.fingerprint.clone()]);
    rt().block_on(async {
        let mut stream = tls::connect(&server.listen, &pins, None, &[ALPN_WIRE])
            .await
            .expect("TLS connection");
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            read_frame::<ToAgent, _>(&mut stream),
        )
        .await;
        match answer {
            Ok(Ok(Some(ToAgent::Error { reason }))) => {
                assert!(reason.contains("client certificate"), "{reason}")
            }
            other => panic!("expected a refusal before any frame, got {other:?}"),
        }
    });
    assert_still_serving(&server, &agent, 0);
}

/// Item 4: the node raises its soft open-file limit to the hard one at start.
#[test]
fn abuse_open_file_limit_is_raised_at_start() {
    let site = Site::new(156);
    let mut server = site.server("srv", &[]);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on this process with a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let lowered = libc::rlimit {
        rlim_cur: 256.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // The node inherits the lowered soft limit; this process gets its own back at once.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) };
    server.spawn();
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    wait_ok(WAIT, "the node's raised limit", || {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
            .map_err(|e| e.to_string())?;
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .ok_or("no open-files line")?;
        let soft = line.split_whitespace().nth(3).unwrap_or("");
        (soft == limit.rlim_max.to_string())
            .then_some(())
            .ok_or(format!("soft limit still {soft}, hard {}", limit.rlim_max))
    });
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Item 6: the data directory is the node's alone: 0700, and its configuration (enrollment
/// tokens), store (with its WAL), admin token and key 0600, from `init` on and re-checked at
/// every start, with a warning for what was looser.
#[test]
fn abuse_data_directory_and_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new(157);
    let mut server = site.server("srv", &["server.enroll_token=tok-0123456789abcdef"]);
    assert_eq!(mode(&server.dir), 0o700, "the data directory after init");
    for file in ["config.toml", "admin.token", "key.pem"] {
        assert_eq!(mode(&server.dir.join(file)), 0o600, "{file} after init");
    }
    server.start();
    for file in ["store.db", "store.db-wal"] {
        assert_eq!(mode(&server.dir.join(file)), 0o600, "{file} once created");
    }
    server.stop();
    // An old install or a careless copy: everything readable by all.
    std::fs::set_permissions(&server.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for file in ["config.toml", "store.db"] {
        std::fs::set_permissions(
            server.dir.join(file),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
    }
    server.start();
    assert_eq!(mode(&server.dir), 0o700, "fixed at start");
    for file in ["config.toml", "store.db"] {
        assert_eq!(mode(&server.dir.join(file)), 0o600, "{file} fixed at start");
    }
    let log = server.log_text();
    assert!(
        log.contains("config.toml was 644, readable by others: now 600"),
        "a warning names what was fixed:\n{log}"
    );
}

/// Sends one Hello on a fresh connection with the raw client's certificate; returns the answer.
fn raw_hello(site: &Site, server: &Node, id: &str, name: &str, token: &str) -> Option<ToAgent> {
    raw_first_frame(
        site,
        server,
        &serde_json::to_vec(&ToServer::Hello {
            id: id.into(),
            name: name.into(),
            home: true,
            token: token.into(),
            probe: false,
            home_fingerprints: Vec::new(),
        })
        .expect("json"),
    )
}

/// Sends `payload` as the first frame of a fresh wire connection; returns the answer.
fn raw_first_frame(site: &Site, server: &Node, payload: &[u8]) -> Option<ToAgent> {
    let identity = client_identity(site, "raw-client");
    let pins = Pins::new([server.fingerprint.clone()]);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    rt().block_on(async {
        let mut stream = tls::connect(&server.listen, &pins, Some(identity), &[ALPN_WIRE])
            .await
            .expect("TLS connection");
        let _ = stream.write_all(&frame).await;
        let _ = stream.flush().await;
        tokio::time::timeout(
            Duration::from_secs(10),
            read_frame::<ToAgent, _>(&mut stream),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten()
    })
}

fn refusal(answer: Option<ToAgent>) -> String {
    match answer {
        Some(ToAgent::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Item 5: an agent's id is a UUID and its name short and plain; anything else is refused
/// before it reaches the registry, and `status` keeps working.
#[test]
fn abuse_agent_ids_and_names_are_validated() {
    let site = Site::new(158);
    let (server, agent) = server_with_agent(&site);
    let reason = refusal(raw_hello(&site, &server, "not-a-uuid", "x1", ""));
    assert!(reason.contains("not a UUID"), "{reason}");
    let long = "n".repeat(1000);
    let reason = refusal(raw_hello(&site, &server, &uuid(1), &long, ""));
    assert!(reason.contains("longer than 64"), "{reason}");
    let reason = refusal(raw_hello(&site, &server, &uuid(2), "a\nb <i>", ""));
    assert!(reason.contains("a name is letters"), "{reason}");
    let out = server.cli_ok(&["status"]);
    assert!(!out.contains("nnnnnnnnnn"), "{out}");
    assert!(
        server.agent_entry("x1").is_none(),
        "nothing was stored for the refused hellos"
    );
    assert_still_serving(&server, &agent, 0);
}

/// Item 5: a name with a space is a valid name, and the operator can accept it (admin path
/// segments are percent-decoded).
#[test]
fn abuse_a_name_with_a_space_can_be_accepted() {
    let site = Site::new(159);
    let mut server = site.server("srv", &[]);
    let mut agent = site.agent("web 1", &[&server], FAST_AGENT);
    server.start();
    agent.start();
    wait_until(WAIT, "the agent pending", || {
        server.agent_entry("web 1").filter(|a| a.pending)
    });
    server.cli_ok(&["agent", "accept", "web 1"]);
    agent.wait_link("home", Some(&server));
}

/// Item 5: unknown agents without a token can make a burst of pending entries per address, then
/// are refused; the operator forgets the pending ones (an accepted one only after rejecting it).
#[test]
fn abuse_enrollment_flood_is_rate_limited_and_can_be_forgotten() {
    let site = Site::new(160);
    let (server, agent) = server_with_agent(&site);
    let burst = understudy_node::limits::ENROLL_BURST;
    for n in 0..burst {
        let reason = refusal(raw_hello(
            &site,
            &server,
            &uuid(n),
            &format!("flood-{n}"),
            "",
        ));
        assert!(reason.contains("waiting for an operator"), "{reason}");
    }
    let reason = refusal(raw_hello(&site, &server, &uuid(99), "flood-99", ""));
    assert!(
        reason.contains("too many enrollment attempts from this address"),
        "{reason}"
    );
    assert!(server.agent_entry("flood-99").is_none(), "not stored");
    assert!(server.agent_entry("flood-0").is_some(), "pending");
    server.cli_ok(&["agent", "forget", "flood-0"]);
    assert!(server.agent_entry("flood-0").is_none(), "forgotten");
    let refused = server.cli(&["agent", "forget", "a1"]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "an accepted agent is not forgotten"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("reject it first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_still_serving(&server, &agent, 0);
}

/// Item 5: every wrong enrollment token is counted and logged, and an address gets only a burst
/// of guesses before it must wait.
#[test]
fn abuse_wrong_enrollment_tokens_are_counted_logged_and_rate_limited() {
    let site = Site::new(161);
    let (server, agent) = server_with_agent(&site);
    let burst = understudy_node::limits::ENROLL_BURST;
    for n in 0..burst {
        let reason = refusal(raw_hello(
            &site,
            &server,
            &uuid(n),
            "guesser",
            &format!("guess-{n:012}-xxxxxxxx"),
        ));
        assert_eq!(reason, "wrong enrollment token");
    }
    let reason = refusal(raw_hello(
        &site,
        &server,
        &uuid(50),
        "guesser",
        "guess-the-last-xxxxxxxx",
    ));
    assert!(
        reason.contains("too many enrollment attempts from this address"),
        "{reason}"
    );
    wait_until(WAIT, "every wrong token in the log", || {
        server
            .log_text()
            .contains(&format!(
                "wrong enrollment token ({burst} since the node started)"
            ))
            .then_some(())
    });
    assert_still_serving(&server, &agent, 0);
}

/// Item 5: an enrollment token shorter than 16 characters is refused when the configuration is
/// made, naming the key.
#[test]
fn abuse_short_enrollment_token_is_refused_at_init() {
    let site = Site::new(162);
    let dir = site.dir().join("srv");
    let listen = site.addr();
    let out = run_understudy(
        &[
            "init",
            "--data-dir",
            &dir.display().to_string(),
            "--name",
            "srv",
            "--listen",
            &listen,
            "--role",
            "server",
            "--set",
            "server.enroll_token=short",
        ],
        WAIT,
    )
    .expect("init ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("server.enroll_token") && err.contains("at least 16"),
        "{err}"
    );
}

/// Item 6: a refusal before authentication does not tell a stranger another agent's id.
#[test]
fn abuse_refusals_do_not_reveal_other_agents_ids() {
    let site = Site::new(163);
    let (server, agent) = server_with_agent(&site);
    let config = std::fs::read_to_string(agent.dir.join("config.toml")).expect("config");
    let a1_id = config
        .lines()
        .find_map(|l| l.strip_prefix("id = "))
        .expect("the agent's id")
        .trim_matches('"')
        .to_string();
    let reason = refusal(raw_hello(&site, &server, &uuid(7), "a1", ""));
    assert!(reason.contains("name is taken"), "{reason}");
    assert!(!reason.contains(&a1_id), "{reason} names {a1_id}");
}

/// Item 6: text a stranger sends cannot forge a log line: it is escaped and cut.
#[test]
fn abuse_peer_text_cannot_forge_log_lines() {
    let site = Site::new(164);
    let (server, agent) = server_with_agent(&site);
    let forged = "{\"type\":\"hello\\n2030-01-01T00:00:00Z  INFO FORGED node started\"}";
    let answer = raw_first_frame(&site, &server, forged.as_bytes());
    assert!(matches!(answer, Some(ToAgent::Error { .. })), "{answer:?}");
    wait_until(WAIT, "the closed connection in the log", || {
        server
            .log_text()
            .contains("closing connection: malformed frame")
            .then_some(())
    });
    let log = server.log_text();
    assert!(
        !log.lines().any(|l| l.starts_with("2030-01-01")),
        "a forged line in the log:\n{log}"
    );
    assert!(
        log.contains("hello\\n2030-01-01"),
        "escaped, not dropped:\n{log}"
    );
    assert_still_serving(&server, &agent, 0);
}

/// Item 6: the served console and the desktop window carry a Content-Security-Policy.
#[test]
fn abuse_console_has_a_content_security_policy() {
    let site = Site::new(165);
    let mut server = site.server("srv", &[]);
    server.start();
    let pins = Pins::new([server.fingerprint.clone()]);
    let response = rt().block_on(async {
        let mut s = tls::connect(&server.listen, &pins, None, &[ALPN_HTTP])
            .await
            .expect("TLS connection");
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).to_lowercase()
    });
    let csp = response
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no CSP header in\n{response}"));
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src-tauri/tauri.conf.json"),
        )
        .expect("tauri.conf.json"),
    )
    .expect("json");
    let window = conf["app"]["security"]["csp"].as_str().unwrap_or("");
    assert!(
        window.contains("script-src 'self'"),
        "window CSP: {window:?}"
    );
}

/// Item 6: the admin token need not be on the command line (where `ps` shows it): a file or
/// `UNDERSTUDY_TOKEN` does.
#[test]
fn abuse_admin_token_from_a_file_or_the_environment() {
    let site = Site::new(166);
    let mut server = site.server("srv", &[]);
    server.start();
    let token_file = server.dir.join("admin.token");
    let url = format!("https://{}#{}", server.listen, server.fingerprint);
    let run = |extra: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(understudy_bin());
        cmd.env_remove("UNDERSTUDY_DATA_DIR")
            .env_remove("UNDERSTUDY_TOKEN")
            .args(["--node", &url])
            .args(extra)
            .args(["status", "--json"]);
        if let Some(t) = env {
            cmd.env("UNDERSTUDY_TOKEN", t);
        }
        cmd.output().expect("running understudy")
    };
    let from_file = run(&["--token-file", &token_file.display().to_string()], None);
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let token = std::fs::read_to_string(&token_file).expect("token");
    let from_env = run(&[], Some(token.trim()));
    assert!(
        from_env.status.success(),
        "{}",
        String::from_utf8_lossy(&from_env.stderr)
    );
    let none = run(&[], None);
    assert_eq!(none.status.code(), Some(2));
}
