//! BigQuery's limits in front of the emulator.
//!
//! The emulator answers a DML statement in milliseconds and runs one statement at a time, so on
//! its own it hides what a design costs on BigQuery. This layer sits between the service and
//! the emulator and puts BigQuery's documented limits back, each configurable:
//!
//! - mutating DML (UPDATE, DELETE, MERGE) per table: 2 running, 20 waiting; the next one fails
//!   at once with BigQuery's error (HTTP 400, reason `resourcesExceeded`, "Too many DML
//!   statements outstanding against table …, limit is 20");
//! - INSERT DML per table: 10 running, 100 waiting, the same error past that;
//! - interactive queries (every other `jobs.query`) per project: 100 running, 1,000 waiting;
//!   the next one fails at once with HTTP 403 `rateLimitExceeded` ("too many concurrent
//!   queries"). Queries sent as `jobs.insert` (the pipelines' steps) are not counted here;
//! - a latency per DML statement (held while it counts as running), per query and per
//!   `insertAll` request: the least time each takes in all (the emulator's own time counts
//!   towards it, so a slow emulator does not add to the model).
//!
//! - job ids unique per project: a second `jobs.insert` with an id already used is answered
//!   409 `duplicate` "Already Exists: Job …" and never reaches the emulator (which would run it
//!   again), while `jobs.get` finds the first ([`JobIds`], shared with the fault proxy);
//! - faults per call kind ([`CallKind`], [`Faults`]): a fraction of calls answered 503
//!   `backendError`, a fraction of those after the call took effect (a lost answer), a fraction
//!   black-holed (held, then refused, so the caller's own deadline ends it), and an extra
//!   latency; decided by a seeded generator, so a run is repeatable;
//! - bytes caps: SQL chosen with [`LimitsModel::bill`] bills a set number of bytes (at least
//!   10 MB), and a `jobs.insert` whose `maximumBytesBilled` is lower is refused as BigQuery
//!   refuses it: the job exists, DONE, failed `bytesBilledLimitExceeded`, nothing ran; `jobs.get`
//!   and `getQueryResults` say the same. Every job that runs bills that many bytes, or BigQuery's
//!   10 MB minimum: `jobs.get` of a finished job answers `statistics.query.totalBytesBilled`
//!   (and `totalBytesProcessed`, `totalSlotMs`) as BigQuery does, where the emulator says 0.
//!
//! Everything else passes through unchanged. It records every statement it saw (table, class,
//! when it started, whether it was refused), every fault it injected, and every job that
//! reached BigQuery with its labels ([`LabelledJob`]; the emulator ignores labels), so tests,
//! the soak and `make bench-scale` can assert statements per second on one table, and that
//! every job carried its cost labels.
//!
//! Used by the integration tests (`tests/api/admission.rs`, `tests/api/soak.rs`) and by
//! `examples/bench_scale.rs` and `examples/bench_reads.rs`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// The limits and latencies the layer enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub mutating_running: usize,
    pub mutating_waiting: usize,
    pub insert_running: usize,
    pub insert_waiting: usize,
    /// Interactive queries (`jobs.query` that is not DML) of the whole project: this many run
    /// at once, this many more wait, and the next is refused 403 `rateLimitExceeded`.
    pub query_running: usize,
    pub query_waiting: usize,
    /// Held by every DML statement while it runs (after it waited for its turn).
    pub dml_latency: Duration,
    pub query_latency: Duration,
    pub insert_all_latency: Duration,
}

impl Limits {
    /// BigQuery's documented DML concurrency with the given latencies.
    pub fn bigquery(dml: Duration, query: Duration, insert_all: Duration) -> Self {
        Self {
            mutating_running: 2,
            mutating_waiting: 20,
            insert_running: 10,
            insert_waiting: 100,
            query_running: 100,
            query_waiting: 1000,
            dml_latency: dml,
            query_latency: query,
            insert_all_latency: insert_all,
        }
    }
}

/// Which API call a request is, for the fault rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `jobs.query` (statements and reads).
    Query,
    /// `jobs.insert` (step jobs).
    JobsInsert,
    /// `jobs.get`.
    JobsGet,
    /// `getQueryResults`.
    Results,
    /// `tabledata.insertAll`.
    InsertAll,
    /// Anything else (datasets, tables, cancel).
    Other,
}

