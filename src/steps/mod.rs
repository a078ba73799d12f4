//! Step kinds. Each kind is one file: it parses its own YAML fields at catalog load and runs
//! against a [`StepContext`]. Adding a kind is a new file and one line in [`parse`].

mod bigquery_assert;
mod bigquery_query;
mod chaos;
mod http_extract;
mod wait;

use std::fmt::Debug;

use serde_yaml_ng::Mapping;

use std::sync::Arc;

use crate::definitions::{CatalogError, ParamDecl, RunParams, StepParse};
use crate::domain::{DatasetId, OrgSlug};
use crate::integrations::Registry;
use crate::kms::SharedKms;
use crate::warehouse::{Warehouse, WarehouseError};

/// Everything a step attempt may use: the warehouse, the triggering org (its own dataset), the
/// run's parameters, which step and attempt it is. Nothing is shared between runs.
#[derive(Clone)]
pub struct StepContext {
    pub warehouse: Warehouse,
    pub kms: SharedKms,
    pub http: reqwest::Client,
    pub providers: Arc<Registry>,
    pub org: OrgSlug,
    pub org_dataset: DatasetId,
    pub pipeline_id: String,
    pub run_id: String,
    pub params: RunParams,
    pub declared: Vec<ParamDecl>,
    pub step_id: String,
    pub attempt: u32,
    /// The org's per-job cap and what its budgets have left for this attempt.
    pub caps: RunCaps,
}

type CapsLoad = dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::cost::cap::OrgCaps> + Send>>
    + Send
    + Sync;

/// The org's caps for one run: read once, when its first BigQuery job needs them (a run
/// without one reads nothing), shared by its attempts, each seeing what the run's earlier
/// attempts billed taken off.
#[derive(Clone)]
pub struct RunCaps {
    read: Arc<tokio::sync::OnceCell<crate::cost::cap::OrgCaps>>,
    load: Arc<CapsLoad>,
    billed_before: i64,
}

impl RunCaps {
    pub fn new(load: Arc<CapsLoad>) -> Self {
        Self {
            read: Arc::new(tokio::sync::OnceCell::new()),
            load,
            billed_before: 0,
        }
    }

    /// The same caps for an attempt that starts once the run has billed `billed`.
    pub fn after(&self, billed: i64) -> Self {
        Self {
            billed_before: billed,
            ..self.clone()
        }
    }

    pub async fn get(&self) -> crate::cost::cap::OrgCaps {
        self.read
            .get_or_init(|| (self.load)())
            .await
            .after(self.billed_before)
    }
}

impl StepContext {
    /// The cap of a step's jobs: the smallest of its own and the org's.
    pub async fn cap(
        &self,
        step: Option<crate::cost::cap::BytesCap>,
    ) -> Option<crate::cost::cap::Cap> {
        self.caps.get().await.cap(step)
    }

    /// This attempt's `index`-th BigQuery job: its id, its labels and its cap.
    pub fn job(
        &self,
        index: usize,
        cap: Option<crate::cost::cap::Cap>,
    ) -> crate::warehouse::StepJob {
        crate::warehouse::StepJob {
            id: self.job_id(index),
            max_bytes_billed: cap.map(|c| c.bytes),
            labels: crate::cost::labels::JobLabels::step(
                self.org.as_str(),
                &self.pipeline_id,
                &self.run_id,
                &self.step_id,
            ),
        }
    }

    /// The id of this attempt's `index`-th BigQuery job: the same on every try within the
    /// attempt (a lost answer re-attaches), another for the next attempt.
    pub fn job_id(&self, index: usize) -> String {
        crate::warehouse::job_id(&[
            &self.run_id,
            &self.step_id,
            &format!("a{}", self.attempt),
            &index.to_string(),
        ])
    }
}

/// What a successful attempt reports for the step log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub rows_affected: Option<i64>,
    pub bytes_processed: Option<i64>,
    /// What BigQuery billed for the attempt's jobs, summed (`None`: no job said).
    pub bytes_billed: Option<i64>,
    pub slot_ms: Option<i64>,
}

