//! A schedule as a pipeline file declares it: a cron expression read in an IANA time zone,
//! parameter templates rendered from each tick's logical time, what to do with ticks missed
//! while no instance ran (`catch_up`), and what a tick does when the org is busy.
//!
//! ```yaml
//! schedules:
//!   - name: daily
//!     cron: "0 6 * * *"            # 5 fields (minute first) or 6 (second first)
//!     timezone: Europe/Paris
//!     parameters: {day: "{{ logical_date | minus_days(1) }}"}
//!     catch_up: latest             # skip | latest | all
//!     max_catch_up: 10             # with all: at most this many missed ticks (1-1000)
//!     when_busy: queue             # or refuse
//!     deadline_seconds: 1800       # optional: alert if a tick's run is still running then
//! ```
//!
//! Templates: `{{ logical_date }}` (the tick's date in the schedule's zone, `YYYY-MM-DD`),
//! `{{ logical_time }}` (the tick, RFC 3339 UTC), `{{ logical_month }}` (`YYYY-MM`), with the
//! filters `minus_days(N)`, `plus_days(N)` and `month_start` on dates. Text around a template is
//! kept; values that are not strings pass as they are.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::admission::WhenBusy;

/// Ticks looked at in one pass at most (a 1-second schedule after a long stop).
const MAX_TICKS: usize = 1000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Missed ticks are not run; only ticks due now are.
    #[default]
    Skip,
    /// Only the most recent missed tick runs.
    Latest,
    /// Every missed tick runs, oldest first, at most `max_catch_up` of them (the most recent).
    All,
}

/// The YAML form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDecl {
    pub name: String,
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub catch_up: CatchUp,
    #[serde(default = "default_max_catch_up")]
    pub max_catch_up: usize,
    #[serde(default)]
    pub when_busy: WhenBusy,
    /// Overrides the pipeline's `deadline_seconds` for this schedule's runs.
    #[serde(default)]
    pub deadline_seconds: Option<u64>,
}

fn utc() -> String {
    "UTC".into()
}

fn default_max_catch_up() -> usize {
    10
}

/// One validated schedule.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub cron_text: String,
    cron: cron::Schedule,
    pub timezone: Tz,
    templates: Vec<(String, Value)>,
    /// The parameters as the file declares them (templates unrendered), for display.
    pub declared_parameters: serde_json::Map<String, serde_json::Value>,
    pub catch_up: CatchUp,
    pub max_catch_up: usize,
    pub when_busy: WhenBusy,
    /// A run of this schedule still running this long after it started is alerted
    /// `run.deadline_passed` (instead of the pipeline's deadline).
    pub deadline: Option<std::time::Duration>,
}

#[derive(Debug, Clone)]
enum Value {
    Plain(serde_json::Value),
    Text(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    Expr(Expr),
}

#[derive(Debug, Clone)]
struct Expr {
    var: Var,
    filters: Vec<Filter>,
}

#[derive(Debug, Clone, Copy)]
enum Var {
    Date,
    Time,
    Month,
}

#[derive(Debug, Clone, Copy)]
enum Filter {
    MinusDays(i64),
    PlusDays(i64),
    MonthStart,
}

/// A field of a schedule and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub problem: String,
}

