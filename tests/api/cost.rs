//! Cost attribution: every BigQuery job Quarry creates carries the five `quarry_*` labels (org,
//! pipeline, run, step, kind), checked on what the BigQuery model received (the emulator
//! ignores labels).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bq_limits::{LabelledJob, Limits, LimitsModel};
use serde_json::{Value, json};

use crate::helpers::{TestApp, fixture, of_file, spawn_behind_model};
use crate::verbs::eventually;

const KEYS: [&str; 5] = [
    "quarry_org",
    "quarry_pipeline",
    "quarry_run",
    "quarry_step",
    "quarry_kind",
];

/// An org on an instance whose BigQuery is the model (with the exactly-once fixtures'
/// pipelines): the model sees every job the instance creates.
async fn behind_model(prefix: &str) -> (LimitsModel, TestApp, String, String) {
    behind_model_with(prefix, |_| {}).await
}

/// [`behind_model`] with more settings.
async fn behind_model_with(
    prefix: &str,
    more: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (LimitsModel, TestApp, String, String) {
    let (model, app) = spawn_behind_model(
        Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO),
        |vars| {
            vars.insert("PIPELINES_DIR".into(), fixture("exactly_once/pipelines"));
            vars.insert("PIPELINE_SQL_DIR".into(), fixture("exactly_once/sql"));
            more(vars);
        },
    )
    .await;
    let (slug, key) = app.new_org(prefix).await;
    (model, app, slug, key)
}

fn labels(pairs: [(&str, &str); 5]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn every_job_of_a_run_of_admission_of_the_live_model_and_of_an_api_read_carries_its_five_labels()
 {
    let (model, app, slug, key) = behind_model("labelled-co").await;
    let run_id = app.started(&slug, &key, "test/append").await;
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let steps = app.steps(&slug, &key, &run_id).await;
    assert_eq!(steps.len(), 2, "{steps:?}");

    let jobs = model.labelled_jobs();
    assert!(jobs.len() > 5, "{jobs:?}");
    for job in &jobs {
        let keys: Vec<&str> = job.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, {
            let mut k = KEYS.to_vec();
            k.sort();
            k
        });
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        for value in job.labels.values() {
            assert!(value.len() <= 63 && value.chars().all(valid), "{job:?}");
        }
    }
    // The steps' jobs: the tenant's work, with its pipeline (`test/append` made valid), run and
    // step.
    let pipeline = jobs
        .iter()
        .find(|j| j.labels["quarry_kind"] == "step")
        .map(|j| j.labels["quarry_pipeline"].clone())
        .unwrap();
    assert!(pipeline.starts_with("test_append-"), "{pipeline}");
    let step_jobs: Vec<&LabelledJob> = jobs
        .iter()
        .filter(|j| j.query.contains("appends`"))
        .collect();
    let step_labels: Vec<&BTreeMap<String, String>> = step_jobs.iter().map(|j| &j.labels).collect();
    assert_eq!(
        step_labels,
        [
            &labels([
                ("quarry_org", &slug),
                ("quarry_pipeline", &pipeline),
                ("quarry_run", &run_id),
                ("quarry_step", "create"),
                ("quarry_kind", "step"),
            ]),
            &labels([
                ("quarry_org", &slug),
                ("quarry_pipeline", &pipeline),
                ("quarry_run", &run_id),
                ("quarry_step", "append"),
                ("quarry_kind", "step"),
            ]),
        ]
    );
    // Upkeep: admission, for every org of its batch at once; and the instance's live model,
    // whose one poll reads every run looked at, of any org.
    let upkeep = labels([
        ("quarry_org", ""),
        ("quarry_pipeline", ""),
        ("quarry_run", ""),
        ("quarry_step", ""),
        ("quarry_kind", "bookkeeping"),
    ]);
    for file in ["quota/admit_batch.sql", "runs/by_ids_with_steps.sql"] {
        let upkept = of_file(&jobs, file);
        assert!(!upkept.is_empty(), "no job of {file}");
        for job in upkept {
            assert_eq!(job.labels, upkeep, "{file}");
        }
    }
    // A read of the org's own that an API request makes (its stats) is the org's request.
    app.stats_body(&slug, &key, "stats").await;
    let jobs = model.labelled_jobs();
    let reads = of_file(&jobs, "runs/stats_by_pipeline.sql");
    assert!(!reads.is_empty());
    for job in reads {
        assert_eq!(
            job.labels,
            labels([
                ("quarry_org", &slug),
                ("quarry_pipeline", ""),
                ("quarry_run", ""),
                ("quarry_step", ""),
                ("quarry_kind", "api"),
            ])
        );
    }
    // The key lookup comes before anyone knows the org: an API job with no org.
    let lookups = of_file(&jobs, "auth/key_by_hash.sql");
    assert!(!lookups.is_empty());
    assert!(
        lookups
            .iter()
            .all(|j| j.labels["quarry_kind"] == "api" && j.labels["quarry_org"].is_empty()),
        "{lookups:?}"
    );
}

