//! The append-only audit trail: who did what to which org, never with a secret in it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::OrgSlug;
use crate::http::request_id;
use crate::service_error::ServiceError;
use crate::warehouse::from_micros;
use crate::warehouse::{Param, Warehouse, sql};

pub const TABLE: &str = "audit_logs";

/// One audit event to record.
pub struct AuditEvent<'a> {
    pub org_slug: Option<&'a OrgSlug>,
    pub actor: String,
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub details: Value,
}

#[derive(Serialize)]
struct AuditRow<'a> {
    audit_id: String,
    org_slug: Option<&'a str>,
    actor: &'a str,
    action: &'a str,
    resource_type: &'a str,
    resource_id: Option<&'a str>,
    details: String,
    request_id: Option<String>,
    created_at: String,
}

/// Appends one event (one `insertAll`). A failure is logged, not raised: the action it records
/// has already happened and must not be reported as failed.
pub async fn record(warehouse: &Warehouse, event: AuditEvent<'_>) {
    let audit_id = uuid::Uuid::new_v4().to_string();
    let row = AuditRow {
        audit_id: audit_id.clone(),
        org_slug: event.org_slug.map(OrgSlug::as_str),
        actor: &event.actor,
        action: event.action,
        resource_type: event.resource_type,
        resource_id: event.resource_id.as_deref(),
        details: event.details.to_string(),
        request_id: request_id::current(),
        created_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let result = warehouse
        .insert_rows(warehouse.meta_dataset(), TABLE, &[(audit_id, row)])
        .await;
    if let Err(e) = result {
        tracing::error!(action = event.action, error = %e, "audit event not recorded");
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub audit_id: String,
    pub actor: String,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub details: Value,
    pub request_id: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct EntryRow {
    audit_id: String,
    actor: String,
    action: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    details: Option<String>,
    request_id: Option<String>,
    created_at_micros: i64,
}

/// Where the next page starts: strictly older than (time, id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    t: i64,
    id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        B64URL.encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    /// Strict: anything that is not a token this service issued is refused.
    pub fn decode(token: &str) -> Result<Self, ServiceError> {
        let invalid = || ServiceError::Invalid("malformed page_token".into());
        if token.len() > 256 {
            return Err(invalid());
        }
        let bytes = B64URL.decode(token).map_err(|_| invalid())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if cursor.t <= 0 || uuid::Uuid::parse_str(&cursor.id).is_err() {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

pub struct Page {
    pub entries: Vec<AuditEntry>,
    pub next_page_token: Option<String>,
}

/// Newest first, `limit` entries (1-100), from the last 90 days.
pub async fn list(
    warehouse: &Warehouse,
    org: &OrgSlug,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Page, ServiceError> {
    let (before_micros, before_id) = match after {
        Some(c) => (c.t, c.id),
        None => (i64::MAX, String::new()),
    };
    let rows: Vec<EntryRow> = warehouse
        .query(
            &sql::AUDIT_BY_ORG,
            &[
                Param::string("org_slug", org.as_str()),
                Param::timestamp("now", Utc::now()),
                Param::int64("before_micros", before_micros),
                Param::string("before_id", before_id),
                Param::int64("limit", limit as i64 + 1),
            ],
        )
        .await?;
    let more = rows.len() > limit;
    let entries: Vec<AuditEntry> = rows
        .into_iter()
        .take(limit)
        .map(|r| AuditEntry {
            details: r
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null),
            audit_id: r.audit_id,
            actor: r.actor,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            request_id: r.request_id,
            created_at: from_micros(Some(r.created_at_micros)),
        })
        .collect();
    let next_page_token = match (more, entries.last()) {
        (true, Some(last)) => Some(
            Cursor {
                t: last.created_at.map_or(0, |t| t.timestamp_micros()),
                id: last.audit_id.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(Page {
        entries,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            t: 1_795_341_600_123_456,
            id: uuid::Uuid::new_v4().to_string(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn tampered_tokens_are_refused() {
        for bad in [
            "",
            "!!!",
            &B64URL.encode(b"{\"t\":1}"),
            &B64URL.encode(b"{\"t\":1,\"id\":\"x' OR 1=1\"}"),
            &B64URL.encode(b"{\"t\":-5,\"id\":\"00000000-0000-0000-0000-000000000000\"}"),
            &B64URL.encode(b"{\"t\":1,\"id\":\"00000000-0000-0000-0000-000000000000\",\"x\":1}"),
            &"A".repeat(300),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
