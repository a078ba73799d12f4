//! Prometheus metrics, one registry per application (so tests can run many apps in one
//! process). Labels never carry API keys or credentials; the org slug appears only on the run
//! and billed-bytes counters and only when `METRICS_ORG_LABELS=true` (cardinality).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::warehouse::JobCounts;

pub struct Metrics {
    registry: Registry,
    org_labels: bool,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    bigquery_requests: IntCounterVec,
    bigquery_retries: IntCounter,
    runs: IntCounterVec,
    runs_active: IntGauge,
    quota_rejections: IntCounterVec,
    auth_cache: IntCounterVec,
    reaper_releases: IntCounter,
    admission_batches: IntCounter,
    admission_operations: IntCounterVec,
    admission_refusals: IntCounterVec,
    bytes_billed: IntCounterVec,
    alert_deliveries: IntCounterVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

impl Metrics {
    pub fn new(org_labels: bool) -> Self {
        let registry = Registry::new_custom(Some("quarry".into()), None).expect("registry");
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP latency by route template",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("metric definition");
        registry
            .register(Box::new(http_latency.clone()))
            .expect("unique metric");
        let bigquery_retries =
            IntCounter::new("bigquery_retries_total", "BigQuery requests retried").expect("metric");
        registry
            .register(Box::new(bigquery_retries.clone()))
            .expect("unique metric");
        let runs_active =
            IntGauge::new("runs_active", "Runs executing on this instance").expect("metric");
        registry
            .register(Box::new(runs_active.clone()))
            .expect("unique metric");
        let reaper_releases =
            IntCounter::new("reaper_releases_total", "Slots freed by the reaper").expect("metric");
        registry
            .register(Box::new(reaper_releases.clone()))
            .expect("unique metric");
        let admission_batches = IntCounter::new(
            "admission_batches_total",
            "Statements the admission coordinator sent on the quota table",
        )
        .expect("metric");
        registry
            .register(Box::new(admission_batches.clone()))
            .expect("unique metric");
        let run_labels: &[&str] = if org_labels {
            &["pipeline", "status", "org"]
        } else {
            &["pipeline", "status"]
        };
        Self {
            http_requests: counter_vec(
                &registry,
                "http_requests_total",
                "HTTP requests by route template, method and status",
                &["route", "method", "status"],
            ),
            bigquery_requests: counter_vec(
                &registry,
                "bigquery_requests_total",
                "BigQuery requests issued, by kind and outcome",
                &["kind", "outcome"],
            ),
            runs: counter_vec(
                &registry,
                "runs_total",
                "Finished runs by pipeline and final status",
                run_labels,
            ),
            quota_rejections: counter_vec(
                &registry,
                "quota_rejections_total",
                "Triggers refused by a quota limit",
                &["reason"],
            ),
            auth_cache: counter_vec(
                &registry,
                "auth_cache_total",
                "API key cache lookups",
                &["result"],
            ),
            alert_deliveries: counter_vec(
                &registry,
                "alert_deliveries_total",
                "Alert delivery attempts by outcome (DELIVERED, RETRYING, FAILED)",
                &["outcome"],
            ),
            admission_operations: counter_vec(
                &registry,
                "admission_operations_total",
                "Reservations and releases carried by admission batches",
                &["kind"],
            ),
            admission_refusals: counter_vec(
                &registry,
                "admission_unavailable_total",
                "Triggers answered 503 by admission (queue full, no decision in time)",
                &["reason"],
            ),
            bytes_billed: counter_vec(
                &registry,
                "bigquery_bytes_billed_total",
                "Bytes BigQuery billed for the runs' step jobs, counted when each run ends",
                if org_labels {
                    &["kind", "org"]
                } else {
                    &["kind"]
                },
            ),
            admission_batches,
            registry,
            org_labels,
            http_latency,
            bigquery_retries,
            runs_active,
            reaper_releases,
        }
    }

    /// One request. A method outside HTTP's standard set is labelled `OTHER`, so made-up
    /// methods cannot grow the series (unmatched paths are already one route value).
    pub fn http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method_label(method), &status.to_string()])
            .inc();
        self.http_latency
            .with_label_values(&[route])
            .observe(seconds);
    }

    pub fn run_finished(&self, pipeline: &str, status: &str, org: &str) {
        if self.org_labels {
            self.runs.with_label_values(&[pipeline, status, org]).inc();
        } else {
            self.runs.with_label_values(&[pipeline, status]).inc();
        }
    }

    /// Bytes a run's step jobs billed (kind `step`), counted when it ends.
    pub fn bytes_billed(&self, org: &str, bytes: i64) {
        let bytes = u64::try_from(bytes).unwrap_or(0);
        if self.org_labels {
            self.bytes_billed
                .with_label_values(&["step", org])
                .inc_by(bytes);
        } else {
            self.bytes_billed.with_label_values(&["step"]).inc_by(bytes);
        }
    }

    /// One attempt of an alert delivery and how it ended.
    pub fn alert_delivery(&self, outcome: &'static str) {
        self.alert_deliveries.with_label_values(&[outcome]).inc();
    }

    pub fn quota_rejected(&self, reason: &str) {
        self.quota_rejections.with_label_values(&[reason]).inc();
    }

    /// `result`: "hit", "miss" (looked up or shared a lookup in flight) or "refresh" (a hit
    /// late in its life, read again in the background).
    pub fn auth_cache(&self, result: &'static str) {
        self.auth_cache.with_label_values(&[result]).inc();
    }

    pub fn admission_batch(&self, reservations: usize, releases: usize) {
        self.admission_batches.inc();
        self.admission_operations
            .with_label_values(&["reserve"])
            .inc_by(reservations as u64);
        self.admission_operations
            .with_label_values(&["release"])
            .inc_by(releases as u64);
    }

    pub fn admission_refused(&self, reason: &str) {
        self.admission_refusals.with_label_values(&[reason]).inc();
    }

    pub fn reaped(&self) {
        self.reaper_releases.inc();
    }

    /// The text exposition, with the BigQuery counters and the active-run gauge read now.
    pub fn render(&self, bigquery: JobCounts, active_runs: usize) -> String {
        for (kind, ok, failed) in [
            ("query", bigquery.query, bigquery.failed_query),
            ("dml", bigquery.dml, bigquery.failed_dml),
            (
                "insert_all",
                bigquery.insert_all,
                bigquery.failed_insert_all,
            ),
            ("metadata", bigquery.metadata, bigquery.failed_metadata),
        ] {
            set_counter(
                &self.bigquery_requests.with_label_values(&[kind, "ok"]),
                ok.saturating_sub(failed),
            );
            set_counter(
                &self.bigquery_requests.with_label_values(&[kind, "error"]),
                failed,
            );
        }
        set_counter(&self.bigquery_retries, bigquery.retries);
        self.runs_active.set(active_runs as i64);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

fn method_label(method: &str) -> &str {
    if STANDARD_METHODS.contains(&method) {
        method
    } else {
        "OTHER"
    }
}

/// Counters owned elsewhere (the warehouse's) are mirrored at scrape time.
fn set_counter(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value >= current {
        counter.inc_by(value - current);
    }
}
