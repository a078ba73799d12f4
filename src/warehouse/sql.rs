//! The statement registry: every SQL text the service can run, loaded from `sql/` at compile
//! time. A [`Statement`] can only be built here, from a file, so no code path can hand the
//! warehouse SQL assembled from user input.
//!
//! Table names cannot be query parameters, and the BigQuery emulator ignores `defaultDataset`,
//! so statements name their tables as `` `__META_DATASET__.table` ``. The token is replaced by
//! the configured [`DatasetId`] (a parsed identifier: letters, digits, underscores), never by a
//! request value. Values always travel as `@named` parameters.

use crate::domain::DatasetId;

use super::JobKind;

/// The token in SQL files that stands for the meta dataset.
pub const META_DATASET_TOKEN: &str = "__META_DATASET__";
/// The token in pipeline SQL that stands for the triggering org's own dataset.
pub const ORG_DATASET_TOKEN: &str = "__ORG_DATASET__";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    file: &'static str,
    text: &'static str,
}

impl Statement {
    /// The file under `sql/` this statement came from (for logs: never the rendered text).
    pub fn file(&self) -> &'static str {
        self.file
    }

    pub fn text(&self) -> &'static str {
        self.text
    }

    /// DML when the first keyword (after comments) is INSERT, UPDATE, DELETE or MERGE.
    pub fn kind(&self) -> JobKind {
        super::kind_of(self.text)
    }

    pub(crate) fn render(&self, meta: &DatasetId) -> String {
        self.text.replace(META_DATASET_TOKEN, meta.as_str())
    }
}

/// The SQL of one pipeline step, rendered for one org. Only the pipeline catalog builds these,
/// from files it loaded and validated at start-up; the only substitution is the org's dataset
/// id (a parsed identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStatement {
    file: String,
    text: String,
}

impl PipelineStatement {
    pub(crate) fn render(file: &str, template: &str, org_dataset: &DatasetId) -> Self {
        Self {
            file: file.to_string(),
            text: template.replace(ORG_DATASET_TOKEN, org_dataset.as_str()),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident => $file:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $name: Statement = Statement {
                file: $file,
                text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/", $file)),
            };
        )*
        /// Every registered statement, for the lint test and for start-up checks.
        pub const ALL: &[Statement] = &[$($name),*];
    };
}

statements! {
    /// Auth: the key with a given hash, with its org's status.
    KEY_BY_HASH => "auth/key_by_hash.sql";
    KEY_INSERT => "keys/insert.sql";
    KEYS_BY_ORG => "keys/list_by_org.sql";
    KEY_ENCRYPTED_BY_ID => "keys/encrypted_by_id.sql";
    KEY_REVOKE => "keys/revoke.sql";
    KEYS_TOUCH_LAST_USED => "keys/touch_last_used.sql";
    KEYS_COUNT_BY_ORG => "keys/count_by_org.sql";
    KEYS_COUNT_LIVE_BY_ORG => "keys/count_live_by_org.sql";
    KEY_BY_ID => "keys/by_id.sql";
    /// The org profile row for one slug.
    ORG_PROFILE_BY_SLUG => "orgs/profile_by_slug.sql";
    ORG_PROFILE_BY_DATASET => "orgs/profile_by_dataset.sql";
    ORG_PROFILE_INSERT => "orgs/insert_profile.sql";
    ORGS_LIST => "orgs/list.sql";
    ORG_SET_STATUS => "orgs/set_status.sql";
    QUOTA_INSERT => "quota/insert.sql";
    QUOTA_SET_LIMITS => "quota/set_limits.sql";
    QUOTA_BY_ORG => "quota/by_org.sql";
    /// The admission coordinator's one statement per batch of reservations and releases.
    QUOTA_ADMIT_BATCH => "quota/admit_batch.sql";
    QUOTA_DEQUEUE => "quota/dequeue.sql";
    /// Queues beside free slots, for instances to drain.
    QUEUES_TO_DRAIN => "quota/queues_to_drain.sql";
    /// The QUEUED events of runs admitted from a queue.
    QUEUED_DEFINITIONS => "runs/queued_definitions.sql";
    /// What one admission batch decided.
    QUOTA_BATCH_OUTCOME => "quota/batch_outcome.sql";
    /// An org's schedules and backfills (latest change of each).
    SCHEDULES_BY_ORG => "schedules/by_org.sql";
    /// The scheduler's one read per pass.
    SCHEDULES_DUE => "schedules/due.sql";
    /// A backfill's child runs and their status.
    RUNS_BY_BACKFILL => "runs/by_backfill.sql";
    RUN_BY_IDEMPOTENCY_KEY => "runs/by_idempotency_key.sql";
    /// Runs and their step attempts: the live read model's one read per poll, a run's own read.
    RUNS_BY_IDS_WITH_STEPS => "runs/by_ids_with_steps.sql";
    STALE_RUNS => "executor/stale_runs.sql";
    /// For the runs executing on one instance: reaped ones and ones asked to stop.
    RUN_CONTROLS => "executor/run_controls.sql";
    RUNS_BY_ORG => "runs/list_by_org.sql";
    /// The first pages of several orgs' run lists under one filter (one read per poll interval).
    RUNS_FIRST_PAGES => "runs/first_pages_by_orgs.sql";
    RUNS_ALL => "runs/list_all.sql";
    RUN_STATS => "runs/stats_by_pipeline.sql";
    RUN_FAILURES => "runs/failures_by_class.sql";
    /// Per pipeline and day: the web view's p50/p95 and success-rate charts.
    RUN_STATS_BY_PERIOD => "runs/stats_by_period.sql";
    CREDENTIALS_BY_ORG => "integrations/active_by_org.sql";
    CREDENTIAL_BY_PROVIDER => "integrations/active_by_provider.sql";
    CREDENTIAL_INSERT => "integrations/insert.sql";
    CREDENTIALS_DEACTIVATE => "integrations/deactivate.sql";
    CREDENTIAL_DEACTIVATE_ONE => "integrations/deactivate_one.sql";
    CREDENTIAL_SET_VALIDATION => "integrations/set_validation.sql";
    CREDENTIALS_COUNT_OTHER_PROVIDERS => "integrations/count_other_providers.sql";
    /// A new alert channel, within the org's maximum.
    NOTIFY_CHANNEL_INSERT => "notifications/insert_channel.sql";
    /// An org's live alert channels.
    NOTIFY_CHANNELS_BY_ORG => "notifications/channels_by_org.sql";
    /// Every org's live alert channels (the notifier's one read for all run ends).
    NOTIFY_LIVE_CHANNELS => "notifications/live_channels.sql";
    NOTIFY_CHANNEL_DELETE => "notifications/delete_channel.sql";
    /// An org's latest deliveries, the last attempt of each.
    NOTIFY_DELIVERIES_BY_ORG => "notifications/deliveries_by_org.sql";
    /// Which of some runs still wait in their orgs' queues (queued-too-long alerts).
    NOTIFY_STILL_QUEUED => "notifications/still_queued.sql";
    AUDIT_BY_ORG => "audit/list_by_org.sql";
    IDEMPOTENCY_LOOKUP => "idempotency/lookup.sql";
}

