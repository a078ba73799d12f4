//! Every variable the service reads, declared once: its kind, default, range and what it does.
//!
//! This list drives the parsing (`Settings::from_source` reads a variable only through it, and
//! reading one not declared here is a bug a unit test catches), `quarry check-config` (it prints
//! every variable read, secrets masked), `.env.example` and the README's settings table (both
//! generated from it; a unit test fails when they differ, and
//! `QUARRY_WRITE_SETTINGS_DOCS=1 cargo test --lib settings` rewrites them). Adding a setting is
//! one entry here plus the line of `from_source` that reads it into its field.

/// How a variable is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text with this default; `from_source` checks its form.
    Text(&'static str),
    /// Unset unless given; `from_source` checks its form.
    Optional,
    /// Never printed: check-config shows whether it is set and its length.
    Secret,
    Bool(bool),
    Integer {
        default: u64,
        min: u64,
        max: u64,
        unit: Unit,
    },
    /// Read by something other than `Settings` (the log filter reads `RUST_LOG`).
    External(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Millis,
}

#[derive(Debug)]
pub struct Var {
    pub name: &'static str,
    pub kind: Kind,
    /// What it does and what it accepts beyond its range, for the README and `.env.example`.
    pub doc: &'static str,
    /// The value `.env.example` shows when it is not the default (a placeholder, or what
    /// `make run` uses).
    pub example: Option<&'static str>,
}

const fn var(name: &'static str, kind: Kind, doc: &'static str) -> Var {
    Var {
        name,
        kind,
        doc,
        example: None,
    }
}

const fn int(default: u64, min: u64, max: u64) -> Kind {
    Kind::Integer {
        default,
        min,
        max,
        unit: Unit::Count,
    }
}

const fn secs(default: u64, min: u64, max: u64) -> Kind {
    Kind::Integer {
        default,
        min,
        max,
        unit: Unit::Seconds,
    }
}

const fn millis(default: u64, min: u64, max: u64) -> Kind {
    Kind::Integer {
        default,
        min,
        max,
        unit: Unit::Millis,
    }
}

pub const VARS: &[Var] = &[
    var(
        "ENVIRONMENT",
        Kind::Text("development"),
        "`development`, `staging` or `production` (production refuses unsafe values)",
    ),
    Var {
        example: Some("change-me-to-at-least-32-random-characters"),
        ..var(
            "CA_ROOT_API_KEY",
            Kind::Secret,
            "the admin key, sent as `X-CA-Root-Key` (unset: admin routes refuse every call); in production 32+ characters with 16+ distinct ones; from the environment only, never stored",
        )
    },
    var(
        "GCP_PROJECT_ID",
        Kind::Text("quarry-local"),
        "a GCP project id",
    ),
    var(
        "BIGQUERY_LOCATION",
        Kind::Text("US"),
        "a BigQuery location such as `US`, `EU` or `europe-west1`",
    ),
    Var {
        example: Some("127.0.0.1:9050"),
        ..var(
            "BIGQUERY_EMULATOR_HOST",
            Kind::Optional,
            "`host:port` of a local emulator: no credentials, plain HTTP (unset: Google, with Application Default Credentials); refused in production",
        )
    },
    var(
        "META_DATASET",
        Kind::Text("organizations"),
        "the meta dataset: letters, digits, underscores",
    ),
    var(
        "BIND_ADDR",
        Kind::Text("127.0.0.1:8080"),
        "`ip:port` to listen on (`0` picks a free port)",
    ),
    var(
        "CORS_ORIGINS",
        Kind::Text(""),
        "comma-separated `http(s)://` origins (empty: no cross-origin access), or `*` (any, never with credentials; refused in production)",
    ),
    var(
        "RATE_LIMIT_ENABLED",
        Kind::Bool(true),
        "rate limits on; must be true in production",
    ),
    var(
        "DISABLE_AUTH",
        Kind::Bool(false),
        "takes effect in development only; must be false in production",
    ),
    var(
        "BIGQUERY_CONNECT_TIMEOUT_SECS",
        secs(60, 1, 600),
        "connecting to BigQuery",
    ),
    var(
        "BIGQUERY_READ_TIMEOUT_SECS",
        secs(300, 1, 3600),
        "one BigQuery response of a step's SQL",
    ),
    var(
        "BIGQUERY_API_DEADLINE_SECS",
        secs(10, 1, 300),
        "each BigQuery call of an API request or of bookkeeping, retries included (503 past it)",
    ),
    var("KMS_TIMEOUT_SECS", secs(30, 1, 300), "one KMS call"),
    var(
        "HTTP_CLIENT_TIMEOUT_SECS",
        secs(30, 1, 300),
        "one call to a provider",
    ),
    var(
        "READINESS_TIMEOUT_SECS",
        secs(5, 1, 60),
        "the readiness probe's BigQuery call",
    ),
    var(
        "BIGQUERY_MAX_RETRIES",
        int(5, 0, 10),
        "retries of transient BigQuery failures (jittered exponential backoff)",
    ),
    var(
        "BIGQUERY_RETRY_BASE_MS",
        millis(200, 1, 10_000),
        "first backoff of a retry",
    ),
    var(
        "BIGQUERY_RETRY_MAX_MS",
        millis(10_000, 1, 120_000),
        "longest backoff of a retry",
    ),
    Var {
        example: Some("projects/P/locations/L/keyRings/R/cryptoKeys/K"),
        ..var(
            "KMS_KEY_NAME",
            Kind::Optional,
            "Cloud KMS key, `projects/P/locations/L/keyRings/R/cryptoKeys/K`; required in production",
        )
    },
    var(
        "LOCAL_KMS_KEY",
        Kind::Secret,
        "32 bytes, base64: local AES-256-GCM sealing (development and tests; `make run` writes one to `.env.local`); refused in production",
    ),
    var(
        "KMS_EMULATOR_HOST",
        Kind::Optional,
        "`host:port` of a plain gRPC KMS endpoint used with `KMS_KEY_NAME` instead of Google (tests); refused in production",
    ),
    var(
        "RATE_LIMIT_PER_MINUTE",
        int(600, 1, 1_000_000),
        "requests per org (or root) per minute, per instance",
    ),
    var(
        "RATE_LIMIT_ADMIN_PER_MINUTE",
        int(10, 1, 1_000_000),
        "bootstrap, onboarding and dry runs per minute",
    ),
    var(
        "RATE_LIMIT_TRIGGER_PER_MINUTE",
        int(60, 1, 1_000_000),
        "pipeline triggers per org per minute",
    ),
    var(
        "RATE_LIMIT_FAILED_AUTH_PER_MINUTE",
        int(30, 1, 1_000_000),
        "failed authentications per client IP per minute; past it, 429 instead of 401",
    ),
    var(
        "HTTP_MAX_CONNECTIONS",
        int(1000, 1, 100_000),
        "open connections per worker (one worker per CPU)",
    ),
    var(
        "HTTP_KEEP_ALIVE_SECS",
        secs(620, 1, 3600),
        "an idle client connection stays open this long; keep it above the load balancer's idle timeout (600 s on Google's), else the balancer sends on connections the service is closing and answers 502",
    ),
    var(
        "HTTP_HEAD_TIMEOUT_SECS",
        secs(5, 1, 300),
        "a request head must arrive within this",
    ),
    var(
        "HTTP_BODY_TIMEOUT_SECS",
        secs(10, 1, 300),
        "then its body within this",
    ),
    var(
        "HTTP_MAX_BODIES_IN_FLIGHT",
        int(64, 1, 10_000),
        "bodies being read at once (each at most 1 MiB); past it 503",
    ),
    var(
        "LOG_FORMAT",
        Kind::Text("json"),
        "`json` lines, or `pretty` human-readable lines for a terminal (`make run` uses it)",
    ),
    var(
        "AUTH_CACHE_TTL_SECS",
        secs(30, 0, 3600),
        "how long a valid API key stays cached per instance (0 disables the cache); bounds how long a revoked key works on other instances",
    ),
    var(
        "LAST_USED_FLUSH_SECS",
        secs(60, 1, 3600),
        "how often `last_used_at` of used keys is written (one statement for all of them)",
    ),
    var(
        "PIPELINES_DIR",
        Kind::Text("pipelines"),
        "where pipeline definitions live",
    ),
    var(
        "PIPELINE_SQL_DIR",
        Kind::Text("sql"),
        "where their SQL lives (under `pipelines/` of it)",
    ),
    var(
        "SHUTDOWN_GRACE_SECS",
        secs(4, 0, 3600),
        "how long SIGTERM lets runs finish (then up to 5 s of cleanup: keep the sum under the platform's SIGKILL window)",
    ),
    var(
        "RUN_LEASE_SECS",
        secs(180, 2, 86_400),
        "a run without heartbeat, event or admission this long is orphaned; must exceed interval + timeout + 2 x max(interval, 2 x timeout) of the heartbeat, and BIGQUERY_API_DEADLINE_SECS (a run decided later than the difference after its batch is not launched)",
    ),
    var(
        "HEARTBEAT_INTERVAL_SECS",
        secs(30, 1, 3600),
        "how often a run's lease is renewed",
    ),
    var(
        "HEARTBEAT_TIMEOUT_SECS",
        secs(10, 1, 600),
        "one heartbeat insert (and the control read after it) at most",
    ),
    var(
        "REAPER_INTERVAL_SECS",
        secs(60, 1, 3600),
        "how often stale runs are looked for",
    ),
    var(
        "QUEUE_POLL_SECS",
        secs(5, 1, 300),
        "how often an instance looks for queues beside free slots and drains them",
    ),
    var(
        "SCHEDULER_INTERVAL_SECS",
        secs(10, 1, 300),
        "how often the scheduler looks for due ticks and backfill days (`make run`: 2)",
    ),
    var(
        "IDLE_POLL_MAX_SECS",
        secs(60, 1, 3600),
        "while the queue poll and the scheduler find nothing, each waits twice as long as the last time, up to this (a schedule enabled or a backfill started here wakes the scheduler at once)",
    ),
    var(
        "SCHEDULER_ENABLED",
        Kind::Bool(true),
        "whether this instance runs the scheduler",
    ),
    var(
        "RUN_LOG_FLUSH_MS",
        millis(1000, 10, 60_000),
        "longest wait of a buffered log row",
    ),
    var(
        "CONCURRENT_RETRY_AFTER_SECS",
        int(10, 1, 3600),
        "Retry-After of a concurrency refusal",
    ),
    var(
        "ADMISSION_QUEUE_MAX",
        int(5000, 1, 1_000_000),
        "reservations waiting for the admission coordinator's next batch; past it, 503",
    ),
    var(
        "ADMISSION_MAX_BATCH",
        int(1000, 1, 10_000),
        "reservations and releases in one statement",
    ),
    var(
        "ADMISSION_TIMEOUT_SECS",
        secs(20, 1, 600),
        "a trigger without a decision by then gets 503 (its slot, if taken, is released)",
    ),
    var(
        "PROVIDERS_DIR",
        Kind::Text("providers"),
        "where provider definitions live",
    ),
    var(
        "PRICE_PER_TIB_CENTS",
        int(625, 0, 1_000_000),
        "BigQuery's price of a TiB billed, in US cents (625: 6.25 USD on demand): the estimated costs shown beside billed bytes",
    ),
    var(
        "METRICS_ORG_LABELS",
        Kind::Bool(false),
        "org slug label on run metrics (cardinality)",
    ),
    var(
        "PROVIDER_BASE_URLS",
        Kind::Optional,
        "`name=url` pairs, comma-separated, overriding provider base URLs (`name:token=url` for a token URL); http only outside production",
    ),
    var(
        "LIVE_POLL_MS",
        millis(1000, 100, 60_000),
        "how often an instance reads the runs somebody watches (`…/runs/{run_id}/events`) or looked at in the last 30 s (`GET …/runs/{run_id}`, `…/steps`): one query for all of them and their steps, whatever the number of runs and watchers; sooner, up to 4 times as often, while looks wait for a read that started after they arrived; the run lists' first pages asked in the last 30 s are read again every two intervals (one query per filter for every org) and answered while their read ended within three",
    ),
    var(
        "LIVE_STREAMS_MAX",
        int(1000, 1, 100_000),
        "open run event streams one instance holds in all; past it 503 with Retry-After",
    ),
    var(
        "LIVE_STREAMS_PER_ORG",
        int(100, 1, 100_000),
        "open run event streams one instance holds per org; past it 503 with Retry-After",
    ),
    var(
        "NOTIFY_ALLOW_LOCAL_TARGETS",
        Kind::Bool(false),
        "let notification channels use http and loopback or private addresses (local receivers; refused in staging and production)",
    ),
    var(
        "NOTIFY_RETRY_FIRST_MS",
        millis(5000, 10, 600_000),
        "wait before a failed alert delivery's first retry; each next wait is 6 times longer, up to 8 hours, 9 attempts in all (about a day)",
    ),
    var(
        "PUBLIC_BASE_URL",
        Kind::Optional,
        "the service's public URL (`https://quarry.example.com`), for the links in alerts; links are paths without it",
    ),
    var(
        "RUST_LOG",
        Kind::External("info"),
        "log filter (tracing `EnvFilter` syntax)",
    ),
];

/// The declaration of `name`. Reading an undeclared variable is a bug: it panics, and the unit
/// tests, which read every variable, catch it.
pub fn declared(name: &str) -> &'static Var {
    VARS.iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is read but not declared in settings/catalog.rs"))
}

