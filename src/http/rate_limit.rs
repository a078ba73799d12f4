//! Per-org rate limits (governor, GCRA), one limiter per route class, plus a per-IP limiter on
//! failed authentication. Limits are per instance: with N replicas an org can reach N times the
//! configured rate (see README).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::http::error::ApiError;
use crate::settings::RateLimits;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Everything not listed below.
    Default,
    /// Onboarding, dry runs and bootstrap: rare and expensive.
    Admin,
    /// Pipeline triggers.
    Trigger,
}

impl RouteClass {
    /// The class of a route, from its pattern as registered.
    pub fn of(pattern: Option<&str>) -> Self {
        match pattern.unwrap_or_default() {
            p if p.starts_with("/api/v1/admin/bootstrap") => RouteClass::Admin,
            "/api/v1/organizations/onboard" | "/api/v1/organizations/dryrun" => RouteClass::Admin,
            p if p.starts_with("/api/v1/pipelines/run/") => RouteClass::Trigger,
            _ => RouteClass::Default,
        }
    }
}

/// What the caller has left, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub limit: u32,
    pub remaining: u32,
}

pub struct Limiters {
    enabled: bool,
    settings: RateLimits,
    default: Keyed<String>,
    admin: Keyed<String>,
    trigger: Keyed<String>,
    failed_auth: Keyed<IpAddr>,
    /// IPs past their failed-auth budget, until when: refused before any key lookup.
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Keyed<K> {
    let n = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    RateLimiter::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>()
}

impl Limiters {
    pub fn new(enabled: bool, settings: &RateLimits) -> Self {
        Self {
            enabled,
            settings: settings.clone(),
            default: keyed(settings.per_minute),
            admin: keyed(settings.admin_per_minute),
            trigger: keyed(settings.trigger_per_minute),
            failed_auth: keyed(settings.failed_auth_per_minute),
            blocked: Default::default(),
        }
    }

    /// 429 for an IP that is past its failed-auth budget, checked before a key is looked up, so
    /// a flood of made-up keys costs no BigQuery call once the budget is spent.
    pub fn refuse_if_blocked(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip.filter(|_| self.enabled) else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        match self.blocked.lock().expect("blocked lock").get(&ip) {
            Some(until) if *until > now => Err(ApiError::RateLimited {
                retry_after_secs: retry_after(*until - now),
                limit: self.settings.failed_auth_per_minute,
            }),
            _ => Ok(()),
        }
    }

    /// Takes one request from `caller`'s allowance for this route class.
    pub fn check(&self, class: RouteClass, caller: &str) -> Result<Allowance, ApiError> {
        let (limiter, limit) = match class {
            RouteClass::Default => (&self.default, self.settings.per_minute),
            RouteClass::Admin => (&self.admin, self.settings.admin_per_minute),
            RouteClass::Trigger => (&self.trigger, self.settings.trigger_per_minute),
        };
        if !self.enabled {
            return Ok(Allowance {
                limit,
                remaining: limit,
            });
        }
        match limiter.check_key(&caller.to_string()) {
            Ok(snapshot) => Ok(Allowance {
                limit,
                remaining: snapshot.remaining_burst_capacity(),
            }),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                tracing::info!(class = ?class, caller, "rate limit exceeded");
                Err(ApiError::RateLimited {
                    retry_after_secs: retry_after(wait),
                    limit,
                })
            }
        }
    }

    /// Counts one failed authentication from `ip`; past the limit the answer becomes 429.
    pub fn failed_auth(&self, ip: Option<IpAddr>) -> ApiError {
        let Some(ip) = ip else {
            return ApiError::Unauthorized;
        };
        if !self.enabled {
            return ApiError::Unauthorized;
        }
        match self.failed_auth.check_key(&ip) {
            Ok(_) => ApiError::Unauthorized,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                self.blocked
                    .lock()
                    .expect("blocked lock")
                    .insert(ip, std::time::Instant::now() + wait);
                tracing::warn!(%ip, "too many failed authentications");
                ApiError::RateLimited {
                    retry_after_secs: retry_after(wait),
                    limit: self.settings.failed_auth_per_minute,
                }
            }
        }
    }

    /// Drops state of callers idle long enough to be back at full allowance.
    pub fn shrink(&self) {
        self.default.retain_recent();
        self.admin.retain_recent();
        self.trigger.retain_recent();
        self.failed_auth.retain_recent();
        let now = std::time::Instant::now();
        self.blocked
            .lock()
            .expect("blocked lock")
            .retain(|_, until| *until > now);
    }
}

fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(n: u32) -> RateLimits {
        RateLimits {
            per_minute: n,
            admin_per_minute: 1,
            trigger_per_minute: n,
            failed_auth_per_minute: 2,
        }
    }

    #[test]
    fn each_org_has_its_own_allowance() {
        let l = Limiters::new(true, &settings(2));
        assert_eq!(l.check(RouteClass::Default, "a").unwrap().remaining, 1);
        assert_eq!(l.check(RouteClass::Default, "a").unwrap().remaining, 0);
        match l.check(RouteClass::Default, "a").unwrap_err() {
            ApiError::RateLimited {
                retry_after_secs,
                limit,
            } => {
                assert_eq!(limit, 2);
                assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
        assert!(l.check(RouteClass::Default, "b").is_ok());
    }

    #[test]
    fn route_classes_have_separate_limits() {
        let l = Limiters::new(true, &settings(5));
        assert!(l.check(RouteClass::Admin, "root").is_ok());
        assert!(l.check(RouteClass::Admin, "root").is_err());
        assert!(l.check(RouteClass::Default, "root").is_ok());
    }

    #[test]
    fn failed_authentication_is_limited_per_ip() {
        let l = Limiters::new(true, &settings(5));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(matches!(l.failed_auth(Some(ip)), ApiError::Unauthorized));
        assert!(matches!(l.failed_auth(Some(ip)), ApiError::Unauthorized));
        assert!(matches!(
            l.failed_auth(Some(ip)),
            ApiError::RateLimited { .. }
        ));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(matches!(l.failed_auth(Some(other)), ApiError::Unauthorized));
    }

    #[test]
    fn an_ip_past_its_failed_auth_budget_is_refused_before_any_lookup() {
        let l = Limiters::new(true, &settings(5));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(l.refuse_if_blocked(Some(ip)).is_ok());
        while matches!(l.failed_auth(Some(ip)), ApiError::Unauthorized) {}
        assert!(matches!(
            l.refuse_if_blocked(Some(ip)),
            Err(ApiError::RateLimited { .. })
        ));
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        assert!(l.refuse_if_blocked(Some(other)).is_ok());
        assert!(
            Limiters::new(false, &settings(5))
                .refuse_if_blocked(Some(ip))
                .is_ok()
        );
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let l = Limiters::new(false, &settings(1));
        for _ in 0..10 {
            assert!(l.check(RouteClass::Default, "a").is_ok());
        }
    }

    #[test]
    fn routes_are_classified_by_pattern() {
        assert_eq!(
            RouteClass::of(Some("/api/v1/admin/bootstrap")),
            RouteClass::Admin
        );
        assert_eq!(
            RouteClass::of(Some("/api/v1/organizations/onboard")),
            RouteClass::Admin
        );
        assert_eq!(
            RouteClass::of(Some("/api/v1/pipelines/run/{org_slug}/{pipeline_id:.*}")),
            RouteClass::Trigger
        );
        assert_eq!(
            RouteClass::of(Some("/api/v1/organizations/{org_slug}")),
            RouteClass::Default
        );
        assert_eq!(RouteClass::of(None), RouteClass::Default);
    }
}
