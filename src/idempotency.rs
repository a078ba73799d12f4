//! `Idempotency-Key`: a repeated request with the same key returns the original result instead
//! of acting twice. Records live 24 hours in `idempotency_keys`.

use actix_web::HttpRequest;
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{OrgSlug, hash_hex};
use crate::http::error::ApiError;
use crate::service_error::ServiceError;
use crate::warehouse::{Param, Warehouse, sql};

pub const HEADER: &str = "idempotency-key";
const TABLE: &str = "idempotency_keys";

/// The header's value: 1-255 of `[A-Za-z0-9._:-]`; absent is fine, malformed is 400.
pub fn key_from(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let value = raw
        .to_str()
        .map_err(|_| ApiError::bad_request("non-ASCII Idempotency-Key"))?;
    let ok = (1..=255).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !ok {
        return Err(ApiError::bad_request("malformed Idempotency-Key"));
    }
    Ok(Some(value.to_string()))
}

/// A fingerprint of the request a key was first used with.
pub fn request_hash(canonical: &impl Serialize) -> String {
    hash_hex(&serde_json::to_vec(canonical).expect("request serializes"))
}

pub struct Stored {
    pub request_hash: String,
    pub response: Value,
}

#[derive(Deserialize)]
struct Row {
    request_hash: String,
    response: Option<String>,
}

pub async fn lookup(
    warehouse: &Warehouse,
    org: &OrgSlug,
    scope: &str,
    key: &str,
) -> Result<Option<Stored>, ServiceError> {
    let rows: Vec<Row> = warehouse
        .query(
            &sql::IDEMPOTENCY_LOOKUP,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("scope", scope),
                Param::string("idempotency_key", key),
                Param::timestamp("now", Utc::now()),
            ],
        )
        .await?;
    Ok(rows.into_iter().next().map(|r| Stored {
        request_hash: r.request_hash,
        response: r
            .response
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null),
    }))
}

#[derive(Serialize)]
struct NewRow<'a> {
    org_slug: &'a str,
    scope: &'a str,
    idempotency_key: &'a str,
    request_hash: &'a str,
    resource_id: &'a str,
    response: String,
    created_at: String,
    expires_at: String,
}

/// Records the result of a first request. `response` must never hold a secret.
pub async fn store(
    warehouse: &Warehouse,
    org: &OrgSlug,
    scope: &str,
    key: &str,
    request_hash: &str,
    resource_id: &str,
    response: &Value,
) -> Result<(), ServiceError> {
    let now = Utc::now();
    let row = NewRow {
        org_slug: org.as_str(),
        scope,
        idempotency_key: key,
        request_hash,
        resource_id,
        response: response.to_string(),
        created_at: now.to_rfc3339(),
        expires_at: (now + Duration::days(1)).to_rfc3339(),
    };
    let insert_id = format!("{org}:{scope}:{key}");
    warehouse
        .insert_rows(warehouse.meta_dataset(), TABLE, &[(insert_id, row)])
        .await?;
    Ok(())
}
