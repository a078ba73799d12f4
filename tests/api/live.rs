//! A run's events as Server-Sent Events (`GET …/runs/{run_id}/events`): each state pushed in
//! order, the end closing the stream, `Last-Event-ID` resuming without repeats, watchers of a
//! run sharing its reads, and the caps answered 503 with Retry-After. And looks at a run
//! (`GET …/runs/{run_id}`, `…/steps`) answered from the same tail, with the instance's own
//! writes seen at once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::verbs::eventually;

/// One event of a stream.
#[derive(Debug)]
struct Event {
    id: String,
    kind: String,
    data: Value,
}

/// An open stream, read event by event (keep-alive comments skipped).
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    /// The next event; `None` once the service closed the stream. Panics after `within`.
    async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.into();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.into();
                    }
                }
                if !kind.is_empty() {
                    let data = serde_json::from_str(&data).unwrap();
                    return Some(Event { id, kind, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event or the stream's end in time")
                .unwrap();
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Every event until the service closes the stream.
    async fn all(&mut self, within: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.next(within).await {
            events.push(e);
        }
        events
    }
}

async fn open(
    app: &TestApp,
    slug: &str,
    key: &str,
    run_id: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(&format!("/api/v1/pipelines/{slug}/runs/{run_id}/events")))
        .header("X-API-Key", key);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.unwrap()
}

async fn stream(app: &TestApp, slug: &str, key: &str, run_id: &str) -> Stream {
    let response = open(app, slug, key, run_id, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    Stream {
        response,
        buffer: String::new(),
    }
}

fn rank(status: &str) -> usize {
    ["QUEUED", "PENDING", "RUNNING", "SUCCEEDED"]
        .iter()
        .position(|s| *s == status)
        .unwrap_or_else(|| panic!("unexpected status {status}"))
}

#[tokio::test]
async fn a_runs_stream_pushes_its_states_in_order_and_closes_after_its_end() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "200".into());
    })
    .await;
    let (slug, key) = app.new_org("live").await;
    let run_id = app.started(&slug, &key, "test/sleep").await;
    let mut events = stream(&app, &slug, &key, &run_id).await;
    let events = events.all(Duration::from_secs(60)).await;

    let (last, before) = events.split_last().expect("at least the end");
    assert_eq!(last.kind, "end");
    assert_eq!(last.data["run"]["run_id"], run_id.as_str());
    assert_eq!(last.data["run"]["status"], "SUCCEEDED");
    let steps: Vec<(&str, i64, &str)> = last.data["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step_id"].as_str().unwrap(),
                s["attempt"].as_i64().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, [("nap", 1, "SUCCEEDED")]);
    // Every state once, in the order the run went through them.
    assert!(before.iter().all(|e| e.kind == "run"), "{events:?}");
    let ranks: Vec<usize> = events
        .iter()
        .map(|e| rank(e.data["run"]["status"].as_str().unwrap()))
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{events:?}");
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "no state sent twice: {events:?}");
    // The end's run is what GET answers.
    let run = app.run(&slug, &key, &run_id).await;
    assert_eq!(last.data["run"], run);
}

#[tokio::test]
async fn a_steps_end_reaches_its_watchers_without_waiting_for_the_log_flush_interval() {
    // Buffered log rows wait up to RUN_LOG_FLUSH_MS (a minute here); a step attempt's end is
    // what a run's watchers wait for, so it is written at once, with what was queued before
    // it (the run's RUNNING event). `control` prepares at once, then waits 20 s.
    let app = spawn_app_with(|vars| {
        vars.insert("RUN_LOG_FLUSH_MS".into(), "60000".into());
        vars.insert("LIVE_POLL_MS".into(), "200".into());
    })
    .await;
    let (slug, key) = app.new_org("live-flush").await;
    let run_id = app.started(&slug, &key, "test/control").await;
    let mut watcher = stream(&app, &slug, &key, &run_id).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    let prepared = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(event) =
            tokio::time::timeout(left, watcher.next(left + Duration::from_secs(1))).await
        else {
            panic!("prepare's end not pushed within 15 s; pushed: {seen:?}");
        };
        let event = event.expect("the stream ended");
        let steps = event.data["steps"].as_array().cloned().unwrap_or_default();
        if steps
            .iter()
            .any(|s| s["step_id"] == "prepare" && s["status"] == "SUCCEEDED")
        {
            break event.data;
        }
        seen.push(event.data);
    };
    assert_eq!(prepared["run"]["status"], "RUNNING", "{prepared}");
    drop(watcher);
    assert_eq!(app.cancel(&slug, &key, &run_id).await.status(), 202);
    app.wait_until_ended(&slug, &key, &run_id).await;
}

