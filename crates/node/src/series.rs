//! MX-3, downsampling for the console's pictures: a window cut into at most `points` buckets of
//! equal width, a check's runs folded into one point per bucket (min, max, mean, runs, failed),
//! state changes turned into periods. Pure: the store streams rows in, the admin edge sends the
//! answer out (`admin::series`).

use std::collections::BTreeMap;

use understudy_api::{
    CheckPoint, CheckSeries, EventView, HeldSpan, PairSeries, RatePoint, RecordSeries, Refusal,
    RoleSeries, RoleSpan, ServerRoles, Span, Window,
};

use crate::store::{SeriesEvent, Store};

/// A window `[from, to)` cut into buckets of `step` ms, at most `points` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buckets {
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub count: usize,
}

impl Buckets {
    /// `from < to` and `points ≥ 1` (the API's [`understudy_api::Window`] makes sure).
    pub fn new(from: i64, to: i64, points: usize) -> Buckets {
        let span = (to - from).max(1);
        let points = points.max(1) as i64;
        let step = ((span + points - 1) / points).max(1);
        let count = ((span + step - 1) / step) as usize;
        Buckets {
            from,
            to,
            step,
            count,
        }
    }

    /// The bucket of time `t`, if it is inside the window.
    pub fn index(&self, t: i64) -> Option<usize> {
        (t >= self.from && t < self.to).then(|| ((t - self.from) / self.step) as usize)
    }

    pub fn start(&self, i: usize) -> i64 {
        self.from + i as i64 * self.step
    }
}

#[derive(Clone, Copy, Debug)]
struct Fold {
    min: f64,
    max: f64,
    sum: f64,
    runs: u32,
    failed: u32,
}

/// A check's runs folded into one point per bucket.
pub struct CheckFold {
    buckets: Buckets,
    folds: Vec<Option<Fold>>,
}

impl CheckFold {
    pub fn new(buckets: Buckets) -> CheckFold {
        CheckFold {
            buckets,
            folds: vec![None; buckets.count],
        }
    }

    /// One stored run: its time, value and whether it was up. Runs outside the window are
    /// ignored.
    pub fn push(&mut self, time_ms: i64, value: f64, up: bool) {
        let Some(i) = self.buckets.index(time_ms) else {
            return;
        };
        let failed = u32::from(!up);
        let f = self.folds[i].get_or_insert(Fold {
            min: value,
            max: value,
            sum: 0.0,
            runs: 0,
            failed: 0,
        });
        f.min = f.min.min(value);
        f.max = f.max.max(value);
        f.sum += value;
        f.runs += 1;
        f.failed += failed;
    }

    /// The points, oldest first; buckets without runs are left out (a gap in the chart).
    pub fn points(&self) -> Vec<CheckPoint> {
        self.folds
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.map(|f| CheckPoint {
                    time_ms: self.buckets.start(i),
                    min: f.min,
                    max: f.max,
                    mean: f.sum / f64::from(f.runs),
                    runs: f.runs,
                    failed: f.failed,
                })
            })
            .collect()
    }
}

