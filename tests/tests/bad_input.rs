//! Issue 3, item 6: PRODUCT.md §4 "bad input and faults", one test each, against real processes:
//! the bad connection, agent or request is refused with its reason; the node keeps serving and
//! nothing is stored or changed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use understudy_node::frame::{read_frame, MAX_FRAME};
use understudy_node::http_client::AdminClient;
use understudy_node::tls::{self, NodeIdentity, Pins, ALPN_WIRE};
use understudy_node::wire::ToAgent;
use understudy_system_tests::*;

/// Opens a raw `understudy/1` TLS connection to `server` with a client certificate of its own,
/// writes `bytes`, and returns what the server answered before it closed the connection.
fn raw_wire_exchange(site: &Site, server: &Node, bytes: Vec<u8>) -> (Option<ToAgent>, bool) {
    let client_dir = site.dir().join("raw-client");
    std::fs::create_dir_all(&client_dir).expect("client dir");
    tls::load_or_generate(&client_dir).expect("a client certificate");
    let identity = NodeIdentity::load(&client_dir).expect("the client identity");
    let pins = Pins::new([server.fingerprint.clone()]);
    rt().block_on(async {
        let mut stream = tls::connect(&server.listen, &pins, Some(identity), &[ALPN_WIRE])
            .await
            .expect("TLS connection");
        // The server may close while we still write (an oversized header is enough for it).
        let _ = stream.write_all(&bytes).await;
        let _ = stream.flush().await;
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            read_frame::<ToAgent, _>(&mut stream),
        )
        .await
        .expect("an answer or a close within 20s")
        .ok()
        .flatten();
        // After the answer the server closes: reading ends (EOF or reset), it does not hang.
        let mut rest = [0u8; 64];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(20), stream.read(&mut rest)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        (answer, closed)
    })
}

#[test]
fn bad_input_malformed_frame_closes_that_connection_only() {
    let site = Site::new(21);
    let (server, agent) = server_with_agent(&site);
    let garbage = b"{this is not json at all".to_vec();
    let mut frame = (garbage.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&garbage);
    let (answer, closed) = raw_wire_exchange(&site, &server, frame);
    match answer {
        Some(ToAgent::Error { reason }) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("expected an error frame naming the malformed message, got {other:?}"),
    }
    assert!(closed, "the connection is closed");
    assert_still_serving(&server, &agent, 0);
    wait_until(WAIT, "the closed connection in the log", || {
        server
            .log_text()
            .contains("closing connection")
            .then_some(())
    });
    assert!(
        server.agent_entry("raw-client").is_none(),
        "no state changed"
    );
}

#[test]
fn bad_input_oversized_frame_closes_that_connection_only() {
    let site = Site::new(22);
    let (server, agent) = server_with_agent(&site);
    let len = (MAX_FRAME as u32) + 1;
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 4096));
    let (answer, closed) = raw_wire_exchange(&site, &server, bytes);
    match answer {
        Some(ToAgent::Error { reason }) => assert!(reason.contains("larger than"), "{reason}"),
        other => panic!("expected an error frame naming the oversized message, got {other:?}"),
    }
    assert!(closed, "the connection is closed");
    assert_still_serving(&server, &agent, 0);
}

#[test]
fn bad_input_wrong_fingerprint_never_connects() {
    let site = Site::new(23);
    let mut server = site.server("srv", &["server.enroll_token=tok-0123456789abcdef"]);
    let other = site.server("other", &[]);
    // The agent pins another node's certificate for srv's address.
    let wrong = format!("https://{}#{}", server.listen, other.fingerprint);
    let mut agent = site.init(
        "a1",
        "agent",
        &[wrong],
        &[&["agent.enroll_token=tok-0123456789abcdef"][..], FAST_AGENT].concat(),
    );
    server.start();
    agent.start();
    let link = wait_ok(
        WAIT,
        "the agent to say the fingerprint is not pinned",
        || {
            let link = agent.link().ok_or("no status")?;
            if link.error.as_deref().unwrap_or("").contains("not pinned") {
                Ok(link)
            } else {
                Err(format!("{link:?}"))
            }
        },
    );
    assert_ne!(link.state, "home");
    let error = link.error.as_deref().unwrap_or("");
    assert!(
        error.contains(&server.fingerprint),
        "the refusal shows the presented fingerprint: {error}"
    );
    agent.send(5);
    // The agent never got as far as introducing itself: the server knows nothing of it.
    assert!(server.agent_entry("a1").is_none());
    assert_eq!(
        server.records().expect("records").len(),
        0,
        "nothing stored"
    );
    assert!(agent.link_now().cached >= 5, "kept in the cache");
}

