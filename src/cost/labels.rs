//! Labels on every BigQuery job Quarry creates, so what a job cost can be attributed to an org,
//! a pipeline, a run and a step in `INFORMATION_SCHEMA.JOBS` and in the billing export.
//!
//! Always all five: `quarry_org`, `quarry_pipeline`, `quarry_run`, `quarry_step` and
//! `quarry_kind` (`step`, `bookkeeping` or `api`); a value that does not apply is empty.
//! BigQuery takes label values of at most 63 characters of `[a-z0-9_-]` (lowercase letters,
//! digits, `_`, `-`): a value that already is one is kept as it is; any other is lowercased with
//! each other character as `_` and, since that could make two values one (`test/soak` and
//! `test_soak`), followed by `-` and 10 hex digits of its SHA-256, the readable part cut to fit:
//! a long id is hashed, never cut into a collision.
//!
//! Where the labels come from: a step's jobs from the step (explicit, see
//! `warehouse::StepJob`); an API request's jobs from the request (kind `api`, with the org once
//! the caller is authorized for it; set by the request middleware and the auth extractor);
//! anything else (admission, the run log, heartbeats, the reaper, the scheduler) is
//! `bookkeeping`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

use sha2::{Digest, Sha256};

/// The five label keys, in the order they are documented.
pub const KEYS: [&str; 5] = [
    "quarry_org",
    "quarry_pipeline",
    "quarry_run",
    "quarry_step",
    "quarry_kind",
];

const MAX_VALUE: usize = 63;
const HASH_HEX: usize = 10;

/// What a job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    /// A pipeline step's own SQL: the tenant's work.
    Step,
    /// The service's upkeep: admission, the run log, heartbeats, the reaper, the scheduler.
    #[default]
    Bookkeeping,
    /// A read or write an API request asked for.
    Api,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Step => "step",
            Purpose::Bookkeeping => "bookkeeping",
            Purpose::Api => "api",
        }
    }
}

/// One job's labels, before they are made valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLabels {
    pub purpose: Purpose,
    pub org: String,
    pub pipeline: String,
    pub run: String,
    pub step: String,
}

impl JobLabels {
    pub fn bookkeeping() -> Self {
        Self::default()
    }

    pub fn api() -> Self {
        Self {
            purpose: Purpose::Api,
            ..Self::default()
        }
    }

    pub fn step(org: &str, pipeline: &str, run: &str, step: &str) -> Self {
        Self {
            purpose: Purpose::Step,
            org: org.to_string(),
            pipeline: pipeline.to_string(),
            run: run.to_string(),
            step: step.to_string(),
        }
    }

    /// The labels as BigQuery takes them: all five keys, every value valid.
    pub fn to_map(&self) -> HashMap<String, String> {
        [
            &self.org,
            &self.pipeline,
            &self.run,
            &self.step,
            &self.purpose.as_str().to_string(),
        ]
        .into_iter()
        .zip(KEYS)
        .map(|(value, key)| (key.to_string(), label_value(value)))
        .collect()
    }
}

/// `raw` as a BigQuery label value (see the module's documentation).
pub fn label_value(raw: &str) -> String {
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if raw.len() <= MAX_VALUE && raw.chars().all(valid) {
        return raw.to_string();
    }
    let readable: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if valid(c) { c } else { '_' })
        .take(MAX_VALUE - HASH_HEX - 1)
        .collect();
    let digest = Sha256::digest(raw.as_bytes());
    let hash: String = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(HASH_HEX)
        .collect();
    format!("{readable}-{hash}")
}

tokio::task_local! {
    static REQUEST: RefCell<JobLabels>;
}

/// Runs `f` with `labels` as the labels of the jobs it creates (an API request's).
pub async fn scope<F: Future>(labels: JobLabels, f: F) -> F::Output {
    REQUEST.scope(RefCell::new(labels), f).await
}

/// The labels of a job created now: the request's, or `bookkeeping` outside a request.
pub fn current() -> JobLabels {
    REQUEST
        .try_with(|labels| labels.borrow().clone())
        .unwrap_or_else(|_| JobLabels::bookkeeping())
}

/// Names the org the current request acts for (once the caller is authorized for it).
pub fn set_org(org: &str) {
    let _ = REQUEST.try_with(|labels| labels.borrow_mut().org = org.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_value_is_kept_and_any_other_is_made_valid_with_a_hash_of_the_original() {
        assert_eq!(label_value("acme-corp"), "acme-corp");
        assert_eq!(label_value(""), "");
        let run = "6aee7203-c40a-5f90-ade9-d30292af3f64";
        assert_eq!(label_value(run), run);
        let slash = label_value("test/soak");
        let underscore = label_value("test_soak");
        assert_eq!(underscore, "test_soak");
        assert!(slash.starts_with("test_soak-"), "{slash}");
        assert_eq!(slash.len(), "test_soak-".len() + HASH_HEX);
        assert_ne!(slash, underscore, "two pipelines never share a label value");
        assert!(label_value("Daily").starts_with("daily-"));
    }

    #[test]
    fn a_long_value_is_hashed_not_cut_into_a_collision() {
        let a = format!("{}a", "x".repeat(70));
        let b = format!("{}b", "x".repeat(70));
        let (la, lb) = (label_value(&a), label_value(&b));
        assert_eq!(la.len(), MAX_VALUE);
        assert_eq!(lb.len(), MAX_VALUE);
        assert_ne!(la, lb);
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        assert!(la.chars().all(valid), "{la}");
        assert_eq!(label_value(&"y".repeat(63)), "y".repeat(63));
    }

    #[test]
    fn every_job_carries_all_five_labels() {
        let step = JobLabels::step("acme", "sales/daily", "r1", "load").to_map();
        assert_eq!(step.len(), 5);
        assert_eq!(step["quarry_org"], "acme");
        assert_eq!(step["quarry_run"], "r1");
        assert_eq!(step["quarry_step"], "load");
        assert_eq!(step["quarry_kind"], "step");
        assert!(step["quarry_pipeline"].starts_with("sales_daily-"));
        let upkeep = JobLabels::bookkeeping().to_map();
        assert_eq!(upkeep.len(), 5);
        assert_eq!(upkeep["quarry_kind"], "bookkeeping");
        assert_eq!(upkeep["quarry_org"], "");
    }

    #[tokio::test]
    async fn a_request_names_its_org_once_authorized_and_other_work_is_bookkeeping() {
        assert_eq!(current(), JobLabels::bookkeeping());
        let seen = scope(JobLabels::api(), async {
            let before = current();
            set_org("acme");
            (before, current())
        })
        .await;
        assert_eq!(seen.0, JobLabels::api());
        assert_eq!(seen.1.org, "acme");
        assert_eq!(seen.1.purpose, Purpose::Api);
        set_org("ignored outside a request");
        assert_eq!(current(), JobLabels::bookkeeping());
    }
}
