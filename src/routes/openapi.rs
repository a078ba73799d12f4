//! `/openapi.json`, generated from the code: every route of [`crate::routes::all`] with its
//! auth header (from the route's declared access), path and query parameters, request and
//! response schemas (derived from the Rust types with `schemars`), and the error responses.

use std::collections::BTreeMap;

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::routes::Access;
use crate::routes::schedules::ScheduleView;

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
pub(crate) struct OrgList {
    organizations: Vec<crate::orgs::OrgView>,
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct KeyList {
    api_keys: Vec<crate::api_keys::KeyInfo>,
    /// Present when more keys follow: pass it as `page_token`.
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct IssuedKey {
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
pub(crate) struct Onboarded {
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
pub(crate) struct AuditList {
    audit_logs: Vec<crate::audit::AuditEntry>,
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct IntegrationList {
    integrations: Vec<crate::integrations::CredentialView>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct ChannelList {
    channels: Vec<crate::notifications::ChannelView>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct DeliveryList {
    deliveries: Vec<crate::notifications::DeliveryView>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct TestDelivery {
    delivery_id: String,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Catalog {
    pipelines: Vec<crate::pipelines::PipelineView>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct RunList {
    runs: Vec<crate::runs::RunItem>,
    next_page_token: Option<String>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct StepList {
    run_id: String,
    steps: Vec<crate::runs::StepAttempt>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct DailyStatsPage {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    days: Vec<crate::runs::DailyStats>,
    /// True when the answer holds the most rows one read returns (1,000): ask for a shorter
    /// window for the rest.
    truncated: bool,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct HourlyStatsPage {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    hours: Vec<crate::runs::HourlyStats>,
    /// True when the answer holds the most rows one read returns (1,000): ask for a shorter
    /// window for the rest.
    truncated: bool,
}

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Stats {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    pipelines: Vec<crate::runs::PipelineStats>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Cancelling {
    run_id: String,
    status: String,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct WhoAmI {
    principal: String,
    org_slug: Option<String>,
    key_id: Option<String>,
    scopes: Option<Vec<crate::domain::Scope>>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct Probe {
    status: String,
    checks: Option<BTreeMap<String, String>>,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
pub(crate) struct OrgWithQuota {
    #[serde(flatten)]
    org: crate::orgs::OrgView,
    quota: Option<crate::orgs::QuotaView>,
}

/// The schema of `T`, for a route declaration.
pub(crate) fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

pub(crate) const PAGE: &[(&str, &str)] = &[
    ("limit", "1-100, default 50"),
    ("page_token", "from the previous page"),
];
pub(crate) const RUN_FILTERS: &[(&str, &str)] = &[
    ("status", "a status or a comma-separated list"),
    ("pipeline_id", "one pipeline"),
    ("trigger", "api, rerun, schedule or backfill"),
    ("since", "RFC 3339; default until minus 7 days"),
    ("until", "RFC 3339; default now; window at most 31 days"),
    ("limit", "1-100, default 50"),
    ("page_token", "from the previous page"),
];
pub(crate) const ADMIN_RUN_FILTERS: &[(&str, &str)] = &[
    ("org_slug", "one org (default: all)"),
    ("status", "a status or a comma-separated list"),
    ("pipeline_id", "one pipeline"),
    ("trigger", "api, rerun, schedule or backfill"),
    ("since", "RFC 3339"),
    ("until", "RFC 3339; window at most 31 days"),
    ("limit", "1-100, default 50"),
    ("page_token", "from the previous page"),
];
pub(crate) const WINDOW: &[(&str, &str)] = &[
    ("since", "RFC 3339"),
    ("until", "RFC 3339; window at most 31 days"),
];

#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
pub(crate) struct ScheduleList {
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
        "run_id" | "key_id" | "backfill_id" | "channel_id" => {
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
    for route in crate::routes::all() {
        let path = openapi_path(route.path);
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(format!("{} {}", route.method, path)),
        );
        let mut summary = route.summary.to_string();
        if let Some(scope) = route.scope {
            summary.push_str(&format!(" (org keys need scope {})", scope.as_str()));
        }
        op.insert("summary".into(), json!(summary));
        let mut parameters: Vec<Value> = path_params(&path)
            .into_iter()
            .map(|p| {
                let schema = path_param_schema(&p);
                json!({"name": p, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        for (name, description) in route.query {
            parameters.push(json!({"name": name, "in": "query", "required": false,
                "description": description, "schema": {"type": "string"}}));
        }
        if route.idempotent {
            parameters.push(
                json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "schema": {"type": "string", "maxLength": 255}}),
            );
        }
        if route.conditional {
            parameters.push(
                json!({"name": "If-None-Match", "in": "header", "required": false,
                "description": "The ETag of an earlier answer (from any instance): 304 when it \
                    is still the current state, and never an older state than it",
                "schema": {"type": "string", "maxLength": 200}}),
            );
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some((request, required)) = route.request {
            op.insert(
                "requestBody".into(),
                json!({"required": required,
                       "content": {"application/json": {"schema": request(&mut generator)}}}),
            );
        }
        let mut responses = Map::new();
        let (status, body) = route.response;
        let mut ok = json!({"description": "success"});
        if let Some(schema) = body {
            ok["content"] = json!({"application/json": {"schema": schema(&mut generator)}});
        }
        responses.insert(status.to_string(), ok);
        if route.conditional {
            responses.insert(
                "304".into(),
                json!({"description": "Not modified: the If-None-Match version is current"}),
            );
        }
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
        }
        errors.extend(route.also.iter().copied());
        if route.idempotent {
            errors.push((
                422,
                "Idempotency-Key was already used for a different request",
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
