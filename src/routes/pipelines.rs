//! Pipeline routes: the catalog, triggering a run, reading a run and its steps, cancelling.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::openapi::s;
use super::org_from_path;
use super::{RouteSpec, route};
use crate::auth::{Caller, Guarded, OrgOrRoot, Root, scopes};
use crate::clock::SharedClock;
use crate::cost::price::Price;
use crate::domain::OrgSlug;
use crate::executor::{Executor, TriggerError, TriggerInfo};
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::idempotency;
use crate::live::{LiveRuns, Seen, Snapshot};
use crate::orgs;
use crate::page_token::PageTokens;
use crate::pipelines::PipelineView;
use crate::runs;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/api/v1/pipelines" => catalog, OrgOrRoot<scopes::Any>, "The pipeline catalog")
        .returns(200, Some(s::<super::openapi::Catalog>)),
    route!(post "/api/v1/pipelines/run/{org_slug}/{pipeline_id:.*}" => trigger, OrgOrRoot<scopes::PipelinesRun>, "Trigger a run (quota-checked; Idempotency-Key honoured)")
        .optional_body(s::<TriggerRequest>)
        .returns(202, Some(s::<crate::executor::Triggered>))
        .also(&[(409, "A request with this Idempotency-Key is in progress (Retry-After)")])
        .idempotent(),
    route!(get "/api/v1/pipelines/{org_slug}/runs" => list_runs, OrgOrRoot<scopes::RunsRead>, "Runs, newest first (Accept: application/x-ndjson or text/csv for downloads)")
        .query(super::openapi::RUN_FILTERS)
        .returns(200, Some(s::<super::openapi::RunList>)),
    route!(get "/api/v1/pipelines/{org_slug}/stats" => stats, OrgOrRoot<scopes::RunsRead>, "Per pipeline: runs, success rate, p50/p95 duration, failures by class")
        .query(super::openapi::WINDOW)
        .returns(200, Some(s::<super::openapi::Stats>)),
    route!(get "/api/v1/pipelines/{org_slug}/stats/daily" => daily_stats, OrgOrRoot<scopes::RunsRead>, "Per pipeline and UTC day: runs, success rate, p50/p95 duration")
        .query(super::openapi::WINDOW)
        .returns(200, Some(s::<super::openapi::DailyStatsPage>)),
    route!(get "/api/v1/pipelines/{org_slug}/stats/hourly" => hourly_stats, OrgOrRoot<scopes::RunsRead>, "Per pipeline and UTC hour (a window of at most 7 days): runs, success rate, p50/p95 duration")
        .query(super::openapi::WINDOW)
        .returns(200, Some(s::<super::openapi::HourlyStatsPage>)),
    route!(get "/api/v1/admin/runs" => admin_runs, Root, "Runs across orgs")
        .query(super::openapi::ADMIN_RUN_FILTERS)
        .returns(200, Some(s::<super::openapi::RunList>)),
    route!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}" => get_run, OrgOrRoot<scopes::RunsRead>, "A run's current state (ETag; If-None-Match answers at once from the live model)")
        .returns(200, Some(s::<crate::runs::RunView>))
        .conditional(),
    route!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}/steps" => get_steps, OrgOrRoot<scopes::RunsRead>, "A run's step attempts, in order (ETag: the run's, prefixed steps:; If-None-Match with it, or the run's ETag, answers at once from the live model)")
        .returns(200, Some(s::<super::openapi::StepList>))
        .conditional(),
    route!(post "/api/v1/pipelines/{org_slug}/runs/{run_id}/cancel" => cancel, OrgOrRoot<scopes::PipelinesRun>, "Cancel a run (cooperative; a queued run leaves the queue)")
        .returns(202, Some(s::<super::openapi::Cancelling>))
        .also(&[(409, "Run already ended")]),
];

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

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// When the org's concurrency is full: `refuse` (429, the default) or `queue` (202 with
    /// status QUEUED; started in arrival order as slots free).
    #[serde(default)]
    pub when_busy: crate::admission::WhenBusy,
}

pub async fn trigger(
    caller: Guarded<OrgOrRoot<scopes::PipelinesRun>>,
    req: HttpRequest,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    path: web::Path<(String, String)>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (raw_org, pipeline_id) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    if matches!(*caller, Caller::Root) {
        // An org key of a suspended org is refused by auth; the root key must not run what the
        // org itself cannot (one bounded read, on the root path only).
        match orgs::profile(&warehouse, &org).await? {
            None => return Err(ApiError::NotFound),
            Some(profile) if profile.status != "ACTIVE" => return Err(ApiError::OrgSuspended),
            Some(_) => {}
        }
    }
    let idempotency_key = idempotency::key_from(&req)?;
    let body: TriggerRequest = body.json_or_default().await?;
    let info = TriggerInfo {
        trigger: "api",
        triggered_by: caller.actor(),
        idempotency_key,
        when_busy: body.when_busy,
        ..TriggerInfo::default()
    };
    executor
        .trigger(&org, &pipeline_id, &body.parameters, info)
        .await
        .map(|t| HttpResponse::Accepted().json(t))
        .map_err(|e| trigger_error(&org, e))
}

