//! How often a background read looks for work. On BigQuery every query bills at least 10 MB, so
//! an instance with nothing to do must not poll at its working pace: a read that finds work runs
//! again after its interval; one that finds none waits twice as long as the last time, up to a
//! ceiling (`IDLE_POLL_MAX_SECS`). A local event that may have made work (a schedule enabled, a
//! backfill started) wakes it at once, back at its interval.
//!
//! A read that failed, or took longer than its interval, must not be followed by another at
//! once: when BigQuery is saturated, a read past its deadline still runs there, and reads sent
//! back to back from every instance keep the backlog from ever draining (the soak's emulator
//! fell 10 s behind this way, and every admission statement then missed its deadline). So a
//! failed read waits from its end, twice the interval and doubled for each failure in a row,
//! up to [`FAILED_MAX_FACTOR`] intervals; and any read starts at least half an interval after
//! the last one ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Wakes a [`Cadence`] (cheap to clone). A wake with nobody waiting is kept for the next wait.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A read failing in a row waits at most this many intervals.
pub const FAILED_MAX_FACTOR: u32 = 8;

#[derive(Debug)]
pub struct Cadence {
    interval: Duration,
    ceiling: Duration,
    wait: Duration,
    wake: Wake,
    /// When the current read began (reads start `wait` apart, unless the last one ended less
    /// than half an interval before).
    began: tokio::time::Instant,
    /// When the last read ended (its outcome told by [`Cadence::found`] or
    /// [`Cadence::failed`]).
    ended: tokio::time::Instant,
    /// Reads that failed in a row: the wait then counts from the end of the last one.
    failures: u32,
}

impl Cadence {
    /// Starts at `interval`; idle waits grow to `ceiling` (never below `interval`).
    pub fn new(interval: Duration, ceiling: Duration, wake: Wake) -> Self {
        Self {
            interval,
            ceiling: ceiling.max(interval),
            wait: interval,
            wake,
            began: tokio::time::Instant::now(),
            ended: tokio::time::Instant::now(),
            failures: 0,
        }
    }

    /// What the last read found: work keeps the interval, none doubles the wait (to the
    /// ceiling).
    pub fn found(&mut self, work: bool) {
        self.ended = tokio::time::Instant::now();
        self.failures = 0;
        self.wait = if work {
            self.interval
        } else {
            (self.wait * 2).min(self.ceiling)
        };
    }

    /// The last read failed: the next waits twice the interval from its end, doubled for each
    /// failure in a row, up to [`FAILED_MAX_FACTOR`] intervals.
    pub fn failed(&mut self) {
        self.ended = tokio::time::Instant::now();
        self.wait = crate::clock::doubling(
            self.interval.saturating_mul(2),
            self.interval.saturating_mul(FAILED_MAX_FACTOR),
            self.failures,
        );
        self.failures = self.failures.saturating_add(1);
    }

    /// The wait before the next read.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// When the next read starts: after a failure, the wait after its end; else the wait after
    /// the last read began, and no sooner than half an interval after it ended.
    fn due(&self) -> tokio::time::Instant {
        if self.failures > 0 {
            self.ended + self.wait
        } else {
            (self.began + self.wait).max(self.ended + self.interval / 2)
        }
    }

    /// Sleeps until the next read ([`Cadence::due`]), or until woken (then the interval again).
    pub async fn next(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep_until(self.due()) => {}
            _ = self.wake.0.notified() => self.wait = self.interval,
        }
        self.began = tokio::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_read_doubles_its_wait_up_to_the_ceiling_and_work_brings_back_the_interval() {
        let s = Duration::from_secs;
        let mut c = Cadence::new(s(5), s(60), Wake::default());
        let mut waits = Vec::new();
        for _ in 0..6 {
            c.found(false);
            waits.push(c.wait().as_secs());
        }
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        c.found(true);
        assert_eq!(c.wait(), s(5));
        assert_eq!(Cadence::new(s(90), s(60), Wake::default()).ceiling, s(90));
    }

    #[tokio::test]
    async fn a_failed_read_waits_from_its_end_doubling_from_two_intervals_up_to_eight() {
        let s = Duration::from_secs;
        let mut c = Cadence::new(s(5), s(300), Wake::default());
        let mut waits = Vec::new();
        for _ in 0..5 {
            c.failed();
            waits.push(c.wait().as_secs());
        }
        assert_eq!(waits, [10, 20, 40, 40, 40]);
        // The read began 30 s ago and failed now: the next starts 40 s from now, not at once.
        c.began = tokio::time::Instant::now() - s(30);
        c.failed();
        assert_eq!(c.due(), c.ended + s(40));
        c.found(true);
        assert_eq!(c.wait(), s(5));
    }

    #[tokio::test]
    async fn a_read_longer_than_its_interval_is_followed_half_an_interval_after_it_ended() {
        let s = Duration::from_secs;
        let mut c = Cadence::new(s(10), s(300), Wake::default());
        c.began = tokio::time::Instant::now() - s(12);
        c.found(true);
        assert_eq!(c.due(), c.ended + s(5));
        // A quick read keeps the reads an interval apart from their starts.
        c.began = tokio::time::Instant::now() - s(1);
        c.found(true);
        assert_eq!(c.due(), c.began + s(10));
    }

    #[tokio::test]
    async fn a_wake_cuts_the_wait_short_even_when_it_came_first() {
        let wake = Wake::default();
        let mut c = Cadence::new(
            Duration::from_secs(1),
            Duration::from_secs(3600),
            wake.clone(),
        );
        for _ in 0..10 {
            c.found(false);
        }
        wake.wake();
        let started = std::time::Instant::now();
        c.next().await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(c.wait(), Duration::from_secs(1));
    }
}
