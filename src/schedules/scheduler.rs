//! The scheduler: every instance may run it. Each pass costs one bounded read of everything
//! due (`sql/schedules/due.sql`: active schedules and backfills with their last fired tick),
//! whatever the number of schedules, and the ticks it fires ride in the admission
//! coordinator's next batch (one UPDATE for all of them, shared with triggers). A tick's run id
//! is derived from (org, schedule, logical time), and the batch fires a tick only if its run id
//! was never fired before, so concurrent firings by several instances collapse into one.
//!
//! Ticks missed while no instance ran follow the schedule's `catch_up`: `skip` fires only ticks
//! due now (at most `2 × SCHEDULER_INTERVAL_SECS`, and at least 2 s, late), `latest` the most recent missed tick,
//! `all` every missed tick, oldest first, at most `max_catch_up`. A backfill is driven the same
//! way: its days are ticks, fired in order, at most `max_parallel` of its runs in flight.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::state::{self, Change};
use crate::admission::{Tick, WhenBusy};
use crate::cost::cadence::{Cadence, Wake};
use crate::domain::OrgSlug;
use crate::executor::{Executor, TriggerError, TriggerInfo};
use crate::warehouse::{Param, Warehouse, sql};

/// Schedules and backfills read per pass at most.
const MAX_DUE: i64 = 10_000;
/// Ticks fired per pass at most (the rest wait for the next pass).
const MAX_FIRED_PER_PASS: usize = 500;

const RUN_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5c4e_d01e_7a1c_4b5e_9f00_0000_0000_0001);

#[derive(Debug, Clone, Deserialize)]
struct Due {
    org_slug: String,
    schedule_id: String,
    kind: String,
    pipeline_id: String,
    parameters: Option<String>,
    details: Option<String>,
    since_micros: i64,
    last_tick: Option<String>,
    #[serde(default)]
    fired_runs: Vec<String>,
    #[serde(default)]
    in_flight: Vec<String>,
}

/// The run id of a tick: the same on every instance.
pub fn tick_run_id(org: &OrgSlug, key: &str, logical: &str) -> String {
    uuid::Uuid::new_v5(
        &RUN_NAMESPACE,
        format!("{org}\n{key}\n{logical}").as_bytes(),
    )
    .to_string()
}

pub fn logical_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A backfill's settings, as recorded when it started.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct BackfillDetails {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub parameter: String,
    pub max_parallel: usize,
}

impl BackfillDetails {
    pub fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }
}

