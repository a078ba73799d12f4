//! The `quarry` client: the service's HTTP API as commands (`quarry runs trigger`, `runs watch`,
//! `schedules list`, ...), for tenants, admins, shell scripts and CI.
//!
//! Settings come from the environment or a profile file ([`profile`]); a key is never a
//! command-line argument. Human tables by default, `--output json` for scripts. Exit codes
//! ([`EXIT_CODES`]): 0 done, 1 a followed run ended without succeeding, 2 a usage or settings
//! problem, 3 the service refused or could not be reached, 4 refused for now (429 or 503:
//! retry later). Every failure is one line on stderr, with the service's request id when it
//! answered.

pub mod api;
pub mod args;
pub mod commands;
pub mod output;
pub mod profile;
pub mod watch;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use args::{ClientCommand, Global, ProfileCommand};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{status} {message}{}{}", paren(details), request_id.as_ref().map(|r| format!(" [request id {r}]")).unwrap_or_default())]
    Refused {
        status: u16,
        message: String,
        details: String,
        request_id: Option<String>,
    },
}

fn paren(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// What each exit code means, for `--help` and the README.
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 a followed run ended without succeeding; \
2 a usage or settings problem; 3 refused (4xx) or the service unreachable; 4 refused for now \
(429 limit or 503 unavailable): retry later, after the Retry-After it names.";

/// A refusal that a later try may not meet (a limit, a busy service): exit code 4.
pub const EXIT_RETRY_LATER: u8 = 4;

impl ClientError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Config(_) | ClientError::Usage(_) => ExitCode::from(2),
            ClientError::Refused {
                status: 429 | 503, ..
            } => ExitCode::from(EXIT_RETRY_LATER),
            ClientError::Unreachable(_) | ClientError::Refused { .. } => ExitCode::from(3),
        }
    }
}

/// Flags that would put a key on the command line: refused with a pointer to the safe ways.
const KEY_FLAGS: &[&str] = &["--api-key", "--root-key", "--key"];

/// A key given as an argument, before clap sees it (its message would echo the value).
pub fn refuse_key_arguments(args: &[String]) -> Option<String> {
    args.iter()
        .find(|a| {
            KEY_FLAGS
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
        })
        .map(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            format!(
                "{flag}: keys are never taken on the command line (shell history, process list); \
                 set QUARRY_API_KEY or QUARRY_ROOT_KEY, or use `quarry profile save`"
            )
        })
}

fn fail(e: &ClientError) -> ExitCode {
    eprintln!("quarry: {e}");
    e.exit_code()
}

fn api(global: &Global) -> Result<api::Api, ClientError> {
    let profile = profile::resolve(
        &profile::ProcessEnv,
        global.profile.as_deref(),
        global.url.as_deref(),
    )?;
    api::Api::new(profile)
}

/// Runs a client command with the global options.
pub async fn run(global: Global, command: ClientCommand) -> ExitCode {
    if let ClientCommand::Profile(ProfileCommand::Save { name, root }) = &command {
        return match save_profile(&global, name, *root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let result = match api(&global) {
        Ok(api) => commands::run(&api, global.output, command).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| fail(&e))
}

/// `quarry pipelines list`.
pub async fn pipelines_list(global: Global) -> ExitCode {
    let result = match api(&global) {
        Ok(api) => commands::pipelines_list(&api, global.output).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| fail(&e))
}

/// `quarry pipelines show ID` (the `pipelines` command sits in the binary beside `validate`).
pub async fn pipelines_show(global: Global, id: &str) -> ExitCode {
    let result = match api(&global) {
        Ok(api) => commands::pipelines_show(&api, global.output, id).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| fail(&e))
}

/// `quarry profile save NAME [--root]`: the key from standard input (never an argument), the
/// url from --url or QUARRY_URL, written with mode 0600.
fn save_profile(global: &Global, name: &str, root: bool) -> Result<(), ClientError> {
    let env = profile::ProcessEnv;
    let path = profile::profiles_path(&env).ok_or_else(|| {
        ClientError::Config("no place for profiles: set QUARRY_PROFILES or HOME".into())
    })?;
    if std::io::stdin().is_terminal() {
        eprintln!("paste the key, then Enter:");
    }
    let mut key = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut key)
        .map_err(|e| ClientError::Usage(format!("reading the key from standard input: {e}")))?;
    let key = key.trim();
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(ClientError::Usage(
            "expected one key on standard input".into(),
        ));
    }
    let url = global
        .url
        .clone()
        .or_else(|| std::env::var("QUARRY_URL").ok())
        .unwrap_or_else(|| profile::DEFAULT_URL.to_string());
    let field = if root { "root_key" } else { "api_key" };
    profile::save_profile(&path, name, &[("url", &url), (field, key)])?;
    eprintln!(
        "quarry: saved profile [{name}] in {} (mode 0600)",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_flag_is_refused_without_echoing_the_key() {
        let args = vec!["runs".into(), "list".into(), "--api-key=qk_secret".into()];
        let message = refuse_key_arguments(&args).unwrap();
        assert!(message.starts_with("--api-key: keys are never taken on the command line"));
        assert!(!message.contains("qk_secret"));
        assert_eq!(refuse_key_arguments(&["runs".into(), "list".into()]), None);
    }
}
