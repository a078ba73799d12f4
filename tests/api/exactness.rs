//! Exactness under partial failure: a trigger answered with an error is not counted, a slot is
//! never reaped before its run could be recorded, and a run never reads ended before its steps
//! are readable. Each against the fault proxy, which holds or fails chosen BigQuery calls.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fault_proxy::{behind_proxy, lost_answer, refused};
use crate::helpers::{Emulator, TestApp, assert_error, spawn_app_with};
use crate::verbs::eventually;

fn trigger_path(slug: &str, pipeline: &str) -> String {
    format!("/api/v1/pipelines/run/{slug}/{pipeline}")
}

/// Triggers `test/sleep`; asserts 202 and returns the run id.
async fn started(app: &TestApp, slug: &str, key: &str) -> String {
    let r = app
        .key_post(&trigger_path(slug, "test/sleep"), key, &json!({}))
        .await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Polls the org's quota until `done` holds (at most 30 s); returns the one that did.
async fn quota_until(app: &TestApp, slug: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually("the quota settles", Duration::from_secs(30), || async {
        let q = app.quota(slug).await;
        if done(&q) { Ok(q) } else { Err(q.to_string()) }
    })
    .await
}

#[tokio::test]
async fn a_trigger_answered_503_because_its_decision_came_too_late_is_not_counted() {
    // A 10 s decision deadline: the later triggers below must each be decided within it while
    // the rest of the suite loads the emulator. Each waits for the batch in flight, then its
    // own: with 3 s, a loaded fresh clone's run answered twenty of them 503 in a row, and with
    // 5 s CI's did for the whole two minutes. BigQuery's deadline is raised to 20 s so that the
    // late batch below stays inside it.
    let (proxy, app, slug, key) = behind_proxy("late-co", |vars| {
        vars.insert("ADMISSION_TIMEOUT_SECS".into(), "10".into());
        vars.insert("BIGQUERY_API_DEADLINE_SECS".into(), "20".into());
    })
    .await;
    // The batch's UPDATE reaches BigQuery 13 s late (inside the 20 s BigQuery deadline) and
    // admits the run; its trigger gave up after 10 s (503). The refund's first batch fails
    // too: it is sent again, not dropped.
    proxy.hold_next_with("/queries", "\"reserve\"", Duration::from_millis(13_000));
    proxy.inject([refused("/queries", Some("\"refund\""))]);
    let r = app
        .key_post(&trigger_path(&slug, "test/sleep"), &key, &json!({}))
        .await;
    assert_eq!(r.headers()["retry-after"], "5");
    assert_error(r, 503, "Service unavailable").await;

    // Admitted late (3 s after its trigger's deadline), then refunded: the refund's first batch
    // fails, its second lands.
    let started = Instant::now();
    while !proxy.statuses("/queries").contains(&503) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no refund was sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q = quota_until(&app, &slug, |q| {
        q["active_run_ids"] == json!([]) && q["runs_today"] == 0
    })
    .await;
    assert_eq!(q["runs_month"], 0, "{q}");
    // The org can use the whole day; a trigger is counted once it is answered 202, whatever
    // 503s (the decision deadline) came before it, or 429s (a slot still held by an attempt
    // answered 503 whose refund has not landed yet).
    let mut answers = vec![];
    let started = Instant::now();
    while answers.last() != Some(&202) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never admitted: {answers:?}"
        );
        let r = app
            .key_post(&trigger_path(&slug, "test/sleep"), &key, &json!({}))
            .await;
        answers.push(r.status().as_u16());
        if r.status() != 202 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert!(
        answers.iter().all(|s| matches!(s, 202 | 429 | 503)),
        "{answers:?}"
    );
    app.slots_free(&slug).await;
    let q = quota_until(&app, &slug, |q| q["runs_today"] == 1).await;
    assert_eq!(q["runs_month"], 1, "{q}");
}

