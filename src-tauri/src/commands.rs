//! The commands the window may invoke. There is one: `admin`, the same request vocabulary as the
//! HTTPS admin API, forwarded in-process to the node's one handler (ui/src/api.ts TauriTransport).
//! Kept in a module: a `#[tauri::command]` at the crate root that is re-exported fails with E0255.

use serde::Serialize;
use serde_json::Value;
use tauri::State;

use crate::host::Host;

/// How a refused request reaches the window: the HTTP-like status and the node's plain reason,
/// which the console turns into an `ApiError(status, reason)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminError {
    pub status: u16,
    pub error: String,
}

/// `invoke('admin', {method, path, body})` → the response JSON, or a rejection with
/// `{status, error}` when the node answers with a status of 400 or more.
#[tauri::command]
pub async fn admin(
    host: State<'_, Host>,
    method: String,
    path: String,
    body: Option<Value>,
) -> Result<Value, AdminError> {
    let (status, json) = host.admin(&method, &path, body).await;
    into_result(status, json)
}

/// Splits a (status, body) answer into success or a rejection carrying the node's reason.
pub fn into_result(status: u16, json: Value) -> Result<Value, AdminError> {
    if status < 400 {
        return Ok(json);
    }
    let error = match json.get("error").and_then(Value::as_str) {
        Some(reason) => reason.to_string(),
        None => format!("request failed with status {status}"),
    };
    Err(AdminError { status, error })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
    use tauri::webview::InvokeRequest;

    use super::*;
    use crate::host::{Admin, BoxFuture};

    /// A node that records what it was asked and answers from a script.
    #[derive(Default)]
    struct FakeNode {
        calls: Mutex<Vec<(String, String, Option<Value>)>>,
    }

    impl Admin for FakeNode {
        fn admin<'a>(&'a self, method: &'a str, path: &'a str, body: Option<Value>) -> BoxFuture<'a, (u16, Value)> {
            self.calls.lock().unwrap().push((method.into(), path.into(), body));
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
        let app = mock_builder()
            .manage(host)
            .invoke_handler(tauri::generate_handler![admin])
            .build(mock_context(noop_assets()))
            .expect("mock app");
        let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().expect("webview");
        get_ipc_response(
            &webview,
            InvokeRequest {
                cmd: "admin".into(),
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
        let got = invoke(running(node.clone()), json!({ "method": "GET", "path": "/api/status", "body": null }));
        assert_eq!(got, Ok(json!({ "node": { "name": "srv-a" } })));

        let _ = invoke(
            running(node.clone()),
            json!({ "method": "POST", "path": "/api/settings", "body": { "ui.notifications": false } }),
        );
        let calls = node.calls.lock().unwrap();
        assert_eq!(calls[0], ("GET".into(), "/api/status".into(), None));
        assert_eq!(
            calls[1],
            ("POST".into(), "/api/settings".into(), Some(json!({ "ui.notifications": false })))
        );
    }

    #[test]
    fn a_refusal_rejects_with_status_and_the_nodes_reason() {
        let node = Arc::new(FakeNode::default());
        let got = invoke(running(node.clone()), json!({ "method": "POST", "path": "/api/pairs/web/force-failover" }));
        assert_eq!(got, Err(json!({ "status": 409, "error": "secondary web-2 is not connected" })));
        let got = invoke(running(node), json!({ "method": "POST", "path": "/api/teapot" }));
        assert_eq!(got, Err(json!({ "status": 418, "error": "request failed with status 418" })));
    }

    #[test]
    fn without_a_running_node_the_window_gets_503() {
        let got = invoke(Host::new(), json!({ "method": "GET", "path": "/api/status" }));
        assert_eq!(got, Err(json!({ "status": 503, "error": "the node is not running (starting)" })));
    }

    #[test]
    fn missing_arguments_are_refused_by_tauri() {
        let node = Arc::new(FakeNode::default());
        assert!(invoke(running(node.clone()), json!({ "path": "/api/status" })).is_err());
        assert!(node.calls.lock().unwrap().is_empty());
    }
}
