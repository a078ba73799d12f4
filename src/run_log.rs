//! Run and step logs: append-only rows in `pipeline_run_events` and `step_logs`, written by batched
//! `insertAll` (a buffer flushed when full, every `RUN_LOG_FLUSH_MS`, and 20 ms after a step
//! attempt ends, which watchers wait for; one flush at a time, so rows queued meanwhile share the
//! next), never UPDATE. (Heartbeats are not queued here: the executor's lease sends them itself.)
//! Each table has its own queue. A writer that must know its row landed (the PENDING event, a run's
//! end) waits for the next flush of its table, which carries every row queued with it.
//!
//! Reads follow writes: a flush of run events first writes every step row queued before the
//! events it takes, and writes no event while those step rows fail. So a run never reads
//! RUNNING, SUCCEEDED or any end before the step attempts (and REUSED steps) recorded before
//! that state are readable. Step rows alone are flushed on their own.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use crate::warehouse::{Warehouse, WarehouseError};

/// Rows per `insertAll` request at most.
pub const MAX_BATCH: usize = 500;
/// Rows kept for a later retry when BigQuery refuses; older ones are dropped (and logged).
const MAX_BUFFERED: usize = 50_000;
/// How long a waited-for flush lingers to gather more rows.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunEvent {
    pub event_id: String,
    pub run_id: String,
    pub org_slug: String,
    pub pipeline_id: String,
    pub status: String,
    pub event_time: String,
    pub event_seq: i64,
    pub run_started_at: Option<String>,
    pub trigger: Option<String>,
    pub triggered_by: Option<String>,
    pub parameters: Option<String>,
    pub error_class: Option<String>,
    pub error_summary: Option<String>,
    pub instance_id: Option<String>,
    pub runs_today_at_admission: Option<i64>,
    pub runs_month_at_admission: Option<i64>,
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_id: Option<String>,
    /// On a run's end: what BigQuery billed for its step jobs, summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_billed: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub log_id: String,
    pub run_id: String,
    pub org_slug: String,
    pub pipeline_id: String,
    pub step_id: String,
    pub attempt: i64,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub rows_affected: Option<i64>,
    pub bytes_processed: Option<i64>,
    /// What BigQuery billed for the attempt's jobs (`totalBytesBilled`, summed).
    pub bytes_billed: Option<i64>,
    /// Slot time of the attempt's jobs (`totalSlotMs`, summed).
    pub slot_ms: Option<i64>,
    pub error_summary: Option<String>,
}

/// One row of `run_heartbeats` (sent by the executor's lease, never queued behind logs).
#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub run_id: String,
    pub org_slug: String,
    pub instance_id: String,
    pub heartbeat_at: String,
}

/// Told of each row once BigQuery has it: its org and its run (see [`RunLog::on_written`]).
pub type Written = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// One table's queue of rows, written by its own flushes: a row of one table never waits
/// behind another table's insert (a PENDING event or a run's end behind step logs).
struct Lane {
    table: &'static str,
    queued: Mutex<Queued>,
    /// One flush of this table at a time, so its rows are written in the order they were queued.
    flushing: tokio::sync::Mutex<()>,
    /// Who is told of each row written: set on the run events' lane by [`RunLog::on_written`]
    /// (never on the step rows').
    written: Mutex<Option<Written>>,
}

#[derive(Default)]
struct Queued {
    rows: Vec<(String, Value)>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

pub struct RunLog {
    warehouse: Warehouse,
    events: Lane,
    steps: Lane,
    wake: Notify,
    interval: Duration,
    /// Who is told of each run event (see [`RunLog::observe`]).
    observer: Mutex<Option<tokio::sync::mpsc::UnboundedSender<RunEvent>>>,
}

fn row<T: Serialize>(id: String, value: &T) -> (String, Value) {
    (id, serde_json::to_value(value).expect("log rows serialize"))
}

/// Puts failed rows back in front of what was queued since, bounded by [`MAX_BUFFERED`].
fn requeue(dst: &mut Vec<(String, Value)>, failed: Vec<(String, Value)>) {
    let mut merged = failed;
    merged.append(dst);
    if merged.len() > MAX_BUFFERED {
        let drop = merged.len() - MAX_BUFFERED;
        tracing::error!(dropped = drop, "run log buffer full: oldest rows dropped");
        merged.drain(..drop);
    }
    *dst = merged;
}

impl Lane {
    fn new(table: &'static str) -> Self {
        Self {
            table,
            queued: Mutex::new(Queued::default()),
            flushing: tokio::sync::Mutex::new(()),
            written: Mutex::new(None),
        }
    }

