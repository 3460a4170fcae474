//! The node's one SQLite database, `store.db`: the agent's cache of unacknowledged records (AG-2),
//! the server's stored records, the event log (UI-1), the replicated site configuration (HS-3) and
//! a small key-value table of node state (epochs, learned pins).
//!
//! Every write is one transaction with `synchronous=FULL`, so when a function returns `Ok` the data
//! survives a kill -9 or a power cut; that is what lets the agent delete a record once the server
//! has acknowledged it. `Store` is synchronous: the runtime wraps it in a mutex and calls it from
//! `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod series;
pub use series::{PairBucket, SeriesEvent};

/// The file name of the store inside a node's data directory.
pub const STORE_FILE: &str = "store.db";

/// Schema migrations, applied in order, each in its own transaction; `PRAGMA user_version` is the
/// number applied. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE cache (
        seq     INTEGER PRIMARY KEY,
        name    TEXT NOT NULL,
        value   REAL NOT NULL,
        time_ms INTEGER NOT NULL,
        pair    TEXT,
        kind    TEXT NOT NULL,
        detail  TEXT
    );
    -- `id` is the replication cursor (records_since); AUTOINCREMENT so it never goes backwards
    -- even if old rows are pruned. (agent_id, seq) is the identity that makes delivery idempotent.
    CREATE TABLE records (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id   TEXT NOT NULL,
        agent_name TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        name       TEXT NOT NULL,
        value      REAL NOT NULL,
        time_ms    INTEGER NOT NULL,
        pair       TEXT,
        kind       TEXT NOT NULL,
        detail     TEXT,
        UNIQUE (agent_id, seq)
    );
    CREATE INDEX records_by_agent_name ON records (agent_name, id);
    CREATE INDEX records_by_pair ON records (pair, id);
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        origin    TEXT NOT NULL,
        origin_id INTEGER NOT NULL,
        time_ms   INTEGER NOT NULL,
        code      TEXT NOT NULL,
        subject   TEXT NOT NULL,
        detail    TEXT NOT NULL,
        data      TEXT NOT NULL,
        UNIQUE (origin, origin_id)
    );
    CREATE INDEX events_by_code ON events (code, id);
    CREATE TABLE agents (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        fingerprint   TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
        first_seen_ms INTEGER NOT NULL
    );
    CREATE TABLE pairs    (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE checks   (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE settings (key  TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE node_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    "#,
    // 2: AG-2 across independent servers. `cache.held_by`: the server outside the home cluster
    // that acknowledged a cached record (NULL: nobody yet); it stays cached until home has it.
    // `records.taken_for`: the home server of an agent whose record a standby of another site
    // stored while standing in (NULL: this server is the agent's home cluster).
    r#"
    ALTER TABLE cache ADD COLUMN held_by TEXT;
    ALTER TABLE records ADD COLUMN taken_for TEXT;
    "#,
    // 3: AL-5, the outbox. An alert is written with its event, in the same transaction, with one
    // delivery row per channel; `rev` grows at every change of a row (from the `outbox_rev`
    // counter), the cursor a STANDBY replicates the outbox and its marks with.
    r#"
    CREATE TABLE alerts (
        id        TEXT PRIMARY KEY,
        event_id  INTEGER NOT NULL,
        time_ms   INTEGER NOT NULL,
        code      TEXT NOT NULL,
        severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        subject   TEXT NOT NULL,
        sentence  TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        alert_id   TEXT NOT NULL REFERENCES alerts (id),
        channel    TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_ms    INTEGER NOT NULL,
        last_error TEXT,
        rev        INTEGER NOT NULL,
        PRIMARY KEY (alert_id, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (state, next_ms);
    CREATE INDEX deliveries_by_rev ON deliveries (rev);
    "#,
    // 4: issue 12 item 3, site configuration replicated with the agents. `agents.home`: whether
    // this cluster is the agent's home, decided when the server made the entry (1 or 0; NULL for
    // an entry from before, decided at its next admission). `agents.announced`: a certificate
    // the accepted agent announced and has not connected with yet (CT-2).
    r#"
    ALTER TABLE agents ADD COLUMN home INTEGER CHECK (home IN (0, 1));
    ALTER TABLE agents ADD COLUMN announced TEXT;
    "#,
    // 5: AL-4, alert channels: site configuration (replicated with it, HS-3). A channel's
    // document holds its secrets; the store file is 0600 and views show them as "set".
    r#"
    CREATE TABLE channels (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
    "#,
    // 6: MX-3, the console's pictures read a time range (store/series.rs): of one check's runs,
    // of one pair's records (partial indexes: only those rows pay), of all records (records/s).
    r#"
    CREATE INDEX records_check_by_time ON records (name, time_ms) WHERE kind = 'check';
    CREATE INDEX records_pair_by_time ON records (pair, time_ms, agent_name) WHERE pair IS NOT NULL;
    CREATE INDEX records_by_time ON records (time_ms);
    "#,
    // 7: issue 18 item 3, a record's labels: a JSON object of strings, NULL when it has none
    // (every record from before).
    r#"
    ALTER TABLE cache ADD COLUMN labels TEXT;
    ALTER TABLE records ADD COLUMN labels TEXT;
    "#,
    // 8: issue 12 item 3, the pair counter an agent held when it made a record under a pair's
    // alias (NULL: no alias, or cached before this column). The server checks it on arrival.
    r#"
    ALTER TABLE cache ADD COLUMN pair_epoch INTEGER;
    "#,
];

/// AL-5: when the next attempt of a delivery that failed `attempts` times is due: 1 s after the
/// first failure, doubling, at most 5 min apart.
pub fn retry_after(attempts: u32) -> std::time::Duration {
    let first = understudy_api::defaults::ALERT_RETRY_FIRST;
    let max = understudy_api::defaults::ALERT_RETRY_MAX;
    let doublings = attempts.saturating_sub(1).min(16);
    (first * (1u32 << doublings)).min(max)
}

/// An alert to write with its event (AL-1, AL-5): its stable id and severity, and the channels
/// it goes to (one delivery row each).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub id: String,
    pub severity: String,
    pub channels: Vec<String>,
}

/// One alert of the outbox with its delivery per channel (`alert list --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: String,
    pub event_id: u64,
    pub time_ms: i64,
    pub code: String,
    pub severity: String,
    pub subject: String,
    pub sentence: String,
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub channel: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub next_ms: i64,
    pub last_error: Option<String>,
}

/// A delivery whose attempt is due, with what its message says.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub alert_id: String,
    pub channel: String,
    pub attempts: u32,
    pub time_ms: i64,
    pub code: String,
    pub severity: String,
    pub subject: String,
    pub sentence: String,
}

/// One delivery with its alert, as the STANDBY replicates the outbox and its marks (AL-5), in
/// the order of the acting server's `rev`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub rev: u64,
    pub alert_id: String,
    pub time_ms: i64,
    pub code: String,
    pub severity: String,
    pub subject: String,
    pub sentence: String,
    pub channel: String,
    pub state: String,
    pub attempts: u32,
    pub next_ms: i64,
    pub last_error: Option<String>,
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Sent,
    /// Retried at this wall-clock time.
    Retry(i64),
    /// `alert.give_up_after` has passed: DELIVERY_FAILED.
    Failed,
}

const OUTBOX_REV: &str = "outbox_rev";

const CACHE_SEQ: &str = "cache_seq";
const SITE_VERSION: &str = "site_version";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {doing}: {source}")]
    Io {
        path: PathBuf,
        doing: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: disk full while {doing}; nothing was changed, and writing resumes when space is freed")]
    DiskFull {
        path: PathBuf,
        doing: &'static str,
        source: rusqlite::Error,
    },
    #[error("{path}: database locked (busy for more than 5s) while {doing}; is another process using this data directory? ({source})")]
    Busy {
        path: PathBuf,
        doing: &'static str,
        source: rusqlite::Error,
    },
    #[error("{path}: database is corrupt or is not an Understudy store ({source}) while {doing}; stop the node and move the file aside (a standby server can re-replicate it)")]
    Corrupt {
        path: PathBuf,
        doing: &'static str,
        source: rusqlite::Error,
    },
    /// A uniqueness or check constraint refused the change (for example a second agent taking a name).
    #[error("{path}: refused while {doing}: {source}")]
    Conflict {
        path: PathBuf,
        doing: &'static str,
        source: rusqlite::Error,
    },
    #[error("{path}: the store has schema version {found}, newer than this program knows ({known}); use a newer Understudy")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    /// A value that the store cannot hold or that it read back in an unexpected shape.
    #[error("{path}: {doing}: {message}")]
    BadData {
        path: PathBuf,
        doing: &'static str,
        message: String,
    },
    #[error("{path}: {doing}: {source}")]
    Other {
        path: PathBuf,
        doing: &'static str,
        source: rusqlite::Error,
    },
}

impl StoreError {
    fn sqlite(path: &Path, doing: &'static str, source: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull {
                path,
                doing,
                source,
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
                path,
                doing,
                source,
            },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
                path,
                doing,
                source,
            },
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict {
                path,
                doing,
                source,
            },
            _ => StoreError::Other {
                path,
                doing,
                source,
            },
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A record as the agent produces it, before it has a sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    pub name: String,
    pub value: f64,
    /// Wall clock, Unix milliseconds.
    pub time_ms: i64,
    /// The pair alias the record is stored under (CK-3), if it belongs to a pair's duty.
    pub pair: Option<String>,
    /// "metric" | "event" | "check".
    pub kind: String,
    pub detail: Option<String>,
    /// Issue 18 item 3: the record's labels (`understudy_api::check_labels`), none by default.
    pub labels: Labels,
    /// Issue 12 item 3: the pair counter this agent holds, for a record under a pair's alias.
    pub pair_epoch: Option<u64>,
}

/// A record's labels, by name.
pub type Labels = BTreeMap<String, String>;

/// A record with the agent's sequence number: `(agent id, seq)` identifies it everywhere (AG-2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub name: String,
    pub value: f64,
    pub time_ms: i64,
    pub pair: Option<String>,
    pub kind: String,
    pub detail: Option<String>,
    /// Issue 18 item 3: left out of a frame when empty, so a record without labels is the same
    /// frame as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Issue 12 item 3: under a pair's alias, the pair counter its maker held when it made it
    /// (checked by the server: only that counter's holder may send it). Not stored by servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_epoch: Option<u64>,
}

impl Record {
    pub fn new(seq: u64, r: NewRecord) -> Record {
        Record {
            seq,
            name: r.name,
            value: r.value,
            time_ms: r.time_ms,
            pair: r.pair,
            kind: r.kind,
            detail: r.detail,
            labels: r.labels,
            pair_epoch: r.pair_epoch,
        }
    }
}

/// A record as a server stored it. `rowid` is local to this store (the replication cursor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub rowid: u64,
    pub agent_id: String,
    pub agent_name: String,
    #[serde(flatten)]
    pub record: Record,
    /// The agent's home server when this store took the record as a standby of another site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_for: Option<String>,
}

/// Records to store (issue 18, [`Store::records_commit_group`]): one agent's batch, or records
/// the hot-standby peer hands over (HS-5, HS-6), which name their agents themselves.
pub enum RecordBatch<'a> {
    Agent {
        agent_id: &'a str,
        agent_name: &'a str,
        records: &'a [Record],
        /// The agent's home server when this server stands in for it (AG-2).
        taken_for: Option<&'a str>,
    },
    Merge(&'a [StoredRecord]),
}

impl RecordBatch<'_> {
    /// The sequence number of a record whose value is not finite, if any.
    fn non_finite(&self) -> Option<u64> {
        match self {
            RecordBatch::Agent { records, .. } => {
                records.iter().find(|r| !r.value.is_finite()).map(|r| r.seq)
            }
            RecordBatch::Merge(records) => records
                .iter()
                .find(|s| !s.record.value.is_finite())
                .map(|s| s.record.seq),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Agent name.
    pub agent: Option<String>,
    /// Pair alias.
    pub pair: Option<String>,
    /// The newest this many, still listed oldest first.
    pub limit: Option<usize>,
}

/// An event as raised on this node (UI-1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub time_ms: i64,
    /// Stable code, e.g. "SWITCHOVER".
    pub code: String,
    /// The objects involved, e.g. an agent or pair name.
    pub subject: String,
    /// The human sentence.
    pub detail: String,
    pub data: Value,
}