#[tokio::test]
async fn a_reconnect_with_the_last_event_id_gets_no_repeat_and_unknown_or_foreign_runs_are_refused()
{
    let app = spawn_app().await;
    let (slug, key) = app.new_org("live-re").await;
    let run_id = app.started(&slug, &key, "test/sleep").await;
    app.wait_until_ended(&slug, &key, &run_id).await;

    // An ended run: its end at once, then the stream closes.
    let ended = stream(&app, &slug, &key, &run_id)
        .await
        .all(Duration::from_secs(10))
        .await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(
        (ended[0].kind.as_str(), &ended[0].data["run"]["status"]),
        ("end", &json!("SUCCEEDED"))
    );

    // Resumed with that id: nothing new to send.
    let response = open(&app, &slug, &key, &run_id, Some(&ended[0].id)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    // With an older id: the end again.
    let response = open(&app, &slug, &key, &run_id, Some("RUNNING-1-0-0")).await;
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with(&format!("id: {}\nevent: end\n", ended[0].id)),
        "{text}"
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let r = open(&app, &slug, &key, &unknown, None).await;
    assert_eq!(r.status(), 404);
    let (other, other_key) = app.new_org("live-other").await;
    let r = open(&app, &slug, &other_key, &run_id, None).await;
    assert_eq!(r.status(), 403);
    let r = open(&app, &other, &other_key, &run_id, None).await;
    assert_eq!(
        r.status(),
        404,
        "another org's run id is no run of this org"
    );
}

#[tokio::test]
async fn streams_past_the_orgs_cap_get_503_with_retry_after_and_a_closed_one_frees_its_place() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_STREAMS_PER_ORG".into(), "2".into());
    })
    .await;
    let (slug, key) = app.new_org("live-cap").await;
    let holder = app.hold_the_slot(&slug, &key).await;
    let mut first = stream(&app, &slug, &key, &holder).await;
    let second = stream(&app, &slug, &key, &holder).await;
    assert!(first.next(Duration::from_secs(10)).await.is_some());

    let r = open(&app, &slug, &key, &holder, None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Service unavailable");
    // Another org's streams are counted on their own.
    let (other, other_key) = app.new_org("live-cap-other").await;
    let other_run = app.hold_the_slot(&other, &other_key).await;
    let mut theirs = stream(&app, &other, &other_key, &other_run).await;
    assert!(theirs.next(Duration::from_secs(10)).await.is_some());

    drop(second);
    eventually(
        "a closed stream's place taken again",
        Duration::from_secs(30),
        || async {
            let r = open(&app, &slug, &key, &holder, None).await;
            match r.status().as_u16() {
                200 => Ok(()),
                s => Err(format!("{s}")),
            }
        },
    )
    .await;
    app.free_the_slot(&slug, &key, &holder).await;
    app.free_the_slot(&other, &other_key, &other_run).await;
}

#[tokio::test]
async fn nine_more_watchers_of_a_watched_run_add_no_bigquery_read() {
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "500".into());
    })
    .await;
    let (slug, key) = app.new_org("live-share").await;
    let holder = app.hold_the_slot(&slug, &key).await;
    let mut watchers = vec![stream(&app, &slug, &key, &holder).await];
    watchers[0].next(Duration::from_secs(10)).await.unwrap();

    let window = Duration::from_secs(4);
    let before = app.warehouse.counters().snapshot();
    tokio::time::sleep(window).await;
    let one = app.warehouse.counters().snapshot().since(&before).query;

    let before = app.warehouse.counters().snapshot();
    for _ in 0..9 {
        let mut w = stream(&app, &slug, &key, &holder).await;
        w.next(Duration::from_secs(10)).await.unwrap();
        watchers.push(w);
    }
    let joined = app.warehouse.counters().snapshot().since(&before).query;
    let before = app.warehouse.counters().snapshot();
    tokio::time::sleep(window).await;
    let ten = app.warehouse.counters().snapshot().since(&before).query;

    // One watcher: one read a poll (the run with its steps), up to 8 polls a window (fewer when
    // BigQuery is slower than the poll: a loaded emulator may take seconds a query).
    assert!(one >= 1, "the run is read while watched: {one}");
    // (Joining reads nothing: nine joins that each read would be 18 queries; what runs meanwhile
    // is the run's own reader and the service's background work.)
    assert!(joined < 9, "joining a watched run reads nothing: {joined}");
    // Ten watchers read as one: at most one query a poll, a poll at most every 500 ms (each
    // watcher reading on its own would be 160 in this window). Not compared with the window of
    // one watcher: polls slower there on a busier emulator made that comparison fail.
    let polls = (window.as_millis() / 500) as u64;
    assert!(
        ten <= polls + 3,
        "ten watchers read as one, at most one query a poll: {ten} in {polls} poll intervals \
         (one watcher: {one})"
    );
    drop(watchers);
    app.free_the_slot(&slug, &key, &holder).await;
}

