//! Test harness: spawns the real app (port 0, unique meta dataset) and talks to the emulator
//! directly where a test needs to look at or tamper with BigQuery state from outside.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use quarry::settings::Settings;
use quarry::startup::Application;
use quarry::warehouse::Warehouse;
use serde_json::Value;

/// Every log line the app wrote during this test binary's run (JSON lines).
pub static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| Arc::new(Mutex::new(Vec::new())));

#[derive(Clone)]
struct Capture;

/// Where the suite leaves every service log line and every secret it used, for the
/// suite-wide hygiene check `make test` runs afterwards (scripts/check-secret-hygiene.py).
pub fn hygiene_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-hygiene");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn append(file: &str, bytes: &[u8]) {
    use std::fs::OpenOptions;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(hygiene_dir().join(file))
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Keeps an API key issued in `response` (onboarding, rotation) for the hygiene check, and
/// hands the response back unchanged.
pub async fn remember_issued_key(response: reqwest::Response) -> reqwest::Response {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        if let Some(key) = v["api_key"].as_str() {
            remember_secret(key);
        }
    }
    let mut builder = http::Response::builder().status(status);
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    reqwest::Response::from(builder.body(bytes).unwrap())
}

/// Records a secret the suite used (an API key, the root key, a credential).
pub fn remember_secret(secret: &str) {
    append("secrets.txt", format!("{secret}\n").as_bytes());
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(buf)?;
        }
        LOGS.lock().unwrap().extend_from_slice(buf);
        append("service-logs.jsonl", buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    quarry::telemetry::init("debug", quarry::telemetry::LogFormat::Json, || Capture);
});

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).to_string()
}

/// The emulators `make test` started: `QUARRY_TEST_EMULATORS` (`host:port,host:port`), else
/// the one of `BIGQUERY_EMULATOR_HOST`. Tests cannot run without one: they fail loudly.
fn emulators() -> &'static [String] {
    static HOSTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let listed = std::env::var("QUARRY_TEST_EMULATORS").unwrap_or_default();
        let hosts: Vec<String> = listed
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        if hosts.is_empty() {
            vec![
                std::env::var("BIGQUERY_EMULATOR_HOST")
                    .expect("BIGQUERY_EMULATOR_HOST is not set: run the suite with `make test`"),
            ]
        } else {
            hosts
        }
    });
    &HOSTS
}

/// Tests running on each emulator now.
static ON_EMULATOR: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A test's hold on its emulator: given back when the test's thread ends.
struct OnEmulator(usize);

impl Drop for OnEmulator {
    fn drop(&mut self) {
        if let Ok(mut busy) = ON_EMULATOR.lock() {
            busy[self.0] = busy[self.0].saturating_sub(1);
        }
    }
}

thread_local! {
    static MINE: std::cell::RefCell<Option<OnEmulator>> = const { std::cell::RefCell::new(None) };
}

/// This test's emulator. The emulator is single-threaded, so `make test` starts one per core
/// and each test (each runs on a thread of its own) keeps the one that was least busy when it
/// first asked, for every instance, proxy and direct read it makes: a test's datasets all live
/// on one emulator.
pub fn emulator_host() -> String {
    let hosts = emulators();
    MINE.with(|mine| {
        let mut mine = mine.borrow_mut();
        let index = match mine.as_ref() {
            Some(held) => held.0,
            None => {
                let mut busy = ON_EMULATOR.lock().unwrap();
                busy.resize(hosts.len(), 0);
                let (index, _) = busy
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .expect("at least one emulator");
                busy[index] += 1;
                *mine = Some(OnEmulator(index));
                index
            }
        };
        hosts[index].clone()
    })
}

pub fn project_id() -> String {
    std::env::var("GCP_PROJECT_ID").unwrap_or_else(|_| "quarry-test".to_string())
}

/// The jobs the BigQuery model received whose SQL starts like `sql/<file>` (its first line, a
/// comment).
pub fn of_file<'a>(
    jobs: &'a [crate::bq_limits::LabelledJob],
    file: &str,
) -> Vec<&'a crate::bq_limits::LabelledJob> {
    let text = std::fs::read_to_string(repo_path(&format!("sql/{file}"))).unwrap();
    let first = text.lines().next().unwrap();
    jobs.iter().filter(|j| j.query.starts_with(first)).collect()
}

pub fn repo_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> String {
    repo_path(&format!("tests/fixtures/{rel}"))
}

