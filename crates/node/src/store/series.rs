//! MX-3: the store's reads for the console's pictures (`/api/series/…`). Each reads through an
//! index of migration 6 (a time range of one check, of one pair, of all records; the events by
//! code), never the whole records table; `series_plans_use_indexes` checks the query plans.

use rusqlite::params;

use super::{Result, Store};

/// One member's records for a pair in one bucket (`crate::series::held` merges them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairBucket {
    pub member: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub records: u64,
}

/// One event of a series (an id, its origin server, time, code, subject and sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEvent {
    pub id: u64,
    pub origin: String,
    pub time_ms: i64,
    pub code: String,
    pub subject: String,
    pub detail: String,
}

const CHECK_RUNS: &str = "SELECT time_ms, value,
        CASE WHEN json_valid(detail) THEN json_extract(detail, '$.up') END
     FROM records WHERE kind = 'check' AND name = ?1 AND time_ms >= ?2 AND time_ms < ?3";

const PAIR_BUCKETS: &str = "SELECT agent_name, MIN(time_ms), MAX(time_ms), COUNT(*)
     FROM records WHERE pair = ?1 AND time_ms >= ?2 AND time_ms < ?3
     GROUP BY (time_ms - ?2) / ?4, agent_name";

const RECORD_BUCKETS: &str = "SELECT (time_ms - ?1) / ?3, COUNT(*)
     FROM records WHERE time_ms >= ?1 AND time_ms < ?2 GROUP BY 1";

impl Store {
    /// A check's stored runs in `[from, to)`, each given to `run(time, value, up)` as it is
    /// read (a run whose detail does not say is up).
    pub fn series_check_runs(
        &self,
        name: &str,
        from: i64,
        to: i64,
        mut run: impl FnMut(i64, f64, bool),
    ) -> Result<()> {
        const DOING: &str = "reading a check's runs";
        let err = |e| self.err(DOING, e);
        let mut stmt = self.conn.prepare_cached(CHECK_RUNS).map_err(err)?;
        let mut rows = stmt.query(params![name, from, to]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let up: Option<i64> = row.get(2).map_err(err)?;
            run(
                row.get(0).map_err(err)?,
                row.get(1).map_err(err)?,
                up != Some(0),
            );
        }
        Ok(())
    }

