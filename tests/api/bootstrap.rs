use quarry::schema::meta_tables;
use serde_json::{Value, json};

use crate::helpers::{Emulator, assert_error, spawn_app};

fn table_statuses(report: &Value) -> Vec<(String, String)> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn status_is_not_bootstrapped_before_bootstrap() {
    let app = spawn_app().await;
    let status = app.status().await;
    assert_eq!(status["status"], "NOT_BOOTSTRAPPED");
    assert_eq!(status["dataset_exists"], false);
    assert_eq!(
        status["missing_tables"].as_array().unwrap().len(),
        meta_tables().len()
    );
}

#[tokio::test]
async fn bootstrap_creates_every_table_with_its_partitioning_and_clustering() {
    let app = spawn_app().await;
    let report = app.bootstrap().await;
    // Its existence probes answered "not found": outcomes, not BigQuery errors in /metrics.
    assert_eq!(app.warehouse.counters().snapshot().failed_metadata, 0);
    assert_eq!(report["dataset"], app.meta_dataset.as_str());
    assert_eq!(report["dataset_status"], "created");
    let statuses = table_statuses(&report);
    assert_eq!(statuses.len(), 13);
    assert!(statuses.iter().all(|(_, s)| s == "created"), "{statuses:?}");

    let emulator = Emulator::new();
    for spec in meta_tables() {
        let table = emulator.get_table(&app.meta_dataset, spec.name).await;
        let names: Vec<&str> = table["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = spec.field_names().collect();
        assert_eq!(names, expected, "{}", spec.name);
        match &spec.time_partitioning {
            Some(p) => {
                assert_eq!(table["timePartitioning"]["type"], "DAY", "{}", spec.name);
                assert_eq!(
                    table["timePartitioning"]["field"],
                    p.field.as_deref().unwrap(),
                    "{}",
                    spec.name
                );
            }
            None => assert!(table.get("timePartitioning").is_none(), "{}", spec.name),
        }
        let clustering = spec.clustering.as_ref().unwrap().fields.clone().unwrap();
        assert_eq!(
            table["clustering"]["fields"],
            json!(clustering),
            "{}",
            spec.name
        );
    }
    for name in [
        "pipeline_run_events",
        "step_logs",
        "audit_logs",
        "idempotency_keys",
        "notification_deliveries",
    ] {
        let table = emulator.get_table(&app.meta_dataset, name).await;
        assert_eq!(table["timePartitioning"]["type"], "DAY", "{name}");
        assert_eq!(table["clustering"]["fields"][0], "org_slug", "{name}");
    }
    assert_eq!(app.status().await["status"], "SYNCED");
}

#[tokio::test]
async fn bootstrap_twice_is_a_no_op() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let emulator = Emulator::new();
    let before = emulator.get_table(&app.meta_dataset, "org_profiles").await;

    let second = app.bootstrap().await;
    assert_eq!(second["dataset_status"], "exists");
    let statuses = table_statuses(&second);
    assert_eq!(statuses.len(), 13);
    assert!(statuses.iter().all(|(_, s)| s == "exists"), "{statuses:?}");

    let after = emulator.get_table(&app.meta_dataset, "org_profiles").await;
    assert_eq!(before["lastModifiedTime"], after["lastModifiedTime"]);
    assert_eq!(before["etag"], after["etag"]);
    assert_eq!(app.status().await["status"], "SYNCED");
}

#[tokio::test]
async fn status_and_sync_repair_a_deleted_table() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let emulator = Emulator::new();
    emulator.delete_table(&app.meta_dataset, "step_logs").await;

    let status = app.status().await;
    assert_eq!(status["status"], "OUT_OF_SYNC");
    assert_eq!(status["missing_tables"], json!(["step_logs"]));
    assert_eq!(status["missing_columns"], json!([]));

    let response = app.root_post("/api/v1/admin/bootstrap/sync").await;
    assert_eq!(response.status(), 200);
    let sync: Value = response.json().await.unwrap();
    assert_eq!(sync["created_tables"], json!(["step_logs"]));
    assert_eq!(sync["added_columns"], json!([]));
    assert_eq!(sync["status"], "SYNCED");

    let table = emulator.get_table(&app.meta_dataset, "step_logs").await;
    assert_eq!(table["timePartitioning"]["field"], "started_at");
    assert_eq!(app.status().await["status"], "SYNCED");
}

