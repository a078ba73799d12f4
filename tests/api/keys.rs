use std::time::Duration;

use quarry::api_keys;
use quarry::domain::OrgSlug;
use quarry::kms::Aad;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with, unique_slug};

async fn rotate(app: &TestApp, slug: &str, key: &str, body: Value) -> reqwest::Response {
    app.key_post(
        &format!("/api/v1/organizations/{slug}/api-keys/rotate"),
        key,
        &body,
    )
    .await
}

fn profile_path(slug: &str) -> String {
    format!("/api/v1/organizations/{slug}")
}

#[tokio::test]
async fn rotation_without_grace_revokes_the_old_key_at_once() {
    let app = spawn_app().await;
    let (slug, old) = app.new_org("keys-co").await;
    assert_eq!(app.key_get(&profile_path(&slug), &old).await.status(), 200);
    let response = rotate(&app, &slug, &old, json!({})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let new = body["api_key"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        body["scopes"].as_array().unwrap().len(),
        10,
        "same scopes as the old key"
    );
    assert_eq!(app.key_get(&profile_path(&slug), new).await.status(), 200);
    assert_error(
        app.key_get(&profile_path(&slug), &old).await,
        401,
        "Invalid or inactive API key",
    )
    .await;
}

#[tokio::test]
async fn a_rotated_key_works_until_its_grace_period_ends() {
    let app = spawn_app().await;
    let (slug, old) = app.new_org("keys-co").await;
    let response = rotate(&app, &slug, &old, json!({"grace_period_seconds": 4})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let new = body["api_key"].as_str().unwrap().to_string();
    assert_eq!(app.key_get(&profile_path(&slug), &old).await.status(), 200);
    assert_eq!(app.key_get(&profile_path(&slug), &new).await.status(), 200);
    let listed: Value = app
        .key_get(&format!("{}/api-keys", profile_path(&slug)), &new)
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = listed["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["ACTIVE", "ROTATING"]);
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert_error(
        app.key_get(&profile_path(&slug), &old).await,
        401,
        "Invalid or inactive API key",
    )
    .await;
    assert_eq!(app.key_get(&profile_path(&slug), &new).await.status(), 200);
}

#[tokio::test]
async fn rotation_bounds_are_enforced() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    for bad in [
        json!({"grace_period_seconds": 604801}),
        json!({"grace_period_seconds": -1}),
        json!({"expires_in_seconds": 0}),
        json!({"scopes": ["admin:all"]}),
        json!({"unknown": true}),
    ] {
        assert_error(
            rotate(&app, &slug, &key, bad).await,
            400,
            "Invalid request format",
        )
        .await;
    }
    let missing = rotate(
        &app,
        &slug,
        &key,
        json!({"key_id": uuid::Uuid::new_v4().to_string()}),
    )
    .await;
    assert_error(missing, 404, "Resource not found").await;
    // The root key must name the key it replaces.
    let response = app
        .client
        .post(app.url(&format!("/api/v1/organizations/{slug}/api-keys/rotate")))
        .header("X-CA-Root-Key", &app.root_key)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "Invalid request format").await;
    // The key still works: nothing above changed it.
    assert_eq!(app.key_get(&profile_path(&slug), &key).await.status(), 200);
}

#[tokio::test]
async fn a_revoked_key_gets_401_at_once() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let listed: Value = app
        .key_get(&format!("{}/api-keys", profile_path(&slug)), &key)
        .await
        .json()
        .await
        .unwrap();
    let key_id = listed["api_keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .client
        .delete(app.url(&format!("{}/api-keys/{key_id}", profile_path(&slug))))
        .header("X-CA-Root-Key", &app.root_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_error(
        app.key_get(&profile_path(&slug), &key).await,
        401,
        "Invalid or inactive API key",
    )
    .await;
    let unknown = app
        .client
        .delete(app.url(&format!(
            "{}/api-keys/{}",
            profile_path(&slug),
            uuid::Uuid::new_v4()
        )))
        .header("X-CA-Root-Key", &app.root_key)
        .send()
        .await
        .unwrap();
    assert_error(unknown, 404, "Resource not found").await;
}

#[tokio::test]
async fn an_expired_key_gets_401() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let body: Value = rotate(
        &app,
        &slug,
        &key,
        json!({"expires_in_seconds": 3, "grace_period_seconds": 600}),
    )
    .await
    .json()
    .await
    .unwrap();
    let short = body["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        app.key_get(&profile_path(&slug), &short).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_error(
        app.key_get(&profile_path(&slug), &short).await,
        401,
        "Invalid or inactive API key",
    )
    .await;
}

#[tokio::test]
async fn a_key_without_the_routes_scope_gets_403() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let body: Value = rotate(
        &app,
        &slug,
        &key,
        json!({"scopes": ["runs:read"], "grace_period_seconds": 600}),
    )
    .await
    .json()
    .await
    .unwrap();
    let narrow = body["api_key"].as_str().unwrap().to_string();
    assert_eq!(body["scopes"], json!(["runs:read"]));
    for path in [
        profile_path(&slug),
        format!("{}/api-keys", profile_path(&slug)),
        format!("{}/audit-logs", profile_path(&slug)),
    ] {
        assert_error(
            app.key_get(&path, &narrow).await,
            403,
            "API key lacks the required scope",
        )
        .await;
    }
    // Nor can it mint itself a stronger key.
    assert_error(
        rotate(&app, &slug, &narrow, json!({"scopes": ["keys:manage"]})).await,
        403,
        "API key lacks the required scope",
    )
    .await;
}

