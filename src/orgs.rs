//! Organizations: onboarding (resumable), dry runs, profiles, quota limits, suspension.
//!
//! Onboarding order: claim the slug and dataset id (profile row), create the org's dataset,
//! insert the quota row, issue the first key. Each step checks what exists first, so calling
//! onboard again with the same body after a failure completes the missing steps. Rows that are
//! later updated (profiles, quotas, keys) are written with DML, never streamed: BigQuery cannot
//! update streamed rows for about 30 minutes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use validator::ValidateEmail;

use crate::admission::Admission;
use crate::api_keys::{self, IssuedKey};
use crate::bootstrap::{self, SyncState};
use crate::domain::{OrgSlug, Plan, QuotaLimits};
use crate::kms::Kms;
use crate::service_error::ServiceError;
use crate::warehouse::from_micros;
use crate::warehouse::{Created, Param, Warehouse, sql};

pub const MAX_COMPANY_NAME: usize = 200;
pub const MAX_EMAIL: usize = 254;

/// The onboarding body as sent. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    pub org_slug: String,
    pub company_name: String,
    pub admin_email: String,
    pub plan: String,
    /// Only for ENTERPRISE, whose limits an admin sets.
    #[serde(default)]
    pub quota: Option<QuotaLimits>,
    /// A name for the org's first key (1-64 letters, digits, spaces, dots, underscores or
    /// dashes), shown with its id as the actor of what it does.
    #[serde(default)]
    pub key_name: Option<String>,
}

/// An onboarding request that passed every format check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrg {
    pub slug: OrgSlug,
    pub company_name: String,
    pub admin_email: String,
    pub plan: Plan,
    pub limits: QuotaLimits,
    pub key_name: Option<api_keys::KeyName>,
}

impl OnboardRequest {
    pub fn parse(self) -> Result<NewOrg, ServiceError> {
        let invalid = |why: &str| ServiceError::Invalid(why.to_string());
        let slug = OrgSlug::parse(&self.org_slug).map_err(|e| invalid(&e.to_string()))?;
        let company_name = self.company_name.trim().to_string();
        if company_name.is_empty()
            || company_name.chars().count() > MAX_COMPANY_NAME
            || company_name.chars().any(char::is_control)
        {
            return Err(invalid("company_name: 1-200 printable characters"));
        }
        let admin_email = self.admin_email.trim().to_string();
        if admin_email.len() > MAX_EMAIL || !admin_email.validate_email() {
            return Err(invalid("admin_email: not an email address"));
        }
        let plan = Plan::parse(&self.plan).ok_or_else(|| invalid("plan: unknown"))?;
        let limits = match (plan.limits(), self.quota) {
            (Some(limits), None) => limits,
            (Some(_), Some(_)) => {
                return Err(invalid("quota: only ENTERPRISE sets its own limits"));
            }
            (None, Some(q)) => q.validate().map_err(invalid)?,
            (None, None) => return Err(invalid("quota: ENTERPRISE needs explicit limits")),
        };
        let key_name = api_keys::KeyName::parse_field(self.key_name.as_deref(), "key_name")
            .map_err(ServiceError::InvalidField)?;
        Ok(NewOrg {
            slug,
            company_name,
            admin_email,
            plan,
            limits,
            key_name,
        })
    }
}

/// An org as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct OrgView {
    pub org_slug: String,
    pub company_name: String,
    pub admin_email: String,
    pub plan: String,
    pub status: String,
    pub dataset_id: String,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ProfileRow {
    org_slug: String,
    company_name: String,
    admin_email: String,
    plan: String,
    status: String,
    dataset_id: String,
    created_at_micros: Option<i64>,
}

impl From<ProfileRow> for OrgView {
    fn from(r: ProfileRow) -> Self {
        OrgView {
            org_slug: r.org_slug,
            company_name: r.company_name,
            admin_email: r.admin_email,
            plan: r.plan,
            status: r.status,
            dataset_id: r.dataset_id,
            created_at: from_micros(r.created_at_micros),
        }
    }
}

