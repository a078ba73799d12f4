use super::*;
use crate::definitions::referenced_params;
use serde_json::json;

fn decls() -> Vec<ParamDecl> {
    serde_yaml_ng::from_str(
        "- {name: day, type: DATE, required: true}\n\
         - {name: min_tokens, type: INT64, default: 0}\n\
         - {name: model, type: STRING, regex: '[a-z0-9-]{1,40}'}\n\
         - {name: dry, type: BOOL}\n",
    )
    .unwrap()
}

fn input(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn valid_parameters_get_defaults() {
    let p = RunParams::validate(
        &decls(),
        &input(json!({"day": "2026-11-01", "model": "gpt-4o"})),
    )
    .unwrap();
    assert_eq!(
        p.to_json(),
        json!({"day": "2026-11-01", "min_tokens": 0, "model": "gpt-4o"})
    );
}

#[test]
fn each_bad_parameter_is_named() {
    let cases = [
        (json!({}), "day"),
        (json!({"day": "2026-13-01"}), "day"),
        (json!({"day": 20261101}), "day"),
        (
            json!({"day": "2026-11-01", "min_tokens": "5"}),
            "min_tokens",
        ),
        (json!({"day": "2026-11-01", "model": "Bad Model!"}), "model"),
        (
            json!({"day": "2026-11-01", "model": "x".repeat(2000)}),
            "model",
        ),
        (json!({"day": "2026-11-01", "dry": "yes"}), "dry"),
        (json!({"day": "2026-11-01", "surprise": 1}), "surprise"),
    ];
    for (given, name) in cases {
        let err = RunParams::validate(&decls(), &input(given.clone())).unwrap_err();
        assert_eq!(err.name, name, "{given}");
    }
}

#[test]
fn only_referenced_parameters_are_bound() {
    let p = RunParams::validate(&decls(), &input(json!({"day": "2026-11-01"}))).unwrap();
    let names: BTreeSet<String> = ["day".to_string(), "org_slug".to_string()].into();
    let params = p.to_params(&decls(), &names, "acme");
    let bound: Vec<&str> = params.iter().map(|p| p.name()).collect();
    assert_eq!(bound, vec!["day", "org_slug"]);
}

#[test]
fn referenced_params_skip_comments_and_strings() {
    let sql = "-- uses @ignored\nSELECT '@not_a_param', x FROM t WHERE a = @day AND b = @org_slug LIMIT 1";
    let names: Vec<String> = referenced_params(sql).into_iter().collect();
    assert_eq!(names, vec!["day", "org_slug"]);
}

fn sql_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-catalog-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(dir.join("pipelines/a.sql"), "SELECT @day AS d LIMIT 1").unwrap();
    std::fs::write(dir.join("pipelines/b.sql"), "SELECT @nope AS d LIMIT 1").unwrap();
    dir
}

fn parse(yaml: &str) -> Result<Pipeline, CatalogError> {
    parse_pipeline(
        "t/p",
        "t/p.yaml",
        yaml,
        &sql_dir(),
        &Default::default(),
        Environment::Development,
    )
}

const HEADER: &str =
    "description: test\nparameters:\n  - {name: day, type: DATE, required: true}\n";

#[test]
fn a_valid_pipeline_parses() {
    let p = parse(&format!(
        "{HEADER}steps:\n  - {{id: a, kind: bigquery.assert, sql: pipelines/a.sql}}\n  - {{id: b, kind: bigquery.assert, sql: pipelines/a.sql, depends_on: [a]}}\n"
    ))
    .unwrap();
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.steps[1].depends_on, vec!["a"]);
}

