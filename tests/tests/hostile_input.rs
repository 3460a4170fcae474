//! PRODUCT.md §4 rows that a hostile or broken client reaches through the port, against real
//! processes (issue 12, "Also"): bad frames after the Hello on an accepted link, frames and a
//! Hello trickled byte by byte, a client without a certificate, the admin API without
//! `Authorization` or with another scheme on every route, and cross-key configuration errors.
//! Each time the bad connection is closed or refused, the node keeps serving its agents, and
//! nothing is stored or changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use understudy_node::frame::{read_frame, write_frame, MAX_FRAME};
use understudy_node::store::Record;
use understudy_node::tls::{self, NodeIdentity, Pins, ALPN_WIRE};
use understudy_node::wire::{ToAgent, ToServer};
use understudy_system_tests::*;

fn hello(id: &str, name: &str) -> ToServer {
    ToServer::Hello {
        id: id.into(),
        name: name.into(),
        home: true,
        token: ENROLL_TOKEN.into(),
        probe: false,
        home_fingerprints: Vec::new(),
    }
}

fn frame_bytes(message: &ToServer) -> Vec<u8> {
    let payload = serde_json::to_vec(message).expect("json");
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

fn records(from: u64, n: u64) -> ToServer {
    ToServer::Records {
        records: (from..from + n)
            .map(|seq| Record {
                seq,
                name: format!("raw{}", seq % 3),
                value: seq as f64,
                time_ms: 1_700_000_000_000 + seq as i64,
                pair: None,
                kind: "metric".into(),
                detail: None,
                labels: Default::default(),
                pair_epoch: None,
            })
            .collect(),
        taken_for: None,
    }
}

/// Reads frames until one satisfies `want` (skipping views, acks of heartbeats, checks), the
/// connection ends, or 20 s pass.
async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    want: impl Fn(&ToAgent) -> bool,
) -> Option<ToAgent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, read_frame::<ToAgent, _>(stream)).await {
            Ok(Ok(Some(m))) if want(&m) => return Some(m),
            Ok(Ok(Some(ToAgent::Error { reason }))) => return Some(ToAgent::Error { reason }),
            Ok(Ok(Some(_))) => continue,
            _ => return None,
        }
    }
}

/// Whether the server closes the connection (EOF or reset) within 30 s.
async fn closed_by_server<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A raw `understudy/1` link that enrolled with the token and got its Welcome.
async fn enrolled_link(
    server: &Node,
    identity: Arc<NodeIdentity>,
    id: &str,
    name: &str,
) -> impl AsyncRead + AsyncWrite + Unpin {
    let pins = Pins::new([server.fingerprint.clone()]);
    let mut stream = tls::connect(&server.listen, &pins, Some(identity), &[ALPN_WIRE])
        .await
        .expect("TLS connection");
    write_frame(&mut stream, &hello(id, name))
        .await
        .expect("hello");
    match read_until(&mut stream, |m| matches!(m, ToAgent::Welcome { .. })).await {
        Some(ToAgent::Welcome { .. }) => stream,
        other => panic!("expected a welcome for {name}, got {other:?}"),
    }
}

const RAW_ID: &str = "6f1c1d0e-8f9a-4c2b-9d7e-3a5b6c7d8e9f";

/// A new connection made with `identity` that sends `hello` and returns the first answer.
fn ask_hello(server: &Node, identity: Arc<NodeIdentity>, hello: &ToServer) -> Option<ToAgent> {
    rt().block_on(async {
        let pins = Pins::new([server.fingerprint.clone()]);
        let mut stream = tls::connect(&server.listen, &pins, Some(identity), &[ALPN_WIRE])
            .await
            .expect("TLS connection");
        write_frame(&mut stream, hello).await.expect("hello");
        read_frame::<ToAgent, _>(&mut stream).await.ok().flatten()
    })
}

