//! Orchestration routes: re-runs (and the queue's, schedules' and backfills' routes).

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::openapi::s;
use super::pipelines::{org_and_run, trigger_error};
use super::{RouteSpec, route};
use crate::auth::{Guarded, OrgOrRoot, scopes};
use crate::clock::SharedClock;
use crate::executor::Executor;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::reruns::{self, RerunError};
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(post "/api/v1/pipelines/{org_slug}/runs/{run_id}/rerun" => rerun, OrgOrRoot<scopes::PipelinesRun>, "Re-run a failed or cancelled run from its failed steps (same parameters unless given)")
        .optional_body(s::<RerunRequest>)
        .returns(202, Some(s::<crate::executor::Triggered>))
        .also(&[(409, "Only a FAILED, CANCELLED, TIMED_OUT or ORPHANED run can be re-run")]),
];

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// New parameters; the original run's when absent.
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Re-runs a FAILED, CANCELLED, TIMED_OUT or ORPHANED run from its failed steps: 202 with the
/// new run, which records `rerun_of` and shows the reused steps as REUSED.
pub async fn rerun(
    caller: Guarded<OrgOrRoot<scopes::PipelinesRun>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (org, run_id) = org_and_run(path)?;
    let body: RerunRequest = body.json_or_default().await?;
    match reruns::rerun(
        &executor,
        &warehouse,
        &org,
        &run_id,
        body.parameters.as_ref(),
        caller.actor(),
        clock.now(),
    )
    .await
    {
        Ok(t) => Ok(HttpResponse::Accepted().json(t)),
        Err(RerunError::NotFound) => Err(ApiError::NotFound),
        Err(RerunError::NotRerunnable(status)) => Err(ApiError::NotRerunnable { status }),
        Err(RerunError::Trigger(e)) => Err(trigger_error(&org, e)),
        Err(RerunError::Service(e)) => Err(e.into()),
    }
}
