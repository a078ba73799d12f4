//! Admission at platform scale: several instances on one meta dataset stay exact, and behind
//! BigQuery's real DML limits (the limits model) parallel triggers share a few statements,
//! and a full queue is 503 with Retry-After, never 500.

use std::time::Duration;

use serde_json::{Value, json};

use crate::bq_limits::{Class, Limits, LimitsModel};
use crate::helpers::{
    TestApp, assert_error, of_file, spawn_app_with, spawn_behind_model, unique_slug,
};

/// `n` instances sharing one meta dataset (bootstrapped by the first), each customized alike.
async fn instances(
    n: usize,
    customize: impl Fn(&mut std::collections::HashMap<String, String>),
) -> Vec<TestApp> {
    let first = spawn_app_with(&customize).await;
    first.bootstrap().await;
    let mut apps = vec![];
    for _ in 1..n {
        let meta = first.meta_dataset.clone();
        apps.push(
            spawn_app_with(|vars| {
                customize(vars);
                vars.insert("META_DATASET".into(), meta);
            })
            .await,
        );
    }
    apps.insert(0, first);
    apps
}

/// Deadlines out of the way for specs of a limit's exactness across instances: under the whole
/// suite's load the single-threaded emulator can take three instances' batches past the usual
/// 10 s API deadline, and a trigger answered 503 would change the counts under test (the
/// deadline's own specs are in `faults` and `exactness`).
fn patient(vars: &mut std::collections::HashMap<String, String>) {
    vars.insert("BIGQUERY_API_DEADLINE_SECS".into(), "40".into());
    vars.insert("ADMISSION_TIMEOUT_SECS".into(), "90".into());
}

fn trigger_url(app: &TestApp, slug: &str, pipeline: &str) -> String {
    app.url(&format!("/api/v1/pipelines/run/{slug}/{pipeline}"))
}

