use std::process::ExitCode;

use quarry::settings::Settings;
use quarry::startup::Application;
use quarry::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("quarry: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init("info", std::io::stdout);
    if settings.disable_auth {
        if settings.environment == quarry::settings::Environment::Development {
            tracing::warn!("AUTHENTICATION IS DISABLED (DISABLE_AUTH=true, development only)");
        } else {
            tracing::warn!("DISABLE_AUTH is ignored outside development");
        }
    }
    tracing::info!(
        environment = settings.environment.as_str(),
        bind = %settings.bind_addr,
        meta_dataset = %settings.meta_dataset,
        emulator = settings.bigquery_emulator_host.is_some(),
        "starting quarry"
    );
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            eprintln!("quarry: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(port = app.port(), "listening");
    match app.serve_until_signal().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}
