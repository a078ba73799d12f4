//! Concurrency slots are owned by a [`SlotGuard`]: its `Drop` hands the release to the
//! [`Releaser`], so no path out of a run (success, error, panic, cancel, timeout, early return)
//! can keep a slot. `Drop` cannot wait, so the releaser works in the background: it hands each
//! release to the admission coordinator (which batches it with everything else waiting) and
//! retries with backoff until it lands (a release is never dropped: a slot held by nobody
//! would wait a whole lease for the reaper); shutdown waits at most a moment for it to be idle.
//! A run that never started (its trigger was answered with an error) is released with a
//! refund: its daily and monthly count is given back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Notify, mpsc};

use crate::admission::{Admission, AdmissionError};
use crate::domain::OrgSlug;

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
    pub fn start(admission: Admission) -> Self {
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
                                .with_min_delay(Duration::from_millis(200))
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