#[tokio::test]
async fn a_step_over_its_cap_fails_cost_cap_without_a_retry() {
    let (model, app, slug, key) = behind_model("capped-co").await;
    // The append would scan a tebibyte; its step allows 10 MiB a job.
    model.bill("INSERT INTO", 1 << 40);
    let run_id = app.started(&slug, &key, "test/capped").await;
    let done = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    assert_eq!(done["error_class"], "cost_cap", "{done}");
    let summary = done["error_summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("max_bytes_billed: 10485760 bytes, 10.0 MiB"),
        "the run's error names the cap: {summary}"
    );
    assert_eq!(
        app.steps(&slug, &key, &run_id).await,
        [
            ("create".to_string(), 1, "SUCCEEDED".to_string()),
            ("append".to_string(), 1, "FAILED".to_string()),
        ],
        "one attempt: the same job would be refused again"
    );
    // Sent with its cap; the other step with its org's (STARTER: a tebibyte per job, and as
    // much left of its daily budget). Nothing was written.
    let jobs = model.labelled_jobs();
    let caps: Vec<(String, Option<String>)> = jobs
        .iter()
        .filter(|j| j.labels["quarry_kind"] == "step")
        .map(|j| {
            (
                j.labels["quarry_step"].clone(),
                j.maximum_bytes_billed.clone(),
            )
        })
        .collect();
    assert_eq!(
        caps,
        [
            ("create".to_string(), Some((1_u64 << 40).to_string())),
            ("append".to_string(), Some("10485760".to_string())),
        ]
    );
    let rows = crate::helpers::Emulator::new()
        .sql(&format!(
            "SELECT COUNT(*) FROM `{}.appends` LIMIT 1",
            slug.replace('-', "_")
        ))
        .await;
    assert_eq!(rows["rows"][0]["f"][0]["v"], "0", "{rows}");
}

const TIB: i64 = 1 << 40;

