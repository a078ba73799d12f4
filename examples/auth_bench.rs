//! Warm-cache authenticated requests per second next to an unauthenticated route, same process,
//! same client, same run. Needs the emulator (`make bench-auth` starts one).
//!
//! The load generator shares the machine with the service, so absolute figures are a floor;
//! the ratio between the two routes is the figure that matters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quarry::settings::Settings;
use quarry::startup::Application;

const CONCURRENCY: usize = 32;
const DURATION: Duration = Duration::from_secs(3);
const ROUNDS: usize = 2;

struct Figures {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 - 1.0) * p) as usize]
    }
}

async fn load(client: &reqwest::Client, url: &str, key: Option<&str>) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.to_string();
        let key = key.map(str::to_string);
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut request = client.get(&url);
                if let Some(k) = &key {
                    request = request.header("X-API-Key", k);
                }
                match request.send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(DURATION).await;
    stop.store(true, Ordering::Relaxed);
    let mut figures = Figures {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.unwrap();
        figures.requests += latencies.len();
        figures.errors += errors;
        figures.latencies.extend(latencies);
    }
    figures.elapsed = started.elapsed();
    figures
}

#[path = "support/report.rs"]
mod report;

#[tokio::main]
async fn main() {
    let emulator = std::env::var("BIGQUERY_EMULATOR_HOST")
        .expect("BIGQUERY_EMULATOR_HOST: run with `make bench-auth`");
    let root_key = format!("bench_root_{}", uuid::Uuid::new_v4().simple());
    let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let vars = report::instance_vars(emulator, &root_key, &[("RUST_LOG", "warn".into())]);
    let settings = Settings::from_source(&vars).expect("settings");
    let app = Application::build(settings).await.expect("app");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{}", r.status());
        r
    };
    ok(client
        .post(format!("{base}/api/v1/admin/bootstrap"))
        .header("X-CA-Root-Key", &root_key)
        .send()
        .await
        .unwrap());
    let onboarded: serde_json::Value = ok(client
        .post(format!("{base}/api/v1/organizations/onboard"))
        .header("X-CA-Root-Key", &root_key)
        .json(
            &serde_json::json!({"org_slug": slug, "company_name": "Bench",
                                  "admin_email": "bench@example.com", "plan": "SCALE"}),
        )
        .send()
        .await
        .unwrap())
    .json()
    .await
    .unwrap();
    let key = onboarded["api_key"].as_str().unwrap().to_string();
    // Warm the key cache.
    ok(client
        .get(format!("{base}/api/v1/whoami"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap());

    println!(
        "{CONCURRENCY} concurrent keep-alive clients, {}s per run, {ROUNDS} rounds, interleaved\n",
        DURATION.as_secs()
    );
    println!(
        "{:<38} {:>10} {:>9} {:>9} {:>7}",
        "route", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let mut bare = Vec::new();
    let mut authed = Vec::new();
    for _ in 0..ROUNDS {
        let h = load(&client, &format!("{base}/health/live"), None).await;
        let a = load(&client, &format!("{base}/api/v1/whoami"), Some(&key)).await;
        for (name, f) in [
            ("GET /health/live (no auth)", &h),
            ("GET /api/v1/whoami (org key, warm)", &a),
        ] {
            println!(
                "{name:<38} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                f.rps(),
                f.percentile(0.50).as_secs_f64() * 1000.0,
                f.percentile(0.99).as_secs_f64() * 1000.0,
                f.errors
            );
        }
        bare.push(h.rps());
        authed.push(a.rps());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratio = mean(&authed) / mean(&bare);
    println!(
        "\nauthenticated / bare throughput: {ratio:.2} (target >= 0.67: {})",
        if ratio >= 0.67 { "met" } else { "unmet" }
    );
}
