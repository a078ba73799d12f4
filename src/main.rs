//! `quarry serve`, `quarry check-config`, `quarry pipelines validate [DIR]`, and the client
//! commands (`quarry runs ...`, `quarry schedules ...`: see `quarry help`). A bare `quarry`
//! serves where a server's environment is set (`ENVIRONMENT`), and prints the help elsewhere.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quarry::integrations::Registry;
use quarry::pipelines::Catalog;
use quarry::settings::{Environment, Settings, VarSource};
use quarry::startup::Application;
use quarry::telemetry;
use quarry_client::{self as client, args::ClientCommand, args::Global};

/// Quarry: the service (`quarry serve`) and its client.
///
/// The client reads QUARRY_URL and QUARRY_API_KEY / QUARRY_ROOT_KEY, or a profile file
/// (~/.config/quarry/profiles, mode 0600). Keys are never command-line arguments.
#[derive(Debug, Parser)]
#[command(name = "quarry", version, about, long_about = None, after_help = after_help())]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `--help` adds after the commands: where the client's settings come from, and what
/// its exit codes mean.
fn after_help() -> String {
    format!(
        "Client settings: QUARRY_URL (the service; default http://127.0.0.1:8080), \
         QUARRY_API_KEY (an org key) or QUARRY_ROOT_KEY (admin commands), QUARRY_PROFILE and \
         QUARRY_PROFILES (a saved profile instead, see `quarry profile save`).\n{}\n\
         The service: `quarry serve` (a bare `quarry` serves only where ENVIRONMENT is set).",
        client::EXIT_CODES
    )
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the service (settings from the environment; see `quarry check-config`).
    Serve,
    /// Checks the settings `make run` would use and prints them with secrets masked.
    CheckConfig,
    /// Prints a shell completion script: `quarry completions bash > ~/.local/share/bash-completion/completions/quarry`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The pipeline catalog: `list` (client) or `validate` (local definitions).
    #[command(subcommand)]
    Pipelines(PipelinesCommand),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Debug, Subcommand)]
enum PipelinesCommand {
    /// The service's catalog: pipelines, their steps and parameters.
    List,
    /// One pipeline of the service's catalog: its parameters and steps.
    Show {
        /// The pipeline's id, e.g. samples/usage_seed.
        pipeline: String,
    },
    /// Validates pipeline definitions and their SQL without starting anything.
    Validate {
        /// The pipelines folder (default: PIPELINES_DIR, else pipelines).
        dir: Option<PathBuf>,
        /// The folder step `sql:` paths are relative to (default: PIPELINE_SQL_DIR, else sql).
        #[arg(long)]
        sql_dir: Option<PathBuf>,
        /// The provider definitions (default: PROVIDERS_DIR, else providers).
        #[arg(long)]
        providers_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(message) = client::refuse_key_arguments(&args[1..]) {
        eprintln!("quarry: {message}");
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        // A server's environment names its ENVIRONMENT; elsewhere a bare `quarry` is a person
        // looking for the client's help.
        None if std::env::var_os("ENVIRONMENT").is_none() => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            println!();
            ExitCode::SUCCESS
        }
        None | Some(Command::Serve) => serve().await,
        Some(Command::CheckConfig) => check_config(),
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "quarry", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::Pipelines(PipelinesCommand::Validate {
            dir,
            sql_dir,
            providers_dir,
        })) => validate_pipelines(dir, sql_dir, providers_dir),
        Some(Command::Pipelines(PipelinesCommand::List)) => {
            client::pipelines_list(cli.global).await
        }
        Some(Command::Pipelines(PipelinesCommand::Show { pipeline })) => {
            client::pipelines_show(cli.global, &pipeline).await
        }
        Some(Command::Client(command)) => client::run(cli.global, command).await,
    }
}

fn settings() -> Result<Settings, ExitCode> {
    Settings::from_env().map_err(|e| {
        eprintln!("quarry: {e}");
        ExitCode::from(2)
    })
}

/// The variables `make run` uses: the process environment first, then `.env.local` in the
/// working folder for any it does not set (the file `make run` writes its keys to).
struct WithEnvLocal {
    file: HashMap<String, String>,
}

impl WithEnvLocal {
    fn read() -> (Self, bool) {
        match std::fs::read_to_string(".env.local") {
            Err(_) => (
                Self {
                    file: HashMap::new(),
                },
                false,
            ),
            Ok(text) => {
                let file = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| {
                        let v = v.trim().trim_matches('"').trim_matches('\'');
                        (k.trim().to_string(), v.to_string())
                    })
                    .collect();
                (Self { file }, true)
            }
        }
    }
}

impl VarSource for WithEnvLocal {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.file.get(name).cloned())
    }
}

/// A pipelines folder that is missing or holds no definition is an error for the checks (the
/// service would start with nothing to run).
fn require_pipelines(dir: &std::path::Path, count: usize) -> Result<(), ExitCode> {
    if !dir.is_dir() {
        eprintln!("quarry: {}: not a folder", dir.display());
        return Err(ExitCode::from(1));
    }
    if count == 0 {
        eprintln!(
            "quarry: {}: no pipeline definitions (*.yaml)",
            dir.display()
        );
        return Err(ExitCode::from(1));
    }
    Ok(())
}

