//! Every default of the site configuration, in one place: the node applies them, the CLI and
//! the console show them, and the fast timing profile used by `demo --fast`, the benchmarks and
//! the tests.

use std::time::Duration;

/// PR-1: how long an active primary may be silent before its secondary is activated.
pub const PAIR_FAILOVER_AFTER: Duration = Duration::from_secs(10);
/// PR-4: how long the primary must be healthy before an `auto` switchback.
pub const PAIR_HOLD_DOWN: Duration = Duration::from_secs(60);
/// CK-1: how often a check runs, and its floor.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
pub const CHECK_EVERY_MIN: Duration = Duration::from_millis(100);
/// CK-1: how long one run of a check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// CK-1: the HTTP status an `http` check expects.
pub const CHECK_HTTP_EXPECT: u16 = 200;
/// CT-2, issue 12 item 2: after a server announces a new certificate, how long an agent still
/// accepts that server's older certificates (and a server its peer's older announced ones).
pub const PIN_RETIRE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// AL-2: a check is DOWN after this many failed runs in a row, and UP after this many good ones.
pub const CHECK_FAIL_AFTER: u32 = 3;
pub const CHECK_OK_AFTER: u32 = 2;
/// AL-3 `server.silent_after`: an accepted agent not heard this long is silent.
pub const SILENT_AFTER: Duration = Duration::from_secs(120);
/// Issue 16 item 4 `server.retention`: a server deletes records older than this (0: never).
pub const RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// AL-6 `alert.group_wait`: alerts to one channel are grouped this long (0: not grouped).
pub const ALERT_GROUP_WAIT: Duration = Duration::from_secs(10);
/// AL-5 `alert.give_up_after`: a delivery is retried this long, then DELIVERY_FAILED.
pub const ALERT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// AL-5: the first retry waits this long, doubling up to [`ALERT_RETRY_MAX`].
pub const ALERT_RETRY_FIRST: Duration = Duration::from_secs(1);
pub const ALERT_RETRY_MAX: Duration = Duration::from_secs(300);
/// MX-2 `forward.batch`: at most this many samples go in one remote-write request.
pub const FORWARD_BATCH: usize = 500;
/// MX-2 `forward.timeout`: one remote-write request, connection included, may take this long.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// MX-2: a failed request is retried after this long, doubling up to [`FORWARD_RETRY_MAX`].
pub const FORWARD_RETRY_FIRST: Duration = Duration::from_secs(1);
pub const FORWARD_RETRY_MAX: Duration = Duration::from_secs(60);

/// Issue 18 item 3: the labels one record may carry (bounded so a record stays small): at most
/// [`LABELS_MAX`] of them, each name at most [`LABEL_NAME_MAX`] bytes, each value at most
/// [`LABEL_VALUE_MAX`] bytes.
pub const LABELS_MAX: usize = 32;
pub const LABEL_NAME_MAX: usize = 128;
pub const LABEL_VALUE_MAX: usize = 1024;

/// How many events `GET /api/events` answers at most when no limit is given.
pub const EVENTS_LIMIT: usize = 1000;
/// UI-5: how long `GET /api/events?follow=1` waits for an event before it answers an empty
/// list (the client asks again); below the admin connection's idle timeout and the CLI's
/// request timeout.
pub const EVENTS_FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The fast timing profile (PRODUCT.md §3 `demo --fast`, §5 "sub-second settings"): `--set`
/// arguments that make failover sub-second. The demo, the benchmarks and the tests all use it.
pub mod fast {
    /// Agent settings.
    pub const AGENT: &[&str] = &[
        "agent.heartbeat=200ms",
        "agent.switchover_after=600ms",
        "agent.switchback_interval=1s",
    ];
    /// Server settings (hot standby).
    pub const SERVER: &[&str] = &[
        "failover.sync_interval=200ms",
        "failover.failover_timeout=1s",
    ];
    /// A pair's `failover_after` and `hold_down`, and a check's interval, at this pace.
    pub const PAIR_FAILOVER_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
    pub const PAIR_HOLD_DOWN: std::time::Duration = std::time::Duration::from_secs(3);
    pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
}