/// A refused trigger as the API answers it (triggers, re-runs).
pub fn trigger_error(org: &OrgSlug, e: TriggerError) -> ApiError {
    match e {
        TriggerError::NotFound => ApiError::NotFound,
        TriggerError::Param(e) => {
            tracing::info!(parameter = %e.name, problem = %e.problem, "invalid pipeline parameter");
            ApiError::InvalidParameter { name: e.name }
        }
        TriggerError::Quota {
            limit,
            retry_after_secs,
        } => {
            tracing::info!(org = %org, limit = limit.as_str(), "run refused by quota");
            ApiError::QuotaExceeded {
                reason: limit.as_str(),
                retry_after_secs,
            }
        }
        // No quota row: the org does not exist (only the root key reaches here for an
        // unknown org) or its onboarding never finished.
        TriggerError::NoQuota => {
            tracing::info!(org = %org, "trigger for an org without a quota row");
            ApiError::NotFound
        }
        TriggerError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
        TriggerError::IdempotencyKeyInProgress => ApiError::IdempotencyKeyInProgress {
            retry_after_secs: 1,
        },
        TriggerError::Draining => ApiError::Unavailable {
            retry_after_secs: 10,
        },
        // Only schedules and backfills send ticks.
        TriggerError::AlreadyFired => ApiError::Conflict,
        TriggerError::Admission(e) => e.into(),
        TriggerError::Warehouse(e) => e.into(),
    }
}

/// The `{org_slug}` and `{run_id}` of a run route (a run id that is not a UUID is unknown).
pub(super) fn org_and_run(
    path: web::Path<(String, String)>,
) -> Result<(OrgSlug, String), ApiError> {
    let (raw_org, raw_run) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let run_id = uuid::Uuid::parse_str(&raw_run)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::NotFound)?;
    Ok((org, run_id))
}

/// From the instance's live read model (`crate::live`): a run looked at again within
/// [`crate::live::LOOK_HOLD`] costs no query, and this instance's own writes show at once. The
/// `ETag` is the state's version: sent back as `If-None-Match`, it is answered at once from the
/// model (304 while it is current), never with an older state.
pub async fn get_run(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    live: web::Data<LiveRuns>,
    price: web::Data<Price>,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (told, snapshot, _) = look(&live, path, &request).await?;
    Ok(conditional(&told, snapshot.version(), || {
        json!(snapshot.run.clone().priced(**price))
    }))
}

/// From the instance's live read model, as [`get_run`]. Its `ETag` is the run's prefixed
/// `steps:` (the same state, another representation): sent back, it is answered 304 while
/// current; the run's own `ETag` sent with it (or alone, on a first look at the steps) lets the
/// model answer at once with a state at least as far on as the run the caller was told.
pub async fn get_steps(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    live: web::Data<LiveRuns>,
    executor: web::Data<Executor>,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (told, snapshot, run_id) = look(&live, path, &request).await?;
    let etag = format!("{STEPS_TAG}{}", snapshot.version());
    Ok(conditional(&told, etag, || {
        let mut steps = snapshot.attempts().to_vec();
        if let Some(pipeline) = executor.catalog().get(&snapshot.run.pipeline_id) {
            runs::in_run_order(&mut steps, &pipeline.step_ids());
        }
        json!({ "run_id": run_id, "steps": steps })
    }))
}

/// What `…/steps` prefixes to the run's version to make its `ETag`.
const STEPS_TAG: &str = "steps:";

/// Entries of `If-None-Match` read at most (a client sends one or two).
const TAGS_READ: usize = 8;

/// The run of the path as the live model answers the request (see [`LiveRuns::look`]), with the
/// tags the caller sent back, and the run id.
async fn look(
    live: &LiveRuns,
    path: web::Path<(String, String)>,
    request: &HttpRequest,
) -> Result<(Vec<(String, Seen)>, std::sync::Arc<Snapshot>, String), ApiError> {
    let (org, run_id) = org_and_run(path)?;
    let told = told(request);
    let seen: Vec<Seen> = told.iter().map(|(_, seen)| seen.clone()).collect();
    let snapshot = live
        .look(&org, &run_id, &seen)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((told, snapshot, run_id))
}

