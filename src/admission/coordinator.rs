//! The coordinator task: takes everything that waited, sends one statement, answers each
//! waiter. At most one mutating statement of this instance is in flight on the quota table.
//! The read of a batch's decisions runs beside the next batch's UPDATE (a read is not a
//! mutating statement), so a trigger waits for at most the batch in flight plus its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::batch::{Batch, OrgOutcome, ReleaseEntry, ReserveEntry, Taken, decide};
use super::{AdmissionError, Op, Reservation};
use crate::clock::SharedClock;
use crate::domain::OrgSlug;
use crate::metrics::Metrics;
use crate::warehouse::{Param, Warehouse, sql};

/// How long releases with nothing else to send wait for a reservation to ride with (and for
/// the releases of the runs that end meanwhile: a queue drains faster in batches of several
/// releases than in one statement per release; measured with `make bench-scale`).
const RELEASE_LINGER: Duration = Duration::from_secs(1);
/// At shutdown, releases are gathered until none has come for this long (at most
/// [`SHUTDOWN_GATHER_MAX`]): the runs stopped together end within moments of each other, and
/// their slots are freed by one statement instead of one for the first and one for the rest
/// (two DML in a row do not fit the kill window's budget for releases on BigQuery).
const SHUTDOWN_GATHER_QUIET: Duration = Duration::from_millis(150);
const SHUTDOWN_GATHER_MAX: Duration = Duration::from_millis(600);
/// How long the coordinator's own releases wait before they are sent again after their batch
/// failed (they are never dropped): doubled for each batch that failed in a row, up to
/// [`RELEASE_RETRY_MAX`], so an outage is not answered with a statement every half second.
const RELEASE_RETRY: Duration = Duration::from_millis(500);
const RELEASE_RETRY_MAX: Duration = Duration::from_secs(16);
/// The waits before the read-backs of a batch whose outcome is unknown (its statement failed,
/// or the read of its decisions did): 1 s, doubled up to 16 s, for as long as what it admitted
/// from a queue could still be launched (a lease of the batch, less the BigQuery deadline).
const READ_BACK_FIRST: Duration = Duration::from_secs(1);
const READ_BACK_MAX: Duration = Duration::from_secs(16);

/// A batch id that starts with the batch's time (`<unix micros>_<uuid>`): the mark it leaves on
/// each run it admits dates that slot for the reaper (`sql/executor/stale_runs.sql`).
pub(super) fn batch_id(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}_{}",
        now.timestamp_micros(),
        uuid::Uuid::new_v4().simple()
    )
}

pub(super) struct Coordinator {
    pub answerer: Answerer,
    pub clock: SharedClock,
    pub max_batch: usize,
    pub waiting: Arc<AtomicUsize>,
    /// Set at shutdown: releases no longer linger.
    pub hurry: Arc<std::sync::atomic::AtomicBool>,
    pub metrics: Arc<Metrics>,
    pub rx: mpsc::UnboundedReceiver<Op>,
}

/// The warehouse and what answering needs, shared with the spawned read of a batch's
/// decisions.
#[derive(Clone)]
pub(super) struct Answerer {
    pub warehouse: Warehouse,
    /// For the coordinator's own clean-up releases (weak: the loop ends when every handle is
    /// gone).
    pub requeue: mpsc::WeakUnboundedSender<Op>,
    pub concurrent_retry_after_secs: u64,
    /// Where the runs this instance admits from a queue go (the executor's queue starter).
    pub from_queue: mpsc::UnboundedSender<super::FromQueue>,
    pub clock: SharedClock,
    /// An admission answered later than this after its batch is not launched (see
    /// `AdmissionSettings::launch_within`).
    pub launch_within: chrono::Duration,
    /// Batches that failed in a row (0 after any batch that succeeded): the coordinator's own
    /// releases wait longer before they are sent again ([`release_retry_after`]).
    pub failed_in_a_row: Arc<std::sync::atomic::AtomicU32>,
    /// One read-back in flight at a time: while BigQuery fails, every failed batch would
    /// otherwise read on its own, each read running on after its deadline.
    pub read_back_gate: Arc<tokio::sync::Semaphore>,
}

