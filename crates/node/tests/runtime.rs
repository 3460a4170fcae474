//! The runtime with real sockets: nodes started in-process on loopback, talking TLS.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use understudy_node::{init, InitOptions, Node, Role};

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(
    what: &str,
    mut f: impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn fast() -> Vec<String> {
    [
        "agent.heartbeat=200ms",
        "agent.switchover_after=600ms",
        "server.enroll_token=t0k-0123456789abcdef",
        "agent.enroll_token=t0k-0123456789abcdef",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn start(dir: &Path, name: &str, ip: &str, role: Role, servers: Vec<String>) -> Node {
    let listen = format!("{ip}:{}", free_port(ip));
    init(&InitOptions {
        data_dir: dir.join(name),
        name: name.into(),
        listen,
        role,
        servers,
        sets: fast(),
    })
    .unwrap();
    Node::start(&dir.join(name)).await.unwrap()
}

async fn get(node: &Node, path: &str) -> Value {
    let (status, v) = node.admin("GET", path, None).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ag2_standalone_node_stores_what_its_agent_sends() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "solo", "127.0.3.1", Role::Standalone, vec![]).await;
    let records: Vec<Value> = (0..300)
        .map(|i| json!({ "name": "m", "value": i }))
        .collect();
    let (status, sent) = node
        .admin("POST", "/api/send", Some(json!({ "records": records })))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (sent["first_seq"].as_u64(), sent["last_seq"].as_u64()),
        (Some(1), Some(300))
    );
    let n = node.clone();
    wait_for("300 records stored", move || {
        let n = n.clone();
        Box::pin(async move {
            get(&n, "/api/records").await["records"]
                .as_array()
                .map_or(0, |r| r.len())
                == 300
        })
    })
    .await;
    // Stored is not yet acknowledged: the agent's cache empties when the ack arrives.
    let n = node.clone();
    wait_for("the agent home with an empty cache", move || {
        let n = n.clone();
        Box::pin(async move {
            let status = get(&n, "/api/status").await;
            status["link"]["state"] == "home" && status["link"]["cached"] == 0
        })
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ct2_rotation_keeps_agents_connected_and_new_links_pin_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "srv", "127.0.3.2", Role::Server, vec![]).await;
    let fp = get(&server, "/api/cert").await["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("https://{}#{fp}", server.listen_addr());
    let agent = start(dir.path(), "agt", "127.0.3.3", Role::Agent, vec![url]).await;
    let a = agent.clone();
    let connected = move || {
        let a = a.clone();
        Box::pin(async move { get(&a, "/api/status").await["link"]["state"] == "home" })
            as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
    };
    wait_for("the agent at home", connected.clone()).await;

    let (status, rotated) = server
        .admin(
            "POST",
            "/api/cert/generate",
            Some(json!({ "ips": ["127.0.3.2"] })),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_fp = rotated["fingerprint"].as_str().unwrap().to_string();
    assert_ne!(new_fp, fp);
    let events = get(&server, "/api/events?code=CERT_GENERATED").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1);

    // Still connected over the old certificate, and records flow.
    agent
        .admin(
            "POST",
            "/api/send",
            Some(json!({ "records": [{ "name": "after", "value": 1 }] })),
        )
        .await;
    let s = server.clone();
    wait_for("the record after the rotation", move || {
        let s = s.clone();
        Box::pin(async move {
            !get(&s, "/api/records?agent=agt").await["records"]
                .as_array()
                .unwrap()
                .is_empty()
        })
    })
    .await;

    // A new link (the agent restarts) trusts the new certificate it was told about.
    agent.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let agent = Node::start(&dir.path().join("agt")).await.unwrap();
    let a = agent.clone();
    wait_for("the restarted agent at home", move || {
        let a = a.clone();
        Box::pin(async move { get(&a, "/api/status").await["link"]["state"] == "home" })
    })
    .await;
    agent.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui4_console_is_served_and_the_api_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "web", "127.0.3.4", Role::Server, vec![]).await;
    let fp = get(&node, "/api/cert").await["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("https://{}", node.listen_addr());
    let bad = understudy_node::http_client::AdminClient::new(
        &base,
        "wrong",
        understudy_node::tls::Pins::new([fp.clone()]),
    )
    .unwrap();
    let (status, body) = bad
        .call("POST", "/api/role", Some(&json!({ "server": false })))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        get(&node, "/api/status").await["node"]["roles"]["server"],
        true,
        "no action taken"
    );
    let good = understudy_node::admin_client(&dir.path().join("web")).unwrap();
    let (status, _) = good.call("GET", "/api/status", None).await.unwrap();
    assert_eq!(status, 200);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ct2_a_server_certificate_is_accepted_on_first_contact_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "srv", "127.0.3.5", Role::Server, vec![]).await;
    let fp = get(&server, "/api/cert").await["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    // No fingerprint given at set-up: the agent refuses the server until an operator accepts it.
    let agent = start(
        dir.path(),
        "agt",
        "127.0.3.6",
        Role::Agent,
        vec![format!("https://{}", server.listen_addr())],
    )
    .await;
    let a = agent.clone();
    let f = fp.clone();
    wait_for("the presented certificate listed", move || {
        let (a, f) = (a.clone(), f.clone());
        Box::pin(async move {
            get(&a, "/api/status").await["link"]["untrusted"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x["fingerprint"] == f.as_str()))
        })
    })
    .await;
    assert_ne!(get(&agent, "/api/status").await["link"]["state"], "home");
    let (status, wrong) = agent
        .admin(
            "POST",
            "/api/link/trust",
            Some(json!({ "fingerprint": "ab".repeat(32) })),
        )
        .await;
    assert_eq!(status, 404, "{wrong}");
    let (status, ok) = agent
        .admin(
            "POST",
            "/api/link/trust",
            Some(json!({ "fingerprint": fp })),
        )
        .await;
    assert_eq!(status, 200, "{ok}");
    let a = agent.clone();
    wait_for("the agent at home", move || {
        let a = a.clone();
        Box::pin(async move { get(&a, "/api/status").await["link"]["state"] == "home" })
    })
    .await;
    agent.shutdown().await;
    server.shutdown().await;
}

/// PR-5 and the admin API's refusals: each kind has its HTTP status (404 unknown pair, 409 a
/// state the engine's guard refuses, 400 invalid), and the sentence of a 409 is the one `status`
/// showed for the action beforehand (`actions.*.reason`, a dry run of the same guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr5_refusals_have_their_http_status_and_the_sentence_status_showed() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "solo", "127.0.3.4", Role::Standalone, vec![]).await;
    let pair =
        json!({ "name": "web", "primary": "solo", "secondary": "ghost", "switchback": "manual" });
    let (status, v) = node.admin("POST", "/api/pairs", Some(pair)).await;
    assert_eq!(status, 200, "{v}");
    let n = node.clone();
    wait_for("web active on its primary", move || {
        let n = n.clone();
        Box::pin(async move { get(&n, "/api/status").await["pairs"][0]["active"] == "primary" })
    })
    .await;

    let actions = get(&node, "/api/status").await["pairs"][0]["actions"].clone();
    assert_eq!(actions["force_failover"]["allowed"], false);
    assert_eq!(
        actions["force_failover"]["reason"],
        "the secondary ghost is not connected"
    );
    assert_eq!(
        actions["revert"]["reason"],
        "web is already active on the primary solo"
    );
    // 409: the guard refuses, with exactly the sentence status showed.
    for (path, action) in [
        ("/api/pairs/web/force-failover", "force_failover"),
        ("/api/pairs/web/revert", "revert"),
    ] {
        let (status, v) = node.admin("POST", path, None).await;
        assert_eq!(status, 409, "{v}");
        assert_eq!(v["kind"], "conflict");
        assert_eq!(v["error"], actions[action]["reason"]);
    }
    // 404: no such pair, no such agent, no such route.
    for path in [
        "/api/pairs/nope/force-failover",
        "/api/agents/nope/accept",
        "/api/nothing",
    ] {
        let (status, v) = node.admin("POST", path, None).await;
        assert_eq!(status, 404, "{path}: {v}");
        assert_eq!(v["kind"], "not_found");
    }
    let (_, v) = node.admin("POST", "/api/pairs/nope/revert", None).await;
    assert_eq!(v["error"], "no pair named nope");
    // 400: a request that does not fit.
    for (path, body) in [
        ("/api/pairs", json!({ "name": "x" })),
        (
            "/api/pairs",
            json!({ "name": "x", "primary": "a", "secondary": "b", "failover_after": "soon" }),
        ),
        ("/api/role", json!({ "failover": "sideways" })),
        (
            "/api/checks",
            json!({ "name": "c", "kind": "smoke", "target": "x", "agent": "solo" }),
        ),
    ] {
        let (status, v) = node.admin("POST", path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["kind"], "invalid");
    }
    node.shutdown().await;
}

