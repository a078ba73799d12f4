//! Bytes caps: every step job is sent with `maximumBytesBilled` = the smallest of the step's
//! own `max_bytes_billed`, the org's per-job cap and what its daily and monthly bytes budgets
//! had left for the run (read before its first BigQuery job), less what its earlier attempts
//! billed ([`OrgCaps`]). BigQuery refuses a job that would bill more before it runs (reason
//! `bytesBilledLimitExceeded`, nothing billed): the step fails with class `cost_cap`, is not
//! retried (the same job would be refused again), and its error names the cap that bound.

/// The smallest cap a step may declare: BigQuery bills at least 10 MB for every query, so a
/// smaller cap would refuse every job.
pub const MIN_BYTES: u64 = 10 * 1024 * 1024;
/// The largest: 1 PiB.
pub const MAX_BYTES: u64 = 1 << 50;

/// The step error class of a job refused by its cap.
pub const CLASS: &str = "cost_cap";

/// A step's declared cap, checked when the catalog loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesCap(u64);

impl BytesCap {
    pub fn parse(bytes: u64) -> Result<Self, String> {
        if (MIN_BYTES..=MAX_BYTES).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(format!(
                "max_bytes_billed must be between {MIN_BYTES} (10 MiB, BigQuery's minimum bill \
                 per query) and {MAX_BYTES} (1 PiB) bytes"
            ))
        }
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// What the run's error says when BigQuery refused a job over this cap.
    pub fn refusal(self) -> String {
        format!(
            "refused by BigQuery before it ran: the job would bill more than the step's cap \
             (max_bytes_billed: {} bytes, {})",
            self.0,
            human(self.0)
        )
    }
}

/// Where a job's cap came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// The step's `max_bytes_billed`.
    Step,
    /// The org's `bytes_per_job_limit`.
    PerJob,
    /// What the org's daily bytes budget had left for the run (when it started, less what its
    /// earlier attempts billed).
    DailyBudget,
    /// What its monthly bytes budget had left for the run.
    MonthlyBudget,
}

/// The cap a step's jobs are sent with, and what set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub bytes: u64,
    pub source: CapSource,
}

impl Cap {
    /// What the run's error says when BigQuery refused a job over this cap.
    pub fn refusal(self) -> String {
        let (what, name) = match self.source {
            CapSource::Step => return BytesCap(self.bytes).refusal(),
            CapSource::PerJob => ("the org's per-job cap", "bytes_per_job_limit: "),
            CapSource::DailyBudget => {
                ("what the org's daily bytes budget had left for the run", "")
            }
            CapSource::MonthlyBudget => (
                "what the org's monthly bytes budget had left for the run",
                "",
            ),
        };
        format!(
            "refused by BigQuery before it ran: the job would bill more than {what} \
             ({name}{} bytes, {})",
            self.bytes,
            human(self.bytes)
        )
    }
}

/// The org's side of every cap, read once per run (before its first BigQuery job): its per-job
/// cap and what its budgets have left (each `None`: no such limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrgCaps {
    pub per_job: Option<i64>,
    pub daily_left: Option<i64>,
    pub monthly_left: Option<i64>,
}

impl OrgCaps {
    /// The caps once the run has billed `billed` more: what the budgets have left shrinks.
    pub fn after(self, billed: i64) -> Self {
        Self {
            daily_left: self.daily_left.map(|l| l - billed),
            monthly_left: self.monthly_left.map(|l| l - billed),
            ..self
        }
    }

    /// The smallest of the step's cap and the org's (a step's own cap wins a tie, then the
    /// per-job cap). What a budget has left is never taken below BigQuery's 10 MiB minimum
    /// bill: a run admitted as its budget ran out may still send the smallest jobs (the
    /// admission of the next run is refused).
    pub fn cap(self, step: Option<BytesCap>) -> Option<Cap> {
        let org = |bytes: Option<i64>, source| {
            bytes.map(|b| Cap {
                bytes: (b.max(0) as u64).max(MIN_BYTES),
                source,
            })
        };
        [
            step.map(|c| Cap {
                bytes: c.bytes(),
                source: CapSource::Step,
            }),
            org(self.per_job, CapSource::PerJob),
            org(self.daily_left, CapSource::DailyBudget),
            org(self.monthly_left, CapSource::MonthlyBudget),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|c| c.bytes)
    }
}

