//! Concurrency slots are owned by a [`SlotGuard`]: its `Drop` hands the release to the
//! [`Releaser`], so no path out of a run (success, error, panic, cancel, timeout, early return)
//! can keep a slot. `Drop` cannot wait, so the releaser works in the background: it hands each
//! release to the admission coordinator (which batches it with everything else waiting) and
//! retries with backoff until it lands (a release is never dropped: a slot held by nobody
//! would wait a whole lease for the reaper); shutdown waits at most a moment for it to be idle.
//! A run that never started (its trigger was answered with an error) is released with a
//! refund: its daily and monthly count is given back.
//!
//! Where releases go is a [`SlotStore`]: the admission coordinator in the service, an in-memory
//! store in this module's specs (no BigQuery needed to check what a guard does).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Notify, mpsc};

use crate::admission::{Admission, AdmissionError};
use crate::domain::OrgSlug;

/// What frees a slot: the admission coordinator (group-committed into `org_quota_state`).
pub trait SlotStore: Clone + Send + Sync + 'static {
    /// Frees the run's slot (with its count given back when `refund`, and `billed` bytes
    /// counted against the org's budget). A failure is retried by the releaser until it lands
    /// or the store says it has stopped ([`AdmissionError::Stopped`]).
    fn release(
        &self,
        org: &OrgSlug,
        run_id: &str,
        refund: bool,
        billed: i64,
    ) -> impl std::future::Future<Output = Result<(), AdmissionError>> + Send;
}

impl SlotStore for Admission {
    fn release(
        &self,
        org: &OrgSlug,
        run_id: &str,
        refund: bool,
        billed: i64,
    ) -> impl std::future::Future<Output = Result<(), AdmissionError>> + Send {
        Admission::release(self, org, run_id, refund, billed)
    }
}

/// One slot to free: the run, whether its count is given back, and the bytes it billed.
struct Release {
    org: OrgSlug,
    run_id: String,
    refund: bool,
    billed: i64,
}

#[derive(Clone)]
pub struct Releaser {
    tx: mpsc::UnboundedSender<Release>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Releaser {
    /// Starts the background releaser.
    pub fn start(store: impl SlotStore) -> Self {
        Self::start_with(store, Duration::from_millis(200))
    }

    /// [`Releaser::start`] with the first wait before a failed release is sent again.
    fn start_with(admission: impl SlotStore, first_retry: Duration) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Release>();
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let (p, n) = (pending.clone(), idle.clone());
        tokio::spawn(async move {
            while let Some(release) = rx.recv().await {
                let (admission, p, n) = (admission.clone(), p.clone(), n.clone());
                tokio::spawn(async move {
                    let Release {
                        org,
                        run_id,
                        refund,
                        billed,
                    } = release;
                    let attempt = || admission.release(&org, &run_id, refund, billed);
                    let result = attempt
                        .retry(
                            ExponentialBuilder::default()
                                .with_min_delay(first_retry)
                                .with_max_delay(Duration::from_secs(10))
                                .with_jitter()
                                .without_max_times(),
                        )
                        // Only a stopped coordinator (the process is exiting) ends the retries.
                        .when(|e| !matches!(e, AdmissionError::Stopped))
                        .notify(|e, after| {
                            tracing::warn!(error = %e, retry_in_ms = after.as_millis() as u64, "slot release failed; retrying")
                        })
                        .await;
                    match result {
                        Ok(()) => {
                            tracing::info!(org = %org, run_id, refund, billed, "slot released")
                        }
                        Err(e) => tracing::error!(
                            org = %org, run_id, error = %e,
                            "slot release failed at exit; the reaper will free it after the lease"
                        ),
                    }
                    if p.fetch_sub(1, Ordering::SeqCst) == 1 {
                        n.notify_waiters();
                    }
                });
            }
        });
        Self { tx, pending, idle }
    }

    /// Frees a slot of a run whose bytes are not known here (the reaper's, a queued run's):
    /// its count stays.
    pub fn release(&self, org: OrgSlug, run_id: String) {
        self.send(Release {
            org,
            run_id,
            refund: false,
            billed: 0,
        });
    }

    /// Frees a slot of a run that never started, giving its count back.
    pub fn refund(&self, org: OrgSlug, run_id: String) {
        self.send(Release {
            org,
            run_id,
            refund: true,
            billed: 0,
        });
    }

    fn send(&self, release: Release) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(release).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("releaser stopped; the reaper will free the slot");
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Waits until no release is in flight, at most `timeout`. `true` when idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.pending() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Holds one run's slot; releases it when dropped.
pub struct SlotGuard {
    releaser: Releaser,
    org: OrgSlug,
    run_id: String,
    /// The run never started: give its count back with the slot.
    refund: bool,
    /// Bytes the run's jobs billed, counted against the org's budget with the release.
    billed: i64,
}

impl SlotGuard {
    pub fn new(releaser: Releaser, org: OrgSlug, run_id: String) -> Self {
        Self {
            releaser,
            org,
            run_id,
            refund: false,
            billed: 0,
        }
    }

