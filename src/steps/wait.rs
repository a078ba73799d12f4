//! `wait`: a step that waits `seconds` (0.1-86400), then succeeds. For a pipeline that must
//! leave time between two steps (a partner's file lands later, a cool-down), and for demos of
//! long runs (`samples/slow_demo`: cancel it while it waits, re-run it from its failed steps).
//! Cancelling the run stops the wait at once; the step's and the pipeline's timeouts bound it
//! like any step.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Mapping;

use super::{StepAction, StepContext, StepError, StepOutcome, fields};
use crate::definitions::{CatalogError, StepParse};

/// The longest wait a step may declare.
const MAX_SECONDS: f64 = 86_400.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    seconds: f64,
}

#[derive(Debug)]
pub struct Wait(Duration);

pub fn parse(raw: Mapping, ctx: &StepParse<'_>) -> Result<Box<dyn StepAction>, CatalogError> {
    let f: Fields = fields(raw, ctx)?;
    if !(0.1..=MAX_SECONDS).contains(&f.seconds) {
        return Err(ctx.error("seconds", "0.1-86400"));
    }
    Ok(Box::new(Wait(Duration::from_secs_f64(f.seconds))))
}

#[async_trait::async_trait]
impl StepAction for Wait {
    async fn run(&self, _ctx: &StepContext) -> Result<StepOutcome, StepError> {
        tokio::time::sleep(self.0).await;
        Ok(StepOutcome::default())
    }
}
