//! Runs admitted from a queue. The admission batch that frees a slot (a run's release, or a
//! drain) admits the org's next queued runs in the same statement, and hands them to this
//! instance's starter: it reads their QUEUED events (the definition recorded when they were
//! queued: one bounded read for all of them) and starts each like a fresh trigger. A run that
//! was cancelled or refused meanwhile, or whose definition is gone, gets its slot back. A queued
//! run a batch took out of the queue because its org's bytes budget is spent is recorded
//! REFUSED with its definition.
//!
//! Every instance also drains stuck queues: every `QUEUE_POLL_SECS`, one bounded read finds the
//! orgs with queued runs beside free slots (a restart, a raised limit, a lost read-back), and
//! the next batch admits what fits; while it finds none, the read slows down to
//! `IDLE_POLL_MAX_SECS` (see `cost::cadence`). An admin's change of limits drains the org at
//! once when it has a queue. No statement per queued run: admission from a queue rides
//! in the coordinator's batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Inner, RunStatus, TriggerInfo};
use crate::admission::{FromQueue, WhenBusy};
use crate::cost::cadence::{Cadence, Wake};
use crate::definitions::RunParams;
use crate::domain::OrgSlug;
use crate::warehouse::from_micros;
use crate::warehouse::{Param, sql};

/// A definition written with the queueing may not be readable at once, and BigQuery may fail
/// the read: the runs not read are read again after 0.5 s, doubled up to 8 s, for as long as
/// they can still be launched within a lease of the batch that admitted them.
const READ_FIRST_WAIT: Duration = Duration::from_millis(500);
const READ_MAX_WAIT: Duration = Duration::from_secs(8);

#[derive(Debug, Deserialize)]
struct Definition {
    run_id: String,
    org_slug: String,
    pipeline_id: String,
    trigger: Option<String>,
    triggered_by: Option<String>,
    parameters: Option<String>,
    idempotency_key: Option<String>,
    rerun_of: Option<String>,
    schedule_id: Option<String>,
    logical_time_micros: Option<i64>,
    backfill_id: Option<String>,
    moved_on: bool,
}

pub(super) fn spawn(inner: Arc<Inner>, mut admitted: mpsc::UnboundedReceiver<FromQueue>) {
    let starter = inner.clone();
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                next = admitted.recv() => match next { Some(run) => run, None => return },
                _ = starter.shutdown_token().cancelled() => return,
            };
            let mut runs = vec![first];
            while let Ok(run) = admitted.try_recv() {
                runs.push(run);
            }
            start_all(&starter, runs).await;
        }
    });
    tokio::spawn(async move {
        let settings = inner.settings();
        // Stuck queues are rare (a restart, a lost read-back): while none is found, the look
        // slows down to IDLE_POLL_MAX_SECS.
        let mut cadence =
            Cadence::new(settings.queue_poll, settings.idle_poll_max, Wake::default());
        loop {
            // The first look waits one interval.
            tokio::select! {
                _ = cadence.next() => {}
                _ = inner.shutdown_token().cancelled() => return,
            }
            if inner.draining.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            #[derive(Deserialize)]
            struct Org {
                org_slug: String,
            }
            let found = match inner
                .warehouse
                .query::<Org>(&sql::QUEUES_TO_DRAIN, &[])
                .await
            {
                Ok(orgs) => {
                    let found = !orgs.is_empty();
                    for org in orgs {
                        if let Ok(org) = OrgSlug::parse(&org.org_slug) {
                            inner.admission.drain(&org);
                        }
                    }
                    found
                }
                Err(e) if e.is_not_found() => false,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for queues to drain failed");
                    true
                }
            };
            cadence.found(found);
        }
    });
}

/// Reads the runs' definitions (one bounded read for all) and starts each. What the first read
/// does not find is read again in a task of its own, so the runs admitted next are not held
/// behind it.
async fn start_all(inner: &Arc<Inner>, runs: Vec<FromQueue>) {
    let mut waiting: HashMap<String, FromQueue> =
        runs.into_iter().map(|r| (r.run_id.clone(), r)).collect();
    read_and_start(inner, &mut waiting).await;
    if waiting.is_empty() {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut tries = 0;
        loop {
            tokio::time::sleep(crate::clock::doubling(
                READ_FIRST_WAIT,
                READ_MAX_WAIT,
                tries,
            ))
            .await;
            tries += 1;
            let now = inner.clock.now();
            waiting.retain(|_, run| {
                if !inner.admission.too_late_to_launch(run.batch_at, now) {
                    return true;
                }
                if run.refused.is_some() {
                    // It holds no slot and no count; its last event stays QUEUED.
                    tracing::error!(org = %run.org, run_id = %run.run_id, "a queued run refused by a spent budget could not be read: it was not recorded REFUSED");
                } else {
                    // Its slot stays held: the reaper, a lease after its admission, records it
                    // ORPHANED (the run's own pipeline is in its QUEUED event) and frees the
                    // slot with its count, so a run answered QUEUED always ends.
                    tracing::error!(org = %run.org, run_id = %run.run_id, "a run admitted from the queue could not be read within its launch window: the reaper ends it after the lease");
                }
                false
            });
            if waiting.is_empty() || inner.shutdown_token().is_cancelled() {
                return;
            }
            read_and_start(&inner, &mut waiting).await;
            if waiting.is_empty() {
                return;
            }
        }
    });
}

