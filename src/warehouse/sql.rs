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
        let first = self
            .text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("--"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_ascii_uppercase();
        match first.as_str() {
            "INSERT" | "UPDATE" | "DELETE" | "MERGE" => JobKind::Dml,
            _ => JobKind::Query,
        }
    }

    pub(crate) fn render(&self, meta: &DatasetId) -> String {
        self.text.replace(META_DATASET_TOKEN, meta.as_str())
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
    /// The org profile row for one slug.
    ORG_PROFILE_BY_SLUG => "orgs/profile_by_slug.sql";
    ORG_PROFILE_BY_DATASET => "orgs/profile_by_dataset.sql";
    ORG_PROFILE_INSERT => "orgs/insert_profile.sql";
    ORGS_LIST => "orgs/list.sql";
    ORG_SET_STATUS => "orgs/set_status.sql";
    QUOTA_INSERT => "quota/insert.sql";
    QUOTA_SET_LIMITS => "quota/set_limits.sql";
    QUOTA_BY_ORG => "quota/by_org.sql";
    AUDIT_BY_ORG => "audit/list_by_org.sql";
    IDEMPOTENCY_LOOKUP => "idempotency/lookup.sql";
}

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
