//! Alert routes: an org's channels (added, listed, deleted, tested) and its deliveries. A
//! channel's URL is never answered beyond its scheme and host; a webhook's signing secret only
//! once, when it is added.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::openapi::s;
use super::org_from_path;
use super::{RouteSpec, route};
use crate::audit::{self, AuditEvent};
use crate::auth::{Guarded, OrgOrRoot, scopes};
use crate::clock::SharedClock;
use crate::domain::OrgSlug;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::kms::SharedKms;
use crate::notifications::{self, NewChannel, Notifier};
use crate::settings::Settings;
use crate::warehouse::Warehouse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(post "/api/v1/notifications/{org_slug}/channels" => create, OrgOrRoot<scopes::NotificationsWrite>, "Add an alert channel: a signed webhook or a Slack incoming webhook, and the run ends it gets")
        .body(s::<NewChannel>)
        .returns(201, Some(s::<notifications::CreatedChannel>))
        .also(&[(409, "the org already has 10 channels")]),
    route!(get "/api/v1/notifications/{org_slug}/channels" => list, OrgOrRoot<scopes::NotificationsRead>, "The org's alert channels (scheme and host of each URL only)")
        .returns(200, Some(s::<super::openapi::ChannelList>)),
    route!(delete "/api/v1/notifications/{org_slug}/channels/{channel_id}" => delete, OrgOrRoot<scopes::NotificationsWrite>, "Delete an alert channel")
        .returns(204, None),
    route!(post "/api/v1/notifications/{org_slug}/channels/{channel_id}/test" => test, OrgOrRoot<scopes::NotificationsWrite>, "Send a test alert to a channel now")
        .returns(202, Some(s::<super::openapi::TestDelivery>)),
    route!(get "/api/v1/notifications/{org_slug}/deliveries" => deliveries, OrgOrRoot<scopes::NotificationsRead>, "The org's alert deliveries of the last 7 days, the last attempt of each, newest first (at most 100)")
        .returns(200, Some(s::<super::openapi::DeliveryList>)),
];

/// The `{org_slug}` and `{channel_id}` of a channel route (a channel id that is not a UUID is
/// unknown).
fn org_and_channel(path: web::Path<(String, String)>) -> Result<(OrgSlug, String), ApiError> {
    let (raw_org, raw_channel) = path.into_inner();
    let org = org_from_path(&raw_org)?;
    let channel = uuid::Uuid::parse_str(&raw_channel)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::NotFound)?;
    Ok((org, channel))
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    caller: Guarded<OrgOrRoot<scopes::NotificationsWrite>>,
    warehouse: web::Data<Warehouse>,
    kms: web::Data<dyn crate::kms::Kms>,
    settings: web::Data<Settings>,
    notifier: web::Data<Notifier>,
    clock: web::Data<SharedClock>,
    path: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let request: NewChannel = body.json().await?;
    let actor = caller.actor();
    let kms: SharedKms = kms.into_inner();
    let created = notifications::create(
        &warehouse,
        &kms,
        &settings.notify,
        &org,
        request,
        &actor,
        clock.now(),
    )
    .await?;
    notifier.forget(&org).await;
    let channel = &created.channel;
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor,
            action: "notification_channel.create",
            resource_type: "notification_channel",
            resource_id: Some(channel.channel_id.clone()),
            details: json!({"kind": channel.kind, "url_hint": channel.url_hint,
                            "events": channel.events, "pipelines": channel.pipelines}),
        },
    )
    .await;
    Ok(HttpResponse::Created().json(created))
}

pub async fn list(
    _caller: Guarded<OrgOrRoot<scopes::NotificationsRead>>,
    warehouse: web::Data<Warehouse>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let channels = notifications::list(&warehouse, &org).await?;
    Ok(HttpResponse::Ok().json(json!({ "channels": channels })))
}

pub async fn delete(
    caller: Guarded<OrgOrRoot<scopes::NotificationsWrite>>,
    warehouse: web::Data<Warehouse>,
    notifier: web::Data<Notifier>,
    clock: web::Data<SharedClock>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, channel_id) = org_and_channel(path)?;
    notifications::delete(&warehouse, &org, &channel_id, clock.now()).await?;
    notifier.forget(&org).await;
    audit::record(
        &warehouse,
        AuditEvent {
            org_slug: Some(&org),
            actor: caller.actor(),
            action: "notification_channel.delete",
            resource_type: "notification_channel",
            resource_id: Some(channel_id),
            details: json!({}),
        },
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn test(
    _caller: Guarded<OrgOrRoot<scopes::NotificationsWrite>>,
    notifier: web::Data<Notifier>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (org, channel_id) = org_and_channel(path)?;
    let delivery_id = notifier.into_inner().test(&org, &channel_id).await?;
    Ok(HttpResponse::Accepted().json(json!({ "delivery_id": delivery_id })))
}

pub async fn deliveries(
    _caller: Guarded<OrgOrRoot<scopes::NotificationsRead>>,
    warehouse: web::Data<Warehouse>,
    clock: web::Data<SharedClock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let org = org_from_path(&path)?;
    let deliveries = notifications::deliveries(&warehouse, &org, clock.now()).await?;
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries })))
}