/// One read of the waiting runs' definitions; each run found is started (or refused, or given
/// its slot back) and taken out of `waiting`.
async fn read_and_start(inner: &Arc<Inner>, waiting: &mut HashMap<String, FromQueue>) {
    let ids: Vec<String> = waiting.keys().cloned().collect();
    let limit = ids.len() as i64;
    let found = inner
        .warehouse
        .query::<Definition>(
            &sql::QUEUED_DEFINITIONS,
            &[
                Param::string_array("run_ids", ids),
                Param::timestamp("now", inner.clock.now()),
                Param::int64("limit", limit),
            ],
        )
        .await;
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, runs = waiting.len(), "reading queued runs' definitions failed");
            return;
        }
    };
    for definition in found {
        let Some(run) = waiting.remove(&definition.run_id) else {
            continue;
        };
        if definition.org_slug != run.org.as_str() {
            // Not this org's run: never start it under another org's slot.
            inner.releaser.refund(run.org, run.run_id);
            continue;
        }
        start(inner, run, definition).await;
    }
}

async fn start(inner: &Arc<Inner>, run: FromQueue, d: Definition) {
    if let Some(limit) = run.refused {
        if !d.moved_on {
            // Recorded with what it would have run, like a refused trigger.
            let end = crate::run_log::RunEvent {
                trigger: d.trigger,
                triggered_by: d.triggered_by,
                parameters: d.parameters,
                idempotency_key: d.idempotency_key,
                rerun_of: d.rerun_of,
                schedule_id: d.schedule_id,
                logical_time: from_micros(d.logical_time_micros).map(super::ts),
                backfill_id: d.backfill_id,
                ..inner.event(&d.pipeline_id, &run.org, &run.run_id, RunStatus::Refused)
            };
            inner.refused_by(end, limit);
        }
        return;
    }
    if inner
        .admission
        .too_late_to_launch(run.batch_at, inner.clock.now())
    {
        // Its PENDING event could land after another instance's reaper may free the slot: it is
        // left to the reaper, which ends it ORPHANED and gives its slot and count back.
        tracing::warn!(org = %run.org, run_id = %run.run_id, "a run admitted from the queue is too late to launch within a lease of its batch: the reaper ends it");
        return;
    }
    if d.moved_on {
        // Cancelled or refused while it waited (or started already): not ours to run.
        tracing::info!(org = %run.org, run_id = %run.run_id, "a queued run had ended before its admission: freeing its slot");
        // It never runs: its count is given back (a run is counted when it starts).
        inner.releaser.refund(run.org, run.run_id);
        return;
    }
    let fail = |class: &str, summary: String| {
        let mut end = inner.event(&d.pipeline_id, &run.org, &run.run_id, RunStatus::Failed);
        end.error_class = Some(class.to_string());
        end.error_summary = Some(summary);
        inner.run_log.event(end);
        inner.releaser.release(run.org.clone(), run.run_id.clone());
    };
    let Some(pipeline) = inner.catalog.get(&d.pipeline_id) else {
        fail(
            "definition",
            format!("pipeline {} is no longer in the catalog", d.pipeline_id),
        );
        return;
    };
    let raw: serde_json::Map<String, serde_json::Value> = d
        .parameters
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let params = match RunParams::validate(&pipeline.parameters, &raw) {
        Ok(p) => p,
        Err(e) => {
            fail(
                "definition",
                format!("parameter {} is no longer valid: {}", e.name, e.problem),
            );
            return;
        }
    };
    let info = TriggerInfo {
        trigger: match d.trigger.as_deref() {
            Some("schedule") => "schedule",
            Some("backfill") => "backfill",
            Some("rerun") => "rerun",
            _ => "api",
        },
        triggered_by: d.triggered_by.unwrap_or_default(),
        idempotency_key: d.idempotency_key,
        rerun_of: d.rerun_of,
        reuse_steps: Vec::new(),
        when_busy: WhenBusy::Queue,
        run_id: Some(run.run_id.clone()),
        schedule_id: d.schedule_id,
        logical_time: from_micros(d.logical_time_micros),
        backfill_id: d.backfill_id,
        // Fired already: a queued tick is admitted like any queued run.
        tick: None,
    };
    let now = inner.clock.now();
    if let Err(e) = inner
        .launch(&run.org, &run.run_id, pipeline, params, info, now)
        .await
    {
        tracing::warn!(error = %e, run_id = %run.run_id, "starting a run from the queue failed");
    }
}
