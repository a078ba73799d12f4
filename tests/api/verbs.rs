//! The verbs specs speak in, on [`TestApp`]: read an org's quota, set its limits, wait for its
//! slots to be free, read a run, wait until it ended, read its steps; and [`eventually`], the one
//! polling loop every wait goes through (a timeout, and a message that says what never
//! happened). Spec files hold specs; what they share lives here.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Polls `probe` every 100 ms until it gives `Ok`, and returns that; panics after `timeout`
/// with `what` (what was awaited) and the state the last `Err` described.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(state) if started.elapsed() >= timeout => {
                panic!("{what}: not within {timeout:?}; last seen: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl TestApp {
    /// Bootstraps the meta dataset (idempotent) and onboards a new org named after `prefix`;
    /// returns its slug and key.
    pub async fn new_org(&self, prefix: &str) -> (String, String) {
        self.bootstrap().await;
        let slug = crate::helpers::unique_slug(prefix);
        let key = self.org_with_key(&slug).await;
        (slug, key)
    }

    /// Reads the org's quota as a client would: a 503 (BigQuery slow or failing under the load
    /// of the whole suite) is retried after a pause, at most 20 times; any other answer than 200
    /// fails the test with its status and body.
    pub async fn quota(&self, slug: &str) -> Value {
        for _ in 0..20 {
            let r = self
                .root_get(&format!("/api/v1/organizations/{slug}/quota"))
                .await;
            let status = r.status();
            if status == 503 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let body = r.text().await.unwrap();
            assert_eq!(status, 200, "reading the quota of {slug}: {body}");
            return serde_json::from_str(&body).unwrap();
        }
        panic!("the quota of {slug} was 503 twenty times in a row");
    }

    /// Sets the org's daily, monthly and concurrent limits (root).
    pub async fn set_limits(&self, slug: &str, daily: i64, monthly: i64, concurrent: i64) {
        self.set_quota(
            slug,
            &json!({"daily_limit": daily, "monthly_limit": monthly,
                    "concurrent_limit": concurrent}),
        )
        .await;
    }

    /// Changes the org's quota with `limits` as the body of `PUT …/quota` (root); the quota as
    /// the answer gives it.
    /// `GET /api/v1/pipelines/{slug}/<what>` (`stats` or `stats/daily`) over the default window,
    /// with the org's key: the body of a 200.
    pub async fn stats_body(&self, slug: &str, key: &str, what: &str) -> Value {
        let r = self
            .key_get(&format!("/api/v1/pipelines/{slug}/{what}"), key)
            .await;
        assert_eq!(r.status(), 200, "{what} of {slug}");
        r.json().await.unwrap()
    }

    pub async fn set_quota(&self, slug: &str, limits: &Value) -> Value {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/organizations/{slug}/quota")))
            .header("X-CA-Root-Key", &self.root_key)
            .json(limits)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "changing the quota of {slug}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until the org holds no concurrency slot (at most 120 s of wall-clock time: under
    /// the whole suite's load the emulator is slow, and only a failing test waits that long).
    pub async fn slots_free(&self, slug: &str) {
        eventually(
            &format!("the slots of {slug} are released"),
            Duration::from_secs(120),
            || async {
                let q = self.quota(slug).await;
                if q["active_run_ids"] == json!([]) {
                    Ok(())
                } else {
                    Err(q.to_string())
                }
            },
        )
        .await
    }

    /// The run as its org's key reads it (asserts 200).
    pub async fn run(&self, slug: &str, key: &str, run_id: &str) -> Value {
        let r = self
            .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), key)
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Waits until the run has ended (a status other than QUEUED, PENDING or RUNNING) and
    /// returns it: at most 180 s of wall-clock time, as a queued run may wait for several others
    /// to drain on a loaded emulator (the heavy 20-run queue test waits for five at once).
    pub async fn wait_until_ended(&self, slug: &str, key: &str, run_id: &str) -> Value {
        eventually(
            &format!("run {run_id} ends"),
            Duration::from_secs(180),
            || async {
                let r = self
                    .key_get(&format!("/api/v1/pipelines/{slug}/runs/{run_id}"), key)
                    .await;
                if r.status() != 200 {
                    return Err(format!("HTTP {}", r.status()));
                }
                let body: Value = r.json().await.unwrap();
                match body["status"].as_str().unwrap() {
                    "QUEUED" | "PENDING" | "RUNNING" => Err(body.to_string()),
                    _ => Ok(body),
                }
            },
        )
        .await
    }

    /// Waits (at most 30 s) until the run reads RUNNING.
    pub async fn wait_until_running(&self, slug: &str, key: &str, run_id: &str) {
        eventually(
            &format!("run {run_id} runs"),
            Duration::from_secs(30),
            || async {
                match self.run(slug, key, run_id).await["status"].as_str() {
                    Some("RUNNING") => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    /// The run's steps as the org's key reads them (`{"steps": [...]}`, every field).
    pub async fn steps_body(&self, slug: &str, key: &str, run_id: &str) -> Value {
        self.key_get(
            &format!("/api/v1/pipelines/{slug}/runs/{run_id}/steps"),
            key,
        )
        .await
        .json()
        .await
        .unwrap()
    }

    /// The run's step attempts, in order, as (step id, attempt, status).
    pub async fn steps(&self, slug: &str, key: &str, run_id: &str) -> Vec<(String, i64, String)> {
        let body = self.steps_body(slug, key, run_id).await;
        body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["step_id"].as_str().unwrap().to_string(),
                    s["attempt"].as_i64().unwrap(),
                    s["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Adds an alert channel as the org's key: the answer's status and body (a signing secret
    /// in it is remembered, so the logs are checked for it).
    pub async fn add_channel(&self, slug: &str, key: &str, body: &Value) -> (u16, Value) {
        let r = self
            .key_post(&format!("/api/v1/notifications/{slug}/channels"), key, body)
            .await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if let Some(secret) = body["signing_secret"].as_str() {
            crate::helpers::remember_secret(secret);
        }
        (status, body)
    }

    /// The org's alert deliveries, as its key.
    pub async fn deliveries(&self, slug: &str, key: &str) -> Vec<Value> {
        let r = self
            .key_get(&format!("/api/v1/notifications/{slug}/deliveries"), key)
            .await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["deliveries"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Triggers `pipeline` for the org with `body`, as its key.
    pub async fn trigger(
        &self,
        slug: &str,
        key: &str,
        pipeline: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.key_post(
            &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
            key,
            body,
        )
        .await
    }

    /// Triggers `pipeline` with no parameters, as the org's key; asserts 202 and returns the
    /// run id.
    pub async fn started(&self, slug: &str, key: &str, pipeline: &str) -> String {
        let r = self.trigger(slug, key, pipeline, &json!({})).await;
        assert_eq!(r.status(), 202, "trigger {pipeline}");
        r.json::<Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Asks to cancel the run, as the org's key.
    pub async fn cancel(&self, slug: &str, key: &str, run_id: &str) -> reqwest::Response {
        self.key_post(
            &format!("/api/v1/pipelines/{slug}/runs/{run_id}/cancel"),
            key,
            &json!({}),
        )
        .await
    }

    /// Triggers test/nap with parameter `n`, asking to wait in the queue when the org is busy.
    pub async fn queue_run(&self, slug: &str, key: &str, n: i64) -> reqwest::Response {
        let body = json!({"parameters": {"n": n}, "when_busy": "queue"});
        self.trigger(slug, key, "test/nap", &body).await
    }

    /// Takes the org's one slot (test/hold: 10 minutes) until [`TestApp::free_the_slot`], so
    /// the runs queued after it wait; returns the holder's run id.
    pub async fn hold_the_slot(&self, slug: &str, key: &str) -> String {
        let r = self.trigger(slug, key, "test/hold", &json!({})).await;
        assert_eq!(r.status(), 202, "test/hold");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "PENDING");
        body["run_id"].as_str().unwrap().to_string()
    }

    /// Cancels the holder and waits until it reads CANCELLED.
    pub async fn free_the_slot(&self, slug: &str, key: &str, holder: &str) {
        assert_eq!(self.cancel(slug, key, holder).await.status(), 202);
        assert_eq!(
            self.wait_until_ended(slug, key, holder).await["status"],
            "CANCELLED"
        );
    }

    /// The value of one counter series on `/metrics`, e.g.
    /// `quarry_auth_cache_total{result="hit"}` (0 while the series does not exist yet).
    pub async fn counter(&self, series: &str) -> u64 {
        let needle = format!("{series} ");
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// `/metrics` as Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