impl CallKind {
    pub fn of(method: &str, path: &str) -> Self {
        let post = method == "POST";
        if post && path.ends_with("/queries") {
            CallKind::Query
        } else if post && path.ends_with("/jobs") {
            CallKind::JobsInsert
        } else if post && path.ends_with("/insertAll") {
            CallKind::InsertAll
        } else if method == "GET" && path.contains("/queries/") {
            CallKind::Results
        } else if method == "GET" && path.contains("/jobs/") {
            CallKind::JobsGet
        } else {
            CallKind::Other
        }
    }
}

/// Fault rates for one call kind (fractions from 0 to 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Answered 503 `backendError`.
    pub fail: f64,
    /// Of those, the part that first took effect (forwarded, answer dropped).
    pub lost: f64,
    /// Held for `black_hole`, then refused without taking effect.
    pub black_hole_rate: f64,
    pub black_hole: Duration,
    /// Added to every call of the kind.
    pub extra_latency: Duration,
}

impl Faults {
    /// BigQuery flapping: `fail` of the calls refused with 503, `lost` of those after they took
    /// effect.
    pub fn flapping(fail: f64, lost: f64) -> Self {
        Self {
            fail,
            lost,
            ..Self::default()
        }
    }
}

/// What the model injected for one call kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// Refused before taking effect.
    pub refused: usize,
    /// Took effect, answer lost.
    pub lost: usize,
    pub black_holed: usize,
}

/// Job ids seen per project, as BigQuery keeps them: a second `jobs.insert` with a used id is
/// refused with 409 "Already Exists", whatever became of the first.
#[derive(Default)]
pub struct JobIds {
    used: Mutex<HashSet<String>>,
    duplicates: std::sync::atomic::AtomicUsize,
}

impl JobIds {
    /// For a `jobs.insert` (`path` ends in `/jobs`): BigQuery's 409 when its job id was used
    /// before, else `None` (and the id is now used). Call it only for requests that reach
    /// BigQuery.
    pub fn check(&self, path: &str, body: &[u8]) -> Option<HttpResponse> {
        let job: Value = serde_json::from_slice(body).ok()?;
        let id = job["jobReference"]["jobId"].as_str()?.to_string();
        let project = path
            .split("/projects/")
            .nth(1)
            .and_then(|p| p.split('/').next())
            .unwrap_or_default()
            .to_string();
        let location = job["jobReference"]["location"].as_str().unwrap_or("US");
        if self.used.lock().unwrap().insert(format!("{project}/{id}")) {
            return None;
        }
        self.duplicates
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let message = format!("Already Exists: Job {project}:{location}.{id}");
        Some(HttpResponse::Conflict().json(json!({
            "error": {
                "code": 409,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": "duplicate"}],
                "status": "ALREADY_EXISTS"
            }
        })))
    }

    /// The job ids accepted so far (each ran once), without their project.
    pub fn accepted(&self) -> Vec<String> {
        self.used
            .lock()
            .unwrap()
            .iter()
            .map(|p| {
                p.split_once('/')
                    .map_or(p.clone(), |(_, id)| id.to_string())
            })
            .collect()
    }

    /// How many inserts were refused as duplicates.
    pub fn duplicates(&self) -> usize {
        self.duplicates.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// BigQuery's 503 `backendError`.
pub fn backend_error() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({"error": {"code": 503,
        "message": "Error encountered during execution. Retrying may solve the problem.",
        "status": "UNAVAILABLE",
        "errors": [{"reason": "backendError", "domain": "global",
                    "message": "Error encountered during execution. Retrying may solve the problem."}]}}))
}

/// A small seeded generator (xorshift), so a faulty run can be repeated.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a request to BigQuery is, as far as the limits go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// UPDATE, DELETE, MERGE.
    Mutating,
    /// INSERT DML.
    Insert,
    /// Any other `jobs.query` (SELECT, DDL).
    Query,
    /// `tabledata.insertAll` (streaming).
    InsertAll,
}

/// One statement or `insertAll` the layer saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Since the layer started.
    pub at: Duration,
    /// The table, as the statement names it (`dataset.table`), or the `insertAll` table.
    pub table: String,
    pub class: Class,
    /// Refused by the concurrency limit (never reached the emulator).
    pub refused: bool,
}

