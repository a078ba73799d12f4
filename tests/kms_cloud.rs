//! The Cloud KMS client code against a local gRPC double of `KeyManagementService`
//! (tests/common/kms_double.rs).

#[path = "common/kms_double.rs"]
mod kms_double;

use std::sync::atomic::Ordering;
use std::time::Duration;

use google_cloud_gax::conn::Environment;
use kms_double::{Double, KEY_NAME, crc, start_double};
use quarry::kms::cloud::CloudKms;
use quarry::kms::{Aad, Kms, KmsError};

async fn client(double: &Double, key_name: &str) -> CloudKms {
    CloudKms::connect(
        key_name.to_string(),
        Environment::Emulator(double.addr.to_string()),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_round_trip_sends_the_key_name_the_aad_and_both_checksums() {
    let double = start_double().await;
    let kms = client(&double, KEY_NAME).await;
    let aad = Aad::org_api_key("acme", "key-1");
    let sealed = kms.encrypt(b"qk_secret", &aad).await.unwrap();
    assert!(!sealed.windows(9).any(|w| w == b"qk_secret"));
    let opened = kms.decrypt(&sealed, &aad).await.unwrap();
    assert_eq!(opened.as_slice(), b"qk_secret");

    let seen = double.state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "Encrypt");
    assert_eq!(seen[1].method, "Decrypt");
    for call in &seen {
        assert_eq!(call.name, KEY_NAME);
        assert_eq!(call.aad, aad.as_bytes());
        assert_eq!(call.aad_crc32c, Some(crc(aad.as_bytes())));
    }
    assert_eq!(seen[0].payload_crc32c, Some(crc(b"qk_secret")));
    assert_eq!(seen[1].payload_crc32c, Some(crc(&sealed)));
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_org_fails_to_decrypt() {
    let double = start_double().await;
    let kms = client(&double, KEY_NAME).await;
    let sealed = kms
        .encrypt(b"secret", &Aad::org_api_key("acme", "key-1"))
        .await
        .unwrap();
    let err = kms
        .decrypt(&sealed, &Aad::org_api_key("globex", "key-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Decrypt), "{err:?}");
    let err = kms
        .decrypt(
            &sealed,
            &Aad::integration_credential("acme", "openai", "key-1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Decrypt), "{err:?}");
}

#[tokio::test]
async fn a_corrupted_ciphertext_checksum_is_refused() {
    let double = start_double().await;
    let kms = client(&double, KEY_NAME).await;
    double
        .state
        .faults
        .bad_ciphertext_crc
        .store(true, Ordering::SeqCst);
    let err = kms
        .encrypt(b"secret", &Aad::org_api_key("acme", "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Integrity(_)), "{err:?}");
}

#[tokio::test]
async fn an_unverified_plaintext_checksum_is_refused() {
    let double = start_double().await;
    let kms = client(&double, KEY_NAME).await;
    double
        .state
        .faults
        .unverified_plaintext
        .store(true, Ordering::SeqCst);
    let err = kms
        .encrypt(b"secret", &Aad::org_api_key("acme", "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Integrity(_)), "{err:?}");
}

#[tokio::test]
async fn a_corrupted_plaintext_checksum_on_decrypt_is_refused() {
    let double = start_double().await;
    let kms = client(&double, KEY_NAME).await;
    let aad = Aad::org_api_key("acme", "k");
    let sealed = kms.encrypt(b"secret", &aad).await.unwrap();
    double
        .state
        .faults
        .bad_plaintext_crc
        .store(true, Ordering::SeqCst);
    let err = kms.decrypt(&sealed, &aad).await.unwrap_err();
    assert!(matches!(err, KmsError::Integrity(_)), "{err:?}");
}

#[tokio::test]
async fn a_wrong_key_name_is_rejected_by_the_service() {
    let double = start_double().await;
    let kms = client(
        &double,
        "projects/p/locations/global/keyRings/r/cryptoKeys/other",
    )
    .await;
    let err = kms
        .encrypt(b"secret", &Aad::org_api_key("acme", "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Rejected(_)), "{err:?}");
}
