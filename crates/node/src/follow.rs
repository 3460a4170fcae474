//! UI-5: following a site's events as they happen, across reconnects and the servers' failover.
//! One [`Follower`] long-polls `GET /api/events?follow=1&after=KEY` on one server of the site;
//! when that server stops answering it moves to the other and resumes after the same stable
//! event key (`ORIGIN:N`, the same on both servers), so each event is handed out once. The
//! desktop app's site follower and `understudy events --follow` are built on it.

use std::time::Duration;

use understudy_api::event::Events;
use understudy_api::{defaults, EventQuery, Refusal, RefusalKind, Request};

use crate::http_client::AdminClient;
use crate::tls::Pins;

/// Why a poll brought no events.
#[derive(Debug)]
pub enum FollowError {
    /// The server did not answer: the follower now follows `to` (the same one again when the
    /// site has one server).
    Moved {
        from: String,
        to: String,
        why: String,
    },
    /// The server refused (401 for a revoked or unknown token, 403, …): asking again will not
    /// help.
    Refused(Refusal),
}

impl std::fmt::Display for FollowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowError::Moved { from, to, why } => {
                write!(f, "{from} did not answer ({why}); now following {to}")
            }
            FollowError::Refused(r) => write!(f, "refused: {}", r.reason),
        }
    }
}

/// Follows one site's events (see the module).
pub struct Follower {
    clients: Vec<(String, AdminClient)>,
    current: usize,
    after: Option<String>,
}

impl Follower {
    /// `servers` as `https://HOST:PORT#FINGERPRINT` (pinned), the one to follow first first.
    pub fn new(servers: &[String], token: &str, after: Option<String>) -> Result<Follower, String> {
        let clients = servers
            .iter()
            .map(|url| {
                AdminClient::new(url, token, Pins::new([]))
                    .map(|c| {
                        // The server holds the request up to EVENTS_FOLLOW_WAIT.
                        let c =
                            c.with_timeout(defaults::EVENTS_FOLLOW_WAIT + Duration::from_secs(10));
                        (url.split('#').next().unwrap_or(url).to_string(), c)
                    })
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err("no server to follow".into());
        }
        Ok(Follower {
            clients,
            current: 0,
            after,
        })
    }

    /// The key of the last event handed out (where a new follower would resume).
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// The server being followed, `https://HOST:PORT`.
    pub fn server(&self) -> &str {
        &self.clients[self.current].0
    }

    /// One long poll: the events after the last one handed out (possibly none, after the
    /// server's wait), or why there were none.
    pub async fn next(&mut self) -> Result<Vec<understudy_api::EventView>, FollowError> {
        let request = Request::Events(EventQuery {
            follow: true,
            after: self.after.clone(),
            ..EventQuery::default()
        });
        let call = request.to_http();
        let (url, client) = &self.clients[self.current];
        match client
            .call(call.method, &call.path, call.body.as_ref())
            .await
        {
            Ok((200, value)) => {
                let events: Events = serde_json::from_value(value).map_err(|e| {
                    FollowError::Refused(Refusal::failed(format!(
                        "{url}: not a list of events: {e}"
                    )))
                })?;
                if let Some(last) = events.events.last() {
                    if !last.key.is_empty() {
                        self.after = Some(last.key.clone());
                    }
                }
                Ok(events.events)
            }
            Ok((status, value)) => {
                let refusal =
                    serde_json::from_value::<Refusal>(value.clone()).unwrap_or_else(|_| {
                        Refusal::new(RefusalKind::from_http_status(status), value.to_string())
                    });
                if refusal.kind == RefusalKind::Unavailable {
                    return Err(self.move_on(refusal.reason));
                }
                Err(FollowError::Refused(refusal))
            }
            Err(e) => Err(self.move_on(e.to_string())),
        }
    }

    fn move_on(&mut self, why: String) -> FollowError {
        let from = self.server().to_string();
        self.current = (self.current + 1) % self.clients.len();
        FollowError::Moved {
            from,
            to: self.server().to_string(),
            why,
        }
    }
}