/// An event as stored. `(origin, origin_id)` is the node that raised it and its id there, so
/// replication can merge the same event any number of times; `id` is local.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: u64,
    pub origin: String,
    pub origin_id: u64,
    #[serde(flatten)]
    pub event: EventRow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Pending,
    Accepted,
    Rejected,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Pending => "pending",
            AgentStatus::Accepted => "accepted",
            AgentStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<AgentStatus> {
        match s {
            "pending" => Some(AgentStatus::Pending),
            "accepted" => Some(AgentStatus::Accepted),
            "rejected" => Some(AgentStatus::Rejected),
            _ => None,
        }
    }
}

/// An agent known to the site (AG-9): identified by its id, shown by its name, authenticated by
/// its client certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub status: AgentStatus,
    pub first_seen_ms: i64,
    /// Whether this cluster is the agent's home, as the server decided (issue 12 item 3).
    #[serde(default)]
    pub home: Option<bool>,
    /// A certificate the agent announced and has not connected with yet (CT-2).
    #[serde(default)]
    pub announced: Option<String>,
}

/// The whole site configuration at one version, as the STANDBY replicates it (HS-3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteSnapshot {
    pub version: u64,
    pub agents: Vec<AgentRow>,
    pub pairs: BTreeMap<String, Value>,
    pub checks: BTreeMap<String, Value>,
    pub settings: BTreeMap<String, Value>,
    /// AL-4's alert channels (absent from an older peer's snapshot).
    #[serde(default)]
    pub channels: BTreeMap<String, Value>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// This node's id, stamped as the origin of the events it raises.
    origin: String,
    /// Whether the reserve file beside the store is known to be in place (see [`RESERVE_BYTES`]).
    reserve_ready: bool,
    /// When making the reserve last failed for want of room: tried again a minute later, not at
    /// every write of a nearly full disk.
    reserve_failed_at: Option<std::time::Instant>,
    /// MX-1: what this process wrote, counted in memory as it commits (a scrape reads these, never
    /// a table).
    tally: Tally,
    /// HS-3: notified after each committed change of the site configuration (the runtime's
    /// `Shared::peer_news`, which tells a watching STANDBY to replicate now).
    site_news: Option<std::sync::Arc<tokio::sync::Notify>>,
}

/// MX-1: counters of what the store committed since the process started (Prometheus counters:
/// they restart at 0 with the process, which `rate()` expects).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Records newly stored (from agents, and replicated from the peer).
    pub records_stored: u64,
    /// Records deleted for `server.retention` (issue 16 item 4).
    pub records_deleted: u64,
    /// Transactions that stored records (issue 18: a group commit stores several batches, from
    /// several connections, in one).
    pub record_commits: u64,
    /// Events stored, by code (raised here or replicated).
    pub events: BTreeMap<String, u64>,
    /// Alert deliveries by channel: accepted by the receiver, failed attempts, given up.
    pub deliveries: BTreeMap<String, DeliveryTally>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryTally {
    pub sent: u64,
    pub errors: u64,
    pub given_up: u64,
}

/// Issue 16 item 4: records deleted per retention transaction, so no step holds the write lock
/// long (an agent's batch waits for at most one such step).
pub const RETENTION_BATCH: usize = 500;

/// Bytes an agent keeps aside in `store.reserve`, beside its store, so that acknowledged records
/// can still leave the cache when the disk is full (PRODUCT.md §4 "recovery when space
/// returns"). On a full disk SQLite can neither checkpoint its WAL (the database file must grow)
/// nor delete (the WAL must grow); giving the reserve back makes room for both. It covers a WAL
/// at its auto-checkpoint size (1000 pages of 4 KiB).
pub const RESERVE_BYTES: usize = 4 << 20;
/// Rows deleted per transaction when the cache is emptied on a full disk: each step fits in the
/// WAL the checkpoint before it reset.
const FULL_DISK_DELETE_STEP: i64 = 512;

/// Site-configuration tables whose rows are a name and a JSON document.
#[derive(Clone, Copy)]
enum DocTable {
    Pairs,
    Checks,
    Settings,
    Channels,
}

