//! Alerts: an org's channels and the delivery of run ends to them, received by a real local
//! HTTP server ([`Receiver`]).

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::bq_limits::Limits;
use crate::helpers::{TestApp, assert_error, of_file, spawn_app_with, spawn_behind_model};
use crate::receiver::{Received, Receiver};
use crate::verbs::eventually;

/// An instance whose alerts may reach local receivers, retrying after 100 ms (then 600 ms…).
async fn app() -> TestApp {
    spawn_app_with(|vars| {
        vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
        vars.insert("NOTIFY_RETRY_FIRST_MS".into(), "100".into());
        vars.insert(
            "PUBLIC_BASE_URL".into(),
            "https://quarry.example.com".into(),
        );
    })
    .await
}

/// Verifies a delivery as a receiver would: HMAC-SHA256 of `id.timestamp.body` with the
/// base64 part of the secret, against the `v1,` signature.
fn verifies(secret: &str, r: &Received) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let signed = format!(
        "{}.{}.{}",
        r.id.as_deref().unwrap_or_default(),
        r.timestamp.as_deref().unwrap_or_default(),
        r.body
    );
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    r.signature.as_deref() == Some(expected.as_str())
}

#[tokio::test]
async fn a_run_failing_after_three_attempts_alerts_once_signed_with_the_channels_secret() {
    let app = app().await;
    let (slug, key) = app.new_org("alert-co").await;
    let receiver = Receiver::start().await;
    let (status, channel) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": receiver.url}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let secret = channel["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{channel}");
    assert_eq!(channel["url_hint"], "http://127.0.0.1", "{channel}");
    assert_eq!(
        channel["events"],
        json!([
            "run.deadline_passed",
            "run.failed",
            "run.orphaned",
            "run.queued_too_long",
            "run.refused",
            "run.timed_out",
            "schedule.late"
        ])
    );
    assert_eq!(channel["queued_after_seconds"], 600, "{channel}");

    let run_id = app.started(&slug, &key, "test/fail").await;
    let end = app.wait_until_ended(&slug, &key, &run_id).await;
    assert_eq!(end["status"], "FAILED");
    // Nothing more comes: one alert for the run's end, none for its failed attempts.
    let received = receiver.settled(1, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let alert = &received[0];
    assert_eq!(alert.path, "/hooks/quarry");
    assert!(
        verifies(&secret, alert),
        "the signature verifies with the channel's secret"
    );
    let (_, other) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": receiver.url}),
        )
        .await;
    assert!(
        !verifies(other["signing_secret"].as_str().unwrap(), alert),
        "and fails with another"
    );
    let body = alert.json();
    assert_eq!(body["type"], "run.failed");
    assert_eq!(body["data"]["run_id"], run_id.as_str());
    assert_eq!(body["data"]["org_slug"], slug.as_str());
    assert_eq!(body["data"]["pipeline_id"], "test/fail");
    assert_eq!(body["data"]["status"], "FAILED");
    assert_eq!(body["data"]["error_class"], end["error_class"]);
    assert_eq!(
        body["data"]["links"]["api"],
        format!("https://quarry.example.com/api/v1/pipelines/{slug}/runs/{run_id}")
    );
    assert_eq!(
        body["data"]["links"]["ui"],
        format!("https://quarry.example.com/ui#/runs/{run_id}")
    );
    let ts: i64 = alert.timestamp.as_deref().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);

    // The delivery log shows it, under the id the receiver saw.
    let deliveries = eventually(
        "the delivery is logged",
        Duration::from_secs(30),
        || async {
            let d = app.deliveries(&slug, &key).await;
            if d.len() == 1 {
                Ok(d)
            } else {
                Err(format!("{d:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        deliveries[0]["delivery_id"],
        alert.id.clone().unwrap().as_str()
    );
    assert_eq!(deliveries[0]["status"], "DELIVERED");
    assert_eq!(deliveries[0]["attempt"], 1);
    assert_eq!(deliveries[0]["http_status"], 200);
    assert_eq!(deliveries[0]["event"], "run.failed");
    assert_eq!(deliveries[0]["run_id"], run_id.as_str());
}

#[tokio::test]
async fn a_run_that_succeeds_on_its_third_attempt_alerts_succeeded_only_to_a_channel_that_asked() {
    let app = app().await;
    let (slug, key) = app.new_org("flaky-alert-co").await;
    let failures = Receiver::start().await;
    let successes = Receiver::start().await;
    let (s1, _) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": failures.url}),
        )
        .await;
    let (s2, _) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "slack", "url": successes.url,
                    "events": ["run.succeeded"], "pipelines": ["test/flaky"]}),
        )
        .await;
    assert_eq!((s1, s2), (201, 201));
    let run_id = app.started(&slug, &key, "test/flaky").await;
    assert_eq!(
        app.wait_until_ended(&slug, &key, &run_id).await["status"],
        "SUCCEEDED"
    );
    let got = successes.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1);
    // Slack gets a readable message, unsigned.
    let text = got[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(&run_id) && text.contains("test/flaky") && text.contains("SUCCEEDED"),
        "{text}"
    );
    assert_eq!(got[0].signature, None);
    // A run of another pipeline is not its business.
    let other = app.started(&slug, &key, "test/sleep").await;
    app.wait_until_ended(&slug, &key, &other).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(successes.received().len(), 1);
    assert_eq!(failures.received().len(), 0, "no failure to tell");
}