#[tokio::test]
async fn status_and_sync_repair_a_missing_column_and_keep_the_data() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let emulator = Emulator::new();
    let dataset = app.meta_dataset.clone();
    emulator
        .sql(&format!(
            "INSERT INTO `{dataset}.org_profiles` (org_slug, company_name, admin_email, plan, status, dataset_id, created_at) \
             VALUES ('acme', 'Acme', 'a@acme.test', 'STARTER', 'ACTIVE', 'acme', CURRENT_TIMESTAMP())"
        ))
        .await;
    // An older deployment's table: without `updated_at`.
    let table = emulator.get_table(&dataset, "org_profiles").await;
    let fields: Vec<Value> = table["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] != "updated_at")
        .cloned()
        .collect();
    emulator
        .put_schema(&dataset, "org_profiles", json!(fields))
        .await;

    let status = app.status().await;
    assert_eq!(status["status"], "OUT_OF_SYNC");
    assert_eq!(status["missing_tables"], json!([]));
    assert_eq!(
        status["missing_columns"],
        json!([{"table": "org_profiles", "column": "updated_at"}])
    );

    let sync: Value = app
        .root_post("/api/v1/admin/bootstrap/sync")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        sync["added_columns"],
        json!([{"table": "org_profiles", "column": "updated_at"}])
    );
    assert_eq!(sync["created_tables"], json!([]));
    assert_eq!(sync["status"], "SYNCED");

    let table = emulator.get_table(&dataset, "org_profiles").await;
    let added = table["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "updated_at")
        .cloned()
        .expect("column added back");
    assert_eq!(added["mode"], "NULLABLE");
    let count = emulator
        .sql(&format!(
            "SELECT COUNT(*) AS n FROM `{dataset}.org_profiles` LIMIT 1"
        ))
        .await;
    assert_eq!(count["rows"][0]["f"][0]["v"], "1");
}

#[tokio::test]
async fn sync_never_drops_a_column_it_does_not_know() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let emulator = Emulator::new();
    let table = emulator.get_table(&app.meta_dataset, "audit_logs").await;
    let mut fields = table["schema"]["fields"].as_array().unwrap().clone();
    fields.push(json!({"name": "operator_note", "type": "STRING", "mode": "NULLABLE"}));
    emulator
        .put_schema(&app.meta_dataset, "audit_logs", json!(fields))
        .await;

    assert_eq!(app.status().await["status"], "SYNCED");
    let sync: Value = app
        .root_post("/api/v1/admin/bootstrap/sync")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sync["added_columns"], json!([]));
    let table = emulator.get_table(&app.meta_dataset, "audit_logs").await;
    assert!(
        table["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "operator_note")
    );
}

#[tokio::test]
async fn sync_on_an_empty_project_bootstraps_everything() {
    let app = spawn_app().await;
    let sync: Value = app
        .root_post("/api/v1/admin/bootstrap/sync")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sync["dataset_status"], "created");
    assert_eq!(sync["created_tables"].as_array().unwrap().len(), 13);
    assert_eq!(sync["status"], "SYNCED");
}

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/admin/bootstrap"),
    ("GET", "/api/v1/admin/bootstrap/status"),
    ("POST", "/api/v1/admin/bootstrap/sync"),
];

#[tokio::test]
async fn admin_routes_without_the_root_key_get_401() {
    let app = spawn_app().await;
    for (method, path) in ADMIN_ROUTES {
        let request = match *method {
            "POST" => app.client.post(app.url(path)),
            _ => app.client.get(app.url(path)),
        };
        assert_error(
            request.send().await.unwrap(),
            401,
            "Invalid or inactive API key",
        )
        .await;
    }
    // Nothing was created.
    assert_eq!(app.status().await["dataset_exists"], false);
}

#[tokio::test]
async fn admin_routes_with_a_wrong_root_key_get_401() {
    let app = spawn_app().await;
    let wrong = [
        format!("{}x", app.root_key),
        app.root_key[..app.root_key.len() - 1].to_string(),
        app.root_key.to_uppercase(),
        String::new(),
    ];
    let before = app.warehouse.counters().snapshot();
    for (method, path) in ADMIN_ROUTES {
        for key in &wrong {
            let request = match *method {
                "POST" => app.client.post(app.url(path)),
                _ => app.client.get(app.url(path)),
            };
            let response = request.header("X-CA-Root-Key", key).send().await.unwrap();
            assert_error(response, 401, "Invalid or inactive API key").await;
        }
    }
    // Refused before any BigQuery request.
    assert_eq!(app.warehouse.counters().snapshot(), before);
    assert_eq!(app.status().await["dataset_exists"], false);
}

#[tokio::test]
async fn a_service_without_a_root_key_refuses_every_admin_call() {
    let app = crate::helpers::spawn_app_with(|vars| {
        vars.remove("CA_ROOT_API_KEY");
    })
    .await;
    for key in ["", "anything", &app.root_key] {
        let response = app
            .client
            .post(app.url("/api/v1/admin/bootstrap"))
            .header("X-CA-Root-Key", key)
            .send()
            .await
            .unwrap();
        assert_error(response, 401, "Invalid or inactive API key").await;
    }
}

#[tokio::test]
async fn the_root_key_never_reaches_the_logs() {
    let app = spawn_app().await;
    app.bootstrap().await;
    app.client
        .get(app.url("/api/v1/admin/bootstrap/status?key=leaky"))
        .header("X-CA-Root-Key", format!("{}-wrong", app.root_key))
        .send()
        .await
        .unwrap();
    let logs = crate::helpers::captured_logs();
    assert!(logs.contains("request finished"), "logs were captured");
    assert!(!logs.contains(&app.root_key), "root key found in logs");
    assert!(!logs.contains("leaky"), "query secret found in logs");
}
