//! Backfills: one child run per day of a date range, the day given to a DATE parameter, queued,
//! at most `max_parallel` in flight. Starting one records it (a streamed row in
//! `schedule_states`); the scheduler fires its days in order as ticks (exactly once each).
//! A range the org's remaining daily or monthly quota cannot hold is refused up front.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::scheduler::{BackfillDetails, day_time, logical_text, tick_run_id};
use super::state::{self, Change};
use crate::definitions::ParamType;
use crate::domain::OrgSlug;
use crate::orgs;
use crate::pipelines::Catalog;
use crate::service_error::ServiceError;
use crate::validation::FieldProblem;
use crate::warehouse::{Param, Warehouse, sql};

/// Days in one backfill at most.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    pub pipeline_id: String,
    /// The pipeline's DATE parameter that takes each day.
    pub parameter: String,
    /// First day, YYYY-MM-DD.
    pub from: NaiveDate,
    /// Last day (included), YYYY-MM-DD.
    pub to: NaiveDate,
    /// Child runs in flight at once (1 to the org's concurrent limit; default 1).
    #[serde(default = "one")]
    pub max_parallel: usize,
    /// The pipeline's other parameters, the same for every day.
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BackfillView {
    pub backfill_id: String,
    pub pipeline_id: String,
    /// ACTIVE, COMPLETED or CANCELLED.
    pub status: String,
    pub from: String,
    pub to: String,
    pub parameter: String,
    pub max_parallel: usize,
    pub days: usize,
    /// Child runs by status; days not fired yet are `waiting`.
    pub progress: BTreeMap<String, usize>,
    pub runs: Vec<BackfillRun>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BackfillRun {
    pub day: String,
    pub run_id: String,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("invalid backfill")]
    Invalid(FieldProblem),
    #[error("no such pipeline or backfill")]
    NotFound,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<crate::warehouse::WarehouseError> for BackfillError {
    fn from(e: crate::warehouse::WarehouseError) -> Self {
        BackfillError::Service(e.into())
    }
}

fn invalid(field: &str, problem: &str, accepted: &str) -> BackfillError {
    BackfillError::Invalid(FieldProblem::new(field, problem, accepted))
}

pub async fn start(
    warehouse: &Warehouse,
    catalog: &Catalog,
    org: &OrgSlug,
    request: BackfillRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<BackfillView, BackfillError> {
    let pipeline = catalog
        .get(&request.pipeline_id)
        .ok_or(BackfillError::NotFound)?;
    let decl = pipeline
        .parameters
        .iter()
        .find(|p| p.name == request.parameter)
        .filter(|p| p.kind == ParamType::Date)
        .ok_or_else(|| {
            invalid(
                "parameter",
                "not a DATE parameter of the pipeline",
                "the name of one of its DATE parameters",
            )
        })?;
    if request.to < request.from {
        return Err(invalid("to", "before from", "a day on or after from"));
    }
    let days = (request.to - request.from).num_days() + 1;
    if days > MAX_DAYS {
        return Err(invalid("to", "the range is too long", "at most 366 days"));
    }
    let quota = orgs::quota(warehouse, org)
        .await?
        .ok_or(BackfillError::NotFound)?;
    if request.max_parallel == 0 || request.max_parallel as i64 > quota.concurrent_limit {
        return Err(invalid(
            "max_parallel",
            "out of range",
            &format!(
                "1 to the org's concurrent limit ({})",
                quota.concurrent_limit
            ),
        ));
    }
    // Every other parameter must be valid with any day.
    let mut sample = request.parameters.clone();
    sample.insert(
        decl.name.clone(),
        serde_json::Value::String(request.from.to_string()),
    );
    crate::definitions::RunParams::validate(&pipeline.parameters, &sample)
        .map_err(|e| invalid(&format!("parameters.{}", e.name), &e.problem, ""))?;
    let today = crate::clock::day_of(now).to_string();
    let month = crate::clock::month_of(now).to_string();
    let queued = quota.queued_run_ids.len() as i64;
    let used = |stored: &Option<String>, ours: &str, count: i64| match stored {
        Some(d) if d.as_str() >= ours => count + queued,
        _ => queued,
    };
    let left_today = quota.daily_limit - used(&quota.day, &today, quota.runs_today);
    let left_month = quota.monthly_limit - used(&quota.month, &month, quota.runs_month);
    if days > left_today.min(left_month) {
        let (which, left) = if left_today <= left_month {
            ("daily", left_today.max(0))
        } else {
            ("monthly", left_month.max(0))
        };
        return Err(invalid(
            "to",
            &format!("the range needs {days} runs; the {which} quota has {left} left"),
            &format!("a range of at most {left} days"),
        ));
    }
    let backfill_id = uuid::Uuid::new_v4().to_string();
    let details = BackfillDetails {
        from: request.from,
        to: request.to,
        parameter: request.parameter.clone(),
        max_parallel: request.max_parallel,
    };
    let change = Change::new(
        org,
        &format!("backfill:{backfill_id}"),
        "backfill",
        "ACTIVE",
        &pipeline.id,
        Some(&request.parameters),
        Some(serde_json::to_value(&details).expect("details serialize")),
        actor,
        now,
    );
    state::record(warehouse, change).await?;
    Ok(view(
        org,
        &backfill_id,
        &pipeline.id,
        "ACTIVE",
        &details,
        &[],
    ))
}

fn view(
    org: &OrgSlug,
    backfill_id: &str,
    pipeline_id: &str,
    status: &str,
    details: &BackfillDetails,
    children: &[(String, String)],
) -> BackfillView {
    let key = format!("backfill:{backfill_id}");
    let status_of: BTreeMap<&str, &str> = children
        .iter()
        .map(|(id, s)| (id.as_str(), s.as_str()))
        .collect();
    let mut progress: BTreeMap<String, usize> = BTreeMap::new();
    let runs: Vec<BackfillRun> = details
        .days()
        .into_iter()
        .map(|day| {
            let run_id = tick_run_id(org, &key, &logical_text(day_time(day)));
            let status = status_of
                .get(run_id.as_str())
                .map_or("WAITING", |s| s)
                .to_string();
            *progress.entry(status.to_lowercase()).or_default() += 1;
            BackfillRun {
                day: day.to_string(),
                run_id,
                status,
            }
        })
        .collect();
    BackfillView {
        backfill_id: backfill_id.to_string(),
        pipeline_id: pipeline_id.to_string(),
        status: status.to_string(),
        from: details.from.to_string(),
        to: details.to.to_string(),
        parameter: details.parameter.clone(),
        max_parallel: details.max_parallel,
        days: runs.len(),
        progress,
        runs,
    }
}

/// One backfill with the status of each of its days.
pub async fn get(
    warehouse: &Warehouse,
    org: &OrgSlug,
    backfill_id: &str,
) -> Result<BackfillView, BackfillError> {
    let key = format!("backfill:{backfill_id}");
    let found = state::list(warehouse, org, "backfill")
        .await?
        .into_iter()
        .find(|s| s.schedule_id == key)
        .ok_or(BackfillError::NotFound)?;
    let details: BackfillDetails = serde_json::from_value(found.details())
        .map_err(|e| ServiceError::Invalid(format!("stored backfill details: {e}")))?;
    let since = found
        .changed_at_micros
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or_else(Utc::now);
    #[derive(Deserialize)]
    struct Child {
        run_id: String,
        status: String,
    }
    let children: Vec<Child> = warehouse
        .query(
            &sql::RUNS_BY_BACKFILL,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("backfill_id", backfill_id),
                Param::timestamp("since", since - chrono::Duration::days(MAX_DAYS)),
            ],
        )
        .await?;
    let children: Vec<(String, String)> =
        children.into_iter().map(|c| (c.run_id, c.status)).collect();
    Ok(view(
        org,
        backfill_id,
        &found.pipeline_id,
        &found.status,
        &details,
        &children,
    ))
}

/// Stops firing its days (the scheduler sees CANCELLED); the caller cancels the children in
/// flight.
pub async fn cancel(
    warehouse: &Warehouse,
    org: &OrgSlug,
    backfill_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<BackfillView, BackfillError> {
    let current = get(warehouse, org, backfill_id).await?;
    let details = BackfillDetails {
        from: current.from.parse().expect("stored day"),
        to: current.to.parse().expect("stored day"),
        parameter: current.parameter.clone(),
        max_parallel: current.max_parallel,
    };
    let change = Change::new(
        org,
        &format!("backfill:{backfill_id}"),
        "backfill",
        "CANCELLED",
        &current.pipeline_id,
        None,
        Some(serde_json::to_value(&details).expect("details serialize")),
        actor,
        now,
    );
    state::record(warehouse, change).await?;
    Ok(BackfillView {
        status: "CANCELLED".into(),
        ..current
    })
}
