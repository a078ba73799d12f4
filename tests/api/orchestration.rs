//! Orchestration for tenants: re-runs from failure (the queue, schedules and backfills follow).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app, unique_slug};
use crate::pipelines::{finished, steps};

async fn org(app: &TestApp) -> (String, String) {
    app.bootstrap().await;
    let slug = unique_slug("orch-co");
    let key = app.org_with_key(&slug).await;
    (slug, key)
}

async fn start(app: &TestApp, slug: &str, key: &str, pipeline: &str, body: Value) -> Value {
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
            key,
            &body,
        )
        .await;
    assert_eq!(r.status(), 202, "{pipeline}");
    r.json().await.unwrap()
}

async fn rerun(
    app: &TestApp,
    slug: &str,
    key: &str,
    run_id: &str,
    body: Value,
) -> reqwest::Response {
    app.key_post(
        &format!("/api/v1/pipelines/{slug}/runs/{run_id}/rerun"),
        key,
        &body,
    )
    .await
}

#[tokio::test]
async fn a_rerun_skips_the_steps_that_succeeded_and_links_to_the_original() {
    let app = spawn_app().await;
    let (slug, key) = org(&app).await;
    let first = start(
        &app,
        &slug,
        &key,
        "test/rerun",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    let first_id = first["run_id"].as_str().unwrap().to_string();
    let failed = finished(&app, &slug, &key, &first_id).await;
    assert_eq!(failed["status"], "FAILED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        steps(&app, &slug, &key, &first_id).await,
        [
            ("a".to_string(), 1, "SUCCEEDED".to_string()),
            ("b".to_string(), 1, "FAILED".to_string()),
            ("c".to_string(), 0, "SKIPPED".to_string()),
        ]
    );

    let r = rerun(&app, &slug, &key, &first_id, json!({})).await;
    assert_eq!(r.status(), 202);
    let second: Value = r.json().await.unwrap();
    let second_id = second["run_id"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id);
    let done = finished(&app, &slug, &key, &second_id).await;
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["rerun_of"], first_id.as_str());
    assert_eq!(done["trigger"], "rerun");
    assert_eq!(
        done["parameters"],
        json!({"day": "2026-11-01"}),
        "the original's parameters"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = steps(&app, &slug, &key, &second_id).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("a".to_string(), 0, "REUSED".to_string()),
            ("b".to_string(), 1, "SUCCEEDED".to_string()),
            ("c".to_string(), 1, "SUCCEEDED".to_string()),
        ],
        "a is not run again"
    );

    // A succeeded run is not re-run; an unknown one is 404.
    let r = rerun(&app, &slug, &key, &second_id, json!({})).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Only a FAILED, CANCELLED, TIMED_OUT or ORPHANED run can be re-run"
    );
    assert_eq!(body["error"]["run_status"], "SUCCEEDED");
    let unknown = uuid::Uuid::new_v4();
    assert_error(
        rerun(&app, &slug, &key, &unknown.to_string(), json!({})).await,
        404,
        "Resource not found",
    )
    .await;
}

#[tokio::test]
async fn a_rerun_takes_new_parameters_when_given_and_validates_them() {
    let app = spawn_app().await;
    let (slug, key) = org(&app).await;
    let first = start(
        &app,
        &slug,
        &key,
        "test/rerun",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    let first_id = first["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        finished(&app, &slug, &key, &first_id).await["status"],
        "FAILED"
    );

    let r = rerun(
        &app,
        &slug,
        &key,
        &first_id,
        json!({"parameters": {"day": "yesterday"}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["parameter"], "day");

    let r = rerun(
        &app,
        &slug,
        &key,
        &first_id,
        json!({"parameters": {"day": "2026-11-02"}}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = finished(&app, &slug, &key, &id).await;
    assert_eq!(done["parameters"], json!({"day": "2026-11-02"}));
    assert_eq!(done["status"], "SUCCEEDED");
}
