//! Live runs: what an instance's watchers of a run are pushed (`GET …/runs/{run_id}/events`).
//!
//! Every run watched on this instance is read by one tail task, whatever the number of runs and
//! of their watchers: every `LIVE_POLL_MS`, one query reads the state of every watched run
//! (`runs/by_ids.sql`, per run the answer of `GET …/runs/{run_id}`) and one more the step
//! attempts of those that left the queue (`runs/steps_by_runs.sql`, per run the answer of
//! `…/steps`), only partitions since the oldest watched run was created. While nothing is
//! watched the task is gone: an idle instance sends no query. Each watcher holds a `watch`
//! receiver of the latest snapshot, so a slow reader skips to the newest state instead of
//! buffering. A run leaves the tail with its end (its last snapshot stays for the watchers, and
//! in the ended cache) or when its last watcher has gone. Streams are capped per org and per
//! instance ([`LiveError::TooMany`], answered 503 with Retry-After).
//!
//! Cost: at most two queries per poll per instance (120 a minute at the 1 s default), for one
//! watched run or a thousand, and none while nothing is watched.

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
    runs: HashMap<Key, Watched>,
    streams_per_org: HashMap<OrgSlug, usize>,
    streams: usize,
    /// The tail task runs (it stops, under this lock, once nothing is watched).
    tailing: bool,
}

/// A run the tail reads.
struct Watched {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// No event of the run is older (its creation, a minute's margin in the read): the first
    /// partition its reads need.
    since: DateTime<Utc>,
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
        if let Some(watched) = state.runs.get(&key) {
            let snapshots = watched.tx.subscribe();
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
        if let Some(watched) = state.runs.get(&key) {
            return Ok(Subscription {
                snapshots: watched.tx.subscribe(),
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
        let since = first
            .run
            .created_at
            .or(first.run.updated_at)
            .unwrap_or_else(|| {
                self.inner.clock.now() - chrono::Duration::days(runs::MAX_WINDOW_DAYS)
            });
        let (tx, rx) = watch::channel(Some(first));
        state.runs.insert(key, Watched { tx, since });
        if !state.tailing {
            state.tailing = true;
            tokio::spawn(self.inner.clone().tail());
        }
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

    /// Reads every watched run each poll, sending each changed state, until nothing is
    /// watched.
    /// Polls start every `LIVE_POLL_MS` (a poll slower than that delays the next, never two at
    /// once).
    async fn tail(self: Arc<Self>) {
        let mut every = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.poll,
            self.settings.poll,
        );
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(watched) = self.watched() else {
                return;
            };
            self.poll(watched).await;
        }
    }

    /// The runs somebody watches, with the first partition their reads need; the runs nobody
    /// watches any more leave. `None` (and the tail stops) when nothing is left, under the
    /// lock that subscribing takes, so a run watched from now on starts a new tail.
    fn watched(&self) -> Option<(Vec<Key>, DateTime<Utc>)> {
        let mut state = self.state.lock().unwrap();
        state.runs.retain(|_, w| w.tx.receiver_count() > 0);
        if state.runs.is_empty() {
            state.tailing = false;
            return None;
        }
        let since = state.runs.values().map(|w| w.since).min()?;
        Some((state.runs.keys().cloned().collect(), since))
    }

    /// One look at the watched runs: their states in one query, the step attempts of those that
    /// left the queue in another. A failed read leaves the watchers with the last state; the
    /// next poll tries again.
    async fn poll(&self, (keys, since): (Vec<Key>, DateTime<Utc>)) {
        let now = self.clock.now();
        let mut views = match runs::get_many(&self.warehouse, &keys, since, now).await {
            Ok(views) => views,
            Err(e) => {
                log_failed_read(&e, keys.len(), "live runs read failed");
                return;
            }
        };
        let started: Vec<Key> = views
            .iter()
            .filter(|(_, run)| has_steps(run))
            .map(|(key, _)| key.clone())
            .collect();
        let mut steps = match runs::steps_many(&self.warehouse, &started, since, now).await {
            Ok(steps) => Some(steps),
            Err(e) => {
                log_failed_read(&e, started.len(), "live steps read failed");
                None
            }
        };
        let mut ended = Vec::new();
        {
            let state = self.state.lock().unwrap();
            for key in keys {
                let (Some(run), Some(watched)) = (views.remove(&key), state.runs.get(&key)) else {
                    continue;
                };
                let steps = if has_steps(&run) {
                    match steps.as_mut() {
                        Some(by_run) => by_run.remove(&key).unwrap_or_default(),
                        // Without its steps this state would show none: the last one stays.
                        None => continue,
                    }
                } else {
                    Vec::new()
                };
                let snapshot = Snapshot { run, steps };
                let changed = watched
                    .tx
                    .borrow()
                    .as_ref()
                    .is_none_or(|last| last.version() != snapshot.version());
                let is_end = snapshot.ended();
                if changed {
                    watched.tx.send_replace(Some(Arc::new(snapshot)));
                }
                if is_end {
                    ended.push(key);
                }
            }
        }
        if ended.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap();
        for key in ended {
            if let Some(watched) = state.runs.remove(&key) {
                if let Some(last) = watched.tx.borrow().clone() {
                    self.ended.insert(key, last);
                }
            }
        }
    }

    async fn read(&self, org: &OrgSlug, run_id: &str) -> Result<Option<Snapshot>, ServiceError> {
        read(&self.warehouse, org, run_id, self.clock.now()).await
    }
}

/// Whether the run has left the queue and its admission, so it may have step attempts to read.
fn has_steps(run: &RunView) -> bool {
    !matches!(run.status.as_str(), "QUEUED" | "PENDING")
}

/// BigQuery away or busy is expected now and then (debug: the next poll tries again); anything
/// else (a query BigQuery refuses) would fail every poll, and is a warning.
fn log_failed_read(e: &ServiceError, runs: usize, what: &'static str) {
    match e {
        ServiceError::Warehouse(w) if w.is_unavailable() => {
            tracing::debug!(error = %e, runs, "{what}")
        }
        _ => tracing::warn!(error = %e, runs, "{what}"),
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
    let steps = if has_steps(&run) {
        runs::steps(warehouse, org, run_id, now).await?.0
    } else {
        Vec::new()
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
