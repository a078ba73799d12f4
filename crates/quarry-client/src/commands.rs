//! Each client command: the API call it makes and what it prints.

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::api::{Api, KeyUse};
use super::args::{
    BackfillCommand, ClientCommand, KeysCommand, NotificationsCommand, OrgsCommand, QuotaCommand,
    RunsCommand, SchedulesCommand,
};
use super::output::{Column, Format, col, fields, json, table};
use super::{ClientError, watch};

pub const RUN_COLUMNS: &[Column] = &[
    col("RUN", "run_id"),
    col("PIPELINE", "pipeline_id"),
    col("STATUS", "status"),
    col("TRIGGER", "trigger"),
    col("CREATED", "created_at"),
    col("DURATION", "duration_ms"),
    col("ERROR", "error_class"),
];

const RUN_FIELDS: &[Column] = &[
    col("run", "run_id"),
    col("pipeline", "pipeline_id"),
    col("status", "status"),
    col("trigger", "trigger"),
    col("triggered by", "triggered_by"),
    col("parameters", "parameters"),
    col("created", "created_at"),
    col("started", "started_at"),
    col("ended", "ended_at"),
    col("duration", "duration_ms"),
    col("queued (s)", "queued_secs"),
    col("billed", "bytes_billed"),
    col("cost (est.)", "estimated_cost_usd"),
    col("error class", "error_class"),
    col("error", "error_summary"),
    col("re-run of", "rerun_of"),
    col("schedule", "schedule_id"),
    col("logical time", "logical_time"),
    col("backfill", "backfill_id"),
];

pub const STEP_COLUMNS: &[Column] = &[
    col("STEP", "step_id"),
    col("ATTEMPT", "attempt"),
    col("STATUS", "status"),
    col("STARTED", "started_at"),
    col("DURATION", "duration_ms"),
    col("ROWS", "rows_affected"),
    col("BILLED", "bytes_billed"),
    col("ERROR", "error_summary"),
];

/// Prints an answer: its JSON, or the table/fields view of it.
fn print(format: Format, body: &Value, human: impl FnOnce(&Value) -> String) {
    match format {
        Format::Json => print!("{}", json(body)),
        Format::Table => print!("{}", human(body)),
    }
}

fn rows(body: &Value, field: &str) -> Vec<Value> {
    body.get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A path segment the client puts in a URL: what the service accepts in it, never `/` or `?`.
fn segment(what: &str, raw: &str) -> Result<String, ClientError> {
    let ok = !raw.is_empty()
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ClientError::Usage(format!(
            "{what} `{raw}`: letters, digits, '-', '_' and '.' only"
        )))
    }
}

/// The org a command names, else the org key's own (as `whoami` answers for the key in use):
/// the root key belongs to no org, so with it a command must name one.
async fn org_slug(api: &Api, named: Option<String>) -> Result<String, ClientError> {
    if let Some(org) = named {
        return segment("org", &org);
    }
    let me = api.get(KeyUse::Org, "/api/v1/whoami", &[]).await?.body;
    match me["org_slug"].as_str() {
        Some(org) => segment("org", org),
        None => Err(ClientError::Usage(
            "the root key belongs to no org: name the org (ORG before the other arguments)".into(),
        )),
    }
}

/// A pipeline id (`group/name`): segments joined by `/`.
fn pipeline_path(raw: &str) -> Result<String, ClientError> {
    raw.split('/')
        .map(|s| segment("pipeline", s))
        .collect::<Result<Vec<_>, _>>()
        .map(|parts| parts.join("/"))
}

