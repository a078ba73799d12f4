//! Run logs for analysts, on a fixture of run events written straight into BigQuery with known
//! times, so every figure can be computed by hand.

use serde_json::{Value, json};

use crate::helpers::{Emulator, TestApp, assert_error, spawn_app, unique_slug};

struct Fixture {
    slug: String,
    key: String,
    /// Run ids r1..r6 in creation order.
    runs: Vec<String>,
}

/// (pipeline, created hh:mm, final status, seconds from RUNNING to the end, error class)
type FixtureRun = (
    &'static str,
    &'static str,
    Option<&'static str>,
    i64,
    Option<&'static str>,
);

const RUNS: &[FixtureRun] = &[
    ("p/a", "10:00", Some("SUCCEEDED"), 10, None),
    ("p/a", "11:00", Some("SUCCEEDED"), 20, None),
    ("p/a", "12:00", Some("FAILED"), 30, Some("bigquery")),
    ("p/a", "13:00", Some("FAILED"), 40, Some("assertion")),
    ("p/b", "14:00", Some("SUCCEEDED"), 5, None),
    ("p/b", "15:00", None, 0, None),
];

async fn fixture(app: &TestApp) -> Fixture {
    app.bootstrap().await;
    let slug = unique_slug("logs-co");
    let key = app.org_with_key(&slug).await;
    let meta = &app.meta_dataset;
    let mut values = Vec::new();
    let mut runs = Vec::new();
    for (pipeline, at, end, secs, class) in RUNS {
        let id = uuid::Uuid::new_v4().to_string();
        let created = format!("TIMESTAMP '2026-11-10 {at}:00+00'");
        let started = format!("TIMESTAMP_ADD({created}, INTERVAL 1 SECOND)");
        // An ended run's end event carries what it billed: 64 GiB per second it ran.
        let ev = |status: &str, time: &str, seq: i64, class: Option<&str>| {
            format!(
                "('{}', '{id}', '{slug}', '{pipeline}', '{status}', {time}, {seq}, {}, {}, {}, {})",
                uuid::Uuid::new_v4(),
                if seq == 0 { "'api'" } else { "NULL" },
                if seq == 0 { "'key:fixture'" } else { "NULL" },
                class.map(|c| format!("'{c}'")).unwrap_or("NULL".into()),
                if seq == 2 {
                    (secs << 36).to_string()
                } else {
                    "NULL".into()
                },
            )
        };
        values.push(ev("PENDING", &created, 0, None));
        values.push(ev("RUNNING", &started, 1, None));
        if let Some(end) = end {
            let ended = format!("TIMESTAMP_ADD({started}, INTERVAL {secs} SECOND)");
            values.push(ev(end, &ended, 2, *class));
            // A duplicate row, as a retried insert leaves behind.
            values.push(ev(end, &ended, 2, *class));
        }
        runs.push(id);
    }
    Emulator::new()
        .sql(&format!(
            "INSERT INTO `{meta}.pipeline_run_events` \
             (event_id, run_id, org_slug, pipeline_id, status, event_time, event_seq, trigger, triggered_by, error_class, bytes_billed) \
             VALUES {}",
            values.join(", ")
        ))
        .await;
    Fixture { slug, key, runs }
}

const WINDOW: &str = "since=2026-11-10T00:00:00Z&until=2026-11-11T00:00:00Z";

