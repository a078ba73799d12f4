//! What the benchmarks share: the settings of an in-process instance against the emulator, and
//! the table of figures with each target marked met or unmet.

#![allow(dead_code)]

use std::collections::HashMap;

pub struct Row {
    pub what: String,
    pub figure: String,
    pub target: String,
    pub met: Option<bool>,
}

/// Records one figure (and prints it as it is measured).
pub fn row(rows: &mut Vec<Row>, what: &str, figure: String, target: &str, met: Option<bool>) {
    println!("  measured: {what}: {figure}");
    rows.push(Row {
        what: what.into(),
        figure,
        target: target.into(),
        met,
    });
}

/// "met", "UNMET" or nothing (a figure that is only reported).
pub fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "UNMET",
        None => "",
    }
}

/// Settings of a development instance on a free port against `bigquery_host`, with a fresh meta
/// dataset and rate limits out of the way; `extra` adds or overrides.
pub fn instance_vars(
    bigquery_host: String,
    root_key: &str,
    extra: &[(&str, String)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("CA_ROOT_API_KEY", root_key.to_string()),
        (
            "GCP_PROJECT_ID",
            std::env::var("GCP_PROJECT_ID").unwrap_or("quarry-test".into()),
        ),
        ("BIGQUERY_EMULATOR_HOST", bigquery_host),
        (
            "META_DATASET",
            format!("bench_{}", uuid::Uuid::new_v4().simple()),
        ),
        ("BIND_ADDR", "127.0.0.1:0".into()),
        (
            "LOCAL_KMS_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ),
        ("RATE_LIMIT_PER_MINUTE", "1000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.clone());
    }
    vars
}

/// An instance of the service running in this process.
pub struct Instance {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub warehouse: quarry::warehouse::Warehouse,
    pub executor: quarry::executor::Executor,
}

/// Builds an instance from `vars`, serves it in the background and bootstraps its meta dataset
/// with `root_key`.
pub async fn start_bootstrapped(
    vars: &HashMap<String, String>,
    http: &reqwest::Client,
    root_key: &str,
) -> Instance {
    let settings = quarry::settings::Settings::from_source(vars).expect("settings");
    let app = quarry::startup::Application::build(settings)
        .await
        .expect("app");
    let instance = Instance {
        base: format!("http://127.0.0.1:{}", app.port()),
        warehouse: app.warehouse(),
        executor: app.executor(),
    };
    tokio::spawn(app.run_until_stopped());
    let bootstrap = http
        .post(format!("{}/api/v1/admin/bootstrap", instance.base))
        .header("X-CA-Root-Key", root_key)
        .send()
        .await
        .expect("bootstrap");
    assert!(bootstrap.status().is_success(), "bootstrap");
    instance
}

/// Sends the service's log (JSON; warnings and worse) to the file `path`.
/// Onboards an org as the root key (`body`: the onboarding request); its org key.
pub async fn onboard(
    http: &reqwest::Client,
    base: &str,
    root_key: &str,
    body: &serde_json::Value,
) -> String {
    let onboarded: serde_json::Value = http
        .post(format!("{base}/api/v1/organizations/onboard"))
        .header("X-CA-Root-Key", root_key)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    onboarded["api_key"]
        .as_str()
        .expect("onboarded")
        .to_string()
}

pub fn log_to(path: &str) {
    let log = std::fs::File::create(path).expect("log file");
    quarry::telemetry::init(
        "warn",
        quarry::telemetry::LogFormat::Json,
        std::sync::Mutex::new(log),
    );
}

/// The environment variable `var` as a number of seconds, else `default` (benchmarks shorten
/// their phases with one for a quick look; the figures quoted use the default).
pub fn seconds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` percentile (0 to 1, nearest rank) of `values`, in seconds; 0 when there are none.
pub fn percentile(values: &[std::time::Duration], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64()
}
