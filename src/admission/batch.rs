//! One batch: the operations that waited, as the statement's parallel-array parameters, and
//! the decisions read back for them. Pure: no I/O here.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Limit, Op, Reply, Reservation, Tick, WhenBusy};
use crate::clock::{day_of, month_of, secs_to_next_day, secs_to_next_month};
use crate::domain::OrgSlug;
use crate::warehouse::{Param, Statement};

pub(super) struct ReserveEntry {
    pub org: OrgSlug,
    pub run_id: String,
    pub when_busy: WhenBusy,
    pub tick: Option<Tick>,
    /// The first is the request that owns the run if it is admitted; the others (the same run
    /// id asked again while waiting) learn it is already active.
    pub replies: Vec<Reply<Reservation>>,
}

pub(super) struct ReleaseEntry {
    pub org: OrgSlug,
    pub run_id: String,
    /// Gives the run's count back too (see `sql/quota/admit_batch.sql`).
    pub refund: bool,
    /// Only the admission by this batch (see `Op::Release`).
    pub batch: Option<String>,
    /// Bytes the run billed (see `Op::Release`).
    pub billed: i64,
    pub replies: Vec<Reply<()>>,
}

pub(super) struct WriteEntry {
    pub statement: &'static Statement,
    pub params: Vec<Param>,
    pub reply: Reply<u64>,
}

#[derive(Default)]
pub(super) struct Batch {
    pub reserves: Vec<ReserveEntry>,
    pub releases: Vec<ReleaseEntry>,
    /// Orgs whose queue this batch looks at without releasing anything.
    pub drains: BTreeSet<OrgSlug>,
}

/// What the coordinator took from its queue, sorted out.
#[derive(Default)]
pub(super) struct Taken {
    pub batch: Batch,
    pub writes: Vec<WriteEntry>,
    /// Operations on a run id that this batch already touches the other way (a release after
    /// its reservation, or a reservation after its release): they go into the next batch, so
    /// each run's operations take effect in the order they were asked.
    pub deferred: Vec<Op>,
    /// Reservations left out because their trigger stopped waiting (it was answered 503): a
    /// batch never takes a slot nobody would own, which would cost a refund after it.
    pub abandoned: usize,
}

