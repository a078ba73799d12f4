//! Authentication and authorization as extractors, in the style of meilisearch's `GuardedData`:
//! a handler states its policy in its signature (`_: Guarded<Root>`,
//! `caller: Guarded<OrgKey<scopes::RunsRead>>`), so no route exists without declaring who may
//! call it.
//!
//! - [`Root`]: `X-CA-Root-Key`, compared as SHA-256 digests in constant time.
//! - [`OrgKey<S>`]: `X-API-Key` of an active org, holding scope `S`; for routes with an
//!   `{org_slug}` segment the key's org must be that org (403 otherwise).
//! - [`OrgOrRoot<S>`]: either of the above.
//!
//! Every authenticated request then takes one unit of its caller's rate limit for the route's
//! class. Malformed keys are refused without any BigQuery call; valid keys are cached for
//! `AUTH_CACHE_TTL_SECS` (revocation, rotation and suspension clear this instance's cache at
//! once; other instances see the change within the TTL), by `key_cache`: one lookup per key
//! at a time, refreshed before it expires while in use.

mod key_cache;

use key_cache::{KeyCache, KeyLookup};

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api_keys::LastUsed;
use crate::domain::{ApiKey, OrgSlug, Scope};
use crate::http::error::ApiError;
use crate::http::rate_limit::{Limiters, RouteClass};
use crate::metrics::Metrics;
use crate::settings::{Environment, Settings};
use crate::warehouse::Warehouse;

pub const ROOT_KEY_HEADER: &str = "x-ca-root-key";
pub const API_KEY_HEADER: &str = "x-api-key";

/// Everything the extractors need, built once at start-up and shared by all workers.
pub struct AuthState {
    root_key_digest: Option<[u8; 32]>,
    auth_disabled: bool,
    keys: KeyCache,
    warehouse: Warehouse,
    pub last_used: LastUsed,
    pub limiters: Limiters,
}

impl AuthState {
    pub fn new(settings: &Settings, warehouse: Warehouse, metrics: Arc<Metrics>) -> Self {
        Self {
            root_key_digest: settings
                .root_api_key
                .as_ref()
                .map(|k| digest(k.expose().as_bytes())),
            auth_disabled: settings.disable_auth
                && settings.environment == Environment::Development,
            keys: KeyCache::new(settings.auth_cache_ttl, warehouse.clone(), metrics),
            warehouse,
            last_used: LastUsed::default(),
            limiters: Limiters::new(settings.rate_limit_enabled, &settings.rate_limits),
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

    /// A key was just created: its hash is no longer unknown (on this instance at once; others
    /// hold a negative entry at most 30 s, and only if the hash was tried before
    /// it existed).
    pub async fn key_created(&self, key_hash: &str) {
        self.keys.key_created(key_hash).await;
    }

    /// Forgets a cached key at once (after revocation or rotation).
    pub fn invalidate_key(&self, key_id: &str) {
        self.keys.invalidate_key(key_id);
    }

    /// Forgets every cached key of an org at once (after suspension).
    pub fn invalidate_org(&self, org: &OrgSlug) {
        self.keys.invalidate_org(org);
    }

    async fn org_key(&self, req: &HttpRequest) -> Result<OrgPrincipal, ApiError> {
        let ip = req.peer_addr().map(|a| a.ip());
        self.limiters.refuse_if_blocked(ip)?;
        let raw = req
            .headers()
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.no_key(req, ip))?;
        let key_hash = match ApiKey::parse(raw) {
            Ok(key) => key.hash_hex(),
            Err(_) => {
                tracing::info!("malformed api key refused");
                return Err(self.limiters.failed_auth(ip));
            }
        };
        let record = match self.keys.get(&key_hash).await? {
            KeyLookup::Found(record) => record,
            KeyLookup::Unknown => {
                tracing::info!("unknown api key refused");
                return Err(self.limiters.failed_auth(ip));
            }
        };
        if !record.is_usable_at(Utc::now()) {
            tracing::info!(key_id = %record.key_id, "revoked, expired or suspended key refused");
            return Err(self.limiters.failed_auth(ip));
        }
        self.last_used.record(&record.org_slug, &record.key_id);
        Ok(OrgPrincipal {
            org_slug: record.org_slug.clone(),
            key_id: record.key_id.clone(),
            key_name: record.name.clone(),
            scopes: record.scopes.clone(),
        })
    }

    /// A request without the key the route needs: a failed authentication; when it carries no
    /// key at all, the 401 says which headers carry one.
    fn no_key(&self, req: &HttpRequest, ip: Option<std::net::IpAddr>) -> ApiError {
        let headers = req.headers();
        match self.limiters.failed_auth(ip) {
            ApiError::Unauthorized
                if !headers.contains_key(API_KEY_HEADER)
                    && !headers.contains_key(ROOT_KEY_HEADER) =>
            {
                ApiError::MissingKey
            }
            other => other,
        }
    }

    fn root(&self, req: &HttpRequest) -> Result<RootPrincipal, ApiError> {
        let ip = req.peer_addr().map(|a| a.ip());
        self.limiters.refuse_if_blocked(ip)?;
        let presented = req
            .headers()
            .get(ROOT_KEY_HEADER)
            .ok_or_else(|| self.no_key(req, ip))?;
        if self.is_root_key(presented.as_bytes()) {
            Ok(RootPrincipal)
        } else {
            tracing::warn!("root key rejected");
            Err(self.limiters.failed_auth(ip))
        }
    }

    /// DISABLE_AUTH (development only): the path's org, with every scope.
    fn unauthenticated_org(req: &HttpRequest) -> Result<OrgPrincipal, ApiError> {
        let slug = req
            .match_info()
            .get("org_slug")
            .and_then(|s| OrgSlug::parse(s).ok())
            .ok_or(ApiError::Unauthorized)?;
        Ok(OrgPrincipal {
            org_slug: slug,
            key_id: "auth-disabled".to_string(),
            key_name: None,
            scopes: Scope::ALL.to_vec(),
        })
    }

    /// Takes one unit of the caller's allowance for this route and notes it for the headers.
    fn rate_limit(&self, req: &HttpRequest, caller: &str) -> Result<(), ApiError> {
        let allowance = self
            .limiters
            .check(RouteClass::of(req.match_pattern().as_deref()), caller)?;
        req.extensions_mut().insert(allowance);
        Ok(())
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn state(req: &HttpRequest) -> Result<web::Data<AuthState>, ApiError> {
    req.app_data::<web::Data<AuthState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("AuthState missing from app data"))
}

/// The caller of an org route: which org, which key, what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPrincipal {
    pub org_slug: OrgSlug,
    pub key_id: String,
    /// The key's name for people, when it has one.
    pub key_name: Option<String>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPrincipal;

/// Who called a route open to both keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Root,
    Org(OrgPrincipal),
}

impl Caller {
    /// For audit logs: `root` or `key:<key_id>`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Root => "root".to_string(),
            Caller::Org(p) => crate::api_keys::actor(&p.key_id, p.key_name.as_deref()),
        }
    }
}

