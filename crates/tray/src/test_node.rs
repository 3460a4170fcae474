//! Unit tests' real node: `understudy_node` initialised in a temporary directory on a loopback
//! port and started in a runtime of its own — the tray's node for the window's commands, a site's
//! server for joining (sites.rs, commands.rs).

use std::time::{Duration, Instant};

use serde_json::json;
use understudy_node::{InitOptions, Node, Role};

pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub node: Option<Node>,
    /// `IP:PORT` it listens on.
    pub address: String,
    /// Its certificate's, as `init` made it.
    pub fingerprint: String,
}

impl TestNode {
    /// `init` with `role`; started when `start` (else made and never started).
    pub fn new(name: &str, role: Role, start: bool) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let report = understudy_node::init(&InitOptions {
            data_dir: dir.path().to_path_buf(),
            name: name.into(),
            listen: address.clone(),
            role,
            servers: Vec::new(),
            sets: Vec::new(),
        })
        .expect("init");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let node = start.then(|| runtime.block_on(Node::start(dir.path())).expect("start"));
        TestNode {
            dir,
            runtime,
            node,
            address,
            fingerprint: report.fingerprint,
        }
    }

    /// `understudy invite` of `kind` (`operator`, `agent`, …) through the admin handler, once
    /// the node acts for its site (409 until then: a moment after its start).
    pub fn invite(&self, kind: &str) -> String {
        let node = self.node.as_ref().expect("started");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.runtime.block_on(node.admin(
                "POST",
                "/api/invitations",
                Some(json!({ "kind": kind })),
            ));
            if status == 409 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            assert_eq!(status, 200, "{body}");
            return body["invitation"].as_str().expect("a line").to_string();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            self.runtime.block_on(node.shutdown());
        }
    }
}
