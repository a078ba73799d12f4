//! `make bench-scale`: admission at platform scale, behind BigQuery's DML limits.
//!
//! The service runs in this process (release build) against the emulator with the BigQuery
//! limits model in between (`tests/common/bq_limits.rs`: mutating DML 1 s with 2 running + 20
//! waiting per table, INSERT DML 10 + 100, query 0.3 s, insertAll 0.05 s). Load is open-loop:
//! triggers are sent at the offered rate whatever the answers take, round-robin over 200 orgs,
//! each on the SCALE plan (100 runs a day, 5 at once) and within it. Prints a table of figures
//! with each target met or unmet.

#[path = "../tests/common/bq_limits.rs"]
mod bq_limits;
#[path = "support/report.rs"]
mod report;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bq_limits::{Class, Limits, LimitsModel};
use report::row;
use serde_json::json;

const ORGS: usize = 200;
const DML: Duration = Duration::from_secs(1);
const QUERY: Duration = Duration::from_millis(300);
const INSERT_ALL: Duration = Duration::from_millis(50);
/// The first line of `sql/quota/admit_batch.sql`, as the model names it.
const ADMISSION_STATEMENT: &str = "The admission coordinator's one statement per batch";
/// The first line of `sql/auth/key_by_hash.sql`.
const KEY_LOOKUP: &str = "Auth lookup: the key with this SHA-256 hash";
/// The queue phase: triggers sent at once to one org that asked to wait, its concurrency, and
/// the run's length (`test/sleep`).
const QUEUED_BURST: usize = 400;
const QUEUE_CONCURRENT: usize = 10;
const QUEUED_RUN_SECS: f64 = 1.5;

/// Where the BigQuery time of a phase went: per statement (its SQL's first line), the calls
/// answered since `before` was taken and the time answering them took (the model's latency
/// plus the emulator's own), the most first.
/// Returns the mean time of the admission statement in the phase (the targets are set
/// against it: the emulator's own time for it depends on the machine).
fn print_time_by_statement(model: &LimitsModel, before: &[(String, usize, Duration)]) -> f64 {
    let earlier: HashMap<&str, (usize, Duration)> = before
        .iter()
        .map(|(what, n, time)| (what.as_str(), (*n, *time)))
        .collect();
    let mut since: Vec<(String, usize, Duration)> = model
        .time_by_statement()
        .into_iter()
        .map(|(what, n, time)| {
            let (n0, t0) = earlier.get(what.as_str()).copied().unwrap_or_default();
            (what, n - n0, time.saturating_sub(t0))
        })
        .filter(|(_, n, _)| *n > 0)
        .collect();
    since.sort_by_key(|entry| std::cmp::Reverse(entry.2));
    let admission = since
        .iter()
        .find(|(what, _, _)| what.contains(ADMISSION_STATEMENT))
        .map_or(DML.as_secs_f64(), |(_, n, time)| {
            time.as_secs_f64() / *n as f64
        });
    println!("  BigQuery time by statement in this phase (calls, seconds answering them):");
    for (what, n, time) in since.into_iter().take(8) {
        let what: String = what.chars().take(70).collect();
        println!(
            "    {n:>5} {:>7.1} s  {:>5.2} s each  {what}",
            time.as_secs_f64(),
            time.as_secs_f64() / n as f64
        );
    }
    admission
}

/// What one offered-load phase saw.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    by_status: HashMap<u16, usize>,
    /// 429/503 answers without a Retry-After header.
    missing_retry_after: usize,
    /// Wall time from the first send to the last answer.
    elapsed: Duration,
}

