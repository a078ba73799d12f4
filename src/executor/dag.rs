//! One run: steps follow their dependencies (independent steps run in parallel), each attempt
//! under its own timeout, retried by the step's policy, logged to `step_logs`. The pipeline
//! timeout and cancellation end only this run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::lease::Stop;
use super::{Inner, Links, RunStatus, TriggerInfo};
use crate::definitions::RunParams;
use crate::domain::OrgSlug;
use crate::pipelines::{OnFailure, Pipeline};
use crate::run_log::StepLog;
use crate::steps::{RunCaps, StepContext, StepError, StepOutcome};

#[derive(Debug, Clone, PartialEq)]
enum StepState {
    Waiting,
    Running,
    Succeeded,
    /// Failed, but the step tolerates it (`on_failure: continue`).
    FailedTolerated,
    Failed,
}

enum Ending {
    /// With the ids of the steps whose failure was tolerated (`on_failure: continue`).
    Succeeded(Vec<String>),
    Failed(StepError),
    TimedOut,
    Stopped(Stop),
}

/// The steps of one run as they go: the attempts in flight (what an interrupted run records for
/// the steps it stopped) and every step that started (the others are recorded SKIPPED).
#[derive(Default)]
struct Progress {
    running: HashMap<usize, (u32, chrono::DateTime<Utc>, Instant)>,
    started: std::collections::HashSet<usize>,
    /// Bytes BigQuery billed for the run's finished attempts so far.
    billed: i64,
}

type InFlight = Arc<std::sync::Mutex<Progress>>;

