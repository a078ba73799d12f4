//! A local stand-in for provider APIs (no provider has a local equivalent). It serves the
//! validation endpoints and a paginated usage endpoint, records every request it receives
//! (path, query, the credential presented), and can answer 429 with Retry-After or hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

/// Items served by the usage endpoint, in pages of at most 500.
pub const ITEMS: usize = 1200;
const PAGE: usize = 500;

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: HashMap<String, String>,
    /// The credential presented (bearer token or x-api-key), if any.
    pub credential: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
pub struct State {
    pub seen: Mutex<Vec<Seen>>,
    /// Answer the next N usage requests with 429 and Retry-After: 1.
    pub throttle: Mutex<usize>,
    /// Seconds the usage endpoint waits before answering.
    pub hang_secs: Mutex<u64>,
    /// Bytes of padding added to every usage page (a provider that answers too much).
    pub padding_bytes: Mutex<usize>,
}

pub struct ProviderDouble {
    pub base: String,
    pub state: Arc<State>,
}

fn credential(req: &HttpRequest) -> Option<String> {
    if let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        return auth.strip_prefix("Bearer ").map(str::to_string);
    }
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Credentials containing "good" are accepted.
fn accepted(c: &Option<String>) -> bool {
    c.as_deref().is_some_and(|c| c.contains("good"))
}

fn record(state: &State, req: &HttpRequest) -> Option<String> {
    let query: HashMap<String, String> =
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let c = credential(req);
    state.seen.lock().unwrap().push(Seen {
        path: req.path().to_string(),
        query,
        credential: c.clone(),
        at: Instant::now(),
    });
    c
}

async fn check(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let c = record(&state, &req);
    if accepted(&c) {
        HttpResponse::Ok().json(json!({"data": []}))
    } else {
        // A real provider may echo details; the service must not pass them on.
        HttpResponse::Unauthorized()
            .json(json!({"error": format!("invalid key {}", c.unwrap_or_default())}))
    }
}

async fn usage(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let c = record(&state, &req);
    let hang = *state.hang_secs.lock().unwrap();
    if hang > 0 {
        tokio::time::sleep(Duration::from_secs(hang)).await;
    }
    {
        let mut throttle = state.throttle.lock().unwrap();
        if *throttle > 0 {
            *throttle -= 1;
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "1"))
                .json(json!({"error": "slow down"}));
        }
    }
    if !accepted(&c) {
        return HttpResponse::Unauthorized().finish();
    }
    let page: usize = match req
        .query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
    {
        Some(p) => p.trim_start_matches('p').parse().unwrap_or(1),
        None => 1,
    };
    let start = (page - 1) * PAGE;
    let end = (start + PAGE).min(ITEMS);
    let data: Vec<_> = (start..end)
        .map(|n| json!({"id": format!("item-{n}"), "model": format!("m{}", n % 3), "tokens": n}))
        .collect();
    let next = if end < ITEMS {
        json!(format!("p{}", page + 1))
    } else {
        json!(null)
    };
    let padding = "x".repeat(*state.padding_bytes.lock().unwrap());
    HttpResponse::Ok().json(json!({"data": data, "next_cursor": next, "padding": padding}))
}

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    assertion: String,
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    scope: String,
}

/// An OAuth token endpoint: accepts JWT assertions signed by the fixture service account's key
/// and answers with an access token the API endpoints accept.
async fn token(
    req: HttpRequest,
    form: web::Form<TokenForm>,
    state: web::Data<State>,
) -> HttpResponse {
    record(&state, &req);
    let public = std::fs::read(format!(
        "{}/tests/fixtures/keys/sa_test_public.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("http://{}/token", req.connection_info().host())]);
    let verified = jsonwebtoken::decode::<Claims>(&form.assertion, &key, &validation);
    match verified {
        Ok(data)
            if form.grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                && data.claims.iss == "quarry-test@example.iam.gserviceaccount.com"
                && data.claims.scope.contains("bigquery") =>
        {
            HttpResponse::Ok().json(json!({"access_token": "good-sa-access-token",
                                            "expires_in": 3600, "token_type": "Bearer"}))
        }
        _ => HttpResponse::BadRequest().json(json!({"error": "invalid_grant"})),
    }
}

impl ProviderDouble {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/me", web::get().to(check))
                .route("/v1/models", web::get().to(check))
                .route("/v1/usage", web::get().to(usage))
                .route("/bigquery/v2/projects", web::get().to(check))
                .route("/token", web::post().to(token))
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { base, state }
    }

    /// `PROVIDER_BASE_URLS` pointing every registered provider (and the service-account
    /// token endpoint) here.
    pub fn base_urls(&self) -> String {
        let mut urls: Vec<String> = ["openai", "anthropic", "usage_api", "gcp_bigquery"]
            .iter()
            .map(|p| format!("{p}={}", self.base))
            .collect();
        urls.push(format!("gcp_bigquery:token={}/token", self.base));
        urls.join(",")
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}
