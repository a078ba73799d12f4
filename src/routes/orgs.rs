//! Organization routes: onboarding (root), profiles, quotas, suspension, audit log.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::openapi::s;
use super::org_from_path;
use super::{RouteSpec, route};
use crate::admission::Admission;
use crate::audit::{self, AuditEvent, Cursor};
use crate::auth::AuthState;
use crate::auth::{Guarded, OrgOrRoot, Root, scopes};
use crate::cost::price::Price;
use crate::domain::QuotaLimits;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::idempotency;
use crate::kms::Kms;
use crate::orgs::{self, OnboardRequest, OrgStatus};
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(post "/api/v1/organizations/dryrun" => dry_run, Root, "Check an onboarding request; writes nothing")
        .body(s::<crate::orgs::OnboardRequest>)
        .returns(200, Some(s::<crate::orgs::DryRun>)),
    route!(post "/api/v1/organizations/onboard" => onboard, Root, "Onboard an org (resumable; Idempotency-Key honoured); the API key is shown once")
        .body(s::<crate::orgs::OnboardRequest>)
        .returns(201, Some(s::<super::openapi::Onboarded>))
        .idempotent(),
    route!(get "/api/v1/organizations" => list, Root, "Orgs in slug order")
        .query(super::openapi::PAGE)
        .returns(200, Some(s::<super::openapi::OrgList>)),
    route!(get "/api/v1/organizations/{org_slug}" => get, OrgOrRoot<scopes::OrgRead>, "An org's profile and quota")
        .returns(200, Some(s::<super::openapi::OrgWithQuota>)),
    route!(get "/api/v1/organizations/{org_slug}/quota" => get_quota, OrgOrRoot<scopes::OrgRead>, "Limits, usage and the runs holding slots")
        .returns(200, Some(s::<crate::orgs::QuotaView>)),
    route!(put "/api/v1/organizations/{org_slug}/quota" => put_quota, Root, "Change an org's limits")
        .body(s::<crate::domain::QuotaLimits>)
        .returns(200, Some(s::<crate::orgs::QuotaView>)),
    route!(post "/api/v1/organizations/{org_slug}/suspend" => suspend, Root, "Suspend an org: its keys stop working")
        .returns(200, Some(s::<crate::orgs::OrgView>)),
    route!(post "/api/v1/organizations/{org_slug}/reactivate" => reactivate, Root, "Reactivate a suspended org")
        .returns(200, Some(s::<crate::orgs::OrgView>)),
    route!(get "/api/v1/organizations/{org_slug}/audit-logs" => audit_logs, OrgOrRoot<scopes::OrgRead>, "The org's audit trail, newest first")
        .query(super::openapi::PAGE)
        .returns(200, Some(s::<super::openapi::AuditList>)),
];

const ONBOARD_SCOPE: &str = "onboard";

/// Checks everything onboarding needs; writes nothing.
pub async fn dry_run(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let new = body.json::<OnboardRequest>().await?.parse()?;
    Ok(HttpResponse::Ok().json(orgs::dry_run(&warehouse, &new).await?))
}

/// Creates the org, its dataset, its quota row and its first API key (returned once).
pub async fn onboard(
    _admin: Guarded<Root>,
    auth: web::Data<AuthState>,
    req: HttpRequest,
    warehouse: web::Data<Warehouse>,
    admission: web::Data<Admission>,
    kms: web::Data<dyn Kms>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let idempotency_key = idempotency::key_from(&req)?;
    let new = body.json::<OnboardRequest>().await?.parse()?;
    let request_hash = idempotency::request_hash(&new);
    if let Some(key) = &idempotency_key {
        if let Some(stored) = idempotency::lookup(&warehouse, &new.slug, ONBOARD_SCOPE, key).await?
        {
            if stored.request_hash != request_hash {
                return Err(ApiError::IdempotencyKeyReused);
            }
            let mut replay = stored.response;
            replay["api_key"] = Value::Null;
            replay["api_key_already_issued"] = Value::Bool(true);
            return Ok(HttpResponse::Ok().json(replay));
        }
    }

    let done = orgs::onboard(&warehouse, &admission, kms.get_ref(), &new).await?;
    auth.key_created(&done.key.key.hash_hex()).await;
    let mut body = json!({
        "org_slug": done.org.org_slug,
        "company_name": done.org.company_name,
        "admin_email": done.org.admin_email,
        "plan": done.org.plan,
        "status": done.org.status,
        "dataset_id": done.org.dataset_id,
        "created_at": done.org.created_at,
        "quota": done.limits,
        "api_key_id": done.key.key_id,
        "api_key_prefix": done.key.display_prefix,
        "scopes": done.key.scopes,
        "resumed": done.resumed,
    });
    if let Some(key) = &idempotency_key {
        // Stored without the key: a replay says it was already issued. A failure here must not
        // lose the key that was just issued, so it is logged, not raised.
        let stored = idempotency::store(
            &warehouse,
            &new.slug,
            ONBOARD_SCOPE,
            key,
            &request_hash,
            new.slug.as_str(),
            &body,
        )
        .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "idempotency record not stored");
        }
    }
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&new.slug),
            actor: "root".into(),
            action: "org.onboard",
            resource_type: "org",
            resource_id: Some(new.slug.to_string()),
            details: json!({"plan": new.plan, "limits": new.limits, "resumed": done.resumed,
                            "api_key_id": done.key.key_id}),
        },
    )
    .await;
    body["api_key"] = Value::String(done.key.key.expose().to_string());
    Ok(HttpResponse::Created().json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub page_token: Option<String>,
}