    /// Tells the `written` hook of each row BigQuery accepted, before any waiter learns it.
    fn tell_written(&self, rows: &[(String, Value)]) {
        let Some(written) = self.written.lock().expect("run log lock").clone() else {
            return;
        };
        for (_, row) in rows {
            if let (Some(org), Some(run_id)) = (row["org_slug"].as_str(), row["run_id"].as_str()) {
                written(org, run_id);
            }
        }
    }

    /// Queues rows (and a waiter); `true` when a batch is full.
    fn push(
        &self,
        rows: impl IntoIterator<Item = (String, Value)>,
        waiter: Option<oneshot::Sender<Result<(), String>>>,
    ) -> bool {
        let mut q = self.queued.lock().expect("run log lock");
        q.rows.extend(rows);
        q.waiters.extend(waiter);
        q.rows.len() >= MAX_BATCH
    }

    async fn flush(
        &self,
        warehouse: &Warehouse,
        first: Option<&Lane>,
    ) -> Result<(), WarehouseError> {
        let guard = self.flushing.lock().await;
        self.flush_holding(warehouse, guard, first).await
    }

    /// Writes everything queued in batches of 500; rows that fail stay queued for the next
    /// flush, and every waiter taken learns the outcome. With `first`, that lane's rows queued
    /// until now are written before any of this lane's (and none of this lane's when they fail).
    async fn flush_holding(
        &self,
        warehouse: &Warehouse,
        _one_at_a_time: tokio::sync::MutexGuard<'_, ()>,
        first: Option<&Lane>,
    ) -> Result<(), WarehouseError> {
        let taken = std::mem::take(&mut *self.queued.lock().expect("run log lock"));
        if taken.rows.is_empty() && taken.waiters.is_empty() {
            return Ok(());
        }
        if let Some(first) = first {
            // Taken after ours: every row of `first` queued before one of ours is in it.
            if let Err(e) = Box::pin(first.flush(warehouse, None)).await {
                let message = e.to_string();
                for waiter in taken.waiters {
                    let _ = waiter.send(Err(message.clone()));
                }
                requeue(
                    &mut self.queued.lock().expect("run log lock").rows,
                    taken.rows,
                );
                return Err(e);
            }
        }
        let meta = warehouse.meta_dataset().clone();
        let mut failed = Vec::new();
        let mut first_error = None;
        for chunk in taken.rows.chunks(MAX_BATCH) {
            match warehouse.insert_rows(&meta, self.table, chunk).await {
                Ok(()) => self.tell_written(chunk),
                Err(e) => {
                    tracing::error!(table = self.table, rows = chunk.len(), error = %e, "run log flush failed");
                    failed.extend_from_slice(chunk);
                    first_error.get_or_insert(e);
                }
            }
        }
        let outcome = first_error.as_ref().map(|e| e.to_string());
        for waiter in taken.waiters {
            let _ = waiter.send(match &outcome {
                None => Ok(()),
                Some(e) => Err(e.clone()),
            });
        }
        if !failed.is_empty() {
            requeue(&mut self.queued.lock().expect("run log lock").rows, failed);
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl RunLog {
    pub fn new(warehouse: Warehouse, interval: Duration) -> Self {
        Self {
            warehouse,
            events: Lane::new("pipeline_run_events"),
            steps: Lane::new("step_logs"),
            wake: Notify::new(),
            interval,
            observer: Mutex::new(None),
        }
    }

    /// Sets who is told, synchronously, of the org and run of each run event as soon as
    /// BigQuery has it, before the writer waiting for it goes on (the live read model reads
    /// such a run again, so this instance's readers see its runs' states at once). Step rows
    /// are not told: a run's step attempts show within a poll of the live model, and every
    /// attempt recorded before a run's state is readable with that state (they are flushed
    /// first).
    pub fn on_written(&self, written: Written) {
        *self.events.written.lock().expect("run log lock") = Some(written);
    }

    /// Every run event from now on, in the order written: a waited-for event once its write
    /// returned, another as it is queued (the alerts follow run ends this way).
    pub fn observe(&self) -> tokio::sync::mpsc::UnboundedReceiver<RunEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.observer.lock().expect("run log observer") = Some(tx);
        rx
    }

    /// Tells the observer of an event that is not written: a run still running past its
    /// deadline (`DEADLINE_PASSED`), for the alerts.
    pub fn announce(&self, event: RunEvent) {
        self.tell(event);
    }

    fn tell(&self, event: RunEvent) {
        if let Some(observer) = self.observer.lock().expect("run log observer").as_ref() {
            let _ = observer.send(event);
        }
    }

    /// Wakes the flusher when a row should not wait for the next interval.
    fn woken(&self, flush_now: bool) {
        if flush_now {
            self.wake.notify_one();
        }
    }

    /// Queues a run event for the next flush (a run's PENDING event and its end are written
    /// with [`RunLog::event_and_wait`], at once).
    pub fn event(&self, event: RunEvent) {
        let full = self
            .events
            .push([row(event.event_id.clone(), &event)], None);
        self.woken(full);
        self.tell(event);
    }

    /// Queues a step attempt's row. An attempt's end is flushed at once (after [`LINGER`], which
    /// lets the next step's start ride with it): it is what watchers of the run wait for, and
    /// rows cost the same whatever the number of `insertAll` requests that carry them. A
    /// start waits for the next flush (`RUN_LOG_FLUSH_MS`).
    pub fn step(&self, log: StepLog) {
        let ended = log.status != "RUNNING";
        let full = self.steps.push([row(log.log_id.clone(), &log)], None);
        self.woken(full || ended);
    }

    /// Queues `event` and returns once a flush has written it (or failed to). Many callers
    /// waiting at once share flushes: one that finds its row already written by another's
    /// flush returns without flushing again.
    pub async fn event_and_wait(&self, event: RunEvent) -> Result<(), WarehouseError> {
        let written = self.write_and_wait(&event).await;
        self.tell(event);
        written
    }

    async fn write_and_wait(&self, event: &RunEvent) -> Result<(), WarehouseError> {
        let (tx, mut rx) = oneshot::channel();
        let full = self
            .events
            .push([row(event.event_id.clone(), event)], Some(tx));
        self.woken(full);
        tokio::time::sleep(LINGER).await;
        let outcome = tokio::select! {
            biased;
            outcome = &mut rx => outcome.map_err(|_| ()),
            guard = self.events.flushing.lock() => match rx.try_recv() {
                Ok(outcome) => Ok(outcome),
                Err(oneshot::error::TryRecvError::Closed) => Err(()),
                Err(oneshot::error::TryRecvError::Empty) => {
                    // Nobody has taken our row yet: write everything queued.
                    let _ = self
                        .events
                        .flush_holding(&self.warehouse, guard, Some(&self.steps))
                        .await;
                    rx.await.map_err(|_| ())
                }
            },
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WarehouseError::Transport(e)),
            Err(()) => Ok(()), // the flush that took it answered before we listened
        }
    }

    /// Writes everything queued: one `insertAll` per table with rows (in batches of 500), the
    /// tables side by side. Rows that fail stay queued for the next flush.
    pub async fn flush(&self) -> Result<(), WarehouseError> {
        let (events, steps) = tokio::join!(
            self.events.flush(&self.warehouse, Some(&self.steps)),
            self.steps.flush(&self.warehouse, None),
        );
        events.and(steps)
    }

    /// Flushes every `interval`, or sooner when a batch fills.
    pub async fn run_flusher(&self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.wake.notified() => tokio::time::sleep(LINGER).await,
            }
            let _ = self.flush().await;
        }
    }
}
