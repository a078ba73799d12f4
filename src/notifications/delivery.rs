//! The notifier: told of every run end, it finds the org's channels in its read of every org's
//! channels (one query, kept [`CHANNEL_CACHE_TTL`](super::CHANNEL_CACHE_TTL) and shared by
//! every run end meanwhile, whatever their orgs: an instance whose runs end in 200 orgs reads
//! once, not 200 times), and delivers each event a channel asks for in a task of its own:
//!
//! - **Changes made here count at once**: an org whose channels changed on this instance is
//!   read on its own until a read of every org's channels started after the change. One made
//!   on another instance counts within `CHANNEL_CACHE_TTL`.
//!
//! - **One delivery per event and channel**, its id (`webhook-id`) derived from the run, the
//!   status it ended with and the channel: every attempt, and any instance that delivers the
//!   same end, sends the same id, so a receiver deduplicates on it. A run's end is written by
//!   one instance (the one that ran it, the one whose batch refused it, or the reaper that freed
//!   it), and only that instance delivers it.
//! - **Retried** after a non-2xx answer or no answer within 10 s: waits of
//!   `NOTIFY_RETRY_FIRST_MS` (5 s), then 6 times longer each, up to 8 hours, with ±20 %
//!   jitter, 9 attempts in all (about a day: 26 hours); then it is recorded FAILED. Every
//!   attempt is a row of `notification_deliveries`, written in batches. A retry waiting when its
//!   instance stops is not sent.
//! - **Contained**: at most [`PER_ORG`] deliveries of one org in flight; the others of that org
//!   wait, and other orgs' do not. The URL is checked again before every attempt (where it
//!   resolves may have changed); redirects are not followed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::waiting::{LOOK_EVERY, Watch};
use super::{
    ChannelKind, ChannelRow, ENQUEUED, QUEUED_TOO_LONG, Shared, SharedState, event_of, signing,
    target,
};
use crate::domain::OrgSlug;
use crate::kms::Aad;
use crate::run_log::RunEvent;
use crate::service_error::ServiceError;
use crate::settings::NotifySettings;
use crate::warehouse::Warehouse;

/// Deliveries of one org in flight at once.
pub const PER_ORG: usize = 4;
/// Attempts of one delivery in all.
pub const ATTEMPTS: u32 = 9;
/// The longest wait between attempts.
const MAX_WAIT: Duration = Duration::from_secs(8 * 3600);
/// How long a receiver has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Channels read at once for every org at most (5,000 orgs at their maximum of 10): past it,
/// the orgs the read leaves out are read one by one.
const SNAPSHOT_ROWS: usize = 50_000;
/// Delivery rows per `insertAll` at most, and how long a row waits for others.
const LOG_BATCH: usize = 200;
const LOG_LINGER: Duration = Duration::from_secs(1);

/// One attempt, as `notification_deliveries` keeps it.
#[derive(Debug, Clone, Serialize)]
struct DeliveryRow {
    delivery_id: String,
    org_slug: String,
    channel_id: String,
    event: String,
    run_id: Option<String>,
    pipeline_id: Option<String>,
    attempt: i64,
    status: &'static str,
    http_status: Option<i64>,
    error: Option<String>,
    attempted_at: String,
}

/// What one delivery sends.
struct Delivery {
    id: String,
    org: OrgSlug,
    channel: ChannelRow,
    event: String,
    run_id: Option<String>,
    pipeline_id: Option<String>,
    /// The webhook body.
    payload: Value,
    /// The Slack message.
    text: String,
}

/// Every org's live channels as one read found them.
struct Snapshot {
    /// When the read started: a change made here before it is in it.
    started: Instant,
    by_org: HashMap<String, Arc<Vec<ChannelRow>>>,
    /// The read stopped short of its LIMIT: an org it lacks has no channel (else it is read on
    /// its own).
    complete: bool,
}

pub struct Notifier {
    shared: SharedState,
    metrics: Arc<crate::metrics::Metrics>,
    /// The read of every org's channels (one entry), kept `CHANNEL_CACHE_TTL`.
    snapshot: moka::future::Cache<(), Arc<Snapshot>>,
    /// Orgs whose channels changed here, and when: read on their own (cached in `channels`)
    /// until a snapshot that started after the change.
    changed_here: Mutex<HashMap<String, Instant>>,
    channels: moka::future::Cache<String, Arc<Vec<ChannelRow>>>,
    log: mpsc::UnboundedSender<DeliveryRow>,
    per_org: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Runs this instance queued, watched for `run.queued_too_long`.
    waiting: Watch,
}

