//! Cloud KMS over gRPC (`google-cloud-kms`). CRC32C integrity fields are sent with every request
//! and every response's are verified; a mismatch is an error, never silently accepted.

use std::sync::Arc;
use std::time::Duration;

use google_cloud_gax::conn::{ConnectionOptions, Environment};
use google_cloud_kms::grpc::apiv1::conn_pool::{ConnectionManager, KMS};
use google_cloud_kms::grpc::apiv1::kms_client::Client;
use google_cloud_kms::grpc::kms::v1::{DecryptRequest, EncryptRequest};
use zeroize::Zeroizing;

use super::{Aad, Kms, KmsError, crc32c};

pub struct CloudKms {
    client: Client,
    key_name: String,
    timeout: Duration,
}

impl CloudKms {
    /// Connects to Google with Application Default Credentials.
    pub async fn connect_google(key_name: String, timeout: Duration) -> Result<Self, KmsError> {
        use google_cloud_kms::client::google_cloud_auth::project::Config;
        use google_cloud_kms::client::google_cloud_auth::token::DefaultTokenSourceProvider;
        use google_cloud_kms::grpc::apiv1::conn_pool::SCOPES;
        let tokens = DefaultTokenSourceProvider::new(Config::default().with_scopes(&SCOPES))
            .await
            .map_err(|e| KmsError::Config(format!("credentials: {e}")))?;
        Self::connect(
            key_name,
            Environment::GoogleCloud(Box::new(tokens)),
            timeout,
        )
        .await
    }

    /// Connects through `environment`: Google, or `Environment::Emulator("host:port")` (a plain
    /// gRPC endpoint without credentials, which tests use for a local KMS double).
    pub async fn connect(
        key_name: String,
        environment: Environment,
        timeout: Duration,
    ) -> Result<Self, KmsError> {
        let options = ConnectionOptions {
            timeout: Some(timeout),
            connect_timeout: Some(timeout),
        };
        let manager = ConnectionManager::new(4, KMS, &environment, &options)
            .await
            .map_err(|e| KmsError::Unavailable(e.to_string()))?;
        Ok(Self {
            client: Client::new(Arc::new(manager)),
            key_name,
            timeout,
        })
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, google_cloud_gax::grpc::Status>>,
    ) -> Result<T, KmsError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(KmsError::Unavailable("timed out".into())),
            Ok(Err(status)) => Err(match status.code() {
                google_cloud_gax::grpc::Code::InvalidArgument => KmsError::Decrypt,
                google_cloud_gax::grpc::Code::Unavailable
                | google_cloud_gax::grpc::Code::DeadlineExceeded
                | google_cloud_gax::grpc::Code::ResourceExhausted => {
                    KmsError::Unavailable(status.message().to_string())
                }
                _ => KmsError::Rejected(format!("{:?}: {}", status.code(), status.message())),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

#[async_trait::async_trait]
impl Kms for CloudKms {
    async fn encrypt(&self, plaintext: &[u8], aad: &Aad) -> Result<Vec<u8>, KmsError> {
        let request = EncryptRequest {
            name: self.key_name.clone(),
            plaintext: plaintext.to_vec(),
            additional_authenticated_data: aad.as_bytes().to_vec(),
            plaintext_crc32c: Some(crc32c(plaintext)),
            additional_authenticated_data_crc32c: Some(crc32c(aad.as_bytes())),
        };
        let response = self.bounded(self.client.encrypt(request, None)).await?;
        if !response.verified_plaintext_crc32c {
            return Err(KmsError::Integrity("plaintext CRC32C not verified by KMS"));
        }
        if !response.verified_additional_authenticated_data_crc32c {
            return Err(KmsError::Integrity("AAD CRC32C not verified by KMS"));
        }
        if response.ciphertext_crc32c != Some(crc32c(&response.ciphertext)) {
            return Err(KmsError::Integrity("ciphertext CRC32C mismatch"));
        }
        if !response.name.starts_with(&self.key_name) {
            return Err(KmsError::Integrity("response names another key"));
        }
        Ok(response.ciphertext)
    }

    async fn decrypt(&self, ciphertext: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let request = DecryptRequest {
            name: self.key_name.clone(),
            ciphertext: ciphertext.to_vec(),
            additional_authenticated_data: aad.as_bytes().to_vec(),
            ciphertext_crc32c: Some(crc32c(ciphertext)),
            additional_authenticated_data_crc32c: Some(crc32c(aad.as_bytes())),
        };
        let response = self.bounded(self.client.decrypt(request, None)).await?;
        let plaintext = Zeroizing::new(response.plaintext);
        if response.plaintext_crc32c != Some(crc32c(&plaintext)) {
            return Err(KmsError::Integrity("plaintext CRC32C mismatch"));
        }
        Ok(plaintext)
    }
}
