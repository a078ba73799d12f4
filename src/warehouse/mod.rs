//! The warehouse: the only module that talks to BigQuery.
//!
//! One client is built at start-up and shared. SQL comes only from the [`sql`] registry and
//! values only as typed [`Param`]s. Every request is counted ([`JobCounters`]), retried when the
//! failure is transient, and checked for the `errors` field even when HTTP said 200.

mod counters;
mod jobs;
mod params;
mod retry;
mod rows;
pub mod sql;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::data_format_options::DataFormatOptions;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::error_proto::ErrorProto;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::DatasetId;
use crate::settings::{RetrySettings, Settings};

pub use counters::{JobCounters, JobCounts, JobKind};
pub use jobs::{StepJob, job_id};
pub use params::Param;
pub use rows::from_micros;
pub use sql::{PipelineStatement, Statement};

/// What a pipeline statement did.
#[derive(Debug, Clone, Default)]
pub struct PipelineOutcome {
    /// Result rows (bounded by the statement's own LIMIT), as JSON objects.
    pub rows: Vec<serde_json::Value>,
    pub affected_rows: Option<u64>,
    pub bytes_processed: Option<i64>,
    /// What BigQuery billed for the job (`statistics.query.totalBytesBilled`), when it said.
    pub bytes_billed: Option<i64>,
    /// Slot time the job used (`statistics.query.totalSlotMs`), when BigQuery said.
    pub slot_ms: Option<i64>,
}

/// Result pages followed for one bounded query before giving up (LIMITs keep us far below).
const MAX_RESULT_PAGES: usize = 20;
/// How long one `jobs.query` call waits server-side before returning an incomplete job.
const QUERY_WAIT_MS: i32 = 10_000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WarehouseError {
    /// No usable HTTP exchange: connection refused, reset, undecodable reply.
    #[error("BigQuery transport failure: {0}")]
    Transport(String),
    /// The request did not finish within the configured read timeout.
    #[error("BigQuery request timed out")]
    Timeout,
    /// BigQuery answered with an HTTP error status.
    #[error("BigQuery HTTP {status} ({reason}): {message}")]
    Http {
        status: u16,
        reason: String,
        message: String,
    },
    /// HTTP succeeded but the job reported errors.
    #[error("BigQuery job failed ({reason}): {message}")]
    Job { reason: String, message: String },
    /// `insertAll` accepted the request but rejected rows.
    #[error("BigQuery rejected inserted rows ({reason}): {message}")]
    Insert { reason: String, message: String },
    #[error("BigQuery authentication failed: {0}")]
    Auth(String),
    #[error("unexpected BigQuery response: {0}")]
    Decode(String),
}

impl WarehouseError {
    pub fn is_not_found(&self) -> bool {
        match self {
            WarehouseError::Http { status, .. } => *status == 404,
            WarehouseError::Job { reason, .. } => reason == "notFound",
            _ => false,
        }
    }

    /// BigQuery refused the job before it ran: it would bill more than its `maximumBytesBilled`.
    pub fn is_bytes_billed_limit(&self) -> bool {
        match self {
            WarehouseError::Http { reason, .. } | WarehouseError::Job { reason, .. } => {
                reason == "bytesBilledLimitExceeded"
            }
            _ => false,
        }
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, WarehouseError::Http { status: 409, .. })
    }

    /// BigQuery could not be reached, did not answer, or refused for capacity (rate and quota
    /// limits, the per-table DML queue, concurrent updates): the caller should say 503, not 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            WarehouseError::Transport(_) | WarehouseError::Timeout => true,
            WarehouseError::Http { status, .. } if *status == 429 || *status >= 500 => true,
            _ => self.is_capacity(),
        }
    }
}