#[tokio::test]
async fn a_run_past_its_deadline_alerts_while_it_is_still_running_and_one_within_it_does_not() {
    let app = app().await;
    let (slug, key) = app.new_org("deadline-co").await;
    let receiver = Receiver::start().await;
    app.add_channel(
        &slug,
        &key,
        &json!({"kind": "webhook", "url": receiver.url}),
    )
    .await;
    // Ends within its 3 s deadline: no alert, even once the deadline has passed.
    let met = app.started(&slug, &key, "test/deadline_met").await;
    assert_eq!(
        app.wait_until_ended(&slug, &key, &met).await["status"],
        "SUCCEEDED"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.received().len(), 0);

    // Sleeps 5 s with a 2 s deadline: alerted while it runs, and once only.
    let run_id = app.started(&slug, &key, "test/deadline").await;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    // It has not ended (its RUNNING event may still be on its way to the table).
    let now = app.run(&slug, &key, &run_id).await;
    assert!(
        matches!(now["status"].as_str(), Some("PENDING" | "RUNNING")),
        "the alert came while it ran: {now}"
    );
    let body = got[0].json();
    assert_eq!(body["type"], "run.deadline_passed");
    assert_eq!(body["data"]["run_id"], run_id.as_str());
    assert_eq!(body["data"]["status"], "RUNNING");
    assert_eq!(
        body["data"]["error_summary"],
        "still running 2 s after it started (deadline_seconds: 2)"
    );
    assert_eq!(
        app.wait_until_ended(&slug, &key, &run_id).await["status"],
        "SUCCEEDED"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), 1, "a success is not asked for");
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_alert_three_times_with_the_same_webhook_id() {
    let app = app().await;
    let (slug, key) = app.new_org("retry-alert-co").await;
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 503]);
    let (_, channel) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": receiver.url}),
        )
        .await;
    let channel_id = channel["channel_id"].as_str().unwrap();
    let r = app
        .key_post(
            &format!("/api/v1/notifications/{slug}/channels/{channel_id}/test"),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let delivery_id = r.json::<Value>().await.unwrap()["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for r in &got {
        assert_eq!(r.id.as_deref(), Some(delivery_id.as_str()));
        assert_eq!(r.json()["type"], "test");
    }
    // Waits of 100 ms then 600 ms (±20 %) between them.
    let gaps = [got[1].at - got[0].at, got[2].at - got[1].at];
    assert!(gaps[0] >= Duration::from_millis(80), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(480), "{gaps:?}");
    let last = eventually(
        "the third attempt is logged",
        Duration::from_secs(30),
        || async {
            let d = app.deliveries(&slug, &key).await;
            match d.first() {
                Some(d) if d["attempt"] == 3 => Ok(d.clone()),
                _ => Err(format!("{d:?}")),
            }
        },
    )
    .await;
    assert_eq!(last["delivery_id"], delivery_id.as_str());
    assert_eq!(last["status"], "DELIVERED");
    assert_eq!(last["http_status"], 200);
    // And the instance's metrics count the attempts by outcome.
    let count = |outcome: &'static str| {
        let app = &app;
        async move {
            app.counter(&format!(
                "quarry_alert_deliveries_total{{outcome=\"{outcome}\"}}"
            ))
            .await
        }
    };
    assert_eq!(
        (
            count("RETRYING").await,
            count("DELIVERED").await,
            count("FAILED").await
        ),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_delays_no_run_and_no_other_orgs_alert() {
    let app = app().await;
    let (stuck, stuck_key) = app.new_org("stuck-co").await;
    let (fine, fine_key) = app.new_org("fine-co").await;
    let hanging = Receiver::start().await;
    hanging.hang();
    let healthy = Receiver::start().await;
    app.add_channel(
        &stuck,
        &stuck_key,
        &json!({"kind": "webhook", "url": hanging.url, "events": ["run.succeeded"]}),
    )
    .await;
    app.add_channel(
        &fine,
        &fine_key,
        &json!({"kind": "webhook", "url": healthy.url, "events": ["run.succeeded"]}),
    )
    .await;
    let started = Instant::now();
    for _ in 0..2 {
        let run = app.started(&stuck, &stuck_key, "test/sleep").await;
        assert_eq!(
            app.wait_until_ended(&stuck, &stuck_key, &run).await["status"],
            "SUCCEEDED"
        );
    }
    let run = app.started(&fine, &fine_key, "test/sleep").await;
    app.wait_until_ended(&fine, &fine_key, &run).await;
    let got = healthy.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1, "the other org's alert arrives");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "runs ended while the stuck receiver held its alerts: {:?}",
        started.elapsed()
    );
    // Both alerts were sent (and are retried after the receiver's 10 s of silence).
    let ids: std::collections::BTreeSet<Option<String>> =
        hanging.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

