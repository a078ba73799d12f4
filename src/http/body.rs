//! Request bodies, read only when a handler asks and only after its guard decided: a caller
//! that fails authentication never has its body read. Each read is bounded three ways: at most
//! [`MAX_BODY_BYTES`], within `HTTP_BODY_TIMEOUT_SECS` (a body that stops arriving is refused
//! with 408 and its connection closed), and at most `HTTP_MAX_BODIES_IN_FLIGHT` reads at once
//! per instance (past it, 503 with Retry-After), so slow or large bodies cannot hold memory.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::http::error::ApiError;
use crate::settings::HttpLimits;

/// The largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The instance-wide budget of body reads (app data).
pub struct BodyBudget {
    reads: Arc<Semaphore>,
    timeout: Duration,
}

impl BodyBudget {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            reads: Arc::new(Semaphore::new(limits.max_bodies_in_flight)),
            timeout: limits.body_timeout,
        }
    }
}

/// A handler's body, not yet read. Put it after the guard in the signature and read it in the
/// handler: extraction takes the stream and nothing else.
pub struct Body {
    payload: Payload,
    budget: Option<web::Data<BodyBudget>>,
}

impl FromRequest for Body {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Body {
            payload: payload.take(),
            budget: req.app_data::<web::Data<BodyBudget>>().cloned(),
        }))
    }
}

impl Body {
    /// Reads the whole body within the limits.
    pub async fn bytes(mut self) -> Result<Bytes, ApiError> {
        let budget = self
            .budget
            .take()
            .ok_or_else(|| ApiError::internal("BodyBudget missing from app data"))?;
        let _permit = budget.reads.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("too many request bodies in flight");
            ApiError::Unavailable {
                retry_after_secs: 1,
            }
        })?;
        let read = async {
            let mut body = BytesMut::new();
            while let Some(chunk) = self.payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::bad_request(format!("body stream: {e}")))?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ApiError::PayloadTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        match tokio::time::timeout(budget.timeout, read).await {
            Ok(result) => result,
            Err(_) => {
                tracing::info!(
                    timeout_secs = budget.timeout.as_secs(),
                    "request body not received in time"
                );
                Err(ApiError::RequestTimeout)
            }
        }
    }

    /// Reads and parses a JSON body; an empty (or blank) body is `T::default()`.
    pub async fn json_or_default<T: DeserializeOwned + Default>(self) -> Result<T, ApiError> {
        let body = self.bytes().await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        crate::http::parse_json(&body)
    }

    /// Reads and parses a JSON body.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        crate::http::parse_json(&self.bytes().await?)
    }
}
