//! The provider registry: one YAML file per provider under `providers/` describes how to check
//! a credential and how to authenticate requests. A new provider is a new file, not new code.
//! Base URLs can be overridden (`PROVIDER_BASE_URLS`), which is how tests reach a local server.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::settings::Environment;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthStyle {
    /// `Authorization: Bearer <credential>`
    Bearer,
    /// `<header>: <credential>`
    Header { header: String },
    /// A Google-style service-account JSON key: a signed JWT is exchanged at `token_url` (never
    /// the key's own `token_uri`, which a tenant controls) for a bearer access token.
    ServiceAccountJson {
        token_url: String,
        scopes: Vec<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialSpec {
    /// For token styles; a service-account key is checked structurally instead.
    #[serde(default)]
    pattern: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateSpec {
    #[serde(default = "get")]
    method: String,
    path: String,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    display_name: String,
    base_url: String,
    auth: AuthStyle,
    credential: CredentialSpec,
    validate: ValidateSpec,
    #[serde(default)]
    extra_headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub display_name: String,
    pub base_url: String,
    pub auth: AuthStyle,
    pub pattern: Option<regex::Regex>,
    pub validate_method: reqwest::Method,
    pub validate_path: String,
    pub extra_headers: BTreeMap<String, String>,
}

/// The header a request authenticates with. The value is secret and wiped on drop.
pub struct Authorization {
    pub header: String,
    pub value: zeroize::Zeroizing<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct RegistryError {
    pub file: String,
    pub problem: String,
}

#[derive(Debug, Default)]
pub struct Registry {
    providers: BTreeMap<String, Provider>,
}

fn valid_name(name: &str) -> bool {
    (2..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_base_url(url: &str, environment: Environment) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let scheme_ok = parsed.scheme() == "https"
        || (parsed.scheme() == "http" && environment != Environment::Production);
    scheme_ok && parsed.host().is_some() && parsed.query().is_none() && parsed.username().is_empty()
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// Loads `*.yaml` in `dir` (the provider's name is the file name). A missing folder is an
    /// empty registry.
    pub fn load(
        dir: &Path,
        overrides: &HashMap<String, String>,
        environment: Environment,
    ) -> Result<Self, RegistryError> {
        let mut providers = BTreeMap::new();
        let err = |file: &str, problem: String| RegistryError {
            file: file.to_string(),
            problem,
        };
        if dir.exists() {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| err(&dir.display().to_string(), e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            files.sort();
            for path in files {
                let shown = path.display().to_string();
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                if !valid_name(&name) {
                    return Err(err(
                        &shown,
                        "the file name must be 2-40 of [a-z0-9_]".into(),
                    ));
                }
                let text =
                    std::fs::read_to_string(&path).map_err(|e| err(&shown, e.to_string()))?;
                let raw: ProviderFile =
                    serde_yaml_ng::from_str(&text).map_err(|e| err(&shown, e.to_string()))?;
                let base_url = overrides.get(&name).cloned().unwrap_or(raw.base_url);
                if !valid_base_url(&base_url, environment) {
                    return Err(err(
                        &shown,
                        "base_url: an https URL (http allowed outside production)".into(),
                    ));
                }
                let pattern = match (&raw.auth, &raw.credential.pattern) {
                    (AuthStyle::ServiceAccountJson { .. }, None) => None,
                    (AuthStyle::ServiceAccountJson { .. }, Some(_)) => {
                        return Err(err(
                            &shown,
                            "credential.pattern: not for service-account keys".into(),
                        ));
                    }
                    (_, None) => return Err(err(&shown, "credential.pattern: required".into())),
                    (_, Some(p)) => Some(
                        regex::Regex::new(p)
                            .map_err(|e| err(&shown, format!("credential.pattern: {e}")))?,
                    ),
                };
                let mut auth = raw.auth;
                if let AuthStyle::ServiceAccountJson { token_url, .. } = &mut auth {
                    if let Some(url) = overrides.get(&format!("{name}:token")) {
                        *token_url = url.clone();
                    }
                    if !valid_base_url(token_url, environment) {
                        return Err(err(&shown, "auth.token_url: an https URL".into()));
                    }
                }
                let validate_method = raw
                    .validate
                    .method
                    .parse::<reqwest::Method>()
                    .map_err(|_| err(&shown, "validate.method".into()))?;
                if !raw.validate.path.starts_with('/') {
                    return Err(err(&shown, "validate.path must start with /".into()));
                }
                if let AuthStyle::Header { header } = &auth {
                    reqwest::header::HeaderName::from_bytes(header.as_bytes())
                        .map_err(|_| err(&shown, "auth.header is not a header name".into()))?;
                }
                providers.insert(
                    name.clone(),
                    Provider {
                        name,
                        display_name: raw.display_name,
                        base_url: base_url.trim_end_matches('/').to_string(),
                        auth,
                        pattern,
                        validate_method,
                        validate_path: raw.validate.path,
                        extra_headers: raw.extra_headers,
                    },
                );
            }
        }
        for key in overrides.keys() {
            let name = key.split(':').next().unwrap_or(key);
            if !providers.contains_key(name) {
                return Err(err(
                    "PROVIDER_BASE_URLS",
                    format!("unknown provider {name}"),
                ));
            }
        }
        Ok(Self { providers })
    }
}

impl Provider {
    /// A request to `path` on this provider, carrying `auth`.
    pub fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        auth: &Authorization,
    ) -> reqwest::RequestBuilder {
        let mut builder = http
            .request(method, format!("{}{path}", self.base_url))
            .header(auth.header.as_str(), auth.value.as_str());
        for (k, v) in &self.extra_headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder
    }
}
