//! Schedules and backfills: enabled per org through the API, fired by every instance's
//! scheduler, each tick exactly once; missed ticks follow the catch-up policy; refused ticks are
//! recorded; backfills run one child per day with bounded parallelism.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};

use quarry::clock::Clock;

use crate::helpers::{Emulator, TestApp, assert_error, spawn_app_with, unique_slug};

fn scheduling(vars: &mut HashMap<String, String>) {
    vars.insert("SCHEDULER_ENABLED".into(), "true".into());
    vars.insert("SCHEDULER_INTERVAL_SECS".into(), "1".into());
    vars.insert("QUEUE_POLL_SECS".into(), "1".into());
}

async fn post(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::Response {
    app.key_post(path, key, &body).await
}

async fn enable(app: &TestApp, slug: &str, key: &str, schedule: &str) -> Value {
    let r = post(
        app,
        &format!("/api/v1/schedules/{slug}/enable"),
        key,
        json!({"pipeline_id": "test/ticker", "schedule": schedule}),
    )
    .await;
    assert_eq!(r.status(), 200, "enable {schedule}");
    r.json().await.unwrap()
}

/// (logical time, run id, PENDING events, status of the last event) of a schedule's runs.
async fn fired(
    app: &TestApp,
    slug: &str,
    schedule_id: &str,
) -> Vec<(DateTime<Utc>, String, i64, String)> {
    let body = Emulator::new()
        .sql(&format!(
            "SELECT UNIX_MICROS(MAX(logical_time)) AS t, run_id, COUNTIF(status = 'PENDING') AS pending, \
               ARRAY_AGG(status ORDER BY event_seq DESC, event_time DESC LIMIT 1)[OFFSET(0)] AS status \
             FROM `{meta}.pipeline_run_events` \
             WHERE org_slug = '{slug}' AND run_id IN ( \
               SELECT run_id FROM `{meta}.pipeline_run_events` WHERE schedule_id = '{schedule_id}') \
             GROUP BY run_id ORDER BY t LIMIT 1000",
            meta = app.meta_dataset
        ))
        .await;
    body["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let micros: i64 = r["f"][0]["v"].as_str().unwrap().parse().unwrap();
                    (
                        DateTime::from_timestamp_micros(micros).unwrap(),
                        r["f"][1]["v"].as_str().unwrap().to_string(),
                        r["f"][2]["v"].as_str().unwrap().parse().unwrap(),
                        r["f"][3]["v"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_org_lists_enables_pauses_and_resumes_schedules_and_every_change_is_audited() {
    let app = spawn_app_with(|_| {}).await;
    app.bootstrap().await;
    let slug = unique_slug("sched-co");
    let key = app.org_with_key(&slug).await;
    let list: Value = app
        .key_get(&format!("/api/v1/schedules/{slug}"), &key)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["schedule_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"test/ticker/minutely-latest"), "{ids:?}");
    // A schedule shows its parameters as its file declares them.
    let every_second = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["schedule_id"] == "test/ticker/every-second")
        .unwrap();
    assert_eq!(
        every_second["templates"],
        json!({"day": "{{ logical_date | minus_days(1) }}"})
    );
    assert_eq!(every_second["parameters"], json!({}));
    assert!(
        list["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "DISABLED")
    );

    // The org's own values are checked like a trigger's.
    let r = post(
        &app,
        &format!("/api/v1/schedules/{slug}/enable"),
        &key,
        json!({"pipeline_id": "test/ticker", "schedule": "minutely-latest", "parameters": {"day": "soon"}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["field"], "parameters.day");

    let on = enable(&app, &slug, &key, "minutely-latest").await;
    assert_eq!(on["status"], "ACTIVE");
    assert_eq!(on["catch_up"], "latest");
    assert!(on["next_tick"].as_str().unwrap().ends_with(":00Z"), "{on}");

    let pause = |path: &'static str| {
        let (app, slug, key) = (&app, slug.clone(), key.clone());
        async move {
            post(
                app,
                &format!("/api/v1/schedules/{slug}/{path}"),
                &key,
                json!({"pipeline_id": "test/ticker", "schedule": "minutely-latest"}),
            )
            .await
        }
    };
    let r = pause("pause").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "PAUSED");
    let r = pause("pause").await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["schedule_status"],
        "PAUSED"
    );
    let r = pause("resume").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ACTIVE");

    assert_error(
        post(
            &app,
            &format!("/api/v1/schedules/{slug}/enable"),
            &key,
            json!({"pipeline_id": "test/ticker", "schedule": "hourly"}),
        )
        .await,
        404,
        "Resource not found",
    )
    .await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit: Value = app
        .key_get(&format!("/api/v1/organizations/{slug}/audit-logs"), &key)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["audit_logs"]
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("schedule."))
        .collect();
    assert_eq!(
        actions,
        ["schedule.resume", "schedule.pause", "schedule.enable"]
    );
}

#[tokio::test]
#[ignore = "heavy (three instances, 60 ticks): make test runs it after the suite, alone"]
async fn three_instances_fire_each_tick_of_a_one_second_schedule_exactly_once() {
    let a = spawn_app_with(scheduling).await;
    a.bootstrap().await;
    let slug = unique_slug("tick-co");
    let key = a.org_with_key(&slug).await;
    let r = a
        .client
        .put(a.url(&format!("/api/v1/organizations/{slug}/quota")))
        .header("X-CA-Root-Key", &a.root_key)
        .json(&json!({"daily_limit": 1000, "monthly_limit": 10000, "concurrent_limit": 5, "queue_limit": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let meta = a.meta_dataset.clone();
    let mut others = Vec::new();
    for _ in 0..2 {
        let meta = meta.clone();
        others.push(
            spawn_app_with(move |vars| {
                scheduling(vars);
                vars.insert("META_DATASET".into(), meta);
            })
            .await,
        );
    }
    enable(&a, &slug, &key, "every-second").await;
    let id = "test/ticker/every-second";
    for _ in 0..240 {
        if fired(&a, &slug, id).await.len() >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Paused as a client would: a 503 (three instances firing every second keep BigQuery busy)
    // is retried after its pause, for up to a minute.
    let mut status = 0;
    let pausing = std::time::Instant::now();
    for attempt in 0.. {
        let r = post(
            &a,
            &format!("/api/v1/schedules/{slug}/pause"),
            &key,
            json!({"pipeline_id": "test/ticker", "schedule": "every-second"}),
        )
        .await;
        status = r.status().as_u16();
        // A 503 may have paused it: its retry then finds it paused (409).
        if status == 409 && attempt > 0 {
            status = 200;
        }
        if status != 503 || pausing.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(status, 200);
    // Every fired run ends (a pass that read the schedule before the pause may still fire a
    // tick or two); then the record is complete.
    let mut ticks = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ticks = fired(&a, &slug, id).await;
        let open: Vec<_> = ticks
            .iter()
            .filter(|t| matches!(t.3.as_str(), "QUEUED" | "PENDING" | "RUNNING"))
            .collect();
        if open.is_empty() {
            break;
        }
        for (_, run_id, _, _) in open {
            a.wait_until_ended(&slug, &key, run_id).await;
        }
    }
    assert!(ticks.len() >= 60, "{} ticks", ticks.len());
    let first = ticks.first().unwrap().0;
    let last = ticks.last().unwrap().0;
    assert_eq!(
        (last - first).num_seconds() + 1,
        ticks.len() as i64,
        "one run per second, none missing"
    );
    for (logical, run_id, pending, status) in &ticks {
        assert_eq!(
            *pending, 1,
            "tick {logical} ({run_id}) started {pending} times"
        );
        assert_eq!(status, "SUCCEEDED", "tick {logical}");
    }
    // The parameters come from the template: the day before the tick's date.
    let run = a.run(&slug, &key, &ticks[0].1).await;
    assert_eq!(run["trigger"], "schedule");
    assert_eq!(run["schedule_id"], id);
    assert_eq!(
        run["parameters"]["day"],
        (first.date_naive() - chrono::Days::new(1)).to_string()
    );
}

#[tokio::test]
async fn after_a_stop_missed_ticks_follow_each_schedules_catch_up_policy() {
    let a = spawn_app_with(scheduling).await;
    a.bootstrap().await;
    let slug = unique_slug("catch-co");
    let key = a.org_with_key(&slug).await;
    a.set_limits(&slug, 1000, 10000, 5).await;
    let enabled_at = Utc::now();
    for schedule in ["minutely-skip", "minutely-latest", "minutely-all"] {
        enable(&a, &slug, &key, schedule).await;
    }
    // The only instance stops; ten minutes pass before the next one starts.
    a.executor.shutdown().await;
    let meta = a.meta_dataset.clone();
    let b = spawn_app_with(move |vars| {
        scheduling(vars);
        vars.insert("META_DATASET".into(), meta);
    })
    .await;
    b.clock.advance(TimeDelta::minutes(10));
    let resumed_at = b.clock.now();
    let minute = resumed_at.duration_trunc(TimeDelta::minutes(1)).unwrap();
    let after_stop = |ticks: Vec<(DateTime<Utc>, String, i64, String)>| -> Vec<DateTime<Utc>> {
        ticks
            .into_iter()
            .map(|t| t.0)
            .filter(|t| *t > enabled_at + TimeDelta::minutes(2))
            .collect()
    };
    // The missed ticks only: a minute that begins while the spec runs brings a regular tick.
    let missed = |ticks: Vec<(DateTime<Utc>, String, i64, String)>| -> Vec<DateTime<Utc>> {
        after_stop(ticks)
            .into_iter()
            .filter(|t| *t <= minute)
            .collect()
    };
    // B's first scheduler passes fire the catch-up (a pass a second; a loaded emulator makes
    // each take longer): wait until the catch-up ticks are there, at most 15 s.
    let waiting = std::time::Instant::now();
    while waiting.elapsed() < Duration::from_secs(15) {
        let latest = missed(fired(&b, &slug, "test/ticker/minutely-latest").await);
        let all = missed(fired(&b, &slug, "test/ticker/minutely-all").await);
        if !latest.is_empty() && all.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        missed(fired(&b, &slug, "test/ticker/minutely-latest").await),
        [minute],
        "latest: only the most recent missed tick"
    );
    assert_eq!(
        missed(fired(&b, &slug, "test/ticker/minutely-all").await),
        [
            minute - TimeDelta::minutes(2),
            minute - TimeDelta::minutes(1),
            minute
        ],
        "all: the most recent max_catch_up (3) missed ticks, oldest first"
    );
    let skipped = after_stop(fired(&b, &slug, "test/ticker/minutely-skip").await);
    assert!(
        skipped
            .iter()
            .all(|t| *t > resumed_at - TimeDelta::seconds(3)),
        "skip: no missed tick runs: {skipped:?}"
    );
}

#[tokio::test]
async fn a_tick_refused_by_the_quota_is_recorded_with_its_reason() {
    let app = spawn_app_with(scheduling).await;
    app.bootstrap().await;
    let slug = unique_slug("refuse-co");
    let key = app.org_with_key(&slug).await;
    app.set_limits(&slug, 100, 1000, 1).await;
    let holder = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/test/long"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(holder.status(), 202);
    enable(&app, &slug, &key, "minutely-latest").await;
    app.clock.advance(TimeDelta::minutes(2));
    let mut ticks = Vec::new();
    for _ in 0..50 {
        ticks = fired(&app, &slug, "test/ticker/minutely-latest").await;
        if ticks.iter().any(|t| t.3 == "REFUSED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = ticks
        .iter()
        .find(|t| t.3 == "REFUSED")
        .expect("a refused tick");
    let run = app.run(&slug, &key, &refused.1).await;
    assert_eq!(run["status"], "REFUSED");
    assert_eq!(run["error_class"], "quota_concurrent");
    assert_eq!(run["trigger"], "schedule");
    assert_eq!(
        run["logical_time"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        refused.0
    );
    assert_eq!(refused.2, 0, "it never started");
}

#[tokio::test]
async fn a_backfill_of_10_days_runs_one_child_per_day_at_most_2_at_once() {
    let app = spawn_app_with(scheduling).await;
    app.bootstrap().await;
    let slug = unique_slug("fill-co");
    let key = app.org_with_key(&slug).await;
    app.set_limits(&slug, 100, 1000, 5).await;
    let r = post(
        &app,
        &format!("/api/v1/backfills/{slug}"),
        &key,
        json!({"pipeline_id": "test/nap", "parameter": "day", "from": "2026-10-01", "to": "2026-10-10", "max_parallel": 2}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let started: Value = r.json().await.unwrap();
    assert_eq!(started["days"], 10);
    let id = started["backfill_id"].as_str().unwrap().to_string();
    let mut view = Value::Null;
    for _ in 0..120 {
        view = app
            .key_get(&format!("/api/v1/backfills/{slug}/{id}"), &key)
            .await
            .json()
            .await
            .unwrap();
        if view["progress"]["succeeded"] == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(view["progress"], json!({"succeeded": 10}), "{view}");
    // Each child ran its own day, and never more than 2 ran at once.
    let mut spans = Vec::new();
    let mut days = Vec::new();
    for child in view["runs"].as_array().unwrap() {
        let run = app
            .run(&slug, &key, child["run_id"].as_str().unwrap())
            .await;
        assert_eq!(run["backfill_id"], id.as_str());
        assert_eq!(run["trigger"], "backfill");
        days.push(run["parameters"]["day"].as_str().unwrap().to_string());
        let at = |f: &str| run[f].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
        spans.push((at("started_at"), at("ended_at")));
    }
    let expected: Vec<String> = (1..=10).map(|d| format!("2026-10-{d:02}")).collect();
    assert_eq!(days, expected);
    let mut most = 0;
    for (start, _) in &spans {
        let at_once = spans
            .iter()
            .filter(|(s, e)| s <= start && start < e)
            .count();
        most = most.max(at_once);
    }
    assert!(most <= 2, "{most} children ran at once");
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for child in view["runs"].as_array().unwrap() {
        *by_status
            .entry(child["status"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(by_status, BTreeMap::from([("SUCCEEDED".to_string(), 10)]));
}

#[tokio::test]
async fn a_backfill_larger_than_the_remaining_quota_is_refused_naming_the_numbers() {
    let app = spawn_app_with(|_| {}).await;
    app.bootstrap().await;
    let slug = unique_slug("fill-no");
    let key = app.org_with_key(&slug).await;
    app.set_limits(&slug, 6, 180, 1).await;
    let r = post(
        &app,
        &format!("/api/v1/backfills/{slug}"),
        &key,
        json!({"pipeline_id": "test/nap", "parameter": "day", "from": "2026-10-01", "to": "2026-10-10"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Invalid request format");
    assert_eq!(
        body["error"]["details"][0],
        json!({"field": "to", "problem": "the range needs 10 runs; the daily quota has 6 left",
               "accepted": "a range of at most 6 days"})
    );
    let r = post(
        &app,
        &format!("/api/v1/backfills/{slug}"),
        &key,
        json!({"pipeline_id": "test/nap", "parameter": "n", "from": "2026-10-01", "to": "2026-10-02"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["field"], "parameter");
}