    /// A pair's records in `[from, to)` per bucket of `step` ms and member.
    pub fn series_pair_buckets(
        &self,
        pair: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<PairBucket>> {
        const DOING: &str = "reading a pair's records";
        let err = |e| self.err(DOING, e);
        let mut stmt = self.conn.prepare_cached(PAIR_BUCKETS).map_err(err)?;
        let rows = stmt
            .query_map(params![pair, from, to, step.max(1)], |row| {
                Ok(PairBucket {
                    member: row.get(0)?,
                    first_ms: row.get(1)?,
                    last_ms: row.get(2)?,
                    records: super::to_u64(row.get(3)?),
                })
            })
            .map_err(err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(err)
    }

    /// How many records (by their time) fall in each bucket of `step` ms of `[from, to)`:
    /// `(bucket, count)`, buckets without records left out.
    pub fn series_record_buckets(
        &self,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<(usize, u64)>> {
        const DOING: &str = "counting records";
        let err = |e| self.err(DOING, e);
        let mut stmt = self.conn.prepare_cached(RECORD_BUCKETS).map_err(err)?;
        let rows = stmt
            .query_map(params![from, to, step.max(1)], |row| {
                Ok((
                    usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX),
                    super::to_u64(row.get(1)?),
                ))
            })
            .map_err(err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(err)
    }

    /// The events of `codes` (about `subject`, when given) before `to`, oldest first: those
    /// before a window say the state at its start. Read by code (`events_by_code`); events are
    /// few next to records.
    pub fn series_events(
        &self,
        codes: &[&str],
        subject: Option<&str>,
        to: i64,
    ) -> Result<Vec<SeriesEvent>> {
        const DOING: &str = "reading events for a series";
        let err = |e| self.err(DOING, e);
        let mut out = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, origin, time_ms, code, subject, detail FROM events
                 WHERE code = ?1 AND (?2 IS NULL OR subject = ?2) AND time_ms < ?3",
            )
            .map_err(err)?;
        for code in codes {
            let rows = stmt
                .query_map(params![code, subject, to], |row| {
                    Ok(SeriesEvent {
                        id: super::to_u64(row.get(0)?),
                        origin: row.get(1)?,
                        time_ms: row.get(2)?,
                        code: row.get(3)?,
                        subject: row.get(4)?,
                        detail: row.get(5)?,
                    })
                })
                .map_err(err)?;
            for row in rows {
                out.push(row.map_err(err)?);
            }
        }
        out.sort_by_key(|e| (e.time_ms, e.id));
        Ok(out)
    }

    /// The query plan's lines of `sql` (tests: which index a query reads through).
    #[cfg(test)]
    fn plan(&self, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let mut stmt = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        let rows = stmt
            .query_map(params, |row| row.get::<_, String>(3))
            .expect("plan rows");
        rows.map(|r| r.expect("plan row")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, STORE_FILE};

    fn record(seq: u64, name: &str, time_ms: i64, pair: Option<&str>, up: bool) -> Record {
        Record {
            seq,
            name: name.into(),
            value: seq as f64,
            time_ms,
            pair: pair.map(str::to_string),
            kind: "check".into(),
            detail: Some(format!(r#"{{"up": {up}, "detail": "x"}}"#)),
            labels: Default::default(),
            pair_epoch: None,
        }
    }

    #[test]
    fn mx3_series_plans_use_indexes_not_a_scan_of_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join(STORE_FILE), "n").expect("open");
        let plans = [
            store.plan(CHECK_RUNS, params!["db", 0, 1]),
            store.plan(PAIR_BUCKETS, params!["web", 0, 1, 1]),
            store.plan(RECORD_BUCKETS, params![0, 1, 1]),
        ];
        let want = [
            "records_check_by_time",
            "records_pair_by_time",
            "records_by_time",
        ];
        for (plan, index) in plans.iter().zip(want) {
            let text = plan.join(" | ");
            assert!(text.contains(index), "{index}: {text}");
            assert!(
                !plan.iter().any(|l| l.starts_with("SCAN records")),
                "{text}"
            );
        }
    }

    #[test]
    fn mx3_series_reads_return_what_was_stored_in_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join(STORE_FILE), "n").expect("open");
        let a1: Vec<Record> = (1..=10)
            .map(|i| record(i, "db", i as i64 * 100, Some("web"), i != 4))
            .collect();
        store.records_insert("id-a1", "a1", &a1, None).expect("a1");
        let mut a2 = vec![record(1, "db", 1150, Some("web"), true)];
        a2.push(Record {
            detail: Some("not json".into()),
            ..record(2, "db", 1250, Some("web"), true)
        });
        a2.push(record(3, "other", 1250, None, false));
        store.records_insert("id-a2", "a2", &a2, None).expect("a2");

        let mut runs = Vec::new();
        store
            .series_check_runs("db", 200, 1200, |t, v, up| runs.push((t, v, up)))
            .expect("runs");
        assert_eq!(runs.len(), 10, "{runs:?}"); // a1's 200..1000 and a2's 1150
        assert!(runs.contains(&(400, 4.0, false)));
        assert!(runs.contains(&(1150, 1.0, true)));

        let buckets = store
            .series_pair_buckets("web", 0, 2000, 1000)
            .expect("pair");
        let mut got: Vec<_> = buckets
            .iter()
            .map(|b| (b.member.as_str(), b.first_ms, b.last_ms, b.records))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("a1", 100, 900, 9),
                ("a1", 1000, 1000, 1),
                ("a2", 1150, 1250, 2)
            ]
        );

        let mut counts = store.series_record_buckets(0, 2000, 500).expect("count");
        counts.sort();
        assert_eq!(counts, vec![(0, 4), (1, 5), (2, 4)]);
    }
}
