use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{
    Emulator, TestApp, assert_error, repo_path, spawn_app, spawn_app_with, unique_slug,
};

async fn trigger(
    app: &TestApp,
    slug: &str,
    key: &str,
    pipeline: &str,
    params: Value,
) -> reqwest::Response {
    app.key_post(
        &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
        key,
        &json!({"parameters": params}),
    )
    .await
}

async fn admitted(app: &TestApp, slug: &str, key: &str, pipeline: &str, params: Value) -> String {
    let r = trigger(app, slug, key, pipeline, params).await;
    assert_eq!(r.status(), 202, "{pipeline}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "PENDING");
    body["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_sample_pipelines_run_end_to_end() {
    let app = spawn_app_with(|vars| {
        vars.insert("PIPELINES_DIR".into(), repo_path("pipelines"));
    })
    .await;
    let (slug, key) = app.new_org("run-co").await;
    let catalog: Value = app
        .key_get("/api/v1/pipelines", &key)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = catalog["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // The shipped pipelines are there (a pipeline a user adds under pipelines/ is not a failure).
    for shipped in [
        "genai/provider_usage_extract",
        "genai/usage_rollup",
        "quality/raw_usage_checks",
        "samples/usage_seed",
    ] {
        assert!(ids.contains(&shipped), "{shipped} in {ids:?}");
    }

    let day = json!({"day": "2026-11-01"});
    // The seed and the roll-up run twice: re-running a day replaces its rows.
    for pipeline in [
        "samples/usage_seed",
        "genai/usage_rollup",
        "quality/raw_usage_checks",
        "samples/usage_seed",
        "genai/usage_rollup",
    ] {
        let run_id = admitted(&app, &slug, &key, pipeline, day.clone()).await;
        let done = app.wait_until_ended(&slug, &key, &run_id).await;
        assert_eq!(done["status"], "SUCCEEDED", "{pipeline}: {done}");
        assert_eq!(done["pipeline_id"], pipeline);
        assert_eq!(done["parameters"], day);
        assert!(done["duration_ms"].as_i64().unwrap() >= 0);
        app.slots_free(&slug).await;
    }

    let dataset = slug.replace('-', "_");
    let got = Emulator::new()
        .rows(&format!(
            "SELECT provider, model, requests, input_tokens, output_tokens FROM `{dataset}.usage_daily` \
             WHERE day = DATE '2026-11-01' ORDER BY provider, model LIMIT 100"
        ))
        .await;
    let want = [
        ["anthropic", "claude-haiku", "1", "4000", "800"],
        ["anthropic", "claude-sonnet", "2", "3000", "750"],
        ["openai", "gpt-4o", "2", "2000", "500"],
        ["openai", "gpt-4o-mini", "1", "5000", "1000"],
    ];
    assert_eq!(got, want.map(|r| r.map(String::from).to_vec()).to_vec());
    let raw = Emulator::new()
        .sql(&format!(
            "SELECT COUNT(*) FROM `{dataset}.raw_usage` WHERE event_day = DATE '2026-11-01' LIMIT 1"
        ))
        .await;
    assert_eq!(
        raw["rows"][0]["f"][0]["v"], "6",
        "the day's sample rows, once"
    );
    assert_eq!(app.quota(&slug).await["runs_today"], 5);
}

#[tokio::test]
async fn parameters_are_validated_and_named() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    let cases = [
        (json!({}), "day"),
        (json!({"day": "yesterday"}), "day"),
        (json!({"day": "2026-11-01", "limit": "ten"}), "limit"),
        (json!({"day": "2026-11-01", "model": "Not Valid!"}), "model"),
        (json!({"day": "2026-11-01", "dry_run": 1}), "dry_run"),
        (json!({"day": "2026-11-01", "extra": 1}), "extra"),
    ];
    for (params, name) in cases {
        let r = trigger(&app, &slug, &key, "test/params", params.clone()).await;
        assert_eq!(r.status(), 400, "{params}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "Invalid request format");
        assert_eq!(body["error"]["parameter"], name, "{params}");
    }
    assert_eq!(app.quota(&slug).await["runs_today"], 0, "nothing counted");
    let r = trigger(&app, &slug, &key, "test/nope", json!({})).await;
    assert_error(r, 404, "Resource not found").await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/pipelines/run/{slug}/test/params")))
        .header("X-API-Key", &key)
        .header("content-type", "application/json")
        .body("{\"parameters\": [")
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "Invalid request format").await;
    let run_id = admitted(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-11-01", "model": "gpt-4o"}),
    )
    .await;
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(
        done["parameters"],
        json!({"day": "2026-11-01", "limit": 10, "model": "gpt-4o", "dry_run": false})
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_run_without_a_second_reservation() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 50, 500, 5).await;
    let send = || {
        app.client
            .post(app.url(&format!("/api/v1/pipelines/run/{slug}/test/sleep")))
            .header("X-API-Key", &key)
            .header("Idempotency-Key", "nightly-2026-11-01")
            .json(&json!({"parameters": {}}))
            .send()
    };
    let (a, b, c) = tokio::join!(send(), send(), send());
    let mut ids = Vec::new();
    let mut started = 0;
    for r in [a, b, c] {
        let r = r.unwrap();
        if r.status() == 409 {
            // A repeat that came before the run was recorded: told to retry, never a 202 for
            // a run that may not exist.
            assert_eq!(r.headers()["retry-after"], "1");
            assert_error(r, 409, "A request with this Idempotency-Key is in progress").await;
            continue;
        }
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        started += usize::from(body["replayed"] == false);
        ids.push(body["run_id"].as_str().unwrap().to_string());
    }
    assert_eq!(started, 1, "one request started the run");
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    let first = ids[0].clone();
    app.wait_until_ended(&slug, &key, &first).await;
    let later: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(later["run_id"], first.as_str());
    assert_eq!(later["replayed"], true);
    assert_eq!(
        later["status"], "SUCCEEDED",
        "a replay says where the run is now"
    );
    assert_eq!(app.quota(&slug).await["runs_today"], 1);
}

#[tokio::test]
async fn an_idempotency_key_sent_with_another_pipeline_or_other_parameters_is_422() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 50, 500, 5).await;
    let send = |pipeline: &str, parameters: Value| {
        app.client
            .post(app.url(&format!("/api/v1/pipelines/run/{slug}/{pipeline}")))
            .header("X-API-Key", &key)
            .header("Idempotency-Key", "backfill-day")
            .json(&json!({ "parameters": parameters }))
            .send()
    };
    let first = send("test/params", json!({"day": "2026-11-01"}))
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (pipeline, parameters) in [
        ("test/params", json!({"day": "2026-11-02"})),
        ("test/params", json!({"day": "2026-11-01", "limit": 99})),
        ("test/sleep", json!({})),
    ] {
        let r = send(pipeline, parameters).await.unwrap();
        assert_error(
            r,
            422,
            "Idempotency-Key was already used for a different request",
        )
        .await;
    }
    // The same request replays (parameters compared after validation: defaults included).
    let again = send("test/params", json!({"day": "2026-11-01"}))
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["run_id"], id.as_str());
    assert_eq!(again["replayed"], true);
    assert_eq!(app.quota(&slug).await["runs_today"], 1);
}