impl Taken {
    pub fn from_ops(ops: Vec<Op>) -> Self {
        let mut taken = Taken::default();
        let mut reserve_at: HashMap<String, usize> = HashMap::new();
        let mut release_at: HashMap<String, usize> = HashMap::new();
        for op in ops {
            match op {
                Op::Drain { org } => {
                    taken.batch.drains.insert(org);
                }
                Op::Reserve { reply, .. } if reply.is_closed() => taken.abandoned += 1,
                Op::Reserve {
                    org,
                    run_id,
                    when_busy,
                    tick,
                    reply,
                } => {
                    if release_at.contains_key(&run_id) {
                        taken.deferred.push(Op::Reserve {
                            org,
                            run_id,
                            when_busy,
                            tick,
                            reply,
                        });
                    } else if let Some(&i) = reserve_at.get(&run_id) {
                        taken.batch.reserves[i].replies.push(reply);
                    } else {
                        reserve_at.insert(run_id.clone(), taken.batch.reserves.len());
                        taken.batch.reserves.push(ReserveEntry {
                            org,
                            run_id,
                            when_busy,
                            tick,
                            replies: vec![reply],
                        });
                    }
                }
                Op::Release {
                    org,
                    run_id,
                    refund,
                    batch,
                    billed,
                    reply,
                } => {
                    let same = release_at
                        .get(&run_id)
                        .is_some_and(|&i| taken.batch.releases[i].batch == batch);
                    if reserve_at.contains_key(&run_id) || release_at.contains_key(&run_id) && !same
                    {
                        // After its reservation, or a release of another admission of the id.
                        taken.deferred.push(Op::Release {
                            org,
                            run_id,
                            refund,
                            batch,
                            billed,
                            reply,
                        });
                    } else if let Some(&i) = release_at.get(&run_id) {
                        let entry = &mut taken.batch.releases[i];
                        entry.refund |= refund;
                        entry.billed = entry.billed.max(billed);
                        entry.replies.extend(reply);
                    } else {
                        release_at.insert(run_id.clone(), taken.batch.releases.len());
                        taken.batch.releases.push(ReleaseEntry {
                            org,
                            run_id,
                            refund,
                            batch,
                            billed,
                            replies: reply.into_iter().collect(),
                        });
                    }
                }
                Op::Write {
                    statement,
                    params,
                    reply,
                } => taken.writes.push(WriteEntry {
                    statement,
                    params,
                    reply,
                }),
            }
        }
        taken
    }
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.reserves.is_empty() && self.releases.is_empty() && self.drains.is_empty()
    }

    pub fn len(&self) -> usize {
        self.reserves.len() + self.releases.len() + self.drains.len()
    }

    /// Whether this batch may admit runs from a queue (it releases or drains): then its
    /// decisions are read back even when no reservation waits on them.
    pub fn may_admit_from_queue(&self) -> bool {
        !self.releases.is_empty() || !self.drains.is_empty()
    }

    /// The orgs this batch touches, each once.
    pub fn orgs(&self) -> Vec<String> {
        let orgs: BTreeSet<&str> = self
            .reserves
            .iter()
            .map(|r| r.org.as_str())
            .chain(self.releases.iter().map(|r| r.org.as_str()))
            .chain(self.drains.iter().map(|o| o.as_str()))
            .collect();
        orgs.into_iter().map(str::to_string).collect()
    }

    /// Parameters of `sql/quota/admit_batch.sql`: operations in arrival order as parallel
    /// arrays (the emulator does not bind fields of ARRAY<STRUCT> parameters).
    pub fn params(&self, batch_id: &str, now: DateTime<Utc>) -> Vec<Param> {
        let mut orgs = Vec::with_capacity(self.len());
        let mut runs = Vec::with_capacity(self.len());
        let mut kinds = Vec::with_capacity(self.len());
        for r in &self.reserves {
            orgs.push(r.org.to_string());
            let kind = match r.when_busy {
                WhenBusy::Refuse => "reserve",
                WhenBusy::Queue => "enqueue",
            };
            match &r.tick {
                None => {
                    runs.push(r.run_id.clone());
                    kinds.push(kind.to_string());
                }
                Some(t) => {
                    runs.push(format!("{}|{}|{}", r.run_id, t.key, t.logical));
                    kinds.push(format!("tick_{kind}"));
                }
            }
        }
        for org in &self.drains {
            orgs.push(org.to_string());
            runs.push(String::new());
            kinds.push("drain".to_string());
        }
        for r in &self.releases {
            orgs.push(r.org.to_string());
            runs.push(match &r.batch {
                Some(batch) => format!("{}|{batch}", r.run_id),
                None => r.run_id.clone(),
            });
            kinds.push(if r.refund { "refund" } else { "release" }.to_string());
            // What the run billed, counted if this release frees its slot.
            if r.billed > 0 {
                orgs.push(r.org.to_string());
                runs.push(format!("{}={}", r.run_id, r.billed));
                kinds.push("bill".to_string());
            }
        }
        vec![
            Param::date("today", day_of(now)),
            Param::date("month_start", month_of(now)),
            Param::string("batch_id", batch_id),
            Param::timestamp("now", now),
            Param::string_array("op_orgs", orgs),
            Param::string_array("op_runs", runs),
            Param::string_array("op_kinds", kinds),
        ]
    }

    /// The UPDATE only touches rows where it admitted, queued or released something, so each
    /// org's row counts at most once, and an org with only new runs that may not wait changes
    /// only by admitting them (queued runs are admitted only by batches that release or drain).
    /// With one such reservation per org and no org both reserving and releasing (or
    /// draining), the largest possible count (every reserving org admitted, every other org
    /// changed) means every reservation was admitted: the batch needs no read.
    pub fn admitted_all(&self, affected_rows: u64) -> bool {
        let reserving: BTreeSet<&str> = self.reserves.iter().map(|r| r.org.as_str()).collect();
        let releasing: BTreeSet<&str> = self
            .releases
            .iter()
            .map(|r| r.org.as_str())
            .chain(self.drains.iter().map(|o| o.as_str()))
            .collect();
        self.reserves
            .iter()
            .all(|r| r.when_busy == WhenBusy::Refuse && r.tick.is_none())
            && !reserving.is_empty()
            && reserving.len() == self.reserves.len()
            && reserving.is_disjoint(&releasing)
            && affected_rows == (reserving.len() + releasing.len()) as u64
    }
}

