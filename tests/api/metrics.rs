use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app_with, unique_slug};

#[tokio::test]
async fn metrics_cover_http_bigquery_runs_quotas_auth_and_the_reaper() {
    let app = spawn_app_with(|_| {}).await;
    app.bootstrap().await;
    let slug = unique_slug("metrics-co");
    let key = app.org_with_key(&slug).await;
    for _ in 0..2 {
        assert_eq!(app.key_get("/api/v1/whoami", &key).await.status(), 200);
    }
    let run = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/sleep"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(run.status(), 202);
    let refused = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/sleep"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(refused.status(), 429, "STARTER runs one at a time");
    let mut text = String::new();
    for _ in 0..100 {
        text = app.metrics_text().await;
        // The run is counted as it ends, then leaves the active set.
        if text.contains("quarry_runs_total{pipeline=\"test/sleep\",status=\"SUCCEEDED\"} 1")
            && text.contains("quarry_runs_active 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for needle in [
        "quarry_http_requests_total{method=\"GET\",route=\"/api/v1/whoami\",status=\"200\"} 2",
        "quarry_http_request_duration_seconds_bucket{route=\"/api/v1/whoami\"",
        "quarry_bigquery_requests_total{kind=\"dml\",outcome=\"ok\"}",
        "quarry_bigquery_requests_total{kind=\"insert_all\",outcome=\"ok\"}",
        "quarry_bigquery_retries_total 0",
        "quarry_runs_total{pipeline=\"test/sleep\",status=\"SUCCEEDED\"} 1",
        "quarry_runs_active 0",
        "quarry_quota_rejections_total{reason=\"concurrent\"} 1",
        "quarry_auth_cache_total{result=\"hit\"}",
        "quarry_auth_cache_total{result=\"miss\"}",
        "quarry_reaper_releases_total 0",
        "quarry_admission_operations_total{kind=\"reserve\"} 2",
        "quarry_admission_batches_total ",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(!text.contains(&key));
    assert!(!text.contains(&app.root_key));
    assert!(!text.contains(&slug), "no org label unless enabled");
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let app = spawn_app_with(|_| {}).await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let r = app
            .client
            .request(method, app.url(&format!("/no/such/path/{i}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = app.metrics_text().await;
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(!text.contains("/no/such/path"), "a raw path became a label");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("quarry_http_requests_total{") && l.contains("method=\"OTHER\""))
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(series[0].contains("route=\"unmatched\""), "{}", series[0]);
    assert!(series[0].ends_with(" 40"), "{}", series[0]);
}
