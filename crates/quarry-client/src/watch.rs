//! `runs watch` (and `--wait`): follows a run until it ends, printing each step attempt as it
//! starts and ends, with a progress line on a terminal. The exit code is 0 for SUCCEEDED only,
//! so `quarry runs trigger ... --wait && next-step` fits shell scripts and CI.

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
    started: Instant,
    frame: usize,
}

impl Progress {
    fn new() -> Self {
        Self {
            on_terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            frame: 0,
        }
    }

    fn show(&mut self, status: &str, done: usize, total: Option<usize>) {
        if !self.on_terminal {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame += 1;
        let total = total.map(|t| format!("/{t}")).unwrap_or_default();
        eprint!(
            "\r\x1b[2K{} {status} · {done}{total} steps done · {} s",
            FRAMES[self.frame % FRAMES.len()],
            self.started.elapsed().as_secs()
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

/// Steps the pipeline declares, from the catalog (for "n/m steps done"); `None` if unknown.
async fn declared_steps(api: &Api, pipeline: &str) -> Option<usize> {
    let catalog = api
        .get(KeyUse::Org, "/api/v1/pipelines", &[])
        .await
        .ok()?
        .body;
    catalog["pipelines"]
        .as_array()?
        .iter()
        .find(|p| p["id"].as_str() == Some(pipeline))
        .and_then(|p| p["steps"].as_array().map(Vec::len))
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable(_) => true,
        ClientError::Refused { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        _ => false,
    }
}

/// A step attempt as one line: `step load_day  attempt 1  SUCCEEDED  90 ms`.
fn step_line(s: &Value) -> String {
    let mut line = format!(
        "step {}  attempt {}  {}",
        s["step_id"].as_str().unwrap_or("?"),
        s["attempt"],
        s["status"].as_str().unwrap_or("?")
    );
    if let Some(ms) = s["duration_ms"].as_f64() {
        line.push_str(&format!("  {}", format_ms(ms)));
    }
    if let Some(e) = s["error_summary"].as_str() {
        line.push_str(&format!("  {}", e.replace('\n', " ")));
    }
    line
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
    let mut total: Option<usize> = None;
    let mut failed_looks = 0;
    loop {
        let look = async {
            let run = api.get(KeyUse::Org, &path, &[]).await?.body;
            let steps = api
                .get(KeyUse::Org, &format!("{path}/steps"), &[])
                .await?
                .body;
            Ok::<_, ClientError>((run, steps))
        }
        .await;
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
        let status = run_view["status"].as_str().unwrap_or("?").to_string();
        if total.is_none() {
            if let Some(p) = run_view["pipeline_id"].as_str() {
                total = declared_steps(api, p).await;
            }
        }
        let attempts = steps["steps"].as_array().cloned().unwrap_or_default();
        progress.clear();
        if format == Format::Table {
            if status != last_status && !is_terminal(&status) {
                println!("run {run}  {status}");
            }
            for s in &attempts {
                let key = (
                    s["step_id"].as_str().unwrap_or("?").to_string(),
                    s["attempt"].as_i64().unwrap_or(0),
                );
                let step_status = s["status"].as_str().unwrap_or("?").to_string();
                if seen.get(&key) != Some(&step_status) {
                    println!("  {}", step_line(s));
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
        let next_look = Instant::now() + Duration::from_secs(interval_secs);
        while Instant::now() < next_look {
            progress.show(&status, done, total);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}