#[test]
fn definition_errors_name_the_file_and_field() {
    let cases = [
        ("steps:\n  - {id: a, kind: nope.kind}\n", "steps[0].kind"),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql, depends_on: [b]}\n",
            "steps[0].depends_on",
        ),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql, depends_on: [b]}\n  - {id: b, kind: bigquery.assert, sql: pipelines/a.sql, depends_on: [a]}\n",
            "steps",
        ),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/missing.sql}\n",
            "steps[0].sql",
        ),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: ../etc/passwd.sql}\n",
            "steps[0].sql",
        ),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/b.sql}\n",
            "steps[0].sql",
        ),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql, extra: 1}\n",
            "steps[0].extra",
        ),
        (
            "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql}\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql}\n",
            "steps[1].id",
        ),
    ];
    for (steps, field) in cases {
        let err = parse(&format!("{HEADER}{steps}")).unwrap_err();
        assert_eq!(err.file, "t/p.yaml");
        assert!(
            err.field.starts_with(field),
            "{steps}: got field {} ({})",
            err.field,
            err.problem
        );
    }
}

#[test]
fn bad_parameter_declarations_are_refused() {
    for params in [
        "  - {name: Day, type: DATE}\n",
        "  - {name: day, type: FLOAT64}\n",
        "  - {name: day, type: DATE, regex: 'x'}\n",
        "  - {name: n, type: INT64, default: 'x'}\n",
        "  - {name: org_slug, type: STRING}\n",
    ] {
        let yaml = format!(
            "description: t\nparameters:\n{params}steps:\n  - {{id: a, kind: chaos.fault, mode: error}}\n"
        );
        let err = parse(&yaml).unwrap_err();
        assert!(err.field.starts_with("parameters"), "{params}: {err}");
    }
}

#[test]
fn chaos_steps_are_refused_in_production() {
    let yaml = "description: t\nsteps:\n  - {id: a, kind: chaos.fault, mode: error}\n";
    assert!(parse(yaml).is_ok());
    let err = parse_pipeline(
        "t/p",
        "t/p.yaml",
        yaml,
        &sql_dir(),
        &Default::default(),
        Environment::Production,
    )
    .unwrap_err();
    assert_eq!(err.field, "steps[0].kind");
}

#[test]
fn retry_delays_grow_and_are_capped() {
    let policy = RetryPolicy {
        max_attempts: 5,
        backoff_base_ms: 100,
        backoff_max_ms: 350,
        jitter: false,
    };
    assert_eq!(policy.delay_before(2), Duration::from_millis(100));
    assert_eq!(policy.delay_before(3), Duration::from_millis(200));
    assert_eq!(policy.delay_before(4), Duration::from_millis(350));
}