/// The states of the run the caller says it was told: each entry of `If-None-Match` that is a
/// version of the run (`"…"` or `W/"…"`) or of its steps (`"steps:…"`), as sent (unquoted),
/// with the state it names. Anything else names none (a look with none waits for a poll).
fn told(request: &HttpRequest) -> Vec<(String, Seen)> {
    let Some(value) = request
        .headers()
        .get(actix_web::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return Vec::new();
    };
    value
        .split(',')
        .take(TAGS_READ)
        .filter_map(|tag| {
            let tag = tag.trim();
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let tag = tag.strip_prefix('"')?.strip_suffix('"')?;
            let seen = Seen::parse(tag.strip_prefix(STEPS_TAG).unwrap_or(tag))?;
            Some((tag.to_string(), seen))
        })
        .collect()
}

/// 304 when the caller sent back `etag` (this answer's), else 200 with `body`; the `ETag`
/// either way.
fn conditional(
    told: &[(String, Seen)],
    etag: String,
    body: impl FnOnce() -> serde_json::Value,
) -> HttpResponse {
    let current = told.iter().any(|(tag, _)| *tag == etag);
    let header = (actix_web::http::header::ETAG, format!("\"{etag}\""));
    if current {
        return HttpResponse::NotModified().insert_header(header).finish();
    }
    HttpResponse::Ok().insert_header(header).json(body())
}

/// Cooperative: the run ends CANCELLED and frees its slot. A run executing on this instance is
/// told at once; one executing elsewhere gets a cancellation request in BigQuery, which its
/// instance reads with its next heartbeat. 409 only for a run that has already ended.
pub async fn cancel(
    caller: Guarded<OrgOrRoot<scopes::PipelinesRun>>,
    executor: web::Data<Executor>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, run_id) = org_and_run(path)?;
    let cancelling =
        HttpResponse::Accepted().json(json!({"run_id": run_id, "status": "CANCELLING"}));
    let actor = caller.actor();
    if executor.cancel(&org, &run_id, &actor) {
        tracing::info!(org = %org, run_id, actor = %actor, "run cancellation requested");
        audit_cancel(&warehouse, &org, &run_id, &actor, "here").await;
        return Ok(cancelling);
    }
    let now = clock.now();
    let run = runs::get(&warehouse, &org, &run_id, now).await?;
    if let Some(run) = run.as_ref().filter(|r| r.status == "QUEUED") {
        match executor
            .cancel_queued(&org, &run_id, &run.pipeline_id, &actor)
            .await
        {
            Ok(true) => {
                tracing::info!(org = %org, run_id, actor = %actor, "queued run cancelled");
                audit_cancel(&warehouse, &org, &run_id, &actor, "the queue").await;
                return Ok(
                    HttpResponse::Accepted().json(json!({"run_id": run_id, "status": "CANCELLED"}))
                );
            }
            // Admitted meanwhile: cancelled as a running run below.
            Ok(false) => {}
            Err(e) => return Err(trigger_error(&org, e)),
        }
    }
    match run {
        None => Err(ApiError::NotFound),
        Some(run) if crate::executor::RunStatus::is_terminal(run.status.as_str()) => {
            Err(ApiError::RunEnded)
        }
        Some(_) => {
            runs::request_cancel(&warehouse, &org, &run_id, &actor, now).await?;
            tracing::info!(org = %org, run_id, actor = %actor, "run cancellation recorded for its instance");
            audit_cancel(
                &warehouse,
                &org,
                &run_id,
                &actor,
                "its instance, at its next heartbeat",
            )
            .await;
            Ok(cancelling)
        }
    }
}

async fn audit_cancel(warehouse: &Warehouse, org: &OrgSlug, run_id: &str, actor: &str, via: &str) {
    crate::audit::record(
        warehouse,
        crate::audit::AuditEvent {
            org_slug: Some(org),
            actor: actor.to_string(),
            action: "run.cancel",
            resource_type: "run",
            resource_id: Some(run_id.to_string()),
            details: json!({ "stopped_by": via }),
        },
    )
    .await;
}

/// Lists in the format the client accepts: JSON (default), NDJSON or CSV, same bounded page.
fn run_page_response(req: &HttpRequest, page: runs::RunPage) -> HttpResponse {
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut response = HttpResponse::Ok();
    if let Some(token) = &page.next_page_token {
        response.insert_header(("X-Next-Page-Token", token.as_str()));
    }
    if accept.contains("application/x-ndjson") {
        let body: String = page
            .runs
            .iter()
            .map(|r| serde_json::to_string(r).expect("runs serialize") + "\n")
            .collect();
        response.content_type("application/x-ndjson").body(body)
    } else if accept.contains("text/csv") {
        response
            .content_type("text/csv; charset=utf-8")
            .body(runs_csv(&page.runs))
    } else {
        response.json(json!({"runs": page.runs, "next_page_token": page.next_page_token}))
    }
}

