//! Integration routes: provider credentials of one org. Responses carry metadata only.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::openapi::s;
use super::org_from_path;
use super::{RouteSpec, route};
use crate::audit::{self, AuditEvent};
use crate::auth::{Guarded, OrgOrRoot, scopes};
use crate::domain::{OrgSlug, Plan};
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::integrations::{self, Provider, Registry, SetupRequest};
use crate::kms::Kms;
use crate::orgs;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(post "/api/v1/integrations/{org_slug}/{provider}/setup" => setup, OrgOrRoot<scopes::IntegrationsWrite>, "Check, test, seal and store a provider credential")
        .body(s::<SetupBody>)
        .returns(201, Some(s::<crate::integrations::CredentialView>)),
    route!(post "/api/v1/integrations/{org_slug}/{provider}/validate" => validate, OrgOrRoot<scopes::IntegrationsWrite>, "Re-test the stored credential")
        .returns(200, Some(s::<crate::integrations::CredentialView>)),
    route!(get "/api/v1/integrations/{org_slug}" => list, OrgOrRoot<scopes::IntegrationsRead>, "The org's credentials (metadata only)")
        .returns(200, Some(s::<super::openapi::IntegrationList>)),
    route!(get "/api/v1/integrations/{org_slug}/{provider}" => get, OrgOrRoot<scopes::IntegrationsRead>, "One provider's credential (metadata only)")
        .returns(200, Some(s::<crate::integrations::CredentialView>)),
    route!(delete "/api/v1/integrations/{org_slug}/{provider}" => delete, OrgOrRoot<scopes::IntegrationsWrite>, "Deactivate the provider's credential")
        .returns(204, None),
];

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    credential: String,
    #[serde(default)]
    credential_name: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// The audit event of a credential change: the provider and outcome, never the secret.
async fn audit_credential(
    warehouse: &Warehouse,
    org: &OrgSlug,
    actor: String,
    action: &'static str,
    provider: &Provider,
    view: &integrations::CredentialView,
) {
    audit::record(
        warehouse,
        AuditEvent {
            org_slug: Some(org),
            actor,
            action,
            resource_type: "integration",
            resource_id: Some(view.credential_id.clone()),
            details: json!({"provider": provider.name, "validation_status": view.validation_status}),
        },
    )
    .await;
}

/// The `{org_slug}` and `{provider}` of an integration route (an unregistered provider is 404).
fn org_and_provider(
    path: web::Path<(String, String)>,
    registry: &Registry,
) -> Result<(OrgSlug, &Provider), ApiError> {
    let (raw_org, name) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let provider = registry.get(&name).ok_or(ApiError::NotFound)?;
    Ok((org, provider))
}

async fn plan_of(warehouse: &Warehouse, org: &OrgSlug) -> Result<Plan, ApiError> {
    let profile = orgs::profile(warehouse, org)
        .await?
        .ok_or(ApiError::NotFound)?;
    Plan::parse(&profile.plan).ok_or_else(|| ApiError::internal("stored plan unknown"))
}

#[allow(clippy::too_many_arguments)]
pub async fn setup(
    caller: Guarded<OrgOrRoot<scopes::IntegrationsWrite>>,
    warehouse: web::Data<Warehouse>,
    kms: web::Data<dyn Kms>,
    http: web::Data<reqwest::Client>,
    registry: web::Data<Registry>,
    path: web::Path<(String, String)>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (org, provider) = org_and_provider(path, &registry)?;
    let body: SetupBody = body.json().await?;
    let credential = Zeroizing::new(body.credential);
    if body
        .credential_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "credential_name: at most 100 printable characters",
        ));
    }
    let metadata = body.metadata.unwrap_or_else(|| json!({}));
    if !metadata.is_object() || metadata.to_string().len() > 4096 {
        return Err(ApiError::bad_request(
            "metadata: a JSON object of at most 4 KiB",
        ));
    }
    let plan = plan_of(&warehouse, &org).await?;
    let view = integrations::setup(
        &warehouse,
        kms.get_ref(),
        &http,
        provider,
        &org,
        plan,
        SetupRequest {
            credential,
            credential_name: body.credential_name,
            metadata,
        },
    )
    .await?;
    audit_credential(
        &warehouse,
        &org,
        caller.actor(),
        "integration.setup",
        provider,
        &view,
    )
    .await;
    Ok(HttpResponse::Created().json(view))
}

pub async fn validate(
    caller: Guarded<OrgOrRoot<scopes::IntegrationsWrite>>,
    warehouse: web::Data<Warehouse>,
    kms: web::Data<dyn Kms>,
    http: web::Data<reqwest::Client>,
    registry: web::Data<Registry>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, provider) = org_and_provider(path, &registry)?;
    let view = integrations::revalidate(&warehouse, kms.get_ref(), &http, provider, &org).await?;
    audit_credential(
        &warehouse,
        &org,
        caller.actor(),
        "integration.validate",
        provider,
        &view,
    )
    .await;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn list(
    _caller: Guarded<OrgOrRoot<scopes::IntegrationsRead>>,
    warehouse: web::Data<Warehouse>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    Ok(HttpResponse::Ok()
        .json(json!({"integrations": integrations::list(&warehouse, &org).await?})))
}

pub async fn get(
    _caller: Guarded<OrgOrRoot<scopes::IntegrationsRead>>,
    warehouse: web::Data<Warehouse>,
    registry: web::Data<Registry>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, provider) = org_and_provider(path, &registry)?;
    let view = integrations::get(&warehouse, &org, &provider.name)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn delete(
    caller: Guarded<OrgOrRoot<scopes::IntegrationsWrite>>,
    warehouse: web::Data<Warehouse>,
    registry: web::Data<Registry>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, provider) = org_and_provider(path, &registry)?;
    integrations::remove(&warehouse, &org, &provider.name).await?;
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor: caller.actor(),
            action: "integration.delete",
            resource_type: "integration",
            resource_id: Some(provider.name.clone()),
            details: json!({"provider": provider.name}),
        },
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
