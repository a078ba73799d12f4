//! Reading runs back: a run's current state (latest event) and its step attempts; recording a
//! cancellation for the instance that runs a run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cost::price::Price;
use crate::domain::OrgSlug;
use crate::service_error::ServiceError;
use crate::warehouse::from_micros;
use crate::warehouse::{Param, Warehouse, sql};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunView {
    pub run_id: String,
    pub pipeline_id: String,
    pub status: String,
    pub trigger: Option<String>,
    pub triggered_by: Option<String>,
    pub parameters: Value,
    pub error_class: Option<String>,
    pub error_summary: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The run this one re-runs from its failed steps.
    pub rerun_of: Option<String>,
    /// `pipeline_id/schedule` of a scheduled run.
    pub schedule_id: Option<String>,
    /// A scheduled run's tick; a backfill child's day.
    pub logical_time: Option<DateTime<Utc>>,
    pub backfill_id: Option<String>,
    /// How long the run waited in the org's queue (a run that is still queued: so far).
    pub queued_secs: Option<f64>,
    /// Once it ended: what BigQuery billed for its step jobs, summed (what counts against the
    /// org's bytes budget).
    pub bytes_billed: Option<i64>,
    /// `bytes_billed` at `PRICE_PER_TIB_CENTS` (see [`RunView::priced`]).
    pub estimated_cost_usd: Option<f64>,
}

impl RunView {
    /// The view with its estimated cost.
    pub fn priced(mut self, price: Price) -> Self {
        self.estimated_cost_usd = price.usd_of(self.bytes_billed);
        self
    }
}

#[derive(Deserialize)]
struct RunRow {
    org_slug: Option<String>,
    run_id: String,
    pipeline_id: String,
    status: String,
    trigger: Option<String>,
    triggered_by: Option<String>,
    parameters: Option<String>,
    error_class: Option<String>,
    error_summary: Option<String>,
    updated_at_micros: Option<i64>,
    created_at_micros: Option<i64>,
    started_at_micros: Option<i64>,
    rerun_of: Option<String>,
    schedule_id: Option<String>,
    logical_time_micros: Option<i64>,
    backfill_id: Option<String>,
    queued_at_micros: Option<i64>,
    admitted_at_micros: Option<i64>,
    bytes_billed: Option<i64>,
}

/// Seconds from queued to admitted (or to `now`, or to its end if it never left the queue).
fn queued_secs(
    queued: Option<i64>,
    admitted: Option<i64>,
    ended: Option<i64>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let queued = queued?;
    let left = admitted.or(ended).unwrap_or(now.timestamp_micros());
    Some(((left - queued).max(0) as f64 / 1e6 * 1000.0).round() / 1000.0)
}

/// One run as `GET …/runs/{run_id}` answers it (its steps are read too: one query, the same
/// as the live model's).
pub async fn get(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<RunView>, ServiceError> {
    Ok(get_with_steps(warehouse, org, run_id, now)
        .await?
        .map(|(run, _)| run))
}

/// One run and its step attempts (see [`in_run_order`]), read in one query: runs of the last
/// [`MAX_WINDOW_DAYS`] days.
pub async fn get_with_steps(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<(RunView, Vec<StepAttempt>)>, ServiceError> {
    let key = (org.clone(), run_id.to_string());
    let since = now - chrono::Duration::days(MAX_WINDOW_DAYS);
    let mut read = get_many_with_steps(warehouse, std::slice::from_ref(&key), since, now).await?;
    Ok(read.remove(&key))
}

/// A run's row (`runs/by_ids_with_steps.sql`) as the API shows it at `now`.
fn view(r: RunRow, now: DateTime<Utc>) -> RunView {
    let terminal = crate::executor::RunStatus::is_terminal(&r.status);
    let ended_at_micros = if terminal { r.updated_at_micros } else { None };
    RunView {
        duration_ms: match (r.started_at_micros.or(r.created_at_micros), ended_at_micros) {
            (Some(s), Some(e)) => Some((e - s) / 1000),
            _ => None,
        },
        run_id: r.run_id,
        pipeline_id: r.pipeline_id,
        status: r.status,
        trigger: r.trigger,
        triggered_by: r.triggered_by,
        parameters: r
            .parameters
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null),
        error_class: r.error_class,
        error_summary: r.error_summary,
        created_at: from_micros(r.created_at_micros),
        started_at: from_micros(r.started_at_micros),
        updated_at: from_micros(r.updated_at_micros),
        ended_at: from_micros(ended_at_micros),
        rerun_of: r.rerun_of,
        schedule_id: r.schedule_id,
        logical_time: from_micros(r.logical_time_micros),
        backfill_id: r.backfill_id,
        bytes_billed: r.bytes_billed,
        estimated_cost_usd: None,
        queued_secs: queued_secs(
            r.queued_at_micros,
            r.admitted_at_micros,
            ended_at_micros,
            now,
        ),
    }
}

/// A run watched by the live read model: its org and id.
pub type RunKey = (OrgSlug, String);

/// One row of `runs/by_ids_with_steps.sql`: a run's state, or one of its step attempts.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum RunOrStep {
    Run(RunRow),
    Step(StepRow),
}