#[tokio::test]
async fn a_run_whose_pending_event_is_slow_to_land_is_not_reaped_by_another_instance() {
    let leases = |vars: &mut std::collections::HashMap<String, String>| {
        // A 3 s heartbeat timeout and a 25 s lease: under a loaded suite a 2 s timeout lost
        // beats. The PENDING event's 5 s hold is still far inside the lease.
        // The PENDING insert gets the usual 10 s deadline: held 5 s by the proxy, it can take
        // more than 6 s in a loaded suite (it did in a fresh clone's run).
        vars.insert("RUN_LEASE_SECS".into(), "25".into());
        vars.insert("HEARTBEAT_INTERVAL_SECS".into(), "1".into());
        vars.insert("HEARTBEAT_TIMEOUT_SECS".into(), "3".into());
    };
    let (proxy, a, slug, key) = behind_proxy("young-co", leases).await;
    // B shares A's meta dataset, talks to BigQuery directly and reaps every second.
    let meta = a.meta_dataset.clone();
    let _b = spawn_app_with(|vars| {
        leases(vars);
        vars.insert("META_DATASET".into(), meta);
        vars.insert("REAPER_INTERVAL_SECS".into(), "1".into());
    })
    .await;
    // A's PENDING event takes 5 s to land: the slot holds no event and no heartbeat meanwhile,
    // but it was admitted a moment ago, so B's reaper may not free it.
    proxy.hold_next(
        "/tables/pipeline_run_events/insertAll",
        Duration::from_secs(5),
    );
    let run_id = started(&a, &slug, &key).await;
    let done = a.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    a.slots_free(&slug).await;
    let orphaned = Emulator::new()
        .sql(&format!(
            "SELECT COUNT(*) FROM `{meta}.pipeline_run_events` WHERE run_id = '{run_id}' \
             AND status = 'ORPHANED' LIMIT 1",
            meta = a.meta_dataset
        ))
        .await;
    assert_eq!(
        orphaned["rows"][0]["f"][0]["v"], "0",
        "never reaped: {orphaned}"
    );
    assert_eq!(a.quota(&slug).await["runs_today"], 1);
}

#[tokio::test]
async fn a_run_never_reads_ended_before_its_steps_are_readable() {
    let (proxy, app, slug, key) = behind_proxy("steps-first-co", |_| {}).await;
    let run_id = started(&app, &slug, &key).await;
    // The step's rows take 3 s to land; the run's 1.5 s step ends meanwhile.
    proxy.hold_next("/tables/step_logs/insertAll", Duration::from_secs(3));
    let started = Instant::now();
    loop {
        let status = app.run(&slug, &key, &run_id).await["status"].clone();
        if status != "PENDING" && status != "RUNNING" {
            assert_eq!(status, "SUCCEEDED");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The moment it reads SUCCEEDED, its step attempt reads SUCCEEDED too.
    let steps: Value = app
        .key_get(
            &format!("/api/v1/pipelines/{slug}/runs/{run_id}/steps"),
            &key,
        )
        .await
        .json()
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("nap", "SUCCEEDED")], "{steps}");
}

#[tokio::test]
async fn a_queued_run_whose_dequeue_answer_is_lost_still_ends_cancelled_and_never_starts() {
    let (proxy, app, slug, key) = behind_proxy("lost-dequeue-co", |_| {}).await;
    app.set_limits(&slug, 50, 500, 1).await;
    let holder = app.hold_the_slot(&slug, &key).await;
    let queued: Value = app.queue_run(&slug, &key, 0).await.json().await.unwrap();
    assert_eq!(queued["status"], "QUEUED");
    let run_id = queued["run_id"].as_str().unwrap();
    // The dequeue takes effect but its answer is lost; its retry finds the run gone and says
    // it was not waiting.
    proxy.inject([lost_answer("/queries", Some("id != @run_id"))]);
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/{slug}/runs/{run_id}/cancel"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        proxy
            .statuses("/queries")
            .iter()
            .filter(|s| **s == 503)
            .count(),
        1
    );
    app.free_the_slot(&slug, &key, &holder).await;
    let cancelled = app.run(&slug, &key, run_id).await;
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    assert!(cancelled["started_at"].is_null(), "it never started");
    app.slots_free(&slug).await;
    let q = app.quota(&slug).await;
    assert_eq!(q["queued_run_ids"], json!([]), "{q}");
    assert_eq!(q["runs_today"], 1, "only the holder started: {q}");
}

