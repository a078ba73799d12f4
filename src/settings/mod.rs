//! Settings: everything the service reads from its environment, parsed once at start-up.
//!
//! Parsing is total: a malformed or out-of-range value becomes a [`SettingsError`] that names the
//! variable and what it accepts, never a panic. In `production` a set of unsafe combinations is
//! refused outright (see [`Settings::from_source`]).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::DatasetId;

pub mod catalog;

use catalog::{Kind, Unit};

/// The root key's minimum length in production.
pub const MIN_PRODUCTION_ROOT_KEY_LEN: usize = 32;
/// Distinct characters a production root key needs at least (refuses `aaaa…` and the like).
pub const MIN_PRODUCTION_ROOT_KEY_DISTINCT: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// The root key as read from the environment. Its `Debug` never prints the value.
#[derive(Clone)]
pub struct RootKey(String);

impl RootKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKey(***, {} chars)", self.0.chars().count())
    }
}

/// Which KMS seals secrets.
#[derive(Clone)]
pub enum KmsSettings {
    /// Cloud KMS, `projects/P/locations/L/keyRings/R/cryptoKeys/K`; `emulator` is a plain gRPC
    /// `host:port` used instead of Google (never in production).
    Cloud {
        key_name: String,
        emulator: Option<String>,
    },
    /// A local AES-256 key (development and tests; refused in production).
    Local { key: zeroize::Zeroizing<[u8; 32]> },
}

impl fmt::Debug for KmsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmsSettings::Cloud { key_name, emulator } => match emulator {
                None => write!(f, "Cloud({key_name})"),
                Some(host) => write!(f, "Cloud({key_name} via {host})"),
            },
            KmsSettings::Local { .. } => write!(f, "Local(***)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Requests per minute per org (or for the root key) on ordinary routes.
    pub per_minute: u32,
    /// Onboarding and bootstrap.
    pub admin_per_minute: u32,
    /// Pipeline triggers.
    pub trigger_per_minute: u32,
    /// Failed authentications per client IP.
    pub failed_auth_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub bigquery_connect: Duration,
    pub bigquery_read: Duration,
    /// Every BigQuery call made for an API request or for the service's own bookkeeping
    /// (admission, run log, reaper), retries included; steps use `bigquery_read` instead.
    pub bigquery_api: Duration,
    pub kms: Duration,
    pub http_client: Duration,
    pub readiness_probe: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default: what log pipelines read).
    Json,
    /// Human-readable lines, for a terminal during development.
    Pretty,
}

/// Alert delivery (see `crate::notifications`).
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Channels may use http and loopback or private addresses (local receivers only).
    pub allow_local_targets: bool,
    /// The wait before a failed delivery's first retry (each next one 6 times longer).
    pub retry_first: Duration,
    /// The service's public URL, for links in alerts (`None`: links are paths).
    pub public_base_url: Option<String>,
}

/// Live run streams (see `crate::live`): how many one instance holds open, per org and in
/// all, and how often it reads a watched run.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub per_org: usize,
    pub per_instance: usize,
    pub poll: Duration,
}

/// What one instance lets clients hold: connections, time to send a request, bodies in memory.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections per worker at most (new ones wait in the listen backlog).
    pub max_connections: usize,
    /// An idle connection stays open this long (above the load balancer's own idle timeout).
    pub keep_alive: Duration,
    /// A request's head must arrive within this; then its body within `body_timeout`.
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    /// Bodies being read into memory at once (each at most 1 MiB); past it, 503.
    pub max_bodies_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: usize,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub root_api_key: Option<RootKey>,
    pub gcp_project_id: String,
    pub bigquery_location: String,
    /// `host:port` of a local BigQuery emulator; `None` talks to Google.
    pub bigquery_emulator_host: Option<String>,
    pub meta_dataset: DatasetId,
    pub bind_addr: SocketAddr,
    pub cors_origins: Vec<String>,
    pub rate_limit_enabled: bool,
    pub disable_auth: bool,
    pub timeouts: Timeouts,
    pub bigquery_retry: RetrySettings,
    pub kms: KmsSettings,
    pub rate_limits: RateLimits,
    pub http: HttpLimits,
    pub log_format: LogFormat,
    /// How long a validated API key stays cached on one instance (bounds revocation staleness
    /// on other instances).
    pub auth_cache_ttl: Duration,
    /// How often `last_used_at` of used keys is written (one statement for all keys).
    pub last_used_flush: Duration,
    pub executor: ExecutorSettings,
    pub admission: AdmissionSettings,
    /// Folder of provider definitions (`*.yaml`).
    pub providers_dir: std::path::PathBuf,
    /// Base URL overrides by provider name (`PROVIDER_BASE_URLS=name=url,...`).
    pub provider_base_urls: HashMap<String, String>,
    /// Label run metrics with the org slug (off by default: cardinality).
    pub metrics_org_labels: bool,
    /// What a TiB billed costs: the estimated costs shown beside bytes.
    pub price: crate::cost::price::Price,
    pub notify: NotifySettings,
    pub live: LiveSettings,
    /// Every variable read and what it came to (secrets as their length), in catalog order.
    effective: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// Folder of pipeline definitions (`*.yaml`; the id is the path without the extension).
    pub pipelines_dir: std::path::PathBuf,
    /// Folder the steps' `sql:` paths are relative to.
    pub sql_dir: std::path::PathBuf,
    /// How long shutdown lets runs finish before cancelling them.
    pub shutdown_grace: Duration,
    /// A reserved run with no heartbeat or event for this long is orphaned.
    pub lease: Duration,
    pub heartbeat_interval: Duration,
    /// One heartbeat insert at most; a run whose lease could not be renewed for
    /// `lease - heartbeat_interval - heartbeat_timeout` stops itself.
    pub heartbeat_timeout: Duration,
    pub reaper_interval: Duration,
    /// How often an instance looks for queues beside free slots (after a restart, a raised
    /// limit) and drains them.
    pub queue_poll: Duration,
    /// The longest wait of the queue poll and the scheduler while they find nothing.
    pub idle_poll_max: Duration,
    /// How often an instance's scheduler looks for due schedule ticks and backfill days.
    pub scheduler_interval: Duration,
    /// Whether this instance runs the scheduler (every instance may; each tick fires once).
    pub scheduler_enabled: bool,
    /// How long a run-log row may wait before its batch is written.
    pub log_flush_interval: Duration,
    /// Retry-After for a concurrency refusal.
    pub concurrent_retry_after_secs: u64,
}

