//! The binary's start-up refusals: one clear line on stderr, exit code 2, no panic.

use std::process::{Command, Output};

fn run(vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .env_clear()
        .env("RUST_BACKTRACE", "1")
        .env(
            "LOCAL_KMS_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs")
}

fn assert_refused(output: &Output, expected_line: &str) {
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(stderr.trim_end(), expected_line);
    assert!(!stderr.contains("panicked"));
    assert!(output.stdout.is_empty(), "nothing started");
}

#[test]
fn a_non_integer_setting_stops_startup_with_one_line() {
    let output = run(&[("BIGQUERY_READ_TIMEOUT_SECS", "five")]);
    assert_refused(
        &output,
        "quarry: invalid configuration: BIGQUERY_READ_TIMEOUT_SECS: expected an integer from 1 to 3600",
    );
}

#[test]
fn an_out_of_range_setting_stops_startup_with_one_line() {
    let output = run(&[("BIGQUERY_CONNECT_TIMEOUT_SECS", "100000")]);
    assert_refused(
        &output,
        "quarry: invalid configuration: BIGQUERY_CONNECT_TIMEOUT_SECS: expected an integer from 1 to 600",
    );
}

#[test]
fn production_without_a_root_key_refuses_to_start() {
    let output = run(&[
        ("ENVIRONMENT", "production"),
        ("GCP_PROJECT_ID", "quarry-prod"),
        ("LOCAL_KMS_KEY", ""),
        (
            "KMS_KEY_NAME",
            "projects/p/locations/global/keyRings/r/cryptoKeys/k",
        ),
    ]);
    assert_refused(
        &output,
        "quarry: invalid configuration: CA_ROOT_API_KEY: required in production (at least 32 characters)",
    );
}

#[test]
fn production_lists_every_refusal_on_one_line() {
    let output = run(&[
        ("ENVIRONMENT", "production"),
        ("CA_ROOT_API_KEY", "short-key"),
        ("DISABLE_AUTH", "true"),
        ("RATE_LIMIT_ENABLED", "false"),
        ("CORS_ORIGINS", "*"),
        ("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr_text = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr_text.contains("KMS_KEY_NAME: required in production"),
        "the local KMS is refused in production: {stderr_text}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for var in [
        "CA_ROOT_API_KEY: must be at least 32 characters in production",
        "DISABLE_AUTH: must be false in production",
        "RATE_LIMIT_ENABLED: must be true in production",
        "CORS_ORIGINS: must list explicit origins in production",
        "BIGQUERY_EMULATOR_HOST: must not be set in production",
    ] {
        assert!(stderr.contains(var), "{var} missing from {stderr}");
    }
    assert!(!stderr.contains("short-key"), "the key is never echoed");
}