/// The logical time of a backfill's day: its UTC midnight.
pub fn day_time(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// Runs the scheduler: a pass now, then one every `interval` while any schedule or backfill is
/// active; while none is, passes slow down to `idle_max` (see `cost::cadence`), and `wake` (a
/// schedule enabled or a backfill started on this instance) brings the next pass at once.
pub fn spawn(
    executor: Executor,
    warehouse: Warehouse,
    interval: Duration,
    idle_max: Duration,
    wake: Wake,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut cadence = Cadence::new(interval, idle_max, wake);
        loop {
            if stop.is_cancelled() || executor.is_draining() {
                return;
            }
            let active = match pass(&executor, &warehouse, interval).await {
                Ok(active) => active,
                Err(e) if e.is_not_found() => false,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler pass failed");
                    true
                }
            };
            cadence.found(active);
            tokio::select! {
                _ = cadence.next() => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

/// One pass; `true` when any schedule or backfill is active.
async fn pass(
    executor: &Executor,
    warehouse: &Warehouse,
    interval: Duration,
) -> Result<bool, crate::warehouse::WarehouseError> {
    let due: Vec<Due> = warehouse
        .query(
            &sql::SCHEDULES_DUE,
            &[Param::int64("max_schedules", MAX_DUE)],
        )
        .await?;
    let active = !due.is_empty();
    let now = executor.clock().now();
    let on_time = chrono::Duration::from_std(interval * 2)
        .unwrap_or_default()
        .max(chrono::Duration::seconds(2));
    let mut firings = Vec::new();
    for d in due {
        let Ok(org) = OrgSlug::parse(&d.org_slug) else {
            continue;
        };
        let fired = match d.kind.as_str() {
            "backfill" => backfill_ticks(executor, warehouse, &org, &d, now).await,
            _ => schedule_ticks(executor, &org, &d, now, on_time),
        };
        firings.extend(fired);
        if firings.len() >= MAX_FIRED_PER_PASS {
            break;
        }
    }
    // Together, so they ride in one admission batch.
    let outcomes =
        futures_util::future::join_all(firings.into_iter().map(|(org, pipeline, params, info)| {
            let executor = executor.clone();
            async move {
                let run_id = info.run_id.clone().unwrap_or_default();
                let result = executor.trigger(&org, &pipeline, &params, info).await;
                (org, run_id, result)
            }
        }))
        .await;
    for (org, run_id, result) in outcomes {
        match result {
            Ok(t) => tracing::info!(org = %org, run_id, status = t.status.as_str(), "tick fired"),
            Err(TriggerError::AlreadyFired) => {}
            Err(TriggerError::Quota { limit, .. }) => {
                tracing::info!(org = %org, run_id, limit = limit.as_str(), "tick refused by quota (recorded)")
            }
            Err(e) => tracing::warn!(org = %org, run_id, error = %e, "tick not fired"),
        }
    }
    Ok(active)
}

type Firing = (
    OrgSlug,
    String,
    serde_json::Map<String, serde_json::Value>,
    TriggerInfo,
);

fn schedule_ticks(
    executor: &Executor,
    org: &OrgSlug,
    d: &Due,
    now: DateTime<Utc>,
    on_time: chrono::Duration,
) -> Vec<Firing> {
    let Some((pipeline_id, name)) = d.schedule_id.rsplit_once('/') else {
        return Vec::new();
    };
    let Some(pipeline) = executor.catalog().get(pipeline_id) else {
        return Vec::new();
    };
    let Some(spec) = pipeline.schedules.iter().find(|s| s.name == name) else {
        return Vec::new();
    };
    let since = DateTime::from_timestamp_micros(d.since_micros).unwrap_or(now);
    let last = d
        .last_tick
        .as_deref()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let after = last.map_or(since, |l| l.max(since));
    let overrides: serde_json::Map<String, serde_json::Value> = d
        .parameters
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let key = format!("schedule:{}", d.schedule_id);
    spec.due(after, now, on_time)
        .into_iter()
        .map(|logical| {
            let text = logical_text(logical);
            let info = TriggerInfo {
                trigger: "schedule",
                triggered_by: "scheduler".into(),
                when_busy: spec.when_busy,
                run_id: Some(tick_run_id(org, &key, &text)),
                schedule_id: Some(d.schedule_id.clone()),
                logical_time: Some(logical),
                tick: Some(Tick {
                    key: key.clone(),
                    logical: text,
                }),
                ..TriggerInfo::default()
            };
            (
                org.clone(),
                pipeline.id.clone(),
                spec.render(logical, &overrides),
                info,
            )
        })
        .collect()
}

async fn backfill_ticks(
    executor: &Executor,
    warehouse: &Warehouse,
    org: &OrgSlug,
    d: &Due,
    now: DateTime<Utc>,
) -> Vec<Firing> {
    let Some(details) = d
        .details
        .as_deref()
        .and_then(|t| serde_json::from_str::<BackfillDetails>(t).ok())
    else {
        return Vec::new();
    };
    let key = d.schedule_id.clone(); // backfill:{id}
    let backfill_id = key.trim_start_matches("backfill:").to_string();
    let fired: HashSet<&str> = d.fired_runs.iter().map(String::as_str).collect();
    let in_flight: HashSet<&str> = d.in_flight.iter().map(String::as_str).collect();
    let children: Vec<(NaiveDate, String, String)> = details
        .days()
        .into_iter()
        .map(|day| {
            let text = logical_text(day_time(day));
            let run_id = tick_run_id(org, &key, &text);
            (day, text, run_id)
        })
        .collect();
    let running = children
        .iter()
        .filter(|(_, _, id)| in_flight.contains(id.as_str()))
        .count();
    let last = d.last_tick.as_deref().unwrap_or("");
    let next: Vec<&(NaiveDate, String, String)> = children
        .iter()
        .filter(|(_, text, id)| text.as_str() > last && !fired.contains(id.as_str()))
        .collect();
    if next.is_empty() {
        if running == 0 {
            // Every day fired and none in flight: the backfill is done.
            let done = Change::new(
                org,
                &key,
                "backfill",
                "COMPLETED",
                &d.pipeline_id,
                None,
                d.details
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok()),
                "scheduler",
                now,
            );
            if let Err(e) = state::record(warehouse, done).await {
                tracing::warn!(error = %e, backfill = %backfill_id, "recording a backfill's end failed");
            }
        }
        return Vec::new();
    }
    if executor.catalog().get(&d.pipeline_id).is_none() {
        return Vec::new();
    }
    let base: serde_json::Map<String, serde_json::Value> = d
        .parameters
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    next.into_iter()
        .take(details.max_parallel.saturating_sub(running))
        .map(|(day, text, run_id)| {
            let mut params = base.clone();
            params.insert(
                details.parameter.clone(),
                serde_json::Value::String(day.format("%Y-%m-%d").to_string()),
            );
            let info = TriggerInfo {
                trigger: "backfill",
                triggered_by: "backfill".into(),
                when_busy: WhenBusy::Queue,
                run_id: Some(run_id.clone()),
                logical_time: Some(day_time(*day)),
                backfill_id: Some(backfill_id.clone()),
                tick: Some(Tick {
                    key: key.clone(),
                    logical: text.clone(),
                }),
                ..TriggerInfo::default()
            };
            (org.clone(), d.pipeline_id.clone(), params, info)
        })
        .collect()
}
