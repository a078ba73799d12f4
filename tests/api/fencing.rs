//! Runs stay true when an instance is cut off from BigQuery: API calls answer 503 within the
//! API deadline, a run that cannot renew its lease stops itself before another instance may
//! take its slot (never more runs executing than the limit), one slow heartbeat costs nothing,
//! a cancel reaches a run through any instance, and a draining instance is not ready.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fault_proxy::{FaultProxy, behind_proxy};
use crate::helpers::{TestApp, assert_error, spawn_app_with, unique_slug};

/// Short leases: a run not renewed for 13 s stops itself (17 - 1 - 3); reapers need 17 s plus
/// two passes. (A heartbeat may take 3 s: the emulator runs one statement at a time for the
/// whole suite, and in a fresh clone's run a 2 s heartbeat timeout lost every beat for longer
/// than a 12 s lease allowed. A run's lease also starts at its trigger, so a slow admission eats
/// into it.)
fn fast_leases(vars: &mut HashMap<String, String>) {
    vars.insert("RUN_LEASE_SECS".into(), "17".into());
    vars.insert("HEARTBEAT_INTERVAL_SECS".into(), "1".into());
    vars.insert("HEARTBEAT_TIMEOUT_SECS".into(), "3".into());
    vars.insert("BIGQUERY_MAX_RETRIES".into(), "1".into());
}

/// Instance A talks to BigQuery through `proxy`; instance B, on the same meta dataset, talks to
/// it directly and runs a reaper every second. Returns (A, B, org slug, org key); the org may
/// run one run at a time.
async fn two_instances(proxy: &FaultProxy) -> (TestApp, TestApp, String, String) {
    two_instances_with(proxy, fast_leases).await
}

/// [`two_instances`] with other lease settings.
async fn two_instances_with(
    proxy: &FaultProxy,
    leases: fn(&mut HashMap<String, String>),
) -> (TestApp, TestApp, String, String) {
    let host = proxy.host.clone();
    let a = spawn_app_with(|vars| {
        leases(vars);
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), host);
    })
    .await;
    a.bootstrap().await;
    let meta = a.meta_dataset.clone();
    let b = spawn_app_with(|vars| {
        leases(vars);
        vars.insert("META_DATASET".into(), meta);
        vars.insert("REAPER_INTERVAL_SECS".into(), "1".into());
    })
    .await;
    let slug = unique_slug("fence-co");
    let key = a.org_with_key(&slug).await;
    a.set_limits(&slug, 100, 1000, 1).await;
    (a, b, slug, key)
}

fn at(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap().parse().unwrap()
}

async fn trigger(app: &TestApp, slug: &str, key: &str, pipeline: &str) -> reqwest::Response {
    app.key_post(
        &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
        key,
        &json!({}),
    )
    .await
}

