//! `http.extract`: pulls items from a provider's API with the triggering org's own credential,
//! following cursor pagination (bounded pages), retrying 429 and 5xx with backoff that honours
//! `Retry-After`, and streams them into a table of the org's dataset in `insertAll` batches of at
//! most 500, each row's `insertId` derived from the item's identity so a retried page does not
//! duplicate rows.
//!
//! ```yaml
//! - id: extract
//!   kind: http.extract
//!   provider: usage_api
//!   path: /v1/usage
//!   query: {day: day}            # query parameter -> run parameter
//!   items: /data                 # JSON pointer to the page's items
//!   next_cursor: /next_cursor    # JSON pointer to the next cursor (absent or null: last page)
//!   cursor_param: cursor
//!   max_pages: 50
//!   table: provider_usage
//!   item_id: /id                 # JSON pointer to an item's identity
//!   columns:
//!     - {name: model, pointer: /model, type: STRING}
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_yaml_ng::Mapping;

use super::{StepAction, StepContext, StepError, StepOutcome, fields};
use crate::definitions::{CatalogError, StepParse};
use crate::integrations;
use crate::kms::KmsError;
use crate::service_error::ServiceError;

const MAX_ROWS_PER_INSERT: usize = 500;
const MAX_ATTEMPTS: u32 = 5;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A provider page read into memory at most; a larger one fails the step (not retried).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Reads a provider's answer, refusing it as soon as it passes [`MAX_PAGE_BYTES`] (announced or
/// streamed), so one provider cannot make a step hold an unbounded reply.
async fn bounded_json(mut r: reqwest::Response) -> Result<Value, StepError> {
    let too_large = || {
        StepError::new(
            "provider",
            format!(
                "provider page larger than {} MiB",
                MAX_PAGE_BYTES / 1024 / 1024
            ),
            false,
        )
    };
    if r.content_length()
        .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|_| StepError::new("provider", "provider answer was cut off", true))?
    {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|_| StepError::new("provider", "provider answered with invalid JSON", true))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ColumnType {
    #[serde(rename = "STRING")]
    String,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FLOAT64")]
    Float64,
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "TIMESTAMP")]
    Timestamp,
    #[serde(rename = "DATE")]
    Date,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Column {
    name: String,
    pointer: String,
    #[serde(rename = "type")]
    kind: ColumnType,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    provider: String,
    path: String,
    #[serde(default)]
    query: BTreeMap<String, String>,
    items: String,
    #[serde(default)]
    next_cursor: Option<String>,
    #[serde(default = "default_cursor_param")]
    cursor_param: String,
    #[serde(default = "default_max_pages")]
    max_pages: u32,
    table: String,
    item_id: String,
    columns: Vec<Column>,
}

fn default_cursor_param() -> String {
    "cursor".into()
}

fn default_max_pages() -> u32 {
    100
}

#[derive(Debug)]
pub struct Extract {
    f: Fields,
}

fn identifier(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn parse(raw: Mapping, ctx: &StepParse<'_>) -> Result<Box<dyn StepAction>, CatalogError> {
    let f: Fields = fields(raw, ctx)?;
    if ctx.providers.get(&f.provider).is_none() {
        return Err(ctx.error("provider", format!("unknown provider {}", f.provider)));
    }
    if !f.path.starts_with('/') || f.path.contains("..") || f.path.contains('?') {
        return Err(ctx.error("path", "an absolute path without a query string"));
    }
    for param in f.query.values() {
        if !ctx.known_params.contains(param) {
            return Err(ctx.error("query", format!("undeclared parameter {param}")));
        }
    }
    if !identifier(&f.table) {
        return Err(ctx.error("table", "1-128 letters, digits or underscores"));
    }
    if !(1..=1000).contains(&f.max_pages) {
        return Err(ctx.error("max_pages", "1-1000"));
    }
    if f.columns.is_empty()
        || f.columns
            .iter()
            .any(|c| !identifier(&c.name) || c.name.starts_with('_'))
    {
        return Err(ctx.error(
            "columns",
            "at least one; names of letters, digits, underscores, not starting with _",
        ));
    }
    for pointer in [Some(&f.items), Some(&f.item_id), f.next_cursor.as_ref()]
        .into_iter()
        .flatten()
    {
        if !pointer.starts_with('/') {
            return Err(ctx.error("", format!("{pointer}: JSON pointers start with /")));
        }
    }
    Ok(Box::new(Extract { f }))
}

fn cell(value: Option<&Value>, kind: ColumnType) -> Value {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match kind {
        ColumnType::String | ColumnType::Timestamp | ColumnType::Date => match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
        ColumnType::Int64 => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(Value::from)
            .unwrap_or(Value::Null),
        ColumnType::Float64 => v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(Value::from)
            .unwrap_or(Value::Null),
        ColumnType::Bool => v.as_bool().map(Value::Bool).unwrap_or(Value::Null),
    }
}

fn field_type(kind: ColumnType) -> FieldType {
    match kind {
        ColumnType::String => FieldType::String,
        ColumnType::Int64 => FieldType::Int64,
        ColumnType::Float64 => FieldType::Float64,
        ColumnType::Bool => FieldType::Bool,
        ColumnType::Timestamp => FieldType::Timestamp,
        ColumnType::Date => FieldType::Date,
    }
}

impl Extract {
    async fn ensure_table(&self, ctx: &StepContext) -> Result<(), StepError> {
        let mut fields: Vec<TableFieldSchema> = self
            .f
            .columns
            .iter()
            .map(|c| TableFieldSchema::new(&c.name, field_type(c.kind)))
            .collect();
        fields.push(TableFieldSchema::string("_item_id"));
        fields.push(TableFieldSchema::string("_run_id"));
        fields.push(TableFieldSchema::timestamp("_extracted_at"));
        let table = Table::new(
            ctx.warehouse.project_id(),
            ctx.org_dataset.as_str(),
            &self.f.table,
            TableSchema::new(fields),
        );
        ctx.warehouse.create_table(table).await?;
        Ok(())
    }

    /// One page, retried on 429 / 5xx / transport failures, honouring Retry-After.
    async fn page(
        &self,
        ctx: &StepContext,
        provider: &integrations::Provider,
        auth: &integrations::Authorization,
        cursor: Option<&str>,
    ) -> Result<Value, StepError> {
        let mut query: Vec<(String, String)> = self
            .f
            .query
            .iter()
            .filter_map(|(k, param)| ctx.params.text(param).map(|v| (k.clone(), v)))
            .collect();
        if let Some(c) = cursor {
            query.push((self.f.cursor_param.clone(), c.to_string()));
        }
        let mut attempt = 1;
        loop {
            let sent = provider
                .request(&ctx.http, reqwest::Method::GET, &self.f.path, auth)
                .query(&query)
                .send()
                .await;
            let wait = match sent {
                Ok(r) if r.status().is_success() => return bounded_json(r).await,
                Ok(r) if r.status().as_u16() == 401 || r.status().as_u16() == 403 => {
                    return Err(StepError::new(
                        "provider",
                        format!(
                            "provider rejected the credential (HTTP {})",
                            r.status().as_u16()
                        ),
                        false,
                    ));
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let status = r.status().as_u16();
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StepError::new(
                            "provider",
                            format!("provider answered HTTP {status}"),
                            true,
                        ));
                    }
                    retry_after
                        .unwrap_or(Duration::from_millis(500 * 2u64.pow(attempt - 1)))
                        .min(MAX_RETRY_AFTER)
                }
                Ok(r) => {
                    return Err(StepError::new(
                        "provider",
                        format!("provider answered HTTP {}", r.status().as_u16()),
                        false,
                    ));
                }
                Err(e) => {
                    let what = if e.is_timeout() {
                        "provider did not answer in time"
                    } else {
                        "provider unreachable"
                    };
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StepError::new("provider", what, true));
                    }
                    Duration::from_millis(500 * 2u64.pow(attempt - 1))
                }
            };
            tracing::info!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "provider request retried"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[async_trait::async_trait]
