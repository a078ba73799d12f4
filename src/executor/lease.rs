//! Fencing: a run executing here holds a lease that only its heartbeats renew, and it stops
//! itself before another instance's reaper may take its slot.
//!
//! - The lease is renewed at the stamp of the last heartbeat that landed (taken just before the
//!   insert is sent, so a slow insert never renews more than it proved). A run starts with the
//!   stamp of its PENDING event.
//! - Heartbeats go straight to `run_heartbeats` on their own handle, bounded by
//!   `HEARTBEAT_TIMEOUT_SECS`: they never queue behind another write.
//! - A run whose lease was not renewed for `lease - heartbeat_interval - heartbeat_timeout`
//!   stops (ORPHANED, `lease_lost`), checked by the heartbeat loop, before each step attempt
//!   and before the run's end is written, so a process that resumes after a pause stops its runs
//!   before anything else. The reaper elsewhere needs `lease` plus two passes, so the slot is
//!   never freed while the run still executes (clocks assumed NTP-synchronised).
//! - After each heartbeat, one bounded read tells which runs no longer hold their slot (a
//!   reaper freed it: the run stops at once) and which were cancelled through another instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::domain::OrgSlug;
use crate::run_log::Heartbeat;
use crate::warehouse::{Param, Warehouse, sql};

/// Why a run was told to stop before its steps were done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Through the API (on this instance or, read from BigQuery, on another).
    Cancelled,
    /// Its lease could not be renewed in time (BigQuery unreachable, or the process paused).
    LeaseLost,
    /// A reaper freed its slot.
    Reaped,
}

impl Stop {
    pub(crate) fn summary(self, lease_secs: u64) -> String {
        match self {
            Stop::Cancelled => "run cancelled".into(),
            Stop::LeaseLost => format!(
                "stopped by its instance: its lease ({lease_secs}s) could not be renewed in time \
                 (BigQuery unreachable or the process paused)"
            ),
            Stop::Reaped => "stopped by its instance: a reaper had already freed its slot".into(),
        }
    }
}

struct Entry {
    org: OrgSlug,
    cancel: CancellationToken,
    renewed_at: DateTime<Utc>,
    stop: Option<Stop>,
    /// What the run's end says about the stop (who cancelled it, or why).
    stop_note: Option<String>,
}

/// The runs executing on this instance, with their leases.
pub(crate) struct ActiveRuns {
    runs: Mutex<HashMap<String, Entry>>,
    fence_after: chrono::Duration,
}

impl ActiveRuns {
    pub(crate) fn new(settings: &crate::settings::ExecutorSettings) -> Self {
        let margin = settings.heartbeat_interval + settings.heartbeat_timeout;
        Self::fenced_after(settings.lease.saturating_sub(margin))
    }

