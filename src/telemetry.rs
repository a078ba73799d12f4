//! Logging: JSON lines through tracing-subscriber, one per event, with the request span's fields
//! (request id, method, path). Header values are never logged; query strings are logged with
//! secret-bearing parameters redacted.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, fmt};

pub use crate::settings::LogFormat;

/// A query parameter whose decoded, lower-cased name contains one of these has its value
/// replaced by `[REDACTED]` in logs (`apikey`, `x-api-key`, `root_key`, `api%5Fkey`, ...).
const SECRET_NAME_PARTS: &[&str] = &["key", "token", "secret", "password", "signature"];
/// Names redacted only when they match exactly (an OAuth authorization code).
const SECRET_QUERY_PARAMS: &[&str] = &["code"];

/// The name as a server would read it: `+` is a space, `%XX` a byte (bad escapes stay as
/// they are).
fn decode_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

fn is_secret_name(name: &str) -> bool {
    let decoded = decode_name(name);
    SECRET_QUERY_PARAMS.contains(&decoded.as_str())
        || SECRET_NAME_PARTS.iter().any(|part| decoded.contains(part))
}

/// Installs the global subscriber writing to `sink`: JSON lines, or human-readable lines with
/// [`LogFormat::Pretty`] (`LOG_FORMAT=pretty`, for a terminal). `RUST_LOG` overrides the level.
pub fn init<W>(default_level: &str, format: LogFormat, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => tracing::subscriber::set_global_default(
            fmt()
                .json()
                .with_env_filter(filter)
                .with_current_span(true)
                .with_span_list(false)
                .with_target(true)
                .with_writer(sink)
                .finish(),
        ),
        LogFormat::Pretty => tracing::subscriber::set_global_default(
            fmt()
                .with_env_filter(filter)
                .with_target(false)
                .with_writer(sink)
                .finish(),
        ),
    };
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
            if is_secret_name(name) {
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
    fn any_name_containing_a_secret_word_is_redacted_after_decoding() {
        for name in [
            "apikey",
            "x-api-key",
            "root_key",
            "api%5Fkey",
            "API%5fKEY",
            "refresh+token",
            "client_secret",
            "Password",
            "X-Goog-Signature",
            "%6Bey",
        ] {
            assert_eq!(
                redact_query(&format!("{name}=s3cr3t&limit=5")),
                format!("{name}=[REDACTED]&limit=5"),
                "{name}"
            );
        }
        // A broken escape or a multi-byte name is read as it is, never a panic.
        assert_eq!(redact_query("a%ZZkey=x"), "a%ZZkey=[REDACTED]");
        assert_eq!(redact_query("%E2%82%AC=x&é%4=y"), "%E2%82%AC=x&é%4=y");
    }

    #[test]
    fn ordinary_query_strings_are_kept() {
        assert_eq!(redact_query(""), "");
        assert_eq!(
            redact_query("since=2026-01-01&status=FAILED&page_size=5"),
            "since=2026-01-01&status=FAILED&page_size=5"
        );
    }
}
