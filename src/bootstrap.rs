//! Bootstrap: brings the meta dataset and its tables to what [`crate::schema`] declares.
//! Creates and adds; never drops, never rewrites data.

use serde::Serialize;

use crate::schema::{TableSpec, meta_tables};
use crate::warehouse::sql::{TABLE_FUNCTIONS, VIEWS, View};
use crate::warehouse::{Created, Warehouse, WarehouseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    NotBootstrapped,
    Synced,
    OutOfSync,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MissingColumn {
    pub table: String,
    pub column: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusReport {
    pub status: SyncState,
    pub dataset: String,
    pub dataset_exists: bool,
    pub tables_expected: usize,
    pub missing_tables: Vec<String>,
    pub missing_columns: Vec<MissingColumn>,
    pub missing_views: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TableOutcome {
    pub table: String,
    pub status: Created,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BootstrapReport {
    pub dataset: String,
    pub dataset_status: Created,
    pub tables: Vec<TableOutcome>,
    pub views: Vec<TableOutcome>,
    /// Analyst table functions, (re)created every time.
    pub table_functions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SyncReport {
    pub dataset: String,
    pub dataset_status: Created,
    pub created_tables: Vec<String>,
    pub added_columns: Vec<MissingColumn>,
    pub created_views: Vec<String>,
    /// Analyst table functions, (re)created every time.
    pub table_functions: Vec<String>,
    pub status: SyncState,
}

/// Compares what exists with what is declared. One metadata call per table.
pub async fn status(warehouse: &Warehouse) -> Result<StatusReport, WarehouseError> {
    let dataset = warehouse.meta_dataset();
    let specs = meta_tables();
    let mut report = StatusReport {
        status: SyncState::NotBootstrapped,
        dataset: dataset.to_string(),
        dataset_exists: warehouse.dataset_exists(dataset).await?,
        tables_expected: specs.len(),
        missing_tables: Vec::new(),
        missing_columns: Vec::new(),
        missing_views: Vec::new(),
    };
    if !report.dataset_exists {
        report.missing_tables = specs.iter().map(|s| s.name.to_string()).collect();
        report.missing_views = VIEWS.iter().map(|v| v.name.to_string()).collect();
        return Ok(report);
    }
    for spec in specs {
        match warehouse.get_table(dataset, spec.name).await? {
            None => report.missing_tables.push(spec.name.to_string()),
            Some(table) => {
                let present = present_columns(&table);
                report.missing_columns.extend(
                    spec.field_names()
                        .filter(|f| !present.iter().any(|p| p == f))
                        .map(|f| MissingColumn {
                            table: spec.name.to_string(),
                            column: f.to_string(),
                        }),
                );
            }
        }
    }
    let present = warehouse.table_names(dataset).await?;
    for view in VIEWS {
        if !present.iter().any(|t| t == view.name) {
            report.missing_views.push(view.name.to_string());
        }
    }
    report.status = if report.missing_tables.len() == specs.len() {
        SyncState::NotBootstrapped
    } else if report.missing_tables.is_empty()
        && report.missing_columns.is_empty()
        && report.missing_views.is_empty()
    {
        SyncState::Synced
    } else {
        SyncState::OutOfSync
    };
    Ok(report)
}

/// Creates the meta dataset and every missing table. Idempotent: a second call reports
/// everything as existing and changes nothing.
pub async fn bootstrap(warehouse: &Warehouse) -> Result<BootstrapReport, WarehouseError> {
    let dataset = warehouse.meta_dataset();
    let dataset_status = warehouse.create_dataset(dataset).await?;
    let mut tables = Vec::with_capacity(meta_tables().len());
    for spec in meta_tables() {
        tables.push(TableOutcome {
            table: spec.name.to_string(),
            status: ensure_table(warehouse, spec).await?,
        });
    }
    let mut views = Vec::with_capacity(VIEWS.len());
    for view in VIEWS {
        views.push(TableOutcome {
            table: view.name.to_string(),
            status: ensure_view(warehouse, view).await?,
        });
    }
    let table_functions = replace_table_functions(warehouse).await?;
    Ok(BootstrapReport {
        dataset: dataset.to_string(),
        dataset_status,
        tables,
        views,
        table_functions,
    })
}

/// Adds missing tables and missing columns (as NULLABLE, the only kind BigQuery can add).
pub async fn sync(warehouse: &Warehouse) -> Result<SyncReport, WarehouseError> {
    let dataset = warehouse.meta_dataset();
    let dataset_status = warehouse.create_dataset(dataset).await?;
    let mut created_tables = Vec::new();
    let mut added_columns = Vec::new();
    for spec in meta_tables() {
        match warehouse.get_table(dataset, spec.name).await? {
            None => {
                if ensure_table(warehouse, spec).await? == Created::Created {
                    created_tables.push(spec.name.to_string());
                }
            }
            Some(table) => {
                let present = present_columns(&table);
                let mut fields = table.schema.fields.clone().unwrap_or_default();
                let mut added = Vec::new();
                for field in &spec.fields {
                    if !present.contains(&field.name) {
                        let mut new_field = field.clone();
                        if new_field.mode.as_deref() != Some("REPEATED") {
                            new_field.mode = Some("NULLABLE".to_string());
                        }
                        fields.push(new_field);
                        added.push(MissingColumn {
                            table: spec.name.to_string(),
                            column: field.name.clone(),
                        });
                    }
                }
                if !added.is_empty() {
                    warehouse
                        .patch_table_schema(dataset, spec.name, fields)
                        .await?;
                    added_columns.extend(added);
                }
            }
        }
    }
    let mut created_views = Vec::new();
    for view in VIEWS {
        if ensure_view(warehouse, view).await? == Created::Created {
            created_views.push(view.name.to_string());
        }
    }
    let table_functions = replace_table_functions(warehouse).await?;
    let status = status(warehouse).await?.status;
    Ok(SyncReport {
        dataset: dataset.to_string(),
        dataset_status,
        created_tables,
        added_columns,
        created_views,
        table_functions,
        status,
    })
}

async fn ensure_table(warehouse: &Warehouse, spec: &TableSpec) -> Result<Created, WarehouseError> {
    warehouse
        .create_table(spec.to_table(warehouse.project_id(), warehouse.meta_dataset()))
        .await
}

/// Creates or replaces every analyst table function (cheap, and a release's new definition
/// always lands); returns their names.
async fn replace_table_functions(warehouse: &Warehouse) -> Result<Vec<String>, WarehouseError> {
    let mut names = Vec::with_capacity(TABLE_FUNCTIONS.len());
    for function in TABLE_FUNCTIONS {
        warehouse.create_table_function(function).await?;
        names.push(function.name.to_string());
    }
    Ok(names)
}

/// Creates an analyst view unless it exists (an existing view is left as it is).
async fn ensure_view(warehouse: &Warehouse, view: &View) -> Result<Created, WarehouseError> {
    let present = warehouse.table_names(warehouse.meta_dataset()).await?;
    if present.iter().any(|t| t == view.name) {
        return Ok(Created::Exists);
    }
    warehouse.create_view(view).await?;
    Ok(Created::Created)
}

fn present_columns(table: &gcp_bigquery_client::model::table::Table) -> Vec<String> {
    table
        .schema
        .fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|f| f.name.clone())
        .collect()
}