/// One table's DML queue of one class, with the semaphore of its running places.
type Queues = HashMap<(String, Class), (TableState, Arc<Semaphore>)>;

#[derive(Default)]
struct TableState {
    /// Running plus waiting.
    outstanding: usize,
    running: usize,
    max_running: usize,
}

struct State {
    limits: Mutex<Limits>,
    upstream: String,
    client: reqwest::Client,
    started: Instant,
    tables: Mutex<Queues>,
    seen: Mutex<Vec<Seen>>,
    jobs: JobIds,
    labelled: Mutex<Vec<LabelledJob>>,
    /// Statement (its first line) -> (how many, the emulator's time answering them).
    answered: Mutex<HashMap<String, (usize, Duration)>>,
    /// Every call by kind: (how many, how long their answers took in all).
    calls: Mutex<HashMap<CallKind, (usize, Duration)>>,
    /// (SQL containing this, bytes a job of it bills), first match wins.
    billed: Mutex<Vec<(String, u64)>>,
    /// Jobs refused over their `maximumBytesBilled`: id -> (cap, bytes it would bill).
    over_cap: Mutex<HashMap<String, (u64, u64)>>,
    /// Jobs that ran: id -> bytes billed (what `jobs.get` reports).
    job_bills: Mutex<HashMap<String, u64>>,
    faults: Mutex<HashMap<CallKind, Faults>>,
    injected: Mutex<HashMap<CallKind, Injected>>,
    dice: Mutex<Dice>,
}

/// A job as BigQuery received it (`jobs.query` or `jobs.insert`): its SQL, its labels and its
/// `maximumBytesBilled`.
#[derive(Debug, Clone)]
pub struct LabelledJob {
    pub query: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub maximum_bytes_billed: Option<String>,
}

/// BigQuery bills at least 10 MB per query.
const MIN_BILL: u64 = 10 * 1024 * 1024;

/// BigQuery's error for a job over its cap.
fn bytes_billed_error(cap: u64, bytes: u64) -> Value {
    let message =
        format!("Query exceeded limit for bytes billed: {cap}. {bytes} or higher required.");
    json!({"message": message, "domain": "global", "reason": "bytesBilledLimitExceeded"})
}

impl State {
    fn record_labels(&self, body: &[u8]) {
        let Ok(job) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        // jobs.query carries them at the top, jobs.insert in its configuration.
        let (query, labels, cap) = if job["configuration"].is_object() {
            (
                &job["configuration"]["query"]["query"],
                &job["configuration"]["labels"],
                &job["configuration"]["query"]["maximumBytesBilled"],
            )
        } else {
            (&job["query"], &job["labels"], &job["maximumBytesBilled"])
        };
        let labels = labels
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        self.labelled.lock().unwrap().push(LabelledJob {
            query: query.as_str().unwrap_or_default().to_string(),
            labels,
            maximum_bytes_billed: cap.as_str().map(str::to_string),
        });
    }

    /// `call` (answering `sql`), its time added to [`LimitsModel::time_by_statement`].
    async fn timed(&self, sql: &str, call: impl Future<Output = HttpResponse>) -> HttpResponse {
        let started = Instant::now();
        let answer = call.await;
        let what: String = sql
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .chars()
            .take(70)
            .collect();
        tally(&self.answered, what, started.elapsed());
        answer
    }

    /// What a job of `query` bills: the bytes [`LimitsModel::bill`] set for it, or BigQuery's
    /// minimum.
    fn bill_of(&self, query: &str) -> u64 {
        self.billed
            .lock()
            .unwrap()
            .iter()
            .find(|(needle, _)| query.contains(needle.as_str()))
            .map_or(MIN_BILL, |(_, b)| *b)
            .max(MIN_BILL)
    }

    /// A `jobs.insert` that will run: what it bills, for its `jobs.get`.
    fn will_bill(&self, body: &[u8]) {
        let Ok(job) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let (Some(query), Some(id)) = (
            job["configuration"]["query"]["query"].as_str(),
            job["jobReference"]["jobId"].as_str(),
        ) else {
            return;
        };
        let bytes = self.bill_of(query);
        self.job_bills.lock().unwrap().insert(id.to_string(), bytes);
    }

