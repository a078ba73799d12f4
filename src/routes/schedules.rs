//! Schedules and backfills of an org: list, enable, pause and resume schedules; start, read and
//! cancel backfills. Every change is audited.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::openapi::s;
use super::org_from_path;
use super::pipelines::{org_and_run, trigger_error};
use super::{RouteSpec, route};
use crate::auth::{Guarded, OrgOrRoot, scopes};
use crate::clock::SharedClock;
use crate::definitions::RunParams;
use crate::definitions::schedule::{CatchUp, Spec};
use crate::domain::OrgSlug;
use crate::executor::Executor;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::schedules::backfill::{self, BackfillError, BackfillRequest};
use crate::schedules::state::{self, Change};
use crate::validation::FieldProblem;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/api/v1/schedules/{org_slug}" => list, OrgOrRoot<scopes::SchedulesRead>, "Every schedule of the catalog with this org's state (ACTIVE, PAUSED, DISABLED) and next tick")
        .returns(200, Some(s::<super::openapi::ScheduleList>)),
    route!(post "/api/v1/schedules/{org_slug}/enable" => enable, OrgOrRoot<scopes::SchedulesWrite>, "Enable a schedule (or change the org's parameter values); ticks after now fire")
        .body(s::<ScheduleRequest>)
        .returns(200, Some(s::<ScheduleView>)),
    route!(post "/api/v1/schedules/{org_slug}/pause" => pause, OrgOrRoot<scopes::SchedulesWrite>, "Pause an active schedule")
        .body(s::<ScheduleRequest>)
        .returns(200, Some(s::<ScheduleView>))
        .also(&[(409, "Schedule is not in a state that allows this")]),
    route!(post "/api/v1/schedules/{org_slug}/resume" => resume, OrgOrRoot<scopes::SchedulesWrite>, "Resume a paused schedule; ticks missed while paused do not fire")
        .body(s::<ScheduleRequest>)
        .returns(200, Some(s::<ScheduleView>))
        .also(&[(409, "Schedule is not in a state that allows this")]),
    route!(post "/api/v1/backfills/{org_slug}" => start_backfill, OrgOrRoot<scopes::SchedulesWrite>, "Start a backfill: one queued child run per day, at most max_parallel at once (400 when the quota cannot hold the range)")
        .body(s::<crate::schedules::backfill::BackfillRequest>)
        .returns(202, Some(s::<crate::schedules::backfill::BackfillView>)),
    route!(get "/api/v1/backfills/{org_slug}/{backfill_id}" => get_backfill, OrgOrRoot<scopes::SchedulesRead>, "A backfill's progress, day by day")
        .returns(200, Some(s::<crate::schedules::backfill::BackfillView>)),
    route!(post "/api/v1/backfills/{org_slug}/{backfill_id}/cancel" => cancel_backfill, OrgOrRoot<scopes::SchedulesWrite>, "Cancel a backfill: no more days fire, its waiting and running children are cancelled")
        .returns(202, Some(s::<crate::schedules::backfill::BackfillView>))
        .also(&[(409, "Run already ended")]),
];

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScheduleView {
    /// `pipeline_id/name`.
    pub schedule_id: String,
    pub pipeline_id: String,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub catch_up: CatchUp,
    pub max_catch_up: usize,
    pub when_busy: crate::admission::WhenBusy,
    /// A tick's run still running this long after it started is alerted
    /// `run.deadline_passed` (the schedule's own, else the pipeline's; none if neither).
    pub deadline_seconds: Option<u64>,
    /// ACTIVE, PAUSED, or DISABLED (never enabled by this org).
    pub status: String,
    /// The org's own parameter values (over the schedule's templates).
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The parameters as the pipeline file declares them, templates unrendered (e.g.
    /// `{"day": "{{ logical_date | minus_days(1) }}"}`); the org's own values win over them.
    pub templates: serde_json::Map<String, serde_json::Value>,
    /// When it was last enabled, paused or resumed.
    pub since: Option<DateTime<Utc>>,
    /// The next tick, when ACTIVE.
    pub next_tick: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    pub pipeline_id: String,
    /// The schedule's name in the pipeline file.
    pub schedule: String,
    /// Enable only: the org's own values for some parameters (they win over the templates).
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

fn view(
    pipeline: &crate::pipelines::Pipeline,
    spec: &Spec,
    found: Option<&state::State>,
    now: DateTime<Utc>,
) -> ScheduleView {
    let status = found.map_or("DISABLED".to_string(), |s| s.status.clone());
    let pipeline_id = &pipeline.id;
    ScheduleView {
        schedule_id: format!("{pipeline_id}/{}", spec.name),
        pipeline_id: pipeline_id.to_string(),
        name: spec.name.clone(),
        cron: spec.cron_text.clone(),
        timezone: spec.timezone.name().to_string(),
        catch_up: spec.catch_up,
        max_catch_up: spec.max_catch_up,
        when_busy: spec.when_busy,
        deadline_seconds: spec.deadline.or(pipeline.deadline).map(|d| d.as_secs()),
        next_tick: (status == "ACTIVE").then(|| spec.next_after(now)).flatten(),
        status,
        parameters: found.map(|s| s.parameters()).unwrap_or_default(),
        templates: spec.declared_parameters.clone(),
        since: found
            .and_then(|s| s.changed_at_micros)
            .and_then(DateTime::from_timestamp_micros),
    }
}

/// Every schedule of the catalog, with this org's state of it.
pub async fn list(
    _caller: Guarded<OrgOrRoot<scopes::SchedulesRead>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let states = state::list(&warehouse, &org, "schedule").await?;
    let now = clock.now();
    let schedules: Vec<ScheduleView> = executor
        .catalog()
        .iter()
        .flat_map(|p| {
            let states = &states;
            p.schedules.iter().map(move |spec| {
                let id = format!("{}/{}", p.id, spec.name);
                view(p, spec, states.iter().find(|s| s.schedule_id == id), now)
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "schedules": schedules })))
}

#[derive(Clone, Copy)]
enum Action {
    Enable,
    Pause,
    Resume,
}

async fn change(
    caller: Guarded<OrgOrRoot<scopes::SchedulesWrite>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<String>,
    body: Body,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let request: ScheduleRequest = body.json().await?;
    let pipeline = executor
        .catalog()
        .get(&request.pipeline_id)
        .ok_or(ApiError::NotFound)?;
    let spec = pipeline
        .schedules
        .iter()
        .find(|s| s.name == request.schedule)
        .ok_or(ApiError::NotFound)?;
    let schedule_id = format!("{}/{}", pipeline.id, spec.name);
    let now = clock.now();
    let current = state::list(&warehouse, &org, "schedule")
        .await?
        .into_iter()
        .find(|s| s.schedule_id == schedule_id);
    let current_status = current.as_ref().map_or("DISABLED", |s| s.status.as_str());
    let (status, parameters) = match action {
        Action::Enable => {
            let mine = request.parameters.clone().unwrap_or_default();
            if let Err(e) = RunParams::validate(&pipeline.parameters, &spec.render(now, &mine)) {
                return Err(ApiError::invalid(FieldProblem::new(
                    &format!("parameters.{}", e.name),
                    &e.problem,
                    "",
                )));
            }
            ("ACTIVE", mine)
        }
        Action::Pause | Action::Resume if request.parameters.is_some() => {
            return Err(ApiError::invalid(FieldProblem::new(
                "parameters",
                "only enable takes parameters",
                "pipeline_id and schedule",
            )));
        }
        Action::Pause if current_status == "ACTIVE" => (
            "PAUSED",
            current.as_ref().map(|s| s.parameters()).unwrap_or_default(),
        ),
        Action::Resume if current_status == "PAUSED" => (
            "ACTIVE",
            current.as_ref().map(|s| s.parameters()).unwrap_or_default(),
        ),
        Action::Pause | Action::Resume => {
            return Err(ApiError::ScheduleState {
                status: current_status.to_string(),
            });
        }
    };
    let actor = caller.actor();
    let change = Change::new(
        &org,
        &schedule_id,
        "schedule",
        status,
        &pipeline.id,
        Some(&parameters),
        None,
        &actor,
        now,
    );
    let audit_action = match action {
        Action::Enable => "schedule.enable",
        Action::Pause => "schedule.pause",
        Action::Resume => "schedule.resume",
    };
    state::record(&warehouse, change).await?;
    if status == "ACTIVE" {
        executor.wake_scheduler();
    }
    audit(
        &warehouse,
        &org,
        &actor,
        audit_action,
        "schedule",
        &schedule_id,
    )
    .await;
    let recorded = state::State {
        schedule_id: schedule_id.clone(),
        kind: "schedule".into(),
        status: status.into(),
        pipeline_id: pipeline.id.clone(),
        parameters: Some(serde_json::Value::Object(parameters).to_string()),
        details: None,
        changed_by: Some(actor),
        changed_at_micros: Some(now.timestamp_micros()),
    };
    Ok(HttpResponse::Ok().json(view(&pipeline, spec, Some(&recorded), now)))
}

async fn audit(
    warehouse: &Warehouse,
    org: &OrgSlug,
    actor: &str,
    action: &'static str,
    resource_type: &'static str,
    id: &str,
) {
    crate::audit::record(
        warehouse,
        crate::audit::AuditEvent {
            org_slug: Some(org),
            actor: actor.to_string(),
            action,
            resource_type,
            resource_id: Some(id.to_string()),
            details: json!({}),
        },
    )
    .await;
}

/// The three schedule changes, each its own route (and OpenAPI operation) over [`change`].
macro_rules! schedule_actions {
    ($($(#[$doc:meta])* $name:ident => $action:expr;)*) => {$(
        $(#[$doc])*
        pub async fn $name(
            caller: Guarded<OrgOrRoot<scopes::SchedulesWrite>>,
            executor: web::Data<Executor>,
            warehouse: web::Data<Warehouse>,
            clock: web::Data<SharedClock>,
            path: web::Path<String>,
            body: Body,
        ) -> Result<HttpResponse, ApiError> {
            change(caller, executor, warehouse, clock, path, body, $action).await
        }
    )*};
}

schedule_actions! {
    /// Enables a schedule (or changes the org's parameter values): ticks after now fire.
    enable => Action::Enable;
    /// Pauses an active schedule.
    pause => Action::Pause;
    /// Resumes a paused schedule: ticks missed while paused do not fire.
    resume => Action::Resume;
}

fn backfill_error(e: BackfillError) -> ApiError {
    match e {
        BackfillError::Invalid(problem) => ApiError::invalid(problem),
        BackfillError::NotFound => ApiError::NotFound,
        BackfillError::Service(e) => e.into(),
    }
}

/// 202: the backfill is recorded; the scheduler fires its days.
pub async fn start_backfill(
    caller: Guarded<OrgOrRoot<scopes::SchedulesWrite>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let request: BackfillRequest = body.json().await?;
    let actor = caller.actor();
    let started = backfill::start(
        &warehouse,
        executor.catalog(),
        &org,
        request,
        &actor,
        clock.now(),
    )
    .await
    .map_err(backfill_error)?;
    executor.wake_scheduler();
    audit(
        &warehouse,
        &org,
        &actor,
        "backfill.start",
        "backfill",
        &started.backfill_id,
    )
    .await;
    Ok(HttpResponse::Accepted().json(started))
}

pub async fn get_backfill(
    _caller: Guarded<OrgOrRoot<scopes::SchedulesRead>>,
    warehouse: web::Data<Warehouse>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    // `{org_slug}/{uuid}`, parsed as a run route's (an id that is not a UUID is unknown).
    let (org, id) = org_and_run(path)?;
    let found = backfill::get(&warehouse, &org, &id)
        .await
        .map_err(backfill_error)?;
    Ok(HttpResponse::Ok().json(found))
}

/// Stops the backfill's days from firing and cancels its children that wait or run.
pub async fn cancel_backfill(
    caller: Guarded<OrgOrRoot<scopes::SchedulesWrite>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    // `{org_slug}/{uuid}`, parsed as a run route's (an id that is not a UUID is unknown).
    let (org, id) = org_and_run(path)?;
    let actor = caller.actor();
    let now = clock.now();
    let cancelled = backfill::cancel(&warehouse, &org, &id, &actor, now)
        .await
        .map_err(backfill_error)?;
    for child in &cancelled.runs {
        match child.status.as_str() {
            "QUEUED" => {
                executor
                    .cancel_queued(&org, &child.run_id, &cancelled.pipeline_id, &actor)
                    .await
                    .map_err(|e| trigger_error(&org, e))?;
            }
            "PENDING" | "RUNNING" if !executor.cancel(&org, &child.run_id, &actor) => {
                crate::runs::request_cancel(&warehouse, &org, &child.run_id, &actor, now).await?;
            }
            _ => {}
        }
    }
    audit(&warehouse, &org, &actor, "backfill.cancel", "backfill", &id).await;
    Ok(HttpResponse::Accepted().json(cancelled))
}
