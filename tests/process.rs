//! The real binary as a process: killed mid-run (SIGKILL) and restarted, or stopped with
//! SIGTERM while runs are in flight. Needs the emulator started by `make test`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Service {
    child: Child,
    base: String,
    /// The process's log (stdout), printed (its tail) when the test fails while it is alive.
    log: std::path::PathBuf,
}

struct Env {
    vars: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Env {
    fn new(grace_secs: u64) -> Self {
        let emulator = std::env::var("BIGQUERY_EMULATOR_HOST")
            .expect("BIGQUERY_EMULATOR_HOST is not set: run the suite with `make test`");
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
            ("RUN_LEASE_SECS", "3".into()),
            ("HEARTBEAT_INTERVAL_SECS", "1".into()),
            ("REAPER_INTERVAL_SECS", "1".into()),
            ("RUN_LOG_FLUSH_MS", "50".into()),
            ("SHUTDOWN_GRACE_SECS", grace_secs.to_string()),
            ("BIGQUERY_RETRY_BASE_MS", "5".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self { vars }
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
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            println!(
                "--- last lines of {} ({}) ---\n{}",
                self.base,
                self.log.display(),
                tail.join("\n")
            );
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
    let took = wait_for("the slot is freed", Duration::from_secs(30), async || {
        client.get(&second, &quota_path).await["active_run_ids"] == json!([])
    })
    .await;
    // One lease (3 s) plus two reaper passes (1 s each), with slack for the machine.
    println!("slot freed {took:?} after the restart");
    assert!(took < Duration::from_secs(15), "{took:?}");
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
async fn sigterm_cancels_runs_still_going_when_the_grace_period_ends() {
    let env = Env::new(1);
    let client = Client {
        http: reqwest::Client::new(),
        root: env.root_key(),
    };
    let mut svc = env.start().await;
    let slug = prepare(&client, &svc).await;
    let r = trigger(&client, &svc, &slug, "test/long").await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&svc.child, "-TERM");
    let started = Instant::now();
    while svc.child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = env.start().await;
    assert_eq!(
        status_of(&client, &after, &slug, &run_id).await,
        "CANCELLED"
    );
    let quota = client
        .get(&after, &format!("/api/v1/organizations/{slug}/quota"))
        .await;
    assert_eq!(quota["active_run_ids"], json!([]));
}
