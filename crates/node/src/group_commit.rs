//! Issue 18: group commit of the records a server stores. Every connection (an agent's link, the
//! peer's merge) hands its batch to one writer; batches that arrive while a transaction is being
//! committed wait and are stored together in the next one, so the server pays one fsync for all
//! of them instead of one per batch. There is no timer: the writer commits as soon as it is free,
//! so a connection alone waits for nothing but its own commit. Each batch is answered only after
//! the transaction holding it committed (AG-2: an acknowledgement follows durability), and the
//! dedup by (agent, sequence number) stays inside the transaction.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::store::{Record, RecordBatch, Store, StoredRecord};

/// The most records one transaction takes (the first batch waiting always goes in whole): a
/// group stays short, so a batch arriving behind it waits for little more than one fsync.
pub(crate) const GROUP_RECORDS: usize = 16_384;
/// The most batches one transaction takes.
pub(crate) const GROUP_BATCHES: usize = 64;

/// One batch to store. The records come back with the answer (the caller reads them after).
pub(crate) enum Batch {
    Agent {
        agent_id: String,
        agent_name: String,
        records: Vec<Record>,
        taken_for: Option<String>,
    },
    Merge(Vec<StoredRecord>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Agent { records, .. } => records.len(),
            Batch::Merge(records) => records.len(),
        }
    }

    fn as_store(&self) -> RecordBatch<'_> {
        match self {
            Batch::Agent {
                agent_id,
                agent_name,
                records,
                taken_for,
            } => RecordBatch::Agent {
                agent_id,
                agent_name,
                records,
                taken_for: taken_for.as_deref(),
            },
            Batch::Merge(records) => RecordBatch::Merge(records),
        }
    }
}

/// Which of a batch's records (by index) were new here, once committed; or why it was not stored.
pub(crate) type Stored = Result<Vec<usize>, String>;

struct Job {
    batch: Batch,
    done: oneshot::Sender<(Batch, Stored)>,
}

/// The handle connections store their batches through (cheap to clone).
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the writer for `store` on the current tokio runtime; it ends when every handle is
    /// gone.
    pub fn start(store: Arc<Mutex<Store>>) -> GroupCommit {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(store, rx));
        GroupCommit { jobs }
    }

    /// Queues `batch` for the next transaction and returns at once; the receiver answers (with
    /// the batch back) once that transaction committed, or failed. A receiver that errs means
    /// the writer stopped (the node is stopping): nothing is known to be stored.
    pub fn submit(&self, batch: Batch) -> oneshot::Receiver<(Batch, Stored)> {
        let (done, rx) = oneshot::channel();
        // A writer that is gone drops the job, which the receiver reports.
        let _ = self.jobs.send(Job { batch, done });
        rx
    }
}

