//! Keyed hashes (HMAC-SHA-256): how presented secrets (API tokens, child keys) are stored and
//! looked up under the deployment's pepper, how keys are derived from a deployment secret, and
//! how webhook bodies are signed. One place, so that every use hashes alike.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// An HMAC-SHA-256 value.
pub type KeyedHash = [u8; 32];

/// The HMAC-SHA-256 under `secret` of the concatenation of `parts`.
pub fn keyed_hash(secret: &[u8], parts: &[&[u8]]) -> KeyedHash {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hash_as_their_concatenation_and_the_secret_matters() {
        assert_eq!(
            keyed_hash(b"pepper", &[b"ab", b"c"]),
            keyed_hash(b"pepper", &[b"abc"])
        );
        assert_ne!(
            keyed_hash(b"pepper", &[b"abc"]),
            keyed_hash(b"salt", &[b"abc"])
        );
        // RFC 4231, test case 2.
        assert_eq!(
            crate::text::hex(&keyed_hash(b"Jefe", &[b"what do ya want for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
