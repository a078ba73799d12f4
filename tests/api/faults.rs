//! Faults: BigQuery down and back, lost answers on the reservation and the release, a provider
//! that hangs. None may leak a slot, double count a run, or surface as a 500.

use serde_json::{Value, json};

use crate::fault_proxy::{behind_proxy, lost_answer, refused};
use crate::helpers::{
    Emulator, TestApp, assert_error, fixture, repo_path, spawn_app_with, unique_slug, until_not_503,
};
use crate::integrations::app_with_double;
use crate::provider_double::ProviderDouble;

/// Triggers `pipeline` with `body` as a client would: a 503 (a decision that came too late on
/// a loaded BigQuery: it counts nothing) is sent again after a pause, for up to a minute.
/// Asserts 202 and returns the run id.
async fn started(app: &TestApp, slug: &str, key: &str, pipeline: &str, body: Value) -> String {
    let path = format!("/api/v1/pipelines/run/{slug}/{pipeline}");
    let r = until_not_503(|| app.key_post(&path, key, &body)).await;
    assert_eq!(r.status(), 202, "{pipeline}");
    r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn connect_usage_api(app: &TestApp, slug: &str, key: &str, token: &str) {
    let r = app
        .key_post(
            &format!("/api/v1/integrations/{slug}/usage_api/setup"),
            key,
            &json!({ "credential": token }),
        )
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn bigquery_down_is_503_with_retry_after_and_the_service_recovers_without_restart() {
    let (proxy, app, slug, key) = behind_proxy("down-co", |vars| {
        vars.insert("BIGQUERY_MAX_RETRIES".into(), "1".into());
    })
    .await;
    assert_eq!(app.key_get("/api/v1/whoami", &key).await.status(), 200);

    proxy.set_down(true);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<Value>().await.unwrap()["failed_dependencies"],
        json!(["bigquery"])
    );
    let trigger = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/params"),
            &key,
            &json!({"parameters": {"day": "2026-11-01"}}),
        )
        .await;
    assert_eq!(trigger.headers()["retry-after"], "5");
    let text = trigger.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["error"],
        json!({"code": 503, "message": "Service unavailable"})
    );
    assert!(!text.contains("backend"), "no upstream text leaks");

    proxy.set_down(false);
    // Readiness answers from a result at most 2 s old: ready again once a probe gets through
    // (in a loaded suite the shared emulator may hold the first probes past their timeout).
    let back = std::time::Instant::now();
    while app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(back.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A trigger answered 503 counts nothing (checked below), so it is retried as a client would.
    let run_id = crate::verbs::eventually(
        "a trigger is admitted",
        std::time::Duration::from_secs(60),
        || async {
            let r = app
                .key_post(
                    &format!("/api/v1/pipelines/run/{slug}/test/params"),
                    &key,
                    &json!({"parameters": {"day": "2026-11-01"}}),
                )
                .await;
            match r.status().as_u16() {
                202 => Ok(r.json::<Value>().await.unwrap()["run_id"]
                    .as_str()
                    .unwrap()
                    .to_string()),
                503 => Err("503".to_string()),
                other => panic!("trigger answered {other}"),
            }
        },
    )
    .await;
    assert_eq!(
        app.wait_until_ended(&slug, &key, &run_id).await["status"],
        "SUCCEEDED"
    );
    app.slots_free(&slug).await;
    assert_eq!(
        app.quota(&slug).await["runs_today"],
        1,
        "the refused attempt was not counted"
    );
}

#[tokio::test]
async fn lost_answers_on_reservation_and_release_neither_double_count_nor_leak() {
    let (proxy, app, slug, key) = behind_proxy("lost-co", |_| {}).await;
    let lost = |needle: &'static str| lost_answer("/queries", Some(needle));
    // The reservation's batch and the release's batch each take effect, but their first answer
    // is lost (the batches carry the operation kind as a parameter value).
    proxy.inject([lost("\"reserve\""), lost("\"release\"")]);
    let run_id = started(
        &app,
        &slug,
        &key,
        "test/params",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    assert_eq!(
        app.wait_until_ended(&slug, &key, &run_id).await["status"],
        "SUCCEEDED"
    );
    app.slots_free(&slug).await;
    let q = app.quota(&slug).await;
    assert_eq!(q["runs_today"], 1, "counted once: {q}");
    assert_eq!(q["runs_month"], 1);
    let lost_calls = proxy.query_calls().iter().filter(|c| c.1 == 503).count();
    assert_eq!(lost_calls, 2, "both faults were hit");
}

#[tokio::test]
async fn a_lost_reservation_answer_with_an_idempotency_key_runs_the_run_once_under_its_pipeline() {
    let (proxy, app, slug, key) = behind_proxy("phantom-co", |_| {}).await;
    proxy.inject([lost_answer("/queries", Some("\"reserve\""))]);
    let send = || {
        app.client
            .post(app.url(&format!("/api/v1/pipelines/run/{slug}/test/params")))
            .header("X-API-Key", &key)
            .header("Idempotency-Key", "lost-answer-1")
            .json(&json!({"parameters": {"day": "2026-11-01"}}))
            .send()
    };
    // A 503 (the decision came too late on a loaded BigQuery) counts nothing and records
    // nothing under the key: the client sends it again.
    let first = until_not_503(|| async { send().await.unwrap() }).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first["replayed"], false,
        "the committed reservation is this request's"
    );
    let run_id = first["run_id"].as_str().unwrap().to_string();
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["pipeline_id"], "test/params");
    let again: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (again["run_id"].as_str(), again["replayed"].as_bool()),
        (Some(run_id.as_str()), Some(true))
    );
    app.slots_free(&slug).await;
    assert_eq!(app.quota(&slug).await["runs_today"], 1);
    assert_eq!(proxy.query_calls().iter().filter(|c| c.1 == 503).count(), 1);
}