#[tokio::test]
async fn ten_watched_runs_are_read_in_one_query_a_poll_and_each_watcher_gets_its_own_run() {
    // One tail per instance: every poll reads the state of all watched runs and their steps in
    // one query, so ten runs watched cost what one does: at most one query a poll, and a poll
    // at most every 500 ms (8 in this window, however fast the polls; read one by one, ten runs
    // would be 20 queries a poll: 160). Not compared with
    // the window of one run: a busier emulator there (slower polls, fewer of them) made that
    // comparison fail with ten runs at 16 queries and one at 10.
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "500".into());
    })
    .await;
    let (slug, key) = app.new_org("live-tail").await;
    app.set_limits(&slug, 100, 1000, 10).await;
    let mut holders = Vec::new();
    for _ in 0..10 {
        holders.push(app.hold_the_slot(&slug, &key).await);
    }
    let window = Duration::from_secs(4);
    let mut watchers = vec![stream(&app, &slug, &key, &holders[0]).await];
    watchers[0].next(Duration::from_secs(10)).await.unwrap();
    let before = app.warehouse.counters().snapshot();
    tokio::time::sleep(window).await;
    let one = app.warehouse.counters().snapshot().since(&before).query;

    for holder in &holders[1..] {
        let mut w = stream(&app, &slug, &key, holder).await;
        let first = w.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(first.data["run"]["run_id"], holder.as_str());
        watchers.push(w);
    }
    let before = app.warehouse.counters().snapshot();
    tokio::time::sleep(window).await;
    let ten = app.warehouse.counters().snapshot().since(&before).query;
    assert!(one >= 1, "the watched run is read while watched: {one}");
    let polls = (window.as_millis() / 500) as u64;
    assert!(
        ten <= polls + 3,
        "ten runs are read as one, at most one query a poll: {ten} in {polls} poll intervals \
         (one run: {one})"
    );

    // Each watcher is pushed its own run's end, as GET answers it.
    for holder in &holders {
        assert_eq!(app.cancel(&slug, &key, holder).await.status(), 202);
    }
    for (holder, mut w) in holders.iter().zip(watchers) {
        let events = w.all(Duration::from_secs(60)).await;
        let last = events.last().expect("an end");
        assert_eq!(last.kind, "end", "{events:?}");
        assert_eq!(last.data["run"]["status"], "CANCELLED");
        assert_eq!(last.data["run"], app.run(&slug, &key, holder).await);
        assert_eq!(
            last.data["steps"],
            app.steps_body(&slug, &key, holder).await["steps"]
        );
    }
}

#[tokio::test]
async fn forty_looks_at_once_at_a_run_share_the_tails_polls_and_equal_a_fresh_read() {
    // `GET …/runs/{id}` and `…/steps` come from the instance's live model: the first look reads
    // BigQuery and puts the run in the tail; forty looks sent together then wait for the tail's
    // next poll (one query), not one read each (forty queries or more).
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "5000".into());
    })
    .await;
    let (slug, key) = app.new_org("live-look").await;
    let holder = app.hold_the_slot(&slug, &key).await;
    app.wait_until_running(&slug, &key, &holder).await;

    let before = app.warehouse.counters().snapshot();
    let looks = (0..40).map(|i| {
        let (app, slug, key, holder) = (&app, &slug, &key, &holder);
        async move {
            if i % 2 == 0 {
                assert_eq!(app.run(slug, key, holder).await["status"], "RUNNING");
            } else {
                let steps = app.steps_body(slug, key, holder).await;
                assert_eq!(steps["steps"][0]["step_id"], "nap", "{steps}");
            }
        }
    });
    futures_util::future::join_all(looks).await;
    let looked = app.warehouse.counters().snapshot().since(&before).query;
    // One poll (the run, its steps), two when a poll was in flight as they arrived; a few
    // queries of the service's own background work may fall in the window.
    assert!(
        looked <= 6,
        "forty looks at once share the tail's polls: {looked} queries"
    );

    // What the model answers equals what an instance that never saw the run reads from
    // BigQuery, while it runs and once it has ended.
    let meta = app.meta_dataset.clone();
    let fresh = spawn_app_with(|vars| {
        vars.insert("META_DATASET".into(), meta);
    })
    .await;
    // (Read within the same second: the running run's view changes only with its events.)
    let running = app.run(&slug, &key, &holder).await;
    assert_eq!(fresh.run(&slug, &key, &holder).await, running);
    app.free_the_slot(&slug, &key, &holder).await;
    let ended = app.run(&slug, &key, &holder).await;
    assert_eq!(ended["status"], "CANCELLED");
    let other = spawn_app_with(|vars| {
        vars.insert("META_DATASET".into(), app.meta_dataset.clone());
    })
    .await;
    assert_eq!(other.run(&slug, &key, &holder).await, ended);
    assert_eq!(
        other.steps_body(&slug, &key, &holder).await,
        app.steps_body(&slug, &key, &holder).await
    );
}

