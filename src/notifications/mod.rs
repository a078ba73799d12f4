//! Alerts: an org's channels (a signed webhook, or a Slack incoming webhook) and the rules on
//! them, and the delivery of every run end they ask for. Channels live in
//! `notification_channels` (URL and secret KMS-sealed), deliveries in the append-only
//! `notification_deliveries`. The [`Notifier`] is told of every run end the run log writes
//! ([`crate::run_log::RunLog::observe_ends`]) and delivers in the background: a slow or failing
//! receiver never delays a run, nor another org's alerts.

mod delivery;
pub mod signing;
pub mod target;
mod waiting;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::OrgSlug;
use crate::kms::{Aad, SharedKms};
use crate::service_error::ServiceError;
use crate::settings::NotifySettings;
use crate::validation::FieldProblem;
use crate::warehouse::{Param, Warehouse, from_micros, sql};

pub use delivery::Notifier;

/// Live channels an org may have at once.
pub const MAX_CHANNELS: i64 = 10;

/// Where a channel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// JSON signed in the Standard Webhooks form.
    Webhook,
    /// A Slack incoming webhook: a readable message, unsigned (Slack's URL is the secret).
    Slack,
}

impl ChannelKind {
    fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
        }
    }
}

/// The status a run's deadline alarm announces (never written: the run is still RUNNING).
pub const DEADLINE_PASSED: &str = "DEADLINE_PASSED";
/// The status announced when a scheduled run starts after its tick's logical time (never
/// written); the channels whose `late_after_seconds` it exceeds are alerted `schedule.late`.
pub const LATE_START: &str = "LATE_START";
/// A channel's `late_after_seconds` when it gives none.
pub const DEFAULT_LATE_AFTER_SECS: i64 = 300;
/// Announced (never written) by the instance whose admission batch put a run in its org's
/// queue: that instance, and only it, watches how long the run waits there.
pub const ENQUEUED: &str = "ENQUEUED";
/// The status of a run still waiting in its org's queue past a channel's
/// `queued_after_seconds` (never written).
pub const QUEUED_TOO_LONG: &str = "QUEUED_TOO_LONG";
/// A channel's `queued_after_seconds` when it gives none.
pub const DEFAULT_QUEUED_AFTER_SECS: i64 = 600;

/// The run ends a channel may ask for, by the run status that ends it (and a run still running
/// past its pipeline's `deadline_seconds`).
pub const EVENTS: [(&str, &str); 8] = [
    ("run.failed", "FAILED"),
    ("run.deadline_passed", DEADLINE_PASSED),
    ("schedule.late", LATE_START),
    ("run.queued_too_long", QUEUED_TOO_LONG),
    ("run.timed_out", "TIMED_OUT"),
    ("run.orphaned", "ORPHANED"),
    ("run.refused", "REFUSED"),
    ("run.succeeded", "SUCCEEDED"),
];

/// What a channel gets when it names no events: every end that needs a person (a success is
/// asked for explicitly).
const DEFAULT_EVENTS: [&str; 7] = [
    "run.failed",
    "run.deadline_passed",
    "run.timed_out",
    "run.orphaned",
    "run.refused",
    "schedule.late",
    "run.queued_too_long",
];

/// The event of a run ending with `status`, if a channel may ask for it.
pub fn event_of(status: &str) -> Option<&'static str> {
    EVENTS.iter().find(|(_, s)| *s == status).map(|(e, _)| *e)
}

/// `POST …/channels`: a new channel.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    pub kind: ChannelKind,
    /// `https` (a Slack incoming webhook's URL for `slack`); never shown again in full.
    pub url: String,
    /// Events to deliver (default: run.failed, run.deadline_passed, run.timed_out,
    /// run.orphaned, run.refused).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only runs of these pipelines (default: all).
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// `schedule.late`: a scheduled run starting more than this after its tick's logical time
    /// (1-86400; default 300).
    #[serde(default)]
    pub late_after_seconds: Option<i64>,
    /// `run.queued_too_long`: a run still waiting in the org's queue this long after it was
    /// queued (1-86400; default 600).
    #[serde(default)]
    pub queued_after_seconds: Option<i64>,
}

/// A channel as the API shows it: never its URL beyond scheme and host, never its secret.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ChannelView {
    pub channel_id: String,
    pub kind: ChannelKind,
    pub url_hint: String,
    pub events: Vec<String>,
    pub pipelines: Vec<String>,
    /// How late a scheduled run may start before `schedule.late` is sent.
    pub late_after_seconds: i64,
    /// How long a run may wait in the queue before `run.queued_too_long` is sent.
    pub queued_after_seconds: i64,
    pub created_by: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// A channel just added: its view and, for a webhook, the signing secret, shown this once.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: ChannelView,
    /// `whsec_…`: verifies `webhook-signature` (webhooks only; shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// A stored channel with its ciphertexts (for delivery).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChannelRow {
    pub channel_id: String,
    pub kind: String,
    pub encrypted_url_b64: String,
    pub url_hint: String,
    pub encrypted_secret_b64: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub pipelines: Vec<String>,
    pub late_after_seconds: Option<i64>,
    pub queued_after_seconds: Option<i64>,
    pub created_by: Option<String>,
    pub created_at_micros: Option<i64>,
}

