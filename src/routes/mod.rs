//! Every route of the service, in one table. The table is what the app registers, so a route
//! cannot be served without appearing here with its access level; tests walk it (every
//! non-public route must refuse a missing key, a wrong key, and another org's key).

pub mod admin;
pub mod docs;
pub mod health;
pub mod integrations;
pub mod keys;
pub mod me;
pub mod openapi;
pub mod orchestration;
pub mod orgs;
pub mod pipelines;
pub mod schedules;
pub mod ui;

use actix_web::web;

/// Who may call a route (enforced by the extractor in the handler's signature; declared here so
/// tests can check the behaviour of every route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Root,
    Org,
    OrgOrRoot,
}

pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    register: fn(&mut web::ServiceConfig),
}

macro_rules! route {
    ($method:ident $path:literal, $access:ident => $handler:path) => {
        RouteSpec {
            method: stringify!($method),
            path: $path,
            access: Access::$access,
            register: |cfg| {
                cfg.route($path, web::$method().to($handler));
            },
        }
    };
}

pub static ROUTES: &[RouteSpec] = &[
    route!(get "/health/live", Public => health::live),
    route!(get "/health/ready", Public => health::ready),
    route!(get "/metrics", Public => health::metrics),
    route!(get "/openapi.json", Public => health::openapi),
    route!(get "/docs", Public => docs::index),
    route!(get "/docs/docs.js", Public => docs::script),
    route!(get "/docs/docs.css", Public => docs::style),
    route!(get "/ui", Public => ui::index),
    route!(get "/ui/app.js", Public => ui::script),
    route!(get "/ui/app.css", Public => ui::style),
    route!(get "/api/v1/whoami", OrgOrRoot => me::whoami),
    route!(post "/api/v1/admin/bootstrap", Root => admin::run_bootstrap),
    route!(get "/api/v1/admin/bootstrap/status", Root => admin::bootstrap_status),
    route!(post "/api/v1/admin/bootstrap/sync", Root => admin::bootstrap_sync),
    route!(post "/api/v1/organizations/dryrun", Root => orgs::dry_run),
    route!(post "/api/v1/organizations/onboard", Root => orgs::onboard),
    route!(get "/api/v1/organizations", Root => orgs::list),
    route!(get "/api/v1/organizations/{org_slug}", OrgOrRoot => orgs::get),
    route!(get "/api/v1/organizations/{org_slug}/quota", OrgOrRoot => orgs::get_quota),
    route!(put "/api/v1/organizations/{org_slug}/quota", Root => orgs::put_quota),
    route!(post "/api/v1/organizations/{org_slug}/suspend", Root => orgs::suspend),
    route!(post "/api/v1/organizations/{org_slug}/reactivate", Root => orgs::reactivate),
    route!(get "/api/v1/organizations/{org_slug}/audit-logs", OrgOrRoot => orgs::audit_logs),
    route!(post "/api/v1/organizations/{org_slug}/api-keys/rotate", OrgOrRoot => keys::rotate),
    route!(get "/api/v1/organizations/{org_slug}/api-keys", OrgOrRoot => keys::list),
    route!(delete "/api/v1/organizations/{org_slug}/api-keys/{key_id}", OrgOrRoot => keys::revoke),
    route!(post "/api/v1/integrations/{org_slug}/{provider}/setup", OrgOrRoot => integrations::setup),
    route!(post "/api/v1/integrations/{org_slug}/{provider}/validate", OrgOrRoot => integrations::validate),
    route!(get "/api/v1/integrations/{org_slug}", OrgOrRoot => integrations::list),
    route!(get "/api/v1/integrations/{org_slug}/{provider}", OrgOrRoot => integrations::get),
    route!(delete "/api/v1/integrations/{org_slug}/{provider}", OrgOrRoot => integrations::delete),
    route!(get "/api/v1/pipelines", OrgOrRoot => pipelines::catalog),
    route!(post "/api/v1/pipelines/run/{org_slug}/{pipeline_id:.*}", OrgOrRoot => pipelines::trigger),
    route!(get "/api/v1/pipelines/{org_slug}/runs", OrgOrRoot => pipelines::list_runs),
    route!(get "/api/v1/pipelines/{org_slug}/stats", OrgOrRoot => pipelines::stats),
    route!(get "/api/v1/pipelines/{org_slug}/stats/daily", OrgOrRoot => pipelines::daily_stats),
    route!(get "/api/v1/admin/runs", Root => pipelines::admin_runs),
    route!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}", OrgOrRoot => pipelines::get_run),
    route!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}/steps", OrgOrRoot => pipelines::get_steps),
    route!(post "/api/v1/pipelines/{org_slug}/runs/{run_id}/cancel", OrgOrRoot => pipelines::cancel),
    route!(post "/api/v1/pipelines/{org_slug}/runs/{run_id}/rerun", OrgOrRoot => orchestration::rerun),
    route!(get "/api/v1/schedules/{org_slug}", OrgOrRoot => schedules::list),
    route!(post "/api/v1/schedules/{org_slug}/enable", OrgOrRoot => schedules::enable),
    route!(post "/api/v1/schedules/{org_slug}/pause", OrgOrRoot => schedules::pause),
    route!(post "/api/v1/schedules/{org_slug}/resume", OrgOrRoot => schedules::resume),
    route!(post "/api/v1/backfills/{org_slug}", OrgOrRoot => schedules::start_backfill),
    route!(get "/api/v1/backfills/{org_slug}/{backfill_id}", OrgOrRoot => schedules::get_backfill),
    route!(post "/api/v1/backfills/{org_slug}/{backfill_id}/cancel", OrgOrRoot => schedules::cancel_backfill),
];

/// Registers every route of [`ROUTES`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    for spec in ROUTES {
        (spec.register)(cfg);
    }
}

/// Parses the `{org_slug}` path segment (400 when malformed).
pub fn org_from_path(raw: &str) -> Result<crate::domain::OrgSlug, crate::http::error::ApiError> {
    crate::domain::OrgSlug::parse(raw).map_err(crate::http::error::ApiError::bad_request)
}