/// The runs an instance's live readers watch and their step attempts, read in one query
/// (`runs/by_ids_with_steps.sql`; per run what `GET …/runs/{run_id}` and `…/steps` answer, before
/// [`in_run_order`]): keyed by (org, run id); a run the org does not have is absent, a run
/// without attempts has none. `since`: no run of `keys` was created before it.
pub async fn get_many_with_steps(
    warehouse: &Warehouse,
    keys: &[RunKey],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<RunKey, (RunView, Vec<StepAttempt>)>, ServiceError> {
    let mut by_run: std::collections::HashMap<RunKey, (RunView, Vec<StepAttempt>)> =
        Default::default();
    if keys.is_empty() {
        return Ok(by_run);
    }
    let rows: Vec<RunOrStep> = warehouse
        .query(
            &sql::RUNS_BY_IDS_WITH_STEPS,
            &[
                Param::string_array("org_slugs", orgs_of(keys)),
                Param::string_array("run_keys", joined(keys)),
                Param::timestamp("since", window_start(since, now)),
                Param::int64("max_rows", (keys.len() * (1 + MAX_ATTEMPTS_PER_RUN)) as i64),
            ],
        )
        .await?;
    let key_of = |org: Option<&str>, run_id: String| Some((OrgSlug::parse(org?).ok()?, run_id));
    let mut steps: std::collections::HashMap<RunKey, Vec<StepAttempt>> = Default::default();
    for row in rows {
        match row {
            RunOrStep::Run(row) => {
                if let Some(key) = key_of(row.org_slug.as_deref(), row.run_id.clone()) {
                    by_run.insert(key, (view(row, now), Vec::new()));
                }
            }
            RunOrStep::Step(row) => {
                let Some(run_id) = row.run_id.clone() else {
                    continue;
                };
                if let Some(key) = key_of(row.org_slug.as_deref(), run_id) {
                    steps.entry(key).or_default().push(attempt(row));
                }
            }
        }
    }
    for (key, attempts) in steps {
        if let Some((_, of_run)) = by_run.get_mut(&key) {
            *of_run = attempts;
        }
    }
    Ok(by_run)
}

/// Step attempts a run shows at most (`runs/by_ids_with_steps.sql`).
const MAX_ATTEMPTS_PER_RUN: usize = 1000;

/// The orgs of the keys, each once.
fn orgs_of(keys: &[RunKey]) -> Vec<String> {
    let orgs: std::collections::BTreeSet<&str> = keys.iter().map(|(org, _)| org.as_str()).collect();
    orgs.into_iter().map(str::to_string).collect()
}

/// `org_slug/run_id` of each key (org slugs hold no `/`).
fn joined(keys: &[RunKey]) -> Vec<String> {
    keys.iter()
        .map(|(org, run_id)| format!("{}/{run_id}", org.as_str()))
        .collect()
}

/// The first partition a read of runs created at `since` or later needs: a minute's margin
/// (clocks of other instances), and never more than [`MAX_WINDOW_DAYS`] back, like every
/// other read of a run.
fn window_start(since: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    (since - chrono::Duration::minutes(1)).max(now - chrono::Duration::days(MAX_WINDOW_DAYS))
}

#[derive(Serialize)]
struct CancelRequest<'a> {
    request_id: String,
    run_id: &'a str,
    org_slug: &'a str,
    requested_by: &'a str,
    requested_at: String,
}