#[tokio::test]
async fn with_a_concurrent_limit_of_3_exactly_3_of_30_parallel_triggers_are_admitted() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 100, 1000, 3).await;
    let mut handles = Vec::new();
    for _ in 0..30 {
        let (client, url, key) = (
            app.client.clone(),
            app.url(&format!("/api/v1/pipelines/run/{slug}/test/long")),
            key.clone(),
        );
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-API-Key", key)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
        }));
    }
    let mut admitted_ids = Vec::new();
    let mut refused = 0;
    for h in handles {
        let r = h.await.unwrap();
        match r.status().as_u16() {
            202 => admitted_ids.push(
                r.json::<Value>().await.unwrap()["run_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["reason"], "concurrent");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((admitted_ids.len(), refused), (3, 27));
    let q = app.quota(&slug).await;
    assert_eq!(q["runs_today"], 3, "refusals are not counted");
    let mut active: Vec<String> = serde_json::from_value(q["active_run_ids"].clone()).unwrap();
    active.sort();
    admitted_ids.sort();
    assert_eq!(active, admitted_ids);

    for id in &admitted_ids {
        let r = app
            .key_post(
                &format!("/api/v1/pipelines/{slug}/runs/{id}/cancel"),
                &key,
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    for id in &admitted_ids {
        assert_eq!(
            app.wait_until_ended(&slug, &key, id).await["status"],
            "CANCELLED"
        );
    }
    app.slots_free(&slug).await;
    assert_eq!(app.executor.active_runs(), 0);
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn the_daily_limit_refuses_until_the_next_utc_day() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 2, 100, 2).await;
    app.clock.set(at("2026-11-10T12:00:00Z"));
    for _ in 0..2 {
        let id = admitted(
            &app,
            &slug,
            &key,
            "test/params",
            json!({"day": "2026-11-10"}),
        )
        .await;
        app.wait_until_ended(&slug, &key, &id).await;
    }
    let r = trigger(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-11-10"}),
    )
    .await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Noon, less the seconds the runs above took (generous for a loaded machine).
    assert!((42_900..=43_200).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "daily");
    assert_eq!(app.quota(&slug).await["runs_today"], 2);

    app.clock.advance(chrono::Duration::days(1));
    admitted(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-11-11"}),
    )
    .await;
    let q = app.quota(&slug).await;
    assert_eq!(
        (q["day"].as_str(), &q["runs_today"], &q["runs_month"]),
        (Some("2026-11-11"), &json!(1), &json!(3))
    );
}

#[tokio::test]
async fn the_monthly_limit_refuses_until_the_next_utc_month() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 3, 3, 3).await;
    app.clock.set(at("2026-11-29T12:00:00Z"));
    for _ in 0..2 {
        let id = admitted(
            &app,
            &slug,
            &key,
            "test/params",
            json!({"day": "2026-11-29"}),
        )
        .await;
        app.wait_until_ended(&slug, &key, &id).await;
    }
    app.clock.set(at("2026-11-30T12:00:00Z"));
    let id = admitted(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-11-30"}),
    )
    .await;
    app.wait_until_ended(&slug, &key, &id).await;
    let r = trigger(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-11-30"}),
    )
    .await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Noon, less the seconds the runs above took (generous for a loaded machine).
    assert!((42_900..=43_200).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "monthly");

    app.clock.set(at("2026-12-01T00:00:05Z"));
    admitted(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-12-01"}),
    )
    .await;
    let q = app.quota(&slug).await;
    assert_eq!(q["month"], "2026-12-01");
    assert_eq!((&q["runs_today"], &q["runs_month"]), (&json!(1), &json!(1)));
}

#[tokio::test]
async fn every_failure_path_releases_its_slot() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 100, 1000, 1).await;
    for (pipeline, status, class) in [
        ("test/panic", "FAILED", "panic"),
        ("test/fail", "FAILED", "chaos"),
        ("test/step_timeout", "FAILED", "timeout"),
        ("test/pipeline_timeout", "TIMED_OUT", "timeout"),
    ] {
        let id = admitted(&app, &slug, &key, pipeline, json!({})).await;
        let done = app.wait_until_ended(&slug, &key, &id).await;
        assert_eq!(done["status"], status, "{pipeline}: {done}");
        assert_eq!(done["error_class"], class, "{pipeline}");
        // Concurrency 1: the next trigger is only admitted once the slot is back.
        app.slots_free(&slug).await;
    }
    let id = admitted(&app, &slug, &key, "test/long", json!({})).await;
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/{slug}/runs/{id}/cancel"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        app.wait_until_ended(&slug, &key, &id).await["status"],
        "CANCELLED"
    );
    app.slots_free(&slug).await;
    let again = app
        .key_post(
            &format!("/api/v1/pipelines/{slug}/runs/{id}/cancel"),
            &key,
            &json!({}),
        )
        .await;
    assert_error(again, 409, "Run already ended").await;
    assert_eq!(app.executor.active_runs(), 0);
    assert_eq!(app.executor.releaser().pending(), 0);
}

