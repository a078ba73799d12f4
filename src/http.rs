//! HTTP plumbing shared by every route: the 1 MiB body cap, security headers, CORS, and the
//! extractor configs that turn malformed input into the standard JSON 400.

use actix_cors::Cors;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::web::{self, BytesMut};
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;

use crate::error::ApiError;

/// The largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Refuses bodies over [`MAX_BODY_BYTES`] on every route, whether or not the handler reads a
/// body: a declared `Content-Length` is checked before anything else, and a streamed body is
/// read up to the cap (then handed on, buffered) so chunked uploads are held to it too.
pub async fn body_limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, Error> {
    match buffer_capped(&mut req).await {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        // Answered here (not raised) so the outer layers still add their headers.
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

async fn buffer_capped(req: &mut ServiceRequest) -> Result<(), ApiError> {
    if let Some(length) = req.headers().get(header::CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("unparseable Content-Length"))?;
        if declared > MAX_BODY_BYTES as u64 {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    let mut stream = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("body stream: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    req.set_payload(Payload::from(body.freeze()));
    Ok(())
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

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| ApiError::bad_request(err).into())
}

/// Parses a JSON body read as bytes. Handlers take the body this way so that the guard in their
/// signature always decides first: an unauthenticated request gets 401, never a hint about the
/// body's shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::bad_request)
}

/// Unknown routes.
pub async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