impl StepAction for Extract {
    async fn run(&self, ctx: &StepContext) -> Result<StepOutcome, StepError> {
        let provider = ctx
            .providers
            .get(&self.f.provider)
            .ok_or_else(|| StepError::new("config", "provider no longer registered", false))?;
        let (_, credential) =
            integrations::open(&ctx.warehouse, ctx.kms.as_ref(), &ctx.org, &provider.name)
                .await
                .map_err(|e| match e {
                    ServiceError::NotFound => StepError::new(
                        "credential",
                        format!("no active {} credential for this org", provider.name),
                        false,
                    ),
                    ServiceError::Kms(KmsError::Decrypt) => StepError::new(
                        "credential",
                        "the stored credential could not be decrypted",
                        false,
                    ),
                    ServiceError::Kms(KmsError::Unavailable(_)) => {
                        StepError::new("kms", "KMS unavailable", true)
                    }
                    ServiceError::Warehouse(w) => w.into(),
                    _ => StepError::new(
                        "credential",
                        "the stored credential could not be used",
                        false,
                    ),
                })?;
        let auth = integrations::authorize(&ctx.http, provider, &credential)
            .await
            .map_err(|e| StepError::new("provider", e, true))?;
        drop(credential);
        self.ensure_table(ctx).await?;

        let extracted_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut cursor: Option<String> = None;
        let mut written = 0i64;
        for page_number in 1..=self.f.max_pages {
            let page = self.page(ctx, provider, &auth, cursor.as_deref()).await?;
            let items = page
                .pointer(&self.f.items)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut rows = Vec::with_capacity(items.len());
            for item in &items {
                let Some(id) = item.pointer(&self.f.item_id).filter(|v| !v.is_null()) else {
                    continue;
                };
                let id = id
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| id.to_string());
                let mut row = Map::new();
                for c in &self.f.columns {
                    row.insert(c.name.clone(), cell(item.pointer(&c.pointer), c.kind));
                }
                row.insert("_item_id".into(), Value::String(id.clone()));
                row.insert("_run_id".into(), Value::String(ctx.run_id.clone()));
                row.insert("_extracted_at".into(), Value::String(extracted_at.clone()));
                rows.push((format!("{}:{}", provider.name, id), Value::Object(row)));
            }
            for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
                ctx.warehouse
                    .insert_rows(&ctx.org_dataset, &self.f.table, chunk)
                    .await?;
            }
            written += rows.len() as i64;
            cursor = self
                .f
                .next_cursor
                .as_ref()
                .and_then(|p| page.pointer(p))
                .and_then(|v| match v {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            if cursor.is_none() {
                return Ok(StepOutcome {
                    rows_affected: Some(written),
                    ..StepOutcome::default()
                });
            }
            if page_number == self.f.max_pages {
                return Err(StepError::new(
                    "provider",
                    format!("more than {} pages", self.f.max_pages),
                    false,
                ));
            }
        }
        Ok(StepOutcome {
            rows_affected: Some(written),
            ..StepOutcome::default()
        })
    }
}