impl Phase {
    fn count(&self, status: u16) -> usize {
        self.by_status.get(&status).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.by_status.values().sum()
    }
    fn server_errors(&self) -> usize {
        self.by_status
            .iter()
            .filter(|(s, _)| **s >= 500 && **s != 503)
            .map(|(_, n)| n)
            .sum::<usize>()
            + self.count(0)
    }
    fn percentile(&self, p: f64) -> f64 {
        report::percentile(&self.latencies, p)
    }
    fn statuses(&self) -> String {
        let mut s: Vec<_> = self.by_status.iter().collect();
        s.sort();
        s.iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Sends `rate` triggers per second for `seconds`, round-robin over `orgs`, open-loop.
async fn offer(
    http: &reqwest::Client,
    base: &str,
    orgs: &[(String, String)],
    rate: u32,
    seconds: u32,
) -> Phase {
    let total = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let (slug, key) = &orgs[i % orgs.len()];
        let (http, url, key) = (
            http.clone(),
            format!("{base}/api/v1/pipelines/run/{slug}/test/sleep"),
            key.clone(),
        );
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let answer = http
                .post(url)
                .header("X-API-Key", key)
                .json(&json!({}))
                .send()
                .await;
            let latency = t.elapsed();
            match answer {
                Ok(r) => {
                    let retry_after = r.headers().contains_key("retry-after");
                    (r.status().as_u16(), retry_after, latency)
                }
                Err(_) => (0, false, latency),
            }
        }));
    }
    let mut phase = Phase::default();
    for h in handles {
        let (status, retry_after, latency) = h.await.unwrap();
        *phase.by_status.entry(status).or_default() += 1;
        if matches!(status, 429 | 503) && !retry_after {
            phase.missing_retry_after += 1;
        }
        phase.latencies.push(latency);
    }
    phase.elapsed = started.elapsed();
    phase
}

/// Onboards `slug` on the SCALE plan as the root key; its org key.
async fn onboard(http: &reqwest::Client, base: &str, root_key: &str, slug: &str) -> String {
    let body = json!({"org_slug": slug, "company_name": "Scale", "admin_email": "ops@example.com",
                      "plan": "SCALE"});
    report::onboard(http, base, root_key, &body).await
}

