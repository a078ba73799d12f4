//! The client's HTTP calls: one `reqwest` client, the key header a command needs, and every
//! refusal turned into one [`ClientError`] line that carries the service's request id.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use zeroize::Zeroizing;

use super::ClientError;
use super::profile::Profile;

/// Which key a call sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// The org key, or the root key when no org key is set (org routes accept either).
    Org,
    /// The root key only (admin routes).
    Root,
}

pub struct Api {
    http: reqwest::Client,
    url: String,
    api_key: Option<Zeroizing<String>>,
    root_key: Option<Zeroizing<String>>,
    sources: String,
}

/// A successful answer: its status and its JSON body (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// Its `ETag`, if any.
    pub etag: Option<String>,
}

impl Api {
    pub fn new(profile: Profile) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("quarry-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: profile.url,
            api_key: profile.api_key,
            root_key: profile.root_key,
            sources: profile.sources,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn key_header(&self, key_use: KeyUse) -> Result<(&'static str, &str), ClientError> {
        match (key_use, &self.api_key, &self.root_key) {
            (KeyUse::Org, Some(k), _) => Ok(("X-API-Key", k.as_str())),
            (_, _, Some(k)) => Ok(("X-CA-Root-Key", k.as_str())),
            (KeyUse::Org, None, None) => Err(ClientError::Config(format!(
                "no key: set QUARRY_API_KEY (or QUARRY_ROOT_KEY), or api_key in {}",
                self.sources
            ))),
            (KeyUse::Root, _, None) => Err(ClientError::Config(format!(
                "this command needs the root key: set QUARRY_ROOT_KEY, or root_key in {}",
                self.sources
            ))),
        }
    }

    pub async fn get(
        &self,
        key_use: KeyUse,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        self.call(Method::GET, key_use, path, query, None, &[])
            .await
    }

    /// A GET that sends back what it was told last (`known`: its `ETag` and body) as
    /// `If-None-Match`: a 304 is that answer again. `also`: the `ETag` of another answer about
    /// the same thing (a run's, for its steps), sent with it so the service answers at once
    /// from a state at least that far on. Returns the answer's body with its `ETag` (the run
    /// reads of the service answer one; other paths none).
    pub async fn get_again(
        &self,
        key_use: KeyUse,
        path: &str,
        known: Option<&(String, Value)>,
        also: Option<&str>,
    ) -> Result<(Option<String>, Value), ClientError> {
        let tags: Vec<&str> = known
            .map(|(etag, _)| etag.as_str())
            .into_iter()
            .chain(also)
            .collect();
        let headers: Vec<(&str, String)> = if tags.is_empty() {
            Vec::new()
        } else {
            vec![("If-None-Match", tags.join(", "))]
        };
        let answer = self
            .call(Method::GET, key_use, path, &[], None, &headers)
            .await?;
        if answer.status == StatusCode::NOT_MODIFIED {
            if let Some((etag, body)) = known {
                return Ok((Some(etag.clone()), body.clone()));
            }
        }
        Ok((answer.etag, answer.body))
    }

    pub async fn post(
        &self,
        key_use: KeyUse,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        self.call(Method::POST, key_use, path, &[], body, &[]).await
    }

    /// A POST with extra headers (`Idempotency-Key`).
    pub async fn post_with(
        &self,
        key_use: KeyUse,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        self.call(Method::POST, key_use, path, &[], body, headers)
            .await
    }

    pub async fn delete(&self, key_use: KeyUse, path: &str) -> Result<Answer, ClientError> {
        self.call(Method::DELETE, key_use, path, &[], None, &[])
            .await
    }

    async fn call(
        &self,
        method: Method,
        key_use: KeyUse,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        let (header, key) = self.key_header(key_use)?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header(header, key)
            .header("Accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            ClientError::Unreachable(format!("cannot reach {}: {}", self.url, root_cause(&e)))
        })?;
        let status = response.status();
        let header_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.map_err(|e| {
            ClientError::Unreachable(format!(
                "{}: answer cut short: {}",
                self.url,
                root_cause(&e)
            ))
        })?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(Answer { status, body, etag });
        }
        Err(refusal(status, &body, header_id, retry_after))
    }
}