/// Two instances on one meta dataset; the second's tail polls only when looks ask (its
/// interval is a minute), so the queries it sends are the looks'.
async fn an_instance_and_one_that_polls_when_asked() -> (TestApp, TestApp) {
    let a = spawn_app().await;
    let meta = a.meta_dataset.clone();
    let b = spawn_app_with(move |vars| {
        vars.insert("META_DATASET".into(), meta);
        vars.insert("LIVE_POLL_MS".into(), "60000".into());
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn forty_first_looks_at_once_at_a_run_share_at_most_two_reads() {
    // An instance that never saw the run: the looks share the one read of it (the tail's next
    // poll, which the run joins with the first look), instead of one read each (eighty queries;
    // refused by BigQuery's query limit under load).
    let (a, b) = an_instance_and_one_that_polls_when_asked().await;
    let (slug, key) = a.new_org("live-first").await;
    let holder = a.hold_the_slot(&slug, &key).await;
    a.wait_until_running(&slug, &key, &holder).await;

    let before = b.warehouse.counters().snapshot();
    let looks = (0..40).map(|_| {
        let (b, slug, key, holder) = (&b, &slug, &key, &holder);
        async move { b.run(slug, key, holder).await["status"].clone() }
    });
    let seen = futures_util::future::join_all(looks).await;
    let looked = b.warehouse.counters().snapshot().since(&before).query;
    assert!(seen.iter().all(|s| s == "RUNNING"), "{seen:?}");
    // Two reads (the run and its steps each), a few queries of background work besides.
    assert!(
        looked <= 8,
        "forty first looks at once share at most two reads: {looked} queries"
    );
    a.free_the_slot(&slug, &key, &holder).await;
}

#[tokio::test]
async fn first_looks_at_twenty_runs_at_once_share_the_tails_poll() {
    // An instance that never saw the runs: each run first looked at joins its tail, and the
    // tail's next poll reads them all (one query), instead of one read of each (forty).
    let (a, b) = an_instance_and_one_that_polls_when_asked().await;
    let (slug, key) = a.new_org("live-twenty").await;
    a.set_limits(&slug, 1000, 10_000, 20).await;
    let runs =
        futures_util::future::join_all((0..20).map(|_| a.started(&slug, &key, "test/nap"))).await;
    for run in &runs {
        assert_eq!(
            a.wait_until_ended(&slug, &key, run).await["status"],
            "SUCCEEDED"
        );
    }

    let before = b.warehouse.counters().snapshot();
    let looks = runs.iter().map(|run| {
        let (b, slug, key) = (&b, &slug, &key);
        async move { b.run(slug, key, run).await }
    });
    let seen = futures_util::future::join_all(looks).await;
    let looked = b.warehouse.counters().snapshot().since(&before).query;
    for (run, body) in runs.iter().zip(&seen) {
        assert_eq!(
            (body["run_id"].as_str(), body["status"].as_str()),
            (Some(run.as_str()), Some("SUCCEEDED"))
        );
    }
    // One poll (the runs and their steps), a few queries of background work besides.
    assert!(
        looked <= 8,
        "first looks at twenty runs share the tail's poll: {looked} queries"
    );
    // Read once, ended: looked at again, from memory.
    let before = b.warehouse.counters().snapshot();
    assert_eq!(b.run(&slug, &key, &runs[0]).await["status"], "SUCCEEDED");
    assert_eq!(b.warehouse.counters().snapshot().since(&before).query, 0);
}

#[tokio::test]
async fn a_run_read_ended_on_one_instance_never_reads_running_on_another_that_tails_it() {
    // Behind a load balancer a client's looks land on any instance. The second instance has the
    // run in its tail (read RUNNING, its next poll 5 s away): once the first has answered the
    // run's end, the second answers it too, not the RUNNING of its last poll.
    let a = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "5000".into());
    })
    .await;
    let meta = a.meta_dataset.clone();
    let b = spawn_app_with(move |vars| {
        vars.insert("META_DATASET".into(), meta);
        vars.insert("LIVE_POLL_MS".into(), "5000".into());
    })
    .await;
    let (slug, key) = a.new_org("live-mono").await;
    let holder = a.hold_the_slot(&slug, &key).await;
    b.wait_until_running(&slug, &key, &holder).await;
    assert_eq!(b.run(&slug, &key, &holder).await["status"], "RUNNING");
    a.free_the_slot(&slug, &key, &holder).await;
    let on_b = b.run(&slug, &key, &holder).await;
    assert_eq!(on_b["status"], "CANCELLED", "{on_b}");
    assert_eq!(on_b, a.run(&slug, &key, &holder).await);
}