async fn list(app: &TestApp, f: &Fixture, query: &str) -> Value {
    let r = app
        .key_get(
            &format!("/api/v1/pipelines/{}/runs?{WINDOW}&{query}", f.slug),
            &f.key,
        )
        .await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

fn pick(f: &Fixture, which: &[usize]) -> Vec<String> {
    which.iter().map(|i| f.runs[i - 1].clone()).collect()
}

#[tokio::test]
async fn filters_and_their_combinations_select_the_right_runs_newest_first() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    assert_eq!(
        ids(&list(&app, &f, "").await),
        pick(&f, &[6, 5, 4, 3, 2, 1])
    );
    assert_eq!(
        ids(&list(&app, &f, "status=FAILED").await),
        pick(&f, &[4, 3])
    );
    assert_eq!(
        ids(&list(&app, &f, "pipeline_id=p/b").await),
        pick(&f, &[6, 5])
    );
    assert_eq!(
        ids(&list(&app, &f, "status=succeeded,FAILED&pipeline_id=p/a").await),
        pick(&f, &[4, 3, 2, 1])
    );
    assert_eq!(
        ids(&list(&app, &f, "status=RUNNING&trigger=api").await),
        pick(&f, &[6])
    );
    assert!(ids(&list(&app, &f, "trigger=schedule").await).is_empty());
    let narrow = app
        .key_get(
            &format!(
                "/api/v1/pipelines/{}/runs?since=2026-11-10T11:30:00Z&until=2026-11-10T14:30:00Z",
                f.slug
            ),
            &f.key,
        )
        .await;
    assert_eq!(ids(&narrow.json().await.unwrap()), pick(&f, &[5, 4, 3]));

    let page = list(&app, &f, "pipeline_id=p/a&status=FAILED").await;
    let newest = &page["runs"][0];
    assert_eq!(newest["status"], "FAILED");
    assert_eq!(newest["error_class"], "assertion");
    assert_eq!(newest["duration_ms"], 40_000);
    assert_eq!(newest["trigger"], "api");
    assert_eq!(newest["created_at"], "2026-11-10T13:00:00Z");
    assert_eq!(newest["started_at"], "2026-11-10T13:00:01Z");
    assert_eq!(newest["ended_at"], "2026-11-10T13:00:41Z");
    // Usage at admission, from the runs before it that day and month.
    assert_eq!(newest["runs_today_at_admission"], 4);
    assert_eq!(newest["runs_month_at_admission"], 4);
    let running = &list(&app, &f, "status=RUNNING").await["runs"][0];
    assert_eq!(running["runs_today_at_admission"], 6);
    assert_eq!(
        (&running["ended_at"], &running["duration_ms"]),
        (&Value::Null, &Value::Null)
    );
}

#[tokio::test]
async fn pagination_walks_every_run_once() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &token {
            None => "limit=2".to_string(),
            Some(t) => format!("limit=2&page_token={t}"),
        };
        let page = list(&app, &f, &query).await;
        pages += 1;
        seen.extend(ids(&page));
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, pick(&f, &[6, 5, 4, 3, 2, 1]));
}

#[tokio::test]
async fn tampered_foreign_or_unbounded_queries_are_400() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let token = list(&app, &f, "limit=2").await["next_page_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (payload, tag) = token.split_once('.').unwrap();
    let other = unique_slug("other-logs");
    let other_key = app.org_with_key(&other).await;
    let bad_queries = [
        format!("limit=2&page_token={payload}.AAAA{tag}"),
        format!("limit=2&page_token=x{token}"),
        format!("limit=3&page_token={token}"),
        format!("limit=2&status=FAILED&page_token={token}"),
        "since=2026-01-01T00:00:00Z&until=2026-03-01T00:00:00Z".to_string(),
        "since=2026-11-11T00:00:00Z&until=2026-11-10T00:00:00Z".to_string(),
        "since=yesterday".to_string(),
        "status=DONE".to_string(),
        "limit=101".to_string(),
        "pipeline_id=../x".to_string(),
        "trigger=cron".to_string(),
        "org_slug=someone".to_string(),
        "surprise=1".to_string(),
    ];
    for q in &bad_queries {
        let r = app
            .key_get(&format!("/api/v1/pipelines/{}/runs?{q}", f.slug), &f.key)
            .await;
        assert_error(r, 400, "Invalid request format").await;
    }
    // A token of org A does not page org B's list.
    let r = app
        .key_get(
            &format!("/api/v1/pipelines/{other}/runs?limit=2&page_token={token}"),
            &other_key,
        )
        .await;
    assert_error(r, 400, "Invalid request format").await;
    let r = app
        .key_get(&format!("/api/v1/pipelines/{}/runs", f.slug), &other_key)
        .await;
    assert_error(r, 403, "Cannot access another organization").await;
}

#[tokio::test]
async fn admins_list_runs_across_orgs() {
    let app = spawn_app().await;
    let a = fixture(&app).await;
    let b = fixture(&app).await;
    let all: Value = app
        .root_get(&format!("/api/v1/admin/runs?{WINDOW}&limit=100"))
        .await
        .json()
        .await
        .unwrap();
    let got = ids(&all);
    assert_eq!(got.len(), 12);
    assert!(
        a.runs
            .iter()
            .chain(b.runs.iter())
            .all(|id| got.contains(id))
    );
    let only_b: Value = app
        .root_get(&format!(
            "/api/v1/admin/runs?{WINDOW}&org_slug={}&status=FAILED",
            b.slug
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&only_b), pick(&b, &[4, 3]));
    assert_eq!(only_b["runs"][0]["org_slug"], b.slug.as_str());
    let r = app
        .key_get(&format!("/api/v1/admin/runs?{WINDOW}"), &a.key)
        .await;
    assert_error(r, 401, "Invalid or inactive API key").await;
}