    /// `jobs.get` as the emulator answered it, with the statistics BigQuery gives a finished job
    /// (the emulator's are 0).
    fn with_statistics(&self, path: &str, answer: Fetched) -> HttpResponse {
        let id = path.rsplit('/').next().unwrap_or_default();
        let bytes = self.job_bills.lock().unwrap().get(id).copied();
        let mut job = match (&answer, bytes) {
            (Ok((200, None, body)), Some(_)) => serde_json::from_slice::<Value>(body).ok(),
            _ => None,
        };
        match (&mut job, bytes) {
            (Some(job), Some(bytes)) if job["status"]["state"] == "DONE" => {
                let bytes = bytes.to_string();
                job["statistics"]["totalSlotMs"] = json!("1000");
                job["statistics"]["query"]["totalBytesBilled"] = json!(bytes);
                job["statistics"]["query"]["totalBytesProcessed"] = json!(bytes);
                job["statistics"]["query"]["totalSlotMs"] = json!("1000");
                HttpResponse::Ok().json(job)
            }
            _ => relay(answer),
        }
    }

    /// For a `jobs.insert` whose SQL bills more than its `maximumBytesBilled`: BigQuery's
    /// answer (the job exists, DONE, failed `bytesBilledLimitExceeded`, nothing ran), and the
    /// job is remembered so `jobs.get` and `getQueryResults` say the same.
    fn over_cap(&self, body: &[u8]) -> Option<HttpResponse> {
        let job: Value = serde_json::from_slice(body).ok()?;
        let query = job["configuration"]["query"]["query"].as_str()?;
        let cap: u64 = job["configuration"]["query"]["maximumBytesBilled"]
            .as_str()?
            .parse()
            .ok()?;
        let bytes = self.bill_of(query);
        if bytes <= cap {
            return None;
        }
        let id = job["jobReference"]["jobId"].as_str()?.to_string();
        self.over_cap.lock().unwrap().insert(id, (cap, bytes));
        let mut answer = job.clone();
        answer["status"] = json!({
            "state": "DONE",
            "errorResult": bytes_billed_error(cap, bytes),
            "errors": [bytes_billed_error(cap, bytes)],
        });
        Some(HttpResponse::Ok().json(answer))
    }

    /// `jobs.get` or `getQueryResults` of a job refused over its cap.
    fn refused_over_cap(&self, kind: CallKind, path: &str) -> Option<HttpResponse> {
        let id = path.rsplit('/').next()?;
        let (cap, bytes) = *self.over_cap.lock().unwrap().get(id)?;
        let error = bytes_billed_error(cap, bytes);
        Some(match kind {
            CallKind::Results => HttpResponse::BadRequest().json(json!({
                "error": {
                    "code": 400,
                    "message": error["message"],
                    "errors": [error],
                    "status": "INVALID_ARGUMENT"
                }
            })),
            _ => HttpResponse::Ok().json(json!({
                "jobReference": {"jobId": id},
                "status": {"state": "DONE", "errorResult": error, "errors": [error]}
            })),
        })
    }
}

/// What the dice decided for one call.
enum Fate {
    Pass,
    Refuse,
    Lose,
    BlackHole(Duration),
}

pub struct LimitsModel {
    /// `host:port` to give the service as `BIGQUERY_EMULATOR_HOST`.
    pub host: String,
    state: Arc<State>,
}

