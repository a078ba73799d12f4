//! The real binary as a process: killed mid-run (SIGKILL) and restarted, or stopped with
//! SIGTERM while runs are in flight. Needs the emulator started by `make test`.

#[path = "common/log_tail.rs"]
mod log_tail;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Service {
    child: Child,
    base: String,
    /// The process's log (stdout), printed (its tail) when the test fails while it is alive.
    log: std::path::PathBuf,
}

struct Env {
    vars: Vec<(String, String)>,
    /// One spec at a time: each starts services that heartbeat and reap every second against
    /// one emulator, whose single thread two specs together pushed past the 6-s BigQuery
    /// deadline set here (a trigger answered 503 on a loaded machine).
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The emulator these specs use: the one `make test` keeps for them (`QUARRY_PROCESS_EMULATOR`,
/// fresh when they start, where the API suite's emulators are full of its datasets and slower
/// than the 6-s BigQuery deadline set here allows), else `BIGQUERY_EMULATOR_HOST`.
fn emulator() -> String {
    std::env::var("QUARRY_PROCESS_EMULATOR")
        .or_else(|_| std::env::var("BIGQUERY_EMULATOR_HOST"))
        .expect("BIGQUERY_EMULATOR_HOST is not set: run the suite with `make test`")
}

impl Env {
    fn new(grace_secs: u64) -> Self {
        // A spec that failed poisons the lock; the next one runs all the same.
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let emulator = emulator();
        let root = env!("CARGO_MANIFEST_DIR");
        let vars = [
            ("ENVIRONMENT", "development".to_string()),
            (
                "CA_ROOT_API_KEY",
                format!("root_{}", uuid::Uuid::new_v4().simple()),
            ),
            (
                "GCP_PROJECT_ID",
                std::env::var("GCP_PROJECT_ID").unwrap_or("quarry-test".into()),
            ),
            ("BIGQUERY_EMULATOR_HOST", emulator),
            (
                "META_DATASET",
                format!("proc_{}", uuid::Uuid::new_v4().simple()),
            ),
            (
                "LOCAL_KMS_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ),
            ("PIPELINES_DIR", format!("{root}/tests/fixtures/pipelines")),
            ("PIPELINE_SQL_DIR", format!("{root}/sql")),
            // A run decided later than 6 s (lease - API deadline) after its batch is not
            // launched.
            ("RUN_LEASE_SECS", "12".into()),
            ("BIGQUERY_API_DEADLINE_SECS", "6".into()),
            ("HEARTBEAT_INTERVAL_SECS", "1".into()),
            ("HEARTBEAT_TIMEOUT_SECS", "2".into()),
            ("REAPER_INTERVAL_SECS", "1".into()),
            ("RUN_LOG_FLUSH_MS", "50".into()),
            ("SHUTDOWN_GRACE_SECS", grace_secs.to_string()),
            ("BIGQUERY_RETRY_BASE_MS", "5".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self { vars, _turn: turn }
    }

    fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_string(), value.to_string()));
    }

    fn var(&self, name: &str) -> String {
        self.vars.iter().find(|(k, _)| k == name).unwrap().1.clone()
    }

    /// Every status event the run has, straight from the emulator (oldest first).
    async fn statuses(&self, run_id: &str) -> Vec<String> {
        let sql = format!(
            "SELECT status FROM `{}.pipeline_run_events` WHERE run_id = @run_id \
             ORDER BY event_time LIMIT 100",
            self.var("META_DATASET")
        );
        let body = json!({
            "query": sql, "useLegacySql": false, "parameterMode": "NAMED",
            "queryParameters": [{"name": "run_id", "parameterType": {"type": "STRING"},
                                 "parameterValue": {"value": run_id}}],
        });
        let url = format!(
            "http://{}/bigquery/v2/projects/{}/queries",
            self.var("BIGQUERY_EMULATOR_HOST"),
            self.var("GCP_PROJECT_ID")
        );
        let answer: Value = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(answer.get("errors").is_none(), "{answer}");
        answer["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|row| row["f"][0]["v"].as_str().unwrap().to_string())
            .collect()
    }

    fn root_key(&self) -> String {
        self.vars
            .iter()
            .find(|(k, _)| k == "CA_ROOT_API_KEY")
            .unwrap()
            .1
            .clone()
    }

    async fn start(&self) -> Service {
        let port = free_port();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("process-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{}.log", uuid::Uuid::new_v4().simple()));
        // Owned by a Service at once: its Drop kills and reaps the process on every path.
        let service = Service {
            child: Command::new(env!("CARGO_BIN_EXE_quarry"))
                .arg("serve")
                .env_clear()
                .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("BIND_ADDR", format!("127.0.0.1:{port}"))
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("the binary starts"),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("{}/health/live", service.base))
                .send()
                .await
                .is_ok()
            {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not come up");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            log_tail::print_tail(&self.base, &self.log, 60);
        }
    }
}

struct Client {
    http: reqwest::Client,
    root: String,
}

impl Client {
    async fn post(&self, svc: &Service, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", svc.base))
            .header("X-CA-Root-Key", &self.root)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, svc: &Service, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", svc.base))
            .header("X-CA-Root-Key", &self.root)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Bootstraps and onboards an org (concurrency 1); returns its slug.
async fn prepare(client: &Client, svc: &Service) -> String {
    assert_eq!(
        client
            .post(svc, "/api/v1/admin/bootstrap", json!({}))
            .await
            .status(),
        200
    );
    let slug = format!("proc-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let r = client
        .post(
            svc,
            "/api/v1/organizations/onboard",
            json!({"org_slug": slug, "company_name": "Proc", "admin_email": "p@proc.example.com",
                   "plan": "STARTER"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    slug
}

async fn trigger(client: &Client, svc: &Service, slug: &str, pipeline: &str) -> reqwest::Response {
    client
        .post(
            svc,
            &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
            json!({}),
        )
        .await
}

async fn status_of(client: &Client, svc: &Service, slug: &str, run_id: &str) -> String {
    let run = client
        .get(svc, &format!("/api/v1/pipelines/{slug}/runs/{run_id}"))
        .await;
    run["status"].as_str().unwrap_or("").to_string()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn a_run_killed_with_its_process_is_orphaned_and_its_slot_freed_after_restart() {
    let env = Env::new(5);
    let client = Client {
        http: reqwest::Client::new(),
        root: env.root_key(),
    };
    let mut first = env.start().await;
    let slug = prepare(&client, &first).await;
    let r = trigger(&client, &first, &slug, "test/long").await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the run is RUNNING", Duration::from_secs(30), async || {
        status_of(&client, &first, &slug, &run_id).await == "RUNNING"
    })
    .await;
    first.child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    first.child.wait().unwrap();

    let second = env.start().await;
    // Concurrency 1 and the dead run still holds the slot.
    assert_eq!(
        trigger(&client, &second, &slug, "test/sleep")
            .await
            .status(),
        429
    );
    let quota_path = format!("/api/v1/organizations/{slug}/quota");
    let took = wait_for("the slot is freed", Duration::from_secs(40), async || {
        client.get(&second, &quota_path).await["active_run_ids"] == json!([])
    })
    .await;
    // One lease (12 s) plus two reaper passes (1 s apart), with slack for the machine.
    println!("slot freed {took:?} after the restart");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(
        status_of(&client, &second, &slug, &run_id).await,
        "ORPHANED"
    );
    assert_eq!(
        trigger(&client, &second, &slug, "test/sleep")
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn a_paused_instance_whose_run_was_reaped_never_records_it_succeeded_after_resuming() {
    let env = Env::new(5);
    let client = Client {
        http: reqwest::Client::new(),
        root: env.root_key(),
    };
    let paused = env.start().await;
    let slug = prepare(&client, &paused).await;
    let r = trigger(&client, &paused, &slug, "test/sleep5").await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the run is RUNNING", Duration::from_secs(30), async || {
        status_of(&client, &paused, &slug, &run_id).await == "RUNNING"
    })
    .await;
    signal(&paused.child, "-STOP"); // paused longer than the lease: its step would end meanwhile

    let other = env.start().await;
    let quota_path = format!("/api/v1/organizations/{slug}/quota");
    wait_for("the slot is freed", Duration::from_secs(40), async || {
        client.get(&other, &quota_path).await["active_run_ids"] == json!([])
    })
    .await;
    assert_eq!(status_of(&client, &other, &slug, &run_id).await, "ORPHANED");

    signal(&paused.child, "-CONT");
    // Resumed, the instance finds its lease lapsed: it stops the run and records why.
    wait_for(
        "the resumed instance records the lapse",
        Duration::from_secs(20),
        async || {
            client
                .get(&other, &format!("/api/v1/pipelines/{slug}/runs/{run_id}"))
                .await["error_class"]
                == "lease_lost"
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let statuses = env.statuses(&run_id).await;
    assert!(!statuses.contains(&"SUCCEEDED".to_string()), "{statuses:?}");
    assert_eq!(statuses.first().map(String::as_str), Some("PENDING"));
    assert_eq!(status_of(&client, &other, &slug, &run_id).await, "ORPHANED");
    assert_eq!(
        client.get(&other, &quota_path).await["active_run_ids"],
        json!([])
    );
}

#[tokio::test]
async fn sigterm_refuses_new_runs_and_lets_running_ones_finish() {
    let env = Env::new(20);
    let client = Client {
        http: reqwest::Client::new(),
        root: env.root_key(),
    };
    let mut svc = env.start().await;
    let slug = prepare(&client, &svc).await;
    let r = trigger(&client, &svc, &slug, "test/sleep5").await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    signal(&svc.child, "-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = trigger(&client, &svc, &slug, "test/sleep").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    // Draining: the load balancer is told to send traffic elsewhere.
    let ready = client
        .http
        .get(format!("{}/health/ready", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");

    let after = env.start().await;
    assert_eq!(
        status_of(&client, &after, &slug, &run_id).await,
        "SUCCEEDED"
    );
    let quota = client
        .get(&after, &format!("/api/v1/organizations/{slug}/quota"))
        .await;
    assert_eq!(quota["active_run_ids"], json!([]));
}

#[tokio::test]
async fn sigterm_with_5_runs_going_ends_them_releases_every_slot_and_writes_every_row_within_10_s()
{
    let env = Env::new(4); // the default grace
    let client = Client {
        http: reqwest::Client::new(),
        root: env.root_key(),
    };
    let mut svc = env.start().await;
    let slug = prepare(&client, &svc).await;
    let limits = client
        .http
        .put(format!("{}/api/v1/organizations/{slug}/quota", svc.base))
        .header("X-CA-Root-Key", &client.root)
        .json(&json!({"daily_limit": 100, "monthly_limit": 1000, "concurrent_limit": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), 200);
    let mut ids = vec![];
    for _ in 0..5 {
        // Ten minutes: none ends by itself within the grace period, even when five triggers
        // on a slow emulator take most of test/long's 30 s.
        let r = trigger(&client, &svc, &slug, "test/hold").await;
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        wait_for("the run is RUNNING", Duration::from_secs(30), async || {
            status_of(&client, &svc, &slug, id).await == "RUNNING"
        })
        .await;
    }
    signal(&svc.child, "-TERM");
    let started = Instant::now();
    while svc.child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM: Cloud Run would SIGKILL it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("exited {:?} after SIGTERM", started.elapsed());
    // The five runs stopped together end within moments of each other: their slots are freed
    // by one statement (two in a row do not fit the releases' budget on BigQuery).
    let log = std::fs::read_to_string(&svc.log).unwrap();
    let gathered: Vec<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "shutting down: releases gathered into one statement")
        .map(|l| l["fields"]["releases"].as_u64().unwrap())
        .collect();
    assert_eq!(gathered, vec![5], "release statements at shutdown");

    // Everything was written before the exit: no reaper or later flush helped.
    let after = env.start().await;
    for id in &ids {
        assert_eq!(status_of(&client, &after, &slug, id).await, "CANCELLED");
        let steps = client
            .get(&after, &format!("/api/v1/pipelines/{slug}/runs/{id}/steps"))
            .await;
        assert_eq!(steps["steps"][0]["step_id"], "nap", "{steps}");
        assert_eq!(steps["steps"][0]["status"], "INTERRUPTED", "{steps}");
        assert_eq!(
            steps["steps"][0]["error_summary"],
            "run cancelled: its instance shut down before it finished",
            "{steps}"
        );
    }
    let quota = client
        .get(&after, &format!("/api/v1/organizations/{slug}/quota"))
        .await;
    assert_eq!(quota["active_run_ids"], json!([]));
}

/// Opens a connection and sends a request head for `path` announcing `declared` bytes.
async fn stalled_request(address: &str, path: &str, headers: &str, declared: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Content-Type: application/json\r\n\
                 Content-Length: {declared}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Reads what the server sends until it closes, at most `limit`; the status line, if any.
async fn answer(mut stream: TcpStream, limit: Duration) -> (Option<String>, bool) {
    let mut response = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut response))
        .await
        .is_ok();
    let text = String::from_utf8_lossy(&response).to_string();
    (text.lines().next().map(str::to_string), closed)
}

#[tokio::test]
async fn stalled_bodies_are_bounded_in_memory_and_closed_within_the_body_timeout() {
    let mut env = Env::new(5);
    env.set("HTTP_BODY_TIMEOUT_SECS", "2");
    env.set("HTTP_MAX_BODIES_IN_FLIGHT", "8");
    env.set("RATE_LIMIT_ADMIN_PER_MINUTE", "100000");
    env.set("RATE_LIMIT_FAILED_AUTH_PER_MINUTE", "100000");
    let svc = env.start().await;
    let address = svc.base.trim_start_matches("http://").to_string();
    let pid = svc.child.id();
    let before = rss_bytes(pid);
    let almost = vec![b' '; 1024 * 1024 - 1];
    // 60 authenticated clients each send 1 MiB - 1 byte of a 1 MiB body, then stall; 40
    // unauthenticated ones do the same.
    let root = format!("X-CA-Root-Key: {}\r\n", env.root_key());
    let mut streams = vec![];
    for i in 0..100 {
        let headers = if i < 60 { root.as_str() } else { "" };
        let mut s = stalled_request(
            &address,
            "/api/v1/organizations/dryrun",
            headers,
            1024 * 1024,
        )
        .await;
        let _ = s.write_all(&almost).await;
        streams.push((i < 60, s));
    }
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all(
        streams
            .into_iter()
            .map(|(authed, s)| async move { (authed, answer(s, Duration::from_secs(8)).await) }),
    )
    .await;
    let took = started.elapsed();
    let grown = rss_bytes(pid).saturating_sub(before);
    let count = |authed: bool, status: &str| {
        answers
            .iter()
            .filter(|(a, (line, _))| {
                *a == authed && line.as_deref().is_some_and(|l| l.contains(status))
            })
            .count()
    };
    // At most 8 bodies were read at once: those 8 timed out (408), the rest were turned
    // away at once (503); nobody without a key had a byte of body read (401).
    assert_eq!(count(true, " 408 "), 8, "{answers:?}");
    assert_eq!(count(true, " 503 "), 52, "{answers:?}");
    assert_eq!(count(false, " 401 "), 40, "{answers:?}");
    assert!(
        answers.iter().all(|(_, (_, closed))| *closed),
        "every connection closed"
    );
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
    // 100 MiB were sent; at most 8 bodies (8 MiB) were ever held, plus the runtime's buffers.
    println!("RSS grew by {} MiB", grown / 1024 / 1024);
    assert!(grown < 48 * 1024 * 1024, "RSS grew by {grown} bytes");
}

#[tokio::test]
async fn before_bootstrap_the_service_says_once_what_to_do_and_its_loops_stay_quiet() {
    let env = Env::new(5);
    let svc = env.start().await;
    // Three reaper passes (1 s), heartbeats and queue polls go by.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = std::fs::read_to_string(&svc.log).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |l: &Value| l["fields"]["message"].as_str().unwrap_or("").to_string();
    let listening: Vec<&Value> = lines.iter().filter(|l| message(l) == "listening").collect();
    assert_eq!(listening.len(), 1, "{log}");
    assert_eq!(
        listening[0]["fields"]["web_view"],
        format!("{}/ui", svc.base),
        "{log}"
    );
    assert_eq!(
        listening[0]["fields"]["api_docs"],
        format!("{}/docs", svc.base)
    );
    let told: Vec<String> = lines
        .iter()
        .map(message)
        .filter(|m| m.starts_with("the meta dataset is not bootstrapped yet"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(told[0].contains("quarry bootstrap"), "{}", told[0]);
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" && !message(l).starts_with("the meta dataset"))
        .collect();
    assert!(warnings.is_empty(), "no other warning: {warnings:?}");
}
