//! The soak: three instances on one meta dataset behind the BigQuery model with flapping and
//! lost answers, the third a real process (the `quarry` binary) that is paused (SIGSTOP) longer
//! than its runs' lease, resumed, killed (SIGKILL) and started again (and, in `make soak`, also
//! cut off from BigQuery for 30 s per cycle); mixed load: triggers with and without an
//! Idempotency-Key, queued runs, cancels, re-runs of the runs that ended CANCELLED or FAILED,
//! a schedule ticking every 10 s on every instance, watchers. Then a history of every answer and
//! read is checked against the tables and the model's record of accepted jobs:
//!
//! - (a) no 5xx other than 503 with Retry-After;
//! - (b) every run answered 202, and every schedule tick that started, ends terminal;
//! - (c) never more runs executing than the org's concurrent limit (from step intervals; a run
//!   that lost its lease is executing until its lease lapsed, not until its paused process
//!   wrote the step's end);
//! - (d) a step's writes at most once per attempt (a write per accepted job, and one job id per
//!   attempt), exactly once for a tag whose run SUCCEEDED (re-runs included);
//! - (e) no slot held at the end;
//! - (f) `runs_today` = the runs that started (a PENDING event), every trigger answered 202
//!   PENDING started, and every run that started was answered 202, got no answer at all (a
//!   timeout or a killed instance), or is a schedule tick: a trigger answered 503 (or anything
//!   else) is not counted;
//! - (g) no run that read SUCCEEDED reads anything else later (half the watchers send back the
//!   ETag they were told, as If-None-Match; the other half nothing);
//! - (h) steps present whenever a run reads SUCCEEDED or FAILED;
//! - (i) each schedule tick started at most once across the instances.
//!
//! `make test` runs `soak::soak_60_seconds` alone after the heavy tests; `make soak` runs
//! `soak::soak_long` for `SOAK_SECS` (600 by default). Both print the table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bq_limits::{CallKind, Class, Faults, Limits, LimitsModel};
use crate::helpers::{Emulator, TestApp, emulator_host, fixture, spawn_app_with, unique_slug};
use crate::instance::Instance;

const ORGS: usize = 3;
const CONCURRENT: i64 = 2;
const LEASE_SECS: i64 = 30;
const HEARTBEAT_INTERVAL_SECS: i64 = 2;
const HEARTBEAT_TIMEOUT_SECS: i64 = 3;
/// A run whose lease was not renewed this long stops itself (`src/executor/lease.rs`).
const FENCE_AFTER_MICROS: i64 =
    (LEASE_SECS - HEARTBEAT_INTERVAL_SECS - HEARTBEAT_TIMEOUT_SECS) * 1_000_000;
const SCHEDULE: &str = "every-10s";
const TRIGGERS_PER_SECOND: usize = 2;
/// After the load, how long the service has to answer a trigger 202 for every org and start a
/// schedule tick.
const RECOVERY: Duration = Duration::from_secs(180);
/// How often a watcher reads its run (as `quarry runs watch` without its event stream would).
const WATCH_EVERY: Duration = Duration::from_secs(1);
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
    /// The Retry-After it asked for, in seconds.
    retry_after_secs: Option<u64>,
    run_id: Option<String>,
    /// PENDING or QUEUED, for a 202.
    run_status: Option<String>,
}

#[derive(Default)]
struct History {
    answers: Vec<Answer>,
    /// Tags of the triggers and re-runs that got no answer at all (timed out, connection cut).
    unanswered: HashSet<String>,
    /// run id -> every status read, in order.
    reads: HashMap<String, Vec<String>>,
    /// Runs read SUCCEEDED or FAILED whose steps read empty at that moment.
    ended_without_steps: Vec<String>,
    /// Runs read SUCCEEDED or FAILED whose steps were read at that moment.
    ends_checked: usize,
    reruns: usize,
}

/// What happens to the third instance, and when (seconds into the load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chaos {
    /// SIGSTOP: paused longer than its runs' lease.
    Pause,
    /// SIGCONT: it finds its runs' leases lapsed and stops them.
    Resume,
    /// Its calls to BigQuery black-holed (a partition, as BigQuery sees a pause).
    Cut,
    Reconnect,
    /// SIGKILL: its runs and buffered rows are gone, its slots wait for other reapers.
    Kill,
    /// The binary again, on the same meta dataset.
    Restart,
}