impl Var {
    /// The default as the README shows it.
    pub fn default_text(&self) -> String {
        match self.kind {
            Kind::Text("") => "empty".into(),
            Kind::Text(d) | Kind::External(d) => format!("`{d}`"),
            Kind::Optional | Kind::Secret => "unset".into(),
            Kind::Bool(b) => format!("`{b}`"),
            Kind::Integer { default, .. } => format!("`{default}`"),
        }
    }

    /// What it accepts, as the README shows it: the range (with its unit), then the doc.
    pub fn accepted_text(&self) -> String {
        match self.kind {
            Kind::Integer { min, max, unit, .. } => {
                let unit = match unit {
                    Unit::Count => "",
                    Unit::Seconds => " s",
                    Unit::Millis => " ms",
                };
                format!("{min}–{max}{unit}: {}", self.doc)
            }
            Kind::Bool(_) => format!("`true`/`false`: {}", self.doc),
            _ => self.doc.to_string(),
        }
    }

    /// The value `.env.example` assigns.
    fn example_value(&self) -> Option<String> {
        if let Some(e) = self.example {
            return Some(e.to_string());
        }
        match self.kind {
            Kind::Text(d) | Kind::External(d) => Some(d.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Integer { default, .. } => Some(default.to_string()),
            Kind::Optional | Kind::Secret => None,
        }
    }
}

/// `.env.example`, as generated from [`VARS`].
pub fn env_example() -> String {
    let mut out = String::from(
        "# Quarry settings, generated from src/settings/catalog.rs (edit it there, then run\n\
         # QUARRY_WRITE_SETTINGS_DOCS=1 cargo test --lib settings). Every variable is optional in\n\
         # development; production refuses to start without CA_ROOT_API_KEY (32+ characters) and\n\
         # refuses unsafe values. make run writes .env.local with a development root key and a\n\
         # local KMS key; copy lines from here to override.\n",
    );
    for v in VARS {
        let doc = v.accepted_text().replace('`', "");
        out.push_str(&format!("\n# {doc}\n"));
        match v.example_value() {
            Some(value) => out.push_str(&format!("{}={value}\n", v.name)),
            None => out.push_str(&format!("# {}=\n", v.name)),
        }
    }
    out
}

/// The README's settings table, as generated from [`VARS`].
pub fn readme_table() -> String {
    let mut out = String::from("| Variable | Default | Accepted |\n|---|---|---|\n");
    for v in VARS {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            v.name,
            v.default_text(),
            v.accepted_text()
        ));
    }
    out
}