impl DocTable {
    fn select_all(self) -> &'static str {
        match self {
            DocTable::Pairs => "SELECT name, doc FROM pairs ORDER BY name",
            DocTable::Checks => "SELECT name, doc FROM checks ORDER BY name",
            DocTable::Settings => "SELECT key, value FROM settings ORDER BY key",
            DocTable::Channels => "SELECT name, doc FROM channels ORDER BY name",
        }
    }
    fn select_one(self) -> &'static str {
        match self {
            DocTable::Pairs => "SELECT doc FROM pairs WHERE name = ?1",
            DocTable::Checks => "SELECT doc FROM checks WHERE name = ?1",
            DocTable::Settings => "SELECT value FROM settings WHERE key = ?1",
            DocTable::Channels => "SELECT doc FROM channels WHERE name = ?1",
        }
    }
    fn upsert(self) -> &'static str {
        match self {
            DocTable::Pairs => {
                "INSERT INTO pairs (name, doc) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET doc = ?2"
            }
            DocTable::Checks => {
                "INSERT INTO checks (name, doc) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET doc = ?2"
            }
            DocTable::Settings => {
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2"
            }
            DocTable::Channels => {
                "INSERT INTO channels (name, doc) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET doc = ?2"
            }
        }
    }
    fn delete(self) -> &'static str {
        match self {
            DocTable::Pairs => "DELETE FROM pairs WHERE name = ?1",
            DocTable::Checks => "DELETE FROM checks WHERE name = ?1",
            DocTable::Settings => "DELETE FROM settings WHERE key = ?1",
            DocTable::Channels => "DELETE FROM channels WHERE name = ?1",
        }
    }
    fn what(self) -> &'static str {
        match self {
            DocTable::Pairs => "a pair",
            DocTable::Checks => "a check",
            DocTable::Settings => "a setting",
            DocTable::Channels => "an alert channel",
        }
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// `node_id` is recorded as the origin of events appended here.
    pub fn open(path: &Path, node_id: &str) -> Result<Store> {
        Store::open_with(path, node_id, MIGRATIONS)
    }

    fn open_with(path: &Path, node_id: &str, migrations: &[&str]) -> Result<Store> {
        let err = |doing| move |e| StoreError::sqlite(path, doing, e);
        let conn = Connection::open(path).map_err(err("opening the store"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err("setting the busy timeout"))?;
        // The first statement that reads the file is where a corrupt or foreign file shows up.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(err("opening the store"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::BadData {
                path: path.to_path_buf(),
                doing: "opening the store",
                message: format!("could not switch to WAL journal mode (got {mode})"),
            });
        }
        // §4: a damaged file is refused at start with SQLite's words, rather than found page by
        // page by later writes (the node would run on, refusing records it cannot store). The
        // check reads the whole file once: seconds for a store of gigabytes.
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .map_err(err("checking the store"))?;
        if check != "ok" {
            return Err(StoreError::BadData {
                path: path.to_path_buf(),
                doing: "checking the store",
                message: format!(
                    "the store is corrupt ({check}): move it aside and restore it from a backup \
                     or the hot-standby peer"
                ),
            });
        }
        // FULL: a commit is on disk when it returns, so an acknowledgement is never a lie.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("setting synchronous=FULL"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err("enabling foreign keys"))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            origin: node_id.to_string(),
            reserve_ready: false,
            reserve_failed_at: None,
            tally: Tally::default(),
            site_news: None,
        };
        store.migrate(migrations)?;
        Ok(store)
    }

    fn migrate(&mut self, migrations: &[&str]) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| self.err("reading the schema version", e))?;
        if version > migrations.len() as i64 {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: migrations.len(),
            });
        }
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, "migrating the schema", e);
        for (i, sql) in migrations.iter().enumerate().skip(to_u64(version) as usize) {
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            // user_version lives in the database header, so it commits or rolls back with the DDL.
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
            tracing::info!(path = %path.display(), version = i + 1, "store schema migrated");
        }
        Ok(())
    }

    fn err(&self, doing: &'static str, e: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, doing, e)
    }

    fn bad(&self, doing: &'static str, message: String) -> StoreError {
        StoreError::BadData {
            path: self.path.clone(),
            doing,
            message,
        }
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| self.err("reading the schema version", e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn begin(&mut self, doing: &'static str) -> Result<Transaction<'_>> {
        let path = &self.path;
        // IMMEDIATE takes the write lock up front, so a busy database fails here, not half-way.
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| StoreError::sqlite(path, doing, e))
    }

    // ---- the agent's cache (AG-2) ----

    /// Appends records to the cache and returns their sequence numbers. Sequence numbers continue
    /// from a counter kept in the same transaction, so none is ever reused, even after the cache
    /// has been emptied or the process restarted.
    pub fn cache_append(&mut self, records: &[NewRecord]) -> Result<Vec<u64>> {
        const DOING: &str = "caching records";
        if let Some(r) = records.iter().find(|r| !r.value.is_finite()) {
            return Err(self.bad(DOING, format!("record {} has a non-finite value", r.name)));
        }
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        let mut seq = counter(&tx, CACHE_SEQ).map_err(err)?;
        let mut seqs = Vec::with_capacity(records.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO cache (seq, name, value, time_ms, pair, kind, detail, labels, pair_epoch)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            for r in records {
                seq += 1;
                insert
                    .execute(params![
                        to_i64(seq),
                        r.name,
                        r.value,
                        r.time_ms,
                        r.pair,
                        r.kind,
                        r.detail,
                        labels_text(&r.labels),
                        r.pair_epoch.map(|e| e as i64)
                    ])
                    .map_err(err)?;
                seqs.push(seq);
            }
        }
        set_counter(&tx, CACHE_SEQ, seq).map_err(err)?;
        tx.commit().map_err(err)?;
        if !self.reserve_ready
            && self
                .reserve_failed_at
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60))
        {
            self.reserve_ready = self.make_reserve();
            self.reserve_failed_at = (!self.reserve_ready).then(std::time::Instant::now);
        }
        Ok(seqs)
    }

    fn reserve_path(&self) -> PathBuf {
        self.path.with_extension("reserve")
    }

    /// Puts the reserve in place if it is missing and the disk has room for it; whether it is.
    /// A new record is refused on a full disk while the reserve stays: it is kept for deleting.
    fn make_reserve(&self) -> bool {
        let path = self.reserve_path();
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES as u64) {
            return true;
        }
        // Written out, not sparse: the space must really be taken.
        let made = std::fs::write(&path, vec![0u8; RESERVE_BYTES])
            .and_then(|()| std::fs::File::open(&path)?.sync_all());
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(path = %path.display(), "no room for the disk-full reserve ({e}); retrying later");
            return false;
        }
        true
    }

    /// Gives the reserve's space back to the disk; false when there was none to give.
    fn release_reserve(&mut self) -> bool {
        self.reserve_ready = false;
        let released = std::fs::remove_file(self.reserve_path()).is_ok();
        if released {
            tracing::warn!(path = %self.path.display(), "disk full: released the {} MiB reserve to delete acknowledged records", RESERVE_BYTES >> 20);
        }
        released
    }

    /// Up to `limit` cached records with `seq > after_seq`, in sequence order.
    pub fn cache_batch(&self, after_seq: u64, limit: usize) -> Result<Vec<Record>> {
        let err = |e| self.err("reading the cache", e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, name, value, time_ms, pair, kind, detail, labels, pair_epoch FROM cache
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![to_i64(after_seq), to_i64(limit as u64)], |row| {
                Ok(Record {
                    seq: to_u64(row.get(0)?),
                    name: row.get(1)?,
                    value: row.get(2)?,
                    time_ms: row.get(3)?,
                    pair: row.get(4)?,
                    kind: row.get(5)?,
                    detail: row.get(6)?,
                    labels: labels_from(row, 7)?,
                    pair_epoch: row.get::<_, Option<i64>>(8)?.map(|e| e as u64),
                })
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Deletes every cached record with `seq <= upto_seq` (the server has made them durable).
    /// Returns how many were deleted.
    /// On a full disk the reserve is given back and the records are deleted in small steps.
    pub fn cache_ack(&mut self, upto_seq: u64) -> Result<usize> {
        match self.cache_delete(upto_seq, None) {
            Err(StoreError::DiskFull { .. }) => {
                self.release_reserve();
                self.cache_ack_in_steps(upto_seq)
            }
            other => other,
        }
    }

    /// Deletes cached records with `seq <= upto_seq`, at most `limit` of them (the lowest).
    fn cache_delete(&mut self, upto_seq: u64, limit: Option<i64>) -> Result<usize> {
        let sql = match limit {
            None => "DELETE FROM cache WHERE seq <= ?1",
            Some(_) => "DELETE FROM cache WHERE seq IN (SELECT seq FROM cache WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
        };
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| match limit {
                None => s.execute([to_i64(upto_seq)]),
                Some(n) => s.execute([to_i64(upto_seq), n]),
            })
            .map_err(|e| self.err("deleting acknowledged records from the cache", e))
    }

    /// The full-disk path of [`Store::cache_ack`]: a checkpoint first (it moves the WAL into the
    /// database file, which the released reserve has room for), then deletes of
    /// [`FULL_DISK_DELETE_STEP`] rows, each followed by a checkpoint so the WAL is reused rather
    /// than grown.
    fn cache_ack_in_steps(&mut self, upto_seq: u64) -> Result<usize> {
        let mut deleted = 0;
        loop {
            self.checkpoint();
            let n = self.cache_delete(upto_seq, Some(FULL_DISK_DELETE_STEP))?;
            deleted += n;
            if n == 0 {
                return Ok(deleted);
            }
        }
    }

    /// A best-effort WAL checkpoint that resets the WAL for reuse (it keeps its file size).
    fn checkpoint(&self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        {
            tracing::warn!(path = %self.path.display(), "checkpoint: {e}");
        }
    }

    /// Marks the cached records with `after_seq < seq <= upto_seq` as held by `server` (a server
    /// outside the home cluster made them durable; AG-2). Returns how many.
    pub fn cache_hold(&mut self, after_seq: u64, upto_seq: u64, server: &str) -> Result<usize> {
        self.conn
            .prepare_cached("UPDATE cache SET held_by = ?3 WHERE seq > ?1 AND seq <= ?2")
            .and_then(|mut s| s.execute(params![to_i64(after_seq), to_i64(upto_seq), server]))
            .map_err(|e| self.err("marking records held by a standby", e))
    }

    /// The held records as `(upto, server)` ranges, ascending (consecutive records held by the
    /// same server form one range).
    pub fn cache_held(&self) -> Result<Vec<(u64, String)>> {
        let err = |e| self.err("reading held records", e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, held_by FROM cache WHERE held_by IS NOT NULL ORDER BY seq")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((to_u64(row.get(0)?), row.get::<_, String>(1)?))
            })
            .map_err(err)?;
        let mut ranges: Vec<(u64, String)> = Vec::new();
        for row in rows {
            let (seq, server) = row.map_err(err)?;
            match ranges.last_mut() {
                Some((upto, s)) if *s == server => *upto = seq,
                _ => ranges.push((seq, server)),
            }
        }
        Ok(ranges)
    }

    /// The size of the store's files (database and WAL), in bytes.
    pub fn disk_bytes(&self) -> u64 {
        let wal = self.path.with_extension("db-wal");
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn cache_len(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM cache", [], |row| row.get::<_, i64>(0))
            .map(to_u64)
            .map_err(|e| self.err("counting the cache", e))
    }

    pub fn cache_first_seq(&self) -> Result<Option<u64>> {
        self.conn
            .query_row("SELECT min(seq) FROM cache", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .map(|v| v.map(to_u64))
            .map_err(|e| self.err("reading the cache", e))
    }

    // ---- the server's records (AG-2) ----

    /// Stores records from one agent in one transaction. A record already stored (same agent id
    /// and sequence number) is skipped, so a resend after a lost acknowledgement stores nothing
    /// twice. Returns how many were newly stored.
    /// `taken_for` is the agent's home server when this server stands in for it (AG-2).
    pub fn records_insert(
        &mut self,
        agent_id: &str,
        agent_name: &str,
        records: &[Record],
        taken_for: Option<&str>,
    ) -> Result<usize> {
        self.records_insert_new(agent_id, agent_name, records, taken_for)
            .map(|new| new.len())
    }

    /// [`Store::records_insert`], answering which of `records` (by index) were new here: the
    /// others were stored before (a resend after a lost acknowledgement).
    pub fn records_insert_new(
        &mut self,
        agent_id: &str,
        agent_name: &str,
        records: &[Record],
        taken_for: Option<&str>,
    ) -> Result<Vec<usize>> {
        let batch = RecordBatch::Agent {
            agent_id,
            agent_name,
            records,
            taken_for,
        };
        self.records_commit_group(&[batch])?
            .pop()
            .expect("one answer per batch")
    }

    /// Issue 18, group commit: stores several batches (agents' and merged ones) in one
    /// transaction, each record at most once (the dedup by agent and sequence number is inside
    /// it). Answers, per batch in order, which of its records (by index) were new here; a batch
    /// that cannot be stored (a non-finite value) is answered with its error and left out, the
    /// others are committed. An error of the transaction itself stores none of them.
    pub fn records_commit_group(
        &mut self,
        batches: &[RecordBatch<'_>],
    ) -> Result<Vec<Result<Vec<usize>>>> {
        const DOING: &str = "storing records";
        let mut answers: Vec<Result<Vec<usize>>> = batches
            .iter()
            .map(|b| match b.non_finite() {
                Some(what) => Err(self.bad(DOING, format!("record {what} has a non-finite value"))),
                None => Ok(Vec::new()),
            })
            .collect();
        if answers.iter().all(|a| a.is_err()) {
            return Ok(answers);
        }
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        {
            let mut insert = tx.prepare_cached(INSERT_RECORD).map_err(err)?;
            for (batch, answer) in batches.iter().zip(answers.iter_mut()) {
                let Ok(inserted) = answer else { continue };
                let mut store = |i, agent_id: &str, agent_name: &str, r: &Record, taken_for| {
                    let n = insert
                        .execute(params![
                            agent_id,
                            agent_name,
                            to_i64(r.seq),
                            r.name,
                            r.value,
                            r.time_ms,
                            r.pair,
                            r.kind,
                            r.detail,
                            taken_for,
                            labels_text(&r.labels)
                        ])
                        .map_err(err)?;
                    if n > 0 {
                        inserted.push(i);
                    }
                    Ok::<_, StoreError>(())
                };
                match batch {
                    RecordBatch::Agent {
                        agent_id,
                        agent_name,
                        records,
                        taken_for,
                    } => {
                        for (i, r) in records.iter().enumerate() {
                            store(i, agent_id, agent_name, r, *taken_for)?;
                        }
                    }
                    RecordBatch::Merge(records) => {
                        for (i, s) in records.iter().enumerate() {
                            let taken_for = s.taken_for.as_deref();
                            store(i, &s.agent_id, &s.agent_name, &s.record, taken_for)?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(err)?;
        let stored: usize = answers.iter().flatten().map(Vec::len).sum();
        self.tally.records_stored += stored as u64;
        self.tally.record_commits += 1;
        Ok(answers)
    }

    /// Stored records, oldest first; with a limit, the newest `limit` of them.
    pub fn records_list(&self, filter: &RecordFilter) -> Result<Vec<StoredRecord>> {
        let limit = filter.limit.map(|l| to_i64(l as u64)).unwrap_or(-1);
        let sql = format!(
            "SELECT * FROM (SELECT {RECORD_COLUMNS} FROM records
               WHERE (?1 IS NULL OR agent_name = ?1) AND (?2 IS NULL OR pair = ?2)
               ORDER BY id DESC LIMIT ?3)
             ORDER BY id"
        );
        self.query_records(
            &sql,
            params![filter.agent, filter.pair, limit],
            "listing records",
        )
    }

    /// Up to `limit` records with a local rowid above `rowid`, oldest first: what a STANDBY
    /// server pulls to replicate (HS-3).
    pub fn records_since(&self, rowid: u64, limit: usize) -> Result<Vec<StoredRecord>> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE id > ?1 ORDER BY id LIMIT ?2");
        self.query_records(
            &sql,
            params![to_i64(rowid), to_i64(limit as u64)],
            "reading records to replicate",
        )
    }

    fn query_records(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        doing: &'static str,
    ) -> Result<Vec<StoredRecord>> {
        let err = |e| self.err(doing, e);
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let rows = stmt.query_map(params, stored_record).map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// Merges replicated records (their rowids are the other store's and are ignored).
    /// Idempotent; returns how many were new here.
    pub fn records_merge(&mut self, records: &[StoredRecord]) -> Result<usize> {
        self.records_commit_group(&[RecordBatch::Merge(records)])?
            .pop()
            .expect("one answer per batch")
            .map(|new| new.len())
    }

    /// Issue 16 item 4 (`server.retention`): deletes at most `batch` records whose time is before
    /// `before_ms`, in one short transaction, oldest rowids first; answers how many went. Only
    /// the `batch` lowest rowids are looked at (a rowid range, no scan of the table), so a step
    /// costs the same however large the store is; a record not yet old in that window holds the
    /// ones after it until it is (records arrive roughly in time order). Rowids up to
    /// `forwarded_upto` are candidates only (the forwarding cursor, MX-2: a record not yet
    /// forwarded is never deleted); the newest record is always kept, so `records_max_rowid` (the
    /// replication cursor) never goes back.
    pub fn records_delete_older(
        &mut self,
        before_ms: i64,
        batch: usize,
        forwarded_upto: Option<u64>,
    ) -> Result<usize> {
        const DOING: &str = "deleting records older than server.retention";
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        let deleted = tx
            .execute(
                "DELETE FROM records WHERE id IN (
                   SELECT id FROM (SELECT id, time_ms FROM records ORDER BY id LIMIT ?2)
                    WHERE time_ms < ?1
                      AND id < (SELECT MAX(id) FROM records)
                      AND (?3 IS NULL OR id <= ?3))",
                params![before_ms, to_i64(batch as u64), forwarded_upto.map(to_i64)],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        self.tally.records_deleted += deleted as u64;
        Ok(deleted)
    }

    /// MX-1: what this process has committed so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The highest local rowid (0 when empty): the cursor of what this store holds.
    pub fn records_max_rowid(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM records", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(to_u64)
            .map_err(|e| self.err("reading the highest record id", e))
    }

    pub fn records_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM records", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(to_u64)
            .map_err(|e| self.err("counting records", e))
    }

    /// The highest sequence number stored for an agent, if any.
    pub fn records_max_seq(&self, agent_id: &str) -> Result<Option<u64>> {
        self.conn
            .query_row(
                "SELECT max(seq) FROM records WHERE agent_id = ?1",
                [agent_id],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|v| v.map(to_u64))
            .map_err(|e| self.err("reading an agent's last sequence number", e))
    }

    // ---- forwarding (MX-2) ----

    /// The forwarding cursor: the local id of the last record the remote-write receiver
    /// acknowledged (or rejected with a 4xx); 0 before the first.
    pub fn forward_cursor(&self) -> Result<u64> {
        Ok(self
            .state_get(FORWARD_CURSOR)?
            .and_then(|v| v.as_u64())
            .unwrap_or(0))
    }

    /// Moves the forwarding cursor to `rowid` (never backwards). Committed when it returns.
    pub fn forward_advance(&mut self, rowid: u64) -> Result<()> {
        if rowid > self.forward_cursor()? {
            self.state_set(FORWARD_CURSOR, &serde_json::json!(rowid))?;
        }
        Ok(())
    }

    /// The identity `(agent id, seq)` of the last record at or below local id `rowid`: how the
    /// acting server tells its STANDBY how far forwarding got (ids are local to each store).
    pub fn forward_mark_at(&self, rowid: u64) -> Result<Option<ForwardMark>> {
        self.conn
            .query_row(
                "SELECT agent_id, seq FROM records WHERE id <= ?1 ORDER BY id DESC LIMIT 1",
                [to_i64(rowid)],
                |row| {
                    Ok(ForwardMark {
                        agent_id: row.get(0)?,
                        seq: to_u64(row.get(1)?),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err("reading the forwarding mark", e))
    }

    /// The STANDBY's side of [`Store::forward_mark_at`]: moves this store's cursor to its own
    /// id of the record `mark` names, when it holds that record. Returns the cursor.
    pub fn forward_adopt(&mut self, mark: &ForwardMark) -> Result<u64> {
        let local: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM records WHERE agent_id = ?1 AND seq = ?2",
                params![mark.agent_id, to_i64(mark.seq)],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err("adopting the peer's forwarding cursor", e))?;
        if let Some(id) = local {
            self.forward_advance(to_u64(id))?;
        }
        self.forward_cursor()
    }

    /// How many records are stored after `cursor`, and the time of the first of them.
    pub fn forward_lag(&self, cursor: u64) -> Result<(u64, Option<i64>)> {
        let doing = "measuring the forwarding lag";
        let count = self
            .conn
            .query_row(
                "SELECT count(*) FROM records WHERE id > ?1",
                [to_i64(cursor)],
                |row| row.get::<_, i64>(0),
            )
            .map_err(|e| self.err(doing, e))?;
        let first = self
            .conn
            .query_row(
                "SELECT time_ms FROM records WHERE id > ?1 ORDER BY id LIMIT 1",
                [to_i64(cursor)],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.err(doing, e))?;
        Ok((to_u64(count), first))
    }

    // ---- events (UI-1) ----

    /// Appends an event raised on this node; returns its local id.
    pub fn event_append(&mut self, event: &EventRow) -> Result<u64> {
        self.event_append_alerting(event, None)
    }

    /// AL-5: an event and, when it alerts, its alert and one pending delivery per channel, in
    /// one transaction: an alert exists exactly when its event does.
    pub fn event_append_alerting(
        &mut self,
        event: &EventRow,
        alert: Option<&NewAlert>,
    ) -> Result<u64> {
        const DOING: &str = "recording an event";
        let data = event.data.to_string();
        let origin = self.origin.clone();
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        // The origin id is the local id, known only after the insert; both change in one commit.
        tx.execute(
            "INSERT INTO events (origin, origin_id, time_ms, code, subject, detail, data)
             VALUES (?1, -1, ?2, ?3, ?4, ?5, ?6)",
            params![
                origin,
                event.time_ms,
                event.code,
                event.subject,
                event.detail,
                data
            ],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        tx.execute("UPDATE events SET origin_id = ?1 WHERE id = ?1", [id])
            .map_err(err)?;
        if let Some(alert) = alert {
            tx.execute(
                "INSERT INTO alerts (id, event_id, time_ms, code, severity, subject, sentence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    alert.id,
                    id,
                    event.time_ms,
                    event.code,
                    alert.severity,
                    event.subject,
                    event.detail
                ],
            )
            .map_err(err)?;
            let mut rev = counter(&tx, OUTBOX_REV).map_err(err)?;
            for channel in &alert.channels {
                rev += 1;
                tx.execute(
                    "INSERT INTO deliveries (alert_id, channel, state, attempts, next_ms, rev)
                     VALUES (?1, ?2, 'pending', 0, ?3, ?4)",
                    params![alert.id, channel, event.time_ms, to_i64(rev)],
                )
                .map_err(err)?;
            }
            set_counter(&tx, OUTBOX_REV, rev).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        *self.tally.events.entry(event.code.clone()).or_default() += 1;
        Ok(to_u64(id))
    }

    /// AL-5: pending deliveries due at `now_ms`, oldest alert first (so a channel receives its
    /// alerts in order).
    pub fn deliveries_due(&self, now_ms: i64, limit: usize) -> Result<Vec<DueDelivery>> {
        const DOING: &str = "reading the outbox";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.alert_id, d.channel, d.attempts, a.time_ms, a.code, a.severity,
                        a.subject, a.sentence
                   FROM deliveries d JOIN alerts a ON a.id = d.alert_id
                  WHERE d.state = 'pending' AND d.next_ms <= ?1
                  ORDER BY a.event_id, d.channel LIMIT ?2",
            )
            .map_err(|e| self.err(DOING, e))?;
        let rows = stmt
            .query_map(params![now_ms, to_i64(limit as u64)], |r| {
                Ok(DueDelivery {
                    alert_id: r.get(0)?,
                    channel: r.get(1)?,
                    attempts: r.get(2)?,
                    time_ms: r.get(3)?,
                    code: r.get(4)?,
                    severity: r.get(5)?,
                    subject: r.get(6)?,
                    sentence: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(DOING, e))?;
        Ok(rows)
    }

    /// AL-5: marks one attempt of a pending delivery: sent, or retried with backoff until
    /// `give_up_after_ms` after the alert, then failed. A delivery that is no longer pending
    /// (marked by another attempt) is left as it is.
    pub fn delivery_mark(
        &mut self,
        alert_id: &str,
        channel: &str,
        outcome: std::result::Result<(), &str>,
        now_ms: i64,
        give_up_after_ms: i64,
    ) -> Result<DeliveryState> {
        const DOING: &str = "marking a delivery";
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        let row: Option<(u32, i64)> = tx
            .query_row(
                "SELECT d.attempts, a.time_ms FROM deliveries d JOIN alerts a ON a.id = d.alert_id
                  WHERE d.alert_id = ?1 AND d.channel = ?2 AND d.state = 'pending'",
                params![alert_id, channel],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((attempts, alert_ms)) = row else {
            return Ok(DeliveryState::Sent);
        };
        let attempts = attempts.saturating_add(1);
        let (state, next_ms, last_error) = match outcome {
            Ok(()) => (DeliveryState::Sent, now_ms, None),
            Err(e) => {
                let next = now_ms + retry_after(attempts).as_millis() as i64;
                if now_ms - alert_ms >= give_up_after_ms {
                    (DeliveryState::Failed, now_ms, Some(e))
                } else {
                    (DeliveryState::Retry(next), next, Some(e))
                }
            }
        };
        let word = match state {
            DeliveryState::Sent => "sent",
            DeliveryState::Retry(_) => "pending",
            DeliveryState::Failed => "failed",
        };
        let rev = counter(&tx, OUTBOX_REV).map_err(err)? + 1;
        tx.execute(
            "UPDATE deliveries SET state = ?3, attempts = ?4, next_ms = ?5,
                    last_error = COALESCE(?6, last_error), rev = ?7
              WHERE alert_id = ?1 AND channel = ?2",
            params![
                alert_id,
                channel,
                word,
                attempts,
                next_ms,
                last_error,
                to_i64(rev)
            ],
        )
        .map_err(err)?;
        set_counter(&tx, OUTBOX_REV, rev).map_err(err)?;
        tx.commit().map_err(err)?;
        let tally = self
            .tally
            .deliveries
            .entry(channel.to_string())
            .or_default();
        match state {
            DeliveryState::Sent => tally.sent += 1,
            DeliveryState::Retry(_) => tally.errors += 1,
            DeliveryState::Failed => {
                tally.errors += 1;
                tally.given_up += 1;
            }
        }
        Ok(state)
    }

    /// AL-5 at a glance (`status`): deliveries pending, failing (pending after a failed
    /// attempt) and failed (given up).
    pub fn deliveries_summary(&self) -> Result<understudy_api::AlertSummary> {
        const DOING: &str = "counting the outbox's deliveries";
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(state = 'pending'), 0),
                        COALESCE(SUM(state = 'pending' AND attempts > 0), 0),
                        COALESCE(SUM(state = 'failed'), 0)
                   FROM deliveries WHERE state IN ('pending', 'failed')",
                [],
                |r| {
                    Ok(understudy_api::AlertSummary {
                        pending: to_u64(r.get(0)?),
                        failing: to_u64(r.get(1)?),
                        failed: to_u64(r.get(2)?),
                    })
                },
            )
            .map_err(|e| self.err(DOING, e))
    }

    /// AL-5: the deliveries changed after `after` (this store's `rev`), oldest change first: what
    /// a STANDBY replicates.
    pub fn outbox_since(&self, after: u64, limit: usize) -> Result<Vec<OutboxRow>> {
        const DOING: &str = "reading the outbox for the peer";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.rev, a.id, a.time_ms, a.code, a.severity, a.subject, a.sentence,
                        d.channel, d.state, d.attempts, d.next_ms, d.last_error
                   FROM deliveries d JOIN alerts a ON a.id = d.alert_id
                  WHERE d.rev > ?1 ORDER BY d.rev LIMIT ?2",
            )
            .map_err(|e| self.err(DOING, e))?;
        let rows = stmt
            .query_map(params![to_i64(after), to_i64(limit as u64)], |r| {
                Ok(OutboxRow {
                    rev: to_u64(r.get(0)?),
                    alert_id: r.get(1)?,
                    time_ms: r.get(2)?,
                    code: r.get(3)?,
                    severity: r.get(4)?,
                    subject: r.get(5)?,
                    sentence: r.get(6)?,
                    channel: r.get(7)?,
                    state: r.get(8)?,
                    attempts: r.get(9)?,
                    next_ms: r.get(10)?,
                    last_error: r.get(11)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(DOING, e))?;
        Ok(rows)
    }

    /// AL-5: a STANDBY takes the acting server's outbox rows: each alert once, each delivery's
    /// state as the acting server marked it. A delivery this store already holds as sent or
    /// failed stays so (a mark never goes back to pending). Returns the rows that changed.
    pub fn outbox_merge(&mut self, rows: &[OutboxRow]) -> Result<usize> {
        const DOING: &str = "merging the replicated outbox";
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        let mut rev = counter(&tx, OUTBOX_REV).map_err(err)?;
        let mut changed = 0;
        for r in rows {
            // The replicated event came in the same poll or an earlier one: the alert sorts
            // after it, among this store's events.
            tx.execute(
                "INSERT OR IGNORE INTO alerts (id, event_id, time_ms, code, severity, subject, sentence)
                 VALUES (?1, (SELECT COALESCE(MAX(id), 0) FROM events), ?2, ?3, ?4, ?5, ?6)",
                params![r.alert_id, r.time_ms, r.code, r.severity, r.subject, r.sentence],
            )
            .map_err(err)?;
            let n = tx
                .execute(
                    "INSERT INTO deliveries (alert_id, channel, state, attempts, next_ms, last_error, rev)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (alert_id, channel) DO UPDATE
                        SET state = excluded.state, attempts = excluded.attempts,
                            next_ms = excluded.next_ms, last_error = excluded.last_error,
                            rev = excluded.rev
                      WHERE deliveries.state = 'pending'",
                    params![
                        r.alert_id,
                        r.channel,
                        r.state,
                        r.attempts,
                        r.next_ms,
                        r.last_error,
                        to_i64(rev + 1)
                    ],
                )
                .map_err(err)?;
            if n > 0 {
                rev += 1;
                changed += n;
            }
        }
        set_counter(&tx, OUTBOX_REV, rev).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(changed)
    }

    /// The newest `limit` alerts, oldest first, each with its deliveries; with `pending`, only
    /// alerts with a delivery still pending.
    pub fn alerts_list(&self, limit: usize, pending: bool) -> Result<Vec<AlertRow>> {
        const DOING: &str = "listing alerts";
        let err = |e| self.err(DOING, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT * FROM (
                   SELECT id, event_id, time_ms, code, severity, subject, sentence FROM alerts a
                    WHERE ?1 = 0 OR EXISTS (SELECT 1 FROM deliveries d
                                             WHERE d.alert_id = a.id AND d.state = 'pending')
                    ORDER BY event_id DESC LIMIT ?2)
                 ORDER BY event_id",
            )
            .map_err(err)?;
        let mut alerts = stmt
            .query_map(params![pending as i64, to_i64(limit as u64)], |r| {
                Ok(AlertRow {
                    id: r.get(0)?,
                    event_id: to_u64(r.get(1)?),
                    time_ms: r.get(2)?,
                    code: r.get(3)?,
                    severity: r.get(4)?,
                    subject: r.get(5)?,
                    sentence: r.get(6)?,
                    deliveries: Vec::new(),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        let mut deliveries = self
            .conn
            .prepare_cached(
                "SELECT channel, state, attempts, next_ms, last_error FROM deliveries
                  WHERE alert_id = ?1 ORDER BY channel",
            )
            .map_err(err)?;
        for alert in &mut alerts {
            alert.deliveries = deliveries
                .query_map([&alert.id], |r| {
                    Ok(DeliveryRow {
                        channel: r.get(0)?,
                        state: r.get(1)?,
                        attempts: r.get(2)?,
                        next_ms: r.get(3)?,
                        last_error: r.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(err)?;
        }
        Ok(alerts)
    }

    /// Events with a local id above `since_id`, oldest first, optionally of one code.
    pub fn events_list(
        &self,
        since_id: u64,
        code: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        const DOING: &str = "listing events";
        let err = |e| self.err(DOING, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, origin, origin_id, time_ms, code, subject, detail, data FROM events
                 WHERE id > ?1 AND (?2 IS NULL OR code = ?2) ORDER BY id LIMIT ?3",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(
                params![to_i64(since_id), code, to_i64(limit as u64)],
                |row| {
                    Ok((
                        StoredEvent {
                            id: to_u64(row.get(0)?),
                            origin: row.get(1)?,
                            origin_id: to_u64(row.get(2)?),
                            event: EventRow {
                                time_ms: row.get(3)?,
                                code: row.get(4)?,
                                subject: row.get(5)?,
                                detail: row.get(6)?,
                                data: Value::Null,
                            },
                        },
                        row.get::<_, String>(7)?,
                    ))
                },
            )
            .map_err(err)?;
        let mut events = Vec::new();
        for row in rows {
            let (mut event, data) = row.map_err(err)?;
            event.event.data = serde_json::from_str(&data)
                .map_err(|e| self.bad(DOING, format!("event {} has bad data: {e}", event.id)))?;
            events.push(event);
        }
        Ok(events)
    }

    /// AL-2: the state last told about each check — its newest CHECK_DOWN or CHECK_UP, by
    /// whichever server raised it — as `(check, down)`.
    pub fn checks_told(&self) -> Result<Vec<(String, bool)>> {
        const DOING: &str = "reading the check states last told";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT subject, code FROM (
                   SELECT subject, code, ROW_NUMBER() OVER
                          (PARTITION BY subject ORDER BY time_ms DESC, id DESC) AS n
                     FROM events WHERE code IN ('CHECK_DOWN', 'CHECK_UP'))
                  WHERE n = 1 ORDER BY subject",
            )
            .map_err(|e| self.err(DOING, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)? == "CHECK_DOWN",
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(DOING, e))?;
        Ok(rows)
    }

    /// UI-5: where a follower that last saw event `origin_id` of `origin` resumes in this store:
    /// the local id of that event, or of the last event of that origin numbered below it that
    /// this store holds (a STANDBY that never got the ACTIVE's very last events); 0 when it
    /// holds none of that origin.
    pub fn event_position(&self, origin: &str, origin_id: u64) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(id), 0) FROM events WHERE origin = ?1 AND origin_id <= ?2",
                params![origin, to_i64(origin_id)],
                |row| row.get::<_, i64>(0),
            )
            .map(to_u64)
            .map_err(|e| self.err("finding an event's position", e))
    }

    /// Merges replicated events, deduplicated by `(origin, origin_id)`; returns how many were new.
    pub fn events_merge(&mut self, events: &[StoredEvent]) -> Result<usize> {
        const DOING: &str = "merging replicated events";
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        let mut inserted = 0;
        let mut new_codes = Vec::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events
                       (origin, origin_id, time_ms, code, subject, detail, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            for e in events {
                let n = insert
                    .execute(params![
                        e.origin,
                        to_i64(e.origin_id),
                        e.event.time_ms,
                        e.event.code,
                        e.event.subject,
                        e.event.detail,
                        e.event.data.to_string()
                    ])
                    .map_err(err)?;
                if n > 0 {
                    new_codes.push(e.event.code.as_str());
                }
                inserted += n;
            }
        }
        tx.commit().map_err(err)?;
        for code in new_codes {
            *self.tally.events.entry(code.to_string()).or_default() += 1;
        }
        Ok(inserted)
    }

    // ---- site configuration (HS-3); every change bumps site_version in its transaction ----

    pub fn site_version(&self) -> Result<u64> {
        counter(&self.conn, SITE_VERSION).map_err(|e| self.err("reading the site version", e))
    }

    /// Runs `change` (which returns how many rows it changed) in a transaction that also bumps the
    /// site version. Returns the new version, or `None` (and nothing committed) if no row changed,
    /// so a STANDBY is never asked to re-replicate a change that did not happen.
    fn site_change(
        &mut self,
        doing: &'static str,
        change: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<usize>,
    ) -> Result<Option<u64>> {
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, doing, e);
        let tx = self.begin(doing)?;
        if change(&tx).map_err(err)? == 0 {
            return Ok(None);
        }
        let version = counter(&tx, SITE_VERSION).map_err(err)? + 1;
        set_counter(&tx, SITE_VERSION, version).map_err(err)?;
        tx.commit().map_err(err)?;
        if let Some(news) = &self.site_news {
            news.notify_one();
        }
        Ok(Some(version))
    }

    /// HS-3: `news` is notified after each committed change of the site configuration.
    pub fn on_site_change(&mut self, news: std::sync::Arc<tokio::sync::Notify>) {
        self.site_news = Some(news);
    }

    /// Inserts or replaces an agent (by id); returns the new site version. A name already used by
    /// another agent id is refused with [`StoreError::Conflict`].
    pub fn agent_put(&mut self, agent: &AgentRow) -> Result<u64> {
        let version = self.site_change("saving an agent", |tx| {
            tx.execute(
                "INSERT INTO agents (id, name, fingerprint, status, first_seen_ms, home, announced)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE
                 SET name = ?2, fingerprint = ?3, status = ?4, home = ?6, announced = ?7",
                params![
                    agent.id,
                    agent.name,
                    agent.fingerprint,
                    agent.status.as_str(),
                    agent.first_seen_ms,
                    agent.home,
                    agent.announced
                ],
            )
        })?;
        self.always_changed(version, "saving an agent")
    }

    /// An upsert always changes a row; anything else means SQLite did not do what was asked.
    fn always_changed(&self, version: Option<u64>, doing: &'static str) -> Result<u64> {
        version.ok_or_else(|| self.bad(doing, "no row was written".into()))
    }

    /// Sets an agent's status; returns the new site version, or `None` when no agent has that id.
    pub fn agent_set_status(&mut self, id: &str, status: AgentStatus) -> Result<Option<u64>> {
        self.site_change("changing an agent's status", |tx| {
            tx.execute(
                "UPDATE agents SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )
        })
    }

    /// Removes an agent; returns the new site version, or `None` when no agent has that id.
    pub fn agent_remove(&mut self, id: &str) -> Result<Option<u64>> {
        self.site_change("removing an agent", |tx| {
            tx.execute("DELETE FROM agents WHERE id = ?1", [id])
        })
    }

    pub fn agent_get(&self, id: &str) -> Result<Option<AgentRow>> {
        self.agents_where("id = ?1", id, "reading an agent")
            .map(|mut v| v.pop())
    }

    pub fn agent_by_name(&self, name: &str) -> Result<Option<AgentRow>> {
        self.agents_where("name = ?1", name, "reading an agent")
            .map(|mut v| v.pop())
    }

    pub fn agents_list(&self) -> Result<Vec<AgentRow>> {
        self.agents_where("?1 IS NOT NULL", "", "listing agents")
    }

    fn agents_where(&self, cond: &str, arg: &str, doing: &'static str) -> Result<Vec<AgentRow>> {
        let err = |e| self.err(doing, e);
        let sql = format!(
            "SELECT id, name, fingerprint, status, first_seen_ms, home, announced FROM agents
             WHERE {cond} ORDER BY name"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
        let rows = stmt
            .query_map([arg], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<bool>>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(err)?;
        let mut agents = Vec::new();
        for row in rows {
            let (id, name, fingerprint, status, first_seen_ms, home, announced) =
                row.map_err(err)?;
            let status = AgentStatus::parse(&status)
                .ok_or_else(|| self.bad(doing, format!("agent {name} has status {status:?}")))?;
            agents.push(AgentRow {
                id,
                name,
                fingerprint,
                status,
                first_seen_ms,
                home,
                announced,
            });
        }
        Ok(agents)
    }

    fn doc_put(&mut self, table: DocTable, name: &str, doc: &Value) -> Result<u64> {
        const DOING: &str = "saving site configuration";
        let text = doc.to_string();
        let version =
            self.site_change(DOING, |tx| tx.execute(table.upsert(), params![name, text]))?;
        self.always_changed(version, DOING)
    }

    fn doc_get(&self, table: DocTable, name: &str) -> Result<Option<Value>> {
        const DOING: &str = "reading site configuration";
        let text: Option<String> = self
            .conn
            .query_row(table.select_one(), [name], |row| row.get(0))
            .optional()
            .map_err(|e| self.err(DOING, e))?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| self.bad(DOING, format!("{} {name:?} is not JSON: {e}", table.what())))
        })
        .transpose()
    }

    fn doc_list(&self, table: DocTable) -> Result<BTreeMap<String, Value>> {
        const DOING: &str = "listing site configuration";
        let err = |e| self.err(DOING, e);
        let mut stmt = self.conn.prepare_cached(table.select_all()).map_err(err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(err)?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, text) = row.map_err(err)?;
            let doc = serde_json::from_str(&text).map_err(|e| {
                self.bad(DOING, format!("{} {name:?} is not JSON: {e}", table.what()))
            })?;
            out.insert(name, doc);
        }
        Ok(out)
    }

    /// Removes a document; returns the new site version, or `None` when there was none.
    fn doc_remove(&mut self, table: DocTable, name: &str) -> Result<Option<u64>> {
        self.site_change("removing site configuration", |tx| {
            tx.execute(table.delete(), [name])
        })
    }

    pub fn pair_put(&mut self, name: &str, doc: &Value) -> Result<u64> {
        self.doc_put(DocTable::Pairs, name, doc)
    }
    pub fn pair_get(&self, name: &str) -> Result<Option<Value>> {
        self.doc_get(DocTable::Pairs, name)
    }
    pub fn pairs_list(&self) -> Result<BTreeMap<String, Value>> {
        self.doc_list(DocTable::Pairs)
    }
    pub fn pair_remove(&mut self, name: &str) -> Result<Option<u64>> {
        self.doc_remove(DocTable::Pairs, name)
    }

    pub fn check_put(&mut self, name: &str, doc: &Value) -> Result<u64> {
        self.doc_put(DocTable::Checks, name, doc)
    }
    pub fn check_get(&self, name: &str) -> Result<Option<Value>> {
        self.doc_get(DocTable::Checks, name)
    }
    pub fn checks_list(&self) -> Result<BTreeMap<String, Value>> {
        self.doc_list(DocTable::Checks)
    }
    pub fn check_remove(&mut self, name: &str) -> Result<Option<u64>> {
        self.doc_remove(DocTable::Checks, name)
    }

    pub fn setting_put(&mut self, key: &str, value: &Value) -> Result<u64> {
        self.doc_put(DocTable::Settings, key, value)
    }
    pub fn setting_get(&self, key: &str) -> Result<Option<Value>> {
        self.doc_get(DocTable::Settings, key)
    }
    pub fn settings_list(&self) -> Result<BTreeMap<String, Value>> {
        self.doc_list(DocTable::Settings)
    }
    pub fn setting_remove(&mut self, key: &str) -> Result<Option<u64>> {
        self.doc_remove(DocTable::Settings, key)
    }

    /// AL-4: adds an alert channel; a name already in use is refused with
    /// [`StoreError::Conflict`] and nothing changes.
    pub fn channel_add(&mut self, name: &str, doc: &Value) -> Result<u64> {
        const DOING: &str = "adding an alert channel";
        let text = doc.to_string();
        let version = self.site_change(DOING, |tx| {
            tx.execute(
                "INSERT INTO channels (name, doc) VALUES (?1, ?2)",
                params![name, text],
            )
        })?;
        self.always_changed(version, DOING)
    }
    /// AL-4, `alert channel edit`: replaces a channel's document and, in the same transaction,
    /// makes its deliveries waiting for a retry due at `now_ms`: the operator has just changed
    /// where they go, so they go now with the new settings rather than after their backoff
    /// (their attempts are kept; each row changed gets its own `rev`, replicated like a mark).
    /// `None` when no channel has that name; otherwise how many deliveries were made due.
    pub fn channel_replace(
        &mut self,
        name: &str,
        doc: &Value,
        now_ms: i64,
    ) -> Result<Option<usize>> {
        let mut made_due = 0;
        let version = self.site_change("changing an alert channel", |tx| {
            let changed = tx.execute(
                "UPDATE channels SET doc = ?2 WHERE name = ?1",
                params![name, doc.to_string()],
            )?;
            if changed == 0 {
                return Ok(0);
            }
            let waiting: Vec<String> = tx
                .prepare(
                    "SELECT alert_id FROM deliveries
                      WHERE channel = ?1 AND state = 'pending' AND next_ms > ?2 ORDER BY alert_id",
                )?
                .query_map(params![name, now_ms], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut rev = counter(tx, OUTBOX_REV)?;
            for alert_id in &waiting {
                rev += 1;
                tx.execute(
                    "UPDATE deliveries SET next_ms = ?3, rev = ?4 WHERE alert_id = ?1 AND channel = ?2",
                    params![alert_id, name, now_ms, to_i64(rev)],
                )?;
            }
            set_counter(tx, OUTBOX_REV, rev)?;
            made_due = waiting.len();
            Ok(changed)
        })?;
        Ok(version.map(|_| made_due))
    }

    pub fn channel_get(&self, name: &str) -> Result<Option<Value>> {
        self.doc_get(DocTable::Channels, name)
    }
    pub fn channels_list(&self) -> Result<BTreeMap<String, Value>> {
        self.doc_list(DocTable::Channels)
    }
    pub fn channel_remove(&mut self, name: &str) -> Result<Option<u64>> {
        self.doc_remove(DocTable::Channels, name)
    }

    /// The whole site configuration, read in one transaction so it is consistent with `version`.
    pub fn site_snapshot(&self) -> Result<SiteSnapshot> {
        const DOING: &str = "reading the site configuration";
        // A read transaction on this same connection: the readers below all see one snapshot.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.err(DOING, e))?;
        let snapshot = SiteSnapshot {
            version: self.site_version()?,
            agents: self.agents_list()?,
            pairs: self.doc_list(DocTable::Pairs)?,
            checks: self.doc_list(DocTable::Checks)?,
            settings: self.doc_list(DocTable::Settings)?,
            channels: self.doc_list(DocTable::Channels)?,
        };
        tx.finish().map_err(|e| self.err(DOING, e))?;
        Ok(snapshot)
    }

    /// Replaces the whole site configuration with `snapshot`, keeping its version, in one
    /// transaction (a STANDBY applying what it replicated).
    pub fn site_replace(&mut self, snapshot: &SiteSnapshot) -> Result<()> {
        const DOING: &str = "replacing the site configuration";
        let path = self.path.clone();
        let err = |e| StoreError::sqlite(&path, DOING, e);
        let tx = self.begin(DOING)?;
        tx.execute_batch(
            "DELETE FROM agents; DELETE FROM pairs; DELETE FROM checks; DELETE FROM settings;
             DELETE FROM channels;",
        )
        .map_err(err)?;
        for a in &snapshot.agents {
            tx.execute(
                "INSERT INTO agents (id, name, fingerprint, status, first_seen_ms, home, announced)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.id,
                    a.name,
                    a.fingerprint,
                    a.status.as_str(),
                    a.first_seen_ms,
                    a.home,
                    a.announced
                ],
            )
            .map_err(err)?;
        }
        for (table, docs) in [
            (DocTable::Pairs, &snapshot.pairs),
            (DocTable::Checks, &snapshot.checks),
            (DocTable::Settings, &snapshot.settings),
            (DocTable::Channels, &snapshot.channels),
        ] {
            for (name, doc) in docs {
                tx.execute(table.upsert(), params![name, doc.to_string()])
                    .map_err(err)?;
            }
        }
        set_counter(&tx, SITE_VERSION, snapshot.version).map_err(err)?;
        tx.commit().map_err(err)
    }

    // ---- node state ----

    pub fn state_get(&self, key: &str) -> Result<Option<Value>> {
        const DOING: &str = "reading node state";
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM node_state WHERE key = ?1",
                [key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(DOING, e))?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| self.bad(DOING, format!("state {key:?} is not JSON: {e}")))
        })
        .transpose()
    }

    pub fn state_set(&mut self, key: &str, value: &Value) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO node_state (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value.to_string()],
            )
            .map(|_| ())
            .map_err(|e| self.err("saving node state", e))
    }
}

/// The node-state key of the forwarding cursor (MX-2).
const FORWARD_CURSOR: &str = "forward.cursor";

/// MX-2: a record named by its identity, the same in every store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardMark {
    pub agent_id: String,
    pub seq: u64,
}

const RECORD_COLUMNS: &str =
    "id, agent_id, agent_name, seq, name, value, time_ms, pair, kind, detail, taken_for, labels";

const INSERT_RECORD: &str = "INSERT OR IGNORE INTO records
    (agent_id, agent_name, seq, name, value, time_ms, pair, kind, detail, taken_for, labels)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// A record's labels as the `labels` column holds them: a JSON object, NULL when there are none.
fn labels_text(labels: &Labels) -> Option<String> {
    (!labels.is_empty()).then(|| serde_json::to_string(labels).unwrap_or_default())
}

/// The `labels` column read back (see [`labels_text`]).
fn labels_from(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Labels> {
    match row.get::<_, Option<String>>(i)? {
        None => Ok(Labels::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

fn stored_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        rowid: to_u64(row.get(0)?),
        agent_id: row.get(1)?,
        agent_name: row.get(2)?,
        record: Record {
            seq: to_u64(row.get(3)?),
            name: row.get(4)?,
            value: row.get(5)?,
            time_ms: row.get(6)?,
            pair: row.get(7)?,
            kind: row.get(8)?,
            detail: row.get(9)?,
            labels: labels_from(row, 11)?,
            pair_epoch: None,
        },
        taken_for: row.get(10)?,
    })
}

fn counter(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT value FROM counters WHERE name = ?1",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.map(to_u64).unwrap_or(0))
}

fn set_counter(conn: &Connection, name: &str, value: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = ?2",
        params![name, to_i64(value)],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(code: &str, time_ms: i64) -> EventRow {
        EventRow {
            time_ms,
            code: code.into(),
            subject: "db-ping".into(),
            detail: "db-ping failed 3 times in a row: connection refused".into(),
            data: json!({}),
        }
    }

    #[test]
    fn al2_checks_told_is_the_newest_check_down_or_up_per_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Store::open(&dir.path().join("s.db"), "n1").expect("open");
        s.event_append(&event("CHECK_DOWN", 1000)).expect("append");
        s.event_append(&event("CHECK_UP", 3000)).expect("append");
        // Replicated later but older: not the newest.
        s.event_append(&event("CHECK_DOWN", 2000)).expect("append");
        let mut web = event("CHECK_DOWN", 1500);
        web.subject = "web".into();
        s.event_append(&web).expect("append");
        s.event_append(&event("PROMOTED", 4000)).expect("append");
        assert_eq!(
            s.checks_told().expect("told"),
            vec![("db-ping".to_string(), false), ("web".to_string(), true)]
        );
    }

    #[test]
    fn al5_a_standby_takes_the_outbox_and_its_marks_and_a_mark_never_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut active = open(dir.path());
        let alert = NewAlert {
            id: "a-1".into(),
            severity: "critical".into(),
            channels: vec!["hook".into(), "mail".into()],
        };
        active
            .event_append_alerting(&event("CHECK_DOWN", 1000), Some(&alert))
            .expect("append");
        let other = tempfile::tempdir().expect("tempdir");
        let mut standby = Store::open(&other.path().join(STORE_FILE), "node-b").expect("open");
        let rows = active.outbox_since(0, 100).expect("since");
        assert_eq!(rows.len(), 2);
        assert_eq!(standby.outbox_merge(&rows).expect("merge"), 2);
        assert_eq!(standby.deliveries_due(1000, 10).expect("due").len(), 2);
        // The ACTIVE sends to hook; the STANDBY learns it from the rows after its cursor.
        let cursor = rows.iter().map(|r| r.rev).max().expect("rev");
        active
            .delivery_mark("a-1", "hook", Ok(()), 1500, 60_000)
            .expect("mark");
        let rows = active.outbox_since(cursor, 100).expect("since");
        assert_eq!(rows.len(), 1);
        standby.outbox_merge(&rows).expect("merge");
        let due = standby.deliveries_due(2000, 10).expect("due");
        let channels: Vec<&str> = due.iter().map(|d| d.channel.as_str()).collect();
        assert_eq!(
            channels,
            ["mail"],
            "promoted, it would send only what was not done"
        );
        // An older copy (pending) never undoes a mark.
        let stale = active.outbox_since(0, 100).expect("since");
        let mut stale: Vec<OutboxRow> = stale.into_iter().filter(|r| r.channel == "hook").collect();
        stale[0].state = "pending".into();
        assert_eq!(standby.outbox_merge(&stale).expect("merge"), 0);
        assert_eq!(standby.deliveries_due(2000, 10).expect("due").len(), 1);
        let listed = standby.alerts_list(10, false).expect("list");
        assert_eq!(listed[0].deliveries[0].state, "sent");
    }

    #[test]
    fn al4_an_edited_channel_keeps_its_deliveries_and_those_waiting_for_a_retry_go_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        s.channel_add(
            "hook",
            &serde_json::json!({"kind": "webhook", "url": "http://h/a"}),
        )
        .expect("added");
        for id in ["a-1", "a-2"] {
            let alert = NewAlert {
                id: id.into(),
                severity: "critical".into(),
                channels: vec!["hook".into()],
            };
            s.event_append_alerting(&event("CHECK_DOWN", 1000), Some(&alert))
                .expect("appended");
        }
        // a-1 refused 4 times: its next attempt is 8 s away; a-2 not tried yet.
        for at in [1000, 2000, 4000, 8000] {
            s.delivery_mark("a-1", "hook", Err("HTTP 503"), at, 3_600_000)
                .expect("marked");
        }
        assert_eq!(s.deliveries_due(8001, 10).expect("due").len(), 1);
        let version = s.site_version().expect("version");
        let cursor = s
            .outbox_since(0, 100)
            .expect("since")
            .iter()
            .map(|r| r.rev)
            .max();
        let new = serde_json::json!({"kind": "webhook", "url": "http://h/b"});
        assert_eq!(
            s.channel_replace("hook", &new, 8001).expect("replaced"),
            Some(1)
        );
        assert_eq!(s.channel_get("hook").expect("read"), Some(new));
        assert_eq!(
            s.site_version().expect("version"),
            version + 1,
            "replicated"
        );
        let due = s.deliveries_due(8001, 10).expect("due");
        assert_eq!(due.len(), 2, "{due:?}");
        assert_eq!(due[0].attempts, 4, "its attempts kept");
        let changed = s.outbox_since(cursor.unwrap_or(0), 100).expect("since");
        assert_eq!(
            changed.len(),
            1,
            "the change goes to the STANDBY: {changed:?}"
        );
        assert_eq!(
            s.channel_replace("nope", &serde_json::json!({}), 0)
                .expect("nothing"),
            None
        );
    }

    #[test]
    fn al5_an_alert_is_written_with_its_event_with_one_delivery_per_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let alert = NewAlert {
            id: "a-1".into(),
            severity: "critical".into(),
            channels: vec!["hook".into(), "mail".into()],
        };
        let id = s
            .event_append_alerting(&event("CHECK_DOWN", 1000), Some(&alert))
            .expect("appended");
        s.event_append(&event("ROLE_CHANGED", 1001))
            .expect("no alert");
        let alerts = s.alerts_list(10, false).expect("listed");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].event_id, id);
        assert_eq!(alerts[0].code, "CHECK_DOWN");
        let channels: Vec<&str> = alerts[0]
            .deliveries
            .iter()
            .map(|d| d.channel.as_str())
            .collect();
        assert_eq!(channels, ["hook", "mail"]);
        assert!(alerts[0].deliveries.iter().all(|d| d.state == "pending"));
        assert_eq!(s.deliveries_due(1000, 10).expect("due").len(), 2);
        assert_eq!(s.deliveries_due(999, 10).expect("due").len(), 0);
    }

    #[test]
    fn al5_an_alert_whose_event_is_not_written_is_not_written_either() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let alert = NewAlert {
            id: "a-1".into(),
            severity: "critical".into(),
            channels: vec!["hook".into()],
        };
        s.event_append_alerting(&event("CHECK_DOWN", 1000), Some(&alert))
            .expect("appended");
        // The same alert id again: its insert fails, and the event goes with it.
        let before = s.events_list(0, None, 100).expect("events").len();
        assert!(s
            .event_append_alerting(&event("CHECK_DOWN", 2000), Some(&alert))
            .is_err());
        assert_eq!(s.events_list(0, None, 100).expect("events").len(), before);
        assert_eq!(s.alerts_list(10, false).expect("listed").len(), 1);
    }

    #[test]
    fn al5_retries_back_off_from_1s_doubling_to_5m_then_fail_after_give_up_after() {
        assert_eq!(retry_after(1), std::time::Duration::from_secs(1));
        assert_eq!(retry_after(2), std::time::Duration::from_secs(2));
        assert_eq!(retry_after(5), std::time::Duration::from_secs(16));
        assert_eq!(retry_after(9), std::time::Duration::from_secs(256));
        assert_eq!(retry_after(10), std::time::Duration::from_secs(300));
        assert_eq!(retry_after(1000), std::time::Duration::from_secs(300));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let alert = NewAlert {
            id: "a-1".into(),
            severity: "warning".into(),
            channels: vec!["hook".into(), "mail".into()],
        };
        s.event_append_alerting(&event("AGENT_SILENT", 0), Some(&alert))
            .expect("appended");
        let give_up = 10_000;
        assert_eq!(
            s.delivery_mark("a-1", "hook", Err("503"), 0, give_up)
                .expect("marked"),
            DeliveryState::Retry(1000)
        );
        assert_eq!(
            s.deliveries_due(999, 10).expect("due").len(),
            1,
            "mail only"
        );
        assert_eq!(
            s.delivery_mark("a-1", "hook", Err("503"), 1000, give_up)
                .expect("marked"),
            DeliveryState::Retry(3000)
        );
        assert_eq!(
            s.delivery_mark("a-1", "mail", Ok(()), 5, give_up)
                .expect("marked"),
            DeliveryState::Sent
        );
        assert_eq!(
            s.delivery_mark("a-1", "hook", Err("timeout"), 10_000, give_up)
                .expect("marked"),
            DeliveryState::Failed
        );
        let alerts = s.alerts_list(10, false).expect("listed");
        let d = &alerts[0].deliveries;
        assert_eq!((d[0].state.as_str(), d[0].attempts), ("failed", 3));
        assert_eq!(d[0].last_error.as_deref(), Some("timeout"));
        assert_eq!((d[1].state.as_str(), d[1].attempts), ("sent", 1));
        assert!(s.alerts_list(10, true).expect("pending").is_empty());
        assert!(s.deliveries_due(i64::MAX, 10).expect("due").is_empty());
    }

    fn rec(name: &str, value: f64) -> NewRecord {
        NewRecord {
            name: name.into(),
            value,
            time_ms: 1_700_000_000_000,
            pair: None,
            kind: "metric".into(),
            detail: None,
            labels: Labels::new(),
            pair_epoch: None,
        }
    }

    /// Records cached the way a program from before labels (migration 7) cached them: values
    /// 1, 2, … under these names.
    fn cache_as_before(s: &Store, names: &[&str]) {
        for (i, name) in names.iter().enumerate() {
            s.conn
                .execute(
                    "INSERT INTO cache (seq, name, value, time_ms, kind)
                     VALUES (?1, ?2, ?1, 1700000000000, 'metric')",
                    params![i as i64 + 1, name],
                )
                .expect("an old cached record");
        }
        set_counter(&s.conn, CACHE_SEQ, names.len() as u64).expect("the old counter");
    }

    fn open(dir: &Path) -> Store {
        Store::open(&dir.join(STORE_FILE), "node-a").expect("open store")
    }

    #[test]
    fn a_reserve_is_kept_beside_the_cache_and_acknowledged_records_leave_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let reserve = dir.path().join(STORE_FILE).with_extension("reserve");
        assert!(
            !reserve.exists(),
            "a store without cache writes (a server) keeps no reserve"
        );
        let batch: Vec<NewRecord> = (0..2_000).map(|i| rec("m", i as f64)).collect();
        let seqs = s.cache_append(&batch).unwrap();
        assert_eq!(
            std::fs::metadata(&reserve).unwrap().len(),
            RESERVE_BYTES as u64
        );
        // The full-disk path: the reserve goes back to the disk, records leave in steps.
        assert!(s.release_reserve());
        assert!(!reserve.exists());
        assert!(!s.release_reserve(), "nothing left to release");
        assert_eq!(s.cache_ack_in_steps(seqs[1_499]).unwrap(), 1_500);
        assert_eq!(
            s.cache_first_seq().unwrap(),
            Some(seqs[1_500]),
            "only acknowledged records left"
        );
        assert_eq!(s.cache_ack_in_steps(*seqs.last().unwrap()).unwrap(), 500);
        assert_eq!(s.cache_len().unwrap(), 0);
        // The next write puts the reserve back when there is room.
        s.cache_append(&batch[..1]).unwrap();
        assert!(reserve.exists());
    }

    #[test]
    fn cache_sequence_numbers_are_never_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = open(dir.path());
            assert_eq!(
                s.cache_append(&[rec("a", 1.0), rec("b", 2.0)])
                    .expect("append"),
                [1, 2]
            );
            assert_eq!(s.cache_len().expect("len"), 2);
            assert_eq!(s.cache_first_seq().expect("first"), Some(1));
            assert_eq!(s.cache_ack(2).expect("ack"), 2);
            assert_eq!(s.cache_len().expect("len"), 0);
            assert_eq!(s.cache_first_seq().expect("first"), None);
            assert_eq!(s.cache_append(&[rec("c", 3.0)]).expect("append"), [3]);
        }
        // A restart with an empty-then-refilled cache continues the numbering.
        let mut s = open(dir.path());
        s.cache_ack(3).expect("ack");
        assert_eq!(
            s.cache_append(&[rec("d", 4.0), rec("e", 5.0)])
                .expect("append"),
            [4, 5]
        );
        let batch = s.cache_batch(4, 10).expect("batch");
        assert_eq!(batch.len(), 1);
        assert_eq!(
            (batch[0].seq, batch[0].name.as_str(), batch[0].value),
            (5, "e", 5.0)
        );
        assert_eq!(s.cache_batch(0, 1).expect("batch")[0].seq, 4);
        assert!(s.cache_append(&[rec("nan", f64::NAN)]).is_err());
        assert_eq!(
            s.cache_len().expect("len"),
            2,
            "a refused append adds nothing"
        );
    }

    /// MX-2: the cursor names a record by its identity, and the STANDBY maps it to its own id
    /// (ids differ between stores); it never goes back, and a record it lacks moves nothing.
    #[test]
    fn mx2_the_forwarding_cursor_is_durable_and_maps_to_the_standbys_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("a")).expect("dir");
        std::fs::create_dir(dir.path().join("b")).expect("dir");
        let mut active = open(&dir.path().join("a"));
        let mut standby = open(&dir.path().join("b"));
        let batch: Vec<Record> = (1..=5).map(|i| Record::new(i, rec("cpu", 1.0))).collect();
        // The STANDBY's ids are shifted: it holds another agent's record first.
        standby
            .records_insert("id-0", "other", &batch[..1], None)
            .expect("insert");
        active
            .records_insert("id-1", "a1", &batch, None)
            .expect("insert");
        assert_eq!(active.forward_cursor().expect("cursor"), 0);
        assert_eq!(active.forward_mark_at(0).expect("mark"), None);
        active.forward_advance(3).expect("advance");
        active.forward_advance(2).expect("never back");
        assert_eq!(active.forward_cursor().expect("cursor"), 3);
        assert_eq!(active.forward_lag(3).expect("lag").0, 2);
        let mark = active.forward_mark_at(3).expect("mark").expect("a record");
        assert_eq!(
            mark,
            ForwardMark {
                agent_id: "id-1".into(),
                seq: 3
            }
        );
        // Not replicated yet: nothing moves.
        assert_eq!(standby.forward_adopt(&mark).expect("adopt"), 0);
        let rows = active.records_since(0, 100).expect("since");
        standby.records_merge(&rows).expect("merge");
        assert_eq!(standby.forward_adopt(&mark).expect("adopt"), 4);
        assert_eq!(
            standby.forward_lag(4).expect("lag"),
            (2, Some(1_700_000_000_000))
        );
        drop(standby);
        let standby = open(&dir.path().join("b"));
        assert_eq!(standby.forward_cursor().expect("durable"), 4);
    }

    #[test]
    fn retention_deletes_old_records_in_bounded_batches_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        // 25 old records (time 1000..1024), then 5 new ones (time 5000..5004).
        let batch: Vec<Record> = (1..=30u64)
            .map(|i| {
                let mut r = rec("cpu", i as f64);
                r.time_ms = if i <= 25 {
                    999 + i as i64
                } else {
                    4975 + i as i64
                };
                Record::new(i, r)
            })
            .collect();
        s.records_insert("id-1", "agent1", &batch, None)
            .expect("insert");
        assert_eq!(s.tally().records_stored, 30);
        // Each step deletes at most the batch size.
        assert_eq!(s.records_delete_older(2000, 10, None).expect("step"), 10);
        assert_eq!(s.records_count().expect("count"), 20);
        assert_eq!(s.records_delete_older(2000, 10, None).expect("step"), 10);
        // The forwarding cursor (MX-2) holds what it has not passed.
        assert_eq!(s.records_delete_older(2000, 10, Some(22)).expect("step"), 2);
        assert_eq!(s.records_delete_older(2000, 10, None).expect("step"), 3);
        assert_eq!(s.records_delete_older(2000, 10, None).expect("step"), 0);
        let left = s.records_list(&RecordFilter::default()).expect("list");
        assert_eq!(
            left.iter().map(|r| r.record.seq).collect::<Vec<_>>(),
            vec![26, 27, 28, 29, 30]
        );
        assert_eq!(s.tally().records_deleted, 25);
        // The newest record stays even when old: the replication cursor never goes back.
        assert_eq!(s.records_delete_older(i64::MAX, 10, None).expect("step"), 4);
        assert_eq!(s.records_max_rowid().expect("max"), 30);
        assert_eq!(s.records_count().expect("count"), 1);
    }

    #[test]
    fn mx1_the_tally_counts_what_was_committed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let batch: Vec<Record> = (1..=3).map(|i| Record::new(i, rec("cpu", 1.0))).collect();
        s.records_insert("id-1", "agent1", &batch, None)
            .expect("insert");
        // A resend stores nothing and counts nothing.
        s.records_insert("id-1", "agent1", &batch, None)
            .expect("resend");
        assert_eq!(s.tally().records_stored, 3);
        let ev = EventRow {
            time_ms: 1,
            code: "FAILOVER".into(),
            subject: "web".into(),
            detail: "x".into(),
            data: json!({}),
        };
        s.event_append(&ev).expect("event");
        s.event_append(&ev).expect("event");
        assert_eq!(s.tally().events.get("FAILOVER"), Some(&2));
    }

    #[test]
    fn records_are_stored_exactly_once_and_replicate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let batch: Vec<Record> = (1..=3)
            .map(|i| {
                let mut r = rec("cpu", i as f64);
                if i == 2 {
                    r.pair = Some("web".into());
                }
                Record::new(i, r)
            })
            .collect();
        assert_eq!(
            s.records_insert("id-1", "agent1", &batch, None)
                .expect("insert"),
            3
        );
        assert_eq!(
            s.records_insert("id-1", "agent1", &batch, None)
                .expect("resend"),
            0
        );
        assert_eq!(
            s.records_insert("id-2", "agent2", &batch[..1], None)
                .expect("other"),
            1
        );
        assert_eq!(s.records_count().expect("count"), 4);
        assert_eq!(s.records_max_seq("id-1").expect("max"), Some(3));
        assert_eq!(s.records_max_seq("nobody").expect("max"), None);

        let by_agent = RecordFilter {
            agent: Some("agent1".into()),
            ..Default::default()
        };
        assert_eq!(s.records_list(&by_agent).expect("list").len(), 3);
        let by_pair = RecordFilter {
            pair: Some("web".into()),
            ..Default::default()
        };
        let web = s.records_list(&by_pair).expect("list");
        assert_eq!((web.len(), web[0].record.seq), (1, 2));
        let newest = s
            .records_list(&RecordFilter {
                limit: Some(2),
                ..Default::default()
            })
            .expect("list");
        assert_eq!(
            newest
                .iter()
                .map(|r| (r.agent_id.as_str(), r.record.seq))
                .collect::<Vec<_>>(),
            [("id-1", 3), ("id-2", 1)]
        );
        let json = serde_json::to_value(&newest[0]).expect("json");
        assert_eq!(json["agent_name"], "agent1");
        assert_eq!(json["seq"], 3);

        let other_dir = tempfile::tempdir().expect("tempdir");
        let mut standby = Store::open(&other_dir.path().join(STORE_FILE), "node-b").expect("open");
        let first = s.records_since(0, 2).expect("since");
        assert_eq!(standby.records_merge(&first).expect("merge"), 2);
        let rest = s.records_since(first[1].rowid, 100).expect("since");
        assert_eq!(rest.len(), 2);
        assert_eq!(standby.records_merge(&rest).expect("merge"), 2);
        assert_eq!(standby.records_merge(&first).expect("merge again"), 0);
        assert_eq!(standby.records_count().expect("count"), 4);
    }

    #[test]
    fn events_append_list_and_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = open(dir.path());
        let ev = |code: &str| EventRow {
            time_ms: 1,
            code: code.into(),
            subject: "agent1".into(),
            detail: format!("{code} happened"),
            data: json!({"server": "s2"}),
        };
        assert_eq!(a.event_append(&ev("SWITCHOVER")).expect("append"), 1);
        assert_eq!(a.event_append(&ev("SWITCHBACK")).expect("append"), 2);
        let all = a.events_list(0, None, 100).expect("list");
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].origin.as_str(), all[0].origin_id), ("node-a", 1));
        assert_eq!(all[0].event.data["server"], "s2");
        let only = a.events_list(0, Some("SWITCHBACK"), 100).expect("list");
        assert_eq!(only.len(), 1);
        assert_eq!(a.events_list(1, None, 100).expect("list").len(), 1);

        let other = tempfile::tempdir().expect("tempdir");
        let mut b = Store::open(&other.path().join(STORE_FILE), "node-b").expect("open");
        b.event_append(&ev("PROMOTED")).expect("append");
        assert_eq!(b.events_merge(&all).expect("merge"), 2);
        assert_eq!(b.events_merge(&all).expect("merge again"), 0);
        let merged = b.events_list(0, None, 100).expect("list");
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[1].origin, "node-a");
    }

    #[test]
    fn al4_channels_are_site_configuration_replicated_and_a_second_channel_of_a_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let hook = json!({"kind": "webhook", "url": "http://127.0.0.1:9/", "secret": "k"});
        assert_eq!(s.channel_add("hook", &hook).expect("add"), 1);
        assert!(matches!(
            s.channel_add("hook", &json!({"kind": "ntfy"})),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(s.site_version().expect("version"), 1, "nothing changed");
        assert_eq!(s.channel_get("hook").expect("get"), Some(hook.clone()));
        let snap = s.site_snapshot().expect("snapshot");
        assert_eq!(snap.channels["hook"], hook);
        // A STANDBY takes them with the rest of the site; a snapshot from an older peer
        // (no `channels`) leaves none.
        let other = tempfile::tempdir().expect("tempdir");
        let mut standby = Store::open(&other.path().join(STORE_FILE), "node-b").expect("open");
        standby.site_replace(&snap).expect("replace");
        assert_eq!(standby.channels_list().expect("list")["hook"], hook);
        let mut old = serde_json::to_value(&snap).expect("ser");
        old.as_object_mut().expect("object").remove("channels");
        let old: SiteSnapshot = serde_json::from_value(old).expect("de");
        standby.site_replace(&old).expect("replace");
        assert!(standby.channels_list().expect("list").is_empty());
        assert_eq!(s.channel_remove("hook").expect("remove"), Some(2));
        assert_eq!(s.channel_remove("hook").expect("remove"), None);
    }

    #[test]
    fn site_configuration_versions_snapshot_and_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        assert_eq!(s.site_version().expect("version"), 0);
        let agent = AgentRow {
            id: "id-1".into(),
            name: "agent1".into(),
            fingerprint: "ab".repeat(32),
            status: AgentStatus::Pending,
            first_seen_ms: 5,
            home: Some(false),
            announced: Some("cd".repeat(32)),
        };
        assert_eq!(s.agent_put(&agent).expect("put"), 1);
        let clash = AgentRow {
            id: "id-2".into(),
            ..agent.clone()
        };
        assert!(matches!(
            s.agent_put(&clash),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(
            s.site_version().expect("version"),
            1,
            "a refused change bumps nothing"
        );
        assert_eq!(
            s.agent_set_status("id-1", AgentStatus::Accepted)
                .expect("status"),
            Some(2)
        );
        assert_eq!(
            s.agent_set_status("nobody", AgentStatus::Accepted)
                .expect("status"),
            None
        );
        assert_eq!(
            s.agent_by_name("agent1").expect("get").map(|a| a.status),
            Some(AgentStatus::Accepted)
        );
        s.pair_put("web", &json!({"primary": "agent1", "secondary": "agent2"}))
            .expect("pair");
        s.check_put("http", &json!({"kind": "http"}))
            .expect("check");
        s.setting_put("theme", &json!("dark")).expect("setting");
        assert_eq!(
            s.pair_get("web").expect("get").expect("some")["primary"],
            "agent1"
        );
        assert_eq!(s.pair_remove("nope").expect("remove"), None);

        let snap = s.site_snapshot().expect("snapshot");
        assert_eq!(snap.version, 5);
        assert_eq!(snap.agents.len(), 1);
        assert_eq!(
            (snap.agents[0].home, snap.agents[0].announced.clone()),
            (Some(false), Some("cd".repeat(32))),
            "home and an announced certificate are kept and replicated (issue 12 item 3)"
        );
        assert_eq!(snap.pairs.len(), 1);
        assert_eq!(snap.checks.len(), 1);
        assert_eq!(snap.settings["theme"], "dark");

        let other = tempfile::tempdir().expect("tempdir");
        let mut standby = Store::open(&other.path().join(STORE_FILE), "node-b").expect("open");
        standby.pair_put("stale", &json!({})).expect("stale");
        standby.site_replace(&snap).expect("replace");
        assert_eq!(standby.site_snapshot().expect("snapshot"), snap);
        assert_eq!(standby.site_version().expect("version"), 5);
        // JSON round trip, as it crosses the wire.
        let wire: SiteSnapshot =
            serde_json::from_str(&serde_json::to_string(&snap).expect("ser")).expect("de");
        assert_eq!(wire, snap);
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = open(dir.path());
            s.cache_append(&[rec("a", 1.0)]).expect("append");
            s.records_insert("id-1", "agent1", &[Record::new(7, rec("b", 2.0))], None)
                .expect("insert");
            s.event_append(&EventRow {
                time_ms: 1,
                code: "BLACKOUT".into(),
                subject: "agent1".into(),
                detail: "no server answers".into(),
                data: json!(null),
            })
            .expect("event");
            s.pair_put("web", &json!({"a": 1})).expect("pair");
            s.state_set("epoch", &json!(4)).expect("state");
        }
        let s = open(dir.path());
        assert_eq!(s.cache_len().expect("len"), 1);
        assert_eq!(s.records_max_seq("id-1").expect("max"), Some(7));
        assert_eq!(s.events_list(0, None, 10).expect("events").len(), 1);
        assert_eq!(s.pair_get("web").expect("pair"), Some(json!({"a": 1})));
        assert_eq!(s.site_version().expect("version"), 1);
        assert_eq!(s.state_get("epoch").expect("state"), Some(json!(4)));
        assert_eq!(s.state_get("nothing").expect("state"), None);
        assert_eq!(s.schema_version().expect("schema"), MIGRATIONS.len() as i64);
    }

    #[test]
    fn migrations_apply_in_order_and_a_failing_one_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STORE_FILE);
        // A database from an older program: only the first migration.
        {
            let old = Store::open_with(&path, "n", &MIGRATIONS[..1]).expect("v1");
            cache_as_before(&old, &["kept"]);
        }
        let second = "ALTER TABLE cache ADD COLUMN note TEXT; UPDATE cache SET note = 'migrated';";
        let broken = "CREATE TABLE extra (x INTEGER); THIS IS NOT SQL;";
        let err = Store::open_with(&path, "n", &[MIGRATIONS[0], second, broken])
            .err()
            .expect("the broken migration fails");
        assert!(err.to_string().contains("migrating the schema"), "{err}");
        // Migration 2 committed on its own; migration 3 rolled back entirely.
        let conn = Connection::open(&path).expect("raw open");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("v");
        assert_eq!(version, 2);
        let note: String = conn
            .query_row("SELECT note FROM cache", [], |r| r.get(0))
            .expect("note");
        assert_eq!(note, "migrated");
        let extra: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'extra'",
                [],
                |r| r.get(0),
            )
            .expect("extra");
        assert_eq!(extra, 0);
        drop(conn);
        // A program that knows fewer migrations than the file has refuses it.
        let too_new = Store::open_with(&path, "n", &MIGRATIONS[..1])
            .err()
            .expect("too new");
        assert!(
            matches!(
                too_new,
                StoreError::TooNew {
                    found: 2,
                    known: 1,
                    ..
                }
            ),
            "{too_new}"
        );
    }

    #[test]
    fn ag2_a_cache_from_before_held_records_keeps_its_records_and_can_hold_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STORE_FILE);
        {
            let old = Store::open_with(&path, "n", &MIGRATIONS[..1]).expect("v1");
            cache_as_before(&old, &["a", "b", "c", "d"]);
        }
        let mut s = Store::open_with(&path, "n", MIGRATIONS).expect("migrated");
        assert_eq!(s.cache_len().expect("len"), 4, "the old cache is kept");
        assert_eq!(s.cache_held().expect("held"), vec![]);
        assert_eq!(s.cache_hold(0, 2, "https://b").expect("hold"), 2);
        assert_eq!(s.cache_hold(2, 3, "https://c").expect("hold"), 1);
        assert_eq!(
            s.cache_held().expect("held"),
            vec![(2, "https://b".to_string()), (3, "https://c".to_string())]
        );
        assert_eq!(
            s.cache_batch(0, 10).expect("batch").len(),
            4,
            "held records stay cached"
        );
        // The standby's side: the mark of a record taken for another home.
        s.records_insert(
            "id-1",
            "x",
            &[Record::new(1, rec("a", 1.0))],
            Some("https://home"),
        )
        .expect("insert");
        let listed = s.records_list(&RecordFilter::default()).expect("list");
        assert_eq!(listed[0].taken_for.as_deref(), Some("https://home"));
    }

    #[test]
    fn ck4_labels_go_from_cache_to_records_to_a_standby_and_old_rows_have_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STORE_FILE);
        {
            // A store from before labels (migration 6) with a cached and a stored record.
            let old = Store::open_with(&path, "n", &MIGRATIONS[..6]).expect("v6");
            cache_as_before(&old, &["old"]);
            old.conn
                .execute(
                    "INSERT INTO records (agent_id, agent_name, seq, name, value, time_ms, kind)
                     VALUES ('id-0', 'a0', 1, 'old', 1.0, 1, 'metric')",
                    [],
                )
                .expect("old record");
        }
        let mut s = Store::open_with(&path, "n", MIGRATIONS).expect("migrated");
        let mut labelled = rec("node_load1", 0.5);
        labelled.labels = Labels::from([
            ("instance".to_string(), "h1:9100".to_string()),
            ("job".to_string(), "node \"x\" ü".to_string()),
        ]);
        s.cache_append(std::slice::from_ref(&labelled))
            .expect("append");
        let batch = s.cache_batch(0, 10).expect("batch");
        assert_eq!(batch.len(), 2);
        assert!(batch[0].labels.is_empty(), "a record from before has none");
        assert_eq!(batch[1].labels, labelled.labels);
        // On the wire: a record without labels is the same frame as before.
        let old_frame = serde_json::to_value(&batch[0]).expect("json");
        assert!(old_frame.get("labels").is_none(), "{old_frame}");
        let frame = serde_json::to_string(&batch[1]).expect("json");
        let back: Record = serde_json::from_str(&frame).expect("back");
        assert_eq!(back, batch[1]);
        s.records_insert("id-1", "a1", &batch, None)
            .expect("insert");
        let listed = s.records_list(&RecordFilter::default()).expect("list");
        assert_eq!(listed.len(), 3);
        assert!(
            listed[0].record.labels.is_empty(),
            "a stored record from before"
        );
        assert_eq!(listed[2].record.labels, labelled.labels);
        // HS-3: the STANDBY gets them with the record.
        let other = tempfile::tempdir().expect("tempdir");
        let mut standby = open(other.path());
        let since = s.records_since(0, 10).expect("since");
        assert_eq!(standby.records_merge(&since).expect("merge"), 3);
        let there = standby
            .records_list(&RecordFilter::default())
            .expect("list");
        assert_eq!(there[2].record.labels, labelled.labels);
    }

    #[test]
    fn a_corrupt_file_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STORE_FILE);
        std::fs::write(
            &path,
            b"this is not a database, just garbage bytes ".repeat(100),
        )
        .expect("write garbage");
        let err = Store::open(&path, "n")
            .err()
            .expect("corrupt store refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(STORE_FILE) && msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn a_second_writer_waits_then_reports_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STORE_FILE);
        let mut s = open(dir.path());
        let mut other = Connection::open(&path).expect("raw open");
        other
            .busy_timeout(std::time::Duration::ZERO)
            .expect("timeout");
        let tx = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("lock");
        s.conn
            .busy_timeout(std::time::Duration::from_millis(50))
            .expect("timeout");
        let err = s.cache_append(&[rec("a", 1.0)]).expect_err("busy");
        assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
        drop(tx);
        s.cache_append(&[rec("a", 1.0)])
            .expect("after the lock is gone");
    }
}
