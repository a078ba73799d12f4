//! Reading runs back: a run's current state (latest event) and its step attempts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api_keys::from_micros;
use crate::domain::OrgSlug;
use crate::error::ServiceError;
use crate::warehouse::{Param, Warehouse, sql};

#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub pipeline_id: String,
    pub status: String,
    pub trigger: Option<String>,
    pub triggered_by: Option<String>,
    pub parameters: Value,
    pub error_class: Option<String>,
    pub error_summary: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub runs_today_at_admission: Option<i64>,
    pub runs_month_at_admission: Option<i64>,
}

#[derive(Deserialize)]
struct RunRow {
    run_id: String,
    pipeline_id: String,
    status: String,
    trigger: Option<String>,
    triggered_by: Option<String>,
    parameters: Option<String>,
    error_class: Option<String>,
    error_summary: Option<String>,
    runs_today_at_admission: Option<i64>,
    runs_month_at_admission: Option<i64>,
    updated_at_micros: Option<i64>,
    created_at_micros: Option<i64>,
    started_at_micros: Option<i64>,
}

pub async fn get(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<RunView>, ServiceError> {
    let rows: Vec<RunRow> = warehouse
        .query(
            &sql::RUN_BY_ID,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("run_id", run_id),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    Ok(rows.into_iter().next().map(|r| {
        let terminal = crate::executor::RunStatus::is_terminal(&r.status);
        let ended_at_micros = if terminal { r.updated_at_micros } else { None };
        RunView {
            duration_ms: match (r.started_at_micros.or(r.created_at_micros), ended_at_micros) {
                (Some(s), Some(e)) => Some((e - s) / 1000),
                _ => None,
            },
            run_id: r.run_id,
            pipeline_id: r.pipeline_id,
            status: r.status,
            trigger: r.trigger,
            triggered_by: r.triggered_by,
            parameters: r
                .parameters
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Null),
            error_class: r.error_class,
            error_summary: r.error_summary,
            created_at: from_micros(r.created_at_micros),
            started_at: from_micros(r.started_at_micros),
            updated_at: from_micros(r.updated_at_micros),
            ended_at: from_micros(ended_at_micros),
            runs_today_at_admission: r.runs_today_at_admission,
            runs_month_at_admission: r.runs_month_at_admission,
        }
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepAttempt {
    pub step_id: String,
    pub attempt: i64,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub rows_affected: Option<i64>,
    pub bytes_processed: Option<i64>,
    pub error_summary: Option<String>,
}

#[derive(Deserialize)]
struct StepRow {
    step_id: String,
    attempt: i64,
    status: String,
    started_at_micros: Option<i64>,
    ended_at_micros: Option<i64>,
    duration_ms: Option<i64>,
    rows_affected: Option<i64>,
    bytes_processed: Option<i64>,
    error_summary: Option<String>,
}

pub async fn steps(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<StepAttempt>, ServiceError> {
    let rows: Vec<StepRow> = warehouse
        .query(
            &sql::STEPS_BY_RUN,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("run_id", run_id),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| StepAttempt {
            step_id: r.step_id,
            attempt: r.attempt,
            status: r.status,
            started_at: from_micros(r.started_at_micros),
            ended_at: from_micros(r.ended_at_micros),
            duration_ms: r.duration_ms,
            rows_affected: r.rows_affected,
            bytes_processed: r.bytes_processed,
            error_summary: r.error_summary,
        })
        .collect())
}