/// An app whose reaper looks every second and reaps after a 16-s lease, an org of it, and a run
/// of that org admitted (and counted) an hour ago whose slot no instance holds: (app, org, its
/// key, the run id).
async fn a_slot_nobody_holds(prefix: &str) -> (TestApp, String, String, String) {
    let app = spawn_app_with(|vars| {
        // The lease outlasts the PENDING insert's deadline (10 s), or settings refuse it.
        vars.insert("RUN_LEASE_SECS".into(), "16".into());
        vars.insert("HEARTBEAT_INTERVAL_SECS".into(), "1".into());
        vars.insert("HEARTBEAT_TIMEOUT_SECS".into(), "1".into());
        vars.insert("REAPER_INTERVAL_SECS".into(), "1".into());
    })
    .await;
    app.bootstrap().await;
    let slug = crate::helpers::unique_slug(prefix);
    let key = app.org_with_key(&slug).await;
    let meta = &app.meta_dataset;
    let run_id = uuid::Uuid::new_v4().to_string();
    let admitted_micros = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp_micros();
    Emulator::new()
        .sql(&format!(
            "UPDATE `{meta}.org_quota_state` SET day = CURRENT_DATE(), runs_today = 1, \
             month = DATE_TRUNC(CURRENT_DATE(), MONTH), runs_month = 1, \
             active_run_ids = ['{run_id}'], admitted_by = ['{run_id}/{admitted_micros}_batch'] \
             WHERE org_slug = '{slug}'"
        ))
        .await;
    (app, slug, key, run_id)
}

/// Writes an event of the run straight to the events table: (seq, status, error class), dated
/// `hours_ago`.
async fn event_of(
    app: &TestApp,
    slug: &str,
    run_id: &str,
    event: (i64, &str, Option<&str>),
    hours_ago: i64,
) {
    let meta = &app.meta_dataset;
    let (seq, status, class) = event;
    let class = class.map_or("NULL".to_string(), |c| format!("'{c}'"));
    Emulator::new()
        .sql(&format!(
            "INSERT INTO `{meta}.pipeline_run_events` \
             (event_id, run_id, org_slug, pipeline_id, status, event_time, event_seq, \
              error_class) VALUES \
             ('{run_id}:{seq}', '{run_id}', '{slug}', 'test/sleep', '{status}', \
              TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {hours_ago} HOUR), {seq}, {class})"
        ))
        .await;
}

#[tokio::test]
async fn a_slot_held_by_a_run_cancelled_before_it_started_is_reaped_with_its_count_given_back() {
    // Found by the soak: a run cancelled while it waited in the queue, then admitted from the
    // queue by a batch whose answer was lost. No instance knows it holds a slot; its last event
    // is CANCELLED, and it never had a PENDING one. The reaper frees the slot a lease later and,
    // since the run never started, gives its count back.
    // Admitted (and counted) an hour ago; queued, then cancelled, before that.
    let (app, slug, _, run_id) = a_slot_nobody_holds("cancelled-co").await;
    for event in [(1, "QUEUED", None), (2, "CANCELLED", None)] {
        event_of(&app, &slug, &run_id, event, 2).await;
    }
    let q = quota_until(&app, &slug, |q| q["active_run_ids"] == json!([])).await;
    assert_eq!(
        (q["runs_today"].clone(), q["runs_month"].clone()),
        (json!(0), json!(0)),
        "a run that never started is not counted: {q}"
    );
}

#[tokio::test]
async fn a_slot_held_by_a_run_whose_end_says_it_never_started_is_reaped_with_its_count_given_back()
{
    // Found by the soak (runs_today one more than the runs started): a PENDING insert whose
    // answer was lost (the row landed), so the trigger wrote the run's end as "admission" (it
    // never started) and was answered 503; its refund never landed (its instance was paused,
    // then killed). The reaper read "a PENDING event" as started and kept the count.
    let (app, slug, _, run_id) = a_slot_nobody_holds("unstarted-co").await;
    for event in [(0, "PENDING", None), (2, "FAILED", Some("admission"))] {
        event_of(&app, &slug, &run_id, event, 2).await;
    }
    let q = quota_until(&app, &slug, |q| q["active_run_ids"] == json!([])).await;
    assert_eq!(
        (q["runs_today"].clone(), q["runs_month"].clone()),
        (json!(0), json!(0)),
        "a run whose end says it never started is not counted: {q}"
    );
}

#[tokio::test]
async fn a_run_reaped_before_it_started_ends_saying_so_so_a_late_pending_event_leaves_it_uncounted()
{
    // An instance paused for longer than a lease between a run's admission and its PENDING
    // insert: another instance's reaper ends the run and gives its count back. When the paused
    // instance resumes, its PENDING row lands. The run's end must say it never started, or it
    // reads as a started run that is not counted.
    let (app, slug, key, run_id) = a_slot_nobody_holds("paused-co").await;
    let q = quota_until(&app, &slug, |q| q["active_run_ids"] == json!([])).await;
    assert_eq!(
        (q["runs_today"].clone(), q["runs_month"].clone()),
        (json!(0), json!(0)),
        "{q}"
    );
    // The paused instance's PENDING row lands after the reap.
    event_of(&app, &slug, &run_id, (0, "PENDING", None), 1).await;
    let run = eventually("the reaped run reads", Duration::from_secs(30), || async {
        let r = app
            .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), &key)
            .await;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if body["status"] == "ORPHANED" {
            Ok(body)
        } else {
            Err(body.to_string())
        }
    })
    .await;
    assert_eq!(
        (run["error_class"].clone(), run["status"].clone()),
        (json!("admission"), json!("ORPHANED")),
        "its end says it never started: {run}"
    );
}

