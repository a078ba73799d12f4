//! `bigquery.assert`: a data-quality check. The SQL file is a bounded SELECT that returns the
//! offending rows; the step passes when it returns none. A failed assertion is not retried.

use serde::Deserialize;
use serde_yaml_ng::Mapping;

use super::{StepAction, StepContext, StepError, StepOutcome, fields};
use crate::cost::cap::BytesCap;
use crate::definitions::{CatalogError, PipelineSql, StepParse};
use crate::warehouse::PipelineStatement;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    sql: String,
    /// Bytes each of the step's jobs may bill (`maximumBytesBilled`).
    #[serde(default)]
    max_bytes_billed: Option<u64>,
}

#[derive(Debug)]
pub struct Assert {
    sql: PipelineSql,
    cap: Option<BytesCap>,
}

pub fn parse(raw: Mapping, ctx: &StepParse<'_>) -> Result<Box<dyn StepAction>, CatalogError> {
    let f: Fields = fields(raw, ctx)?;
    let sql = ctx.load_sql(&f.sql)?;
    let cap = ctx.bytes_cap(f.max_bytes_billed)?;
    if !sql.is_read() {
        return Err(ctx.error("sql", "an assertion is a SELECT returning offending rows"));
    }
    Ok(Box::new(Assert { sql, cap }))
}

#[async_trait::async_trait]
impl StepAction for Assert {
    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let params = ctx
            .params
            .to_params(&ctx.declared, &self.sql.params, ctx.org.as_str());
        let statement = PipelineStatement::render(&self.sql.file, &self.sql.text, &ctx.org_dataset);
        let cap = ctx.cap(self.cap).await;
        let done = ctx
            .warehouse
            .run_pipeline(&statement, &params, &ctx.job(0, cap))
            .await
            .map_err(|e| StepError::capped(e, cap))?;
        if !done.rows.is_empty() {
            return Err(StepError::new(
                "assertion",
                format!(
                    "{} offending row(s) returned by {}",
                    done.rows.len(),
                    self.sql.file
                ),
                false,
            ));
        }
        let mut outcome = StepOutcome::default();
        outcome.add_job(&done);
        outcome.rows_affected = Some(0);
        Ok(outcome)
    }
}
