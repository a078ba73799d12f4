//! The web view in a real headless browser (Debian's chromium driven by its chromedriver):
//! sign in with an org key, the runs list with its filters, a run's steps on a timeline, the
//! stats charts, the quota, and the root key's view of every org. Screenshots of the runs page
//! and of a run page are kept under `target/ui-artifacts/`.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, unique_slug};
use crate::webdriver::Browser;

async fn ended_run(app: &TestApp, slug: &str, key: &str, pipeline: &str) -> Value {
    app.slots_free(slug).await;
    let r = app
        .key_post(
            &format!("/api/v1/pipelines/run/{slug}/{pipeline}"),
            key,
            &json!({"parameters": {}}),
        )
        .await;
    assert_eq!(r.status(), 202, "{pipeline}");
    let body: Value = r.json().await.unwrap();
    app.wait_until_ended(slug, key, body["run_id"].as_str().unwrap())
        .await
}

async fn sign_in(browser: &Browser, app: &TestApp, key: &str, root: bool) {
    browser.goto(&app.url("/ui")).await;
    let input = browser.wait_for("#signin #key", 1).await;
    browser.type_into(&input[0], key).await;
    if root {
        let kind = browser.wait_for("#kind-root", 1).await;
        browser.click(&kind[0]).await;
    }
    let submit = browser.wait_for("#signin-submit", 1).await;
    browser.click(&submit[0]).await;
}

