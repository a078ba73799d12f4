//! Live runs: what an instance's watchers of a run are pushed (`GET …/runs/{run_id}/events`).
//!
//! A watched run is read by one task per instance, whatever the number of its watchers: every
//! `LIVE_POLL_MS` its state (and, once it started, its step attempts) with the same queries as
//! `GET …/runs/{run_id}` and `…/steps`, and only while somebody watches. Each watcher holds a
//! `watch` receiver of the latest snapshot, so a slow reader skips to the newest state instead
//! of buffering. The task ends with the run's end (its last snapshot stays for the watchers) or
//! when its last watcher has gone. Streams are capped per org and per instance
//! ([`LiveError::TooMany`], answered 503 with Retry-After).
//!
//! Cost: two queries per watched run per poll on this instance, not per watcher (a run page
//! polled by its watchers costs two queries per watcher per look). A tail of the events table
//! shared by every watched run (one query per poll per instance) is the next step (issue 26).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::domain::OrgSlug;
use crate::runs::{self, RunView, StepAttempt};
use crate::service_error::ServiceError;
use crate::settings::LiveSettings;
use crate::warehouse::Warehouse;

/// A run as its watchers see it: its state and its step attempts (in the order they were read:
/// the route puts them in run order).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub run: RunView,
    pub steps: Vec<StepAttempt>,
}

impl Snapshot {
    /// What identifies this state (the SSE event id): the run's status and last event time,
    /// and each attempt's status and end. Time that passes (a queued run's wait) is no change.
    pub fn version(&self) -> String {
        let micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros()).unwrap_or(0);
        let mut hasher = fnv::Fnv::default();
        for s in &self.steps {
            hasher.write(s.step_id.as_bytes());
            hasher.write(&s.attempt.to_le_bytes());
            hasher.write(s.status.as_bytes());
            hasher.write(&micros(s.ended_at).to_le_bytes());
        }
        format!(
            "{}-{}-{}-{:016x}",
            self.run.status,
            micros(self.run.updated_at),
            self.steps.len(),
            hasher.finish()
        )
    }

    pub fn ended(&self) -> bool {
        crate::executor::RunStatus::is_terminal(&self.run.status)
    }
}

/// A small stable hash for [`Snapshot::version`] (std's hasher is randomized per process, and
/// an id must mean the same on every instance for `Last-Event-ID`).
mod fnv {
    pub struct Fnv(u64);
    impl Default for Fnv {
        fn default() -> Self {
            Fnv(0xcbf2_9ce4_8422_2325)
        }
    }
    impl Fnv {
        pub fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
            // A separator, so ("ab", "c") and ("a", "bc") differ.
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3) ^ 0xff;
        }
        pub fn finish(&self) -> u64 {
            self.0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Past the streams this instance holds for the org, or in all.
    #[error("too many live streams ({scope})")]
    TooMany { scope: &'static str },
    /// The first read of a run nobody watched here failed.
    #[error(transparent)]
    Read(#[from] ServiceError),
}

type Key = (OrgSlug, String);

/// The instance's live runs (cheap to clone).
#[derive(Clone)]
pub struct LiveRuns {
    inner: Arc<Inner>,
}

struct Inner {
    warehouse: Warehouse,
    clock: SharedClock,
    settings: LiveSettings,
    state: Mutex<State>,
    ended: moka::sync::Cache<Key, Arc<Snapshot>>,
}

/// Ended runs kept for later watchers (an ended run never changes): at most this many.
const ENDED_KEPT: u64 = 10_000;

#[derive(Default)]
struct State {
    runs: HashMap<Key, watch::Sender<Option<Arc<Snapshot>>>>,
    streams_per_org: HashMap<OrgSlug, usize>,
    streams: usize,
}

/// One watcher's hold on a run: the latest snapshot, and its place under the caps (given back
/// when dropped).
pub struct Subscription {
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    _slot: Slot,
}

struct Slot {
    inner: Arc<Inner>,
    org: OrgSlug,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock().unwrap();
        state.streams -= 1;
        if let Some(n) = state.streams_per_org.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                state.streams_per_org.remove(&self.org);
            }
        }
    }
}