impl Api {
    /// Opens a Server-Sent Events stream (a run's events) with the org key: the response when
    /// the service answers 200, `None` otherwise (an older service without the route, or its
    /// streams full): the caller then polls. The stream may stay open up to an hour.
    pub async fn open_events(&self, path: &str) -> Option<reqwest::Response> {
        let (header, key) = self.key_header(KeyUse::Org).ok()?;
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .header(header, key)
            .header("Accept", "text/event-stream")
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(response)
    }
}

/// The lowest error in a chain ("connection refused" rather than "error sending request").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The service's error body `{"error": {"code", "message", ...details}, "request_id"}` as one
/// line: status, message, the details that help, the request id.
fn refusal(
    status: StatusCode,
    body: &Value,
    header_id: Option<String>,
    retry_after: Option<String>,
) -> ClientError {
    let error = body.get("error");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected answer")
                .to_string()
        });
    let mut details: Vec<String> = error
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "code" | "message"))
                .map(|(k, v)| format!("{k}: {}", inline(v)))
                .collect()
        })
        .unwrap_or_default();
    if let Some(after) = retry_after {
        details.push(format!("retry after {after} s"));
    }
    let reason = error.and_then(|e| e.get("reason")).and_then(Value::as_str);
    if status == StatusCode::TOO_MANY_REQUESTS && reason == Some("concurrent") {
        details.push("--queue waits in the org's queue for a slot instead".into());
    }
    let request_id = body
        .get("request_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(header_id);
    ClientError::Refused {
        status: status.as_u16(),
        message,
        details: details.join("; "),
        request_id,
    }
}

/// A JSON value on one line: strings bare, the rest as compact JSON.
pub fn inline(v: &Value) -> String {
    match v {
        Value::String(s) => s.replace('\n', " "),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refusal_reads_as_one_line_with_its_details_and_request_id() {
        let body = json!({"error": {"code": 400, "message": "Invalid request format",
            "field": "parameters.day", "accepted": "YYYY-MM-DD"}, "request_id": "r-1"});
        let e = refusal(StatusCode::BAD_REQUEST, &body, None, None);
        assert_eq!(
            e.to_string(),
            "400 Invalid request format (accepted: YYYY-MM-DD; field: parameters.day) [request id r-1]"
        );
    }

    #[test]
    fn a_429_names_its_retry_after_and_falls_back_to_the_header_request_id() {
        let body = json!({"error": {"code": 429, "message": "Rate limit exceeded", "reason": "concurrent"}});
        let e = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            &body,
            Some("h-2".into()),
            Some("10".into()),
        );
        assert_eq!(
            e.to_string(),
            "429 Rate limit exceeded (reason: concurrent; retry after 10 s; --queue waits in the \
             org's queue for a slot instead) [request id h-2]"
        );
        assert_eq!(
            e.exit_code(),
            std::process::ExitCode::from(4),
            "retry later"
        );
    }

    #[test]
    fn only_a_limit_or_an_unavailable_service_exits_4_for_retry_later() {
        let code = |status: StatusCode, reason: &str| {
            let body =
                json!({"error": {"code": status.as_u16(), "message": "m", "reason": reason}});
            let e = refusal(status, &body, None, Some("3".into()));
            (e.exit_code(), e.to_string().contains("--queue"))
        };
        let exit = std::process::ExitCode::from;
        assert_eq!(
            code(StatusCode::TOO_MANY_REQUESTS, "daily"),
            (exit(4), false)
        );
        assert_eq!(code(StatusCode::SERVICE_UNAVAILABLE, ""), (exit(4), false));
        assert_eq!(code(StatusCode::FORBIDDEN, ""), (exit(3), false));
        assert_eq!(code(StatusCode::UNAUTHORIZED, ""), (exit(3), false));
        assert_eq!(code(StatusCode::CONFLICT, ""), (exit(3), false));
    }

    #[test]
    fn a_body_that_is_not_the_service_error_still_gives_the_status() {
        let e = refusal(
            StatusCode::BAD_GATEWAY,
            &Value::String("<html>".into()),
            None,
            None,
        );
        assert_eq!(e.to_string(), "502 Bad Gateway");
    }
}