#[tokio::test]
async fn a_backfill_under_a_daily_bytes_budget_stops_at_the_budget_and_refuses_the_other_days() {
    let (model, app, slug, key) = behind_model_with("budget-co", |vars| {
        vars.insert("SCHEDULER_ENABLED".into(), "true".into());
        vars.insert("SCHEDULER_INTERVAL_SECS".into(), "1".into());
    })
    .await;
    // The service's clock reads noon of today (UTC): the budget is a day's, and a spec that
    // crossed midnight would bill its runs on two days (in CI: 11 runs, one on each side).
    let noon = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    app.clock.set(noon);
    // Each day's scan bills a tebibyte; the org may bill ten a day.
    model.bill("scanned_day", TIB as u64);
    let quota = app
        .set_quota(
            &slug,
            &json!({"daily_limit": 100, "monthly_limit": 1000, "concurrent_limit": 1,
                    "bytes_daily_limit": 10 * TIB, "bytes_monthly_limit": 100 * TIB}),
        )
        .await;
    assert_eq!(quota["bytes_daily_limit"], 10 * TIB, "{quota}");
    assert_eq!(quota["bytes_today"], 0, "{quota}");
    let r = app
        .key_post(
            &format!("/api/v1/backfills/{slug}"),
            &key,
            &json!({"pipeline_id": "test/daily_scan", "parameter": "day",
                    "from": "2026-10-01", "to": "2026-10-30"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["backfill_id"]
        .as_str()
        .unwrap()
        .to_string();
    let view = eventually(
        "every day of the backfill ended",
        Duration::from_secs(300),
        || async {
            let r = app
                .key_get(&format!("/api/v1/backfills/{slug}/{id}"), &key)
                .await;
            let view: Value = r.json().await.map_err(|e| e.to_string())?;
            let ended = |s: &str| view["progress"][s].as_u64().unwrap_or(0);
            if ended("succeeded") + ended("refused") == 30 {
                Ok(view)
            } else {
                // A look is two queries on the emulator every spec shares: one every 2 s.
                tokio::time::sleep(Duration::from_secs(2)).await;
                Err(view["progress"].to_string())
            }
        },
    )
    .await;
    // One run at a time: the run that reaches the budget is the last one admitted, exactly.
    assert_eq!(
        view["progress"],
        json!({"succeeded": 10, "refused": 20}),
        "{view}"
    );
    let runs = view["runs"].as_array().unwrap();
    for (i, child) in runs.iter().enumerate() {
        let expected = if i < 10 { "SUCCEEDED" } else { "REFUSED" };
        assert_eq!(child["status"], expected, "day {}: {view}", child["day"]);
    }
    let refused = app
        .run(&slug, &key, runs[10]["run_id"].as_str().unwrap())
        .await;
    assert_eq!(refused["error_class"], "quota_bytes_daily", "{refused}");
    assert_eq!(
        refused["error_summary"], "refused: the bytes_daily limit is reached",
        "{refused}"
    );
    // Each run's billed bytes came from its job's statistics, and the budget counts them.
    let first = runs[0]["run_id"].as_str().unwrap();
    let steps = app.steps_body(&slug, &key, first).await;
    assert_eq!(steps["steps"][0]["bytes_billed"], TIB, "{steps}");
    let quota = app.quota(&slug).await;
    assert_eq!(quota["bytes_today"], 10 * TIB, "{quota}");
    assert_eq!(quota["runs_today"], 10, "{quota}");
    // The same bytes, and their cost at 6.25 USD a tebibyte, in the run, the quota and the
    // per-pipeline stats (the whole backfill ran today).
    let run = app.run(&slug, &key, first).await;
    assert_eq!(run["bytes_billed"], TIB, "{run}");
    assert_eq!(run["estimated_cost_usd"], 6.25, "{run}");
    assert_eq!(quota["estimated_cost_today_usd"], 62.5, "{quota}");
    assert_eq!(quota["estimated_cost_month_usd"], 62.5, "{quota}");
    let stats = app.stats_body(&slug, &key, "stats").await;
    let scan = &stats["pipelines"][0];
    assert_eq!(scan["pipeline_id"], "test/daily_scan", "{stats}");
    assert_eq!(scan["bytes_billed"], 10 * TIB, "{stats}");
    assert_eq!(scan["estimated_cost_usd"], 62.5, "{stats}");
    let daily = app.stats_body(&slug, &key, "stats/daily").await;
    assert_eq!(daily["days"][0]["bytes_billed"], 10 * TIB, "{daily}");
    assert_eq!(daily["days"][0]["estimated_cost_usd"], 62.5, "{daily}");
    // A trigger now is refused for the budget, until tomorrow.
    let r = app
        .trigger(
            &slug,
            &key,
            "test/daily_scan",
            &json!({"parameters": {"day": "2026-11-01"}}),
        )
        .await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "bytes_daily", "{body}");
}

#[tokio::test]
async fn a_queued_run_is_refused_when_the_run_ahead_of_it_spends_the_bytes_budget() {
    let (model, app, slug, key) = behind_model("budget-queue-co").await;
    model.bill("scanned_day", TIB as u64);
    app.set_quota(
        &slug,
        &json!({"daily_limit": 100, "monthly_limit": 1000, "concurrent_limit": 1,
                "bytes_daily_limit": TIB, "bytes_monthly_limit": 100 * TIB}),
    )
    .await;
    let day = json!({"parameters": {"day": "2026-10-01"}, "when_busy": "queue"});
    let ahead = app.trigger(&slug, &key, "test/slow_scan", &day).await;
    assert_eq!(ahead.status(), 202);
    let ahead: Value = ahead.json().await.unwrap();
    assert_eq!(ahead["status"], "PENDING", "{ahead}");
    let behind = app.trigger(&slug, &key, "test/slow_scan", &day).await;
    assert_eq!(behind.status(), 202);
    let behind: Value = behind.json().await.unwrap();
    assert_eq!(behind["status"], "QUEUED", "{behind}");

    let ahead = app
        .wait_until_ended(&slug, &key, ahead["run_id"].as_str().unwrap())
        .await;
    assert_eq!(ahead["status"], "SUCCEEDED", "{ahead}");
    // The run shows what its jobs billed, and so does the instance's counter.
    assert_eq!(ahead["bytes_billed"], TIB, "{ahead}");
    assert_eq!(
        app.counter("quarry_bigquery_bytes_billed_total{kind=\"step\"}")
            .await,
        TIB as u64
    );
    let behind = app
        .wait_until_ended(&slug, &key, behind["run_id"].as_str().unwrap())
        .await;
    assert_eq!(behind["status"], "REFUSED", "{behind}");
    assert_eq!(behind["error_class"], "quota_bytes_daily", "{behind}");
    assert_eq!(
        behind["parameters"],
        json!({"day": "2026-10-01"}),
        "{behind}"
    );
    let quota = app.quota(&slug).await;
    assert_eq!(quota["bytes_today"], TIB, "{quota}");
    assert_eq!(quota["queued_run_ids"], json!([]), "{quota}");
    assert_eq!(
        quota["runs_today"], 1,
        "only the run that ran is counted: {quota}"
    );
}

#[tokio::test]
async fn a_job_over_the_orgs_per_job_cap_or_over_what_its_budget_has_left_fails_cost_cap_naming_it()
{
    let (model, app, slug, key) = behind_model("org-cap-co").await;
    model.bill("scanned_day", TIB as u64);
    let day = json!({"parameters": {"day": "2026-10-01"}});
    let limits = |per_job: i64, daily: i64| {
        json!({"daily_limit": 100, "monthly_limit": 1000, "concurrent_limit": 1,
               "bytes_daily_limit": daily, "bytes_monthly_limit": 100 * TIB,
               "bytes_per_job_limit": per_job})
    };
    let ended = |r: reqwest::Response| async {
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        app.wait_until_ended(&slug, &key, &id).await
    };

    // The org's per-job cap (128 GiB) is below the tebibyte the scan bills.
    let quota = app.set_quota(&slug, &limits(TIB / 8, 10 * TIB)).await;
    assert_eq!(quota["bytes_per_job_limit"], TIB / 8, "{quota}");
    let run = ended(app.trigger(&slug, &key, "test/daily_scan", &day).await).await;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(run["error_class"], "cost_cap", "{run}");
    assert_eq!(
        run["error_summary"],
        "refused by BigQuery before it ran: the job would bill more than the org's per-job cap \
         (bytes_per_job_limit: 137438953472 bytes, 128.0 GiB)",
        "{run}"
    );
    assert_eq!(run["bytes_billed"], 0, "a refused job bills nothing: {run}");

    // A day's budget of 1.5 TiB: the first scan fits, the second has half a tebibyte left.
    app.set_quota(&slug, &limits(10 * TIB, 3 * TIB / 2)).await;
    let first = ended(app.trigger(&slug, &key, "test/daily_scan", &day).await).await;
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    let second = ended(app.trigger(&slug, &key, "test/daily_scan", &day).await).await;
    assert_eq!(second["status"], "FAILED", "{second}");
    assert_eq!(second["error_class"], "cost_cap", "{second}");
    assert_eq!(
        second["error_summary"],
        "refused by BigQuery before it ran: the job would bill more than what the org's daily \
         bytes budget had left for the run (549755813888 bytes, 512.0 GiB)",
        "{second}"
    );
    // The budget is never overshot: only the scan that ran is counted.
    let quota = app.quota(&slug).await;
    assert_eq!(quota["bytes_today"], TIB, "{quota}");
    let caps: Vec<Option<String>> = model
        .labelled_jobs()
        .iter()
        .filter(|j| j.labels.get("quarry_step").map(String::as_str) == Some("scan"))
        .map(|j| j.maximum_bytes_billed.clone())
        .collect();
    assert_eq!(
        caps,
        [
            Some((TIB / 8).to_string()),
            Some((3 * TIB / 2).to_string()),
            Some((TIB / 2).to_string()),
        ]
    );
}

/// Jobs of `sql/<file>` the model has seen so far.
fn count_of(model: &LimitsModel, file: &str) -> usize {
    of_file(&model.labelled_jobs(), file).len()
}

#[tokio::test]
async fn an_idle_instance_slows_its_background_reads_and_a_schedule_enabled_here_wakes_the_scheduler()
 {
    let (model, app, slug, key) = behind_model_with("idle-co", |vars| {
        vars.insert("SCHEDULER_ENABLED".into(), "true".into());
        vars.insert("SCHEDULER_INTERVAL_SECS".into(), "1".into());
        vars.insert("QUEUE_POLL_SECS".into(), "1".into());
        vars.insert("IDLE_POLL_MAX_SECS".into(), "30".into());
    })
    .await;
    // Nothing scheduled, nothing queued: at their 1 s pace each read would run about 20 times in
    // 20 s; doubling from 1 s (1, 2, 4, 8, 16, then 30 s apart), at most 5 times.
    let (due, queues) = (
        count_of(&model, "schedules/due.sql"),
        count_of(&model, "quota/queues_to_drain.sql"),
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle_due = count_of(&model, "schedules/due.sql") - due;
    let idle_queues = count_of(&model, "quota/queues_to_drain.sql") - queues;
    assert!(idle_due <= 5, "{idle_due} scheduler reads in 20 s");
    assert!(idle_queues <= 5, "{idle_queues} queue polls in 20 s");

    // A schedule enabled here wakes the scheduler: its next read comes at once, not after the
    // up to 30 s it was waiting.
    let before = count_of(&model, "schedules/due.sql");
    let r = app
        .key_post(
            &format!("/api/v1/schedules/{slug}/enable"),
            &key,
            &json!({"pipeline_id": "test/soak", "schedule": "every-10s"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let enabled = std::time::Instant::now();
    eventually(
        "the scheduler reads again after the schedule is enabled",
        Duration::from_secs(30),
        || async {
            let now = count_of(&model, "schedules/due.sql");
            if now > before {
                Ok(())
            } else {
                Err(format!("{now} reads"))
            }
        },
    )
    .await;
    assert!(
        enabled.elapsed() < Duration::from_secs(3),
        "woken after {:?}",
        enabled.elapsed()
    );
}

/// [`behind_model`] with the service's own intervals and lease (the measurements' instance).
async fn behind_model_as_deployed(prefix: &str) -> (LimitsModel, TestApp, String, String) {
    behind_model_with(prefix, |vars| {
        for name in [
            "HEARTBEAT_INTERVAL_SECS",
            "REAPER_INTERVAL_SECS",
            "QUEUE_POLL_SECS",
            "SCHEDULER_ENABLED",
            "RUN_LEASE_SECS",
        ] {
            vars.remove(name); // the service's defaults
        }
    })
    .await
}

/// The idle bill of one instance, printed against its target (run by hand, 130 s):
/// `cargo test --test api -- --ignored --nocapture cost::idle_bill`. The default intervals, no
/// schedule, no queue, no run: every query it sends in two minutes after start-up, priced at
/// BigQuery's 10 MB minimum per query and $6.25 per TiB.
#[tokio::test]
#[ignore = "a measurement (130 s): run by hand, see the README's Cost section"]
async fn idle_bill() {
    let (model, _app, _slug, _key) = behind_model_as_deployed("idle-bill").await;
    // Past start-up, whose reads are not the idle cost.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = model.labelled_jobs().len();
    let window = Duration::from_secs(120);
    tokio::time::sleep(window).await;
    let jobs = model.labelled_jobs();
    let mut by_file: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs[before..] {
        let first = job.query.lines().next().unwrap_or_default();
        *by_file.entry(first.chars().take(70).collect()).or_default() += 1;
    }
    let queries = jobs.len() - before;
    let per_month = queries as f64 * (30.0 * 86_400.0 / window.as_secs_f64());
    let usd = per_month * 10.0 * 1024.0 * 1024.0 / (1u64 << 40) as f64 * 6.25;
    for (file, n) in &by_file {
        println!("{n:>4}  {file}");
    }
    println!(
        "idle instance: {queries} queries in {} s = {per_month:.0} a month = ${usd:.2} a month at the 10 MB minimum (target: at most $15)",
        window.as_secs()
    );
    assert!(usd <= 15.0, "${usd:.2} a month");
}

#[tokio::test]
#[ignore = "a measurement (about a minute): run by hand, see the README's Cost section"]
async fn run_bill() {
    let (model, app, slug, key) = behind_model_as_deployed("run-bill").await;
    app.set_quota(
        &slug,
        &json!({"daily_limit": 100, "monthly_limit": 1000, "concurrent_limit": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = model.labelled_jobs().len();
    let runs = 10;
    let started = std::time::Instant::now();
    for day in 1..=runs {
        let body = json!({"parameters": {"day": format!("2026-10-{day:02}")}});
        let r = app.trigger(&slug, &key, "test/daily_scan", &body).await;
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        let end = app.wait_until_ended(&slug, &key, &id).await;
        assert_eq!(end["status"], "SUCCEEDED", "{end}");
    }
    // The last run's slot is released (with its bytes) by a batch of its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let took = started.elapsed();
    let jobs = model.labelled_jobs();
    let mut by_file: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut bookkeeping, mut dml) = (0, 0);
    for job in &jobs[before..] {
        let kind = job.labels.get("quarry_kind").cloned().unwrap_or_default();
        let first = job.query.lines().next().unwrap_or_default();
        *by_file
            .entry((kind.clone(), first.chars().take(70).collect()))
            .or_default() += 1;
        if kind == "bookkeeping" {
            bookkeeping += 1;
            let statement = job
                .query
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("--"))
                .unwrap_or_default()
                .to_ascii_uppercase();
            if ["UPDATE", "INSERT", "MERGE", "DELETE"]
                .iter()
                .any(|k| statement.starts_with(k))
            {
                dml += 1;
            }
        }
    }
    for ((kind, file), n) in &by_file {
        println!("{n:>4}  {kind:<12} {file}");
    }
    // The background reads of an idle instance (3 a minute once backed off) ran meanwhile.
    let idle = 3.0 * took.as_secs_f64() / 60.0;
    let per_run = (bookkeeping as f64 - idle).max(0.0) / runs as f64;
    let usd_per_1000 = per_run * 1000.0 * 10.0 * 1024.0 * 1024.0 / (1u64 << 40) as f64 * 6.25;
    println!(
        "{runs} runs in {:.0} s: {bookkeeping} bookkeeping jobs ({dml} DML), about {idle:.0} of them the idle instance's background reads: {per_run:.1} per run, ${usd_per_1000:.2} per 1,000 runs at the 10 MB minimum (target: at most 5 per run)",
        took.as_secs_f64()
    );
    assert!(per_run <= 5.0, "{per_run:.1} bookkeeping jobs per run");
}
