//! `bigquery.query`: runs a SQL file with the run's parameters (and `@org_slug`) against the
//! org's own dataset (`__ORG_DATASET__`). With a `destination`, the file is a SELECT whose
//! result is appended to (WRITE_APPEND) or replaces (WRITE_TRUNCATE) a table in the org's
//! dataset; without one, the file is a statement in its own right (DML, DDL or a bounded read).

use serde::Deserialize;
use serde_yaml_ng::Mapping;

use super::{StepAction, StepContext, StepError, StepOutcome, fields};
use crate::cost::cap::BytesCap;
use crate::definitions::{CatalogError, PipelineSql, StepParse};
use crate::warehouse::PipelineStatement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Write {
    #[serde(rename = "WRITE_APPEND")]
    Append,
    #[serde(rename = "WRITE_TRUNCATE")]
    Truncate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Destination {
    table: String,
    #[serde(default = "default_write")]
    write: Write,
}

fn default_write() -> Write {
    Write::Append
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    sql: String,
    /// Bytes each of the step's jobs may bill (`maximumBytesBilled`).
    #[serde(default)]
    max_bytes_billed: Option<u64>,
    #[serde(default)]
    destination: Option<Destination>,
}

#[derive(Debug)]
pub struct Query {
    sql: PipelineSql,
    cap: Option<BytesCap>,
    /// The statements actually run, in order: the file itself, or the file wrapped for its
    /// destination. The only text added is the destination (a validated table name).
    templates: Vec<String>,
}

pub fn parse(raw: Mapping, ctx: &StepParse<'_>) -> Result<Box<dyn StepAction>, CatalogError> {
    let f: Fields = fields(raw, ctx)?;
    let sql = ctx.load_sql(&f.sql)?;
    let cap = ctx.bytes_cap(f.max_bytes_billed)?;
    let templates = match &f.destination {
        None => vec![sql.text.clone()],
        Some(dest) => {
            let table_ok = (1..=128).contains(&dest.table.len())
                && dest
                    .table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !table_ok {
                return Err(ctx.error("destination.table", "1-128 letters, digits or underscores"));
            }
            if !sql.is_read() {
                return Err(ctx.error("sql", "with a destination, the SQL must be a SELECT"));
            }
            let select = sql.text.trim().trim_end_matches(';');
            let target = format!("`__ORG_DATASET__.{}`", dest.table);
            match dest.write {
                // Created empty with the query's shape the first time, then appended to.
                Write::Append => vec![
                    format!(
                        "CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM (\n{select}\n) WHERE FALSE"
                    ),
                    format!("INSERT INTO {target}\n{select}"),
                ],
                Write::Truncate => vec![format!("CREATE OR REPLACE TABLE {target} AS\n{select}")],
            }
        }
    };
    Ok(Box::new(Query {
        sql,
        cap,
        templates,
    }))
}

#[async_trait::async_trait]
impl StepAction for Query {
    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let params = ctx
            .params
            .to_params(&ctx.declared, &self.sql.params, ctx.org.as_str());
        let mut outcome = StepOutcome::default();
        let cap = ctx.cap(self.cap).await;
        for (index, template) in self.templates.iter().enumerate() {
            let statement = PipelineStatement::render(&self.sql.file, template, &ctx.org_dataset);
            let done = ctx
                .warehouse
                .run_pipeline(&statement, &params, &ctx.job(index, cap))
                .await
                .map_err(|e| StepError::capped(e, cap))?;
            outcome.add_job(&done);
        }
        Ok(outcome)
    }
}