impl LimitsModel {
    /// Starts the layer on a free loopback port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str, limits: Limits) -> Self {
        let state = Arc::new(State {
            limits: Mutex::new(limits),
            upstream: format!("http://{upstream}"),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
            started: Instant::now(),
            tables: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            jobs: JobIds::default(),
            labelled: Mutex::new(Vec::new()),
            answered: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            billed: Mutex::new(Vec::new()),
            over_cap: Mutex::new(HashMap::new()),
            job_bills: Mutex::new(HashMap::new()),
            faults: Mutex::new(HashMap::new()),
            injected: Mutex::new(HashMap::new()),
            dice: Mutex::new(Dice(0x9E37_79B9_7F4A_7C15)),
        });
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(handle))
        })
        .workers(2)
        .max_connections(100_000)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { host, state }
    }

    /// Changes the latencies from now on (the concurrency limits stay as started).
    pub fn set_latencies(&self, dml: Duration, query: Duration, insert_all: Duration) {
        let mut limits = self.state.limits.lock().unwrap();
        limits.dml_latency = dml;
        limits.query_latency = query;
        limits.insert_all_latency = insert_all;
    }

    /// Sets the fault rates of one call kind from now on (all zero: no faults).
    pub fn set_faults(&self, kind: CallKind, faults: Faults) {
        self.state.faults.lock().unwrap().insert(kind, faults);
    }

    /// The same fault rates for every call kind.
    pub fn set_faults_everywhere(&self, faults: Faults) {
        for kind in [
            CallKind::Query,
            CallKind::JobsInsert,
            CallKind::JobsGet,
            CallKind::Results,
            CallKind::InsertAll,
            CallKind::Other,
        ] {
            self.set_faults(kind, faults);
        }
    }

    /// Seeds the fault dice (the default seed is fixed).
    pub fn seed(&self, seed: u64) {
        *self.state.dice.lock().unwrap() = Dice(seed.max(1));
    }

    /// The faults injected so far, per call kind.
    pub fn injected(&self) -> HashMap<CallKind, Injected> {
        self.state.injected.lock().unwrap().clone()
    }

    /// `jobs.insert` calls refused 409 because their job id was used before.
    pub fn duplicate_jobs(&self) -> usize {
        self.state.jobs.duplicates()
    }

    /// The ids of the `jobs.insert` calls that reached BigQuery (each job ran once).
    pub fn accepted_jobs(&self) -> Vec<String> {
        self.state.jobs.accepted()
    }

    /// From now on a job whose SQL contains `needle` bills `bytes` (at least BigQuery's 10 MB
    /// minimum): one sent with a lower `maximumBytesBilled` is refused as BigQuery does.
    pub fn bill(&self, needle: &str, bytes: u64) {
        self.state
            .billed
            .lock()
            .unwrap()
            .push((needle.to_string(), bytes));
    }

    /// Where the emulator's time went: per statement (its SQL's first line), how many it
    /// answered and how long they took in all, longest first.
    pub fn time_by_statement(&self) -> Vec<(String, usize, Duration)> {
        let mut all: Vec<_> = self
            .state
            .answered
            .lock()
            .unwrap()
            .iter()
            .map(|(what, (n, time))| (what.clone(), *n, *time))
            .collect();
        all.sort_by_key(|entry| std::cmp::Reverse(entry.2));
        all
    }

    /// Every call by kind: how many, and how long their answers took in all.
    pub fn calls_by_kind(&self) -> BTreeMap<String, (usize, Duration)> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(kind, counted)| (format!("{kind:?}"), *counted))
            .collect()
    }

    /// Every job that reached BigQuery, with its labels.
    pub fn labelled_jobs(&self) -> Vec<LabelledJob> {
        self.state.labelled.lock().unwrap().clone()
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Forgets what was seen (e.g. a bootstrap's statements).
    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    /// Statements of `class` on tables whose name ends with `table`: (sent to the emulator,
    /// refused).
    pub fn count(&self, table: &str, class: Class) -> (usize, usize) {
        let seen = self.state.seen.lock().unwrap();
        let mine = seen
            .iter()
            .filter(|s| s.class == class && s.table.ends_with(table));
        let (mut ran, mut refused) = (0, 0);
        for s in mine {
            if s.refused {
                refused += 1;
            } else {
                ran += 1;
            }
        }
        (ran, refused)
    }

    /// The most statements of `class` on `table` that started within any one second.
    pub fn max_per_second(&self, table: &str, class: Class) -> usize {
        let seen = self.state.seen.lock().unwrap();
        let times: Vec<Duration> = seen
            .iter()
            .filter(|s| s.class == class && s.table.ends_with(table) && !s.refused)
            .map(|s| s.at)
            .collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// The most statements of `class` that ran on `table` at the same moment.
    pub fn max_running(&self, table: &str, class: Class) -> usize {
        let tables = self.state.tables.lock().unwrap();
        tables
            .iter()
            .filter(|((t, c), _)| *c == class && t.ends_with(table))
            .map(|(_, (s, _))| s.max_running)
            .max()
            .unwrap_or(0)
    }
}

/// The first keyword after comments, and the table a DML statement names after it.
pub fn classify(sql: &str) -> (Class, Option<String>) {
    let code: Vec<&str> = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .collect();
    let upper = |i: usize| code.get(i).map(|w| w.to_ascii_uppercase());
    let (class, table_at) = match upper(0).as_deref() {
        Some("UPDATE") => (Class::Mutating, 1),
        Some("DELETE") if upper(1).as_deref() == Some("FROM") => (Class::Mutating, 2),
        Some("DELETE") => (Class::Mutating, 1),
        Some("MERGE") if upper(1).as_deref() == Some("INTO") => (Class::Mutating, 2),
        Some("MERGE") => (Class::Mutating, 1),
        Some("INSERT") if upper(1).as_deref() == Some("INTO") => (Class::Insert, 2),
        Some("INSERT") => (Class::Insert, 1),
        _ => return (Class::Query, None),
    };
    let table = code.get(table_at).map(|t| {
        t.trim_matches('`')
            .split('`')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    (class, table)
}

/// The queue of the project's interactive queries, among the tables' DML queues.
const PROJECT_QUERIES: &str = "(project queries)";

/// An error answer in BigQuery's shape: HTTP `code` with its status name, one error with its
/// domain and reason.
fn bigquery_error(
    code: u16,
    status: &str,
    domain: &str,
    reason: &str,
    message: &str,
) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": status
        }
    }))
}