fn err(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        problem: problem.into(),
    }
}

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Spec {
    pub fn parse(decl: ScheduleDecl) -> Result<Self, SpecError> {
        if !valid_name(&decl.name) {
            return Err(err("name", "1-64 of [a-z0-9_-]"));
        }
        let fields = decl.cron.split_whitespace().count();
        let cron_text = match fields {
            5 => format!("0 {}", decl.cron.trim()),
            6 => decl.cron.trim().to_string(),
            _ => {
                return Err(err(
                    "cron",
                    "5 fields (minute hour day month weekday) or 6 (second first)",
                ));
            }
        };
        let cron = cron::Schedule::from_str(&cron_text)
            .map_err(|e| err("cron", format!("not a cron expression: {e}")))?;
        let timezone = Tz::from_str(&decl.timezone)
            .map_err(|_| err("timezone", "an IANA time zone such as Europe/Paris or UTC"))?;
        if !(1..=MAX_TICKS).contains(&decl.max_catch_up) {
            return Err(err("max_catch_up", format!("1-{MAX_TICKS}")));
        }
        if decl.deadline_seconds == Some(0) {
            return Err(err("deadline_seconds", "at least 1"));
        }
        let declared_parameters = decl.parameters.clone();
        let mut templates = Vec::new();
        for (name, value) in decl.parameters {
            let parsed = match &value {
                serde_json::Value::String(s) if s.contains("{{") => Value::Text(
                    parse_template(s).map_err(|p| err(format!("parameters.{name}"), p))?,
                ),
                _ => Value::Plain(value),
            };
            templates.push((name, parsed));
        }
        Ok(Spec {
            name: decl.name,
            cron_text: decl.cron,
            cron,
            timezone,
            templates,
            declared_parameters,
            catch_up: decl.catch_up,
            max_catch_up: decl.max_catch_up,
            when_busy: decl.when_busy,
            deadline: decl.deadline_seconds.map(std::time::Duration::from_secs),
        })
    }

    /// The parameters of the tick at `logical`, over `overrides` (an org's own values win).
    pub fn render(
        &self,
        logical: DateTime<Utc>,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (name, value) in &self.templates {
            let v = match value {
                Value::Plain(v) => v.clone(),
                Value::Text(pieces) => {
                    serde_json::Value::String(render(pieces, logical, self.timezone))
                }
            };
            out.insert(name.clone(), v);
        }
        for (name, value) in overrides {
            out.insert(name.clone(), value.clone());
        }
        out
    }

    /// The ticks to fire now: those after `after` and at or before `now`, by the catch-up
    /// policy. `on_time` is how late a tick may be and still count as due now (`skip`).
    pub fn due(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
        on_time: Duration,
    ) -> Vec<DateTime<Utc>> {
        let floor = match self.catch_up {
            CatchUp::Skip => after.max(now - on_time),
            _ => after,
        };
        let take = match self.catch_up {
            CatchUp::Latest => 1,
            CatchUp::All => self.max_catch_up,
            CatchUp::Skip => MAX_TICKS,
        };
        // Newest first from just after now, back to the floor.
        let end = (now + Duration::milliseconds(1)).with_timezone(&self.timezone);
        let mut ticks: Vec<DateTime<Utc>> = self
            .cron
            .after(&end)
            .rev()
            .map(|t| t.with_timezone(&Utc))
            .skip_while(|t| *t > now)
            .take_while(|t| *t > floor)
            .take(take)
            .collect();
        ticks.reverse();
        ticks
    }

    /// The next tick after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&now.with_timezone(&self.timezone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Literal(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or("an unclosed {{ (templates look like {{ logical_date | minus_days(1) }})")?;
        pieces.push(Piece::Expr(parse_expr(&after[..end])?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_string()));
    }
    Ok(pieces)
}

fn parse_expr(text: &str) -> Result<Expr, String> {
    let mut parts = text.split('|').map(str::trim);
    let var = match parts.next().unwrap_or_default() {
        "logical_date" => Var::Date,
        "logical_time" => Var::Time,
        "logical_month" => Var::Month,
        other => {
            return Err(format!(
                "unknown variable {other:?}; known: logical_date, logical_time, logical_month"
            ));
        }
    };
    let mut filters = Vec::new();
    for f in parts {
        let filter = if f == "month_start" {
            Filter::MonthStart
        } else if let Some(n) = f
            .strip_prefix("minus_days(")
            .and_then(|r| r.strip_suffix(')'))
        {
            Filter::MinusDays(days(n)?)
        } else if let Some(n) = f
            .strip_prefix("plus_days(")
            .and_then(|r| r.strip_suffix(')'))
        {
            Filter::PlusDays(days(n)?)
        } else {
            return Err(format!(
                "unknown filter {f:?}; known: minus_days(N), plus_days(N), month_start"
            ));
        };
        if !matches!(var, Var::Date) {
            return Err("filters apply to logical_date only".into());
        }
        filters.push(filter);
    }
    Ok(Expr { var, filters })
}

fn days(n: &str) -> Result<i64, String> {
    n.trim()
        .parse::<i64>()
        .ok()
        .filter(|d| (0..=3660).contains(d))
        .ok_or_else(|| format!("{n:?} is not a number of days (0-3660)"))
}

