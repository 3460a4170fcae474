//! Issue 16 item 4: `server.retention`. A server deletes records older than the retention in the
//! background, in small steps ([`RETENTION_BATCH`] rows per transaction, the store's lock released
//! between them), so a server's disk does not grow forever and agents' batches never wait behind
//! one long delete. `0` keeps records forever; a node without the server role deletes nothing.
//!
//! MX-2: a record the forwarder has not sent yet is never deleted for retention: while
//! `forward.remote_write` is set, each step is bounded by the forwarding cursor
//! (`Store::forward_cursor`, read in the step's own transaction's lock).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::mailbox::now_ms;
use crate::store::{Store, RETENTION_BATCH};

/// How often a pass starts: a quarter of the retention, between these bounds.
const PASS_MIN: Duration = Duration::from_millis(500);
const PASS_MAX: Duration = Duration::from_secs(60);
/// The pause between two full steps of one pass, so that writers get the lock in between.
const STEP_PAUSE: Duration = Duration::from_millis(5);

/// What the retention task is given (habit 9: its dependencies, not the node's `Shared`).
pub(crate) struct Retention {
    pub store: Arc<Mutex<Store>>,
    pub config: Arc<Mutex<Config>>,
    pub shutdown: watch::Receiver<bool>,
}

pub(crate) async fn run(mut r: Retention) {
    loop {
        let (server, retention, forwarding) = {
            let c = r.config.lock().unwrap_or_else(|p| p.into_inner());
            (
                c.node.server,
                c.server.retention,
                !c.forward.remote_write.is_empty(),
            )
        };
        if server && !retention.is_zero() {
            let deleted = pass(&r, retention, forwarding).await;
            if deleted > 0 {
                tracing::info!(
                    "server.retention: {deleted} records older than {} deleted",
                    understudy_api::duration::format(retention)
                );
            }
        }
        let wait = if retention.is_zero() {
            PASS_MAX
        } else {
            (retention / 4).clamp(PASS_MIN, PASS_MAX)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = r.shutdown.changed() => return,
        }
        if *r.shutdown.borrow() {
            return;
        }
    }
}

/// One pass: steps of at most [`RETENTION_BATCH`] until a step finds fewer.
async fn pass(r: &Retention, retention: Duration, forwarding: bool) -> usize {
    let before_ms =
        now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let mut total = 0;
    loop {
        let store = r.store.clone();
        let step = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            let upto = if forwarding {
                Some(store.forward_cursor()?)
            } else {
                None
            };
            store.records_delete_older(before_ms, RETENTION_BATCH, upto)
        })
        .await;
        match step {
            Ok(Ok(n)) => {
                total += n;
                if n < RETENTION_BATCH || *r.shutdown.borrow() {
                    return total;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("server.retention: {e}");
                return total;
            }
            Err(_) => return total,
        }
        tokio::time::sleep(STEP_PAUSE).await;
    }
}