/// The wait before a failed batch's own releases are sent again, after `failed_in_a_row`
/// failed batches: 0.5 s, 1 s, 2 s, … up to [`RELEASE_RETRY_MAX`].
pub(super) fn release_retry_after(failed_in_a_row: u32) -> Duration {
    crate::clock::doubling(
        RELEASE_RETRY,
        RELEASE_RETRY_MAX,
        failed_in_a_row.saturating_sub(1),
    )
}

pub(super) fn spawn(coordinator: Coordinator) {
    tokio::spawn(coordinator.run());
}

impl Coordinator {
    async fn run(mut self) {
        let mut deferred: Vec<Op> = Vec::new();
        loop {
            let mut ops = std::mem::take(&mut deferred);
            if ops.is_empty() {
                match self.rx.recv().await {
                    Some(op) => self.receive(op, &mut ops),
                    None => return,
                }
            }
            self.drain(&mut ops);
            // Nobody waits on a release: give a reservation a moment to come and carry it, so a
            // release costs no statement of its own and does not hold the table when a trigger
            // arrives.
            if ops.iter().all(|op| matches!(op, Op::Release { .. })) {
                if self.hurry.load(Ordering::SeqCst) {
                    self.gather_releases(&mut ops).await;
                } else if let Ok(Some(op)) =
                    tokio::time::timeout(RELEASE_LINGER, self.rx.recv()).await
                {
                    self.receive(op, &mut ops);
                    self.drain(&mut ops);
                }
            }

            let taken = Taken::from_ops(ops);
            deferred = taken.deferred;
            if taken.abandoned > 0 {
                tracing::info!(
                    abandoned = taken.abandoned,
                    "reservations whose trigger stopped waiting left out of the batch"
                );
                for _ in 0..taken.abandoned {
                    self.metrics.admission_refused("abandoned");
                }
            }
            for write in taken.writes {
                let result = self
                    .answerer
                    .warehouse
                    .execute(write.statement, &write.params)
                    .await
                    .map_err(AdmissionError::from);
                let _ = write.reply.send(result);
            }
            if !taken.batch.is_empty() {
                self.commit(taken.batch).await;
            }
        }
    }

    /// At shutdown: takes the releases that follow within [`SHUTDOWN_GATHER_QUIET`] of each
    /// other, for at most [`SHUTDOWN_GATHER_MAX`], so that they share one statement.
    async fn gather_releases(&mut self, ops: &mut Vec<Op>) {
        let until = tokio::time::Instant::now() + SHUTDOWN_GATHER_MAX;
        while ops.len() < self.max_batch {
            let quiet = (tokio::time::Instant::now() + SHUTDOWN_GATHER_QUIET).min(until);
            match tokio::time::timeout_at(quiet, self.rx.recv()).await {
                Ok(Some(op)) => {
                    self.receive(op, ops);
                    self.drain(ops);
                }
                Ok(None) | Err(_) => break,
            }
        }
        tracing::info!(
            releases = ops.len(),
            "shutting down: releases gathered into one statement"
        );
    }

