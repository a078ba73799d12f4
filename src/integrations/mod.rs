//! Provider credentials: checked for format, tested live against the provider, sealed with KMS
//! (AAD bound to org, provider and credential id) and appended; a replaced credential is
//! deactivated, never overwritten. Plaintext lives only in a wiping buffer for the call that
//! needs it: setup, validate, and the pipeline step that extracts with it.

pub mod registry;
pub mod service_account;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::domain::{OrgSlug, Plan};
use crate::kms::{Aad, Kms};
use crate::service_error::ServiceError;
use crate::warehouse::from_micros;
use crate::warehouse::{Param, Warehouse, WarehouseError, sql};

pub use registry::{AuthStyle, Authorization, Provider, Registry, RegistryError};

/// Largest credential accepted.
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

/// Providers an org may connect, by plan.
pub fn max_providers(plan: Plan) -> i64 {
    match plan {
        Plan::Starter => 2,
        Plan::Professional => 5,
        Plan::Scale | Plan::Enterprise => 10,
    }
}

/// The pooled HTTP client for provider calls: 30 s per request, bounded connection pool.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(16)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client builds")
}

/// A credential as the API shows it: never the secret, only its last 4 characters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CredentialView {
    pub credential_id: String,
    pub provider: String,
    pub credential_name: Option<String>,
    pub fingerprint: Option<String>,
    pub metadata: Value,
    pub validation_status: Option<String>,
    pub last_error: Option<String>,
    pub validated_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Row {
    credential_id: String,
    provider: String,
    credential_name: Option<String>,
    fingerprint: Option<String>,
    metadata: Option<String>,
    validation_status: Option<String>,
    last_error: Option<String>,
    validated_at_micros: Option<i64>,
    created_at_micros: Option<i64>,
    #[serde(default)]
    encrypted_credential_b64: Option<String>,
}

impl Row {
    fn view(&self) -> CredentialView {
        CredentialView {
            credential_id: self.credential_id.clone(),
            provider: self.provider.clone(),
            credential_name: self.credential_name.clone(),
            fingerprint: self.fingerprint.clone(),
            metadata: self
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or(Value::Null),
            validation_status: self.validation_status.clone(),
            last_error: self.last_error.clone(),
            validated_at: from_micros(self.validated_at_micros),
            created_at: from_micros(self.created_at_micros),
        }
    }
}

/// The outcome of a live check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub valid: bool,
    /// Sanitized: the provider's status or a transport class, never a body or a URL.
    pub error: Option<String>,
}

/// The header that authenticates requests to `provider` with `credential` (for a
/// service-account key, after exchanging it for an access token). Errors are sanitized.
pub async fn authorize(
    http: &reqwest::Client,
    provider: &Provider,
    credential: &str,
) -> Result<Authorization, String> {
    Ok(match &provider.auth {
        AuthStyle::Bearer => Authorization {
            header: "authorization".into(),
            value: Zeroizing::new(format!("Bearer {credential}")),
        },
        AuthStyle::Header { header } => Authorization {
            header: header.clone(),
            value: Zeroizing::new(credential.to_string()),
        },
        AuthStyle::ServiceAccountJson { token_url, scopes } => {
            let account = service_account::parse(credential).map_err(str::to_string)?;
            let token = service_account::access_token(http, &account, token_url, scopes).await?;
            Authorization {
                header: "authorization".into(),
                value: Zeroizing::new(format!("Bearer {}", token.as_str())),
            }
        }
    })
}

/// Whether `credential` has the provider's format.
pub fn well_formed(provider: &Provider, credential: &str) -> bool {
    credential.len() <= MAX_CREDENTIAL_BYTES
        && match (&provider.auth, &provider.pattern) {
            (AuthStyle::ServiceAccountJson { .. }, _) => service_account::parse(credential).is_ok(),
            (_, Some(pattern)) => pattern.is_match(credential),
            (_, None) => false,
        }
}

/// Calls the provider's validation endpoint with `credential`.
pub async fn check_live(
    http: &reqwest::Client,
    provider: &Provider,
    credential: &str,
) -> Validation {
    let auth = match authorize(http, provider, credential).await {
        Ok(a) => a,
        Err(error) => {
            return Validation {
                valid: false,
                error: Some(error),
            };
        }
    };
    let response = provider
        .request(
            http,
            provider.validate_method.clone(),
            &provider.validate_path,
            &auth,
        )
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Validation {
            valid: true,
            error: None,
        },
        Ok(r) => Validation {
            valid: false,
            error: Some(match r.status().as_u16() {
                401 | 403 => format!(
                    "provider rejected the credential (HTTP {})",
                    r.status().as_u16()
                ),
                s => format!("provider answered HTTP {s}"),
            }),
        },
        Err(e) => Validation {
            valid: false,
            error: Some(if e.is_timeout() {
                "provider did not answer in time".into()
            } else if e.is_connect() {
                "provider unreachable".into()
            } else {
                "provider request failed".into()
            }),
        },
    }
}

