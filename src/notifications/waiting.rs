//! Queued too long: the instance whose admission batch put a run in its org's queue (it
//! announces [`ENQUEUED`](super::ENQUEUED)), and only that instance, watches how long the run
//! waits there. Every [`LOOK_EVERY`], the watched runs that have waited at least the
//! `queued_after_seconds` of a channel that asks for `run.queued_too_long` and was not told yet
//! are looked up with one bounded read of their orgs' queues (the quota rows the admission
//! batches keep): those still queued are alerted, those gone are forgotten. A run this instance
//! sees start, end or be cancelled is forgotten at once. No read while no watched run is due;
//! never one read per run.
//!
//! The watch lives in the memory of the instance that queued the run: if that instance stops,
//! the run's wait is no longer watched (documented; the run itself is not affected).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::run_log::RunEvent;

/// How often the watched runs are looked at (no read unless one is due).
pub const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Runs watched at once at most; past it a newly queued run is not watched (and a warning says
/// so). Queues are bounded per org, so this is only reached by thousands of queued runs.
pub const MAX_WATCHED: usize = 10_000;
/// A watched run is forgotten after this long (it has been alerted by then or nobody asked).
const FORGET_AFTER: Duration = Duration::from_secs(26 * 3600);

struct Waiting {
    /// The ENQUEUED announcement (org, pipeline, links).
    event: RunEvent,
    since: Instant,
    /// Channels already alerted for this run.
    told: HashSet<String>,
}

/// A watched run as one look sees it.
pub struct Watched {
    pub event: RunEvent,
    pub waited_secs: i64,
    pub told: HashSet<String>,
}

#[derive(Default)]
pub struct Watch {
    runs: Mutex<HashMap<String, Waiting>>,
}

impl Watch {
    /// This instance queued the run: watch its wait from now.
    pub fn enqueued(&self, event: RunEvent) {
        let mut runs = self.runs.lock().expect("watched runs");
        if runs.len() >= MAX_WATCHED && !runs.contains_key(&event.run_id) {
            tracing::warn!(
                run_id = event.run_id,
                "too many queued runs watched; this one's wait is not alerted"
            );
            return;
        }
        runs.entry(event.run_id.clone()).or_insert(Waiting {
            event,
            since: Instant::now(),
            told: HashSet::new(),
        });
    }

    /// The run left the queue (it started, ended or was cancelled, seen here or read).
    pub fn forget(&self, run_id: &str) {
        self.runs.lock().expect("watched runs").remove(run_id);
    }

    /// A channel was alerted for the run.
    pub fn told(&self, run_id: &str, channel_id: &str) {
        if let Some(w) = self.runs.lock().expect("watched runs").get_mut(run_id) {
            w.told.insert(channel_id.to_string());
        }
    }

    /// Every watched run, oldest first (and the ones watched too long dropped).
    pub fn look(&self) -> Vec<Watched> {
        let mut runs = self.runs.lock().expect("watched runs");
        runs.retain(|_, w| w.since.elapsed() < FORGET_AFTER);
        let mut seen: Vec<Watched> = runs
            .values()
            .map(|w| Watched {
                event: w.event.clone(),
                waited_secs: w.since.elapsed().as_secs() as i64,
                told: w.told.clone(),
            })
            .collect();
        seen.sort_by_key(|w| std::cmp::Reverse(w.waited_secs));
        seen
    }

    pub fn len(&self) -> usize {
        self.runs.lock().expect("watched runs").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(run_id: &str) -> RunEvent {
        RunEvent {
            run_id: run_id.into(),
            org_slug: "acme".into(),
            pipeline_id: "a/b".into(),
            status: super::super::ENQUEUED.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_queued_run_is_watched_once_until_it_leaves_the_queue_and_remembers_who_was_told() {
        let watch = Watch::default();
        watch.enqueued(event("r1"));
        watch.enqueued(event("r1"));
        watch.enqueued(event("r2"));
        assert_eq!(watch.len(), 2);
        watch.told("r1", "c1");
        let seen = watch.look();
        let r1 = seen.iter().find(|w| w.event.run_id == "r1").unwrap();
        assert_eq!(r1.told, HashSet::from(["c1".to_string()]));
        assert!(r1.waited_secs < 5);
        watch.forget("r1");
        assert_eq!(watch.len(), 1);
        watch.told("r1", "c2");
        assert_eq!(watch.len(), 1, "a forgotten run is not brought back");
    }
}
