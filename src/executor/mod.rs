//! The executor: admits a run only within the org's quotas, runs its steps as a DAG in a tokio
//! task, logs every state change and step attempt, and never leaks a concurrency slot.
//!
//! Trigger path (nothing expensive before the quota check; nothing counted for a refusal):
//! pipeline exists → parameters valid → (Idempotency-Key: one bounded read) → reservation (a
//! place in the admission coordinator's next batch: one UPDATE shared by every trigger and
//! release that waited with it) → PENDING event (one batched insertAll) → 202.

mod dag;
mod from_queue;
mod guard;
mod lease;
mod reaper;
mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, AdmissionError, Limit, Reservation, Tick, WhenBusy};
use crate::clock::SharedClock;
use crate::definitions::{ParamError, RunParams};
use crate::domain::OrgSlug;
use crate::integrations::Registry;
use crate::kms::SharedKms;
use crate::metrics::Metrics;
use crate::pipelines::Catalog;
use crate::run_log::{RunEvent, RunLog};
use crate::settings::ExecutorSettings;
use crate::warehouse::{Warehouse, WarehouseError};

pub use guard::{Releaser, SlotGuard};
use lease::{ActiveRuns, Stop};

/// After the grace period: how long cancelled runs get to write their end, beside
/// [`SHUTDOWN_RELEASES`] (one budget: the releases get what the ends leave).
const SHUTDOWN_RUN_ENDS: Duration = Duration::from_secs(2);
/// How long shutdown waits for slot releases.
const SHUTDOWN_RELEASES: Duration = Duration::from_secs(2);
/// Each of shutdown's log flushes (first and last) at most.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Waiting in the org's queue for a slot.
    Queued,
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    Orphaned,
    /// Never admitted: a quota refused it (a scheduled tick, a run that asked to wait).
    Refused,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Pending => "PENDING",
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "CANCELLED",
            RunStatus::TimedOut => "TIMED_OUT",
            RunStatus::Orphaned => "ORPHANED",
            RunStatus::Refused => "REFUSED",
        }
    }

    pub fn is_terminal(s: &str) -> bool {
        !matches!(s, "QUEUED" | "PENDING" | "RUNNING")
    }

    /// A run that ended without succeeding: it may be re-run from its failed steps.
    pub fn can_rerun(s: &str) -> bool {
        matches!(s, "FAILED" | "CANCELLED" | "TIMED_OUT" | "ORPHANED")
    }

    fn seq(self) -> i64 {
        match self {
            RunStatus::Queued => -1,
            RunStatus::Pending => 0,
            RunStatus::Running => 1,
            RunStatus::Orphaned => 9,
            _ => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no such pipeline")]
    NotFound,
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("{} limit reached", .limit.as_str())]
    Quota { limit: Limit, retry_after_secs: u64 },
    #[error("the org has no quota row")]
    NoQuota,
    /// The Idempotency-Key already started a run of another pipeline or with other parameters.
    #[error("the Idempotency-Key was used for another request")]
    IdempotencyKeyReused,
    /// The key's run holds a slot but is not recorded yet: another request is starting it.
    #[error("a request with this Idempotency-Key is in progress")]
    IdempotencyKeyInProgress,
    #[error("shutting down")]
    Draining,
    /// The tick was fired before (by this or another instance).
    #[error("the tick was fired before")]
    AlreadyFired,
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Triggered {
    pub run_id: String,
    pub status: RunStatus,
    /// The Idempotency-Key had already started this run.
    pub replayed: bool,
    /// A queued run's place in its org's queue when it was queued (1 = next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
}

/// Who triggered a run, and how.
#[derive(Debug, Clone, Default)]
pub struct TriggerInfo {
    /// `api`, `rerun`, `schedule` or `backfill`.
    pub trigger: &'static str,
    pub triggered_by: String,
    pub idempotency_key: Option<String>,
    /// A re-run: the run it re-runs, and the steps that succeeded there (not run again).
    pub rerun_of: Option<String>,
    pub reuse_steps: Vec<String>,
    /// Wait in the org's queue when its concurrency is full, or be refused.
    pub when_busy: WhenBusy,
    /// A run id chosen by the caller (a schedule's tick, a backfill's day); random otherwise.
    pub run_id: Option<String>,
    /// `pipeline_id/schedule` of a scheduled run.
    pub schedule_id: Option<String>,
    /// A scheduled run's tick, a backfill child's day.
    pub logical_time: Option<DateTime<Utc>>,
    pub backfill_id: Option<String>,
    /// A schedule's tick or a backfill's day: admitted only if never fired before.
    pub tick: Option<Tick>,
}

/// What ties a run to its schedule's tick or its backfill's day, for its alerts.
#[derive(Clone, Default)]
pub(crate) struct Links {
    schedule_id: Option<String>,
    logical_time: Option<String>,
    backfill_id: Option<String>,
}

impl Links {
    pub(crate) fn of(info: &TriggerInfo) -> Self {
        Self {
            schedule_id: info.schedule_id.clone(),
            logical_time: info.logical_time.map(ts),
            backfill_id: info.backfill_id.clone(),
        }
    }
}

/// What steps may reach outside BigQuery: the KMS, providers' APIs.
pub struct Outside {
    pub kms: SharedKms,
    pub http: reqwest::Client,
    pub providers: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

/// A run's place in the active set, held by its task: dropped, it leaves the set. A task that
/// panicked never wrote the run's end, so the drop records it FAILED.
struct Registered {
    inner: Arc<Inner>,
    pipeline_id: String,
    org: OrgSlug,
    run_id: String,
    ended: bool,
}

impl Registered {
    fn new(inner: &Arc<Inner>, pipeline_id: &str, org: &OrgSlug, run_id: &str) -> Self {
        Self {
            inner: inner.clone(),
            pipeline_id: pipeline_id.to_string(),
            org: org.clone(),
            run_id: run_id.to_string(),
            ended: false,
        }
    }

    /// The run wrote its end.
    fn ended(mut self) {
        self.ended = true;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.ended {
            tracing::error!(run_id = %self.run_id, org = %self.org, "the run's task failed: recording it FAILED");
            let mut failed = self.inner.event(
                &self.pipeline_id,
                &self.org,
                &self.run_id,
                RunStatus::Failed,
            );
            failed.error_class = Some("internal".into());
            failed.error_summary = Some("the executor failed while running this run".into());
            self.inner.run_log.event(failed);
        }
        self.inner.runs.remove(&self.run_id);
    }
}

pub(crate) struct Inner {
    /// Bookkeeping (admission reads, run log, reaper, heartbeats): bounded by the API deadline.
    pub(crate) warehouse: Warehouse,
    /// What steps run their SQL with: bounded by the read timeout and the step timeouts only.
    pub(crate) steps_warehouse: Warehouse,
    pub(crate) kms: SharedKms,
    pub(crate) http: reqwest::Client,
    pub(crate) providers: Arc<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) clock: SharedClock,
    pub(crate) run_log: Arc<RunLog>,
    admission: Admission,
    releaser: Releaser,
    runs: ActiveRuns,
    pub(crate) instance_id: String,
    settings: ExecutorSettings,
    draining: AtomicBool,
    /// Wakes this instance's scheduler (a schedule enabled or a backfill started here).
    scheduler_wake: crate::cost::cadence::Wake,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// The error class of a run's end that says it never started (its PENDING event, if one lands,
/// notwithstanding): its count was given back. `sql/executor/stale_runs.sql` reads it.
pub(crate) const NEVER_STARTED: &str = "admission";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Executor {
    /// Builds the executor and starts its background work: the run-log flusher, the releaser,
    /// heartbeats and the reaper. `warehouse` carries the API deadline; `steps_warehouse` is
    /// what steps run their SQL with.
    pub fn start(
        warehouse: Warehouse,
        steps_warehouse: Warehouse,
        catalog: Arc<Catalog>,
        clock: SharedClock,
        settings: ExecutorSettings,
        admission: Admission,
        outside: Outside,
    ) -> Self {
        let run_log = Arc::new(RunLog::new(warehouse.clone(), settings.log_flush_interval));
        let releaser = Releaser::start(admission.clone());
        let from_queue = admission.take_admitted_from_queue();
        let inner = Arc::new(Inner {
            warehouse,
            steps_warehouse,
            kms: outside.kms,
            http: outside.http,
            providers: outside.providers,
            metrics: outside.metrics,
            catalog,
            clock,
            run_log: run_log.clone(),
            admission,
            releaser,
            runs: ActiveRuns::new(&settings),
            instance_id: format!("instance-{}", uuid::Uuid::new_v4().simple()),
            settings,
            draining: AtomicBool::new(false),
            scheduler_wake: crate::cost::cadence::Wake::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        let log = run_log.clone();
        let stop = inner.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = log.run_flusher() => {}
                _ = stop.cancelled() => {}
            }
        });
        let executor = Self { inner };
        lease::spawn_heartbeats(executor.inner.clone());
        reaper::spawn(executor.inner.clone());
        match from_queue {
            Some(admitted) => from_queue::spawn(executor.inner.clone(), admitted),
            None => tracing::error!("another executor owns this admission's queue"),
        }
        executor
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn run_log(&self) -> &RunLog {
        &self.inner.run_log
    }

    /// What wakes this instance's scheduler (handed to it at start-up).
    pub fn scheduler_wake(&self) -> crate::cost::cadence::Wake {
        self.inner.scheduler_wake.clone()
    }

    /// A schedule was enabled or a backfill started here: the scheduler looks now, even if it
    /// was idling.
    pub fn wake_scheduler(&self) {
        self.inner.scheduler_wake.wake();
    }

    pub fn releaser(&self) -> &Releaser {
        &self.inner.releaser
    }

    /// Runs executing on this instance.
    pub fn active_runs(&self) -> usize {
        self.inner.runs.len()
    }

    /// The clock runs are stamped with (the scheduler's too).
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Cancelled when the executor has shut down (background loops end with it).
    pub fn stopped(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Every run event the run log writes from now on (see [`RunLog::observe`]).
    pub fn observe_run_events(&self) -> tokio::sync::mpsc::UnboundedReceiver<RunEvent> {
        self.inner.run_log.observe()
    }

    pub async fn trigger(
        &self,
        org: &OrgSlug,
        pipeline_id: &str,
        parameters: &serde_json::Map<String, serde_json::Value>,
        info: TriggerInfo,
    ) -> Result<Triggered, TriggerError> {
        if self.is_draining() {
            return Err(TriggerError::Draining);
        }
        let pipeline = self
            .inner
            .catalog
            .get(pipeline_id)
            .ok_or(TriggerError::NotFound)?;
        let params = RunParams::validate(&pipeline.parameters, parameters)?;
        let now = self.inner.clock.now();

        let run_id = match (&info.idempotency_key, &info.run_id) {
            (Some(key), _) => {
                if let Some(replayed) =
                    replay::find(&self.inner, org, key, &pipeline.id, &params, now).await?
                {
                    return Ok(replayed);
                }
                replay::run_id_for(org, key)
            }
            (None, Some(id)) => id.clone(),
            (None, None) => uuid::Uuid::new_v4().to_string(),
        };

        // A run that may wait records its definition first: whichever instance admits it from
        // the queue starts it from this event.
        let may_wait = info.when_busy == WhenBusy::Queue;
        if may_wait {
            let mut queued = self.inner.start_event(
                &pipeline.id,
                org,
                &run_id,
                RunStatus::Queued,
                &params,
                &info,
                now,
            );
            if info.tick.is_some() {
                // Every instance that fires the tick writes the same row.
                queued.event_id = format!("{run_id}:queued");
            }
            self.inner.run_log.event_and_wait(queued).await?;
        }
        let asked = std::time::Instant::now();
        let reservation = self
            .inner
            .admission
            .reserve_tick(org, &run_id, info.when_busy, info.tick.clone())
            .await;
        tracing::debug!(
            run_id,
            waited_ms = asked.elapsed().as_millis() as u64,
            "admission answered"
        );
        let reservation = match reservation {
            Ok(r) => r,
            Err(e) => {
                if may_wait && info.tick.is_none() {
                    // Its batch released it from the queue too (a lost answer frees what it
                    // may have taken).
                    self.inner.refused(
                        &pipeline.id,
                        org,
                        &run_id,
                        "unavailable",
                        "admission did not answer; the run was not queued",
                    );
                }
                return Err(e.into());
            }
        };
        match reservation {
            Reservation::Admitted => {}
            Reservation::AlreadyFired => return Err(TriggerError::AlreadyFired),
            Reservation::Queued { position } => {
                // This instance's batch queued it: its alerts watch how long it waits.
                self.inner.run_log.announce(self.inner.announcement(
                    (&pipeline.id, org, &run_id),
                    &Links::of(&info),
                    crate::notifications::ENQUEUED,
                    None,
                ));
                return Ok(Triggered {
                    run_id,
                    status: RunStatus::Queued,
                    replayed: false,
                    queue_position: Some(position),
                });
            }
            // A fresh random run id can only be ours (a lost answer on our batch reads back as
            // Admitted through the batch's mark; this arm stays as the safe reading).
            Reservation::AlreadyActive
                if info.idempotency_key.is_none() && info.run_id.is_none() => {}
            // The run id is a schedule's tick or a backfill's day another instance started.
            Reservation::AlreadyActive if info.idempotency_key.is_none() => {
                return Ok(Triggered {
                    run_id,
                    status: RunStatus::Pending,
                    replayed: true,
                    queue_position: None,
                });
            }
            // With an Idempotency-Key, the key's run holds a slot: replay it once its PENDING
            // event is written; until then another request is starting it (or its start failed
            // and its slot is being released): never answer for a run that may not exist.
            Reservation::AlreadyActive => {
                let key = info.idempotency_key.as_deref().unwrap_or_default();
                // The request that holds it writes its PENDING event right after admission.
                for wait in [Duration::ZERO, replay::RECORD_WAIT] {
                    tokio::time::sleep(wait).await;
                    if let Some(replayed) =
                        replay::find(&self.inner, org, key, &pipeline.id, &params, now).await?
                    {
                        return Ok(replayed);
                    }
                }
                return Err(TriggerError::IdempotencyKeyInProgress);
            }
            Reservation::Refused {
                limit,
                retry_after_secs,
            } => {
                self.inner.metrics.quota_rejected(limit.as_str());
                if may_wait || info.tick.is_some() {
                    // Recorded with what it would have run (a refused tick is not dropped).
                    let end = self.inner.start_event(
                        &pipeline.id,
                        org,
                        &run_id,
                        RunStatus::Refused,
                        &params,
                        &info,
                        self.inner.clock.now(),
                    );
                    self.inner.refused_by(end, limit);
                }
                return Err(TriggerError::Quota {
                    limit,
                    retry_after_secs,
                });
            }
            Reservation::NoQuota => return Err(TriggerError::NoQuota),
        }
        // Stamped when it is launched, not when the trigger arrived: the run's lease starts at
        // its PENDING event, so time spent waiting for the decision does not eat into it (the
        // reaper dates the slot from that event once it lands, and from its batch before).
        let launched = std::time::Instant::now();
        self.inner
            .launch(org, &run_id, pipeline, params, info, self.inner.clock.now())
            .await?;
        tracing::debug!(
            run_id,
            waited_ms = launched.elapsed().as_millis() as u64,
            "launched (its PENDING event written)"
        );
        Ok(Triggered {
            run_id,
            status: RunStatus::Pending,
            replayed: false,
            queue_position: None,
        })
    }

    /// Records a queued run CANCELLED by `actor`, then takes it out of its org's queue: `false`
    /// when it was no longer waiting (admitted meanwhile: cancel it as a running run too).
    ///
    /// The end is written first, so the outcome never depends on the dequeue's answer: a run the
    /// dequeue missed (its answer lost and its retry finding nothing, or admitted meanwhile) is
    /// found ended by the queue starter when admitted, and freed with its count given back
    /// without starting.
    pub async fn cancel_queued(
        &self,
        org: &OrgSlug,
        run_id: &str,
        pipeline_id: &str,
        actor: &str,
    ) -> Result<bool, TriggerError> {
        let mut end = self
            .inner
            .event(pipeline_id, org, run_id, RunStatus::Cancelled);
        end.error_class = Some("cancelled".into());
        end.error_summary = Some(format!("run cancelled by {actor} while queued"));
        self.inner.run_log.event_and_wait(end).await?;
        match self.inner.admission.dequeue(org, run_id).await {
            Ok(removed) => Ok(removed),
            // Cancelled all the same: if it is still queued, its admission frees it.
            Err(e) => {
                tracing::warn!(org = %org, run_id, error = %e, "dequeueing a cancelled run failed; its admission will free it");
                Ok(true)
            }
        }
    }

    /// Cooperative cancellation of a run executing on this instance, by `actor` (recorded in
    /// the run's end). `false` when it is not running here.
    pub fn cancel(&self, org: &OrgSlug, run_id: &str, actor: &str) -> bool {
        let note = format!("run cancelled by {actor}");
        self.inner
            .runs
            .stop(run_id, Some(org), Stop::Cancelled, Some(note))
    }

    /// Graceful shutdown, inside a platform's kill window (Cloud Run: SIGKILL 10 s after
    /// SIGTERM): refuse new runs and flush what is queued at once (nothing already known is
    /// lost to an early SIGKILL), let running ones finish within the grace period, stop the
    /// rest, then at most 4 s for their ends and the slot releases together (the releases get
    /// what the ends leave; 2 s when no run had to be stopped) and 1 s for the last flush.
    pub async fn shutdown(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.admission.hurry();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, self.inner.run_log.flush()).await;
        let grace = self.inner.settings.shutdown_grace;
        let mut releases = SHUTDOWN_RELEASES;
        tracing::info!(
            active = self.active_runs(),
            grace_secs = grace.as_secs(),
            "draining runs"
        );
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                active = self.active_runs(),
                "grace period over: cancelling runs"
            );
            self.inner.runs.stop_all(
                Stop::Cancelled,
                "run cancelled: its instance shut down before it finished",
            );
            // The ends and the releases share one budget: what the ends leave goes to the
            // releases (an end writes its step rows, then its event: two inserts in a row).
            let ends = std::time::Instant::now();
            let _ = tokio::time::timeout(
                SHUTDOWN_RUN_ENDS + SHUTDOWN_RELEASES,
                self.inner.tasks.wait(),
            )
            .await;
            releases = (SHUTDOWN_RUN_ENDS + SHUTDOWN_RELEASES).saturating_sub(ends.elapsed());
        }
        if !self.inner.releaser.wait_idle(releases).await {
            tracing::error!(
                pending = self.inner.releaser.pending(),
                "slot releases still pending at exit; the reaper frees them after the lease"
            );
        }
        match tokio::time::timeout(SHUTDOWN_FLUSH, self.inner.run_log.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final run log flush failed"),
            Err(_) => tracing::error!("final run log flush timed out"),
        }
        self.inner.shutdown.cancel();
    }
}

