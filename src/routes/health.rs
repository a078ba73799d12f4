//! Liveness and readiness probes (no auth: they reveal nothing but up/down).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::openapi::s;
use super::{RouteSpec, route};
use crate::auth::Public;
use crate::http::error::error_body;
use crate::settings::Settings;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/health/live" => live, Public, "Liveness: the process is up")
        .returns(200, Some(s::<super::openapi::Probe>)),
    route!(get "/health/ready" => ready, Public, "Readiness: BigQuery answers (503 names the failed dependency)")
        .returns(200, Some(s::<super::openapi::Probe>))
        .also(&[(503, "Service unavailable: failed_dependencies names it, or the instance is draining")]),
    route!(get "/metrics" => metrics, Public, "Prometheus metrics (text)"),
    route!(get "/openapi.json" => openapi, Public, "This document"),
];

/// How long a readiness result is reused: probes and floods of `/health/ready` cost at most one
/// BigQuery call per this interval.
pub const READINESS_CACHE: std::time::Duration = std::time::Duration::from_secs(2);

/// The last readiness probe and when it ran (one probe at a time; callers meanwhile wait for it).
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Option<String>)>>,
}

impl Readiness {
    /// `None` when BigQuery answered, else why not; from a result at most [`READINESS_CACHE`] old.
    async fn check(&self, warehouse: &Warehouse, settings: &Settings) -> Option<String> {
        let mut last = self.last.lock().await;
        if let Some((at, failure)) = &*last {
            if at.elapsed() < READINESS_CACHE {
                return failure.clone();
            }
        }
        let probe = tokio::time::timeout(
            settings.timeouts.readiness_probe,
            warehouse.dataset_exists(warehouse.meta_dataset()),
        )
        .await;
        let failure = match probe {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("readiness probe timed out".to_string()),
        };
        *last = Some((std::time::Instant::now(), failure.clone()));
        failure
    }
}

/// The process is up and serving HTTP.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "live"}))
}

/// BigQuery answers: a metadata read of the meta dataset (found or not found both prove
/// reachability), bounded by `READINESS_TIMEOUT_SECS`, at most [`READINESS_CACHE`] old. 503 names the failed dependency, or says
/// the instance is draining (after SIGTERM it takes no new runs: send traffic elsewhere).
pub async fn ready(
    warehouse: web::Data<Warehouse>,
    settings: web::Data<Settings>,
    executor: web::Data<crate::executor::Executor>,
    readiness: web::Data<Readiness>,
) -> HttpResponse {
    if executor.is_draining() {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let mut body = error_body(status, "Service unavailable");
        body["status"] = json!("draining");
        body["failed_dependencies"] = json!([]);
        return HttpResponse::build(status)
            .insert_header(("Retry-After", "5"))
            .json(body);
    }
    let failure = readiness.check(&warehouse, &settings).await;
    match failure {
        None => HttpResponse::Ok().json(json!({"status": "ready", "checks": {"bigquery": "ok"}})),
        Some(detail) => {
            tracing::warn!(dependency = "bigquery", error = %detail, "not ready");
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let mut body = error_body(status, "Service unavailable");
            body["failed_dependencies"] = json!(["bigquery"]);
            body["checks"] = json!({"bigquery": "unavailable"});
            HttpResponse::build(status)
                .insert_header(("Retry-After", "5"))
                .json(body)
        }
    }
}

/// Prometheus text exposition. Unauthenticated like the probes: it carries no keys,
/// credentials or (by default) org names; restrict it at the ingress if needed.
pub async fn metrics(
    metrics: web::Data<crate::metrics::Metrics>,
    warehouse: web::Data<Warehouse>,
    executor: web::Data<crate::executor::Executor>,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render(warehouse.counters().snapshot(), executor.active_runs()))
}

/// The OpenAPI document, generated from the route table and the Rust types.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::routes::openapi::document())
}