/// BigQuery's answer to an interactive query past the project's queue.
fn too_many_queries() -> HttpResponse {
    let message = "Exceeded rate limits: too many concurrent queries for this project_and_region.";
    bigquery_error(
        403,
        "PERMISSION_DENIED",
        "usageLimits",
        "rateLimitExceeded",
        message,
    )
}

/// BigQuery's answer to a DML statement past the table's queue.
fn too_many_outstanding(table: &str, waiting: usize) -> HttpResponse {
    let message = format!(
        "Resources exceeded during query execution: Too many DML statements outstanding \
         against table {table}, limit is {waiting}"
    );
    bigquery_error(
        400,
        "INVALID_ARGUMENT",
        "global",
        "resourcesExceeded",
        &message,
    )
}

impl State {
    fn limits(&self) -> Limits {
        self.limits.lock().unwrap().clone()
    }

    /// Rolls the dice for one call of `kind`; returns its fate and its extra latency.
    fn fate(&self, kind: CallKind) -> (Fate, Duration) {
        let Some(f) = self.faults.lock().unwrap().get(&kind).copied() else {
            return (Fate::Pass, Duration::ZERO);
        };
        let (a, b) = {
            let mut dice = self.dice.lock().unwrap();
            (dice.roll(), dice.roll())
        };
        let mut injected = self.injected.lock().unwrap();
        let counts = injected.entry(kind).or_default();
        let fate = if a < f.black_hole_rate {
            counts.black_holed += 1;
            Fate::BlackHole(f.black_hole)
        } else if a < f.black_hole_rate + f.fail {
            if b < f.lost {
                counts.lost += 1;
                Fate::Lose
            } else {
                counts.refused += 1;
                Fate::Refuse
            }
        } else {
            Fate::Pass
        };
        (fate, f.extra_latency)
    }

    fn record(&self, table: &str, class: Class, refused: bool) {
        self.seen.lock().unwrap().push(Seen {
            at: self.started.elapsed(),
            table: table.to_string(),
            class,
            refused,
        });
    }

    /// Takes a place in the table's DML queue, or `None` when it is full.
    fn enqueue(&self, table: &str, class: Class) -> Option<Arc<Semaphore>> {
        let limits = self.limits();
        let (running, waiting) = match class {
            Class::Mutating => (limits.mutating_running, limits.mutating_waiting),
            Class::Query => (limits.query_running, limits.query_waiting),
            _ => (limits.insert_running, limits.insert_waiting),
        };
        let mut tables = self.tables.lock().unwrap();
        let (state, semaphore) = tables
            .entry((table.to_string(), class))
            .or_insert_with(|| (TableState::default(), Arc::new(Semaphore::new(running))));
        if state.outstanding >= running + waiting {
            return None;
        }
        state.outstanding += 1;
        Some(semaphore.clone())
    }