impl Inner {
    /// Starts an admitted run: its slot now belongs to a guard that every path releases; its
    /// PENDING event is written, then its task runs the steps.
    async fn launch(
        self: &Arc<Self>,
        org: &OrgSlug,
        run_id: &str,
        pipeline: Arc<crate::pipelines::Pipeline>,
        params: RunParams,
        info: TriggerInfo,
        now: DateTime<Utc>,
    ) -> Result<(), TriggerError> {
        let guard = SlotGuard::new(self.releaser.clone(), org.clone(), run_id.to_string());
        let pending = self.start_event(
            &pipeline.id,
            org,
            run_id,
            RunStatus::Pending,
            &params,
            &info,
            now,
        );
        let writing = std::time::Instant::now();
        let written = self.run_log.event_and_wait(pending).await.and_then(|()| {
            // Landed too late (it waited for another flush, then made its own): another
            // instance's reaper may have ended the run and given its count back already.
            let within = self.admission.pending_within(self.settings.lease);
            if writing.elapsed() > within {
                tracing::warn!(org = %org, run_id, "a run's PENDING event landed too late to count; it does not start");
                return Err(crate::warehouse::WarehouseError::Timeout);
            }
            Ok(())
        });
        if let Err(e) = written {
            // The PENDING row may land later (or did); follow it with the run's end, so the run
            // never reads as pending forever, and reads as never started. The guard releases
            // the slot.
            let mut failed = self.event(&pipeline.id, org, run_id, RunStatus::Failed);
            failed.error_class = Some(NEVER_STARTED.into());
            failed.error_summary = Some("the run could not be recorded; it did not start".into());
            self.run_log.event(failed);
            // Answered with an error: the run is not counted.
            guard.refund();
            return Err(e.into());
        }

        let cancel = self.shutdown.child_token();
        // The lease starts at the PENDING event's stamp, the last proof of life written.
        self.runs.insert(run_id, org.clone(), cancel.clone(), now);
        let inner = self.clone();
        let (org, id) = (org.clone(), run_id.to_string());
        self.tasks.spawn(async move {
            // Dropped in reverse order: the run leaves the active set, then its slot is freed
            // with the bytes its jobs billed.
            let mut guard = guard;
            let registered = Registered::new(&inner, &pipeline.id, &org, &id);
            let billed = dag::run(&inner, pipeline, org, id, params, info, cancel).await;
            guard.billed(billed);
            registered.ended();
        });
        Ok(())
    }

