use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Emulator, TestApp, assert_error, captured_logs, spawn_app_with, unique_slug};
use crate::provider_double::{ITEMS, ProviderDouble};

/// A bootstrapped app whose providers all point at a fresh provider double.
pub(crate) async fn app_with_double() -> (TestApp, ProviderDouble) {
    let double = ProviderDouble::start().await;
    let urls = double.base_urls();
    let app = spawn_app_with(|vars| {
        vars.insert("PROVIDER_BASE_URLS".into(), urls);
    })
    .await;
    app.bootstrap().await;
    (app, double)
}

async fn org(app: &TestApp) -> (String, String) {
    let slug = unique_slug("int-co");
    let key = app.org_with_key(&slug).await;
    (slug, key)
}

async fn setup(
    app: &TestApp,
    slug: &str,
    key: &str,
    provider: &str,
    credential: &str,
) -> reqwest::Response {
    app.key_post(
        &format!("/api/v1/integrations/{slug}/{provider}/setup"),
        key,
        &json!({"credential": credential, "credential_name": "prod key", "metadata": {"team": "ml"}}),
    )
    .await
}

#[tokio::test]
async fn two_setups_racing_for_one_provider_leave_exactly_one_active_credential() {
    let (app, _double) = app_with_double().await;
    let (slug, key) = org(&app).await;
    let meta = &app.meta_dataset;
    for round in 0..3 {
        let (a, b) = tokio::join!(
            setup(&app, &slug, &key, "openai", "sk-good-first-0123456789abcd"),
            setup(&app, &slug, &key, "openai", "sk-good-second-0123456789abc"),
        );
        // Each answers with a credential; the one left active is the newer of the two.
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
        let active = Emulator::new()
            .sql(&format!(
                "SELECT COUNT(*) FROM `{meta}.org_integration_credentials` \
                 WHERE org_slug = '{slug}' AND provider = 'openai' AND is_active LIMIT 1"
            ))
            .await;
        assert_eq!(
            active["rows"][0]["f"][0]["v"], "1",
            "round {round}: {active}"
        );
        let one = app
            .key_get(&format!("/api/v1/integrations/{slug}/openai"), &key)
            .await;
        assert_eq!(one.status(), 200, "round {round}");
    }
}