#[tokio::test]
async fn a_pending_event_that_lands_past_one_deadline_after_launch_leaves_its_run_unstarted() {
    // A run is launched within a lease of its batch less one BigQuery deadline, so that its
    // PENDING insert lands before any reaper may free its slot. But that insert may first wait
    // for another flush's step rows (the events' flush writes them first), each call within
    // its deadline, the two past it. Landed that late, the run may have been reaped and
    // refunded already: it does not start, its end says so, and its trigger is answered 503.
    let (proxy, app, slug, key) = behind_proxy("late-pending-co", |vars| {
        vars.insert("BIGQUERY_API_DEADLINE_SECS".into(), "8".into());
        vars.insert("RUN_LEASE_SECS".into(), "16".into());
        vars.insert("HEARTBEAT_INTERVAL_SECS".into(), "1".into());
        vars.insert("HEARTBEAT_TIMEOUT_SECS".into(), "1".into());
        // Buffered rows wait: the running run's rows are still queued when B's PENDING is.
        vars.insert("RUN_LOG_FLUSH_MS".into(), "60000".into());
    })
    .await;
    app.set_limits(&slug, 100, 1000, 5).await;
    // A's step is running (for 30 s), its RUNNING rows (event and step) queued.
    let a = app.started(&slug, &key, "test/long").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // B's PENDING flush writes A's step row first (held 5 s), then the events (held 5 s): each
    // call within the 8-s deadline, the two past it.
    proxy.hold_next_with("step_logs", "\"RUNNING\"", Duration::from_secs(5));
    proxy.hold_next_with("pipeline_run_events", "\"PENDING\"", Duration::from_secs(5));
    let r = app
        .key_post(&trigger_path(&slug, "test/sleep"), &key, &json!({}))
        .await;
    assert!(proxy.holding_all(), "both writes were held");
    assert_error(r, 503, "Service unavailable").await;
    assert_eq!(app.cancel(&slug, &key, &a).await.status(), 202);
    app.wait_until_ended(&slug, &key, &a).await;
    app.slots_free(&slug).await;
    assert_eq!(app.quota(&slug).await["runs_today"], 1, "only A started");
}

#[tokio::test]
async fn a_reservation_whose_trigger_stopped_waiting_is_left_out_of_the_next_batch() {
    let (proxy, app, slug, key) = behind_proxy("abandoned-co", |vars| {
        vars.insert("ADMISSION_TIMEOUT_SECS".into(), "3".into());
    })
    .await;
    // Operations of `kind` the coordinator's batches carried (counted as a batch is sent).
    let sent = |kind: &'static str| {
        let app = &app;
        async move {
            app.counter(&format!(
                "quarry_admission_operations_total{{kind=\"{kind}\"}}"
            ))
            .await
        }
    };
    let (reserves, releases) = (sent("reserve").await, sent("release").await);
    // A's batch reaches BigQuery 6 s late. B asks while it is held and waits behind it; both
    // triggers give up after 3 s (503). When A's batch lands, B's reservation has nobody to answer: it
    // is left out, so B takes no slot that only a refund would give back.
    proxy.hold_next_with("/queries", "\"reserve\"", Duration::from_secs(6));
    let (path, body) = (trigger_path(&slug, "test/sleep"), json!({}));
    let a = app.key_post(&path, &key, &body);
    let b = async {
        // Once A's batch is held (a loaded suite can take longer than a fixed pause to get
        // it there, and B would then ride in the same batch).
        eventually("A's batch is held", Duration::from_secs(30), || async {
            match proxy.holding_all() {
                true => Ok(()),
                false => Err("not yet".to_string()),
            }
        })
        .await;
        app.key_post(&path, &key, &body).await
    };
    let (a, b) = tokio::join!(a, b);
    assert_error(a, 503, "Service unavailable").await;
    assert_error(b, 503, "Service unavailable").await;
    // A's batch lands at 6 s and admits A, whose refund is the next batch's: B, waiting since
    // A's batch was held, would ride in it or before it.
    eventually("A is refunded", Duration::from_secs(30), || async {
        match sent("release").await {
            n if n == releases => Err(format!("{n} releases sent")),
            _ => Ok(()),
        }
    })
    .await;
    assert_eq!(
        sent("reserve").await - reserves,
        1,
        "only A's reservation was sent"
    );
    let q = quota_until(&app, &slug, |q| {
        q["active_run_ids"] == json!([]) && q["runs_today"] == 0
    })
    .await;
    assert_eq!(q["runs_month"], 0, "{q}");
}