    /// The event that records a run's definition (QUEUED or PENDING): trigger, parameters and
    /// what links it to a re-run, a schedule or a backfill.
    #[allow(clippy::too_many_arguments)]
    fn start_event(
        &self,
        pipeline_id: &str,
        org: &OrgSlug,
        run_id: &str,
        status: RunStatus,
        params: &RunParams,
        info: &TriggerInfo,
        now: DateTime<Utc>,
    ) -> RunEvent {
        RunEvent {
            event_time: ts(now),
            trigger: Some(info.trigger.into()),
            triggered_by: Some(info.triggered_by.clone()),
            parameters: Some(params.to_json().to_string()),
            idempotency_key: info.idempotency_key.clone(),
            rerun_of: info.rerun_of.clone(),
            schedule_id: info.schedule_id.clone(),
            logical_time: info.logical_time.map(ts),
            backfill_id: info.backfill_id.clone(),
            ..self.event(pipeline_id, org, run_id, status)
        }
    }

    /// Records `end` (a REFUSED event with the run's definition) as refused by `limit`.
    fn refused_by(&self, mut end: RunEvent, limit: Limit) {
        end.error_class = Some(format!("quota_{}", limit.as_str()));
        end.error_summary = Some(format!("refused: the {} limit is reached", limit.as_str()));
        self.run_log.event(end);
    }