#[tokio::test]
async fn key_listings_hold_metadata_only() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let listed: Value = app
        .key_get(&format!("{}/api-keys", profile_path(&slug)), &key)
        .await
        .json()
        .await
        .unwrap();
    let entry = listed["api_keys"][0].as_object().unwrap();
    let mut fields: Vec<&str> = entry.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "created_at",
            "display_prefix",
            "expires_at",
            "key_id",
            "last_used_at",
            "revoked_at",
            "scopes",
            "status"
        ]
    );
    assert!(key.starts_with(entry["display_prefix"].as_str().unwrap()));
    assert!(!listed.to_string().contains(&key));
}

#[tokio::test]
async fn last_used_is_written_in_one_batch_not_per_request() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let before = app.warehouse.counters().snapshot();
    for _ in 0..5 {
        assert_eq!(app.key_get(&profile_path(&slug), &key).await.status(), 200);
    }
    let during = app.warehouse.counters().snapshot().since(&before);
    assert_eq!(during.dml, 0, "no write per request");
    let flush_start = app.warehouse.counters().snapshot();
    assert_eq!(app.auth.last_used.flush(&app.warehouse).await.unwrap(), 1);
    let flush = app.warehouse.counters().snapshot().since(&flush_start);
    assert_eq!(flush.dml, 1);
    let listed: Value = app
        .root_get(&format!("{}/api-keys", profile_path(&slug)))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed["api_keys"][0]["last_used_at"].is_string(),
        "{listed}"
    );
    assert_eq!(app.auth.last_used.flush(&app.warehouse).await.unwrap(), 0);
}