/// Appends a cancellation request (one streamed row) that the instance running the run reads
/// with its next heartbeat.
pub async fn request_cancel(
    warehouse: &Warehouse,
    org: &OrgSlug,
    run_id: &str,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let row = CancelRequest {
        request_id: request_id.clone(),
        run_id,
        org_slug: org.as_str(),
        requested_by,
        requested_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let meta = warehouse.meta_dataset().clone();
    warehouse
        .insert_rows(&meta, "run_cancel_requests", &[(request_id, row)])
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepAttempt {
    pub step_id: String,
    pub attempt: i64,
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub rows_affected: Option<i64>,
    pub bytes_processed: Option<i64>,
    /// What BigQuery billed for the attempt's jobs (at least 10 MB per query).
    pub bytes_billed: Option<i64>,
    /// Slot time of the attempt's jobs.
    pub slot_ms: Option<i64>,
    pub error_summary: Option<String>,
}

#[derive(Deserialize)]
struct StepRow {
    org_slug: Option<String>,
    run_id: Option<String>,
    step_id: String,
    attempt: i64,
    status: String,
    started_at_micros: Option<i64>,
    ended_at_micros: Option<i64>,
    duration_ms: Option<i64>,
    rows_affected: Option<i64>,
    bytes_processed: Option<i64>,
    bytes_billed: Option<i64>,
    slot_ms: Option<i64>,
    error_summary: Option<String>,
}

fn attempt(r: StepRow) -> StepAttempt {
    StepAttempt {
        step_id: r.step_id,
        attempt: r.attempt,
        status: r.status,
        started_at: from_micros(r.started_at_micros),
        ended_at: from_micros(r.ended_at_micros),
        duration_ms: r.duration_ms,
        rows_affected: r.rows_affected,
        bytes_processed: r.bytes_processed,
        bytes_billed: r.bytes_billed,
        slot_ms: r.slot_ms,
        error_summary: r.error_summary,
    }
}

/// A run's step attempts in run order: by start, and the steps that never started (SKIPPED,
/// all dated at the run's end) in the order `declared` (the pipeline's steps) gives them.
pub fn in_run_order(attempts: &mut [StepAttempt], declared: &[String]) {
    let index = |id: &str| declared.iter().position(|d| d == id).unwrap_or(usize::MAX);
    attempts.sort_by(|a, b| {
        (a.started_at, index(&a.step_id), a.attempt).cmp(&(
            b.started_at,
            index(&b.step_id),
            b.attempt,
        ))
    });
}

/// Largest window a runs query may cover: every query keeps a partition filter.
pub const MAX_WINDOW_DAYS: i64 = 31;
/// The window when none is given.
pub const DEFAULT_WINDOW_DAYS: i64 = 7;
const STATUSES: &[&str] = &[
    "QUEUED",
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "TIMED_OUT",
    "ORPHANED",
];
const TRIGGERS: &[&str] = &["api", "retry", "rerun", "schedule", "backfill"];

/// Query parameters of the run lists, as sent.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// One status or a comma-separated list.
    pub status: Option<String>,
    pub pipeline_id: Option<String>,
    pub trigger: Option<String>,
    /// RFC 3339; runs created at or after.
    pub since: Option<String>,
    /// RFC 3339; runs created before.
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub page_token: Option<String>,
    /// Admin list only.
    pub org_slug: Option<String>,
}

/// A validated run filter.
#[derive(Debug, Clone)]
pub struct RunFilter {
    pub statuses: Vec<String>,
    pub pipeline_id: String,
    pub trigger: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub limit: usize,
}

fn invalid(field: &str, problem: &str, accepted: &str) -> ServiceError {
    ServiceError::InvalidField(crate::validation::FieldProblem::new(
        field, problem, accepted,
    ))
}

fn parse_time(raw: &str, name: &str) -> Result<DateTime<Utc>, ServiceError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(name, "not an RFC 3339 time", "e.g. 2026-11-01T00:00:00Z"))
}

