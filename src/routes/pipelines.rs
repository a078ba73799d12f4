//! Pipeline routes: the catalog, triggering a run, reading a run and its steps, cancelling.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::org_from_path;
use crate::auth::{Guarded, OrgOrRoot, scopes};
use crate::clock::SharedClock;
use crate::error::ApiError;
use crate::executor::{Executor, TriggerError, TriggerInfo};
use crate::http::parse_json;
use crate::idempotency;
use crate::pipelines::PipelineView;
use crate::runs;
use crate::warehouse::Warehouse;

pub async fn catalog(
    _caller: Guarded<OrgOrRoot<scopes::Any>>,
    executor: web::Data<Executor>,
) -> HttpResponse {
    let pipelines: Vec<PipelineView> = executor
        .catalog()
        .iter()
        .map(|p| PipelineView::from(p.as_ref()))
        .collect();
    HttpResponse::Ok().json(json!({ "pipelines": pipelines }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

pub async fn trigger(
    caller: Guarded<OrgOrRoot<scopes::PipelinesRun>>,
    req: HttpRequest,
    executor: web::Data<Executor>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (raw_org, pipeline_id) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let idempotency_key = idempotency::key_from(&req)?;
    let body: TriggerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerRequest::default()
    } else {
        parse_json(&body)?
    };
    let info = TriggerInfo {
        trigger: "api",
        triggered_by: caller.actor(),
        idempotency_key,
    };
    match executor
        .trigger(&org, &pipeline_id, &body.parameters, info)
        .await
    {
        Ok(t) => Ok(HttpResponse::Accepted().json(t)),
        Err(TriggerError::NotFound) => Err(ApiError::NotFound),
        Err(TriggerError::Param(e)) => {
            tracing::info!(parameter = %e.name, problem = %e.problem, "invalid pipeline parameter");
            Err(ApiError::InvalidParameter { name: e.name })
        }
        Err(TriggerError::Quota {
            limit,
            retry_after_secs,
        }) => {
            tracing::info!(org = %org, limit = limit.as_str(), "run refused by quota");
            Err(ApiError::QuotaExceeded {
                reason: limit.as_str(),
                retry_after_secs,
            })
        }
        Err(TriggerError::NoQuota) => {
            Err(ApiError::internal(format!("org {org} has no quota row")))
        }
        Err(TriggerError::Draining) => Err(ApiError::Unavailable {
            retry_after_secs: 10,
        }),
        Err(TriggerError::Warehouse(e)) => Err(e.into()),
    }
}

fn run_id_from(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::NotFound)
}

pub async fn get_run(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_org, raw_run) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let run_id = run_id_from(&raw_run)?;
    let run = runs::get(&warehouse, &org, &run_id, clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(run))
}

pub async fn get_steps(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_org, raw_run) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let run_id = run_id_from(&raw_run)?;
    let now = clock.now();
    let steps = runs::steps(&warehouse, &org, &run_id, now).await?;
    if steps.is_empty() && runs::get(&warehouse, &org, &run_id, now).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::Ok().json(json!({ "run_id": run_id, "steps": steps })))
}

/// Cooperative: the run ends CANCELLED and frees its slot. Runs executing on another instance
/// cannot be reached from here (409).
pub async fn cancel(
    caller: Guarded<OrgOrRoot<scopes::PipelinesRun>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_org, raw_run) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let run_id = run_id_from(&raw_run)?;
    if executor.cancel(&org, &run_id) {
        tracing::info!(org = %org, run_id, actor = %caller.actor(), "run cancellation requested");
        return Ok(HttpResponse::Accepted().json(json!({"run_id": run_id, "status": "CANCELLING"})));
    }
    match runs::get(&warehouse, &org, &run_id, clock.now()).await? {
        None => Err(ApiError::NotFound),
        Some(_) => Err(ApiError::Conflict),
    }
}
