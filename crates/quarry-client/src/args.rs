//! The client's commands as clap sees them. No command takes a key as an argument.

use clap::{Args, Subcommand};

use super::output::Format;

/// Options every client command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// table (for people) or json (the service's answer, for scripts).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// A profile of the profile file (default: QUARRY_PROFILE, else [default]).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// The service's address (default: QUARRY_URL, the profile's url, else http://127.0.0.1:8080).
    #[arg(long, global = true)]
    pub url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Pipeline runs: trigger, list, show, watch, cancel, re-run.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Schedules declared by the catalog, and the org's state of each.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Backfills: one run per day of a date range.
    #[command(subcommand)]
    Backfill(BackfillCommand),
    /// The org's API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The org's quota and what it uses now.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Alert channels (signed webhooks, Slack) and their deliveries.
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// Organizations (root key).
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Creates or updates the meta dataset and tables (root key).
    Bootstrap {
        /// Only report NOT_BOOTSTRAPPED, SYNCED or OUT_OF_SYNC.
        #[arg(long)]
        status: bool,
    },
    /// Saves a profile (url and a key read from standard input) with mode 0600.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Starts a run; --wait follows it to its end (exit code 0 only for SUCCEEDED).
    Trigger {
        org: String,
        pipeline: String,
        /// A parameter as name=value (repeatable); typed by the pipeline's declaration.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Wait in the org's queue when its slots are busy instead of being refused.
        #[arg(long)]
        queue: bool,
        /// Follow the run until it ends.
        #[arg(long)]
        wait: bool,
        /// Makes a retried trigger start one run only.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The org's runs, newest first (the API's filters).
    List {
        org: String,
        /// A status or a comma-separated list (QUEUED, PENDING, RUNNING, SUCCEEDED, ...).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        pipeline: Option<String>,
        /// api, retry, rerun, schedule or backfill.
        #[arg(long)]
        trigger: Option<String>,
        /// RFC 3339; runs created at or after (default: 7 days ago).
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339; runs created before.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The token a previous page printed.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// A run and its step attempts.
    Show { org: String, run: String },
    /// Follows a run's steps until it ends; exit code 0 only for SUCCEEDED.
    Watch {
        org: String,
        run: String,
        /// Seconds between looks (each look reads the run and its steps).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
        interval: u64,
    },
    /// Cancels a queued or running run.
    Cancel { org: String, run: String },
    /// Re-runs an ended run from its failed steps.
    Rerun {
        org: String,
        run: String,
        /// New parameter values as name=value (default: the original's).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule of the catalog with the org's state and next tick.
    List { org: String },
    /// Enables a schedule (pipeline/name, as listed) with the org's parameter values.
    Enable {
        org: String,
        schedule: String,
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Pauses an active schedule.
    Pause { org: String, schedule: String },
    /// Resumes a paused schedule.
    Resume { org: String, schedule: String },
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// One run per day from --from to --to, at most --max-parallel at once.
    Start {
        org: String,
        pipeline: String,
        /// The DATE parameter each day's run gets.
        #[arg(long, default_value = "day")]
        parameter: String,
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: String,
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: String,
        #[arg(long, default_value_t = 1)]
        max_parallel: u32,
        /// Other parameters as name=value.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// A backfill's days and their runs.
    Show { org: String, backfill: String },
    /// Stops a backfill and cancels its waiting and running runs.
    Cancel { org: String, backfill: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    List {
        org: String,
    },
    /// Issues a new key (shown once); the old one keeps working for the grace period.
    Rotate {
        org: String,
        #[arg(long, default_value_t = 3600)]
        grace_period_seconds: u64,
    },
    Revoke {
        org: String,
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// The org's channels (each URL as scheme and host only).
    List { org: String },
    /// Adds a channel; a webhook's signing secret is shown once.
    Add {
        org: String,
        /// webhook (JSON, signed) or slack (a Slack incoming webhook).
        #[arg(long, value_parser = ["webhook", "slack"])]
        kind: String,
        /// Where to deliver (https); `--url` is the service's address.
        #[arg(long = "to", value_name = "URL")]
        to: String,
        /// An event to deliver (repeatable; default: every end but success, and deadlines).
        #[arg(long = "event", value_name = "EVENT")]
        events: Vec<String>,
        /// Only runs of this pipeline (repeatable; default: all).
        #[arg(long = "pipeline", value_name = "PIPELINE")]
        pipelines: Vec<String>,
        /// schedule.late: a scheduled run starting more than this after its tick (default 300).
        #[arg(long = "late-after", value_name = "SECONDS")]
        late_after: Option<i64>,
        /// run.queued_too_long: a run still queued this long after it was queued (default 600).
        #[arg(long = "queued-after", value_name = "SECONDS")]
        queued_after: Option<i64>,
    },
    /// Deletes a channel.
    Delete { org: String, channel: String },
    /// Sends a test alert to a channel now.
    Test { org: String, channel: String },
    /// The last 7 days' deliveries, the last attempt of each.
    Deliveries { org: String },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Limits, runs today and this month, slots in use and the queue.
    Show { org: String },
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Creates an org, its dataset, quota and first key (shown once).
    Onboard {
        org: String,
        #[arg(long)]
        company: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "STARTER")]
        plan: String,
    },
    List,
    Suspend {
        org: String,
    },
    Reactivate {
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Reads a key from standard input and saves it with --url under NAME.
    Save {
        name: String,
        /// The key read is the root key (default: an org key).
        #[arg(long)]
        root: bool,
    },
}
