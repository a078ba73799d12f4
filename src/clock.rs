//! Time as a dependency: the executor's quota days and months, Retry-After values and the
//! reaper's leases all read this clock, so tests can move it across a day or month boundary.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub type SharedClock = Arc<dyn Clock>;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that runs with real time from an offset that can be changed: `advance` moves it
/// forward (a day rollover without waiting a day), time keeps flowing in between.
pub struct OffsetClock {
    offset: Mutex<Duration>,
}

impl OffsetClock {
    pub fn new() -> Self {
        Self {
            offset: Mutex::new(Duration::zero()),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += by;
    }

    /// Moves the clock so that it reads `at` now.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.offset.lock().expect("clock lock") = at - Utc::now();
    }
}

impl Default for OffsetClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().expect("clock lock")
    }
}

/// The UTC day of an instant.
pub fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// The first day of the instant's UTC month.
pub fn month_of(t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("first of month exists")
}

/// Whole seconds (at least 1) until the next UTC midnight.
pub fn secs_to_next_day(t: DateTime<Utc>) -> u64 {
    let next = (day_of(t) + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    ceil_secs(next - t)
}

/// Whole seconds (at least 1) until the first instant of the next UTC month.
pub fn secs_to_next_month(t: DateTime<Utc>) -> u64 {
    let first = month_of(t);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .expect("first of next month exists")
    .and_hms_opt(0, 0, 0)
    .expect("midnight exists")
    .and_utc();
    ceil_secs(next - t)
}

/// The `n`-th wait (from 0) of a backoff that doubles from `first` up to `max`: for the reads
/// and releases that are retried until they land or are too late to matter.
pub fn doubling(
    first: std::time::Duration,
    max: std::time::Duration,
    n: u32,
) -> std::time::Duration {
    first.saturating_mul(1u32 << n.min(16)).min(max)
}

fn ceil_secs(d: Duration) -> u64 {
    let ms = d.num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubling_backoff_starts_at_its_first_wait_and_stays_at_its_cap() {
        let ms = |n| {
            doubling(
                std::time::Duration::from_millis(500),
                std::time::Duration::from_secs(8),
                n,
            )
            .as_millis()
        };
        let waits: Vec<u128> = (0..7).map(ms).collect();
        assert_eq!(waits, vec![500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert_eq!(ms(u32::MAX), 8_000);
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn retry_after_counts_to_the_next_utc_day_and_month() {
        assert_eq!(secs_to_next_day(at("2026-11-22T23:59:00Z")), 60);
        assert_eq!(secs_to_next_day(at("2026-11-22T23:59:59.500Z")), 1);
        assert_eq!(secs_to_next_month(at("2026-11-30T23:00:00Z")), 3600);
        assert_eq!(secs_to_next_month(at("2026-12-31T23:59:00Z")), 60);
        assert_eq!(
            month_of(at("2026-02-14T12:00:00Z")).to_string(),
            "2026-02-01"
        );
    }

    #[test]
    fn an_offset_clock_moves_when_told() {
        let c = OffsetClock::new();
        let before = c.now();
        c.advance(Duration::days(1));
        assert!(c.now() - before >= Duration::days(1));
        c.set(at("2030-01-01T00:00:00Z"));
        assert_eq!(c.now().date_naive().to_string(), "2030-01-01");
    }
}
