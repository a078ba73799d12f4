//! `make bench`: figures for the performance targets, printed as a table with each target marked
//! met or unmet. The service runs in this process (release build) against the emulator; load
//! comes from `wrk` (Debian's package), a separate process.

use std::process::Command;
use std::time::{Duration, Instant};

use quarry::warehouse::JobCounts;
use serde_json::{Value, json};

#[path = "support/report.rs"]
mod report;
use report::row;

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_ms(s: &str) -> f64 {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().unwrap_or(0.0)
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().unwrap_or(0.0) * 1000.0
    } else {
        0.0
    }
}

fn wrk(url: &str, key: Option<&str>, connections: u32, seconds: u32) -> Wrk {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(k) = key {
        cmd.args(["-H", &format!("X-API-Key: {k}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk is installed (make bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = Wrk {
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => w.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => w.p50_ms = parse_ms(v),
            ["99%", v] => w.p99_ms = parse_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", v] => w.errors += v.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                for part in rest.join(" ").split(',') {
                    if let Some(n) = part.split_whitespace().last() {
                        w.errors += n.parse::<u64>().unwrap_or(0);
                    }
                }
            }
            _ => {}
        }
    }
    w
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn calls(d: JobCounts) -> String {
    format!(
        "{} (query {}, dml {}, insertAll {})",
        d.query + d.dml + d.insert_all,
        d.query,
        d.dml,
        d.insert_all
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let emulator = std::env::var("BIGQUERY_EMULATOR_HOST").expect("run with `make bench`");
    let root_key = format!("bench_root_{}", uuid::Uuid::new_v4().simple());
    let repo = env!("CARGO_MANIFEST_DIR");
    let vars = report::instance_vars(
        emulator,
        &root_key,
        &[
            ("RATE_LIMIT_TRIGGER_PER_MINUTE", "1000000".into()),
            ("RATE_LIMIT_ADMIN_PER_MINUTE", "1000000".into()),
            ("PIPELINES_DIR", format!("{repo}/tests/fixtures/pipelines")),
            ("PIPELINE_SQL_DIR", format!("{repo}/sql")),
            ("RUN_LOG_FLUSH_MS", "60000".into()),
            ("HEARTBEAT_INTERVAL_SECS", "3600".into()),
            ("REAPER_INTERVAL_SECS", "3600".into()),
            ("RUN_LEASE_SECS", "14400".into()),
        ],
    );
    let http = reqwest::Client::new();
    let report::Instance {
        base,
        warehouse,
        executor,
    } = report::start_bootstrapped(&vars, &http, &root_key).await;
    let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let body = json!({"org_slug": slug, "company_name": "Bench", "admin_email": "bench@example.com",
                      "plan": "ENTERPRISE",
                      "quota": {"daily_limit": 100000, "monthly_limit": 1000000, "concurrent_limit": 5}});
    let key = report::onboard(&http, &base, &root_key, &body).await;
    let auth_get = format!("{base}/api/v1/whoami");
    http.get(&auth_get)
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let mut rows = Vec::new();
    let counters = || warehouse.counters().snapshot();

    println!("throughput: wrk, 2 threads, 64 connections, 5 s per route, interleaved twice");
    let (mut bare, mut authed) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        bare.push(wrk(&format!("{base}/health/live"), None, 64, 5));
        authed.push(wrk(&auth_get, Some(&key), 64, 5));
    }
    let mean = |v: &[Wrk], f: fn(&Wrk) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (b_rps, a_rps) = (mean(&bare, |w| w.rps), mean(&authed, |w| w.rps));
    row(
        &mut rows,
        "GET /health/live req/s (p50 / p99 ms)",
        format!(
            "{b_rps:.0} ({:.2} / {:.2})",
            mean(&bare, |w| w.p50_ms),
            mean(&bare, |w| w.p99_ms)
        ),
        "reference",
        None,
    );
    row(
        &mut rows,
        "GET /api/v1/whoami, warm key, req/s (p50 / p99 ms)",
        format!(
            "{a_rps:.0} ({:.2} / {:.2})",
            mean(&authed, |w| w.p50_ms),
            mean(&authed, |w| w.p99_ms)
        ),
        "",
        None,
    );
    row(
        &mut rows,
        "authenticated / bare throughput",
        format!("{:.2}", a_rps / b_rps),
        ">= 0.67",
        Some(a_rps / b_rps >= 0.67),
    );

    // BigQuery calls per operation.
    let trigger = |pipeline: &str, idem: Option<String>, key: &str| {
        let mut r = http
            .post(format!("{base}/api/v1/pipelines/run/{slug}/{pipeline}"))
            .header("X-API-Key", key)
            .json(&if pipeline == "test/params" {
                json!({"parameters": {"day": "2026-11-01"}})
            } else {
                json!({})
            });
        if let Some(k) = idem {
            r = r.header("Idempotency-Key", k);
        }
        r.send()
    };
    let before = counters();
    let t = trigger("test/params", None, &key).await.unwrap();
    assert_eq!(t.status(), 202);
    let d = counters().since(&before);
    row(
        &mut rows,
        "BigQuery calls: trigger (warm auth, no key)",
        calls(d),
        "<= 2, <= 1 DML",
        Some(d.query + d.dml + d.insert_all <= 2 && d.dml <= 1),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = counters();
    trigger("test/params", Some(uuid::Uuid::new_v4().to_string()), &key)
        .await
        .unwrap();
    let d = counters().since(&before);
    row(
        &mut rows,
        "BigQuery calls: trigger with Idempotency-Key",
        calls(d),
        "<= 3",
        Some(d.query + d.dml + d.insert_all <= 3),
    );
    let rotated: Value = http
        .post(format!(
            "{base}/api/v1/organizations/{slug}/api-keys/rotate"
        ))
        .header("X-API-Key", &key)
        .json(&json!({"grace_period_seconds": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh_key = rotated["api_key"].as_str().unwrap().to_string();
    let before = counters();
    http.get(&auth_get)
        .header("X-API-Key", &fresh_key)
        .send()
        .await
        .unwrap();
    let d = counters().since(&before);
    row(
        &mut rows,
        "BigQuery calls: cold auth",
        calls(d),
        "1 (lookup)",
        Some(d.query + d.dml + d.insert_all == 1),
    );
    let before = counters();
    for bad in ["qk_nope", "x", &format!("{key}0")] {
        http.get(&auth_get)
            .header("X-API-Key", bad)
            .send()
            .await
            .unwrap();
    }
    let d = counters().since(&before);
    row(
        &mut rows,
        "BigQuery calls: malformed key",
        calls(d),
        "0",
        Some(d.query + d.dml + d.insert_all == 0),
    );
    executor.run_log().flush().await.ok();
    let before = counters();
    http.get(format!("{base}/api/v1/pipelines/{slug}/runs?limit=100"))
        .header("X-API-Key", &fresh_key)
        .send()
        .await
        .unwrap();
    let d = counters().since(&before);
    row(
        &mut rows,
        "BigQuery calls: runs list page",
        calls(d),
        "1",
        Some(d.query + d.dml + d.insert_all == 1),
    );
    // A 20-step run, from its admission to its slot's release: each step's end is flushed at
    // once for the run's watchers (after a 20-ms linger; the rows queued meanwhile ride along),
    // so at most one insertAll per table per step end, and the run's end. The run reads its
    // org's byte caps once (`cost::cap`).
    let twenty = trigger("test/twenty", None, &fresh_key).await.unwrap();
    assert_eq!(twenty.status(), 202);
    let before = counters();
    while executor.active_runs() > 0 || executor.releaser().pending() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = counters().since(&before);
    row(
        &mut rows,
        "BigQuery calls: a 20-step run's log flush (after admission)",
        calls(d),
        "<= 42 insertAll (2 per step end, 2 for the end) + 1 DML release + 1 query (its org's byte caps)",
        Some(d.insert_all <= 42 && d.dml == 1 && d.query <= 1),
    );

    // Trigger latency and admission exactness.
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let r = trigger("test/params", None, &fresh_key).await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(150)).await; // let the run end: limit 5
    }
    latencies.sort();
    row(
        &mut rows,
        "trigger latency p50 / p95 (ms, emulator)",
        format!(
            "{:.1} / {:.1}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95)
        ),
        "reported",
        None,
    );
    let mut exact = 0;
    for round in 0..10 {
        while executor.active_runs() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut handles = Vec::new();
        for _ in 0..50 {
            let req = http
                .post(format!("{base}/api/v1/pipelines/run/{slug}/test/sleep"))
                .header("X-API-Key", &key)
                .json(&json!({}));
            handles.push(tokio::spawn(async move {
                req.send().await.map(|r| r.status().as_u16())
            }));
        }
        let mut admitted = 0;
        for h in handles {
            if h.await.unwrap().unwrap_or(0) == 202 {
                admitted += 1;
            }
        }
        println!("  admission round {round}: {admitted} of 50 admitted");
        if admitted == 5 {
            exact += 1;
        }
    }
    row(
        &mut rows,
        "admission: 50 parallel triggers, limit 5, 10 rounds",
        format!("{exact}/10 rounds exactly 5"),
        "10/10",
        Some(exact == 10),
    );

    let soak = wrk(&auth_get, Some(&key), 1000, 10);
    row(
        &mut rows,
        "1000 keep-alive connections, 10 s, whoami: req/s, errors",
        format!("{:.0}, {} errors", soak.rps, soak.errors),
        "0 errors",
        Some(soak.errors == 0),
    );
    row(
        &mut rows,
        "peak RSS of the service process (MiB)",
        format!("{:.0}", peak_rss_mib()),
        "reported",
        None,
    );

    println!("\n{:<58} {:<44} {:<24}", "figure", "measured", "target");
    for r in &rows {
        println!(
            "{:<58} {:<44} {:<24} {}",
            r.what,
            r.figure,
            r.target,
            report::mark(r.met)
        );
    }
}