/// The wait after failed attempt `attempt` (1-based) before the next: `first` × 6^(attempt−1),
/// at most 8 hours, before jitter.
pub fn retry_wait(first: Duration, attempt: u32) -> Duration {
    let factor = 6u32.saturating_pow(attempt.saturating_sub(1));
    first.saturating_mul(factor).min(MAX_WAIT)
}

/// ±20 % of `wait`, at random.
fn jittered(wait: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::getrandom(&mut byte);
    let factor = 0.8 + 0.4 * f64::from(byte[0]) / 255.0;
    wait.mul_f64(factor)
}

/// How long after its tick's logical time the event happened (a late start), in seconds.
fn lateness_secs(event: &RunEvent) -> i64 {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (
        at(&event.event_time),
        event.logical_time.as_deref().and_then(at),
    ) {
        (Some(at), Some(logical)) => (at - logical).num_seconds(),
        _ => 0,
    }
}

/// The delivery id of `run_id` ending with `status` on `channel_id` (deterministic).
pub fn delivery_id(run_id: &str, status: &str, channel_id: &str) -> String {
    let name = format!("{run_id}:{status}:{channel_id}");
    format!(
        "msg_{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).simple()
    )
}

impl Notifier {
    pub fn start(
        warehouse: Warehouse,
        kms: crate::kms::SharedKms,
        settings: NotifySettings,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(ANSWER_WITHIN)
            .connect_timeout(ANSWER_WITHIN)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Quarry-Webhooks/1")
            .build()
            .expect("the alert HTTP client");
        let (log, rows) = mpsc::unbounded_channel();
        tokio::spawn(write_log(warehouse.clone(), rows));
        Arc::new(Self {
            shared: Arc::new(Shared {
                warehouse,
                kms,
                http,
                settings,
            }),
            metrics,
            snapshot: moka::future::Cache::builder()
                .time_to_live(super::CHANNEL_CACHE_TTL)
                .max_capacity(1)
                .build(),
            changed_here: Mutex::new(HashMap::new()),
            channels: moka::future::Cache::builder()
                .time_to_live(super::CHANNEL_CACHE_TTL)
                .max_capacity(10_000)
                .build(),
            log,
            per_org: Mutex::new(HashMap::new()),
            waiting: Watch::default(),
        })
    }

