//! `/ui`: the web view, a page over the service's own API (assets compiled into the binary, no
//! external network), under the same strict Content-Security-Policy as `/docs`. The page keeps
//! the key in the tab's sessionStorage and sends it as a header; the server never sees it here.

use super::{RouteSpec, route};
use crate::auth::Public;

/// This module's routes, declared beside their handlers (see [`RouteSpec`]).
#[rustfmt::skip]
pub(super) static ROUTES: &[RouteSpec] = &[
    route!(get "/ui" => index, Public, "The web view: runs, steps, graphs, stats, quota, catalog, schedules, backfills, alerts, and their actions (HTML)"),
    route!(get "/ui/app.js" => script, Public, "The web view's script"),
    route!(get "/ui/app.css" => style, Public, "The web view's style"),
];

super::docs::page_assets!(
    "../../assets/ui/index.html",
    "../../assets/ui/app.js",
    "../../assets/ui/app.css"
);
