//! Every route of the service. Each is declared once, beside its handler, in its module's
//! `ROUTES` ([`RouteSpec`]): the router registers exactly those and `/openapi.json` documents
//! exactly those, so a route cannot be served without its access level and its documentation.

pub mod admin;
pub mod docs;
pub mod health;
pub mod integrations;
pub mod keys;
pub mod live;
pub mod me;
pub mod notifications;
pub mod openapi;
pub mod orchestration;
pub mod orgs;
pub mod pipelines;
pub mod schedules;
pub mod ui;

use actix_web::web;

pub use crate::auth::Access;
use crate::domain::Scope;

/// A schema for the OpenAPI document (see [`openapi::s`]).
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// One route, declared once beside its handler (each module's `ROUTES`): what the router
/// registers and what `/openapi.json` documents. Access and scope come from the policy type the
/// handler's `Guarded<…>` names; tests walk every declaration (every non-public route must
/// refuse a missing key, a wrong key, and another org's key).
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The scope an org key needs.
    pub scope: Option<Scope>,
    pub summary: &'static str,
    /// Query parameters: (name, what it accepts).
    pub query: &'static [(&'static str, &'static str)],
    /// The JSON body and whether it is required.
    pub request: Option<(SchemaFn, bool)>,
    /// The success status and its body.
    pub response: (u16, Option<SchemaFn>),
    /// Answers beyond the standard errors, with what they mean.
    pub also: &'static [(u16, &'static str)],
    /// Honours `Idempotency-Key` (a replay answers the first result; 422 for another request).
    pub idempotent: bool,
    /// Answers an `ETag` and honours `If-None-Match` (304 when the caller's version is current).
    pub conditional: bool,
    register: fn(&mut web::ServiceConfig),
}

impl RouteSpec {
    #[doc(hidden)]
    pub const fn new(
        method: &'static str,
        path: &'static str,
        access: Access,
        scope: Option<Scope>,
        summary: &'static str,
        register: fn(&mut web::ServiceConfig),
    ) -> Self {
        Self {
            method,
            path,
            access,
            scope,
            summary,
            query: &[],
            request: None,
            response: (200, None),
            also: &[],
            idempotent: false,
            conditional: false,
            register,
        }
    }

    pub const fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }

    /// A JSON body that must be sent.
    pub const fn body(mut self, schema: SchemaFn) -> Self {
        self.request = Some((schema, true));
        self
    }

    /// A JSON body that may be left out.
    pub const fn optional_body(mut self, schema: SchemaFn) -> Self {
        self.request = Some((schema, false));
        self
    }

    pub const fn returns(mut self, status: u16, schema: Option<SchemaFn>) -> Self {
        self.response = (status, schema);
        self
    }

    pub const fn also(mut self, answers: &'static [(u16, &'static str)]) -> Self {
        self.also = answers;
        self
    }

    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    pub const fn conditional(mut self) -> Self {
        self.conditional = true;
        self
    }
}

/// `route!(get "/path" => handler, Policy, "summary")`: a [`RouteSpec`] whose access and scope
/// are the policy's (`Public`, `Root`, `OrgKey<S>`, `OrgOrRoot<S>`: the type the handler's
/// `Guarded<…>` names), to be refined with the builder methods.
macro_rules! route {
    ($method:ident $path:literal => $handler:path, $policy:ty, $summary:literal) => {
        $crate::routes::RouteSpec::new(
            stringify!($method),
            $path,
            <$policy as $crate::auth::Declares>::ACCESS,
            <$policy as $crate::auth::Declares>::SCOPE,
            $summary,
            |cfg| {
                cfg.route($path, actix_web::web::$method().to($handler));
            },
        )
    };
}
pub(crate) use route;

/// Every module's routes, in registration order (actix tries them in this order).
static MODULES: &[&[RouteSpec]] = &[
    health::ROUTES,
    docs::ROUTES,
    ui::ROUTES,
    me::ROUTES,
    admin::ROUTES,
    orgs::ROUTES,
    keys::ROUTES,
    integrations::ROUTES,
    notifications::ROUTES,
    pipelines::ROUTES,
    live::ROUTES,
    orchestration::ROUTES,
    schedules::ROUTES,
];

/// Every route of the service.
pub fn all() -> impl Iterator<Item = &'static RouteSpec> {
    MODULES.iter().flat_map(|routes| routes.iter())
}

/// The README's API table, generated from the route declarations (a unit test fails when the
/// README differs; `QUARRY_WRITE_ROUTES_DOCS=1 cargo test --lib routes` rewrites it).
pub fn readme_table() -> String {
    let mut out = String::from("| Route | Who | What |\n|---|---|---|\n");
    for spec in all() {
        let scope = spec.scope.map(|s| format!(" (`{}`)", s.as_str()));
        let who = match (spec.access, scope) {
            (Access::Public, _) => "anyone".to_string(),
            (Access::Root, _) => "root".to_string(),
            (Access::Org, Some(scope)) => format!("that org's key{scope}"),
            (Access::Org, None) => "that org's key".to_string(),
            (Access::OrgOrRoot, Some(scope)) => format!("root or that org{scope}"),
            (Access::OrgOrRoot, None) => "either key".to_string(),
        };
        out.push_str(&format!(
            "| `{} {}` | {who} | {} |\n",
            spec.method.to_uppercase(),
            spec.path.replace(":.*}", "}"),
            spec.summary.replace('|', "\\|")
        ));
    }
    out
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for spec in all() {
        (spec.register)(cfg);
    }
}

/// Parses the `{org_slug}` path segment (400 when malformed).
pub fn org_from_path(raw: &str) -> Result<crate::domain::OrgSlug, crate::http::error::ApiError> {
    crate::domain::OrgSlug::parse(raw).map_err(crate::http::error::ApiError::bad_request)
}

#[cfg(test)]
mod readme_tests {
    /// The README's API table is the route declarations; with `QUARRY_WRITE_ROUTES_DOCS=1`
    /// this test rewrites it instead of failing.
    #[test]
    fn the_readme_api_table_is_the_route_declarations() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- routes:begin -->\n", "<!-- routes:end -->");
        let start = readme.find(begin).expect("README marks its API table") + begin.len();
        let stop = readme.find(end).expect("README marks its API table");
        let expected = super::readme_table();
        if std::env::var("QUARRY_WRITE_ROUTES_DOCS").is_ok_and(|v| v == "1") {
            let updated = format!("{}{expected}{}", &readme[..start], &readme[stop..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            assert_eq!(
                &readme[start..stop],
                expected,
                "the README's API table is generated from the route declarations: run \
                 QUARRY_WRITE_ROUTES_DOCS=1 cargo test --lib routes"
            );
        }
    }
}