    /// Delivers what the run ends it is told of ask for, and watches the runs this instance
    /// queued, until the sender is gone.
    pub fn follow(self: &Arc<Self>, mut ends: mpsc::UnboundedReceiver<RunEvent>) {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(end) = ends.recv().await {
                match end.status.as_str() {
                    ENQUEUED => {
                        this.waiting.enqueued(end);
                        continue;
                    }
                    // Its definition, written before its batch queued it.
                    "QUEUED" => continue,
                    _ => this.waiting.forget(&end.run_id),
                }
                if event_of(&end.status).is_some() {
                    let this = this.clone();
                    tokio::spawn(async move { this.run_ended(end).await });
                }
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LOOK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if !this.waiting.is_empty() {
                    this.look_at_queues().await;
                }
            }
        });
    }

    /// One look at the runs this instance queued (see [`super::waiting`]): those due for a
    /// channel are read in their orgs' queues at once, and alerted if still there.
    async fn look_at_queues(self: &Arc<Self>) {
        let event = "run.queued_too_long";
        let mut due = Vec::new();
        for watched in self.waiting.look() {
            let Ok(org) = OrgSlug::parse(&watched.event.org_slug) else {
                self.waiting.forget(&watched.event.run_id);
                continue;
            };
            let channels = match self.channels_of(&org).await {
                Ok(channels) => channels,
                Err(e) => {
                    tracing::warn!(org = %org, error = %e, "reading alert channels failed");
                    continue;
                }
            };
            let tell: Vec<ChannelRow> = channels
                .iter()
                .filter(|c| {
                    c.wants(event, &watched.event.pipeline_id, watched.waited_secs)
                        && !watched.told.contains(&c.channel_id)
                })
                .cloned()
                .collect();
            if !tell.is_empty() {
                due.push((org, watched, tell));
            }
        }
        if due.is_empty() {
            return;
        }
        let orgs: std::collections::BTreeSet<String> =
            due.iter().map(|(org, _, _)| org.to_string()).collect();
        let run_ids: Vec<String> = due.iter().map(|(_, w, _)| w.event.run_id.clone()).collect();
        #[derive(serde::Deserialize)]
        struct Queued {
            run_id: String,
        }
        let still: std::collections::HashSet<String> = match self
            .shared
            .warehouse
            .query::<Queued>(
                &crate::warehouse::sql::NOTIFY_STILL_QUEUED,
                &[
                    crate::warehouse::Param::string_array("org_slugs", orgs.into_iter().collect()),
                    crate::warehouse::Param::string_array("run_ids", run_ids.clone()),
                    crate::warehouse::Param::int64("limit", run_ids.len() as i64),
                ],
            )
            .await
        {
            Ok(rows) => rows.into_iter().map(|r| r.run_id).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading which watched runs are still queued failed");
                return;
            }
        };
        for (org, watched, tell) in due {
            let run_id = watched.event.run_id.clone();
            if !still.contains(&run_id) {
                self.waiting.forget(&run_id);
                continue;
            }
            let mut waited = watched.event;
            waited.status = QUEUED_TOO_LONG.into();
            waited.event_time = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            waited.error_summary = Some(format!(
                "waiting in the queue for {} s",
                watched.waited_secs
            ));
            for channel in tell {
                self.waiting.told(&run_id, &channel.channel_id);
                let delivery = self.run_delivery(&org, &channel, event, &waited);
                let this = self.clone();
                tokio::spawn(async move { this.deliver(delivery).await });
            }
        }
    }

    /// Forgets the org's cached channels (after a change made here): the org is read on its own
    /// until a read of every org's channels started after now.
    pub async fn forget(&self, org: &OrgSlug) {
        self.changed_here
            .lock()
            .unwrap()
            .insert(org.to_string(), Instant::now());
        self.channels.invalidate(org.as_str()).await;
    }

    /// The org's channels: from the read of every org's channels (one query for all the run
    /// ends of `CHANNEL_CACHE_TTL`, shared by those that ask at once), else (a change made here
    /// since, or an org past the read's LIMIT) read on their own, cached and shared likewise.
    async fn channels_of(&self, org: &OrgSlug) -> Result<Arc<Vec<ChannelRow>>, ServiceError> {
        let snapshot = self.snapshot().await?;
        let covered = {
            let mut changed = self.changed_here.lock().unwrap();
            match changed.get(org.as_str()) {
                Some(at) if *at >= snapshot.started => false,
                Some(_) => {
                    changed.remove(org.as_str());
                    true
                }
                None => true,
            }
        };
        if covered {
            if let Some(found) = snapshot.by_org.get(org.as_str()) {
                return Ok(found.clone());
            }
            if snapshot.complete {
                return Ok(Arc::new(Vec::new()));
            }
        }
        let warehouse = self.shared.warehouse.clone();
        self.channels
            .try_get_with(org.to_string(), async move {
                super::rows(&warehouse, org).await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<crate::warehouse::WarehouseError>| {
                ServiceError::Warehouse((*e).clone())
            })
    }

    /// Every org's channels, read at most once per `CHANNEL_CACHE_TTL` (and once for all who
    /// ask while it is read).
    async fn snapshot(&self) -> Result<Arc<Snapshot>, ServiceError> {
        let warehouse = self.shared.warehouse.clone();
        self.snapshot
            .try_get_with((), async move {
                let started = Instant::now();
                let rows = super::all_rows(&warehouse, SNAPSHOT_ROWS).await?;
                let complete = rows.len() < SNAPSHOT_ROWS;
                let mut by_org: HashMap<String, Vec<ChannelRow>> = HashMap::new();
                // Cut by the LIMIT, the last org's channels may be cut too: it is read on its own.
                let cut = (!complete)
                    .then(|| rows.last().map(|row| row.org_slug.clone()))
                    .flatten();
                for row in rows {
                    if Some(&row.org_slug) != cut.as_ref() {
                        by_org.entry(row.org_slug).or_default().push(row.channel);
                    }
                }
                Ok(Arc::new(Snapshot {
                    started,
                    by_org: by_org
                        .into_iter()
                        .map(|(org, channels)| (org, Arc::new(channels)))
                        .collect(),
                    complete,
                }))
            })
            .await
            .map_err(|e: Arc<crate::warehouse::WarehouseError>| {
                ServiceError::Warehouse((*e).clone())
            })
    }

    async fn run_ended(self: Arc<Self>, end: RunEvent) {
        let Some(event) = event_of(&end.status) else {
            return;
        };
        let Ok(org) = OrgSlug::parse(&end.org_slug) else {
            return;
        };
        // The channels are read again a few times if BigQuery fails: an alert is not lost to
        // one failed read.
        let mut channels = None;
        for wait in [0u64, 2, 10, 60] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            match self.channels_of(&org).await {
                Ok(found) => {
                    channels = Some(found);
                    break;
                }
                Err(e) => tracing::warn!(org = %org, error = %e, "reading alert channels failed"),
            }
        }
        let Some(channels) = channels else {
            tracing::error!(org = %org, run_id = end.run_id, event, "alert not delivered: the org's channels could not be read");
            return;
        };
        let late = lateness_secs(&end);
        for channel in channels
            .iter()
            .filter(|c| c.wants(event, &end.pipeline_id, late))
        {
            let delivery = self.run_delivery(&org, channel, event, &end);
            let this = self.clone();
            tokio::spawn(async move { this.deliver(delivery).await });
        }
    }

    fn links(&self, org: &OrgSlug, run_id: &str) -> Value {
        let base = self
            .shared
            .settings
            .public_base_url
            .clone()
            .unwrap_or_default();
        json!({
            "api": format!("{base}/api/v1/pipelines/{org}/runs/{run_id}"),
            "ui": format!("{base}/ui#/runs/{run_id}"),
        })
    }

    fn run_delivery(
        &self,
        org: &OrgSlug,
        channel: &ChannelRow,
        event: &str,
        end: &RunEvent,
    ) -> Delivery {
        // A deadline or a late start is announced while the run is running.
        let status = match end.status.as_str() {
            super::DEADLINE_PASSED | super::LATE_START => "RUNNING",
            QUEUED_TOO_LONG => "QUEUED",
            other => other,
        };
        let payload = json!({
            "type": event,
            "timestamp": end.event_time,
            "data": {
                "org_slug": org.as_str(),
                "run_id": end.run_id,
                "pipeline_id": end.pipeline_id,
                "status": status,
                "error_class": end.error_class,
                "error_summary": end.error_summary,
                "schedule_id": end.schedule_id,
                "logical_time": end.logical_time,
                "backfill_id": end.backfill_id,
                "links": self.links(org, &end.run_id),
            }
        });
        let mut text = if end.status == super::DEADLINE_PASSED {
            format!(
                "Quarry: run {} of {} in {} is past its deadline",
                end.run_id, end.pipeline_id, org
            )
        } else if end.status == super::LATE_START {
            format!(
                "Quarry: scheduled run {} of {} in {} started late",
                end.run_id, end.pipeline_id, org
            )
        } else if end.status == QUEUED_TOO_LONG {
            format!(
                "Quarry: run {} of {} in {} is still waiting in the queue",
                end.run_id, end.pipeline_id, org
            )
        } else {
            format!(
                "Quarry: run {} of {} in {} ended {}",
                end.run_id, end.pipeline_id, org, end.status
            )
        };
        match (&end.error_class, &end.error_summary) {
            (Some(class), Some(summary)) => text.push_str(&format!(" ({class}: {summary})")),
            (None, Some(summary)) => text.push_str(&format!(" ({summary})")),
            _ => {}
        }
        text.push_str(&format!(
            " {}",
            self.links(org, &end.run_id)["ui"]
                .as_str()
                .unwrap_or_default()
        ));
        Delivery {
            id: delivery_id(&end.run_id, &end.status, &channel.channel_id),
            org: org.clone(),
            channel: channel.clone(),
            event: event.to_string(),
            run_id: Some(end.run_id.clone()),
            pipeline_id: Some(end.pipeline_id.clone()),
            payload,
            text,
        }
    }

    /// Sends a test event to one of the org's channels now; answers its delivery id.
    pub async fn test(
        self: &Arc<Self>,
        org: &OrgSlug,
        channel_id: &str,
    ) -> Result<String, ServiceError> {
        self.forget(org).await;
        let channels = self.channels_of(org).await?;
        let channel = channels
            .iter()
            .find(|c| c.channel_id == channel_id)
            .ok_or(ServiceError::NotFound)?
            .clone();
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let delivery = Delivery {
            id: id.clone(),
            org: org.clone(),
            channel,
            event: "test".into(),
            run_id: None,
            pipeline_id: None,
            payload: json!({
                "type": "test",
                "timestamp": Utc::now().to_rfc3339(),
                "data": {"org_slug": org.as_str(), "channel_id": channel_id},
            }),
            text: format!("Quarry: a test alert for {org}"),
        };
        let this = self.clone();
        tokio::spawn(async move { this.deliver(delivery).await });
        Ok(id)
    }

    fn org_gate(&self, org: &OrgSlug) -> Arc<Semaphore> {
        self.per_org
            .lock()
            .expect("per-org gates")
            .entry(org.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_ORG)))
            .clone()
    }

    /// Every attempt of one delivery, each recorded.
    async fn deliver(self: Arc<Self>, delivery: Delivery) {
        let gate = self.org_gate(&delivery.org);
        let shared = &self.shared;
        let channel = &delivery.channel;
        let opened = open(shared, &delivery.org, channel).await;
        let body = match channel.kind() {
            ChannelKind::Webhook => delivery.payload.to_string(),
            ChannelKind::Slack => json!({"text": delivery.text}).to_string(),
        };
        for attempt in 1..=ATTEMPTS {
            let outcome = match &opened {
                Err(e) => Err((None, e.clone(), false)),
                Ok((url, secret)) => {
                    let Ok(_turn) = gate.acquire().await else {
                        return;
                    };
                    send(
                        shared,
                        url,
                        secret.as_ref().map(|s| s.as_str()),
                        &delivery.id,
                        &body,
                    )
                    .await
                }
            };
            let last = attempt == ATTEMPTS;
            let (status, http_status, error) = match &outcome {
                Ok(code) => ("DELIVERED", Some(*code), None),
                Err((code, e, retry)) if *retry && !last => ("RETRYING", *code, Some(e.clone())),
                Err((code, e, _)) => ("FAILED", *code, Some(e.clone())),
            };
            self.metrics.alert_delivery(status);
            let _ = self.log.send(DeliveryRow {
                delivery_id: delivery.id.clone(),
                org_slug: delivery.org.to_string(),
                channel_id: channel.channel_id.clone(),
                event: delivery.event.clone(),
                run_id: delivery.run_id.clone(),
                pipeline_id: delivery.pipeline_id.clone(),
                attempt: i64::from(attempt),
                status,
                http_status: http_status.map(i64::from),
                error,
                attempted_at: Utc::now().to_rfc3339(),
            });
            if status != "RETRYING" {
                if status == "FAILED" {
                    tracing::warn!(org = %delivery.org, delivery_id = delivery.id, attempt, "alert delivery failed");
                }
                return;
            }
            tokio::time::sleep(jittered(retry_wait(shared.settings.retry_first, attempt))).await;
        }
    }
}