/// The scope a route needs, as a type.
pub trait RequiredScope: 'static {
    const SCOPE: Option<Scope>;
}

/// Scope markers for [`OrgKey`] and [`OrgOrRoot`].
pub mod scopes {
    use super::RequiredScope;
    use crate::domain::Scope;

    macro_rules! marker {
        ($($(#[$doc:meta])* $name:ident => $scope:expr;)*) => {$(
            $(#[$doc])*
            pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: Option<Scope> = $scope;
            }
        )*};
    }

    marker! {
        PipelinesRun => Some(Scope::PipelinesRun);
        RunsRead => Some(Scope::RunsRead);
        IntegrationsWrite => Some(Scope::IntegrationsWrite);
        IntegrationsRead => Some(Scope::IntegrationsRead);
        KeysManage => Some(Scope::KeysManage);
        OrgRead => Some(Scope::OrgRead);
        SchedulesWrite => Some(Scope::SchedulesWrite);
        SchedulesRead => Some(Scope::SchedulesRead);
        NotificationsWrite => Some(Scope::NotificationsWrite);
        NotificationsRead => Some(Scope::NotificationsRead);
        /// Any valid key of the org.
        Any => None;
    }
}

/// Who may call a route, as its declaration states it (from the policy type in the handler's
/// `Guarded<…>`, via [`Declares`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Root,
    Org,
    OrgOrRoot,
}

/// A route anyone may call: it takes no `Guarded<…>`.
pub struct Public;

/// What a policy type declares about the routes that use it: who may call, and the scope an
/// org key needs. Route declarations read it from the same type the handler's signature names.
pub trait Declares {
    const ACCESS: Access;
    const SCOPE: Option<Scope>;
}

impl Declares for Public {
    const ACCESS: Access = Access::Public;
    const SCOPE: Option<Scope> = None;
}

impl Declares for Root {
    const ACCESS: Access = Access::Root;
    const SCOPE: Option<Scope> = None;
}

impl<S: RequiredScope> Declares for OrgKey<S> {
    const ACCESS: Access = Access::Org;
    const SCOPE: Option<Scope> = S::SCOPE;
}

impl<S: RequiredScope> Declares for OrgOrRoot<S> {
    const ACCESS: Access = Access::OrgOrRoot;
    const SCOPE: Option<Scope> = S::SCOPE;
}

/// An authorization policy: decides from the request who the caller is.
pub trait Policy: 'static {
    type Principal: 'static;
    fn authenticate(req: HttpRequest)
    -> LocalBoxFuture<'static, Result<Self::Principal, ApiError>>;
}

/// The admin, holding `X-CA-Root-Key`.
pub struct Root;

impl Policy for Root {
    type Principal = RootPrincipal;

