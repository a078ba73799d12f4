use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Every org API key starts with this.
pub const PREFIX: &str = "qk_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An org API key in plaintext: `qk_` + 32 random bytes in base62 (43 characters) + a 6-character
/// base62 CRC32C checksum. The checksum lets a mistyped or made-up key be refused without any
/// lookup. The value is wiped from memory when dropped and never printed by `Debug`.
pub struct ApiKey(Zeroizing<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key")]
pub struct MalformedKey;

impl ApiKey {
    /// 32 bytes from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut random = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(random.as_mut()).expect("the OS random source is available");
        let body = base62(random.as_ref(), BODY_LEN);
        let mut key = Zeroizing::new(String::with_capacity(KEY_LEN));
        key.push_str(PREFIX);
        key.push_str(&body);
        let sum = checksum(&key);
        key.push_str(&sum);
        Self(key)
    }

    pub fn parse(raw: &str) -> Result<Self, MalformedKey> {
        if raw.len() != KEY_LEN || !raw.starts_with(PREFIX) {
            return Err(MalformedKey);
        }
        let rest = &raw[PREFIX.len()..];
        if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey);
        }
        let (signed, sum) = raw.split_at(KEY_LEN - CHECKSUM_LEN);
        if checksum(signed) != sum {
            return Err(MalformedKey);
        }
        Ok(Self(Zeroizing::new(raw.to_string())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256: what is stored and looked up.
    pub fn hash_hex(&self) -> String {
        hash_hex(self.0.as_bytes())
    }

    /// A short, non-secret prefix for display (`qk_` + 6 characters).
    pub fn display_prefix(&self) -> String {
        self.0[..PREFIX.len() + 6].to_string()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

pub fn hash_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn checksum(signed: &str) -> String {
    base62(
        &crc32c::crc32c(signed.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    )
}

/// Big-endian bytes as a fixed-width base62 number (left-padded with '0').
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_has_the_documented_shape() {
        let key = ApiKey::generate();
        assert_eq!(key.expose().len(), KEY_LEN);
        assert!(key.expose().starts_with("qk_"));
        let parsed = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.hash_hex(), key.hash_hex());
        assert_eq!(key.hash_hex().len(), 64);
    }

    #[test]
    fn keys_are_unique() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn a_single_typo_is_caught_by_the_checksum() {
        let key = ApiKey::generate();
        let raw = key.expose().to_string();
        for i in PREFIX.len()..raw.len() {
            let mut bytes = raw.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(
                ApiKey::parse(&typo).err(),
                Some(MalformedKey),
                "position {i}"
            );
        }
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        let key = ApiKey::generate();
        let raw = key.expose();
        for bad in [
            "",
            "qk_",
            &raw[..raw.len() - 1],
            &format!("{raw}x"),
            &raw.replacen("qk_", "xk_", 1),
            &format!("qk_{}", "!".repeat(KEY_LEN - 3)),
        ] {
            assert_eq!(ApiKey::parse(bad).err(), Some(MalformedKey), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.expose()));
        assert!(shown.starts_with("ApiKey(qk_"));
    }

    #[test]
    fn base62_is_fixed_width_and_correct() {
        assert_eq!(base62(&[0, 0], 3), "000");
        assert_eq!(base62(&[0, 61], 2), "0z");
        assert_eq!(base62(&[0, 62], 2), "10");
        assert_eq!(base62(&[255; 32], 43).len(), 43);
    }
}