impl From<BQError> for WarehouseError {
    fn from(e: BQError) -> Self {
        match e {
            BQError::RequestError(err) if err.is_timeout() => WarehouseError::Timeout,
            BQError::RequestError(err) => WarehouseError::Transport(err.to_string()),
            BQError::ResponseError { error } => {
                let reason = error
                    .error
                    .errors
                    .first()
                    .and_then(|e| e.get("reason").cloned())
                    .unwrap_or_default();
                WarehouseError::Http {
                    status: u16::try_from(error.error.code).unwrap_or(500),
                    reason,
                    message: error.error.message,
                }
            }
            BQError::AuthError(_) | BQError::YupAuthError(_) | BQError::NoToken => {
                WarehouseError::Auth(e.to_string())
            }
            BQError::SerializationError(err) => WarehouseError::Decode(err.to_string()),
            other => WarehouseError::Transport(other.to_string()),
        }
    }
}

/// What a create call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    Created,
    Exists,
}

/// The emulator takes no credentials; an empty bearer token is what it expects.
#[derive(Clone)]
struct NoCredentials;

#[async_trait::async_trait]
impl gcp_bigquery_client::auth::Authenticator for NoCredentials {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(String::new())
    }
}

/// One shared client. A handle may carry a deadline that bounds each call as a whole (its
/// retries included): the API and the service's own bookkeeping use a handle with a deadline of
/// a few seconds, so an outage answers 503 quickly; steps use the handle without one, bounded
/// by the read timeout and their own step timeouts.
#[derive(Clone)]
pub struct Warehouse {
    inner: Arc<Inner>,
    deadline: Option<Duration>,
}

struct Inner {
    client: Client,
    project_id: String,
    location: String,
    meta: DatasetId,
    counters: JobCounters,
    retry: RetrySettings,
    read_timeout: Duration,
}