    fn authenticate(req: HttpRequest) -> LocalBoxFuture<'static, Result<RootPrincipal, ApiError>> {
        Box::pin(async move {
            let state = state(&req)?;
            let principal = if state.auth_disabled {
                RootPrincipal
            } else {
                state.root(&req)?
            };
            state.rate_limit(&req, "root")?;
            Ok(principal)
        })
    }
}

/// An org API key holding scope `S`, for the org named in the path (if any).
pub struct OrgKey<S>(PhantomData<S>);

impl<S: RequiredScope> Policy for OrgKey<S> {
    type Principal = OrgPrincipal;

    fn authenticate(req: HttpRequest) -> LocalBoxFuture<'static, Result<OrgPrincipal, ApiError>> {
        Box::pin(async move {
            let state = state(&req)?;
            let principal = if state.auth_disabled {
                AuthState::unauthenticated_org(&req)?
            } else {
                state.org_key(&req).await?
            };
            authorize::<S>(&req, &principal)?;
            state.rate_limit(&req, principal.org_slug.as_str())?;
            crate::cost::labels::set_org(principal.org_slug.as_str());
            Ok(principal)
        })
    }
}

/// The root key, or an org key holding scope `S` for the org in the path.
pub struct OrgOrRoot<S>(PhantomData<S>);

impl<S: RequiredScope> Policy for OrgOrRoot<S> {
    type Principal = Caller;

    fn authenticate(req: HttpRequest) -> LocalBoxFuture<'static, Result<Caller, ApiError>> {
        Box::pin(async move {
            if req.headers().contains_key(ROOT_KEY_HEADER) {
                Root::authenticate(req.clone()).await?;
                // The root key acts for the org in the path, when there is one.
                if let Some(org) = req.match_info().get("org_slug") {
                    if let Ok(org) = OrgSlug::parse(org) {
                        crate::cost::labels::set_org(org.as_str());
                    }
                }
                return Ok(Caller::Root);
            }
            OrgKey::<S>::authenticate(req).await.map(Caller::Org)
        })
    }
}

/// Cross-org access and missing scopes are both 403, checked in that order.
fn authorize<S: RequiredScope>(
    req: &HttpRequest,
    principal: &OrgPrincipal,
) -> Result<(), ApiError> {
    if let Some(path_org) = req.match_info().get("org_slug") {
        if path_org != principal.org_slug.as_str() {
            tracing::warn!(
                key_org = %principal.org_slug,
                "cross-org access refused"
            );
            return Err(ApiError::Forbidden);
        }
    }
    if let Some(scope) = S::SCOPE {
        if !principal.scopes.contains(&scope) {
            tracing::info!(scope = scope.as_str(), "missing scope");
            return Err(ApiError::MissingScope);
        }
    }
    Ok(())
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

    pub fn into_principal(self) -> P::Principal {
        self.principal
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
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let fut = P::authenticate(req.clone());
        Box::pin(async move {
            fut.await.map(|principal| Guarded {
                principal,
                _policy: PhantomData,
            })
        })
    }
}

/// Flushes `last_used_at` and trims idle rate-limit state on an interval, for the life of the
/// process.
pub fn spawn_background(state: web::Data<AuthState>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = state.last_used.flush(&state.warehouse).await {
                tracing::warn!(error = %e, "last_used_at flush failed; will retry");
            }
            state.limiters.shrink();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    async fn state_with(vars: &[(&'static str, &'static str)]) -> AuthState {
        let mut map: HashMap<&str, &str> = [
            (
                "LOCAL_KMS_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
            ("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9"),
        ]
        .into_iter()
        .collect();
        map.extend(vars.iter().copied());
        let settings = Settings::from_source(&map).unwrap();
        let warehouse = Warehouse::connect(&settings).await.unwrap();
        AuthState::new(&settings, warehouse, Arc::new(Metrics::new(false)))
    }

    #[tokio::test]
    async fn only_the_exact_root_key_matches() {
        let s = state_with(&[("CA_ROOT_API_KEY", "root-key-0123456789abcdef0123456789")]).await;
        assert!(s.is_root_key(b"root-key-0123456789abcdef0123456789"));
        assert!(!s.is_root_key(b"root-key-0123456789abcdef012345678"));
        assert!(!s.is_root_key(b"root-key-0123456789abcdef01234567890"));
        assert!(!s.is_root_key(b""));
    }

    #[tokio::test]
    async fn without_a_configured_root_key_nothing_matches() {
        let s = state_with(&[]).await;
        assert!(!s.is_root_key(b""));
        assert!(!s.is_root_key(b"anything"));
    }

    #[tokio::test]
    async fn disable_auth_only_takes_effect_in_development() {
        assert!(state_with(&[("DISABLE_AUTH", "true")]).await.auth_disabled);
        assert!(
            !state_with(&[("DISABLE_AUTH", "true"), ("ENVIRONMENT", "staging")])
                .await
                .auth_disabled
        );
    }
}
