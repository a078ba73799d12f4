use std::collections::BTreeSet;

use quarry::routes::openapi::openapi_path;
use quarry::routes::{Access, all as routes};
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_document_covers_every_registered_route_and_nothing_else() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = routes()
        .map(|r| (r.method.to_string(), openapi_path(r.path)))
        .collect();
    assert_eq!(documented, registered);
    // Every route is declared once: no two declarations share a method and a path.
    assert_eq!(registered.len(), routes().count());
    // The patterns are the handlers' own rules.
    let slug = &doc["paths"]["/api/v1/organizations/{org_slug}"]["get"]["parameters"][0]["schema"];
    let pattern = regex::Regex::new(slug["pattern"].as_str().unwrap()).unwrap();
    for ok in ["acme", "acme-co", "a_1"] {
        assert!(
            pattern.is_match(ok) && quarry::domain::OrgSlug::parse(ok).is_ok(),
            "{ok}"
        );
    }
    for bad in ["-acme", "Acme", "acme-"] {
        assert!(
            !pattern.is_match(bad) && quarry::domain::OrgSlug::parse(bad).is_err(),
            "{bad}"
        );
    }

    for route in routes() {
        let op = &doc["paths"][openapi_path(route.path)][route.method];
        let what = format!("{} {}", route.method, route.path);
        assert!(op["summary"].is_string(), "{what}");
        assert!(op["responses"]["500"].is_object(), "{what}");
        match route.access {
            Access::Public => assert_eq!(op["security"], serde_json::json!([]), "{what}"),
            _ => {
                assert!(!op["security"].as_array().unwrap().is_empty(), "{what}");
                assert!(op["responses"]["401"].is_object(), "{what}");
            }
        }
        if route.path.contains("{org_slug}") && route.access == Access::OrgOrRoot {
            assert!(op["responses"]["403"].is_object(), "{what}");
        }
        for param in ["org_slug", "run_id", "key_id", "provider", "pipeline_id"] {
            if route.path.contains(&format!("{{{param}")) {
                let params = op["parameters"].as_array().unwrap();
                let found = params
                    .iter()
                    .find(|p| p["name"] == param && p["in"] == "path")
                    .unwrap_or_else(|| panic!("{what}: {param}"));
                // Every path parameter says what it accepts.
                assert!(
                    found["schema"]["pattern"].is_string(),
                    "{what}: {param} has no pattern"
                );
            }
        }
    }
    let onboard = &doc["paths"]["/api/v1/organizations/onboard"]["post"];
    assert_eq!(
        onboard["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/OnboardRequest"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "OnboardRequest",
        "RunItem",
        "CredentialView",
        "ErrorBody",
        "QuotaLimits",
        "PipelineStats",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["OrgKey"]["name"],
        "X-API-Key"
    );
    let runs = &doc["paths"]["/api/v1/pipelines/{org_slug}/runs"]["get"]["parameters"];
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "page_token")
    );
}
