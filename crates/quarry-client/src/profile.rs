//! Where the client finds the service and its keys: `QUARRY_URL`, `QUARRY_API_KEY` and
//! `QUARRY_ROOT_KEY` first, then a profile file. A key is never taken from the command line,
//! where it would land in shell history and in the process list.
//!
//! The profile file (`QUARRY_PROFILES`, or `$XDG_CONFIG_HOME/quarry/profiles`, or
//! `~/.config/quarry/profiles`) holds named sections of `name = value` lines:
//!
//! ```text
//! [default]
//! url = http://127.0.0.1:8080
//! api_key = qk_...
//!
//! [admin]
//! url = http://127.0.0.1:8080
//! root_key = ...
//! ```
//!
//! It must be readable by its owner only (mode 0600); any other mode is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::ClientError;

/// The service's address when nothing names one (`make run`'s).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What a command needs to reach the service.
pub struct Profile {
    pub url: String,
    pub api_key: Option<Zeroizing<String>>,
    pub root_key: Option<Zeroizing<String>>,
    /// Where the keys were looked for, for the message when one is missing.
    pub sources: String,
}

/// The environment the profile is read from (the process's, or a test's).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The profile file's path, whether or not it exists.
pub fn profiles_path(env: &dyn Env) -> Option<PathBuf> {
    if let Some(p) = env.var("QUARRY_PROFILES") {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = env.var("XDG_CONFIG_HOME") {
        return Some(Path::new(&dir).join("quarry").join("profiles"));
    }
    env.var("HOME").map(|home| {
        Path::new(&home)
            .join(".config")
            .join("quarry")
            .join("profiles")
    })
}

/// Resolves the settings of one command. `profile` is `--profile` (or `QUARRY_PROFILE`); naming
/// a profile that does not exist is an error, the implicit `default` may be absent.
pub fn resolve(
    env: &dyn Env,
    profile: Option<&str>,
    url: Option<&str>,
) -> Result<Profile, ClientError> {
    let named = profile
        .map(str::to_string)
        .or_else(|| env.var("QUARRY_PROFILE"));
    let section_name = named.clone().unwrap_or_else(|| "default".to_string());
    let path = profiles_path(env);
    let mut section = BTreeMap::new();
    let mut from_file = false;
    if let Some(path) = &path {
        if path.exists() {
            let sections = read_profiles(path)?;
            if let Some(s) = sections.get(&section_name) {
                section = s.clone();
                from_file = true;
            } else if named.is_some() {
                return Err(ClientError::Config(format!(
                    "{}: no profile [{section_name}]",
                    path.display()
                )));
            }
        } else if named.is_some() {
            return Err(ClientError::Config(format!(
                "{}: no such file (profile [{section_name}] was asked for)",
                path.display()
            )));
        }
    }
    let url = url
        .map(str::to_string)
        .or_else(|| env.var("QUARRY_URL"))
        .or_else(|| section.get("url").cloned())
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let url = parse_url(&url)?;
    let key = |var: &str, field: &str| {
        env.var(var)
            .or_else(|| section.get(field).cloned())
            .map(Zeroizing::new)
    };
    let sources = match (&path, from_file) {
        (Some(p), true) => format!(
            "the environment or profile [{section_name}] of {}",
            p.display()
        ),
        (Some(p), false) => format!("the environment or a profile in {}", p.display()),
        (None, _) => "the environment".to_string(),
    };
    Ok(Profile {
        url,
        api_key: key("QUARRY_API_KEY", "api_key"),
        root_key: key("QUARRY_ROOT_KEY", "root_key"),
        sources,
    })
}

fn parse_url(raw: &str) -> Result<String, ClientError> {
    let trimmed = raw.trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|_| ClientError::Config(format!("QUARRY_URL: not a URL: {raw}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ClientError::Config(format!(
            "QUARRY_URL: expected http:// or https:// and a host, got {raw}"
        )));
    }
    Ok(trimmed.to_string())
}

type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Reads the profile file, refusing one that others may read.
pub fn read_profiles(path: &Path) -> Result<Sections, ClientError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
    parse_profiles(&text).map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ClientError::Config(format!(
            "{}: readable by others (mode {:o}); it holds keys: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), ClientError> {
    Ok(())
}

const FIELDS: &[&str] = &["url", "api_key", "root_key"];

/// `[name]` headers and `field = value` lines; `#` starts a comment line.
pub fn parse_profiles(text: &str) -> Result<Sections, String> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let Some((field, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected `field = value`", i + 1));
        };
        let field = field.trim();
        if !FIELDS.contains(&field) {
            return Err(format!(
                "line {}: unknown field `{field}` (accepted: url, api_key, root_key)",
                i + 1
            ));
        }
        let Some(section) = &current else {
            return Err(format!("line {}: `{field}` before any [profile]", i + 1));
        };
        let value = value.trim().trim_matches('"').to_string();
        sections
            .get_mut(section)
            .expect("the current section exists")
            .insert(field.to_string(), value);
    }
    Ok(sections)
}

/// Writes (or replaces) one profile, creating the file with mode 0600.
pub fn save_profile(path: &Path, name: &str, fields: &[(&str, &str)]) -> Result<(), ClientError> {
    let mut sections = if path.exists() {
        read_profiles(path)?
    } else {
        Sections::new()
    };
    let section = sections.entry(name.to_string()).or_default();
    for (k, v) in fields {
        section.insert((*k).to_string(), (*v).to_string());
    }
    let mut text = String::from("# quarry client profiles (keys: keep this file mode 0600)\n");
    for (name, fields) in &sections {
        text.push_str(&format!("\n[{name}]\n"));
        for (k, v) in fields {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::Config(format!("{}: {e}", dir.display())))?;
    }
    write_private(path, &text)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), ClientError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| ClientError::Config(format!("{}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), ClientError> {
    std::fs::write(path, text).map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_fields_parse_and_comments_are_skipped() {
        let s = parse_profiles(
            "# c\n[default]\nurl = http://x:1\napi_key = \"qk_a\"\n[admin]\nroot_key=r\n",
        )
        .unwrap();
        assert_eq!(s["default"]["url"], "http://x:1");
        assert_eq!(s["default"]["api_key"], "qk_a");
        assert_eq!(s["admin"]["root_key"], "r");
    }

    #[test]
    fn an_unknown_field_or_a_field_outside_a_section_is_named_with_its_line() {
        assert_eq!(
            parse_profiles("[a]\ntoken = x\n").unwrap_err(),
            "line 2: unknown field `token` (accepted: url, api_key, root_key)"
        );
        assert_eq!(
            parse_profiles("url = x\n").unwrap_err(),
            "line 1: `url` before any [profile]"
        );
        assert_eq!(
            parse_profiles("[a]\nnonsense\n").unwrap_err(),
            "line 2: expected `field = value`"
        );
    }

    #[test]
    fn a_url_without_a_scheme_is_refused() {
        assert!(parse_url("127.0.0.1:8080").is_err());
        assert_eq!(parse_url("http://h:1/").unwrap(), "http://h:1");
    }
}
