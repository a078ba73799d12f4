//! `make bench-reads`: a thousand people watching runs, behind BigQuery's query limits.
//!
//! The service runs in this process (release build) against the emulator with the BigQuery
//! limits model in between (`tests/common/bq_limits.rs`: query 0.3 s, 100 interactive queries
//! at once per project and 1,000 waiting, then 403 `rateLimitExceeded`; mutating DML 1 s;
//! insertAll 0.05 s). 10 orgs each run 20 runs of a pipeline whose 30 steps take 5 s each (in a
//! chain: a change every 5 s for 150 s, longer than the phase), all started together after the
//! orgs are onboarded. (Ten orgs, not fifty: the emulator takes 10 to 25 s to onboard one, and
//! the reads cost the same whatever the orgs: the tail reads every run in one query.) Then
//! 1,000 watchers watch them for 60 s, spread evenly over the 200 runs:
//!
//! - 500 pollers, as the web view and scripts poll: `GET …/runs/{run_id}` every 2 s, its steps
//!   every third look, the org's run list every fifth; each sends back the `ETag` it was last
//!   told for the run and for its steps (`If-None-Match`; a steps look sends the run's too), as
//!   `quarry runs watch` does when it polls, and takes a 304 as its last answer again;
//! - 500 stream readers: `GET …/runs/{run_id}/events` (Server-Sent Events); the delivery time
//!   of an event is the time from the newest write it shows (the run's last event, a step's
//!   start or end, all stamped by this process's clock) to its arrival.
//!
//! Prints a table of figures with each target met or unmet.

#[path = "../tests/common/bq_limits.rs"]
mod bq_limits;
#[path = "support/report.rs"]
mod report;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bq_limits::{Class, Limits, LimitsModel};
use chrono::{DateTime, Utc};
use report::{percentile, row};
use serde_json::{Value, json};

const ORGS: usize = 10;
const RUNS_PER_ORG: usize = 20;
const POLLERS: usize = 500;
const STREAMS: usize = 500;
const DML: Duration = Duration::from_secs(1);
const QUERY: Duration = Duration::from_millis(300);
const INSERT_ALL: Duration = Duration::from_millis(50);
/// Thirty steps of 5 s in a chain: a change every 5 s for 150 s.
const PIPELINE: &str = "description: Thirty 5-s steps in a chain (make bench-reads).\nsteps:\n";

/// What the pollers saw, per kind of read.
#[derive(Default)]
struct Reads {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    statuses: BTreeMap<u16, usize>,
}

impl Reads {
    fn add(&mut self, kind: &'static str, status: u16, latency: Duration) {
        self.latencies.entry(kind).or_default().push(latency);
        *self.statuses.entry(status).or_default() += 1;
    }
    fn all(&self) -> Vec<Duration> {
        self.latencies.values().flatten().copied().collect()
    }
    /// Answers other than 2xx and 304 (the caller's own answer is current).
    fn non_2xx(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s) && **s != 304)
            .map(|(_, n)| n)
            .sum()
    }
}

/// What the stream readers saw.
#[derive(Default)]
struct Streams {
    /// From the newest write an event shows to its arrival.
    delivery: Vec<Duration>,
    events: usize,
    /// Answers to the stream requests that were not 200 (status, count).
    refused: BTreeMap<u16, usize>,
    /// Streams that failed mid-way (a transport error).
    broken: usize,
}

/// This process's resident memory, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The newest time an event's payload shows: the run's last event, a step attempt's start or
/// end.
fn newest_write(event: &Value) -> Option<DateTime<Utc>> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let mut newest = parse(&event["run"]["updated_at"]);
    for step in event["steps"].as_array().into_iter().flatten() {
        for t in [parse(&step["started_at"]), parse(&step["ended_at"])] {
            newest = newest.max(t);
        }
    }
    newest
}

/// One poller: a look every 2 s until `until`, starting after `offset`.
async fn poll(
    http: reqwest::Client,
    base: String,
    (slug, key, run_id): (String, String, String),
    offset: Duration,
    until: Instant,
    reads: Arc<Mutex<Reads>>,
) {
    tokio::time::sleep(offset).await;
    let mut every = tokio::time::interval(Duration::from_secs(2));
    let mut look = 0u64;
    // The ETag last answered for each kind of read, sent back as If-None-Match.
    let mut etags: BTreeMap<&'static str, String> = BTreeMap::new();
    while Instant::now() < until {
        every.tick().await;
        let mut paths = vec![("run", format!("/api/v1/pipelines/{slug}/runs/{run_id}"))];
        if look % 3 == 0 {
            paths.push((
                "steps",
                format!("/api/v1/pipelines/{slug}/runs/{run_id}/steps"),
            ));
        }
        if look % 5 == 0 {
            paths.push(("list", format!("/api/v1/pipelines/{slug}/runs?limit=20")));
        }
        look += 1;
        for (kind, path) in paths {
            let started = Instant::now();
            let mut request = http.get(format!("{base}{path}")).header("X-API-Key", &key);
            // A steps look sends the run's ETag too, as `quarry runs watch` does: its first look
            // is answered from a state at least as far on as the run it was told.
            let also = (kind == "steps").then(|| etags.get("run")).flatten();
            let tags: Vec<&str> = etags
                .get(kind)
                .into_iter()
                .chain(also)
                .map(String::as_str)
                .collect();
            if !tags.is_empty() {
                request = request.header("If-None-Match", tags.join(", "));
            }
            let status = match request.send().await {
                Ok(r) => {
                    if let Some(etag) = r.headers().get("etag").and_then(|e| e.to_str().ok()) {
                        etags.insert(kind, etag.to_string());
                    }
                    r.status().as_u16()
                }
                Err(_) => 0,
            };
            reads.lock().unwrap().add(kind, status, started.elapsed());
        }
    }
}

