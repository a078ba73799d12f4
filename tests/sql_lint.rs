//! Every statement the service can run lives in `sql/`. This lint walks that folder and fails on
//! anything that could carry user input into SQL text, or read without bound.

use std::path::{Path, PathBuf};

use std::collections::BTreeSet;

use quarry::warehouse::JobKind;
use quarry::warehouse::sql::{ALL, META_DATASET_TOKEN, ORG_DATASET_TOKEN};

/// Largest LIMIT a statement may declare (step logs).
const MAX_LIMIT: u64 = 1000;

fn sql_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sql_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql")
}

/// The SQL without `--` comments, upper-cased, whitespace folded.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pipeline SQL files that a step writes to a destination table: their SELECT's result goes
/// to BigQuery storage, not to the service, so it carries no LIMIT.
fn destination_selects() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let doc: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for step in doc["steps"].as_sequence().unwrap() {
                if step.get("destination").is_some() {
                    out.insert(step["sql"].as_str().unwrap().to_string());
                }
            }
        }
    }
    out
}

/// Problems with one file's SQL; empty when it passes.
fn lint(text: &str) -> Vec<String> {
    lint_with(text, &[META_DATASET_TOKEN], true)
}

fn lint_with(text: &str, tokens: &[&str], bounded: bool) -> Vec<String> {
    let mut problems = Vec::new();
    // The emulator counts `@name` even inside comments, and then refuses the parameter list.
    if text
        .lines()
        .filter_map(|l| l.split_once("--").map(|(_, c)| c))
        .any(|comment| comment.contains('@'))
    {
        problems.push("a parameter-like @ inside a comment".to_string());
    }
    let sql = code(text);
    let upper = sql.to_ascii_uppercase();
    for placeholder in ["{", "}", "%s", "%d", "$1", "format!", "?"] {
        if sql.contains(placeholder) {
            problems.push(format!("placeholder-like text {placeholder:?}"));
        }
    }
    let found: Vec<&str> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("__") && t.ends_with("__") && t.len() > 4)
        .collect();
    for token in found {
        if !tokens.contains(&token) {
            problems.push(format!("unknown substitution token {token}"));
        }
    }
    let is_read = upper.starts_with("SELECT") || upper.starts_with("WITH");
    if upper.contains("SELECT") && is_read && bounded {
        let trimmed = upper.trim_end_matches(';').trim_end();
        let words: Vec<&str> = trimmed.split(' ').collect();
        match words.as_slice() {
            [.., "LIMIT", n] => match n.parse::<u64>() {
                Ok(v) if (1..=MAX_LIMIT).contains(&v) => {}
                Ok(v) => problems.push(format!("LIMIT {v} is over {MAX_LIMIT}")),
                Err(_) if n.starts_with('@') => {}
                Err(_) => problems.push(format!("LIMIT {n} is neither a number nor a parameter")),
            },
            _ => problems.push("a SELECT that does not end in LIMIT".to_string()),
        }
    }
    problems
}