#[tokio::test]
async fn each_key_in_a_last_used_batch_keeps_its_own_time() {
    let app = spawn_app().await;
    let (slug, old) = app.new_org("keys-co").await;
    let rotated = rotate(&app, &slug, &old, json!({"grace_period_seconds": 600})).await;
    assert_eq!(rotated.status(), 201);
    let new = rotated.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.auth.last_used.flush(&app.warehouse).await.unwrap(), 1);
    assert_eq!(app.key_get(&profile_path(&slug), &old).await.status(), 200);
    let old_used = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.key_get(&profile_path(&slug), &new).await.status(), 200);
    // Both in one statement.
    assert_eq!(app.auth.last_used.flush(&app.warehouse).await.unwrap(), 2);
    let listed: Value = app
        .root_get(&format!("{}/api-keys", profile_path(&slug)))
        .await
        .json()
        .await
        .unwrap();
    let used = |status: &str| -> chrono::DateTime<chrono::Utc> {
        let key = listed["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["status"] == status)
            .unwrap();
        key["last_used_at"].as_str().unwrap().parse().unwrap()
    };
    assert!(used("ROTATING") <= old_used, "{listed}");
    assert!(used("ACTIVE") > old_used, "{listed}");
}

#[tokio::test]
async fn a_stored_key_ciphertext_moved_to_another_org_fails_to_decrypt() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let other = unique_slug("other-co");
    app.onboard(&other).await;
    let org_a = OrgSlug::parse(&slug).unwrap();
    let (listed, _) = api_keys::list(&app.warehouse, &org_a, None).await.unwrap();
    let key_id = &listed[0].key_id;
    let sealed = api_keys::stored_ciphertext(&app.warehouse, &org_a, key_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !sealed
            .windows(10)
            .any(|w| key.as_bytes().windows(10).any(|k| k == w))
    );
    let opened = app
        .kms
        .decrypt(&sealed, &Aad::org_api_key(&slug, key_id))
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), key.as_bytes());
    assert!(
        app.kms
            .decrypt(&sealed, &Aad::org_api_key(&other, key_id))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn malformed_keys_cost_no_bigquery_call() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let mut typo = key.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let before = app.warehouse.counters().snapshot();
    for bad in [
        "",
        "nope",
        "qk_",
        &typo,
        &key[..key.len() - 1],
        &format!("{key}0"),
        &"qk_".repeat(17),
        "' OR '1'='1",
    ] {
        assert_error(
            app.key_get(&profile_path(&slug), bad).await,
            401,
            "Invalid or inactive API key",
        )
        .await;
    }
    assert_eq!(app.warehouse.counters().snapshot(), before);
}

#[tokio::test]
async fn a_flood_of_well_formed_unknown_keys_costs_at_most_one_lookup_per_key_within_the_budget() {
    let app = spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_FAILED_AUTH_PER_MINUTE".into(), "10".into());
    })
    .await;
    let (slug, _key) = app.new_org("keys-co").await;
    let before = app.warehouse.counters().snapshot();
    // The same unknown key 20 times: one lookup, then the negative cache.
    let unknown = quarry::domain::ApiKey::generate();
    for _ in 0..5 {
        let r = app.key_get(&profile_path(&slug), unknown.expose()).await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(app.warehouse.counters().snapshot().since(&before).query, 1);
    // 300 fresh keys with valid checksums: the IP's budget (10) runs out, then 429 before any
    // lookup.
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let fresh = quarry::domain::ApiKey::generate();
        let r = app.key_get(&profile_path(&slug), fresh.expose()).await;
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    let lookups = app.warehouse.counters().snapshot().since(&before).query;
    assert!(lookups <= 10, "{lookups} lookups for {statuses:?}");
    assert!(statuses[&429] >= 290, "{statuses:?}");
}

