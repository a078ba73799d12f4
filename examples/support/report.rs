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
