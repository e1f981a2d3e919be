//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body under one of the webhook secrets.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256")]
    Missing,
    /// Only the legacy SHA-1 `X-Hub-Signature` came; dockhand does not accept SHA-1.
    #[error("only the legacy SHA-1 signature was sent; X-Hub-Signature-256 is required")]
    LegacyOnly,
    #[error("malformed X-Hub-Signature-256")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

/// The keys deliveries may be signed with: several, so a secret can be rotated.
#[derive(Clone)]
pub struct WebhookKeys(Vec<HmacSha256>);

impl fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookKeys({} keys, redacted)", self.0.len())
    }
}

impl WebhookKeys {
    pub fn new(secrets: &[SecretString]) -> Self {
        Self(
            secrets
                .iter()
                .map(|s| {
                    HmacSha256::new_from_slice(s.expose_secret().as_bytes())
                        .expect("HMAC takes keys of any length")
                })
                .collect(),
        )
    }

    /// Checks the header against the raw body; comparison is constant-time per key.
    pub fn verify(
        &self,
        signature_256: Option<&[u8]>,
        legacy_present: bool,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let header = match signature_256 {
            Some(h) => h,
            None if legacy_present => return Err(SignatureError::LegacyOnly),
            None => return Err(SignatureError::Missing),
        };
        let hex_digest = header
            .strip_prefix(PREFIX.as_bytes())
            .ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let matched = self.0.iter().any(|key| {
            let mut mac = key.clone();
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> WebhookKeys {
        WebhookKeys::new(
            &secrets
                .iter()
                .map(|s| SecretString::from(s.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
    const GITHUB_VECTOR: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_documented_vector_signs_and_verifies() {
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            GITHUB_VECTOR
        );
        let k = keys(&["It's a Secret to Everybody"]);
        assert_eq!(
            k.verify(Some(GITHUB_VECTOR.as_bytes()), false, b"Hello, World!"),
            Ok(())
        );
    }

    #[test]
    fn any_configured_secret_may_match() {
        let k = keys(&["old", "new"]);
        let body = b"{}";
        assert!(
            k.verify(Some(sign(b"old", body).as_bytes()), false, body)
                .is_ok()
        );
        assert!(
            k.verify(Some(sign(b"new", body).as_bytes()), false, body)
                .is_ok()
        );
        assert_eq!(
            k.verify(Some(sign(b"other", body).as_bytes()), false, body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_body_does_not_verify() {
        let k = keys(&["It's a Secret to Everybody"]);
        assert_eq!(
            k.verify(Some(GITHUB_VECTOR.as_bytes()), false, b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_told_apart_from_mismatches() {
        let k = keys(&["s"]);
        let truncated = &GITHUB_VECTOR[..GITHUB_VECTOR.len() - 2];
        let non_hex = GITHUB_VECTOR.replace('7', "z");
        let upper_prefix = GITHUB_VECTOR.replace("sha256", "SHA256");
        for bad in [
            truncated,
            non_hex.as_str(),
            upper_prefix.as_str(),
            "sha1=0123",
            "",
        ] {
            assert_eq!(
                k.verify(Some(bad.as_bytes()), false, b"x"),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_header_is_missing_or_legacy_only() {
        let k = keys(&["s"]);
        assert_eq!(k.verify(None, false, b"x"), Err(SignatureError::Missing));
        assert_eq!(k.verify(None, true, b"x"), Err(SignatureError::LegacyOnly));
    }

    #[test]
    fn debug_does_not_show_keys() {
        assert_eq!(
            format!("{:?}", keys(&["topsecret"])),
            "WebhookKeys(1 keys, redacted)"
        );
    }
}
