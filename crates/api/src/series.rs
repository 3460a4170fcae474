//! MX-3, the console's pictures: what `GET /api/series/…` asks (a [`Window`]) and answers. The
//! server downsamples: an answer has at most [`Window::points`] points (default
//! [`DEFAULT_POINTS`], at most [`MAX_POINTS`]) whatever the window holds, so a week of a 5 s check
//! is a few hundred points.

use serde::{Deserialize, Serialize};

use crate::event::EventView;
use crate::refusal::Refusal;

/// Points per answer when the query does not say.
pub const DEFAULT_POINTS: usize = 300;
/// The most points an answer may ask for.
pub const MAX_POINTS: usize = 2000;
/// The window when the query gives no `from`: the hour before `to`.
pub const DEFAULT_SPAN_MS: i64 = 3_600_000;

/// The time window of a series request: `from` and `to` in milliseconds since 1970 (`to`
/// defaults to now, `from` to [`DEFAULT_SPAN_MS`] before `to`), and how many points at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub points: Option<usize>,
}

impl Window {
    /// The window from a query's `from`, `to` and `points`, or why it is not one.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        points: Option<&str>,
    ) -> Result<Window, Refusal> {
        let time = |key: &str, v: Option<&str>| -> Result<Option<i64>, Refusal> {
            v.map(|v| {
                v.parse::<i64>().ok().filter(|t| *t >= 0).ok_or_else(|| {
                    Refusal::invalid(format!(
                        "{key} must be a time in milliseconds since 1970, not {v}"
                    ))
                })
            })
            .transpose()
        };
        let from_ms = time("from", from)?;
        let to_ms = time("to", to)?;
        if let (Some(f), Some(t)) = (from_ms, to_ms) {
            if f >= t {
                return Err(Refusal::invalid(format!(
                    "from ({f}) must be before to ({t})"
                )));
            }
        }
        let points = points
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (2..=MAX_POINTS).contains(n))
                    .ok_or_else(|| {
                        Refusal::invalid(format!(
                            "points must be a number from 2 to {MAX_POINTS}, not {v}"
                        ))
                    })
            })
            .transpose()?;
        Ok(Window {
            from_ms,
            to_ms,
            points,
        })
    }

    /// The query string's parameters (only those given).
    pub fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("from", self.from_ms.map(|t| t.to_string())),
            ("to", self.to_ms.map(|t| t.to_string())),
            ("points", self.points.map(|n| n.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// The window resolved at `now_ms`: `(from, to, points)` with `from < to`.
    pub fn resolve(&self, now_ms: i64) -> Result<(i64, i64, usize), Refusal> {
        let to = self.to_ms.unwrap_or(now_ms);
        let from = self.from_ms.unwrap_or(to - DEFAULT_SPAN_MS).max(0);
        if from >= to {
            return Err(Refusal::invalid(format!(
                "from ({from}) must be before to ({to})"
            )));
        }
        Ok((from, to, self.points.unwrap_or(DEFAULT_POINTS)))
    }
}

/// One bucket of a check's runs: `time_ms` is the bucket's start; `min`/`max`/`mean` of the
/// runs' values (latency in ms for network checks), `runs` how many, `failed` how many were down.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckPoint {
    pub time_ms: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub runs: u32,
    pub failed: u32,
}

/// A period `[from_ms, to_ms)`; `to_ms` is the window's end for one still going on.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// `GET /api/series/check/{name}`: the check's runs, downsampled (buckets without runs left
/// out), and its down periods (AL-2: from CHECK_DOWN to CHECK_UP).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckSeries {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The width of a bucket.
    pub step_ms: i64,
    pub points: Vec<CheckPoint>,
    pub down: Vec<Span>,
}

/// Who held a pair's duty during a period: the member whose records for the pair were stored
/// then (only the holder of the lease records for its pair, PR-3).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSpan {
    /// The agent's name.
    pub member: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Records it stored for the pair in the period.
    pub records: u64,
}

/// `GET /api/series/pair/{name}`: which member held the duty over time, and the pair's
/// handovers (PAIR_ACTIVE, FAILOVER, FORCED_FAILOVER, REVERTED, PAIR_SWITCHBACK, PAIR_BLACKOUT,
/// PAIR_BLACKOUT_END) in the window.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairSeries {
    pub name: String,
    pub primary: String,
    pub secondary: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub held: Vec<HeldSpan>,
    pub handovers: Vec<EventView>,
}

/// A hot-standby server's role during a period: `ACTIVE` or `STANDBY`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpan {
    pub role: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One server's role strip.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRoles {
    pub server: String,
    pub spans: Vec<RoleSpan>,
}

/// `GET /api/series/roles`: each hot-standby server's ACTIVE/STANDBY history (HS-4, HS-5,
/// HS-8: from its PROMOTED and DEMOTED events; a promotion makes the other a STANDBY) and the
/// PROMOTED, DEMOTED and HANDOVER events in the window.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleSeries {
    pub from_ms: i64,
    pub to_ms: i64,
    pub servers: Vec<ServerRoles>,
    pub events: Vec<EventView>,
}

/// One bucket of stored records: `time_ms` its start (by the records' time).
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatePoint {
    pub time_ms: i64,
    pub records: u64,
    pub per_second: f64,
}

/// `GET /api/series/records`: records per second over the window, every bucket present.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordSeries {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub points: Vec<RatePoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx3_a_window_parses_and_bad_parameters_say_why() {
        let w = Window::parse(Some("1000"), Some("5000"), Some("10")).expect("window");
        assert_eq!(w.resolve(9), Ok((1000, 5000, 10)));
        let w = Window::parse(None, None, None).expect("defaults");
        assert_eq!(
            w.resolve(10_000_000),
            Ok((10_000_000 - DEFAULT_SPAN_MS, 10_000_000, DEFAULT_POINTS))
        );
        let e = Window::parse(Some("yesterday"), None, None).unwrap_err();
        assert_eq!(
            e.reason,
            "from must be a time in milliseconds since 1970, not yesterday"
        );
        let e = Window::parse(Some("5"), Some("5"), None).unwrap_err();
        assert_eq!(e.reason, "from (5) must be before to (5)");
        let e = Window::parse(None, None, Some("1")).unwrap_err();
        assert_eq!(
            e.reason,
            format!("points must be a number from 2 to {MAX_POINTS}, not 1")
        );
        assert!(Window::parse(None, None, Some("100000")).is_err());
        let e = Window::parse(None, Some("100"), None)
            .expect("to only")
            .resolve(0);
        assert_eq!(e, Ok((0, 100, DEFAULT_POINTS)));
        let e = Window::parse(Some("100"), None, None)
            .expect("from only")
            .resolve(50)
            .unwrap_err();
        assert_eq!(e.reason, "from (100) must be before to (50)");
    }
}
