//! AES-256-GCM with a local key, for development and tests only. Refused in production.
//!
//! Ciphertext layout: `QLK1` | 96-bit random nonce | AES-GCM ciphertext and tag.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

use super::{Aad, Kms, KmsError};
use crate::settings::Environment;

const MAGIC: &[u8; 4] = b"QLK1";
const NONCE_LEN: usize = 12;

pub struct LocalKms {
    cipher: Aes256Gcm,
}

impl LocalKms {
    pub fn new(key: &[u8; 32], environment: Environment) -> Result<Self, KmsError> {
        if environment == Environment::Production {
            return Err(KmsError::Config(
                "the local KMS is refused in production; set KMS_KEY_NAME".into(),
            ));
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        })
    }
}

#[async_trait::async_trait]
impl Kms for LocalKms {
    async fn encrypt(&self, plaintext: &[u8], aad: &Aad) -> Result<Vec<u8>, KmsError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KmsError::Rejected("local encryption failed".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    async fn decrypt(&self, ciphertext: &[u8], aad: &Aad) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let body = ciphertext.strip_prefix(MAGIC).ok_or(KmsError::Decrypt)?;
        if body.len() < NONCE_LEN {
            return Err(KmsError::Decrypt);
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KmsError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kms() -> LocalKms {
        LocalKms::new(&[7u8; 32], Environment::Development).unwrap()
    }

    #[tokio::test]
    async fn a_ciphertext_decrypts_with_its_own_aad() {
        let k = kms();
        let aad = Aad::org_api_key("acme", "key1");
        let sealed = k.encrypt(b"secret", &aad).await.unwrap();
        assert_eq!(
            k.decrypt(&sealed, &aad).await.unwrap().as_slice(),
            b"secret"
        );
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[tokio::test]
    async fn each_encryption_uses_a_fresh_nonce() {
        let k = kms();
        let aad = Aad::org_api_key("acme", "key1");
        let a = k.encrypt(b"secret", &aad).await.unwrap();
        let b = k.encrypt(b"secret", &aad).await.unwrap();
        assert_ne!(a, b);
        assert_ne!(a[4..16], b[4..16]);
    }

    #[tokio::test]
    async fn a_ciphertext_moved_to_another_org_fails_to_decrypt() {
        let k = kms();
        let sealed = k
            .encrypt(b"secret", &Aad::org_api_key("acme", "key1"))
            .await
            .unwrap();
        let err = k
            .decrypt(&sealed, &Aad::org_api_key("globex", "key1"))
            .await
            .unwrap_err();
        assert!(matches!(err, KmsError::Decrypt));
        let other_purpose = Aad::integration_credential("acme", "openai", "key1");
        assert!(k.decrypt(&sealed, &other_purpose).await.is_err());
    }

    #[tokio::test]
    async fn a_tampered_or_truncated_ciphertext_fails_to_decrypt() {
        let k = kms();
        let aad = Aad::org_api_key("acme", "key1");
        let mut sealed = k.encrypt(b"secret", &aad).await.unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            k.decrypt(&sealed, &aad).await,
            Err(KmsError::Decrypt)
        ));
        assert!(matches!(
            k.decrypt(b"QLK1short", &aad).await,
            Err(KmsError::Decrypt)
        ));
        assert!(matches!(k.decrypt(b"", &aad).await, Err(KmsError::Decrypt)));
    }

    #[tokio::test]
    async fn another_key_cannot_decrypt() {
        let aad = Aad::org_api_key("acme", "key1");
        let sealed = kms().encrypt(b"secret", &aad).await.unwrap();
        let other = LocalKms::new(&[8u8; 32], Environment::Development).unwrap();
        assert!(other.decrypt(&sealed, &aad).await.is_err());
    }

    #[test]
    fn the_local_kms_is_refused_in_production() {
        assert!(matches!(
            LocalKms::new(&[7u8; 32], Environment::Production),
            Err(KmsError::Config(_))
        ));
    }
}