/// 60 s: a pause from 10 s to 45 s (longer than the lease), a kill at 50 s and a restart at
/// 53 s. Longer: every 150 s a pause, a 35 s cut, a kill and a restart.
fn chaos_plan(secs: u64) -> Vec<(u64, Chaos)> {
    use Chaos::*;
    if secs < 50 {
        return vec![];
    }
    if secs < 150 {
        return vec![(10, Pause), (45, Resume), (50, Kill), (53, Restart)];
    }
    (0..secs)
        .step_by(150)
        .filter(|b| b + 120 <= secs)
        .flat_map(|b| {
            [
                (b + 10, Pause),
                (b + 45, Resume),
                (b + 60, Cut),
                (b + 95, Reconnect),
                (b + 105, Kill),
                (b + 108, Restart),
            ]
        })
        .collect()
}

struct Soak {
    model: LimitsModel,
    /// The third instance's way to BigQuery (a second model in front of the first, so job ids
    /// stay unique across the project): black-holed to cut that instance off.
    cut: LimitsModel,
    /// The two instances inside this process.
    apps: Vec<TestApp>,
    /// The third instance's address (a new one after each restart).
    third: RwLock<String>,
    client: reqwest::Client,
    orgs: Vec<(String, String)>,
    history: Mutex<History>,
}

fn faults() -> Faults {
    // A tenth of every call refused, a third of those after taking effect.
    Faults::flapping(0.10, 1.0 / 3.0)
}

fn settings(vars: &mut HashMap<String, String>, host: &str) {
    vars.insert("BIGQUERY_EMULATOR_HOST".into(), host.to_string());
    vars.insert("PIPELINES_DIR".into(), fixture("exactly_once/pipelines"));
    vars.insert("PIPELINE_SQL_DIR".into(), fixture("exactly_once/sql"));
    vars.insert("RUN_LEASE_SECS".into(), LEASE_SECS.to_string());
    // Three instances' admission statements take turns on the one-statement-at-a-time
    // emulator (about 2.5 s each under this load): a shorter deadline times out whole batches
    // and the load collapses into 503s (600 s with 8 s: 7 of 1,198 triggers answered 202).
    vars.insert("BIGQUERY_API_DEADLINE_SECS".into(), "15".into());
    vars.insert("ADMISSION_TIMEOUT_SECS".into(), "20".into());
    vars.insert(
        "HEARTBEAT_INTERVAL_SECS".into(),
        HEARTBEAT_INTERVAL_SECS.to_string(),
    );
    vars.insert(
        "HEARTBEAT_TIMEOUT_SECS".into(),
        HEARTBEAT_TIMEOUT_SECS.to_string(),
    );
    // The emulator runs one statement at a time for all three instances, about 0.3 s each for
    // a reaper's or scheduler's read on a 2-core machine (3 a second at most, and slower while
    // the instances use the cores): background passes every 10 s (every 5 s for the
    // scheduler, a schedule ticking every 10 s) and live reads every 2 s leave it room for the
    // load. (On this machine, 2026-12-07, neither these nor the earlier 4-5 s passes and
    // 1-s live reads keep it from falling 10 s behind: the admission statement's parsing is
    // most of its time; see the README's soak section.)
    vars.insert("REAPER_INTERVAL_SECS".into(), "10".into());
    vars.insert("QUEUE_POLL_SECS".into(), "10".into());
    vars.insert("SCHEDULER_ENABLED".into(), "true".into());
    vars.insert("SCHEDULER_INTERVAL_SECS".into(), "5".into());
    vars.insert("LIVE_POLL_MS".into(), "2000".into());
    vars.insert("BIGQUERY_RETRY_BASE_MS".into(), "50".into());
    vars.insert("BIGQUERY_RETRY_MAX_MS".into(), "500".into());
}

