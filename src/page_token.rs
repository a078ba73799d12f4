//! Opaque, signed page tokens: a cursor plus the scope it belongs to (org and filters), sealed
//! with HMAC-SHA256. A token altered by a client, or replayed against another org or other
//! filters, is refused (400). The key derives from the root key, so every replica accepts every
//! replica's tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::settings::Settings;

type HmacSha256 = Hmac<Sha256>;

/// Where the next page starts: strictly after (time, id) in the list's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub t: i64,
    pub id: String,
    /// The time window of the first page, kept for every later page.
    pub since: i64,
    pub until: i64,
    /// Fingerprint of the org and filters the token was issued for.
    scope: String,
}

/// Cheap to clone (a key): a background refresh of a first page builds its token too.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid page token")]
pub struct InvalidToken;

impl PageTokens {
    pub fn new(settings: &Settings) -> Self {
        let key: [u8; 32] = match &settings.root_api_key {
            Some(root) => {
                let mut h = Sha256::new();
                h.update(b"quarry page tokens v1\0");
                h.update(root.expose().as_bytes());
                h.finalize().into()
            }
            None => {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k).expect("OS randomness");
                k
            }
        };
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    pub fn scope_of(parts: &[&str]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
            h.update(b"\0");
        }
        B64URL.encode(&h.finalize()[..12])
    }

    pub fn issue(&self, t: i64, id: &str, window: (i64, i64), scope: &str) -> String {
        let payload = serde_json::to_vec(&Cursor {
            t,
            id: id.to_string(),
            since: window.0,
            until: window.1,
            scope: scope.to_string(),
        })
        .expect("cursor serializes");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64URL.encode(&payload), B64URL.encode(tag))
    }

    /// Verifies the signature and that the token was issued for `scope`.
    pub fn open(&self, token: &str, scope: &str) -> Result<Cursor, InvalidToken> {
        if token.len() > 512 {
            return Err(InvalidToken);
        }
        let (payload, tag) = token.split_once('.').ok_or(InvalidToken)?;
        let payload = B64URL.decode(payload).map_err(|_| InvalidToken)?;
        let tag = B64URL.decode(tag).map_err(|_| InvalidToken)?;
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| InvalidToken)?;
        let cursor: Cursor = serde_json::from_slice(&payload).map_err(|_| InvalidToken)?;
        if cursor.scope != scope {
            return Err(InvalidToken);
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tokens(root: &'static str) -> PageTokens {
        let vars: HashMap<&str, &str> = [
            ("CA_ROOT_API_KEY", root),
            (
                "LOCAL_KMS_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ]
        .into_iter()
        .collect();
        PageTokens::new(&Settings::from_source(&vars).unwrap())
    }

    #[test]
    fn a_token_opens_for_its_own_scope_only() {
        let t = tokens("root-a");
        let token = t.issue(42, "run-1", (1, 2), "scope-x");
        let c = t.open(&token, "scope-x").unwrap();
        assert_eq!((c.t, c.id.as_str()), (42, "run-1"));
        assert_eq!(t.open(&token, "scope-y"), Err(InvalidToken));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let t = tokens("root-a");
        let token = t.issue(42, "run-1", (1, 2), "s");
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload =
            B64URL.encode(br#"{"t":1,"id":"x' OR 1=1","since":1,"until":2,"scope":"s"}"#);
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.AAAA"),
            payload.to_string(),
            String::new(),
            "a.b.c".to_string(),
        ] {
            assert_eq!(t.open(&bad, "s"), Err(InvalidToken), "{bad}");
        }
        // Another deployment (another root key) cannot mint tokens for this one.
        assert_eq!(tokens("root-b").open(&token, "s"), Err(InvalidToken));
    }
}