#[tokio::test]
async fn retries_follow_the_policy_and_show_in_the_step_log() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    app.set_limits(&slug, 100, 1000, 2).await;
    let failing = admitted(&app, &slug, &key, "test/fail", json!({})).await;
    let flaky = admitted(&app, &slug, &key, "test/flaky", json!({})).await;
    assert_eq!(
        app.wait_until_ended(&slug, &key, &failing).await["status"],
        "FAILED"
    );
    assert_eq!(
        app.wait_until_ended(&slug, &key, &flaky).await["status"],
        "SUCCEEDED"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // step logs flush every 50 ms here
    let s = |id: &str, n: i64, st: &str| (id.to_string(), n, st.to_string());
    assert_eq!(
        app.steps(&slug, &key, &failing).await,
        vec![
            s("broken", 1, "FAILED"),
            s("broken", 2, "FAILED"),
            s("broken", 3, "FAILED"),
            s("after", 0, "SKIPPED")
        ],
        "the dependent step never ran, and says so"
    );
    assert_eq!(
        app.steps(&slug, &key, &flaky).await,
        vec![
            s("flaky", 1, "FAILED"),
            s("flaky", 2, "FAILED"),
            s("flaky", 3, "SUCCEEDED")
        ]
    );
}

#[tokio::test]
async fn a_running_step_shows_as_running_until_its_attempt_ends() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    let id = admitted(&app, &slug, &key, "test/sleep5", json!({})).await;
    let mut seen = vec![];
    for _ in 0..100 {
        seen = app.steps(&slug, &key, &id).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec![("nap".to_string(), 1, "RUNNING".to_string())]);
    assert_eq!(
        app.wait_until_ended(&slug, &key, &id).await["status"],
        "SUCCEEDED"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.steps(&slug, &key, &id).await,
        vec![("nap".to_string(), 1, "SUCCEEDED".to_string())]
    );
}

