//! Authentication as extractors, in the style of meilisearch's `GuardedData`: a handler states its
//! policy in its signature (`_: Guarded<Root>`), so a route cannot exist without declaring who
//! may call it.

use std::marker::PhantomData;
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::settings::Settings;

pub const ROOT_KEY_HEADER: &str = "x-ca-root-key";

/// What the authenticators need, built once from settings.
pub struct AuthConfig {
    /// SHA-256 of the root key; `None` when no root key is configured (root routes then refuse
    /// every request).
    root_key_digest: Option<[u8; 32]>,
}

impl AuthConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            root_key_digest: settings
                .root_api_key
                .as_ref()
                .map(|k| digest(k.expose().as_bytes())),
        }
    }

    /// Constant-time: both sides are hashed to 32 bytes first, so neither the length nor the
    /// position of the first difference shows in timing.
    pub fn is_root_key(&self, presented: &[u8]) -> bool {
        match &self.root_key_digest {
            Some(expected) => bool::from(digest(presented).ct_eq(expected)),
            None => false,
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// An authorization policy: decides from the request who the caller is.
pub trait Policy {
    type Principal;
    fn authenticate(req: &HttpRequest) -> Result<Self::Principal, ApiError>;
}

/// The admin, holding `X-CA-Root-Key`.
pub struct Root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPrincipal;

impl Policy for Root {
    type Principal = RootPrincipal;

    fn authenticate(req: &HttpRequest) -> Result<RootPrincipal, ApiError> {
        let config = req
            .app_data::<web::Data<AuthConfig>>()
            .ok_or_else(|| ApiError::internal("AuthConfig missing from app data"))?;
        let presented = req
            .headers()
            .get(ROOT_KEY_HEADER)
            .ok_or(ApiError::Unauthorized)?;
        if config.is_root_key(presented.as_bytes()) {
            Ok(RootPrincipal)
        } else {
            tracing::warn!("root key rejected");
            Err(ApiError::Unauthorized)
        }
    }
}

/// A request that passed policy `P`.
pub struct Guarded<P: Policy> {
    principal: P::Principal,
    _policy: PhantomData<P>,
}

impl<P: Policy> Guarded<P> {
    pub fn principal(&self) -> &P::Principal {
        &self.principal
    }
}

impl<P: Policy> Deref for Guarded<P> {
    type Target = P::Principal;
    fn deref(&self) -> &P::Principal {
        &self.principal
    }
}

impl<P: Policy> FromRequest for Guarded<P> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(P::authenticate(req).map(|principal| Guarded {
            principal,
            _policy: PhantomData,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(root: &'static str) -> AuthConfig {
        let vars: HashMap<&str, &str> = [("CA_ROOT_API_KEY", root)].into_iter().collect();
        AuthConfig::from_settings(&Settings::from_source(&vars).unwrap())
    }

    #[test]
    fn only_the_exact_root_key_matches() {
        let c = config("root-key-0123456789abcdef0123456789");
        assert!(c.is_root_key(b"root-key-0123456789abcdef0123456789"));
        assert!(!c.is_root_key(b"root-key-0123456789abcdef012345678"));
        assert!(!c.is_root_key(b"root-key-0123456789abcdef01234567890"));
        assert!(!c.is_root_key(b""));
    }

    #[test]
    fn without_a_configured_root_key_nothing_matches() {
        let vars: HashMap<&str, &str> = HashMap::new();
        let c = AuthConfig::from_settings(&Settings::from_source(&vars).unwrap());
        assert!(!c.is_root_key(b""));
        assert!(!c.is_root_key(b"anything"));
    }
}