    fn started_running(&self, table: &str, class: Class) {
        let mut tables = self.tables.lock().unwrap();
        if let Some((s, _)) = tables.get_mut(&(table.to_string(), class)) {
            s.running += 1;
            s.max_running = s.max_running.max(s.running);
        }
    }

    fn left(&self, table: &str, class: Class, was_running: bool) {
        let mut tables = self.tables.lock().unwrap();
        if let Some((s, _)) = tables.get_mut(&(table.to_string(), class)) {
            if was_running {
                s.running -= 1;
            }
            s.outstanding -= 1;
        }
    }
}

/// A statement's place in its table's DML queue, given up when it is dropped.
/// While running it holds one of the table's running places (`permit`), given back only after
/// the count of running statements is lowered, so the count never reads above the limit.
struct Place {
    state: web::Data<State>,
    table: String,
    class: Class,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.state
            .left(&self.table, self.class, self.permit.is_some());
        // `permit` is dropped after this body: the next statement starts after the count fell.
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let path = req.uri().path().to_string();
    let kind = CallKind::of(req.method().as_str(), &path);
    let started = Instant::now();
    let limited_state = state.clone();
    // (`return` in this block gives the block's answer.)
    let answer = async move {
        let (fate, extra) = limited_state.fate(kind);
        tokio::time::sleep(extra).await;
        match fate {
            Fate::Pass => {}
            Fate::Refuse => return backend_error(),
            Fate::BlackHole(hold) => {
                tokio::time::sleep(hold).await;
                return backend_error();
            }
            Fate::Lose => {
                let _took_effect = limited(req, body, limited_state, path, kind).await;
                return backend_error();
            }
        }
        limited(req, body, limited_state, path, kind).await
    }
    .await;
    tally(&state.calls, kind, started.elapsed());
    answer
}

/// One more answer of `key` that took `took`, in a (count, time in all) tally.
fn tally<K: std::hash::Hash + Eq>(
    counts: &Mutex<HashMap<K, (usize, Duration)>>,
    key: K,
    took: Duration,
) {
    let mut counts = counts.lock().unwrap();
    let entry = counts.entry(key).or_default();
    entry.0 += 1;
    entry.1 += took;
}

/// The call under BigQuery's limits and job-id rule, forwarded to the emulator.
async fn limited(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    path: String,
    kind: CallKind,
) -> HttpResponse {
    let limits = state.limits();
    let post = req.method() == "POST";
    if post && (kind == CallKind::JobsInsert || path.ends_with("/queries")) {
        state.record_labels(&body);
    }
    if kind == CallKind::JobsInsert {
        if let Some(conflict) = state.jobs.check(&path, &body) {
            return conflict;
        }
        if let Some(refused) = state.over_cap(&body) {
            return refused;
        }
        state.will_bill(&body);
    }
    if matches!(kind, CallKind::JobsGet | CallKind::Results) {
        if let Some(answer) = state.refused_over_cap(kind, &path) {
            return answer;
        }
    }
    if kind == CallKind::JobsGet {
        let answer = fetch(&state.client, &state.upstream, &req, &body).await;
        return state.with_statistics(&path, answer);
    }
    if post && path.ends_with("/queries") {
        let sql = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["query"].as_str().map(str::to_string))
            .unwrap_or_default();
        match classify(&sql) {
            (class @ (Class::Mutating | Class::Insert), Some(table)) => {
                let Some(semaphore) = state.enqueue(&table, class) else {
                    state.record(&table, class, true);
                    let waiting = match class {
                        Class::Mutating => limits.mutating_waiting,
                        _ => limits.insert_waiting,
                    };
                    return too_many_outstanding(&table, waiting);
                };
                state.record(&table, class, false);
                // Leaves the queue even when the caller goes away mid-statement.
                let mut place = Place {
                    state: state.clone(),
                    table: table.clone(),
                    class,
                    permit: None,
                };
                let permit = semaphore.acquire_owned().await.unwrap();
                state.started_running(&table, class);
                place.permit = Some(permit);
                return at_least(
                    limits.dml_latency,
                    state.timed(&sql, forward(&state.client, &state.upstream, &req, &body)),
                )
                .await;
            }
            (Class::Query, _) => {
                // The project's interactive queries share one queue (recorded under no table).
                let Some(semaphore) = state.enqueue(PROJECT_QUERIES, Class::Query) else {
                    state.record("", Class::Query, true);
                    return too_many_queries();
                };
                state.record("", Class::Query, false);
                let mut place = Place {
                    state: state.clone(),
                    table: PROJECT_QUERIES.to_string(),
                    class: Class::Query,
                    permit: None,
                };
                let permit = semaphore.acquire_owned().await.unwrap();
                state.started_running(PROJECT_QUERIES, Class::Query);
                place.permit = Some(permit);
                return at_least(
                    limits.query_latency,
                    state.timed(&sql, forward(&state.client, &state.upstream, &req, &body)),
                )
                .await;
            }
            (class, _) => {
                state.record("", class, false);
                return at_least(
                    limits.query_latency,
                    forward(&state.client, &state.upstream, &req, &body),
                )
                .await;
            }
        }
    } else if post && path.ends_with("/insertAll") {
        let table = path
            .rsplit('/')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_default();
        state.record(&table, Class::InsertAll, false);
        return at_least(
            limits.insert_all_latency,
            forward(&state.client, &state.upstream, &req, &body),
        )
        .await;
    }
    forward(&state.client, &state.upstream, &req, &body).await
}