/// The channel's URL and (a webhook's) secret, decrypted.
async fn open(
    shared: &Shared,
    org: &OrgSlug,
    channel: &ChannelRow,
) -> Result<(reqwest::Url, Option<zeroize::Zeroizing<String>>), String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decrypt = |b64text: &str, what: &'static str| {
        let sealed = b64.decode(b64text).unwrap_or_default();
        let aad = Aad::notification_channel(org.as_str(), &channel.channel_id, what);
        let kms = shared.kms.clone();
        async move {
            kms.decrypt(&sealed, &aad)
                .await
                .map_err(|_| format!("the channel's {what} could not be decrypted"))
                .and_then(|plain| {
                    String::from_utf8(plain.to_vec())
                        .map(zeroize::Zeroizing::new)
                        .map_err(|_| format!("the channel's {what} is not text"))
                })
        }
    };
    let url = decrypt(&channel.encrypted_url_b64, "url").await?;
    let url =
        target::parse(&url, shared.settings.allow_local_targets).map_err(|e| e.to_string())?;
    let secret = match (&channel.kind(), &channel.encrypted_secret_b64) {
        (ChannelKind::Webhook, Some(sealed)) => Some(decrypt(sealed, "secret").await?),
        (ChannelKind::Webhook, None) => return Err("the webhook has no signing secret".into()),
        (ChannelKind::Slack, _) => None,
    };
    Ok((url, secret))
}