/// Checks a window: since < until, at most [`MAX_WINDOW_DAYS`].
pub fn window(
    since: Option<&str>,
    until: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ServiceError> {
    let until = until
        .map(|u| parse_time(u, "until"))
        .transpose()?
        .unwrap_or(now);
    let since = since
        .map(|s| parse_time(s, "since"))
        .transpose()?
        .unwrap_or(until - chrono::Duration::days(DEFAULT_WINDOW_DAYS));
    if since >= until {
        return Err(invalid("since", "not before until", "a time before until"));
    }
    if until - since > chrono::Duration::days(MAX_WINDOW_DAYS) {
        return Err(invalid(
            "since",
            "the window is longer than 31 days",
            "since and until at most 31 days apart",
        ));
    }
    Ok((since, until))
}

impl RunsQuery {
    /// What the first pages read in one batch share (`crate::live`): `filter` (this query's) as
    /// asked, with the window's ends as given; an end left to its default is the batch's own
    /// (the latest caller's now), so callers asking "the last seven days" share a read.
    pub fn batch_key(&self, filter: &RunFilter) -> String {
        format!(
            "{}|{}|{}",
            filter.selection().join("|"),
            self.since.as_deref().unwrap_or(""),
            self.until.as_deref().unwrap_or(""),
        )
    }

    pub fn filter(&self, now: DateTime<Utc>) -> Result<RunFilter, ServiceError> {
        let statuses: Vec<String> = match &self.status {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(|s| s.trim().to_ascii_uppercase())
                .map(|s| {
                    if STATUSES.contains(&s.as_str()) {
                        Ok(s)
                    } else {
                        Err(invalid(
                            "status",
                            "unknown status",
                            "QUEUED, PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, ORPHANED \
                             (one, or several separated by commas)",
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let pipeline_id = match &self.pipeline_id {
            Some(p) if crate::pipelines::valid_pipeline_id(p) => p.clone(),
            Some(_) => {
                return Err(invalid(
                    "pipeline_id",
                    "not a pipeline id",
                    "a catalog id such as genai/usage_rollup",
                ));
            }
            None => String::new(),
        };
        let trigger = match &self.trigger {
            Some(t) if TRIGGERS.contains(&t.as_str()) => t.clone(),
            Some(_) => {
                return Err(invalid(
                    "trigger",
                    "unknown trigger",
                    "api, retry, rerun, schedule or backfill",
                ));
            }
            None => String::new(),
        };
        let (since, until) = window(self.since.as_deref(), self.until.as_deref(), now)?;
        let limit = match self.limit {
            None => 50,
            Some(n) if (1..=100).contains(&n) => n,
            Some(_) => return Err(invalid("limit", "out of range", "1 to 100")),
        };
        Ok(RunFilter {
            statuses,
            pipeline_id,
            trigger,
            since,
            until,
            limit,
        })
    }
}

/// One run in a list.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunItem {
    pub run_id: String,
    pub org_slug: String,
    pub pipeline_id: String,
    pub status: String,
    pub trigger: Option<String>,
    pub triggered_by: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error_class: Option<String>,
    pub error_summary: Option<String>,
    /// The org's runs that day, and that month, counting this one, when it was admitted.
    pub runs_today_at_admission: Option<i64>,
    pub runs_month_at_admission: Option<i64>,
    /// How long the run waited in the org's queue (so far, if it still waits).
    pub queued_secs: Option<f64>,
    /// Once it ended: what BigQuery billed for its step jobs, summed.
    pub bytes_billed: Option<i64>,
}

#[derive(Deserialize, Clone)]
struct ListRow {
    org_slug: String,
    run_id: String,
    pipeline_id: String,
    status: String,
    error_class: Option<String>,
    error_summary: Option<String>,
    trigger: Option<String>,
    triggered_by: Option<String>,
    updated_at_micros: Option<i64>,
    created_at_micros: Option<i64>,
    started_at_micros: Option<i64>,
    runs_today_at_admission: Option<i64>,
    runs_month_at_admission: Option<i64>,
    queued_at_micros: Option<i64>,
    admitted_at_micros: Option<i64>,
    bytes_billed: Option<i64>,
}

impl RunItem {
    fn from_row(r: ListRow, now: DateTime<Utc>) -> Self {
        let ended = if crate::executor::RunStatus::is_terminal(&r.status) {
            r.updated_at_micros
        } else {
            None
        };
        RunItem {
            duration_ms: match (r.started_at_micros.or(r.created_at_micros), ended) {
                (Some(s), Some(e)) => Some((e - s) / 1000),
                _ => None,
            },
            run_id: r.run_id,
            org_slug: r.org_slug,
            pipeline_id: r.pipeline_id,
            status: r.status,
            trigger: r.trigger,
            triggered_by: r.triggered_by,
            created_at: from_micros(r.created_at_micros),
            started_at: from_micros(r.started_at_micros),
            ended_at: from_micros(ended),
            error_class: r.error_class,
            error_summary: r.error_summary,
            runs_today_at_admission: r.runs_today_at_admission,
            runs_month_at_admission: r.runs_month_at_admission,
            queued_secs: queued_secs(r.queued_at_micros, r.admitted_at_micros, ended, now),
            bytes_billed: r.bytes_billed,
        }
    }
}

/// Whose runs a list covers.
pub enum ListScope<'a> {
    Org(&'a OrgSlug),
    /// Admin: every org, or one.
    All(Option<&'a OrgSlug>),
}

#[derive(Debug, Clone)]
pub struct RunPage {
    pub runs: Vec<RunItem>,
    pub next_page_token: Option<String>,
}

impl RunFilter {
    /// Everything that selects the runs but the window: statuses, pipeline, trigger and limit.
    /// A page token is bound to it, and first pages are read together under it.
    fn selection(&self) -> [String; 4] {
        [
            self.statuses.join(","),
            self.pipeline_id.clone(),
            self.trigger.clone(),
            self.limit.to_string(),
        ]
    }
}

/// What a page token of the list is bound to: who it lists and the filter but the window.
fn scope_key(scope: &ListScope<'_>, filter: &RunFilter) -> String {
    let who = match scope {
        ListScope::Org(o) => format!("org:{o}"),
        ListScope::All(o) => format!("all:{}", o.map(|o| o.as_str()).unwrap_or("")),
    };
    let [statuses, pipeline, trigger, limit] = filter.selection();
    crate::page_token::PageTokens::scope_of(&[&who, &statuses, &pipeline, &trigger, &limit])
}

/// A page from up to `limit + 1` rows read newest first: the first `limit`, and a token for
/// the next page when there was one more.
fn page_of(
    rows: Vec<ListRow>,
    filter: &RunFilter,
    scope_key: &str,
    tokens: &crate::page_token::PageTokens,
) -> RunPage {
    let more = rows.len() > filter.limit;
    let now = Utc::now();
    let runs: Vec<RunItem> = rows
        .into_iter()
        .take(filter.limit)
        .map(|r| RunItem::from_row(r, now))
        .collect();
    let next_page_token = match (more, runs.last()) {
        (true, Some(last)) => Some(tokens.issue(
            last.created_at.map_or(0, |t| t.timestamp_micros()),
            &last.run_id,
            (
                filter.since.timestamp_micros(),
                filter.until.timestamp_micros(),
            ),
            scope_key,
        )),
        _ => None,
    };
    RunPage {
        runs,
        next_page_token,
    }
}

/// Newest first; `token` (verified by the caller) continues an earlier page.
pub async fn list(
    warehouse: &Warehouse,
    tokens: &crate::page_token::PageTokens,
    scope: ListScope<'_>,
    mut filter: RunFilter,
    page_token: Option<&str>,
) -> Result<RunPage, ServiceError> {
    let scope_key = scope_key(&scope, &filter);
    let (before_micros, before_id) = match page_token {
        None => (i64::MAX, String::new()),
        Some(token) => {
            let cursor = tokens.open(token, &scope_key).map_err(|_| {
                invalid(
                    "page_token",
                    "invalid, or issued for another query",
                    "the next_page_token of the same query",
                )
            })?;
            filter.since = DateTime::from_timestamp_micros(cursor.since).ok_or_else(|| {
                invalid(
                    "page_token",
                    "invalid",
                    "the next_page_token of the same query",
                )
            })?;
            filter.until = DateTime::from_timestamp_micros(cursor.until).ok_or_else(|| {
                invalid(
                    "page_token",
                    "invalid",
                    "the next_page_token of the same query",
                )
            })?;
            (cursor.t, cursor.id)
        }
    };
    let mut params = vec![
        Param::timestamp("since", filter.since),
        Param::timestamp("until", filter.until),
        Param::string_array("statuses", filter.statuses.clone()),
        Param::string("pipeline_id", filter.pipeline_id.clone()),
        Param::string("trigger", filter.trigger.clone()),
        Param::int64("before_micros", before_micros),
        Param::string("before_id", before_id),
        Param::int64("limit", filter.limit as i64 + 1),
    ];
    let statement = match scope {
        ListScope::Org(org) => {
            params.push(Param::string("org_slug", org.as_str()));
            &sql::RUNS_BY_ORG
        }
        ListScope::All(org) => {
            params.push(Param::string(
                "org_filter",
                org.map(|o| o.to_string()).unwrap_or_default(),
            ));
            &sql::RUNS_ALL
        }
    };
    let rows: Vec<ListRow> = warehouse.query(statement, &params).await?;
    Ok(page_of(rows, &filter, &scope_key, tokens))
}

/// The rows of the first pages of several orgs' run lists under one filter, read at once (up
/// to `limit + 1` per org, newest first): what [`first_page_of`] makes each org's page of.
pub struct FirstPageRows {
    by_org: HashMap<String, Vec<ListRow>>,
}

/// Reads the first pages of `orgs`' run lists under `filter` in one query
/// (`runs/first_pages_by_orgs.sql`): per org what [`list`] reads for its first page.
pub async fn first_pages(
    warehouse: &Warehouse,
    orgs: &[OrgSlug],
    filter: &RunFilter,
) -> Result<FirstPageRows, ServiceError> {
    let per_org = filter.limit + 1;
    let params = vec![
        Param::timestamp("since", filter.since),
        Param::timestamp("until", filter.until),
        Param::string_array("statuses", filter.statuses.clone()),
        Param::string("pipeline_id", filter.pipeline_id.clone()),
        Param::string("trigger", filter.trigger.clone()),
        Param::int64("limit", per_org as i64),
        Param::string_array("org_slugs", orgs.iter().map(|o| o.to_string()).collect()),
        Param::int64("max_rows", (per_org * orgs.len()) as i64),
    ];
    let rows: Vec<ListRow> = warehouse.query(&sql::RUNS_FIRST_PAGES, &params).await?;
    let mut by_org: HashMap<String, Vec<ListRow>> = HashMap::new();
    for row in rows {
        by_org.entry(row.org_slug.clone()).or_default().push(row);
    }
    Ok(FirstPageRows { by_org })
}

/// `org`'s first page from a batch [`first_pages`] read under `filter`, as [`list`] answers it.
pub fn first_page_of(
    rows: &FirstPageRows,
    tokens: &crate::page_token::PageTokens,
    org: &OrgSlug,
    filter: &RunFilter,
) -> RunPage {
    let mine = rows.by_org.get(org.as_str()).cloned().unwrap_or_default();
    page_of(
        mine,
        filter,
        &scope_key(&ListScope::Org(org), filter),
        tokens,
    )
}

/// Per-pipeline figures over one org's runs in a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct PipelineStats {
    pub pipeline_id: String,
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub in_progress: i64,
    /// Succeeded over every ended run (succeeded, failed, cancelled); absent while none ended.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub failures_by_class: std::collections::BTreeMap<String, i64>,
    /// What the ended runs' jobs billed, summed.
    pub bytes_billed: i64,
    /// `bytes_billed` at `PRICE_PER_TIB_CENTS`.
    pub estimated_cost_usd: f64,
}

#[derive(Deserialize)]
struct StatsRow {
    pipeline_id: String,
    runs: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    in_progress: i64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    #[serde(default)]
    bytes_billed: i64,
}

#[derive(Deserialize)]
struct FailureRow {
    pipeline_id: String,
    error_class: String,
    runs: i64,
}

pub async fn stats(
    warehouse: &Warehouse,
    org: &OrgSlug,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    price: Price,
) -> Result<Vec<PipelineStats>, ServiceError> {
    let params = [
        Param::string("org_slug", org.as_str()),
        Param::timestamp("since", since),
        Param::timestamp("until", until),
    ];
    let rows: Vec<StatsRow> = warehouse.query(&sql::RUN_STATS, &params).await?;
    let failures: Vec<FailureRow> = warehouse.query(&sql::RUN_FAILURES, &params).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let ended = r.succeeded + r.failed + r.cancelled;
            PipelineStats {
                failures_by_class: failures
                    .iter()
                    .filter(|f| f.pipeline_id == r.pipeline_id)
                    .map(|f| (f.error_class.clone(), f.runs))
                    .collect(),
                success_rate: success_rate(r.succeeded, ended),
                pipeline_id: r.pipeline_id,
                runs: r.runs,
                succeeded: r.succeeded,
                failed: r.failed,
                cancelled: r.cancelled,
                in_progress: r.in_progress,
                p50_ms: r.p50_ms,
                p95_ms: r.p95_ms,
                bytes_billed: r.bytes_billed,
                estimated_cost_usd: price.usd(r.bytes_billed),
            }
        })
        .collect())
}

/// Succeeded runs over ended ones (a cancelled run counts against the rate: 5 successes and a
/// cancel are 83 %, not 100 %); `None` while no run ended.
pub fn success_rate(succeeded: i64, ended: i64) -> Option<f64> {
    (ended > 0).then(|| succeeded as f64 / ended as f64)
}

/// What the stats count per pipeline and period (a UTC day or hour).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeriodFigures {
    pub runs: i64,
    pub succeeded: i64,
    pub failed: i64,
    #[serde(default)]
    pub cancelled: i64,
    /// Succeeded over every ended run (succeeded, failed, cancelled); absent in a period where
    /// none ended.
    #[serde(default)]
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// What the period's ended runs billed, summed.
    #[serde(default)]
    pub bytes_billed: i64,
    /// `bytes_billed` at `PRICE_PER_TIB_CENTS`.
    #[serde(default)]
    pub estimated_cost_usd: f64,
}

/// One pipeline's figures for one UTC day (the web view's charts).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DailyStats {
    pub pipeline_id: String,
    /// YYYY-MM-DD (UTC), the day the runs were created.
    pub day: String,
    #[serde(flatten)]
    pub figures: PeriodFigures,
}

/// One pipeline's figures for one UTC hour (the web view's charts while history is short).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HourlyStats {
    pub pipeline_id: String,
    /// YYYY-MM-DDTHH:00:00Z, the hour the runs were created in.
    pub hour: String,
    #[serde(flatten)]
    pub figures: PeriodFigures,
}

