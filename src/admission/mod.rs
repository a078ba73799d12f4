//! Admission: the one writer of `org_quota_state` on this instance.
//!
//! BigQuery runs at most 2 mutating DML statements per table at once (20 more wait, then they
//! fail), each taking about a second, and every org shares the quota table. So no request
//! writes it directly: reservations (triggers) and releases (run ends, the reaper, shutdown,
//! cancel) are handed to the [`Admission`] coordinator, which group-commits them. Whatever
//! arrived while its statement was in flight goes together into the next one (no timer: a batch
//! is whatever waited). One batch costs one UPDATE (`sql/quota/admit_batch.sql`) and at most one
//! bounded read of what it decided (`sql/quota/batch_outcome.sql`); the read is skipped when
//! the UPDATE's row count already says every run was admitted.
//!
//! Exactness across instances comes from the statement itself: it admits from the row as it is
//! when the statement runs, in arrival order per org, as many runs as fit all three limits, and
//! each admitted id is marked with the batch's id so a batch reads back its own decisions. A
//! retried batch (a lost answer) admits nothing twice, and releasing an id that is not active
//! changes nothing, so neither can double count.

mod batch;
mod coordinator;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::clock::SharedClock;
use crate::domain::OrgSlug;
use crate::metrics::Metrics;
use crate::settings::AdmissionSettings;
use crate::warehouse::{Param, Statement, Warehouse, WarehouseError};

/// The limit that refused a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Daily,
    Monthly,
    Concurrent,
    /// The run asked to wait, and the org's queue is full.
    QueueFull,
    /// The bytes the org's runs billed today reached its daily bytes budget.
    BytesDaily,
    /// The bytes the org's runs billed this month reached its monthly bytes budget.
    BytesMonthly,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Daily => "daily",
            Limit::Monthly => "monthly",
            Limit::Concurrent => "concurrent",
            Limit::QueueFull => "queue_full",
            Limit::BytesDaily => "bytes_daily",
            Limit::BytesMonthly => "bytes_monthly",
        }
    }
}

/// What a run does when its org's concurrency is full: be refused (429), or wait in the org's
/// queue (admitted in arrival order as slots free).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum WhenBusy {
    #[default]
    Refuse,
    Queue,
}

/// What a batch decided for one reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The slot is ours now.
    Admitted,
    /// This run id already held a slot before this request (another request for the same run).
    AlreadyActive,
    /// A limit is reached; retry after this many seconds.
    Refused { limit: Limit, retry_after_secs: u64 },
    /// The org has no quota row (onboarding incomplete).
    NoQuota,
    /// Waiting in the org's queue, at this place (1 = next).
    Queued { position: usize },
    /// A tick (or backfill day) that was fired before, by this or another instance.
    AlreadyFired,
}

/// A schedule's tick or a backfill's day: fired at most once, whoever sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// `schedule:{pipeline}/{name}` or `backfill:{id}`.
    pub key: String,
    /// The logical time, RFC 3339 UTC to the second.
    pub logical: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    /// Too many reservations are waiting for a batch on this instance.
    #[error("the admission queue is full")]
    QueueFull,
    /// The reservation's batch did not answer in time (its slot, if taken, is released).
    #[error("no admission decision within the deadline")]
    TimedOut,
    /// The coordinator has stopped (shutdown).
    #[error("the admission coordinator has stopped")]
    Stopped,
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

