//! Step SQL as jobs with ids of our own: each step attempt's statements run as
//! `jobs.insert` with a job id derived from (run, step, attempt, statement), so a lost answer
//! never starts a second job. A retried insert first asks whether the job exists (`jobs.get`)
//! and attaches to it; BigQuery's own "already exists" is read the same way. Results are read
//! with `getQueryResults` on that id (idempotent, so those calls retry freely). A call that is
//! dropped before its job finished (the step timed out, the run was cancelled or fenced)
//! cancels the job.

use std::time::Instant;

use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::job_configuration::JobConfiguration;
use gcp_bigquery_client::model::job_configuration_query::JobConfigurationQuery;
use gcp_bigquery_client::model::job_reference::JobReference;

use super::{
    JobKind, Outcome, Pages, Param, PipelineOutcome, PipelineStatement, Warehouse, WarehouseError,
    kind_of,
};

/// A job id BigQuery accepts (letters, digits, `_`, `-`; at most 1024), from our parts.
pub fn job_id(parts: &[&str]) -> String {
    let mut id = String::from("quarry");
    for part in parts {
        id.push('_');
        id.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        }));
    }
    id.truncate(1024);
    id
}

/// One job of a pipeline step: its id (see [`job_id`]), its labels, and the bytes it may bill.
#[derive(Debug, Clone)]
pub struct StepJob {
    pub id: String,
    pub labels: crate::cost::labels::JobLabels,
    /// Sent as `maximumBytesBilled`: BigQuery refuses the job before it runs if it would bill
    /// more.
    pub max_bytes_billed: Option<u64>,
}

/// What BigQuery says a finished job cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct JobStatistics {
    bytes_processed: Option<i64>,
    bytes_billed: Option<i64>,
    slot_ms: Option<i64>,
}

impl JobStatistics {
    fn of(job: &Job) -> Self {
        let number = |v: Option<&String>| v.and_then(|b| b.parse().ok());
        let query = job.statistics.as_ref().and_then(|s| s.query.as_ref());
        Self {
            bytes_processed: number(query.and_then(|q| q.total_bytes_processed.as_ref())),
            bytes_billed: number(query.and_then(|q| q.total_bytes_billed.as_ref())),
            slot_ms: number(query.and_then(|q| q.total_slot_ms.as_ref())).or(number(
                job.statistics
                    .as_ref()
                    .and_then(|s| s.total_slot_ms.as_ref()),
            )),
        }
    }
}

/// Cancels the job when dropped before [`CancelOnDrop::done`].
struct CancelOnDrop {
    warehouse: Warehouse,
    job_id: String,
    armed: bool,
}

impl CancelOnDrop {
    fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (warehouse, job_id) = (self.warehouse.clone(), std::mem::take(&mut self.job_id));
        runtime.spawn(async move {
            let inner = &warehouse.inner;
            match inner
                .client
                .job()
                .cancel_job(&inner.project_id, &job_id, Some(&inner.location))
                .await
            {
                Ok(_) => tracing::info!(job_id, "cancelled the job of an interrupted step"),
                Err(e) => tracing::warn!(job_id, error = %WarehouseError::from(e), "cancelling a job failed"),
            }
        });
    }
}

impl Warehouse {
    /// Runs one pipeline step's SQL for one org as the job `job_id` (see [`job_id`]): at most
    /// one job per id, whatever answers are lost on the way.
    pub async fn run_pipeline(
        &self,
        statement: &PipelineStatement,
        params: &[Param],
        job: &StepJob,
    ) -> Result<PipelineOutcome, WarehouseError> {
        let job_id = job.id.as_str();
        let kind = kind_of(statement.text());
        let guard = CancelOnDrop {
            warehouse: self.clone(),
            job_id: job_id.to_string(),
            armed: true,
        };
        let started = Instant::now();
        self.insert_job(statement, params, job, kind).await?;
        let outcome = self.job_results(job_id, statement.file(), kind).await;
        guard.done();
        let stats = match &outcome {
            Ok(_) => self.job_statistics(job_id).await,
            Err(_) => JobStatistics::default(),
        };
        match &outcome {
            Ok(_) => tracing::debug!(
                sql = statement.file(),
                job_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "bigquery job done"
            ),
            Err(e) => {
                tracing::warn!(sql = statement.file(), job_id, error = %e, "bigquery job failed")
            }
        }
        let outcome = outcome?;
        Ok(PipelineOutcome {
            rows: outcome.rows,
            affected_rows: outcome.affected_rows,
            bytes_processed: stats.bytes_processed.or(outcome.bytes_processed),
            bytes_billed: stats.bytes_billed,
            slot_ms: stats.slot_ms,
        })
    }