/// One attempt: the status of a 2xx answer, or (status, why, whether to retry).
async fn send(
    shared: &Shared,
    url: &reqwest::Url,
    secret: Option<&str>,
    id: &str,
    body: &str,
) -> Result<u16, (Option<u16>, String, bool)> {
    target::check(url, shared.settings.allow_local_targets)
        .await
        .map_err(|e| {
            (
                None,
                e.to_string(),
                matches!(e, target::TargetError::Unresolved),
            )
        })?;
    let timestamp = Utc::now().timestamp();
    let mut request = shared
        .http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = secret {
        let signature = signing::sign(secret, id, timestamp, body.as_bytes()).ok_or((
            None,
            "the channel's signing secret is malformed".to_string(),
            false,
        ))?;
        request = request.header("webhook-signature", signature);
    }
    match request.body(body.to_string()).send().await {
        Ok(answer) if answer.status().is_success() => Ok(answer.status().as_u16()),
        Ok(answer) => {
            let code = answer.status().as_u16();
            Err((
                Some(code),
                format!("the receiver answered HTTP {code}"),
                true,
            ))
        }
        Err(e) if e.is_timeout() => {
            Err((None, "the receiver did not answer within 10 s".into(), true))
        }
        Err(_) => Err((None, "the receiver could not be reached".into(), true)),
    }
}