#[tokio::test]
async fn a_step_job_whose_answer_is_lost_is_attached_to_not_run_twice() {
    let (proxy, app, slug, key) = behind_proxy("once-co", |vars| {
        vars.insert("PIPELINES_DIR".into(), repo_path("pipelines"));
    })
    .await;
    let day = json!({"parameters": {"day": "2026-11-01"}});
    let run = |pipeline: &'static str| {
        let (app, slug, key, day) = (&app, &slug, &key, &day);
        async move {
            let r = app
                .key_post(
                    &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
                    key,
                    day,
                )
                .await;
            assert_eq!(r.status(), 202);
            let id = r.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string();
            let done = app.wait_until_ended(slug, key, &id).await;
            assert_eq!(done["status"], "SUCCEEDED", "{pipeline}: {done}");
            app.slots_free(slug).await;
            id
        }
    };
    run("samples/usage_seed").await;
    // The rollup's MERGE job runs, but the answer to its jobs.insert is lost: the retry finds
    // the job by its id (jobs.get) and waits for it instead of starting a second one.
    proxy.clear();
    proxy.inject([lost_answer("/jobs", Some("usage_daily` AS t"))]);
    let rollup = run("genai/usage_rollup").await;
    let inserts = proxy.statuses("/jobs");
    // create_daily, the rollup (its answer lost) and the assert: one jobs.insert each.
    assert_eq!(inserts.len(), 3, "{inserts:?}");
    assert_eq!(
        inserts.iter().filter(|s| **s == 503).count(),
        1,
        "the fault was hit"
    );
    let dataset = slug.replace('-', "_");
    let daily = Emulator::new()
        .sql(&format!(
            "SELECT COUNT(*) FROM `{dataset}.usage_daily` WHERE day = DATE '2026-11-01' LIMIT 1"
        ))
        .await;
    assert_eq!(
        daily["rows"][0]["f"][0]["v"], "4",
        "rows landed once: {daily}"
    );
    // One attempt: the lost answer was not a failed attempt.
    let steps: Value = app
        .key_get(
            &format!("/api/v1/pipelines/{slug}/runs/{rollup}/steps"),
            &key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(steps["steps"][0]["attempt"], 1, "{steps}");
    assert_eq!(steps["steps"][0]["status"], "SUCCEEDED", "{steps}");
}

#[tokio::test]
async fn a_step_attempt_that_times_out_cancels_its_job_by_its_own_id() {
    let (proxy, app, slug, key) = behind_proxy("cancel-job-co", |_| {}).await;
    // The step's job is slow to start (held 4 s); its 1 s timeout ends the attempt.
    proxy.hold_next("/jobs", std::time::Duration::from_secs(4));
    let run_id = started(
        &app,
        &slug,
        &key,
        "test/slow_check",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "FAILED");
    assert_eq!(done["error_class"], "timeout");
    let job = format!("quarry_{run_id}_check_a1_0");
    // The cancel is sent when the attempt is dropped and recorded once the emulator answers it:
    // under the whole suite's load that answer may take seconds (a CI run waited 5 s in vain).
    let cancels = crate::verbs::eventually(
        "the timed-out attempt's job is cancelled",
        std::time::Duration::from_secs(60),
        || async {
            let cancels: Vec<String> = proxy
                .query_calls()
                .into_iter()
                .filter(|(path, _)| path.ends_with("/cancel"))
                .map(|(path, _)| path)
                .collect();
            if cancels.is_empty() {
                Err("no cancel yet".to_string())
            } else {
                Ok(cancels)
            }
        },
    )
    .await;
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert!(
        cancels[0].ends_with(&format!("/jobs/{job}/cancel")),
        "{cancels:?}"
    );
    app.slots_free(&slug).await;
}