/// `name=value` pairs, typed by the pipeline's declared parameters (INT64 as a number, BOOL as
/// a boolean, the rest as strings); an undeclared name is left for the service to refuse.
async fn parameters(
    api: &Api,
    pipeline: &str,
    raw: &[String],
) -> Result<Map<String, Value>, ClientError> {
    let mut out = Map::new();
    if raw.is_empty() {
        return Ok(out);
    }
    let catalog = api.get(KeyUse::Org, "/api/v1/pipelines", &[]).await?.body;
    let declared: Vec<Value> = rows(&catalog, "pipelines")
        .into_iter()
        .find(|p| p.get("id").and_then(Value::as_str) == Some(pipeline))
        .map(|p| rows(&p, "parameters"))
        .unwrap_or_default();
    for pair in raw {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(ClientError::Usage(format!(
                "--param `{pair}`: expected NAME=VALUE"
            )));
        };
        let kind = declared
            .iter()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("STRING");
        let typed = match kind {
            "INT64" => value.parse::<i64>().map(Value::from).map_err(|_| {
                ClientError::Usage(format!(
                    "--param {name}: expected an integer, got `{value}`"
                ))
            })?,
            "BOOL" => value.parse::<bool>().map(Value::from).map_err(|_| {
                ClientError::Usage(format!(
                    "--param {name}: expected true or false, got `{value}`"
                ))
            })?,
            _ => Value::from(value),
        };
        out.insert(name.to_string(), typed);
    }
    Ok(out)
}

