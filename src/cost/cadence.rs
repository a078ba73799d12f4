//! How often a background read looks for work. On BigQuery every query bills at least 10 MB, so
//! an instance with nothing to do must not poll at its working pace: a read that finds work runs
//! again after its interval; one that finds none waits twice as long as the last time, up to a
//! ceiling (`IDLE_POLL_MAX_SECS`). A local event that may have made work (a schedule enabled, a
//! backfill started) wakes it at once, back at its interval.

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

#[derive(Debug)]
pub struct Cadence {
    interval: Duration,
    ceiling: Duration,
    wait: Duration,
    wake: Wake,
    /// When the current read began (reads start `wait` apart, whatever each one takes).
    began: tokio::time::Instant,
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
        }
    }

    /// What the last read found: work keeps the interval, none doubles the wait (to the
    /// ceiling).
    pub fn found(&mut self, work: bool) {
        self.wait = if work {
            self.interval
        } else {
            (self.wait * 2).min(self.ceiling)
        };
    }

    /// The wait before the next read.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Sleeps until the next read: the current wait after the last one began (at once if that
    /// read took longer), or until woken (then the interval again).
    pub async fn next(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep_until(self.began + self.wait) => {}
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
