//! A fault-injecting proxy in front of the emulator: forwards every request verbatim except the
//! ones a test asked to fail, and records the `jobs.query` / `jobs.insert` / `insertAll` calls
//! it saw. Like BigQuery (and unlike the emulator) it refuses a `jobs.insert` whose job id was
//! used before with 409 "Already Exists" (`JobIds` of the BigQuery model).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::bq_limits::{JobIds, forward};
use crate::helpers::{TestApp, emulator_host, spawn_app_with, unique_slug};

/// A 503 backendError for the next call whose path ends in `suffix` (and whose body holds
/// `needle`), sent after the request was forwarded: it took effect, its answer was lost.
pub fn lost_answer(suffix: &'static str, needle: Option<&'static str>) -> Fault {
    Fault {
        suffix,
        body_contains: needle,
        after_forwarding: true,
        status: 503,
        body: serde_json::json!({"error": {"code": 503, "message": "backend", "status": "UNAVAILABLE",
                     "errors": [{"reason": "backendError", "message": "backend"}]}}),
    }
}

/// [`lost_answer`], but refused before it took effect.
pub fn refused(suffix: &'static str, needle: Option<&'static str>) -> Fault {
    Fault {
        after_forwarding: false,
        ..lost_answer(suffix, needle)
    }
}

/// A canned answer for the next call whose path ends in `suffix` (or, for a suffix that ends
/// in `/`, contains it: `"/jobs/"` is the next `jobs.get`).
#[derive(Clone)]
pub struct Fault {
    pub suffix: &'static str,
    /// Forward the request first, then answer with the fault instead of BigQuery's response:
    /// the request took effect but its answer was lost.
    pub after_forwarding: bool,
    /// Only requests whose body contains this text (e.g. a table name).
    pub body_contains: Option<&'static str>,
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
struct ProxyState {
    faults: Mutex<VecDeque<Fault>>,
    /// While set, every request gets 503 backendError: BigQuery is down.
    down: std::sync::atomic::AtomicBool,
    /// While set, every request waits (then goes through): BigQuery is black-holed.
    hanging: std::sync::atomic::AtomicBool,
    /// (path fragment, how long): the next request whose path contains it is held that long.
    /// (path fragment, body text, how long): the next request whose path contains the fragment
    /// (and whose body the text, when given) is held that long.
    holds: Mutex<Vec<(&'static str, Option<&'static str>, std::time::Duration)>>,
    /// (path, status returned) of every `jobs.query`, `jobs.insert`, `insertAll` and faulted
    /// call.
    seen: Mutex<Vec<(String, u16)>>,
    jobs: JobIds,
}

pub struct FaultProxy {
    pub host: String,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    pub async fn start() -> Self {
        let state = Arc::new(ProxyState::default());
        let upstream = format!("http://{}", emulator_host());
        let data = web::Data::from(state.clone());
        let client = web::Data::new(reqwest::Client::new());
        let upstream = web::Data::new(upstream);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(client.clone())
                .app_data(upstream.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { host, state }
    }

    pub fn set_down(&self, down: bool) {
        self.state
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Black-holes BigQuery: requests wait until this is cleared (clients time out first).
    pub fn set_hanging(&self, hanging: bool) {
        self.state
            .hanging
            .store(hanging, std::sync::atomic::Ordering::SeqCst);
    }

    /// Holds the next request whose path contains `fragment` for `duration`, then forwards it.
    pub fn hold_next(&self, fragment: &'static str, duration: std::time::Duration) {
        self.state
            .holds
            .lock()
            .unwrap()
            .push((fragment, None, duration));
    }

    /// Holds the next request whose path contains `fragment` and whose body contains `needle`
    /// for `duration`, then forwards it.
    pub fn hold_next_with(
        &self,
        fragment: &'static str,
        needle: &'static str,
        duration: std::time::Duration,
    ) {
        self.state
            .holds
            .lock()
            .unwrap()
            .push((fragment, Some(needle), duration));
    }

    /// Whether every hold set so far has taken its request.
    pub fn holding_all(&self) -> bool {
        self.state.holds.lock().unwrap().is_empty()
    }

    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// The injected faults not yet answered.
    pub fn faults_left(&self) -> usize {
        self.state.faults.lock().unwrap().len()
    }

    /// Forgets the calls seen so far (e.g. those of a bootstrap).
    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    pub fn query_calls(&self) -> Vec<(String, u16)> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The statuses answered to the recorded calls whose path ends in `suffix`, in order.
    pub fn statuses(&self, suffix: &str) -> Vec<u16> {
        self.query_calls()
            .into_iter()
            .filter(|(path, _)| path.ends_with(suffix))
            .map(|(_, status)| status)
            .collect()
    }
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ProxyState>,
    client: web::Data<reqwest::Client>,
    upstream: web::Data<String>,
) -> HttpResponse {
    let path = req.uri().path().to_string();
    while state.hanging.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let hold = {
        let mut holds = state.holds.lock().unwrap();
        let text = String::from_utf8_lossy(&body);
        let position = holds.iter().position(|(fragment, needle, _)| {
            path.contains(fragment) && needle.is_none_or(|n| text.contains(n))
        });
        position.map(|i| holds.remove(i).2)
    };
    if let Some(duration) = hold {
        tokio::time::sleep(duration).await;
    }
    if state.down.load(std::sync::atomic::Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": {"code": 503,
            "message": "backend unavailable", "status": "UNAVAILABLE",
            "errors": [{"reason": "backendError", "message": "backend unavailable"}]}}));
    }
    let is_query = req.method() == "POST"
        && (path.ends_with("/queries")
            || path.ends_with("/insertAll")
            || path.ends_with("/jobs")
            || path.ends_with("/cancel"));
    let fault = {
        let mut faults = state.faults.lock().unwrap();
        let text = String::from_utf8_lossy(&body);
        let position = faults.iter().position(|f| {
            let at =
                path.ends_with(f.suffix) || (f.suffix.ends_with('/') && path.contains(f.suffix));
            at && f.body_contains.is_none_or(|needle| text.contains(needle))
        });
        position.and_then(|i| faults.remove(i))
    };
    let job_insert = req.method() == "POST" && path.ends_with("/jobs");
    if let Some(fault) = fault {
        if fault.after_forwarding && !(job_insert && state.jobs.check(&path, &body).is_some()) {
            let _lost = forward(&client, &upstream, &req, &body).await;
        }
        state.seen.lock().unwrap().push((path, fault.status));
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(fault.status).unwrap())
            .json(fault.body);
    }
    if job_insert {
        if let Some(conflict) = state.jobs.check(&path, &body) {
            state.seen.lock().unwrap().push((path, 409));
            return conflict;
        }
    }
    let answer = forward(&client, &upstream, &req, &body).await;
    if is_query {
        state
            .seen
            .lock()
            .unwrap()
            .push((path, answer.status().as_u16()));
    }
    answer
}

/// A fault proxy and a bootstrapped app that reaches BigQuery only through it (`customize` sets
/// more variables), with one org named after `prefix` and its key.
pub async fn behind_proxy(
    prefix: &str,
    customize: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (FaultProxy, TestApp, String, String) {
    let proxy = FaultProxy::start().await;
    let host = proxy.host.clone();
    let app = spawn_app_with(|vars| {
        vars.insert("BIGQUERY_EMULATOR_HOST".into(), host);
        customize(vars);
    })
    .await;
    app.bootstrap().await;
    let slug = unique_slug(prefix);
    let key = app.org_with_key(&slug).await;
    (proxy, app, slug, key)
}