    fn receive(&self, op: Op, ops: &mut Vec<Op>) {
        if matches!(op, Op::Reserve { .. }) {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        ops.push(op);
    }

    /// Takes whatever else is waiting, up to the batch size.
    fn drain(&mut self, ops: &mut Vec<Op>) {
        while ops.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(op) => self.receive(op, ops),
                Err(_) => break,
            }
        }
    }

    /// Sends the batch's UPDATE and answers its releases; its reservations are answered from
    /// the row count when that suffices, else by a read spawned beside the next batch.
    async fn commit(&self, mut batch: Batch) {
        let answerer = &self.answerer;
        let now = self.clock.now();
        let batch_id = batch_id(now);
        self.metrics
            .admission_batch(batch.reserves.len(), batch.releases.len());
        let sent = std::time::Instant::now();
        let result = answerer
            .warehouse
            .execute(&sql::QUOTA_ADMIT_BATCH, &batch.params(&batch_id, now))
            .await;
        tracing::debug!(
            reservations = batch.reserves.len(),
            releases = batch.releases.len(),
            drains = batch.drains.len(),
            took_ms = sent.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "admission batch"
        );
        let affected = match result {
            Ok(n) => {
                answerer.failed_in_a_row.store(0, Ordering::SeqCst);
                n
            }
            Err(e) => {
                answerer.failed_in_a_row.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(
                    error = %e,
                    reservations = batch.reserves.len(),
                    releases = batch.releases.len(),
                    "admission batch failed"
                );
                let failure = AdmissionError::from(e);
                let orgs = batch.orgs();
                let from_queue = batch.may_admit_from_queue();
                answerer.retry_or_answer(batch.releases, failure.clone());
                // The statement may have committed with its answer lost: free whatever it
                // might have admitted, with its count, as its trigger is answered 503
                // (refunding an id that holds no slot changes nothing).
                let mut reserved = HashSet::new();
                for entry in batch.reserves {
                    reserved.insert(entry.run_id.clone());
                    answerer.answer(entry, Err(failure.clone()), true, &batch_id, now);
                }
                // And what it may have admitted from a queue is read back later.
                if from_queue {
                    let answerer = answerer.clone();
                    tokio::spawn(async move {
                        answerer.read_back(orgs, reserved, batch_id, now).await;
                    });
                }
                return;
            }
        };
        let admitted_all = batch.admitted_all(affected);
        // A batch with releases is read even when no row changed: a statement retried after a
        // lost answer finds its first try's work done (0 rows), and what that try admitted from
        // a queue is known only by the batch's marks. (A drain that changed nothing admitted
        // nothing, or the queue poll finds the org again.)
        let from_queue =
            (affected > 0 || !batch.releases.is_empty()) && batch.may_admit_from_queue();
        // Every org the batch touched, releasing ones included (they may admit from a queue).
        let orgs = batch.orgs();
        answer_releases(std::mem::take(&mut batch.releases), Ok(()));
        if admitted_all {
            // The row count tells every reservation's answer: none waits for the read of what
            // the batch's releases admitted from a queue, which only the starter needs.
            let owned: HashSet<String> = batch.reserves.iter().map(|e| e.run_id.clone()).collect();
            for entry in batch.reserves {
                answerer.answer(entry, Ok(Reservation::Admitted), false, &batch_id, now);
            }
            if from_queue {
                let answerer = answerer.clone();
                tokio::spawn(async move {
                    answerer.read_for_starter(orgs, owned, batch_id, now).await;
                });
            }
            return;
        }
        if batch.reserves.is_empty() && !from_queue {
            return;
        }
        let answerer = answerer.clone();
        tokio::spawn(async move {
            answerer
                .read_and_answer(batch, from_queue, orgs, batch_id, now)
                .await;
        });
    }
}

fn answer_releases(releases: Vec<ReleaseEntry>, outcome: Result<(), AdmissionError>) {
    for reply in releases.into_iter().flat_map(|r| r.replies) {
        let _ = reply.send(outcome.clone());
    }
}

impl Answerer {
    /// Reads the batch's decisions, answers its reservations and hands what it admitted from a
    /// queue to the starter. `from_queue`: the batch released or drained (its releases are
    /// already answered and gone from `batch`).
    async fn read_and_answer(
        &self,
        batch: Batch,
        from_queue: bool,
        orgs: Vec<String>,
        batch_id: String,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        tracing::debug!(batch_id, "reading the batch's decisions");
        let read = self.outcome(&orgs, &batch_id).await;
        match read {
            Ok(rows) => {
                let by_org: HashMap<&str, &OrgOutcome> =
                    rows.iter().map(|r| (r.org_slug.as_str(), r)).collect();
                let decided: Vec<(ReserveEntry, Reservation)> = batch
                    .reserves
                    .into_iter()
                    .map(|entry| {
                        let row = by_org.get(entry.org.as_str()).copied();
                        let decision = decide(
                            row,
                            (&entry.run_id, entry.when_busy, entry.tick.is_some()),
                            now,
                            self.concurrent_retry_after_secs,
                        );
                        (entry, decision)
                    })
                    .collect();
                // Admitted by this batch but owned by no request here (a run from a queue, or
                // a queued tick another instance fired): the queue starter owns it.
                let owned: HashSet<String> = decided
                    .iter()
                    .filter(|(_, d)| *d == Reservation::Admitted)
                    .map(|(e, _)| e.run_id.clone())
                    .collect();
                self.hand_to_starter(&rows, &owned, &batch_id, now);
                for (entry, decision) in decided {
                    self.answer(entry, Ok(decision), false, &batch_id, now);
                }
            }
            Err(e) => {
                // Its reservations are answered 503 and refunded; what it admitted from a queue
                // is read back later.
                tracing::warn!(error = %e, "reading an admission batch's decisions failed");
                let failure = AdmissionError::from(e);
                let mut reserved = HashSet::new();
                for entry in batch.reserves {
                    reserved.insert(entry.run_id.clone());
                    self.answer(entry, Err(failure.clone()), true, &batch_id, now);
                }
                if !from_queue {
                    return;
                }
                let this = self.clone();
                tokio::spawn(async move {
                    this.read_back(orgs, reserved, batch_id, now).await;
                });
            }
        }
    }