impl Warehouse {
    /// Builds the one shared client: Application Default Credentials on GCP, or no credentials
    /// and the emulator's base URL when `BIGQUERY_EMULATOR_HOST` is set. Timeouts: connect and
    /// read from settings (60 s / 300 s by default).
    pub async fn connect(settings: &Settings) -> Result<Self, WarehouseError> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeouts.bigquery_connect)
            .timeout(settings.timeouts.bigquery_read)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| WarehouseError::Transport(e.to_string()))?;
        let mut builder = ClientBuilder::new();
        builder.with_client(http);
        let client = match &settings.bigquery_emulator_host {
            Some(host) => {
                builder.with_v2_base_url(format!("http://{host}/bigquery/v2"));
                builder
                    .build_from_authenticator(Arc::new(NoCredentials))
                    .await?
            }
            None => builder.build_from_application_default_credentials().await?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                project_id: settings.gcp_project_id.clone(),
                location: settings.bigquery_location.clone(),
                meta: settings.meta_dataset.clone(),
                counters: JobCounters::default(),
                retry: settings.bigquery_retry.clone(),
                read_timeout: settings.timeouts.bigquery_read,
            }),
            deadline: None,
        })
    }

    /// The same client (and counters), every call bounded by `deadline` as a whole: past it the
    /// call answers [`WarehouseError::Timeout`] (a request already sent may still take effect).
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self {
            inner: self.inner.clone(),
            deadline: Some(deadline),
        }
    }

    /// The deadline each call of this handle has, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    pub fn meta_dataset(&self) -> &DatasetId {
        &self.inner.meta
    }

    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    pub fn counters(&self) -> &JobCounters {
        &self.inner.counters
    }

    /// Runs a read statement and deserializes each row into `T` (column names are field names).
    pub async fn query<T: DeserializeOwned>(
        &self,
        statement: &Statement,
        params: &[Param],
    ) -> Result<Vec<T>, WarehouseError> {
        let rows = self.run(statement, params).await?.rows;
        rows.into_iter()
            .map(|row| {
                serde_json::from_value(row)
                    .map_err(|e| WarehouseError::Decode(format!("{}: {e}", statement.file())))
            })
            .collect()
    }

    /// Runs a DML statement and returns `numDmlAffectedRows`.
    pub async fn execute(
        &self,
        statement: &Statement,
        params: &[Param],
    ) -> Result<u64, WarehouseError> {
        let outcome = self.run(statement, params).await?;
        outcome.affected_rows.ok_or_else(|| {
            WarehouseError::Decode(format!("{}: no numDmlAffectedRows", statement.file()))
        })
    }

    async fn run(
        &self,
        statement: &Statement,
        params: &[Param],
    ) -> Result<Outcome, WarehouseError> {
        self.run_text(
            statement.render(&self.inner.meta),
            statement.file(),
            statement.kind(),
            params,
        )
        .await
    }

    async fn run_text(
        &self,
        query: String,
        file: &str,
        kind: JobKind,
        params: &[Param],
    ) -> Result<Outcome, WarehouseError> {
        let request = QueryRequest {
            query,
            use_legacy_sql: false,
            parameter_mode: Some("NAMED".to_string()),
            query_parameters: Some(params.iter().map(Param::to_bigquery).collect()),
            location: Some(self.inner.location.clone()),
            timeout_ms: Some(QUERY_WAIT_MS),
            // One id for every attempt: BigQuery treats a retried request as the same job.
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            labels: Some(crate::cost::labels::current().to_map()),
            format_options: Some(DataFormatOptions {
                use_int64_timestamp: Some(true),
            }),
            ..QueryRequest::new(String::new())
        };
        let started = Instant::now();
        let result = self
            .retrying(kind, file, || self.run_once(request.clone()))
            .await;
        match &result {
            Ok(_) => tracing::debug!(
                sql = file,
                kind = kind.as_str(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "bigquery job done"
            ),
            // A missing table or dataset is the caller's to judge (before bootstrap the
            // background loops find nothing, and the service says so once at start-up).
            Err(e) if e.is_not_found() => tracing::debug!(
                sql = file,
                kind = kind.as_str(),
                error = %e,
                "bigquery job found no table"
            ),
            Err(e) => tracing::warn!(
                sql = file,
                kind = kind.as_str(),
                error = %e,
                "bigquery job failed"
            ),
        }
        result
    }

    async fn run_once(&self, request: QueryRequest) -> Result<Outcome, WarehouseError> {
        let jobs = self.inner.client.job();
        let response = jobs.query(&self.inner.project_id, request).await?;
        check_errors(response.errors.as_deref())?;
        let outcome = Outcome {
            rows: Vec::new(),
            affected_rows: parse_count(response.num_dml_affected_rows.as_deref())?,
            bytes_processed: response
                .total_bytes_processed
                .as_deref()
                .and_then(|b| b.parse().ok()),
        };
        self.read_pages(Pages {
            job_id: response.job_reference.and_then(|r| r.job_id),
            schema: response.schema.and_then(|s| s.fields),
            page: response.rows.unwrap_or_default(),
            page_token: response.page_token,
            complete: response.job_complete.unwrap_or(true),
            outcome,
        })
        .await
    }

    /// Reads a job's result pages from where `pages` stands: waits for the job while it is
    /// incomplete, then follows page tokens, within the read timeout and [`MAX_RESULT_PAGES`].
    async fn read_pages(&self, pages: Pages) -> Result<Outcome, WarehouseError> {
        let Pages {
            job_id,
            mut schema,
            mut page,
            mut page_token,
            mut complete,
            mut outcome,
        } = pages;
        let jobs = self.inner.client.job();
        let deadline = Instant::now() + self.inner.read_timeout;
        let mut read = 0;
        loop {
            if complete {
                outcome.rows.extend(decode(schema.as_deref(), &page)?);
                if page_token.is_none() {
                    return Ok(outcome);
                }
            }
            read += 1;
            if read > MAX_RESULT_PAGES {
                return Err(WarehouseError::Decode("too many result pages".into()));
            }
            if Instant::now() > deadline {
                return Err(WarehouseError::Timeout);
            }
            let Some(job_id) = job_id.as_deref() else {
                return Err(WarehouseError::Decode(
                    "incomplete job without an id".into(),
                ));
            };
            let more = jobs
                .get_query_results(
                    &self.inner.project_id,
                    job_id,
                    GetQueryResultsParameters {
                        location: Some(self.inner.location.clone()),
                        page_token: if complete { page_token.clone() } else { None },
                        timeout_ms: Some(QUERY_WAIT_MS),
                        // No format options: the client cannot send them as a query string
                        // (timestamps come as decimal seconds; `rows` reads both forms).
                        ..Default::default()
                    },
                )
                .await?;
            check_errors(more.errors.as_deref())?;
            complete = more.job_complete.unwrap_or(true);
            if let Some(n) = parse_count(more.num_dml_affected_rows.as_deref())? {
                outcome.affected_rows = Some(n);
            }
            if let Some(b) = more
                .total_bytes_processed
                .as_deref()
                .and_then(|b| b.parse().ok())
            {
                outcome.bytes_processed = Some(b);
            }
            if schema.is_none() {
                schema = more.schema.and_then(|s| s.fields);
            }
            page = more.rows.unwrap_or_default();
            page_token = more.page_token;
        }
    }

    /// Streams rows with `tabledata.insertAll`, one request for the whole batch. Each row carries
    /// an `insertId` for BigQuery's best-effort de-duplication of retried requests.
    pub async fn insert_rows<T: Serialize>(
        &self,
        dataset: &DatasetId,
        table: &str,
        rows: &[(String, T)],
    ) -> Result<(), WarehouseError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(rows.len());
        for (insert_id, row) in rows {
            batch.push(TableDataInsertAllRequestRows {
                insert_id: Some(insert_id.clone()),
                json: serde_json::to_value(row)
                    .map_err(|e| WarehouseError::Decode(e.to_string()))?,
            });
        }
        let mut request = TableDataInsertAllRequest::new();
        request
            .add_rows(batch)
            .map_err(|e| WarehouseError::Decode(e.to_string()))?;
        self.retrying(JobKind::InsertAll, table, || async {
            let response = self
                .inner
                .client
                .tabledata()
                .insert_all(
                    &self.inner.project_id,
                    dataset.as_str(),
                    table,
                    request.clone(),
                )
                .await?;
            let first = response
                .insert_errors
                .unwrap_or_default()
                .into_iter()
                .flat_map(|e| e.errors.unwrap_or_default())
                .next();
            match first {
                None => Ok(()),
                Some(err) => Err(WarehouseError::Insert {
                    reason: err.reason.unwrap_or_default(),
                    message: err.message.unwrap_or_default(),
                }),
            }
        })
        .await
    }

    pub async fn dataset_exists(&self, dataset: &DatasetId) -> Result<bool, WarehouseError> {
        let found = self
            .retrying(JobKind::Metadata, "datasets.get", || async {
                Ok(self
                    .inner
                    .client
                    .dataset()
                    .get(&self.inner.project_id, dataset.as_str())
                    .await?)
            })
            .await;
        absent_if_not_found(found).map(|d| d.is_some())
    }

    pub async fn create_dataset(&self, dataset: &DatasetId) -> Result<Created, WarehouseError> {
        let created = self
            .retrying(JobKind::Metadata, "datasets.insert", || async {
                let body = Dataset::new(&self.inner.project_id, dataset.as_str())
                    .location(&self.inner.location);
                Ok(self.inner.client.dataset().create(body).await?)
            })
            .await;
        created_or_exists(created)
    }

    pub async fn get_table(
        &self,
        dataset: &DatasetId,
        table: &str,
    ) -> Result<Option<Table>, WarehouseError> {
        let found = self
            .retrying(JobKind::Metadata, "tables.get", || async {
                Ok(self
                    .inner
                    .client
                    .table()
                    .get(&self.inner.project_id, dataset.as_str(), table, None)
                    .await?)
            })
            .await;
        absent_if_not_found(found)
    }

    pub async fn create_table(&self, table: Table) -> Result<Created, WarehouseError> {
        let created = self
            .retrying(JobKind::Metadata, "tables.insert", || async {
                Ok(self.inner.client.table().create(table.clone()).await?)
            })
            .await;
        created_or_exists(created)
    }

    /// Names of the tables and views in `dataset` (first 1000).
    pub async fn table_names(&self, dataset: &DatasetId) -> Result<Vec<String>, WarehouseError> {
        self.retrying(JobKind::Metadata, "tables.list", || async {
            let list = self
                .inner
                .client
                .table()
                .list(
                    &self.inner.project_id,
                    dataset.as_str(),
                    gcp_bigquery_client::table::ListOptions::default().max_results(1000),
                )
                .await?;
            Ok(list
                .tables
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.table_reference.table_id)
                .collect())
        })
        .await
    }

    /// Creates an analyst view in the meta dataset unless it exists.
    pub async fn create_view(&self, view: &sql::View) -> Result<(), WarehouseError> {
        let text = view.create_statement(&self.inner.meta);
        let file = view.file();
        self.run_text(text, &file, JobKind::Query, &[])
            .await
            .map(|_| ())
    }

    /// Creates or replaces an analyst table function.
    pub async fn create_table_function(
        &self,
        function: &sql::TableFunction,
    ) -> Result<(), WarehouseError> {
        let text = function.create_statement(&self.inner.meta);
        let file = function.file();
        self.run_text(text, &file, JobKind::Query, &[])
            .await
            .map(|_| ())
    }

    /// Replaces a table's schema (BigQuery only lets this add NULLABLE/REPEATED columns).
    pub async fn patch_table_schema(
        &self,
        dataset: &DatasetId,
        table: &str,
        fields: Vec<TableFieldSchema>,
    ) -> Result<(), WarehouseError> {
        self.retrying(JobKind::Metadata, "tables.patch", || async {
            let mut body = Table::new(
                &self.inner.project_id,
                dataset.as_str(),
                table,
                TableSchema::new(fields.clone()),
            );
            body.location = None;
            self.inner
                .client
                .table()
                .patch(&self.inner.project_id, dataset.as_str(), table, body)
                .await?;
            Ok(())
        })
        .await
    }

    /// Runs `op` with the configured backoff while its error is retryable, counting every
    /// attempt as one request of `kind`.
    async fn retrying<T, F, Fut>(
        &self,
        kind: JobKind,
        what: &str,
        op: F,
    ) -> Result<T, WarehouseError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, WarehouseError>>,
    {
        let attempt = || {
            self.inner.counters.record(kind);
            let fut = op();
            async move {
                let result = fut.await;
                // A metadata probe answered "not found" or "already exists" got its answer: an
                // outcome (bootstrap asks exactly that), not a failure.
                let outcome = |e: &WarehouseError| {
                    kind == JobKind::Metadata && (e.is_not_found() || e.is_already_exists())
                };
                if result.as_ref().is_err_and(|e| !outcome(e)) {
                    self.inner.counters.record_failure(kind);
                }
                result
            }
        };
        let retried = attempt
            .retry(retry::backoff(&self.inner.retry))
            .when(WarehouseError::is_retryable)
            .notify(|err: &WarehouseError, delay: Duration| {
                self.inner.counters.record_retry();
                tracing::warn!(
                    what,
                    kind = kind.as_str(),
                    error = %err,
                    delay_ms = delay.as_millis() as u64,
                    "retrying bigquery request"
                );
            });
        match self.deadline {
            None => retried.await,
            Some(deadline) => match tokio::time::timeout(deadline, retried).await {
                Ok(result) => result,
                Err(_) => {
                    self.inner.counters.record_failure(kind);
                    tracing::warn!(
                        what,
                        kind = kind.as_str(),
                        deadline_ms = deadline.as_millis() as u64,
                        "bigquery call past its deadline"
                    );
                    Err(WarehouseError::Timeout)
                }
            },
        }
    }
}

