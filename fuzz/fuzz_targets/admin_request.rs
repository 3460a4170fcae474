//! The admin API's routing: a method, a path with its query and a JSON body, as the node's HTTPS
//! edge hands them to `Request::from_http`. Any input is routed or refused, never a panic; what
//! is routed is encoded back by the client side (`Request::to_http`, the same route table) into
//! a call that routes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_api::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Line 1: the method; line 2: the path and query; the rest: the body, read as the node's
    // edge reads it (none when empty, else JSON or refused).
    let mut parts = text.splitn(3, '\n');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let body = match parts.next() {
        None | Some("") => None,
        Some(json) => match serde_json::from_str(json) {
            Ok(value) => Some(value),
            Err(_) => return, // the node refuses a body that is not JSON before routing
        },
    };
    let Ok(request) = Request::from_http(method, path, body) else {
        return;
    };
    let call = request.to_http();
    let again = Request::from_http(call.method, &call.path, call.body.clone());
    assert_eq!(
        again.as_ref(),
        Ok(&request),
        "{method} {path:?} routed to {request:?}, encoded as {call:?}"
    );
});