/// The periods during which a state held, within `[from, to)`: `changes` are `(time, on)`
/// oldest first, including those before `from` (the last of them says the state at `from`).
pub fn periods(changes: &[(i64, bool)], from: i64, to: i64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut since: Option<i64> = None;
    for &(t, on) in changes {
        if t >= to {
            break;
        }
        match (since, on) {
            (None, true) => since = Some(t.max(from)),
            (Some(s), false) => {
                if t > from {
                    out.push(Span {
                        from_ms: s,
                        to_ms: t,
                    });
                }
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        out.push(Span {
            from_ms: s,
            to_ms: to,
        });
    }
    out
}

/// Records per bucket (`(bucket, count)` from the store, any order) as a rate, every bucket
/// present.
pub fn rates(buckets: &Buckets, counts: &[(usize, u64)]) -> Vec<RatePoint> {
    let mut per = vec![0u64; buckets.count];
    for &(i, n) in counts {
        if let Some(slot) = per.get_mut(i) {
            *slot += n;
        }
    }
    let seconds = buckets.step as f64 / 1000.0;
    per.into_iter()
        .enumerate()
        .map(|(i, n)| RatePoint {
            time_ms: buckets.start(i),
            records: n,
            per_second: n as f64 / seconds,
        })
        .collect()
}

/// One member's records for a pair in one bucket: its first and last record's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub member: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub records: u64,
}

/// Who held a pair's duty: each bucket's members in the order their records began, runs of the
/// same member merged. A period ends where the next member's begins, the last one at its last
/// record.
pub fn held(mut rows: Vec<Held>) -> Vec<HeldSpan> {
    rows.sort_by_key(|h| (h.first_ms, h.last_ms));
    let mut out: Vec<HeldSpan> = Vec::new();
    for h in rows {
        match out.last_mut() {
            Some(last) if last.member == h.member => {
                last.to_ms = last.to_ms.max(h.last_ms);
                last.records += h.records;
            }
            _ => {
                if let Some(last) = out.last_mut() {
                    last.to_ms = last.to_ms.max(h.first_ms);
                }
                out.push(HeldSpan {
                    member: h.member,
                    from_ms: h.first_ms,
                    to_ms: h.last_ms,
                    records: h.records,
                });
            }
        }
    }
    out
}

pub const ACTIVE: &str = "ACTIVE";
pub const STANDBY: &str = "STANDBY";

/// Each hot-standby server's role strip from its PROMOTED (`true`) and DEMOTED (`false`)
/// changes `(time, server, promoted)`, oldest first, including those before `from`. A promotion
/// makes every other server that was ACTIVE a STANDBY (one ACTIVE per site; its own DEMOTED may
/// never have been written, e.g. after a crash).
pub fn roles(changes: &[(i64, String, bool)], from: i64, to: i64) -> Vec<ServerRoles> {
    let mut strips: BTreeMap<String, Vec<RoleSpan>> = BTreeMap::new();
    let set = |strips: &mut BTreeMap<String, Vec<RoleSpan>>, server: &str, t: i64, role: &str| {
        let spans = strips.entry(server.to_string()).or_default();
        let t = t.clamp(from, to);
        if let Some(last) = spans.last_mut() {
            if last.role == role {
                return;
            }
            last.to_ms = t;
        }
        spans.push(RoleSpan {
            role: role.to_string(),
            from_ms: t,
            to_ms: to,
        });
    };
    for (t, server, promoted) in changes {
        if *t >= to {
            break;
        }
        if *promoted {
            let others: Vec<String> = strips
                .iter()
                .filter(|(s, spans)| *s != server && spans.last().is_some_and(|l| l.role == ACTIVE))
                .map(|(s, _)| s.clone())
                .collect();
            for other in others {
                set(&mut strips, &other, *t, STANDBY);
            }
            set(&mut strips, server, *t, ACTIVE);
        } else {
            set(&mut strips, server, *t, STANDBY);
        }
    }
    strips
        .into_iter()
        .map(|(server, spans)| ServerRoles {
            server,
            // Periods wholly before the window were squeezed to nothing at `from`.
            spans: spans.into_iter().filter(|s| s.to_ms > s.from_ms).collect(),
        })
        .collect()
}

/// The events a pair's timeline marks: every change of who holds the duty.
pub const PAIR_CODES: &[&str] = &[
    "PAIR_ACTIVE",
    "FAILOVER",
    "FORCED_FAILOVER",
    "REVERTED",
    "PAIR_SWITCHBACK",
    "PAIR_BLACKOUT",
    "PAIR_BLACKOUT_END",
];

fn failed(e: crate::store::StoreError) -> Refusal {
    Refusal::failed(e)
}

fn view(e: SeriesEvent) -> EventView {
    EventView::new(
        e.id,
        e.time_ms,
        &e.code,
        e.subject,
        e.detail,
        Some(e.origin),
    )
}

/// `GET /api/series/check/{name}`.
pub fn check(
    store: &Store,
    name: &str,
    window: &Window,
    now_ms: i64,
) -> Result<CheckSeries, Refusal> {
    let (from, to, points) = window.resolve(now_ms)?;
    if store.check_get(name).map_err(failed)?.is_none() {
        return Err(Refusal::not_found(format!("no check named {name}")));
    }
    let buckets = Buckets::new(from, to, points);
    let mut fold = CheckFold::new(buckets);
    store
        .series_check_runs(name, from, to, |t, v, up| fold.push(t, v, up))
        .map_err(failed)?;
    let changes: Vec<(i64, bool)> = store
        .series_events(&["CHECK_DOWN", "CHECK_UP"], Some(name), to)
        .map_err(failed)?
        .into_iter()
        .map(|e| (e.time_ms, e.code == "CHECK_DOWN"))
        .collect();
    Ok(CheckSeries {
        name: name.to_string(),
        from_ms: from,
        to_ms: to,
        step_ms: buckets.step,
        points: fold.points(),
        down: periods(&changes, from, to),
    })
}

/// `GET /api/series/pair/{name}`.
pub fn pair(
    store: &Store,
    name: &str,
    window: &Window,
    now_ms: i64,
) -> Result<PairSeries, Refusal> {
    let (from, to, points) = window.resolve(now_ms)?;
    let Some(doc) = store.pair_get(name).map_err(failed)? else {
        return Err(Refusal::not_found(format!("no pair named {name}")));
    };
    let member = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let buckets = Buckets::new(from, to, points);
    let rows = store
        .series_pair_buckets(name, from, to, buckets.step)
        .map_err(failed)?
        .into_iter()
        .map(|b| Held {
            member: b.member,
            first_ms: b.first_ms,
            last_ms: b.last_ms,
            records: b.records,
        })
        .collect();
    let handovers = store
        .series_events(PAIR_CODES, Some(name), to)
        .map_err(failed)?
        .into_iter()
        .filter(|e| e.time_ms >= from)
        .map(view)
        .collect();
    Ok(PairSeries {
        name: name.to_string(),
        primary: member("primary"),
        secondary: member("secondary"),
        from_ms: from,
        to_ms: to,
        step_ms: buckets.step,
        held: held(rows),
        handovers,
    })
}

/// `GET /api/series/roles`: the strips, and the PROMOTED, DEMOTED and HANDOVER events in the
/// window.
pub fn role_strips(store: &Store, window: &Window, now_ms: i64) -> Result<RoleSeries, Refusal> {
    let (from, to, _) = window.resolve(now_ms)?;
    let events = store
        .series_events(&["PROMOTED", "DEMOTED", "HANDOVER"], None, to)
        .map_err(failed)?;
    // A HANDOVER is marked, not a change: the peer's PROMOTED says when the role moved (and
    // a handover the peer refused leaves this server ACTIVE).
    let changes: Vec<(i64, String, bool)> = events
        .iter()
        .filter(|e| e.code != "HANDOVER")
        .map(|e| (e.time_ms, e.subject.clone(), e.code == "PROMOTED"))
        .collect();
    Ok(RoleSeries {
        from_ms: from,
        to_ms: to,
        servers: roles(&changes, from, to),
        events: events
            .into_iter()
            .filter(|e| e.time_ms >= from)
            .map(view)
            .collect(),
    })
}

/// `GET /api/series/records`.
pub fn records(store: &Store, window: &Window, now_ms: i64) -> Result<RecordSeries, Refusal> {
    let (from, to, points) = window.resolve(now_ms)?;
    let buckets = Buckets::new(from, to, points);
    let counts = store
        .series_record_buckets(from, to, buckets.step)
        .map_err(failed)?;
    Ok(RecordSeries {
        from_ms: from,
        to_ms: to,
        step_ms: buckets.step,
        points: rates(&buckets, &counts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn mx3_a_week_of_a_5s_check_is_a_few_hundred_points_with_min_max_mean() {
        let from = 1_700_000_000_000;
        let to = from + 7 * DAY;
        let b = Buckets::new(from, to, 300);
        assert_eq!(b.count, 300);
        assert_eq!(b.step, 2_016_000); // 33.6 min
        let mut fold = CheckFold::new(b);
        let mut runs = 0;
        let mut t = from;
        while t < to {
            // A latency that grows through each bucket; one run in 10 fails.
            let value = ((t - from) % b.step) as f64 / 1000.0;
            fold.push(t, value, runs % 10 != 0);
            runs += 1;
            t += 5_000;
        }
        assert_eq!(runs, 120_960);
        let points = fold.points();
        assert_eq!(points.len(), 300);
        assert_eq!(points.iter().map(|p| p.runs as usize).sum::<usize>(), runs);
        let first = &points[0];
        assert_eq!(first.time_ms, from);
        assert_eq!(first.runs, 404); // 2016 s / 5 s, rounded up
        assert_eq!(first.failed, 41);
        assert_eq!(first.min, 0.0);
        assert_eq!(first.max, 2015.0);
        assert!((first.mean - 1007.5).abs() < 0.01, "{}", first.mean);
        assert_eq!(points[299].time_ms, from + 299 * b.step);
    }

    #[test]
    fn mx3_buckets_cover_the_window_and_runs_outside_it_are_ignored() {
        let b = Buckets::new(1000, 2001, 10);
        assert_eq!((b.step, b.count), (101, 10));
        assert_eq!(b.index(999), None);
        assert_eq!(b.index(1000), Some(0));
        assert_eq!(b.index(2000), Some(9));
        assert_eq!(b.index(2001), None);
        // More points asked than milliseconds: one bucket per millisecond.
        let b = Buckets::new(0, 5, 300);
        assert_eq!((b.step, b.count), (1, 5));
        let mut fold = CheckFold::new(Buckets::new(0, 100, 4));
        fold.push(-1, 7.0, true);
        fold.push(100, 7.0, true);
        fold.push(60, 3.0, false);
        fold.push(70, 5.0, true);
        let points = fold.points();
        assert_eq!(points.len(), 1, "empty buckets are gaps");
        assert_eq!(
            points[0],
            CheckPoint {
                time_ms: 50,
                min: 3.0,
                max: 5.0,
                mean: 4.0,
                runs: 2,
                failed: 1
            }
        );
    }

    #[test]
    fn mx3_down_periods_start_before_the_window_and_run_to_its_end() {
        let span = |from_ms, to_ms| Span { from_ms, to_ms };
        // Down before the window, up inside; down again and still down at the end.
        let changes = [(50, true), (150, false), (300, true)];
        assert_eq!(
            periods(&changes, 100, 400),
            vec![span(100, 150), span(300, 400)]
        );
        // A period wholly before the window is not shown; a change after it is ignored.
        let changes = [(10, true), (20, false), (500, true)];
        assert!(periods(&changes, 100, 400).is_empty());
        // Repeated states (a replicated event twice) do not split a period.
        let changes = [(110, true), (120, true), (130, false), (140, false)];
        assert_eq!(periods(&changes, 100, 400), vec![span(110, 130)]);
    }

    #[test]
    fn mx3_records_per_second_has_every_bucket() {
        let b = Buckets::new(0, 10_000, 5);
        let r = rates(&b, &[(1, 4), (3, 10), (3, 2), (99, 1)]);
        let per: Vec<f64> = r.iter().map(|p| p.per_second).collect();
        assert_eq!(per, vec![0.0, 2.0, 0.0, 6.0, 0.0]);
        assert_eq!(r[3].time_ms, 6000);
        assert_eq!(r[3].records, 12);
    }

    #[test]
    fn mx3_a_pair_timeline_merges_a_members_buckets_and_ends_at_the_next_member() {
        let h = |m: &str, first_ms, last_ms, records| Held {
            member: m.into(),
            first_ms,
            last_ms,
            records,
        };
        let rows = vec![
            h("a2", 260, 290, 3),
            h("a1", 0, 90, 10),
            h("a1", 100, 190, 10),
            h("a1", 200, 240, 5),
            h("a1", 300, 390, 9),
        ];
        let spans = held(rows);
        let got: Vec<(&str, i64, i64, u64)> = spans
            .iter()
            .map(|s| (s.member.as_str(), s.from_ms, s.to_ms, s.records))
            .collect();
        assert_eq!(
            got,
            vec![("a1", 0, 260, 25), ("a2", 260, 300, 3), ("a1", 300, 390, 9)]
        );
    }

    #[test]
    fn mx3_role_strips_follow_promotions_and_a_promotion_demotes_the_other() {
        let c = |t, s: &str, p| (t, s.to_string(), p);
        // s1 ACTIVE from before the window; s2 promoted at 200 (s1 crashed: no DEMOTED);
        // s2 hands over at 300 (DEMOTED) and s1 is promoted at 310.
        let changes = [
            c(10, "s1", true),
            c(200, "s2", true),
            c(300, "s2", false),
            c(310, "s1", true),
        ];
        let strips = roles(&changes, 100, 400);
        fn show(s: &ServerRoles) -> Vec<(&str, i64, i64)> {
            s.spans
                .iter()
                .map(|r| (r.role.as_str(), r.from_ms, r.to_ms))
                .collect()
        }
        assert_eq!(strips.len(), 2);
        assert_eq!(strips[0].server, "s1");
        assert_eq!(
            show(&strips[0]),
            vec![(ACTIVE, 100, 200), (STANDBY, 200, 310), (ACTIVE, 310, 400)]
        );
        assert_eq!(
            show(&strips[1]),
            vec![(ACTIVE, 200, 300), (STANDBY, 300, 400)]
        );
        // Before the window only: the last role holds the whole window.
        let strips = roles(&[c(10, "s1", true), c(20, "s1", false)], 100, 400);
        assert_eq!(show(&strips[0]), vec![(STANDBY, 100, 400)]);
    }
}
