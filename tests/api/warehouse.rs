//! The warehouse layer against the emulator, with a fault-injecting proxy in front of it where a
//! test needs BigQuery to fail in a particular way. The proxy forwards everything else verbatim
//! and records what it saw, so each test checks the requests actually sent.

use std::collections::HashMap;

use quarry::bootstrap;
use quarry::settings::Settings;
use quarry::warehouse::{Param, Warehouse, WarehouseError, sql};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::helpers::{emulator_host, test_vars};

fn http_error(status: u16, reason: &str, message: &str) -> Fault {
    Fault {
        suffix: "/queries",
        body_contains: None,
        after_forwarding: false,
        status,
        body: json!({"error": {"code": status, "message": message,
                    "errors": [{"reason": reason, "message": message, "domain": "global"}],
                    "status": "X"}}),
    }
}

fn job_error_on_200(reason: &str, message: &str) -> Fault {
    Fault {
        suffix: "/queries",
        body_contains: None,
        after_forwarding: false,
        status: 200,
        body: json!({"kind": "bigquery#queryResponse", "jobComplete": true,
                     "jobReference": {"projectId": "p", "jobId": "j"},
                     "errors": [{"reason": reason, "message": message}]}),
    }
}

/// A warehouse pointed at `host`, with its own bootstrapped meta dataset.
async fn warehouse_via(host: &str, extra: &[(&str, &str)]) -> Warehouse {
    let mut vars: HashMap<String, String> = test_vars();
    vars.insert("BIGQUERY_EMULATOR_HOST".into(), host.to_string());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_source(&vars).unwrap();
    let warehouse = Warehouse::connect(&settings).await.unwrap();
    bootstrap::bootstrap(&warehouse).await.unwrap();
    warehouse
}

#[derive(Debug, Deserialize, PartialEq)]
struct Profile {
    org_slug: String,
    company_name: String,
    plan: String,
    created_at_micros: i64,
}

async fn profile(warehouse: &Warehouse, slug: &str) -> Result<Vec<Profile>, WarehouseError> {
    warehouse
        .query::<Profile>(
            &sql::ORG_PROFILE_BY_SLUG,
            &[Param::string("org_slug", slug)],
        )
        .await
}