#[test]
fn bad_input_bad_frames_after_the_hello_close_that_link_only() {
    let site = Site::new(121);
    let (server, agent) = server_with_agent(&site);
    let (_, sent) = agent.send(5);
    let raw = client_identity(&site, "raw");
    let garbage = {
        let g = b"{\"type\": \"records\", \"records\": [{\"seq\": \"one\"}]}".to_vec();
        let mut f = (g.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&g);
        f
    };
    let oversized = {
        let mut f = ((MAX_FRAME as u32) + 1).to_be_bytes().to_vec();
        f.extend(std::iter::repeat_n(b'x', 4096));
        f
    };
    let not_json = {
        let mut f = 9u32.to_be_bytes().to_vec();
        f.extend_from_slice(b"not json!");
        f
    };
    for (what, bytes, expect) in [
        ("a records frame of the wrong shape", garbage, "malformed"),
        ("an oversized frame", oversized, "larger than"),
        ("a frame that is not JSON", not_json, "malformed"),
    ] {
        let (answer, closed) = rt().block_on(async {
            let mut link = enrolled_link(&server, raw.clone(), RAW_ID, "raw").await;
            // One good batch first: the link works until the bad frame.
            let _ = link.write_all(&bytes).await;
            let _ = link.flush().await;
            let answer = read_until(&mut link, |m| matches!(m, ToAgent::Error { .. })).await;
            (answer, closed_by_server(&mut link).await)
        });
        match answer {
            Some(ToAgent::Error { reason }) => {
                assert!(reason.contains(expect), "{what}: {reason}")
            }
            other => panic!("{what}: expected an error frame, got {other:?}"),
        }
        assert!(closed, "{what}: the connection is closed");
    }
    wait_until(WAIT, "the closed links in the log", || {
        (server.log_text().matches("closing connection").count() >= 3).then_some(())
    });
    assert_still_serving(&server, &agent, sent);
    let stored: Vec<RecordView> = server.records().expect("records");
    assert!(
        stored.iter().all(|r| r.agent == "a1"),
        "nothing of the bad links was stored"
    );
    assert_eq!(
        server.agent_entry("raw").expect("enrolled by token").state,
        "disconnected",
        "the bad link is gone"
    );
}

