//! A scripted stand-in node for testing the tray, window and notifications without a site
//! (cargo feature `fake-node`, never in a normal build; chosen at run time by
//! `UNDERSTUDY_FAKE_NODE=1`). It answers the admin paths the app uses with a small site: one
//! pair `web` (web-1 / web-2), a pending agent, and events for every action.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::host::{Admin, BoxFuture};

pub struct FakeNode {
    state: Mutex<State>,
}

struct State {
    server: bool,
    agent: bool,
    failover: String,
    active: &'static str,
    pending: bool,
    notifications: bool,
    events: Vec<Value>,
}

impl FakeNode {
    pub fn new() -> Self {
        FakeNode {
            state: Mutex::new(State {
                server: true,
                agent: true,
                failover: "off".into(),
                active: "primary",
                pending: true,
                notifications: true,
                events: Vec::new(),
            }),
        }
    }
}

impl Default for FakeNode {
    fn default() -> Self {
        Self::new()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl State {
    fn event(&mut self, code: &str, subject: &str, sentence: String) {
        let id = self.events.len() as u64 + 1;
        self.events.push(json!({ "id": id, "time_ms": now_ms(), "code": code, "subject": subject, "sentence": sentence }));
    }

    fn status(&self) -> Value {
        let mut agents = vec![
            json!({ "name": "web-1", "state": "connected", "server": "fake", "pending": false }),
            json!({ "name": "web-2", "state": "connected", "server": "fake", "pending": false }),
        ];
        if self.pending {
            agents.push(json!({ "name": "new-box", "state": "pending", "server": "fake", "pending": true }));
        }
        json!({
            "node": { "id": "fake", "name": "fake-node", "roles": { "server": self.server, "agent": self.agent },
                      "failover": { "mode": self.failover, "state": if self.failover == "off" { "" } else { "active" }, "epoch": 1, "peer": null },
                      "listen": "127.0.0.1:0", "cert": { "fingerprint": "FA:KE" } },
            "link": if self.agent { json!({ "server": "https://127.0.0.1:0", "state": "home", "cached": 0 }) } else { Value::Null },
            "servers": [],
            "pairs": [{ "name": "web", "primary": "web-1", "secondary": "web-2", "active": self.active, "state": "normal", "epoch": 1, "degraded": null }],
            "agents": agents,
        })
    }
}

impl Admin for FakeNode {
    fn admin<'a>(&'a self, method: &'a str, path: &'a str, body: Option<Value>) -> BoxFuture<'a, (u16, Value)> {
        let answer = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let (route, query) = path.split_once('?').unwrap_or((path, ""));
            match (method, route) {
                ("GET", "/api/status") => (200, s.status()),
                ("GET", "/api/events") => {
                    let since: u64 = query.strip_prefix("since=").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let events: Vec<Value> =
                        s.events.iter().filter(|e| e["id"].as_u64().unwrap_or(0) > since).cloned().collect();
                    (200, json!({ "events": events }))
                }
                ("GET", "/api/settings") => (200, json!({ "ui.notifications": s.notifications })),
                ("POST", "/api/settings") => {
                    if let Some(v) = body.as_ref().and_then(|b| b["ui.notifications"].as_bool()) {
                        s.notifications = v;
                    }
                    (200, json!({ "ui.notifications": s.notifications }))
                }
                ("POST", "/api/pairs/web/force-failover") if s.active == "primary" => {
                    s.active = "secondary";
                    s.event("FORCED_FAILOVER", "web", "Pair web was forced to web-2.".into());
                    (200, json!({}))
                }
                ("POST", "/api/pairs/web/revert") if s.active == "secondary" => {
                    s.active = "primary";
                    s.event("REVERTED", "web", "Pair web was reverted to web-1.".into());
                    (200, json!({}))
                }
                ("POST", "/api/agents/new-box/accept") if s.pending => {
                    s.pending = false;
                    (200, json!({}))
                }
                ("POST", "/api/cert/generate") => {
                    s.event("CERT_GENERATED", "fake-node", "A new certificate was generated (SHA-256 FA:KE).".into());
                    (200, json!({ "fingerprint": "FA:KE" }))
                }
                ("POST", "/api/role") => {
                    let b = body.unwrap_or(Value::Null);
                    if let Some(v) = b["server"].as_bool() {
                        s.server = v;
                    }
                    if let Some(v) = b["agent"].as_bool() {
                        s.agent = v;
                    }
                    if let Some(v) = b["failover"].as_str() {
                        s.failover = v.into();
                    }
                    (200, s.status()["node"].clone())
                }
                _ => (409, json!({ "error": format!("the fake node refuses {method} {path}") })),
            }
        };
        Box::pin(async move { answer })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
