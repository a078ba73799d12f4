use serde_json::{Value, json};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::helpers::{
    Emulator, assert_error, captured_logs, onboard_body, spawn_app, spawn_app_with, unique_slug,
};

#[tokio::test]
async fn onboarding_creates_the_org_its_dataset_quota_and_a_working_key() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = format!("acme-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let response = app.onboard_with(&onboard_body(&slug, "PROFESSIONAL")).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["org_slug"], slug.as_str());
    assert_eq!(body["plan"], "PROFESSIONAL");
    assert_eq!(body["status"], "ACTIVE");
    assert_eq!(body["resumed"], false);
    let dataset = slug.replace('-', "_");
    assert_eq!(body["dataset_id"], dataset.as_str());
    assert_eq!(
        body["quota"],
        json!({"daily_limit": 25, "monthly_limit": 750, "concurrent_limit": 2})
    );
    let key = body["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("qk_") && key.len() == 52);
    assert_eq!(body["scopes"].as_array().unwrap().len(), 10);

    assert!(Emulator::new().dataset_exists(&dataset).await);

    // The key works, and no later response carries it.
    let mut later = String::new();
    for path in [
        format!("/api/v1/organizations/{slug}"),
        format!("/api/v1/organizations/{slug}/quota"),
        format!("/api/v1/organizations/{slug}/api-keys"),
        format!("/api/v1/organizations/{slug}/audit-logs"),
    ] {
        let response = app.key_get(&path, &key).await;
        assert_eq!(response.status(), 200, "{path}");
        later.push_str(&response.text().await.unwrap());
    }
    let root_view = app.root_get(&format!("/api/v1/organizations/{slug}")).await;
    let root_view: Value = root_view.json().await.unwrap();
    assert_eq!(root_view["quota"]["daily_limit"], 25);
    assert_eq!(root_view["quota"]["concurrent_limit"], 2);
    assert_eq!(root_view["quota"]["active_run_ids"], json!([]));
    later.push_str(&root_view.to_string());
    assert!(!later.contains(&key), "the key reappeared in a response");
    assert!(!later.contains(&key[3..20]));
    assert!(!captured_logs().contains(&key), "the key reached the logs");
}

#[tokio::test]
async fn a_dry_run_checks_everything_and_writes_nothing() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("dry-co");
    let before = app.warehouse.counters().snapshot();
    let response = app
        .client
        .post(app.url("/api/v1/organizations/dryrun"))
        .header("X-CA-Root-Key", &app.root_key)
        .json(&onboard_body(&slug, "SCALE"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["ready"], true, "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "meta_tables_present",
            "slug_available",
            "dataset_available",
            "plan_known"
        ]
    );
    let delta = app.warehouse.counters().snapshot().since(&before);
    assert_eq!(
        (delta.dml, delta.insert_all),
        (0, 0),
        "nothing written: {delta:?}"
    );
    assert!(
        !Emulator::new()
            .dataset_exists(&slug.replace('-', "_"))
            .await
    );
    let response = app.root_get(&format!("/api/v1/organizations/{slug}")).await;
    assert_error(response, 404, "Resource not found").await;
}

#[tokio::test]
async fn a_dry_run_reports_a_taken_slug_and_dataset() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let taken = unique_slug("taken-co");
    app.onboard(&taken).await;
    for slug in [taken.clone(), taken.replace('-', "_")] {
        let report: Value = app
            .client
            .post(app.url("/api/v1/organizations/dryrun"))
            .header("X-CA-Root-Key", &app.root_key)
            .json(&onboard_body(&slug, "STARTER"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report["ready"], false, "{slug}");
        assert_eq!(report["checks"][2]["ok"], false, "dataset check for {slug}");
    }
}

