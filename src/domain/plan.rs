use serde::{Deserialize, Serialize};

/// Subscription plans and their quota limits. ENTERPRISE limits are set by an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Plan {
    Starter,
    Professional,
    Scale,
    Enterprise,
}

/// Pipeline-run limits of one org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    pub daily_limit: i64,
    pub monthly_limit: i64,
    pub concurrent_limit: i64,
    /// Runs that may wait in the queue at once (0-10000); the plan's when absent. Only an
    /// admin's change of limits sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_limit: Option<i64>,
    /// Bytes the org's BigQuery jobs may bill per UTC day (10 MiB to 1 EiB); the plan's at
    /// onboarding when absent, unchanged by an admin's change that leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_daily_limit: Option<i64>,
    /// Bytes per UTC month, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_monthly_limit: Option<i64>,
    /// Bytes any one step job may bill (10 MiB to 1 PiB): sent as the job's
    /// `maximumBytesBilled` unless the step's own cap or what the budgets have left is smaller.
    /// The plan's at onboarding when absent, unchanged by an admin's change that leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_job_limit: Option<i64>,
}

/// The smallest bytes budget: BigQuery bills at least 10 MiB per query.
pub const MIN_BYTES_BUDGET: i64 = 10 << 20;
/// The largest bytes budget (1 EiB).
pub const MAX_BYTES_BUDGET: i64 = 1 << 60;
/// The largest per-job cap (1 PiB, as a step's own `max_bytes_billed`).
pub const MAX_BYTES_PER_JOB: i64 = 1 << 50;
const TIB: i64 = 1 << 40;

/// Largest value an admin may set for any limit.
pub const MAX_LIMIT: i64 = 1_000_000;

