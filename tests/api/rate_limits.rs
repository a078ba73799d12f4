use crate::helpers::{assert_error, spawn_app_with, unique_slug};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn each_org_is_limited_on_its_own_with_retry_after() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_PER_MINUTE".into(), "3".into());
    })
    .await;
    app.bootstrap().await;
    let a = unique_slug("rl-a");
    let b = unique_slug("rl-b");
    let key_a = app.org_with_key(&a).await;
    let key_b = app.org_with_key(&b).await;
    let path_a = format!("/api/v1/organizations/{a}/quota");
    for remaining in ["2", "1", "0"] {
        let r = app.key_get(&path_a, &key_a).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining"), remaining);
    }
    let limited = app.key_get(&path_a, &key_a).await;
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&limited, "x-ratelimit-limit"), "3");
    assert_eq!(header(&limited, "x-ratelimit-remaining"), "0");
    assert_error(limited, 429, "Rate limit exceeded").await;

    let other = app
        .key_get(&format!("/api/v1/organizations/{b}/quota"), &key_b)
        .await;
    assert_eq!(other.status(), 200, "another org is not affected");
}

#[tokio::test]
async fn failed_authentication_is_limited_per_client_ip() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_FAILED_AUTH_PER_MINUTE".into(), "3".into());
    })
    .await;
    let path = "/api/v1/organizations/someone/quota";
    for _ in 0..3 {
        let r = app.key_get(path, "qk_not-a-key").await;
        assert_error(r, 401, "Invalid or inactive API key").await;
    }
    let r = app.key_get(path, "qk_not-a-key").await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, 429, "Rate limit exceeded").await;
}

#[tokio::test]
async fn admin_routes_have_a_lower_limit_of_their_own() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_ADMIN_PER_MINUTE".into(), "2".into());
    })
    .await;
    app.bootstrap().await;
    assert_eq!(
        app.root_get("/api/v1/admin/bootstrap/status")
            .await
            .status(),
        200
    );
    let limited = app.root_post("/api/v1/admin/bootstrap/sync").await;
    assert_error(limited, 429, "Rate limit exceeded").await;
    // Ordinary admin reads are in another class.
    assert_eq!(app.root_get("/api/v1/organizations").await.status(), 200);
}

#[tokio::test]
async fn disabled_rate_limits_never_refuse() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_ENABLED".into(), "false".into());
        vars.insert("RATE_LIMIT_ADMIN_PER_MINUTE".into(), "1".into());
    })
    .await;
    for _ in 0..4 {
        assert_eq!(
            app.root_get("/api/v1/admin/bootstrap/status")
                .await
                .status(),
            200
        );
    }
}
