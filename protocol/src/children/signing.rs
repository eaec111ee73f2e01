//! Child keys and request signatures.
//!
//! A child key is `ngc_<40 hex>_<6 hex checksum>`: the checksum lets the mother refuse a
//! mistyped or truncated key without a lookup, and lets secret scanners recognise a leaked one.
//! The mother keeps only a keyed hash of it.
//!
//! Every request a child makes carries the key (`Authorization: ApiKey ngc_…`) and a signature:
//! HMAC-SHA-256, keyed with the child key, over [`canonical_request`] — method, path and query,
//! Unix timestamp, a single-use nonce and the SHA-256 of the body. The mother refuses a
//! signature that does not match, a timestamp outside the allowed skew, and a nonce it has seen,
//! so a captured request cannot be replayed or altered.
//!
//! The mother signs its answers with Ed25519 ([`sign_document`]); a child checks them with the
//! public keys of `GET /api/child/public-keys` ([`verify_document`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Every child key starts with this.
pub const CHILD_KEY_PREFIX: &str = "ngc_";
/// The scheme of the `Authorization` header a child sends: `ApiKey ngc_…`.
pub const AUTHORIZATION_SCHEME: &str = "ApiKey";
/// Unix seconds when the child signed the request.
pub const TIMESTAMP_HEADER: &str = "x-nodegrid-timestamp";
/// A value the child never sends twice (16–64 of `A-Za-z0-9_-`).
pub const NONCE_HEADER: &str = "x-nodegrid-nonce";
/// Hex HMAC-SHA-256 of [`canonical_request`] keyed with the child key.
pub const SIGNATURE_HEADER: &str = "x-nodegrid-signature";
/// The signature algorithm's name, first line of the signed text: a later scheme gets a new one.
pub const REQUEST_SIGNATURE_SCHEME: &str = "NODEGRID-CHILD-HMAC-SHA256";

const KEY_RANDOM_HEX: usize = 40;
const KEY_CHECKSUM_HEX: usize = 6;
/// Length of every well-formed child key.
pub const CHILD_KEY_CHARS: usize = CHILD_KEY_PREFIX.len() + KEY_RANDOM_HEX + 1 + KEY_CHECKSUM_HEX;
/// Characters of a key shown to admins to recognise it (`ngc_` and 8 more).
pub const CHILD_KEY_SHOWN_CHARS: usize = CHILD_KEY_PREFIX.len() + 8;

/// A new child key from 20 random bytes.
pub fn new_child_key(random: [u8; 20]) -> String {
    let body = hex(&random);
    let checksum = key_checksum(&body);
    format!("{CHILD_KEY_PREFIX}{body}_{checksum}")
}

/// Whether `key` has the shape and checksum of a child key (not whether the mother knows it).
pub fn child_key_well_formed(key: &str) -> bool {
    if key.len() != CHILD_KEY_CHARS {
        return false;
    }
    let Some(rest) = key.strip_prefix(CHILD_KEY_PREFIX) else {
        return false;
    };
    let Some((body, checksum)) = rest.split_once('_') else {
        return false;
    };
    body.len() == KEY_RANDOM_HEX
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && checksum == key_checksum(body)
}

fn key_checksum(body: &str) -> String {
    let digest = Sha256::digest(format!("{CHILD_KEY_PREFIX}{body}").as_bytes());
    hex(&digest)[..KEY_CHECKSUM_HEX].to_owned()
}

/// Whether a nonce has the allowed shape.
pub fn nonce_well_formed(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The text a child signs: one field per line.
pub fn canonical_request(
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{REQUEST_SIGNATURE_SCHEME}\n{}\n{path_and_query}\n{timestamp}\n{nonce}\n{}",
        method.to_ascii_uppercase(),
        hex(&Sha256::digest(body))
    )
}

