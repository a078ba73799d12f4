//! Which BigQuery failures are worth another attempt, and the jittered exponential backoff used
//! for them (via `backon`).

use backon::ExponentialBuilder;

use crate::settings::RetrySettings;

use super::WarehouseError;

/// Reasons BigQuery gives for transient trouble (in `errors[].reason`).
const RETRYABLE_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "jobRateLimitExceeded",
];

/// Messages BigQuery gives for DML contention on one table.
const RETRYABLE_MESSAGES: &[&str] = &["concurrent update", "too many dml statements outstanding"];

/// Reasons BigQuery gives when a project or table is past a rate or quota limit.
const CAPACITY_REASONS: &[&str] = &["rateLimitExceeded", "jobRateLimitExceeded", "quotaExceeded"];

impl WarehouseError {
    /// HTTP 429 and 5xx, transport failures, transient reasons and DML contention are retried;
    /// everything else (bad SQL, not found, permission) fails at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            WarehouseError::Transport(_) => true,
            WarehouseError::Http {
                status,
                reason,
                message,
            } => {
                *status == 429
                    || *status >= 500
                    || retryable_reason(reason)
                    || retryable_message(message)
            }
            WarehouseError::Job { reason, message }
            | WarehouseError::Insert { reason, message } => {
                retryable_reason(reason) || retryable_message(message)
            }
            WarehouseError::Auth(_) | WarehouseError::Decode(_) | WarehouseError::Timeout => false,
        }
    }
}

impl WarehouseError {
    /// BigQuery refused for capacity: a rate or quota limit, the per-table DML queue
    /// (`resourcesExceeded` "Too many DML statements outstanding"), or a concurrent update.
    /// Not the caller's fault and not ours: answered 503 with Retry-After wherever it surfaces.
    pub fn is_capacity(&self) -> bool {
        match self {
            WarehouseError::Http {
                reason, message, ..
            }
            | WarehouseError::Job { reason, message }
            | WarehouseError::Insert { reason, message } => {
                CAPACITY_REASONS.contains(&reason.as_str()) || retryable_message(message)
            }
            _ => false,
        }
    }
}

fn retryable_reason(reason: &str) -> bool {
    RETRYABLE_REASONS.contains(&reason)
}

fn retryable_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    RETRYABLE_MESSAGES.iter().any(|m| lower.contains(m))
}

pub fn backoff(settings: &RetrySettings) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(settings.base_delay)
        .with_max_delay(settings.max_delay)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(settings.max_retries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, reason: &str, message: &str) -> WarehouseError {
        WarehouseError::Http {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn job(reason: &str, message: &str) -> WarehouseError {
        WarehouseError::Job {
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried() {
        assert!(http(429, "", "").is_retryable());
        assert!(http(500, "", "").is_retryable());
        assert!(http(503, "backendError", "").is_retryable());
        assert!(http(403, "rateLimitExceeded", "Exceeded rate limits").is_retryable());
        assert!(WarehouseError::Transport("connection refused".into()).is_retryable());
    }

    #[test]
    fn dml_contention_is_retried() {
        assert!(
            job(
                "invalidQuery",
                "Could not serialize access to table t due to concurrent update"
            )
            .is_retryable()
        );
        assert!(
            http(
                400,
                "invalidQuery",
                "Too many DML statements outstanding against table t, limit is 20"
            )
            .is_retryable()
        );
    }

    #[test]
    fn capacity_refusals_are_unavailability_not_failure() {
        let dml_queue = http(
            400,
            "resourcesExceeded",
            "Resources exceeded during query execution: Too many DML statements outstanding \
             against table p:d.org_quota_state, limit is 20",
        );
        assert!(dml_queue.is_capacity());
        assert!(dml_queue.is_unavailable());
        assert!(
            job(
                "quotaExceeded",
                "Quota exceeded: too many table update operations"
            )
            .is_unavailable()
        );
        assert!(http(403, "rateLimitExceeded", "Exceeded rate limits").is_unavailable());
        assert!(
            job(
                "invalidQuery",
                "Could not serialize access to table t due to concurrent update"
            )
            .is_unavailable()
        );
        // A query that is too big is the query's fault, not capacity.
        assert!(
            !job(
                "resourcesExceeded",
                "Resources exceeded: too many subqueries"
            )
            .is_capacity()
        );
        assert!(!http(400, "invalidQuery", "Syntax error").is_unavailable());
    }

    #[test]
    fn client_errors_are_not_retried() {
        assert!(!http(400, "invalidQuery", "Syntax error").is_retryable());
        assert!(!http(404, "notFound", "Not found: Table x").is_retryable());
        assert!(!http(403, "accessDenied", "Permission denied").is_retryable());
        assert!(!job("notFound", "Not found: Table t").is_retryable());
        assert!(!WarehouseError::Auth("no token".into()).is_retryable());
        assert!(!WarehouseError::Decode("bad".into()).is_retryable());
    }
}
