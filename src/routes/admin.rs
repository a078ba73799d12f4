//! Admin routes (root key): bootstrap of the meta dataset and tables.

use actix_web::{HttpResponse, web};

use super::openapi::s;
use super::{RouteSpec, route};
use crate::audit::{self, AuditEvent};
use crate::auth::{Guarded, Root};
use crate::bootstrap;
use crate::http::error::ApiError;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(post "/api/v1/admin/bootstrap" => run_bootstrap, Root, "Create the meta dataset, tables and views (idempotent)")
        .returns(200, Some(s::<crate::bootstrap::BootstrapReport>)),
    route!(get "/api/v1/admin/bootstrap/status" => bootstrap_status, Root, "NOT_BOOTSTRAPPED, SYNCED or OUT_OF_SYNC")
        .returns(200, Some(s::<crate::bootstrap::StatusReport>)),
    route!(post "/api/v1/admin/bootstrap/sync" => bootstrap_sync, Root, "Add missing tables, columns and views")
        .returns(200, Some(s::<crate::bootstrap::SyncReport>)),
];

/// Creates the meta dataset and every meta table; idempotent.
pub async fn run_bootstrap(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
) -> Result<HttpResponse, ApiError> {
    let report = bootstrap::bootstrap(&warehouse).await?;
    tracing::info!(dataset = %report.dataset, "bootstrap done");
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: None,
            actor: "root".into(),
            action: "system.bootstrap",
            resource_type: "dataset",
            resource_id: Some(report.dataset.clone()),
            details: serde_json::json!({"dataset_status": report.dataset_status}),
        },
    )
    .await;
    Ok(HttpResponse::Ok().json(report))
}

/// NOT_BOOTSTRAPPED | SYNCED | OUT_OF_SYNC, with what is missing.
pub async fn bootstrap_status(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(bootstrap::status(&warehouse).await?))
}

/// Adds missing tables and columns; never drops anything.
pub async fn bootstrap_sync(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
) -> Result<HttpResponse, ApiError> {
    let report = bootstrap::sync(&warehouse).await?;
    tracing::info!(
        created_tables = report.created_tables.len(),
        added_columns = report.added_columns.len(),
        "bootstrap sync done"
    );
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: None,
            actor: "root".into(),
            action: "system.bootstrap_sync",
            resource_type: "dataset",
            resource_id: Some(report.dataset.clone()),
            details: serde_json::json!({
                "created_tables": report.created_tables,
                "added_columns": report.added_columns,
            }),
        },
    )
    .await;
    Ok(HttpResponse::Ok().json(report))
}