/// Triggers `pipeline` until it is admitted (a 503 counts nothing and is retried, as a client
/// does: with a 17 s lease and a 10 s API deadline a decision later than 7 s after its batch is
/// not launched, which a loaded suite's shared emulator can take), then waits until it runs.
async fn started(app: &TestApp, slug: &str, key: &str, pipeline: &str) -> String {
    let mut r = trigger(app, slug, key, pipeline).await;
    for _ in 0..10 {
        if r.status() != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        r = trigger(app, slug, key, pipeline).await;
    }
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..100 {
        if app.run(slug, key, &id).await["status"] == "RUNNING" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not start");
}

#[tokio::test]
async fn during_a_bigquery_hang_api_calls_answer_503_within_the_api_deadline() {
    // Bootstrapped and onboarded with the usual deadline (many statements on a shared
    // emulator); the instance under test, on the same meta dataset, has a 2 s deadline.
    let (proxy, setup, slug, key) = behind_proxy("hang-co", fast_leases).await;
    let (host, meta) = (proxy.host.clone(), setup.meta_dataset.clone());
    let app = spawn_app_with(|vars| {
        fast_leases(vars);
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), host);
        vars.insert("META_DATASET".into(), meta);
        vars.insert("BIGQUERY_API_DEADLINE_SECS".into(), "2".into());
    })
    .await;
    // The key is looked up once before the hang (the shared emulator may take longer than this
    // instance's 2 s deadline for it: a 503 here is retried, as a client would).
    crate::verbs::eventually("the key works", Duration::from_secs(30), || async {
        match app.key_get("/api/v1/whoami", &key).await.status().as_u16() {
            200 => Ok(()),
            other => Err(format!("HTTP {other}")),
        }
    })
    .await;

    proxy.set_hanging(true);
    for (what, response) in [
        ("trigger", trigger(&app, &slug, &key, "test/sleep").await),
        (
            "run list",
            app.key_get(&format!("/api/v1/pipelines/{slug}/runs"), &key)
                .await,
        ),
        (
            "quota",
            app.root_get(&format!("/api/v1/organizations/{slug}/quota"))
                .await,
        ),
    ] {
        assert_eq!(response.headers()["retry-after"], "5", "{what}");
        assert_error(response, 503, "Service unavailable").await;
    }
    let started = Instant::now();
    let r = app
        .key_get(&format!("/api/v1/pipelines/{slug}/runs"), &key)
        .await;
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    // The deadline is 2 s; the 300 s read timeout never comes into play.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    proxy.set_hanging(false);
    // Back without a restart, once the emulator has worked off the calls held meanwhile and,
    // in a loaded suite, has a moment to answer within this instance's 2 s deadline (90 s: a
    // fresh clone's suite needed more than 30).
    let back = Instant::now();
    while app
        .key_get(&format!("/api/v1/pipelines/{slug}/runs"), &key)
        .await
        .status()
        != 200
    {
        assert!(back.elapsed() < Duration::from_secs(90), "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_run_cut_off_from_bigquery_stops_itself_before_another_instance_can_take_its_slot() {
    let proxy = FaultProxy::start().await;
    let (a, b, slug, key) = two_instances(&proxy).await;
    let first = started(&a, &slug, &key, "test/long").await;

    proxy.set_hanging(true);
    let cut_at = Instant::now();
    // B's reaper frees the slot once the lease has passed; until then B is refused.
    let second = loop {
        let r = trigger(&b, &slug, &key, "test/sleep").await;
        if r.status() == 202 {
            break r.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string();
        }
        // 429 while the slot is held; 503 when the shared emulator is too slow for a deadline.
        assert!(matches!(r.status().as_u16(), 429 | 503), "{}", r.status());
        assert!(cut_at.elapsed() < Duration::from_secs(45), "never reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    proxy.set_hanging(false);
    let second = b.wait_until_ended(&slug, &key, &second).await;
    assert_eq!(second["status"], "SUCCEEDED");

    // The cut-off run's end is what happened: A stopped it because its lease lapsed. Its
    // interrupted step is recorded; no SUCCEEDED ever follows.
    let mut end = Value::Null;
    for _ in 0..100 {
        end = b.run(&slug, &key, &first).await;
        if end["error_class"] == "lease_lost" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(end["status"], "ORPHANED", "{end}");
    assert_eq!(end["error_class"], "lease_lost", "{end}");
    assert!(
        end["error_summary"]
            .as_str()
            .unwrap()
            .contains("lease (17s) could not be renewed"),
        "{end}"
    );
    assert_eq!(
        b.steps(&slug, &key, &first).await,
        vec![("nap".to_string(), 1, "INTERRUPTED".to_string())]
    );
    // Never two runs at once for a limit of 1: A's step had stopped before B admitted its run.
    let attempts = b.steps_body(&slug, &key, &first).await;
    let stopped_at = at(&attempts["steps"][0]["ended_at"]);
    let admitted_at = at(&second["created_at"]);
    assert!(
        stopped_at < admitted_at,
        "A's step ran until {stopped_at}, B admitted at {admitted_at}"
    );
    b.slots_free(&slug).await;
}

#[tokio::test]
async fn one_heartbeat_held_past_the_fence_period_neither_stops_the_run_nor_lets_it_be_reaped() {
    // A 30 s lease here: a run not renewed for 26 s stops itself. (With 17 s, a fresh clone's
    // loaded suite took 8 s to land the PENDING event, where the lease starts, and timed out
    // the following heartbeats too: the 5 s run lapsed before it ended.)
    fn longer_leases(vars: &mut HashMap<String, String>) {
        fast_leases(vars);
        vars.insert("RUN_LEASE_SECS".into(), "30".into());
    }
    let proxy = FaultProxy::start().await;
    let (a, b, slug, key) = two_instances_with(&proxy, longer_leases).await;
    let id = started(&a, &slug, &key, "test/sleep5").await;
    // Held 28 s, longer than the 26 s after which a run without renewal stops itself.
    proxy.hold_next("/tables/run_heartbeats/insertAll", Duration::from_secs(28));
    let done = b.wait_until_ended(&slug, &key, &id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["error_class"], Value::Null);
    b.slots_free(&slug).await;
    assert_eq!(a.executor.active_runs(), 0);
}

#[tokio::test]
async fn a_cancel_through_another_instance_reaches_the_run_within_a_heartbeat() {
    let proxy = FaultProxy::start().await;
    let (a, b, slug, key) = two_instances(&proxy).await;
    let id = started(&a, &slug, &key, "test/long").await;
    let cancel = format!("/api/v1/pipelines/{slug}/runs/{id}/cancel");
    let r = b.key_post(&cancel, &key, &json!({})).await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"run_id": id, "status": "CANCELLING"})
    );
    let started = Instant::now();
    let done = b.wait_until_ended(&slug, &key, &id).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Who cancelled it is in the run's end and in the audit log.
    let actor = b
        .key_get("/api/v1/whoami", &key)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let by = format!("run cancelled by key:{}", actor["key_id"].as_str().unwrap());
    assert_eq!(done["error_summary"], by.as_str(), "{done}");
    let audit: Value = b
        .key_get(&format!("/api/v1/organizations/{slug}/audit-logs"), &key)
        .await
        .json()
        .await
        .unwrap();
    let entry = audit["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.cancel")
        .unwrap_or_else(|| panic!("no run.cancel entry: {audit}"));
    assert_eq!(entry["resource_id"], id.as_str());
    assert_eq!(
        b.steps(&slug, &key, &id).await,
        vec![("nap".to_string(), 1, "INTERRUPTED".to_string())]
    );
    b.slots_free(&slug).await;
    assert_error(
        b.key_post(&cancel, &key, &json!({})).await,
        409,
        "Run already ended",
    )
    .await;
    assert_eq!(a.executor.active_runs(), 0);
}

#[tokio::test]
async fn a_draining_instance_answers_not_ready_with_retry_after() {
    let app = spawn_app_with(|_| {}).await;
    app.bootstrap().await;
    let slug = unique_slug("drain-co");
    let key = app.org_with_key(&slug).await;
    let r = trigger(&app, &slug, &key, "test/sleep").await;
    assert_eq!(r.status(), 202);
    let executor = app.executor.clone();
    let shutdown = tokio::spawn(async move { executor.shutdown().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "5");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining");
    assert_eq!(
        body["error"],
        json!({"code": 503, "message": "Service unavailable"})
    );
    shutdown.await.unwrap();
}
