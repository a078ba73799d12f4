//! `Idempotency-Key` on triggers: the run id is derived from (org, key), and the key is bound to
//! the request that first used it (pipeline and validated parameters). A repeat of that request
//! replays the run with its current status; any other request with the key is refused.

use serde::Deserialize;

use super::{Inner, RunStatus, TriggerError, Triggered};
use crate::definitions::RunParams;
use crate::domain::OrgSlug;
use crate::warehouse::{Param, sql};

/// Namespace of run ids derived from an Idempotency-Key.
const IDEMPOTENT_RUN_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6a1c_9e0b_4f43_4d8a_9a55_5b1e_0c7d_2f19);

/// How long a repeat waits, once, for the run its key holds to be recorded before answering 409.
pub(super) const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The run id an Idempotency-Key stands for in an org.
pub(super) fn run_id_for(org: &OrgSlug, key: &str) -> String {
    uuid::Uuid::new_v5(
        &IDEMPOTENT_RUN_NAMESPACE,
        format!("{org}\n{key}").as_bytes(),
    )
    .to_string()
}

#[derive(Deserialize)]
struct Found {
    run_id: String,
    pipeline_id: String,
    parameters: Option<String>,
    status: Option<RunStatus>,
}

/// The run the key already started (one bounded read), if it was recorded: replayed when this
/// request is the one that started it, refused when it is another.
pub(super) async fn find(
    inner: &Inner,
    org: &OrgSlug,
    key: &str,
    pipeline_id: &str,
    params: &RunParams,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Triggered>, TriggerError> {
    let found: Vec<Found> = inner
        .warehouse
        .query(
            &sql::RUN_BY_IDEMPOTENCY_KEY,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("idempotency_key", key),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    let Some(f) = found.into_iter().next() else {
        return Ok(None);
    };
    let same_parameters = f
        .parameters
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .is_some_and(|p| p == params.to_json());
    if f.pipeline_id != pipeline_id || !same_parameters {
        return Err(TriggerError::IdempotencyKeyReused);
    }
    Ok(Some(Triggered {
        run_id: f.run_id,
        status: f.status.unwrap_or(RunStatus::Pending),
        replayed: true,
        queue_position: None,
    }))
}