#[tokio::test]
async fn a_dry_run_before_bootstrap_is_not_ready() {
    let app = spawn_app().await;
    let report: Value = app
        .client
        .post(app.url("/api/v1/organizations/dryrun"))
        .header("X-CA-Root-Key", &app.root_key)
        .json(&onboard_body("early-co", "STARTER"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["ready"], false);
    assert_eq!(report["checks"][0]["ok"], false);
}

#[tokio::test]
async fn onboarding_resumes_after_a_failure_midway() {
    let proxy = FaultProxy::start().await;
    let app = spawn_app_with(|vars| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), proxy.host.clone());
    })
    .await;
    app.bootstrap().await;
    // The quota row's INSERT fails once, after the profile and dataset were created.
    proxy.inject([Fault {
        suffix: "/queries",
        body_contains: Some("org_quota_state"),
        after_forwarding: false,
        status: 400,
        body: json!({"error": {"code": 400, "message": "injected", "status": "INVALID_ARGUMENT",
                     "errors": [{"reason": "invalid", "message": "injected"}]}}),
    }]);
    let slug = unique_slug("resume-co");
    let body = onboard_body(&slug, "STARTER");
    let failed = app.onboard_with(&body).await;
    assert_error(failed, 500, "Internal error. Check server logs.").await;

    let emulator = Emulator::new();
    let dataset = &app.meta_dataset;
    let count = |table: &str| {
        format!("SELECT COUNT(*) FROM `{dataset}.{table}` WHERE org_slug = '{slug}' LIMIT 1")
    };
    assert_eq!(emulator.count(&count("org_profiles")).await, 1);
    assert_eq!(emulator.count(&count("org_quota_state")).await, 0);
    assert_eq!(emulator.count(&count("org_api_keys")).await, 0);

    let resumed = app.onboard_with(&body).await;
    assert_eq!(resumed.status(), 201);
    let resumed: Value = resumed.json().await.unwrap();
    assert_eq!(resumed["resumed"], true);
    assert_eq!(emulator.count(&count("org_profiles")).await, 1);
    assert_eq!(emulator.count(&count("org_quota_state")).await, 1);
    assert_eq!(emulator.count(&count("org_api_keys")).await, 1);
    let key = resumed["api_key"].as_str().unwrap();
    let quota = app
        .key_get(&format!("/api/v1/organizations/{slug}/quota"), key)
        .await;
    assert_eq!(quota.status(), 200);

    // Everything is done now: a third call cannot show a key again.
    let again = app.onboard_with(&body).await;
    assert_error(again, 409, "Resource already exists").await;
    assert_eq!(emulator.count(&count("org_api_keys")).await, 1);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_original_result_without_the_key() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("idem-co");
    let body = onboard_body(&slug, "STARTER");
    let send = |b: Value, k: &'static str| {
        app.client
            .post(app.url("/api/v1/organizations/onboard"))
            .header("X-CA-Root-Key", &app.root_key)
            .header("Idempotency-Key", k)
            .json(&b)
            .send()
    };
    let first = send(body.clone(), "onboard-idem-co-1").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert!(first["api_key"].is_string());

    let replay = send(body.clone(), "onboard-idem-co-1").await.unwrap();
    assert_eq!(replay.status(), 200);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["api_key"], Value::Null);
    assert_eq!(replay["api_key_already_issued"], true);
    assert_eq!(replay["api_key_id"], first["api_key_id"]);
    assert_eq!(replay["org_slug"], slug.as_str());

    let mut other = body.clone();
    other["company_name"] = json!("Someone Else");
    let reused = send(other, "onboard-idem-co-1").await.unwrap();
    assert_error(
        reused,
        422,
        "Idempotency-Key was already used for a different request",
    )
    .await;

    let dataset = &app.meta_dataset;
    let keys = Emulator::new()
        .count(&format!(
            "SELECT COUNT(*) FROM `{dataset}.org_api_keys` WHERE org_slug = '{slug}' LIMIT 1"
        ))
        .await;
    assert_eq!(keys, 1);
}

#[tokio::test]
async fn a_dataset_name_collision_is_409() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("twin-co");
    app.onboard(&slug).await;
    let response = app
        .onboard_with(&onboard_body(&slug.replace('-', "_"), "STARTER"))
        .await;
    assert_error(response, 409, "Resource already exists").await;
    // Nor may an org take the meta dataset's name.
    let meta = app.meta_dataset.clone();
    let response = app.onboard_with(&onboard_body(&meta, "STARTER")).await;
    assert_error(response, 409, "Resource already exists").await;
}