pub async fn profile(
    warehouse: &Warehouse,
    org: &OrgSlug,
) -> Result<Option<OrgView>, ServiceError> {
    let rows: Vec<ProfileRow> = warehouse
        .query(
            &sql::ORG_PROFILE_BY_SLUG,
            &[Param::string("org_slug", org.as_str())],
        )
        .await?;
    Ok(rows.into_iter().next().map(OrgView::from))
}

async fn dataset_owner(
    warehouse: &Warehouse,
    org: &OrgSlug,
) -> Result<Option<String>, ServiceError> {
    #[derive(Deserialize)]
    struct Owner {
        org_slug: String,
    }
    let rows: Vec<Owner> = warehouse
        .query(
            &sql::ORG_PROFILE_BY_DATASET,
            &[Param::string("dataset_id", org.dataset_id().as_str())],
        )
        .await?;
    Ok(rows.into_iter().next().map(|o| o.org_slug))
}

/// One check of a dry run.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DryRun {
    pub ready: bool,
    pub org_slug: String,
    pub dataset_id: String,
    pub checks: Vec<Check>,
}

/// Everything onboarding would need, checked without writing anything.
pub async fn dry_run(warehouse: &Warehouse, org: &NewOrg) -> Result<DryRun, ServiceError> {
    let mut checks = Vec::new();
    let status = bootstrap::status(warehouse).await?;
    checks.push(Check {
        check: "meta_tables_present",
        ok: status.status == SyncState::Synced,
        detail: format!("bootstrap status {:?}", status.status),
    });
    let synced = status.status == SyncState::Synced;
    let existing = if synced {
        profile(warehouse, &org.slug).await?
    } else {
        None
    };
    checks.push(Check {
        check: "slug_available",
        ok: existing.is_none(),
        detail: if existing.is_some() {
            "an org with this slug exists".into()
        } else {
            "free".into()
        },
    });
    let owner = if synced {
        dataset_owner(warehouse, &org.slug).await?
    } else {
        None
    };
    let dataset_exists = warehouse.dataset_exists(&org.slug.dataset_id()).await?;
    checks.push(Check {
        check: "dataset_available",
        ok: owner.is_none() && !dataset_exists,
        detail: match (owner, dataset_exists) {
            (Some(o), _) => format!("dataset id is used by org {o}"),
            (None, true) => "a dataset with this id exists".into(),
            (None, false) => "free".into(),
        },
    });
    checks.push(Check {
        check: "plan_known",
        ok: true,
        detail: org.plan.as_str().to_string(),
    });
    Ok(DryRun {
        ready: checks.iter().all(|c| c.ok),
        org_slug: org.slug.to_string(),
        dataset_id: org.slug.dataset_id().to_string(),
        checks,
    })
}

pub struct Onboarded {
    pub org: OrgView,
    pub limits: QuotaLimits,
    pub key: IssuedKey,
    /// Some earlier attempt had already done part of the work.
    pub resumed: bool,
}

