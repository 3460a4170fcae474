//! UI-5 and `understudy invite` (PRODUCT.md §3) with real processes: invitations carry the
//! site's servers and a token stored hashed; an operator token reads and operates but is refused
//! (403, with the reason) what changes roles, certificates, tokens or site configuration; a
//! revoked token is refused on both servers of a hot-standby pair; a follower of the site's
//! events resumes on the promoted STANDBY after a SIGKILL of the ACTIVE and sees every event once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use understudy_api::{Invitation, TokenKind};
use understudy_node::follow::{FollowError, Follower};
use understudy_node::tls::Pins;
use understudy_system_tests::*;

/// `invite ARGS` on `server`: the invitation line it printed, parsed.
fn invite(server: &Node, args: &[&str]) -> Invitation {
    let mut all = vec!["invite"];
    all.extend_from_slice(args);
    let out = server.cli_ok(&all);
    let line = out.trim();
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    Invitation::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// One request to `server` with `token`: the status and the answer's JSON.
fn call(server: &Node, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let pins = Pins::new([server.fingerprint.clone()]);
    let (status, text) = rt().block_on(raw_http(
        &server.listen,
        &pins,
        method,
        path,
        Some(&format!("Bearer {token}")),
        body.as_ref(),
    ));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn ui5_an_operator_token_is_refused_role_set_and_cert_generate_with_403() {
    let site = Site::new(81);
    let mut s = site.server("s", &[]);
    s.start();
    let inv = invite(&s, &["--label", "alice laptop"]);
    assert_eq!(inv.kind, TokenKind::Operator);
    assert_eq!(inv.site, "s");
    assert_eq!(inv.servers.len(), 1);
    assert_eq!(inv.servers[0].address, s.listen);
    assert_eq!(inv.servers[0].fingerprint, s.fingerprint);
    let op = inv.token.as_str();

    // Reads and operator actions pass the permission (an action may still be refused by the
    // engine: 404 for a pair that does not exist, 409 for `ha standby` without hot standby).
    for path in [
        "/api/status",
        "/api/events",
        "/api/records",
        "/api/agents",
        "/api/series/roles",
    ] {
        assert_eq!(call(&s, op, "GET", path, None).0, 200, "{path}");
    }
    let (status, _) = call(
        &s,
        op,
        "POST",
        "/api/pairs/nosuch/force-failover",
        Some(json!({})),
    );
    assert_eq!(status, 404);
    let (status, _) = call(&s, op, "POST", "/api/ha/standby", Some(json!({})));
    assert_ne!(status, 403);
    let (status, _) = call(&s, op, "POST", "/api/agents/nosuch/accept", Some(json!({})));
    assert_eq!(status, 404);
    let metrics = rt().block_on(raw_http(
        &s.listen,
        &Pins::new([s.fingerprint.clone()]),
        "GET",
        "/metrics",
        Some(&format!("Bearer {op}")),
        None,
    ));
    assert_eq!(metrics.0, 200, "an operator token reads /metrics");

    // Roles, certificates, invitations and site configuration: 403 with the reason, nothing done.
    let fingerprint_before = s.fingerprint.clone();
    for (method, path, body) in [
        ("POST", "/api/role", json!({"failover": "primary"})),
        ("POST", "/api/cert/generate", json!({})),
        ("POST", "/api/invitations", json!({"kind": "admin"})),
        ("GET", "/api/invitations", Value::Null),
        (
            "POST",
            "/api/pairs",
            json!({"name": "w", "primary": "a", "secondary": "b"}),
        ),
        ("POST", "/api/settings", json!({"ui.notifications": false})),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, answer) = call(&s, op, method, path, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["kind"], "forbidden", "{answer}");
        let reason = answer["error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("admin") && reason.contains("operate"),
            "{reason}"
        );
    }
    let shown = s.cli_ok(&["cert", "show", "--json"]);
    assert!(
        shown.contains(&fingerprint_before),
        "no new certificate: {shown}"
    );
    assert!(s.status_now().pairs.is_empty(), "no pair was added");

    // The CLI with --node and the operator token says why too (exit 1).
    let url = format!("https://{}#{}", s.listen, s.fingerprint);
    let out = run_understudy(
        &[
            "--node",
            &url,
            "--token",
            op,
            "role",
            "set",
            "--failover",
            "primary",
        ],
        Duration::from_secs(15),
    )
    .expect("role set finished");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("operator"),
        "{out:?}"
    );

    // An --admin invitation has full rights; an --agent one is no admin credential.
    let admin = invite(&s, &["--admin", "--label", "ops"]);
    assert_eq!(
        call(&s, &admin.token, "GET", "/api/invitations", None).0,
        200
    );
    let agent = invite(&s, &["--agent", "--uses", "3"]);
    assert_eq!(call(&s, &agent.token, "GET", "/api/status", None).0, 401);

    // `invite list`: id, label, kind, created, last used — never a secret.
    let listed = s.cli_ok(&["invite", "list", "--json"]);
    for secret in [op, admin.token.as_str(), agent.token.as_str()] {
        assert!(!listed.contains(secret), "{listed}");
    }
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    let rows = listed["invitations"]
        .as_array()
        .expect("invitations")
        .clone();
    assert_eq!(rows.len(), 3, "{listed}");
    let by_label: BTreeMap<String, Value> = rows
        .into_iter()
        .map(|r| (r["label"].as_str().unwrap_or_default().to_string(), r))
        .collect();
    assert_eq!(by_label["alice laptop"]["kind"], "operator");
    assert!(by_label["alice laptop"]["last_used_ms"].as_i64().is_some());
    assert_eq!(by_label["ops"]["kind"], "admin");
    assert_eq!(by_label[""]["uses_left"], 3);
}