/// Aborts a spawned attempt when dropped (a cancelled or timed-out run stops its steps).
struct AbortOnDrop(tokio::task::JoinHandle<Result<StepOutcome, StepError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A scheduled run (not a backfill's day) starting after its tick's logical time tells the
/// alerts how late it is (`LATE_START`, never written): channels whose `late_after_seconds` it
/// exceeds are alerted `schedule.late`. No query: the start is known here.
fn announce_late_start(
    inner: &Arc<Inner>,
    pipeline_id: &str,
    org: &OrgSlug,
    run_id: &str,
    info: &TriggerInfo,
) {
    let (Some(_), Some(logical), None) = (&info.schedule_id, info.logical_time, &info.backfill_id)
    else {
        return;
    };
    let now = inner.clock.now();
    if now <= logical {
        return;
    }
    let late = inner.announcement(
        (pipeline_id, org, run_id),
        &Links::of(info),
        crate::notifications::LATE_START,
        Some(format!(
            "started {} s after its tick's logical time",
            (now - logical).num_seconds()
        )),
    );
    inner.run_log.announce(late);
}

/// A task aborted when dropped.
struct Alarm(tokio::task::JoinHandle<()>);

impl Drop for Alarm {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Announces `DEADLINE_PASSED` for the run if it is still running `after` it started (the
/// alarm is dropped, and so never rings, when the run ends first). Costs no query: the instance
/// running the run keeps the time.
fn deadline_alarm(
    inner: &Arc<Inner>,
    pipeline_id: &str,
    org: &OrgSlug,
    run_id: &str,
    links: Links,
    after: std::time::Duration,
) -> Alarm {
    let (inner, pipeline_id, org, run_id) = (
        inner.clone(),
        pipeline_id.to_string(),
        org.clone(),
        run_id.to_string(),
    );
    Alarm(tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let late = inner.announcement(
            (&pipeline_id, &org, &run_id),
            &links,
            crate::notifications::DEADLINE_PASSED,
            Some(format!(
                "still running {} s after it started (deadline_seconds: {})",
                after.as_secs(),
                after.as_secs()
            )),
        );
        tracing::info!(org = %org, run_id, pipeline = %pipeline_id, "run past its deadline");
        inner.run_log.announce(late);
    }))
}

/// The org's caps on this run's jobs: one read of its quota row, when the run's first BigQuery
/// job needs them. A read that fails leaves them out (the step's own cap still holds, and
/// admission checked the budgets): a run is not failed for a bookkeeping read.
fn org_caps(inner: &Arc<Inner>, org: &OrgSlug) -> RunCaps {
    let (inner, org) = (inner.clone(), org.clone());
    RunCaps::new(Arc::new(move || {
        let (inner, org) = (inner.clone(), org.clone());
        Box::pin(async move {
            match crate::orgs::quota(&inner.warehouse, &org).await {
                Ok(Some(quota)) => quota.caps(inner.clock.now()),
                Ok(None) => crate::cost::cap::OrgCaps::default(),
                Err(e) => {
                    tracing::warn!(org = %org, error = %e, "reading the org's caps failed; its jobs carry only their steps' caps");
                    crate::cost::cap::OrgCaps::default()
                }
            }
        })
    }))
}

pub(super) async fn run(
    inner: &Arc<Inner>,
    pipeline: Arc<Pipeline>,
    org: OrgSlug,
    run_id: String,
    params: RunParams,
    info: TriggerInfo,
    cancel: CancellationToken,
) -> i64 {
    let mut running = inner.event(&pipeline.id, &org, &run_id, RunStatus::Running);
    running.run_started_at = Some(running.event_time.clone());
    running.trigger = Some(info.trigger.into());
    running.triggered_by = Some(info.triggered_by.clone());
    inner.run_log.event(running);

    announce_late_start(inner, &pipeline.id, &org, &run_id, &info);
    let caps = org_caps(inner, &org);
    let ctx = Arc::new(StepContext {
        warehouse: inner.steps_warehouse.clone(),
        kms: inner.kms.clone(),
        http: inner.http.clone(),
        providers: inner.providers.clone(),
        org: org.clone(),
        org_dataset: org.dataset_id(),
        pipeline_id: pipeline.id.clone(),
        run_id: run_id.clone(),
        params,
        declared: pipeline.parameters.clone(),
        step_id: String::new(),
        attempt: 0,
        caps,
    });
    let in_flight = InFlight::default();
    // Disarmed once the run's outcome is known (not when its end is written, which may take a
    // while longer).
    let deadline = pipeline
        .deadline_for(info.schedule_id.as_deref())
        .map(|after| deadline_alarm(inner, &pipeline.id, &org, &run_id, Links::of(&info), after));
    reused(inner, &pipeline, &ctx, &in_flight, &info);
    let ending = tokio::select! {
        ending = steps(inner, &pipeline, &ctx, &in_flight, &info.reuse_steps) => ending,
        _ = tokio::time::sleep(pipeline.timeout) => Ending::TimedOut,
        _ = cancel.cancelled() => Ending::Stopped(
            inner.runs.check(&run_id, inner.clock.now()).unwrap_or(Stop::Cancelled),
        ),
    };
    drop(deadline);
    // Fenced before the end is written: a run whose lease lapsed meanwhile (a paused process,
    // an outage) or whose slot a reaper freed never claims an outcome of its own.
    let ending = match inner.runs.check(&run_id, inner.clock.now()) {
        Some(stop @ (Stop::LeaseLost | Stop::Reaped)) => Ending::Stopped(stop),
        _ => ending,
    };
    let lease_secs = inner.settings().lease.as_secs();
    let (status, error) = match &ending {
        Ending::Succeeded(tolerated) if tolerated.is_empty() => (RunStatus::Succeeded, None),
        // Succeeded, with a visible sign that some steps failed and were tolerated.
        Ending::Succeeded(tolerated) => (
            RunStatus::Succeeded,
            Some((
                "tolerated_failures",
                format!(
                    "{} step(s) failed and were tolerated (on_failure: continue): {}",
                    tolerated.len(),
                    tolerated.join(", ")
                ),
            )),
        ),
        Ending::Failed(e) => (RunStatus::Failed, Some((e.class, e.summary.clone()))),
        Ending::TimedOut => (
            RunStatus::TimedOut,
            Some((
                "timeout",
                format!("pipeline timeout of {}s", pipeline.timeout.as_secs()),
            )),
        ),
        Ending::Stopped(Stop::Cancelled) => (
            RunStatus::Cancelled,
            Some((
                "cancelled",
                inner
                    .runs
                    .stop_note(&run_id)
                    .unwrap_or_else(|| Stop::Cancelled.summary(lease_secs)),
            )),
        ),
        Ending::Stopped(stop) => (
            RunStatus::Orphaned,
            Some(("lease_lost", stop.summary(lease_secs))),
        ),
    };
    if !matches!(ending, Ending::Succeeded(_)) {
        let reason = match &error {
            Some((_, reason)) => reason.as_str(),
            None => "the run ended",
        };
        interrupted(inner, &pipeline, &ctx, &in_flight, reason);
        let why_skipped = match &ending {
            Ending::Failed(e) => format!("not run: an earlier step failed ({})", e.class),
            _ => format!("not run: {reason}"),
        };
        skipped(inner, &pipeline, &ctx, &in_flight, &why_skipped);
    }
    let billed = in_flight.lock().expect("in flight").billed;
    inner.metrics.bytes_billed(org.as_str(), billed);
    let mut end = inner.event(&pipeline.id, &org, &run_id, status);
    end.bytes_billed = Some(billed);
    if let Some((class, summary)) = error {
        end.error_class = Some(class.to_string());
        end.error_summary = Some(summary);
    }
    tracing::info!(run_id, pipeline = %pipeline.id, org = %org, status = status.as_str(), "run ended");
    inner
        .metrics
        .run_finished(&pipeline.id, status.as_str(), org.as_str());
    // Written before the slot is released (with whatever else is queued, shared with the
    // other runs ending at the same moment); a failure leaves the row queued for a later flush.
    let _ = inner.run_log.event_and_wait(end).await;
    billed
}

/// A `step_logs` row of this run for `step_id`'s `attempt`; callers set the rest.
fn step_row(ctx: &StepContext, pipeline_id: &str, step_id: &str, attempt: i64) -> StepLog {
    StepLog {
        log_id: uuid::Uuid::new_v4().to_string(),
        run_id: ctx.run_id.clone(),
        org_slug: ctx.org.to_string(),
        pipeline_id: pipeline_id.to_string(),
        step_id: step_id.to_string(),
        attempt,
        status: String::new(),
        started_at: String::new(),
        ended_at: None,
        duration_ms: None,
        rows_affected: None,
        bytes_processed: None,
        bytes_billed: None,
        slot_ms: None,
        error_summary: None,
    }
}

/// Records the attempts a run's end cut short (cancel, timeout, fencing), so the step that was
/// running is visible with its start, its end and the reason.
fn interrupted(
    inner: &Arc<Inner>,
    pipeline: &Pipeline,
    ctx: &StepContext,
    in_flight: &InFlight,
    reason: &str,
) {
    let cut: Vec<_> = in_flight
        .lock()
        .expect("in flight")
        .running
        .drain()
        .collect();
    for (index, (attempt, started_at, started)) in cut {
        inner.run_log.step(StepLog {
            status: "INTERRUPTED".into(),
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ended_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)),
            duration_ms: Some(started.elapsed().as_millis() as i64),
            error_summary: Some(reason.to_string()),
            ..step_row(
                ctx,
                &pipeline.id,
                &pipeline.steps[index].id,
                i64::from(attempt),
            )
        });
    }
}