impl PageQuery {
    /// 1-100, default 50.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=100).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request("limit must be 1-100")),
        }
    }
}

pub async fn list(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = orgs::list(&warehouse, query.page_token.as_deref(), query.limit()?).await?;
    Ok(HttpResponse::Ok().json(json!({
        "organizations": page.orgs,
        "next_page_token": page.next_page_token,
    })))
}

pub async fn get(
    _caller: Guarded<OrgOrRoot<scopes::OrgRead>>,
    warehouse: web::Data<Warehouse>,
    price: web::Data<Price>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let profile = orgs::profile(&warehouse, &org)
        .await?
        .ok_or(ApiError::NotFound)?;
    let quota = orgs::quota(&warehouse, &org)
        .await?
        .map(|q| q.priced(**price));
    let mut body = serde_json::to_value(profile).map_err(ApiError::internal)?;
    body["quota"] = serde_json::to_value(quota).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(body))
}

pub async fn get_quota(
    _caller: Guarded<OrgOrRoot<scopes::OrgRead>>,
    warehouse: web::Data<Warehouse>,
    price: web::Data<Price>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let quota = orgs::quota(&warehouse, &org)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(quota.priced(**price)))
}

pub async fn put_quota(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
    admission: web::Data<Admission>,
    price: web::Data<Price>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let limits: QuotaLimits = body.json().await?;
    orgs::set_limits(&admission, &org, limits).await?;
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor: "root".into(),
            action: "org.quota_change",
            resource_type: "quota",
            resource_id: Some(org.to_string()),
            details: json!({"limits": limits}),
        },
    )
    .await;
    let quota = orgs::quota(&warehouse, &org)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !quota.queued_run_ids.is_empty() {
        // Raised limits may free room for the queue: the next batch admits what fits.
        admission.drain(&org);
    }
    Ok(HttpResponse::Ok().json(quota.priced(**price)))
}

async fn change_status(
    warehouse: &Warehouse,
    auth: &AuthState,
    raw: &str,
    status: OrgStatus,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(raw)?;
    orgs::set_status(warehouse, &org, status).await?;
    auth.invalidate_org(&org);
    let action = match status {
        OrgStatus::Active => "org.reactivate",
        OrgStatus::Suspended => "org.suspend",
    };
    audit::record(
        warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor: "root".into(),
            action,
            resource_type: "org",
            resource_id: Some(org.to_string()),
            details: json!({}),
        },
    )
    .await;
    let profile = orgs::profile(warehouse, &org)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(profile))
}

/// Its keys stop working at once on this instance (within the cache TTL on others).
pub async fn suspend(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
    auth: web::Data<AuthState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change_status(&warehouse, &auth, &path, OrgStatus::Suspended).await
}

pub async fn reactivate(
    _admin: Guarded<Root>,
    warehouse: web::Data<Warehouse>,
    auth: web::Data<AuthState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    change_status(&warehouse, &auth, &path, OrgStatus::Active).await
}

pub async fn audit_logs(
    _caller: Guarded<OrgOrRoot<scopes::OrgRead>>,
    warehouse: web::Data<Warehouse>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let cursor = query
        .page_token
        .as_deref()
        .map(Cursor::decode)
        .transpose()?;
    let page = audit::list(&warehouse, &org, cursor, query.limit()?).await?;
    Ok(HttpResponse::Ok().json(json!({
        "audit_logs": page.entries,
        "next_page_token": page.next_page_token,
    })))
}
