//! Builds the application from settings: one warehouse client, the middleware stack, the routes,
//! and a listener (port 0 picks a free port, which tests use).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::admission::Admission;
use crate::auth::{self, AuthState};
use crate::clock::{SharedClock, SystemClock};
use crate::definitions::CatalogError;
use crate::executor::{Executor, Outside};
use crate::http;
use crate::http::request_id;
use crate::integrations::{self, Registry, RegistryError};
use crate::kms::{self, KmsError, SharedKms};
use crate::metrics::Metrics;
use crate::pipelines::Catalog;
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
    #[error("invalid pipeline definition: {0}")]
    Catalog(#[from] CatalogError),
    #[error("invalid provider definition: {0}")]
    Providers(#[from] RegistryError),
}

pub struct Application {
    port: u16,
    server: Server,
    warehouse: Warehouse,
    kms: SharedKms,
    auth: web::Data<AuthState>,
    executor: Executor,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], reading time from `clock` (tests move it across days).
    pub async fn build_with_clock(
        settings: Settings,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        let providers = Arc::new(Registry::load(
            &settings.providers_dir,
            &settings.provider_base_urls,
            settings.environment,
        )?);
        let catalog = Arc::new(Catalog::load(
            &settings.executor.pipelines_dir,
            &settings.executor.sql_dir,
            &providers,
            settings.environment,
        )?);
        let http = integrations::http_client(settings.timeouts.http_client);
        // Steps get the client bounded only by the read timeout and their own timeouts; every
        // other call (API requests, admission, logs, reaper) has the API deadline.
        let steps_warehouse = Warehouse::connect(&settings).await?;
        let warehouse = steps_warehouse.with_deadline(settings.timeouts.bigquery_api);
        let kms = kms::from_settings(&settings).await?;
        let metrics = Arc::new(Metrics::new(settings.metrics_org_labels));
        let auth = web::Data::new(AuthState::new(
            &settings,
            warehouse.clone(),
            metrics.clone(),
        ));
        auth::spawn_background(auth.clone(), settings.last_used_flush);
        let admission = Admission::start(
            warehouse.clone(),
            clock.clone(),
            settings.admission.clone(),
            metrics.clone(),
            settings.executor.concurrent_retry_after_secs,
        );
        let executor = Executor::start(
            warehouse.clone(),
            steps_warehouse,
            catalog,
            clock.clone(),
            settings.executor.clone(),
            admission.clone(),
            Outside {
                kms: kms.clone(),
                http: http.clone(),
                providers: providers.clone(),
                metrics: metrics.clone(),
            },
        );
        // Every run end the run log writes goes by the notifier (alerts).
        let notifier = crate::notifications::Notifier::start(
            warehouse.clone(),
            kms.clone(),
            settings.notify.clone(),
            metrics.clone(),
        );
        notifier.follow(executor.observe_run_events());
        if settings.executor.scheduler_enabled {
            crate::schedules::scheduler::spawn(
                executor.clone(),
                warehouse.clone(),
                settings.executor.scheduler_interval,
                settings.executor.idle_poll_max,
                executor.scheduler_wake(),
                executor.stopped(),
            );
        }
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
            Shared {
                warehouse: warehouse.clone(),
                kms: kms.clone(),
                auth: auth.clone(),
                executor: executor.clone(),
                admission,
                clock,
                http,
                providers,
                notifier,
                metrics,
            },
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
            executor,
        })
    }

    /// The executor (tests read its state and drive its shutdown).
    pub fn executor(&self) -> Executor {
        self.executor.clone()
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

    /// Serves until the server stops. Signals are not handled here: see [`Application::serve_until_signal`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: new runs are refused (503),
    /// running ones get the grace period, slots are released and logs flushed, then HTTP stops.
    pub async fn serve_until_signal(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let executor = self.executor.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            executor.shutdown().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What every worker shares.
struct Shared {
    warehouse: Warehouse,
    kms: SharedKms,
    auth: web::Data<AuthState>,
    executor: Executor,
    admission: Admission,
    clock: SharedClock,
    http: reqwest::Client,
    providers: Arc<Registry>,
    metrics: Arc<Metrics>,
    notifier: Arc<crate::notifications::Notifier>,
}

fn serve(listener: TcpListener, settings: Settings, shared: Shared) -> std::io::Result<Server> {
    let Shared {
        warehouse,
        kms,
        auth,
        executor,
        admission,
        clock,
        http,
        providers,
        metrics,
        notifier,
    } = shared;
    let admission = web::Data::new(admission);
    let metrics = web::Data::from(metrics);
    let page_tokens = web::Data::new(crate::page_token::PageTokens::new(&settings));
    let http = web::Data::new(http);
    let providers = web::Data::from(providers);
    let kms: web::Data<dyn kms::Kms> = web::Data::from(kms);
    let executor = web::Data::new(executor);
    let live = web::Data::new(crate::live::LiveRuns::new(
        warehouse.clone(),
        clock.clone(),
        settings.live.clone(),
    ));
    // A run event this instance wrote makes the live model read its run again at the next look.
    let written = live.clone();
    executor
        .run_log()
        .on_written(Arc::new(move |org, run_id| written.written(org, run_id)));
    let clock = web::Data::new(clock);
    let cors_origins = settings.cors_origins.clone();
    let body_budget = web::Data::new(crate::http::body::BodyBudget::new(&settings.http));
    let readiness = web::Data::new(routes::health::Readiness::default());
    let http_limits = settings.http.clone();
    let price = web::Data::new(settings.price);
    let notifier = web::Data::from(notifier);
    let settings = web::Data::new(settings);
    let warehouse = web::Data::new(warehouse);
    let server = HttpServer::new(move || {
        App::new()
            // Last registered runs first: request id outermost, then standard error bodies,
            // CORS, headers, and refusing bodies before they are read.
            .wrap(from_fn(http::refuse_bodies))
            .wrap(http::security_headers())
            .wrap(http::cors(&cors_origins))
            .wrap(from_fn(http::standard_errors))
            .wrap(from_fn(request_id::middleware))
            .app_data(http::path_config())
            .app_data(http::query_config())
            .app_data(auth.clone())
            .app_data(settings.clone())
            .app_data(price.clone())
            .app_data(notifier.clone())
            .app_data(warehouse.clone())
            .app_data(kms.clone())
            .app_data(executor.clone())
            .app_data(live.clone())
            .app_data(admission.clone())
            .app_data(clock.clone())
            .app_data(http.clone())
            .app_data(providers.clone())
            .app_data(metrics.clone())
            .app_data(page_tokens.clone())
            .app_data(body_budget.clone())
            .app_data(readiness.clone())
            .configure(routes::configure)
            .default_service(web::to(http::not_found))
    })
    .disable_signals()
    .shutdown_timeout(1)
    .max_connections(http_limits.max_connections)
    .keep_alive(http_limits.keep_alive)
    .client_request_timeout(http_limits.head_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    .listen(listener)?
    .run();
    Ok(server)
}