#[tokio::test]
async fn channels_are_listed_without_their_url_or_secret_and_deleted_once() {
    let app = app().await;
    let (slug, key) = app.new_org("chan-co").await;
    let (status, created) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "slack", "url": "http://127.0.0.1:9/services/T0/B0/s3cret-part"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("signing_secret").is_none(), "{created}");
    let id = created["channel_id"].as_str().unwrap().to_string();
    let r = app
        .key_get(&format!("/api/v1/notifications/{slug}/channels"), &key)
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("s3cret-part"), "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["channels"].as_array().unwrap().len(), 1);
    assert_eq!(list["channels"][0]["channel_id"], id.as_str());
    assert_eq!(list["channels"][0]["kind"], "slack");
    assert_eq!(list["channels"][0]["url_hint"], "http://127.0.0.1");

    let delete = |id: String| {
        let (app, slug, key) = (&app, slug.clone(), key.clone());
        async move {
            app.client
                .delete(app.url(&format!("/api/v1/notifications/{slug}/channels/{id}")))
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(delete(id.clone()).await.status(), 204);
    assert_error(delete(id.clone()).await, 404, "Resource not found").await;
    assert_error(delete("not-a-uuid".into()).await, 404, "Resource not found").await;
    let list: Value = app
        .key_get(&format!("/api/v1/notifications/{slug}/channels"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["channels"], json!([]));

    // Bad rules are named.
    let (status, body) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": "http://127.0.0.1:9/", "events": ["run.exploded"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "events", "{body}");
}

#[tokio::test]
async fn a_channel_to_loopback_private_or_metadata_addresses_is_refused_outside_development() {
    // The production rule: local targets not allowed.
    let app = spawn_app_with(|_| {}).await;
    let (slug, key) = app.new_org("ssrf-co").await;
    for url in [
        "http://hooks.example.com/a",
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
    ] {
        let (status, body) = app
            .add_channel(&slug, &key, &json!({"kind": "webhook", "url": url}))
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "url", "{url}: {body}");
    }
    // Even for local receivers, the metadata server stays out of reach.
    let local = self::app().await;
    let (slug, key) = local.new_org("ssrf-local-co").await;
    let (status, body) = local
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": "http://169.254.169.254/latest/meta-data"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

/// [`app`] with its scheduler on, passing every second.
async fn scheduling_app() -> TestApp {
    spawn_app_with(|vars| {
        vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
        vars.insert("NOTIFY_RETRY_FIRST_MS".into(), "100".into());
        vars.insert("SCHEDULER_ENABLED".into(), "true".into());
        vars.insert("SCHEDULER_INTERVAL_SECS".into(), "1".into());
        vars.insert("QUEUE_POLL_SECS".into(), "1".into());
    })
    .await
}

#[tokio::test]
async fn a_schedule_tick_refused_by_the_concurrency_limit_alerts_refused() {
    let app = scheduling_app().await;
    let (slug, key) = app.new_org("tick-alert-co").await;
    app.set_limits(&slug, 100, 1000, 1).await;
    let receiver = Receiver::start().await;
    app.add_channel(
        &slug,
        &key,
        &json!({"kind": "webhook", "url": receiver.url, "events": ["run.refused"]}),
    )
    .await;
    // The only slot is held; the schedule's next tick finds it taken.
    app.started(&slug, &key, "test/long").await;
    let r = app
        .key_post(
            &format!("/api/v1/schedules/{slug}/enable"),
            &key,
            &json!({"pipeline_id": "test/ticker", "schedule": "minutely-latest"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.clock.advance(chrono::TimeDelta::minutes(2));
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert!(!got.is_empty(), "no alert");
    let body = got[0].json();
    assert_eq!(body["type"], "run.refused", "{body}");
    assert_eq!(body["data"]["status"], "REFUSED", "{body}");
    assert_eq!(body["data"]["error_class"], "quota_concurrent", "{body}");
    assert_eq!(
        body["data"]["schedule_id"], "test/ticker/minutely-latest",
        "{body}"
    );
    assert!(body["data"]["logical_time"].is_string(), "{body}");
    let run = app
        .run(&slug, &key, body["data"]["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["status"], "REFUSED", "{run}");
    assert!(got.iter().all(|r| r.json()["type"] == "run.refused"));
}

#[tokio::test]
async fn run_ends_in_five_orgs_read_every_orgs_channels_once_and_a_channel_added_here_counts_at_once()
 {
    let (model, app) = spawn_behind_model(
        Limits::bigquery(Duration::ZERO, Duration::ZERO, Duration::ZERO),
        |vars| {
            vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
        },
    )
    .await;
    let mut orgs = Vec::new();
    for _ in 0..5 {
        orgs.push(app.new_org("many-alert-co").await);
    }
    let first = Receiver::start().await;
    let (status, _) = app
        .add_channel(
            &orgs[0].0,
            &orgs[0].1,
            &json!({"kind": "webhook", "url": first.url}),
        )
        .await;
    assert_eq!(status, 201);
    let reads = |file: &str| of_file(&model.labelled_jobs(), file).len();
    let (every_before, one_before) = (
        reads("notifications/live_channels.sql"),
        reads("notifications/channels_by_org.sql"),
    );
    let runs = futures_util::future::join_all(
        orgs.iter()
            .map(|(slug, key)| app.started(slug, key, "test/fail")),
    )
    .await;
    for ((slug, key), run) in orgs.iter().zip(&runs) {
        assert_eq!(
            app.wait_until_ended(slug, key, run).await["status"],
            "FAILED"
        );
    }
    let got = first.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json()["data"]["run_id"], runs[0].as_str());
    // One read of every org's channels (another if the ends spread past the 10 s it is kept, or
    // one failed on a loaded machine), not one read per org (five).
    let every = reads("notifications/live_channels.sql") - every_before;
    let one_by_one = reads("notifications/channels_by_org.sql") - one_before;
    assert!(
        (1..=3).contains(&every) && one_by_one == 0,
        "channel reads: {every} of every org's, {one_by_one} of one org's"
    );
    // A channel added here is used by the next run end at once, not after the read of every
    // org's channels has expired.
    let second = Receiver::start().await;
    let (slug, key) = &orgs[1];
    let (status, _) = app
        .add_channel(slug, key, &json!({"kind": "webhook", "url": second.url}))
        .await;
    assert_eq!(status, 201);
    let run = app.started(slug, key, "test/fail").await;
    app.wait_until_ended(slug, key, &run).await;
    let got = second.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json()["data"]["run_id"], run.as_str());
}

#[tokio::test]
async fn two_instances_running_one_orgs_runs_deliver_each_end_once() {
    // Replicas share the meta dataset and the KMS key.
    let kms_key = crate::helpers::local_kms_key();
    let a = spawn_app_with(|vars| {
        vars.insert("LOCAL_KMS_KEY".into(), kms_key.clone());
        vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
    })
    .await;
    let (slug, key) = a.new_org("two-alert-co").await;
    a.set_limits(&slug, 100, 1000, 4).await;
    let meta = a.meta_dataset.clone();
    let b = spawn_app_with(|vars| {
        vars.insert("META_DATASET".into(), meta);
        vars.insert("LOCAL_KMS_KEY".into(), kms_key.clone());
        vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
    })
    .await;
    let receiver = Receiver::start().await;
    // Added through one instance; the other reads it from the shared table.
    a.add_channel(
        &slug,
        &key,
        &json!({"kind": "webhook", "url": receiver.url}),
    )
    .await;
    let mut runs = Vec::new();
    for instance in [&a, &b, &a, &b] {
        runs.push(instance.started(&slug, &key, "test/fail").await);
    }
    for run in &runs {
        assert_eq!(
            a.wait_until_ended(&slug, &key, run).await["status"],
            "FAILED"
        );
    }
    let got = receiver.settled(4, Duration::from_secs(30)).await;
    let mut alerted: Vec<String> = got
        .iter()
        .map(|r| r.json()["data"]["run_id"].as_str().unwrap().to_string())
        .collect();
    alerted.sort();
    let mut expected = runs.clone();
    expected.sort();
    assert_eq!(alerted, expected, "each run's end once");
    let ids: std::collections::BTreeSet<Option<String>> =
        got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn a_scheduled_run_starting_later_than_the_channels_threshold_alerts_schedule_late() {
    let app = scheduling_app().await;
    let (slug, key) = app.new_org("late-co").await;
    app.set_limits(&slug, 100, 1000, 3).await;
    let receiver = Receiver::start().await;
    let (status, channel) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": receiver.url, "events": ["schedule.late"],
                    "late_after_seconds": 90}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    assert_eq!(channel["late_after_seconds"], 90);
    let r = app
        .key_post(
            &format!("/api/v1/schedules/{slug}/enable"),
            &key,
            &json!({"pipeline_id": "test/ticker", "schedule": "minutely-all"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Ten minutes pass: the three most recent missed ticks fire (0-60 s, 60-120 s and 120-180 s
    // late, plus the time to start them).
    app.clock.advance(chrono::TimeDelta::minutes(10));
    let runs = eventually("three ticks ran", Duration::from_secs(60), || async {
        let body: Value = app
            .key_get(
                &format!("/api/v1/pipelines/{slug}/runs?pipeline_id=test/ticker"),
                &key,
            )
            .await
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let runs = body["runs"].as_array().cloned().unwrap_or_default();
        let started = runs.iter().filter(|r| r["started_at"].is_string()).count();
        if runs.len() == 3 && started == 3 {
            Ok(runs)
        } else {
            Err(format!("{body}"))
        }
    })
    .await;
    // Alerted exactly for the runs that started more than 90 s after their tick.
    let mut views = Vec::new();
    for run in &runs {
        views.push(app.run(&slug, &key, run["run_id"].as_str().unwrap()).await);
    }
    let at = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    let mut late: Vec<String> = views
        .iter()
        .filter(|r| (at(&r["started_at"]) - at(&r["logical_time"])).num_seconds() > 90)
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    late.sort();
    assert!(!late.is_empty(), "the oldest tick is at least 120 s late");
    assert!(late.len() < 3, "the newest tick is less than a minute late");
    let got = receiver.settled(late.len(), Duration::from_secs(20)).await;
    let mut alerted: Vec<String> = got
        .iter()
        .map(|r| r.json()["data"]["run_id"].as_str().unwrap().to_string())
        .collect();
    alerted.sort();
    assert_eq!(alerted, late);
    let body = got[0].json();
    assert_eq!(body["type"], "schedule.late");
    assert_eq!(body["data"]["status"], "RUNNING");
    assert_eq!(body["data"]["schedule_id"], "test/ticker/minutely-all");
}

#[tokio::test]
async fn a_scheduled_run_past_its_schedules_own_deadline_alerts_with_that_deadline() {
    let app = scheduling_app().await;
    let (slug, key) = app.new_org("tick-deadline-co").await;
    let receiver = Receiver::start().await;
    app.add_channel(
        &slug,
        &key,
        &json!({"kind": "webhook", "url": receiver.url, "events": ["run.deadline_passed"]}),
    )
    .await;
    let r = app
        .key_post(
            &format!("/api/v1/schedules/{slug}/enable"),
            &key,
            &json!({"pipeline_id": "test/deadline", "schedule": "minutely-tight"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["deadline_seconds"], 1, "{shown}");
    app.clock.advance(chrono::TimeDelta::minutes(2));
    // The tick's run sleeps 5 s: past its schedule's 1 s deadline (the pipeline's is 2 s).
    let got = receiver.settled(1, Duration::from_secs(40)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let body = got[0].json();
    assert_eq!(body["type"], "run.deadline_passed", "{body}");
    assert_eq!(body["data"]["schedule_id"], "test/deadline/minutely-tight");
    assert_eq!(
        body["data"]["error_summary"],
        "still running 1 s after it started (deadline_seconds: 1)"
    );
}

#[tokio::test]
async fn a_run_waiting_in_the_queue_past_the_channels_threshold_alerts_once_and_one_that_left_it_does_not()
 {
    let app = app().await;
    let (slug, key) = app.new_org("queue-wait-co").await;
    app.set_limits(&slug, 100, 1000, 1).await;
    let receiver = Receiver::start().await;
    let (status, channel) = app
        .add_channel(
            &slug,
            &key,
            &json!({"kind": "webhook", "url": receiver.url, "events": ["run.queued_too_long"],
                    "queued_after_seconds": 4}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    assert_eq!(channel["queued_after_seconds"], 4);
    let holder = app.hold_the_slot(&slug, &key).await;
    let queued = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "QUEUED", "{body}");
        body["run_id"].as_str().unwrap().to_string()
    };
    let waits = queued(app.queue_run(&slug, &key, 1).await).await;
    let leaves = queued(app.queue_run(&slug, &key, 2).await).await;
    // Cancelled after a second in the queue: it never waits 4 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.cancel(&slug, &key, &leaves).await.status(), 202);

    let got = receiver.settled(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let body = got[0].json();
    assert_eq!(body["type"], "run.queued_too_long", "{body}");
    assert_eq!(body["data"]["run_id"], waits.as_str(), "{body}");
    assert_eq!(body["data"]["status"], "QUEUED", "{body}");
    let summary = body["data"]["error_summary"].as_str().unwrap();
    assert!(
        summary.starts_with("waiting in the queue for "),
        "{summary}"
    );
    // Still queued when it was alerted, and alerted once although it keeps waiting.
    assert_eq!(app.run(&slug, &key, &waits).await["status"], "QUEUED");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.received().len(), 1);
    app.free_the_slot(&slug, &key, &holder).await;
}