async fn writer(store: Arc<Mutex<Store>>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut records = first.batch.len();
        let mut group = vec![first];
        // What arrived while the last transaction was committed goes into this one.
        while records < GROUP_RECORDS && group.len() < GROUP_BATCHES {
            match rx.try_recv() {
                Ok(job) => {
                    records += job.batch.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let answers = {
                let batches: Vec<RecordBatch<'_>> =
                    group.iter().map(|j| j.batch.as_store()).collect();
                let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                store.records_commit_group(&batches)
            };
            match answers {
                Ok(answers) => {
                    for (job, answer) in group.into_iter().zip(answers) {
                        let _ = job
                            .done
                            .send((job.batch, answer.map_err(|e| e.to_string())));
                    }
                }
                Err(e) => {
                    tracing::error!("records not stored, not acknowledged: {e}");
                    let e = e.to_string();
                    for job in group {
                        let _ = job.done.send((job.batch, Err(e.clone())));
                    }
                }
            }
        })
        .await;
        if committed.is_err() {
            // The runtime is shutting down: the group's receivers see their senders dropped.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRecord;

    fn records(from: u64, n: u64) -> Vec<Record> {
        (from..from + n)
            .map(|seq| {
                Record::new(
                    seq,
                    NewRecord {
                        name: "m".into(),
                        value: seq as f64,
                        time_ms: 1_000 + seq as i64,
                        pair: None,
                        pair_epoch: None,
                        kind: "metric".into(),
                        detail: None,
                        labels: Default::default(),
                    },
                )
            })
            .collect()
    }

    fn agent(n: usize, records: Vec<Record>) -> Batch {
        Batch::Agent {
            agent_id: format!("id-{n}"),
            agent_name: format!("a{n}"),
            records,
            taken_for: None,
        }
    }

    /// Issue 18: batches from several connections that arrive while a commit is in flight are
    /// stored in one transaction, none is answered before that transaction committed, and a batch
    /// sent again after a lost acknowledgement stores nothing twice.
    // The store's lock held across awaits stands for a commit in flight.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ck4_batches_waiting_for_a_commit_go_in_one_transaction_answered_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.db");
        let store = Arc::new(Mutex::new(Store::open(&path, "s").expect("open")));
        let group = GroupCommit::start(store.clone());
        // A first batch alone is committed at once: no timer holds it.
        let (_, first) = group
            .submit(agent(0, records(1, 10)))
            .await
            .expect("answer");
        assert_eq!(first.expect("stored").len(), 10);
        assert_eq!(store.lock().unwrap().tally().record_commits, 1);

        // A commit in flight: a pilot batch the writer took and cannot store until the lock
        // held here goes; what the connections send meanwhile waits for the next transaction.
        let held = store.lock().unwrap();
        let pilot = group.submit(agent(9, records(1, 1)));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut waiting: Vec<_> = (1..=3)
            .map(|n| group.submit(agent(n, records(1, 100))))
            .collect();
        // The peer's merge joins the same group.
        let merged = vec![StoredRecord {
            rowid: 7,
            agent_id: "id-8".into(),
            agent_name: "a8".into(),
            record: records(1, 1).pop().expect("one"),
            taken_for: None,
        }];
        waiting.push(group.submit(Batch::Merge(merged)));
        let reader = Store::open(&path, "r").expect("a second connection");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for rx in &mut waiting {
            assert!(rx.try_recv().is_err(), "answered before its commit");
        }
        assert_eq!(reader.records_count().expect("count"), 10);
        drop(held);

        pilot.await.expect("answer").1.expect("stored");
        let mut new = Vec::new();
        for rx in waiting {
            let (_, stored) = rx.await.expect("answer");
            new.push(stored.expect("stored").len());
            // Answered only once its records are durable: another connection reads them all.
            assert_eq!(reader.records_count().expect("count"), 312);
        }
        assert_eq!(new, [100, 100, 100, 1]);
        // One transaction for the pilot and one for the four batches behind it (one in all if
        // the writer had not yet taken the pilot when the others came: this machine is shared);
        // a commit per batch would make five.
        let commits = store.lock().unwrap().tally().record_commits - 1;
        assert!(
            (1..=2).contains(&commits),
            "the batches that waited went in one transaction, not {commits}"
        );

        // Sent again (an acknowledgement lost): answered, nothing stored twice.
        let (_, again) = group
            .submit(agent(2, records(51, 100)))
            .await
            .expect("answer");
        assert_eq!(again.expect("stored"), (50..100).collect::<Vec<_>>());
        assert_eq!(reader.records_count().expect("count"), 362);
        assert_eq!(store.lock().unwrap().tally().records_stored, 362);
    }

    /// A batch that cannot be stored is answered with its error; the others of its group are
    /// stored.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn ck4_a_bad_batch_fails_alone_in_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Mutex::new(
            Store::open(&dir.path().join("s.db"), "s").expect("open"),
        ));
        let group = GroupCommit::start(store.clone());
        let in_flight = store.lock().unwrap();
        let mut bad = records(1, 3);
        bad[1].value = f64::NAN;
        let bad = group.submit(agent(1, bad));
        let good = group.submit(agent(2, records(1, 3)));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(in_flight);
        let (_, bad) = bad.await.expect("answer");
        assert!(bad.expect_err("refused").contains("non-finite"));
        let (_, good) = good.await.expect("answer");
        assert_eq!(good.expect("stored").len(), 3);
        assert_eq!(store.lock().unwrap().records_count().expect("count"), 3);
    }
}
