//! The commands the window may invoke. `admin`, the same request vocabulary as the HTTPS admin
//! API, for a target (ui/src/sites.ts TargetedTransport): this computer's node, reached over
//! HTTPS (`host::remote`), or a joined site (UI-5, `targets`). Beside it the site commands of the
//! switcher: `targets`, `site_join` ("Connect to a site…"), `site_remove`.
//! Kept in a module: a `#[tauri::command]` at the crate root that is re-exported fails with E0255.

use serde_json::Value;
use tauri::State;
pub use understudy_tray::host::{into_result, AdminError};

use crate::targets::{SiteView, Targets, TargetsView};

/// `invoke('admin', {method, path, body, site})` → the response JSON, or a rejection with
/// `{status, error}` when the node answers with a status of 400 or more, or with status 0 when it
/// could not be reached. `site`: a joined site's name; absent or null, this computer's node.
#[tauri::command]
pub async fn admin(
    targets: State<'_, Targets>,
    method: String,
    path: String,
    body: Option<Value>,
    site: Option<String>,
) -> Result<Value, AdminError> {
    let (status, json) = targets.admin(site.as_deref(), &method, &path, body).await;
    into_result(status, json)
}

/// `invoke('targets')` → what the switcher offers: this computer's node (when it runs one) and
/// the joined sites.
#[tauri::command]
pub fn targets(targets: State<'_, Targets>) -> Result<TargetsView, String> {
    targets.list()
}

/// `invoke('site_join', {invitation})` → the site joined, or the refusal's reason as is.
#[tauri::command]
pub async fn site_join(
    targets: State<'_, Targets>,
    invitation: String,
) -> Result<SiteView, String> {
    targets.join(&invitation).await
}

