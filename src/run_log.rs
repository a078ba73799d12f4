//! Run and step logs: append-only rows in `pipeline_run_events`, `step_logs` and
//! `run_heartbeats`, written by batched `insertAll` (a buffer flushed by size and time), never
//! one request per row and never UPDATE. A writer that must know its row landed (the trigger
//! path's PENDING event) waits for the next flush, which carries every row queued with it.

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

#[derive(Debug, Clone, Serialize)]
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
    pub error_summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub run_id: String,
    pub org_slug: String,
    pub instance_id: String,
    pub heartbeat_at: String,
}

#[derive(Default)]
struct Buffers {
    events: Vec<(String, Value)>,
    steps: Vec<(String, Value)>,
    heartbeats: Vec<(String, Value)>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

impl Buffers {
    fn len(&self) -> usize {
        self.events.len() + self.steps.len() + self.heartbeats.len()
    }
}

pub struct RunLog {
    warehouse: Warehouse,
    buffers: Mutex<Buffers>,
    wake: Notify,
    interval: Duration,
    /// One flush at a time, so rows are written in the order they were queued.
    flushing: tokio::sync::Mutex<()>,
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

impl RunLog {
    pub fn new(warehouse: Warehouse, interval: Duration) -> Self {
        Self {
            warehouse,
            buffers: Mutex::new(Buffers::default()),
            wake: Notify::new(),
            interval,
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn push(&self, f: impl FnOnce(&mut Buffers)) {
        let full = {
            let mut b = self.buffers.lock().expect("run log lock");
            f(&mut b);
            b.len() >= MAX_BATCH
        };
        if full {
            self.wake.notify_one();
        }
    }

    pub fn event(&self, event: RunEvent) {
        self.push(|b| b.events.push(row(event.event_id.clone(), &event)));
    }

    pub fn step(&self, log: StepLog) {
        self.push(|b| b.steps.push(row(log.log_id.clone(), &log)));
    }

    pub fn heartbeats(&self, beats: Vec<Heartbeat>) {
        self.push(|b| {
            for h in beats {
                let id = format!("{}:{}", h.run_id, h.heartbeat_at);
                b.heartbeats.push(row(id, &h));
            }
        });
    }

    /// Queues `event` and returns once a flush has written it (or failed to). Many callers
    /// waiting at once share flushes: one that finds its row already written by another's
    /// flush returns without flushing again.
    pub async fn event_and_wait(&self, event: RunEvent) -> Result<(), WarehouseError> {
        let (tx, mut rx) = oneshot::channel();
        self.push(|b| {
            b.events.push(row(event.event_id.clone(), &event));
            b.waiters.push(tx);
        });
        tokio::time::sleep(LINGER).await;
        let outcome = tokio::select! {
            biased;
            outcome = &mut rx => outcome.map_err(|_| ()),
            guard = self.flushing.lock() => match rx.try_recv() {
                Ok(outcome) => Ok(outcome),
                Err(oneshot::error::TryRecvError::Closed) => Err(()),
                Err(oneshot::error::TryRecvError::Empty) => {
                    // Nobody has taken our row yet: write everything queued.
                    let _ = self.flush_holding(guard).await;
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

    /// Writes everything queued: one `insertAll` per table with rows (in batches of 500).
    /// Rows that fail stay queued for the next flush.
    pub async fn flush(&self) -> Result<(), WarehouseError> {
        let guard = self.flushing.lock().await;
        self.flush_holding(guard).await
    }

    async fn flush_holding(
        &self,
        _one_at_a_time: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<(), WarehouseError> {
        let taken = std::mem::take(&mut *self.buffers.lock().expect("run log lock"));
        if taken.len() == 0 && taken.waiters.is_empty() {
            return Ok(());
        }
        let meta = self.warehouse.meta_dataset().clone();
        let mut failed = Buffers::default();
        let mut first_error = None;
        for (table, rows, keep) in [
            ("pipeline_run_events", taken.events, 0),
            ("step_logs", taken.steps, 1),
            ("run_heartbeats", taken.heartbeats, 2),
        ] {
            for chunk in rows.chunks(MAX_BATCH) {
                if let Err(e) = self.warehouse.insert_rows(&meta, table, chunk).await {
                    tracing::error!(table, rows = chunk.len(), error = %e, "run log flush failed");
                    let target = match keep {
                        0 => &mut failed.events,
                        1 => &mut failed.steps,
                        _ => &mut failed.heartbeats,
                    };
                    target.extend_from_slice(chunk);
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
        if failed.len() > 0 {
            let mut guard = self.buffers.lock().expect("run log lock");
            let b = &mut *guard;
            requeue(&mut b.events, failed.events);
            requeue(&mut b.steps, failed.steps);
            requeue(&mut b.heartbeats, failed.heartbeats);
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Flushes every `interval`, or sooner when a batch fills.
    pub async fn run_flusher(&self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.wake.notified() => {}
            }
            let _ = self.flush().await;
        }
    }
}