    /// Reads what batch `batch_id` admitted or refused from its orgs' queues and hands it to
    /// the starter (`owned`: the batch's own reservations, answered already); read back later
    /// if this read fails.
    async fn read_for_starter(
        &self,
        orgs: Vec<String>,
        owned: HashSet<String>,
        batch_id: String,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        match self.outcome(&orgs, &batch_id).await {
            Ok(rows) => self.hand_to_starter(&rows, &owned, &batch_id, now),
            Err(e) => {
                tracing::warn!(error = %e, "reading what an admission batch admitted from a queue failed");
                self.read_back(orgs, owned, batch_id, now).await;
            }
        }
    }

    /// The decisions of batch `batch_id` for `orgs` (`sql/quota/batch_outcome.sql`).
    async fn outcome(
        &self,
        orgs: &[String],
        batch_id: &str,
    ) -> Result<Vec<OrgOutcome>, crate::warehouse::WarehouseError> {
        self.warehouse
            .query::<OrgOutcome>(
                &sql::QUOTA_BATCH_OUTCOME,
                &[
                    Param::string("batch_id", batch_id),
                    Param::string_array("orgs", orgs.to_vec()),
                    Param::int64("max_orgs", orgs.len() as i64),
                ],
            )
            .await
    }

    /// A batch whose outcome is unknown (its statement failed, or the read of its decisions
    /// did) may still have admitted queued runs (a statement that committed with its answer
    /// lost): its decisions are read again by its batch id (waits from [`READ_BACK_FIRST`],
    /// doubled up to [`READ_BACK_MAX`]) until a read answers or what it admitted is too late to
    /// launch, and what it admitted or refused from a queue goes to the queue starter. Its own
    /// reservations (`reserved`) were answered 503 and refunded. Only if BigQuery fails every
    /// read for the whole launch window does the reaper free those slots, a lease after the
    /// batch.
    async fn read_back(
        &self,
        orgs: Vec<String>,
        reserved: HashSet<String>,
        batch_id: String,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut tries = 0;
        loop {
            tokio::time::sleep(crate::clock::doubling(
                READ_BACK_FIRST,
                READ_BACK_MAX,
                tries,
            ))
            .await;
            tries += 1;
            if self.clock.now() - now > self.launch_within {
                break;
            }
            let read = {
                let Ok(_turn) = self.read_back_gate.acquire().await else {
                    return;
                };
                self.outcome(&orgs, &batch_id).await
            };
            match read {
                Ok(rows) => {
                    self.hand_to_starter(&rows, &reserved, &batch_id, now);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, batch_id, tries, "reading back an admission batch failed")
                }
            }
        }
        tracing::error!(
            batch_id,
            "an admission batch could not be read back within its launch window: the reaper frees what it admitted from a queue after the lease"
        );
    }

    /// Hands the runs a batch admitted from a queue (every admitted id not in `owned`) and the
    /// queued runs it refused to the queue starter.
    fn hand_to_starter(
        &self,
        rows: &[OrgOutcome],
        owned: &HashSet<String>,
        batch_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        // Admitted by this batch but owned by no request here (a run from a queue, or
        // a queued tick another instance fired): the queue starter owns it.
        for row in rows {
            let Ok(org) = OrgSlug::parse(&row.org_slug) else {
                continue;
            };
            for run_id in &row.admitted {
                if owned.contains(run_id) {
                    continue;
                }
                tracing::info!(org = %org, run_id = %run_id, "admitted from the queue");
                let run = super::FromQueue {
                    org: org.clone(),
                    run_id: run_id.clone(),
                    batch_at: now,
                    refused: None,
                };
                if self.from_queue.send(run).is_err() {
                    // Nobody here can start it (shutdown): it never ran.
                    self.release_later(
                        org.clone(),
                        run_id.clone(),
                        true,
                        Some(batch_id.to_string()),
                    );
                }
            }
            // Taken out of the queue by a spent bytes budget: the starter records them
            // REFUSED (they hold no slot and no count).
            for run_id in &row.refused {
                let limit = match decide(
                    Some(row),
                    (run_id, super::WhenBusy::Queue, false),
                    now,
                    self.concurrent_retry_after_secs,
                ) {
                    Reservation::Refused { limit, .. } => limit,
                    _ => super::Limit::BytesDaily,
                };
                tracing::info!(org = %org, run_id = %run_id, limit = limit.as_str(), "refused in the queue");
                let _ = self.from_queue.send(super::FromQueue {
                    org: org.clone(),
                    run_id: run_id.clone(),
                    batch_at: now,
                    refused: Some(limit),
                });
            }
        }
    }

    /// Answers every request for one run id. An admitted run belongs to the first request
    /// still waiting; the others learn it is already active. A run admitted or queued with
    /// nobody left to own it (the trigger timed out and was answered 503), or possibly admitted
    /// by a batch whose outcome is unknown (`release_unless_owned`), has its slot (or place in
    /// the queue) released and its count given back: a run no client was told of is not
    /// counted. The release names `batch_id`: it frees only that batch's admission of the id,
    /// never a later one (an Idempotency-Key's retry admitted meanwhile). An admission decided
    /// later than `launch_within` after its batch (`batch_at`) is not launched: its PENDING
    /// insert could land after another instance's reaper may free the slot, so it is released
    /// the same way and its trigger answered 503.
    fn answer(
        &self,
        entry: ReserveEntry,
        decision: Result<Reservation, AdmissionError>,
        release_unless_owned: bool,
        batch_id: &str,
        batch_at: chrono::DateTime<chrono::Utc>,
    ) {
        let late = matches!(decision, Ok(Reservation::Admitted))
            && self.clock.now() - batch_at > self.launch_within;
        let (decision, release_unless_owned) = if late {
            tracing::warn!(
                org = %entry.org,
                run_id = entry.run_id,
                "admitted too late to launch within a lease of its batch; released"
            );
            (Err(AdmissionError::TimedOut), true)
        } else {
            (decision, release_unless_owned)
        };
        let holds = matches!(
            decision,
            Ok(Reservation::Admitted | Reservation::Queued { .. })
        );
        let mut owned = false;
        for reply in entry.replies {
            let outcome = match &decision {
                Ok(Reservation::Admitted) if owned => Ok(Reservation::AlreadyActive),
                other => other.clone(),
            };
            if reply.send(outcome).is_ok() && holds {
                owned = true;
            }
        }
        if (holds || release_unless_owned) && !owned {
            self.release_later(entry.org, entry.run_id, true, Some(batch_id.to_string()));
        }
    }

    /// Hands a release to the coordinator's next batch; it is retried until it lands.
    fn release_later(&self, org: OrgSlug, run_id: String, refund: bool, batch: Option<String>) {
        tracing::info!(org = %org, run_id, refund, batch, "releasing a slot nobody owns");
        if let Some(tx) = self.requeue.upgrade() {
            let _ = tx.send(Op::Release {
                org,
                run_id,
                refund,
                batch,
                billed: 0,
                reply: None,
            });
        }
    }

    /// After a failed batch: releases somebody waits for learn the failure (their releaser
    /// retries); the coordinator's own are sent again after [`release_retry_after`], never
    /// dropped.
    fn retry_or_answer(&self, releases: Vec<ReleaseEntry>, failure: AdmissionError) {
        let wait = release_retry_after(self.failed_in_a_row.load(Ordering::SeqCst));
        for entry in releases {
            if entry.replies.is_empty() {
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    this.release_later(entry.org, entry.run_id, entry.refund, entry.batch);
                });
            } else {
                for reply in entry.replies {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_retry_waits_twice_as_long_for_each_batch_that_failed_in_a_row_up_to_16_s() {
        let waits: Vec<u64> = (0..9)
            .map(|n| release_retry_after(n).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            vec![500, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 16_000]
        );
        assert_eq!(release_retry_after(u32::MAX), RELEASE_RETRY_MAX);
    }
}