/// A view for analysts: its name and its SQL (a SELECT over the meta tables).
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub name: &'static str,
    text: &'static str,
}

impl View {
    pub fn file(&self) -> String {
        format!("views/{}.sql", self.name)
    }

    /// The view's query with the meta dataset named.
    pub fn render(&self, meta: &DatasetId) -> String {
        self.text.replace(META_DATASET_TOKEN, meta.as_str())
    }

    /// `CREATE VIEW IF NOT EXISTS` for the meta dataset (DDL behaves the same on BigQuery and
    /// the emulator, whose view metadata the client library cannot decode).
    pub(crate) fn create_statement(&self, meta: &DatasetId) -> String {
        format!(
            "CREATE VIEW IF NOT EXISTS `{}.{}` AS\n{}",
            meta.as_str(),
            self.name,
            self.render(meta)
        )
    }
}

macro_rules! views {
    ($($name:literal),* $(,)?) => {
        /// Every analyst view, in creation order (later ones may read earlier ones).
        pub const VIEWS: &[View] = &[$(View {
            name: $name,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/views/", $name, ".sql")),
        }),*];
    };
}

views!(
    "v_pipeline_runs",
    "v_pipeline_daily_stats",
    "v_org_quota_usage"
);

/// A table function for analysts: a view over a time window whose arguments reach the
/// partition column, so a query reads only the window's partitions.
#[derive(Debug, Clone, Copy)]
pub struct TableFunction {
    pub name: &'static str,
    /// Its arguments, as BigQuery declares them (`since TIMESTAMP, until TIMESTAMP`).
    pub arguments: &'static str,
    text: &'static str,
}

impl TableFunction {
    pub fn file(&self) -> String {
        format!("functions/{}.sql", self.name)
    }

    pub fn text(&self) -> &'static str {
        self.text
    }

    /// `CREATE OR REPLACE TABLE FUNCTION` in the meta dataset (bootstrap and sync replace it, so
    /// a new release's definition always lands).
    pub(crate) fn create_statement(&self, meta: &DatasetId) -> String {
        format!(
            "CREATE OR REPLACE TABLE FUNCTION `{}.{}`({}) AS (\n{}\n)",
            meta.as_str(),
            self.name,
            self.arguments,
            self.text.replace(META_DATASET_TOKEN, meta.as_str())
        )
    }
}

macro_rules! table_functions {
    ($(($name:literal, $arguments:literal)),* $(,)?) => {
        /// Every analyst table function.
        pub const TABLE_FUNCTIONS: &[TableFunction] = &[$(TableFunction {
            name: $name,
            arguments: $arguments,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/functions/", $name, ".sql")),
        }),*];
    };
}

table_functions!(
    ("f_pipeline_runs", "since TIMESTAMP, until TIMESTAMP"),
    ("f_pipeline_daily_stats", "from_day DATE, to_day DATE"),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_kind_is_read_from_the_first_keyword() {
        assert_eq!(ORG_PROFILE_BY_SLUG.kind(), JobKind::Query);
    }

    #[test]
    fn rendering_replaces_only_the_dataset_token() {
        let meta = DatasetId::parse("meta_x").unwrap();
        let sql = ORG_PROFILE_BY_SLUG.render(&meta);
        assert!(sql.contains("`meta_x.org_profiles`"));
        assert!(!sql.contains(META_DATASET_TOKEN));
        assert!(sql.contains("@org_slug"));
    }
}
