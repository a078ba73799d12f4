//! A real local HTTP server that receives alerts: it records every request (its path, its
//! `webhook-*` headers and its body) and answers what the test scripted (a status per
//! request, then 200), or never answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// The statuses of the next answers, in order (then 200).
    script: Mutex<VecDeque<u16>>,
    /// Never answer.
    hang: Mutex<bool>,
}

pub struct Receiver {
    pub url: String,
    state: Arc<State>,
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    state.received.lock().unwrap().push(Received {
        path: req.path().to_string(),
        id: header(&req, "webhook-id"),
        timestamp: header(&req, "webhook-timestamp"),
        signature: header(&req, "webhook-signature"),
        body: String::from_utf8_lossy(&body).to_string(),
        at: Instant::now(),
    });
    if *state.hang.lock().unwrap() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hooks/quarry",
            listener.local_addr().unwrap().port()
        );
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, state }
    }

    /// Answers the next requests with these statuses, in order (then 200).
    pub fn answer(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn hang(&self) {
        *self.state.hang.lock().unwrap() = true;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits for `n` requests (at most `within`), then 2 s more, so that a request beyond the
    /// `n` expected would be in the answer too: every request once `n` arrived, else what came.
    pub async fn settled(&self, n: usize, within: Duration) -> Vec<Received> {
        let got = self.wait_for(n, within).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        if got.len() == n { self.received() } else { got }
    }

    /// Waits until `n` requests arrived (at most `within`), then returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= n || started.elapsed() > within {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
