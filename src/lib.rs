//! Quarry: a multi-tenant pipeline orchestrator backed by BigQuery.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod clock;
pub mod domain;
pub mod error;
pub mod executor;
pub mod http;
pub mod idempotency;
pub mod integrations;
pub mod kms;
pub mod orgs;
pub mod pipelines;
pub mod quota;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod run_log;
pub mod runs;
pub mod schema;
pub mod settings;
pub mod startup;
pub mod steps;
pub mod telemetry;
pub mod warehouse;
