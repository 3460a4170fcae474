//! Why a node did not do what was asked, typed, and the one place where a kind becomes an HTTP
//! status (and back, for the client).

use serde::{Deserialize, Serialize};

/// What kind of "no" a refusal is.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The request itself is malformed or names an impossible setting (400).
    Invalid,
    /// No valid admin token (401).
    Unauthorized,
    /// The caller may not do this (403).
    Forbidden,
    /// It names a pair, agent, check or route that does not exist (404).
    NotFound,
    /// The state of the site does not allow it now (409): the engine's guard said no.
    Conflict,
    /// The node could not carry it out: a store or certificate error (500).
    Failed,
    /// The node is stopping (503).
    Unavailable,
    /// The disk is full: records were not written (507).
    Full,
}

impl RefusalKind {
    /// The HTTP status of each kind; the only such mapping.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalKind::Invalid => 400,
            RefusalKind::Unauthorized => 401,
            RefusalKind::Forbidden => 403,
            RefusalKind::NotFound => 404,
            RefusalKind::Conflict => 409,
            RefusalKind::Failed => 500,
            RefusalKind::Unavailable => 503,
            RefusalKind::Full => 507,
        }
    }

    /// The kind of an HTTP status (for an answer that did not say its kind).
    pub fn from_http_status(status: u16) -> RefusalKind {
        match status {
            400 => RefusalKind::Invalid,
            401 => RefusalKind::Unauthorized,
            403 => RefusalKind::Forbidden,
            404 => RefusalKind::NotFound,
            409 => RefusalKind::Conflict,
            503 => RefusalKind::Unavailable,
            507 => RefusalKind::Full,
            _ => RefusalKind::Failed,
        }
    }
}

/// A refusal with its sentence; on the wire `{"kind": "conflict", "error": "<sentence>"}`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    #[serde(rename = "error")]
    pub reason: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }
    pub fn invalid(reason: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Invalid, reason)
    }
    pub fn not_found(reason: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::NotFound, reason)
    }
    pub fn conflict(reason: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Conflict, reason)
    }
    pub fn failed(reason: impl std::fmt::Display) -> Refusal {
        Refusal::new(RefusalKind::Failed, reason.to_string())
    }
    pub fn http_status(&self) -> u16 {
        self.kind.http_status()
    }

    /// A refusal read back from an HTTP answer (its `error` sentence, its kind or its status).
    pub fn from_http(status: u16, body: &serde_json::Value) -> Refusal {
        let kind = body
            .get("kind")
            .and_then(|k| serde_json::from_value(k.clone()).ok())
            .unwrap_or_else(|| RefusalKind::from_http_status(status));
        let reason = match body {
            serde_json::Value::Object(map) => {
                map.get("error").or_else(|| map.get("message")).map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
            }
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        }
        .unwrap_or_else(|| format!("the node answered HTTP {status}"));
        Refusal { kind, reason }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_reads_back() {
        for (kind, status) in [
            (RefusalKind::Invalid, 400),
            (RefusalKind::Forbidden, 403),
            (RefusalKind::NotFound, 404),
            (RefusalKind::Conflict, 409),
        ] {
            let r = Refusal::new(kind, "why");
            assert_eq!(r.http_status(), status);
            let wire = serde_json::to_value(&r).unwrap();
            assert_eq!(wire["error"], "why");
            assert_eq!(Refusal::from_http(status, &wire), r);
            assert_eq!(
                Refusal::from_http(status, &serde_json::json!({"error": "why"})),
                r
            );
        }
    }
}