/// A re-run records the steps that succeeded in the run it re-runs as REUSED (attempt 0): they
/// count as succeeded for their dependents and are not run again.
fn reused(
    inner: &Arc<Inner>,
    pipeline: &Pipeline,
    ctx: &StepContext,
    in_flight: &InFlight,
    info: &TriggerInfo,
) {
    let Some(original) = &info.rerun_of else {
        return;
    };
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut progress = in_flight.lock().expect("in flight");
    for (index, step) in pipeline.steps.iter().enumerate() {
        if !info.reuse_steps.contains(&step.id) {
            continue;
        }
        progress.started.insert(index);
        inner.run_log.step(StepLog {
            log_id: format!("{}:{}:reused", ctx.run_id, step.id),
            status: "REUSED".into(),
            started_at: now.clone(),
            ended_at: Some(now.clone()),
            duration_ms: Some(0),
            error_summary: Some(format!("succeeded in run {original}; not run again")),
            ..step_row(ctx, &pipeline.id, &step.id, 0)
        });
    }
}

/// Records the steps that never started (a dependency failed, or the run ended first) as
/// SKIPPED with the reason, so every step of the pipeline shows in the run's steps.
fn skipped(
    inner: &Arc<Inner>,
    pipeline: &Pipeline,
    ctx: &StepContext,
    in_flight: &InFlight,
    reason: &str,
) {
    let started = in_flight.lock().expect("in flight").started.clone();
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    for (index, step) in pipeline.steps.iter().enumerate() {
        if started.contains(&index) {
            continue;
        }
        inner.run_log.step(StepLog {
            log_id: format!("{}:{}:skipped", ctx.run_id, step.id),
            status: "SKIPPED".into(),
            started_at: now.clone(),
            ended_at: Some(now.clone()),
            duration_ms: Some(0),
            error_summary: Some(reason.to_string()),
            ..step_row(ctx, &pipeline.id, &step.id, 0)
        });
    }
}