#[tokio::main]
async fn main() {
    let emulator = std::env::var("BIGQUERY_EMULATOR_HOST").expect("run with `make bench-scale`");
    report::log_to("target/bench-scale-service.log");
    let main_seconds = report::seconds("BENCH_SCALE_SECONDS", 60) as u32;
    // Setup runs with no added latency; the limits apply from the first measured phase on.
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
            // Keys stay cached for the whole run: the emulator answers one request at a time,
            // so 200 cold key lookups at once would measure the emulator, not admission.
            ("AUTH_CACHE_TTL_SECS", "3600".into()),
            ("PIPELINES_DIR", format!("{repo}/tests/fixtures/pipelines")),
            ("PIPELINE_SQL_DIR", format!("{repo}/sql")),
        ],
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let report::Instance {
        base,
        warehouse,
        executor,
    } = report::start_bootstrapped(&vars, &http, &root_key).await;
    let root = |r: reqwest::RequestBuilder| r.header("X-CA-Root-Key", &root_key);

    println!("setup: onboarding {ORGS} orgs (no added latency)");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut orgs = Vec::new();
    for chunk in (0..ORGS).collect::<Vec<_>>().chunks(20) {
        let mut handles = Vec::new();
        for i in chunk {
            let slug = format!("scale-{}-{i}", &run[..6]);
            let (http, base, root_key) = (http.clone(), base.clone(), root_key.clone());
            handles.push(tokio::spawn(async move {
                let key = onboard(&http, &base, &root_key, &slug).await;
                (slug, key)
            }));
        }
        for h in handles {
            orgs.push(h.await.unwrap());
        }
    }
    // Warm every key in the auth cache, as a running service has them.
    for (_, key) in &orgs {
        http.get(format!("{base}/api/v1/whoami"))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap();
    }
    model.set_latencies(DML, QUERY, INSERT_ALL);
    let orgs = Arc::new(orgs);
    let mut rows = Vec::new();

    println!("phase 1: 1 trigger/s for 20 s");
    model.clear();
    let answered = model.time_by_statement();
    let slow = offer(&http, &base, &orgs, 1, 20).await;
    let statement = print_time_by_statement(&model, &answered);
    let p50 = slow.percentile(0.5);
    // One admission statement as this machine's emulator answers it (the model's 1 s and the
    // emulator's own time), plus 0.35 s (a query's and an insertAll's worth).
    let allowed = statement + 0.35;
    row(
        &mut rows,
        "p50 trigger latency at 1/s",
        format!("{p50:.2} s (one admission statement took {statement:.2} s)"),
        &format!("<= {allowed:.2} s (one statement + 0.35 s)"),
        Some(p50 <= allowed),
    );

    println!("phase 2: 50 triggers/s for {main_seconds} s over {ORGS} orgs");
    model.clear();
    let jobs_before = warehouse.counters().snapshot();
    let answered = model.time_by_statement();
    let main = offer(&http, &base, &orgs, 50, main_seconds).await;
    let statement = print_time_by_statement(&model, &answered);
    let jobs = warehouse.counters().snapshot().since(&jobs_before);
    let accepted = main.count(202) as f64 / main.total() as f64 * 100.0;
    row(
        &mut rows,
        "answered 202 at 50/s",
        format!("{accepted:.1} % of {} ({})", main.total(), main.statuses()),
        "100 %",
        Some(main.count(202) == main.total()),
    );
    row(
        &mut rows,
        "5xx at 50/s",
        format!("{}", main.total() - main.count(202) - main.count(429)),
        "0",
        Some(main.total() == main.count(202) + main.count(429)),
    );
    let p95 = main.percentile(0.95);
    let allowed = 2.0 * statement + 0.5;
    row(
        &mut rows,
        "p95 trigger latency at 50/s",
        format!(
            "{p95:.2} s (p50 {:.2} s; one admission statement took {statement:.2} s)",
            main.percentile(0.5)
        ),
        &format!("<= {allowed:.2} s (two statements + 0.5 s)"),
        Some(p95 <= allowed),
    );
    let per_second = model.max_per_second("org_quota_state", Class::Mutating);
    let (ran, refused) = model.count("org_quota_state", Class::Mutating);
    row(
        &mut rows,
        "mutating statements on org_quota_state",
        format!(
            "max {per_second} in any second; {ran} in {:.0} s ({:.2}/s), {refused} refused",
            main.elapsed.as_secs_f64(),
            ran as f64 / main.elapsed.as_secs_f64()
        ),
        "<= 2 per second",
        Some(per_second <= 2 && refused == 0),
    );
    row(
        &mut rows,
        "BigQuery jobs at 50/s",
        format!(
            "{} dml, {} query, {} insertAll for {} triggers",
            jobs.dml,
            jobs.query,
            jobs.insert_all,
            main.total()
        ),
        "reported",
        None,
    );

    println!("phase 3: offered 10, 50, 100, 200 triggers/s, 10 s each");
    let mut last = 0.0;
    let mut never_falls = true;
    let mut never_500 = true;
    let mut sweep = Vec::new();
    for rate in [10, 50, 100, 200] {
        model.clear();
        let p = offer(&http, &base, &orgs, rate, 10).await;
        let admitted = p.count(202) as f64 / p.elapsed.as_secs_f64();
        // Admitted per second of offered time: a falling figure means the service collapses.
        if admitted + 0.05 * last < last {
            never_falls = false;
        }
        if p.server_errors() > 0 || p.missing_retry_after > 0 {
            never_500 = false;
        }
        let line = format!(
            "{rate}/s: {admitted:.1} admitted/s, {} (p95 {:.2} s), {} mutating stmt/s max",
            p.statuses(),
            p.percentile(0.95),
            model.max_per_second("org_quota_state", Class::Mutating)
        );
        println!("  {line}");
        sweep.push(line);
        last = admitted;
    }
    row(
        &mut rows,
        "admitted/s as offered rises",
        sweep.join("; "),
        "never falls",
        Some(never_falls),
    );
    row(
        &mut rows,
        "answers past capacity",
        if never_500 {
            "only 202, 429, 503 with Retry-After".into()
        } else {
            "other answers seen".into()
        },
        "never 500",
        Some(never_500),
    );

    println!("drain: waiting for every run to end, then for every slot to be free");
    let drain = Instant::now();
    while executor.active_runs() > 0 && drain.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = Instant::now();
    let mut held = usize::MAX;
    while ended.elapsed() < Duration::from_secs(60) {
        let mut handles = Vec::new();
        for (slug, _) in orgs.iter() {
            let request = root(http.get(format!("{base}/api/v1/organizations/{slug}/quota")));
            handles.push(tokio::spawn(async move {
                let q: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
                q["active_run_ids"].as_array().map_or(0, Vec::len)
            }));
        }
        held = 0;
        for h in handles {
            held += h.await.unwrap();
        }
        if held == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let free_after = ended.elapsed().as_secs_f64();
    row(
        &mut rows,
        "slots held after the last run ended",
        format!("{held} held; all free {free_after:.1} s after the last run ended"),
        "none after 30 s",
        Some(held == 0 && free_after <= 30.0),
    );

    println!("herd: 400 parallel requests with a key nobody has used yet (not in the cache)");
    let (slug, key) = &orgs[0];
    // The rotation is sent again while it is answered 503 (the emulator still busy with the
    // drain phase's reads), for up to a minute.
    let mut rotated = serde_json::Value::Null;
    for _ in 0..30 {
        let answer = http
            .post(format!(
                "{base}/api/v1/organizations/{slug}/api-keys/rotate"
            ))
            .header("X-API-Key", key)
            .json(&json!({"grace_period_seconds": 3600}))
            .send()
            .await
            .unwrap();
        if answer.status() != 503 {
            rotated = answer.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let fresh = rotated["api_key"].as_str().expect("rotated").to_string();
    let key_lookups = || -> usize {
        model
            .time_by_statement()
            .iter()
            .filter(|(sql, _, _)| sql.contains(KEY_LOOKUP))
            .map(|(_, n, _)| n)
            .sum()
    };
    let before = key_lookups();
    let herd = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..400 {
        let request = http
            .get(format!("{base}/api/v1/whoami"))
            .header("X-API-Key", &fresh);
        handles.push(tokio::spawn(async move {
            request.send().await.map_or(0, |r| r.status().as_u16())
        }));
    }
    let mut herd_statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for h in handles {
        *herd_statuses.entry(h.await.unwrap()).or_default() += 1;
    }
    let herd_secs = herd.elapsed().as_secs_f64();
    let lookups = key_lookups() - before;
    row(
        &mut rows,
        "one cold key, 400 parallel requests",
        format!(
            "{lookups} key lookup(s), answers {herd_statuses:?}, all answered in {herd_secs:.2} s"
        ),
        "1 lookup, all 200",
        Some(lookups == 1 && herd_statuses.get(&200) == Some(&400)),
    );

    println!(
        "queue: {QUEUED_BURST} triggers at once to one org, each asking to wait (concurrent {QUEUE_CONCURRENT}, {QUEUED_RUN_SECS} s runs)"
    );
    let slug = format!("scale-{}-queue", &run[..6]);
    let key = onboard(&http, &base, &root_key, &slug).await;
    let limits = root(http.put(format!("{base}/api/v1/organizations/{slug}/quota")))
        .json(&json!({"daily_limit": 10_000, "monthly_limit": 100_000,
                      "concurrent_limit": QUEUE_CONCURRENT, "queue_limit": QUEUED_BURST}))
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), 200, "the queue org's limits");
    http.get(format!("{base}/api/v1/whoami"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let burst = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..QUEUED_BURST {
        let request = http
            .post(format!("{base}/api/v1/pipelines/run/{slug}/test/sleep"))
            .header("X-API-Key", &key)
            .json(&json!({"when_busy": "queue"}));
        handles.push(tokio::spawn(async move {
            request.send().await.map_or(0, |r| r.status().as_u16())
        }));
    }
    let mut burst_statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for h in handles {
        *burst_statuses.entry(h.await.unwrap()).or_default() += 1;
    }
    let answered_in = burst.elapsed().as_secs_f64();
    let accepted = burst_statuses.get(&202).copied().unwrap_or(0);
    row(
        &mut rows,
        "a burst of 400 queued triggers to one org",
        format!("answers {burst_statuses:?}, all answered in {answered_in:.1} s"),
        "all 202 (none 503)",
        Some(accepted == QUEUED_BURST),
    );
    let mut left = (usize::MAX, usize::MAX);
    while burst.elapsed() < Duration::from_secs(600) {
        let quota: serde_json::Value =
            root(http.get(format!("{base}/api/v1/organizations/{slug}/quota")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let count = |field: &str| quota[field].as_array().map_or(usize::MAX, Vec::len);
        left = (count("active_run_ids"), count("queued_run_ids"));
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drained = burst.elapsed().as_secs_f64();
    let ideal = accepted as f64 * QUEUED_RUN_SECS / QUEUE_CONCURRENT as f64;
    row(
        &mut rows,
        "the queue drained (runs x run time / concurrency)",
        format!(
            "{accepted} runs: every slot free and the queue empty {drained:.1} s after the burst (ideal {ideal:.0} s; {} active and {} queued at the end)",
            left.0, left.1
        ),
        &format!("<= {:.0} s (1.5 x ideal)", 1.5 * ideal),
        Some(left == (0, 0) && drained <= 1.5 * ideal),
    );

    println!();
    println!(
        "Limits model: mutating DML {} s (2 running + 20 waiting per table), query {} s, insertAll {} s; one instance; {ORGS} orgs",
        DML.as_secs_f64(),
        QUERY.as_secs_f64(),
        INSERT_ALL.as_secs_f64()
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