#[test]
fn definition_errors_say_each_thing_once_at_the_exact_field() {
    // A misspelled common field names every field the step could take.
    let err = parse(
        "description: t\nsteps:\n  - {id: a, kind: chaos.fault, mode: error, depends-on: [b]}\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "steps[0].depends-on");
    assert_eq!(
        err.problem,
        "unknown field; a step takes id, kind, depends_on, timeout_seconds, retry, on_failure, \
         and this kind takes mode, seconds, fail_times"
    );
    // A bad type is reported at the parameter's field, once.
    let err = parse(
        "description: t\nparameters:\n  - {name: day, type: DATETIME}\nsteps:\n  - {id: a, kind: chaos.fault, mode: error}\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "parameters[0].type");
    assert!(!err.problem.contains("parameters[0]"), "{err}");
    assert!(
        err.problem.starts_with("unknown variant `DATETIME`"),
        "{err}"
    );
    // A nested field is reported where it is.
    let err = parse(
        "description: t\nsteps:\n  - {id: a, kind: bigquery.query, sql: pipelines/a.sql, destination: {table: t, write: WRITE_EMPTY}}\n",
    )
    .unwrap_err();
    assert_eq!(err.field, "steps[0].destination.write");
    assert_eq!(
        err.problem,
        "unknown variant `WRITE_EMPTY`, expected `WRITE_APPEND` or `WRITE_TRUNCATE`"
    );
    // A top-level unknown field has no empty field name in front.
    let err =
        parse("description: t\ntimeout: 5\nsteps:\n  - {id: a, kind: chaos.fault, mode: error}\n")
            .unwrap_err();
    assert_eq!(err.field, "");
    assert!(
        err.to_string()
            .starts_with("t/p.yaml: unknown field `timeout`"),
        "{err}"
    );
}

#[test]
fn a_deadline_is_at_least_a_second_and_shorter_than_the_timeout() {
    let step = "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql}\n";
    let with = |extra: &str| parse(&format!("{HEADER}{extra}{step}"));
    let p = with("timeout_seconds: 600\ndeadline_seconds: 300\n").unwrap();
    assert_eq!(p.deadline, Some(std::time::Duration::from_secs(300)));
    assert_eq!(with("").unwrap().deadline, None);
    for bad in [
        "deadline_seconds: 0\n",
        "timeout_seconds: 600\ndeadline_seconds: 600\n",
    ] {
        let err = with(bad).unwrap_err();
        assert_eq!(err.field, "deadline_seconds", "{bad}");
        assert_eq!(
            err.problem,
            "must be at least 1 and less than timeout_seconds (a run past its timeout ends TIMED_OUT)"
        );
    }
}

#[test]
fn a_schedules_deadline_overrides_the_pipelines_for_its_ticks_and_stays_under_the_timeout() {
    let step = "steps:\n  - {id: a, kind: bigquery.assert, sql: pipelines/a.sql}\n";
    let schedules = |deadline: &str| {
        format!(
            "schedules:\n  - {{name: nightly, cron: \"0 6 * * *\", parameters: {{day: \"{{{{ logical_date }}}}\"}}{deadline}}}\n  - {{name: hourly, cron: \"0 * * * *\", parameters: {{day: \"{{{{ logical_date }}}}\"}}}}\n"
        )
    };
    let p = parse(&format!(
        "{HEADER}timeout_seconds: 600\ndeadline_seconds: 300\n{step}{}",
        schedules(", deadline_seconds: 120")
    ))
    .unwrap();
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs());
    assert_eq!(secs(p.deadline_for(Some("t/p/nightly"))), Some(120));
    assert_eq!(secs(p.deadline_for(Some("t/p/hourly"))), Some(300));
    assert_eq!(secs(p.deadline_for(None)), Some(300));
    assert_eq!(secs(p.deadline_for(Some("other/p/nightly"))), Some(300));

    let without_pipeline_deadline = parse(&format!(
        "{HEADER}timeout_seconds: 600\n{step}{}",
        schedules(", deadline_seconds: 120")
    ))
    .unwrap();
    assert_eq!(
        secs(without_pipeline_deadline.deadline_for(Some("t/p/nightly"))),
        Some(120)
    );
    assert_eq!(
        secs(without_pipeline_deadline.deadline_for(Some("t/p/hourly"))),
        None
    );

    for (bad, problem) in [
        (", deadline_seconds: 0", "at least 1"),
        (
            ", deadline_seconds: 600",
            "must be less than the pipeline's timeout_seconds (a run past its timeout ends TIMED_OUT)",
        ),
    ] {
        let err = parse(&format!(
            "{HEADER}timeout_seconds: 600\n{step}{}",
            schedules(bad)
        ))
        .unwrap_err();
        assert_eq!(err.field, "schedules[0].deadline_seconds", "{bad}");
        assert_eq!(err.problem, problem, "{bad}");
    }
}

#[test]
fn a_wait_step_takes_seconds_from_a_tenth_to_a_day_and_nothing_else() {
    let with = |step: &str| parse(&format!("{HEADER}steps:\n  - {step}\n"));
    assert!(with("{id: w, kind: wait, seconds: 60}").is_ok());
    assert!(with("{id: w, kind: wait, seconds: 0.5}").is_ok());
    for (bad, field) in [
        ("{id: w, kind: wait, seconds: 0}", "seconds"),
        ("{id: w, kind: wait, seconds: 86401}", "seconds"),
        ("{id: w, kind: wait}", "seconds"),
        ("{id: w, kind: wait, seconds: 1, sql: x.sql}", "sql"),
    ] {
        let err = with(bad).unwrap_err();
        assert!(
            err.field.ends_with(field) || err.problem.contains(field),
            "{bad}: {} {}",
            err.field,
            err.problem
        );
    }
}
