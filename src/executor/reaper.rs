//! Crash safety. Every instance runs a reaper: runs that hold a concurrency slot but have had
//! no heartbeat and no event for a whole lease belong to a dead instance. A run must be seen
//! stale on two passes in a row before it is reaped (a run admitted a moment ago on another
//! instance may not have its first event written yet); then it is marked ORPHANED (unless it
//! had already ended) and its slot released.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use serde::Deserialize;

use super::{Inner, RunStatus};
use crate::domain::OrgSlug;
use crate::warehouse::{Param, sql};

#[derive(Debug, Deserialize)]
struct Stale {
    org_slug: String,
    run_id: String,
    status: Option<String>,
    pipeline_id: Option<String>,
}

pub(super) fn spawn(inner: Arc<Inner>) {
    tokio::spawn(async move {
        let mut suspects: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(inner.settings().reaper_interval);
        tick.tick().await; // the first pass waits one interval
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = inner.shutdown_token().cancelled() => return,
            }
            match pass(&inner, &suspects).await {
                Ok(next) => suspects = next,
                Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
            }
        }
    });
}

/// One pass: returns the runs seen stale for the first time (suspects for the next pass).
async fn pass(
    inner: &Arc<Inner>,
    suspects: &HashSet<String>,
) -> Result<HashSet<String>, crate::warehouse::WarehouseError> {
    let now = inner.clock.now();
    let lease = Duration::from_std(inner.settings().lease).unwrap_or(Duration::minutes(3));
    let stale: Vec<Stale> = inner
        .warehouse
        .query(
            &sql::STALE_RUNS,
            &[
                Param::timestamp("now", now),
                Param::timestamp("stale_before", now - lease),
            ],
        )
        .await?;
    let mut next = HashSet::new();
    for run in stale {
        if inner.is_active_here(&run.run_id) {
            continue;
        }
        if !suspects.contains(&run.run_id) {
            next.insert(run.run_id);
            continue;
        }
        let Ok(org) = OrgSlug::parse(&run.org_slug) else {
            continue;
        };
        let ended = run.status.as_deref().is_some_and(RunStatus::is_terminal);
        if !ended {
            let pipeline_id = run.pipeline_id.as_deref().unwrap_or("unknown");
            let mut event = inner.event(pipeline_id, &org, &run.run_id, RunStatus::Orphaned);
            event.error_class = Some("orphaned".into());
            event.error_summary = Some(format!(
                "no heartbeat for {}s: the instance running it stopped",
                inner.settings().lease.as_secs()
            ));
            inner.run_log.event(event);
        }
        tracing::warn!(org = %org, run_id = %run.run_id, ended, "reaping orphaned run");
        inner.metrics.reaped();
        inner.releaser().release(org, run.run_id);
    }
    let _ = inner.run_log.flush().await;
    Ok(next)
}