#[tokio::test]
async fn first_looks_at_runs_whose_poll_is_slow_wait_for_it_and_read_none_on_their_own() {
    // Behind the model every query takes 2 s: a poll (the runs, then their steps) takes 4 s,
    // longer than two poll intervals (1 s) of the instance looked at. The first looks at five
    // runs join its tail and wait for the slow polls (the one in flight, then their own). Looks that gave up after two intervals and read their run on their
    // own were, under load, a herd that starved the polls (make bench-reads: 947 such reads past
    // their deadline, every poller answered 503).
    let a = spawn_app().await;
    let (slug, key) = a.new_org("live-slow").await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let r = a.trigger(&slug, &key, "test/fail", &json!({})).await;
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        let run_id = body["run_id"].as_str().unwrap().to_string();
        assert_eq!(
            a.wait_until_ended(&slug, &key, &run_id).await["status"],
            "FAILED"
        );
        runs.push(run_id);
    }
    let (model, b) = behind_the_model(&a, &[&key], Duration::from_secs(2)).await;
    let before = model.labelled_jobs().len();
    let looks = runs.iter().map(|run_id| {
        let (b, slug, key) = (&b, &slug, &key);
        async move { b.run(slug, key, run_id).await["status"].clone() }
    });
    let seen = futures_util::future::join_all(looks).await;
    assert_eq!(seen, vec![json!("FAILED"); 5]);
    let jobs = model.labelled_jobs();
    let (own, polled) = own_reads_and_polls(&jobs[before..], &slug);
    assert_eq!(own, 0, "no look read its run on its own ({polled} polls)");
    assert!(polled >= 1);
}

#[tokio::test]
async fn a_look_no_poll_answers_within_about_a_deadline_is_503_and_reads_nothing_on_its_own() {
    // Behind the model every query takes 12 s: a poll (the runs with their steps) takes 12 s,
    // past what a look waits for it (8 s and two poll intervals: about one BigQuery deadline).
    // The look answers 503 with Retry-After and adds no read of its own to a BigQuery that is
    // behind already (it read the run itself after 10 s, one read per run looked at).
    let a = spawn_app().await;
    let (slug, key) = a.new_org("live-late").await;
    let holder = a.hold_the_slot(&slug, &key).await;
    let (model, b) = behind_the_model(&a, &[&key], Duration::from_secs(12)).await;
    let before = model.labelled_jobs().len();
    let r = b
        .key_get(&format!("/api/v1/pipelines/{slug}/runs/{holder}"), &key)
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Service unavailable");
    let jobs = model.labelled_jobs();
    let (own, _) = own_reads_and_polls(&jobs[before..], &slug);
    assert_eq!(own, 0, "the look read its run on its own");
    let fast = Duration::from_millis(10);
    model.set_latencies(fast, fast, fast);
    a.free_the_slot(&slug, &key, &holder).await;
}

/// Of `jobs`, the reads of runs with their steps that `slug`'s requests made on their own (a
/// look the tail's poll did not answer), and the tail's polls (bookkeeping, for every org).
fn own_reads_and_polls(jobs: &[crate::bq_limits::LabelledJob], slug: &str) -> (usize, usize) {
    let reads = crate::helpers::of_file(jobs, "runs/by_ids_with_steps.sql");
    let of_org = |org: &str| {
        reads
            .iter()
            .filter(|j| j.labels.get("quarry_org").map(String::as_str) == Some(org))
            .count()
    };
    (of_org(slug), of_org(""))
}

/// A second instance on `a`'s meta dataset behind the BigQuery model, its tail polling every
/// second: `keys` are looked up first, then every query takes `query`.
async fn behind_the_model(
    a: &TestApp,
    keys: &[&str],
    query: Duration,
) -> (crate::bq_limits::LimitsModel, TestApp) {
    behind_the_model_polling(a, keys, query, "1000").await
}

/// As [`behind_the_model`], its tail polling every `poll_ms`.
async fn behind_the_model_polling(
    a: &TestApp,
    keys: &[&str],
    query: Duration,
    poll_ms: &str,
) -> (crate::bq_limits::LimitsModel, TestApp) {
    let meta = a.meta_dataset.clone();
    let poll_ms = poll_ms.to_string();
    let fast = Duration::from_millis(10);
    let (model, b) = crate::helpers::spawn_behind_model(
        crate::bq_limits::Limits::bigquery(fast, fast, fast),
        move |vars| {
            vars.insert("META_DATASET".into(), meta);
            vars.insert("LIVE_POLL_MS".into(), poll_ms);
        },
    )
    .await;
    for key in keys {
        assert_eq!(b.key_get("/api/v1/whoami", key).await.status(), 200);
    }
    model.set_latencies(fast, query, fast);
    (model, b)
}