/// The rows one stats-by-period read returns at most (the SQL's LIMIT): an answer with this
/// many says `truncated` (fewer pipelines or a shorter window give the rest).
pub const PERIOD_ROWS_LIMIT: usize = 1000;

/// The longest window the hourly stats read: a week of hours.
pub const MAX_HOURLY_WINDOW_DAYS: i64 = 7;

/// A period the stats are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    Hour,
}

impl Period {
    fn micros(self) -> i64 {
        match self {
            Period::Day => 86_400_000_000,
            Period::Hour => 3_600_000_000,
        }
    }

    /// How the period starting at `start_micros` is named in an answer.
    fn name(self, start_micros: i64) -> String {
        let start = DateTime::from_timestamp_micros(start_micros).unwrap_or_default();
        match self {
            Period::Day => start.format("%Y-%m-%d").to_string(),
            Period::Hour => start.format("%Y-%m-%dT%H:00:00Z").to_string(),
        }
    }
}

#[derive(Deserialize)]
struct PeriodRow {
    pipeline_id: String,
    /// The period's number since the Unix epoch.
    period_index: i64,
    #[serde(flatten)]
    figures: PeriodFigures,
}

/// Per pipeline and period over `[since, until)`, as (pipeline, period's name, figures): one
/// bounded query that prunes partitions.
async fn stats_by_period(
    warehouse: &Warehouse,
    org: &OrgSlug,
    (since, until): (DateTime<Utc>, DateTime<Utc>),
    period: Period,
    price: Price,
) -> Result<Vec<(String, String, PeriodFigures)>, ServiceError> {
    let params = [
        Param::string("org_slug", org.as_str()),
        Param::timestamp("since", since),
        Param::timestamp("until", until),
        Param::int64("period_micros", period.micros()),
    ];
    let rows: Vec<PeriodRow> = warehouse.query(&sql::RUN_STATS_BY_PERIOD, &params).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut f = r.figures;
            f.success_rate = success_rate(f.succeeded, f.succeeded + f.failed + f.cancelled);
            f.estimated_cost_usd = price.usd(f.bytes_billed);
            let start_micros = r.period_index * period.micros();
            (r.pipeline_id, period.name(start_micros), f)
        })
        .collect())
}

