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

fn run_args(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env(
            "LOCAL_KMS_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_masked() {
    let root = "a-root-key-that-must-not-be-printed-0123";
    let output = run_args(&["check-config"], &[("CA_ROOT_API_KEY", root)]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ENVIRONMENT=development"));
    assert!(stdout.contains("CA_ROOT_API_KEY=set (*** 40 chars)"));
    assert!(stdout.contains("KMS=local AES-256-GCM"));
    assert!(
        stdout.contains("# ok: 4 pipelines, 4 providers"),
        "{stdout}"
    );
    assert!(!stdout.contains(root));
    assert!(!stdout.contains("AAAAAAAA"));
}

#[test]
fn check_config_fails_on_a_bad_setting() {
    let output = run_args(&["check-config"], &[("RUN_LEASE_SECS", "soon")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RUN_LEASE_SECS"), "{stderr}");
}

#[test]
fn check_config_fails_on_a_broken_pipeline_folder() {
    let dir = broken_pipelines();
    let output = run_args(
        &["check-config"],
        &[("PIPELINES_DIR", dir.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("dependency cycle"));
}

fn broken_pipelines() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-broken-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("team")).unwrap();
    std::fs::write(
        dir.join("team/loop.yaml"),
        "description: cycle\nsteps:\n  - {id: a, kind: chaos.fault, mode: error, depends_on: [b]}\n  - {id: b, kind: chaos.fault, mode: error, depends_on: [a]}\n",
    )
    .unwrap();
    dir
}

#[test]
fn pipelines_validate_accepts_the_shipped_pipelines() {
    let output = run_args(&["pipelines", "validate", "pipelines"], &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("genai/usage_rollup: 2 step(s)"));
    assert!(stdout.trim_end().ends_with("ok: 4 pipelines"));
}

#[test]
fn pipelines_validate_names_the_file_and_field_of_a_broken_definition() {
    let dir = broken_pipelines();
    let output = run_args(&["pipelines", "validate", dir.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("team/loop.yaml: steps: dependency cycle"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("team/loop.yaml"),
        "description: bad sql\nsteps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/missing.sql}\n",
    )
    .unwrap();
    let output = run_args(&["pipelines", "validate", dir.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("steps[0].sql"));
    let output = run_args(&["pipelines", "validate", "/no/such/folder"], &[]);
    assert_eq!(output.status.code(), Some(1));
}