impl LiveRuns {
    pub fn new(warehouse: Warehouse, clock: SharedClock, settings: LiveSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                warehouse,
                clock,
                settings,
                state: Mutex::new(State::default()),
                ended: moka::sync::Cache::builder()
                    .max_capacity(ENDED_KEPT)
                    .time_to_idle(Duration::from_secs(3600))
                    .build(),
            }),
        }
    }

    /// Watches `run_id` of `org`: joins its reader here, else reads it once and starts one.
    /// `Ok(None)`: the org has no such run.
    pub async fn watch(
        &self,
        org: &OrgSlug,
        run_id: &str,
    ) -> Result<Option<Subscription>, LiveError> {
        if let Some(joined) = self.join(org, run_id)? {
            return Ok(Some(joined));
        }
        match self.inner.read(org, run_id).await? {
            Some(first) => Ok(Some(self.subscribe(org, run_id, first)?)),
            None => Ok(None),
        }
    }

    /// Watches a run this instance already knows (watched now, or ended and kept): no read.
    /// `Ok(None)` when it does not know it: read it and [`LiveRuns::subscribe`].
    pub fn join(&self, org: &OrgSlug, run_id: &str) -> Result<Option<Subscription>, LiveError> {
        let key = (org.clone(), run_id.to_string());
        let mut state = self.inner.state.lock().unwrap();
        if let Some(tx) = state.runs.get(&key) {
            let snapshots = tx.subscribe();
            let slot = self.inner.take_slot(&mut state, org)?;
            return Ok(Some(Subscription {
                snapshots,
                _slot: slot,
            }));
        }
        match self.inner.ended.get(&key) {
            Some(ended) => {
                let slot = self.inner.take_slot(&mut state, org)?;
                Ok(Some(Subscription {
                    snapshots: watch::channel(Some(ended)).1,
                    _slot: slot,
                }))
            }
            None => Ok(None),
        }
    }

    /// Watches `run_id` of `org`: the run's reader is started if nobody watched it yet. `first`
    /// (the run as the caller just read it) is the first snapshot of a newly watched run.
    pub fn subscribe(
        &self,
        org: &OrgSlug,
        run_id: &str,
        first: Snapshot,
    ) -> Result<Subscription, LiveError> {
        let mut state = self.inner.state.lock().unwrap();
        let slot = self.inner.take_slot(&mut state, org)?;
        let key = (org.clone(), run_id.to_string());
        if let Some(tx) = state.runs.get(&key) {
            return Ok(Subscription {
                snapshots: tx.subscribe(),
                _slot: slot,
            });
        }
        let first = Arc::new(first);
        if first.ended() {
            self.inner.ended.insert(key, first.clone());
            return Ok(Subscription {
                snapshots: watch::channel(Some(first)).1,
                _slot: slot,
            });
        }
        let (tx, rx) = watch::channel(Some(first));
        state.runs.insert(key.clone(), tx.clone());
        tokio::spawn(self.inner.clone().follow(key, tx));
        Ok(Subscription {
            snapshots: rx,
            _slot: slot,
        })
    }
}

impl Inner {
    /// A place under the caps, or which cap is full.
    fn take_slot(self: &Arc<Self>, state: &mut State, org: &OrgSlug) -> Result<Slot, LiveError> {
        if state.streams >= self.settings.per_instance {
            return Err(LiveError::TooMany {
                scope: "this instance",
            });
        }
        let of_org = state.streams_per_org.get(org).copied().unwrap_or(0);
        if of_org >= self.settings.per_org {
            return Err(LiveError::TooMany { scope: "the org" });
        }
        state.streams += 1;
        *state.streams_per_org.entry(org.clone()).or_insert(0) += 1;
        Ok(Slot {
            inner: self.clone(),
            org: org.clone(),
        })
    }