    /// The bytes the run's jobs billed, released with the slot.
    pub fn billed(&mut self, bytes: i64) {
        self.billed = bytes;
    }

    /// Drops the guard for a run that never started (its trigger is answered with an error):
    /// the slot is released and the run's count given back.
    pub fn refund(mut self) {
        self.refund = true;
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.releaser.send(Release {
            org: self.org.clone(),
            run_id: std::mem::take(&mut self.run_id),
            refund: self.refund,
            billed: self.billed,
        });
    }
}

#[cfg(test)]
mod tests {
    //! The guard against an in-memory slot store: what reaches the store, whatever way the run
    //! leaves.

    use std::sync::Mutex;

    use super::*;

    /// (org, run id, refund, billed) of each release that landed.
    type Landed = Vec<(String, String, bool, i64)>;

    #[derive(Clone, Default)]
    struct MemoryStore {
        landed: Arc<Mutex<Landed>>,
        /// Attempts made, failed ones included.
        attempts: Arc<AtomicUsize>,
        /// The first this many attempts fail as BigQuery busy would.
        failing: Arc<AtomicUsize>,
        stopped: bool,
    }

    impl SlotStore for MemoryStore {
        fn release(
            &self,
            org: &OrgSlug,
            run_id: &str,
            refund: bool,
            billed: i64,
        ) -> impl std::future::Future<Output = Result<(), AdmissionError>> + Send {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let result = if self.stopped {
                Err(AdmissionError::Stopped)
            } else if self
                .failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                Err(AdmissionError::TimedOut)
            } else {
                self.landed.lock().unwrap().push((
                    org.as_str().to_string(),
                    run_id.to_string(),
                    refund,
                    billed,
                ));
                Ok(())
            };
            std::future::ready(result)
        }
    }

    fn org() -> OrgSlug {
        OrgSlug::parse("guard-co").unwrap()
    }

    fn releaser(store: &MemoryStore) -> Releaser {
        Releaser::start_with(store.clone(), Duration::from_millis(1))
    }

    #[tokio::test]
    async fn a_run_that_ends_releases_its_slot_once_with_the_bytes_it_billed() {
        let store = MemoryStore::default();
        let releaser = releaser(&store);
        let mut guard = SlotGuard::new(releaser.clone(), org(), "r1".into());
        guard.billed(42);
        drop(guard);
        assert!(releaser.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(
            *store.landed.lock().unwrap(),
            vec![("guard-co".into(), "r1".into(), false, 42)]
        );
    }

    #[tokio::test]
    async fn a_run_that_never_started_gives_its_count_back_with_its_slot() {
        let store = MemoryStore::default();
        let releaser = releaser(&store);
        SlotGuard::new(releaser.clone(), org(), "r2".into()).refund();
        assert!(releaser.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(
            *store.landed.lock().unwrap(),
            vec![("guard-co".into(), "r2".into(), true, 0)]
        );
    }

    #[tokio::test]
    async fn a_run_that_panics_or_returns_early_still_releases_its_slot() {
        let store = MemoryStore::default();
        let releaser = releaser(&store);
        let guard = SlotGuard::new(releaser.clone(), org(), "panics".into());
        let task = tokio::spawn(async move {
            let _held = guard;
            panic!("the run's task failed");
        });
        assert!(task.await.unwrap_err().is_panic());
        let early = |fail: bool| -> Result<(), &'static str> {
            let _held = SlotGuard::new(releaser.clone(), org(), "returns".into());
            if fail {
                return Err("an early return");
            }
            Ok(())
        };
        assert_eq!(early(true), Err("an early return"));
        assert!(releaser.wait_idle(Duration::from_secs(5)).await);
        let mut landed: Vec<String> = store
            .landed
            .lock()
            .unwrap()
            .iter()
            .map(|(_, run, _, _)| run.clone())
            .collect();
        landed.sort();
        assert_eq!(landed, ["panics", "returns"]);
    }

    #[tokio::test]
    async fn a_release_that_fails_is_sent_again_until_it_lands_and_is_pending_meanwhile() {
        let store = MemoryStore {
            failing: Arc::new(AtomicUsize::new(3)),
            ..Default::default()
        };
        let releaser = releaser(&store);
        drop(SlotGuard::new(releaser.clone(), org(), "r3".into()));
        assert_eq!(releaser.pending(), 1);
        assert!(releaser.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(releaser.pending(), 0);
        assert_eq!(
            store.attempts.load(Ordering::SeqCst),
            4,
            "three failures, then it landed"
        );
        assert_eq!(store.landed.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_stopped_store_ends_the_retries_and_the_releaser_is_idle() {
        let store = MemoryStore {
            stopped: true,
            ..Default::default()
        };
        let releaser = releaser(&store);
        drop(SlotGuard::new(releaser.clone(), org(), "r4".into()));
        assert!(releaser.wait_idle(Duration::from_secs(5)).await);
        assert_eq!(store.attempts.load(Ordering::SeqCst), 1);
        assert!(store.landed.lock().unwrap().is_empty());
    }
}
