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
    #[command(allow_missing_positional = true)]
    Trigger {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The pipeline's id, e.g. samples/usage_seed (`pipelines list`).
        pipeline: String,
        /// A parameter as name=value (repeatable); typed by the pipeline's declaration.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Wait in the org's queue when its slots are busy instead of being refused.
        #[arg(long)]
        queue: bool,
        /// Follow the run's steps until it ends (exit code 0 only for SUCCEEDED).
        #[arg(long)]
        wait: bool,
        /// Makes a retried trigger start one run only.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The org's runs, newest first (the API's filters).
    List {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// A status or a comma-separated list (QUEUED, PENDING, RUNNING, SUCCEEDED, ...).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this pipeline id.
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
        /// Runs per page (1-100; default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// The token a previous page printed.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// A run and its step attempts.
    #[command(allow_missing_positional = true)]
    Show {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The run's id (as `runs trigger` or `runs list` printed it).
        run: String,
    },
    /// Follows a run's steps until it ends; exit code 0 only for SUCCEEDED.
    #[command(allow_missing_positional = true)]
    Watch {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The run's id (as `runs trigger` or `runs list` printed it).
        run: String,
        /// Seconds between looks when the service cannot push the run's changes (each look
        /// reads the run and its steps).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
        interval: u64,
    },
    /// Cancels a queued or running run.
    #[command(allow_missing_positional = true)]
    Cancel {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The run's id (as `runs trigger` or `runs list` printed it).
        run: String,
    },
    /// Re-runs an ended run from its failed steps.
    #[command(allow_missing_positional = true)]
    Rerun {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The run's id (as `runs trigger` or `runs list` printed it).
        run: String,
        /// New parameter values as name=value (default: the original's).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Follow the new run's steps until it ends (exit code 0 only for SUCCEEDED).
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule of the catalog with the org's state and next tick.
    List {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
    },
    /// Enables a schedule (pipeline/name, as listed) with the org's parameter values.
    #[command(allow_missing_positional = true)]
    Enable {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The schedule as `schedules list` prints it: pipeline_id/name.
        schedule: String,
        /// The org's own value for a parameter as name=value (repeatable; wins over the
        /// schedule's template).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Pauses an active schedule.
    #[command(allow_missing_positional = true)]
    Pause {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The schedule as `schedules list` prints it: pipeline_id/name.
        schedule: String,
    },
    /// Resumes a paused schedule.
    #[command(allow_missing_positional = true)]
    Resume {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The schedule as `schedules list` prints it: pipeline_id/name.
        schedule: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// One run per day from --from to --to, at most --max-parallel at once.
    #[command(allow_missing_positional = true)]
    Start {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The pipeline's id, e.g. samples/usage_seed (`pipelines list`).
        pipeline: String,
        /// The DATE parameter each day's run gets.
        #[arg(long, default_value = "day")]
        parameter: String,
        /// The first day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: String,
        /// The last day (at most 366 days after --from).
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: String,
        /// Days running at once (1 to the org's concurrent limit).
        #[arg(long, default_value_t = 1)]
        max_parallel: u32,
        /// Other parameters as name=value.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// A backfill's days and their runs.
    #[command(allow_missing_positional = true)]
    Show {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The backfill's id (as `backfill start` printed it).
        backfill: String,
    },
    /// Stops a backfill and cancels its waiting and running runs.
    #[command(allow_missing_positional = true)]
    Cancel {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The backfill's id (as `backfill start` printed it).
        backfill: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// The org's keys (ids, prefixes, scopes, status; never a key).
    List {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
    },
    /// Issues a new key (shown once); the old one keeps working for the grace period.
    Rotate {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// How long the old key keeps working (0 revokes it at once).
        #[arg(long, default_value_t = 3600)]
        grace_period_seconds: u64,
        /// A name for the new key, shown with its id as the actor of what it does.
        #[arg(long)]
        name: Option<String>,
    },
    /// Revokes a key at once.
    #[command(allow_missing_positional = true)]
    Revoke {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The key's id (as `keys list` prints it).
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// The org's channels (each URL as scheme and host only).
    List {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
    },
    /// Adds a channel; a webhook's signing secret is shown once.
    Add {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
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
    #[command(allow_missing_positional = true)]
    Delete {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The channel's id (as `notifications list` prints it).
        channel: String,
    },
    /// Sends a test alert to a channel now.
    #[command(allow_missing_positional = true)]
    Test {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
        /// The channel's id (as `notifications list` prints it).
        channel: String,
    },
    /// The last 7 days' deliveries, the last attempt of each.
    Deliveries {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Limits, runs today and this month, slots in use and the queue.
    Show {
        /// The org's slug (default: the org key's own org; the root key must name one).
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Creates an org, its dataset, quota and first key (shown once).
    Onboard {
        /// The org's slug (an org key may only name its own org).
        org: String,
        /// The company's name.
        #[arg(long)]
        company: String,
        /// The admin contact's email.
        #[arg(long)]
        email: String,
        /// STARTER, PROFESSIONAL, SCALE or ENTERPRISE (sets the quota's defaults).
        #[arg(long, default_value = "STARTER")]
        plan: String,
        /// A name for the org's first key, shown with its id as the actor of what it does.
        #[arg(long)]
        key_name: Option<String>,
    },
    /// Every org with its plan and status.
    List,
    /// Suspends an org: its keys stop working until it is reactivated.
    Suspend {
        /// The org's slug (an org key may only name its own org).
        org: String,
    },
    /// Reactivates a suspended org.
    Reactivate {
        /// The org's slug (an org key may only name its own org).
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Reads a key from standard input and saves it with --url under NAME.
    Save {
        /// The profile's name (used with --profile or QUARRY_PROFILE).
        name: String,
        /// The key read is the root key (default: an org key).
        #[arg(long)]
        root: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Client {
        #[command(flatten)]
        global: super::Global,
        #[command(subcommand)]
        command: super::ClientCommand,
    }

    /// Every argument of `cmd` and its subcommands without a help text, as `path: arg`.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                out.push(format!("{path}: {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_name() != "help" {
                out.push(format!("{path} {}: (no about)", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn the_client_commands_pass_claps_own_checks() {
        Client::command().debug_assert();
    }

    fn parse(line: &str) -> super::ClientCommand {
        Client::try_parse_from(line.split_whitespace())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
    }

    #[test]
    fn the_org_may_be_left_out_before_a_commands_other_arguments_and_is_taken_when_given() {
        use super::{ClientCommand::*, KeysCommand, RunsCommand, SchedulesCommand};
        match parse("quarry runs trigger samples/usage_seed --wait") {
            Runs(RunsCommand::Trigger { org, pipeline, .. }) => {
                assert_eq!((org, pipeline.as_str()), (None, "samples/usage_seed"))
            }
            other => panic!("{other:?}"),
        }
        match parse("quarry runs trigger acme samples/usage_seed") {
            Runs(RunsCommand::Trigger { org, pipeline, .. }) => assert_eq!(
                (org.as_deref(), pipeline.as_str()),
                (Some("acme"), "samples/usage_seed")
            ),
            other => panic!("{other:?}"),
        }
        match parse("quarry schedules pause samples/usage_seed/hourly") {
            Schedules(SchedulesCommand::Pause { org, schedule }) => {
                assert_eq!(
                    (org, schedule.as_str()),
                    (None, "samples/usage_seed/hourly")
                )
            }
            other => panic!("{other:?}"),
        }
        match parse("quarry keys list") {
            Keys(KeysCommand::List { org }) => assert_eq!(org, None),
            other => panic!("{other:?}"),
        }
        // What needs the other argument still says so when both are left out.
        let error = Client::try_parse_from(["quarry", "runs", "show"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        // Admin commands name their org always.
        let error = Client::try_parse_from(["quarry", "orgs", "suspend"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn every_command_and_argument_of_the_client_has_a_help_text() {
        let mut missing = Vec::new();
        undocumented(&Client::command(), "quarry", &mut missing);
        assert_eq!(missing, Vec::<String>::new());
    }
}
