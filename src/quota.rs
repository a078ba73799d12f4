//! Quota reservation: one conditional UPDATE admits a run (day/month rollover inline, run id
//! added to the active set); one UPDATE releases it. Both are keyed by the run id, so retries
//! after a lost response can neither double count nor double release.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{day_of, month_of, secs_to_next_day, secs_to_next_month};
use crate::domain::OrgSlug;
use crate::orgs;
use crate::warehouse::{Param, Warehouse, WarehouseError, sql};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    Daily,
    Monthly,
    Concurrent,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Daily => "daily",
            Limit::Monthly => "monthly",
            Limit::Concurrent => "concurrent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The slot is ours now.
    Admitted,
    /// This run id already holds a slot (a retried or concurrent duplicate of the same run).
    AlreadyActive,
    /// A limit is reached; retry after this many seconds.
    Refused { limit: Limit, retry_after_secs: u64 },
    /// The org has no quota row (onboarding incomplete).
    NoQuota,
}

pub async fn reserve(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
    concurrent_retry_after_secs: u64,
) -> Result<Reservation, WarehouseError> {
    let admitted = warehouse
        .execute(
            &sql::QUOTA_RESERVE,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("run_id", run_id),
                Param::date("today", day_of(now)),
                Param::date("month_start", month_of(now)),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    if admitted == 1 {
        return Ok(Reservation::Admitted);
    }
    // One bounded read tells which limit was hit.
    let Some(q) = orgs::quota(warehouse, org).await.map_err(|e| match e {
        crate::error::ServiceError::Warehouse(w) => w,
        other => WarehouseError::Decode(other.to_string()),
    })?
    else {
        return Ok(Reservation::NoQuota);
    };
    if q.active_run_ids.iter().any(|id| id == run_id) {
        return Ok(Reservation::AlreadyActive);
    }
    let today = day_of(now).to_string();
    let month = month_of(now).to_string();
    let runs_today = if q.day.as_deref() == Some(today.as_str()) {
        q.runs_today
    } else {
        0
    };
    let runs_month = if q.month.as_deref() == Some(month.as_str()) {
        q.runs_month
    } else {
        0
    };
    let refusal = if runs_month >= q.monthly_limit {
        (Limit::Monthly, secs_to_next_month(now))
    } else if runs_today >= q.daily_limit {
        (Limit::Daily, secs_to_next_day(now))
    } else {
        (Limit::Concurrent, concurrent_retry_after_secs)
    };
    Ok(Reservation::Refused {
        limit: refusal.0,
        retry_after_secs: refusal.1,
    })
}

/// Frees `run_id`'s slot; `true` when it held one.
pub async fn release(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, WarehouseError> {
    let released = warehouse
        .execute(
            &sql::QUOTA_RELEASE,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("run_id", run_id),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    Ok(released > 0)
}