async fn steps(
    inner: &Arc<Inner>,
    pipeline: &Arc<Pipeline>,
    ctx: &Arc<StepContext>,
    in_flight: &InFlight,
    reuse: &[String],
) -> Ending {
    let mut state: HashMap<&str, StepState> = pipeline
        .steps
        .iter()
        .map(|s| {
            let state = if reuse.contains(&s.id) {
                StepState::Succeeded
            } else {
                StepState::Waiting
            };
            (s.id.as_str(), state)
        })
        .collect();
    let mut set: JoinSet<(usize, Result<StepOutcome, StepError>)> = JoinSet::new();
    let mut first_failure: Option<StepError> = None;
    let mut tolerated: Vec<String> = Vec::new();
    loop {
        if first_failure.is_none() {
            for (i, step) in pipeline.steps.iter().enumerate() {
                let ready = state[step.id.as_str()] == StepState::Waiting
                    && step.depends_on.iter().all(|d| {
                        matches!(
                            state[d.as_str()],
                            StepState::Succeeded | StepState::FailedTolerated
                        )
                    });
                if ready {
                    if let Some(stop) = inner.runs.check(&ctx.run_id, inner.clock.now()) {
                        return Ending::Stopped(stop);
                    }
                    state.insert(step.id.as_str(), StepState::Running);
                    let (inner, pipeline, ctx, in_flight) = (
                        inner.clone(),
                        pipeline.clone(),
                        ctx.clone(),
                        in_flight.clone(),
                    );
                    set.spawn(async move {
                        let result = attempts(&inner, &pipeline, i, &ctx, &in_flight).await;
                        (i, result)
                    });
                }
            }
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (i, result) = match joined {
            Ok(done) => done,
            // `attempts` catches step panics itself; this is a bug in the executor.
            Err(e) => {
                return Ending::Failed(StepError::new(
                    "internal",
                    format!("step task failed: {e}"),
                    false,
                ));
            }
        };
        let step = &pipeline.steps[i];
        let next = match (&result, step.on_failure) {
            (Ok(_), _) => StepState::Succeeded,
            (Err(_), OnFailure::Continue) => {
                tolerated.push(step.id.clone());
                StepState::FailedTolerated
            }
            (Err(e), OnFailure::Stop) => {
                first_failure.get_or_insert_with(|| e.clone());
                StepState::Failed
            }
        };
        state.insert(step.id.as_str(), next);
        if let Some(stop) = inner.runs.check(&ctx.run_id, inner.clock.now()) {
            return Ending::Stopped(stop);
        }
    }
    match first_failure {
        Some(e) => Ending::Failed(e),
        None => Ending::Succeeded(tolerated),
    }
}

/// Runs one step until it succeeds or its attempts are spent. Each attempt is its own task, so a
/// panic inside a step is caught and logged like any failure.
async fn attempts(
    inner: &Arc<Inner>,
    pipeline: &Arc<Pipeline>,
    index: usize,
    ctx: &Arc<StepContext>,
    in_flight: &InFlight,
) -> Result<StepOutcome, StepError> {
    let step = &pipeline.steps[index];
    let mut attempt = 1u32;
    loop {
        if let Some(stop) = inner.runs.check(&ctx.run_id, inner.clock.now()) {
            return Err(StepError::new(
                "stopped",
                stop.summary(inner.settings().lease.as_secs()),
                false,
            ));
        }
        let started_at = Utc::now();
        let started = Instant::now();
        let billed_so_far = {
            let mut progress = in_flight.lock().expect("in flight");
            progress.started.insert(index);
            progress
                .running
                .insert(index, (attempt, started_at, started));
            progress.billed
        };
        // Visible while it runs; the attempt's end row replaces it in reads.
        inner.run_log.step(StepLog {
            log_id: format!("{}:{}:{attempt}:running", ctx.run_id, step.id),
            status: "RUNNING".into(),
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ..step_row(ctx, &pipeline.id, &step.id, i64::from(attempt))
        });
        let mut handle = {
            let pipeline = pipeline.clone();
            // What the budgets had left when the run started, less what its earlier attempts
            // billed since.
            let ctx = StepContext {
                step_id: step.id.clone(),
                attempt,
                caps: ctx.caps.after(billed_so_far),
                ..(**ctx).clone()
            };
            AbortOnDrop(tokio::spawn(async move {
                pipeline.steps[index].action.run(&ctx).await
            }))
        };
        // On timeout the attempt is aborted when `handle` drops at the end of this iteration.
        let result = match tokio::time::timeout(step.timeout, &mut handle.0).await {
            Err(_) => Err(StepError::new(
                "timeout",
                format!(
                    "attempt exceeded the step timeout of {}s",
                    step.timeout.as_secs()
                ),
                true,
            )),
            Ok(Err(join)) if join.is_panic() => {
                Err(StepError::new("panic", "the step panicked", false))
            }
            Ok(Err(join)) => Err(StepError::new("cancelled", join.to_string(), false)),
            Ok(Ok(r)) => r,
        };
        let status = match &result {
            Ok(_) => "SUCCEEDED",
            Err(e) if e.class == "timeout" => "TIMED_OUT",
            Err(_) => "FAILED",
        };
        let outcome = result.as_ref().ok().cloned().unwrap_or_default();
        {
            let mut progress = in_flight.lock().expect("in flight");
            progress.running.remove(&index);
            progress.billed += outcome.bytes_billed.unwrap_or(0);
        }
        inner.run_log.step(StepLog {
            status: status.into(),
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ended_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)),
            duration_ms: Some(started.elapsed().as_millis() as i64),
            rows_affected: outcome.rows_affected,
            bytes_processed: outcome.bytes_processed,
            bytes_billed: outcome.bytes_billed,
            slot_ms: outcome.slot_ms,
            error_summary: result.as_ref().err().map(|e| e.to_string()),
            ..step_row(ctx, &pipeline.id, &step.id, i64::from(attempt))
        });
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(e) if e.retryable && attempt < step.retry.max_attempts => {
                tracing::info!(step = %step.id, attempt, error = %e, "step attempt failed; retrying");
                attempt += 1;
                tokio::time::sleep(step.retry.delay_before(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
