//! The HTTP error type: every failure a client can see, mapped once to the standard bodies
//! `{"error": {"code": N, "message": "..."}, "request_id": "..."}`.
//!
//! Details never reach the client: they are logged where the error is converted, inside the
//! request's span (so the log line carries the request id).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::request_id;
use crate::admission::AdmissionError;
use crate::kms::KmsError;
use crate::service_error::ServiceError;
use crate::validation::FieldProblem;
use crate::warehouse::WarehouseError;

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(reason) => ApiError::bad_request(reason),
            ServiceError::InvalidField(problem) => ApiError::invalid(problem),
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Conflict(reason) => {
                tracing::info!(reason = %reason, "conflict");
                ApiError::Conflict
            }
            ServiceError::PlanLimit(what) => ApiError::PlanLimit(what),
            ServiceError::Warehouse(e) => e.into(),
            ServiceError::Kms(KmsError::Unavailable(detail)) => {
                tracing::error!(error = %detail, "kms unavailable");
                ApiError::Unavailable {
                    retry_after_secs: 5,
                }
            }
            ServiceError::Kms(e) => ApiError::internal(e),
            ServiceError::Admission(e) => e.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Invalid request format")]
    BadRequest,
    #[error("Invalid or inactive API key")]
    Unauthorized,
    /// No key at all: the body also says which headers carry one.
    #[error("Invalid or inactive API key")]
    MissingKey,
    #[error("Cannot access another organization")]
    Forbidden,
    /// The key is valid for this org but lacks the route's scope.
    #[error("API key lacks the required scope")]
    MissingScope,
    /// The root key acting for a suspended org (whose own keys are refused).
    #[error("Organization is suspended")]
    OrgSuspended,
    #[error("Resource not found")]
    NotFound,
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("Resource already exists")]
    Conflict,
    /// The org's plan does not allow it.
    #[error("Plan limit reached: {0}")]
    PlanLimit(String),
    /// A rotation that would take the org past its live-key cap.
    #[error("Too many live API keys: revoke one first")]
    TooManyKeys,
    /// A cancel for a run that has already ended.
    #[error("Run already ended")]
    RunEnded,
    /// A pause of a schedule that is not active, or a resume of one that is not paused.
    #[error("Schedule is not in a state that allows this")]
    ScheduleState { status: String },
    /// A re-run of a run that did not end in failure; its status is returned.
    #[error("Only a FAILED, CANCELLED, TIMED_OUT or ORPHANED run can be re-run")]
    NotRerunnable { status: String },
    /// The Idempotency-Key's first request is still being processed (retry after a moment).
    #[error("A request with this Idempotency-Key is in progress")]
    IdempotencyKeyInProgress { retry_after_secs: u64 },
    /// An Idempotency-Key sent again with another request (pipeline, parameters or body).
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("Payload too large")]
    PayloadTooLarge,
    /// A request body that did not arrive within `HTTP_BODY_TIMEOUT_SECS`.
    #[error("Request timeout")]
    RequestTimeout,
    #[error("Rate limit exceeded")]
    RateLimited { retry_after_secs: u64, limit: u32 },
    /// A quota limit (`daily`, `monthly`, `concurrent`) refused a run.
    #[error("Rate limit exceeded")]
    QuotaExceeded {
        reason: &'static str,
        retry_after_secs: u64,
    },
    /// Validation failed; what is wrong, field by field, is returned in `details`.
    #[error("Invalid request format")]
    Invalid { details: Vec<FieldProblem> },
    /// A pipeline parameter failed validation; its (declared) name is returned.
    #[error("Invalid request format")]
    InvalidParameter { name: String },
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

    /// 400 with one problem in `details` (logged too).
    pub fn invalid(problem: FieldProblem) -> Self {
        tracing::info!(field = %problem.field, problem = %problem.problem, "invalid request");
        ApiError::Invalid {
            details: vec![problem],
        }
    }

    /// Logs why a request was refused as malformed; the client only sees "Invalid request format".
    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        tracing::info!(reason = %detail, "bad request");
        ApiError::BadRequest
    }
}

impl From<crate::live::LiveError> for ApiError {
    /// Too many streams: retry in a few seconds (another watcher may have gone by then).
    fn from(e: crate::live::LiveError) -> Self {
        match e {
            crate::live::LiveError::TooMany { .. } => {
                tracing::info!(error = %e, "live stream refused");
                ApiError::Unavailable {
                    retry_after_secs: 5,
                }
            }
            crate::live::LiveError::Read(e) => e.into(),
        }
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

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        let retry_after_secs = match &e {
            AdmissionError::QueueFull => 2,
            AdmissionError::TimedOut | AdmissionError::Warehouse(_) => 5,
            AdmissionError::Stopped => 10,
        };
        match e {
            AdmissionError::Warehouse(w) if !w.is_unavailable() => ApiError::internal(w),
            other => {
                tracing::warn!(error = %other, "admission unavailable");
                ApiError::Unavailable { retry_after_secs }
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest | ApiError::Invalid { .. } | ApiError::InvalidParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized | ApiError::MissingKey => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::MissingScope | ApiError::OrgSuspended => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict
            | ApiError::PlanLimit(_)
            | ApiError::RunEnded
            | ApiError::NotRerunnable { .. }
            | ApiError::ScheduleState { .. }
            | ApiError::TooManyKeys
            | ApiError::IdempotencyKeyInProgress { .. } => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::RateLimited {
                retry_after_secs,
                limit,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                response.insert_header(("X-RateLimit-Limit", limit.to_string()));
                response.insert_header(("X-RateLimit-Remaining", "0"));
            }
            ApiError::Unavailable { retry_after_secs }
            | ApiError::IdempotencyKeyInProgress { retry_after_secs }
            | ApiError::QuotaExceeded {
                retry_after_secs, ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        if let Some(id) = request_id::current() {
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.insert_header((request_id::HEADER, value));
            }
        }
        let mut body = error_body(status, &self.to_string());
        match self {
            ApiError::QuotaExceeded { reason, .. } => body["error"]["reason"] = json!(reason),
            ApiError::InvalidParameter { name } => body["error"]["parameter"] = json!(name),
            ApiError::NotRerunnable { status } => body["error"]["run_status"] = json!(status),
            ApiError::ScheduleState { status } => body["error"]["schedule_status"] = json!(status),
            ApiError::Invalid { details } => body["error"]["details"] = json!(details),
            ApiError::MissingKey => {
                body["error"]["hint"] =
                    json!("send an org API key as X-API-Key, or the root key as X-CA-Root-Key")
            }
            _ => {}
        }
        response.json(body)
    }
}

/// The standard message for an error status, for answers not made by an [`ApiError`].
pub fn standard_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Invalid request format",
        401 => "Invalid or inactive API key",
        403 => "Cannot access another organization",
        404 => "Resource not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        409 => "Resource already exists",
        413 => "Payload too large",
        429 => "Rate limit exceeded",
        503 => "Service unavailable",
        s if s >= 500 => "Internal error. Check server logs.",
        _ => "Invalid request format",
    }
}

/// The standard error body, for the few places that build a response without an [`ApiError`].
pub fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    json!({
        "error": {"code": status.as_u16(), "message": message},
        "request_id": request_id::current(),
    })
}
