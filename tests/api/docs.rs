//! `/docs` renders the OpenAPI document from assets the service serves itself, under a strict
//! Content-Security-Policy: no inline script, nothing from another origin.

use crate::helpers::spawn_app;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[tokio::test]
async fn the_docs_page_and_its_assets_are_served_locally_under_a_strict_csp() {
    let app = spawn_app().await;
    let mut bodies = vec![];
    for (path, content_type) in [
        ("/docs", "text/html; charset=utf-8"),
        ("/docs/docs.js", "text/javascript; charset=utf-8"),
        ("/docs/docs.css", "text/css; charset=utf-8"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert_eq!(r.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
        let body = r.text().await.unwrap();
        // Nothing is loaded from another origin.
        for external in ["http://", "https://", "//cdn"] {
            assert!(!body.contains(external), "{path} names {external}");
        }
        bodies.push(body);
    }
    let html = &bodies[0];
    // Every script is a file of this origin; none is inline (the CSP would refuse it anyway).
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="/docs/docs.js" defer></script>"#));
    assert!(html.contains(r#"href="/docs/docs.css""#));
    // What the script needs from the page, and from the service.
    let js = &bodies[1];
    for id in ["operations", "filter", "status"] {
        assert!(html.contains(&format!(r#"id="{id}""#)), "{id}");
        assert!(js.contains(&format!(r#"getElementById("{id}")"#)), "{id}");
    }
    assert!(js.contains(r#"fetch("/openapi.json")"#));
    assert!(
        !js.contains("innerHTML"),
        "text only, never HTML from the document"
    );
    // The page lists what the document holds.
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/docs"]["get"].is_object());
}

#[tokio::test]
async fn the_web_view_and_its_assets_are_served_locally_under_the_same_csp() {
    let app = spawn_app().await;
    let mut bodies = vec![];
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert_eq!(r.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
        // The SVG namespace is a name, not a place the page loads from.
        let body = r
            .text()
            .await
            .unwrap()
            .replace("\"http://www.w3.org/2000/svg\"", "SVG_NAMESPACE");
        for external in ["http://", "https://", "//cdn"] {
            assert!(!body.contains(external), "{path} names {external}");
        }
        bodies.push(body);
    }
    let html = &bodies[0];
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="/ui/app.js" defer></script>"#));
    assert!(html.contains(r#"href="/ui/app.css""#));
    assert!(!html.contains("style="), "no inline style");
    let js = &bodies[1];
    // Text only; the key in this tab's sessionStorage and nowhere that outlives or leaves it.
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "document.cookie",
        "eval(",
    ] {
        assert!(!js.contains(forbidden), "app.js uses {forbidden}");
    }
    assert!(js.contains("sessionStorage.setItem(KEY, key)"));
}