#[tokio::test]
async fn an_org_signs_in_sees_its_runs_opens_a_run_and_its_steps_and_the_key_stays_in_the_tab() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let slug = unique_slug("ui");
    let key = app.org_with_key(&slug).await;
    let good = ended_run(&app, &slug, &key, "test/dag").await;
    let bad = ended_run(&app, &slug, &key, "test/fail").await;
    assert_eq!(good["status"], "SUCCEEDED");
    assert_eq!(bad["status"], "FAILED");
    let bad_id = bad["run_id"].as_str().unwrap().to_string();
    app.slots_free(&slug).await;

    let browser = Browser::start().await;

    // A wrong key: the sign-in form says so, with the request id, and keeps nothing.
    sign_in(&browser, &app, "qk_wrong_key_for_the_test", false).await;
    let error = browser.wait_for("#error:not([hidden])", 1).await;
    let message = browser.text(&error[0]).await;
    assert!(
        message.starts_with("401 Invalid or inactive API key [request id "),
        "{message}"
    );
    assert_eq!(browser.eval("return sessionStorage.length").await, json!(0));

    sign_in(&browser, &app, &key, false).await;
    let rows = browser.wait_for("#runs .run-row", 2).await;
    assert_eq!(rows.len(), 2);
    let newest = browser.text(&rows[0]).await;
    assert!(
        newest.contains(&bad_id) && newest.contains("FAILED"),
        "{newest}"
    );
    let who = browser
        .eval("return document.getElementById('who').textContent")
        .await;
    assert_eq!(who, json!(slug));
    let shot = browser.screenshot("runs").await;
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);

    // The key: in this tab's sessionStorage, and nowhere else the page can put it.
    let kept = browser
        .eval("return [sessionStorage.getItem('quarry.key'), localStorage.length, document.cookie, location.href]")
        .await;
    assert_eq!(kept[0], json!(key));
    assert_eq!(kept[1], json!(0));
    assert_eq!(kept[2], json!(""));
    assert!(!kept[3].as_str().unwrap().contains(&key));

    // Filters: pick FAILED and apply; the list and the address follow.
    let failed = browser
        .wait_for("#filter-status option[value='FAILED']", 1)
        .await;
    browser.click(&failed[0]).await;
    let apply = browser
        .wait_for("#run-filters button[type='submit']", 1)
        .await;
    browser.click(&apply[0]).await;
    let rows = browser.wait_for_exactly("#runs .run-row", 1).await;
    assert!(browser.text(&rows[0]).await.contains(&bad_id));
    let hash = browser.eval("return location.hash").await;
    assert_eq!(hash, json!("#/runs?status=FAILED"));

    // Paging: one run a page, forward to the older one, back to the first.
    browser.goto(&app.url("/ui#/runs?limit=1")).await;
    let rows = browser.wait_for_exactly("#runs .run-row", 1).await;
    assert!(browser.text(&rows[0]).await.contains(&bad_id));
    let next = browser.wait_for("#next-page", 1).await;
    browser.click(&next[0]).await;
    let first = browser.wait_for("#first-page", 1).await;
    let rows = browser.wait_for_exactly("#runs .run-row", 1).await;
    assert!(
        browser
            .text(&rows[0])
            .await
            .contains(good["run_id"].as_str().unwrap())
    );
    browser.click(&first[0]).await;
    browser.wait_for_exactly("#first-page", 0).await;
    let rows = browser.wait_for_exactly("#runs .run-row", 1).await;
    assert!(browser.text(&rows[0]).await.contains(&bad_id));
    browser.goto(&app.url("/ui#/runs?status=FAILED")).await;
    // The FAILED list has replaced the page of one run (it has no next page): a link found on
    // the page before it rendered would be gone when clicked (first pages held by the service
    // answer at once).
    browser.wait_for_exactly("#next-page", 0).await;

    // A run's page: its fields, every attempt in the table and on the timeline.
    let link = browser
        .wait_for(&format!("a.run-link[href='#/runs/{bad_id}']"), 1)
        .await;
    browser.click(&link[0]).await;
    let steps = browser.wait_for("#steps .step-row", 4).await;
    assert_eq!(
        steps.len(),
        4,
        "three attempts of `broken`, and `after` skipped"
    );
    let mut lines = Vec::new();
    for s in &steps {
        lines.push(browser.text(s).await);
    }
    for attempt in 1..=3 {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("broken {attempt} FAILED"))),
            "{lines:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("after 0 SKIPPED"))
            || lines
                .iter()
                .any(|l| l.starts_with("after ") && l.contains("SKIPPED")),
        "{lines:?}"
    );
    assert_eq!(browser.count("#timeline rect.bar").await, steps.len());
    let fields = browser
        .text(&browser.wait_for("#run-fields", 1).await[0])
        .await;
    assert!(fields.contains("FAILED"), "{fields}");
    browser.screenshot("run").await;

    // Stats: the per-pipeline table and a chart per pipeline with its p50 line; with one day
    // of runs the charts go by hour (a dot per hour the API counts), and switch to days.
    browser.goto(&app.url("/ui#/stats")).await;
    let stats = browser.wait_for("#stats tbody tr", 2).await;
    assert_eq!(stats.len(), 2);
    let period = browser
        .text(&browser.wait_for("#stats-period", 1).await[0])
        .await;
    assert!(
        period.starts_with("Charts by UTC hour, last 48 hours"),
        "{period}"
    );
    let now = chrono::Utc::now();
    let hourly: Value = app
        .key_get(
            &format!(
                "/api/v1/pipelines/{slug}/stats/hourly?since={}&until={}",
                (now - chrono::Duration::hours(48))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (now + chrono::Duration::minutes(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            &key,
        )
        .await
        .json()
        .await
        .unwrap();
    let hours = hourly["hours"].as_array().unwrap().len();
    assert!(
        (2..=4).contains(&hours),
        "two pipelines, in one or two hours: {hourly}"
    );
    assert_eq!(browser.count("svg.chart").await, 2);
    assert_eq!(browser.count("svg.chart polyline.p50").await, 2);
    assert_eq!(browser.count("svg.chart circle.dot.p50").await, hours);
    assert_eq!(browser.count("svg.chart rect.rate").await, hours);
    browser.screenshot("stats-by-hour").await;
    browser
        .click(&browser.wait_for("#stats-switch", 1).await[0])
        .await;
    browser
        .wait_for("a#stats-switch[href='#/stats?by=hour']", 1)
        .await;
    let period = browser
        .text(&browser.wait_for("#stats-period", 1).await[0])
        .await;
    assert!(
        period.starts_with("Charts by UTC day, last 14 days"),
        "{period}"
    );
    assert_eq!(
        browser.count("svg.chart circle.dot.p50").await,
        2,
        "one day of runs each"
    );
    assert_eq!(browser.count("svg.chart rect.rate").await, 2);
    browser.screenshot("stats").await;

    // Quota: today's runs against the STARTER limit, nothing running or queued.
    browser.goto(&app.url("/ui#/quota")).await;
    let today = browser.wait_for("#quota-today .value", 1).await;
    assert_eq!(browser.text(&today[0]).await, "2 / 6");
    let slots = browser.wait_for("#quota-slots .value", 1).await;
    assert_eq!(browser.text(&slots[0]).await, "0 / 1");
    let queue = browser.wait_for("#quota-queue .value", 1).await;
    assert_eq!(browser.text(&queue[0]).await, "0 / 10");
    // The sample runs billed what the emulator reports (nothing) against STARTER's budgets,
    // priced at 6.25 USD per TiB.
    let billed = browser.wait_for("#quota-bytes-today .value", 1).await;
    assert_eq!(browser.text(&billed[0]).await, "0 B / 1.0 TiB · $0.00");
    let billed = browser.wait_for("#quota-bytes-month .value", 1).await;
    assert_eq!(browser.text(&billed[0]).await, "0 B / 10.0 TiB · $0.00");

    // Catalog and schedules.
    browser.goto(&app.url("/ui#/catalog")).await;
    assert!(browser.wait_for(".pipeline", 5).await.len() >= 5);
    browser.goto(&app.url("/ui#/schedules")).await;
    // test/ticker declares four schedules, test/deadline one.
    assert_eq!(browser.wait_for("#schedules tbody tr", 5).await.len(), 5);

    // Sign out: the tab forgets the key.
    let out = browser.wait_for("#signout", 1).await;
    browser.click(&out[0]).await;
    browser.wait_for("#signin", 1).await;
    assert_eq!(browser.eval("return sessionStorage.length").await, json!(0));
    browser.quit().await;
}

#[tokio::test]
async fn the_root_key_lists_every_org_and_the_runs_of_all_of_them() {
    let app = spawn_app().await;
    app.bootstrap().await;
    let a = unique_slug("uia");
    let b = unique_slug("uib");
    let key_a = app.org_with_key(&a).await;
    let key_b = app.org_with_key(&b).await;
    ended_run(&app, &a, &key_a, "test/dag").await;
    ended_run(&app, &b, &key_b, "test/dag").await;

    let browser = Browser::start().await;
    sign_in(&browser, &app, &app.root_key, true).await;
    let orgs = browser.wait_for("#orgs tbody tr", 2).await;
    assert_eq!(orgs.len(), 2);
    assert_eq!(browser.count("#nav-all-runs").await, 1);

    browser.goto(&app.url("/ui#/all-runs")).await;
    let rows = browser.wait_for("#runs .run-row", 2).await;
    let mut seen = Vec::new();
    for r in &rows {
        seen.push(
            browser
                .text(r)
                .await
                .split_whitespace()
                .next()
                .unwrap()
                .to_string(),
        );
    }
    seen.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(seen, expected);

    // Opening one org shows its runs only.
    browser.goto(&app.url("/ui#/orgs")).await;
    let open = browser
        .wait_for(&format!("button.pick-org[data-org='{b}']"), 1)
        .await;
    browser.click(&open[0]).await;
    let rows = browser.wait_for("#runs .run-row", 1).await;
    assert_eq!(rows.len(), 1);
    let who = browser
        .eval("return document.getElementById('who').textContent")
        .await;
    assert_eq!(who, json!(format!("root · {b}")));
    browser.quit().await;
}

#[tokio::test]
async fn the_alerts_page_lists_channels_without_their_url_and_sends_a_test_alert_that_shows_delivered()
 {
    let app = crate::helpers::spawn_app_with(|vars| {
        vars.insert("NOTIFY_ALLOW_LOCAL_TARGETS".into(), "true".into());
    })
    .await;
    let (slug, key) = app.new_org("uialerts").await;
    let receiver = crate::receiver::Receiver::start().await;
    let url = format!("{}/secret-path?token=abc", receiver.url);
    let (status, channel) = app
        .add_channel(&slug, &key, &json!({"kind": "webhook", "url": url}))
        .await;
    assert_eq!(status, 201, "{channel}");

    let browser = Browser::start().await;
    sign_in(&browser, &app, &key, false).await;
    browser.wait_for("#runs, #no-runs", 1).await;
    browser.goto(&app.url("/ui#/alerts")).await;
    let rows = browser.wait_for("#channels .channel-row", 1).await;
    assert_eq!(rows.len(), 1);
    let row = browser.text(&rows[0]).await;
    assert!(row.contains("webhook"), "{row}");
    assert!(row.contains("http://127.0.0.1"), "{row}");
    assert!(
        !row.contains("secret-path") && !row.contains("abc"),
        "{row}"
    );
    assert_eq!(browser.count("#no-deliveries").await, 1);

    let send = browser.wait_for("button.test-channel", 1).await;
    browser.click(&send[0]).await;
    let delivered = browser.wait_for("#deliveries .delivery-row", 1).await;
    let text = browser.text(&delivered[0]).await;
    assert!(text.contains("test"), "{text}");
    assert!(text.contains("DELIVERED"), "{text}");
    assert_eq!(receiver.received().len(), 1);
    browser.screenshot("alerts").await;
    browser.quit().await;
}

/// Clicks the element `css` matches now, `times` times in one go (the live pages re-render
/// every few seconds; a confirming button needs its second click before that).
async fn click_now(browser: &Browser, css: &str, times: usize) {
    browser.wait_for(css, 1).await;
    let script = format!(
        "const b = document.querySelector({css:?}); for (let i = 0; i < {times}; i++) b.click(); return true"
    );
    assert_eq!(browser.eval(&script).await, json!(true), "{css}");
}

/// Sets the value of the form control `css` matches.
async fn set_value(browser: &Browser, css: &str, value: &str) {
    browser.wait_for(css, 1).await;
    let script = format!("document.querySelector({css:?}).value = {value:?}; return true");
    assert_eq!(browser.eval(&script).await, json!(true), "{css}");
}

async fn current_run_id(browser: &Browser) -> String {
    let hash = browser.eval("return location.hash").await;
    hash.as_str()
        .unwrap()
        .strip_prefix("#/runs/")
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_org_triggers_cancels_reruns_schedules_and_backfills_from_the_page_and_a_read_only_key_sees_no_action()
 {
    let app = spawn_app().await;
    let (slug, key) = app.new_org("uictl").await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, &key, false).await;
    browser.wait_for("#runs, #no-runs", 1).await;

    // The catalog draws each pipeline's graph: test/control has 4 steps and 4 dependencies.
    browser.goto(&app.url("/ui#/catalog")).await;
    let card = ".pipeline[data-pipeline='test/control']";
    browser.wait_for(&format!("{card} svg.dag"), 1).await;
    assert_eq!(browser.count(&format!("{card} svg.dag g.node")).await, 4);
    assert_eq!(browser.count(&format!("{card} svg.dag path.edge")).await, 4);

    // Trigger it from its form, with n = 3.
    let form = ".trigger-form[data-pipeline='test/control']";
    set_value(&browser, &format!("{form} input[name='param-n']"), "3").await;
    click_now(&browser, &format!("{form} .trigger-submit"), 1).await;
    // Its page, live: the graph coloured as the run goes, the steps not started drawn too.
    browser
        .wait_for(
            "#run-graph g.node[data-step='wait'][data-state='RUNNING']",
            1,
        )
        .await;
    assert_eq!(
        browser
            .count("#run-graph g.node[data-step='report'][data-state='NOT_STARTED']")
            .await,
        1
    );
    // Pushed by the service (its events stream), not polled.
    let pushed = crate::verbs::eventually(
        "the run page live",
        std::time::Duration::from_secs(10),
        || async {
            let hint = browser
            .eval("const e = document.getElementById('run-live'); return e ? e.textContent : null")
            .await;
            if hint == json!("  · live") {
                Ok(())
            } else {
                Err(hint.to_string())
            }
        },
    );
    pushed.await;
    let first = current_run_id(&browser).await;
    let run = app.run(&slug, &key, &first).await;
    assert_eq!(run["parameters"]["n"], 3, "{run}");
    let pill = browser.wait_for("#run-fields .status", 1).await;
    assert_eq!(browser.text(&pill[0]).await, "RUNNING");
    browser.screenshot("graph").await;

    // Cancel asks once more, then the run reads CANCELLED and offers a re-run.
    click_now(&browser, "#cancel-run", 2).await;
    browser.wait_for("#rerun-form", 1).await;
    assert_eq!(app.run(&slug, &key, &first).await["status"], "CANCELLED");

    // Re-run with n = 7: the new run's page links back to the first.
    set_value(&browser, "#rerun-parameters", r#"{"n": 7}"#).await;
    click_now(&browser, "#rerun-submit", 1).await;
    browser
        .wait_for(&format!("#run-fields a[href='#/runs/{first}']"), 1)
        .await;
    let second = current_run_id(&browser).await;
    assert_ne!(second, first);
    let rerun = app.run(&slug, &key, &second).await;
    assert_eq!(rerun["rerun_of"], first.as_str(), "{rerun}");
    assert_eq!(rerun["parameters"]["n"], 7, "{rerun}");
    browser.screenshot("rerun").await;
    click_now(&browser, "#cancel-run", 2).await;

    // Schedules: enable, then pause (confirmed).
    browser.goto(&app.url("/ui#/schedules")).await;
    click_now(&browser, "#enable-test-ticker-minutely-skip", 1).await;
    click_now(&browser, "#pause-test-ticker-minutely-skip", 2).await;
    browser
        .wait_for("#resume-test-ticker-minutely-skip", 1)
        .await;
    let states: Value = app
        .key_get(&format!("/api/v1/schedules/{slug}"), &key)
        .await
        .json()
        .await
        .unwrap();
    let skip = states["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["schedule_id"] == "test/ticker/minutely-skip")
        .unwrap();
    assert_eq!(skip["status"], "PAUSED", "{skip}");

    // A 3-day backfill of test/nap from its card, and its page.
    browser.goto(&app.url("/ui#/catalog")).await;
    let backfill = ".backfill-form[data-pipeline='test/nap']";
    set_value(
        &browser,
        &format!("{backfill} input[name='from']"),
        "2026-11-01",
    )
    .await;
    set_value(
        &browser,
        &format!("{backfill} input[name='to']"),
        "2026-11-03",
    )
    .await;
    click_now(&browser, &format!("{backfill} .backfill-submit"), 1).await;
    let days = browser
        .wait_for_exactly("#backfill-days .backfill-day", 3)
        .await;
    assert!(browser.text(&days[0]).await.starts_with("2026-11-01"));
    assert_eq!(browser.count("#cancel-backfill").await, 1);
    browser.screenshot("backfill").await;
    let backfill_hash = browser.eval("return location.hash").await;

    // A read-only key sees the same pages without a single action.
    let r = app
        .key_post(
            &format!("/api/v1/organizations/{slug}/api-keys/rotate"),
            &key,
            &json!({"grace_period_seconds": 3600, "scopes": ["runs:read", "schedules:read"]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let reader = r.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    crate::helpers::remember_secret(&reader);
    let out = browser.wait_for("#signout", 1).await;
    browser.click(&out[0]).await;
    sign_in(&browser, &app, &reader, false).await;
    browser.wait_for("#runs .run-row", 2).await;
    browser.goto(&app.url("/ui#/catalog")).await;
    browser.wait_for("svg.dag", 5).await;
    assert_eq!(browser.count("details.action").await, 0);
    browser.goto(&app.url(&format!("/ui#/runs/{first}"))).await;
    browser.wait_for("#run-graph", 1).await;
    assert_eq!(
        browser
            .count("#run-actions button, #run-actions form")
            .await,
        0
    );
    browser.goto(&app.url("/ui#/schedules")).await;
    browser.wait_for(".schedule-row", 5).await;
    assert_eq!(browser.count(".schedule-row button").await, 0);
    browser
        .goto(&app.url(&format!("/ui{}", backfill_hash.as_str().unwrap())))
        .await;
    browser.wait_for("#backfill-days", 1).await;
    assert_eq!(browser.count("#cancel-backfill").await, 0);
    browser.quit().await;
}

#[tokio::test]
async fn the_docs_page_lists_api_operations_only_with_their_bodies_fields_and_an_example() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/docs")).await;
    browser.wait_for("#operations details", 40).await;
    let paths = browser
        .eval("return [...document.querySelectorAll('#operations .path')].map(e => e.textContent)")
        .await;
    let paths: Vec<&str> = paths
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/ui") || p.starts_with("/docs")),
        "pages and assets are not operations: {paths:?}"
    );
    assert!(paths.contains(&"/api/v1/whoami"), "{paths:?}");
    // The trigger: its body's fields with their types, an example, and the 202's fields.
    let text = browser
        .eval(
            "const d = [...document.querySelectorAll('#operations details')]
               .find(d => d.querySelector('.path').textContent.startsWith('/api/v1/pipelines/run/')
                          && d.querySelector('.method').textContent === 'post');
             d.open = true; d.scrollIntoView(); return d.innerText",
        )
        .await;
    let text = text.as_str().unwrap();
    for needle in [
        "Request body",
        "when_busy",
        "parameters",
        "one of refuse, queue",
        "Answer 202",
        "run_id",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(
        browser.count("#operations details[open] pre.example").await >= 2,
        "an example of the body and of the answer"
    );
    browser.screenshot("docs").await;
    browser.quit().await;
}
