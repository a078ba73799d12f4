//! A local gRPC double of Cloud KMS `KeyManagementService` (no local equivalent exists): it
//! speaks the real protocol with the crate's own messages, seals with AES-256-GCM under its own
//! key, and checks what it receives (key name, AAD, both CRC32C fields). Fault switches make it
//! answer with bad integrity fields or as unavailable. Shared by the KMS and API test crates.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use google_cloud_kms::grpc::kms::v1::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse,
};
use tonic::codec::ProstCodec;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

pub const KEY_NAME: &str =
    "projects/quarry-test/locations/global/keyRings/quarry/cryptoKeys/secrets";

pub fn crc(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: &'static str,
    pub name: String,
    pub aad: Vec<u8>,
    pub payload_crc32c: Option<i64>,
    pub aad_crc32c: Option<i64>,
}

#[derive(Default)]
pub struct Faults {
    pub bad_ciphertext_crc: AtomicBool,
    pub unverified_plaintext: AtomicBool,
    pub bad_plaintext_crc: AtomicBool,
    /// Decrypt answers UNAVAILABLE.
    pub decrypt_unavailable: AtomicBool,
}

pub struct DoubleState {
    cipher: Aes256Gcm,
    pub seen: Mutex<Vec<Seen>>,
    pub faults: Faults,
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
            if state.faults.decrypt_unavailable.load(Ordering::SeqCst) {
                return Err(Status::unavailable("the KMS double is down"));
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

pub struct Double {
    pub state: Arc<DoubleState>,
    pub addr: SocketAddr,
}

pub async fn start_double() -> Double {
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
