//! The mother's keys: the Ed25519 keys that sign leases, and the keyed hash children's API keys
//! are kept as.
//!
//! The signing keys are derived from a deployment secret and a version number, so every
//! instance signs with the same key without a key store, and rotating is raising the version:
//! the mother then signs with the new key and still publishes the previous one, so that what
//! it signed before verifies until it expires.

use ed25519_dalek::SigningKey;
use nodegrid_protocol::children::lease::PublicKeyView;
use nodegrid_protocol::children::signing::{encode_public_key, key_id, sign_document};
use secrecy::{ExposeSecret, SecretString};

use crate::keyed::keyed_hash;

pub use crate::keyed::KeyedHash;

/// One signing key with its id.
struct VersionedKey {
    id: String,
    key: SigningKey,
}

/// Signs leases and hashes child keys.
pub struct MotherKeys {
    current: VersionedKey,
    previous: Option<VersionedKey>,
    key_hash_secret: SecretString,
}

impl MotherKeys {
    /// `signing_secret` and `version` make the signing key; `key_hash_secret` keys the hashes
    /// of children's API keys.
    pub fn new(
        signing_secret: &SecretString,
        version: u32,
        key_hash_secret: SecretString,
    ) -> MotherKeys {
        let derive = |version: u32| {
            let key = SigningKey::from_bytes(&keyed_hash(
                signing_secret.expose_secret().as_bytes(),
                &[format!("nodegrid child lease signing key v{version}").as_bytes()],
            ));
            VersionedKey {
                id: key_id(&key.verifying_key()),
                key,
            }
        };
        MotherKeys {
            current: derive(version),
            previous: version.checked_sub(1).filter(|v| *v > 0).map(derive),
            key_hash_secret,
        }
    }

    /// The id of the key that signs now.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// The signature (base64url) of `document` with the current key.
    pub fn sign(&self, document: &[u8]) -> String {
        sign_document(&self.current.key, document)
    }

    /// The keys children verify with: the current one and the one before it.
    pub fn public_keys(&self) -> Vec<PublicKeyView> {
        std::iter::once((&self.current, true))
            .chain(self.previous.iter().map(|key| (key, false)))
            .map(|(versioned, current)| PublicKeyView {
                key_id: versioned.id.clone(),
                algorithm: "ed25519".into(),
                public_key: encode_public_key(&versioned.key.verifying_key()),
                current,
            })
            .collect()
    }

    /// The keyed hash a child's API key is stored and looked up as.
    pub fn key_hash(&self, api_key: &str) -> KeyedHash {
        keyed_hash(
            self.key_hash_secret.expose_secret().as_bytes(),
            &[api_key.as_bytes()],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodegrid_protocol::children::signing::{decode_public_key, verify_document};

    #[test]
    fn instances_with_one_secret_sign_alike_and_rotation_keeps_the_previous_key() {
        let secret = SecretString::from("a deployment secret of some length".to_owned());
        let one = MotherKeys::new(&secret, 1, SecretString::from("pepper".to_owned()));
        let again = MotherKeys::new(&secret, 1, SecretString::from("pepper".to_owned()));
        assert_eq!(one.current_key_id(), again.current_key_id());
        assert_eq!(one.public_keys().len(), 1);
        let rotated = MotherKeys::new(&secret, 2, SecretString::from("pepper".to_owned()));
        assert_ne!(rotated.current_key_id(), one.current_key_id());
        let keys = rotated.public_keys();
        assert_eq!(keys.len(), 2);
        assert!(
            keys.iter()
                .any(|key| key.key_id == one.current_key_id() && !key.current)
        );
        let signature = one.sign(b"lease");
        let old = keys.iter().find(|key| !key.current).unwrap();
        assert!(verify_document(
            &decode_public_key(&old.public_key).unwrap(),
            b"lease",
            &signature
        ));
        assert_eq!(one.key_hash("ngc_x"), again.key_hash("ngc_x"));
        assert_ne!(one.key_hash("ngc_x"), one.key_hash("ngc_y"));
    }
}