/// A fresh random local KMS key (base64 of 32 bytes).
pub fn local_kms_key() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unique_dataset() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// Settings for a test: development, the emulator, a fresh meta dataset, port 0, fast retries.
pub fn test_vars() -> HashMap<String, String> {
    let root_key = format!("root_{}", uuid::Uuid::new_v4().simple());
    [
        ("ENVIRONMENT", "development".to_string()),
        ("CA_ROOT_API_KEY", root_key),
        ("GCP_PROJECT_ID", project_id()),
        ("BIGQUERY_EMULATOR_HOST", emulator_host()),
        ("META_DATASET", unique_dataset()),
        ("BIND_ADDR", "127.0.0.1:0".to_string()),
        ("BIGQUERY_RETRY_BASE_MS", "5".to_string()),
        ("BIGQUERY_RETRY_MAX_MS", "50".to_string()),
        ("READINESS_TIMEOUT_SECS", "3".to_string()),
        ("LOCAL_KMS_KEY", local_kms_key()),
        // Limits out of the way; the rate-limit tests set their own.
        ("RATE_LIMIT_PER_MINUTE", "100000".to_string()),
        ("RATE_LIMIT_ADMIN_PER_MINUTE", "100000".to_string()),
        ("RATE_LIMIT_TRIGGER_PER_MINUTE", "100000".to_string()),
        ("RATE_LIMIT_FAILED_AUTH_PER_MINUTE", "100000".to_string()),
        ("PIPELINES_DIR", fixture("pipelines")),
        ("PIPELINE_SQL_DIR", repo_path("sql")),
        ("RUN_LOG_FLUSH_MS", "50".to_string()),
        // Background queries (heartbeats, the reaper) stay out of tests that count BigQuery
        // calls; the crash tests set short ones.
        ("HEARTBEAT_INTERVAL_SECS", "3600".to_string()),
        ("REAPER_INTERVAL_SECS", "3600".to_string()),
        ("QUEUE_POLL_SECS", "300".to_string()),
        ("SCHEDULER_ENABLED", "false".to_string()),
        ("RUN_LEASE_SECS", "14400".to_string()),
        ("SHUTDOWN_GRACE_SECS", "5".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub root_key: String,
    pub meta_dataset: String,
    pub warehouse: Warehouse,
    pub kms: quarry::kms::SharedKms,
    pub auth: actix_web::web::Data<quarry::auth::AuthState>,
    pub executor: quarry::executor::Executor,
    pub clock: std::sync::Arc<quarry::clock::OffsetClock>,
}

/// Sends a request again while it is answered 503, for up to a minute; the last answer.
pub async fn until_not_503<F: std::future::Future<Output = reqwest::Response>>(
    send: impl Fn() -> F,
) -> reqwest::Response {
    let since = std::time::Instant::now();
    loop {
        let r = send().await;
        if r.status() != 503 || since.elapsed() > std::time::Duration::from_secs(60) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// An app whose BigQuery is the limits model (`tests/common/bq_limits.rs`) in front of the
/// emulator, with `limits`: the model sees every job the app creates.
pub async fn spawn_behind_model(
    limits: crate::bq_limits::Limits,
    customize: impl FnOnce(&mut HashMap<String, String>),
) -> (crate::bq_limits::LimitsModel, TestApp) {
    let model = crate::bq_limits::LimitsModel::start(&emulator_host(), limits).await;
    let host = model.host.clone();
    let app = spawn_app_with(|vars| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), host);
        customize(vars);
    })
    .await;
    (model, app)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    LazyLock::force(&TRACING);
    let mut vars = test_vars();
    customize(&mut vars);
    if let Some(root) = vars.get("CA_ROOT_API_KEY") {
        remember_secret(root);
    }
    if let Some(local) = vars.get("LOCAL_KMS_KEY") {
        remember_secret(local);
    }
    let settings = Settings::from_source(&vars).expect("test settings parse");
    let clock = std::sync::Arc::new(quarry::clock::OffsetClock::new());
    let app = Application::build_with_clock(settings, clock.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let warehouse = app.warehouse();
    let kms = app.kms();
    let auth = app.auth();
    let executor = app.executor();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        root_key: vars.get("CA_ROOT_API_KEY").cloned().unwrap_or_default(),
        meta_dataset: vars["META_DATASET"].clone(),
        warehouse,
        kms,
        auth,
        executor,
        clock,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn root_post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("X-CA-Root-Key", &self.root_key)
            .send()
            .await
            .unwrap()
    }

    pub async fn root_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("X-CA-Root-Key", &self.root_key)
            .send()
            .await
            .unwrap()
    }

    /// Bootstraps the meta dataset (idempotent), sent again while a loaded emulator makes it
    /// answer 503, as a client would.
    pub async fn bootstrap(&self) -> Value {
        let response = until_not_503(|| self.root_post("/api/v1/admin/bootstrap")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Onboards `slug` on the STARTER plan; returns the response body (with the key).
    pub async fn onboard(&self, slug: &str) -> Value {
        let response = self.onboard_with(&onboard_body(slug, "STARTER")).await;
        assert_eq!(response.status(), 201, "onboard {slug}");
        response.json().await.unwrap()
    }

    pub async fn onboard_with(&self, body: &Value) -> reqwest::Response {
        let response = self
            .client
            .post(self.url("/api/v1/organizations/onboard"))
            .header("X-CA-Root-Key", &self.root_key)
            .json(body)
            .send()
            .await
            .unwrap();
        remember_issued_key(response).await
    }

    /// Bootstraps, onboards `slug`, and returns its API key.
    pub async fn org_with_key(&self, slug: &str) -> String {
        let body = self.onboard(slug).await;
        body["api_key"].as_str().unwrap().to_string()
    }

    pub async fn key_get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap()
    }

    pub async fn key_post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        if let Some(c) = body["credential"].as_str() {
            remember_secret(c);
        }
        let response = self
            .client
            .post(self.url(path))
            .header("X-API-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        remember_issued_key(response).await
    }

    pub async fn status(&self) -> Value {
        let response = self.root_get("/api/v1/admin/bootstrap/status").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// Direct access to the emulator's REST API, as an operator (or a fault) would act on BigQuery.
pub struct Emulator {
    base: String,
    client: reqwest::Client,
}

impl Emulator {
    pub fn new() -> Self {
        Self {
            base: format!(
                "http://{}/bigquery/v2/projects/{}",
                emulator_host(),
                project_id()
            ),
            client: reqwest::Client::new(),
        }
    }

    pub async fn get_table(&self, dataset: &str, table: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/datasets/{dataset}/tables/{table}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "table {dataset}.{table}");
        r.json().await.unwrap()
    }

    pub async fn delete_table(&self, dataset: &str, table: &str) {
        let r = self
            .client
            .delete(format!("{}/datasets/{dataset}/tables/{table}", self.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Replaces a table's schema (tables.update), e.g. to lose a column.
    pub async fn put_schema(&self, dataset: &str, table: &str, fields: Value) {
        let body = serde_json::json!({
            "tableReference": {"projectId": project_id(), "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields},
        });
        let r = self
            .client
            .put(format!("{}/datasets/{dataset}/tables/{table}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Runs SQL written by the test itself (never by the app) and returns the response.
    pub async fn sql(&self, query: &str) -> Value {
        let r = self
            .client
            .post(format!("{}/queries", self.base))
            .json(&serde_json::json!({"query": query, "useLegacySql": false}))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert!(body.get("errors").is_none(), "{body}");
        body
    }

    /// [`Emulator::sql`]'s rows, each a list of its cells as text (NULL as "").
    pub async fn rows(&self, query: &str) -> Vec<Vec<String>> {
        let body = self.sql(query).await;
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        rows.iter()
            .map(|r| {
                r["f"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["v"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect()
    }
}

pub fn onboard_body(slug: &str, plan: &str) -> Value {
    serde_json::json!({
        "org_slug": slug,
        "company_name": format!("{slug} Inc"),
        "admin_email": format!("admin@{}.example.com", slug.replace('_', "-")),
        "plan": plan,
    })
}

/// Asserts the standard error body and that its request id matches the header.
pub async fn assert_error(response: reqwest::Response, status: u16, message: &str) {
    assert_eq!(response.status(), status);
    let header_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], status);
    assert_eq!(body["error"]["message"], message);
    assert_eq!(body["request_id"], header_id.as_str());
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "no extra fields: {body}"
    );
}

impl Emulator {
    pub async fn dataset_exists(&self, dataset: &str) -> bool {
        let r = self
            .client
            .get(format!("{}/datasets/{dataset}", self.base))
            .send()
            .await
            .unwrap();
        r.status() == 200
    }

    /// `SELECT COUNT(*)` of a test-written query's single value.
    pub async fn count(&self, query: &str) -> i64 {
        let body = self.sql(query).await;
        body["rows"][0]["f"][0]["v"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// An org slug no other test (or earlier run against the same emulator) uses: org datasets
/// live at project level, outside each test's meta dataset.
pub fn unique_slug(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}