#[tokio::test]
async fn steps_follow_the_dag_and_a_tolerated_failure_lets_the_run_succeed() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    let id = admitted(&app, &slug, &key, "test/dag", json!({})).await;
    let done = app.wait_until_ended(&slug, &key, &id).await;
    assert_eq!(done["status"], "SUCCEEDED");
    // A tolerated failure is visible on the run itself.
    assert_eq!(done["error_class"], "tolerated_failures");
    assert_eq!(
        done["error_summary"],
        "1 step(s) failed and were tolerated (on_failure: continue): c"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = app.steps(&slug, &key, &id).await;
    let order: Vec<&str> = got.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(order.first(), Some(&"a"));
    assert_eq!(order.last(), Some(&"d"));
    assert!(got.contains(&("c".to_string(), 1, "FAILED".to_string())));
    assert_eq!(got.len(), 4);
}

#[tokio::test]
async fn the_trigger_path_makes_one_dml_and_one_insert_all() {
    let app = spawn_app_with(|vars| {
        // Keep the run's own buffered rows out of the measurement.
        vars.insert("RUN_LOG_FLUSH_MS".into(), "60000".into());
    })
    .await;
    let (slug, key) = app.new_org("run-co").await;
    assert_eq!(app.key_get("/api/v1/whoami", &key).await.status(), 200); // warm auth
    let before = app.warehouse.counters().snapshot();
    admitted(&app, &slug, &key, "test/long", json!({})).await;
    let delta = app.warehouse.counters().snapshot().since(&before);
    assert_eq!(
        (delta.dml, delta.insert_all, delta.query),
        (1, 1, 0),
        "{delta:?}"
    );

    let before = app.warehouse.counters().snapshot();
    let r = app
        .client
        .post(app.url(&format!("/api/v1/pipelines/run/{slug}/test/params")))
        .header("X-API-Key", &key)
        .header("Idempotency-Key", "once")
        .json(&json!({"parameters": {"day": "2026-11-01"}}))
        .send()
        .await
        .unwrap();
    let delta = app.warehouse.counters().snapshot().since(&before);
    // Concurrency 1 (STARTER) with the long run active: refused, after one bounded read.
    assert_eq!(r.status(), 429);
    assert_eq!((delta.dml, delta.query), (1, 2), "{delta:?}");
}

#[tokio::test]
async fn another_orgs_key_cannot_trigger_or_read_runs() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    let other = unique_slug("other-run-co");
    let other_key = app.org_with_key(&other).await;
    let id = admitted(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"day": "2026-11-01"}),
    )
    .await;
    for r in [
        trigger(
            &app,
            &slug,
            &other_key,
            "test/params",
            json!({"day": "2026-11-01"}),
        )
        .await,
        app.key_get(&format!("/api/v1/pipelines/{slug}/runs/{id}"), &other_key)
            .await,
        app.key_get(
            &format!("/api/v1/pipelines/{slug}/runs/{id}/steps"),
            &other_key,
        )
        .await,
    ] {
        assert_error(r, 403, "Cannot access another organization").await;
    }
    // Its own path does not know the run.
    let r = app
        .key_get(&format!("/api/v1/pipelines/{other}/runs/{id}"), &other_key)
        .await;
    assert_error(r, 404, "Resource not found").await;
    app.wait_until_ended(&slug, &key, &id).await;
    assert_eq!(app.run(&slug, &key, &id).await["status"], "SUCCEEDED");
}

