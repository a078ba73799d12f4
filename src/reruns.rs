//! Re-running a run from its failures: a new run of the same pipeline, linked to the original
//! (`rerun_of`), that does not run again the steps that succeeded there (recorded REUSED) and
//! starts from the failed ones, with the original's parameters unless new ones are given.

use chrono::{DateTime, Utc};

use crate::domain::OrgSlug;
use crate::executor::{Executor, RunStatus, TriggerError, TriggerInfo, Triggered};
use crate::runs;
use crate::service_error::ServiceError;
use crate::warehouse::Warehouse;

#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("no such run")]
    NotFound,
    /// Only a run that ended without succeeding can be re-run.
    #[error("the run is {0}")]
    NotRerunnable(String),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The steps of a run whose last attempt succeeded (or that a re-run reused).
pub fn succeeded_steps(attempts: &[runs::StepAttempt]) -> Vec<String> {
    let mut last: std::collections::BTreeMap<&str, (i64, &str)> = Default::default();
    for a in attempts {
        let entry = last.entry(a.step_id.as_str()).or_insert((a.attempt, ""));
        if a.attempt >= entry.0 {
            *entry = (a.attempt, a.status.as_str());
        }
    }
    last.into_iter()
        .filter(|(_, (_, status))| matches!(*status, "SUCCEEDED" | "REUSED"))
        .map(|(step, _)| step.to_string())
        .collect()
}

pub async fn rerun(
    executor: &Executor,
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    parameters: Option<&serde_json::Map<String, serde_json::Value>>,
    triggered_by: String,
    now: DateTime<Utc>,
) -> Result<Triggered, RerunError> {
    let (original, attempts) = runs::get_with_steps(warehouse, org, run_id, now)
        .await?
        .ok_or(RerunError::NotFound)?;
    if !RunStatus::can_rerun(&original.status) {
        return Err(RerunError::NotRerunnable(original.status));
    }
    let parameters = match parameters {
        Some(p) => p.clone(),
        None => original.parameters.as_object().cloned().unwrap_or_default(),
    };
    let info = TriggerInfo {
        trigger: "rerun",
        triggered_by,
        rerun_of: Some(run_id.to_string()),
        reuse_steps: succeeded_steps(&attempts),
        ..TriggerInfo::default()
    };
    Ok(executor
        .trigger(org, &original.pipeline_id, &parameters, info)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(step: &str, attempt: i64, status: &str) -> runs::StepAttempt {
        runs::StepAttempt {
            step_id: step.into(),
            attempt,
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_step_counts_as_succeeded_by_its_last_attempt_only() {
        let attempts = [
            attempt("a", 1, "SUCCEEDED"),
            attempt("b", 1, "FAILED"),
            attempt("b", 2, "SUCCEEDED"),
            attempt("c", 1, "SUCCEEDED"),
            attempt("c", 2, "FAILED"),
            attempt("d", 0, "REUSED"),
            attempt("e", 0, "SKIPPED"),
            attempt("f", 1, "INTERRUPTED"),
        ];
        assert_eq!(succeeded_steps(&attempts), ["a", "b", "d"]);
    }
}
