//! Org API key routes: rotate (new key shown once; the old one lives on for a grace period),
//! list (metadata only), revoke.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;

use super::openapi::s;
use super::org_from_path;
use super::{RouteSpec, route};
use crate::api_keys;
use crate::audit::{self, AuditEvent};
use crate::auth::{AuthState, Caller, Guarded, OrgOrRoot, scopes};
use crate::domain::Scope;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::kms::Kms;
use crate::page_token::PageTokens;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(post "/api/v1/organizations/{org_slug}/api-keys/rotate" => rotate, OrgOrRoot<scopes::KeysManage>, "Issue a new key; the old one is revoked after the grace period")
        .optional_body(s::<RotateRequest>)
        .returns(201, Some(s::<super::openapi::IssuedKey>))
        .also(&[(409, "Too many live API keys: revoke one first")]),
    route!(get "/api/v1/organizations/{org_slug}/api-keys" => list, OrgOrRoot<scopes::KeysManage>, "Key metadata, newest first, 100 per page")
        .query(&[("page_token", "next_page_token of the previous page")])
        .returns(200, Some(s::<super::openapi::KeyList>)),
    route!(delete "/api/v1/organizations/{org_slug}/api-keys/{key_id}" => revoke, OrgOrRoot<scopes::KeysManage>, "Revoke a key now")
        .returns(204, None),
];

/// Longest grace period for a rotated key: 7 days.
pub const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;
/// Longest lifetime of a key given an expiry: 2 years.
pub const MAX_EXPIRY_SECONDS: i64 = 2 * 365 * 24 * 3600;

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The key to replace; defaults to the calling key (required for the root key).
    #[serde(default)]
    pub key_id: Option<String>,
    /// How long the replaced key keeps working: 0 (default) revokes it now; at most 7 days.
    #[serde(default)]
    pub grace_period_seconds: Option<i64>,
    /// Scopes of the new key; defaults to the replaced key's.
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
    /// The new key expires after this many seconds (default: when the key it replaces expires,
    /// or never). A key never outlives the key that minted it.
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
    /// A name for people (1-64 letters, digits, spaces, dots, underscores or dashes), shown
    /// with the key id as the actor of what the new key does.
    #[serde(default)]
    pub name: Option<String>,
}

pub async fn rotate(
    caller: Guarded<OrgOrRoot<scopes::KeysManage>>,
    warehouse: web::Data<Warehouse>,
    kms: web::Data<dyn Kms>,
    auth: web::Data<AuthState>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    // The body is optional: empty means every default.
    let body: RotateRequest = body.json_or_default().await?;
    let grace = body.grace_period_seconds.unwrap_or(0);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::bad_request(
            "grace_period_seconds must be 0-604800",
        ));
    }
    let expires_at = match body.expires_in_seconds {
        None => None,
        // In microseconds, as stored: what the answer says is what later reads say.
        Some(s) if (1..=MAX_EXPIRY_SECONDS).contains(&s) => {
            DateTime::from_timestamp_micros((Utc::now() + Duration::seconds(s)).timestamp_micros())
        }
        Some(_) => return Err(ApiError::bad_request("expires_in_seconds out of range")),
    };
    let old_key_id = match (&body.key_id, caller.principal()) {
        (Some(id), _) => id.clone(),
        (None, Caller::Org(p)) => p.key_id.clone(),
        (None, Caller::Root) => {
            return Err(ApiError::bad_request(
                "key_id is required with the root key",
            ));
        }
    };
    let old = api_keys::find(&warehouse, &org, &old_key_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Bounded by the parent's expiry: a rotation never extends a key's life.
    let expires_at = match (expires_at, old.expires_at) {
        (Some(asked), Some(parent)) => Some(asked.min(parent)),
        (None, parent) => parent,
        (asked, None) => asked,
    };
    // With a grace period both keys stay live for a while: that needs room under the cap.
    if grace > 0
        && api_keys::count_live(&warehouse, &org, Utc::now()).await? >= api_keys::MAX_LIVE_KEYS
    {
        return Err(ApiError::TooManyKeys);
    }
    let scopes: Vec<Scope> = match body.scopes {
        Some(s) => Scope::normalize(&s),
        None => old.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    };
    if let Caller::Org(p) = caller.principal() {
        // A key cannot mint a key with more power than itself.
        if !scopes.iter().all(|s| p.scopes.contains(s)) {
            return Err(ApiError::MissingScope);
        }
    }
    let name =
        api_keys::KeyName::parse_field(body.name.as_deref(), "name").map_err(ApiError::invalid)?;
    let issued = api_keys::issue(
        &warehouse,
        kms.get_ref(),
        &org,
        &scopes,
        expires_at,
        name.as_ref(),
    )
    .await?;
    auth.key_created(&issued.key.hash_hex()).await;
    let old_revoked_at = Utc::now() + Duration::seconds(grace);
    api_keys::revoke(&warehouse, &org, &old_key_id, old_revoked_at).await?;
    auth.invalidate_key(&old_key_id);
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor: caller.actor(),
            action: "api_key.rotate",
            resource_type: "api_key",
            resource_id: Some(issued.key_id.clone()),
            details: json!({"replaced_key_id": old_key_id, "grace_period_seconds": grace,
                            "scopes": issued.scopes}),
        },
    )
    .await;
    Ok(HttpResponse::Created().json(json!({
        "api_key": issued.key.expose(),
        "key_id": issued.key_id,
        "display_prefix": issued.display_prefix,
        "scopes": issued.scopes,
        "name": name,
        "expires_at": issued.expires_at,
        "replaced_key_id": old_key_id,
        "replaced_key_revoked_at": old_revoked_at,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyListQuery {
    pub page_token: Option<String>,
}

/// The org's keys, newest first, 100 per page (`next_page_token` and `X-Next-Page-Token` lead
/// to the next page; the token is signed and bound to the org).
pub async fn list(
    _caller: Guarded<OrgOrRoot<scopes::KeysManage>>,
    warehouse: web::Data<Warehouse>,
    tokens: web::Data<PageTokens>,
    path: web::Path<String>,
    query: web::Query<KeyListQuery>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let scope = PageTokens::scope_of(&["api_keys", org.as_str()]);
    let after = match &query.page_token {
        None => None,
        Some(token) => {
            let cursor = tokens.open(token, &scope).map_err(ApiError::bad_request)?;
            Some((cursor.t, cursor.id))
        }
    };
    let (keys, more) = api_keys::list(&warehouse, &org, after).await?;
    let next = match keys.last() {
        Some(last) if more => Some(tokens.issue(
            last.created_at.map_or(0, |t| t.timestamp_micros()),
            &last.key_id,
            (0, 0),
            &scope,
        )),
        _ => None,
    };
    let mut response = HttpResponse::Ok();
    if let Some(token) = &next {
        response.insert_header(("X-Next-Page-Token", token.as_str()));
    }
    Ok(response.json(json!({"api_keys": keys, "next_page_token": next})))
}

pub async fn revoke(
    caller: Guarded<OrgOrRoot<scopes::KeysManage>>,
    warehouse: web::Data<Warehouse>,
    auth: web::Data<AuthState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_org, key_id) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    if uuid::Uuid::parse_str(&key_id).is_err() {
        return Err(ApiError::NotFound);
    }
    api_keys::revoke(&warehouse, &org, &key_id, Utc::now()).await?;
    auth.invalidate_key(&key_id);
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor: caller.actor(),
            action: "api_key.revoke",
            resource_type: "api_key",
            resource_id: Some(key_id.clone()),
            details: json!({}),
        },
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