/// Onboards an org, or completes an earlier attempt with the same body.
pub async fn onboard(
    warehouse: &Warehouse,
    admission: &Admission,
    kms: &dyn Kms,
    new: &NewOrg,
) -> Result<Onboarded, ServiceError> {
    let slug = &new.slug;
    let dataset_id = slug.dataset_id();
    let now = Utc::now();
    let mut resumed = false;

    match profile(warehouse, slug).await? {
        Some(existing) => {
            let same = existing.company_name == new.company_name
                && existing.admin_email == new.admin_email
                && existing.plan == new.plan.as_str();
            if !same {
                return Err(ServiceError::Conflict(format!(
                    "org {slug} exists with other details"
                )));
            }
            resumed = true;
        }
        None => {
            if let Some(owner) = dataset_owner(warehouse, slug).await? {
                return Err(ServiceError::Conflict(format!(
                    "dataset {dataset_id} belongs to org {owner}"
                )));
            }
            if warehouse.dataset_exists(&dataset_id).await? {
                return Err(ServiceError::Conflict(format!(
                    "dataset {dataset_id} exists"
                )));
            }
            let claimed = warehouse
                .execute(
                    &sql::ORG_PROFILE_INSERT,
                    &[
                        Param::string("org_slug", slug.as_str()),
                        Param::string("company_name", &new.company_name),
                        Param::string("admin_email", &new.admin_email),
                        Param::string("plan", new.plan.as_str()),
                        Param::string("dataset_id", dataset_id.as_str()),
                        Param::timestamp("now", now),
                    ],
                )
                .await?;
            if claimed == 0 {
                return Err(ServiceError::Conflict(format!(
                    "org {slug} or dataset {dataset_id} was claimed concurrently"
                )));
            }
        }
    }

    if warehouse.create_dataset(&dataset_id).await? == Created::Exists {
        resumed = true;
    }

    let quota_rows = admission
        .write(
            &sql::QUOTA_INSERT,
            vec![
                Param::string("org_slug", slug.as_str()),
                Param::int64("daily_limit", new.limits.daily_limit),
                Param::int64("monthly_limit", new.limits.monthly_limit),
                Param::int64("concurrent_limit", new.limits.concurrent_limit),
                Param::int64(
                    "queue_limit",
                    new.limits.queue_limit.unwrap_or(new.plan.queue_limit()),
                ),
                Param::opt_int64(
                    "bytes_daily_limit",
                    new.limits
                        .bytes_daily_limit
                        .or(new.plan.bytes_budgets().map(|b| b.0)),
                ),
                Param::opt_int64(
                    "bytes_monthly_limit",
                    new.limits
                        .bytes_monthly_limit
                        .or(new.plan.bytes_budgets().map(|b| b.1)),
                ),
                Param::opt_int64(
                    "bytes_per_job_limit",
                    new.limits.bytes_per_job_limit.or(new.plan.bytes_per_job()),
                ),
                Param::timestamp("now", now),
            ],
        )
        .await?;
    if quota_rows == 0 {
        resumed = true;
    }

    if api_keys::count(warehouse, slug).await? > 0 {
        // Everything exists: the key was issued before and cannot be shown again.
        return Err(ServiceError::Conflict(format!(
            "org {slug} is already onboarded"
        )));
    }
    let key = api_keys::issue(warehouse, kms, slug, &[], None, new.key_name.as_ref()).await?;
    let org = profile(warehouse, slug)
        .await?
        .ok_or_else(|| ServiceError::Conflict(format!("org {slug} vanished during onboarding")))?;
    Ok(Onboarded {
        org,
        limits: new.limits,
        key,
        resumed,
    })
}

/// Limits and usage of one org.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct QuotaView {
    pub daily_limit: i64,
    pub monthly_limit: i64,
    pub concurrent_limit: i64,
    pub day: Option<String>,
    pub runs_today: i64,
    pub month: Option<String>,
    pub runs_month: i64,
    pub active_run_ids: Vec<String>,
    /// Runs that may wait in the queue at once.
    pub queue_limit: i64,
    /// Runs waiting for a slot, next first.
    #[serde(default)]
    pub queued_run_ids: Vec<String>,
    /// Bytes the org's jobs may bill per UTC day; `null`: no budget.
    #[serde(default)]
    pub bytes_daily_limit: Option<i64>,
    /// Bytes the org's jobs may bill per UTC month; `null`: no budget.
    #[serde(default)]
    pub bytes_monthly_limit: Option<i64>,
    /// Bytes any one step job may bill; `null`: no cap of the org's.
    #[serde(default)]
    pub bytes_per_job_limit: Option<i64>,
    /// Bytes billed by the org's runs that ended on `day` (counted when each run's slot is
    /// released).
    #[serde(default)]
    pub bytes_today: i64,
    /// Bytes billed by the org's runs that ended in `month`.
    #[serde(default)]
    pub bytes_month: i64,
    /// `bytes_today` at `PRICE_PER_TIB_CENTS` (see [`QuotaView::priced`]).
    #[serde(default)]
    pub estimated_cost_today_usd: f64,
    /// `bytes_month` at `PRICE_PER_TIB_CENTS`.
    #[serde(default)]
    pub estimated_cost_month_usd: f64,
}