/// Writes delivery rows in batches (by size, or after [`LOG_LINGER`]); rows whose write failed
/// are tried again with the next batch (at most 10,000 kept).
async fn write_log(warehouse: Warehouse, mut rows: mpsc::UnboundedReceiver<DeliveryRow>) {
    let mut pending: Vec<DeliveryRow> = Vec::new();
    loop {
        if pending.is_empty() {
            match rows.recv().await {
                Some(row) => pending.push(row),
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + LOG_LINGER;
        while pending.len() < LOG_BATCH {
            match tokio::time::timeout_at(deadline, rows.recv()).await {
                Ok(Some(row)) => pending.push(row),
                Ok(None) | Err(_) => break,
            }
        }
        let batch: Vec<(String, DeliveryRow)> = pending
            .iter()
            .map(|r| (format!("{}:{}", r.delivery_id, r.attempt), r.clone()))
            .collect();
        let meta = warehouse.meta_dataset().clone();
        match warehouse
            .insert_rows(&meta, "notification_deliveries", &batch)
            .await
        {
            Ok(()) => pending.clear(),
            Err(e) => {
                tracing::warn!(rows = batch.len(), error = %e, "writing alert deliveries failed; kept for the next batch");
                if pending.len() > 10_000 {
                    let drop = pending.len() - 10_000;
                    pending.drain(..drop);
                }
                tokio::time::sleep(LOG_LINGER).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_six_times_longer_each_up_to_8_hours_about_a_day_in_all() {
        let first = Duration::from_secs(5);
        let waits: Vec<u64> = (1..ATTEMPTS)
            .map(|a| retry_wait(first, a).as_secs())
            .collect();
        assert_eq!(waits, vec![5, 30, 180, 1080, 6480, 28_800, 28_800, 28_800]);
        let total: u64 = waits.iter().sum();
        assert!((20 * 3600..30 * 3600).contains(&total), "{total} s");
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(10)).as_secs_f64();
            assert!((8.0..=12.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn a_delivery_id_is_the_same_for_the_same_end_and_channel_only() {
        let a = delivery_id("run-1", "FAILED", "ch-1");
        assert_eq!(a, delivery_id("run-1", "FAILED", "ch-1"));
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
        assert_ne!(a, delivery_id("run-1", "FAILED", "ch-2"));
        assert_ne!(a, delivery_id("run-1", "ORPHANED", "ch-1"));
        assert_ne!(a, delivery_id("run-2", "FAILED", "ch-1"));
    }
}