#[tokio::test]
async fn live_keys_are_capped_at_10_and_a_rotation_without_grace_is_always_allowed() {
    let app = spawn_app().await;
    let (slug, mut key) = app.new_org("keys-co").await;
    // Onboarding's key plus 9 rotations with grace: 10 live keys.
    for _ in 0..9 {
        let r = rotate(&app, &slug, &key, json!({"grace_period_seconds": 600})).await;
        assert_eq!(r.status(), 201);
        key = r.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let refused = rotate(&app, &slug, &key, json!({"grace_period_seconds": 600})).await;
    assert_error(refused, 409, "Too many live API keys: revoke one first").await;
    // Without grace the old key dies as the new one is born: the count stays at 10.
    let r = rotate(&app, &slug, &key, json!({})).await;
    assert_eq!(r.status(), 201);
}

/// Adds `n` older keys straight into the table (as months of rotations would have left).
async fn old_keys(app: &TestApp, slug: &str, n: usize) {
    let meta = &app.meta_dataset;
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "('{}', '{slug}', 'h{i}', b'x', 'qk_old{i}', ['runs:read'], \
                 TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {} MINUTE), NULL, \
                 CURRENT_TIMESTAMP(), NULL)",
                uuid::Uuid::new_v4(),
                i + 1
            )
        })
        .collect();
    crate::helpers::Emulator::new()
        .sql(&format!(
            "INSERT INTO `{meta}.org_api_keys` (key_id, org_slug, key_hash, encrypted_key, \
             display_prefix, scopes, created_at, expires_at, revoked_at, last_used_at) VALUES {}",
            rows.join(", ")
        ))
        .await;
}

