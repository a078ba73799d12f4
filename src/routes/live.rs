//! A run's events as they happen: Server-Sent Events from the instance's live runs
//! (`crate::live`), so watchers are pushed changes instead of polling.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::pipelines::org_and_run;
use super::{RouteSpec, route};
use crate::auth::{Guarded, OrgOrRoot, scopes};
use crate::cost::price::Price;
use crate::executor::Executor;
use crate::http::error::ApiError;
use crate::live::{self, LiveRuns, Snapshot};
use crate::runs;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/api/v1/pipelines/{org_slug}/runs/{run_id}/events" => run_events, OrgOrRoot<scopes::RunsRead>, "A run's changes as Server-Sent Events (text/event-stream), ending with its end; resumable with Last-Event-ID")
        .returns(200, None)
        .also(&[(503, "Too many live streams for the org or on this instance (Retry-After)")]),
];

/// A comment line every this long keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream is closed after this long even if its run has not ended (the client reconnects
/// with `Last-Event-ID`), so no connection is held for ever.
const MAX_STREAM: Duration = Duration::from_secs(3600);

/// `event: run` with `{"run", "steps"}` for the run as it is now and after each change (the
/// `id` names the state: a reconnect with `Last-Event-ID` gets no repeat of it), then
/// `event: end` with the run's last state, and the stream closes.
pub async fn run_events(
    _caller: Guarded<OrgOrRoot<scopes::RunsRead>>,
    req: HttpRequest,
    executor: web::Data<Executor>,
    live: web::Data<LiveRuns>,
    price: web::Data<Price>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, run_id) = org_and_run(path)?;
    let subscription = live.watch(&org, &run_id).await?.ok_or(ApiError::NotFound)?;
    let declared: Option<Vec<String>> = {
        let current = subscription.snapshots.borrow();
        current
            .as_ref()
            .and_then(|s| executor.catalog().get(&s.run.pipeline_id))
            .map(|p| p.step_ids())
    };
    let last_seen = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let stream = Stream {
        subscription,
        last_sent: last_seen,
        declared,
        price: **price,
        done: false,
        until: tokio::time::Instant::now() + MAX_STREAM,
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok::<_, actix_web::Error>(chunk), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

struct Stream {
    /// The run's latest state; it holds the stream's place under the caps until the client
    /// goes.
    subscription: live::Subscription,
    last_sent: Option<String>,
    declared: Option<Vec<String>>,
    price: Price,
    done: bool,
    until: tokio::time::Instant,
}

impl Stream {
    /// The next chunk to send: an event, a keep-alive comment, or `None` to close.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            let current = self.subscription.snapshots.borrow_and_update().clone();
            if let Some(snapshot) = current {
                let version = snapshot.version();
                let ended = snapshot.ended();
                if ended {
                    self.done = true;
                }
                if self.last_sent.as_deref() != Some(version.as_str()) {
                    self.last_sent = Some(version.clone());
                    return Some(self.event(&snapshot, &version, ended));
                }
                if ended {
                    return None;
                }
            }
            tokio::select! {
                changed = self.subscription.snapshots.changed() => {
                    // The run's reader has gone without an end (nobody else watched and it
                    // stopped): close; the client reconnects and gets a fresh reader.
                    if changed.is_err() {
                        self.done = true;
                    }
                }
                _ = tokio::time::sleep(KEEP_ALIVE) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                _ = tokio::time::sleep_until(self.until) => {
                    self.done = true;
                }
            }
        }
    }

    fn event(&self, snapshot: &Snapshot, version: &str, ended: bool) -> Bytes {
        let mut steps = snapshot.steps.clone();
        if let Some(declared) = &self.declared {
            runs::in_run_order(&mut steps, declared);
        }
        let data = json!({"run": snapshot.run.clone().priced(self.price), "steps": steps});
        let kind = if ended { "end" } else { "run" };
        Bytes::from(format!("id: {version}\nevent: {kind}\ndata: {data}\n\n"))
    }
}