#[tokio::test]
async fn a_query_reads_typed_rows_with_timestamps_as_microseconds() {
    let warehouse = warehouse_via(&emulator_host(), &[]).await;
    let dataset = warehouse.meta_dataset().to_string();
    crate::helpers::Emulator::new()
        .sql(&format!(
            "INSERT INTO `{dataset}.org_profiles` (org_slug, company_name, admin_email, plan, status, dataset_id, created_at) \
             VALUES ('acme', 'Acme', 'a@acme.test', 'STARTER', 'ACTIVE', 'acme', TIMESTAMP '2026-11-22 10:00:00.123456+00')"
        ))
        .await;
    let rows = profile(&warehouse, "acme").await.unwrap();
    assert_eq!(
        rows,
        vec![Profile {
            org_slug: "acme".into(),
            company_name: "Acme".into(),
            plan: "STARTER".into(),
            created_at_micros: 1_795_341_600_123_456,
        }]
    );
    assert!(profile(&warehouse, "other").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_parameter_value_is_data_never_sql() {
    let warehouse = warehouse_via(&emulator_host(), &[]).await;
    let before = warehouse.counters().snapshot();
    for hostile in [
        "x' OR '1'='1",
        "acme`; DROP TABLE org_profiles; --",
        "@org_slug",
    ] {
        assert!(profile(&warehouse, hostile).await.unwrap().is_empty());
    }
    assert_eq!(warehouse.counters().snapshot().since(&before).query, 3);
    // The table is still there and still queryable.
    assert!(profile(&warehouse, "acme").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_errors_field_on_http_200_is_an_error() {
    // A dataset that was never bootstrapped: the emulator answers 200 with `errors`.
    let proxy = FaultProxy::start().await;
    let mut vars = test_vars();
    vars.insert("BIGQUERY_EMULATOR_HOST".into(), proxy.host.clone());
    let warehouse = Warehouse::connect(&Settings::from_source(&vars).unwrap())
        .await
        .unwrap();
    let err = profile(&warehouse, "acme").await.unwrap_err();
    match &err {
        WarehouseError::Job { reason, .. } => assert_eq!(reason, "notFound"),
        other => panic!("expected a job error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    let calls = proxy.query_calls();
    assert_eq!(calls.len(), 1, "not retried: {calls:?}");
    assert_eq!(calls[0].1, 200, "the emulator said 200");
}

#[tokio::test]
async fn a_retryable_http_error_is_retried_until_it_succeeds() {
    let proxy = FaultProxy::start().await;
    let warehouse = warehouse_via(&proxy.host, &[]).await;
    proxy.clear();
    proxy.inject([
        http_error(503, "backendError", "Backend error"),
        http_error(429, "rateLimitExceeded", "Exceeded rate limits"),
        http_error(500, "internalError", "Internal"),
    ]);
    let before = warehouse.counters().snapshot();
    assert!(profile(&warehouse, "acme").await.unwrap().is_empty());
    let delta = warehouse.counters().snapshot().since(&before);
    assert_eq!(delta.query, 4);
    assert_eq!(delta.retries, 3);
    let statuses: Vec<u16> = proxy.query_calls().iter().map(|c| c.1).collect();
    assert_eq!(statuses, vec![503, 429, 500, 200]);
}

#[tokio::test]
async fn dml_contention_reported_on_http_200_is_retried() {
    let proxy = FaultProxy::start().await;
    let warehouse = warehouse_via(&proxy.host, &[]).await;
    proxy.clear();
    proxy.inject([
        job_error_on_200(
            "invalidQuery",
            "Could not serialize access to table org_profiles due to concurrent update",
        ),
        http_error(
            400,
            "invalidQuery",
            "Too many DML statements outstanding against table org_profiles, limit is 20",
        ),
    ]);
    assert!(profile(&warehouse, "acme").await.unwrap().is_empty());
    assert_eq!(proxy.query_calls().len(), 3);
}

#[tokio::test]
async fn a_non_retryable_error_fails_at_once() {
    let proxy = FaultProxy::start().await;
    let warehouse = warehouse_via(&proxy.host, &[]).await;
    proxy.clear();
    proxy.inject([http_error(
        400,
        "invalidQuery",
        "Syntax error: Unexpected keyword",
    )]);
    let before = warehouse.counters().snapshot();
    let err = profile(&warehouse, "acme").await.unwrap_err();
    assert!(
        matches!(err, WarehouseError::Http { status: 400, .. }),
        "{err:?}"
    );
    let delta = warehouse.counters().snapshot().since(&before);
    assert_eq!((delta.query, delta.retries), (1, 0));
    assert_eq!(proxy.query_calls().len(), 1);
}

#[tokio::test]
async fn retries_stop_after_the_configured_number() {
    let proxy = FaultProxy::start().await;
    let warehouse = warehouse_via(&proxy.host, &[("BIGQUERY_MAX_RETRIES", "2")]).await;
    proxy.clear();
    proxy.inject((0..5).map(|_| http_error(503, "backendError", "Backend error")));
    let err = profile(&warehouse, "acme").await.unwrap_err();
    assert!(err.is_unavailable());
    assert_eq!(proxy.query_calls().len(), 3, "one attempt and two retries");
}

#[tokio::test]
async fn streamed_rows_are_one_insert_all_request_per_batch() {
    let warehouse = warehouse_via(&emulator_host(), &[]).await;
    let before = warehouse.counters().snapshot();
    let now = chrono::Utc::now().to_rfc3339();
    let rows: Vec<(String, Value)> = (0..25)
        .map(|i| {
            (
                format!("audit-{i}"),
                json!({"audit_id": format!("a{i}"), "org_slug": "acme", "actor": "root",
                       "action": "test", "created_at": now}),
            )
        })
        .collect();
    warehouse
        .insert_rows(warehouse.meta_dataset(), "audit_logs", &rows)
        .await
        .unwrap();
    let delta = warehouse.counters().snapshot().since(&before);
    assert_eq!(delta.insert_all, 1);
    let dataset = warehouse.meta_dataset().to_string();
    let count = crate::helpers::Emulator::new()
        .sql(&format!(
            "SELECT COUNT(*) AS n FROM `{dataset}.audit_logs` LIMIT 1"
        ))
        .await;
    assert_eq!(count["rows"][0]["f"][0]["v"], "25");
}

#[tokio::test]
async fn rows_rejected_in_an_http_200_answer_are_an_error() {
    let proxy = FaultProxy::start().await;
    let warehouse = warehouse_via(&proxy.host, &[]).await;
    proxy.clear();
    proxy.inject([Fault {
        suffix: "/insertAll",
        body_contains: None,
        after_forwarding: false,
        status: 200,
        body: json!({"kind": "bigquery#tableDataInsertAllResponse",
                     "insertErrors": [{"index": 0, "errors": [
                         {"reason": "invalid", "message": "no such field: no_such_column."}]}]}),
    }]);
    let before = warehouse.counters().snapshot();
    let rows = vec![("bad-1".to_string(), json!({"no_such_column": 1}))];
    let err = warehouse
        .insert_rows(warehouse.meta_dataset(), "audit_logs", &rows)
        .await
        .unwrap_err();
    match &err {
        WarehouseError::Insert { reason, message } => {
            assert_eq!(reason, "invalid");
            assert_eq!(message, "no such field: no_such_column.");
        }
        other => panic!("expected an insert error, got {other:?}"),
    }
    assert_eq!(
        warehouse.counters().snapshot().since(&before).insert_all,
        1,
        "not retried"
    );
}

#[tokio::test]
async fn streaming_into_a_missing_table_is_not_found() {
    let warehouse = warehouse_via(&emulator_host(), &[]).await;
    let rows = vec![("r1".to_string(), json!({"org_slug": "acme"}))];
    let err = warehouse
        .insert_rows(warehouse.meta_dataset(), "no_such_table", &rows)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}