#[tokio::test]
async fn stats_match_the_hand_computed_figures_with_each_runs_billed_bytes_counted_once() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let body: Value = app
        .key_get(
            &format!("/api/v1/pipelines/{}/stats?{WINDOW}", f.slug),
            &f.key,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["pipelines"],
        json!([
            {"pipeline_id": "p/a", "runs": 4, "succeeded": 2, "failed": 2, "cancelled": 0,
             "in_progress": 0, "success_rate": 0.5, "p50_ms": 25000.0, "p95_ms": 38500.0,
             "failures_by_class": {"assertion": 1, "bigquery": 1},
             "bytes_billed": 100_i64 << 36, "estimated_cost_usd": 39.0625},
            {"pipeline_id": "p/b", "runs": 2, "succeeded": 1, "failed": 0, "cancelled": 0,
             "in_progress": 1, "success_rate": 1.0, "p50_ms": 5000.0, "p95_ms": 5000.0,
             "failures_by_class": {}, "bytes_billed": 5_i64 << 36, "estimated_cost_usd": 1.953125}
        ])
    );
}

#[tokio::test]
async fn hourly_stats_give_each_pipeline_its_hours_and_refuse_a_window_over_7_days() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let r = app
        .key_get(
            &format!("/api/v1/pipelines/{}/stats/hourly?{WINDOW}", f.slug),
            &f.key,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["truncated"], false);
    let ended = |hour: &str, secs: i64, ok: bool, cost: f64| {
        json!({"pipeline_id": "p/a", "hour": format!("2026-11-10T{hour}:00:00Z"), "runs": 1,
               "succeeded": i64::from(ok), "failed": i64::from(!ok), "cancelled": 0,
               "success_rate": if ok { 1.0 } else { 0.0 },
               "p50_ms": (secs * 1000) as f64, "p95_ms": (secs * 1000) as f64,
               "bytes_billed": secs << 36, "estimated_cost_usd": cost})
    };
    assert_eq!(
        body["hours"],
        json!([
            ended("10", 10, true, 3.90625),
            ended("11", 20, true, 7.8125),
            ended("12", 30, false, 11.71875),
            ended("13", 40, false, 15.625),
            {"pipeline_id": "p/b", "hour": "2026-11-10T14:00:00Z", "runs": 1, "succeeded": 1,
             "failed": 0, "cancelled": 0, "success_rate": 1.0, "p50_ms": 5000.0,
             "p95_ms": 5000.0, "bytes_billed": 5_i64 << 36, "estimated_cost_usd": 1.953125},
            // Still running: counted, with no rate and no duration yet.
            {"pipeline_id": "p/b", "hour": "2026-11-10T15:00:00Z", "runs": 1, "succeeded": 0,
             "failed": 0, "cancelled": 0, "success_rate": null, "p50_ms": null,
             "p95_ms": null, "bytes_billed": 0, "estimated_cost_usd": 0.0}
        ])
    );
    let r = app
        .key_get(
            &format!(
                "/api/v1/pipelines/{}/stats/hourly?since=2026-11-03T00:00:00Z&until=2026-11-10T00:00:01Z",
                f.slug
            ),
            &f.key,
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["field"], "since", "{body}");
    assert_eq!(
        body["error"]["details"][0]["accepted"],
        "since and until at most 7 days apart for hourly figures"
    );
}

