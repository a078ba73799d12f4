//! Integration tests: the real application on a random port per test, against the BigQuery
//! emulator started by `make test`, each test with its own meta dataset.

mod admission;
mod auth_matrix;
mod bootstrap;
#[path = "../common/bq_limits.rs"]
mod bq_limits;
mod client_cli;
mod cost;
mod docs;
mod exactness;
mod fault_proxy;
mod faults;
mod fencing;
mod health;
mod helpers;
mod hostile_input;
mod http_basics;
mod instance;
mod integrations;
mod keys;
#[path = "../common/kms_double.rs"]
mod kms_double;
mod live;
#[path = "../common/log_tail.rs"]
mod log_tail;
mod metrics;
mod notifications;
mod openapi;
mod orchestration;
mod orgs;
mod pipelines;
mod provider_double;
mod rate_limits;
mod receiver;
mod run_logs;
mod schedules;
mod soak;
mod validation_details;
mod verbs;
mod warehouse;
mod web_ui;
mod webdriver;