/// Bytes as people read them (binary units).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_is_at_least_bigquerys_minimum_bill_and_at_most_a_pebibyte() {
        assert_eq!(BytesCap::parse(MIN_BYTES).unwrap().bytes(), 10_485_760);
        assert!(BytesCap::parse(MIN_BYTES - 1).is_err());
        assert!(BytesCap::parse(MAX_BYTES).is_ok());
        let e = BytesCap::parse(MAX_BYTES + 1).unwrap_err();
        assert!(
            e.starts_with("max_bytes_billed must be between 10485760"),
            "{e}"
        );
    }

    #[test]
    fn the_refusal_names_the_cap_in_bytes_and_in_binary_units() {
        let cap = BytesCap::parse(10_485_760).unwrap();
        assert_eq!(
            cap.refusal(),
            "refused by BigQuery before it ran: the job would bill more than the step's cap \
             (max_bytes_billed: 10485760 bytes, 10.0 MiB)"
        );
        assert_eq!(human(1 << 40), "1.0 TiB");
        assert_eq!(human(512), "512 B");
    }

    const TIB: i64 = 1 << 40;

    #[test]
    fn a_job_is_capped_by_the_smallest_of_the_step_the_per_job_cap_and_the_budgets_left() {
        let step = BytesCap::parse(2 << 40).unwrap();
        let caps = OrgCaps {
            per_job: Some(TIB),
            daily_left: Some(3 * TIB),
            monthly_left: Some(4 * TIB),
        };
        let cap = |caps: OrgCaps, step| caps.cap(step).map(|c: Cap| (c.bytes, c.source));
        assert_eq!(cap(caps, Some(step)), Some((1 << 40, CapSource::PerJob)));
        let left = OrgCaps {
            daily_left: Some(TIB / 2),
            ..caps
        };
        assert_eq!(
            cap(left, Some(step)),
            Some((1 << 39, CapSource::DailyBudget))
        );
        let month = OrgCaps {
            monthly_left: Some(TIB / 4),
            ..left
        };
        assert_eq!(cap(month, None), Some((1 << 38, CapSource::MonthlyBudget)));
        // A tie goes to the step's own cap; nothing at all sends no cap.
        let tie = BytesCap::parse(1 << 40).unwrap();
        assert_eq!(cap(caps, Some(tie)), Some((1 << 40, CapSource::Step)));
        assert_eq!(cap(OrgCaps::default(), None), None);
        // A spent budget still lets the smallest job through (10 MiB), never less.
        let spent = OrgCaps {
            daily_left: Some(-5),
            ..OrgCaps::default()
        };
        assert_eq!(cap(spent, None), Some((MIN_BYTES, CapSource::DailyBudget)));
        // What a run's earlier attempts billed comes off what the budgets have left.
        let later = caps.after(TIB * 5 / 2);
        assert_eq!(later.daily_left, Some(TIB / 2));
        assert_eq!(later.monthly_left, Some(3 * TIB / 2));
        assert_eq!(later.per_job, Some(TIB));
        assert_eq!(cap(later, None), Some((1 << 39, CapSource::DailyBudget)));
    }

    #[test]
    fn a_refusal_names_the_cap_that_bound() {
        let refusal = |bytes, source| Cap { bytes, source }.refusal();
        assert_eq!(
            refusal(1 << 37, CapSource::PerJob),
            "refused by BigQuery before it ran: the job would bill more than the org's per-job \
             cap (bytes_per_job_limit: 137438953472 bytes, 128.0 GiB)"
        );
        assert_eq!(
            refusal(1 << 39, CapSource::DailyBudget),
            "refused by BigQuery before it ran: the job would bill more than what the org's \
             daily bytes budget had left for the run (549755813888 bytes, 512.0 GiB)"
        );
        assert_eq!(
            refusal(10_485_760, CapSource::Step),
            BytesCap::parse(10_485_760).unwrap().refusal()
        );
    }
}