/// `invoke('site_remove', {site})`.
#[tauri::command]
pub fn site_remove(targets: State<'_, Targets>, site: String) -> Result<(), String> {
    targets.remove(&site)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
    use tauri::webview::InvokeRequest;

    use super::*;
    use crate::host::{Admin, BoxFuture, Host};
    use crate::test_node::TestNode;

    /// A node that records what it was asked and answers from a script.
    #[derive(Default)]
    struct FakeNode {
        calls: Mutex<Vec<(String, String, Option<Value>)>>,
    }

    impl Admin for FakeNode {
        fn admin<'a>(
            &'a self,
            method: &'a str,
            path: &'a str,
            body: Option<Value>,
        ) -> BoxFuture<'a, (u16, Value)> {
            self.calls
                .lock()
                .unwrap()
                .push((method.into(), path.into(), body));
            let answer = match (method, path) {
                ("GET", "/api/status") => (200, json!({ "node": { "name": "srv-a" } })),
                ("POST", "/api/pairs/web/force-failover") => {
                    (409, json!({ "error": "secondary web-2 is not connected" }))
                }
                ("POST", "/api/teapot") => (418, json!({})),
                _ => (404, json!({ "error": "no such path" })),
            };
            Box::pin(async move { answer })
        }
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn invoke(host: Host, args: Value) -> Result<Value, Value> {
        call(
            Targets::new(host, Err("no app dir in this test".into())),
            "admin",
            args,
        )
    }

    /// Invokes `cmd` in a window whose targets are `targets`, as the console does.
    fn call(targets: Targets, cmd: &str, args: Value) -> Result<Value, Value> {
        let app = mock_builder()
            .manage(targets)
            .invoke_handler(tauri::generate_handler![
                admin,
                super::targets,
                site_join,
                site_remove
            ])
            .build(mock_context(noop_assets()))
            .expect("mock app");
        let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("webview");
        get_ipc_response(
            &webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().unwrap())
    }

    fn running(node: Arc<FakeNode>) -> Host {
        let host = Host::new();
        host.set_running(node);
        host
    }

    #[test]
    fn admin_forwards_method_path_and_body_and_returns_the_json() {
        let node = Arc::new(FakeNode::default());
        let got = invoke(
            running(node.clone()),
            json!({ "method": "GET", "path": "/api/status", "body": null }),
        );
        assert_eq!(got, Ok(json!({ "node": { "name": "srv-a" } })));

        let _ = invoke(
            running(node.clone()),
            json!({ "method": "POST", "path": "/api/settings", "body": { "ui.notifications": false } }),
        );
        let calls = node.calls.lock().unwrap();
        assert_eq!(calls[0], ("GET".into(), "/api/status".into(), None));
        assert_eq!(
            calls[1],
            (
                "POST".into(),
                "/api/settings".into(),
                Some(json!({ "ui.notifications": false }))
            )
        );
    }

    #[test]
    fn a_refusal_rejects_with_status_and_the_nodes_reason() {
        let node = Arc::new(FakeNode::default());
        let got = invoke(
            running(node.clone()),
            json!({ "method": "POST", "path": "/api/pairs/web/force-failover" }),
        );
        assert_eq!(
            got,
            Err(json!({ "status": 409, "error": "secondary web-2 is not connected" }))
        );
        let got = invoke(
            running(node),
            json!({ "method": "POST", "path": "/api/teapot" }),
        );
        assert_eq!(
            got,
            Err(json!({ "status": 418, "error": "request failed with status 418" }))
        );
    }

    #[test]
    fn without_a_running_node_the_window_gets_503() {
        let got = invoke(
            Host::new(),
            json!({ "method": "GET", "path": "/api/status" }),
        );
        assert_eq!(
            got,
            Err(json!({ "status": 503, "error": "the node is not running (starting)" }))
        );
    }

    /// A real node (the tray's) in its own runtime, listening on loopback; started when
    /// `start`.
    fn tray_node(start: bool) -> TestNode {
        TestNode::new("tray-node", understudy_node::Role::Standalone, start)
    }

    impl TestNode {
        /// The Host of a window process pointed at this node's data directory.
        fn window_host(&self) -> Host {
            let host = Host::new();
            host.set_running(crate::host::remote(self.dir.path()));
            host
        }
    }

    #[test]
    fn the_window_process_reaches_the_tray_node_over_its_admin_api() {
        let tray = tray_node(true);
        let host = tray.window_host();
        let status = invoke(
            host.clone(),
            json!({ "method": "GET", "path": "/api/status" }),
        )
        .expect("status");
        assert_eq!(status["node"]["name"], "tray-node");

        // A body goes through, and a refusal keeps the node's status and reason.
        let got = invoke(
            host.clone(),
            json!({ "method": "POST", "path": "/api/pairs/nope/force-failover", "body": {} }),
        );
        let err = got.expect_err("no such pair");
        assert!(err["status"].as_u64().unwrap() >= 400, "{err}");
        assert!(err["error"].as_str().unwrap().contains("nope"), "{err}");
    }

    #[test]
    fn after_a_new_certificate_the_window_process_still_reaches_the_node() {
        let tray = tray_node(true);
        let host = tray.window_host();
        let before = invoke(
            host.clone(),
            json!({ "method": "GET", "path": "/api/status" }),
        )
        .expect("status");
        let generated = invoke(
            host.clone(),
            json!({ "method": "POST", "path": "/api/cert/generate", "body": { "ips": [], "dns": [] } }),
        );
        assert!(generated.is_ok(), "{generated:?}");
        // The first client pinned the old certificate; the next request must re-read the pin.
        let after =
            invoke(host, json!({ "method": "GET", "path": "/api/status" })).expect("status after");
        assert_ne!(
            before["node"]["cert"]["fingerprint"],
            after["node"]["cert"]["fingerprint"]
        );
    }

    #[test]
    fn when_the_tray_node_is_down_the_window_is_told_it_cannot_reach_it() {
        let tray = tray_node(false); // made, never started
        let got = invoke(
            tray.window_host(),
            json!({ "method": "GET", "path": "/api/status" }),
        );
        let err = got.expect_err("nothing listens");
        assert_eq!(err["status"], 0, "{err}");
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .starts_with("cannot reach the node: "),
            "{err}"
        );

        let empty = tempfile::tempdir().unwrap();
        let host = Host::new();
        host.set_running(crate::host::remote(empty.path()));
        let err = invoke(host, json!({ "method": "GET", "path": "/api/status" }))
            .expect_err("no node there");
        assert_eq!(err["status"], 0, "{err}");
        assert!(
            err["error"].as_str().unwrap().contains("no node found in"),
            "{err}"
        );
    }

    /// A window process's targets: no node of its own reachable, `app_dir` for sites.json.
    fn window(app_dir: &std::path::Path) -> Targets {
        let host = Host::new();
        host.set_running(crate::host::remote(&app_dir.join("no-node")));
        Targets::new(host, Ok(app_dir.to_path_buf()))
    }

    #[test]
    fn ui5_the_window_joins_a_site_and_routes_admin_requests_to_it() {
        let site = tray_node(true);
        let app = tempfile::tempdir().unwrap();
        let line = site.invite("operator");

        let joined = call(
            window(app.path()),
            "site_join",
            json!({ "invitation": line }),
        )
        .expect("joined");
        assert_eq!(joined["name"], "tray-node", "{joined}");
        let listed = call(window(app.path()), "targets", json!({})).expect("targets");
        assert_eq!(listed["sites"][0]["name"], "tray-node", "{listed}");
        assert!(
            !listed["sites"][0]
                .to_string()
                .contains(&line[line.len() - 64..]),
            "the token stays in the window process: {listed}"
        );

        let status = call(
            window(app.path()),
            "admin",
            json!({ "method": "GET", "path": "/api/status", "site": "tray-node" }),
        )
        .expect("the site's status");
        assert_eq!(status["node"]["name"], "tray-node");
        // Without `site` the same window asks this computer's node: there is none.
        let local = call(
            window(app.path()),
            "admin",
            json!({ "method": "GET", "path": "/api/status" }),
        )
        .expect_err("no node here");
        assert_eq!(local["status"], 0, "{local}");

        // The operator token may not change roles: the server's 403 and reason, as they are.
        let refused = call(
            window(app.path()),
            "admin",
            json!({ "method": "POST", "path": "/api/role", "body": { "server": false }, "site": "tray-node" }),
        )
        .expect_err("an operator token");
        assert_eq!(refused["status"], 403, "{refused}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("needs the admin permission"),
            "{refused}"
        );

        call(
            window(app.path()),
            "site_remove",
            json!({ "site": "tray-node" }),
        )
        .expect("removed");
        let gone = call(
            window(app.path()),
            "admin",
            json!({ "method": "GET", "path": "/api/status", "site": "tray-node" }),
        )
        .expect_err("removed");
        assert_eq!(gone["status"], 404, "{gone}");
        assert_eq!(gone["error"], "no site tray-node is joined");
    }

    #[test]
    fn ui5_a_wrong_fingerprint_is_refused_with_its_reason_and_nothing_is_stored() {
        let site = tray_node(true);
        let app = tempfile::tempdir().unwrap();
        let fp = site.fingerprint.clone();
        let other: String = fp
            .chars()
            .map(|c| match c.to_digit(16) {
                Some(d) => std::char::from_digit((d + 1) % 16, 16).unwrap(),
                None => c,
            })
            .collect();
        let line = site.invite("operator").replace(&fp, &other);
        let reason = call(
            window(app.path()),
            "site_join",
            json!({ "invitation": line }),
        )
        .expect_err("a wrong fingerprint");
        let reason = reason.as_str().expect("the reason, a string").to_string();
        assert!(!reason.is_empty());
        let listed = call(window(app.path()), "targets", json!({})).expect("targets");
        assert_eq!(listed["sites"], json!([]), "{reason}");
    }

    #[test]
    fn ui5_the_switcher_offers_this_computer_by_the_setting() {
        let site = tray_node(true);
        let app = tempfile::tempdir().unwrap();
        let local = || call(window(app.path()), "targets", json!({})).unwrap()["local"].clone();
        assert_eq!(local(), true, "no site, never set: a node runs");
        call(
            window(app.path()),
            "site_join",
            json!({ "invitation": site.invite("operator") }),
        )
        .expect("joined");
        assert_eq!(local(), false, "a site joined: no node by default");
        crate::settings::save(
            app.path(),
            &crate::settings::Settings {
                run_node: Some(true),
            },
        )
        .unwrap();
        assert_eq!(local(), true, "kept on by the user");
    }

    #[test]
    fn missing_arguments_are_refused_by_tauri() {
        let node = Arc::new(FakeNode::default());
        assert!(invoke(running(node.clone()), json!({ "path": "/api/status" })).is_err());
        assert!(node.calls.lock().unwrap().is_empty());
    }
}
