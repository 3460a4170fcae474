//! An event as every view shows it: the engine's code with its `notify` flag and `severity`
//! taken from the engine's table ([`understudy_engine::EventCode`]), so no shell keeps a list.

use serde::{Deserialize, Serialize};
use understudy_engine::EventCode;

/// How serious an event is; its colour in every view.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// `info`, `warning` or `critical`, as written in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Severity, String> {
        Severity::parse(s).ok_or_else(|| format!("{s:?} is not info, warning or critical"))
    }
}

impl From<understudy_engine::Severity> for Severity {
    fn from(s: understudy_engine::Severity) -> Severity {
        match s {
            understudy_engine::Severity::Info => Severity::Info,
            understudy_engine::Severity::Warning => Severity::Warning,
            understudy_engine::Severity::Critical => Severity::Critical,
        }
    }
}

/// One stored event (UI-1), as `GET /api/events` lists it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: u64,
    #[serde(default)]
    pub time_ms: i64,
    pub code: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub sentence: String,
    /// Where the event was raised: this node, or the peer it was replicated from.
    #[serde(default)]
    pub origin: Option<String>,
    /// Whether the desktop app raises a notification for it (the engine's flag, UI-2).
    #[serde(default)]
    pub notify: bool,
    #[serde(default = "info")]
    pub severity: Severity,
    /// A short heading for a notification or a list.
    #[serde(default)]
    pub title: String,
    /// UI-5: the event's stable id, `ORIGIN:N` (the node that raised it and its number there),
    /// the same on both servers of a hot-standby pair (`id` is each store's own): what a
    /// follower resumes after (`GET /api/events?follow=1&after=KEY`).
    #[serde(default)]
    pub key: String,
}

fn info() -> Severity {
    Severity::Info
}

impl EventView {
    /// The view of an event with `code`; `notify`, `severity` and `title` come from the
    /// engine's table (an unknown code, e.g. from a newer peer, is listed and not notified).
    pub fn new(
        id: u64,
        time_ms: i64,
        code: &str,
        subject: String,
        sentence: String,
        origin: Option<String>,
    ) -> EventView {
        let known = EventCode::parse(code);
        EventView {
            id,
            time_ms,
            code: code.to_string(),
            subject,
            sentence,
            origin,
            notify: known.is_some_and(EventCode::notify),
            severity: known.map_or(Severity::Info, |c| c.severity().into()),
            title: known.map_or_else(|| code.to_string(), |c| c.title().to_string()),
            key: String::new(),
        }
    }

    /// The view with its stable [`key`](EventView::key): `origin_id` is the event's number on
    /// its origin (the view's `origin`).
    pub fn keyed(mut self, origin_id: u64) -> EventView {
        if let Some(origin) = &self.origin {
            self.key = format!("{origin}:{origin_id}");
        }
        self
    }

    /// A stable key `ORIGIN:N` split into its origin and number.
    pub fn parse_key(key: &str) -> Option<(&str, u64)> {
        let (origin, n) = key.rsplit_once(':')?;
        (!origin.is_empty()).then_some(())?;
        Some((origin, n.parse().ok()?))
    }
}

/// `GET /api/events`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub events: Vec<EventView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui2_every_code_carries_the_engines_notify_and_severity() {
        for code in EventCode::ALL {
            let v = EventView::new(1, 0, code.as_str(), "s".into(), "why".into(), None);
            assert_eq!(v.notify, code.notify(), "{code}");
            assert_eq!(v.severity, code.severity().into(), "{code}");
            assert_eq!(v.title, code.title());
        }
        let unknown = EventView::new(1, 0, "NEWER_CODE", "s".into(), "why".into(), None);
        assert!(!unknown.notify);
    }
}