/// The signature of a request (hex), as the child sends it.
pub fn sign_request(
    key: &str,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut mac = request_mac(key);
    mac.update(canonical_request(method, path_and_query, timestamp, nonce, body).as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the request's signature; compared in constant time.
pub fn request_signature_matches(
    key: &str,
    signature: &str,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> bool {
    let Some(expected) = unhex(signature) else {
        return false;
    };
    let mut mac = request_mac(key);
    mac.update(canonical_request(method, path_and_query, timestamp, nonce, body).as_bytes());
    mac.verify_slice(&expected).is_ok()
}

fn request_mac(key: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"))
}

/// The id of a signing key: the first 16 hex characters of the SHA-256 of its public key.
pub fn key_id(public_key: &VerifyingKey) -> String {
    hex(&Sha256::digest(public_key.as_bytes()))[..16].to_owned()
}

/// A public key as it travels (base64url, no padding).
pub fn encode_public_key(public_key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(public_key.as_bytes())
}

/// A public key from its travelling form.
pub fn decode_public_key(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The Ed25519 signature (base64url) of `document`, the exact bytes sent.
pub fn sign_document(key: &SigningKey, document: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key.sign(document).to_bytes())
}

/// Whether `signature` (base64url) is `key`'s signature of `document`.
pub fn verify_document(key: &VerifyingKey, document: &[u8], signature: &str) -> bool {
    let Some(bytes) = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
    else {
        return false;
    };
    key.verify_strict(document, &Signature::from_bytes(&bytes))
        .is_ok()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_carries_its_checksum() {
        let key = new_child_key([7; 20]);
        assert!(key.starts_with(CHILD_KEY_PREFIX));
        assert_eq!(key.len(), CHILD_KEY_CHARS);
        assert!(child_key_well_formed(&key));
        let mut typo = key.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert!(!child_key_well_formed(&String::from_utf8(typo).unwrap()));
        assert!(!child_key_well_formed(&key[..key.len() - 1]));
        assert!(!child_key_well_formed("ngt_something"));
    }

    #[test]
    fn a_request_signature_covers_every_field() {
        let key = new_child_key([1; 20]);
        let signature = sign_request(
            &key,
            "POST",
            "/api/child/heartbeat",
            100,
            "n".repeat(16).as_str(),
            b"{}",
        );
        let nonce = "n".repeat(16);
        assert!(request_signature_matches(
            &key,
            &signature,
            "post",
            "/api/child/heartbeat",
            100,
            &nonce,
            b"{}"
        ));
        assert!(!request_signature_matches(
            &key,
            &signature,
            "POST",
            "/api/child/heartbeat",
            101,
            &nonce,
            b"{}"
        ));
        assert!(!request_signature_matches(
            &key,
            &signature,
            "POST",
            "/api/child/other",
            100,
            &nonce,
            b"{}"
        ));
        assert!(!request_signature_matches(
            &key,
            &signature,
            "POST",
            "/api/child/heartbeat",
            100,
            &nonce,
            b"{ }"
        ));
        assert!(!request_signature_matches(
            &key,
            &signature,
            "POST",
            "/api/child/heartbeat",
            100,
            &"m".repeat(16),
            b"{}"
        ));
        let other = new_child_key([2; 20]);
        assert!(!request_signature_matches(
            &other,
            &signature,
            "POST",
            "/api/child/heartbeat",
            100,
            &nonce,
            b"{}"
        ));
        assert!(!request_signature_matches(
            &key,
            "zz",
            "POST",
            "/api/child/heartbeat",
            100,
            &nonce,
            b"{}"
        ));
    }

    #[test]
    fn documents_verify_with_their_key_only() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let signature = sign_document(&key, b"{\"seq\":1}");
        assert!(verify_document(
            &key.verifying_key(),
            b"{\"seq\":1}",
            &signature
        ));
        assert!(!verify_document(
            &key.verifying_key(),
            b"{\"seq\":2}",
            &signature
        ));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!verify_document(
            &other.verifying_key(),
            b"{\"seq\":1}",
            &signature
        ));
        assert!(!verify_document(
            &key.verifying_key(),
            b"{\"seq\":1}",
            "AAAA"
        ));
        let public = encode_public_key(&key.verifying_key());
        assert_eq!(decode_public_key(&public), Some(key.verifying_key()));
        assert_eq!(key_id(&key.verifying_key()).len(), 16);
    }

    #[test]
    fn nonces_have_a_shape() {
        assert!(nonce_well_formed("abcdefghij012345"));
        assert!(!nonce_well_formed("short"));
        assert!(!nonce_well_formed(&"a".repeat(65)));
        assert!(!nonce_well_formed("abcdefghij01234 "));
    }
}