/// Per pipeline and UTC day over `[since, until)`.
pub async fn daily_stats(
    warehouse: &Warehouse,
    org: &OrgSlug,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    price: Price,
) -> Result<Vec<DailyStats>, ServiceError> {
    let rows = stats_by_period(warehouse, org, (since, until), Period::Day, price).await?;
    Ok(rows
        .into_iter()
        .map(|(pipeline_id, day, figures)| DailyStats {
            pipeline_id,
            day,
            figures,
        })
        .collect())
}

/// Per pipeline and UTC hour over `[since, until)`, a window of at most
/// [`MAX_HOURLY_WINDOW_DAYS`] (refused as `since` otherwise).
pub async fn hourly_stats(
    warehouse: &Warehouse,
    org: &OrgSlug,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    price: Price,
) -> Result<Vec<HourlyStats>, ServiceError> {
    if until - since > chrono::Duration::days(MAX_HOURLY_WINDOW_DAYS) {
        return Err(invalid(
            "since",
            "the window is longer than 7 days",
            "since and until at most 7 days apart for hourly figures",
        ));
    }
    let rows = stats_by_period(warehouse, org, (since, until), Period::Hour, price).await?;
    Ok(rows
        .into_iter()
        .map(|(pipeline_id, hour, figures)| HourlyStats {
            pipeline_id,
            hour,
            figures,
        })
        .collect())
}

