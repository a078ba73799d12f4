//! The Cloud KMS client code against a local gRPC double of `KeyManagementService`.
//!
//! Cloud KMS has no local equivalent, so this double stands in for it: it speaks the real gRPC
//! protocol (the crate's own generated messages over tonic), seals with AES-256-GCM under its
//! own key, and checks what it receives: the key name, the AAD, and both CRC32C fields. Fault
//! switches make it answer with bad integrity fields, which the client must refuse.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use google_cloud_gax::conn::Environment;
use google_cloud_kms::grpc::kms::v1::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse,
};
use quarry::kms::cloud::CloudKms;
use quarry::kms::{Aad, Kms, KmsError};
use tonic::codec::ProstCodec;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

const KEY_NAME: &str = "projects/quarry-test/locations/global/keyRings/quarry/cryptoKeys/secrets";

fn crc(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

#[derive(Debug, Clone)]
struct Seen {
    method: &'static str,
    name: String,
    aad: Vec<u8>,
    payload_crc32c: Option<i64>,
    aad_crc32c: Option<i64>,
}

#[derive(Default)]
struct Faults {
    bad_ciphertext_crc: AtomicBool,
    unverified_plaintext: AtomicBool,
    bad_plaintext_crc: AtomicBool,
}

struct DoubleState {
    cipher: Aes256Gcm,
    seen: Mutex<Vec<Seen>>,
    faults: Faults,
}

#[derive(Clone)]
struct KmsDouble(Arc<DoubleState>);

impl NamedService for KmsDouble {
    const NAME: &'static str = "google.cloud.kms.v1.KeyManagementService";
}

impl<B> Service<http::Request<B>> for KmsDouble
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.0.clone();
        match req.uri().path() {
            "/google.cloud.kms.v1.KeyManagementService/Encrypt" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<EncryptResponse, EncryptRequest>::default());
                Ok(grpc.unary(EncryptMethod(state), req).await)
            }),
            "/google.cloud.kms.v1.KeyManagementService/Decrypt" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<DecryptResponse, DecryptRequest>::default());
                Ok(grpc.unary(DecryptMethod(state), req).await)
            }),
            _ => {
                Box::pin(
                    async move { Ok(Status::unimplemented("not part of the double").into_http()) },
                )
            }
        }
    }
}

struct EncryptMethod(Arc<DoubleState>);

impl UnaryService<EncryptRequest> for EncryptMethod {
    type Response = EncryptResponse;
    type Future = BoxFuture<Response<EncryptResponse>, Status>;

    fn call(&mut self, request: Request<EncryptRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let r = request.into_inner();
            state.seen.lock().unwrap().push(Seen {
                method: "Encrypt",
                name: r.name.clone(),
                aad: r.additional_authenticated_data.clone(),
                payload_crc32c: r.plaintext_crc32c,
                aad_crc32c: r.additional_authenticated_data_crc32c,
            });
            if r.name != KEY_NAME {
                return Err(Status::not_found("no such key"));
            }
            if r.plaintext_crc32c != Some(crc(&r.plaintext))
                || r.additional_authenticated_data_crc32c
                    != Some(crc(&r.additional_authenticated_data))
            {
                return Err(Status::invalid_argument("checksum mismatch"));
            }
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let mut ciphertext = nonce.to_vec();
            ciphertext.extend(
                state
                    .cipher
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: &r.plaintext,
                            aad: &r.additional_authenticated_data,
                        },
                    )
                    .map_err(|_| Status::internal("seal"))?,
            );
            let mut ciphertext_crc32c = crc(&ciphertext);
            if state.faults.bad_ciphertext_crc.load(Ordering::SeqCst) {
                ciphertext_crc32c ^= 1;
            }
            Ok(Response::new(EncryptResponse {
                name: format!("{KEY_NAME}/cryptoKeyVersions/1"),
                ciphertext,
                ciphertext_crc32c: Some(ciphertext_crc32c),
                verified_plaintext_crc32c: !state
                    .faults
                    .unverified_plaintext
                    .load(Ordering::SeqCst),
                verified_additional_authenticated_data_crc32c: true,
                protection_level: 1,
            }))
        })
    }
}

struct DecryptMethod(Arc<DoubleState>);

impl UnaryService<DecryptRequest> for DecryptMethod {
    type Response = DecryptResponse;
    type Future = BoxFuture<Response<DecryptResponse>, Status>;

    fn call(&mut self, request: Request<DecryptRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let r = request.into_inner();
            state.seen.lock().unwrap().push(Seen {
                method: "Decrypt",
                name: r.name.clone(),
                aad: r.additional_authenticated_data.clone(),
                payload_crc32c: r.ciphertext_crc32c,
                aad_crc32c: r.additional_authenticated_data_crc32c,
            });
            if r.name != KEY_NAME {
                return Err(Status::not_found("no such key"));
            }
            if r.ciphertext_crc32c != Some(crc(&r.ciphertext))
                || r.additional_authenticated_data_crc32c
                    != Some(crc(&r.additional_authenticated_data))
            {
                return Err(Status::invalid_argument("checksum mismatch"));
            }
            if r.ciphertext.len() < 12 {
                return Err(Status::invalid_argument("ciphertext too short"));
            }
            let (nonce, sealed) = r.ciphertext.split_at(12);
            let plaintext = state
                .cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &r.additional_authenticated_data,
                    },
                )
                .map_err(|_| Status::invalid_argument("Decryption failed"))?;
            let mut plaintext_crc32c = crc(&plaintext);
            if state.faults.bad_plaintext_crc.load(Ordering::SeqCst) {
                plaintext_crc32c ^= 1;
            }
            Ok(Response::new(DecryptResponse {
                plaintext,
                plaintext_crc32c: Some(plaintext_crc32c),
                used_primary: true,
                protection_level: 1,
            }))
        })
    }
}

struct Double {
    state: Arc<DoubleState>,
    addr: SocketAddr,
}

async fn start_double() -> Double {
    let state = Arc::new(DoubleState {
        cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[42u8; 32])),
        seen: Mutex::new(Vec::new()),
        faults: Faults::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming =
        tonic::transport::server::TcpIncoming::from_listener(listener, true, None).unwrap();
    let service = KmsDouble(state.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    Double { state, addr }
}

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