#[tokio::test]
async fn duplicate_log_rows_do_not_change_what_is_read() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("run-co").await;
    let id = admitted(&app, &slug, &key, "test/flaky", json!({})).await;
    let before = app.wait_until_ended(&slug, &key, &id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let steps_before = app.steps(&slug, &key, &id).await;
    // What a retried insertAll without de-duplication leaves behind: every row twice.
    let meta = &app.meta_dataset;
    let emulator = Emulator::new();
    for table in ["pipeline_run_events", "step_logs"] {
        emulator
            .sql(&format!(
                "INSERT INTO `{meta}.{table}` SELECT * FROM `{meta}.{table}` WHERE run_id = '{id}'"
            ))
            .await;
    }
    let after = app.run(&slug, &key, &id).await;
    assert_eq!(after["status"], before["status"]);
    assert_eq!(after["started_at"], before["started_at"]);
    assert_eq!(after["parameters"], before["parameters"]);
    assert_eq!(app.steps(&slug, &key, &id).await, steps_before);
    assert_eq!(steps_before.len(), 3);
}

#[tokio::test]
async fn the_root_key_triggering_for_an_org_that_does_not_exist_gets_404_and_counts_nothing() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let ghost = unique_slug("ghost-co");
    let r = app
        .client
        .post(app.url(&format!("/api/v1/pipelines/run/{ghost}/test/sleep")))
        .header("X-CA-Root-Key", &app.root_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "Resource not found").await;
    let q = app
        .root_get(&format!("/api/v1/organizations/{ghost}/quota"))
        .await;
    assert_eq!(q.status(), 404, "no quota row was made");
}

#[tokio::test]
async fn the_root_key_cannot_run_a_pipeline_for_a_suspended_org_until_it_is_reactivated() {
    let app = spawn_app().await;
    let (slug, _key) = app.new_org("run-co").await;
    let trigger_as_root = || {
        app.client
            .post(app.url(&format!("/api/v1/pipelines/run/{slug}/test/sleep")))
            .header("X-CA-Root-Key", &app.root_key)
            .json(&json!({}))
            .send()
    };
    let suspended = app
        .root_post(&format!("/api/v1/organizations/{slug}/suspend"))
        .await;
    assert_eq!(suspended.status(), 200);
    assert_error(
        trigger_as_root().await.unwrap(),
        403,
        "Organization is suspended",
    )
    .await;
    assert_eq!(app.quota(&slug).await["runs_today"], 0, "nothing counted");

    let reactivated = app
        .root_post(&format!("/api/v1/organizations/{slug}/reactivate"))
        .await;
    assert_eq!(reactivated.status(), 200);
    assert_eq!(trigger_as_root().await.unwrap().status(), 202);
}

#[tokio::test]
async fn the_slow_demo_is_cancelled_while_it_waits_and_its_rerun_reuses_the_step_that_succeeded() {
    let app = spawn_app_with(|vars| {
        vars.insert("PIPELINES_DIR".into(), repo_path("pipelines"));
    })
    .await;
    let (slug, key) = app.new_org("demo-co").await;
    let run_id = app.started(&slug, &key, "samples/slow_demo").await;
    crate::verbs::eventually(
        "the minute's wait runs",
        Duration::from_secs(30),
        || async {
            let steps = app.steps(&slug, &key, &run_id).await;
            if steps
                .iter()
                .any(|(id, _, status)| id == "wait_a_minute" && status == "RUNNING")
            {
                Ok(())
            } else {
                Err(format!("{steps:?}"))
            }
        },
    )
    .await;
    assert_eq!(app.cancel(&slug, &key, &run_id).await.status(), 202);
    let ended = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(ended["status"], "CANCELLED");
    assert!(
        ended["duration_ms"].as_f64().unwrap() < 30_000.0,
        "the wait stops at the cancel: {ended}"
    );

    let r = app
        .key_post(
            &format!("/api/v1/pipelines/{slug}/runs/{run_id}/rerun"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let rerun = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    crate::verbs::eventually(
        "the re-run waits again",
        Duration::from_secs(30),
        || async {
            let steps = app.steps(&slug, &key, &rerun).await;
            let reused = steps
                .iter()
                .any(|(id, _, status)| id == "prepare" && status == "REUSED");
            let waiting = steps
                .iter()
                .any(|(id, _, status)| id == "wait_a_minute" && status == "RUNNING");
            if reused && waiting {
                Ok(())
            } else {
                Err(format!("{steps:?}"))
            }
        },
    )
    .await;
    assert_eq!(app.cancel(&slug, &key, &rerun).await.status(), 202);
}