#[tokio::test]
async fn a_provider_page_over_8_mib_fails_the_step_without_being_read_whole() {
    let (app, double) = app_with_double().await;
    let slug = unique_slug("big-page-co");
    let key = app.org_with_key(&slug).await;
    connect_usage_api(&app, &slug, &key, "good-big-token").await;
    *double.state.padding_bytes.lock().unwrap() = 8 * 1024 * 1024 + 1;
    let run_id = started(
        &app,
        &slug,
        &key,
        "test/extract",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error_class"], "provider");
    assert_eq!(done["error_summary"], "provider page larger than 8 MiB");
    app.slots_free(&slug).await;
}

#[tokio::test]
async fn a_hanging_provider_times_out_its_step_without_touching_other_runs() {
    let (app, double) = app_with_double().await;
    let slow = unique_slug("slow-co");
    let slow_key = app.org_with_key(&slow).await;
    let other = unique_slug("fine-co");
    let other_key = app.org_with_key(&other).await;
    connect_usage_api(&app, &slow, &slow_key, "good-slow-token").await;
    *double.state.hang_secs.lock().unwrap() = 10;

    let hanging_id = started(&app, &slow, &slow_key, "test/extract_slow", json!({})).await;
    let fine_id = started(
        &app,
        &other,
        &other_key,
        "test/params",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    let fine_run = app.wait_until_ended(&other, &other_key, &fine_id).await;
    assert_eq!(fine_run["status"], "SUCCEEDED");
    assert!(
        fine_run["duration_ms"].as_i64().unwrap() < 2000,
        "not held up by the hanging provider"
    );

    let hung = app.wait_until_ended(&slow, &slow_key, &hanging_id).await;
    assert_eq!(hung["status"], "FAILED");
    assert_eq!(hung["error_class"], "timeout");
    app.slots_free(&slow).await;
    let r = app
        .key_get(
            &format!("/api/v1/pipelines/{slow}/runs/{hanging_id}"),
            &other_key,
        )
        .await;
    assert_error(r, 403, "Cannot access another organization").await;
}

#[tokio::test]
async fn a_kms_outage_during_a_step_fails_the_run_cleanly_and_frees_its_slot() {
    let kms = crate::kms_double::start_double().await;
    let double = ProviderDouble::start().await;
    let urls = double.base_urls();
    let kms_host = kms.addr.to_string();
    let app = spawn_app_with(|vars| {
        vars.insert("PROVIDER_BASE_URLS".into(), urls);
        vars.remove("LOCAL_KMS_KEY");
        vars.insert("KMS_KEY_NAME".into(), crate::kms_double::KEY_NAME.into());
        vars.insert("KMS_EMULATOR_HOST".into(), kms_host);
        vars.insert("KMS_TIMEOUT_SECS".into(), "2".into());
    })
    .await;
    app.bootstrap().await;
    let slug = unique_slug("kms-down");
    let key = app.org_with_key(&slug).await; // sealed through the double
    connect_usage_api(&app, &slug, &key, "good-kms-token").await;
    kms.state
        .faults
        .decrypt_unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let before = double.seen().len();
    let run_id = started(
        &app,
        &slug,
        &key,
        "test/extract",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    let run = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["error_class"], "kms");
    assert_eq!(run["error_summary"], "KMS unavailable");
    assert!(
        double.seen()[before..].is_empty(),
        "nothing reached the provider"
    );
    app.slots_free(&slug).await;
}

#[tokio::test]
async fn a_step_job_inserted_again_after_a_lost_answer_and_a_refused_lookup_runs_once() {
    let (proxy, app, slug, key) = behind_proxy("exactly-once-co", |vars| {
        vars.insert("PIPELINES_DIR".into(), fixture("exactly_once/pipelines"));
        vars.insert("PIPELINE_SQL_DIR".into(), fixture("exactly_once/sql"));
    })
    .await;
    proxy.clear();
    // The INSERT job takes effect but its answer is lost, and the jobs.get that would find it is
    // refused: the retry sends jobs.insert again with the same job id. BigQuery answers 409
    // Already Exists (so does our model of it) and the step attaches to the first job; the
    // emulator alone would run it a second time.
    // (The lookup is named by the append job's id: every finished job is also read once with
    // jobs.get for its statistics, so the create step's read comes first.)
    proxy.inject([
        lost_answer("/jobs", Some("appends` (note)")),
        refused("_append_a1_0", None),
    ]);
    let run_id = started(&app, &slug, &key, "test/append", json!({})).await;
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let inserts = proxy.statuses("/jobs");
    assert_eq!(
        inserts,
        [200, 503, 409],
        "create, append (lost), append again"
    );
    let dataset = slug.replace('-', "_");
    let rows = Emulator::new()
        .sql(&format!("SELECT COUNT(*) FROM `{dataset}.appends` LIMIT 1"))
        .await;
    assert_eq!(
        rows["rows"][0]["f"][0]["v"], "1",
        "the job ran once: {rows}"
    );
}