async fn setup() -> (Soak, Instance) {
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
    let first = spawn_app_with(|v| settings(v, &model.host)).await;
    first.bootstrap().await;
    let meta = first.meta_dataset.clone();
    let second = spawn_app_with(|v| {
        settings(v, &model.host);
        v.insert("META_DATASET".into(), meta.clone());
    })
    .await;
    let third = Instance::start_with(|v| {
        settings(v, &cut.host);
        v.insert("META_DATASET".into(), meta.clone());
    })
    .await;
    let apps = vec![first, second];
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
    let soak = Soak {
        model,
        cut,
        apps,
        third: RwLock::new(third.address.clone()),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap(),
        orgs,
        history: Mutex::new(History::default()),
    };
    (soak, third)
}

impl Soak {
    /// The `i`-th instance's address, round-robin.
    fn base(&self, i: usize) -> String {
        match i % 3 {
            2 => self.third.read().unwrap().clone(),
            i => self.apps[i].address.clone(),
        }
    }

    /// The schedule of org 0, switched on or off through the first instance (503s retried).
    async fn schedule(&self, on: bool) {
        let (slug, key) = &self.orgs[0];
        let verb = if on { "enable" } else { "pause" };
        for _ in 0..20 {
            let r = self.apps[0]
                .key_post(
                    &format!("/api/v1/schedules/{slug}/{verb}"),
                    key,
                    &json!({"pipeline_id": "test/soak", "schedule": SCHEDULE}),
                )
                .await;
            match r.status().as_u16() {
                200 => return,
                503 => tokio::time::sleep(Duration::from_millis(500)).await,
                other => panic!("{verb} the schedule: {other} {}", r.text().await.unwrap()),
            }
        }
        panic!("{verb} the schedule: 503 twenty times");
    }

    fn unanswered(&self, tag: &str) {
        self.history
            .lock()
            .unwrap()
            .unanswered
            .insert(tag.to_string());
    }

    fn answered(&self, org: usize, r: reqwest::Response) -> impl Future<Output = Answer> {
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        let retry_after_secs = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        async move {
            let json: Value = r.json().await.unwrap_or(Value::Null);
            Answer {
                org,
                status,
                retry_after,
                retry_after_secs,
                run_id: json["run_id"].as_str().map(str::to_string),
                run_status: json["status"].as_str().map(str::to_string),
            }
        }
    }

    /// One trigger: plain, with an Idempotency-Key (retried on 503 with the same key, after its
    /// Retry-After), or queued; a run it started that ends CANCELLED or FAILED is re-run.
    /// `true` when it was answered 202.
    async fn trigger(&self, n: usize) -> bool {
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
            let base = self.base(n + attempt);
            let mut request = self
                .client
                .post(format!("{base}/api/v1/pipelines/run/{slug}/test/soak"))
                .header("X-API-Key", key)
                .json(&body);
            if let Some(k) = &idempotency {
                request = request.header("Idempotency-Key", k);
            }
            let Ok(r) = request.send().await else {
                self.unanswered(&tag);
                continue;
            };
            let answer = self.answered(org, r).await;
            self.history.lock().unwrap().answers.push(answer.clone());
            if answer.status == 202 {
                let run_id = answer.run_id.unwrap();
                if n % 10 == 3 {
                    self.cancel(org, &run_id, n).await;
                }
                let end = self.watch(org, &run_id, n).await;
                if matches!(end.as_deref(), Some("CANCELLED" | "FAILED")) {
                    self.rerun(org, &run_id, &tag, n).await;
                }
                return true;
            }
            if answer.status != 503 {
                return false;
            }
            // As a client should: again after the Retry-After it was given (at most 5 s here,
            // so that the three tries fit the load's minute).
            let wait = answer.retry_after_secs.unwrap_or(1).min(5);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        false
    }