impl AdmissionError {
    /// Every admission failure but a non-capacity BigQuery error is the platform being busy or
    /// away: 503 with Retry-After, nothing counted.
    pub fn is_unavailable(&self) -> bool {
        match self {
            AdmissionError::Warehouse(e) => e.is_unavailable(),
            _ => true,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, AdmissionError>>;

/// One request to the coordinator.
enum Op {
    Reserve {
        org: OrgSlug,
        run_id: String,
        when_busy: WhenBusy,
        tick: Option<Tick>,
        reply: Reply<Reservation>,
    },
    /// Look at the org's queue: admit what fits (a queue beside free slots, after a restart or
    /// a raised limit).
    Drain { org: OrgSlug },
    Release {
        org: OrgSlug,
        run_id: String,
        /// Also gives back the daily and monthly count: the run never started (its trigger was
        /// not answered 2xx, or it ended before it was started).
        refund: bool,
        /// Only the admission by this batch: the clean-up of one reservation never frees a
        /// later admission of the same run id. `None`: whatever slot the id holds (the run's
        /// own end).
        batch: Option<String>,
        /// Bytes BigQuery billed for the run's jobs: added to the org's budget usage if the
        /// release frees the run's slot (so a repeated release never counts them twice).
        billed: i64,
        /// `None` for the coordinator's own clean-up releases (retried until they land).
        reply: Option<Reply<()>>,
    },
    /// Any other write to the quota table (onboarding's row, an admin's limits): run alone,
    /// between batches, so the instance never has two statements in flight on the table.
    Write {
        statement: &'static Statement,
        params: Vec<Param>,
        reply: Reply<u64>,
    },
}

/// How long after its batch an admission may still be launched.
fn launch_window(settings: &AdmissionSettings) -> chrono::Duration {
    chrono::Duration::from_std(settings.launch_within).unwrap_or(chrono::Duration::MAX)
}

/// The handle every caller uses; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    tx: mpsc::UnboundedSender<Op>,
    /// Reservations sent and not yet taken into a batch.
    waiting: Arc<AtomicUsize>,
    settings: AdmissionSettings,
    metrics: Arc<Metrics>,
    from_queue: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<FromQueue>>>>,
    hurry: Arc<std::sync::atomic::AtomicBool>,
}

/// A run a batch of this instance took out of its org's queue: admitted (its slot is held for
/// it) or refused (its org's bytes budget is spent: it never runs).
#[derive(Debug, Clone)]
pub struct FromQueue {
    pub org: OrgSlug,
    pub run_id: String,
    /// The time of the batch that took it: an admitted run's slot is dated from it.
    pub batch_at: chrono::DateTime<chrono::Utc>,
    /// `Some` when it was refused, with the limit that refused it.
    pub refused: Option<Limit>,
}

impl Admission {
    /// Starts this instance's coordinator.
    pub fn start(
        warehouse: Warehouse,
        clock: SharedClock,
        settings: AdmissionSettings,
        metrics: Arc<Metrics>,
        concurrent_retry_after_secs: u64,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (from_queue_tx, from_queue_rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let hurry = Arc::new(std::sync::atomic::AtomicBool::new(false));
        coordinator::spawn(coordinator::Coordinator {
            answerer: coordinator::Answerer {
                warehouse,
                requeue: tx.downgrade(),
                concurrent_retry_after_secs,
                from_queue: from_queue_tx,
                clock: clock.clone(),
                launch_within: launch_window(&settings),
                failed_in_a_row: Arc::new(std::sync::atomic::AtomicU32::new(0)),
                read_back_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            },
            clock,
            max_batch: settings.max_batch,
            waiting: waiting.clone(),
            hurry: hurry.clone(),
            metrics: metrics.clone(),
            rx,
        });
        Self {
            tx,
            waiting,
            settings,
            metrics,
            from_queue: Arc::new(std::sync::Mutex::new(Some(from_queue_rx))),
            hurry,
        }
    }

    /// Whether an admission decided by a batch at `batch_at` is too late to launch at `now`:
    /// its PENDING insert could land after a lease of the batch, when another instance's
    /// reaper may free the slot (see `AdmissionSettings::launch_within`).
    pub fn too_late_to_launch(
        &self,
        batch_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        now - batch_at > self.launch_within()
    }

    fn launch_within(&self) -> chrono::Duration {
        launch_window(&self.settings)
    }

    /// How long after its launch a run's PENDING event may land and still count as started:
    /// launched within [`AdmissionSettings::launch_within`] of its batch, it then lands within
    /// a lease of the batch, before any reaper may free its slot. Later, the run is treated as
    /// never started.
    pub fn pending_within(&self, lease: Duration) -> Duration {
        lease.saturating_sub(self.settings.launch_within)
    }

    /// Shutdown: from now on a release is sent at once, without waiting for a reservation to
    /// ride with it.
    pub fn hurry(&self) {
        self.hurry.store(true, Ordering::SeqCst);
    }

    /// The runs this instance's batches admit from the queue: whoever takes this (the
    /// executor's queue starter) owns their slots. Once only.
    pub fn take_admitted_from_queue(&self) -> Option<mpsc::UnboundedReceiver<FromQueue>> {
        self.from_queue.lock().expect("from queue").take()
    }

    /// Asks the next batch to admit what fits from `org`'s queue (no answer: the runs it
    /// admits arrive through [`Admission::take_admitted_from_queue`]).
    pub fn drain(&self, org: &OrgSlug) {
        let _ = self.tx.send(Op::Drain { org: org.clone() });
    }

    /// Takes `run_id` out of `org`'s queue (one statement, between batches): `true` when it
    /// was waiting there, `false` when it was not (admitted meanwhile, or never queued).
    pub async fn dequeue(&self, org: &OrgSlug, run_id: &str) -> Result<bool, AdmissionError> {
        let removed = self
            .write(
                &crate::warehouse::sql::QUOTA_DEQUEUE,
                vec![
                    Param::string("org_slug", org.as_str()),
                    Param::string("run_id", run_id),
                    Param::timestamp("now", chrono::Utc::now()),
                ],
            )
            .await?;
        Ok(removed > 0)
    }

    /// Asks for a slot for `run_id`, and waits for the batch that decides it.
    pub async fn reserve(
        &self,
        org: &OrgSlug,
        run_id: &str,
        when_busy: WhenBusy,
    ) -> Result<Reservation, AdmissionError> {
        self.reserve_tick(org, run_id, when_busy, None).await
    }

    /// [`Admission::reserve`] for a tick: decided only if no batch fired it before.
    pub async fn reserve_tick(
        &self,
        org: &OrgSlug,
        run_id: &str,
        when_busy: WhenBusy,
        tick: Option<Tick>,
    ) -> Result<Reservation, AdmissionError> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.settings.queue_max {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.metrics.admission_refused("queue_full");
            return Err(AdmissionError::QueueFull);
        }
        let (reply, answer) = oneshot::channel();
        let op = Op::Reserve {
            org: org.clone(),
            run_id: run_id.to_string(),
            when_busy,
            tick,
            reply,
        };
        if self.tx.send(op).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(AdmissionError::Stopped);
        }
        // On timeout the receiver is dropped: the coordinator sees that when it answers and
        // releases the slot if the batch had admitted the run.
        let outcome = self.within_deadline(answer).await;
        if matches!(outcome, Err(AdmissionError::TimedOut)) {
            self.metrics.admission_refused("timeout");
        }
        outcome
    }

    /// Frees `run_id`'s slot (a no-op when it holds none), and waits for the batch that does it.
    /// With `refund`, the run's daily and monthly count is given back too (a run that never
    /// started); a refund of an id that holds no slot changes nothing, so it may be repeated.
    /// `billed` (the bytes the run's jobs billed) is added to the org's bytes usage by the
    /// same statement, only when it frees the slot.
    pub async fn release(
        &self,
        org: &OrgSlug,
        run_id: &str,
        refund: bool,
        billed: i64,
    ) -> Result<(), AdmissionError> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Release {
            org: org.clone(),
            run_id: run_id.to_string(),
            refund,
            batch: None,
            billed,
            reply: Some(reply),
        };
        self.tx.send(op).map_err(|_| AdmissionError::Stopped)?;
        answer.await.map_err(|_| AdmissionError::Stopped)?
    }

    /// Runs another DML statement on the quota table through the coordinator (alone, between
    /// batches); returns `numDmlAffectedRows`. Waits at most `ADMISSION_TIMEOUT_SECS` (the
    /// statement may still land: callers send idempotent writes).
    pub async fn write(
        &self,
        statement: &'static Statement,
        params: Vec<Param>,
    ) -> Result<u64, AdmissionError> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Write {
            statement,
            params,
            reply,
        };
        self.tx.send(op).map_err(|_| AdmissionError::Stopped)?;
        self.within_deadline(answer).await
    }

    /// The coordinator's answer, or `TimedOut` after `ADMISSION_TIMEOUT_SECS`.
    async fn within_deadline<T>(
        &self,
        answer: oneshot::Receiver<Result<T, AdmissionError>>,
    ) -> Result<T, AdmissionError> {
        match tokio::time::timeout(self.settings.timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(AdmissionError::Stopped),
            Err(_) => Err(AdmissionError::TimedOut),
        }
    }

    /// Reservations waiting for a batch on this instance.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}
