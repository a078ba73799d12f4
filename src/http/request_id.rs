//! Request ids and the per-request context: every response carries `X-Request-ID` (an incoming
//! one is echoed when it is 1-128 characters of `[A-Za-z0-9._-]`, otherwise a UUID is made),
//! every log line of the request carries it (a tracing span), and every error body carries it
//! (a task-local read by [`crate::http::error`]).
//!
//! This middleware is the outermost layer: it also turns errors raised by inner layers into
//! responses while the request id is still in scope, and writes the access log line.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use tracing::Instrument;

use crate::http::error::{ApiError, error_body, standard_message};
use crate::http::rate_limit::Allowance;
use crate::metrics::Metrics;
use crate::telemetry::redact_query;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const RATE_LIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An incoming id we are willing to echo.
pub fn accept_incoming(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(&HEADER)?.to_str().ok()?;
    let ok = (1..=128).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| raw.to_string())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = accept_incoming(req.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let query = redact_query(req.query_string());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().to_string();
    let started = Instant::now();
    let header_value = HeaderValue::from_str(&id).expect("request ids are header-safe");

    // The request's BigQuery jobs are labelled `api` (with its org once the caller is
    // authorized for one: see `auth`).
    let request = crate::cost::labels::scope(
        crate::cost::labels::JobLabels::api(),
        async move {
            let result = next.call(req).await;
            let status = match &result {
                Ok(response) => response.status(),
                Err(error) => error.as_response_error().status_code(),
            };
            tracing::info!(
                status = status.as_u16(),
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                query = %query,
                "request finished"
            );
            if let Some(m) = &metrics {
                let route = match &result {
                    Ok(r) => r.request().match_pattern(),
                    Err(_) => None,
                };
                m.http(
                    route.as_deref().unwrap_or("unmatched"),
                    &method,
                    status.as_u16(),
                    started.elapsed().as_secs_f64(),
                );
            }
            match result {
                Ok(mut response) => {
                    let allowance = response.request().extensions().get::<Allowance>().copied();
                    let headers = response.headers_mut();
                    headers.insert(HEADER, header_value);
                    if let Some(a) = allowance {
                        headers.insert(RATE_LIMIT_LIMIT, HeaderValue::from(a.limit));
                        headers.insert(RATE_LIMIT_REMAINING, HeaderValue::from(a.remaining));
                    }
                    Ok(response.map_into_boxed_body())
                }
                // An inner layer raised instead of answering: render the standard body now,
                // while the request id is in scope, and hand actix that response.
                Err(error) => {
                    let mut rendered = to_response(&error);
                    rendered.headers_mut().insert(HEADER, header_value);
                    Err(InternalError::from_response(error.to_string(), rendered).into())
                }
            }
        }
        .instrument(span),
    );
    REQUEST_ID.scope(id, request).await
}

/// An error from an inner layer as a standard JSON body (ours render themselves; anything else
/// gets the generic body for its status).
fn to_response(error: &Error) -> HttpResponse {
    if let Some(api) = error.as_error::<ApiError>() {
        return actix_web::ResponseError::error_response(api);
    }
    let status = error.as_response_error().status_code();
    tracing::info!(status = status.as_u16(), error = %error, "request rejected by framework");
    let message = standard_message(status);
    HttpResponse::build(status).json(error_body(status, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_well_formed_incoming_id_is_echoed() {
        assert_eq!(
            accept_incoming(&headers("abc-123_X.y")).as_deref(),
            Some("abc-123_X.y")
        );
        let max = "a".repeat(128);
        assert_eq!(accept_incoming(&headers(&max)), Some(max));
    }

    #[test]
    fn a_malformed_or_oversized_incoming_id_is_replaced() {
        assert_eq!(accept_incoming(&headers(&"a".repeat(129))), None);
        assert_eq!(accept_incoming(&headers("has space")), None);
        assert_eq!(accept_incoming(&headers("semi;colon")), None);
        assert_eq!(accept_incoming(&headers("")), None);
        assert_eq!(accept_incoming(&HeaderMap::new()), None);
    }
}