/// The answer of `call`, given no sooner than `latency` after it started: the latency is what
/// the request takes in all (the emulator's own time counts towards it).
async fn at_least(latency: Duration, call: impl Future<Output = HttpResponse>) -> HttpResponse {
    let started = Instant::now();
    let answer = call.await;
    tokio::time::sleep(latency.saturating_sub(started.elapsed())).await;
    answer
}

/// An upstream answer: status, content encoding and body as they came, or why none came.
type Fetched = Result<(u16, Option<String>, web::Bytes), String>;

/// Sends `req` with `body` to `upstream` (`http://host:port`) and relays the answer as it came
/// (a compressed body stays compressed, with its header).
pub async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    req: &HttpRequest,
    body: &web::Bytes,
) -> HttpResponse {
    relay(fetch(client, upstream, req, body).await)
}

async fn fetch(
    client: &reqwest::Client,
    upstream: &str,
    req: &HttpRequest,
    body: &web::Bytes,
) -> Fetched {
    let url = format!("{upstream}{}", req.uri());
    let mut outgoing = client.request(req.method().as_str().parse().unwrap(), url);
    // actix has already decoded a gzip body: forward it plain.
    if let Some(v) = req.headers().get("content-type") {
        outgoing = outgoing.header("content-type", v.to_str().unwrap());
    }
    let response = outgoing
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let encoding = response
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((status, encoding, response.bytes().await.unwrap_or_default()))
}

fn relay(fetched: Fetched) -> HttpResponse {
    let (status, encoding, bytes) = match fetched {
        Ok(answer) => answer,
        Err(e) => {
            return HttpResponse::BadGateway().json(json!({"error": {"code": 502,
                "message": format!("upstream: {e}"), "errors": [{"reason": "backendError"}]}}));
        }
    };
    let mut answer = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    answer.content_type("application/json");
    if let Some(encoding) = encoding {
        answer.insert_header(("content-encoding", encoding));
    }
    answer.body(bytes)
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn dml_is_told_from_queries_and_names_its_table() {
        let update = "-- a comment\nUPDATE `meta_x.org_quota_state` AS q\nSET a = 1";
        assert_eq!(
            classify(update),
            (Class::Mutating, Some("meta_x.org_quota_state".into()))
        );
        assert_eq!(
            classify("INSERT INTO `m.t` (a) VALUES (1)"),
            (Class::Insert, Some("m.t".into()))
        );
        assert_eq!(
            classify("DELETE FROM `m.t` WHERE TRUE"),
            (Class::Mutating, Some("m.t".into()))
        );
        assert_eq!(
            classify("MERGE `m.t` T USING s ON FALSE"),
            (Class::Mutating, Some("m.t".into()))
        );
        assert_eq!(classify("SELECT 1 LIMIT 1").0, Class::Query);
    }
}
