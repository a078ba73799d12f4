//! `chaos.fault`: a step that fails on purpose, for rehearsing failure handling (and for the
//! executor's own tests): `mode: error` fails, `mode: panic` panics, `mode: sleep` waits
//! `seconds` then succeeds, `mode: flaky` fails its first `fail_times` attempts in a process.
//! Refused in production.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Mapping;

use super::{StepAction, StepContext, StepError, StepOutcome, fields};
use crate::definitions::{CatalogError, StepParse};
use crate::settings::Environment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Error,
    Panic,
    Sleep,
    Flaky,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    mode: Mode,
    #[serde(default)]
    seconds: f64,
    #[serde(default)]
    fail_times: u32,
}

#[derive(Debug)]
pub struct Chaos {
    mode: Mode,
    sleep: Duration,
    fail_times: u32,
    failures: AtomicU32,
}

pub fn parse(raw: Mapping, ctx: &StepParse<'_>) -> Result<Box<dyn StepAction>, CatalogError> {
    if ctx.environment == Environment::Production {
        return Err(ctx.error("kind", "chaos.fault is not allowed in production"));
    }
    let f: Fields = fields(raw, ctx)?;
    if !(0.0..=3600.0).contains(&f.seconds) {
        return Err(ctx.error("seconds", "0-3600"));
    }
    Ok(Box::new(Chaos {
        mode: f.mode,
        sleep: Duration::from_secs_f64(f.seconds),
        fail_times: f.fail_times,
        failures: AtomicU32::new(0),
    }))
}

#[async_trait::async_trait]
impl StepAction for Chaos {
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutcome, StepError> {
        match self.mode {
            Mode::Error => Err(StepError::new("chaos", "injected failure", true)),
            Mode::Panic => panic!("chaos.fault: injected panic"),
            Mode::Sleep => {
                tokio::time::sleep(self.sleep).await;
                Ok(StepOutcome::default())
            }
            Mode::Flaky => {
                if self.failures.fetch_add(1, Ordering::SeqCst) < self.fail_times {
                    Err(StepError::new("chaos", "injected transient failure", true))
                } else {
                    Ok(StepOutcome::default())
                }
            }
        }
    }
}
