//! The meta tables' definitions, compiled in from `schemas/*.json` (the BigQuery REST API's
//! table format: `schema.fields`, `timePartitioning`, `clustering`, `description`).

use std::sync::LazyLock;

use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use serde::Deserialize;

use crate::domain::DatasetId;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecFile {
    description: String,
    #[serde(default)]
    time_partitioning: Option<TimePartitioning>,
    #[serde(default)]
    clustering: Option<Clustering>,
    schema: TableSchema,
}

/// One meta table as the service expects it.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: &'static str,
    pub description: String,
    pub time_partitioning: Option<TimePartitioning>,
    pub clustering: Option<Clustering>,
    pub fields: Vec<TableFieldSchema>,
}

impl TableSpec {
    fn parse(name: &'static str, json: &str) -> Result<Self, String> {
        let spec: SpecFile =
            serde_json::from_str(json).map_err(|e| format!("schemas/{name}.json: {e}"))?;
        let fields = spec.schema.fields.unwrap_or_default();
        if fields.is_empty() {
            return Err(format!("schemas/{name}.json: no fields"));
        }
        Ok(Self {
            name,
            description: spec.description,
            time_partitioning: spec.time_partitioning,
            clustering: spec.clustering,
            fields,
        })
    }

    /// The REST resource that creates this table in `dataset`.
    pub fn to_table(&self, project_id: &str, dataset: &DatasetId) -> Table {
        let mut table = Table::new(
            project_id,
            dataset.as_str(),
            self.name,
            TableSchema::new(self.fields.clone()),
        )
        .description(&self.description);
        table.time_partitioning = self.time_partitioning.clone();
        table.clustering = self.clustering.clone();
        table
    }

    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }
}

macro_rules! meta_tables {
    ($($name:literal),* $(,)?) => {
        /// File name (without `.json`) and contents of every meta table spec.
        pub const META_TABLE_FILES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/", $name, ".json")))),*
        ];
    };
}

meta_tables!(
    "org_profiles",
    "org_api_keys",
    "org_quota_state",
    "org_integration_credentials",
    "pipeline_run_events",
    "step_logs",
    "audit_logs",
    "idempotency_keys",
    "run_heartbeats",
    "run_cancel_requests",
    "schedule_states",
    "notification_channels",
    "notification_deliveries",
);

static META_TABLES: LazyLock<Vec<TableSpec>> = LazyLock::new(|| {
    META_TABLE_FILES
        .iter()
        .map(|(name, json)| TableSpec::parse(name, json))
        .collect::<Result<_, _>>()
        // The files are compiled in and parsed by a unit test, so this cannot fail at run time
        // for a binary whose tests passed.
        .expect("compiled-in table schemas parse")
});

/// Every meta table the service needs.
pub fn meta_tables() -> &'static [TableSpec] {
    &META_TABLES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_parses_and_is_registered() {
        assert_eq!(meta_tables().len(), META_TABLE_FILES.len());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json"))
            .map(|n| n.trim_end_matches(".json").to_string())
            .collect();
        on_disk.sort();
        let mut registered: Vec<String> = META_TABLE_FILES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        registered.sort();
        assert_eq!(on_disk, registered);
    }

    #[test]
    fn high_volume_tables_are_day_partitioned_and_clustered_by_org() {
        for name in [
            "pipeline_run_events",
            "step_logs",
            "audit_logs",
            "idempotency_keys",
        ] {
            let spec = meta_tables().iter().find(|t| t.name == name).unwrap();
            let p = spec.time_partitioning.as_ref().expect(name);
            assert_eq!(p.r#type, "DAY", "{name}");
            let field = p.field.as_deref().expect(name);
            let column = spec.fields.iter().find(|f| f.name == field).expect(name);
            assert!(matches!(
                column.r#type,
                gcp_bigquery_client::model::field_type::FieldType::Timestamp
            ));
            let clustering = spec
                .clustering
                .as_ref()
                .and_then(|c| c.fields.clone())
                .unwrap();
            assert_eq!(
                clustering.first().map(String::as_str),
                Some("org_slug"),
                "{name}"
            );
        }
    }

    #[test]
    fn every_table_has_an_org_slug_column() {
        for spec in meta_tables() {
            assert!(spec.field_names().any(|f| f == "org_slug"), "{}", spec.name);
        }
    }
}