impl QuotaLimits {
    /// Each limit at least 1 and at most [`MAX_LIMIT`]; daily ≤ monthly; concurrent ≤ daily.
    pub fn validate(self) -> Result<Self, &'static str> {
        let in_range = |v: i64| (1..=MAX_LIMIT).contains(&v);
        if !(in_range(self.daily_limit)
            && in_range(self.monthly_limit)
            && in_range(self.concurrent_limit))
        {
            return Err("limits must be between 1 and 1000000");
        }
        if self.daily_limit > self.monthly_limit {
            return Err("the daily limit cannot exceed the monthly limit");
        }
        if self.concurrent_limit > self.daily_limit {
            return Err("the concurrent limit cannot exceed the daily limit");
        }
        if self.queue_limit.is_some_and(|q| !(0..=10_000).contains(&q)) {
            return Err("the queue limit must be between 0 and 10000");
        }
        let budget =
            |b: Option<i64>| b.is_none_or(|b| (MIN_BYTES_BUDGET..=MAX_BYTES_BUDGET).contains(&b));
        if !(budget(self.bytes_daily_limit) && budget(self.bytes_monthly_limit)) {
            return Err(
                "bytes budgets must be between 10485760 (10 MiB) and 1152921504606846976 (1 EiB)",
            );
        }
        if self
            .bytes_per_job_limit
            .is_some_and(|b| !(MIN_BYTES_BUDGET..=MAX_BYTES_PER_JOB).contains(&b))
        {
            return Err(
                "the per-job bytes cap must be between 10485760 (10 MiB) and 1125899906842624 (1 PiB)",
            );
        }
        if let (Some(d), Some(m)) = (self.bytes_daily_limit, self.bytes_monthly_limit) {
            if d > m {
                return Err("the daily bytes budget cannot exceed the monthly one");
            }
        }
        Ok(self)
    }
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "STARTER",
            Plan::Professional => "PROFESSIONAL",
            Plan::Scale => "SCALE",
            Plan::Enterprise => "ENTERPRISE",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_string())).ok()
    }

    /// Runs that may wait in the org's queue (`when_busy: queue`) at once.
    pub fn queue_limit(self) -> i64 {
        match self {
            Plan::Starter => 10,
            Plan::Professional => 25,
            Plan::Scale => 100,
            Plan::Enterprise => 500,
        }
    }

    /// The plan's bytes budgets (daily, monthly); `None` for ENTERPRISE (admin-set, none by
    /// default).
    pub fn bytes_budgets(self) -> Option<(i64, i64)> {
        match self {
            Plan::Starter => Some((TIB, 10 * TIB)),
            Plan::Professional => Some((10 * TIB, 100 * TIB)),
            Plan::Scale => Some((100 * TIB, 1000 * TIB)),
            Plan::Enterprise => None,
        }
    }

    /// Bytes any one step job of the plan may bill; `None` for ENTERPRISE (admin-set, none by
    /// default). STARTER's is its daily budget: one job may spend a day's budget, never more.
    pub fn bytes_per_job(self) -> Option<i64> {
        match self {
            Plan::Starter => Some(TIB),
            Plan::Professional => Some(5 * TIB),
            Plan::Scale => Some(25 * TIB),
            Plan::Enterprise => None,
        }
    }

    /// The plan's built-in limits; `None` for ENTERPRISE (admin-set).
    pub fn limits(self) -> Option<QuotaLimits> {
        let (daily_limit, monthly_limit, concurrent_limit) = match self {
            Plan::Starter => (6, 180, 1),
            Plan::Professional => (25, 750, 2),
            Plan::Scale => (100, 3000, 5),
            Plan::Enterprise => return None,
        };
        Some(QuotaLimits {
            daily_limit,
            monthly_limit,
            concurrent_limit,
            queue_limit: None,
            bytes_daily_limit: None,
            bytes_monthly_limit: None,
            bytes_per_job_limit: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_carry_the_documented_limits() {
        let l = |d, m, c| QuotaLimits {
            daily_limit: d,
            monthly_limit: m,
            concurrent_limit: c,
            queue_limit: None,
            bytes_daily_limit: None,
            bytes_monthly_limit: None,
            bytes_per_job_limit: None,
        };
        assert_eq!(Plan::Starter.limits(), Some(l(6, 180, 1)));
        assert_eq!(Plan::Professional.limits(), Some(l(25, 750, 2)));
        assert_eq!(Plan::Scale.limits(), Some(l(100, 3000, 5)));
        assert_eq!(Plan::Enterprise.limits(), None);
        assert_eq!(Plan::parse("SCALE"), Some(Plan::Scale));
        assert_eq!(Plan::parse("scale"), None);
    }

    #[test]
    fn admin_limits_are_bounded_and_consistent() {
        let l = |d, m, c| QuotaLimits {
            daily_limit: d,
            monthly_limit: m,
            concurrent_limit: c,
            queue_limit: None,
            bytes_daily_limit: None,
            bytes_monthly_limit: None,
            bytes_per_job_limit: None,
        };
        assert!(l(10, 100, 2).validate().is_ok());
        assert!(l(0, 100, 1).validate().is_err());
        assert!(l(10, 5, 1).validate().is_err());
        assert!(l(10, 100, 11).validate().is_err());
        assert!(l(10, MAX_LIMIT + 1, 1).validate().is_err());
    }

    #[test]
    fn bytes_budgets_are_at_least_bigquerys_minimum_bill_and_daily_within_monthly() {
        let b = |d, m| QuotaLimits {
            bytes_daily_limit: d,
            bytes_monthly_limit: m,
            ..Plan::Starter.limits().unwrap()
        };
        assert!(b(None, None).validate().is_ok());
        assert!(
            b(Some(MIN_BYTES_BUDGET), Some(MAX_BYTES_BUDGET))
                .validate()
                .is_ok()
        );
        assert!(b(Some(MIN_BYTES_BUDGET - 1), None).validate().is_err());
        assert!(b(None, Some(MAX_BYTES_BUDGET + 1)).validate().is_err());
        assert_eq!(
            b(Some(2 * TIB), Some(TIB)).validate(),
            Err("the daily bytes budget cannot exceed the monthly one")
        );
        assert_eq!(Plan::Starter.bytes_budgets(), Some((TIB, 10 * TIB)));
        assert_eq!(Plan::Enterprise.bytes_budgets(), None);
    }

    #[test]
    fn a_per_job_cap_is_between_bigquerys_minimum_bill_and_a_pebibyte() {
        let c = |b| QuotaLimits {
            bytes_per_job_limit: b,
            ..Plan::Starter.limits().unwrap()
        };
        assert!(c(None).validate().is_ok());
        assert!(c(Some(MIN_BYTES_BUDGET)).validate().is_ok());
        assert!(c(Some(MAX_BYTES_PER_JOB)).validate().is_ok());
        let refused = Err(
            "the per-job bytes cap must be between 10485760 (10 MiB) and 1125899906842624 (1 PiB)",
        );
        assert_eq!(c(Some(MIN_BYTES_BUDGET - 1)).validate(), refused);
        assert_eq!(c(Some(MAX_BYTES_PER_JOB + 1)).validate(), refused);
        assert_eq!(Plan::Starter.bytes_per_job(), Some(TIB));
        assert_eq!(Plan::Enterprise.bytes_per_job(), None);
    }
}