impl QuotaView {
    /// The org's caps on a run's jobs starting at `now`: its per-job cap and what its budgets
    /// have left (a day or month the row has not reached yet has nothing spent).
    pub fn caps(&self, now: chrono::DateTime<Utc>) -> crate::cost::cap::OrgCaps {
        let today = now.date_naive();
        let month_start = chrono::Datelike::with_day(&today, 1).unwrap_or(today);
        let spent = |on: &Option<String>, since: chrono::NaiveDate, bytes: i64| {
            let current = on
                .as_deref()
                .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .is_some_and(|d| d >= since);
            if current { bytes } else { 0 }
        };
        crate::cost::cap::OrgCaps {
            per_job: self.bytes_per_job_limit,
            daily_left: self
                .bytes_daily_limit
                .map(|l| l - spent(&self.day, today, self.bytes_today)),
            monthly_left: self
                .bytes_monthly_limit
                .map(|l| l - spent(&self.month, month_start, self.bytes_month)),
        }
    }

    /// The view with the estimated cost of what it billed.
    pub fn priced(mut self, price: crate::cost::price::Price) -> Self {
        self.estimated_cost_today_usd = price.usd(self.bytes_today);
        self.estimated_cost_month_usd = price.usd(self.bytes_month);
        self
    }
}

pub async fn quota(
    warehouse: &Warehouse,
    org: &OrgSlug,
) -> Result<Option<QuotaView>, ServiceError> {
    let rows: Vec<QuotaView> = warehouse
        .query(
            &sql::QUOTA_BY_ORG,
            &[Param::string("org_slug", org.as_str())],
        )
        .await?;
    Ok(rows.into_iter().next())
}

pub async fn set_limits(
    admission: &Admission,
    org: &OrgSlug,
    limits: QuotaLimits,
) -> Result<(), ServiceError> {
    let limits = limits
        .validate()
        .map_err(|e| ServiceError::Invalid(e.into()))?;
    let changed = admission
        .write(
            &sql::QUOTA_SET_LIMITS,
            vec![
                Param::string("org_slug", org.as_str()),
                Param::int64("daily_limit", limits.daily_limit),
                Param::int64("monthly_limit", limits.monthly_limit),
                Param::int64("concurrent_limit", limits.concurrent_limit),
                Param::int64("queue_limit", limits.queue_limit.unwrap_or(-1)),
                Param::int64("bytes_daily_limit", limits.bytes_daily_limit.unwrap_or(-1)),
                Param::int64(
                    "bytes_monthly_limit",
                    limits.bytes_monthly_limit.unwrap_or(-1),
                ),
                Param::int64(
                    "bytes_per_job_limit",
                    limits.bytes_per_job_limit.unwrap_or(-1),
                ),
                Param::timestamp("now", Utc::now()),
            ],
        )
        .await?;
    if changed == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    Active,
    Suspended,
}

pub async fn set_status(
    warehouse: &Warehouse,
    org: &OrgSlug,
    status: OrgStatus,
) -> Result<(), ServiceError> {
    let value = match status {
        OrgStatus::Active => "ACTIVE",
        OrgStatus::Suspended => "SUSPENDED",
    };
    let changed = warehouse
        .execute(
            &sql::ORG_SET_STATUS,
            &[
                Param::string("org_slug", org.as_str()),
                Param::string("status", value),
                Param::timestamp("now", Utc::now()),
            ],
        )
        .await?;
    if changed == 0 {
        return Err(ServiceError::NotFound);
    }
    Ok(())
}

pub struct OrgPage {
    pub orgs: Vec<OrgView>,
    pub next_page_token: Option<String>,
}