/// The admission coordinator: the one writer of `org_quota_state` on an instance.
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// Reservations waiting for a batch at most; past it a trigger is answered 503.
    pub queue_max: usize,
    /// Operations (reservations and releases) in one statement at most.
    pub max_batch: usize,
    /// How long a trigger waits for its reservation's outcome before answering 503.
    pub timeout: Duration,
    /// How long after its batch an admitted run may still be launched: its PENDING insert (one
    /// BigQuery deadline) must land within a lease of the batch, before any reaper may free
    /// the slot. `RUN_LEASE_SECS - BIGQUERY_API_DEADLINE_SECS`; later, it is released with its
    /// count and its trigger answered 503.
    pub launch_within: Duration,
}

/// One problem with one variable. The message names the variable and the accepted values; it
/// never repeats the value itself (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    pub var: &'static str,
    pub expected: String,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.expected)
    }
}

/// All problems found in the environment, reported together on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub Vec<SettingProblem>);

impl SettingsError {
    pub fn names(&self, var: &str) -> bool {
        self.0.iter().any(|p| p.var == var)
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "invalid configuration: {}", parts.join("; "))
    }
}

impl std::error::Error for SettingsError {}

/// Where variables come from: the process environment, or a map in tests.
pub trait VarSource {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl VarSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl VarSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl VarSource for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

/// Reads variables as [`catalog::VARS`] declares them and records what each one came to, for
/// `check-config` (secrets masked).
struct Reader<'a, S: VarSource + ?Sized> {
    source: &'a S,
    problems: Vec<SettingProblem>,
    effective: Vec<(&'static str, String)>,
}

impl<S: VarSource + ?Sized> Reader<'_, S> {
    /// A set, non-blank value, trimmed.
    fn get(&self, var: &str) -> Option<String> {
        self.source
            .var(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, var: &'static str, expected: impl Into<String>) {
        self.problems.push(SettingProblem {
            var,
            expected: expected.into(),
        });
    }

    fn record(&mut self, var: &'static str, shown: String) {
        self.effective.push((var, shown));
    }

    /// A text variable, or its declared default.
    fn text(&mut self, var: &'static str) -> String {
        let Kind::Text(default) = catalog::declared(var).kind else {
            panic!("{var} is not declared as text");
        };
        let value = self.get(var).unwrap_or_else(|| default.to_string());
        self.record(var, value.clone());
        value
    }

    /// A variable that is unset unless given.
    fn optional(&mut self, var: &'static str) -> Option<String> {
        assert_eq!(
            catalog::declared(var).kind,
            Kind::Optional,
            "{var} is not declared optional"
        );
        let value = self.get(var);
        self.record(var, value.clone().unwrap_or_else(|| "unset".into()));
        value
    }

    /// A secret, as given (untrimmed; empty is unset). Recorded as its length only.
    fn secret(&mut self, var: &'static str) -> Option<String> {
        assert_eq!(
            catalog::declared(var).kind,
            Kind::Secret,
            "{var} is not declared secret"
        );
        let value = self.source.var(var).filter(|v| !v.is_empty());
        let shown = match &value {
            Some(v) => format!("set (*** {} chars)", v.chars().count()),
            None => "unset".into(),
        };
        self.record(var, shown);
        value
    }

    fn bool(&mut self, var: &'static str) -> bool {
        let Kind::Bool(default) = catalog::declared(var).kind else {
            panic!("{var} is not declared as a boolean");
        };
        let value = match self.get(var).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => false,
            Some(_) => {
                self.problem(var, "expected true or false");
                default
            }
        };
        self.record(var, value.to_string());
        value
    }