    /// Reads the run every poll until it ends or nobody watches, sending each changed state.
    async fn follow(self: Arc<Self>, key: Key, tx: watch::Sender<Option<Arc<Snapshot>>>) {
        let (org, run_id) = &key;
        let mut version = tx.borrow().as_ref().map(|s| s.version());
        loop {
            tokio::time::sleep(self.settings.poll).await;
            // Under the lock that joining takes, so nobody joins a reader that is leaving.
            if self.leave_if_unwatched(&key, &tx) {
                return;
            }
            match self.read(org, run_id).await {
                Ok(Some(snapshot)) => {
                    let ended = snapshot.ended();
                    let now = Some(snapshot.version());
                    if now != version {
                        version = now;
                        tx.send_replace(Some(Arc::new(snapshot)));
                    }
                    if ended {
                        if let Some(last) = tx.borrow().clone() {
                            self.ended.insert(key.clone(), last);
                        }
                        break;
                    }
                }
                Ok(None) => {}
                // BigQuery failing: the watchers keep the last state; the next poll tries again.
                Err(e) => tracing::debug!(error = %e, run_id = %run_id, "live run read failed"),
            }
        }
        let mut state = self.state.lock().unwrap();
        if state.runs.get(&key).is_some_and(|t| t.same_channel(&tx)) {
            state.runs.remove(&key);
        }
    }

    /// Removes the run's reader when nobody watches it any more; true when it was removed.
    fn leave_if_unwatched(&self, key: &Key, tx: &watch::Sender<Option<Arc<Snapshot>>>) -> bool {
        let mut state = self.state.lock().unwrap();
        if tx.receiver_count() > 0 {
            return false;
        }
        if state.runs.get(key).is_some_and(|t| t.same_channel(tx)) {
            state.runs.remove(key);
        }
        true
    }

    async fn read(&self, org: &OrgSlug, run_id: &str) -> Result<Option<Snapshot>, ServiceError> {
        read(&self.warehouse, org, run_id, self.clock.now()).await
    }
}

/// A run and its step attempts, read now (the steps only once it has left the queue).
async fn read(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Snapshot>, ServiceError> {
    let Some(run) = runs::get(warehouse, org, run_id, now).await? else {
        return Ok(None);
    };
    let steps = if matches!(run.status.as_str(), "QUEUED" | "PENDING") {
        Vec::new()
    } else {
        runs::steps(warehouse, org, run_id, now).await?.0
    };
    Ok(Some(Snapshot { run, steps }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(status: &str, steps: &[(&str, i64, &str)]) -> Snapshot {
        Snapshot {
            run: RunView {
                run_id: "r".into(),
                pipeline_id: "p".into(),
                status: status.into(),
                trigger: None,
                triggered_by: None,
                parameters: serde_json::Value::Null,
                error_class: None,
                error_summary: None,
                created_at: None,
                started_at: None,
                updated_at: DateTime::from_timestamp(1_800_000_000, 0),
                ended_at: None,
                duration_ms: None,
                rerun_of: None,
                schedule_id: None,
                logical_time: None,
                backfill_id: None,
                queued_secs: Some(1.0),
                bytes_billed: None,
                estimated_cost_usd: None,
            },
            steps: steps
                .iter()
                .map(|(id, attempt, status)| StepAttempt {
                    step_id: (*id).into(),
                    attempt: *attempt,
                    status: (*status).into(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn a_version_changes_with_any_state_and_not_with_time_waited() {
        let queued = snapshot("QUEUED", &[]);
        let mut waited = queued.clone();
        waited.run.queued_secs = Some(30.0);
        assert_eq!(queued.version(), waited.version());
        let running = snapshot("RUNNING", &[("load", 1, "RUNNING")]);
        let done = snapshot("RUNNING", &[("load", 1, "SUCCEEDED")]);
        let retried = snapshot("RUNNING", &[("load", 1, "FAILED"), ("load", 2, "RUNNING")]);
        let versions = [&queued, &running, &done, &retried].map(Snapshot::version);
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The same state read again (on another instance too) has the same id.
        assert_eq!(
            done.version(),
            snapshot("RUNNING", &[("load", 1, "SUCCEEDED")]).version()
        );
    }
}
