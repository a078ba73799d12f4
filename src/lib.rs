//! Quarry: a multi-tenant pipeline orchestrator backed by BigQuery.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod domain;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod kms;
pub mod orgs;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod schema;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod warehouse;