#[tokio::test]
async fn a_credential_is_set_up_validated_listed_and_deleted() {
    let (app, double) = app_with_double().await;
    let (slug, key) = org(&app).await;
    let secret = "sk-good-0123456789abcdefWXYZ";
    let r = setup(&app, &slug, &key, "openai", secret).await;
    assert_eq!(r.status(), 201);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["provider"], "openai");
    assert_eq!(view["validation_status"], "VALID");
    assert_eq!(view["fingerprint"], "…WXYZ");
    assert_eq!(view["credential_name"], "prod key");
    assert_eq!(view["metadata"], json!({"team": "ml"}));
    assert_eq!(view["last_error"], Value::Null);
    let checks: Vec<_> = double
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/models")
        .collect();
    assert_eq!(checks.len(), 1);
    assert_eq!(
        checks[0].credential.as_deref(),
        Some(secret),
        "live check with the credential"
    );

    let revalidated = app
        .key_post(
            &format!("/api/v1/integrations/{slug}/openai/validate"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(revalidated.status(), 200);
    let listed: Value = app
        .key_get(&format!("/api/v1/integrations/{slug}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["integrations"].as_array().unwrap().len(), 1);
    let one = app
        .key_get(&format!("/api/v1/integrations/{slug}/openai"), &key)
        .await;
    assert_eq!(one.status(), 200);

    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/integrations/{slug}/openai")))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_error(
        app.key_get(&format!("/api/v1/integrations/{slug}/openai"), &key)
            .await,
        404,
        "Resource not found",
    )
    .await;
    let again = app
        .client
        .delete(app.url(&format!("/api/v1/integrations/{slug}/openai")))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_error(again, 404, "Resource not found").await;
    // The row was deactivated, not erased.
    let meta = &app.meta_dataset;
    let rows = Emulator::new()
        .count(&format!(
            "SELECT COUNT(*) FROM `{meta}.org_integration_credentials` WHERE org_slug = '{slug}' LIMIT 1"
        ))
        .await;
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_wrong_credential_is_invalid_with_a_sanitized_error() {
    let (app, _double) = app_with_double().await;
    let (slug, key) = org(&app).await;
    let secret = "sk-ant-bad-0123456789abcdef";
    let r = setup(&app, &slug, &key, "anthropic", secret).await;
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["validation_status"], "INVALID");
    assert_eq!(
        view["last_error"],
        "provider rejected the credential (HTTP 401)"
    );
    assert!(
        !text.contains(secret),
        "the provider's echo of the key is not passed on"
    );
}

#[tokio::test]
async fn malformed_or_unknown_setups_are_refused() {
    let (app, double) = app_with_double().await;
    let (slug, key) = org(&app).await;
    let r = setup(&app, &slug, &key, "openai", "not-an-openai-key").await;
    assert_error(r, 400, "Invalid request format").await;
    let r = setup(&app, &slug, &key, "nope", "sk-good-0123456789abcdef").await;
    assert_error(r, 404, "Resource not found").await;
    let r = app
        .key_post(
            &format!("/api/v1/integrations/{slug}/usage_api/setup"),
            &key,
            &json!({"credential": "x".repeat(70 * 1024)}),
        )
        .await;
    assert_error(r, 400, "Invalid request format").await;
    let r = app
        .key_post(
            &format!("/api/v1/integrations/{slug}/usage_api/setup"),
            &key,
            &json!({"credential": "good-token-123", "extra": 1}),
        )
        .await;
    assert_error(r, 400, "Invalid request format").await;
    assert!(double.seen().is_empty(), "nothing reached the provider");
}

#[tokio::test]
async fn the_plan_bounds_how_many_providers_an_org_connects() {
    let (app, _double) = app_with_double().await;
    let (slug, key) = org(&app).await; // STARTER: 2 providers
    assert_eq!(
        setup(&app, &slug, &key, "openai", "sk-good-0123456789abcdef")
            .await
            .status(),
        201
    );
    assert_eq!(
        setup(&app, &slug, &key, "usage_api", "good-token-abc")
            .await
            .status(),
        201
    );
    // Replacing a provider's credential is not a new provider.
    assert_eq!(
        setup(&app, &slug, &key, "openai", "sk-good-0123456789abcdeg")
            .await
            .status(),
        201
    );
    let third = setup(
        &app,
        &slug,
        &key,
        "anthropic",
        "sk-ant-good-0123456789abcdef",
    )
    .await;
    assert_error(
        third,
        409,
        "Plan limit reached: plan STARTER allows 2 providers",
    )
    .await;
}

#[tokio::test]
async fn parallel_setups_never_connect_more_providers_than_the_plan_allows() {
    let (app, _double) = app_with_double().await;
    let meta = app.meta_dataset.clone();
    for round in 0..3 {
        let (slug, key) = org(&app).await; // STARTER: 2 providers
        let (a, b, c) = tokio::join!(
            setup(&app, &slug, &key, "openai", "sk-good-0123456789abcdef"),
            setup(&app, &slug, &key, "usage_api", "good-token-abc"),
            setup(
                &app,
                &slug,
                &key,
                "anthropic",
                "sk-ant-good-0123456789abcdef"
            ),
        );
        let created = [a, b, c].iter().filter(|r| r.status() == 201).count();
        let active = Emulator::new()
            .sql(&format!(
                "SELECT COUNT(DISTINCT provider) FROM `{meta}.org_integration_credentials` \
                 WHERE org_slug = '{slug}' AND is_active LIMIT 1"
            ))
            .await;
        let active: usize = active["rows"][0]["f"][0]["v"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(active <= 2, "round {round}: {active} providers active");
        assert_eq!(
            active, created,
            "round {round}: every 201 stayed, every 409 withdrew"
        );
    }
}

#[tokio::test]
async fn another_orgs_key_cannot_touch_integrations() {
    let (app, _double) = app_with_double().await;
    let (slug, _key) = org(&app).await;
    let (_other, other_key) = org(&app).await;
    let r = setup(
        &app,
        &slug,
        &other_key,
        "openai",
        "sk-good-0123456789abcdef",
    )
    .await;
    assert_error(r, 403, "Cannot access another organization").await;
    let r = app
        .key_get(&format!("/api/v1/integrations/{slug}"), &other_key)
        .await;
    assert_error(r, 403, "Cannot access another organization").await;
}

async fn run_extract(app: &TestApp, slug: &str, key: &str) -> Value {
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/extract"),
            key,
            &json!({"parameters": {"day": "2026-11-01"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..300 {
        let run: Value = app
            .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), key)
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        if let Some(s) = run["status"].as_str() {
            if s != "PENDING" && s != "RUNNING" {
                return run;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("extract run did not finish");
}

#[tokio::test]
async fn each_orgs_run_sends_its_own_credential_and_lands_every_row_once() {
    let (app, double) = app_with_double().await;
    let (a, key_a) = org(&app).await;
    let (b, key_b) = org(&app).await;
    let secret_a = "good-token-of-org-a-123";
    let secret_b = "good-token-of-org-b-456";
    assert_eq!(
        setup(&app, &a, &key_a, "usage_api", secret_a)
            .await
            .status(),
        201
    );
    assert_eq!(
        setup(&app, &b, &key_b, "usage_api", secret_b)
            .await
            .status(),
        201
    );
    let before = double.seen().len();

    let run_a = run_extract(&app, &a, &key_a).await;
    assert_eq!(run_a["status"], "SUCCEEDED", "{run_a}");
    let seen: Vec<_> = double.seen()[before..].to_vec();
    let usage: Vec<_> = seen.iter().filter(|s| s.path == "/v1/usage").collect();
    assert_eq!(usage.len(), 3, "three pages");
    assert!(
        usage
            .iter()
            .all(|s| s.credential.as_deref() == Some(secret_a))
    );
    assert!(
        usage
            .iter()
            .all(|s| s.query.get("day").map(String::as_str) == Some("2026-11-01"))
    );
    assert_eq!(
        usage
            .iter()
            .map(|s| s.query.get("cursor").cloned())
            .collect::<Vec<_>>(),
        vec![None, Some("p2".to_string()), Some("p3".to_string())]
    );

    let run_b = run_extract(&app, &b, &key_b).await;
    assert_eq!(run_b["status"], "SUCCEEDED");
    let all = double.seen();
    let b_calls: Vec<_> = all[before..]
        .iter()
        .filter(|s| s.credential.as_deref() == Some(secret_b))
        .collect();
    assert_eq!(b_calls.len(), 3);
    assert!(
        all[before..]
            .iter()
            .all(|s| s.credential.as_deref() == Some(secret_a)
                || s.credential.as_deref() == Some(secret_b))
    );

    let emulator = Emulator::new();
    for org in [&a, &b] {
        let dataset = org.replace('-', "_");
        let total = emulator
            .count(&format!(
                "SELECT COUNT(*) FROM `{dataset}.provider_usage` LIMIT 1"
            ))
            .await;
        let distinct = emulator
            .count(&format!(
                "SELECT COUNT(DISTINCT _item_id) FROM `{dataset}.provider_usage` LIMIT 1"
            ))
            .await;
        assert_eq!((total, distinct), (ITEMS as i64, ITEMS as i64), "{org}");
    }
    let logs = captured_logs();
    for secret in [secret_a, secret_b] {
        assert!(!logs.contains(secret), "a credential reached the logs");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_retried() {
    let (app, double) = app_with_double().await;
    let (slug, key) = org(&app).await;
    assert_eq!(
        setup(&app, &slug, &key, "usage_api", "good-token-429")
            .await
            .status(),
        201
    );
    *double.state.throttle.lock().unwrap() = 1;
    let before = double.seen().len();
    let run = run_extract(&app, &slug, &key).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    let usage: Vec<_> = double.seen()[before..]
        .iter()
        .filter(|s| s.path == "/v1/usage")
        .cloned()
        .collect();
    assert_eq!(usage.len(), 4, "one refused, then three pages");
    let waited = usage[1].at - usage[0].at;
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
}

#[tokio::test]
async fn a_ciphertext_swapped_between_orgs_fails_to_decrypt_and_the_run_fails_cleanly() {
    let (app, double) = app_with_double().await;
    let (a, key_a) = org(&app).await;
    let (b, key_b) = org(&app).await;
    let secret_b = "good-token-of-b-swapped";
    assert_eq!(
        setup(&app, &a, &key_a, "usage_api", "good-token-of-a")
            .await
            .status(),
        201
    );
    assert_eq!(
        setup(&app, &b, &key_b, "usage_api", secret_b)
            .await
            .status(),
        201
    );
    let meta = &app.meta_dataset;
    Emulator::new()
        .sql(&format!(
            "UPDATE `{meta}.org_integration_credentials` SET encrypted_credential = \
             (SELECT encrypted_credential FROM `{meta}.org_integration_credentials` \
              WHERE org_slug = '{b}' AND is_active LIMIT 1) \
             WHERE org_slug = '{a}' AND is_active"
        ))
        .await;
    let before = double.seen().len();
    let run = run_extract(&app, &a, &key_a).await;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["error_class"], "credential");
    assert!(
        double.seen()[before..].is_empty(),
        "nothing was sent with anyone's credential"
    );
    let quota: Value = app
        .root_get(&format!("/api/v1/organizations/{a}/quota"))
        .await
        .json()
        .await
        .unwrap();
    for _ in 0..50 {
        let q: Value = app
            .root_get(&format!("/api/v1/organizations/{a}/quota"))
            .await
            .json()
            .await
            .unwrap();
        if q["active_run_ids"] == json!([]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slot not released: {quota}");
}

#[tokio::test]
async fn the_sample_extract_pipeline_extracts_and_rolls_up() {
    let double = ProviderDouble::start().await;
    let urls = double.base_urls();
    let app = spawn_app_with(|vars| {
        vars.insert("PROVIDER_BASE_URLS".into(), urls);
        vars.insert(
            "PIPELINES_DIR".into(),
            crate::helpers::repo_path("pipelines"),
        );
    })
    .await;
    app.bootstrap().await;
    let (slug, key) = org(&app).await;
    assert_eq!(
        setup(&app, &slug, &key, "usage_api", "good-sample-token")
            .await
            .status(),
        201
    );
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/genai/provider_usage_extract"),
            &key,
            &json!({"parameters": {"day": "2026-11-01"}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut status = String::new();
    for _ in 0..300 {
        let run: Value = app
            .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), &key)
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        status = run["status"].as_str().unwrap_or("").to_string();
        if status != "PENDING" && status != "RUNNING" && !status.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "SUCCEEDED");
    let dataset = slug.replace('-', "_");
    let rows = Emulator::new()
        .sql(&format!(
            "SELECT model, items FROM `{dataset}.provider_usage_by_model` ORDER BY model LIMIT 10"
        ))
        .await;
    let got: Vec<(String, String)> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["f"][0]["v"].as_str().unwrap().to_string(),
                r["f"][1]["v"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("m0".to_string(), "400".to_string()),
            ("m1".to_string(), "400".to_string()),
            ("m2".to_string(), "400".to_string())
        ]
    );
}

fn service_account_key(private_pem: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "quarry-test",
        "private_key_id": "0123",
        "private_key": private_pem,
        "client_email": "quarry-test@example.iam.gserviceaccount.com",
        "token_uri": "http://169.254.169.254/never-used",
    })
    .to_string()
}

#[tokio::test]
async fn a_service_account_key_is_exchanged_for_a_token_at_the_providers_token_url() {
    let (app, double) = app_with_double().await;
    let (slug, key) = org(&app).await;
    let pem = std::fs::read_to_string(crate::helpers::fixture("keys/sa_test_private.pem")).unwrap();
    let credential = service_account_key(&pem);
    let r = setup(&app, &slug, &key, "gcp_bigquery", &credential).await;
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["validation_status"], "VALID", "{view}");
    assert_eq!(
        view["fingerprint"],
        "quarry-test@example.iam.gserviceaccount.com"
    );
    assert!(!text.contains("PRIVATE KEY"));
    let seen = double.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/token", "/bigquery/v2/projects"],
        "the key's own token_uri is ignored"
    );
    assert_eq!(seen[1].credential.as_deref(), Some("good-sa-access-token"));
    assert!(!captured_logs().contains("BEGIN PRIVATE KEY"));

    // A well-formed key the token endpoint does not trust is INVALID with a sanitized reason.
    let untrusted =
        std::fs::read_to_string(crate::helpers::fixture("keys/sa_untrusted_private.pem")).unwrap();
    let r = setup(
        &app,
        &slug,
        &key,
        "gcp_bigquery",
        &service_account_key(&untrusted),
    )
    .await;
    assert_eq!(r.status(), 201);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["validation_status"], "INVALID");
    assert_eq!(
        view["last_error"],
        "token endpoint refused the key (HTTP 400)"
    );
    for bad in [
        "{}",
        "not json",
        &json!({"type": "user", "client_email": "a@b", "private_key": pem}).to_string(),
    ] {
        assert_error(
            setup(&app, &slug, &key, "gcp_bigquery", bad).await,
            400,
            "Invalid request format",
        )
        .await;
    }
}