/// A look at `path` (a run or its steps) sending back `etag` as `If-None-Match`.
async fn look_again(app: &TestApp, path: &str, key: &str, etag: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("X-API-Key", key)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_look_sending_back_its_etag_is_answered_from_the_tail_at_once_and_never_older_than_it() {
    // The second instance's tail polls every 60 s (on demand at most every 15 s). A look that
    // sends back the version it was told needs no poll while the tail's state is as far on:
    // 304, no query. Told a later state by the other instance (the run's end), it is not
    // answered the RUNNING of its tail: it waits for a poll, which finds that very state (304).
    let (a, b) = an_instance_and_one_that_polls_when_asked().await;
    let (slug, key) = a.new_org("live-etag").await;
    let holder = a.hold_the_slot(&slug, &key).await;
    a.wait_until_running(&slug, &key, &holder).await;
    let run = format!("/api/v1/pipelines/{slug}/runs/{holder}");
    let steps = format!("{run}/steps");
    let first = b.key_get(&run, &key).await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("\"RUNNING-"), "{etag}");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["status"], "RUNNING");

    let before = b.warehouse.counters().snapshot();
    // A first look at the steps that sends the run's ETag: the steps of that state, at once
    // (their own ETag is the run's prefixed `steps:`, so the run's is no 304 for them).
    let first_steps = look_again(&b, &steps, &key, &etag).await;
    assert_eq!(first_steps.status(), 200);
    let steps_etag = first_steps.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(steps_etag, format!("\"steps:{}", &etag[1..]));
    let body: Value = first_steps.json().await.unwrap();
    assert_eq!(body["run_id"], holder.as_str());
    assert!(body["steps"].is_array(), "{body}");
    for (path, tag) in [(&run, &etag), (&steps, &steps_etag)].repeat(3) {
        let again = look_again(&b, path, &key, tag).await;
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().unwrap(), tag, "{path}");
        assert_eq!(again.text().await.unwrap(), "", "{path}");
    }
    assert_eq!(
        b.warehouse.counters().snapshot().since(&before).query,
        0,
        "looks that sent back their ETag wait for no poll and send no query"
    );

    a.free_the_slot(&slug, &key, &holder).await;
    let on_a = a.key_get(&run, &key).await;
    let ended = on_a.headers()["etag"].to_str().unwrap().to_string();
    assert!(ended.starts_with("\"CANCELLED-"), "{ended}");
    let before = b.warehouse.counters().snapshot();
    let on_b = look_again(&b, &run, &key, &ended).await;
    assert_eq!(
        on_b.status(),
        304,
        "told CANCELLED by the other instance, this one answers that state, not its RUNNING"
    );
    assert_eq!(on_b.headers()["etag"].to_str().unwrap(), ended);
    assert!(b.warehouse.counters().snapshot().since(&before).query >= 1);
    // A version that is not one (or none) is no shortcut: the state as a fresh read found it.
    let plain = look_again(&b, &run, &key, "\"RUNNING-9-9-9-not-a-version\"").await;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["etag"].to_str().unwrap(), ended);
    let body: Value = plain.json().await.unwrap();
    assert_eq!(body["status"], "CANCELLED");
}

#[tokio::test]
async fn a_queued_run_cancelled_reads_cancelled_at_once_on_the_instance_that_wrote_it() {
    // The tail polls every 5 s here: the CANCELLED seen right after the cancel comes from this
    // instance's own write marking the run for a fresh read, not from a poll.
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "5000".into());
    })
    .await;
    let (slug, key) = app.new_org("live-own").await;
    let holder = app.hold_the_slot(&slug, &key).await;
    let r = app.queue_run(&slug, &key, 1).await;
    assert_eq!(r.status(), 202);
    let queued: Value = r.json().await.unwrap();
    let run_id = queued["run_id"].as_str().unwrap().to_string();
    assert_eq!(app.run(&slug, &key, &run_id).await["status"], "QUEUED");
    // Looked at again: from the model.
    assert_eq!(app.run(&slug, &key, &run_id).await["status"], "QUEUED");
    assert_eq!(app.cancel(&slug, &key, &run_id).await.status(), 202);
    let after = app.run(&slug, &key, &run_id).await;
    assert_eq!(after["status"], "CANCELLED", "{after}");
    assert_eq!(after["error_class"], "cancelled", "{after}");
    app.free_the_slot(&slug, &key, &holder).await;
}

