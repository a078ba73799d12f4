//! The HTTP edge shared by every route: refusing bodies before reading them, security headers,
//! CORS, standard JSON for every error, and the extractor configs that turn malformed input
//! into the standard JSON 400. Its rooms: `error` (every failure mapped to HTTP once, service
//! errors included), `request_id` (the outermost middleware), `rate_limit` and `body`.

pub mod body;
pub mod error;
pub mod rate_limit;
pub mod request_id;

use self::error::{ApiError, error_body, standard_message};
use actix_cors::Cors;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web;
use actix_web::{Error, HttpRequest, HttpResponse, ResponseError};

pub use self::body::MAX_BODY_BYTES;

/// Refuses, before reading a byte of it, a declared body over [`MAX_BODY_BYTES`] and any body
/// sent with a method whose routes take none (GET, HEAD, DELETE, OPTIONS); such a connection is
/// closed. Nothing is buffered here: handlers read bodies through [`crate::http::body::Body`], after
/// their guard has decided, within the body limits.
pub async fn refuse_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, Error> {
    match refusal(&req) {
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        // Answered here (not raised) so the outer layers still add their headers.
        Some(e) => {
            let mut response = e.error_response();
            response
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

fn refusal(req: &ServiceRequest) -> Option<ApiError> {
    let declared = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(length) => match length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(n) => Some(n),
            None => return Some(ApiError::bad_request("unparseable Content-Length")),
        },
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Some(ApiError::PayloadTooLarge);
    }
    let has_body =
        declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let bodiless = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
    );
    (has_body && bodiless).then_some(ApiError::PayloadTooLarge)
}

/// Every error answer is the standard JSON body, also those made outside our handlers (a
/// refused CORS preflight, actix's own errors): a non-JSON error response is replaced by the
/// standard body for its status, keeping its headers (Retry-After, Allow, ...).
pub async fn standard_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, Error> {
    let response = next.call(req).await?;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return Ok(response.map_into_left_body());
    }
    let (request, old) = response.into_parts();
    let mut fresh = HttpResponse::build(status);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fresh.append_header((name.clone(), value.clone()));
        }
    }
    let fresh = fresh.json(error_body(status, standard_message(status)));
    Ok(ServiceResponse::new(request, fresh).map_into_right_body())
}

/// Headers every response carries.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// CORS from `CORS_ORIGINS` only. A `*` entry allows any origin, never with credentials; an
/// empty list allows none. The API authenticates by header, so credentials are never enabled.
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("x-ca-root-key"),
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-ratelimit-limit"),
            header::HeaderName::from_static("x-ratelimit-remaining"),
        ])
        .max_age(600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.send_wildcard().allow_any_origin();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// Malformed paths and query strings give the standard 400 (never actix's plain text).
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| ApiError::bad_request(err).into())
}

/// A query string that does not fit says which parameter and what is accepted.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = match &err {
            actix_web::error::QueryPayloadError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        let mut problem = crate::validation::from_serde("", &message);
        if problem.field == "body" {
            problem.field = "query".into();
            problem.problem = "not in the accepted form".into();
        }
        ApiError::invalid(problem).into()
    })
}

/// Parses a JSON body read as bytes. Handlers take the body this way so that the guard in their
/// signature always decides first: an unauthenticated request gets 401, never a hint about the
/// body's shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    crate::validation::parse_json(body).map_err(ApiError::invalid)
}

/// Unknown routes.
pub async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
