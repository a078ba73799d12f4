//! Who am I: the caller as the service sees it. Lets a client check a key without side effects;
//! with a warm key cache it costs no BigQuery call.

use actix_web::HttpResponse;
use serde_json::json;

use super::openapi::s;
use super::{RouteSpec, route};
use crate::auth::{Caller, Guarded, OrgOrRoot, scopes};
use crate::http::error::ApiError;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/api/v1/whoami" => whoami, OrgOrRoot<scopes::Any>, "The caller as the service sees it")
        .returns(200, Some(s::<super::openapi::WhoAmI>)),
];

pub async fn whoami(caller: Guarded<OrgOrRoot<scopes::Any>>) -> Result<HttpResponse, ApiError> {
    let body = match caller.principal() {
        Caller::Root => json!({"principal": "root"}),
        Caller::Org(p) => json!({
            "principal": "org_key",
            "org_slug": p.org_slug,
            "key_id": p.key_id,
            "scopes": p.scopes,
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}
