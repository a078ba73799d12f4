//! Envelope encryption of secrets (org API keys, provider credentials) behind one trait.
//!
//! Production uses Cloud KMS ([`cloud::CloudKms`]); development and tests use a local AES-256-GCM
//! key ([`local::LocalKms`]), which settings refuse in production. Every ciphertext is bound to
//! its owner by additional authenticated data ([`Aad`]): a ciphertext copied onto another org's
//! row, or another provider's, fails to decrypt.

pub mod cloud;
pub mod local;

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::settings::{KmsSettings, Settings};

/// Additional authenticated data: what a ciphertext belongs to. Slugs and ids cannot contain `:`,
/// so the encoding is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(String);

impl Aad {
    pub fn org_api_key(org_slug: &str, key_id: &str) -> Self {
        Self(format!("quarry:v1:org_api_key:{org_slug}:{key_id}"))
    }

    pub fn integration_credential(org_slug: &str, provider: &str, credential_id: &str) -> Self {
        Self(format!(
            "quarry:v1:integration_credential:{org_slug}:{provider}:{credential_id}"
        ))
    }

    /// A notification channel's URL (`what` = `url`) or signing secret (`secret`).
    pub fn notification_channel(org_slug: &str, channel_id: &str, what: &str) -> Self {
        Self(format!(
            "quarry:v1:notification_channel:{org_slug}:{channel_id}:{what}"
        ))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The KMS could not be reached or did not answer in time.
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// A CRC32C integrity field did not match: the request or response was corrupted.
    #[error("KMS integrity check failed: {0}")]
    Integrity(&'static str),
    /// Wrong key, wrong AAD, or a tampered ciphertext.
    #[error("ciphertext does not decrypt with this key and AAD")]
    Decrypt,
    #[error("KMS rejected the request: {0}")]
    Rejected(String),
    #[error("KMS configuration: {0}")]
    Config(String),
}

#[async_trait::async_trait]
pub trait Kms: Send + Sync + 'static {
    async fn encrypt(&self, plaintext: &[u8], aad: &Aad) -> Result<Vec<u8>, KmsError>;
    /// The plaintext comes back in a buffer that is wiped when dropped.
    async fn decrypt(&self, ciphertext: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

pub type SharedKms = Arc<dyn Kms>;

/// The KMS the settings name: Cloud KMS when `KMS_KEY_NAME` is set, otherwise the local key.
pub async fn from_settings(settings: &Settings) -> Result<SharedKms, KmsError> {
    match &settings.kms {
        KmsSettings::Cloud {
            key_name,
            emulator: None,
        } => Ok(Arc::new(
            cloud::CloudKms::connect_google(key_name.clone(), settings.timeouts.kms).await?,
        )),
        KmsSettings::Cloud {
            key_name,
            emulator: Some(host),
        } => Ok(Arc::new(
            cloud::CloudKms::connect(
                key_name.clone(),
                google_cloud_gax::conn::Environment::Emulator(host.clone()),
                settings.timeouts.kms,
            )
            .await?,
        )),
        KmsSettings::Local { key } => {
            Ok(Arc::new(local::LocalKms::new(key, settings.environment)?))
        }
    }
}

pub(crate) fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(::crc32c::crc32c(bytes))
}