    /// A finished job's billing statistics, from one `jobs.get` (a metadata call: it bills
    /// nothing). All `None` when the call fails or BigQuery does not say: a step never fails
    /// for want of its statistics (its bytes then count as unknown, see the README's Cost).
    async fn job_statistics(&self, job_id: &str) -> JobStatistics {
        let inner = &self.inner;
        let read = self
            .retrying(JobKind::Metadata, "jobs.get", || async {
                Ok(inner
                    .client
                    .job()
                    .get_job(&inner.project_id, job_id, Some(&inner.location))
                    .await?)
            })
            .await;
        match read {
            Ok(job) => JobStatistics::of(&job),
            Err(e) => {
                tracing::warn!(job_id, error = %e, "reading a job's statistics failed");
                JobStatistics::default()
            }
        }
    }

    /// Starts the job unless an earlier try already did.
    async fn insert_job(
        &self,
        statement: &PipelineStatement,
        params: &[Param],
        step_job: &StepJob,
        kind: JobKind,
    ) -> Result<(), WarehouseError> {
        let inner = &self.inner;
        let job_id = step_job.id.as_str();
        let job = Job {
            configuration: Some(JobConfiguration {
                labels: Some(step_job.labels.to_map()),
                query: Some(JobConfigurationQuery {
                    query: statement.text().to_string(),
                    use_legacy_sql: Some(false),
                    parameter_mode: Some("NAMED".to_string()),
                    query_parameters: Some(params.iter().map(Param::to_bigquery).collect()),
                    maximum_bytes_billed: step_job.max_bytes_billed.map(|b| b.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            job_reference: Some(JobReference {
                job_id: Some(job_id.to_string()),
                location: Some(inner.location.clone()),
                project_id: Some(inner.project_id.clone()),
            }),
            ..Default::default()
        };
        self.retrying(kind, statement.file(), || async {
            let jobs = inner.client.job();
            let error = match jobs.insert(&inner.project_id, job.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => WarehouseError::from(e),
            };
            if error.is_already_exists() {
                return Ok(()); // an earlier try got through: attach to it
            }
            if error.is_retryable() || matches!(error, WarehouseError::Timeout) {
                // The insert may have reached BigQuery and only its answer been lost.
                if jobs
                    .get_job(&inner.project_id, job_id, Some(&inner.location))
                    .await
                    .is_ok()
                {
                    tracing::info!(job_id, "attached to the job an earlier try started");
                    return Ok(());
                }
            }
            Err(error)
        })
        .await
    }

    /// Waits for the job and reads its (bounded) result pages; a failed read starts over
    /// (reading results is idempotent).
    async fn job_results(
        &self,
        job_id: &str,
        file: &str,
        kind: JobKind,
    ) -> Result<Outcome, WarehouseError> {
        self.retrying(kind, file, || self.read_pages(Pages::waiting_for(job_id)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::job_id;

    #[test]
    fn a_job_id_keeps_letters_digits_and_dashes_and_replaces_the_rest() {
        assert_eq!(
            job_id(&["3f2a-11", "load.daily", "a2", "0"]),
            "quarry_3f2a-11_load_daily_a2_0"
        );
        assert_eq!(job_id(&[&"x".repeat(2000)]).len(), 1024);
    }
}