/// One stream reader: follows the run's events until `until` (or the stream's end).
async fn stream(
    http: reqwest::Client,
    base: String,
    (slug, key, run_id): (String, String, String),
    offset: Duration,
    until: Instant,
    seen: Arc<Mutex<Streams>>,
) {
    tokio::time::sleep(offset).await;
    let answer = http
        .get(format!(
            "{base}/api/v1/pipelines/{slug}/runs/{run_id}/events"
        ))
        .header("X-API-Key", &key)
        .send()
        .await;
    let mut response = match answer {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => {
            *seen
                .lock()
                .unwrap()
                .refused
                .entry(r.status().as_u16())
                .or_default() += 1;
            return;
        }
        Err(_) => {
            *seen.lock().unwrap().refused.entry(0).or_default() += 1;
            return;
        }
    };
    let mut buffer = String::new();
    loop {
        let chunk = match tokio::time::timeout_at(until.into(), response.chunk()).await {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Err(_)) => {
                seen.lock().unwrap().broken += 1;
                return;
            }
            Ok(Ok(Some(chunk))) => chunk,
        };
        let arrived = Utc::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(payload) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            let mut s = seen.lock().unwrap();
            s.events += 1;
            if let Some(written) = newest_write(&payload) {
                s.delivery
                    .push((arrived - written).to_std().unwrap_or(Duration::ZERO));
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let emulator = std::env::var("BIGQUERY_EMULATOR_HOST").expect("run with `make bench-reads`");
    report::log_to("target/bench-reads-service.log");
    let seconds = report::seconds("BENCH_READS_SECONDS", 60);
    // The bench's own pipeline, in a directory of its own.
    let dir = std::path::Path::new("target/bench-reads-pipelines/bench");
    std::fs::create_dir_all(dir).expect("pipelines dir");
    let mut pipeline = PIPELINE.to_string();
    for i in 1..=30 {
        let needs = if i == 1 {
            String::new()
        } else {
            format!(", depends_on: [s{:02}]", i - 1)
        };
        pipeline.push_str(&format!(
            "  - {{id: s{i:02}, kind: chaos.fault, mode: sleep, seconds: 5{needs}}}\n"
        ));
    }
    std::fs::write(dir.join("steps.yaml"), pipeline).expect("pipeline");

    // Setup runs with no added latency; the limits apply from the measured phase on.
    let model = LimitsModel::start(
        &emulator,
        Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO),
    )
    .await;
    let root_key = format!("bench_root_{}", uuid::Uuid::new_v4().simple());
    let repo = env!("CARGO_MANIFEST_DIR");
    let vars = report::instance_vars(
        model.host.clone(),
        &root_key,
        &[
            ("RATE_LIMIT_TRIGGER_PER_MINUTE", "1000000".into()),
            ("RATE_LIMIT_ADMIN_PER_MINUTE", "1000000".into()),
            ("AUTH_CACHE_TTL_SECS", "3600".into()),
            ("PIPELINES_DIR", "target/bench-reads-pipelines".into()),
            ("PIPELINE_SQL_DIR", format!("{repo}/sql")),
        ],
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Streams stay open for the whole phase: no overall timeout.
    let streaming = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .build()
        .unwrap();
    let report::Instance {
        base, warehouse, ..
    } = report::start_bootstrapped(&vars, &http, &root_key).await;
    let root = |r: reqwest::RequestBuilder| r.header("X-CA-Root-Key", &root_key);

    println!("setup: {ORGS} orgs, then {RUNS_PER_ORG} runs each, all at once (no added latency)");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut orgs = Vec::new();
    for i in 0..ORGS {
        let slug = format!("reads-{}-{i}", &tag[..6]);
        let body = json!({"org_slug": slug, "company_name": "Reads",
                          "admin_email": "ops@example.com", "plan": "SCALE"});
        let key = report::onboard(&http, &base, &root_key, &body).await;
        // Twenty at once (the SCALE plan allows five).
        let limits = root(http.put(format!("{base}/api/v1/organizations/{slug}/quota")))
            .json(&json!({"daily_limit": 100, "monthly_limit": 1000, "concurrent_limit": 20}))
            .send()
            .await
            .unwrap();
        assert_eq!(limits.status(), 200, "quota");
        orgs.push((slug, key));
    }
    // Every run starts within moments of the others (a few admission batches), so all of them
    // are still running through the phase.
    let mut triggers = Vec::new();
    for (slug, key) in &orgs {
        for _ in 0..RUNS_PER_ORG {
            let request = http
                .post(format!("{base}/api/v1/pipelines/run/{slug}/bench/steps"))
                .header("X-API-Key", key)
                .json(&json!({}));
            let (slug, key) = (slug.clone(), key.clone());
            triggers.push(tokio::spawn(async move {
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), 202, "trigger");
                let id = r.json::<Value>().await.unwrap()["run_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (slug, key, id)
            }));
        }
    }
    let mut runs: Vec<(String, String, String)> = Vec::new();
    for t in triggers {
        runs.push(t.await.unwrap());
    }
    model.set_latencies(DML, QUERY, INSERT_ALL);
    model.clear();

    println!(
        "phase: {POLLERS} pollers and {STREAMS} stream readers on {} runs for {seconds} s",
        runs.len()
    );
    let rss_before = rss_mib();
    let jobs_before = warehouse.counters().snapshot();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let reads = Arc::new(Mutex::new(Reads::default()));
    let seen = Arc::new(Mutex::new(Streams::default()));
    let mut tasks = Vec::new();
    for i in 0..POLLERS.max(STREAMS) {
        // Arrivals spread over the first 2 s, as people open pages at their own moments.
        let offset = Duration::from_millis((i as u64 * 7919) % 2000);
        let run = runs[i % runs.len()].clone();
        if i < POLLERS {
            tasks.push(tokio::spawn(poll(
                http.clone(),
                base.clone(),
                run.clone(),
                offset,
                until,
                reads.clone(),
            )));
        }
        if i < STREAMS {
            tasks.push(tokio::spawn(stream(
                streaming.clone(),
                base.clone(),
                run,
                offset,
                until,
                seen.clone(),
            )));
        }
    }
    let mut rss_peak = rss_before;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_peak = rss_peak.max(rss_mib());
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let jobs = warehouse.counters().snapshot().since(&jobs_before);
    let (ran, refused) = model.count("", Class::Query);

    let mut rows = Vec::new();
    let per_second = jobs.query as f64 / elapsed;
    row(
        &mut rows,
        "BigQuery queries sent per second (one instance)",
        format!(
            "{per_second:.1}/s ({} in {elapsed:.0} s; the model ran {ran}, refused {refused})",
            jobs.query
        ),
        "<= 2/s",
        Some(per_second <= 2.0),
    );
    let reads = reads.lock().unwrap();
    let all = reads.all();
    let p95 = percentile(&all, 0.95);
    let by_kind: Vec<String> = reads
        .latencies
        .iter()
        .map(|(kind, l)| {
            format!(
                "{kind} p50 {:.3} s p95 {:.3} s ({} reads)",
                percentile(l, 0.5),
                percentile(l, 0.95),
                l.len()
            )
        })
        .collect();
    row(
        &mut rows,
        "poller read p95",
        format!("{p95:.3} s; {}", by_kind.join("; ")),
        "<= 0.200 s",
        Some(p95 <= 0.2),
    );
    row(
        &mut rows,
        "poller answers not 2xx (or 304)",
        format!(
            "{} of {} ({:?})",
            reads.non_2xx(),
            all.len(),
            reads.statuses
        ),
        "0",
        Some(reads.non_2xx() == 0),
    );
    let seen = seen.lock().unwrap();
    let delivery = percentile(&seen.delivery, 0.95);
    row(
        &mut rows,
        "stream event delivery p95 (after the write)",
        format!(
            "{delivery:.2} s (p50 {:.2} s; {} events)",
            percentile(&seen.delivery, 0.5),
            seen.events
        ),
        "<= 2 s",
        Some(delivery <= 2.0 && seen.events > 0),
    );
    let refused_streams: usize = seen.refused.values().sum();
    row(
        &mut rows,
        "streams refused or broken",
        format!(
            "{refused_streams} refused ({:?}), {} broken, of {STREAMS}",
            seen.refused, seen.broken
        ),
        "0",
        Some(refused_streams == 0 && seen.broken == 0),
    );
    row(
        &mut rows,
        "queries refused by BigQuery's query limit",
        format!("{refused}"),
        "0",
        Some(refused == 0),
    );
    let growth = rss_peak - rss_before;
    row(
        &mut rows,
        "memory growth with 1,000 watchers (this process: service and clients)",
        format!("{growth:.0} MiB (RSS {rss_before:.0} -> peak {rss_peak:.0} MiB)"),
        "<= 200 MiB",
        Some(growth <= 200.0),
    );

    println!();
    println!(
        "Limits model: query {} s (100 at once per project, 1,000 waiting), mutating DML {} s, insertAll {} s; one instance; {ORGS} orgs, {} runs, {POLLERS} pollers, {STREAMS} streams, {seconds} s",
        QUERY.as_secs_f64(),
        DML.as_secs_f64(),
        INSERT_ALL.as_secs_f64(),
        ORGS * RUNS_PER_ORG
    );
    println!("| figure | measured | target | |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what,
            r.figure,
            r.target,
            report::mark(r.met)
        );
    }
    let unmet = rows.iter().filter(|r| r.met == Some(false)).count();
    println!("{unmet} target(s) unmet");
}
