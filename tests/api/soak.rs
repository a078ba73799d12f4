//! The soak: three instances on one meta dataset behind the BigQuery model with flapping and
//! lost answers, mixed load (triggers with and without an Idempotency-Key, queued runs, cancels,
//! watchers), the third instance cut off from BigQuery for 30 s in the middle (longer than its
//! runs may live without renewing their lease), then a history of every answer and read checked
//! against the tables:
//!
//! - (a) no 5xx other than 503 with Retry-After;
//! - (b) every run answered 202 ends terminal;
//! - (c) never more runs executing than the org's concurrent limit (from step intervals);
//! - (d) a step's writes at most once per attempt, exactly once for SUCCEEDED runs;
//! - (e) no slot held at the end;
//! - (f) `runs_today` = the runs that started (a PENDING event), and every trigger answered 202
//!   PENDING started: a trigger answered anything else is not counted;
//! - (g) no run that read SUCCEEDED reads anything else later;
//! - (h) steps present whenever a run reads SUCCEEDED or FAILED.
//!
//! `make test` runs `soak::soak_60_seconds` alone after the heavy tests; `make soak` runs
//! `soak::soak_long` for `SOAK_SECS` (600 by default). Both print the table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bq_limits::{CallKind, Class, Faults, Limits, LimitsModel};
use crate::helpers::{Emulator, TestApp, emulator_host, fixture, spawn_app_with, unique_slug};

const ORGS: usize = 3;
const CONCURRENT: i64 = 2;
const TERMINAL: [&str; 6] = [
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "TIMED_OUT",
    "ORPHANED",
    "REFUSED",
];

/// One answer the load got.
#[derive(Debug, Clone)]
struct Answer {
    org: usize,
    status: u16,
    retry_after: bool,
    run_id: Option<String>,
    /// PENDING or QUEUED, for a 202.
    run_status: Option<String>,
    tag: String,
}

#[derive(Default)]
struct History {
    answers: Vec<Answer>,
    /// run id -> every status read, in order.
    reads: HashMap<String, Vec<String>>,
    /// Runs read SUCCEEDED or FAILED whose steps read empty at that moment.
    ended_without_steps: Vec<String>,
}

struct Soak {
    model: LimitsModel,
    /// The third instance's way to BigQuery (a second model in front of the first, so job ids
    /// stay unique across the project): black-holed to cut that instance off.
    cut: LimitsModel,
    apps: Vec<TestApp>,
    orgs: Vec<(String, String)>,
    history: Mutex<History>,
}

fn faults() -> Faults {
    // A tenth of every call refused, a third of those after taking effect.
    Faults::flapping(0.10, 1.0 / 3.0)
}

async fn setup() -> Soak {
    let model = LimitsModel::start(
        &emulator_host(),
        Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO),
    )
    .await;
    let cut = LimitsModel::start(
        &model.host,
        Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO),
    )
    .await;
    let host = model.host.clone();
    let vars = move |vars: &mut HashMap<String, String>| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), host.clone());
        vars.insert("PIPELINES_DIR".into(), fixture("exactly_once/pipelines"));
        vars.insert("PIPELINE_SQL_DIR".into(), fixture("exactly_once/sql"));
        vars.insert("RUN_LEASE_SECS".into(), "25".into());
        vars.insert("BIGQUERY_API_DEADLINE_SECS".into(), "8".into());
        vars.insert("HEARTBEAT_INTERVAL_SECS".into(), "2".into());
        vars.insert("HEARTBEAT_TIMEOUT_SECS".into(), "3".into());
        vars.insert("REAPER_INTERVAL_SECS".into(), "3".into());
        vars.insert("QUEUE_POLL_SECS".into(), "3".into());
        vars.insert("BIGQUERY_RETRY_BASE_MS".into(), "50".into());
        vars.insert("BIGQUERY_RETRY_MAX_MS".into(), "500".into());
    };
    let first = spawn_app_with(&vars).await;
    first.bootstrap().await;
    let mut apps = vec![first];
    for i in 1..3 {
        let meta = apps[0].meta_dataset.clone();
        let cut_host = cut.host.clone();
        apps.push(
            spawn_app_with(|v| {
                vars(v);
                v.insert("META_DATASET".into(), meta);
                if i == 2 {
                    v.insert("BIGQUERY_EMULATOR_HOST".into(), cut_host);
                }
            })
            .await,
        );
    }
    let mut orgs = vec![];
    for _ in 0..ORGS {
        let slug = unique_slug("soak");
        let key = apps[0].org_with_key(&slug).await;
        apps[0]
            .set_limits(&slug, 100_000, 1_000_000, CONCURRENT)
            .await;
        Emulator::new()
            .sql(&format!(
                "CREATE TABLE IF NOT EXISTS `{}.soak_appends` (tag STRING, note STRING)",
                slug.replace('-', "_")
            ))
            .await;
        orgs.push((slug, key));
    }
    Soak {
        model,
        cut,
        apps,
        orgs,
        history: Mutex::new(History::default()),
    }
}

