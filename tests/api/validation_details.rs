//! A 400 keeps the standard message and says what is wrong: field, problem, accepted form.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

async fn details(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Invalid request format");
    body["error"]["details"].clone()
}

#[tokio::test]
async fn run_list_filters_say_which_parameter_is_wrong_and_what_is_accepted() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("details-co").await;
    let runs = format!("/api/v1/pipelines/{slug}/runs");
    let cases = [
        (
            "?status=DONE",
            json!([{"field": "status", "problem": "unknown status",
                    "accepted": "QUEUED, PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, ORPHANED (one, or several separated by commas)"}]),
        ),
        (
            "?since=2026-11-01",
            json!([{"field": "since", "problem": "not an RFC 3339 time",
                    "accepted": "e.g. 2026-11-01T00:00:00Z"}]),
        ),
        (
            "?pipeline=genai/usage_rollup",
            json!([{"field": "pipeline", "problem": "unknown field",
                    "accepted": "status, pipeline_id, trigger, since, until, limit, page_token, org_slug"}]),
        ),
        (
            "?limit=0",
            json!([{"field": "limit", "problem": "out of range", "accepted": "1 to 100"}]),
        ),
    ];
    for (query, want) in cases {
        let got = details(app.key_get(&format!("{runs}{query}"), &key).await).await;
        assert_eq!(got, want, "{query}");
    }
}

#[tokio::test]
async fn bodies_say_which_field_is_missing_unknown_or_of_the_wrong_type() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("details-co").await;
    // Parameters sent without their wrapper.
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/params"),
            &key,
            &json!({"day": "2026-11-01"}),
        )
        .await;
    assert_eq!(
        details(r).await,
        json!([{"field": "day", "problem": "unknown field", "accepted": "parameters or when_busy"}])
    );
    // A quota with one limit.
    let r = app
        .client
        .put(app.url(&format!("/api/v1/organizations/{slug}/quota")))
        .header("X-CA-Root-Key", &app.root_key)
        .json(&json!({"daily_limit": 10}))
        .send()
        .await
        .unwrap();
    let got = details(r).await;
    assert_eq!(got[0]["problem"], "required", "{got}");
    assert!(
        ["monthly_limit", "concurrent_limit"].contains(&got[0]["field"].as_str().unwrap()),
        "{got}"
    );
    // A value of the wrong type: the value itself is never echoed.
    let r = app
        .client
        .put(app.url(&format!("/api/v1/organizations/{slug}/quota")))
        .header("X-CA-Root-Key", &app.root_key)
        .json(&json!({"daily_limit": "qk_not_echoed", "monthly_limit": 1, "concurrent_limit": 1}))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("qk_not_echoed"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["details"][0]["field"], "daily_limit");
    assert_eq!(body["error"]["details"][0]["problem"], "wrong type");
}