impl ChannelRow {
    fn kind(&self) -> ChannelKind {
        if self.kind == "slack" {
            ChannelKind::Slack
        } else {
            ChannelKind::Webhook
        }
    }

    fn view(&self) -> ChannelView {
        ChannelView {
            channel_id: self.channel_id.clone(),
            kind: self.kind(),
            url_hint: self.url_hint.clone(),
            events: self.events.clone(),
            pipelines: self.pipelines.clone(),
            late_after_seconds: self.late_after(),
            queued_after_seconds: self.queued_after(),
            created_by: self.created_by.clone(),
            created_at: from_micros(self.created_at_micros),
        }
    }

    fn late_after(&self) -> i64 {
        self.late_after_seconds.unwrap_or(DEFAULT_LATE_AFTER_SECS)
    }

    pub(crate) fn queued_after(&self) -> i64 {
        self.queued_after_seconds
            .unwrap_or(DEFAULT_QUEUED_AFTER_SECS)
    }

    /// Whether this channel asks for `event` of a run of `pipeline_id`; `secs` is how late a
    /// scheduled run started (`schedule.late`: later than the channel's threshold) or how
    /// long a run has waited in the queue (`run.queued_too_long`: at least the threshold).
    pub fn wants(&self, event: &str, pipeline_id: &str, secs: i64) -> bool {
        self.events.iter().any(|e| e == event)
            && (self.pipelines.is_empty() || self.pipelines.iter().any(|p| p == pipeline_id))
            && match event {
                "schedule.late" => secs > self.late_after(),
                "run.queued_too_long" => secs >= self.queued_after(),
                _ => true,
            }
    }
}

fn invalid(field: &str, problem: &str, accepted: &str) -> ServiceError {
    ServiceError::InvalidField(FieldProblem::new(field, problem, accepted))
}

impl NewChannel {
    /// The events and pipelines, checked and without repeats.
    fn rules(&self) -> Result<(Vec<String>, Vec<String>), ServiceError> {
        let accepted_events = EVENTS.map(|(e, _)| e).join(", ");
        let events: BTreeSet<String> = if self.events.is_empty() {
            DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect()
        } else {
            self.events.iter().cloned().collect()
        };
        if events.iter().any(|e| event_of_name(e).is_none()) {
            return Err(invalid("events", "unknown event", &accepted_events));
        }
        if self.pipelines.len() > 50 {
            return Err(invalid("pipelines", "too many", "at most 50 pipeline ids"));
        }
        for (field, value) in [
            ("late_after_seconds", self.late_after_seconds),
            ("queued_after_seconds", self.queued_after_seconds),
        ] {
            if value.is_some_and(|s| !(1..=86_400).contains(&s)) {
                return Err(invalid(field, "out of range", "1 to 86400 seconds"));
            }
        }
        let pipelines: BTreeSet<String> = self.pipelines.iter().cloned().collect();
        let pipeline_ok = |p: &String| {
            (1..=200).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-/.".contains(&b))
        };
        if !pipelines.iter().all(pipeline_ok) {
            return Err(invalid(
                "pipelines",
                "not a pipeline id",
                "pipeline ids such as sample/daily_rollup",
            ));
        }
        Ok((
            events.into_iter().collect(),
            pipelines.into_iter().collect(),
        ))
    }
}

fn event_of_name(name: &str) -> Option<&'static str> {
    EVENTS.iter().find(|(e, _)| *e == name).map(|(e, _)| *e)
}