/// A hot-standby pair, s1 ACTIVE and s2 STANDBY, and an operator invitation made on s1 whose
/// token (site configuration, HS-3) works on s2 too.
fn pair_with_invitation(site: &Site, label: &str) -> (Node, Node, Invitation) {
    let (mut s1, mut s2) = site.hot_standby(FAST_SERVER, None);
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    let inv = invite(&s1, &["--label", label]);
    wait_until(WAIT, "the token to work on s2", || {
        (call(&s2, &inv.token, "GET", "/api/status", None).0 == 200).then_some(())
    });
    (s1, s2, inv)
}

#[test]
fn ui5_a_revoked_token_is_refused_on_both_servers() {
    let site = Site::new(82);
    let (s1, s2, inv) = pair_with_invitation(&site, "laptop");
    assert_eq!(inv.servers.len(), 2, "both servers of the pair: {inv:?}");
    assert_eq!(inv.servers[1].address, s2.listen);
    assert_eq!(inv.servers[1].fingerprint, s2.fingerprint);
    let token = inv.token.clone();
    assert_eq!(call(&s1, &token, "GET", "/api/status", None).0, 200);
    // Invitations are made and revoked on the ACTIVE only.
    let out = s2.cli(&["invite"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("acting"),
        "{out:?}"
    );

    let listed: Value =
        serde_json::from_str(&s1.cli_ok(&["invite", "list", "--json"])).expect("JSON");
    let id = listed["invitations"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    s1.cli_ok(&["invite", "revoke", &id]);
    // At once on the ACTIVE; on the STANDBY from its next poll (failover.sync_interval).
    let (status, answer) = call(&s1, &token, "GET", "/api/status", None);
    assert_eq!(status, 401, "{answer}");
    wait_until(WAIT, "the revoked token to be refused on s2", || {
        (call(&s2, &token, "GET", "/api/status", None).0 == 401).then_some(())
    });
    let out = s1.cli(&["invite", "revoke", &id]);
    assert_eq!(out.status.code(), Some(1), "revoking twice: {out:?}");
}

#[test]
fn ui5_a_follower_resumes_on_the_promoted_standby_and_sees_every_event_once() {
    let site = Site::new(83);
    let (mut s1, s2, inv) = pair_with_invitation(&site, "tray");
    let servers: Vec<String> = inv.servers.iter().map(|s| s.url()).collect();

    let seen: Arc<Mutex<Vec<EventView>>> = Arc::default();
    let moved: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thread = {
        let (seen, moved, stop, token) =
            (seen.clone(), moved.clone(), stop.clone(), inv.token.clone());
        std::thread::spawn(move || {
            rt().block_on(async move {
                let mut follower = Follower::new(&servers, &token, None).expect("follower");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match follower.next().await {
                        Ok(events) => seen.lock().expect("seen").extend(events),
                        Err(FollowError::Moved { to, .. }) => {
                            moved.lock().expect("moved").push(to);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(FollowError::Refused(r)) => panic!("refused: {}", r.reason),
                    }
                }
            })
        })
    };
    // Events of s1 before the kill, seen on s1 and replicated to s2.
    wait_until(WAIT, "the follower to have s1's events", || {
        let n = seen.lock().expect("seen").len();
        (n > 0 && n >= s1.events("").len()).then_some(())
    });
    s1.kill9();
    s2.wait_failover_state("active");
    let s2_id = node_id(&s2);
    let s2_promoted = |e: &EventView| e.code == "PROMOTED" && e.origin.as_ref() == Some(&s2_id);
    wait_until(WAIT, "the follower to see s2's PROMOTED", || {
        seen.lock()
            .expect("seen")
            .iter()
            .any(s2_promoted)
            .then_some(())
    });
    // Anything s2 raises after its promotion still comes through.
    s2.add_tcp_check("late", "nobody");
    let on_s2 = s2.events("");
    wait_until(WAIT, "the follower to catch up with s2", || {
        let seen = seen.lock().expect("seen");
        let last = on_s2.last().map(|e| e.key.clone());
        seen.iter()
            .any(|e| Some(&e.key) == last.as_ref())
            .then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = seen.lock().expect("seen").clone();
    let moved = moved.lock().expect("moved").clone();
    assert!(
        moved.iter().any(|m| m.contains(&s2.listen)),
        "the follower moved to s2: {moved:?}"
    );
    let mut keys = std::collections::BTreeSet::new();
    for e in &seen {
        assert!(!e.key.is_empty(), "{e:?}");
        assert!(
            keys.insert(e.key.clone()),
            "{} seen twice: {seen:#?}",
            e.key
        );
    }
    assert_eq!(
        seen.iter().filter(|e| s2_promoted(e)).count(),
        1,
        "{seen:#?}"
    );
    // Every event s2 holds from s1 (replicated) or raised from its promotion on was seen.
    let promoted = on_s2
        .iter()
        .find(|e| s2_promoted(e))
        .map(|e| e.id)
        .expect("s2's PROMOTED on s2");
    for e in on_s2
        .iter()
        .filter(|e| e.origin.as_ref() != Some(&s2_id) || e.id >= promoted)
    {
        assert!(keys.contains(&e.key), "{e:?} not seen; seen {seen:#?}");
    }
    drop(thread);
}

/// The node id a node stamps on its own events (`node.id`).
fn node_id(node: &Node) -> String {
    let config =
        understudy_node::config::Config::load(&node.dir.join("config.toml")).expect("config");
    config.node.id
}

/// `invite ARGS` on `server`: the invitation line as printed.
fn invitation_line(server: &Node, args: &[&str]) -> String {
    let mut all = vec!["invite"];
    all.extend_from_slice(args);
    server.cli_ok(&all).trim().to_string()
}

/// Issue 14 item 3: `init --join` of a `--peer` invitation makes the hot-standby secondary of
/// the server that made it, both pinning each other, no file edited: it replicates the site,
/// and takes over when the primary is SIGKILLed.
#[test]
fn ui5_init_join_peer_makes_a_hot_standby_pair_with_no_file_edited() {
    let site = Site::new(84);
    let mut s1 = site.server("s1", FAST_SERVER);
    s1.start();
    let line = invitation_line(&s1, &["--peer"]);
    let (out, s2) = site.join("s2", &line, FAST_SERVER);
    assert!(out.status.success(), "{out:?}");
    let mut s2 = s2.expect("s2");
    // s1 took s2 as its peer at run time (HS-7): primary, pinned by s2's fingerprint.
    let failover = s1.status_now().node.failover;
    assert_eq!(failover.mode, "primary");
    assert_eq!(failover.peer.as_deref(), Some(s2.url().as_str()));
    s2.start();
    s2.wait_failover_state("standby");
    s1.wait_peer_state("standby");
    // HS-3: site configuration made on s1 reaches s2.
    s1.add_tcp_check("db", "nobody");
    wait_until(WAIT, "the check replicated to s2", || {
        s2.cli_ok(&["check", "list"]).contains("db").then_some(())
    });
    // The peer invitation was good once.
    let (again, none) = site.join("s3", &line, &[]);
    assert!(
        none.is_none() && again.status.code() == Some(1),
        "{again:?}"
    );
    assert!(
        !site.dir().join("s3").exists(),
        "nothing of a refused join is stored"
    );
    // HS-4: the secondary takes over from a SIGKILLed primary.
    s1.kill9();
    s2.wait_failover_state("active");
}

/// Issue 14 item 3: `init --join` of an `--agent` invitation makes an agent with the site's
/// servers pinned that is enrolled without an operator; the invitation is single-use, so a
/// second agent with it waits for an operator.
#[test]
fn ui5_init_join_agent_enrolls_once_with_the_sites_servers_pinned() {
    let site = Site::new(85);
    let (mut s1, mut s2) = site.hot_standby(FAST_SERVER, None);
    s1.start();
    s1.wait_failover_state("active");
    s2.start();
    s2.wait_failover_state("standby");
    let line = invitation_line(&s1, &["--agent"]);
    let (out, a1) = site.join("a1", &line, FAST_AGENT);
    assert!(out.status.success(), "{out:?}");
    let mut a1 = a1.expect("a1");
    let config = std::fs::read_to_string(a1.dir.join("config.toml")).expect("config");
    assert!(
        config.contains(&s1.url()) && config.contains(&s2.url()),
        "{config}"
    );
    a1.start();
    a1.wait_link("home", Some(&s1));
    let entry = s1.agent_entry("a1").expect("a1 on s1");
    assert!(!entry.pending && entry.state == "connected", "{entry:?}");
    let (out, a2) = site.join("a2", &line, FAST_AGENT);
    assert!(out.status.success(), "{out:?}");
    let mut a2 = a2.expect("a2");
    a2.start();
    wait_until(WAIT, "a2 pending on s1", || {
        s1.agent_entry("a2").filter(|a| a.pending).map(|_| ())
    });
}

/// A wrong fingerprint in an invitation: refused before anything is written.
#[test]
fn ui5_an_invitation_with_a_wrong_fingerprint_is_refused_and_nothing_stored() {
    let site = Site::new(86);
    let mut s1 = site.server("s1", &[]);
    s1.start();
    let line = invitation_line(&s1, &["--agent"]);
    let forged = line.replace(&s1.fingerprint, &"0".repeat(64));
    assert_ne!(forged, line);
    let (out, node) = site.join("a1", &forged, &[]);
    assert!(node.is_none());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificate") && err.contains("nothing was stored"),
        "{err}"
    );
    assert!(!site.dir().join("a1").exists(), "nothing stored");
}

/// §4: a truncated invitation, another version, garbage, an operator invitation given to
/// `init --join`: bad usage with the reason, nothing stored.
#[test]
fn ui5_bad_invitations_to_init_join_are_refused_with_the_reason_and_nothing_stored() {
    let site = Site::new(87);
    let mut s1 = site.server("s1", &[]);
    s1.start();
    let line = invitation_line(&s1, &["--agent"]);
    let operator = invitation_line(&s1, &[]);
    for (i, (bad, why)) in [
        (line[..line.len() - 10].to_string(), "token"),
        (line[..line.len() / 2].to_string(), "cut short"),
        (line.replace("/join/1?", "/join/9?"), "version 9"),
        ("understudy://garbage".to_string(), "not an invitation"),
        ("%%%%".to_string(), "not an invitation"),
        (operator, "operator invitation"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("n{i}");
        let (out, node) = site.join(&name, &bad, &[]);
        assert!(node.is_none(), "{bad}");
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{bad}: {err}");
        assert!(!site.dir().join(&name).exists(), "{bad}: nothing stored");
    }
}
