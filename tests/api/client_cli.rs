//! The `quarry` client against the real service: the binary, run as a user would, with its
//! settings in the environment or a profile file, never a key on the command line.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::helpers::{TestApp, remember_secret, spawn_app, spawn_app_with, unique_slug};

/// A folder of its own per call site, as `HOME`, so no profile file of the machine is read.
fn home(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-cli-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn quarry_with(vars: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quarry"));
    command
        .env_clear()
        .envs(vars.iter().copied())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// The client as an org: QUARRY_URL and QUARRY_API_KEY, nothing else.
async fn as_org(app: &TestApp, key: &str, args: &[&str]) -> Output {
    let home = home("org");
    quarry_with(
        &[
            ("QUARRY_URL", &app.address),
            ("QUARRY_API_KEY", key),
            ("HOME", home.to_str().unwrap()),
        ],
        args,
        None,
    )
    .await
}

async fn as_root(app: &TestApp, args: &[&str]) -> Output {
    let home = home("root");
    quarry_with(
        &[
            ("QUARRY_URL", &app.address),
            ("QUARRY_ROOT_KEY", &app.root_key),
            ("HOME", home.to_str().unwrap()),
        ],
        args,
        None,
    )
    .await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value of a `label: value` line of the human output.
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` line in: {out}"))
}

fn json_out(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// One line on stderr: `quarry: <status> <message>[ (details)] [request id <uuid>]`.
fn assert_one_line_refusal(o: &Output, code: i32, starts: &str) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with(starts), "{err}");
    let id = err
        .trim_end()
        .strip_suffix(']')
        .and_then(|l| l.rsplit_once("[request id "))
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no request id: {err}"));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert!(o.stdout.is_empty());
}

#[tokio::test]
async fn trigger_wait_types_the_parameters_follows_the_steps_and_exits_zero() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("cliw").await;
    let o = as_org(
        &app,
        &key,
        &[
            "runs",
            "trigger",
            &slug,
            "test/params",
            "-p",
            "day=2026-11-01",
            "-p",
            "limit=5",
            "-p",
            "dry_run=true",
            "--wait",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let run_id = field(&out, "run:");
    assert!(out.contains("  step noop  attempt 1  SUCCEEDED"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("run {run_id} SUCCEEDED in ")),
        "{last}"
    );

    let shown =
        json_out(&as_org(&app, &key, &["runs", "show", &slug, &run_id, "-o", "json"]).await);
    assert_eq!(shown["status"], "SUCCEEDED");
    assert_eq!(
        shown["parameters"],
        json!({"day": "2026-11-01", "limit": 5, "dry_run": true})
    );
    assert_eq!(shown["steps"][0]["step_id"], "noop");

    let table = stdout(&as_org(&app, &key, &["runs", "show", &slug, &run_id]).await);
    assert!(table.contains("status:"), "{table}");
    assert!(table.contains("STEP  ATTEMPT  STATUS"), "{table}");

    let listed = json_out(
        &as_org(
            &app,
            &key,
            &["runs", "list", &slug, "--status", "SUCCEEDED", "-o", "json"],
        )
        .await,
    );
    assert_eq!(listed["runs"][0]["run_id"], run_id.as_str());
}

#[tokio::test]
async fn an_org_key_needs_no_org_argument_and_the_root_key_is_told_to_name_one() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("clio").await;
    let started = json_out(
        &as_org(
            &app,
            &key,
            &[
                "runs",
                "trigger",
                "test/params",
                "-p",
                "day=2026-11-01",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let run_id = started["run_id"].as_str().unwrap().to_string();
    let shown = json_out(&as_org(&app, &key, &["runs", "show", &run_id, "-o", "json"]).await);
    assert_eq!(shown["run_id"], run_id.as_str());
    assert_eq!(shown["pipeline_id"], "test/params");
    let quota = json_out(&as_org(&app, &key, &["quota", "show", "-o", "json"]).await);
    assert_eq!(quota["runs_today"], 1);
    let keys = json_out(&as_org(&app, &key, &["keys", "list", "-o", "json"]).await);
    assert_eq!(keys["api_keys"].as_array().map(Vec::len), Some(1), "{keys}");

    // Naming another org is still the service's 403, not the key's org taken instead.
    let (other, _) = app.new_org("cliq").await;
    assert_one_line_refusal(
        &as_org(&app, &key, &["quota", "show", &other]).await,
        3,
        "quarry: 403 Cannot access another organization",
    );

    let o = as_root(&app, &["quota", "show"]).await;
    assert_eq!(o.status.code(), Some(2), "stdout: {}", stdout(&o));
    assert_eq!(
        stderr(&o),
        "quarry: the root key belongs to no org: name the org (ORG before the other arguments)\n"
    );
    let named = json_out(&as_root(&app, &["quota", "show", &slug, "-o", "json"]).await);
    assert_eq!(named["runs_today"], 1);
}

#[tokio::test]
async fn watch_is_pushed_each_change_and_polls_when_the_service_refuses_it_a_stream() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_STREAMS_PER_ORG".into(), "1".into());
        vars.insert("LIVE_POLL_MS".into(), "200".into());
    })
    .await;
    let (slug, key) = app.new_org("cli-live").await;
    // Pushed: a 1.5 s run followed with a 60 s poll interval ends long before a first poll.
    let run_id = json_out(
        &as_org(&app, &key, &["runs", "trigger", "test/sleep", "-o", "json"]).await,
    )["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = std::time::Instant::now();
    let o = as_org(&app, &key, &["runs", "watch", &run_id, "--interval", "60"]).await;
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "pushed, not polled"
    );
    let out = stdout(&o);
    assert!(out.contains("  step nap  attempt 1  SUCCEEDED"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with(&format!("run {run_id} SUCCEEDED in ")),
        "{out}"
    );

    // The org's one stream taken: the watch polls instead, to the same end.
    let holder = app.hold_the_slot(&slug, &key).await;
    // (The first watch's stream gives its place back once its response is over.)
    let held = crate::verbs::eventually(
        "the org's one stream taken",
        std::time::Duration::from_secs(20),
        || async {
            let r = app
                .client
                .get(app.url(&format!("/api/v1/pipelines/{slug}/runs/{holder}/events")))
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                Ok(r)
            } else {
                Err(r.status().to_string())
            }
        },
    )
    .await;
    let watch = tokio::spawn({
        let (address, key, holder) = (app.address.clone(), key.clone(), holder.clone());
        async move {
            let home = home("poll");
            quarry_with(
                &[
                    ("QUARRY_URL", &address),
                    ("QUARRY_API_KEY", &key),
                    ("HOME", home.to_str().unwrap()),
                ],
                &["runs", "watch", &holder, "--interval", "1"],
                None,
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(app.cancel(&slug, &key, &holder).await.status(), 202);
    let o = watch.await.unwrap();
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .last()
            .unwrap()
            .starts_with(&format!("run {holder} CANCELLED")),
        "{}",
        stdout(&o)
    );
    drop(held);
}

/// Triggers `pipeline` with the client, then follows it with `runs watch --interval 1`;
/// returns the run id and what the watch printed.
async fn trigger_and_watch(
    app: &TestApp,
    slug: &str,
    key: &str,
    pipeline: &str,
) -> (String, Output) {
    let started =
        json_out(&as_org(app, key, &["runs", "trigger", slug, pipeline, "-o", "json"]).await);
    let run_id = started["run_id"].as_str().unwrap().to_string();
    let o = as_org(
        app,
        key,
        &["runs", "watch", slug, &run_id, "--interval", "1"],
    )
    .await;
    (run_id, o)
}

#[tokio::test]
async fn watch_exits_one_when_the_run_fails_and_prints_each_attempt() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("clif").await;
    let (run_id, o) = trigger_and_watch(&app, &slug, &key, "test/fail").await;
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    for attempt in 1..=3 {
        assert!(
            out.contains(&format!("  step broken  attempt {attempt}  FAILED")),
            "{out}"
        );
    }
    let last = out.lines().last().unwrap();
    assert!(last.starts_with(&format!("run {run_id} FAILED")), "{last}");
    assert!(
        stderr(&o).is_empty(),
        "no progress line off a terminal: {}",
        stderr(&o)
    );
}

#[tokio::test]
async fn refusals_are_one_line_with_the_status_and_request_id() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("clie").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let o = as_org(&app, &key, &["runs", "show", &slug, &unknown]).await;
    assert_one_line_refusal(&o, 3, "quarry: 404 Resource not found [request id ");

    let o = as_org(
        &app,
        &key,
        &[
            "runs",
            "trigger",
            &slug,
            "test/params",
            "-p",
            "day=november",
        ],
    )
    .await;
    assert_one_line_refusal(&o, 3, "quarry: 400 Invalid request format (");

    let o = as_org(&app, &key, &["runs", "list", "another-org"]).await;
    assert_one_line_refusal(
        &o,
        3,
        "quarry: 403 Cannot access another organization [request id ",
    );

    let o = as_org(&app, "qk_not_a_key", &["runs", "list", &slug]).await;
    assert_one_line_refusal(
        &o,
        3,
        "quarry: 401 Invalid or inactive API key [request id ",
    );

    // Caught before any call: usage problems exit 2.
    let o = as_org(
        &app,
        &key,
        &["runs", "trigger", &slug, "test/params", "-p", "limit=ten"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "quarry: --param limit: expected an integer, got `ten`\n"
    );
    let o = as_org(&app, &key, &["runs", "show", &slug, "../../admin"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "quarry: run `../../admin`: letters, digits, '-', '_' and '.' only\n"
    );

    // Nobody listening: exit 3, one line naming the address.
    let o = quarry_with(
        &[
            ("QUARRY_URL", "http://127.0.0.1:9"),
            ("QUARRY_API_KEY", &key),
            ("HOME", "/nonexistent"),
        ],
        &["runs", "list", &slug],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(
        err.starts_with("quarry: cannot reach http://127.0.0.1:9: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[tokio::test]
async fn a_key_is_never_an_argument_and_a_profile_others_can_read_is_refused() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("clip").await;
    let o = as_org(
        &app,
        &key,
        &["runs", "list", &slug, "--api-key", "qk_leaked"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("quarry: --api-key: keys are never taken on the command line"),
        "{err}"
    );
    assert!(!err.contains("qk_leaked"));

    let dir = home("profile");
    let path = dir.join("profiles");
    std::fs::write(
        &path,
        format!("[acme]\nurl = {}\napi_key = {key}\n", app.address),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let vars = [("QUARRY_PROFILES", path.to_str().unwrap())];
    let o = quarry_with(&vars, &["--profile", "acme", "runs", "list", &slug], None).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "quarry: {p}: readable by others (mode 644); it holds keys: chmod 600 {p}\n",
            p = path.display()
        )
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = quarry_with(&vars, &["--profile", "acme", "runs", "list", &slug], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("RUN "), "{}", stdout(&o));

    let o = quarry_with(&vars, &["--profile", "nope", "runs", "list", &slug], None).await;
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("quarry: {}: no profile [nope]\n", path.display())
    );

    // `profile save` reads the key from standard input and keeps the file private.
    let saved = dir.join("saved");
    let vars = [
        ("QUARRY_PROFILES", saved.to_str().unwrap()),
        ("QUARRY_URL", app.address.as_str()),
    ];
    let o = quarry_with(
        &vars,
        &["profile", "save", "work"],
        Some(&format!("{key}\n")),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let o = quarry_with(
        &[("QUARRY_PROFILES", saved.to_str().unwrap())],
        &["--profile", "work", "quota", "show", &slug, "-o", "json"],
        None,
    )
    .await;
    assert_eq!(json_out(&o)["daily_limit"], 6);
}

#[tokio::test]
async fn an_admin_bootstraps_onboards_lists_and_suspends_orgs_and_the_org_rotates_its_key() {
    let app = spawn_app().await;
    let o = as_root(&app, &["bootstrap", "-o", "json"]).await;
    assert_eq!(json_out(&o)["dataset"], app.meta_dataset.as_str());
    let status = json_out(&as_root(&app, &["bootstrap", "--status", "-o", "json"]).await);
    assert_eq!(status["status"], "SYNCED");

    let slug = unique_slug("clio");
    let o = as_root(
        &app,
        &[
            "orgs",
            "onboard",
            &slug,
            "--company",
            "Cli Co",
            "--email",
            "ops@cli.example.com",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let key = field(&out, "api key:");
    remember_secret(&key);
    assert!(key.starts_with("qk_"), "{key}");
    assert!(stderr(&o).contains("shown once"));

    let listed = json_out(&as_root(&app, &["orgs", "list", "-o", "json"]).await);
    let orgs: Vec<&str> = listed["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["org_slug"].as_str())
        .collect();
    assert_eq!(orgs, vec![slug.as_str()]);

    // An org key cannot run admin commands: the client says which key it needs.
    let o = as_org(&app, &key, &["orgs", "list"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("quarry: this command needs the root key: set QUARRY_ROOT_KEY"));

    let rotated = json_out(
        &as_org(
            &app,
            &key,
            &[
                "keys",
                "rotate",
                &slug,
                "--grace-period-seconds",
                "0",
                "-o",
                "json",
            ],
        )
        .await,
    );
    let new_key = rotated["api_key"].as_str().unwrap().to_string();
    remember_secret(&new_key);
    let keys = json_out(&as_org(&app, &new_key, &["keys", "list", &slug, "-o", "json"]).await);
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 2);

    let o = as_root(&app, &["orgs", "suspend", &slug, "-o", "json"]).await;
    assert_eq!(json_out(&o)["status"], "SUSPENDED");
    let o = as_org(&app, &new_key, &["runs", "list", &slug]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with("quarry: 401 ") || stderr(&o).starts_with("quarry: 403 "),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn schedules_and_backfills_are_driven_from_the_client() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("clis").await;
    let table = stdout(&as_org(&app, &key, &["schedules", "list", &slug]).await);
    assert!(table.starts_with("SCHEDULE "), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("test/ticker/minutely-skip "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(" DISABLED "), "{line}");

    let enabled = json_out(
        &as_org(
            &app,
            &key,
            &[
                "schedules",
                "enable",
                &slug,
                "test/ticker/minutely-skip",
                "-p",
                "n=3",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(enabled["status"], "ACTIVE");
    assert_eq!(enabled["parameters"]["n"], 3);
    let paused = json_out(
        &as_org(
            &app,
            &key,
            &[
                "schedules",
                "pause",
                &slug,
                "test/ticker/minutely-skip",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(paused["status"], "PAUSED");
    let o = as_org(
        &app,
        &key,
        &["schedules", "pause", &slug, "test/ticker/minutely-skip"],
    )
    .await;
    assert_one_line_refusal(&o, 3, "quarry: 409 ");
    let o = as_org(&app, &key, &["schedules", "pause", &slug, "minutely-skip"]).await;
    assert_eq!(o.status.code(), Some(2));

    let started = json_out(
        &as_org(
            &app,
            &key,
            &[
                "backfill",
                "start",
                &slug,
                "test/ticker",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-03",
                "-o",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(started["days"], 3);
    let id = started["backfill_id"].as_str().unwrap().to_string();
    let shown = stdout(&as_org(&app, &key, &["backfill", "show", &slug, &id]).await);
    for day in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        assert!(shown.lines().any(|l| l.starts_with(day)), "{shown}");
    }
    let cancelled = json_out(
        &as_org(
            &app,
            &key,
            &["backfill", "cancel", &slug, &id, "-o", "json"],
        )
        .await,
    );
    assert_eq!(cancelled["status"], "CANCELLED");
}

#[tokio::test]
async fn a_cancelled_run_watches_to_exit_one_and_its_rerun_waits_to_exit_zero() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("clic").await;
    let started = json_out(
        &as_org(
            &app,
            &key,
            &["runs", "trigger", &slug, "test/sleep5", "-o", "json"],
        )
        .await,
    );
    let run_id = started["run_id"].as_str().unwrap().to_string();
    let o = as_org(&app, &key, &["runs", "cancel", &slug, &run_id]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = as_org(
        &app,
        &key,
        &["runs", "watch", &slug, &run_id, "--interval", "1"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o)
            .lines()
            .last()
            .unwrap()
            .starts_with(&format!("run {run_id} CANCELLED"))
    );
    app.slots_free(&slug).await;

    let o = as_org(&app, &key, &["runs", "rerun", &slug, &run_id, "--wait"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.lines().last().unwrap().contains(" SUCCEEDED in "),
        "{out}"
    );
}

#[tokio::test]
async fn alert_channels_are_added_tested_listed_and_deleted_from_the_client() {
    let app = spawn_app_with(|vars| {
        vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
    })
    .await;
    let (slug, key) = app.new_org("cli-alerts").await;
    let receiver = crate::receiver::Receiver::start().await;
    let added = as_org(
        &app,
        &key,
        &[
            "notifications",
            "add",
            &slug,
            "--kind",
            "webhook",
            "--to",
            &receiver.url,
            "--event",
            "run.failed",
            "--pipeline",
            "test/fail",
            "--queued-after",
            "120",
        ],
    )
    .await;
    assert_eq!(added.status.code(), Some(0), "{}", stderr(&added));
    let out = stdout(&added);
    let secret = field(&out, "signing secret:");
    remember_secret(&secret);
    assert!(secret.starts_with("whsec_"), "{out}");
    assert!(stderr(&added).contains("shown once"));
    let channel = field(&out, "channel:");
    assert_eq!(field(&out, "events:"), "run.failed");
    assert_eq!(field(&out, "pipelines:"), "test/fail");
    assert_eq!(field(&out, "queued after:"), "120");

    let listed = stdout(&as_org(&app, &key, &["notifications", "list", &slug]).await);
    assert!(listed.starts_with("CHANNEL "), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.starts_with(&channel))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains(" webhook ") && line.contains(" http://127.0.0.1 "),
        "{line}"
    );
    assert!(!listed.contains("whsec_"), "{listed}");

    let tested = json_out(
        &as_org(
            &app,
            &key,
            &["notifications", "test", &slug, &channel, "-o", "json"],
        )
        .await,
    );
    let delivery = tested["delivery_id"].as_str().unwrap().to_string();
    let got = receiver
        .wait_for(1, std::time::Duration::from_secs(15))
        .await;
    assert_eq!(got[0].id.as_deref(), Some(delivery.as_str()));

    let deleted = as_org(&app, &key, &["notifications", "delete", &slug, &channel]).await;
    assert_eq!(stdout(&deleted), format!("deleted {channel}\n"));
    let again = as_org(&app, &key, &["notifications", "delete", &slug, &channel]).await;
    assert_one_line_refusal(&again, 3, "quarry: 404 Resource not found [request id ");
}

#[tokio::test]
async fn a_trigger_refused_by_the_concurrency_limit_exits_4_with_the_queue_hint_and_queues_with_it()
{
    let app = spawn_app().await;
    let (slug, key) = app.new_org("cli-busy").await;
    // STARTER: one slot, held.
    let holder = app.hold_the_slot(&slug, &key).await;
    let o = as_org(&app, &key, &["runs", "trigger", &slug, "test/nap"]).await;
    assert_one_line_refusal(&o, 4, "quarry: 429 Rate limit exceeded (");
    let err = stderr(&o);
    for needle in [
        "reason: concurrent",
        "retry after ",
        "--queue waits in the org's queue for a slot instead",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let queued = json_out(
        &as_org(
            &app,
            &key,
            &[
                "runs", "trigger", &slug, "test/nap", "--queue", "-o", "json",
            ],
        )
        .await,
    );
    assert_eq!(queued["status"], "QUEUED", "{queued}");
    app.free_the_slot(&slug, &key, &holder).await;
}

#[tokio::test]
async fn pipelines_show_prints_one_pipelines_parameters_and_steps_in_order_and_names_the_known_ones_for_a_typo()
 {
    let app = spawn_app().await;
    let (_, key) = app.new_org("cli-show").await;
    let o = as_org(&app, &key, &["pipelines", "show", "test/dag"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(field(&out, "pipeline:"), "test/dag");
    let steps: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("STEP "))
        .skip(1)
        .collect();
    let ids: Vec<&str> = steps
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "{out}");
    assert!(
        steps[3].contains("b, c") || steps[3].contains("b,c"),
        "{out}"
    );
    assert!(out.contains("parameters:\n  none"), "{out}");

    let o = as_org(&app, &key, &["pipelines", "show", "test/dagg"]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with("quarry: no pipeline test/dagg in the service's catalog (it has: "),
        "{err}"
    );
    let known = err.split("(it has: ").nth(1).unwrap().trim_end();
    assert!(
        known
            .trim_end_matches(')')
            .split(", ")
            .any(|p| p == "test/dag"),
        "{err}"
    );
}

#[tokio::test]
async fn watch_prints_the_runs_running_line_before_its_steps_in_start_order_with_aligned_columns() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("cli-watch").await;
    let (run_id, o) = trigger_and_watch(&app, &slug, &key, "test/dag").await;
    // test/dag tolerates its failing step c: the run succeeds.
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let running = lines
        .iter()
        .position(|l| *l == format!("run {run_id}  RUNNING"))
        .unwrap_or_else(|| panic!("no RUNNING line: {out}"));
    let steps: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("  step "))
        .collect();
    let first_step = lines.iter().position(|l| l.starts_with("  step ")).unwrap();
    assert!(running < first_step, "the run's line first: {out}");
    // Every step line has its attempt column at the same place ("a" is padded to "a").
    let columns: std::collections::BTreeSet<usize> =
        steps.iter().map(|l| l.find("attempt").unwrap()).collect();
    assert_eq!(columns.len(), 1, "{out}");
    // a starts first and d last.
    let first_ended = steps.iter().find(|l| !l.contains("RUNNING")).unwrap();
    assert!(first_ended.starts_with("  step a "), "{out}");
    assert!(steps.last().unwrap().starts_with("  step d "), "{out}");
}