#[cfg(test)]
mod stats_tests {
    #[test]
    fn a_period_is_named_by_its_utc_start() {
        // 2026-11-10T13:00:00Z
        let start = 1_794_315_600_000_000;
        assert_eq!(super::Period::Hour.name(start), "2026-11-10T13:00:00Z");
        assert_eq!(
            super::Period::Day.name(start - 13 * 3_600_000_000),
            "2026-11-10"
        );
    }

    #[test]
    fn a_cancelled_run_counts_against_the_success_rate_and_none_ended_gives_none() {
        assert_eq!(super::success_rate(5, 6), Some(5.0 / 6.0));
        assert_eq!(super::success_rate(0, 0), None);
        assert_eq!(super::success_rate(2, 4), Some(0.5));
    }

    fn attempt(step: &str, n: i64, at: i64) -> super::StepAttempt {
        super::StepAttempt {
            step_id: step.into(),
            attempt: n,
            status: if n == 0 { "SKIPPED" } else { "SUCCEEDED" }.into(),
            started_at: chrono::DateTime::from_timestamp(at, 0),
            ..Default::default()
        }
    }

    #[test]
    fn steps_read_in_run_order_with_the_skipped_ones_in_declaration_order() {
        let declared: Vec<String> = ["load", "zeta", "alpha", "report"]
            .map(String::from)
            .to_vec();
        let mut steps = vec![
            attempt("report", 0, 100),
            attempt("alpha", 0, 100),
            attempt("zeta", 0, 100),
            attempt("load", 2, 50),
            attempt("load", 1, 10),
        ];
        super::in_run_order(&mut steps, &declared);
        let order: Vec<(&str, i64)> = steps
            .iter()
            .map(|s| (s.step_id.as_str(), s.attempt))
            .collect();
        assert_eq!(
            order,
            [
                ("load", 1),
                ("load", 2),
                ("zeta", 0),
                ("alpha", 0),
                ("report", 0)
            ]
        );
    }
}