/// Adds a channel: the URL checked (form, then where it resolves), sealed with the org's and
/// the channel's AAD, and a signing secret made for a webhook.
pub async fn create(
    warehouse: &Warehouse,
    kms: &SharedKms,
    settings: &NotifySettings,
    org: &OrgSlug,
    request: NewChannel,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<CreatedChannel, ServiceError> {
    let (events, pipelines) = request.rules()?;
    let url = target::parse(&request.url, settings.allow_local_targets).map_err(|e| {
        invalid(
            "url",
            &e.to_string(),
            "an https URL outside the service's network",
        )
    })?;
    target::check(&url, settings.allow_local_targets)
        .await
        .map_err(|e| {
            invalid(
                "url",
                &e.to_string(),
                "an https URL outside the service's network",
            )
        })?;
    let channel_id = uuid::Uuid::new_v4().to_string();
    let sealed_url = kms
        .encrypt(
            url.as_str().as_bytes(),
            &Aad::notification_channel(org.as_str(), &channel_id, "url"),
        )
        .await?;
    let secret = match request.kind {
        ChannelKind::Webhook => Some(signing::new_secret()),
        ChannelKind::Slack => None,
    };
    let sealed_secret = match &secret {
        Some(secret) => B64.encode(
            kms.encrypt(
                secret.as_bytes(),
                &Aad::notification_channel(org.as_str(), &channel_id, "secret"),
            )
            .await?,
        ),
        None => String::new(),
    };
    let url_hint = target::hint(&url);
    let inserted = warehouse
        .execute(
            &sql::NOTIFY_CHANNEL_INSERT,
            &[
                Param::string("channel_id", &channel_id),
                Param::string("org_slug", org.as_str()),
                Param::string("kind", request.kind.as_str()),
                Param::string("encrypted_url_b64", B64.encode(&sealed_url)),
                Param::string("url_hint", &url_hint),
                Param::string("encrypted_secret_b64", sealed_secret),
                Param::string_array("events", events.clone()),
                Param::string_array("pipelines", pipelines.clone()),
                Param::int64(
                    "late_after_seconds",
                    request
                        .late_after_seconds
                        .unwrap_or(DEFAULT_LATE_AFTER_SECS),
                ),
                Param::int64(
                    "queued_after_seconds",
                    request
                        .queued_after_seconds
                        .unwrap_or(DEFAULT_QUEUED_AFTER_SECS),
                ),
                Param::string("created_by", actor),
                Param::timestamp("now", now),
                Param::int64("max_channels", MAX_CHANNELS),
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(ServiceError::Conflict(format!(
            "an org has at most {MAX_CHANNELS} channels: delete one first"
        )));
    }
    Ok(CreatedChannel {
        channel: ChannelView {
            channel_id,
            kind: request.kind,
            url_hint,
            events,
            pipelines,
            late_after_seconds: request
                .late_after_seconds
                .unwrap_or(DEFAULT_LATE_AFTER_SECS),
            queued_after_seconds: request
                .queued_after_seconds
                .unwrap_or(DEFAULT_QUEUED_AFTER_SECS),
            created_by: Some(actor.to_string()),
            created_at: Some(now),
        },
        signing_secret: secret.map(|s| s.to_string()),
    })
}

/// The org's live channels, with their ciphertexts.
pub(crate) async fn rows(
    warehouse: &Warehouse,
    org: &OrgSlug,
) -> Result<Vec<ChannelRow>, crate::warehouse::WarehouseError> {
    warehouse
        .query(
            &sql::NOTIFY_CHANNELS_BY_ORG,
            &[Param::string("org_slug", org.as_str())],
        )
        .await
}

/// A live channel with its org, as the notifier's read of every org's channels finds it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OrgChannelRow {
    pub org_slug: String,
    #[serde(flatten)]
    pub channel: ChannelRow,
}

/// Every org's live channels, at most `limit` (`sql/notifications/live_channels.sql`).
pub(crate) async fn all_rows(
    warehouse: &Warehouse,
    limit: usize,
) -> Result<Vec<OrgChannelRow>, crate::warehouse::WarehouseError> {
    warehouse
        .query(
            &sql::NOTIFY_LIVE_CHANNELS,
            &[Param::int64("limit", limit as i64)],
        )
        .await
}

/// The org's live channels as the API shows them.
pub async fn list(warehouse: &Warehouse, org: &OrgSlug) -> Result<Vec<ChannelView>, ServiceError> {
    Ok(rows(warehouse, org)
        .await?
        .iter()
        .map(ChannelRow::view)
        .collect())
}

/// Deletes a live channel of the org (404 when it has none with that id).
pub async fn delete(
    warehouse: &Warehouse,
    org: &OrgSlug,
    channel_id: &str,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let changed = warehouse
        .execute(
            &sql::NOTIFY_CHANNEL_DELETE,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("channel_id", channel_id),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    if changed == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

/// One delivery as its last attempt left it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryView {
    /// The `webhook-id` the receiver saw (the same on every attempt).
    pub delivery_id: String,
    pub channel_id: String,
    pub event: String,
    pub run_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub attempt: i64,
    /// DELIVERED, RETRYING or FAILED.
    pub status: String,
    pub http_status: Option<i64>,
    /// Why the last attempt failed (never the URL).
    pub error: Option<String>,
    #[serde(skip_deserializing)]
    pub attempted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    attempted_at_micros: Option<i64>,
}

/// The org's deliveries of the last 7 days, newest first, the last attempt of each (at most 100).
pub async fn deliveries(
    warehouse: &Warehouse,
    org: &OrgSlug,
    now: DateTime<Utc>,
) -> Result<Vec<DeliveryView>, ServiceError> {
    let rows: Vec<DeliveryView> = warehouse
        .query(
            &sql::NOTIFY_DELIVERIES_BY_ORG,
            &[
                Param::string("org_slug", org.as_str()),
                Param::timestamp("since", now - chrono::Duration::days(7)),
                Param::timestamp("until", now + chrono::Duration::minutes(5)),
                Param::int64("limit", 100),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|mut d| {
            d.attempted_at = from_micros(d.attempted_at_micros);
            d
        })
        .collect())
}

/// How long the notifier keeps its read of every org's channels: a run end costs no read while
/// it is this recent (a change made on another instance is seen within this; one made here at
/// once).
pub const CHANNEL_CACHE_TTL: Duration = Duration::from_secs(10);

/// What delivering needs, shared by the notifier's tasks.
pub(crate) struct Shared {
    pub warehouse: Warehouse,
    pub kms: SharedKms,
    pub http: reqwest::Client,
    pub settings: NotifySettings,
}

pub(crate) type SharedState = Arc<Shared>;

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(events: &[&str], pipelines: &[&str], late_after: Option<i64>) -> ChannelRow {
        ChannelRow {
            channel_id: "c".into(),
            kind: "webhook".into(),
            encrypted_url_b64: String::new(),
            url_hint: "https://hooks.example.com".into(),
            encrypted_secret_b64: None,
            events: events.iter().map(|e| e.to_string()).collect(),
            pipelines: pipelines.iter().map(|p| p.to_string()).collect(),
            late_after_seconds: late_after,
            queued_after_seconds: late_after,
            created_by: None,
            created_at_micros: None,
        }
    }

    #[test]
    fn a_channel_wants_its_events_of_its_pipelines_and_late_starts_past_its_threshold() {
        let c = channel(&["run.failed", "schedule.late"], &["a/b"], Some(90));
        assert!(c.wants("run.failed", "a/b", 0));
        assert!(!c.wants("run.failed", "a/c", 0), "another pipeline");
        assert!(
            !c.wants("run.timed_out", "a/b", 0),
            "an event it did not ask for"
        );
        assert!(c.wants("schedule.late", "a/b", 91));
        assert!(
            !c.wants("schedule.late", "a/b", 90),
            "not later than the threshold"
        );
        let default = channel(&["schedule.late"], &[], None);
        assert!(!default.wants("schedule.late", "x/y", 300));
        assert!(
            default.wants("schedule.late", "x/y", 301),
            "300 s by default"
        );
        assert_eq!(event_of("FAILED"), Some("run.failed"));
        assert_eq!(event_of(LATE_START), Some("schedule.late"));
        assert_eq!(event_of(QUEUED_TOO_LONG), Some("run.queued_too_long"));
        assert_eq!(event_of(ENQUEUED), None, "watched, never delivered as such");
        assert_eq!(event_of("RUNNING"), None);
    }

    #[test]
    fn a_queued_run_is_alerted_once_it_has_waited_the_channels_threshold() {
        let c = channel(&["run.queued_too_long"], &[], Some(60));
        assert!(!c.wants("run.queued_too_long", "a/b", 59));
        assert!(c.wants("run.queued_too_long", "a/b", 60));
        let default = channel(&["run.queued_too_long"], &[], None);
        assert!(!default.wants("run.queued_too_long", "a/b", 599));
        assert!(
            default.wants("run.queued_too_long", "a/b", 600),
            "600 s by default"
        );
    }

    #[test]
    fn rules_default_to_every_end_but_success_and_unknown_ones_are_named() {
        let request = |events: &[&str], late: Option<i64>| NewChannel {
            kind: ChannelKind::Webhook,
            url: "https://hooks.example.com".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            pipelines: vec![],
            late_after_seconds: late,
            queued_after_seconds: late.map(|l| l * 2),
        };
        let (events, _) = request(&[], None).rules().unwrap();
        assert_eq!(
            events,
            [
                "run.deadline_passed",
                "run.failed",
                "run.orphaned",
                "run.queued_too_long",
                "run.refused",
                "run.timed_out",
                "schedule.late"
            ]
        );
        assert!(matches!(
            request(&["run.exploded"], None).rules(),
            Err(ServiceError::InvalidField(p)) if p.field == "events"
        ));
        assert!(matches!(
            request(&[], Some(0)).rules(),
            Err(ServiceError::InvalidField(p)) if p.field == "late_after_seconds"
        ));
        assert!(matches!(
            request(&[], Some(50_000)).rules(),
            Err(ServiceError::InvalidField(p)) if p.field == "queued_after_seconds"
        ));
    }
}