#[tokio::test]
async fn callers_asking_an_orgs_first_page_of_runs_together_share_one_read_and_see_its_own_new_run()
{
    // A first page is kept for a poll interval (5 s here) and read once for everyone asking the
    // same meanwhile; a run event this instance writes for the org makes the next ask read again.
    let app = spawn_app_with(|vars| {
        vars.insert("LIVE_POLL_MS".into(), "5000".into());
    })
    .await;
    let (slug, key) = app.new_org("live-list").await;
    let first = app.started(&slug, &key, "test/sleep").await;
    app.wait_until_ended(&slug, &key, &first).await;
    let path = format!("/api/v1/pipelines/{slug}/runs?limit=20");

    let before = app.warehouse.counters().snapshot();
    let asks = (0..10).map(|_| app.key_get(&path, &key));
    let pages = futures_util::future::join_all(asks).await;
    let reads = app.warehouse.counters().snapshot().since(&before).query;
    for page in pages {
        assert_eq!(page.status(), 200);
        let body: Value = page.json().await.unwrap();
        assert_eq!(body["runs"][0]["run_id"], first.as_str(), "{body}");
    }
    // (Read one by one: ten queries. What else runs meanwhile: the service's background work.)
    assert!(reads <= 3, "ten asks share one read: {reads}");

    let second = app.started(&slug, &key, "test/sleep").await;
    let body: Value = app.key_get(&path, &key).await.json().await.unwrap();
    let ids: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str(), first.as_str()], "{body}");
    app.wait_until_ended(&slug, &key, &second).await;
}

#[tokio::test]
async fn a_first_page_asked_is_held_fresh_in_the_background_and_answered_at_once() {
    // Instance b polls every 8 s, behind the model with 3-s queries: a held page is read again
    // every 16 s and answered while its read ended within 24 s. The first ask of the org's first
    // page waits for a read. The other instance then starts a run. Asked again 9 s after that
    // read started, b answers the page it holds at once, without the new run; its refresh
    // (16 s after the first ask) brings the new run, and every ask meanwhile is answered at
    // once. (A page kept for one interval after its read, then read in front of the next
    // caller, made that caller wait 3 s.)
    let a = spawn_app().await;
    let (slug, key) = a.new_org("live-ahead").await;
    let older = a.started(&slug, &key, "test/sleep").await;
    a.wait_until_ended(&slug, &key, &older).await;
    let (model, b) = behind_the_model_polling(&a, &[&key], Duration::from_secs(3), "8000").await;
    let path = format!("/api/v1/pipelines/{slug}/runs?limit=20");
    let ask = || async {
        let asked = std::time::Instant::now();
        let r = b.key_get(&path, &key).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let ids: Vec<String> = body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_string())
            .collect();
        (ids, asked.elapsed())
    };

    let read_started = tokio::time::Instant::now();
    let (first, _) = ask().await;
    assert_eq!(first, vec![older.clone()]);
    let newer = a.started(&slug, &key, "test/sleep").await;
    tokio::time::sleep_until(read_started + Duration::from_secs(9)).await;
    let (kept, took) = ask().await;
    assert_eq!(
        kept,
        vec![older.clone()],
        "the page kept, until the read behind it is in"
    );
    assert!(
        took < Duration::from_secs(2),
        "answered at once, not after a read: {took:?}"
    );

    let until = read_started + Duration::from_secs(24);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (ids, took) = ask().await;
        assert!(
            took < Duration::from_secs(2),
            "answered at once, not after a read: {took:?}"
        );
        if ids == vec![newer.clone(), older.clone()] {
            break;
        }
        assert_eq!(ids, vec![older.clone()]);
        assert!(
            tokio::time::Instant::now() < until,
            "the held page's refresh brings the new run"
        );
    }
    let jobs = model.labelled_jobs();
    assert_eq!(
        crate::helpers::of_file(&jobs, "runs/list_by_org.sql").len(),
        0
    );
    assert_eq!(
        crate::helpers::of_file(&jobs, "runs/first_pages_by_orgs.sql").len(),
        2,
        "the first ask's read and the held page's refresh"
    );
    a.wait_until_ended(&slug, &key, &newer).await;
}

