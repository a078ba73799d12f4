//! An org's schedules and backfills as they change: one streamed row per change in
//! `schedule_states` (never updated), the latest row per (org, schedule id) being the state.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::OrgSlug;
use crate::warehouse::{Param, Warehouse, WarehouseError, sql};

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub change_id: String,
    pub org_slug: String,
    pub schedule_id: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub pipeline_id: String,
    pub parameters: Option<String>,
    pub details: Option<String>,
    pub changed_by: String,
    pub changed_at: String,
}

impl Change {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org: &OrgSlug,
        schedule_id: &str,
        kind: &'static str,
        status: &'static str,
        pipeline_id: &str,
        parameters: Option<&serde_json::Map<String, serde_json::Value>>,
        details: Option<serde_json::Value>,
        changed_by: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Change {
            change_id: uuid::Uuid::new_v4().to_string(),
            org_slug: org.to_string(),
            schedule_id: schedule_id.to_string(),
            kind,
            status,
            pipeline_id: pipeline_id.to_string(),
            parameters: parameters.map(|p| serde_json::Value::Object(p.clone()).to_string()),
            details: details.map(|d| d.to_string()),
            changed_by: changed_by.to_string(),
            changed_at: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }
}

/// Appends one change (one streamed row; its id dedupes a retried insert).
pub async fn record(warehouse: &Warehouse, change: Change) -> Result<(), WarehouseError> {
    let meta = warehouse.meta_dataset().clone();
    warehouse
        .insert_rows(
            &meta,
            "schedule_states",
            &[(change.change_id.clone(), change)],
        )
        .await
}

/// The current state of one schedule or backfill.
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    pub schedule_id: String,
    pub kind: String,
    pub status: String,
    pub pipeline_id: String,
    pub parameters: Option<String>,
    pub details: Option<String>,
    pub changed_by: Option<String>,
    pub changed_at_micros: Option<i64>,
}

impl State {
    pub fn parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        self.parameters
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default()
    }

    pub fn details(&self) -> serde_json::Value {
        self.details
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// The org's schedules (`kind` "schedule"), backfills ("backfill") or both ("").
pub async fn list(
    warehouse: &Warehouse,
    org: &OrgSlug,
    kind: &str,
) -> Result<Vec<State>, WarehouseError> {
    warehouse
        .query(
            &sql::SCHEDULES_BY_ORG,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("kind", kind),
            ],
        )
        .await
}
