//! `runs watch` (and `--wait`): follows a run until it ends, printing each step attempt as it
//! starts and ends, with a progress line on a terminal. The service pushes each change (the
//! run's events stream); where it cannot (an older service, its streams full, a broken
//! connection), the watch polls the run and its steps every `--interval` seconds. The exit
//! code is 0 for SUCCEEDED only, so `quarry runs trigger ... --wait && next-step` fits shell
//! scripts and CI.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ClientError;
use super::api::{Api, KeyUse};
use super::output::{Format, format_ms, json};

/// A run status after which nothing changes.
pub fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT" | "ORPHANED" | "REFUSED"
    )
}

/// The exit code of a followed run: 0 for SUCCEEDED, 1 for any other end.
pub const EXIT_RUN_DID_NOT_SUCCEED: u8 = 1;

/// Looks that may fail in a row (429, 503, a lost connection) before the watch gives up.
const MAX_FAILED_LOOKS: u32 = 5;

struct Progress {
    on_terminal: bool,
    frame: usize,
}

impl Progress {
    fn new() -> Self {
        Self {
            on_terminal: std::io::stderr().is_terminal(),
            frame: 0,
        }
    }

    /// `since`: the run's own start (else its creation), so the time shown is the run's, not
    /// the watcher's.
    fn show(&mut self, status: &str, done: usize, total: Option<usize>, since: Option<Since>) {
        if !self.on_terminal {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame += 1;
        let total = total.map(|t| format!("/{t}")).unwrap_or_default();
        let elapsed = since
            .map(|s| format!(" · {} s", (chrono::Utc::now() - s).num_seconds().max(0)))
            .unwrap_or_default();
        eprint!(
            "\r\x1b[2K{} {status} · {done}{total} steps done{elapsed}",
            FRAMES[self.frame % FRAMES.len()],
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.on_terminal {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

type Since = chrono::DateTime<chrono::Utc>;

/// When the run started (else when it was created), as the service recorded it.
fn run_since(run: &Value) -> Option<Since> {
    ["started_at", "created_at"]
        .iter()
        .find_map(|f| run[*f].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The steps the pipeline declares, from the catalog (for "n/m steps done" and the width of
/// the step column); empty if unknown.
async fn declared_steps(api: &Api, pipeline: &str) -> Vec<String> {
    let Ok(catalog) = super::commands::catalog(api).await else {
        return Vec::new();
    };
    super::commands::catalog_entry(&catalog, pipeline)
        .and_then(|p| p["steps"].as_array())
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The run's status as the watch tells it: a run with a step attempt is running even if its
/// RUNNING event is not readable yet (so the run's line never comes after its steps').
fn told_status(status: &str, attempts: &[Value]) -> String {
    if matches!(status, "QUEUED" | "PENDING") && !attempts.is_empty() {
        "RUNNING".into()
    } else {
        status.into()
    }
}

/// Step attempts in the order they started (then step, then attempt).
fn in_start_order(mut attempts: Vec<Value>) -> Vec<Value> {
    attempts.sort_by(|a, b| {
        let key = |s: &Value| {
            (
                s["started_at"].as_str().unwrap_or("").to_string(),
                s["step_id"].as_str().unwrap_or("").to_string(),
                s["attempt"].as_i64().unwrap_or(0),
            )
        };
        key(a).cmp(&key(b))
    });
    attempts
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable(_) => true,
        ClientError::Refused { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        _ => false,
    }
}

/// A step attempt as one line, its columns aligned (`width`: the longest step id):
/// `step load_day  attempt 1  SUCCEEDED  90 ms`.
fn step_line(s: &Value, width: usize) -> String {
    let mut line = format!(
        "step {:<width$}  attempt {:<2} {:<11}",
        s["step_id"].as_str().unwrap_or("?"),
        s["attempt"].to_string(),
        s["status"].as_str().unwrap_or("?")
    );
    if let Some(ms) = s["duration_ms"].as_f64() {
        line.push_str(&format!("  {}", format_ms(ms)));
    }
    if let Some(e) = s["error_summary"].as_str() {
        line.push_str(&format!("  {}", e.replace('\n', " ")));
    }
    line.truncate(line.trim_end().len());
    line
}

/// How long a run's events stream may stay silent (the service's keep-alives come every 15 s)
/// before the watch takes it for broken and polls instead.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// A run's events stream (`GET …/runs/{run_id}/events`), read one event at a time: each is the
/// run and its steps as they are now.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next state (`{run}`, `{steps}`), or `None` when the stream ended or broke (the watch
    /// then polls).
    async fn next(&mut self) -> Option<(Value, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let Some(data) = data {
                    let mut event: Value = serde_json::from_str(data).ok()?;
                    let steps = json!({"steps": event["steps"].take()});
                    return Some((event["run"].take(), steps));
                }
            }
            // The service sends a keep-alive every 15 s: a stream silent for longer is broken.
            let chunk = tokio::time::timeout(STREAM_SILENCE, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

pub async fn follow(
    api: &Api,
    format: Format,
    org: &str,
    run: &str,
    interval_secs: u64,
) -> Result<ExitCode, ClientError> {
    let path = format!("/api/v1/pipelines/{org}/runs/{run}");
    let mut progress = Progress::new();
    let mut seen: BTreeMap<(String, i64), String> = BTreeMap::new();
    let mut last_status = String::new();
    let mut said_running = false;
    let mut declared: Option<Vec<String>> = None;
    let mut failed_looks = 0;
    // What the progress line shows between pushed changes.
    let mut shown: Option<(String, usize, Option<usize>, Option<Since>)> = None;
    // The run and its steps as last polled, with their ETags: sent back as If-None-Match (the
    // run's with the steps' too), so the service answers at once from its live model (304 while
    // unchanged, never older).
    let mut known_run: Option<(String, Value)> = None;
    let mut known_steps: Option<(String, Value)> = None;
    // Pushed by the service while it can; polled every `interval_secs` otherwise.
    let mut events = api
        .open_events(&format!("{path}/events"))
        .await
        .map(|response| Events {
            response,
            buffer: String::new(),
        });
    loop {
        let pushed = match events.as_mut() {
            Some(stream) => {
                // The progress line goes on while the next change is awaited.
                let next = stream.next();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        event = &mut next => break event,
                        _ = tokio::time::sleep(Duration::from_millis(150)) => {
                            if let Some((status, done, total, since)) = &shown {
                                progress.show(status, *done, *total, *since);
                            }
                        }
                    }
                }
            }
            None => None,
        };
        let streaming = pushed.is_some();
        if !streaming {
            events = None;
        }
        let look = match pushed {
            Some(both) => Ok(both),
            None => {
                async {
                    let run = api
                        .get_again(KeyUse::Org, &path, known_run.as_ref(), None)
                        .await?;
                    // The run's ETag too: its steps are answered at once from a state at least
                    // as far on as the run just read, on a first look as well.
                    let steps = api
                        .get_again(
                            KeyUse::Org,
                            &format!("{path}/steps"),
                            known_steps.as_ref(),
                            run.0.as_deref(),
                        )
                        .await?;
                    known_run = run.0.map(|etag| (etag, run.1.clone()));
                    known_steps = steps.0.map(|etag| (etag, steps.1.clone()));
                    Ok::<_, ClientError>((run.1, steps.1))
                }
                .await
            }
        };
        let (run_view, steps) = match look {
            Ok(both) => {
                failed_looks = 0;
                both
            }
            Err(e) if retryable(&e) && failed_looks < MAX_FAILED_LOOKS => {
                failed_looks += 1;
                tokio::time::sleep(Duration::from_secs(interval_secs.max(2))).await;
                continue;
            }
            Err(e) => {
                progress.clear();
                return Err(e);
            }
        };
        if declared.is_none() {
            if let Some(p) = run_view["pipeline_id"].as_str() {
                declared = Some(declared_steps(api, p).await);
            }
        }
        let declared_ids = declared.as_deref().unwrap_or_default();
        let total = (!declared_ids.is_empty()).then_some(declared_ids.len());
        let attempts = in_start_order(steps["steps"].as_array().cloned().unwrap_or_default());
        let status = told_status(run_view["status"].as_str().unwrap_or("?"), &attempts);
        let width = declared_ids
            .iter()
            .map(String::len)
            .chain(
                attempts
                    .iter()
                    .filter_map(|s| s["step_id"].as_str().map(str::len)),
            )
            .max()
            .unwrap_or(0);
        progress.clear();
        if format == Format::Table {
            if status != last_status && !is_terminal(&status) && status != "RUNNING" {
                println!("run {run}  {status}");
            }
            // A run that has step attempts ran, even when it ended between two looks: its
            // RUNNING line comes once, before its steps.
            if (status == "RUNNING" || !attempts.is_empty()) && !said_running {
                println!("run {run}  RUNNING");
                said_running = true;
            }
            for s in &attempts {
                let key = (
                    s["step_id"].as_str().unwrap_or("?").to_string(),
                    s["attempt"].as_i64().unwrap_or(0),
                );
                let step_status = s["status"].as_str().unwrap_or("?").to_string();
                if seen.get(&key) != Some(&step_status) {
                    println!("  {}", step_line(s, width));
                    seen.insert(key, step_status);
                }
            }
            let _ = std::io::stdout().flush();
        }
        last_status = status.clone();
        if is_terminal(&status) {
            match format {
                Format::Json => {
                    let mut both = run_view.clone();
                    both["steps"] = json!(attempts);
                    print!("{}", json(&both));
                }
                Format::Table => {
                    let took = run_view["duration_ms"]
                        .as_f64()
                        .map(|ms| format!(" in {}", format_ms(ms)))
                        .unwrap_or_default();
                    let why = run_view["error_summary"]
                        .as_str()
                        .map(|e| format!(": {}", e.replace('\n', " ")))
                        .unwrap_or_default();
                    println!("run {run} {status}{took}{why}");
                }
            }
            return Ok(if status == "SUCCEEDED" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUN_DID_NOT_SUCCEED)
            });
        }
        let done = {
            let mut ok: Vec<&str> = attempts
                .iter()
                .filter(|s| matches!(s["status"].as_str(), Some("SUCCEEDED" | "REUSED")))
                .filter_map(|s| s["step_id"].as_str())
                .collect();
            ok.sort_unstable();
            ok.dedup();
            ok.len()
        };
        if streaming {
            shown = Some((status, done, total, run_since(&run_view)));
            continue;
        }
        let next_look = Instant::now() + Duration::from_secs(interval_secs);
        while Instant::now() < next_look {
            progress.show(&status, done, total, run_since(&run_view));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(step: &str, n: i64, status: &str, started: &str) -> Value {
        json!({"step_id": step, "attempt": n, "status": status, "started_at": started})
    }

    #[test]
    fn a_run_with_a_step_attempt_is_told_running_even_before_its_running_event_is_read() {
        let one = [attempt("a", 1, "RUNNING", "2026-12-06T10:00:01Z")];
        assert_eq!(told_status("PENDING", &one), "RUNNING");
        assert_eq!(told_status("PENDING", &[]), "PENDING");
        assert_eq!(told_status("SUCCEEDED", &one), "SUCCEEDED");
    }

    #[test]
    fn attempts_are_told_in_the_order_they_started() {
        let sorted = in_start_order(vec![
            attempt("d", 1, "RUNNING", "2026-12-06T10:00:03Z"),
            attempt("b", 2, "RUNNING", "2026-12-06T10:00:02Z"),
            attempt("b", 1, "FAILED", "2026-12-06T10:00:01Z"),
            attempt("a", 1, "SUCCEEDED", "2026-12-06T10:00:00Z"),
        ]);
        let order: Vec<(String, i64)> = sorted
            .iter()
            .map(|s| {
                (
                    s["step_id"].as_str().unwrap().into(),
                    s["attempt"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                ("a".into(), 1),
                ("b".into(), 1),
                ("b".into(), 2),
                ("d".into(), 1)
            ]
        );
    }

    #[test]
    fn step_lines_align_their_columns_on_the_longest_step_id() {
        let mut short = attempt("a", 1, "SUCCEEDED", "");
        short["duration_ms"] = json!(90);
        let long = attempt("load_day", 10, "RUNNING", "");
        assert_eq!(
            step_line(&short, 8),
            "step a         attempt 1  SUCCEEDED    90 ms"
        );
        assert_eq!(step_line(&long, 8), "step load_day  attempt 10 RUNNING");
        assert_eq!(
            step_line(&short, 8).find("attempt"),
            step_line(&long, 8).find("attempt")
        );
    }

    #[test]
    fn the_time_shown_is_the_runs_own_from_its_start_else_its_creation() {
        let started =
            json!({"started_at": "2026-12-06T10:00:05Z", "created_at": "2026-12-06T10:00:00Z"});
        assert_eq!(
            run_since(&started).unwrap().to_rfc3339(),
            "2026-12-06T10:00:05+00:00"
        );
        let queued = json!({"started_at": null, "created_at": "2026-12-06T10:00:00Z"});
        assert_eq!(
            run_since(&queued).unwrap().to_rfc3339(),
            "2026-12-06T10:00:00+00:00"
        );
        assert_eq!(run_since(&json!({})), None);
    }
}
