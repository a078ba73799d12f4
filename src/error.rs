//! The HTTP error type: every failure a client can see, mapped once to the standard bodies
//! `{"error": {"code": N, "message": "..."}, "request_id": "..."}`.
//!
//! Details never reach the client: they are logged where the error is converted, inside the
//! request's span (so the log line carries the request id).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::request_id;
use crate::warehouse::WarehouseError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Invalid request format")]
    BadRequest,
    #[error("Invalid or inactive API key")]
    Unauthorized,
    #[error("Cannot access another organization")]
    Forbidden,
    #[error("Resource not found")]
    NotFound,
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("Resource already exists")]
    Conflict,
    #[error("Payload too large")]
    PayloadTooLarge,
    #[error("Rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("Internal error. Check server logs.")]
    Internal,
    #[error("Service unavailable")]
    Unavailable { retry_after_secs: u64 },
}

impl ApiError {
    /// Logs `detail` (never sent to the client) and returns the generic 500.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::Internal
    }

    /// Logs why a request was refused as malformed; the client only sees "Invalid request format".
    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        tracing::info!(reason = %detail, "bad request");
        ApiError::BadRequest
    }
}

impl From<WarehouseError> for ApiError {
    fn from(e: WarehouseError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "bigquery unavailable");
            ApiError::Unavailable {
                retry_after_secs: 5,
            }
        } else {
            ApiError::internal(e)
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        if let Some(id) = request_id::current() {
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.insert_header((request_id::HEADER, value));
            }
        }
        response.json(error_body(status, &self.to_string()))
    }
}

/// The standard error body, for the few places that build a response without an [`ApiError`].
pub fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    json!({
        "error": {"code": status.as_u16(), "message": message},
        "request_id": request_id::current(),
    })
}
