//! Logging: JSON lines through tracing-subscriber, one per event, with the request span's fields
//! (request id, method, path). Header values are never logged; query strings are logged with
//! secret-bearing parameters redacted.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, fmt};

/// Query parameters whose values are replaced by `[REDACTED]` in logs.
const SECRET_QUERY_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "token",
    "access_token",
    "code",
    "secret",
    "password",
];

/// Installs the global JSON subscriber writing to `sink`. `RUST_LOG` overrides the level.
pub fn init<W>(default_level: &str, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let subscriber = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(sink)
        .finish();
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The query string with the values of secret-bearing parameters replaced.
pub fn redact_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    query
        .split('&')
        .map(|pair| {
            let (name, _) = pair.split_once('=').unwrap_or((pair, ""));
            let lowered = name.to_ascii_lowercase();
            if SECRET_QUERY_PARAMS.contains(&lowered.as_str()) {
                format!("{name}=[REDACTED]")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_parameters_are_redacted() {
        assert_eq!(
            redact_query("status=FAILED&key=qk_live_abc&token=t0k&code=123&limit=5"),
            "status=FAILED&key=[REDACTED]&token=[REDACTED]&code=[REDACTED]&limit=5"
        );
        assert_eq!(redact_query("KEY=x"), "KEY=[REDACTED]");
        assert_eq!(redact_query("key"), "key=[REDACTED]");
    }

    #[test]
    fn ordinary_query_strings_are_kept() {
        assert_eq!(redact_query(""), "");
        assert_eq!(
            redact_query("since=2026-01-01&keyboard=1"),
            "since=2026-01-01&keyboard=1"
        );
    }
}