#[test]
fn bad_input_frames_trickled_after_the_hello_are_read_whole() {
    let site = Site::new(122);
    let (server, agent) = server_with_agent(&site);
    let raw = client_identity(&site, "trickler");
    let acked = rt().block_on(async {
        let mut link = enrolled_link(&server, raw, RAW_ID, "trickler").await;
        let mut upto = 0;
        for batch in 0..3u64 {
            // A heartbeat the server answers while the next frame is still arriving: its
            // answer must not cost the half-read frame (a select that drops a read would).
            let heartbeat = frame_bytes(&ToServer::Heartbeat {
                id: batch + 1,
                pairs: vec![],
            });
            link.write_all(&heartbeat).await.expect("heartbeat");
            for byte in frame_bytes(&records(batch * 10 + 1, 10)) {
                link.write_all(&[byte]).await.expect("a byte");
                link.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            match read_until(&mut link, |m| matches!(m, ToAgent::Ack { .. })).await {
                Some(ToAgent::Ack { upto: u }) => upto = u,
                other => panic!("batch {batch}: expected an ack, got {other:?}"),
            }
        }
        upto
    });
    assert_eq!(acked, 30, "every trickled record acknowledged");
    wait_records(&[&server], &[("trickler", 30)]);
    assert_still_serving(&server, &agent, 0);
}

#[test]
fn bad_input_hello_trickled_byte_by_byte_completes_or_is_closed_in_bounded_time() {
    let site = Site::new(123);
    let (server, agent) = server_with_agent(&site);
    let pins = Pins::new([server.fingerprint.clone()]);
    // A Hello sent a byte at a time, but within a few seconds: it completes.
    let welcome = rt().block_on(async {
        let mut stream = tls::connect(
            &server.listen,
            &pins,
            Some(client_identity(&site, "slow")),
            &[ALPN_WIRE],
        )
        .await
        .expect("TLS connection");
        for byte in frame_bytes(&hello(RAW_ID, "slow")) {
            stream.write_all(&[byte]).await.expect("a byte");
            stream.flush().await.expect("flush");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        read_until(&mut stream, |m| matches!(m, ToAgent::Welcome { .. })).await
    });
    assert!(
        matches!(welcome, Some(ToAgent::Welcome { .. })),
        "a slow but steady Hello is welcomed: {welcome:?}"
    );
    // A Hello that never ends (a byte every 500 ms, for ever) is closed by the server: the
    // connection costs bounded time. The bound is the product's (a Hello timeout), far under 60 s.
    let (closed_after, bytes_sent) = rt().block_on(async {
        let stream = tls::connect(
            &server.listen,
            &pins,
            Some(client_identity(&site, "endless")),
            &[ALPN_WIRE],
        )
        .await
        .expect("TLS connection");
        let (mut rd, mut wr) = tokio::io::split(stream);
        let started = Instant::now();
        let writer = async {
            let bytes = frame_bytes(&hello("7f1c1d0e-8f9a-4c2b-9d7e-3a5b6c7d8e90", "endless"));
            let mut sent = 0;
            // Never the last byte: the Hello is never complete.
            for byte in bytes.iter().take(bytes.len() - 1).cycle().take(120) {
                if wr.write_all(&[*byte]).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            sent
        };
        let reader = async {
            let mut buf = [0u8; 256];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            closed = reader => (Some(closed), 0),
            sent = writer => (None, sent),
        }
    });
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!("the endless Hello was still open after {bytes_sent} bytes (60 s)")
    });
    assert!(closed_after < Duration::from_secs(60));
    assert!(
        server.agent_entry("endless").is_none(),
        "nothing known of it"
    );
    assert_still_serving(&server, &agent, 0);
}

#[test]
fn bad_input_client_without_a_certificate_is_refused() {
    let site = Site::new(124);
    let (server, agent) = server_with_agent(&site);
    let pins = Pins::new([server.fingerprint.clone()]);
    for first in [
        hello(RAW_ID, "anonymous"),
        ToServer::PeerPoll {
            replicate: true,
            site_version: 0,
            records_after: 0,
            events_after: 0,
            outbox_after: 0,
        },
        records(1, 5),
    ] {
        let (answer, closed) = rt().block_on(async {
            // No client identity at all: only the server is authenticated.
            let mut stream = match tls::connect(&server.listen, &pins, None, &[ALPN_WIRE]).await {
                Ok(s) => s,
                // Refused during the handshake: as good as refused after it.
                Err(_) => return (None, true),
            };
            let _ = write_frame(&mut stream, &first).await;
            let answer = read_until(&mut stream, |_| true).await;
            (answer, closed_by_server(&mut stream).await)
        });
        match &answer {
            None => {}
            Some(ToAgent::Error { reason }) => {
                assert!(reason.contains("certificate"), "{reason}")
            }
            Some(other) => panic!("a client without a certificate was answered {other:?}"),
        }
        assert!(closed, "the connection is closed");
    }
    assert!(
        server.agent_entry("anonymous").is_none(),
        "not even pending"
    );
    assert_still_serving(&server, &agent, 0);
    assert!(
        server
            .records()
            .expect("records")
            .iter()
            .all(|r| r.agent == "a1"),
        "nothing stored"
    );
}

// ---------------------------------------------------------------------------------------------
// The admin API without valid credentials: 401 on every route, no action taken.

/// Every admin route with a body that would change something if it were authorized.
fn every_route(agent: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/api/status".into(), None),
        ("GET", "/api/records".into(), None),
        ("GET", "/api/events".into(), None),
        ("GET", "/api/cert".into(), None),
        (
            "POST",
            "/api/cert/generate".into(),
            Some(json!({"dns": ["x.example"]})),
        ),
        (
            "POST",
            "/api/send".into(),
            Some(json!({"records": [{"name": "cpu", "value": 1.0}]})),
        ),
        (
            "POST",
            "/api/link/trust".into(),
            Some(json!({"fingerprint": "ab".repeat(32)})),
        ),
        ("GET", "/api/settings".into(), None),
        (
            "POST",
            "/api/settings".into(),
            Some(json!({"ui.notifications": false})),
        ),
        ("GET", "/api/pairs".into(), None),
        (
            "POST",
            "/api/pairs".into(),
            Some(json!({"name": "new", "primary": agent, "secondary": "solo"})),
        ),
        ("DELETE", "/api/pairs/web".into(), None),
        ("POST", "/api/pairs/web/force-failover".into(), None),
        ("POST", "/api/pairs/web/revert".into(), None),
        ("GET", "/api/agents".into(), None),
        ("POST", format!("/api/agents/{agent}/accept"), None),
        ("POST", format!("/api/agents/{agent}/reject"), None),
        ("POST", format!("/api/agents/{agent}/recall"), None),
        ("POST", "/api/ha/standby".into(), None),
        ("POST", "/api/role".into(), Some(json!({"server": "off"}))),
        ("GET", "/api/checks".into(), None),
        (
            "POST",
            "/api/checks".into(),
            Some(json!({"name": "new", "kind": "tcp", "target": "127.0.0.1:9", "agent": "solo"})),
        ),
        ("DELETE", "/api/checks/db".into(), None),
        ("GET", "/api/nosuchroute".into(), None),
    ]
}