impl Soak {
    fn app(&self, i: usize) -> &TestApp {
        &self.apps[i % self.apps.len()]
    }

    /// One trigger: plain, with an Idempotency-Key (retried on 503 with the same key), or
    /// queued.
    async fn trigger(&self, n: usize) {
        let org = n % ORGS;
        let (slug, key) = &self.orgs[org];
        let tag = format!("t{n}");
        let queued = n % 3 == 2;
        let idempotency = (n % 3 == 1).then(|| format!("soak-{n}"));
        let mut body = json!({"parameters": {"tag": tag}});
        if queued {
            body["when_busy"] = json!("queue");
        }
        let tries = if idempotency.is_some() { 3 } else { 1 };
        for attempt in 0..tries {
            let app = self.app(n + attempt);
            let mut request = app
                .client
                .post(app.url(&format!("/api/v1/pipelines/run/{slug}/test/soak")))
                .header("X-API-Key", key)
                .timeout(Duration::from_secs(40))
                .json(&body);
            if let Some(k) = &idempotency {
                request = request.header("Idempotency-Key", k);
            }
            let Ok(r) = request.send().await else {
                continue;
            };
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            let json: Value = r.json().await.unwrap_or(Value::Null);
            self.history.lock().unwrap().answers.push(Answer {
                org,
                status,
                retry_after,
                run_id: json["run_id"].as_str().map(str::to_string),
                run_status: json["status"].as_str().map(str::to_string),
                tag: tag.clone(),
            });
            if status == 202 {
                let run_id = json["run_id"].as_str().unwrap().to_string();
                if n % 10 == 3 {
                    self.cancel(org, &run_id, n).await;
                }
                self.watch(org, &run_id, n).await;
                return;
            }
            if status != 503 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Records one status read of `run_id`.
    fn read(&self, run_id: &str, status: String) {
        self.history
            .lock()
            .unwrap()
            .reads
            .entry(run_id.to_string())
            .or_default()
            .push(status);
    }

    async fn cancel(&self, org: usize, run_id: &str, n: usize) {
        let (slug, key) = &self.orgs[org];
        let app = self.app(n + 1);
        let _ = app.cancel(slug, key, run_id).await;
    }

    /// Reads the run until it ends (or 90 s pass), recording each status, and its steps the
    /// moment it reads SUCCEEDED or FAILED.
    async fn watch(&self, org: usize, run_id: &str, n: usize) {
        let (slug, key) = &self.orgs[org];
        let started = Instant::now();
        let mut look = n;
        while started.elapsed() < Duration::from_secs(90) {
            look += 1;
            let app = self.app(look);
            let r = app
                .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), key)
                .await;
            if r.status() != 200 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            let status = r.json::<Value>().await.unwrap()["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if status == "SUCCEEDED" || status == "FAILED" {
                let steps = app
                    .key_get(
                        &format!("/api/v1/pipelines/{slug}/runs/{run_id}/steps"),
                        key,
                    )
                    .await;
                if steps.status() == 200 {
                    let body: Value = steps.json().await.unwrap();
                    if body["steps"].as_array().is_none_or(|s| s.is_empty()) {
                        self.history
                            .lock()
                            .unwrap()
                            .ended_without_steps
                            .push(run_id.to_string());
                    }
                }
            }
            let ended = TERMINAL.contains(&status.as_str());
            self.read(run_id, status);
            if ended {
                // One more look later: an ended run never reads otherwise.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let again = self
                    .app(look + 1)
                    .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), key)
                    .await;
                if again.status() == 200 {
                    let status = again.json::<Value>().await.unwrap()["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    self.read(run_id, status);
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The invariants' table: name -> (checked, violations with an example).
type Table = BTreeMap<&'static str, (usize, Vec<String>)>;

fn check(table: &mut Table, name: &'static str, ok: bool, example: impl FnOnce() -> String) {
    let entry = table.entry(name).or_default();
    entry.0 += 1;
    if !ok {
        entry.1.push(example());
    }
}

async fn rows(query: String) -> Vec<Vec<String>> {
    Emulator::new().rows(&query).await
}

/// Rows of (key, count) as a map.
async fn counts(query: String) -> HashMap<String, i64> {
    rows(query)
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect()
}

async fn soak(secs: u64) {
    let soak = Arc::new(setup().await);
    soak.model.clear();
    soak.model.set_faults_everywhere(faults());
    // Bookkeeping reads flap too, but datasets and tables (bootstrap) are left alone.
    soak.model.set_faults(CallKind::Other, Faults::default());
    let started = Instant::now();
    let mut load = vec![];
    let mut n = 0;
    // The third instance is cut off from BigQuery from a third of the load on, for 30 s: its
    // runs stop themselves (their lease lapses after 20 s), the others' reapers free their slots.
    let cut_from = Duration::from_secs(secs / 3);
    let cut_until = cut_from + Duration::from_secs(30);
    let black_hole = Faults {
        black_hole_rate: 1.0,
        black_hole: Duration::from_secs(5),
        ..Faults::default()
    };
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(secs) {
        let cut_now = (cut_from..cut_until).contains(&started.elapsed());
        if cut_now != cut {
            cut = cut_now;
            soak.cut
                .set_faults_everywhere(if cut { black_hole } else { Faults::default() });
        }
        for _ in 0..3 {
            let soak = soak.clone();
            load.push(tokio::spawn(async move { soak.trigger(n).await }));
            n += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for task in load {
        task.await.unwrap();
    }
    let injected = soak.model.injected();
    soak.model.set_faults_everywhere(Faults::default());
    soak.cut.set_faults_everywhere(Faults::default());
    let cut_off = soak.cut.injected();

    // Settle: every slot free (releases and refunds land, the reaper frees what a lost
    // instance held) within two leases.
    let settle = Instant::now();
    let mut quotas = vec![];
    for (slug, _) in &soak.orgs {
        loop {
            let q = soak.apps[0].quota(slug).await;
            if q["active_run_ids"] == json!([]) && q["queued_run_ids"] == json!([])
                || settle.elapsed() > Duration::from_secs(60)
            {
                quotas.push(q);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let history = std::mem::take(&mut *soak.history.lock().unwrap());
    let meta = &soak.apps[0].meta_dataset;
    let mut table = Table::new();
    for a in &history.answers {
        check(
            &mut table,
            "a no 5xx but 503 with Retry-After",
            a.status < 500 || (a.status == 503 && a.retry_after),
            || format!("{a:?}"),
        );
    }
    // Each run's last event, per org, and who started.
    let admitted: Vec<&Answer> = history.answers.iter().filter(|a| a.status == 202).collect();
    let ids: Vec<String> = admitted.iter().filter_map(|a| a.run_id.clone()).collect();
    let id_list = ids
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let last: HashMap<String, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        rows(format!(
            "SELECT run_id, ARRAY_AGG(status ORDER BY event_seq DESC, event_time DESC LIMIT 1)[OFFSET(0)] \
             FROM `{meta}.pipeline_run_events` WHERE run_id IN ({id_list}) GROUP BY run_id LIMIT 100000"
        ))
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
    };
    for a in &admitted {
        let id = a.run_id.clone().unwrap_or_default();
        let status = last.get(&id).cloned().unwrap_or_default();
        check(
            &mut table,
            "b every 202 run ends terminal",
            TERMINAL.contains(&status.as_str()),
            || format!("{id}: {status:?}"),
        );
    }
    for (org, (slug, _)) in soak.orgs.iter().enumerate() {
        // (c) From each run's step intervals: at most CONCURRENT overlap.
        let intervals = rows(format!(
            "SELECT run_id, UNIX_MICROS(MIN(started_at)), UNIX_MICROS(MAX(COALESCE(ended_at, started_at))) \
             FROM `{meta}.step_logs` WHERE org_slug = '{slug}' GROUP BY run_id LIMIT 100000"
        ))
        .await;
        let mut points: Vec<(i64, i32)> = vec![];
        for r in &intervals {
            let s: i64 = r[1].parse().unwrap();
            let e: i64 = r[2].parse().unwrap();
            points.push((s, 1));
            points.push((e, -1));
        }
        points.sort();
        let (mut now, mut most) = (0, 0);
        for (_, d) in points {
            now += d;
            most = most.max(now);
        }
        check(
            &mut table,
            "c never more executing than the limit",
            i64::from(most) <= CONCURRENT,
            || format!("{slug}: {most} at once"),
        );
        // (d) Writes per run against its append attempts.
        let writes = counts(format!(
            "SELECT tag, COUNT(*) FROM `{}.soak_appends` GROUP BY tag LIMIT 100000",
            slug.replace('-', "_")
        ))
        .await;
        let attempts = counts(format!(
            "SELECT run_id, COUNT(DISTINCT attempt) FROM `{meta}.step_logs` \
             WHERE org_slug = '{slug}' AND step_id = 'append' GROUP BY run_id LIMIT 100000"
        ))
        .await;
        for a in admitted.iter().filter(|a| a.org == org) {
            let id = a.run_id.clone().unwrap_or_default();
            let wrote = writes.get(&a.tag).copied().unwrap_or(0);
            let tries = attempts.get(&id).copied().unwrap_or(0);
            let succeeded = last.get(&id).is_some_and(|s| s == "SUCCEEDED");
            let ok = wrote <= tries && (!succeeded || wrote == 1);
            check(
                &mut table,
                "d writes at most once per attempt, once if SUCCEEDED",
                ok,
                || format!("{id}: {wrote} rows, {tries} attempts, succeeded {succeeded}"),
            );
        }
        // (e) and (f).
        let q = &quotas[org];
        check(
            &mut table,
            "e no slot held at the end",
            q["active_run_ids"] == json!([]),
            || format!("{slug}: {q}"),
        );
        // Started: a PENDING event, and no end saying it never started (its PENDING event's
        // answer was lost: the trigger was answered 503 and the run refunded).
        let started_runs: HashSet<String> = rows(format!(
            "SELECT run_id FROM `{meta}.pipeline_run_events` WHERE org_slug = '{slug}' \
             GROUP BY run_id \
             HAVING LOGICAL_OR(status = 'PENDING') \
               AND NOT LOGICAL_OR(IFNULL(error_class, '') = 'admission') LIMIT 100000"
        ))
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
        let runs_today = q["runs_today"].as_i64().unwrap_or(-1);
        check(
            &mut table,
            "f runs_today = runs started",
            runs_today == started_runs.len() as i64,
            || {
                format!(
                    "{slug}: runs_today {runs_today}, started {}",
                    started_runs.len()
                )
            },
        );
        for a in admitted
            .iter()
            .filter(|a| a.org == org && a.run_status.as_deref() == Some("PENDING"))
        {
            let id = a.run_id.clone().unwrap_or_default();
            check(
                &mut table,
                "f every 202 PENDING started",
                started_runs.contains(&id),
                || id.clone(),
            );
        }
    }
    for (id, reads) in &history.reads {
        let first_success = reads.iter().position(|s| s == "SUCCEEDED");
        let ok = first_success.is_none_or(|i| reads[i..].iter().all(|s| s == "SUCCEEDED"));
        check(
            &mut table,
            "g SUCCEEDED never reads otherwise later",
            ok,
            || format!("{id}: {reads:?}"),
        );
    }
    let watched_ends = history
        .reads
        .values()
        .filter(|r| r.iter().any(|s| s == "SUCCEEDED" || s == "FAILED"))
        .count();
    for _ in 0..watched_ends {
        check(
            &mut table,
            "h steps present when a run reads ended",
            true,
            String::new,
        );
    }
    for id in &history.ended_without_steps {
        check(
            &mut table,
            "h steps present when a run reads ended",
            false,
            || id.clone(),
        );
    }

    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for a in &history.answers {
        *statuses.entry(a.status).or_default() += 1;
    }
    println!("soak: {secs} s, 3 instances, {ORGS} orgs at concurrent {CONCURRENT}, {n} triggers");
    println!("answers by status: {statuses:?}");
    println!("faults injected: {injected:?}");
    println!(
        "third instance cut off from BigQuery from {} s for 30 s: {} calls black-holed",
        cut_from.as_secs(),
        cut_off.values().map(|i| i.black_holed).sum::<usize>()
    );
    println!("duplicate job ids refused: {}", soak.model.duplicate_jobs());
    let (ran, refused) = soak.model.count("org_quota_state", Class::Mutating);
    println!(
        "mutating statements on org_quota_state: {ran} sent, {refused} refused by the DML limit, \
         at most {} in one second, at most {} running at once",
        soak.model
            .max_per_second("org_quota_state", Class::Mutating),
        soak.model.max_running("org_quota_state", Class::Mutating)
    );
    println!("{:<55} {:>8} {:>10}", "invariant", "checked", "violated");
    let mut failed = vec![];
    for (name, (checked, bad)) in &table {
        println!("{name:<55} {checked:>8} {:>10}", bad.len());
        if let Some(example) = bad.first() {
            failed.push(format!("{name}: {example}"));
        }
    }
    assert!(failed.is_empty(), "invariants violated: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy (three instances, 60 s of load): make test runs it alone, after the suite"]
async fn soak_60_seconds() {
    soak(60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: make soak runs it (SOAK_SECS, 600 by default)"]
async fn soak_long() {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    soak(secs).await;
}