#[test]
fn every_sql_file_is_parameterized_and_bounded() {
    let mut files = Vec::new();
    sql_files(&root(), &mut files);
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let exempt = destination_selects();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .to_string();
        let problems = if rel.starts_with("views/") || rel.starts_with("functions/") {
            // Views and table functions are read by analysts, who bound their own queries.
            lint_with(&text, &[META_DATASET_TOKEN], false)
        } else if rel.starts_with("pipelines/") {
            // Pipeline SQL: the org's dataset only; bounded unless written to a destination.
            lint_with(&text, &[ORG_DATASET_TOKEN], !exempt.contains(&rel))
        } else {
            lint(&text)
        };
        for problem in problems {
            failures.push(format!("{}: {problem}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_sql_file_is_registered_and_every_registered_statement_has_a_file() {
    let mut files = Vec::new();
    sql_files(&root(), &mut files);
    let mut on_disk: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .filter(|f| {
            !f.starts_with("pipelines/") && !f.starts_with("views/") && !f.starts_with("functions/")
        })
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = ALL.iter().map(|s| s.file().to_string()).collect();
    registered.sort();
    assert_eq!(on_disk, registered);
    for statement in ALL {
        assert_eq!(
            std::fs::read_to_string(root().join(statement.file())).unwrap(),
            statement.text()
        );
    }
}

#[test]
fn every_view_file_is_registered() {
    let mut files = Vec::new();
    sql_files(&root().join("views"), &mut files);
    let mut on_disk: Vec<String> = files
        .iter()
        .map(|f| format!("views/{}", f.file_name().unwrap().to_string_lossy()))
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = quarry::warehouse::sql::VIEWS
        .iter()
        .map(|v| v.file())
        .collect();
    registered.sort();
    assert_eq!(on_disk, registered);
}

#[test]
fn every_table_function_file_is_registered_and_its_window_reaches_the_partition_column() {
    let mut files = Vec::new();
    sql_files(&root().join("functions"), &mut files);
    let mut on_disk: Vec<String> = files
        .iter()
        .map(|f| format!("functions/{}", f.file_name().unwrap().to_string_lossy()))
        .collect();
    on_disk.sort();
    let functions = quarry::warehouse::sql::TABLE_FUNCTIONS;
    let mut registered: Vec<String> = functions.iter().map(|f| f.file()).collect();
    registered.sort();
    assert_eq!(on_disk, registered);
    for function in functions {
        // Every read of the events table is bounded on event_time by the function's first
        // argument: that is what lets BigQuery prune partitions.
        let sql = code(function.text());
        let first = function.arguments.split(' ').next().unwrap();
        let reads = sql.matches("pipeline_run_events").count();
        let bounded = sql.matches("WHERE event_time >= ").count();
        assert!(reads > 0, "{}", function.name);
        assert_eq!(
            reads, bounded,
            "{}: every read filters event_time",
            function.name
        );
        assert!(
            sql.contains(&format!("WHERE event_time >= {first}"))
                || sql.contains(&format!("WHERE event_time >= TIMESTAMP({first})")),
            "{}: the window starts at {first}",
            function.name
        );
    }
}

#[test]
fn reads_are_not_classified_as_dml() {
    for statement in ALL {
        let upper = code(statement.text()).to_ascii_uppercase();
        if upper.starts_with("SELECT") || upper.starts_with("WITH") {
            assert_eq!(statement.kind(), JobKind::Query, "{}", statement.file());
        }
    }
}

// The lint must catch what it claims to catch.

#[test]
fn the_lint_rejects_a_select_without_limit() {
    assert_eq!(
        lint("SELECT a FROM `__META_DATASET__.t` WHERE a = @a"),
        vec!["a SELECT that does not end in LIMIT"]
    );
}

#[test]
fn the_lint_rejects_format_placeholders() {
    assert!(!lint("SELECT a FROM t WHERE a = '{}' LIMIT 1").is_empty());
    assert!(!lint("SELECT a FROM t WHERE a = '{org_slug}' LIMIT 1").is_empty());
    assert!(!lint("SELECT a FROM t WHERE a = '%s' LIMIT 1").is_empty());
    assert!(!lint("SELECT a FROM t WHERE a = ? LIMIT 1").is_empty());
}

#[test]
fn the_lint_rejects_unknown_tokens_and_oversized_limits() {
    assert!(!lint("SELECT a FROM `__ORG_INPUT__.t` LIMIT 1").is_empty());
    assert!(!lint("SELECT a FROM t LIMIT 100000").is_empty());
    assert!(lint("SELECT a FROM t LIMIT 1 -- LIMIT in a comment").is_empty());
    assert!(!lint("SELECT a FROM t -- LIMIT 1").is_empty());
}

#[test]
fn pipeline_sql_may_not_name_the_meta_dataset() {
    assert!(
        !lint_with(
            "SELECT a FROM `__META_DATASET__.org_api_keys` LIMIT 1",
            &[ORG_DATASET_TOKEN],
            true
        )
        .is_empty()
    );
}

#[test]
fn the_lint_rejects_parameters_named_in_comments() {
    assert!(!lint("-- uses @org_slug\nSELECT a FROM t WHERE a = @org_slug LIMIT 1").is_empty());
}

#[test]
fn the_lint_accepts_a_bounded_parameterized_read() {
    assert!(
        lint("-- comment\nSELECT a FROM `__META_DATASET__.t`\nWHERE a = @a\nLIMIT 1\n").is_empty()
    );
    assert!(lint("SELECT a FROM t WHERE a IN UNNEST(@ids) LIMIT @limit").is_empty());
}