const CSV_COLUMNS: &[&str] = &[
    "run_id",
    "org_slug",
    "pipeline_id",
    "status",
    "trigger",
    "triggered_by",
    "created_at",
    "started_at",
    "ended_at",
    "duration_ms",
    "error_class",
    "error_summary",
    "runs_today_at_admission",
    "runs_month_at_admission",
    "bytes_billed",
];

fn csv_field(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Quote what needs quoting; neutralise spreadsheet formulas.
    let text = if text.starts_with(['=', '+', '-', '@'])
        && !text.starts_with("-0")
        && text.parse::<f64>().is_err()
    {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub fn runs_csv(items: &[runs::RunItem]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for item in items {
        let v = serde_json::to_value(item).expect("runs serialize");
        let line: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_field(&v[*c])).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Runs of one org, newest first, filtered, one bounded page at a time.
/// A first page comes from a read that ended at most three poll intervals ago, shared by every
/// caller asking the same of the org (`crate::live`: held and read again in the background while
/// asked, and read at once after any run event this instance writes for the org); the first
/// pages of all orgs asked under one filter are read in one query.
#[allow(clippy::too_many_arguments)]
pub async fn list_runs(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    req: HttpRequest,
    warehouse: web::Data<Warehouse>,
    live: web::Data<LiveRuns>,
    tokens: web::Data<PageTokens>,
    clock: web::Data<SharedClock>,
    path: web::Path<String>,
    query: web::Query<runs::RunsQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    if query.org_slug.is_some() {
        return Err(ApiError::bad_request(
            "org_slug is a filter of the admin list only",
        ));
    }
    let filter = query.filter(clock.now())?;
    let page = match query.page_token.as_deref() {
        None => {
            live.first_page(&org, req.query_string(), &query, filter, &tokens)
                .await?
        }
        Some(token) => {
            runs::list(
                &warehouse,
                &tokens,
                runs::ListScope::Org(&org),
                filter,
                Some(token),
            )
            .await?
        }
    };
    Ok(run_page_response(&req, page))
}

/// Per pipeline: runs, success rate, p50/p95 duration, failures by error class.
pub async fn stats(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    price: web::Data<Price>,
    path: web::Path<String>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let (since, until) = runs::window(query.since.as_deref(), query.until.as_deref(), clock.now())?;
    let stats = runs::stats(&warehouse, &org, since, until, **price).await?;
    Ok(HttpResponse::Ok().json(json!({"since": since, "until": until, "pipelines": stats})))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Admin: runs across orgs (optionally one), same filters and formats.
pub async fn admin_runs(
    _admin: Guarded<Root>,
    req: HttpRequest,
    warehouse: web::Data<Warehouse>,
    tokens: web::Data<PageTokens>,
    clock: web::Data<SharedClock>,
    query: web::Query<runs::RunsQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = query.org_slug.as_deref().map(org_from_path).transpose()?;
    let filter = query.filter(clock.now())?;
    let page = runs::list(
        &warehouse,
        &tokens,
        runs::ListScope::All(org.as_ref()),
        filter,
        query.page_token.as_deref(),
    )
    .await?;
    Ok(run_page_response(&req, page))
}

/// Per pipeline and UTC hour, over at most 7 days (the web view's charts while history is short).
pub async fn hourly_stats(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    price: web::Data<Price>,
    path: web::Path<String>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let hourly = true;
    by_period(&warehouse, &clock, **price, &path, &query, hourly).await
}

/// Per pipeline and UTC day: runs, success rate, p50/p95 duration (the web view's charts).
pub async fn daily_stats(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    price: web::Data<Price>,
    path: web::Path<String>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let hourly = false;
    by_period(&warehouse, &clock, **price, &path, &query, hourly).await
}

/// `{since, until, days | hours, truncated}`: `truncated` when the rows reach what one read
/// returns ([`runs::PERIOD_ROWS_LIMIT`]).
async fn by_period(
    warehouse: &Warehouse,
    clock: &SharedClock,
    price: Price,
    path: &str,
    query: &StatsQuery,
    hourly: bool,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(path)?;
    let (since, until) = runs::window(query.since.as_deref(), query.until.as_deref(), clock.now())?;
    let (field, rows, n) = if hourly {
        let rows = runs::hourly_stats(warehouse, &org, since, until, price).await?;
        ("hours", json!(rows), rows.len())
    } else {
        let rows = runs::daily_stats(warehouse, &org, since, until, price).await?;
        ("days", json!(rows), rows.len())
    };
    let mut page =
        json!({"since": since, "until": until, "truncated": n >= runs::PERIOD_ROWS_LIMIT});
    page[field] = rows;
    Ok(HttpResponse::Ok().json(page))
}