impl StepOutcome {
    /// Adds one finished job: its affected rows replace the last, its bytes and slot time add.
    pub fn add_job(&mut self, done: &crate::warehouse::PipelineOutcome) {
        fn sum(total: &mut Option<i64>, more: Option<i64>) {
            if let Some(more) = more {
                *total = Some(total.unwrap_or(0) + more);
            }
        }
        if let Some(n) = done.affected_rows {
            self.rows_affected = Some(n as i64);
        }
        sum(&mut self.bytes_processed, done.bytes_processed);
        sum(&mut self.bytes_billed, done.bytes_billed);
        sum(&mut self.slot_ms, done.slot_ms);
    }
}

/// A failed attempt: a class for grouping, a summary safe to store (no secrets, no data), and
/// whether another attempt could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {summary}")]
pub struct StepError {
    pub class: &'static str,
    pub summary: String,
    pub retryable: bool,
}

impl StepError {
    pub fn new(class: &'static str, summary: impl Into<String>, retryable: bool) -> Self {
        let mut summary: String = summary.into();
        if summary.len() > 500 {
            let mut end = 500;
            while !summary.is_char_boundary(end) {
                end -= 1;
            }
            summary.truncate(end);
        }
        Self {
            class,
            summary,
            retryable,
        }
    }
}

impl StepError {
    /// A BigQuery step's failure: `cost_cap` (not retried) when BigQuery refused a job over
    /// its cap (the error names the cap that bound), else as any BigQuery failure.
    pub fn capped(e: WarehouseError, cap: Option<crate::cost::cap::Cap>) -> Self {
        if e.is_bytes_billed_limit() {
            let summary = match cap {
                Some(cap) => cap.refusal(),
                None => "refused by BigQuery before it ran: over a bytes-billed limit".into(),
            };
            return StepError::new(crate::cost::cap::CLASS, summary, false);
        }
        e.into()
    }
}

impl From<WarehouseError> for StepError {
    fn from(e: WarehouseError) -> Self {
        let retryable = e.is_retryable() || e.is_unavailable();
        StepError::new("bigquery", e.to_string(), retryable)
    }
}

#[async_trait::async_trait]
pub trait StepAction: Send + Sync + Debug + 'static {
    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError>;
}

/// Builds the action of a step of `kind` from its kind-specific fields.
pub fn parse(
    kind: &str,
    fields: Mapping,
    ctx: &StepParse<'_>,
) -> Result<Box<dyn StepAction>, CatalogError> {
    match kind {
        "bigquery.query" => bigquery_query::parse(fields, ctx),
        "bigquery.assert" => bigquery_assert::parse(fields, ctx),
        "chaos.fault" => chaos::parse(fields, ctx),
        "http.extract" => http_extract::parse(fields, ctx),
        "wait" => wait::parse(fields, ctx),
        other => Err(ctx.error("kind", format!("unknown step kind {other}"))),
    }
}

/// Deserializes a kind's fields, naming the step and the field in errors (`steps[0].destination
/// .write`); an unknown field lists every field a step of this kind takes.
fn fields<T: serde::de::DeserializeOwned>(
    fields: Mapping,
    ctx: &StepParse<'_>,
) -> Result<T, CatalogError> {
    serde_path_to_error::deserialize(serde_yaml_ng::Value::Mapping(fields)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        match message.strip_prefix("unknown field ") {
            Some(rest) => {
                let kind_fields = rest
                    .split_once(", expected ")
                    .map(|(_, e)| {
                        e.replace("one of ", "")
                            .replace('`', "")
                            .replace(" or ", ", ")
                    })
                    .unwrap_or_default();
                ctx.error(
                    &path,
                    format!(
                        "unknown field; a step takes {}, and this kind takes {kind_fields}",
                        crate::definitions::COMMON_STEP_FIELDS.join(", ")
                    ),
                )
            }
            None => ctx.error(&path, message),
        }
    })
}
