//! Org API keys at rest: issuing (hash + KMS ciphertext, never plaintext), lookup by hash,
//! listing metadata, revocation, and the batched `last_used_at` writer.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ApiKey, OrgSlug, Scope};
use crate::kms::{Aad, Kms};
use crate::service_error::ServiceError;
use crate::warehouse::from_micros;
use crate::warehouse::{Param, Warehouse, WarehouseError, sql};

/// A key's name for people: 1-64 characters of letters, digits, space, `.`, `_` and `-`
/// (trimmed), shown with the key id wherever the key acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyName(String);

impl KeyName {
    /// The name given as `field` of a request (`name` at rotation, `key_name` at onboarding),
    /// if one was given.
    pub fn parse_field(
        raw: Option<&str>,
        field: &str,
    ) -> Result<Option<Self>, crate::validation::FieldProblem> {
        raw.map(|raw| Self::parse(raw, field)).transpose()
    }

    fn parse(raw: &str, field: &str) -> Result<Self, crate::validation::FieldProblem> {
        let name = raw.trim();
        let ok = (1..=64).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c));
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(crate::validation::FieldProblem::new(
                field,
                "not a key name",
                "1-64 letters, digits, spaces, dots, underscores or dashes",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a key appears as the actor of what it did: `key:<id>`, with its name when it has one.
pub fn actor(key_id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("key:{key_id} ({name})"),
        None => format!("key:{key_id}"),
    }
}

/// A freshly issued key: the only moment the plaintext exists outside the caller's hands.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub key_id: String,
    pub display_prefix: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn issue(
    warehouse: &Warehouse,
    kms: &dyn Kms,
    org: &OrgSlug,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    name: Option<&KeyName>,
) -> Result<IssuedKey, ServiceError> {
    let key = ApiKey::generate();
    let key_id = uuid::Uuid::new_v4().to_string();
    let ciphertext = kms
        .encrypt(
            key.expose().as_bytes(),
            &Aad::org_api_key(org.as_str(), &key_id),
        )
        .await?;
    let scopes = Scope::normalize(scopes);
    let display_prefix = key.display_prefix();
    warehouse
        .execute(
            &sql::KEY_INSERT,
            &[
                Param::string("key_id", &key_id),
                Param::string("org_slug", org.as_str()),
                Param::string("key_hash", key.hash_hex()),
                Param::string("encrypted_key_b64", B64.encode(&ciphertext)),
                Param::string("display_prefix", &display_prefix),
                Param::string_array(
                    "scopes",
                    scopes.iter().map(|s| s.as_str().to_string()).collect(),
                ),
                Param::opt_string("name", name.map(|n| n.as_str().to_string())),
                Param::timestamp("created_at", Utc::now()),
                Param::opt_timestamp("expires_at", expires_at),
            ],
        )
        .await?;
    Ok(IssuedKey {
        key,
        key_id,
        display_prefix,
        scopes,
        expires_at,
    })
}

/// What authentication needs to know about a key.
#[derive(Debug, Clone)]
pub struct KeyAuthRecord {
    pub key_id: String,
    pub org_slug: OrgSlug,
    pub scopes: Vec<Scope>,
    pub name: Option<String>,
    pub expires_at_micros: Option<i64>,
    pub revoked_at_micros: Option<i64>,
    pub org_active: bool,
}

impl KeyAuthRecord {
    /// Usable now: not expired, not revoked (a rotation's grace period counts as not yet
    /// revoked), and its org is active.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        let now = now.timestamp_micros();
        self.org_active
            && self.expires_at_micros.is_none_or(|t| now < t)
            && self.revoked_at_micros.is_none_or(|t| now < t)
    }
}

#[derive(Deserialize)]
struct KeyRow {
    key_id: String,
    org_slug: String,
    scopes: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    expires_at_micros: Option<i64>,
    revoked_at_micros: Option<i64>,
    org_status: String,
}

pub async fn lookup(
    warehouse: &Warehouse,
    key_hash: &str,
) -> Result<Option<KeyAuthRecord>, WarehouseError> {
    let rows: Vec<KeyRow> = warehouse
        .query(&sql::KEY_BY_HASH, &[Param::string("key_hash", key_hash)])
        .await?;
    Ok(rows.into_iter().next().and_then(|row| {
        Some(KeyAuthRecord {
            org_slug: OrgSlug::parse(&row.org_slug).ok()?,
            key_id: row.key_id,
            scopes: row.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            name: row.name,
            expires_at_micros: row.expires_at_micros,
            revoked_at_micros: row.revoked_at_micros,
            org_active: row.org_status == "ACTIVE",
        })
    }))
}

/// Key metadata as the API shows it: never the key, its hash or its ciphertext.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyInfo {
    pub key_id: String,
    pub display_prefix: String,
    pub scopes: Vec<String>,
    /// The key's name, when it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: String,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct KeyListRow {
    key_id: String,
    display_prefix: String,
    scopes: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    created_at_micros: Option<i64>,
    expires_at_micros: Option<i64>,
    revoked_at_micros: Option<i64>,
    last_used_at_micros: Option<i64>,
}

/// Keys listed per page at most.
pub const KEYS_PAGE_SIZE: usize = 100;
/// Live keys (working, or working until their grace ends) an org may hold at most; a rotation
/// past it is refused (409) until a key is revoked.
pub const MAX_LIVE_KEYS: i64 = 10;