#[test]
fn bad_input_unknown_agent_is_refused_with_its_reason_on_both_sides() {
    let site = Site::new(24);
    let mut server = site.server("srv", &[]);
    let mut agent = site.init("stranger", "agent", &[server.url()], FAST_AGENT);
    server.start();
    agent.start();
    wait_ok(WAIT, "the agent's reason", || {
        let link = agent.link().ok_or("no status")?;
        if link
            .error
            .as_deref()
            .unwrap_or("")
            .contains("waiting for an operator")
        {
            Ok(())
        } else {
            Err(format!("{link:?}"))
        }
    });
    let pending = server.cli_ok(&["agent", "list"]);
    assert!(
        pending.contains("stranger"),
        "the server lists it as pending: {pending}"
    );
    assert!(server.agent_entry("stranger").expect("listed").pending);
    server.wait_event("AGENT_PENDING", |e| e.subject == "stranger");
    agent.send(5);
    assert_eq!(
        server.records().expect("records").len(),
        0,
        "nothing stored"
    );
}

#[test]
fn bad_input_wrong_enrollment_token_is_refused_with_its_reason_on_both_sides() {
    let site = Site::new(25);
    let mut server = site.server("srv", &["server.enroll_token=right-token-0123456789abcdef"]);
    let mut agent = site.init(
        "a1",
        "agent",
        &[server.url()],
        &[
            &["agent.enroll_token=wrong-token-0123456789abcdef"][..],
            FAST_AGENT,
        ]
        .concat(),
    );
    server.start();
    agent.start();
    wait_ok(WAIT, "the agent's reason", || {
        let link = agent.link().ok_or("no status")?;
        if link
            .error
            .as_deref()
            .unwrap_or("")
            .contains("wrong enrollment token")
        {
            Ok(())
        } else {
            Err(format!("{link:?}"))
        }
    });
    let refused = server.wait_event("AGENT_REFUSED", |e| e.subject == "a1");
    assert!(
        refused.sentence.contains("wrong enrollment token"),
        "{refused:?}"
    );
    agent.send(5);
    assert!(server
        .agent_entry("a1")
        .is_none_or(|e| e.state != "connected"));
    assert_eq!(
        server.records().expect("records").len(),
        0,
        "nothing stored"
    );
}

#[test]
fn bad_input_admin_api_without_a_valid_token_is_401_and_does_nothing() {
    let site = Site::new(26);
    let mut node = site.init("solo", "standalone", &[], &[]);
    node.start();
    let url = format!("https://{}#{}", node.listen, node.fingerprint);
    let answers = rt().block_on(async {
        let mut answers = Vec::new();
        for token in ["", "not-the-token"] {
            let client = AdminClient::new(&url, token, Pins::default()).expect("client");
            answers.push(
                client
                    .call("GET", "/api/status", None)
                    .await
                    .expect("an answer"),
            );
            let pair = json!({ "name": "web", "primary": "solo", "secondary": "x" });
            answers.push(
                client
                    .call("POST", "/api/pairs", Some(&pair))
                    .await
                    .expect("an answer"),
            );
            let send = json!({ "records": [{ "name": "cpu", "value": 1.0 }] });
            answers.push(
                client
                    .call("POST", "/api/send", Some(&send))
                    .await
                    .expect("an answer"),
            );
            answers.push(
                client
                    .call("POST", "/api/role", Some(&json!({ "server": "off" })))
                    .await
                    .expect("an answer"),
            );
        }
        answers
    });
    for (status, body) in &answers {
        assert_eq!(*status, 401, "{body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("token"),
            "{body}"
        );
    }
    // The CLI with a wrong --token is refused the same way (exit 1, reason on stderr).
    let out = run_understudy(
        &["--node", &url, "--token", "nope", "status", "--json"],
        Duration::from_secs(15),
    )
    .expect("finished");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    // No action was taken.
    let status = node.status_now();
    assert!(status.pairs.is_empty());
    assert!(status.node.roles.server);
    assert_eq!(
        status.link.as_ref().expect("the agent role's link").cached,
        0
    );
    assert_eq!(node.records().expect("records").len(), 0);
}

#[test]
fn bad_input_malformed_config_exits_2_naming_file_and_line() {
    let site = Site::new(27);
    let node = site.init("n1", "server", &[], &[]);
    let path = node.dir.join("config.toml");
    let good = std::fs::read_to_string(&path).expect("config");
    let lines = good.lines().count();

    // A syntax error on a known line.
    let broken = format!("{good}\n[agent\nheartbeat = \"1s\"\n");
    std::fs::write(&path, &broken).expect("write");
    let out = node
        .serve_once(Duration::from_secs(30))
        .expect("serve exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(
        stderr.contains(&format!(":{}:", lines + 2)),
        "names line {}: {stderr}",
        lines + 2
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("config"),
        broken,
        "nothing is changed"
    );

    // An unknown key and a bad value are reported the same way.
    for (bad, what) in [
        ("hearbeat = \"1s\"", "hearbeat"),
        ("heartbeat = \"soon\"", "soon"),
    ] {
        let text = good.replace("heartbeat = \"1s\"", bad);
        assert_ne!(text, good, "the config has agent.heartbeat");
        std::fs::write(&path, &text).expect("write");
        let line = text
            .lines()
            .position(|l| l.contains(what))
            .expect("the bad line")
            + 1;
        let out = node
            .serve_once(Duration::from_secs(30))
            .expect("serve exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("config.toml:{line}:")),
            "names line {line}: {stderr}"
        );
    }
    assert!(
        !node.dir.join("store.db").exists(),
        "a node with a bad config never started"
    );
}