    /// Runs whose lease was not renewed for `fence_after` stop.
    fn fenced_after(fence_after: std::time::Duration) -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            fence_after: chrono::Duration::from_std(fence_after)
                .unwrap_or(chrono::Duration::seconds(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.runs.lock().expect("active runs lock")
    }

    pub(crate) fn insert(
        &self,
        run_id: &str,
        org: OrgSlug,
        cancel: CancellationToken,
        leased_at: DateTime<Utc>,
    ) {
        self.lock().insert(
            run_id.to_string(),
            Entry {
                org,
                cancel,
                renewed_at: leased_at,
                stop: None,
                stop_note: None,
            },
        );
    }

    pub(crate) fn remove(&self, run_id: &str) {
        self.lock().remove(run_id);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub(crate) fn contains(&self, run_id: &str) -> bool {
        self.lock().contains_key(run_id)
    }

    /// Tells a run to stop (the first reason given is kept, with `note` for its end). `false`
    /// when it is not executing here for `org` (when given).
    pub(crate) fn stop(
        &self,
        run_id: &str,
        org: Option<&OrgSlug>,
        why: Stop,
        note: Option<String>,
    ) -> bool {
        let mut runs = self.lock();
        match runs.get_mut(run_id) {
            Some(entry) if org.is_none_or(|o| *o == entry.org) => {
                if entry.stop.is_none() {
                    entry.stop = Some(why);
                    entry.stop_note = note;
                }
                entry.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Stops every run (shutdown after the grace period).
    pub(crate) fn stop_all(&self, why: Stop, note: &str) {
        for entry in self.lock().values_mut() {
            if entry.stop.is_none() {
                entry.stop = Some(why);
                entry.stop_note = Some(note.to_string());
            }
            entry.cancel.cancel();
        }
    }

    /// What the run's end should say about its stop, when something was noted.
    pub(crate) fn stop_note(&self, run_id: &str) -> Option<String> {
        self.lock().get(run_id).and_then(|e| e.stop_note.clone())
    }

    /// Stops the run if its lease lapsed at `now`.
    fn fence(&self, run_id: &str, entry: &mut Entry, now: DateTime<Utc>) {
        if entry.stop.is_none() && now - entry.renewed_at >= self.fence_after {
            tracing::warn!(run_id, org = %entry.org, "lease lapsed: stopping the run");
            entry.stop = Some(Stop::LeaseLost);
            entry.cancel.cancel();
        }
    }

    /// Why the run must not go on at `now`, if it must not: it was told to stop, or its lease
    /// lapsed (which stops it).
    pub(crate) fn check(&self, run_id: &str, now: DateTime<Utc>) -> Option<Stop> {
        let mut runs = self.lock();
        let entry = runs.get_mut(run_id)?;
        self.fence(run_id, entry, now);
        entry.stop
    }

    /// Stops the runs whose lease lapsed; returns a heartbeat for every other run.
    fn due(&self, now: DateTime<Utc>, instance_id: &str) -> Vec<Heartbeat> {
        let mut runs = self.lock();
        let mut beats = Vec::new();
        for (run_id, entry) in runs.iter_mut() {
            self.fence(run_id, entry, now);
            if entry.stop.is_none() {
                beats.push(Heartbeat {
                    run_id: run_id.clone(),
                    org_slug: entry.org.to_string(),
                    instance_id: instance_id.to_string(),
                    heartbeat_at: super::ts(now),
                });
            }
        }
        beats
    }

    fn renew(&self, run_ids: &[String], stamp: DateTime<Utc>) {
        let mut runs = self.lock();
        for id in run_ids {
            if let Some(entry) = runs.get_mut(id) {
                entry.renewed_at = entry.renewed_at.max(stamp);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Control {
    run_id: String,
    held: bool,
    cancel_requested: bool,
    cancelled_by: Option<String>,
}

/// Every heartbeat interval (spacing kept after a stall): fence lapsed runs, renew the others'
/// leases with one insert, then read what other instances decided about them.
pub(super) fn spawn_heartbeats(inner: Arc<Inner>) {
    let beats_warehouse = inner
        .warehouse
        .with_deadline(inner.settings().heartbeat_timeout);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(inner.settings().heartbeat_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = inner.shutdown_token().cancelled() => return,
            }
            beat(&inner, &beats_warehouse).await;
        }
    });
}

async fn beat(inner: &Arc<Inner>, beats_warehouse: &Warehouse) {
    let stamp = inner.clock.now();
    let beats = inner.runs.due(stamp, &inner.instance_id);
    if beats.is_empty() {
        return;
    }
    let ids: Vec<String> = beats.iter().map(|b| b.run_id.clone()).collect();
    let orgs: Vec<String> = beats.iter().map(|b| b.org_slug.clone()).collect();
    let rows: Vec<(String, Heartbeat)> = beats
        .into_iter()
        .map(|b| (format!("{}:{}", b.run_id, b.heartbeat_at), b))
        .collect();
    let meta = beats_warehouse.meta_dataset().clone();
    match beats_warehouse
        .insert_rows(&meta, "run_heartbeats", &rows)
        .await
    {
        Ok(()) => inner.runs.renew(&ids, stamp),
        Err(e) => {
            // BigQuery did not take the heartbeat: the control read would not fare better.
            tracing::warn!(runs = ids.len(), error = %e, "heartbeat failed");
            return;
        }
    }
    let controls: Vec<Control> = match beats_warehouse
        .query(
            &sql::RUN_CONTROLS,
            &[
                Param::string_array("run_ids", ids.clone()),
                Param::string_array("org_slugs", orgs),
                Param::timestamp("now", stamp),
            ],
        )
        .await
    {
        Ok(controls) => controls,
        Err(e) => {
            tracing::warn!(error = %e, "reading run controls failed");
            return;
        }
    };
    for control in controls {
        if !control.held {
            tracing::warn!(run_id = %control.run_id, "a reaper freed this run's slot: stopping it");
            inner.runs.stop(&control.run_id, None, Stop::Reaped, None);
        } else if control.cancel_requested {
            tracing::info!(run_id = %control.run_id, "cancellation requested through another instance");
            let note = control
                .cancelled_by
                .map(|by| format!("run cancelled by {by}"));
            inner
                .runs
                .stop(&control.run_id, None, Stop::Cancelled, note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn org(slug: &str) -> OrgSlug {
        OrgSlug::parse(slug).unwrap()
    }

    /// Fenced 20 s after the last renewal (a 30 s lease, 5 s heartbeats, 5 s timeout).
    fn runs() -> ActiveRuns {
        ActiveRuns::fenced_after(std::time::Duration::from_secs(20))
    }

    #[test]
    fn a_run_whose_lease_is_not_renewed_stops_itself_at_the_fence_and_is_cancelled() {
        let runs = runs();
        let cancel = CancellationToken::new();
        runs.insert("r1", org("acme"), cancel.clone(), at(0));
        assert_eq!(runs.check("r1", at(19)), None);
        assert!(!cancel.is_cancelled());
        assert_eq!(runs.check("r1", at(20)), Some(Stop::LeaseLost));
        assert!(cancel.is_cancelled(), "its steps are stopped");
        assert_eq!(
            runs.check("r1", at(5)),
            Some(Stop::LeaseLost),
            "a stop is final"
        );
        assert_eq!(runs.check("unknown", at(100)), None);
    }

    #[test]
    fn a_heartbeat_renews_from_its_own_stamp_and_a_late_one_never_moves_the_lease_back() {
        let runs = runs();
        runs.insert("r1", org("acme"), CancellationToken::new(), at(0));
        runs.renew(&["r1".into()], at(15));
        runs.renew(&["r1".into()], at(3));
        assert_eq!(
            runs.check("r1", at(34)),
            None,
            "renewed at 15 s, not at 3 s"
        );
        assert_eq!(runs.check("r1", at(35)), Some(Stop::LeaseLost));
    }

    #[test]
    fn the_heartbeats_due_fence_lapsed_runs_and_beat_for_the_others_only() {
        let runs = runs();
        runs.insert("old", org("acme"), CancellationToken::new(), at(0));
        runs.insert("new", org("acme"), CancellationToken::new(), at(10));
        runs.insert("cancelled", org("beta"), CancellationToken::new(), at(10));
        assert!(runs.stop("cancelled", None, Stop::Cancelled, None));
        let beats = runs.due(at(25), "instance-1");
        let ids: Vec<&str> = beats.iter().map(|b| b.run_id.as_str()).collect();
        assert_eq!(ids, ["new"]);
        assert_eq!(beats[0].instance_id, "instance-1");
        assert_eq!(beats[0].org_slug, "acme");
        assert_eq!(runs.check("old", at(25)), Some(Stop::LeaseLost));
    }

    #[test]
    fn the_first_reason_to_stop_is_kept_with_its_note_and_another_org_cannot_stop_a_run() {
        let runs = runs();
        let cancel = CancellationToken::new();
        runs.insert("r1", org("acme"), cancel.clone(), at(0));
        assert!(!runs.stop("r1", Some(&org("beta")), Stop::Cancelled, None));
        assert!(!cancel.is_cancelled(), "not beta's run");
        assert!(runs.stop(
            "r1",
            Some(&org("acme")),
            Stop::Cancelled,
            Some("run cancelled by key:k1".into())
        ));
        assert!(runs.stop("r1", None, Stop::Reaped, Some("later".into())));
        assert_eq!(runs.check("r1", at(1)), Some(Stop::Cancelled));
        assert_eq!(
            runs.stop_note("r1").as_deref(),
            Some("run cancelled by key:k1")
        );
        runs.stop_all(Stop::LeaseLost, "shutdown");
        assert_eq!(runs.check("r1", at(1)), Some(Stop::Cancelled));
        assert!(!runs.stop("gone", None, Stop::Cancelled, None));
    }

    #[test]
    fn shutdown_stops_every_run_not_already_stopped_with_its_note() {
        let runs = runs();
        let (a, b) = (CancellationToken::new(), CancellationToken::new());
        runs.insert("a", org("acme"), a.clone(), at(0));
        runs.insert("b", org("acme"), b.clone(), at(0));
        runs.stop_all(Stop::Cancelled, "instance shutting down");
        assert!(a.is_cancelled() && b.is_cancelled());
        assert_eq!(
            runs.stop_note("a").as_deref(),
            Some("instance shutting down")
        );
        runs.remove("a");
        assert_eq!(runs.len(), 1);
        assert!(!runs.contains("a"));
        assert_eq!(runs.ids(), ["b"]);
    }
}
