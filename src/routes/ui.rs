//! `/ui`: the web view, a page over the service's own API (assets compiled into the binary, no
//! external network), under the same strict Content-Security-Policy as `/docs`. The page keeps
//! the key in the tab's sessionStorage and sends it as a header; the server never sees it here.

super::docs::page_assets!(
    "../../assets/ui/index.html",
    "../../assets/ui/app.js",
    "../../assets/ui/app.css"
);