/// Fires one trigger per URL at once; returns (status, body) in the same order.
async fn fire(client: &reqwest::Client, urls: Vec<String>, key: &str) -> Vec<(u16, Value)> {
    let handles: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let (client, key) = (client.clone(), key.to_string());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("X-API-Key", key)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn admitted_ids(answers: &[(u16, Value)]) -> Vec<String> {
    let mut ids: Vec<String> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b["run_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn active_ids(q: &Value) -> Vec<String> {
    let mut ids: Vec<String> = serde_json::from_value(q["active_run_ids"].clone()).unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn three_instances_admit_exactly_5_of_60_parallel_triggers_for_a_concurrent_limit_of_5() {
    let apps = instances(3, patient).await;
    let slug = unique_slug("multi-co");
    let key = apps[0].org_with_key(&slug).await;
    apps[0].set_limits(&slug, 1000, 10_000, 5).await;
    let urls = (0..60)
        .map(|i| trigger_url(&apps[i % 3], &slug, "test/long"))
        .collect();
    let answers = fire(&apps[0].client, urls, &key).await;
    for (status, body) in &answers {
        assert!(
            *status == 202 || (*status == 429 && body["error"]["reason"] == "concurrent"),
            "{status} {body}"
        );
    }
    let admitted = admitted_ids(&answers);
    assert_eq!(admitted.len(), 5);
    let q = apps[0].quota(&slug).await;
    assert_eq!(active_ids(&q), admitted);
    assert_eq!(q["runs_today"], 5, "refusals are not counted");
}

#[tokio::test]
async fn a_daily_limit_holds_exactly_across_three_instances() {
    let apps = instances(3, patient).await;
    let slug = unique_slug("daily-co");
    let key = apps[0].org_with_key(&slug).await;
    apps[0].set_limits(&slug, 7, 10_000, 7).await;
    let urls = (0..30)
        .map(|i| trigger_url(&apps[i % 3], &slug, "test/sleep"))
        .collect();
    let answers = fire(&apps[0].client, urls, &key).await;
    let refused_daily = answers
        .iter()
        .filter(|(s, b)| *s == 429 && b["error"]["reason"] == "daily")
        .count();
    assert_eq!((admitted_ids(&answers).len(), refused_daily), (7, 23));
    assert_eq!(apps[0].quota(&slug).await["runs_today"], 7);
    apps[0].slots_free(&slug).await;
}

#[tokio::test]
async fn a_release_sent_by_one_instance_frees_a_slot_admitted_by_another() {
    let apps = instances(2, |_| {}).await;
    let slug = unique_slug("handoff-co");
    let key = apps[0].org_with_key(&slug).await;
    let answers = fire(
        &apps[0].client,
        vec![trigger_url(&apps[0], &slug, "test/long")],
        &key,
    )
    .await;
    let run_id = admitted_ids(&answers).pop().expect("admitted");
    assert_eq!(
        active_ids(&apps[0].quota(&slug).await),
        std::slice::from_ref(&run_id)
    );

    let org = quarry::domain::OrgSlug::parse(&slug).unwrap();
    apps[1].executor.releaser().release(org, run_id);
    assert!(
        apps[1]
            .executor
            .releaser()
            .wait_idle(Duration::from_secs(10))
            .await
    );
    let q = apps[0].quota(&slug).await;
    assert_eq!(q["active_run_ids"], json!([]));
    assert_eq!(q["runs_today"], 1, "a release never uncounts a run");
}

#[tokio::test]
async fn an_instance_with_a_lagging_clock_never_resets_the_day() {
    let apps = instances(2, |_| {}).await;
    let slug = unique_slug("clock-co");
    let key = apps[0].org_with_key(&slug).await;
    apps[0].set_limits(&slug, 100, 10_000, 100).await;
    // Instance 0 is a day ahead of instance 1.
    apps[0].clock.advance(chrono::Duration::days(1));
    let tomorrow = quarry::clock::day_of(chrono::Utc::now() + chrono::Duration::days(1));

    let first = fire(
        &apps[0].client,
        vec![trigger_url(&apps[0], &slug, "test/sleep")],
        &key,
    )
    .await;
    assert_eq!(admitted_ids(&first).len(), 1);
    let lagging = fire(
        &apps[1].client,
        vec![trigger_url(&apps[1], &slug, "test/sleep")],
        &key,
    )
    .await;
    assert_eq!(admitted_ids(&lagging).len(), 1);

    let q = apps[0].quota(&slug).await;
    assert_eq!(q["day"], tomorrow.to_string(), "the day only moves forward");
    assert_eq!(
        q["runs_today"], 2,
        "the lagging instance counted on the later day"
    );
    assert_eq!(q["runs_month"], 2);
}

/// An app behind the limits model, bootstrapped; the orgs and their keys are made before the
/// model is slowed.
async fn behind_limits(
    limits: Limits,
    customize: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (LimitsModel, TestApp) {
    let (model, app) = spawn_behind_model(limits, customize).await;
    app.bootstrap().await;
    (model, app)
}

/// Calls `whoami` with `key`, so the auth cache is warm and later counts are the triggers' own.
async fn warm(app: &TestApp, key: &str) {
    assert_eq!(app.key_get("/api/v1/whoami", key).await.status(), 200);
}

#[tokio::test]
async fn a_trigger_batched_with_a_release_is_answered_without_waiting_for_the_read_of_what_the_release_admitted()
 {
    let fast = Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (model, app) = behind_limits(fast, |_| {}).await;
    let a = unique_slug("releasing-co");
    let a_key = app.org_with_key(&a).await;
    let b = unique_slug("triggering-co");
    let b_key = app.org_with_key(&b).await;
    warm(&app, &a_key).await;
    warm(&app, &b_key).await;
    // The release must ride with the reservation: should the trigger come too late for it (a
    // loaded machine), the scenario is played again.
    for _ in 0..3 {
        model.set_latencies(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        app.started(&a, &a_key, "test/nap").await;
        // The run has ended: its release waits up to a second in the coordinator for a
        // reservation to ride with. Org B's trigger is that reservation.
        let ended = std::time::Instant::now();
        while app.executor.active_runs() > 0 && ended.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Every query from now on takes 30 s: the read of what the release admitted from A's
        // queue among them.
        model.set_latencies(
            Duration::from_millis(100),
            Duration::from_secs(30),
            Duration::ZERO,
        );
        model.clear();
        let sent = std::time::Instant::now();
        let r = app.trigger(&b, &b_key, "test/nap", &json!({})).await;
        let took = sent.elapsed();
        assert_eq!(r.status(), 202, "answered after {took:?}");
        if model.count("org_quota_state", Class::Mutating) != (1, 0) {
            // Two statements: the release went before the trigger came.
            continue;
        }
        assert!(
            took < Duration::from_secs(30),
            "answered after {took:?}: it waited for the batch's read"
        );
        return;
    }
    panic!("the release never shared a statement with the trigger in three tries");
}

#[tokio::test]
async fn behind_bigquerys_dml_limits_50_parallel_triggers_share_a_few_statements() {
    let fast = Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (model, app) = behind_limits(fast, |_| {}).await;
    let mut orgs = vec![];
    for _ in 0..5 {
        let slug = unique_slug("scale-co");
        let key = app.org_with_key(&slug).await;
        app.set_limits(&slug, 1000, 10_000, 20).await;
        warm(&app, &key).await;
        orgs.push((slug, key));
    }
    model.set_latencies(
        Duration::from_millis(400),
        Duration::from_millis(50),
        Duration::from_millis(20),
    );
    model.clear();
    let before = model.labelled_jobs().len();

    let mut handles = vec![];
    for (slug, key) in &orgs {
        let urls = (0..10)
            .map(|_| trigger_url(&app, slug, "test/long"))
            .collect();
        let (client, key) = (app.client.clone(), key.clone());
        handles.push(tokio::spawn(async move { fire(&client, urls, &key).await }));
    }
    let mut answers = vec![];
    for h in handles {
        answers.extend(h.await.unwrap());
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![202; 50], "{answers:?}");

    let (ran, refused) = model.count("org_quota_state", Class::Mutating);
    assert_eq!(refused, 0);
    assert!(
        (1..=6).contains(&ran),
        "50 triggers took {ran} mutating statements on the quota table"
    );
    assert_eq!(
        model.max_running("org_quota_state", Class::Mutating),
        1,
        "one statement in flight per instance"
    );
    // The reads of the batches' decisions (not the instance's other reads, such as a key's
    // refresh before it expires, which a slow setup brings into this window).
    let jobs = model.labelled_jobs();
    let reads = of_file(&jobs[before..], "quota/batch_outcome.sql").len();
    let batches = of_file(&jobs[before..], "quota/admit_batch.sql").len();
    assert!(
        reads <= batches,
        "at most one read per batch: {reads} reads of {batches} batches"
    );
    for (slug, _) in &orgs {
        assert_eq!(app.quota(slug).await["runs_today"], 10);
    }
}

#[tokio::test]
async fn a_full_bigquery_dml_queue_is_503_with_retry_after_and_counts_nothing() {
    let limits = Limits {
        mutating_running: 1,
        mutating_waiting: 0,
        ..Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO)
    };
    let (model, app) = behind_limits(limits, |vars| {
        vars.insert("BIGQUERY_MAX_RETRIES".into(), "1".into());
    })
    .await;
    let slug = unique_slug("full-co");
    let key = app.org_with_key(&slug).await;
    warm(&app, &key).await;
    model.set_latencies(Duration::from_secs(3), Duration::ZERO, Duration::ZERO);

    // Another writer holds the table's only DML place for 3 s.
    let blocker = {
        let (client, url) = (
            app.client.clone(),
            format!(
                "http://{}/bigquery/v2/projects/{}/queries",
                model.host,
                crate::helpers::project_id()
            ),
        );
        let sql = format!(
            "UPDATE `{}.org_quota_state` SET updated_at = updated_at WHERE FALSE",
            app.meta_dataset
        );
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"query": sql, "useLegacySql": false}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/sleep"),
            &key,
            &json!({}),
        )
        .await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(r, 503, "Service unavailable").await;
    let (_, refused) = model.count("org_quota_state", Class::Mutating);
    assert!(refused >= 2, "the batch was refused and retried: {refused}");

    assert_eq!(blocker.await.unwrap(), 200);
    model.set_latencies(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let q = app.quota(&slug).await;
    assert_eq!(
        (q["runs_today"].clone(), q["active_run_ids"].clone()),
        (json!(0), json!([]))
    );
}

#[tokio::test]
async fn a_full_admission_queue_is_503_before_any_statement() {
    let fast = Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (model, app) = behind_limits(fast, |vars| {
        vars.insert("ADMISSION_QUEUE_MAX".into(), "1".into());
    })
    .await;
    let slug = unique_slug("queue-co");
    let key = app.org_with_key(&slug).await;
    app.set_limits(&slug, 100, 1000, 10).await;
    warm(&app, &key).await;
    model.set_latencies(Duration::from_millis(1500), Duration::ZERO, Duration::ZERO);

    // The first trigger's batch is in flight; one more may wait for the next batch.
    let first = tokio::spawn({
        let (client, url, key) = (
            app.client.clone(),
            trigger_url(&app, &slug, "test/sleep"),
            key.clone(),
        );
        async move { fire(&client, vec![url], &key).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let urls = (0..2)
        .map(|_| trigger_url(&app, &slug, "test/sleep"))
        .collect();
    let answers = fire(&app.client, urls, &key).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    statuses.sort();
    assert_eq!(statuses, [202, 503]);
    let refused = answers.iter().find(|(s, _)| *s == 503).unwrap();
    assert_eq!(refused.1["error"]["message"], "Service unavailable");
    assert_eq!(first.await.unwrap()[0].0, 202);
    assert_eq!(app.quota(&slug).await["runs_today"], 2);
}

#[tokio::test]
async fn a_duplicated_quota_row_neither_blocks_admission_nor_loosens_the_limits() {
    // Two instances onboarding the same org at once can both insert its quota row (BigQuery's
    // INSERT ... WHERE NOT EXISTS is not atomic): admission must stay exact with two rows.
    let app = spawn_app_with(|_| {}).await;
    app.bootstrap().await;
    let slug = unique_slug("twin-co");
    let key = app.org_with_key(&slug).await;
    app.set_limits(&slug, 100, 1000, 1).await;
    let meta = &app.meta_dataset;
    crate::helpers::Emulator::new()
        .sql(&format!(
            "INSERT INTO `{meta}.org_quota_state` SELECT * FROM `{meta}.org_quota_state` \
             WHERE org_slug = '{slug}'"
        ))
        .await;
    let client = reqwest::Client::new();
    let url = trigger_url(&app, &slug, "test/sleep5");
    // Three at once, again while a loaded suite's emulator answers all three 503 (a 503 counts
    // nothing, so the rounds add up to one admission).
    let mut answers = Vec::new();
    for _ in 0..5 {
        let round = fire(&client, vec![url.clone(), url.clone(), url.clone()], &key).await;
        let decided = round.iter().any(|(s, _)| *s != 503);
        answers.extend(round);
        if decided {
            break;
        }
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{answers:?}"
    );
    // The others are refused for the concurrency limit, or (a loaded suite's shared emulator
    // past a deadline) answered 503, which counts nothing either.
    assert!(
        statuses.iter().all(|s| matches!(s, 202 | 429 | 503)),
        "{answers:?}"
    );
    app.slots_free(&slug).await;
    let q = app.quota(&slug).await;
    assert_eq!(q["runs_today"], 1, "{q}");
    let again = fire(&client, vec![trigger_url(&app, &slug, "test/sleep")], &key).await;
    assert_eq!(again[0].0, 202, "{again:?}");
}