struct Outcome {
    rows: Vec<serde_json::Value>,
    affected_rows: Option<u64>,
    bytes_processed: Option<i64>,
}

/// Where reading a job's results stands: its id, the schema and page in hand (decoded when the
/// job is complete), the next page's token, and what was read so far.
struct Pages {
    job_id: Option<String>,
    schema: Option<Vec<TableFieldSchema>>,
    page: Vec<TableRow>,
    page_token: Option<String>,
    complete: bool,
    outcome: Outcome,
}

impl Pages {
    /// Nothing read yet from a job that may still be running.
    fn waiting_for(job_id: &str) -> Self {
        Self {
            job_id: Some(job_id.to_string()),
            schema: None,
            page: Vec::new(),
            page_token: None,
            complete: false,
            outcome: Outcome {
                rows: Vec::new(),
                affected_rows: None,
                bytes_processed: None,
            },
        }
    }
}

/// DML when the first keyword (after comments) is INSERT, UPDATE, DELETE or MERGE.
pub(crate) fn kind_of(text: &str) -> JobKind {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_ascii_uppercase();
    match first.as_str() {
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" => JobKind::Dml,
        _ => JobKind::Query,
    }
}

/// A response's `errors` field is a failure whatever the HTTP status said.
fn check_errors(errors: Option<&[ErrorProto]>) -> Result<(), WarehouseError> {
    match errors.and_then(|e| e.first()) {
        None => Ok(()),
        Some(first) => Err(WarehouseError::Job {
            reason: first.reason.clone().unwrap_or_default(),
            message: first.message.clone().unwrap_or_default(),
        }),
    }
}

