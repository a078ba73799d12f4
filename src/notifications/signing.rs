//! Webhook signatures in the Standard Webhooks form: the headers `webhook-id` (the delivery's
//! id, the same on every attempt), `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,` + base64 of HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, keyed with the base64
//! part of the channel's `whsec_…` secret).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

const PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> Zeroizing<String> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).expect("the OS random source");
    Zeroizing::new(format!("{PREFIX}{}", B64.encode(key.as_ref())))
}

/// `v1,<base64 signature>` of `body` sent as `id` at `timestamp`, or `None` for a secret
/// that is not a `whsec_` secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = Zeroizing::new(B64.decode(secret.strip_prefix(PREFIX)?).ok()?);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The Standard Webhooks specification's own example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("not-a-secret", "id", 1, b"x"), None);
    }

    #[test]
    fn a_new_secret_is_32_random_bytes_and_never_the_same() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_"));
        assert_eq!(B64.decode(&a[6..]).unwrap().len(), 32);
        assert_ne!(*a, *b);
    }
}