#[tokio::test]
async fn the_same_slug_with_other_details_is_409() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("dup-co");
    app.onboard(&slug).await;
    let mut body = onboard_body(&slug, "STARTER");
    body["admin_email"] = json!("other@dup.example.com");
    assert_error(
        app.onboard_with(&body).await,
        409,
        "Resource already exists",
    )
    .await;
}

#[tokio::test]
async fn malformed_onboarding_requests_are_400() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let fine = unique_slug("fine-co");
    let mut cases = vec![];
    for slug in [
        "ab",
        "Acme",
        "-acme",
        "acme-",
        "../etc",
        "acme;drop",
        "a b c",
        &"a".repeat(65),
    ] {
        cases.push(onboard_body(slug, "STARTER"));
    }
    let mut unknown_field = onboard_body(&fine, "STARTER");
    unknown_field["is_admin"] = json!(true);
    cases.push(unknown_field);
    cases.push(onboard_body(&fine, "PLATINUM"));
    cases.push(onboard_body(&fine, "ENTERPRISE"));
    let mut with_quota = onboard_body(&fine, "STARTER");
    with_quota["quota"] = json!({"daily_limit": 1, "monthly_limit": 1, "concurrent_limit": 1});
    cases.push(with_quota);
    let mut bad_email = onboard_body(&fine, "STARTER");
    bad_email["admin_email"] = json!("not-an-email");
    cases.push(bad_email);
    let mut long_name = onboard_body(&fine, "STARTER");
    long_name["company_name"] = json!("x".repeat(201));
    cases.push(long_name);
    cases.push(json!({"org_slug": &fine}));
    cases.push(json!("just a string"));
    for body in cases {
        let response = app.onboard_with(&body).await;
        assert_error(response, 400, "Invalid request format").await;
    }
    let response = app
        .client
        .post(app.url("/api/v1/organizations/onboard"))
        .header("X-CA-Root-Key", &app.root_key)
        .header("content-type", "application/json")
        .body("{\"org_slug\": ")
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "Invalid request format").await;
    let huge = json!({"org_slug": &fine, "company_name": "x".repeat(1024 * 1024 + 10),
                      "admin_email": "a@b.example.com", "plan": "STARTER"});
    assert_error(app.onboard_with(&huge).await, 413, "Payload too large").await;
    assert_error(
        app.root_get(&format!("/api/v1/organizations/{fine}")).await,
        404,
        "Resource not found",
    )
    .await;
}

#[tokio::test]
async fn enterprise_orgs_get_the_limits_an_admin_sets() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("big-co");
    let mut body = onboard_body(&slug, "ENTERPRISE");
    body["quota"] = json!({"daily_limit": 500, "monthly_limit": 10000, "concurrent_limit": 20});
    let response = app.onboard_with(&body).await;
    assert_eq!(response.status(), 201);
    let quota: Value = app
        .root_get(&format!("/api/v1/organizations/{slug}/quota"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(quota["daily_limit"], 500);
    assert_eq!(quota["concurrent_limit"], 20);
}

#[tokio::test]
async fn an_admin_changes_quota_limits() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("quota-co");
    let key = app.org_with_key(&slug).await;
    let put = |body: Value, slug: String| {
        app.client
            .put(app.url(&format!("/api/v1/organizations/{slug}/quota")))
            .header("X-CA-Root-Key", &app.root_key)
            .json(&body)
            .send()
    };
    let ok = put(
        json!({"daily_limit": 40, "monthly_limit": 900, "concurrent_limit": 3}),
        slug.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    let quota: Value = app
        .key_get(&format!("/api/v1/organizations/{slug}/quota"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &quota["daily_limit"],
            &quota["monthly_limit"],
            &quota["concurrent_limit"]
        ),
        (&json!(40), &json!(900), &json!(3))
    );
    for bad in [
        json!({"daily_limit": 0, "monthly_limit": 900, "concurrent_limit": 3}),
        json!({"daily_limit": 40, "monthly_limit": 10, "concurrent_limit": 3}),
        json!({"daily_limit": 40, "monthly_limit": 900}),
        json!({"daily_limit": 40, "monthly_limit": 900, "concurrent_limit": 3, "x": 1}),
    ] {
        let r = put(bad, slug.clone()).await.unwrap();
        assert_error(r, 400, "Invalid request format").await;
    }
    let missing = put(
        json!({"daily_limit": 4, "monthly_limit": 9, "concurrent_limit": 1}),
        unique_slug("nobody-co"),
    )
    .await
    .unwrap();
    assert_error(missing, 404, "Resource not found").await;
    // An org key cannot change its own limits.
    let response = app
        .client
        .put(app.url(&format!("/api/v1/organizations/{slug}/quota")))
        .header("X-API-Key", &key)
        .json(&json!({"daily_limit": 99, "monthly_limit": 999, "concurrent_limit": 9}))
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "Invalid or inactive API key").await;
}

