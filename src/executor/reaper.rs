//! Crash safety. Every instance runs a reaper: runs that hold a concurrency slot but have had
//! no heartbeat and no event for a whole lease belong to a dead (or paused, or cut-off)
//! instance. A run must be seen stale on two passes at least one reaper interval apart before
//! it is reaped (a run admitted a moment ago on another instance may not have its first event
//! written yet; passes delayed by a stall do not burst). It is then marked ORPHANED (unless it
//! had already ended), dated at its last sign of life, and its slot released. The instance that
//! ran it, if it is alive, stops it on its own (see `lease`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use tokio::time::MissedTickBehavior;

use super::{Inner, RunStatus, ts};
use crate::domain::OrgSlug;
use crate::warehouse::{Param, sql};

#[derive(Debug, Deserialize)]
struct Stale {
    org_slug: String,
    run_id: String,
    status: Option<String>,
    pipeline_id: Option<String>,
    /// It had a PENDING event and no end saying it never started: its count stands.
    started: Option<bool>,
    last_seen_micros: Option<i64>,
}

pub(super) fn spawn(inner: Arc<Inner>) {
    tokio::spawn(async move {
        // Run id -> when this reaper first saw it stale (monotonic).
        let mut suspects: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(inner.settings().reaper_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await; // the first pass waits one interval
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = inner.shutdown_token().cancelled() => return,
            }
            match pass(&inner, &suspects).await {
                Ok(next) => suspects = next,
                // Before bootstrap there is nothing to reap: not worth a warning every pass.
                Err(e) if e.is_not_found() => {
                    tracing::debug!("reaper: meta tables not there yet (not bootstrapped)")
                }
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
        }
    });
}

/// One pass: reaps the runs seen stale at least one interval ago; returns the suspects to keep.
async fn pass(
    inner: &Arc<Inner>,
    suspects: &HashMap<String, Instant>,
) -> Result<HashMap<String, Instant>, crate::warehouse::WarehouseError> {
    let now = inner.clock.now();
    let lease = Duration::from_std(inner.settings().lease).unwrap_or(Duration::minutes(3));
    let spacing = inner.settings().reaper_interval;
    let stale: Vec<Stale> = inner
        .warehouse
        .query(
            &sql::STALE_RUNS,
            &[
                Param::timestamp("now", now),
                Param::timestamp("stale_before", now - lease),
                Param::string_array("own_run_ids", inner.runs.ids()),
            ],
        )
        .await?;
    let mut next = HashMap::new();
    for run in stale {
        if inner.is_active_here(&run.run_id) {
            continue;
        }
        match suspects.get(&run.run_id) {
            None => {
                next.insert(run.run_id, Instant::now());
                continue;
            }
            Some(first) if first.elapsed() < spacing => {
                next.insert(run.run_id, *first);
                continue;
            }
            Some(_) => {}
        }
        let Ok(org) = OrgSlug::parse(&run.org_slug) else {
            continue;
        };
        let ended = run.status.as_deref().is_some_and(RunStatus::is_terminal);
        let never_started = !run.started.unwrap_or(false);
        if !ended {
            let pipeline_id = run.pipeline_id.as_deref().unwrap_or("unknown");
            let mut event = inner.event(pipeline_id, &org, &run.run_id, RunStatus::Orphaned);
            // Several reapers may reap the same run: one insert id, and reads collapse the rest.
            event.event_id = format!("{}:orphaned", run.run_id);
            if let Some(seen) = run
                .last_seen_micros
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .filter(|t| t.timestamp() > 0)
            {
                event.event_time = ts(seen);
            }
            if never_started {
                // Its count is given back below, so its end says it never started: a PENDING
                // event its instance writes later (it was paused, not dead) does not make it a
                // started run that is not counted.
                event.error_class = Some(super::NEVER_STARTED.into());
                event.error_summary = Some(format!(
                    "admitted, but not started within {}s: the instance starting it stopped",
                    inner.settings().lease.as_secs()
                ));
            } else {
                event.error_class = Some("orphaned".into());
                event.error_summary = Some(format!(
                    "no heartbeat for {}s: the instance running it stopped",
                    inner.settings().lease.as_secs()
                ));
            }
            inner.run_log.event(event);
        }
        // A run that never started (no PENDING event: no event at all, still QUEUED when a
        // batch whose answer was lost admitted it from its queue, or CANCELLED while it waited
        // there; or an end of class "admission": its PENDING insert's answer was lost and its
        // trigger answered 503, but the refund did not land) gives its count back with its slot.
        tracing::warn!(org = %org, run_id = %run.run_id, ended, never_started, "reaping orphaned run");
        inner.metrics.reaped();
        if never_started {
            inner.releaser().refund(org, run.run_id);
        } else {
            inner.releaser().release(org, run.run_id);
        }
    }
    let _ = inner.run_log.flush().await;
    Ok(next)
}
