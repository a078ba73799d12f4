//! Every route in the app's route table, probed with missing, wrong and foreign credentials.

use quarry::domain::ApiKey;
use quarry::routes::{Access, all as routes};
use serde_json::json;

use crate::helpers::{TestApp, assert_error, spawn_app, unique_slug};

fn request(app: &TestApp, method: &str, path: &str) -> reqwest::RequestBuilder {
    let url = app.url(path);
    // GET and DELETE routes take no body (one would be refused unread with 413).
    match method {
        "get" => app.client.get(url),
        "post" => app.client.post(url).json(&json!({})),
        "put" => app.client.put(url).json(&json!({})),
        "delete" => app.client.delete(url),
        other => panic!("unexpected method {other}"),
    }
}

#[tokio::test]
async fn only_the_health_probes_are_public() {
    let public: Vec<&str> = routes()
        .filter(|r| r.access == Access::Public)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        public,
        vec![
            "/health/live",
            "/health/ready",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/docs/docs.js",
            "/docs/docs.css",
            "/ui",
            "/ui/app.js",
            "/ui/app.css"
        ]
    );
    let open_to_any_key: Vec<&str> = routes()
        .filter(|r| {
            r.access != Access::Public && r.access != Access::Root && !r.path.contains("{org_slug}")
        })
        .map(|r| r.path)
        .collect();
    assert_eq!(open_to_any_key, vec!["/api/v1/whoami", "/api/v1/pipelines"]);
}

#[tokio::test]
async fn every_protected_route_refuses_missing_wrong_and_foreign_credentials() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let org_a = unique_slug("matrix-a");
    let org_b = unique_slug("matrix-b");
    let key_a = app.org_with_key(&org_a).await;
    let key_b = app.org_with_key(&org_b).await;
    let unknown_key = ApiKey::generate();
    let mut checked = 0;
    for route in routes().filter(|r| r.access != Access::Public) {
        let path = route
            .path
            .replace("{org_slug}", &org_a)
            .replace("{key_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{run_id}", &uuid::Uuid::new_v4().to_string())
            .replace("{pipeline_id:.*}", "test/params")
            .replace("{provider}", "openai");
        let what = format!("{} {}", route.method, route.path);

        let none = request(&app, route.method, &path).send().await.unwrap();
        assert_eq!(none.status(), 401, "{what}: no key");
        assert_error(none, 401, "Invalid or inactive API key").await;

        for wrong_root in [format!("{}x", app.root_key), "short".to_string()] {
            let r = request(&app, route.method, &path)
                .header("X-CA-Root-Key", wrong_root)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{what}: wrong root key");
        }
        for wrong_org in ["qk_malformed", unknown_key.expose()] {
            let r = request(&app, route.method, &path)
                .header("X-API-Key", wrong_org)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{what}: wrong org key");
        }
        match route.access {
            Access::Root => {
                // A valid org key is not the root key.
                let r = request(&app, route.method, &path)
                    .header("X-API-Key", &key_a)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 401, "{what}: org key on a root route");
            }
            Access::Org | Access::OrgOrRoot if route.path.contains("{org_slug}") => {
                let r = request(&app, route.method, &path)
                    .header("X-API-Key", &key_b)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 403, "{what}: another org's key");
                assert_error(r, 403, "Cannot access another organization").await;
            }
            Access::Org | Access::OrgOrRoot => {
                // No org in the path: any valid key may call it, for itself.
                let r = request(&app, route.method, &path)
                    .header("X-API-Key", &key_b)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{what}: a key for itself");
            }
            Access::Public => unreachable!(),
        }
        checked += 1;
    }
    let public = routes().filter(|r| r.access == Access::Public).count();
    assert_eq!(public, 10);
    assert_eq!(checked, routes().count() - public);
    // Org A's data is untouched by all of that: its key still works.
    let r = app
        .key_get(&format!("/api/v1/organizations/{org_a}"), &key_a)
        .await;
    assert_eq!(r.status(), 200);
}
