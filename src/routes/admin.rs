//! Admin routes (root key): bootstrap of the meta dataset and tables.

use actix_web::{HttpResponse, get, post, web};

use crate::auth::{Guarded, Root};
use crate::bootstrap;
use crate::error::ApiError;
use crate::warehouse::Warehouse;

/// Creates the meta dataset and every meta table; idempotent.
#[post("/api/v1/admin/bootstrap")]
pub async fn run_bootstrap(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
) -> Result<HttpResponse, ApiError> {
    let report = bootstrap::bootstrap(&warehouse).await?;
    tracing::info!(dataset = %report.dataset, "bootstrap done");
    Ok(HttpResponse::Ok().json(report))
}

/// NOT_BOOTSTRAPPED | SYNCED | OUT_OF_SYNC, with what is missing.
#[get("/api/v1/admin/bootstrap/status")]
pub async fn bootstrap_status(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(bootstrap::status(&warehouse).await?))
}

/// Adds missing tables and columns; never drops anything.
#[post("/api/v1/admin/bootstrap/sync")]
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
    Ok(HttpResponse::Ok().json(report))
}