fn parse_count(raw: Option<&str>) -> Result<Option<u64>, WarehouseError> {
    raw.map(|n| {
        n.parse::<u64>()
            .map_err(|_| WarehouseError::Decode("numDmlAffectedRows is not a count".into()))
    })
    .transpose()
}

fn decode(
    schema: Option<&[TableFieldSchema]>,
    rows: &[TableRow],
) -> Result<Vec<serde_json::Value>, WarehouseError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let fields = schema.ok_or_else(|| WarehouseError::Decode("rows without a schema".into()))?;
    rows::decode_rows(fields, rows).map_err(|e| WarehouseError::Decode(e.to_string()))
}

fn absent_if_not_found<T>(result: Result<T, WarehouseError>) -> Result<Option<T>, WarehouseError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn created_or_exists<T>(result: Result<T, WarehouseError>) -> Result<Created, WarehouseError> {
    match result {
        Ok(_) => Ok(Created::Created),
        Err(e) if e.is_already_exists() => Ok(Created::Exists),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_errors_field_is_a_failure_even_without_an_http_error() {
        let errors = vec![ErrorProto {
            debug_info: None,
            location: Some("query".into()),
            message: Some("Syntax error".into()),
            reason: Some("invalidQuery".into()),
        }];
        let err = check_errors(Some(&errors)).unwrap_err();
        assert!(matches!(err, WarehouseError::Job { ref reason, .. } if reason == "invalidQuery"));
        assert!(check_errors(Some(&[])).is_ok());
        assert!(check_errors(None).is_ok());
    }

    #[test]
    fn unavailability_is_told_apart_from_failure() {
        assert!(WarehouseError::Transport("refused".into()).is_unavailable());
        assert!(WarehouseError::Timeout.is_unavailable());
        assert!(
            !WarehouseError::Job {
                reason: "invalidQuery".into(),
                message: String::new()
            }
            .is_unavailable()
        );
    }
}