/// Runs the admission statement (`sql/quota/admit_batch.sql`) once, as batch `batch`, with
/// `ops` as (run, kind) for `slug`: what one coordinator batch sends.
async fn admission_statement(app: &TestApp, slug: &str, batch: &str, ops: &[(&str, &str)]) {
    use quarry::warehouse::Param;
    let now = chrono::Utc::now();
    let today = now.date_naive();
    let month_start = chrono::NaiveDate::from_ymd_opt(
        chrono::Datelike::year(&today),
        chrono::Datelike::month(&today),
        1,
    )
    .unwrap();
    let params = vec![
        Param::date("today", today),
        Param::date("month_start", month_start),
        Param::string("batch_id", format!("{}_{batch}", now.timestamp_micros())),
        Param::timestamp("now", now),
        Param::string_array("op_orgs", ops.iter().map(|_| slug.to_string()).collect()),
        Param::string_array("op_runs", ops.iter().map(|(r, _)| r.to_string()).collect()),
        Param::string_array("op_kinds", ops.iter().map(|(_, k)| k.to_string()).collect()),
    ];
    app.warehouse
        .execute(&quarry::warehouse::sql::QUOTA_ADMIT_BATCH, &params)
        .await
        .expect("the admission statement runs");
}

/// The mark a batch leaves on the runs it admits (`run_id/<micros>_<batch>`).
async fn admitted_by(slug: &str, meta: &str, run: &str) -> String {
    let rows = Emulator::new()
        .rows(&format!(
            "SELECT m FROM `{meta}.org_quota_state`, UNNEST(admitted_by) AS m \
             WHERE org_slug = '{slug}' AND STARTS_WITH(m, '{run}/') LIMIT 1"
        ))
        .await;
    let mark = rows.first().map(|r| r[0].clone()).unwrap_or_default();
    mark.split_once('/')
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_clean_up_of_one_admission_never_frees_or_uncounts_a_later_admission_of_the_same_run() {
    // Found by the soak: an Idempotency-Key's first attempt was admitted by a batch whose answer
    // came too late (the trigger was answered 503, so the admission is cleaned up with a refund),
    // the retry admitted the same run id once that slot was free, and a late repeat of the first
    // clean-up then freed the retry's slot and gave back its count while the run executed
    // (runs_today 5 for 7 runs started). A clean-up names the batch whose admission it undoes.
    let app = spawn_app_with(|_| {}).await;
    let (slug, _) = app.new_org("cleanup-co").await;
    let meta = app.meta_dataset.clone();
    let usage = |q: &Value| (q["active_run_ids"].clone(), q["runs_today"].clone());

    admission_statement(&app, &slug, "first", &[("r1", "reserve")]).await;
    let first = admitted_by(&slug, &meta, "r1").await;
    assert!(first.ends_with("_first"), "{first}");
    assert_eq!(usage(&app.quota(&slug).await), (json!(["r1"]), json!(1)));

    let cleanup = format!("r1|{first}");
    admission_statement(&app, &slug, "c1", &[(&cleanup, "refund")]).await;
    assert_eq!(usage(&app.quota(&slug).await), (json!([]), json!(0)));

    admission_statement(&app, &slug, "retry", &[("r1", "reserve")]).await;
    let retry = admitted_by(&slug, &meta, "r1").await;
    assert!(retry.ends_with("_retry"), "{retry}");
    assert_eq!(usage(&app.quota(&slug).await), (json!(["r1"]), json!(1)));

    // The first admission's clean-up again (retried after a lost answer): nothing to undo.
    admission_statement(&app, &slug, "c2", &[(&cleanup, "refund")]).await;
    assert_eq!(
        usage(&app.quota(&slug).await),
        (json!(["r1"]), json!(1)),
        "the retry's slot and count stand"
    );

    // The run's own end frees whatever slot the id holds, and keeps its count.
    admission_statement(&app, &slug, "end", &[("r1", "release")]).await;
    assert_eq!(usage(&app.quota(&slug).await), (json!([]), json!(1)));
}

#[tokio::test]
async fn a_run_admitted_too_late_to_be_recorded_within_a_lease_of_its_batch_is_not_launched() {
    // A 12 s lease and a 10 s API deadline: an admission answered more than 2 s after its batch
    // could write its PENDING event after another instance's reaper may free the slot (a slot
    // with no event is stale a lease after its batch). Such a run is not launched: it is
    // released with its count and its trigger answered 503, although the decision came well
    // within the 20 s admission timeout.
    let (proxy, app, slug, key) = behind_proxy("too-late-co", |vars| {
        vars.insert("RUN_LEASE_SECS".into(), "12".into());
        vars.insert("HEARTBEAT_INTERVAL_SECS".into(), "1".into());
        vars.insert("HEARTBEAT_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    proxy.hold_next_with("/queries", "\"reserve\"", Duration::from_millis(3500));
    let r = app
        .key_post(&trigger_path(&slug, "test/sleep"), &key, &json!({}))
        .await;
    assert_eq!(r.headers()["retry-after"], "5");
    assert_error(r, 503, "Service unavailable").await;
    let q = quota_until(&app, &slug, |q| {
        q["active_run_ids"] == json!([]) && q["runs_today"] == 0
    })
    .await;
    assert_eq!(q["runs_month"], 0, "{q}");
    let events = Emulator::new()
        .rows(&format!(
            "SELECT COUNT(*) FROM `{}.pipeline_run_events` WHERE org_slug = '{slug}' LIMIT 1",
            app.meta_dataset
        ))
        .await;
    assert_eq!(events[0][0], "0", "nothing was recorded: it never started");
}

#[tokio::test]
async fn a_queued_run_admitted_by_a_release_whose_answer_was_lost_still_starts() {
    let (proxy, app, slug, key) = behind_proxy("lost-drain-co", |_| {}).await;
    app.set_limits(&slug, 100, 1000, 1).await;
    let holder = app.hold_the_slot(&slug, &key).await;
    let r = app.queue_run(&slug, &key, 1).await;
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    assert_eq!(queued["status"], "QUEUED", "{queued}");
    // The batch that releases the holder's slot admits the queued run; its answer is lost, and
    // its retry finds the work done (no row changed). The run is known only by the batch's
    // marks: the batch reads them back, and the run starts.
    proxy.inject([lost_answer("/queries", Some("\"release\""))]);
    app.free_the_slot(&slug, &key, &holder).await;
    let run = app
        .wait_until_ended(&slug, &key, queued["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    let q = quota_until(&app, &slug, |q| q["active_run_ids"] == json!([])).await;
    assert_eq!(q["runs_today"], 2, "the holder and the queued run: {q}");
}

#[tokio::test]
async fn a_queued_run_whose_definition_bigquery_fails_to_read_for_a_while_starts_once_it_answers() {
    // No retry inside a call: each read of the queued run's definition is one request, and the
    // first six fail. The run was admitted (its slot is held for it), so the starter keeps
    // reading for as long as it could still be launched, and it runs as soon as BigQuery
    // answers: it is not left QUEUED for the reaper to end ORPHANED a lease later.
    let (proxy, app, slug, key) = behind_proxy("unread-def-co", |vars| {
        vars.insert("BIGQUERY_MAX_RETRIES".into(), "0".into());
    })
    .await;
    app.set_limits(&slug, 100, 1000, 1).await;
    let holder = app.hold_the_slot(&slug, &key).await;
    let r = app.queue_run(&slug, &key, 1).await;
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    assert_eq!(queued["status"], "QUEUED", "{queued}");
    let run_id = queued["run_id"].as_str().unwrap().to_string();
    // `later_events` is in the definitions read only (sql/runs/queued_definitions.sql).
    proxy.inject((0..6).map(|_| refused("/queries", Some("later_events"))));
    app.free_the_slot(&slug, &key, &holder).await;
    // (The reaper would end it ORPHANED no sooner than a lease, 180 s, after its admission.)
    let run = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(proxy.faults_left(), 0, "all six reads failed first");
    let q = quota_until(&app, &slug, |q| q["active_run_ids"] == json!([])).await;
    assert_eq!(q["runs_today"], 2, "the holder and the queued run: {q}");
}