#[tokio::test]
async fn daily_stats_give_each_pipeline_its_day_with_the_hand_computed_figures() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let r = app
        .key_get(
            &format!("/api/v1/pipelines/{}/stats/daily?{WINDOW}", f.slug),
            &f.key,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["days"],
        json!([
            {"pipeline_id": "p/a", "day": "2026-11-10", "runs": 4, "succeeded": 2, "failed": 2,
             "cancelled": 0, "success_rate": 0.5, "p50_ms": 25000.0, "p95_ms": 38500.0,
             "bytes_billed": 100_i64 << 36, "estimated_cost_usd": 39.0625},
            {"pipeline_id": "p/b", "day": "2026-11-10", "runs": 2, "succeeded": 1, "failed": 0,
             "cancelled": 0, "success_rate": 1.0, "p50_ms": 5000.0, "p95_ms": 5000.0,
             "bytes_billed": 5_i64 << 36, "estimated_cost_usd": 1.953125}
        ])
    );
    // A window past the 31-day bound is refused like the other run reads.
    let r = app
        .key_get(
            &format!(
                "/api/v1/pipelines/{}/stats/daily?since=2026-01-01T00:00:00Z&until=2026-11-11T00:00:00Z",
                f.slug
            ),
            &f.key,
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn csv_and_ndjson_return_the_same_page() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let url = app.url(&format!(
        "/api/v1/pipelines/{}/runs?{WINDOW}&limit=3",
        f.slug
    ));
    let ndjson = app
        .client
        .get(&url)
        .header("X-API-Key", &f.key)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    assert!(ndjson.headers().contains_key("x-next-page-token"));
    let lines: Vec<Value> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids_nd: Vec<&str> = lines
        .iter()
        .map(|l| l["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids_nd,
        pick(&f, &[6, 5, 4])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    let csv = app
        .client
        .get(&url)
        .header("X-API-Key", &f.key)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "run_id,org_slug,pipeline_id,status,trigger,triggered_by,created_at,started_at,ended_at,duration_ms,error_class,error_summary,runs_today_at_admission,runs_month_at_admission,bytes_billed"
    );
    assert_eq!(rows.len(), 4);
    assert!(rows[2].starts_with(&format!(
        "{},{},p/b,SUCCEEDED,api,key:fixture,",
        f.runs[4], f.slug
    )));
    assert!(rows[3].contains(",40000,assertion,"));
}

#[tokio::test]
async fn the_views_give_the_same_answers_as_the_api() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let meta = &app.meta_dataset;
    let emulator = Emulator::new();
    let view_runs = emulator
        .sql(&format!(
            "SELECT run_id, status, duration_ms FROM `{meta}.v_pipeline_runs` \
             WHERE org_slug = '{}' ORDER BY created_at DESC LIMIT 100",
            f.slug
        ))
        .await;
    let api = list(&app, &f, "").await;
    let from_view: Vec<(String, String, String)> = view_runs["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["f"][0]["v"].as_str().unwrap().to_string(),
                r["f"][1]["v"].as_str().unwrap().to_string(),
                r["f"][2]["v"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let from_api: Vec<(String, String, String)> = api["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["duration_ms"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(from_view, from_api);

    let daily = emulator
        .sql(&format!(
            "SELECT pipeline_id, runs, succeeded, failed, p50_ms, p95_ms, bytes_billed FROM `{meta}.v_pipeline_daily_stats` \
             WHERE org_slug = '{}' AND day = DATE '2026-11-10' ORDER BY pipeline_id LIMIT 10",
            f.slug
        ))
        .await;
    let row = |i: usize| -> Vec<String> {
        daily["rows"][i]["f"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["v"].as_str().unwrap().to_string())
            .collect()
    };
    let (a_billed, b_billed) = ((100_i64 << 36).to_string(), (5_i64 << 36).to_string());
    assert_eq!(
        row(0),
        vec!["p/a", "4", "2", "2", "25000.0", "38500.0", &a_billed]
    );
    assert_eq!(
        row(1),
        vec!["p/b", "2", "1", "0", "5000.0", "5000.0", &b_billed]
    );

    // The table functions answer the same for a window, reading only the window's partitions.
    let in_window = emulator
        .sql(&format!(
            "SELECT run_id, status, duration_ms FROM \
             `{meta}.f_pipeline_runs`(TIMESTAMP '2026-11-10', TIMESTAMP '2026-11-11') \
             WHERE org_slug = '{}' ORDER BY created_at DESC LIMIT 100",
            f.slug
        ))
        .await;
    let view_day = emulator
        .sql(&format!(
            "SELECT run_id, status, duration_ms FROM `{meta}.v_pipeline_runs` \
             WHERE org_slug = '{}' AND created_at >= TIMESTAMP '2026-11-10' \
             AND created_at < TIMESTAMP '2026-11-11' ORDER BY created_at DESC LIMIT 100",
            f.slug
        ))
        .await;
    assert!(!view_day["rows"].as_array().unwrap().is_empty());
    assert_eq!(in_window["rows"], view_day["rows"]);
    let daily_fn = emulator
        .sql(&format!(
            "SELECT pipeline_id, runs, succeeded, failed, p50_ms, p95_ms, bytes_billed FROM \
             `{meta}.f_pipeline_daily_stats`(DATE '2026-11-10', DATE '2026-11-10') \
             WHERE org_slug = '{}' ORDER BY pipeline_id LIMIT 10",
            f.slug
        ))
        .await;
    assert_eq!(daily_fn["rows"], daily["rows"]);

    let usage = emulator
        .sql(&format!(
            "SELECT daily_limit, concurrent_limit, runs_today, active_runs FROM `{meta}.v_org_quota_usage` \
             WHERE org_slug = '{}' LIMIT 1",
            f.slug
        ))
        .await;
    let cells: Vec<&str> = usage["rows"][0]["f"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["v"].as_str().unwrap())
        .collect();
    assert_eq!(cells, vec!["6", "1", "0", "0"]);
}
