//! The org-key cache between authentication and BigQuery, built so that load never multiplies
//! lookups:
//!
//! - **One lookup per key at a time.** Concurrent requests with a key that is not cached share
//!   one query and its answer (moka's `try_get_with`); when that query fails, every request
//!   waiting on it gets the failure (503), none retries it on its own.
//! - **Refreshed before it expires while in use.** A key used in the last quarter of its cached
//!   life is read again in the background (one refresh per key at a time) and the fresh record
//!   replaces it, so a key in steady use never expires and no request waits for its lookup.
//!   The cached record is never older than the TTL: a refresh that fails leaves the old one to
//!   expire.
//! - **Unknown keys are remembered** for [`UNKNOWN_KEY_TTL`]: repeats cost no lookup.
//! - **Revocation, rotation and suspension win.** They clear this instance's entries at once,
//!   and a lookup or refresh that was reading while they did is not cached (its request still
//!   gets the answer it read, which the key's `revoked_at` check judges as before).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::api_keys::{self, KeyAuthRecord};
use crate::domain::OrgSlug;
use crate::metrics::Metrics;
use crate::warehouse::{Warehouse, WarehouseError};

/// How long a key hash that matched no key is refused without a lookup.
pub const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(30);
/// Unknown key hashes remembered at most (a flood of fresh ones ages the oldest out).
const UNKNOWN_KEYS_MAX: u64 = 10_000;
/// At most this many keys are cached.
const KNOWN_KEYS_MAX: u64 = 100_000;

/// What a key hash names.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    Found(Arc<KeyAuthRecord>),
    /// No key has this hash.
    Unknown,
}

#[derive(Clone)]
struct CachedKey {
    record: Arc<KeyAuthRecord>,
    read_at: Instant,
}

/// Why a shared lookup produced no record.
enum Miss {
    Unknown,
    Failed(WarehouseError),
}

#[derive(Clone)]
pub struct KeyCache {
    /// `None` when the TTL is zero: every request looks its key up.
    known: Option<Cache<String, CachedKey>>,
    unknown: Cache<String, ()>,
    /// A cached key read at least this long ago is refreshed when used.
    refresh_after: Duration,
    /// Key hashes being refreshed in the background.
    refreshing: Arc<Mutex<HashSet<String>>>,
    /// Bumped by every invalidation: a lookup that saw it move does not cache what it read.
    invalidations: Arc<AtomicU64>,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
}

impl KeyCache {
    pub fn new(ttl: Duration, warehouse: Warehouse, metrics: Arc<Metrics>) -> Self {
        let known = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(KNOWN_KEYS_MAX)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build()
        });
        Self {
            known,
            unknown: Cache::builder()
                .max_capacity(UNKNOWN_KEYS_MAX)
                .time_to_live(UNKNOWN_KEY_TTL)
                .build(),
            refresh_after: ttl.mul_f64(0.75),
            refreshing: Arc::default(),
            invalidations: Arc::default(),
            warehouse,
            metrics,
        }
    }

    /// The key with this hash, from the cache, a lookup in flight, or a new lookup.
    pub async fn get(&self, key_hash: &str) -> Result<KeyLookup, WarehouseError> {
        if let Some(known) = &self.known {
            if let Some(cached) = known.get(key_hash).await {
                self.metrics.auth_cache("hit");
                if cached.read_at.elapsed() >= self.refresh_after {
                    self.refresh(key_hash);
                }
                return Ok(KeyLookup::Found(cached.record));
            }
        }
        self.metrics.auth_cache("miss");
        if self.unknown.contains_key(key_hash) {
            return Ok(KeyLookup::Unknown);
        }
        let found = match &self.known {
            Some(known) => self.shared_lookup(known, key_hash).await?,
            None => api_keys::lookup(&self.warehouse, key_hash)
                .await?
                .map(Arc::new),
        };
        match found {
            Some(record) => Ok(KeyLookup::Found(record)),
            None => {
                self.unknown.insert(key_hash.to_string(), ()).await;
                Ok(KeyLookup::Unknown)
            }
        }
    }

    /// One lookup of the key for every request that asks while it runs; a key found is cached
    /// (unless an invalidation moved meanwhile), a miss or a failure is not.
    async fn shared_lookup(
        &self,
        known: &Cache<String, CachedKey>,
        key_hash: &str,
    ) -> Result<Option<Arc<KeyAuthRecord>>, WarehouseError> {
        let before = self.invalidations.load(Ordering::SeqCst);
        let shared = known
            .try_get_with(key_hash.to_string(), async {
                match api_keys::lookup(&self.warehouse, key_hash).await {
                    Ok(Some(record)) => Ok(CachedKey {
                        record: Arc::new(record),
                        read_at: Instant::now(),
                    }),
                    Ok(None) => Err(Miss::Unknown),
                    Err(e) => Err(Miss::Failed(e)),
                }
            })
            .await;
        if self.invalidations.load(Ordering::SeqCst) != before {
            known.invalidate(key_hash).await;
        }
        match shared {
            Ok(cached) => Ok(Some(cached.record)),
            Err(miss) => match &*miss {
                Miss::Unknown => Ok(None),
                Miss::Failed(e) => Err(e.clone()),
            },
        }
    }

    /// Reads the key again in the background, unless that is already under way.
    fn refresh(&self, key_hash: &str) {
        if !self
            .refreshing
            .lock()
            .expect("refresh set lock")
            .insert(key_hash.to_string())
        {
            return;
        }
        self.metrics.auth_cache("refresh");
        let this = self.clone();
        let key_hash = key_hash.to_string();
        tokio::spawn(async move {
            let Some(known) = &this.known else { return };
            let before = this.invalidations.load(Ordering::SeqCst);
            let read = api_keys::lookup(&this.warehouse, &key_hash).await;
            if this.invalidations.load(Ordering::SeqCst) == before {
                match read {
                    Ok(Some(record)) => {
                        let fresh = CachedKey {
                            record: Arc::new(record),
                            read_at: Instant::now(),
                        };
                        known.insert(key_hash.clone(), fresh).await;
                    }
                    Ok(None) => known.invalidate(&key_hash).await,
                    // The cached record expires at its TTL; the next use looks it up.
                    Err(e) => tracing::warn!(error = %e, "refreshing a cached api key failed"),
                }
            }
            this.refreshing
                .lock()
                .expect("refresh set lock")
                .remove(&key_hash);
        });
    }

    /// A key was just created: its hash is no longer unknown (on this instance at once; others
    /// hold a negative entry at most [`UNKNOWN_KEY_TTL`], and only if the hash was tried before
    /// it existed).
    pub async fn key_created(&self, key_hash: &str) {
        self.unknown.invalidate(key_hash).await;
    }

    /// Forgets a cached key at once (after revocation or rotation).
    pub fn invalidate_key(&self, key_id: &str) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        if let Some(known) = &self.known {
            let key_id = key_id.to_string();
            let _ = known.invalidate_entries_if(move |_, cached| cached.record.key_id == key_id);
        }
    }

    /// Forgets every cached key of an org at once (after suspension).
    pub fn invalidate_org(&self, org: &OrgSlug) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        if let Some(known) = &self.known {
            let org = org.clone();
            let _ = known.invalidate_entries_if(move |_, cached| cached.record.org_slug == org);
        }
    }
}
