//! `/docs`: the OpenAPI document rendered as a page, from assets compiled into the binary (no
//! external network). A strict Content-Security-Policy: this origin only, no inline script.

use super::{RouteSpec, route};
use crate::auth::Public;
use actix_web::HttpResponse;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/docs" => index, Public, "This document as a page (HTML)"),
    route!(get "/docs/docs.js" => script, Public, "The page's script"),
    route!(get "/docs/docs.css" => style, Public, "The page's style"),
];

/// Scripts, styles and fetches from this origin only; nothing inline, nothing framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// A page's file, served under [`CONTENT_SECURITY_POLICY`].
pub(crate) fn page_asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .body(body)
}

/// The three handlers of a page (`index`, `script`, `style`) over files of `assets/`.
macro_rules! page_assets {
    ($index:literal, $script:literal, $style:literal) => {
        pub async fn index() -> actix_web::HttpResponse {
            $crate::routes::docs::page_asset("text/html; charset=utf-8", include_str!($index))
        }

        pub async fn script() -> actix_web::HttpResponse {
            $crate::routes::docs::page_asset(
                "text/javascript; charset=utf-8",
                include_str!($script),
            )
        }

        pub async fn style() -> actix_web::HttpResponse {
            $crate::routes::docs::page_asset("text/css; charset=utf-8", include_str!($style))
        }
    };
}
pub(crate) use page_assets;

page_assets!(
    "../../assets/docs/index.html",
    "../../assets/docs/docs.js",
    "../../assets/docs/docs.css"
);