/// Validates the environment and the definitions the service would load, and prints the
/// effective settings with secrets masked.
fn check_config() -> ExitCode {
    let (source, read_env_local) = WithEnvLocal::read();
    let settings = match Settings::from_source(&source) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("quarry: {e}");
            return ExitCode::from(2);
        }
    };
    if read_env_local {
        println!("# read .env.local (the process environment wins)");
    }
    if !settings.executor.pipelines_dir.is_dir() {
        eprintln!(
            "quarry: {}: not a folder",
            settings.executor.pipelines_dir.display()
        );
        return ExitCode::from(1);
    }
    for (name, value) in settings.describe() {
        println!("{name}={value}");
    }
    let providers = match Registry::load(
        &settings.providers_dir,
        &settings.provider_base_urls,
        settings.environment,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quarry: invalid provider definition: {e}");
            return ExitCode::from(1);
        }
    };
    match Catalog::load(
        &settings.executor.pipelines_dir,
        &settings.executor.sql_dir,
        &providers,
        settings.environment,
    ) {
        Ok(c) => {
            if let Err(code) = require_pipelines(&settings.executor.pipelines_dir, c.len()) {
                return code;
            }
            println!(
                "# ok: {} pipelines, {} providers",
                c.len(),
                providers.names().count()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry: invalid pipeline definition: {e}");
            ExitCode::from(1)
        }
    }
}

/// Validates pipeline definitions and their SQL without starting anything; usable in a
/// pipeline repository's own CI.
fn validate_pipelines(
    dir: Option<PathBuf>,
    sql_dir: Option<PathBuf>,
    providers_dir: Option<PathBuf>,
) -> ExitCode {
    let from_env = |var: &str, default: &str| {
        PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.into()))
    };
    let dir = dir.unwrap_or_else(|| from_env("PIPELINES_DIR", "pipelines"));
    let sql_dir = sql_dir.unwrap_or_else(|| from_env("PIPELINE_SQL_DIR", "sql"));
    let providers_dir = providers_dir.unwrap_or_else(|| from_env("PROVIDERS_DIR", "providers"));
    let environment = match std::env::var("ENVIRONMENT").as_deref() {
        Ok("production") => Environment::Production,
        Ok("staging") => Environment::Staging,
        _ => Environment::Development,
    };
    if !dir.is_dir() {
        eprintln!("quarry: {}: not a folder", dir.display());
        return ExitCode::from(1);
    }
    let providers = match Registry::load(&providers_dir, &Default::default(), environment) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quarry: invalid provider definition: {e}");
            return ExitCode::from(1);
        }
    };
    match Catalog::load(&dir, &sql_dir, &providers, environment) {
        Ok(catalog) => {
            if let Err(code) = require_pipelines(&dir, catalog.len()) {
                return code;
            }
            for p in catalog.iter() {
                println!("{}: {} step(s)", p.id, p.steps.len());
            }
            println!("ok: {} pipelines", catalog.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry: {e}");
            ExitCode::from(1)
        }
    }
}

/// One line at start-up when the meta dataset is missing or behind this version's schemas,
/// saying what to do (the background loops stay quiet until it is there).
fn tell_if_not_bootstrapped(warehouse: quarry::warehouse::Warehouse) {
    use quarry::bootstrap::SyncState;
    tokio::spawn(async move {
        match quarry::bootstrap::status(&warehouse).await {
            Ok(report) if report.status == SyncState::NotBootstrapped => tracing::warn!(
                dataset = %report.dataset,
                "the meta dataset is not bootstrapped yet: run `quarry bootstrap` with \
                 QUARRY_ROOT_KEY set to the root key (CA_ROOT_API_KEY), or POST \
                 /api/v1/admin/bootstrap with X-CA-Root-Key"
            ),
            Ok(report) if report.status == SyncState::OutOfSync => tracing::warn!(
                dataset = %report.dataset,
                missing_tables = report.missing_tables.len(),
                missing_columns = report.missing_columns.len(),
                "the meta dataset is behind this version: POST /api/v1/admin/bootstrap/sync \
                 with X-CA-Root-Key adds the missing tables, columns and views (drops nothing)"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read the meta dataset's bootstrap status")
            }
        }
    });
}

async fn serve() -> ExitCode {
    let settings = match settings() {
        Ok(s) => s,
        Err(code) => return code,
    };
    telemetry::init("info", settings.log_format, std::io::stdout);
    if settings.disable_auth {
        if settings.environment == Environment::Development {
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
    let host = settings.bind_addr.ip();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            eprintln!("quarry: {e}");
            return ExitCode::from(1);
        }
    };
    let base = format!("http://{host}:{}", app.port());
    tracing::info!(
        port = app.port(),
        web_view = format!("{base}/ui"),
        api_docs = format!("{base}/docs"),
        "listening"
    );
    tell_if_not_bootstrapped(app.warehouse());
    match app.serve_until_signal().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}