/// What identifies a credential on screen: a service account's email, or the last 4 characters.
fn fingerprint(provider: &Provider, credential: &str) -> String {
    if matches!(provider.auth, AuthStyle::ServiceAccountJson { .. }) {
        if let Ok(account) = service_account::parse(credential) {
            return account.client_email;
        }
    }
    let chars: Vec<char> = credential.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("…{tail}")
}

pub struct SetupRequest {
    pub credential: Zeroizing<String>,
    pub credential_name: Option<String>,
    pub metadata: Value,
}

/// Checks, tests, seals and stores a credential; deactivates the one it replaces.
pub async fn setup(
    warehouse: &Warehouse,
    kms: &dyn Kms,
    http: &reqwest::Client,
    provider: &Provider,
    org: &OrgSlug,
    plan: Plan,
    request: SetupRequest,
) -> Result<CredentialView, ServiceError> {
    let credential = request.credential;
    if !well_formed(provider, &credential) {
        return Err(ServiceError::Invalid(format!(
            "credential does not have the {} format",
            provider.name
        )));
    }
    if other_providers(warehouse, org, &provider.name).await? >= max_providers(plan) {
        return Err(plan_limit(plan));
    }
    let checked = check_live(http, provider, &credential).await;
    let credential_id = uuid::Uuid::new_v4().to_string();
    let sealed = kms
        .encrypt(
            credential.as_bytes(),
            &Aad::integration_credential(org.as_str(), &provider.name, &credential_id),
        )
        .await?;
    let now = Utc::now();
    let status = if checked.valid { "VALID" } else { "INVALID" };
    warehouse
        .execute(
            &sql::CREDENTIAL_INSERT,
            &[
                Param::string("credential_id", credential_id.clone()),
                Param::string("org_slug", org.as_str()),
                Param::string("provider", provider.name.clone()),
                Param::opt_string("credential_name", request.credential_name.clone()),
                Param::string("encrypted_credential_b64", B64.encode(&sealed)),
                Param::string("fingerprint", fingerprint(provider, &credential)),
                Param::string("metadata", request.metadata.to_string()),
                Param::string("validation_status", status),
                Param::opt_string("last_error", checked.error.clone()),
                Param::timestamp("validated_at", now),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    drop(credential);
    // Setups racing for other providers may each have passed the check above: counted again
    // with this credential in, the setup that finds the limit exceeded withdraws its own (so
    // racers may all be refused, and the org never holds more providers than its plan).
    if other_providers(warehouse, org, &provider.name).await? >= max_providers(plan) {
        warehouse
            .execute(
                &sql::CREDENTIAL_DEACTIVATE_ONE,
                &[
                    Param::string("org_slug", org.as_str()),
                    Param::string("credential_id", credential_id.clone()),
                    Param::timestamp("now", Utc::now()),
                ],
            )
            .await?;
        return Err(plan_limit(plan));
    }
    deactivate(warehouse, org, &provider.name, &credential_id, now).await?;
    active(warehouse, org, &provider.name)
        .await?
        .map(|r| r.view())
        .ok_or_else(|| {
            ServiceError::Warehouse(WarehouseError::Decode("stored credential not found".into()))
        })
}

fn plan_limit(plan: Plan) -> ServiceError {
    ServiceError::PlanLimit(format!(
        "plan {} allows {} providers",
        plan.as_str(),
        max_providers(plan)
    ))
}

/// How many providers other than `provider` the org has active credentials for.
async fn other_providers(
    warehouse: &Warehouse,
    org: &OrgSlug,
    provider: &str,
) -> Result<i64, ServiceError> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let others: Vec<Count> = warehouse
        .query(
            &sql::CREDENTIALS_COUNT_OTHER_PROVIDERS,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("provider", provider.to_string()),
            ],
        )
        .await?;
    Ok(others.first().map_or(0, |c| c.n))
}