/// Runs one client command; the exit code is 0 unless a followed run did not succeed.
pub async fn run(
    api: &Api,
    format: Format,
    command: ClientCommand,
) -> Result<ExitCode, ClientError> {
    match command {
        ClientCommand::Runs(c) => runs(api, format, c).await,
        ClientCommand::Schedules(c) => schedules(api, format, c).await,
        ClientCommand::Backfill(c) => backfill(api, format, c).await,
        ClientCommand::Keys(c) => keys(api, format, c).await,
        ClientCommand::Notifications(c) => notifications(api, format, c).await,
        ClientCommand::Quota(QuotaCommand::Show { org }) => {
            let org = org_slug(api, org).await?;
            let body = api
                .get(
                    KeyUse::Org,
                    &format!("/api/v1/organizations/{org}/quota"),
                    &[],
                )
                .await?
                .body;
            print(format, &body, |b| {
                fields(
                    b,
                    &[
                        col("runs today", "runs_today"),
                        col("daily limit", "daily_limit"),
                        col("runs this month", "runs_month"),
                        col("monthly limit", "monthly_limit"),
                        col("running", "active_run_ids"),
                        col("concurrent limit", "concurrent_limit"),
                        col("queued", "queued_run_ids"),
                        col("queue limit", "queue_limit"),
                        col("billed today", "bytes_today"),
                        col("cost today (est.)", "estimated_cost_today_usd"),
                        col("daily bytes budget", "bytes_daily_limit"),
                        col("billed this month", "bytes_month"),
                        col("cost this month (est.)", "estimated_cost_month_usd"),
                        col("monthly bytes budget", "bytes_monthly_limit"),
                        col("per-job bytes cap", "bytes_per_job_limit"),
                    ],
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Orgs(c) => orgs(api, format, c).await,
        ClientCommand::Bootstrap { status } => {
            let body = if status {
                api.get(KeyUse::Root, "/api/v1/admin/bootstrap/status", &[])
                    .await?
                    .body
            } else {
                api.post(KeyUse::Root, "/api/v1/admin/bootstrap", None)
                    .await?
                    .body
            };
            print(format, &body, |b| {
                let mut out = fields(
                    b,
                    &[
                        col("dataset", "dataset"),
                        col("status", "status"),
                        col("dataset status", "dataset_status"),
                    ],
                );
                let tables = rows(b, "tables");
                if !tables.is_empty() {
                    out.push('\n');
                    out.push_str(&table(
                        &tables,
                        &[col("TABLE", "table"), col("STATUS", "status")],
                    ));
                }
                out
            });
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Profile(_) => unreachable!("profiles are saved before any call"),
    }
}

/// `pipelines list`: the catalog.
pub async fn pipelines_list(api: &Api, format: Format) -> Result<ExitCode, ClientError> {
    let body = api.get(KeyUse::Org, "/api/v1/pipelines", &[]).await?.body;
    print(format, &body, |b| {
        let rows: Vec<Value> = rows(b, "pipelines")
            .into_iter()
            .map(|mut p| {
                let params: Vec<String> = rows(&p, "parameters")
                    .iter()
                    .map(|d| {
                        format!(
                            "{}:{}{}",
                            d["name"].as_str().unwrap_or("?"),
                            d["type"].as_str().unwrap_or("?"),
                            if d["required"].as_bool() == Some(true) {
                                ""
                            } else {
                                "?"
                            }
                        )
                    })
                    .collect();
                let steps = rows(&p, "steps").len();
                p["parameters_line"] = json!(params.join(" "));
                p["step_count"] = json!(steps);
                p
            })
            .collect();
        table(
            &rows,
            &[
                col("PIPELINE", "id"),
                col("STEPS", "step_count"),
                col("PARAMETERS", "parameters_line"),
            ],
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `quarry pipelines show ID`: one pipeline of the catalog, its parameters and its steps in
/// declaration order (with what each depends on).
/// The service's pipeline catalog, and the entry of pipeline `id` in it.
pub(crate) async fn catalog(api: &Api) -> Result<Vec<Value>, ClientError> {
    Ok(rows(
        &api.get(KeyUse::Org, "/api/v1/pipelines", &[]).await?.body,
        "pipelines",
    ))
}

pub(crate) fn catalog_entry<'a>(catalog: &'a [Value], id: &str) -> Option<&'a Value> {
    catalog.iter().find(|p| p["id"].as_str() == Some(id))
}

pub async fn pipelines_show(api: &Api, format: Format, id: &str) -> Result<ExitCode, ClientError> {
    let all = catalog(api).await?;
    let Some(pipeline) = catalog_entry(&all, id) else {
        let known: Vec<String> = all
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .collect();
        return Err(ClientError::Usage(format!(
            "no pipeline {id} in the service's catalog (it has: {})",
            known.join(", ")
        )));
    };
    print(format, pipeline, |p| {
        let mut out = fields(
            p,
            &[
                col("pipeline", "id"),
                col("description", "description"),
                col("timeout", "timeout_seconds"),
                col("deadline", "deadline_seconds"),
            ],
        );
        let params = rows(p, "parameters");
        out.push_str("\nparameters:\n");
        if params.is_empty() {
            out.push_str("  none\n");
        } else {
            out.push_str(&table(
                &params,
                &[
                    col("NAME", "name"),
                    col("TYPE", "type"),
                    col("REQUIRED", "required"),
                    col("DEFAULT", "default"),
                ],
            ));
        }
        out.push_str("\nsteps (in declaration order):\n");
        out.push_str(&table(
            &rows(p, "steps"),
            &[
                col("STEP", "id"),
                col("KIND", "kind"),
                col("DEPENDS ON", "depends_on"),
                col("ATTEMPTS", "max_attempts"),
                col("TIMEOUT", "timeout_seconds"),
                col("ON FAILURE", "on_failure"),
            ],
        ));
        out
    });
    Ok(ExitCode::SUCCESS)
}

fn run_path(org: &str, run: &str) -> Result<String, ClientError> {
    Ok(format!(
        "/api/v1/pipelines/{}/runs/{}",
        segment("org", org)?,
        segment("run", run)?
    ))
}

async fn runs(api: &Api, format: Format, command: RunsCommand) -> Result<ExitCode, ClientError> {
    match command {
        RunsCommand::Trigger {
            org,
            pipeline,
            params,
            queue,
            wait,
            idempotency_key,
        } => {
            let org = org_slug(api, org).await?;
            let path = format!("/api/v1/pipelines/run/{org}/{}", pipeline_path(&pipeline)?);
            let parameters = parameters(api, &pipeline, &params).await?;
            let mut body = json!({ "parameters": parameters });
            if queue {
                body["when_busy"] = json!("queue");
            }
            let headers: Vec<(&str, String)> = idempotency_key
                .map(|k| vec![("Idempotency-Key", k)])
                .unwrap_or_default();
            let answer = api
                .post_with(KeyUse::Org, &path, Some(&body), &headers)
                .await?
                .body;
            started(api, format, &org, answer, wait).await
        }
        RunsCommand::List {
            org,
            status,
            pipeline,
            trigger,
            since,
            until,
            limit,
            page_token,
        } => {
            let org = org_slug(api, org).await?;
            let query: Vec<(&str, String)> = [
                ("status", status),
                ("pipeline_id", pipeline),
                ("trigger", trigger),
                ("since", since),
                ("until", until),
                ("limit", limit.map(|l| l.to_string())),
                ("page_token", page_token),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let body = api
                .get(
                    KeyUse::Org,
                    &format!("/api/v1/pipelines/{org}/runs"),
                    &query,
                )
                .await?
                .body;
            print(format, &body, |b| {
                let mut out = table(&rows(b, "runs"), RUN_COLUMNS);
                if let Some(token) = b.get("next_page_token").and_then(Value::as_str) {
                    out.push_str(&format!("next page: --page-token {token}\n"));
                }
                out
            });
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { org, run } => {
            let path = run_path(&org_slug(api, org).await?, &run)?;
            let run = api.get(KeyUse::Org, &path, &[]).await?.body;
            let steps = api
                .get(KeyUse::Org, &format!("{path}/steps"), &[])
                .await?
                .body;
            let mut both = run.clone();
            both["steps"] = steps.get("steps").cloned().unwrap_or(json!([]));
            print(format, &both, |b| {
                let mut out = fields(b, RUN_FIELDS);
                out.push('\n');
                out.push_str(&table(&rows(b, "steps"), STEP_COLUMNS));
                out
            });
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Watch { org, run, interval } => {
            let org = org_slug(api, org).await?;
            let run = segment("run", &run)?;
            watch::follow(api, format, &org, &run, interval).await
        }
        RunsCommand::Cancel { org, run } => {
            let path = run_path(&org_slug(api, org).await?, &run)?;
            let body = api
                .post(KeyUse::Org, &format!("{path}/cancel"), None)
                .await?
                .body;
            print(format, &body, |b| {
                fields(b, &[col("run", "run_id"), col("status", "status")])
            });
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Rerun {
            org,
            run,
            params,
            wait,
        } => {
            let org = org_slug(api, org).await?;
            let path = run_path(&org, &run)?;
            let body = if params.is_empty() {
                json!({})
            } else {
                let original = api.get(KeyUse::Org, &path, &[]).await?.body;
                let pipeline = original["pipeline_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                json!({ "parameters": parameters(api, &pipeline, &params).await? })
            };
            let answer = api
                .post(KeyUse::Org, &format!("{path}/rerun"), Some(&body))
                .await?
                .body;
            started(api, format, &org, answer, wait).await
        }
    }
}

/// After a trigger or a re-run: the answer, then (with --wait) the run followed to its end.
async fn started(
    api: &Api,
    format: Format,
    org: &str,
    answer: Value,
    wait: bool,
) -> Result<ExitCode, ClientError> {
    let run_id = answer["run_id"].as_str().unwrap_or_default().to_string();
    if !wait {
        print(format, &answer, |b| {
            fields(
                b,
                &[
                    col("run", "run_id"),
                    col("status", "status"),
                    col("queue position", "queue_position"),
                    col("re-run of", "rerun_of"),
                ],
            )
        });
        return Ok(ExitCode::SUCCESS);
    }
    if format == Format::Table {
        print!(
            "{}",
            fields(&answer, &[col("run", "run_id"), col("status", "status")])
        );
    }
    watch::follow(api, format, org, &segment("run", &run_id)?, 1).await
}

fn schedule_body(schedule: &str) -> Result<Value, ClientError> {
    let Some((pipeline, name)) = schedule.rsplit_once('/') else {
        return Err(ClientError::Usage(format!(
            "schedule `{schedule}`: expected PIPELINE/NAME as `schedules list` shows it"
        )));
    };
    Ok(json!({"pipeline_id": pipeline, "schedule": name}))
}

const SCHEDULE_COLUMNS: &[Column] = &[
    col("SCHEDULE", "schedule_id"),
    col("CRON", "cron"),
    col("ZONE", "timezone"),
    col("STATUS", "status"),
    col("NEXT TICK", "next_tick"),
    col("CATCH-UP", "catch_up"),
    col("WHEN BUSY", "when_busy"),
];

async fn schedules(
    api: &Api,
    format: Format,
    command: SchedulesCommand,
) -> Result<ExitCode, ClientError> {
    let (org, action, body) = match command {
        SchedulesCommand::List { org } => {
            let org = org_slug(api, org).await?;
            let body = api
                .get(KeyUse::Org, &format!("/api/v1/schedules/{org}"), &[])
                .await?
                .body;
            print(format, &body, |b| {
                table(&rows(b, "schedules"), SCHEDULE_COLUMNS)
            });
            return Ok(ExitCode::SUCCESS);
        }
        SchedulesCommand::Enable {
            org,
            schedule,
            params,
        } => {
            let mut body = schedule_body(&schedule)?;
            let pipeline = body["pipeline_id"].as_str().unwrap_or_default().to_string();
            if !params.is_empty() {
                body["parameters"] = Value::Object(parameters(api, &pipeline, &params).await?);
            }
            (org, "enable", body)
        }
        SchedulesCommand::Pause { org, schedule } => (org, "pause", schedule_body(&schedule)?),
        SchedulesCommand::Resume { org, schedule } => (org, "resume", schedule_body(&schedule)?),
    };
    let org = org_slug(api, org).await?;
    let answer = api
        .post(
            KeyUse::Org,
            &format!("/api/v1/schedules/{org}/{action}"),
            Some(&body),
        )
        .await?
        .body;
    print(format, &answer, |b| {
        fields(
            b,
            &[
                col("schedule", "schedule_id"),
                col("status", "status"),
                col("next tick", "next_tick"),
                col("parameters", "parameters"),
            ],
        )
    });
    Ok(ExitCode::SUCCESS)
}

const BACKFILL_FIELDS: &[Column] = &[
    col("backfill", "backfill_id"),
    col("pipeline", "pipeline_id"),
    col("status", "status"),
    col("from", "from"),
    col("to", "to"),
    col("parameter", "parameter"),
    col("max parallel", "max_parallel"),
    col("progress", "progress"),
];

async fn backfill(
    api: &Api,
    format: Format,
    command: BackfillCommand,
) -> Result<ExitCode, ClientError> {
    let body = match command {
        BackfillCommand::Start {
            org,
            pipeline,
            parameter,
            from,
            to,
            max_parallel,
            params,
        } => {
            let org = org_slug(api, org).await?;
            let others = parameters(api, &pipeline, &params).await?;
            let request = json!({
                "pipeline_id": pipeline, "parameter": parameter, "from": from, "to": to,
                "max_parallel": max_parallel, "parameters": others,
            });
            api.post(
                KeyUse::Org,
                &format!("/api/v1/backfills/{org}"),
                Some(&request),
            )
            .await?
            .body
        }
        BackfillCommand::Show { org, backfill } => {
            let path = format!(
                "/api/v1/backfills/{}/{}",
                org_slug(api, org).await?,
                segment("backfill", &backfill)?
            );
            api.get(KeyUse::Org, &path, &[]).await?.body
        }
        BackfillCommand::Cancel { org, backfill } => {
            let path = format!(
                "/api/v1/backfills/{}/{}/cancel",
                org_slug(api, org).await?,
                segment("backfill", &backfill)?
            );
            api.post(KeyUse::Org, &path, None).await?.body
        }
    };
    print(format, &body, |b| {
        let mut out = fields(b, BACKFILL_FIELDS);
        let days = rows(b, "runs");
        if !days.is_empty() {
            out.push('\n');
            out.push_str(&table(
                &days,
                &[
                    col("DAY", "day"),
                    col("RUN", "run_id"),
                    col("STATUS", "status"),
                ],
            ));
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

/// Where a key shown once is printed: stdout (it is the answer), with the warning on stderr.
fn shown_once(b: &Value) -> String {
    eprintln!(
        "quarry: the new key is shown once: keep it now (QUARRY_API_KEY or `quarry profile save`)"
    );
    fields(
        b,
        &[
            col("api key", "api_key"),
            col("key id", "key_id"),
            col("name", "name"),
            col("prefix", "display_prefix"),
            col("replaces", "replaced_key_id"),
            col("expires", "expires_at"),
        ],
    )
}

async fn keys(api: &Api, format: Format, command: KeysCommand) -> Result<ExitCode, ClientError> {
    match command {
        KeysCommand::List { org } => {
            let org = org_slug(api, org).await?;
            let body = api
                .get(
                    KeyUse::Org,
                    &format!("/api/v1/organizations/{org}/api-keys"),
                    &[],
                )
                .await?
                .body;
            print(format, &body, |b| {
                table(
                    &rows(b, "api_keys"),
                    &[
                        col("KEY", "key_id"),
                        col("PREFIX", "display_prefix"),
                        col("NAME", "name"),
                        col("STATUS", "status"),
                        col("CREATED", "created_at"),
                        col("LAST USED", "last_used_at"),
                        col("EXPIRES", "expires_at"),
                    ],
                )
            });
        }
        KeysCommand::Rotate {
            org,
            grace_period_seconds,
            name,
        } => {
            let org = org_slug(api, org).await?;
            let mut request = json!({ "grace_period_seconds": grace_period_seconds });
            if let Some(name) = name {
                request["name"] = json!(name);
            }
            let body = api
                .post(
                    KeyUse::Org,
                    &format!("/api/v1/organizations/{org}/api-keys/rotate"),
                    Some(&request),
                )
                .await?
                .body;
            print(format, &body, shown_once);
        }
        KeysCommand::Revoke { org, key_id } => {
            let path = format!(
                "/api/v1/organizations/{}/api-keys/{}",
                org_slug(api, org).await?,
                segment("key", &key_id)?
            );
            let body = api.delete(KeyUse::Org, &path).await?.body;
            print(format, &body, |b| {
                if b.is_null() {
                    format!("revoked {key_id}\n")
                } else {
                    fields(b, &[col("key", "key_id"), col("status", "status")])
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

const CHANNEL_COLUMNS: &[Column] = &[
    col("CHANNEL", "channel_id"),
    col("KIND", "kind"),
    col("URL", "url_hint"),
    col("EVENTS", "events"),
    col("PIPELINES", "pipelines"),
    col("CREATED", "created_at"),
];

const DELIVERY_COLUMNS: &[Column] = &[
    col("DELIVERY", "delivery_id"),
    col("EVENT", "event"),
    col("RUN", "run_id"),
    col("STATUS", "status"),
    col("ATTEMPT", "attempt"),
    col("HTTP", "http_status"),
    col("AT", "attempted_at"),
    col("ERROR", "error"),
];

async fn notifications(
    api: &Api,
    format: Format,
    command: NotificationsCommand,
) -> Result<ExitCode, ClientError> {
    let base = |org: &str| -> Result<String, ClientError> {
        Ok(format!("/api/v1/notifications/{}", segment("org", org)?))
    };
    match command {
        NotificationsCommand::List { org } => {
            let body = api
                .get(
                    KeyUse::Org,
                    &format!("{}/channels", base(&org_slug(api, org).await?)?),
                    &[],
                )
                .await?
                .body;
            print(format, &body, |b| {
                table(&rows(b, "channels"), CHANNEL_COLUMNS)
            });
        }
        NotificationsCommand::Add {
            org,
            kind,
            to,
            events,
            pipelines,
            late_after,
            queued_after,
        } => {
            let mut request = json!({"kind": kind, "url": to});
            if let Some(secs) = late_after {
                request["late_after_seconds"] = json!(secs);
            }
            if let Some(secs) = queued_after {
                request["queued_after_seconds"] = json!(secs);
            }
            if !events.is_empty() {
                request["events"] = json!(events);
            }
            if !pipelines.is_empty() {
                request["pipelines"] = json!(pipelines);
            }
            let body = api
                .post(
                    KeyUse::Org,
                    &format!("{}/channels", base(&org_slug(api, org).await?)?),
                    Some(&request),
                )
                .await?
                .body;
            print(format, &body, |b| {
                if !b["signing_secret"].is_null() {
                    eprintln!("quarry: the signing secret is shown once: keep it now");
                }
                fields(
                    b,
                    &[
                        col("channel", "channel_id"),
                        col("kind", "kind"),
                        col("url", "url_hint"),
                        col("events", "events"),
                        col("pipelines", "pipelines"),
                        col("late after", "late_after_seconds"),
                        col("queued after", "queued_after_seconds"),
                        col("signing secret", "signing_secret"),
                    ],
                )
            });
        }
        NotificationsCommand::Delete { org, channel } => {
            let path = format!(
                "{}/channels/{}",
                base(&org_slug(api, org).await?)?,
                segment("channel", &channel)?
            );
            api.delete(KeyUse::Org, &path).await?;
            if format == Format::Json {
                println!("{}", json!({"deleted": channel}));
            } else {
                println!("deleted {channel}");
            }
        }
        NotificationsCommand::Test { org, channel } => {
            let path = format!(
                "{}/channels/{}/test",
                base(&org_slug(api, org).await?)?,
                segment("channel", &channel)?
            );
            let body = api.post(KeyUse::Org, &path, Some(&json!({}))).await?.body;
            print(format, &body, |b| {
                fields(b, &[col("delivery", "delivery_id")])
            });
        }
        NotificationsCommand::Deliveries { org } => {
            let body = api
                .get(
                    KeyUse::Org,
                    &format!("{}/deliveries", base(&org_slug(api, org).await?)?),
                    &[],
                )
                .await?
                .body;
            print(format, &body, |b| {
                table(&rows(b, "deliveries"), DELIVERY_COLUMNS)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

const ORG_COLUMNS: &[Column] = &[
    col("ORG", "org_slug"),
    col("COMPANY", "company_name"),
    col("PLAN", "plan"),
    col("STATUS", "status"),
    col("CREATED", "created_at"),
];

async fn orgs(api: &Api, format: Format, command: OrgsCommand) -> Result<ExitCode, ClientError> {
    match command {
        OrgsCommand::Onboard {
            org,
            company,
            email,
            plan,
            key_name,
        } => {
            let mut request = json!({"org_slug": org, "company_name": company,
                                 "admin_email": email, "plan": plan});
            if let Some(name) = key_name {
                request["key_name"] = json!(name);
            }
            let body = api
                .post(
                    KeyUse::Root,
                    "/api/v1/organizations/onboard",
                    Some(&request),
                )
                .await?
                .body;
            print(format, &body, |b| {
                let mut out = fields(
                    b,
                    &[
                        col("org", "org_slug"),
                        col("plan", "plan"),
                        col("dataset", "dataset_id"),
                        col("quota", "quota"),
                    ],
                );
                out.push_str(&shown_once(&json!({
                    "api_key": b["api_key"], "key_id": b["api_key_id"],
                    "display_prefix": b["api_key_prefix"],
                })));
                out
            });
        }
        OrgsCommand::List => {
            let body = api
                .get(KeyUse::Root, "/api/v1/organizations", &[])
                .await?
                .body;
            print(format, &body, |b| {
                table(&rows(b, "organizations"), ORG_COLUMNS)
            });
        }
        OrgsCommand::Suspend { org } => {
            org_action(api, format, &org, "suspend").await?;
        }
        OrgsCommand::Reactivate { org } => {
            org_action(api, format, &org, "reactivate").await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn org_action(api: &Api, format: Format, org: &str, action: &str) -> Result<(), ClientError> {
    let org = segment("org", org)?;
    let body = api
        .post(
            KeyUse::Root,
            &format!("/api/v1/organizations/{org}/{action}"),
            None,
        )
        .await?
        .body;
    print(format, &body, |b| {
        fields(b, &[col("org", "org_slug"), col("status", "status")])
    });
    Ok(())
}