fn render(pieces: &[Piece], logical: DateTime<Utc>, tz: Tz) -> String {
    let local = tz.from_utc_datetime(&logical.naive_utc());
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Expr(e) => match e.var {
                Var::Time => {
                    out.push_str(&logical.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                }
                Var::Month => out.push_str(&local.format("%Y-%m").to_string()),
                Var::Date => {
                    let mut date: NaiveDate = local.date_naive();
                    for f in &e.filters {
                        date = match f {
                            Filter::MinusDays(n) => date - Duration::days(*n),
                            Filter::PlusDays(n) => date + Duration::days(*n),
                            Filter::MonthStart => date.with_day(1).unwrap_or(date),
                        };
                    }
                    out.push_str(&date.format("%Y-%m-%d").to_string());
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<Spec, SpecError> {
        Spec::parse(serde_yaml_ng::from_str(yaml).unwrap())
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn templates_render_from_the_tick_in_the_schedules_zone() {
        let s = spec(
            r#"{name: daily, cron: "0 6 * * *", timezone: Europe/Paris,
                parameters: {day: "{{ logical_date | minus_days(1) }}", month: "m-{{ logical_month }}",
                             first: "{{ logical_date | month_start }}", at: "{{ logical_time }}", limit: 5}}"#,
        )
        .unwrap();
        // 23:30 UTC on Nov 30 is already Dec 1 in Paris.
        let p = s.render(at("2026-11-30T23:30:00Z"), &Default::default());
        assert_eq!(p["day"], "2026-11-30");
        assert_eq!(p["month"], "m-2026-12");
        assert_eq!(p["first"], "2026-12-01");
        assert_eq!(p["at"], "2026-11-30T23:30:00Z");
        assert_eq!(p["limit"], 5);
        let mut mine = serde_json::Map::new();
        mine.insert("limit".into(), 9.into());
        assert_eq!(s.render(at("2026-11-30T23:30:00Z"), &mine)["limit"], 9);
    }

    #[test]
    fn bad_declarations_name_the_field() {
        let e = spec(r#"{name: d, cron: "0 6 * *"}"#).unwrap_err();
        assert_eq!(e.field, "cron");
        let e = spec(r#"{name: d, cron: "0 6 * * *", timezone: Mars/Olympus}"#).unwrap_err();
        assert_eq!(e.field, "timezone");
        let e =
            spec(r#"{name: d, cron: "0 6 * * *", parameters: {day: "{{ today }}"}}"#).unwrap_err();
        assert_eq!(e.field, "parameters.day");
        assert!(e.problem.contains("unknown variable"), "{}", e.problem);
        let e = spec(r#"{name: d, cron: "0 6 * * *", parameters: {day: "{{ logical_date | minus_weeks(1) }}"}}"#)
            .unwrap_err();
        assert!(e.problem.contains("unknown filter"), "{}", e.problem);
        let e = spec(r#"{name: d, cron: "0 6 * * *", parameters: {day: "{{ logical_date "}}"#)
            .unwrap_err();
        assert!(e.problem.contains("unclosed"), "{}", e.problem);
        let e = spec(r#"{name: "Daily!", cron: "0 6 * * *"}"#).unwrap_err();
        assert_eq!(e.field, "name");
        let e =
            spec(r#"{name: d, cron: "0 6 * * *", catch_up: all, max_catch_up: 0}"#).unwrap_err();
        assert_eq!(e.field, "max_catch_up");
    }

    #[test]
    fn catch_up_policies_choose_among_the_missed_ticks() {
        let hourly = |policy: &str| {
            spec(&format!(
                r#"{{name: h, cron: "0 * * * *", catch_up: {policy}, max_catch_up: 3}}"#
            ))
            .unwrap()
        };
        let after = at("2026-11-23T00:30:00Z");
        let now = at("2026-11-23T06:00:10Z");
        let on_time = Duration::seconds(60);
        assert_eq!(
            hourly("skip").due(after, now, on_time),
            [at("2026-11-23T06:00:00Z")]
        );
        assert_eq!(
            hourly("latest").due(after, now, on_time),
            [at("2026-11-23T06:00:00Z")]
        );
        assert_eq!(
            hourly("all").due(after, now, on_time),
            [
                at("2026-11-23T04:00:00Z"),
                at("2026-11-23T05:00:00Z"),
                at("2026-11-23T06:00:00Z")
            ]
        );
        // Nothing missed and nothing due: nothing fires.
        assert!(
            hourly("all")
                .due(at("2026-11-23T06:00:00Z"), now, on_time)
                .is_empty()
        );
        // A late skip: the 06:00 tick is 10 minutes old.
        assert!(
            hourly("skip")
                .due(after, at("2026-11-23T06:10:00Z"), on_time)
                .is_empty()
        );
    }

    #[test]
    fn a_daily_cron_follows_the_zone_across_daylight_saving() {
        let s = spec(r#"{name: d, cron: "0 6 * * *", timezone: Europe/Paris, catch_up: all, max_catch_up: 5}"#).unwrap();
        let ticks = s.due(
            at("2026-10-23T12:00:00Z"),
            at("2026-10-26T12:00:00Z"),
            Duration::seconds(1),
        );
        // 06:00 Paris is 04:00 UTC in summer time and 05:00 UTC after Oct 25.
        assert_eq!(
            ticks,
            [
                at("2026-10-24T04:00:00Z"),
                at("2026-10-25T05:00:00Z"),
                at("2026-10-26T05:00:00Z")
            ]
        );
    }
}