/// One org's row after a batch (`sql/quota/batch_outcome.sql`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct OrgOutcome {
    pub org_slug: String,
    pub daily_limit: i64,
    pub monthly_limit: i64,
    pub day: Option<String>,
    pub runs_today: i64,
    pub month: Option<String>,
    pub runs_month: i64,
    #[serde(default)]
    pub bytes_daily_limit: Option<i64>,
    #[serde(default)]
    pub bytes_monthly_limit: Option<i64>,
    #[serde(default)]
    pub bytes_today: i64,
    #[serde(default)]
    pub bytes_month: i64,
    #[serde(default)]
    pub active_run_ids: Vec<String>,
    #[serde(default)]
    pub queued_run_ids: Vec<String>,
    /// The ticks this batch fired.
    #[serde(default)]
    pub fired: Vec<String>,
    /// The run ids this batch admitted.
    #[serde(default)]
    pub admitted: Vec<String>,
    /// The queued run ids this batch refused (a spent bytes budget).
    #[serde(default)]
    pub refused: Vec<String>,
}

/// The decision for `run_id` given its org's row after the batch. A refused run names the
/// limit that is full: monthly, then daily (queued runs hold their share of both), else the
/// queue for a run that asked to wait, else concurrency (a count on a day or month before `now`
/// is zero; a later one, written by an instance whose clock is ahead, stands).
pub(super) fn decide(
    row: Option<&OrgOutcome>,
    entry: (&str, WhenBusy, bool),
    now: DateTime<Utc>,
    concurrent_retry_after_secs: u64,
) -> Reservation {
    let (run_id, when_busy, is_tick) = entry;
    let Some(row) = row else {
        return Reservation::NoQuota;
    };
    if is_tick && !row.fired.iter().any(|id| id == run_id) {
        return Reservation::AlreadyFired;
    }
    if row.admitted.iter().any(|id| id == run_id) {
        return Reservation::Admitted;
    }
    if row.active_run_ids.iter().any(|id| id == run_id) {
        return Reservation::AlreadyActive;
    }
    if let Some(i) = row.queued_run_ids.iter().position(|id| id == run_id) {
        return Reservation::Queued { position: i + 1 };
    }
    let queued = row.queued_run_ids.len() as i64;
    let today = day_of(now).to_string();
    let month = month_of(now).to_string();
    let current = |stored: &Option<String>, ours: &str, count: i64| match stored {
        Some(d) if d.as_str() >= ours => count + queued,
        _ => queued,
    };
    // Bytes billed in the current period (none when the stored one is over).
    let billed = |stored: &Option<String>, ours: &str, bytes: i64| match stored {
        Some(d) if d.as_str() >= ours => bytes,
        _ => 0,
    };
    let spent = |budget: Option<i64>, used: i64| budget.is_some_and(|b| used >= b);
    let (limit, retry_after_secs) =
        if current(&row.month, &month, row.runs_month) >= row.monthly_limit {
            (Limit::Monthly, secs_to_next_month(now))
        } else if current(&row.day, &today, row.runs_today) >= row.daily_limit {
            (Limit::Daily, secs_to_next_day(now))
        } else if spent(
            row.bytes_monthly_limit,
            billed(&row.month, &month, row.bytes_month),
        ) {
            (Limit::BytesMonthly, secs_to_next_month(now))
        } else if spent(
            row.bytes_daily_limit,
            billed(&row.day, &today, row.bytes_today),
        ) {
            (Limit::BytesDaily, secs_to_next_day(now))
        } else if when_busy == WhenBusy::Queue {
            (Limit::QueueFull, concurrent_retry_after_secs)
        } else {
            (Limit::Concurrent, concurrent_retry_after_secs)
        };
    Reservation::Refused {
        limit,
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use tokio::sync::oneshot;

    fn org(s: &str) -> OrgSlug {
        OrgSlug::parse(s).unwrap()
    }

    /// A reply somebody still waits for (the receiver is kept alive for the whole test).
    fn waiting<T>() -> oneshot::Sender<T> {
        let (reply, answer) = oneshot::channel();
        std::mem::forget(answer);
        reply
    }

    fn reserve(o: &str, run: &str) -> Op {
        Op::Reserve {
            org: org(o),
            run_id: run.into(),
            when_busy: WhenBusy::Refuse,
            tick: None,
            reply: waiting(),
        }
    }

    fn enqueue(o: &str, run: &str) -> Op {
        Op::Reserve {
            org: org(o),
            run_id: run.into(),
            when_busy: WhenBusy::Queue,
            tick: None,
            reply: waiting(),
        }
    }

    fn release(o: &str, run: &str) -> Op {
        Op::Release {
            org: org(o),
            run_id: run.into(),
            refund: false,
            batch: None,
            billed: 0,
            reply: None,
        }
    }

    fn refund(o: &str, run: &str) -> Op {
        Op::Release {
            org: org(o),
            run_id: run.into(),
            refund: true,
            batch: None,
            billed: 0,
            reply: None,
        }
    }

    /// The clean-up of the admission by `batch` only.
    fn refund_of(o: &str, run: &str, batch: &str) -> Op {
        Op::Release {
            org: org(o),
            run_id: run.into(),
            refund: true,
            batch: Some(batch.into()),
            billed: 0,
            reply: None,
        }
    }

    #[test]
    fn the_clean_up_of_one_admission_names_its_batch_and_waits_behind_another_release_of_the_id() {
        let taken = Taken::from_ops(vec![
            refund_of("acme", "r1", "b1"),
            refund_of("acme", "r1", "b1"),
            release("acme", "r1"),
            refund_of("acme", "r2", "b2"),
        ]);
        // The same admission's clean-up twice is one; the run's own release of whatever slot
        // the id holds waits for the next batch, so each takes effect as asked.
        assert_eq!(taken.batch.releases.len(), 2);
        assert_eq!(taken.deferred.len(), 1);
        let params = taken.batch.params("b", now());
        let runs = format!("{:?}", params[5]);
        assert!(
            runs.contains("\"r1|b1\"") && runs.contains("\"r2|b2\""),
            "{runs}"
        );
    }

    #[test]
    fn a_refund_is_its_own_kind_and_wins_over_a_plain_release_of_the_same_run() {
        let taken = Taken::from_ops(vec![
            release("acme", "r1"),
            refund("acme", "r1"),
            release("acme", "r2"),
        ]);
        assert_eq!(taken.batch.releases.len(), 2);
        let params = taken.batch.params("b", now());
        let kinds = format!("{:?}", params[6]);
        assert!(
            kinds.contains("\"refund\"") && kinds.contains("\"release\""),
            "{kinds}"
        );
        assert!(taken.batch.releases[0].refund);
        assert!(!taken.batch.releases[1].refund);
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 0).unwrap()
    }

    fn row(day: &str, runs_today: i64, runs_month: i64, active: &[&str]) -> OrgOutcome {
        OrgOutcome {
            org_slug: "acme".into(),
            daily_limit: 10,
            monthly_limit: 100,
            day: Some(day.into()),
            runs_today,
            month: Some("2026-11-01".into()),
            runs_month,
            bytes_daily_limit: None,
            bytes_monthly_limit: None,
            bytes_today: 0,
            bytes_month: 0,
            active_run_ids: active.iter().map(|s| s.to_string()).collect(),
            queued_run_ids: vec![],
            fired: vec![],
            admitted: vec![],
            refused: vec![],
        }
    }

    #[test]
    fn a_reservation_nobody_waits_for_any_more_is_left_out_and_counted() {
        let gone = Op::Reserve {
            org: org("acme"),
            run_id: "r-gone".into(),
            when_busy: WhenBusy::Refuse,
            tick: None,
            reply: oneshot::channel().0,
        };
        let taken = Taken::from_ops(vec![gone, reserve("acme", "r-kept")]);
        assert_eq!(taken.abandoned, 1);
        let ids: Vec<&str> = taken
            .batch
            .reserves
            .iter()
            .map(|e| e.run_id.as_str())
            .collect();
        assert_eq!(ids, ["r-kept"]);
    }

    #[test]
    fn operations_become_parallel_arrays_in_arrival_order_with_duplicates_merged() {
        let taken = Taken::from_ops(vec![
            reserve("acme", "r1"),
            reserve("beta", "r2"),
            reserve("acme", "r1"),
            release("acme", "r0"),
        ]);
        assert_eq!(taken.batch.reserves.len(), 2);
        assert_eq!(taken.batch.reserves[0].replies.len(), 2);
        assert!(taken.deferred.is_empty());
        let params = taken.batch.params("b1", now());
        let names: Vec<&str> = params.iter().map(Param::name).collect();
        assert_eq!(
            names,
            [
                "today",
                "month_start",
                "batch_id",
                "now",
                "op_orgs",
                "op_runs",
                "op_kinds"
            ]
        );
        assert_eq!(taken.batch.orgs(), ["acme", "beta"]);
    }

    #[test]
    fn a_release_of_a_run_that_billed_bytes_carries_a_bill_and_a_repeat_does_not_add_to_it() {
        let billed = |run: &str, bytes: i64| Op::Release {
            org: org("acme"),
            run_id: run.into(),
            refund: false,
            batch: None,
            billed: bytes,
            reply: None,
        };
        let taken = Taken::from_ops(vec![billed("r1", 500), billed("r1", 500), billed("r2", 0)]);
        let params = taken.batch.params("b1", now());
        let array = |name: &str| {
            let p = params.iter().find(|p| p.name() == name).unwrap();
            p.to_bigquery()
                .parameter_value
                .unwrap()
                .array_values
                .unwrap()
                .into_iter()
                .map(|v| v.value.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(array("op_runs"), ["r1", "r1=500", "r2"]);
        assert_eq!(array("op_kinds"), ["release", "bill", "release"]);
        assert_eq!(array("op_orgs"), ["acme", "acme", "acme"]);
    }

    #[test]
    fn a_run_released_and_reserved_in_one_batch_waits_for_the_next() {
        let taken = Taken::from_ops(vec![
            release("acme", "r1"),
            reserve("acme", "r1"),
            reserve("acme", "r2"),
            release("acme", "r2"),
        ]);
        assert_eq!(taken.batch.releases.len(), 1);
        assert_eq!(taken.batch.reserves.len(), 1);
        assert_eq!(taken.batch.reserves[0].run_id, "r2");
        assert_eq!(taken.deferred.len(), 2);
    }

    #[test]
    fn the_row_count_alone_decides_only_when_every_touched_row_is_accounted_for() {
        let one_each = Taken::from_ops(vec![reserve("acme", "r1"), reserve("beta", "r2")]).batch;
        assert!(one_each.admitted_all(2));
        assert!(!one_each.admitted_all(1));
        let two_for_one = Taken::from_ops(vec![reserve("acme", "r1"), reserve("acme", "r2")]).batch;
        assert!(!two_for_one.admitted_all(1));
        let release_elsewhere =
            Taken::from_ops(vec![reserve("acme", "r1"), release("beta", "r0")]).batch;
        assert!(release_elsewhere.admitted_all(2));
        assert!(
            !release_elsewhere.admitted_all(1),
            "either one may be missing"
        );
        let release_same_org =
            Taken::from_ops(vec![reserve("acme", "r1"), release("acme", "r0")]).batch;
        assert!(
            !release_same_org.admitted_all(1),
            "the release alone changes the row"
        );
        let releases_only = Taken::from_ops(vec![release("acme", "r0")]).batch;
        assert!(!releases_only.admitted_all(1));
    }

    #[test]
    fn a_run_marked_by_the_batch_is_admitted_and_an_older_active_one_is_not_ours() {
        let mut r = row("2026-11-23", 1, 1, &["r1", "r9"]);
        r.admitted = vec!["r1".into()];
        assert_eq!(
            decide(Some(&r), ("r1", WhenBusy::Refuse, false), now(), 10),
            Reservation::Admitted
        );
        assert_eq!(
            decide(Some(&r), ("r9", WhenBusy::Refuse, false), now(), 10),
            Reservation::AlreadyActive
        );
        assert_eq!(
            decide(None, ("r1", WhenBusy::Refuse, false), now(), 10),
            Reservation::NoQuota
        );
    }

    #[test]
    fn a_refusal_names_the_full_limit_with_its_retry_after() {
        let concurrent = row("2026-11-23", 3, 3, &["a", "b"]);
        assert_eq!(
            decide(Some(&concurrent), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Concurrent,
                retry_after_secs: 10
            }
        );
        let daily = row("2026-11-23", 10, 10, &[]);
        assert_eq!(
            decide(Some(&daily), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Daily,
                retry_after_secs: 6 * 3600
            }
        );
        let monthly = row("2026-11-23", 1, 100, &[]);
        assert!(matches!(
            decide(Some(&monthly), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Monthly,
                ..
            }
        ));
    }

    #[test]
    fn a_spent_bytes_budget_refuses_until_its_period_ends_and_a_queued_run_too() {
        let mut r = row("2026-11-23", 3, 3, &[]);
        r.bytes_daily_limit = Some(100);
        r.bytes_today = 100;
        for when_busy in [WhenBusy::Refuse, WhenBusy::Queue] {
            assert_eq!(
                decide(Some(&r), ("x", when_busy, false), now(), 10),
                Reservation::Refused {
                    limit: Limit::BytesDaily,
                    retry_after_secs: 6 * 3600
                }
            );
        }
        r.bytes_today = 99;
        assert_eq!(
            decide(Some(&r), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Concurrent,
                retry_after_secs: 10
            },
            "under its budget, a run refused here met another limit"
        );
        r.bytes_monthly_limit = Some(1000);
        r.bytes_month = 1000;
        assert!(matches!(
            decide(Some(&r), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::BytesMonthly,
                ..
            }
        ));
        let mut yesterday = row("2026-11-22", 3, 3, &[]);
        yesterday.bytes_daily_limit = Some(100);
        yesterday.bytes_today = 500;
        assert!(
            matches!(
                decide(Some(&yesterday), ("x", WhenBusy::Refuse, false), now(), 10),
                Reservation::Refused {
                    limit: Limit::Concurrent,
                    ..
                }
            ),
            "yesterday's bytes are not today's"
        );
    }

    #[test]
    fn yesterdays_count_is_not_todays_but_a_count_from_a_clock_ahead_stands() {
        let yesterday = row("2026-11-22", 10, 10, &["a", "b"]);
        assert!(matches!(
            decide(Some(&yesterday), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Concurrent,
                ..
            }
        ));
        let tomorrow = row("2026-11-24", 10, 10, &[]);
        assert!(matches!(
            decide(Some(&tomorrow), ("x", WhenBusy::Refuse, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Daily,
                ..
            }
        ));
    }

    #[test]
    fn a_queued_run_learns_its_place_and_a_full_queue_or_day_refuses_it() {
        let mut r = row("2026-11-23", 3, 3, &["a"]);
        r.queued_run_ids = vec!["q1".into(), "q2".into()];
        assert_eq!(
            decide(Some(&r), ("q2", WhenBusy::Queue, false), now(), 10),
            Reservation::Queued { position: 2 }
        );
        assert_eq!(
            decide(Some(&r), ("x", WhenBusy::Queue, false), now(), 10),
            Reservation::Refused {
                limit: Limit::QueueFull,
                retry_after_secs: 10
            }
        );
        // 8 admitted today and 2 waiting: the day is spoken for.
        let mut full_day = row("2026-11-23", 8, 8, &["a"]);
        full_day.queued_run_ids = vec!["q1".into(), "q2".into()];
        assert!(matches!(
            decide(Some(&full_day), ("x", WhenBusy::Queue, false), now(), 10),
            Reservation::Refused {
                limit: Limit::Daily,
                ..
            }
        ));
    }

    #[test]
    fn a_batch_that_may_queue_or_drain_is_always_read_back() {
        let queueing = Taken::from_ops(vec![enqueue("acme", "r1")]).batch;
        assert!(
            !queueing.admitted_all(1),
            "the row changes when it queues too"
        );
        let mut drained = Taken::from_ops(vec![reserve("acme", "r1")]).batch;
        drained.drains.insert(org("beta"));
        assert!(drained.may_admit_from_queue());
        assert!(drained.admitted_all(2));
        assert!(!drained.admitted_all(1));
        let params = drained.params("b", now());
        assert_eq!(params[6].name(), "op_kinds");
    }

    #[test]
    fn a_tick_is_decided_only_by_the_batch_that_fired_it() {
        let mut r = row("2026-11-23", 1, 1, &["t1"]);
        r.admitted = vec!["t1".into()];
        assert_eq!(
            decide(Some(&r), ("t1", WhenBusy::Refuse, true), now(), 10),
            Reservation::AlreadyFired,
            "admitted, but by another batch's firing"
        );
        r.fired = vec!["t1".into()];
        assert_eq!(
            decide(Some(&r), ("t1", WhenBusy::Refuse, true), now(), 10),
            Reservation::Admitted
        );
        let mut tick = Taken::from_ops(vec![Op::Reserve {
            org: org("acme"),
            run_id: "t1".into(),
            when_busy: WhenBusy::Queue,
            tick: Some(Tick {
                key: "schedule:p/daily".into(),
                logical: "2026-11-23T06:00:00Z".into(),
            }),
            reply: waiting(),
        }]);
        let params = tick.batch.params("b", now());
        assert!(!tick.batch.admitted_all(1));
        let runs = format!("{:?}", params[5]);
        assert!(
            runs.contains("t1|schedule:p/daily|2026-11-23T06:00:00Z"),
            "{runs}"
        );
        tick.batch.reserves.clear();
    }
}
