//! The binary's start-up refusals: one clear line on stderr, exit code 2, no panic.

use std::process::{Command, Output};

fn run(vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .arg("serve")
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
        stdout.contains(&format!(
            "# ok: {} pipelines, 4 providers",
            shipped_pipelines()
        )),
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
    assert!(stdout.contains("genai/usage_rollup: 3 step(s)"));
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("ok: {} pipelines", shipped_pipelines()))
    );
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

/// Runs the binary in `cwd` with absolute definition folders (nothing read from the crate root).
fn run_in(cwd: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let root = env!("CARGO_MANIFEST_DIR");
    Command::new(env!("CARGO_BIN_EXE_quarry"))
        .current_dir(cwd)
        .env_clear()
        .env("PIPELINES_DIR", format!("{root}/pipelines"))
        .env("PIPELINE_SQL_DIR", format!("{root}/sql"))
        .env("PROVIDERS_DIR", format!("{root}/providers"))
        .envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("the binary runs")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_config_reads_env_local_like_make_run_and_the_environment_wins() {
    let dir = temp_dir("env-local");
    std::fs::write(
        dir.join(".env.local"),
        "# written by make run\nCA_ROOT_API_KEY=root-from-the-file-0123456789abcdef\n\
         LOCAL_KMS_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
         RUN_LEASE_SECS=600\nHEARTBEAT_INTERVAL_SECS=60\n",
    )
    .unwrap();
    let output = run_in(
        &dir,
        &["check-config"],
        &[("HEARTBEAT_INTERVAL_SECS", "30")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("# read .env.local"), "{stdout}");
    assert!(
        stdout.contains("CA_ROOT_API_KEY=set (*** 35 chars)"),
        "{stdout}"
    );
    assert!(stdout.contains("RUN_LEASE_SECS=600"), "{stdout}");
    assert!(
        stdout.contains("HEARTBEAT_INTERVAL_SECS=30"),
        "the environment wins: {stdout}"
    );
    assert!(!stdout.contains("root-from-the-file"), "{stdout}");
}

#[test]
fn an_empty_or_missing_pipelines_folder_fails_both_checks() {
    let empty = temp_dir("empty-pipelines");
    let cwd = temp_dir("cwd");
    let kms = (
        "LOCAL_KMS_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let output = run_in(
        &cwd,
        &["pipelines", "validate", empty.to_str().unwrap()],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        format!(
            "quarry: {}: no pipeline definitions (*.yaml)",
            empty.display()
        )
    );
    let output = run_in(
        &cwd,
        &["check-config"],
        &[kms, ("PIPELINES_DIR", empty.to_str().unwrap())],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no pipeline definitions"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run_in(
        &cwd,
        &["check-config"],
        &[kms, ("PIPELINES_DIR", "/no/such/folder")],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "quarry: /no/such/folder: not a folder"
    );
}

#[test]
fn a_bare_quarry_outside_a_server_environment_prints_the_help_naming_settings_and_exit_codes() {
    let output = run_args(&[], &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Usage: quarry"), "{help}");
    for needle in [
        "QUARRY_URL",
        "QUARRY_API_KEY",
        "QUARRY_ROOT_KEY",
        "Exit codes: 0 done",
        "4 refused for now (429 limit or 503 unavailable)",
        "`quarry serve`",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    assert!(
        output.stderr.is_empty(),
        "no server started, no settings read"
    );
    // Where a server's environment is set, a bare `quarry` is the server (its settings checked).
    let served = run_args(&[], &[("ENVIRONMENT", "production")]);
    assert_eq!(served.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&served.stderr).starts_with("quarry: "));
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish_and_an_unknown_shell_is_a_usage_error() {
    for (shell, marker) in [
        ("bash", "_quarry()"),
        ("zsh", "#compdef quarry"),
        ("fish", "complete -c quarry"),
    ] {
        let output = run_args(&["completions", shell], &[]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {marker}");
        for command in ["runs", "notifications", "pipelines", "serve"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let output = run_args(&["completions", "tcsh"], &[]);
    assert_eq!(output.status.code(), Some(2));
}

/// The pipeline files under `pipelines/` (a user's added one counts like a shipped one).
fn shipped_pipelines() -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                if p.is_dir() {
                    count(&p)
                } else {
                    usize::from(p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                }
            })
            .sum()
    }
    count(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
}
