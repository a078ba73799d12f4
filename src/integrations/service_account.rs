//! Service-account JSON keys: the structural check at setup, and the exchange of a signed JWT
//! (RS256) for a short-lived access token at the provider's token URL.

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
}

/// The parts of a key file the service uses. `client_email` is an identifier, not a secret.
pub struct ServiceAccount {
    pub client_email: String,
    key: EncodingKey,
}

/// Parses a key file: `type` must be `service_account`, with an email and an RSA private key.
pub fn parse(credential: &str) -> Result<ServiceAccount, &'static str> {
    let file: KeyFile =
        serde_json::from_str(credential).map_err(|_| "not a service-account JSON key")?;
    let private_key = Zeroizing::new(file.private_key);
    if file.kind != "service_account"
        || !file.client_email.contains('@')
        || file.client_email.len() > 320
    {
        return Err("not a service-account JSON key");
    }
    let key = EncodingKey::from_rsa_pem(private_key.as_bytes())
        .map_err(|_| "the private key is not an RSA PEM key")?;
    Ok(ServiceAccount {
        client_email: file.client_email,
        key,
    })
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

/// Exchanges a signed assertion for an access token. Errors are sanitized (no bodies).
pub async fn access_token(
    http: &reqwest::Client,
    account: &ServiceAccount,
    token_url: &str,
    scopes: &[String],
) -> Result<Zeroizing<String>, String> {
    let now = Utc::now().timestamp();
    let claims = Claims {
        iss: &account.client_email,
        scope: scopes.join(" "),
        aud: token_url,
        iat: now,
        exp: now + 3600,
    };
    let assertion = Zeroizing::new(
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &account.key)
            .map_err(|_| "the assertion could not be signed".to_string())?,
    );
    let response = http
        .post(token_url)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "token endpoint did not answer in time".to_string()
            } else {
                "token endpoint unreachable".to_string()
            }
        })?;
    if !response.status().is_success() {
        return Err(format!(
            "token endpoint refused the key (HTTP {})",
            response.status().as_u16()
        ));
    }
    let token: TokenResponse = response
        .json()
        .await
        .map_err(|_| "token endpoint answered without a token".to_string())?;
    Ok(Zeroizing::new(token.access_token))
}