/// Deactivates the provider's active credentials created before `keep` (created at
/// `keep_created_at`): the newest of racing setups stays active.
async fn deactivate(
    warehouse: &Warehouse,
    org: &OrgSlug,
    provider: &str,
    keep: &str,
    keep_created_at: chrono::DateTime<Utc>,
) -> Result<u64, ServiceError> {
    Ok(warehouse
        .execute(
            &sql::CREDENTIALS_DEACTIVATE,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("provider", provider.to_string()),
                Param::string("keep_credential_id", keep.to_string()),
                Param::timestamp("keep_created_at", keep_created_at),
                Param::timestamp("now", Utc::now()),
            ],
        )
        .await?)
}

async fn active(
    warehouse: &Warehouse,
    org: &OrgSlug,
    provider: &str,
) -> Result<Option<Row>, ServiceError> {
    let rows: Vec<Row> = warehouse
        .query(
            &sql::CREDENTIAL_BY_PROVIDER,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("provider", provider.to_string()),
            ],
        )
        .await?;
    Ok(rows.into_iter().next())
}

pub async fn list(
    warehouse: &Warehouse,
    org: &OrgSlug,
) -> Result<Vec<CredentialView>, ServiceError> {
    let rows: Vec<Row> = warehouse
        .query(
            &sql::CREDENTIALS_BY_ORG,
            &[Param::string("org_slug", org.as_str())],
        )
        .await?;
    Ok(rows.iter().map(Row::view).collect())
}

pub async fn get(
    warehouse: &Warehouse,
    org: &OrgSlug,
    provider: &str,
) -> Result<Option<CredentialView>, ServiceError> {
    Ok(active(warehouse, org, provider).await?.map(|r| r.view()))
}

/// Deactivates the provider's credential; `NotFound` when there is none.
pub async fn remove(
    warehouse: &Warehouse,
    org: &OrgSlug,
    provider: &str,
) -> Result<(), ServiceError> {
    let everything = Utc::now() + chrono::Duration::days(1);
    if deactivate(warehouse, org, provider, "", everything).await? == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

/// Decrypts the org's active credential for `provider`, for one use. The AAD binds it to this
/// org, provider and credential id: a ciphertext copied from another row fails here.
pub async fn open(
    warehouse: &Warehouse,
    kms: &dyn Kms,
    org: &OrgSlug,
    provider: &str,
) -> Result<(String, Zeroizing<String>), ServiceError> {
    let row = active(warehouse, org, provider)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let sealed = B64
        .decode(row.encrypted_credential_b64.as_deref().unwrap_or_default())
        .map_err(|e| ServiceError::Warehouse(WarehouseError::Decode(e.to_string())))?;
    let plain = kms
        .decrypt(
            &sealed,
            &Aad::integration_credential(org.as_str(), provider, &row.credential_id),
        )
        .await?;
    let text = String::from_utf8(plain.to_vec())
        .map_err(|_| ServiceError::Invalid("stored credential is not UTF-8".into()))?;
    Ok((row.credential_id, Zeroizing::new(text)))
}

/// Re-decrypts and re-tests the active credential, recording the outcome.
pub async fn revalidate(
    warehouse: &Warehouse,
    kms: &dyn Kms,
    http: &reqwest::Client,
    provider: &Provider,
    org: &OrgSlug,
) -> Result<CredentialView, ServiceError> {
    let (credential_id, credential) = open(warehouse, kms, org, &provider.name).await?;
    let checked = check_live(http, provider, &credential).await;
    drop(credential);
    warehouse
        .execute(
            &sql::CREDENTIAL_SET_VALIDATION,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("credential_id", credential_id),
                Param::string(
                    "validation_status",
                    if checked.valid { "VALID" } else { "INVALID" },
                ),
                Param::opt_string("last_error", checked.error),
                Param::timestamp("now", Utc::now()),
            ],
        )
        .await?;
    get(warehouse, org, &provider.name)
        .await?
        .ok_or(ServiceError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_shows_only_the_last_four_characters() {
        let provider = Provider {
            name: "p".into(),
            display_name: "P".into(),
            base_url: "https://p.example.com".into(),
            auth: AuthStyle::Bearer,
            pattern: None,
            validate_method: reqwest::Method::GET,
            validate_path: "/".into(),
            extra_headers: Default::default(),
        };
        assert_eq!(fingerprint(&provider, "sk-abcdefghijklmnop1234"), "…1234");
        assert_eq!(fingerprint(&provider, "ab"), "…ab");
    }
}