#[tokio::test]
async fn orgs_are_listed_in_pages() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let base = unique_slug("page");
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("{base}-{s}"))
        .collect();
    for slug in &names {
        app.onboard(slug).await;
    }
    let first: Value = app
        .root_get("/api/v1/organizations?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let slugs = |v: &Value| -> Vec<String> {
        v["organizations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["org_slug"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(slugs(&first), names[..2].to_vec());
    let token = first["next_page_token"].as_str().unwrap();
    let second: Value = app
        .root_get(&format!("/api/v1/organizations?limit=2&page_token={token}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(slugs(&second), names[2..].to_vec());
    assert_eq!(second["next_page_token"], Value::Null);
    for bad in [
        "limit=0",
        "limit=101",
        "page_token=%27%20OR%201%3D1",
        "page_token=Li4vZXRj",
        "x=1",
    ] {
        let r = app.root_get(&format!("/api/v1/organizations?{bad}")).await;
        assert_error(r, 400, "Invalid request format").await;
    }
}

#[tokio::test]
async fn a_suspended_orgs_keys_stop_working_at_once() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("susp-co");
    let key = app.org_with_key(&slug).await;
    let path = &format!("/api/v1/organizations/{slug}");
    assert_eq!(app.key_get(path, &key).await.status(), 200); // cached now
    let suspended = app.root_post(&format!("{path}/suspend")).await;
    assert_eq!(suspended.status(), 200);
    let body: Value = suspended.json().await.unwrap();
    assert_eq!(body["status"], "SUSPENDED");
    assert_error(
        app.key_get(path, &key).await,
        401,
        "Invalid or inactive API key",
    )
    .await;

    let reactivated = app.root_post(&format!("{path}/reactivate")).await;
    assert_eq!(reactivated.status(), 200);
    assert_eq!(app.key_get(path, &key).await.status(), 200);
    assert_error(
        app.root_post("/api/v1/organizations/ghost-co/suspend")
            .await,
        404,
        "Resource not found",
    )
    .await;
}

#[tokio::test]
async fn the_audit_log_records_admin_actions_newest_first_and_pages() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("audit-co");
    let key = app.org_with_key(&slug).await;
    let path = format!("/api/v1/organizations/{slug}");
    app.root_post(&format!("{path}/suspend")).await;
    app.root_post(&format!("{path}/reactivate")).await;
    let log: Value = app
        .key_get(&format!("{path}/audit-logs"), &key)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = log["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["org.reactivate", "org.suspend", "org.onboard"]
    );
    assert!(!log.to_string().contains(&key));

    let page1: Value = app
        .key_get(&format!("{path}/audit-logs?limit=2"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page1["audit_logs"].as_array().unwrap().len(), 2);
    let token = page1["next_page_token"].as_str().unwrap();
    let page2: Value = app
        .key_get(
            &format!("{path}/audit-logs?limit=2&page_token={token}"),
            &key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["audit_logs"][0]["action"], "org.onboard");
    assert_eq!(page2["next_page_token"], Value::Null);
    let tampered = app
        .key_get(&format!("{path}/audit-logs?page_token=eyJ0IjoxfQ"), &key)
        .await;
    assert_error(tampered, 400, "Invalid request format").await;
}

#[tokio::test]
async fn malformed_json_on_a_real_route_gets_the_json_400() {
    let app = spawn_app().await;
    for (body, content_type) in [
        ("{not json", "application/json"),
        ("{\"org_slug\": 5}", "application/json"),
        ("{\"org_slug\": \"a\"}", "text/plain"),
        ("", "application/json"),
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/organizations/dryrun"))
            .header("X-CA-Root-Key", &app.root_key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "Invalid request format").await;
    }
}
