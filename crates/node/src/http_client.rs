//! A small HTTPS client for a node's admin API, used by the CLI and by tests: one pinned TLS
//! connection (ALPN `http/1.1`) per call, the bearer token, JSON in and out.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::config::ServerUrl;
use crate::tls::{self, Pins, TlsError};

/// The largest response body accepted (a full `records` listing can be large).
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("admin URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{method} {url}: invalid request: {message}")]
    BadRequest {
        method: String,
        url: String,
        message: String,
    },
    #[error("{method} {url}: {source}")]
    Http {
        method: String,
        url: String,
        source: hyper::Error,
    },
    #[error("{method} {url}: reading the response: {message}")]
    Body {
        method: String,
        url: String,
        message: String,
    },
    #[error("{method} {url}: no answer within {}s", after.as_secs_f32())]
    Timeout {
        method: String,
        url: String,
        after: Duration,
    },
}

/// A client for one node's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: ServerUrl,
    token: String,
    pins: Pins,
    timeout: Duration,
}

impl AdminClient {
    /// `base_url` is `https://IP:PORT`, optionally with `#FINGERPRINT`, which is then added to
    /// `pins`.
    pub fn new(base_url: &str, token: &str, pins: Pins) -> Result<AdminClient, ClientError> {
        let base = ServerUrl::parse(base_url).map_err(|message| ClientError::BadUrl {
            url: base_url.to_string(),
            message,
        })?;
        if let Some(fp) = &base.fingerprint {
            pins.add(fp);
        }
        Ok(AdminClient {
            base,
            token: token.to_string(),
            pins,
            timeout: Duration::from_secs(30),
        })
    }

    /// How long one call may take, connection included (default 30s).
    pub fn with_timeout(mut self, timeout: Duration) -> AdminClient {
        self.timeout = timeout;
        self
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// Sends one request and returns the status and the body: parsed JSON, `Null` when empty, or
    /// the text as a JSON string when it is not JSON (so a plain-text error is still shown).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let url = format!("https://{}{path}", self.base.address());
        let after = self.timeout;
        tokio::time::timeout(after, self.call_inner(method, path, body, &url))
            .await
            .map_err(|_| ClientError::Timeout {
                method: method.to_string(),
                url: url.clone(),
                after,
            })?
    }

    async fn call_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        url: &str,
    ) -> Result<(u16, Value), ClientError> {
        let bad_request = |message: String| ClientError::BadRequest {
            method: method.to_string(),
            url: url.to_string(),
            message,
        };
        let http_err = |source| ClientError::Http {
            method: method.to_string(),
            url: url.to_string(),
            source,
        };
        let mut request = hyper::Request::builder()
            .method(method.as_bytes())
            .uri(path)
            .header(HOST, self.base.address())
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        let bytes = match body {
            Some(v) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| bad_request(e.to_string()))?;

        let config = tls::client_config(self.pins.clone(), None, &[tls::ALPN_HTTP])?;
        let stream = tls::connect_with(config, &self.base.address(), self.timeout).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_err)?;
        // The connection task ends when the response is read and the sender is dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "admin API connection ended with an error");
            }
        });
        let response = sender.send_request(request).await.map_err(http_err)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| ClientError::Body {
                method: method.to_string(),
                url: url.to_string(),
                message: e.to_string(),
            })?
            .to_bytes();
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        Ok((status, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_auth::token_matches;
    use crate::tls::{generate_certificate, server_config, NodeIdentity};
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use serde_json::json;
    use std::convert::Infallible;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let authorized = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| token_matches(TOKEN, v));
        let reply = |status: u16, body: String| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
            Ok(r)
        };
        if !authorized {
            return reply(401, "missing or wrong admin token".into());
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return reply(400, String::new()),
        };
        let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match path.as_str() {
            "/empty" => reply(204, String::new()),
            _ => reply(
                200,
                json!({"method": method, "path": path, "sent": sent}).to_string(),
            ),
        }
    }

    async fn admin_server(dir: &std::path::Path) -> (String, String) {
        let info = generate_certificate(dir, &[], &[]).expect("cert");
        let identity = NodeIdentity::load(dir).expect("identity");
        let acceptor = TlsAcceptor::from(server_config(identity).expect("server config"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), hyper::service::service_fn(handle))
                        .await;
                });
            }
        });
        (format!("https://{addr}"), info.fingerprint)
    }

    #[tokio::test]
    async fn calls_with_token_and_pinned_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, fp) = admin_server(dir.path()).await;

        let client =
            AdminClient::new(&format!("{base}#{fp}"), TOKEN, Pins::default()).expect("client");
        let (status, body) = client
            .call("POST", "/pairs", Some(&json!({"name": "web"})))
            .await
            .expect("call");
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"method": "POST", "path": "/pairs", "sent": {"name": "web"}})
        );
        let (status, body) = client.call("GET", "/empty", None).await.expect("call");
        assert_eq!((status, body), (204, Value::Null));

        let wrong =
            AdminClient::new(&base, &"f".repeat(64), Pins::new([fp.clone()])).expect("client");
        let (status, body) = wrong.call("GET", "/status", None).await.expect("call");
        assert_eq!(status, 401);
        assert_eq!(body, json!("missing or wrong admin token"));

        let unpinned = AdminClient::new(&base, TOKEN, Pins::default()).expect("client");
        let err = unpinned
            .call("GET", "/status", None)
            .await
            .expect_err("not pinned");
        assert!(
            err.to_string().contains(&format!("{fp} is not pinned")),
            "{err}"
        );

        let err =
            AdminClient::new("http://127.0.0.1:1", TOKEN, Pins::default()).expect_err("not https");
        assert!(err.to_string().contains("https://"), "{err}");
    }
}
