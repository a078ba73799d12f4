//! Builds the application from settings: one warehouse client, the middleware stack, the routes,
//! and a listener (port 0 picks a free port, which tests use).

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::auth::{self, AuthState};
use crate::http;
use crate::kms::{self, KmsError, SharedKms};
use crate::request_id;
use crate::routes;
use crate::settings::Settings;
use crate::warehouse::{Warehouse, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot build the BigQuery client: {0}")]
    Warehouse(#[from] WarehouseError),
    #[error("cannot set up the KMS: {0}")]
    Kms(#[from] KmsError),
}

pub struct Application {
    port: u16,
    server: Server,
    warehouse: Warehouse,
    kms: SharedKms,
    auth: web::Data<AuthState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let warehouse = Warehouse::connect(&settings).await?;
        let kms = kms::from_settings(&settings).await?;
        let auth = web::Data::new(AuthState::new(&settings, warehouse.clone()));
        auth::spawn_background(auth.clone(), settings.last_used_flush);
        let listener =
            TcpListener::bind(settings.bind_addr).map_err(|source| StartupError::Bind {
                addr: settings.bind_addr.to_string(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: settings.bind_addr.to_string(),
                source,
            })?
            .port();
        let server = serve(
            listener,
            settings,
            warehouse.clone(),
            kms.clone(),
            auth.clone(),
        )
        .map_err(|source| StartupError::Bind {
            addr: format!("port {port}"),
            source,
        })?;
        Ok(Self {
            port,
            server,
            warehouse,
            kms,
            auth,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared warehouse handle (its job counters are what tests and benchmarks read).
    pub fn warehouse(&self) -> Warehouse {
        self.warehouse.clone()
    }

    /// The KMS the app seals secrets with (tests decrypt stored values through it).
    pub fn kms(&self) -> SharedKms {
        self.kms.clone()
    }

    /// The shared auth state (tests flush `last_used_at` through it).
    pub fn auth(&self) -> web::Data<AuthState> {
        self.auth.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn serve(
    listener: TcpListener,
    settings: Settings,
    warehouse: Warehouse,
    kms: SharedKms,
    auth: web::Data<AuthState>,
) -> std::io::Result<Server> {
    let kms: web::Data<dyn kms::Kms> = web::Data::from(kms);
    let cors_origins = settings.cors_origins.clone();
    let settings = web::Data::new(settings);
    let warehouse = web::Data::new(warehouse);
    let server = HttpServer::new(move || {
        App::new()
            // Last registered runs first: request id outermost, then CORS, headers, body cap.
            .wrap(from_fn(http::body_limit))
            .wrap(http::security_headers())
            .wrap(http::cors(&cors_origins))
            .wrap(from_fn(request_id::middleware))
            .app_data(http::json_config())
            .app_data(http::path_config())
            .app_data(http::query_config())
            .app_data(auth.clone())
            .app_data(settings.clone())
            .app_data(warehouse.clone())
            .app_data(kms.clone())
            .configure(routes::configure)
            .default_service(web::to(http::not_found))
    })
    .listen(listener)?
    .run();
    Ok(server)
}
