//! `/openapi.json`, generated from the code: every route of [`crate::routes::ROUTES`] with its
//! auth header (from the route's declared access), path and query parameters, request and
//! response schemas (derived from the Rust types with `schemars`), and the error responses.

use std::collections::BTreeMap;

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::routes::{Access, ROUTES};

/// The standard error body.
#[derive(Serialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    pub request_id: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct ErrorDetail {
    pub code: u16,
    pub message: String,
    /// For 429 quota refusals: daily, monthly or concurrent.
    pub reason: Option<String>,
    /// For 400 on a pipeline parameter: its name.
    pub parameter: Option<String>,
    /// For 400 on a validation failure: what is wrong, field by field.
    pub details: Option<Vec<crate::validation::FieldProblem>>,
    /// For 401 without any key: which headers carry one.
    pub hint: Option<String>,
}

// Shapes of list responses.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct OrgList {
    organizations: Vec<crate::orgs::OrgView>,
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct KeyList {
    api_keys: Vec<crate::api_keys::KeyInfo>,
    /// Present when more keys follow: pass it as `page_token`.
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct IssuedKey {
    api_key: String,
    key_id: String,
    display_prefix: String,
    scopes: Vec<crate::domain::Scope>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    replaced_key_id: String,
    replaced_key_revoked_at: chrono::DateTime<chrono::Utc>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Onboarded {
    org_slug: String,
    company_name: String,
    admin_email: String,
    plan: crate::domain::Plan,
    status: String,
    dataset_id: String,
    quota: crate::domain::QuotaLimits,
    /// Shown once; null on an Idempotency-Key replay.
    api_key: Option<String>,
    api_key_id: String,
    api_key_prefix: String,
    scopes: Vec<crate::domain::Scope>,
    resumed: Option<bool>,
    api_key_already_issued: Option<bool>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct AuditList {
    audit_logs: Vec<crate::audit::AuditEntry>,
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct IntegrationList {
    integrations: Vec<crate::integrations::CredentialView>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Catalog {
    pipelines: Vec<crate::pipelines::PipelineView>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct RunList {
    runs: Vec<crate::runs::RunItem>,
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct StepList {
    run_id: String,
    steps: Vec<crate::runs::StepAttempt>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct DailyStatsPage {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    days: Vec<crate::runs::DailyStats>,
}

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct Stats {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    pipelines: Vec<crate::runs::PipelineStats>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Cancelling {
    run_id: String,
    status: String,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct WhoAmI {
    principal: String,
    org_slug: Option<String>,
    key_id: Option<String>,
    scopes: Option<Vec<crate::domain::Scope>>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Probe {
    status: String,
    checks: Option<BTreeMap<String, String>>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
struct OrgWithQuota {
    #[serde(flatten)]
    org: crate::orgs::OrgView,
    quota: Option<crate::orgs::QuotaView>,
}

type SchemaFn = fn(&mut SchemaGenerator) -> schemars::Schema;

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// What a route documents beyond its place in the route table.
pub struct Doc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub scope: Option<&'static str>,
    pub query: &'static [(&'static str, &'static str)],
    pub request: Option<SchemaFn>,
    pub response: (u16, Option<SchemaFn>),
}

const PAGE: &[(&str, &str)] = &[
    ("limit", "1-100, default 50"),
    ("page_token", "from the previous page"),
];
const RUN_FILTERS: &[(&str, &str)] = &[
    ("status", "a status or a comma-separated list"),
    ("pipeline_id", "one pipeline"),
    ("trigger", "api, rerun, schedule or backfill"),
    ("since", "RFC 3339; default until minus 7 days"),
    ("until", "RFC 3339; default now; window at most 31 days"),
    ("limit", "1-100, default 50"),
    ("page_token", "from the previous page"),
];
const ADMIN_RUN_FILTERS: &[(&str, &str)] = &[
    ("org_slug", "one org (default: all)"),
    ("status", "a status or a comma-separated list"),
    ("pipeline_id", "one pipeline"),
    ("trigger", "api, rerun, schedule or backfill"),
    ("since", "RFC 3339"),
    ("until", "RFC 3339; window at most 31 days"),
    ("limit", "1-100, default 50"),
    ("page_token", "from the previous page"),
];
const WINDOW: &[(&str, &str)] = &[
    ("since", "RFC 3339"),
    ("until", "RFC 3339; window at most 31 days"),
];

macro_rules! doc {
    ($method:ident $path:literal, $summary:literal, scope: $scope:expr, query: $query:expr, request: $req:expr, response: ($status:literal, $resp:expr)) => {
        Doc {
            method: stringify!($method),
            path: $path,
            summary: $summary,
            scope: $scope,
            query: $query,
            request: $req,
            response: ($status, $resp),
        }
    };
}

use crate::bootstrap::{BootstrapReport, StatusReport, SyncReport};
use crate::domain::QuotaLimits;
use crate::executor::Triggered;
use crate::integrations::CredentialView;
use crate::orgs::{DryRun, OnboardRequest, OrgView, QuotaView};
use crate::routes::integrations::SetupBody;
use crate::routes::keys::RotateRequest;
use crate::routes::orchestration::RerunRequest;
use crate::routes::pipelines::TriggerRequest;
use crate::routes::schedules::{ScheduleRequest, ScheduleView};
use crate::runs::RunView;
use crate::schedules::backfill::{BackfillRequest, BackfillView};

pub static DOCS: &[Doc] = &[
    doc!(get "/health/live", "Liveness: the process is up", scope: None, query: &[], request: None, response: (200, Some(s::<Probe>))),
    doc!(get "/health/ready", "Readiness: BigQuery answers (503 names the failed dependency)", scope: None, query: &[], request: None, response: (200, Some(s::<Probe>))),
    doc!(get "/metrics", "Prometheus metrics (text)", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/openapi.json", "This document", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/docs", "This document as a page (HTML)", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/docs/docs.js", "The page's script", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/docs/docs.css", "The page's style", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/ui", "The web view: runs, steps, stats, quota, catalog, schedules (HTML)", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/ui/app.js", "The web view's script", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/ui/app.css", "The web view's style", scope: None, query: &[], request: None, response: (200, None)),
    doc!(get "/api/v1/whoami", "The caller as the service sees it", scope: None, query: &[], request: None, response: (200, Some(s::<WhoAmI>))),
    doc!(post "/api/v1/admin/bootstrap", "Create the meta dataset, tables and views (idempotent)", scope: None, query: &[], request: None, response: (200, Some(s::<BootstrapReport>))),
    doc!(get "/api/v1/admin/bootstrap/status", "NOT_BOOTSTRAPPED, SYNCED or OUT_OF_SYNC", scope: None, query: &[], request: None, response: (200, Some(s::<StatusReport>))),
    doc!(post "/api/v1/admin/bootstrap/sync", "Add missing tables, columns and views", scope: None, query: &[], request: None, response: (200, Some(s::<SyncReport>))),
    doc!(get "/api/v1/admin/runs", "Runs across orgs", scope: None, query: ADMIN_RUN_FILTERS, request: None, response: (200, Some(s::<RunList>))),
    doc!(post "/api/v1/organizations/dryrun", "Check an onboarding request; writes nothing", scope: None, query: &[], request: Some(s::<OnboardRequest>), response: (200, Some(s::<DryRun>))),
    doc!(post "/api/v1/organizations/onboard", "Onboard an org (resumable; Idempotency-Key honoured); the API key is shown once", scope: None, query: &[], request: Some(s::<OnboardRequest>), response: (201, Some(s::<Onboarded>))),
    doc!(get "/api/v1/organizations", "Orgs in slug order", scope: None, query: PAGE, request: None, response: (200, Some(s::<OrgList>))),
    doc!(get "/api/v1/organizations/{org_slug}", "An org's profile and quota", scope: Some("org:read"), query: &[], request: None, response: (200, Some(s::<OrgWithQuota>))),
    doc!(get "/api/v1/organizations/{org_slug}/quota", "Limits, usage and the runs holding slots", scope: Some("org:read"), query: &[], request: None, response: (200, Some(s::<QuotaView>))),
    doc!(put "/api/v1/organizations/{org_slug}/quota", "Change an org's limits", scope: None, query: &[], request: Some(s::<QuotaLimits>), response: (200, Some(s::<QuotaView>))),
    doc!(post "/api/v1/organizations/{org_slug}/suspend", "Suspend an org: its keys stop working", scope: None, query: &[], request: None, response: (200, Some(s::<OrgView>))),
    doc!(post "/api/v1/organizations/{org_slug}/reactivate", "Reactivate a suspended org", scope: None, query: &[], request: None, response: (200, Some(s::<OrgView>))),
    doc!(get "/api/v1/organizations/{org_slug}/audit-logs", "The org's audit trail, newest first", scope: Some("org:read"), query: PAGE, request: None, response: (200, Some(s::<AuditList>))),
    doc!(post "/api/v1/organizations/{org_slug}/api-keys/rotate", "Issue a new key; the old one is revoked after the grace period", scope: Some("keys:manage"), query: &[], request: Some(s::<RotateRequest>), response: (201, Some(s::<IssuedKey>))),
    doc!(get "/api/v1/organizations/{org_slug}/api-keys", "Key metadata, newest first, 100 per page", scope: Some("keys:manage"), query: &[("page_token", "next_page_token of the previous page")], request: None, response: (200, Some(s::<KeyList>))),
    doc!(delete "/api/v1/organizations/{org_slug}/api-keys/{key_id}", "Revoke a key now", scope: Some("keys:manage"), query: &[], request: None, response: (204, None)),
    doc!(post "/api/v1/integrations/{org_slug}/{provider}/setup", "Check, test, seal and store a provider credential", scope: Some("integrations:write"), query: &[], request: Some(s::<SetupBody>), response: (201, Some(s::<CredentialView>))),
    doc!(post "/api/v1/integrations/{org_slug}/{provider}/validate", "Re-test the stored credential", scope: Some("integrations:write"), query: &[], request: None, response: (200, Some(s::<CredentialView>))),
    doc!(get "/api/v1/integrations/{org_slug}", "The org's credentials (metadata only)", scope: Some("integrations:read"), query: &[], request: None, response: (200, Some(s::<IntegrationList>))),
    doc!(get "/api/v1/integrations/{org_slug}/{provider}", "One provider's credential (metadata only)", scope: Some("integrations:read"), query: &[], request: None, response: (200, Some(s::<CredentialView>))),
    doc!(delete "/api/v1/integrations/{org_slug}/{provider}", "Deactivate the provider's credential", scope: Some("integrations:write"), query: &[], request: None, response: (204, None)),
    doc!(get "/api/v1/pipelines", "The pipeline catalog", scope: None, query: &[], request: None, response: (200, Some(s::<Catalog>))),
    doc!(post "/api/v1/pipelines/run/{org_slug}/{pipeline_id}", "Trigger a run (quota-checked; Idempotency-Key honoured)", scope: Some("pipelines:run"), query: &[], request: Some(s::<TriggerRequest>), response: (202, Some(s::<Triggered>))),
    doc!(get "/api/v1/pipelines/{org_slug}/runs", "Runs, newest first (Accept: application/x-ndjson or text/csv for downloads)", scope: Some("runs:read"), query: RUN_FILTERS, request: None, response: (200, Some(s::<RunList>))),
    doc!(get "/api/v1/pipelines/{org_slug}/stats", "Per pipeline: runs, success rate, p50/p95 duration, failures by class", scope: Some("runs:read"), query: WINDOW, request: None, response: (200, Some(s::<Stats>))),
    doc!(get "/api/v1/pipelines/{org_slug}/stats/daily", "Per pipeline and UTC day: runs, success rate, p50/p95 duration", scope: Some("runs:read"), query: WINDOW, request: None, response: (200, Some(s::<DailyStatsPage>))),
    doc!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}", "A run's current state", scope: Some("runs:read"), query: &[], request: None, response: (200, Some(s::<RunView>))),
    doc!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}/steps", "A run's step attempts, in order", scope: Some("runs:read"), query: &[], request: None, response: (200, Some(s::<StepList>))),
    doc!(post "/api/v1/pipelines/{org_slug}/runs/{run_id}/cancel", "Cancel a run (cooperative; a queued run leaves the queue)", scope: Some("pipelines:run"), query: &[], request: None, response: (202, Some(s::<Cancelling>))),
    doc!(post "/api/v1/pipelines/{org_slug}/runs/{run_id}/rerun", "Re-run a failed or cancelled run from its failed steps (same parameters unless given)", scope: Some("pipelines:run"), query: &[], request: Some(s::<RerunRequest>), response: (202, Some(s::<Triggered>))),
    doc!(get "/api/v1/schedules/{org_slug}", "Every schedule of the catalog with this org's state (ACTIVE, PAUSED, DISABLED) and next tick", scope: Some("schedules:read"), query: &[], request: None, response: (200, Some(s::<ScheduleList>))),
    doc!(post "/api/v1/schedules/{org_slug}/enable", "Enable a schedule (or change the org's parameter values); ticks after now fire", scope: Some("schedules:write"), query: &[], request: Some(s::<ScheduleRequest>), response: (200, Some(s::<ScheduleView>))),
    doc!(post "/api/v1/schedules/{org_slug}/pause", "Pause an active schedule", scope: Some("schedules:write"), query: &[], request: Some(s::<ScheduleRequest>), response: (200, Some(s::<ScheduleView>))),
    doc!(post "/api/v1/schedules/{org_slug}/resume", "Resume a paused schedule; ticks missed while paused do not fire", scope: Some("schedules:write"), query: &[], request: Some(s::<ScheduleRequest>), response: (200, Some(s::<ScheduleView>))),
    doc!(post "/api/v1/backfills/{org_slug}", "Start a backfill: one queued child run per day, at most max_parallel at once (400 when the quota cannot hold the range)", scope: Some("schedules:write"), query: &[], request: Some(s::<BackfillRequest>), response: (202, Some(s::<BackfillView>))),
    doc!(get "/api/v1/backfills/{org_slug}/{backfill_id}", "A backfill's progress, day by day", scope: Some("schedules:read"), query: &[], request: None, response: (200, Some(s::<BackfillView>))),
    doc!(post "/api/v1/backfills/{org_slug}/{backfill_id}/cancel", "Cancel a backfill: no more days fire, its waiting and running children are cancelled", scope: Some("schedules:write"), query: &[], request: None, response: (202, Some(s::<BackfillView>))),
];

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

/// `{name}` and `{name:regex}` segments as OpenAPI `{name}`.
pub fn openapi_path(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .unwrap_or(rest.len() - 1);
        let inner = &rest[open + 1..close];
        out.push('{');
        out.push_str(inner.split(':').next().unwrap_or(inner));
        out.push('}');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// What each path parameter accepts, as the handlers check it (so the document, and the
/// fuzzing that reads it, are precise).
fn path_param_schema(name: &str) -> Value {
    const UUID: &str =
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    match name {
        "org_slug" => json!({"type": "string", "minLength": 3, "maxLength": 64,
                             "pattern": "^[a-z0-9][a-z0-9_-]*[a-z0-9]$"}),
        "run_id" | "key_id" | "backfill_id" => {
            json!({"type": "string", "format": "uuid", "pattern": UUID})
        }
        "provider" => json!({"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}),
        "pipeline_id" => json!({"type": "string", "maxLength": 200,
                                "pattern": "^[a-z0-9_-]+(/[a-z0-9_-]+)*$"}),
        _ => json!({"type": "string"}),
    }
}

fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|seg| seg.starts_with('{') && seg.ends_with('}'))
        .map(|seg| seg.trim_matches(|c| c == '{' || c == '}').to_string())
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = generator.subschema_for::<ErrorBody>();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in ROUTES {
        let path = openapi_path(route.path);
        let doc = DOCS
            .iter()
            .find(|d| d.method == route.method && d.path == path);
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(format!("{} {}", route.method, path)),
        );
        if let Some(d) = doc {
            let mut summary = d.summary.to_string();
            if let Some(scope) = d.scope {
                summary.push_str(&format!(" (org keys need scope {scope})"));
            }
            op.insert("summary".into(), json!(summary));
        }
        let mut parameters: Vec<Value> = path_params(&path)
            .into_iter()
            .map(|p| {
                let schema = path_param_schema(&p);
                json!({"name": p, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        if let Some(d) = doc {
            for (name, description) in d.query {
                parameters.push(json!({"name": name, "in": "query", "required": false,
                    "description": description, "schema": {"type": "string"}}));
            }
        }
        if route.method == "post"
            && (path.ends_with("/onboard") || path.contains("/pipelines/run/"))
        {
            parameters.push(
                json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "schema": {"type": "string", "maxLength": 255}}),
            );
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(request) = doc.and_then(|d| d.request) {
            op.insert(
                "requestBody".into(),
                json!({"required": !path.contains("/rotate")
                    && !path.contains("/pipelines/run/")
                    && !path.ends_with("/rerun"),
                       "content": {"application/json": {"schema": request(&mut generator)}}}),
            );
        }
        let mut responses = Map::new();
        let (status, body) = doc.map(|d| d.response).unwrap_or((200, None));
        let mut ok = json!({"description": "success"});
        if let Some(schema) = body {
            ok["content"] = json!({"application/json": {"schema": schema(&mut generator)}});
        }
        responses.insert(status.to_string(), ok);
        let mut errors: Vec<(u16, &str)> = vec![(500, "Internal error. Check server logs.")];
        if route.access != Access::Public {
            errors.extend([
                (400, "Invalid request format"),
                (401, "Invalid or inactive API key"),
                (404, "Resource not found"),
                (429, "Rate limit exceeded (Retry-After)"),
                (503, "Service unavailable (Retry-After)"),
            ]);
            if path.contains("{org_slug}") && route.access != Access::Root {
                errors.push((
                    403,
                    "Cannot access another organization, or the key lacks the scope",
                ));
            }
        } else if path == "/health/ready" {
            errors.push((
                503,
                "Service unavailable: failed_dependencies names it, or the instance is draining",
            ));
        }
        if path.ends_with("/cancel") {
            errors.push((409, "Run already ended"));
        }
        if path.ends_with("/pause") || path.ends_with("/resume") {
            errors.push((409, "Schedule is not in a state that allows this"));
        }
        if path.ends_with("/rerun") {
            errors.push((
                409,
                "Only a FAILED, CANCELLED, TIMED_OUT or ORPHANED run can be re-run",
            ));
        }
        if path.ends_with("/api-keys/rotate") {
            errors.push((409, "Too many live API keys: revoke one first"));
        }
        if route.method == "post"
            && (path.ends_with("/onboard") || path.contains("/pipelines/run/"))
        {
            errors.push((
                422,
                "Idempotency-Key was already used for a different request",
            ));
        }
        if route.method == "post" && path.contains("/pipelines/run/") {
            errors.push((
                409,
                "A request with this Idempotency-Key is in progress (Retry-After)",
            ));
        }
        for (code, description) in errors {
            responses.insert(
                code.to_string(),
                json!({"description": description,
                       "content": {"application/json": {"schema": error.clone()}}}),
            );
        }
        op.insert("responses".into(), Value::Object(responses));
        let security = match route.access {
            Access::Public => json!([]),
            Access::Root => json!([{"RootKey": []}]),
            Access::Org => json!([{"OrgKey": []}]),
            Access::OrgOrRoot => json!([{"RootKey": []}, {"OrgKey": []}]),
        };
        op.insert("security".into(), security);
        paths
            .entry(path)
            .or_default()
            .insert(route.method.to_string(), Value::Object(op));
    }
    let schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Quarry", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Multi-tenant pipeline orchestrator backed by BigQuery."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "RootKey": {"type": "apiKey", "in": "header", "name": "X-CA-Root-Key"},
                "OrgKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            }
        }
    })
}