    /// Re-runs an ended run once and watches the new run.
    async fn rerun(&self, org: usize, run_id: &str, tag: &str, n: usize) {
        let (slug, key) = &self.orgs[org];
        let base = self.base(n + 2);
        self.history.lock().unwrap().reruns += 1;
        let Ok(r) = self
            .client
            .post(format!(
                "{base}/api/v1/pipelines/{slug}/runs/{run_id}/rerun"
            ))
            .header("X-API-Key", key)
            .json(&json!({}))
            .send()
            .await
        else {
            self.unanswered(tag);
            return;
        };
        let answer = self.answered(org, r).await;
        self.history.lock().unwrap().answers.push(answer.clone());
        if answer.status == 202 {
            self.watch(org, &answer.run_id.unwrap(), n + 1).await;
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
        let base = self.base(n + 1);
        let _ = self
            .client
            .post(format!(
                "{base}/api/v1/pipelines/{slug}/runs/{run_id}/cancel"
            ))
            .header("X-API-Key", key)
            .send()
            .await;
    }

    /// One GET of a run or its steps with the org's key, as a client that keeps its last answer
    /// (`known`: its ETag and body) and sends the ETag back: a 304 is that answer again. `None`
    /// unless it answered 200 (with its ETag) or 304.
    async fn get_again(
        &self,
        org: usize,
        path: &str,
        look: usize,
        known: &mut Option<(String, Value)>,
    ) -> Option<Value> {
        let (_, key) = &self.orgs[org];
        let mut request = self
            .client
            .get(format!("{}{path}", self.base(look)))
            .header("X-API-Key", key);
        if let Some((etag, _)) = known.as_ref() {
            request = request.header("If-None-Match", etag);
        }
        let r = request.send().await.ok()?;
        match r.status().as_u16() {
            304 => known.as_ref().map(|(_, body)| body.clone()),
            200 => {
                let etag = r.headers().get("etag")?.to_str().ok()?.to_string();
                let body: Value = r.json().await.ok()?;
                *known = Some((etag, body.clone()));
                Some(body)
            }
            _ => None,
        }
    }

    /// Reads the run until it ends (or 120 s pass), recording each status, and its steps the
    /// moment it reads SUCCEEDED or FAILED. Returns the status it ended with.
    async fn watch(&self, org: usize, run_id: &str, n: usize) -> Option<String> {
        let (slug, _) = &self.orgs[org];
        let run = format!("/api/v1/pipelines/{slug}/runs/{run_id}");
        let started = Instant::now();
        let mut look = n;
        // What it was told last, sent back (If-None-Match) on every look, on any instance, by
        // half the watchers; the other half send nothing back. (g) holds for both.
        let mut known = None;
        let sends_etag = n % 2 == 0;
        while started.elapsed() < Duration::from_secs(120) {
            look += 1;
            if !sends_etag {
                known = None;
            }
            let Some(body) = self.get_again(org, &run, look, &mut known).await else {
                tokio::time::sleep(WATCH_EVERY).await;
                continue;
            };
            let status = body["status"].as_str().unwrap_or_default().to_string();
            // A run whose end says it never started (its PENDING event could not be confirmed,
            // so its trigger was answered 503; an Idempotency-Key's retry replays it) has no
            // steps to show.
            let never_started = body["error_class"] == "admission";
            if status == "SUCCEEDED" || status == "FAILED" && !never_started {
                // With the run's ETag when this watcher keeps it (`quarry runs watch` sends it):
                // the steps then come from a state at least as far on as that end, at once. Its
                // tag is never the steps' own, so the answer is never a 304 without a body.
                let mut told = known.as_ref().map(|(etag, _)| (etag.clone(), Value::Null));
                if let Some(body) = self
                    .get_again(org, &format!("{run}/steps"), look, &mut told)
                    .await
                {
                    let mut history = self.history.lock().unwrap();
                    history.ends_checked += 1;
                    if body["steps"].as_array().is_none_or(|s| s.is_empty()) {
                        history.ended_without_steps.push(run_id.to_string());
                    }
                }
            }
            let ended = TERMINAL.contains(&status.as_str());
            self.read(run_id, status.clone());
            if ended {
                // One more look later: an ended run never reads otherwise.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if !sends_etag {
                    known = None;
                }
                if let Some(again) = self.get_again(org, &run, look + 1, &mut known).await {
                    let later = again["status"].as_str().unwrap_or_default().to_string();
                    self.read(run_id, later);
                }
                return Some(status);
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
        None
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

/// One run as the events tell it.
struct Run {
    tag: String,
    last: String,
    started: bool,
    lease_lost: bool,
    tick: Option<String>,
    /// The PENDING event's time (micros), where the lease starts.
    pending_micros: Option<i64>,
}

impl Run {
    /// A schedule tick that started (a PENDING event, and no end saying it never started).
    fn is_started_tick(&self) -> bool {
        self.tick.is_some() && self.started
    }
}

/// Every run of `slug`: its tag, last status, whether it started (a PENDING event and no end
/// saying it never started: its PENDING event's answer was lost, the trigger was answered 503
/// and the run refunded), whether its instance stopped it for a lapsed lease, and its tick.
async fn runs_of(meta: &str, slug: &str) -> HashMap<String, Run> {
    rows(format!(
        "SELECT run_id, \
           ARRAY_AGG(status ORDER BY event_seq DESC, event_time DESC LIMIT 1)[OFFSET(0)], \
           IFNULL(MAX(parameters), '{{}}'), \
           LOGICAL_OR(status = 'PENDING') AND NOT LOGICAL_OR(IFNULL(error_class, '') = 'admission'), \
           LOGICAL_OR(IFNULL(error_class, '') = 'lease_lost'), \
           IFNULL(MAX(schedule_id), ''), IFNULL(CAST(UNIX_MICROS(MAX(logical_time)) AS STRING), ''), \
           IFNULL(CAST(UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL))) AS STRING), '') \
         FROM `{meta}.pipeline_run_events` WHERE org_slug = '{slug}' GROUP BY run_id LIMIT 100000"
    ))
    .await
    .into_iter()
    .map(|r| {
        let parameters: Value = serde_json::from_str(&r[2]).unwrap_or(Value::Null);
        let run = Run {
            tag: parameters["tag"].as_str().unwrap_or_default().to_string(),
            last: r[1].clone(),
            started: r[3] == "true",
            lease_lost: r[4] == "true",
            tick: (!r[5].is_empty()).then(|| format!("{}@{}", r[5], r[6])),
            pending_micros: r[7].parse().ok(),
        };
        (r[0].clone(), run)
    })
    .collect()
}

/// The job id prefix of a run's `append` attempts (`StepContext::job_id`).
fn append_jobs_prefix(run_id: &str) -> String {
    let safe: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("quarry_{safe}_append_a")
}

async fn soak(secs: u64) {
    let (soak, mut third) = setup().await;
    let soak = Arc::new(soak);
    soak.model.clear();
    soak.schedule(true).await;
    soak.model.set_faults_everywhere(faults());
    // Bookkeeping reads flap too, but datasets and tables (bootstrap) are left alone.
    soak.model.set_faults(CallKind::Other, Faults::default());
    let started = Instant::now();
    let mut load = vec![];
    let mut n = 0;
    let black_hole = Faults {
        black_hole_rate: 1.0,
        black_hole: Duration::from_secs(5),
        ..Faults::default()
    };
    let mut plan = chaos_plan(secs).into_iter().peekable();
    let mut done: Vec<String> = vec![];
    while started.elapsed() < Duration::from_secs(secs) {
        while let Some(&(at, chaos)) = plan.peek() {
            if started.elapsed() < Duration::from_secs(at) {
                break;
            }
            plan.next();
            match chaos {
                Chaos::Pause => third.signal("STOP"),
                Chaos::Resume => third.signal("CONT"),
                Chaos::Cut => soak.cut.set_faults_everywhere(black_hole),
                Chaos::Reconnect => soak.cut.set_faults_everywhere(Faults::default()),
                Chaos::Kill => third.kill(),
                Chaos::Restart => {
                    third.restart().await;
                    *soak.third.write().unwrap() = third.address.clone();
                }
            }
            done.push(format!("{chaos:?} at {} s", started.elapsed().as_secs()));
        }
        for _ in 0..TRIGGERS_PER_SECOND {
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

    // After the load, with the faults gone: triggers every 5 s until every org got one answered
    // 202 and a schedule tick started, for at most RECOVERY; what came back is printed. Only a
    // tick is required (during the load or after): on this project's 2-core machine the
    // emulator spends seconds parsing each admission statement, falls 10 s behind under the
    // load, and does not always come back within RECOVERY (#23: a statement past its deadline
    // still runs there, and the releases that answer it add more).
    let recovery = Instant::now();
    let mut recovered = [false; ORGS];
    let mut tick_started = false;
    while recovery.elapsed() < RECOVERY && !(tick_started && recovered.iter().all(|r| *r)) {
        let mut tries = vec![];
        for (org, done) in recovered.iter().enumerate() {
            if !done {
                let soak = soak.clone();
                let n = n + (org + ORGS - n % ORGS) % ORGS;
                tries.push((org, tokio::spawn(async move { soak.trigger(n).await })));
            }
        }
        n += ORGS;
        for (org, task) in tries {
            recovered[org] |= task.await.unwrap();
        }
        tick_started = tick_started
            || runs_of(&soak.apps[0].meta_dataset, &soak.orgs[0].0)
                .await
                .values()
                .any(Run::is_started_tick);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    println!(
        "after the load: {} of {ORGS} orgs got a trigger answered 202, a tick started: \
         {tick_started}, in {} s",
        recovered.iter().filter(|r| **r).count(),
        recovery.elapsed().as_secs()
    );
    soak.schedule(false).await;

    // Settle: every slot free (releases and refunds land, the reaper frees what a lost
    // instance held) within two leases.
    let settle = Instant::now();
    let mut quotas = vec![];
    for (slug, _) in &soak.orgs {
        loop {
            let q = soak.apps[0].quota(slug).await;
            if q["active_run_ids"] == json!([]) && q["queued_run_ids"] == json!([])
                || settle.elapsed() > Duration::from_secs(90)
            {
                quotas.push(q);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let history = std::mem::take(&mut *soak.history.lock().unwrap());
    let meta = &soak.apps[0].meta_dataset;
    let accepted = soak.model.accepted_jobs();
    let mut table = Table::new();
    for a in &history.answers {
        check(
            &mut table,
            "a no 5xx but 503 with Retry-After",
            a.status < 500 || (a.status == 503 && a.retry_after),
            || format!("{a:?}"),
        );
    }
    let told: HashSet<String> = history
        .answers
        .iter()
        .filter(|a| a.status == 202)
        .filter_map(|a| a.run_id.clone())
        .collect();
    let mut ticks_started = 0;
    let mut lease_lost = 0;
    for (org, (slug, _)) in soak.orgs.iter().enumerate() {
        let runs = runs_of(meta, slug).await;
        // (b) Every run told 202, and every tick that started, ends terminal.
        for (id, run) in &runs {
            if told.contains(id) || run.is_started_tick() {
                check(
                    &mut table,
                    "b every 202 run (and started tick) ends terminal",
                    TERMINAL.contains(&run.last.as_str()),
                    || format!("{id}: {:?}", run.last),
                );
            }
        }
        for a in history
            .answers
            .iter()
            .filter(|a| a.org == org && a.status == 202)
        {
            let id = a.run_id.clone().unwrap_or_default();
            check(
                &mut table,
                "b every 202 run (and started tick) ends terminal",
                runs.contains_key(&id),
                || format!("{id}: no event at all"),
            );
        }
        // (c) From each run's step intervals: at most CONCURRENT overlap. A run that lost its
        // lease executes until the lease lapsed (its paused process wrote the step's end
        // later, after doing nothing meanwhile).
        let beats: HashMap<String, i64> = counts(format!(
            "SELECT run_id, UNIX_MICROS(MAX(heartbeat_at)) FROM `{meta}.run_heartbeats` \
             WHERE org_slug = '{slug}' GROUP BY run_id LIMIT 100000"
        ))
        .await;
        let intervals = rows(format!(
            "SELECT run_id, UNIX_MICROS(MIN(started_at)), UNIX_MICROS(MAX(COALESCE(ended_at, started_at))) \
             FROM `{meta}.step_logs` WHERE org_slug = '{slug}' GROUP BY run_id LIMIT 100000"
        ))
        .await;
        let mut points: Vec<(i64, i32)> = vec![];
        for r in &intervals {
            let s: i64 = r[1].parse().unwrap();
            let mut e: i64 = r[2].parse().unwrap();
            if let Some(run) = runs.get(&r[0]).filter(|run| run.lease_lost) {
                lease_lost += 1;
                let renewed = beats
                    .get(&r[0])
                    .copied()
                    .max(run.pending_micros)
                    .unwrap_or(s);
                e = e.min(renewed + FENCE_AFTER_MICROS).max(s);
            }
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
        // (d) Writes per tag against the append jobs BigQuery accepted for its runs.
        let writes = counts(format!(
            "SELECT tag, COUNT(*) FROM `{}.soak_appends` GROUP BY tag LIMIT 100000",
            slug.replace('-', "_")
        ))
        .await;
        let mut by_tag: HashMap<&str, Vec<(&String, &Run)>> = HashMap::new();
        for (id, run) in &runs {
            by_tag.entry(run.tag.as_str()).or_default().push((id, run));
        }
        for tag in writes.keys() {
            by_tag.entry(tag.as_str()).or_default();
        }
        for (tag, tag_runs) in &by_tag {
            let wrote = writes.get(*tag).copied().unwrap_or(0);
            let jobs: usize = tag_runs
                .iter()
                .map(|(id, _)| {
                    let prefix = append_jobs_prefix(id);
                    accepted.iter().filter(|j| j.starts_with(&prefix)).count()
                })
                .sum();
            let succeeded = tag_runs.iter().any(|(_, r)| r.last == "SUCCEEDED");
            check(
                &mut table,
                "d writes at most once per attempt, once if SUCCEEDED",
                wrote <= jobs as i64 && (!succeeded || wrote == 1),
                || format!("{tag}: {wrote} rows, {jobs} accepted jobs, succeeded {succeeded}"),
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
        let started_runs: Vec<(&String, &Run)> = runs.iter().filter(|(_, r)| r.started).collect();
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
        for a in history.answers.iter().filter(|a| {
            a.org == org && a.status == 202 && a.run_status.as_deref() == Some("PENDING")
        }) {
            let id = a.run_id.clone().unwrap_or_default();
            check(
                &mut table,
                "f every 202 PENDING started",
                runs.get(&id).is_some_and(|r| r.started),
                || id.clone(),
            );
        }
        for (id, run) in &started_runs {
            check(
                &mut table,
                "f every started run was told 202, unanswered or a tick",
                told.contains(*id) || run.tick.is_some() || history.unanswered.contains(&run.tag),
                || format!("{id} (tag {}, {})", run.tag, run.last),
            );
        }
        // (i) Each tick once.
        let mut ticks: HashMap<&str, usize> = HashMap::new();
        for (_, run) in &started_runs {
            if let Some(tick) = &run.tick {
                *ticks.entry(tick.as_str()).or_default() += 1;
            }
        }
        ticks_started += ticks.len();
        for (tick, started) in ticks {
            check(
                &mut table,
                "i each schedule tick started at most once",
                started == 1,
                || format!("{tick}: {started} runs"),
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
    let with_steps = history
        .ends_checked
        .saturating_sub(history.ended_without_steps.len());
    for _ in 0..with_steps {
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
    println!(
        "soak: {secs} s, 3 instances (the third a process), {ORGS} orgs at concurrent {CONCURRENT}, \
         {n} triggers, {} re-runs, {ticks_started} schedule ticks started",
        history.reruns
    );
    println!(
        "answers by status: {statuses:?}; {} tags got no answer at all",
        history.unanswered.len()
    );
    println!("faults injected: {injected:?}");
    println!("third instance: {done:?}");
    println!(
        "calls of the third instance black-holed while cut off: {}",
        cut_off.values().map(|i| i.black_holed).sum::<usize>()
    );
    println!("runs stopped by their instance for a lapsed lease: {lease_lost}");
    println!(
        "jobs accepted: {}, duplicate job ids refused: {}",
        accepted.len(),
        soak.model.duplicate_jobs() + soak.cut.duplicate_jobs()
    );
    let mut statements: BTreeMap<String, usize> = BTreeMap::new();
    for seen in soak.model.seen() {
        let table = seen.table.rsplit('.').next().unwrap_or_default();
        *statements
            .entry(format!("{table} {:?}", seen.class))
            .or_default() += 1;
    }
    println!("statements and insertAll calls by table: {statements:?}");
    println!(
        "calls by kind (count, time answering them): {:?}",
        soak.model.calls_by_kind()
    );
    println!("the emulator's time by statement (count, seconds), the most first:");
    for (what, n, time) in soak.model.time_by_statement().into_iter().take(10) {
        println!("  {n:>5} {:>8.1} s  {what}", time.as_secs_f64());
    }
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
    assert!(ticks_started > 0, "no schedule tick started");
    drop(third);
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
