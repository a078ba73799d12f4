//! An injection corpus sent to every path segment of every protected route and to the
//! identifier fields of every body: only 400 or 404 come back, and no meta table changes.

use quarry::routes::{Access, all as routes};
use quarry::schema::meta_tables;
use serde_json::{Value, json};

use crate::helpers::{Emulator, TestApp, spawn_app, unique_slug};

fn corpus() -> Vec<String> {
    vec![
        "'".into(),
        "\"".into(),
        "`".into(),
        "x'; DROP TABLE org_profiles; --".into(),
        "a` UNION SELECT key_hash FROM org_api_keys --".into(),
        "@org_slug".into(),
        "${META}".into(),
        "{}".into(),
        "ünïcødé-😀".into(),
        "../../etc/passwd".into(),
        "..".into(),
        "a\u{0}b".into(),
        "x".repeat(10 * 1024),
    ]
}

/// Percent-encodes everything but unreserved characters, so the segment reaches the router.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn counts(app: &TestApp) -> Vec<i64> {
    let emulator = Emulator::new();
    let mut out = Vec::new();
    for spec in meta_tables() {
        out.push(
            emulator
                .count(&format!(
                    "SELECT COUNT(*) FROM `{}.{}` LIMIT 1",
                    app.meta_dataset, spec.name
                ))
                .await,
        );
    }
    out
}

fn request(app: &TestApp, method: &str, path: &str) -> reqwest::RequestBuilder {
    let url = app.url(path);
    let b = match method {
        "get" => app.client.get(url),
        "post" => app.client.post(url),
        "put" => app.client.put(url),
        "delete" => app.client.delete(url),
        other => panic!("{other}"),
    };
    b.header("X-CA-Root-Key", &app.root_key)
}

#[tokio::test]
async fn hostile_path_segments_get_only_400_or_404_and_change_nothing() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("hostile-co");
    app.onboard(&slug).await;
    let before = counts(&app).await;
    let mut sent = 0;
    for route in routes().filter(|r| r.access != Access::Public) {
        let params: Vec<&str> = route
            .path
            .split('/')
            .filter(|s| s.starts_with('{'))
            .collect();
        for param in &params {
            for value in corpus() {
                let mut path = route.path.to_string();
                for other in &params {
                    let filler = match *other {
                        "{org_slug}" => slug.clone(),
                        "{pipeline_id:.*}" => "test/params".to_string(),
                        "{provider}" => "openai".to_string(),
                        _ => uuid::Uuid::new_v4().to_string(),
                    };
                    let v = if other == param {
                        encode(&value)
                    } else {
                        filler
                    };
                    path = path.replace(other, &v);
                }
                let mut r = request(&app, route.method, &path);
                if matches!(route.method, "post" | "put") {
                    r = r.json(&json!({}));
                }
                let r = r.send().await.unwrap();
                let status = r.status().as_u16();
                assert!(
                    status == 400 || status == 404,
                    "{} {} with {param}={:?}: {status}",
                    route.method,
                    route.path,
                    value.chars().take(40).collect::<String>()
                );
                sent += 1;
            }
        }
    }
    assert!(sent > 200, "{sent}");
    assert_eq!(counts(&app).await, before, "no meta table changed");
}

#[tokio::test]
async fn hostile_identifier_fields_in_bodies_and_queries_get_400_or_404() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("hostile-body");
    let key = app.org_with_key(&slug).await;
    let before = counts(&app).await;
    for value in corpus() {
        let v = Value::String(value.clone());
        let cases: Vec<(&str, String, Value)> = vec![
            (
                "post",
                "/api/v1/organizations/onboard".into(),
                json!({"org_slug": v, "company_name": "Hostile", "admin_email": "a@hostile.example.com", "plan": "STARTER"}),
            ),
            (
                "post",
                "/api/v1/organizations/dryrun".into(),
                json!({"org_slug": "fine-co", "company_name": "Hostile", "admin_email": "a@hostile.example.com", "plan": v}),
            ),
            (
                "post",
                "/api/v1/organizations/onboard".into(),
                json!({"org_slug": "fine-co", "company_name": "Hostile", "admin_email": v, "plan": "STARTER"}),
            ),
            (
                "put",
                format!("/api/v1/organizations/{slug}/quota"),
                json!({"daily_limit": v, "monthly_limit": 10, "concurrent_limit": 1}),
            ),
            (
                "post",
                format!("/api/v1/organizations/{slug}/api-keys/rotate"),
                json!({"key_id": v}),
            ),
            (
                "post",
                format!("/api/v1/organizations/{slug}/api-keys/rotate"),
                json!({"scopes": [v]}),
            ),
            (
                "post",
                format!("/api/v1/pipelines/run/{slug}/test/params"),
                json!({"parameters": {"day": v}}),
            ),
            (
                "post",
                format!("/api/v1/pipelines/run/{slug}/test/params"),
                json!({"parameters": {value.clone(): 1}}),
            ),
            (
                "post",
                format!("/api/v1/integrations/{slug}/openai/setup"),
                json!({"credential": v}),
            ),
        ];
        for (method, path, body) in cases {
            let r = request(&app, method, &path)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert!(
                status == 400 || status == 404,
                "{method} {path} {body}: {status}"
            );
        }
        for query in [
            "status",
            "pipeline_id",
            "trigger",
            "since",
            "page_token",
            "limit",
        ] {
            let r = app
                .key_get(
                    &format!("/api/v1/pipelines/{slug}/runs?{query}={}", encode(&value)),
                    &key,
                )
                .await;
            assert_eq!(r.status(), 400, "runs?{query}=");
        }
        let r = app
            .root_get(&format!(
                "/api/v1/organizations?page_token={}",
                encode(&value)
            ))
            .await;
        assert_eq!(r.status(), 400);
    }
    assert_eq!(counts(&app).await, before, "no meta table changed");
}