#[tokio::test]
async fn first_pages_of_five_orgs_asked_at_once_are_read_together_each_as_a_read_of_its_own() {
    // Run lists' first pages asked under one filter while such a read runs are read by the next
    // one, every org in one query: five orgs cost at most two queries (the first caller's read,
    // and the one the other four joined), not five, and none of its own. Each org gets its own runs, newest first,
    // with a token whose next page (read on its own) continues it.
    let a = spawn_app().await;
    let mut orgs = Vec::new();
    for _ in 0..5 {
        let (slug, key) = a.new_org("live-pages").await;
        let older = a.started(&slug, &key, "test/sleep").await;
        a.wait_until_ended(&slug, &key, &older).await;
        let newer = a.started(&slug, &key, "test/sleep").await;
        orgs.push((slug, key, newer, older));
    }
    for (slug, key, newer, _) in &orgs {
        a.wait_until_ended(slug, key, newer).await;
    }
    // Queries of 2 s: the asks that miss the first read all join the second.
    let keys: Vec<&str> = orgs.iter().map(|(_, key, _, _)| key.as_str()).collect();
    let (model, b) = behind_the_model(&a, &keys, Duration::from_secs(2)).await;
    let before = model.labelled_jobs().len();
    let asks = orgs.iter().map(|(slug, key, _, _)| {
        let b = &b;
        async move {
            let r = b
                .key_get(&format!("/api/v1/pipelines/{slug}/runs?limit=1"), key)
                .await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    });
    let pages = futures_util::future::join_all(asks).await;
    let jobs = model.labelled_jobs();
    let together = crate::helpers::of_file(&jobs[before..], "runs/first_pages_by_orgs.sql").len();
    let alone = crate::helpers::of_file(&jobs[before..], "runs/list_by_org.sql").len();
    assert_eq!(alone, 0, "no first page read on its own");
    // (A third may be the held pages' refresh, two poll intervals after the first ask: it reads
    // all five together too.)
    assert!(
        (1..=3).contains(&together),
        "five orgs' first pages in at most two reads and a refresh: {together}"
    );

    for ((slug, key, newer, older), page) in orgs.iter().zip(pages) {
        let ids: Vec<&Value> = page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["run_id"])
            .collect();
        assert_eq!(ids, vec![&json!(newer)], "{slug}: {page}");
        assert_eq!(page["runs"][0]["org_slug"], slug.as_str());
        let token = page["next_page_token"].as_str().expect("a second page");
        let next: Value = b
            .key_get(
                &format!("/api/v1/pipelines/{slug}/runs?limit=1&page_token={token}"),
                key,
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(next["runs"][0]["run_id"], older.as_str(), "{slug}: {next}");
        assert_eq!(next["next_page_token"], Value::Null, "{slug}: {next}");
        // The two pages (the second read on its own) are the org's list of two, as one page.
        let both: Value = b
            .key_get(&format!("/api/v1/pipelines/{slug}/runs?limit=2"), key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            both["runs"],
            json!([page["runs"][0], next["runs"][0]]),
            "{slug}"
        );
    }
}

#[tokio::test]
async fn first_streams_of_five_runs_at_once_share_the_tails_poll() {
    // A run first streamed on an instance is looked at as a GET is: it joins the tail's next
    // poll with the others. Five streams opened at once on five runs cost no read of a run on
    // its own (they cost five, each with its steps, when each stream read its run first).
    let a = spawn_app().await;
    let (slug, key) = a.new_org("live-streams").await;
    a.set_limits(&slug, 100, 1000, 5).await;
    let mut holders = Vec::new();
    for _ in 0..5 {
        holders.push(a.hold_the_slot(&slug, &key).await);
    }
    let (model, b) = behind_the_model(&a, &[&key], Duration::from_millis(300)).await;
    let before = model.labelled_jobs().len();
    let opened = holders.iter().map(|holder| stream(&b, &slug, &key, holder));
    let mut streams = futures_util::future::join_all(opened).await;
    for (watcher, holder) in streams.iter_mut().zip(&holders) {
        let first = watcher.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(first.data["run"]["run_id"], holder.as_str());
    }
    let jobs = model.labelled_jobs();
    let (own, polled) = own_reads_and_polls(&jobs[before..], &slug);
    assert_eq!(own, 0, "no stream read its run on its own ({polled} polls)");
    assert!(polled >= 1);
    drop(streams);
    for holder in &holders {
        a.free_the_slot(&slug, &key, holder).await;
    }
}

#[tokio::test]
async fn a_first_page_that_waits_past_one_deadline_for_its_batch_is_503() {
    // Behind the model every query takes 8 s. One org's first page starts a read; another
    // org's, asked right after, joins the next read, which starts when the first has ended: 16 s
    // in all, past the 10-s BigQuery deadline a read of its own would have. It is answered 503
    // with Retry-After at that deadline; the first is answered its page.
    let a = spawn_app().await;
    let (first, first_key) = a.new_org("live-page-late").await;
    let (second, second_key) = a.new_org("live-page-late").await;
    let (_model, b) =
        behind_the_model(&a, &[&first_key, &second_key], Duration::from_secs(8)).await;
    let ask = |slug: String, key: String| {
        let b = &b;
        async move {
            b.key_get(&format!("/api/v1/pipelines/{slug}/runs"), &key)
                .await
        }
    };
    let early = ask(first, first_key);
    let late = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ask(second, second_key).await
    };
    let (early, late) = tokio::join!(early, late);
    assert_eq!(early.status(), 200);
    assert_eq!(late.status(), 503);
    assert!(late.headers().contains_key("retry-after"));
}