/// Orgs in slug order; the page token is the last slug of the previous page (validated as a
/// slug, so a crafted token is refused).
pub async fn list(
    warehouse: &Warehouse,
    page_token: Option<&str>,
    limit: usize,
) -> Result<OrgPage, ServiceError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    let after = match page_token {
        None => String::new(),
        Some(token) => {
            let invalid = || ServiceError::Invalid("malformed page_token".into());
            let bytes = B64URL.decode(token).map_err(|_| invalid())?;
            let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
            OrgSlug::parse(&raw).map_err(|_| invalid())?.to_string()
        }
    };
    let rows: Vec<ProfileRow> = warehouse
        .query(
            &sql::ORGS_LIST,
            &[
                Param::string("after_slug", after),
                Param::int64("limit", limit as i64 + 1),
            ],
        )
        .await?;
    let more = rows.len() > limit;
    let orgs: Vec<OrgView> = rows.into_iter().take(limit).map(OrgView::from).collect();
    let next_page_token = match (more, orgs.last()) {
        (true, Some(last)) => Some(B64URL.encode(last.org_slug.as_bytes())),
        _ => None,
    };
    Ok(OrgPage {
        orgs,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_caps_are_the_per_job_cap_and_what_the_budgets_left_today_and_this_month() {
        const TIB: i64 = 1 << 40;
        let quota: QuotaView = serde_json::from_value(serde_json::json!({
            "org_slug": "acme", "daily_limit": 6, "monthly_limit": 180, "concurrent_limit": 1,
            "day": "2026-12-05", "runs_today": 3, "month": "2026-12-01", "runs_month": 9,
            "active_run_ids": [], "queue_limit": 10,
            "bytes_daily_limit": 2 * TIB, "bytes_monthly_limit": 10 * TIB,
            "bytes_per_job_limit": TIB, "bytes_today": TIB / 2, "bytes_month": 3 * TIB,
        }))
        .unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let same_day = quota.caps(at("2026-12-05T23:59:00Z"));
        assert_eq!(
            same_day,
            crate::cost::cap::OrgCaps {
                per_job: Some(TIB),
                daily_left: Some(2 * TIB - TIB / 2),
                monthly_left: Some(7 * TIB),
            }
        );
        // The next day starts with its whole daily budget; the month goes on.
        let next_day = quota.caps(at("2026-12-06T00:00:01Z"));
        assert_eq!(next_day.daily_left, Some(2 * TIB));
        assert_eq!(next_day.monthly_left, Some(7 * TIB));
        let next_month = quota.caps(at("2027-01-01T00:00:01Z"));
        assert_eq!(next_month.monthly_left, Some(10 * TIB));
        let unlimited = QuotaView {
            bytes_daily_limit: None,
            bytes_monthly_limit: None,
            bytes_per_job_limit: None,
            ..quota
        };
        assert_eq!(
            unlimited.caps(at("2026-12-05T12:00:00Z")),
            crate::cost::cap::OrgCaps::default()
        );
    }

    fn request(slug: &str, plan: &str) -> OnboardRequest {
        OnboardRequest {
            org_slug: slug.into(),
            company_name: "Acme Inc".into(),
            admin_email: "admin@acme.test".into(),
            plan: plan.into(),
            quota: None,
            key_name: None,
        }
    }

    #[test]
    fn a_first_key_name_is_trimmed_and_one_outside_the_form_names_key_name() {
        let mut named = request("acme", "STARTER");
        named.key_name = Some("  ci bot ".into());
        assert_eq!(named.parse().unwrap().key_name.unwrap().as_str(), "ci bot");
        let mut bad = request("acme", "STARTER");
        bad.key_name = Some("a/b".into());
        assert!(matches!(
            bad.parse(),
            Err(ServiceError::InvalidField(p)) if p.field == "key_name"
        ));
    }

    #[test]
    fn a_valid_request_gets_its_plan_limits() {
        let org = request("acme", "PROFESSIONAL").parse().unwrap();
        assert_eq!(org.limits, Plan::Professional.limits().unwrap());
    }

    #[test]
    fn enterprise_needs_explicit_limits_and_others_refuse_them() {
        assert!(request("acme", "ENTERPRISE").parse().is_err());
        let mut r = request("acme", "ENTERPRISE");
        r.quota = Some(QuotaLimits {
            daily_limit: 500,
            monthly_limit: 10_000,
            concurrent_limit: 10,
            queue_limit: None,
            bytes_daily_limit: None,
            bytes_monthly_limit: None,
            bytes_per_job_limit: None,
        });
        assert_eq!(r.clone().parse().unwrap().limits.daily_limit, 500);
        r.plan = "STARTER".into();
        assert!(r.parse().is_err());
    }

    #[test]
    fn bad_fields_are_invalid() {
        assert!(request("A-cme", "STARTER").parse().is_err());
        assert!(request("acme", "GOLD").parse().is_err());
        let mut r = request("acme", "STARTER");
        r.admin_email = "not-an-email".into();
        assert!(r.parse().is_err());
        let mut r = request("acme", "STARTER");
        r.company_name = "x".repeat(201);
        assert!(r.parse().is_err());
        let mut r = request("acme", "STARTER");
        r.company_name = "   ".into();
        assert!(r.parse().is_err());
    }
}