fn info(r: KeyListRow, now: i64) -> KeyInfo {
    let status = match (r.revoked_at_micros, r.expires_at_micros) {
        (Some(t), _) if t <= now => "REVOKED",
        (Some(_), _) => "ROTATING",
        (None, Some(t)) if t <= now => "EXPIRED",
        _ => "ACTIVE",
    };
    KeyInfo {
        key_id: r.key_id,
        display_prefix: r.display_prefix,
        scopes: r.scopes,
        name: r.name,
        status: status.to_string(),
        created_at: from_micros(r.created_at_micros),
        expires_at: from_micros(r.expires_at_micros),
        revoked_at: from_micros(r.revoked_at_micros),
        last_used_at: from_micros(r.last_used_at_micros),
    }
}

/// One page of an org's keys, newest first: those after `after` (created_at micros, key id),
/// and whether more follow.
pub async fn list(
    warehouse: &Warehouse,
    org: &OrgSlug,
    after: Option<(i64, String)>,
) -> Result<(Vec<KeyInfo>, bool), WarehouseError> {
    let (after_micros, after_key_id) = match after {
        Some((t, id)) => (Some(t), id),
        None => (None, String::new()),
    };
    let rows: Vec<KeyListRow> = warehouse
        .query(
            &sql::KEYS_BY_ORG,
            &[
                Param::string("org_slug", org.as_str()),
                Param::opt_int64("after_micros", after_micros),
                Param::string("after_key_id", after_key_id),
                Param::int64("page_size", KEYS_PAGE_SIZE as i64 + 1),
            ],
        )
        .await?;
    let now = Utc::now().timestamp_micros();
    let more = rows.len() > KEYS_PAGE_SIZE;
    Ok((
        rows.into_iter()
            .take(KEYS_PAGE_SIZE)
            .map(|r| info(r, now))
            .collect(),
        more,
    ))
}

/// One key of `org` by id, whatever its age or state.
pub async fn find(
    warehouse: &Warehouse,
    org: &OrgSlug,
    key_id: &str,
) -> Result<Option<KeyInfo>, WarehouseError> {
    let rows: Vec<KeyListRow> = warehouse
        .query(
            &sql::KEY_BY_ID,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("key_id", key_id),
            ],
        )
        .await?;
    let now = Utc::now().timestamp_micros();
    Ok(rows.into_iter().next().map(|r| info(r, now)))
}

/// Keys of `org` that work at `now` or will until their grace ends.
pub async fn count_live(
    warehouse: &Warehouse,
    org: &OrgSlug,
    now: DateTime<Utc>,
) -> Result<i64, WarehouseError> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let rows: Vec<Count> = warehouse
        .query(
            &sql::KEYS_COUNT_LIVE_BY_ORG,
            &[
                Param::string("org_slug", org.as_str()),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    Ok(rows.first().map_or(0, |c| c.n))
}

/// Sets the revocation time of one key of `org` (never later than an earlier one).
/// `NotFound` when the org has no such key.
pub async fn revoke(
    warehouse: &Warehouse,
    org: &OrgSlug,
    key_id: &str,
    at: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let changed = warehouse
        .execute(
            &sql::KEY_REVOKE,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("key_id", key_id),
                Param::timestamp("revoked_at", at),
            ],
        )
        .await?;
    if changed == 0 && find(warehouse, org, key_id).await?.is_none() {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

pub async fn count(warehouse: &Warehouse, org: &OrgSlug) -> Result<i64, WarehouseError> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let rows: Vec<Count> = warehouse
        .query(
            &sql::KEYS_COUNT_BY_ORG,
            &[Param::string("org_slug", org.as_str())],
        )
        .await?;
    Ok(rows.first().map_or(0, |c| c.n))
}

/// The stored KMS ciphertext of one key (for integrity checks and recovery tooling).
pub async fn stored_ciphertext(
    warehouse: &Warehouse,
    org: &OrgSlug,
    key_id: &str,
) -> Result<Option<Vec<u8>>, ServiceError> {
    #[derive(Deserialize)]
    struct Row {
        encrypted_key_b64: String,
    }
    let rows: Vec<Row> = warehouse
        .query(
            &sql::KEY_ENCRYPTED_BY_ID,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("key_id", key_id),
            ],
        )
        .await?;
    rows.into_iter()
        .next()
        .map(|r| {
            B64.decode(r.encrypted_key_b64)
                .map_err(|e| ServiceError::Warehouse(WarehouseError::Decode(e.to_string())))
        })
        .transpose()
}

/// Collects key uses in memory and writes them with one UPDATE per flush, so authenticated
/// requests cost no BigQuery write.
#[derive(Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<(String, String), DateTime<Utc>>>,
}

impl LastUsed {
    pub fn record(&self, org: &OrgSlug, key_id: &str) {
        self.pending
            .lock()
            .expect("last-used lock")
            .insert((org.as_str().to_string(), key_id.to_string()), Utc::now());
    }

    /// Writes everything pending in one statement; on failure the entries are kept for the next
    /// flush. Returns how many keys were written.
    pub async fn flush(&self, warehouse: &Warehouse) -> Result<usize, WarehouseError> {
        let batch: HashMap<(String, String), DateTime<Utc>> =
            std::mem::take(&mut *self.pending.lock().expect("last-used lock"));
        if batch.is_empty() {
            return Ok(0);
        }
        // Each key with its own last use (never the batch's newest time for all of them).
        let (pairs, used_ats): (Vec<String>, Vec<String>) = batch
            .iter()
            .map(|((org, id), at)| {
                (
                    format!("{org}:{id}"),
                    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                )
            })
            .unzip();
        let result = warehouse
            .execute(
                &sql::KEYS_TOUCH_LAST_USED,
                &[
                    Param::string_array("org_keys", pairs),
                    Param::string_array("used_ats", used_ats),
                ],
            )
            .await;
        match result {
            Ok(_) => Ok(batch.len()),
            Err(e) => {
                let mut pending = self.pending.lock().expect("last-used lock");
                for (k, v) in batch {
                    pending.entry(k).or_insert(v);
                }
                Err(e)
            }
        }
    }
}