#[tokio::test]
async fn the_key_list_pages_through_every_key_and_rotation_finds_a_key_of_any_age() {
    let app = spawn_app().await;
    let (slug, _key) = app.new_org("keys-co").await;
    let first_id = app
        .root_get(&format!("{}/api-keys", profile_path(&slug)))
        .await;
    let first_id = first_id.json::<Value>().await.unwrap()["api_keys"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    // 105 revoked keys, all older than a fresh one; the onboarding key is the newest.
    old_keys(&app, &slug, 105).await;
    let mut seen = vec![];
    let mut token: Option<String> = None;
    let mut tokens = vec![];
    let mut pages = 0;
    loop {
        let path = match &token {
            None => format!("{}/api-keys", profile_path(&slug)),
            Some(t) => format!("{}/api-keys?page_token={t}", profile_path(&slug)),
        };
        let page: Value = app.root_get(&path).await.json().await.unwrap();
        pages += 1;
        seen.extend(
            page["api_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["key_id"].as_str().unwrap().to_string()),
        );
        match page["next_page_token"].as_str() {
            Some(t) => {
                token = Some(t.to_string());
                tokens.push(t.to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 106);
    assert_eq!(
        seen.iter().collect::<std::collections::HashSet<_>>().len(),
        106,
        "no key twice"
    );
    assert_eq!(seen[0], first_id, "newest first");
    // A token is bound to its org.
    let other = unique_slug("other-keys-co");
    app.onboard(&other).await;
    let foreign = app
        .root_get(&format!(
            "/api/v1/organizations/{other}/api-keys?page_token={}",
            tokens[0]
        ))
        .await;
    assert_error(foreign, 400, "Invalid request format").await;
    // The oldest key, far past the first page, is found by id for rotation (its row says it is
    // revoked, so rotating it refuses nothing but works on that key).
    let oldest = seen.last().unwrap();
    let r = app
        .client
        .post(app.url(&format!("{}/api-keys/rotate", profile_path(&slug))))
        .header("X-CA-Root-Key", &app.root_key)
        .json(&json!({"key_id": oldest}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap()["replaced_key_id"],
        oldest.as_str()
    );
}

#[tokio::test]
async fn a_rotated_key_never_outlives_the_key_that_minted_it() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let short = rotate(&app, &slug, &key, json!({"expires_in_seconds": 120})).await;
    assert_eq!(short.status(), 201);
    let short: Value = short.json().await.unwrap();
    let parent_expiry: chrono::DateTime<chrono::Utc> =
        short["expires_at"].as_str().unwrap().parse().unwrap();
    let short_key = short["api_key"].as_str().unwrap().to_string();
    // Without an expiry of its own, the child inherits the parent's.
    let child = rotate(&app, &slug, &short_key, json!({})).await;
    assert_eq!(child.status(), 201);
    let child: Value = child.json().await.unwrap();
    assert_eq!(
        child["expires_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        parent_expiry
    );
    // Asking for longer is bounded by the parent's.
    let grandchild = rotate(
        &app,
        &slug,
        child["api_key"].as_str().unwrap(),
        json!({"expires_in_seconds": 86400}),
    )
    .await;
    assert_eq!(grandchild.status(), 201);
    let grandchild: Value = grandchild.json().await.unwrap();
    assert_eq!(
        grandchild["expires_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        parent_expiry
    );
}

#[tokio::test]
async fn a_warm_cache_authenticates_without_bigquery() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    // Warm up, then measure a key-only route that itself reads nothing: none exists yet, so
    // count the auth lookups of a profile read (one query for the profile, one for the quota).
    assert_eq!(app.key_get(&profile_path(&slug), &key).await.status(), 200);
    let before = app.warehouse.counters().snapshot();
    assert_eq!(app.key_get(&profile_path(&slug), &key).await.status(), 200);
    let delta = app.warehouse.counters().snapshot().since(&before);
    assert_eq!(delta.query, 2, "profile + quota, no auth lookup: {delta:?}");
}

#[tokio::test]
async fn whoami_names_the_caller() {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("keys-co").await;
    let me: Value = app
        .key_get("/api/v1/whoami", &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["principal"], "org_key");
    assert_eq!(me["org_slug"], slug.as_str());
    assert_eq!(me["scopes"].as_array().unwrap().len(), 10);
    let root: Value = app.root_get("/api/v1/whoami").await.json().await.unwrap();
    assert_eq!(root, json!({"principal": "root"}));
    // Warm cache: no BigQuery call at all.
    let before = app.warehouse.counters().snapshot();
    assert_eq!(app.key_get("/api/v1/whoami", &key).await.status(), 200);
    assert_eq!(app.warehouse.counters().snapshot(), before);
}

/// `quarry_auth_cache_total{result=...}` as served on `/metrics` (0 when absent).
async fn auth_cache_count(app: &TestApp, result: &str) -> u64 {
    app.counter(&format!("quarry_auth_cache_total{{result=\"{result}\"}}"))
        .await
}

#[tokio::test]
async fn a_hundred_concurrent_requests_with_an_uncached_key_share_one_lookup() {
    let app = spawn_app().await;
    let (_slug, key) = app.new_org("keys-co").await;
    let before = app.warehouse.counters().snapshot();
    let requests = (0..100).map(|_| app.key_get("/api/v1/whoami", &key));
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses, vec![200; 100]);
    let delta = app.warehouse.counters().snapshot().since(&before);
    assert_eq!(delta.query, 1, "one lookup for 100 requests: {delta:?}");
}

#[tokio::test]
async fn a_failed_lookup_answers_every_request_waiting_on_it_and_is_not_retried_by_each() {
    use crate::fault_proxy::{behind_proxy, refused};
    let lookup = "key_hash = @key_hash";
    let (proxy, app, _slug, key) = behind_proxy("herd-co", |vars| {
        vars.insert("BIGQUERY_MAX_RETRIES".into(), "0".into());
    })
    .await;
    // The key's first lookup takes 1.5 s and then fails: the 50 requests sent meanwhile all
    // wait for it and all learn its failure.
    proxy.hold_next_with("/queries", lookup, Duration::from_millis(1500));
    proxy.inject([refused("/queries", Some(lookup))]);
    let before = app.warehouse.counters().snapshot();
    let requests = (0..50).map(|_| app.key_get("/api/v1/whoami", &key));
    let answers = futures_util::future::join_all(requests).await;
    for r in answers {
        assert_eq!(r.headers()["retry-after"], "5");
        assert_error(r, 503, "Service unavailable").await;
    }
    let delta = app.warehouse.counters().snapshot().since(&before);
    assert_eq!(
        (delta.query, delta.failed_query),
        (1, 1),
        "one failed lookup for 50 requests: {delta:?}"
    );
    // The failure is not cached: the next request looks the key up again and gets in.
    assert_eq!(app.key_get("/api/v1/whoami", &key).await.status(), 200);
    assert_eq!(app.warehouse.counters().snapshot().since(&before).query, 2);
}

#[tokio::test]
async fn a_key_in_steady_use_is_refreshed_before_it_expires_and_no_request_waits_for_a_lookup() {
    let app = spawn_app_with(|vars| {
        // 8 s: a refresh starts 6 s after a read and has 2 s to land before the entry
        // expires (with 4 s, a refresh slowed past 1 s by a loaded emulator missed).
        vars.insert("AUTH_CACHE_TTL_SECS".into(), "8".into());
    })
    .await;
    let (_slug, key) = app.new_org("keys-co").await;
    let misses = auth_cache_count(&app, "miss").await;
    let before = app.warehouse.counters().snapshot();
    // 17 s of use, a request every 100 ms: more than two lifetimes of the cached key, which
    // is refreshed when used 6 s after it was read.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(17) {
        assert_eq!(app.key_get("/api/v1/whoami", &key).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last refresh, if one is still reading, lands.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        auth_cache_count(&app, "miss").await - misses,
        1,
        "only the first request looked the key up"
    );
    let refreshes = auth_cache_count(&app, "refresh").await;
    let lookups = app.warehouse.counters().snapshot().since(&before).query;
    assert!(
        refreshes >= 2,
        "{refreshes} refreshes in 17 s of an 8 s TTL"
    );
    assert_eq!(lookups, 1 + refreshes, "every other read was a refresh");
}

#[tokio::test]
async fn a_named_key_acts_under_its_name_and_a_bad_name_is_refused_naming_the_field() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("named");
    let mut body = crate::helpers::onboard_body(&slug, "STARTER");
    body["key_name"] = json!("ci bot");
    let r = app.onboard_with(&body).await;
    assert_eq!(r.status(), 201);
    let onboarded: Value = r.json().await.unwrap();
    let key = onboarded["api_key"].as_str().unwrap().to_string();
    let key_id = onboarded["api_key_id"].as_str().unwrap().to_string();

    // What the key does is attributed to its id and its name.
    let run_id = app.started(&slug, &key, "test/nap").await;
    let run = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(run["triggered_by"], format!("key:{key_id} (ci bot)"));

    // A rotation names the new key; the list shows both names.
    let r = app
        .key_post(
            &format!("/api/v1/organizations/{slug}/api-keys/rotate"),
            &key,
            &json!({"grace_period_seconds": 60, "name": "nightly"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let rotated: Value = r.json().await.unwrap();
    crate::helpers::remember_secret(rotated["api_key"].as_str().unwrap());
    assert_eq!(rotated["name"], "nightly");
    let list: Value = app
        .key_get(&format!("/api/v1/organizations/{slug}/api-keys"), &key)
        .await
        .json()
        .await
        .unwrap();
    let mut names: Vec<&str> = list["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["ci bot", "nightly"]);

    // A name outside the accepted form is refused, naming the field and the form.
    for bad in ["", "x; DROP TABLE", &"n".repeat(65)] {
        let r = app
            .key_post(
                &format!("/api/v1/organizations/{slug}/api-keys/rotate"),
                &key,
                &json!({"grace_period_seconds": 60, "name": bad}),
            )
            .await;
        assert_eq!(r.status(), 400, "{bad}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["details"][0]["field"], "name", "{err}");
        assert_eq!(
            err["error"]["details"][0]["accepted"],
            "1-64 letters, digits, spaces, dots, underscores or dashes"
        );
    }
    let mut body = crate::helpers::onboard_body(&unique_slug("named"), "STARTER");
    body["key_name"] = json!("<script>");
    let r = app.onboard_with(&body).await;
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["details"][0]["field"], "key_name", "{err}");
}