    /// Ends a run that was never admitted (it asked to wait and a limit refused it).
    fn refused(&self, pipeline_id: &str, org: &OrgSlug, run_id: &str, class: &str, summary: &str) {
        let mut end = self.event(pipeline_id, org, run_id, RunStatus::Refused);
        end.error_class = Some(class.to_string());
        end.error_summary = Some(summary.to_string());
        self.run_log.event(end);
    }

    /// An event for the alerts only, never written: `status` is what it announces (a run past
    /// its deadline, started late, or just queued here), `summary` says why.
    pub(crate) fn announcement(
        &self,
        (pipeline_id, org, run_id): (&str, &OrgSlug, &str),
        links: &Links,
        status: &str,
        summary: Option<String>,
    ) -> RunEvent {
        let mut event = self.event(pipeline_id, org, run_id, RunStatus::Running);
        event.status = status.into();
        event.error_summary = summary;
        event.schedule_id = links.schedule_id.clone();
        event.logical_time = links.logical_time.clone();
        event.backfill_id = links.backfill_id.clone();
        event
    }

    pub(crate) fn event(
        &self,
        pipeline_id: &str,
        org: &OrgSlug,
        run_id: &str,
        status: RunStatus,
    ) -> RunEvent {
        RunEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            run_id: run_id.to_string(),
            org_slug: org.to_string(),
            pipeline_id: pipeline_id.to_string(),
            status: status.as_str().into(),
            event_time: ts(self.clock.now()),
            event_seq: status.seq(),
            run_started_at: None,
            trigger: None,
            triggered_by: None,
            parameters: None,
            error_class: None,
            error_summary: None,
            instance_id: Some(self.instance_id.clone()),
            runs_today_at_admission: None,
            runs_month_at_admission: None,
            idempotency_key: None,
            rerun_of: None,
            schedule_id: None,
            logical_time: None,
            backfill_id: None,
            bytes_billed: None,
        }
    }

    pub(crate) fn releaser(&self) -> &Releaser {
        &self.releaser
    }

    pub(crate) fn settings(&self) -> &ExecutorSettings {
        &self.settings
    }

    pub(crate) fn is_active_here(&self, run_id: &str) -> bool {
        self.runs.contains(run_id)
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }
}