/// AL-7: a `desktop` channel is the tray app's notifier. Without one registered (a headless
/// server) its delivery fails, is retried and counted in `status.alerts.failing`; once the tray
/// registers its notifier the retry shows the sender's own message (title, text, severity).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn al7_a_desktop_channel_delivers_to_the_trays_notifier_and_fails_without_one() {
    use std::sync::{Arc, Mutex};
    use understudy_api::status::DesktopMessage;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.3.7:{}", free_port("127.0.3.7"));
    let mut sets = fast();
    sets.push("alert.group_wait=0s".into());
    init(&InitOptions {
        data_dir: dir.path().join("desk"),
        name: "desk".into(),
        listen,
        role: Role::Standalone,
        servers: vec![],
        sets,
    })
    .unwrap();
    let node = Node::start(&dir.path().join("desk")).await.unwrap();
    let n = node.clone();
    wait_for("the node acting", move || {
        let n = n.clone();
        Box::pin(async move { get(&n, "/api/status").await["node"]["acting"] == true })
    })
    .await;
    let (status, v) = node
        .admin(
            "POST",
            "/api/alerts/channels",
            Some(json!({ "name": "tray", "kind": "desktop", "codes": ["CERT_GENERATED"] })),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = node
        .admin(
            "POST",
            "/api/alerts/channels",
            Some(json!({ "name": "bad", "kind": "desktop", "url": "http://127.0.0.1:9/" })),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("--url does not apply"),
        "{v}"
    );

    let (status, v) = node
        .admin("POST", "/api/cert/generate", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{v}");
    let n = node.clone();
    wait_for("the desktop delivery failing", move || {
        let n = n.clone();
        Box::pin(async move { get(&n, "/api/status").await["alerts"]["failing"] == 1 })
    })
    .await;
    let alerts = get(&node, "/api/alerts").await;
    let d = &alerts["alerts"][0]["deliveries"][0];
    assert_eq!(
        (d["channel"].as_str(), d["state"].as_str()),
        (Some("tray"), Some("pending"))
    );
    assert!(
        d["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("no desktop"),
        "{alerts}"
    );

    let shown: Arc<Mutex<Vec<DesktopMessage>>> = Arc::default();
    let into = shown.clone();
    node.set_desktop_notifier(move |m| {
        into.lock().unwrap().push(m.clone());
        Ok(())
    });
    let n = node.clone();
    wait_for("the retry shown and marked sent", move || {
        let n = n.clone();
        Box::pin(async move {
            let s = get(&n, "/api/status").await;
            s["alerts"]["failing"] == 0 && s["alerts"]["pending"] == 0
        })
    })
    .await;
    let shown = shown.lock().unwrap().clone();
    assert_eq!(shown.len(), 1, "{shown:?}");
    let alert = &get(&node, "/api/alerts").await["alerts"][0];
    assert_eq!(shown[0].channel, "tray");
    assert_eq!(shown[0].alerts, [alert["id"].as_str().unwrap().to_string()]);
    assert_eq!(
        shown[0].title,
        format!("CERT_GENERATED: {}", alert["subject"].as_str().unwrap())
    );
    assert!(
        shown[0].text.contains(alert["sentence"].as_str().unwrap()),
        "{shown:?}"
    );
    assert_eq!(alert["deliveries"][0]["state"], "sent");
    node.shutdown().await;
}