    fn number(&mut self, var: &'static str, expected_unit: Unit) -> u64 {
        let Kind::Integer {
            default,
            min,
            max,
            unit,
        } = catalog::declared(var).kind
        else {
            panic!("{var} is not declared as an integer");
        };
        assert_eq!(unit, expected_unit, "{var} is read in another unit");
        let value = match self.get(var) {
            None => default,
            Some(raw) => match raw.parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => v,
                _ => {
                    self.problem(var, format!("expected an integer from {min} to {max}"));
                    default
                }
            },
        };
        self.record(var, value.to_string());
        value
    }

    fn integer(&mut self, var: &'static str) -> u64 {
        self.number(var, Unit::Count)
    }

    fn seconds(&mut self, var: &'static str) -> Duration {
        Duration::from_secs(self.number(var, Unit::Seconds))
    }

    fn millis(&mut self, var: &'static str) -> Duration {
        Duration::from_millis(self.number(var, Unit::Millis))
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_source(&ProcessEnv)
    }

    /// Parses every variable, then applies the production refusals. All problems are collected.
    pub fn from_source<S: VarSource + ?Sized>(source: &S) -> Result<Self, SettingsError> {
        let mut r = Reader {
            source,
            problems: Vec::new(),
            effective: Vec::new(),
        };

        let environment = match r.text("ENVIRONMENT").to_ascii_lowercase().as_str() {
            "development" => Environment::Development,
            "staging" => Environment::Staging,
            "production" => Environment::Production,
            _ => {
                r.problem("ENVIRONMENT", "expected development, staging or production");
                Environment::Development
            }
        };

        let root_api_key = r.secret("CA_ROOT_API_KEY");
        if let Some(key) = &root_api_key {
            if key.trim() != key || key.chars().any(char::is_control) {
                r.problem(
                    "CA_ROOT_API_KEY",
                    "expected printable characters without surrounding whitespace",
                );
            }
        }

        let gcp_project_id = r.text("GCP_PROJECT_ID");
        if !valid_project_id(&gcp_project_id) {
            r.problem(
                "GCP_PROJECT_ID",
                "expected 6 to 30 lowercase letters, digits or hyphens, starting with a letter",
            );
        }
        let bigquery_location = r.text("BIGQUERY_LOCATION");
        if !bigquery_location
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
            || bigquery_location.len() > 64
        {
            r.problem(
                "BIGQUERY_LOCATION",
                "expected a BigQuery location such as US, EU or europe-west1",
            );
        }

        let bigquery_emulator_host = r.optional("BIGQUERY_EMULATOR_HOST");
        if let Some(host) = &bigquery_emulator_host {
            if !valid_host_port(host) {
                r.problem(
                    "BIGQUERY_EMULATOR_HOST",
                    "expected host:port, e.g. 127.0.0.1:9050",
                );
            }
        }

        let meta_raw = r.text("META_DATASET");
        let meta_dataset = match DatasetId::parse(&meta_raw) {
            Ok(d) => d,
            Err(_) => {
                r.problem(
                    "META_DATASET",
                    "expected 1 to 1024 letters, digits or underscores",
                );
                DatasetId::parse("organizations").expect("default dataset id is valid")
            }
        };

        let bind_raw = r.text("BIND_ADDR");
        let bind_addr = match bind_raw.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                r.problem("BIND_ADDR", "expected ip:port, e.g. 0.0.0.0:8080");
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };

        let cors_origins: Vec<String> = r
            .text("CORS_ORIGINS")
            .split(',')
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if cors_origins
            .iter()
            .any(|o| o != "*" && !(o.starts_with("http://") || o.starts_with("https://")))
        {
            r.problem(
                "CORS_ORIGINS",
                "expected a comma-separated list of http(s) origins, or *",
            );
        }

        let rate_limit_enabled = r.bool("RATE_LIMIT_ENABLED");
        let disable_auth = r.bool("DISABLE_AUTH");

        let timeouts = Timeouts {
            bigquery_connect: r.seconds("BIGQUERY_CONNECT_TIMEOUT_SECS"),
            bigquery_read: r.seconds("BIGQUERY_READ_TIMEOUT_SECS"),
            bigquery_api: r.seconds("BIGQUERY_API_DEADLINE_SECS"),
            kms: r.seconds("KMS_TIMEOUT_SECS"),
            http_client: r.seconds("HTTP_CLIENT_TIMEOUT_SECS"),
            readiness_probe: r.seconds("READINESS_TIMEOUT_SECS"),
        };
        let bigquery_retry = RetrySettings {
            max_retries: r.integer("BIGQUERY_MAX_RETRIES") as usize,
            base_delay: r.millis("BIGQUERY_RETRY_BASE_MS"),
            max_delay: r.millis("BIGQUERY_RETRY_MAX_MS"),
        };

        let kms_key_name = r.optional("KMS_KEY_NAME");
        if let Some(name) = &kms_key_name {
            if !valid_kms_key_name(name) {
                r.problem(
                    "KMS_KEY_NAME",
                    "expected projects/P/locations/L/keyRings/R/cryptoKeys/K",
                );
            }
        }
        let local_kms_key = match r.secret("LOCAL_KMS_KEY").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(raw) => match decode_key(raw.trim()) {
                Some(key) => Some(key),
                None => {
                    r.problem("LOCAL_KMS_KEY", "expected 32 bytes, base64-encoded");
                    None
                }
            },
        };
        let kms_emulator = r.optional("KMS_EMULATOR_HOST");
        if let Some(host) = &kms_emulator {
            if !valid_host_port(host) {
                r.problem("KMS_EMULATOR_HOST", "expected host:port");
            }
            if environment == Environment::Production {
                r.problem("KMS_EMULATOR_HOST", "must not be set in production");
            }
        }
        let kms = match (kms_key_name, local_kms_key) {
            (Some(key_name), _) => Some(KmsSettings::Cloud {
                key_name,
                emulator: kms_emulator,
            }),
            (None, Some(key)) => Some(KmsSettings::Local { key }),
            (None, None) => None,
        };

        let rate_limits = RateLimits {
            per_minute: r.integer("RATE_LIMIT_PER_MINUTE") as u32,
            admin_per_minute: r.integer("RATE_LIMIT_ADMIN_PER_MINUTE") as u32,
            trigger_per_minute: r.integer("RATE_LIMIT_TRIGGER_PER_MINUTE") as u32,
            failed_auth_per_minute: r.integer("RATE_LIMIT_FAILED_AUTH_PER_MINUTE") as u32,
        };
        let http = HttpLimits {
            max_connections: r.integer("HTTP_MAX_CONNECTIONS") as usize,
            keep_alive: r.seconds("HTTP_KEEP_ALIVE_SECS"),
            head_timeout: r.seconds("HTTP_HEAD_TIMEOUT_SECS"),
            body_timeout: r.seconds("HTTP_BODY_TIMEOUT_SECS"),
            max_bodies_in_flight: r.integer("HTTP_MAX_BODIES_IN_FLIGHT") as usize,
        };
        let log_format = match r.text("LOG_FORMAT").to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            _ => {
                r.problem("LOG_FORMAT", "expected json or pretty");
                LogFormat::Json
            }
        };
        let auth_cache_ttl = r.seconds("AUTH_CACHE_TTL_SECS");
        let last_used_flush = r.seconds("LAST_USED_FLUSH_SECS");
        let executor = ExecutorSettings {
            pipelines_dir: r.text("PIPELINES_DIR").into(),
            sql_dir: r.text("PIPELINE_SQL_DIR").into(),
            shutdown_grace: r.seconds("SHUTDOWN_GRACE_SECS"),
            lease: r.seconds("RUN_LEASE_SECS"),
            heartbeat_interval: r.seconds("HEARTBEAT_INTERVAL_SECS"),
            heartbeat_timeout: r.seconds("HEARTBEAT_TIMEOUT_SECS"),
            reaper_interval: r.seconds("REAPER_INTERVAL_SECS"),
            queue_poll: r.seconds("QUEUE_POLL_SECS"),
            idle_poll_max: r.seconds("IDLE_POLL_MAX_SECS"),
            scheduler_interval: r.seconds("SCHEDULER_INTERVAL_SECS"),
            scheduler_enabled: r.bool("SCHEDULER_ENABLED"),
            log_flush_interval: r.millis("RUN_LOG_FLUSH_MS"),
            concurrent_retry_after_secs: r.integer("CONCURRENT_RETRY_AFTER_SECS"),
        };
        let admission = AdmissionSettings {
            queue_max: r.integer("ADMISSION_QUEUE_MAX") as usize,
            max_batch: r.integer("ADMISSION_MAX_BATCH") as usize,
            timeout: r.seconds("ADMISSION_TIMEOUT_SECS"),
            launch_within: executor.lease.saturating_sub(timeouts.bigquery_api),
        };
        let providers_dir = r.text("PROVIDERS_DIR").into();
        let metrics_org_labels = r.bool("METRICS_ORG_LABELS");
        let price = crate::cost::price::Price::cents_per_tib(r.integer("PRICE_PER_TIB_CENTS"));
        let live = LiveSettings {
            per_org: r.integer("LIVE_STREAMS_PER_ORG") as usize,
            per_instance: r.integer("LIVE_STREAMS_MAX") as usize,
            poll: r.millis("LIVE_POLL_MS"),
        };
        let notify = NotifySettings {
            allow_local_targets: r.bool("NOTIFY_ALLOW_LOCAL_TARGETS"),
            retry_first: r.millis("NOTIFY_RETRY_FIRST_MS"),
            public_base_url: r
                .optional("PUBLIC_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_string()),
        };
        if let Some(url) = &notify.public_base_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                r.problem("PUBLIC_BASE_URL", "expected an http(s) URL");
            }
        }
        if notify.allow_local_targets && environment != Environment::Development {
            r.problem(
                "NOTIFY_ALLOW_LOCAL_TARGETS",
                "must be false outside development (alerts must not reach internal addresses)",
            );
        }
        let mut provider_base_urls = HashMap::new();
        if let Some(raw) = r.optional("PROVIDER_BASE_URLS") {
            for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => {
                        provider_base_urls.insert(name.trim().to_string(), url.trim().to_string());
                    }
                    _ => r.problem(
                        "PROVIDER_BASE_URLS",
                        "expected name=url pairs separated by commas",
                    ),
                }
            }
        }
        // A heartbeat cycle (insert, then the control read) takes at most 2 x timeout; the
        // ticks are at least an interval apart. A run must outlast one lost heartbeat: two
        // cycles between renewals, inside the time it has before it fences itself.
        let (interval, timeout) = (executor.heartbeat_interval, executor.heartbeat_timeout);
        if executor.lease <= interval + timeout + 2 * interval.max(2 * timeout) {
            r.problem(
                "RUN_LEASE_SECS",
                "must exceed HEARTBEAT_INTERVAL_SECS + HEARTBEAT_TIMEOUT_SECS + 2 x \
                 max(HEARTBEAT_INTERVAL_SECS, 2 x HEARTBEAT_TIMEOUT_SECS) (a run survives one \
                 lost heartbeat before it stops itself)",
            );
        }

        // A slot is dated from the batch that admitted it, and a run is launched only while its
        // PENDING insert (one BigQuery deadline) can land within a lease of that batch
        // (`AdmissionSettings::launch_within`): a lease that cannot outlast the deadline would
        // let another instance's reaper free the slot of every run being admitted.
        if executor.lease <= timeouts.bigquery_api {
            r.problem(
                "RUN_LEASE_SECS",
                "must exceed BIGQUERY_API_DEADLINE_SECS (a run just admitted needs that long to \
                 write its first event before a reaper may free its slot)",
            );
        }

        if environment == Environment::Production {
            if !matches!(kms, Some(KmsSettings::Cloud { .. })) {
                r.problem(
                    "KMS_KEY_NAME",
                    "required in production (the local KMS is for development only)",
                );
            }
            match &root_api_key {
                None => r.problem(
                    "CA_ROOT_API_KEY",
                    "required in production (at least 32 characters)",
                ),
                Some(k) if k.chars().count() < MIN_PRODUCTION_ROOT_KEY_LEN => r.problem(
                    "CA_ROOT_API_KEY",
                    "must be at least 32 characters in production",
                ),
                Some(k)
                    if k.chars().collect::<std::collections::HashSet<_>>().len()
                        < MIN_PRODUCTION_ROOT_KEY_DISTINCT =>
                {
                    r.problem(
                        "CA_ROOT_API_KEY",
                        "must have at least 16 distinct characters in production (a random key)",
                    )
                }
                Some(_) => {}
            }
            if disable_auth {
                r.problem("DISABLE_AUTH", "must be false in production");
            }
            if !rate_limit_enabled {
                r.problem("RATE_LIMIT_ENABLED", "must be true in production");
            }
            if cors_origins.iter().any(|o| o == "*") {
                r.problem(
                    "CORS_ORIGINS",
                    "must list explicit origins in production, not *",
                );
            }
            if bigquery_emulator_host.is_some() {
                r.problem(
                    "BIGQUERY_EMULATOR_HOST",
                    "must not be set in production (the emulator is for local use)",
                );
            }
        }

        if kms.is_none() && environment != Environment::Production {
            r.problem(
                "LOCAL_KMS_KEY",
                "set LOCAL_KMS_KEY (32 bytes, base64) or KMS_KEY_NAME; make run writes one",
            );
        }

        if !r.problems.is_empty() {
            return Err(SettingsError(r.problems));
        }
        let kms = kms.expect("checked above");
        Ok(Settings {
            environment,
            root_api_key: root_api_key.map(RootKey),
            gcp_project_id,
            bigquery_location,
            bigquery_emulator_host,
            meta_dataset,
            bind_addr,
            cors_origins,
            rate_limit_enabled,
            disable_auth,
            timeouts,
            bigquery_retry,
            kms,
            rate_limits,
            http,
            log_format,
            auth_cache_ttl,
            last_used_flush,
            executor,
            admission,
            providers_dir,
            provider_base_urls,
            metrics_org_labels,
            price,
            notify,
            live,
            effective: r.effective,
        })
    }
}