#[test]
fn bad_input_admin_api_without_authorization_or_another_scheme_is_401_on_every_route() {
    let site = Site::new(125);
    let mut node = site.init("solo", "standalone", &[], &[]);
    let mut other = site.init("stranger", "agent", &[node.url()], FAST_AGENT);
    node.start();
    other.start();
    // Something every action could change: a pending agent, a pair, a check, the settings.
    wait_until(WAIT, "stranger pending", || node.agent_entry("stranger"));
    node.add_pair("web", "solo", "stranger", &[]);
    node.cli_ok(&[
        "check",
        "add",
        "db",
        "--kind",
        "tcp",
        "--target",
        "127.0.0.1:9",
        "--agent",
        "solo",
    ]);
    let token = std::fs::read_to_string(node.dir.join("admin.token")).expect("admin token");
    let token = token.trim();
    let config_before = std::fs::read(node.dir.join("config.toml")).expect("config");
    let cert_before = std::fs::read(node.dir.join("cert.pem")).ok();
    let before = node.status_now();
    let events_before = node.events("");

    let basic = {
        // base64("admin:" + token) without a dependency: the scheme is what matters.
        fn b64(input: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        }
        format!("Basic {}", b64(format!("admin:{token}").as_bytes()))
    };
    let headers: Vec<Option<String>> = vec![
        None,
        Some(basic),
        Some(format!("Basic {token}")),
        Some(format!("Token {token}")),
        Some(format!("Digest username=\"admin\", response=\"{token}\"")),
        Some(token.to_string()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Bearer {}", "0".repeat(64))),
        Some(format!("Bearer {token}x")),
    ];
    let pins = Pins::new([node.fingerprint.clone()]);
    let mut answers = 0;
    rt().block_on(async {
        for (method, path, body) in every_route("stranger") {
            for header in &headers {
                let (status, text) = raw_http(
                    &node.listen,
                    &pins,
                    method,
                    &path,
                    header.as_deref(),
                    body.as_ref(),
                )
                .await;
                assert_eq!(
                    status, 401,
                    "{method} {path} with Authorization {header:?}: {text}"
                );
                assert!(text.contains("token"), "{text}");
                answers += 1;
            }
        }
        // The right token works on the same connection code: the 401s were the credentials.
        let (status, text) = raw_http(
            &node.listen,
            &pins,
            "GET",
            "/api/status",
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{text}");
    });
    assert_eq!(answers, every_route("x").len() * headers.len());

    // No action was taken.
    assert_eq!(
        std::fs::read(node.dir.join("config.toml")).expect("config"),
        config_before,
        "roles and settings unchanged"
    );
    assert_eq!(
        std::fs::read(node.dir.join("cert.pem")).ok(),
        cert_before,
        "no certificate generated"
    );
    let after = node.status_now();
    assert_eq!(after.node, before.node);
    assert_eq!(after.pairs.len(), 1);
    assert_eq!(after.pairs[0].active, before.pairs[0].active);
    assert!(
        node.agent_entry("stranger").expect("listed").pending,
        "still pending"
    );
    assert_eq!(
        after.link.as_ref().expect("the agent role's link").cached,
        0,
        "nothing handed to the agent"
    );
    let checks = node.cli_ok(&["check", "list"]);
    assert!(checks.contains("db") && !checks.contains("new"), "{checks}");
    let events_after = node.events("");
    let codes = |v: &[EventView]| -> Vec<String> {
        v.iter()
            .map(|e| e.code.clone())
            .filter(|c| c != "AGENT_PENDING")
            .collect()
    };
    assert_eq!(codes(&events_after), codes(&events_before), "no new events");
}

// ---------------------------------------------------------------------------------------------
// Configuration errors across keys: exit 2 with file and line, nothing changed.

#[test]
fn bad_input_cross_key_config_errors_name_file_and_line() {
    let site = Site::new(126);
    let node = site.init("n1", "server", &[], &[]);
    let path = node.dir.join("config.toml");
    let good = std::fs::read_to_string(&path).expect("config");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "failover.mode without a peer",
            good.replace("mode = \"off\"", "mode = \"primary\""),
            "peer = \"\"",
        ),
        (
            "no role at all",
            good.replace("server = true", "server = false"),
            "server = false",
        ),
        (
            "a zero heartbeat",
            good.replace("heartbeat = \"1s\"", "heartbeat = \"0\""),
            "heartbeat = \"0\"",
        ),
        (
            "an empty name",
            good.replace("name = \"n1\"", "name = \"  \""),
            "name = \"  \"",
        ),
    ];
    for (what, text, bad_line) in cases {
        assert_ne!(text, good, "{what}: the file was changed");
        std::fs::write(&path, &text).expect("write");
        let line = text
            .lines()
            .position(|l| l.trim() == bad_line)
            .unwrap_or_else(|| panic!("{what}: {bad_line:?} in\n{text}"))
            + 1;
        let out = node
            .serve_once(Duration::from_secs(30))
            .expect("serve exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:{line}:", path.display())),
            "{what}: names the file and line {line}: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("config"),
            text,
            "{what}: nothing is changed"
        );
    }
    assert!(
        !node.dir.join("store.db").exists(),
        "a node with a bad config never started"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 12, item 3: an enrolled agent acts only within its role.

/// A raw enrolled agent that is not a member of pair "web" (a1 and a2) sends a failed hook
/// result for it and records under its alias: the hook result is refused and logged (the pair
/// stays normal, no HOOK_FAILED), the records are not stored (but acknowledged, so the agent
/// does not resend them), and its own records without an alias are stored.
#[test]
fn security_an_agent_cannot_report_hooks_or_records_for_a_pair_it_is_not_in() {
    let site = Site::new(234);
    let token = format!("server.enroll_token={ENROLL_TOKEN}");
    let agent_token = format!("agent.enroll_token={ENROLL_TOKEN}");
    let agent_sets = [&[&agent_token[..]][..], FAST_AGENT].concat();
    let mut server = site.server("srv", &[&token]);
    let mut a1 = site.agent("a1", &[&server], &agent_sets);
    let mut a2 = site.agent("a2", &[&server], &agent_sets);
    server.start();
    a1.start();
    a2.start();
    a1.wait_link("home", Some(&server));
    a2.wait_link("home", Some(&server));
    server.add_pair("web", "a1", "a2", &["--switchback", "manual"]);
    server.wait_pair("web", "normal", |p| p.state == "normal");
    let raw = client_identity(&site, "raw");
    let acked = rt().block_on(async {
        let mut link = enrolled_link(&server, raw.clone(), RAW_ID, "raw").await;
        let forged_hook = ToServer::HookResult {
            pair: "web".into(),
            hook: "on_activate".into(),
            epoch: 1,
            error: Some("forged failure".into()),
        };
        write_frame(&mut link, &forged_hook).await.expect("hook");
        let mut forged = records(1, 3);
        let mut own = records(4, 2);
        if let ToServer::Records { records, .. } = &mut forged {
            for r in records.iter_mut() {
                r.pair = Some("web".into());
            }
        }
        write_frame(&mut link, &forged).await.expect("records");
        let first = read_until(&mut link, |m| matches!(m, ToAgent::Ack { .. })).await;
        if let ToServer::Records { records, .. } = &mut own {
            for r in records.iter_mut() {
                r.pair = None;
            }
        }
        write_frame(&mut link, &own).await.expect("records");
        let second = read_until(&mut link, |m| matches!(m, ToAgent::Ack { .. })).await;
        (first, second)
    });
    assert!(
        matches!(acked.0, Some(ToAgent::Ack { upto: 3 })),
        "refused records are acknowledged: {acked:?}"
    );
    assert!(
        matches!(acked.1, Some(ToAgent::Ack { upto: 5 })),
        "{acked:?}"
    );
    wait_until(WAIT, "both refusals in the log", || {
        let log = server.log_text();
        (log.contains("refused a hook result from raw for pair web: raw is not a member")
            && log.contains("refused records from raw under pair web: raw is not a member"))
        .then_some(())
    });
    let stored = server.records().expect("records");
    let from_raw: Vec<&RecordView> = stored.iter().filter(|r| r.agent == "raw").collect();
    assert_eq!(from_raw.len(), 2, "only its own records: {from_raw:?}");
    assert!(from_raw.iter().all(|r| r.pair.is_none()));
    assert!(
        server.events("HOOK_FAILED").is_empty(),
        "no forged hook failure"
    );
    assert_eq!(server.pair("web").expect("pair").state, "normal");
    // Each refusal is an event too (a warning that does not notify).
    wait_until(WAIT, "HOOK_RESULT_REFUSED and RECORDS_REFUSED", || {
        ["HOOK_RESULT_REFUSED", "RECORDS_REFUSED"]
            .iter()
            .all(|code| server.events(code).len() == 1)
            .then_some(())
    });
}

/// Issue 12 item 3, the lease: raw is the secondary of pair "web" while a1 holds its duty under
/// pair epoch 1. Records raw sends under the alias claiming epoch 1, and others claiming no epoch,
/// are not stored (but acknowledged), each refusal logged with the holder's name; a1's own check
/// runs under the alias, which carry the epoch a1 holds, are stored.
#[test]
fn security_a_member_cannot_send_records_under_an_epoch_the_other_member_held() {
    let site = Site::new(243);
    let token = format!("server.enroll_token={ENROLL_TOKEN}");
    let agent_token = format!("agent.enroll_token={ENROLL_TOKEN}");
    let agent_sets = [&[&agent_token[..]][..], FAST_AGENT].concat();
    let mut server = site.server("srv", &[&token]);
    let mut a1 = site.agent("a1", &[&server], &agent_sets);
    server.start();
    a1.start();
    a1.wait_link("home", Some(&server));
    let raw = client_identity(&site, "raw");
    // One runtime for the raw link's whole life.
    let rt = rt();
    let mut link = rt.block_on(enrolled_link(&server, raw.clone(), RAW_ID, "raw"));
    server.add_pair("web", "a1", "raw", &["--switchback", "manual"]);
    server.wait_pair("web", "a1 active under epoch 1", |p| {
        p.active == "primary" && p.epoch == 1
    });
    let target = server.listen.clone();
    server.cli_ok(&[
        "check", "add", "up", "--kind", "tcp", "--target", &target, "--every", "200ms", "--pair",
        "web",
    ]);
    let acked = rt.block_on(async {
        let mut claimed = records(1, 3);
        let mut bare = records(4, 2);
        for (batch, epoch) in [(&mut claimed, Some(1)), (&mut bare, None)] {
            if let ToServer::Records { records, .. } = batch {
                for r in records.iter_mut() {
                    r.pair = Some("web".into());
                    r.pair_epoch = epoch;
                }
            }
        }
        write_frame(&mut link, &claimed).await.expect("records");
        let first = read_until(&mut link, |m| matches!(m, ToAgent::Ack { .. })).await;
        write_frame(&mut link, &bare).await.expect("records");
        let second = read_until(&mut link, |m| matches!(m, ToAgent::Ack { .. })).await;
        (first, second)
    });
    assert!(
        matches!(
            acked,
            (
                Some(ToAgent::Ack { upto: 3 }),
                Some(ToAgent::Ack { upto: 5 })
            )
        ),
        "refused records are acknowledged: {acked:?}"
    );
    wait_until(WAIT, "both refusals in the log", || {
        let log = server.log_text();
        (log.contains("refused records from raw under pair web: made under pair epoch 1, which a1 held")
            && log.contains("refused records from raw under pair web: they carry no pair epoch and raw does not hold the duty"))
        .then_some(())
    });
    wait_until(WAIT, "a1's check runs stored under the alias", || {
        let stored = server.records()?;
        stored
            .iter()
            .any(|r| r.agent == "a1" && r.pair.as_deref() == Some("web"))
            .then_some(())
    });
    let stored = server.records().expect("records");
    assert!(
        stored.iter().all(|r| r.agent != "raw"),
        "nothing of raw's stored: {stored:?}"
    );
    assert_eq!(
        server.events("RECORDS_REFUSED").len(),
        1,
        "one event per agent and pair"
    );
}

/// The raw agent's link made with certificate `old`, over which it announced `new` (CT-2).
async fn announced_link(
    server: &Node,
    old: &Arc<NodeIdentity>,
    new: &NodeIdentity,
) -> impl AsyncRead + AsyncWrite + Unpin {
    let mut link = enrolled_link(server, old.clone(), RAW_ID, "raw").await;
    let announce = ToServer::CertRotated {
        fingerprint: new.fingerprint(),
    };
    write_frame(&mut link, &announce).await.expect("announce");
    link
}

/// CT-2, issue 12 item 3: an agent's announced certificate replaces the stored fingerprint only
/// when the agent connects with it (proof that it holds the key). Until then its current
/// certificate keeps working; afterwards the old one is refused.
#[test]
fn security_an_agent_certificate_change_needs_a_connection_with_the_new_key() {
    let site = Site::new(235);
    let (server, agent) = server_with_agent(&site);
    let (_, sent) = agent.send(5);
    let old = client_identity(&site, "raw-old");
    let new = client_identity(&site, "raw-new");
    rt().block_on(async {
        let mut link = announced_link(&server, &old, &new).await;
        // A frame after it, answered: the announcement was read before the link closes.
        write_frame(&mut link, &records(1, 1))
            .await
            .expect("records");
        read_until(&mut link, |m| matches!(m, ToAgent::Ack { .. })).await;
    });
    let fingerprint = |server: &Node| {
        server
            .agent_entry("raw")
            .expect("raw")
            .fingerprint
            .unwrap_or_default()
    };
    assert_eq!(
        fingerprint(&server),
        old.fingerprint(),
        "not replaced on the announcement alone"
    );
    // The current certificate still works.
    rt().block_on(enrolled_link(&server, old.clone(), RAW_ID, "raw"));
    // Connecting with the announced one proves the key: it is taken, and the old one retires.
    rt().block_on(enrolled_link(&server, new.clone(), RAW_ID, "raw"));
    wait_until(WAIT, "the new fingerprint stored", || {
        (fingerprint(&server) == new.fingerprint()).then_some(())
    });
    let refused = ask_hello(&server, old, &hello(RAW_ID, "raw"));
    assert!(
        matches!(&refused, Some(ToAgent::Refused { reason, .. }) if reason.contains("does not match")),
        "the old certificate is refused now: {refused:?}"
    );
    assert_still_serving(&server, &agent, sent);
}

/// Issue 12 item 3 (CT-2): an agent's announced certificate is kept in the store with its entry.
/// The server restarts before the agent reconnects; the agent connecting with the new key is
/// still accepted without an operator, and its old certificate is refused from then on.
#[test]
fn security_an_announced_agent_certificate_survives_a_restart_of_the_server() {
    let site = Site::new(242);
    let mut server = site.server("srv", &[&format!("server.enroll_token={ENROLL_TOKEN}")]);
    server.start();
    let old = client_identity(&site, "raw-old");
    let new = client_identity(&site, "raw-new");
    rt().block_on(announced_link(&server, &old, &new));
    wait_until(WAIT, "the announcement taken", || {
        server
            .log_text()
            .contains("raw announced certificate")
            .then_some(())
    });
    server.stop();
    server.start();
    rt().block_on(enrolled_link(&server, new.clone(), RAW_ID, "raw"));
    wait_until(WAIT, "the new key is the agent's now", || {
        (server.agent_entry("raw")?.fingerprint == Some(new.fingerprint())).then_some(())
    });
    let refused = ask_hello(&server, old, &hello(RAW_ID, "raw"));
    assert!(
        matches!(&refused, Some(ToAgent::Refused { reason, .. }) if reason.contains("does not match")),
        "the old certificate is refused now: {refused:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// PRODUCT.md §4 rows, issue 12: a broken or hostile server, and a hostile peer.

/// A frame that is not JSON.
fn not_json_frame() -> Vec<u8> {
    let mut f = 9u32.to_be_bytes().to_vec();
    f.extend_from_slice(b"not json!");
    f
}

/// A frame announcing more than the frame limit.
fn oversized_frame() -> Vec<u8> {
    let mut f = ((MAX_FRAME as u32) + 1).to_be_bytes().to_vec();
    f.extend(std::iter::repeat_n(b'x', 4096));
    f
}

/// §4, bad frames from a server to an agent: the agent's home answers garbage, an oversized
/// frame or the wrong message for the state, and then presents the wrong certificate. The agent logs each clearly, keeps its cache, switches to its standby
/// server as usual and loses nothing.
#[test]
fn bad_input_bad_frames_from_a_server_to_an_agent_lose_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let site = Site::new(236);
    let token = format!("server.enroll_token={ENROLL_TOKEN}");
    let agent_token = format!("agent.enroll_token={ENROLL_TOKEN}");
    let home_key = client_identity(&site, "home");
    let home_addr = site.addr();
    let mut standby = site.server("standby", &[&token]);
    standby.start();
    let mut agent = site.init(
        "a",
        "agent",
        &[
            format!("https://{home_addr}#{}", home_key.fingerprint()),
            standby.url(),
        ],
        &[&[&agent_token[..]][..], FAST_AGENT].concat(),
    );
    let hellos = Arc::new(AtomicUsize::new(0));
    let counter = hellos.clone();
    let bad_home = FakeServer::start(&home_addr, home_key, move |msg, _| match msg {
        ToServer::Hello { .. } => match counter.fetch_add(1, Ordering::Relaxed) % 3 {
            0 => not_json_frame(),
            1 => oversized_frame(),
            _ => frame_of(&ToAgent::MergeDone { inserted: 7 }),
        },
        // Records are never acknowledged here.
        _ => Vec::new(),
    });
    agent.start();
    let (_, first) = agent.send(50);
    wait_until(WAIT, "every kind of bad answer tried", || {
        (hellos.load(Ordering::Relaxed) >= 6).then_some(())
    });
    let (_, last) = agent.send(50);
    assert!(last > first);
    agent.wait_link("standby", Some(&standby));
    wait_records(&[&standby], &[("a", last)]);
    let log = agent.log_text();
    for expect in ["malformed", "larger than", "unexpected answer to hello"] {
        assert!(log.contains(expect), "the agent's log says {expect:?}");
    }
    // Then the home address presents a certificate that is not the pinned one.
    drop(bad_home);
    let wrong = client_identity(&site, "wrong");
    let wrong_fp = wrong.fingerprint();
    let imposter = FakeServer::start(&home_addr, wrong, |_, _| {
        frame_of(&ToAgent::Welcome {
            cluster: None,
            epoch: 1,
            checks: Value::Null,
            peer: Vec::new(),
        })
    });
    // The agent probes its home every switchback interval (1 s here): never past the handshake.
    holds_for(
        Duration::from_secs(4),
        "the agent stays on its standby and says nothing to the imposter",
        || {
            let received = imposter.received.load(Ordering::Relaxed);
            let state = agent.link_state();
            if received == 0 && state.as_deref() == Some("standby") {
                Ok(())
            } else {
                Err(format!("{received} frames to {wrong_fp}, link {state:?}"))
            }
        },
    );
    let (_, more) = agent.send(20);
    wait_records(&[&standby], &[("a", more)]);
    assert_eq!(agent.link_state().as_deref(), Some("standby"));
}

/// §4, hostile peer replies and merges: a "peer" holding the peer's key answers a STANDBY's
/// polls with a frame that is not JSON, an oversized frame, and a reply whose record has a
/// malformed seq, between good replies; and pushes a malformed and an oversized Merge. Each bad
/// one is refused whole with a clear log line; only the good replies' record is stored.
#[test]
fn bad_input_hostile_peer_replies_and_merges_are_refused_whole() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let site = Site::new(237);
    let peer_key = client_identity(&site, "peer");
    let peer_addr = site.addr();
    // A long failover timeout: the node stays a non-acting (replicating) server throughout.
    let mut s = site.server(
        "s",
        &[
            &format!(
                "failover.peer=https://{peer_addr}#{}",
                peer_key.fingerprint()
            ),
            "failover.mode=secondary",
            "failover.sync_interval=200ms",
            "failover.failover_timeout=10m",
        ],
    );
    let good_record = |seq: u64| understudy_node::store::StoredRecord {
        rowid: seq,
        agent_id: RAW_ID.into(),
        agent_name: "good".into(),
        record: Record {
            seq,
            name: "replicated".into(),
            value: 1.0,
            time_ms: 1_700_000_000_000,
            pair: None,
            kind: "metric".into(),
            detail: None,
            labels: Default::default(),
            pair_epoch: None,
        },
        taken_for: None,
    };
    let (fp, listen) = (peer_key.fingerprint(), peer_addr.clone());
    let reply = move |records| ToAgent::PeerReply {
        state: understudy_node::wire::PeerState {
            name: "peer".into(),
            mode: "primary".into(),
            state: "active".into(),
            epoch: 1,
            site_version: 0,
            fingerprint: fp.clone(),
            listen: listen.clone(),
        },
        site: None,
        records,
        events: Vec::new(),
        outbox: Vec::new(),
        forwarded: None,
        more: false,
    };
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let fake = FakeServer::start(&peer_addr, peer_key.clone(), move |msg, _| {
        let ToServer::PeerPoll { .. } = msg else {
            return Vec::new();
        };
        match counter.fetch_add(1, Ordering::Relaxed) % 4 {
            0 => not_json_frame(),
            1 => oversized_frame(),
            2 => {
                let mut v = serde_json::to_value(reply(vec![good_record(2)])).expect("json");
                v["records"][0]["seq"] = json!("one");
                let payload = serde_json::to_vec(&v).expect("json");
                let mut f = (payload.len() as u32).to_be_bytes().to_vec();
                f.extend(payload);
                f
            }
            _ => frame_of(&reply(vec![good_record(1)])),
        }
    });
    s.start();
    wait_until(WAIT, "eight polls answered", || {
        (polls.load(Ordering::Relaxed) >= 8).then_some(())
    });
    // Merges pushed by the "peer": malformed, then oversized.
    let mut bad_merge = serde_json::to_value(ToServer::Merge {
        records: vec![good_record(3)],
    })
    .expect("json");
    bad_merge["records"][0]["seq"] = json!(-1);
    let bad_merge = {
        let payload = serde_json::to_vec(&bad_merge).expect("json");
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend(payload);
        f
    };
    for (what, bytes) in [
        ("malformed merge", bad_merge),
        ("oversized merge", oversized_frame()),
    ] {
        let closed = rt().block_on(async {
            let pins = Pins::new([s.fingerprint.clone()]);
            let mut link = tls::connect(&s.listen, &pins, Some(peer_key.clone()), &[ALPN_WIRE])
                .await
                .expect("TLS connection");
            let _ = link.write_all(&bytes).await;
            let _ = link.flush().await;
            closed_by_server(&mut link).await
        });
        assert!(closed, "{what}: the connection is closed");
    }
    wait_until(WAIT, "the good record replicated", || {
        let records = s.records()?;
        records.iter().any(|r| r.agent == "good").then_some(())
    });
    let records = s.records().expect("records");
    let stored: Vec<&RecordView> = records.iter().filter(|r| r.agent == "good").collect();
    assert_eq!(stored.len(), 1, "only the good reply's record: {stored:?}");
    assert_eq!(stored[0].seq, 1);
    let log = s.log_text();
    for expect in [
        "refused a reply from the peer: malformed",
        "is larger than the 1048576-byte limit",
        "closing connection",
    ] {
        assert!(log.contains(expect), "the log says {expect:?}");
    }
    assert!(s.status().is_some(), "the node still answers");
    drop(fake);
}
