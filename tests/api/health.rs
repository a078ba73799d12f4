use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn live_is_200_without_any_dependency() {
    let app = spawn_app_with(|vars| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), "127.0.0.1:9".into());
    })
    .await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "live");
}

#[tokio::test]
async fn ready_is_200_when_bigquery_answers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["bigquery"], "ok");
}

#[tokio::test]
async fn ready_is_503_naming_bigquery_when_it_is_unreachable() {
    // Port 9 (discard) is closed on loopback: connections are refused.
    let app = spawn_app_with(|vars| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), "127.0.0.1:9".into());
        vars.insert("BIGQUERY_MAX_RETRIES".into(), "1".into());
    })
    .await;
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 503);
    assert_eq!(body["error"]["message"], "Service unavailable");
    assert_eq!(body["failed_dependencies"], serde_json::json!(["bigquery"]));
    assert_eq!(body["checks"]["bigquery"], "unavailable");
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(
        !body.to_string().contains("refused"),
        "no error detail leaks: {body}"
    );
}

#[tokio::test]
async fn an_admin_call_while_bigquery_is_unreachable_is_503_with_retry_after() {
    let app = spawn_app_with(|vars| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), "127.0.0.1:9".into());
        vars.insert("BIGQUERY_MAX_RETRIES".into(), "1".into());
    })
    .await;
    let response = app.root_post("/api/v1/admin/bootstrap").await;
    assert_eq!(response.headers()["retry-after"], "5");
    crate::helpers::assert_error(response, 503, "Service unavailable").await;
}

#[tokio::test]
async fn readiness_floods_cost_one_bigquery_call_per_two_seconds() {
    let app = spawn_app().await;
    let ready = || async {
        let r = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    // Ready first: in a loaded suite the shared emulator may hold the first probe past its
    // timeout (a fresh clone's run saw it).
    crate::verbs::eventually("ready", std::time::Duration::from_secs(30), || async {
        match ready().await {
            200 => Ok(()),
            other => Err(format!("HTTP {other}")),
        }
    })
    .await;
    let before = app.warehouse.counters().snapshot();
    let started = std::time::Instant::now();
    for _ in 0..50 {
        assert_eq!(ready().await, 200);
    }
    // At most one probe per 2 s window the flood spanned (it usually spans one, or none when
    // the probe above is still fresh).
    let calls = app.warehouse.counters().snapshot().since(&before).metadata;
    let windows = 1 + started.elapsed().as_secs() / 2;
    assert!(
        calls as u64 <= windows,
        "{calls} probes for 50 requests over {:?}",
        started.elapsed()
    );
}