impl Settings {
    /// Every setting the service read and its effective value (secrets as their length), in
    /// the order of [`catalog::VARS`], then which KMS seals secrets; for `quarry check-config`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = catalog::VARS
            .iter()
            .filter_map(|v| self.effective.iter().find(|(name, _)| *name == v.name))
            .cloned()
            .collect();
        let kms = match &self.kms {
            KmsSettings::Cloud { key_name, .. } => format!("Cloud KMS {key_name}"),
            KmsSettings::Local { .. } => "local AES-256-GCM (LOCAL_KMS_KEY set, ***)".into(),
        };
        out.push(("KMS", kms));
        out
    }
}

fn valid_kms_key_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "keyRings"
        && parts[6] == "cryptoKeys"
        && [1, 3, 5, 7].iter().all(|&i| {
            !parts[i].is_empty()
                && parts[i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn decode_key(raw: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    use base64::Engine;
    let bytes =
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(raw).ok()?);
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

fn valid_project_id(id: &str) -> bool {
    let len_ok = (6..=30).contains(&id.len());
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    len_ok
        && first_ok
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
}

fn valid_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 zero bytes, base64.
    const LOCAL_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn parse(vars: &[(&'static str, &'static str)]) -> Result<Settings, SettingsError> {
        let mut map: HashMap<&str, &str> = [("LOCAL_KMS_KEY", LOCAL_KEY)].into_iter().collect();
        map.extend(vars.iter().copied());
        Settings::from_source(&map)
    }

    const GOOD_ROOT: &str = "0123456789abcdef0123456789abcdef";

    fn production(extra: &[(&'static str, &'static str)]) -> Result<Settings, SettingsError> {
        let mut vars = vec![
            ("ENVIRONMENT", "production"),
            ("CA_ROOT_API_KEY", GOOD_ROOT),
            ("GCP_PROJECT_ID", "quarry-prod"),
            ("CORS_ORIGINS", "https://app.example.com"),
            (
                "KMS_KEY_NAME",
                "projects/p/locations/global/keyRings/r/cryptoKeys/k",
            ),
            ("LOCAL_KMS_KEY", ""),
        ];
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push((k, v));
        }
        parse(&vars)
    }

    #[test]
    fn every_declared_setting_is_read_and_check_config_shows_each_with_secrets_masked() {
        let s = parse(&[("CA_ROOT_API_KEY", GOOD_ROOT), ("RUN_LEASE_SECS", "600")]).unwrap();
        let shown = s.describe();
        let names: Vec<&str> = shown.iter().map(|(n, _)| *n).collect();
        let declared: Vec<&str> = catalog::VARS
            .iter()
            .filter(|v| !matches!(v.kind, Kind::External(_)))
            .map(|v| v.name)
            .chain(["KMS"])
            .collect();
        assert_eq!(names, declared);
        let value = |name: &str| shown.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(value("CA_ROOT_API_KEY"), "set (*** 32 chars)");
        assert_eq!(value("LOCAL_KMS_KEY"), "set (*** 44 chars)");
        assert_eq!(value("RUN_LEASE_SECS"), "600");
        assert_eq!(value("BIGQUERY_RETRY_MAX_MS"), "10000");
        assert_eq!(value("KMS_KEY_NAME"), "unset");
        assert_eq!(value("CORS_ORIGINS"), "");
        let text = format!("{shown:?}");
        assert!(!text.contains(GOOD_ROOT) && !text.contains(LOCAL_KEY));
    }

    #[test]
    #[should_panic(expected = "NOT_A_SETTING is read but not declared in settings/catalog.rs")]
    fn reading_an_undeclared_variable_is_a_bug() {
        let map: HashMap<&str, &str> = HashMap::new();
        let mut r = Reader {
            source: &map,
            problems: Vec::new(),
            effective: Vec::new(),
        };
        r.integer("NOT_A_SETTING");
    }

    /// `.env.example` and the README's settings table are generated from the catalog; with
    /// `QUARRY_WRITE_SETTINGS_DOCS=1` this test rewrites them instead of failing.
    #[test]
    fn env_example_and_the_readme_settings_table_are_the_catalog() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let write = std::env::var("QUARRY_WRITE_SETTINGS_DOCS").is_ok_and(|v| v == "1");
        let hint = "generated from src/settings/catalog.rs: run \
                    QUARRY_WRITE_SETTINGS_DOCS=1 cargo test --lib settings";

        let env_path = root.join(".env.example");
        let expected_env = catalog::env_example();
        if write {
            std::fs::write(&env_path, &expected_env).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&env_path).unwrap(),
            expected_env,
            ".env.example is {hint}"
        );

        let readme_path = root.join("README.md");
        let readme = std::fs::read_to_string(&readme_path).unwrap();
        let (begin, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
        let start = readme.find(begin).expect("README marks its settings table") + begin.len();
        let stop = readme.find(end).expect("README marks its settings table");
        let expected_table = catalog::readme_table();
        if write {
            let updated = format!("{}{expected_table}{}", &readme[..start], &readme[stop..]);
            std::fs::write(&readme_path, updated).unwrap();
        } else {
            assert_eq!(
                &readme[start..stop],
                expected_table,
                "the README's settings table is {hint}"
            );
        }
    }

    #[test]
    fn defaults_are_development_with_documented_values() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.meta_dataset.as_str(), "organizations");
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.timeouts.bigquery_connect, Duration::from_secs(60));
        assert_eq!(s.timeouts.bigquery_read, Duration::from_secs(300));
        assert_eq!(s.timeouts.kms, Duration::from_secs(30));
        assert_eq!(s.timeouts.http_client, Duration::from_secs(30));
        assert!(s.rate_limit_enabled);
        assert!(!s.disable_auth);
        assert!(s.root_api_key.is_none());
    }

    #[test]
    fn admission_settings_default_and_refuse_out_of_range_values() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.admission.queue_max, 5000);
        assert_eq!(s.admission.max_batch, 1000);
        assert_eq!(s.admission.timeout, Duration::from_secs(20));
        let err = parse(&[
            ("ADMISSION_QUEUE_MAX", "0"),
            ("ADMISSION_MAX_BATCH", "10001"),
            ("ADMISSION_TIMEOUT_SECS", "soon"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 3);
        for var in [
            "ADMISSION_QUEUE_MAX",
            "ADMISSION_MAX_BATCH",
            "ADMISSION_TIMEOUT_SECS",
        ] {
            assert!(err.names(var), "{var}");
        }
    }

    #[test]
    fn a_valid_production_configuration_starts() {
        let s = production(&[]).unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert_eq!(s.root_api_key.unwrap().expose(), GOOD_ROOT);
    }

    #[test]
    fn production_refuses_a_missing_root_key() {
        let err = production(&[("CA_ROOT_API_KEY", "")]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.names("CA_ROOT_API_KEY"));
    }

    #[test]
    fn production_refuses_a_root_key_shorter_than_32_characters() {
        let err =
            production(&[("CA_ROOT_API_KEY", "0123456789abcdef0123456789abcde")]).unwrap_err();
        assert_eq!(
            err.0,
            vec![SettingProblem {
                var: "CA_ROOT_API_KEY",
                expected: "must be at least 32 characters in production".into()
            }]
        );
    }

    #[test]
    fn production_refuses_a_long_root_key_with_few_distinct_characters() {
        let err = production(&[(
            "CA_ROOT_API_KEY",
            "abababababababababababababababababababab",
        )])
        .unwrap_err();
        assert_eq!(
            err.0,
            vec![SettingProblem {
                var: "CA_ROOT_API_KEY",
                expected: "must have at least 16 distinct characters in production (a random key)"
                    .into()
            }]
        );
        let same = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(production(&[("CA_ROOT_API_KEY", same)]).is_err());
        // Development accepts any key (it never leaves the machine).
        assert!(parse(&[("CA_ROOT_API_KEY", same)]).is_ok());
    }

    #[test]
    fn production_refuses_disabled_auth() {
        let err = production(&[("DISABLE_AUTH", "true")]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.names("DISABLE_AUTH"));
    }

    #[test]
    fn production_refuses_disabled_rate_limits() {
        let err = production(&[("RATE_LIMIT_ENABLED", "false")]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.names("RATE_LIMIT_ENABLED"));
    }

    #[test]
    fn production_refuses_a_wildcard_cors_origin() {
        let err = production(&[("CORS_ORIGINS", "https://a.example.com,*")]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.names("CORS_ORIGINS"));
    }

    #[test]
    fn production_refuses_the_emulator() {
        let err = production(&[("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050")]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.names("BIGQUERY_EMULATOR_HOST"));
    }

    #[test]
    fn production_refuses_the_local_kms() {
        let err = production(&[("KMS_KEY_NAME", ""), ("LOCAL_KMS_KEY", LOCAL_KEY)]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.names("KMS_KEY_NAME"));
    }

    #[test]
    fn a_kms_is_required_outside_production_too() {
        let err = parse(&[("LOCAL_KMS_KEY", "")]).unwrap_err();
        assert!(err.names("LOCAL_KMS_KEY"));
    }

    #[test]
    fn a_malformed_local_kms_key_or_key_name_is_refused() {
        let err = parse(&[("LOCAL_KMS_KEY", "c2hvcnQ=")]).unwrap_err();
        assert!(err.names("LOCAL_KMS_KEY"));
        let err = parse(&[("KMS_KEY_NAME", "projects/p/keyRings/r")]).unwrap_err();
        assert!(err.names("KMS_KEY_NAME"));
        assert!(!format!("{err}").contains("c2hvcnQ="));
    }

    #[test]
    fn the_local_kms_key_never_appears_in_debug_output() {
        let s = parse(&[]).unwrap();
        assert!(matches!(s.kms, KmsSettings::Local { .. }));
        assert!(!format!("{s:?}").contains(LOCAL_KEY));
    }

    #[test]
    fn development_allows_what_production_refuses() {
        let s = parse(&[
            ("DISABLE_AUTH", "true"),
            ("RATE_LIMIT_ENABLED", "false"),
            ("CORS_ORIGINS", "*"),
            ("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9050"),
        ])
        .unwrap();
        assert!(s.disable_auth);
        assert_eq!(s.cors_origins, vec!["*".to_string()]);
    }

    #[test]
    fn a_non_integer_timeout_names_the_variable_and_range() {
        let err = parse(&[("BIGQUERY_READ_TIMEOUT_SECS", "soon")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: BIGQUERY_READ_TIMEOUT_SECS: expected an integer from 1 to 3600"
        );
    }

    #[test]
    fn fencing_settings_default_to_a_lease_that_survives_one_lost_heartbeat() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.timeouts.bigquery_api, Duration::from_secs(10));
        assert_eq!(s.executor.heartbeat_timeout, Duration::from_secs(10));
        assert_eq!(s.executor.lease, Duration::from_secs(180));
        // 30 + 10 + 2 x 30 = 100 < 180; 1 + 1 + 2 x 2 = 6 < 7.
        assert!(
            parse(&[
                ("RUN_LEASE_SECS", "7"),
                ("HEARTBEAT_INTERVAL_SECS", "1"),
                ("HEARTBEAT_TIMEOUT_SECS", "1"),
                ("BIGQUERY_API_DEADLINE_SECS", "3"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_heartbeat_timeout_that_does_not_fit_in_the_lease_is_refused() {
        // 1 + 1 + 2 x max(1, 2) = 6: a lease of 6 leaves no room for a lost heartbeat.
        let err = parse(&[
            ("RUN_LEASE_SECS", "6"),
            ("HEARTBEAT_INTERVAL_SECS", "1"),
            ("HEARTBEAT_TIMEOUT_SECS", "1"),
            ("BIGQUERY_API_DEADLINE_SECS", "2"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: RUN_LEASE_SECS: must exceed HEARTBEAT_INTERVAL_SECS + \
             HEARTBEAT_TIMEOUT_SECS + 2 x max(HEARTBEAT_INTERVAL_SECS, 2 x HEARTBEAT_TIMEOUT_SECS) \
             (a run survives one lost heartbeat before it stops itself)"
        );
        let err = parse(&[("BIGQUERY_API_DEADLINE_SECS", "0")]).unwrap_err();
        assert!(err.names("BIGQUERY_API_DEADLINE_SECS"));
    }

    #[test]
    fn a_lease_that_cannot_outlast_the_api_deadline_is_refused() {
        let short_heartbeats = [
            ("HEARTBEAT_INTERVAL_SECS", "1"),
            ("HEARTBEAT_TIMEOUT_SECS", "1"),
        ];
        let err = parse(&[
            ("RUN_LEASE_SECS", "10"),
            ("BIGQUERY_API_DEADLINE_SECS", "10"),
            short_heartbeats[0],
            short_heartbeats[1],
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: RUN_LEASE_SECS: must exceed BIGQUERY_API_DEADLINE_SECS (a \
             run just admitted needs that long to write its first event before a reaper may free \
             its slot)"
        );
        let s = parse(&[
            ("RUN_LEASE_SECS", "17"),
            ("BIGQUERY_API_DEADLINE_SECS", "10"),
            short_heartbeats[0],
            short_heartbeats[1],
        ])
        .unwrap();
        assert_eq!(s.admission.launch_within, Duration::from_secs(7));
        assert_eq!(
            parse(&[]).unwrap().admission.launch_within,
            Duration::from_secs(170)
        );
    }

    #[test]
    fn the_log_format_is_json_unless_pretty_is_asked_for() {
        assert_eq!(parse(&[]).unwrap().log_format, LogFormat::Json);
        assert_eq!(
            parse(&[("LOG_FORMAT", "pretty")]).unwrap().log_format,
            LogFormat::Pretty
        );
        let err = parse(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: LOG_FORMAT: expected json or pretty"
        );
    }

    #[test]
    fn an_out_of_range_timeout_is_refused() {
        let err = parse(&[("BIGQUERY_CONNECT_TIMEOUT_SECS", "0")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: BIGQUERY_CONNECT_TIMEOUT_SECS: expected an integer from 1 to 600"
        );
        let err = parse(&[("BIGQUERY_MAX_RETRIES", "11")]).unwrap_err();
        assert!(err.names("BIGQUERY_MAX_RETRIES"));
    }

    #[test]
    fn malformed_values_of_every_kind_are_reported_together() {
        let err = parse(&[
            ("ENVIRONMENT", "prod"),
            ("RATE_LIMIT_ENABLED", "maybe"),
            ("BIND_ADDR", "localhost"),
            ("META_DATASET", "bad-name"),
            ("BIGQUERY_EMULATOR_HOST", "no-port"),
            ("CORS_ORIGINS", "ftp://x"),
            ("GCP_PROJECT_ID", "X"),
        ])
        .unwrap_err();
        for var in [
            "ENVIRONMENT",
            "RATE_LIMIT_ENABLED",
            "BIND_ADDR",
            "META_DATASET",
            "BIGQUERY_EMULATOR_HOST",
            "CORS_ORIGINS",
            "GCP_PROJECT_ID",
        ] {
            assert!(err.names(var), "{var} not reported in {err}");
        }
        assert_eq!(err.0.len(), 7);
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn the_root_key_never_appears_in_debug_output() {
        let s = production(&[]).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains(GOOD_ROOT));
        assert!(debug.contains("RootKey(***, 32 chars)"));
    }

    #[test]
    fn a_setting_error_never_repeats_the_value() {
        let err = parse(&[("BIGQUERY_READ_TIMEOUT_SECS", "s3cr3t-value")]).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-value"));
    }
}
