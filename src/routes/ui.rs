//! `/ui`: the web view, a page over the service's own API (assets compiled into the binary, no
//! external network), under the same strict Content-Security-Policy as `/docs`. The page keeps
//! the key in the tab's sessionStorage and sends it as a header; the server never sees it here.

use actix_web::HttpResponse;

use super::docs::asset;

const INDEX: &str = include_str!("../../assets/ui/index.html");
const SCRIPT: &str = include_str!("../../assets/ui/app.js");
const STYLE: &str = include_str!("../../assets/ui/app.css");

pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}
