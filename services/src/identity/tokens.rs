//! Access tokens (JWT, HS256) and refresh tokens (opaque, stored as hashes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use nodegrid_protocol::auth::{AccessClaims, Role};
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The secret used when none is configured, in development only. Production refuses it.
pub const DEVELOPMENT_JWT_SECRET: &str = "nodegrid-development-secret-do-not-use-in-production";
/// The shortest secret production accepts, in bytes.
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;
/// Clock skew tolerated between the instance that issued a token and the one checking it.
const LEEWAY_SECS: u64 = 5;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

/// A signing key with its id (`kid`), so that several can be accepted while one signs.
#[derive(Clone)]
pub struct JwtKey {
    pub id: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey({}, ***)", self.id)
    }
}

impl JwtKey {
    /// `kid:secret`.
    pub fn parse(text: &SecretString) -> Result<JwtKey, KeyFormatError> {
        let (id, secret) = text.expose_secret().split_once(':').ok_or(KeyFormatError)?;
        let id = id.trim();
        if id.is_empty() || id.len() > 64 || secret.is_empty() {
            return Err(KeyFormatError);
        }
        Ok(JwtKey {
            id: id.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        })
    }
}

/// A signing key given in the wrong form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a previous key is written kid:secret, with a kid of 1 to 64 characters")]
pub struct KeyFormatError;

/// Signs access tokens with one key and checks them against that key and any earlier ones,
/// chosen by the token's `kid`.
#[derive(Clone)]
pub struct AccessTokens {
    signing_id: String,
    encoding: EncodingKey,
    /// Every accepted key by id, the signing key included.
    decoding: std::collections::HashMap<String, DecodingKey>,
    validation: Validation,
    ttl: Duration,
}

/// Whom a token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub token_version: i32,
    pub session_id: uuid::Uuid,
}

/// What the server knows about a token holder, once the token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub token_version: i32,
    pub session_id: uuid::Uuid,
    /// The token's `exp`, in Unix seconds.
    pub expires_at: u64,
}

impl AccessTokens {
    /// Signs with `signing`, accepts `signing` and `previous`.
    pub fn new(signing: &JwtKey, previous: &[JwtKey], ttl: Duration) -> AccessTokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        let decoding = previous
            .iter()
            .chain(std::iter::once(signing))
            .map(|key| {
                (
                    key.id.clone(),
                    DecodingKey::from_secret(key.secret.expose_secret().as_bytes()),
                )
            })
            .collect();
        AccessTokens {
            signing_id: signing.id.clone(),
            encoding: EncodingKey::from_secret(signing.secret.expose_secret().as_bytes()),
            decoding,
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `subject`, valid for the configured lifetime from now.
    pub fn issue(&self, subject: &TokenSubject) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now();
        self.issue_at(subject, now, now + self.ttl.as_secs())
    }

    /// A signed token with explicit times (tests use it for expired tokens).
    pub fn issue_at(
        &self,
        subject: &TokenSubject,
        issued_at: u64,
        expires_at: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = AccessClaims {
            sub: subject.user_id.to_string(),
            name: subject.username.clone(),
            role: subject.role,
            iat: issued_at,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().to_string(),
            ver: subject.token_version,
            sid: subject.session_id.to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// Checks signature, algorithm (HS256 only) and expiry; no IO.
    pub fn verify(&self, token: &str) -> Result<AuthUser, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // Tokens from before key ids existed carry none: they were signed by the signing key.
        let kid = header.kid.as_deref().unwrap_or(&self.signing_id);
        let key = self.decoding.get(kid).ok_or(TokenError::Invalid)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let claims = data.claims;
        // Issued in the future: the signer's clock is ahead of this one (a clock jump, or a
        // skewed instance). Accepting it would let the token live past its lifetime here.
        if claims.iat > unix_now() + LEEWAY_SECS {
            return Err(TokenError::Invalid);
        }
        Ok(AuthUser {
            user_id: claims.sub.parse().map_err(|_| TokenError::Invalid)?,
            username: claims.name,
            role: claims.role,
            token_version: claims.ver,
            session_id: claims.sid.parse().map_err(|_| TokenError::Invalid)?,
            expires_at: claims.exp,
        })
    }
}

/// A new refresh token: 256 random bits, base64url. Only its hash is stored.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token. A fast hash is enough: the token has 256 bits of
/// entropy, so it cannot be guessed from its hash.
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Whether a secret is acceptable in production: long enough and not the development one.
pub fn is_strong_secret(secret: &SecretString) -> bool {
    let text = secret.expose_secret();
    text.len() >= MIN_PRODUCTION_SECRET_BYTES && text != DEVELOPMENT_JWT_SECRET
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> TokenSubject {
        TokenSubject {
            user_id: 42,
            username: "ada".into(),
            role: Role::Consumer,
            token_version: 3,
            session_id: uuid::Uuid::new_v4(),
        }
    }

    fn key(id: &str, secret: &str) -> JwtKey {
        JwtKey {
            id: id.into(),
            secret: SecretString::from(secret),
        }
    }

    fn tokens(secret: &str) -> AccessTokens {
        AccessTokens::new(&key("k1", secret), &[], Duration::from_secs(3600))
    }

    /// Every way a presented access token must be refused, in one place (the HTTP tests
    /// check the answers on the wire: `identity::expired_tampered_and_foreign_algorithm…`).
    #[test]
    fn tokens_that_must_not_pass() {
        use base64::Engine as _;
        let secret = "the-secret-that-is-long-enough-for-hs256!";
        let signer = tokens(secret);
        let now = unix_now();
        let good = signer.issue(&subject()).unwrap();
        assert!(signer.verify(&good).is_ok());
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = good.split('.').collect();
        let header_with =
            |header: &str| format!("{}.{}.{}", engine.encode(header), parts[1], parts[2]);
        let claims: serde_json::Value =
            serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
        let signed_with = |algorithm: Algorithm, key: &EncodingKey| {
            let mut header = Header::new(algorithm);
            header.kid = Some("k1".into());
            jsonwebtoken::encode(&header, &claims, key).unwrap()
        };
        let refused = [
            // Expired, beyond the leeway.
            ("expired", signer.issue_at(&subject(), now - 7200, now - 3600).unwrap()),
            // Issued in the future: the signer's clock is ahead (a jump, a skewed instance).
            ("issued in the future", signer.issue_at(&subject(), now + 3600, now + 7200).unwrap()),
            // No signature at all.
            ("alg none", format!("{}.{}.", engine.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1])),
            // The right secret under another HMAC.
            ("HS512", signed_with(Algorithm::HS512, &EncodingKey::from_secret(secret.as_bytes()))),
            // HS/RS confusion: an RS256 header over an HMAC signature.
            ("RS256 header", header_with(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#)),
            // A key id this server does not have.
            ("unknown kid", header_with(r#"{"alg":"HS256","typ":"JWT","kid":"k9"}"#)),
            // Another deployment's secret.
            ("other secret", tokens("another-secret-that-is-long-enough-too!").issue(&subject()).unwrap()),
            // A changed payload.
            ("tampered", format!("{}.{}.{}", parts[0], engine.encode(r#"{"sub":"1","name":"x","role":"admin","iat":1,"exp":9999999999,"jti":"j","ver":0,"sid":"00000000-0000-0000-0000-000000000000"}"#), parts[2])),
            ("garbage", "not-a-token".to_owned()),
        ];
        for (what, token) in refused {
            assert!(signer.verify(&token).is_err(), "{what} passed");
        }
        assert_eq!(
            signer.verify(&signer.issue_at(&subject(), now - 7200, now - 3600).unwrap()),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_signing_key_rotates_without_logging_anyone_out() {
        let old = tokens("the-old-secret-that-is-long-enough!");
        let issued_before = old.issue(&subject()).unwrap();
        let header = jsonwebtoken::decode_header(&issued_before).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let rotated = AccessTokens::new(
            &key("k2", "the-new-secret-that-is-long-enough!"),
            &[key("k1", "the-old-secret-that-is-long-enough!")],
            Duration::from_secs(3600),
        );
        assert!(
            rotated.verify(&issued_before).is_ok(),
            "old tokens still work"
        );
        let issued_after = rotated.issue(&subject()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&issued_after)
                .unwrap()
                .kid
                .as_deref(),
            Some("k2")
        );
        assert!(rotated.verify(&issued_after).is_ok());
        assert_eq!(old.verify(&issued_after), Err(TokenError::Invalid));
        // Once the old key is dropped, its tokens stop working.
        let retired = AccessTokens::new(
            &key("k2", "the-new-secret-that-is-long-enough!"),
            &[],
            Duration::from_secs(3600),
        );
        assert_eq!(retired.verify(&issued_before), Err(TokenError::Invalid));
        assert!(
            JwtKey::parse(&SecretString::from("k0:secret")).is_ok()
                && JwtKey::parse(&SecretString::from("no-colon")).is_err()
        );
    }

    #[test]
    fn a_token_round_trips() {
        let tokens = tokens("a-test-secret-that-is-long-enough!!");
        let token = tokens.issue(&subject()).unwrap();
        assert_eq!(
            tokens.verify(&token).unwrap(),
            subject_with(&tokens, &token)
        );
    }

    fn subject_with(tokens: &AccessTokens, token: &str) -> AuthUser {
        tokens.verify(token).unwrap()
    }

    #[test]
    fn expired_tampered_foreign_and_other_algorithms_are_refused() {
        let tokens = tokens("a-test-secret-that-is-long-enough!!");
        let now = unix_now();
        let expired = tokens.issue_at(&subject(), now - 7200, now - 3600).unwrap();
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));

        let token = tokens.issue(&subject()).unwrap();
        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert_eq!(tokens.verify(&tampered), Err(TokenError::Invalid));

        let foreign = self::tokens("another-secret-entirely-of-some-length")
            .issue(&subject())
            .unwrap();
        assert_eq!(tokens.verify(&foreign), Err(TokenError::Invalid));

        let claims = serde_json::json!({"sub": "42", "name": "ada", "role": "admin", "iat": now,
            "exp": now + 60, "jti": "x", "ver": 3, "sid": uuid::Uuid::new_v4().to_string()});
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"a-test-secret-that-is-long-enough!!"),
        )
        .unwrap();
        assert_eq!(tokens.verify(&hs512), Err(TokenError::Invalid));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let first = new_refresh_token();
        assert_eq!(first.len(), 43);
        assert_ne!(first, new_refresh_token());
        assert_eq!(refresh_token_hash(&first), refresh_token_hash(&first));
        assert_eq!(refresh_token_hash(&first).len(), 32);
    }

    #[test]
    fn weak_secrets_are_recognised() {
        assert!(!is_strong_secret(&SecretString::from(
            DEVELOPMENT_JWT_SECRET
        )));
        assert!(!is_strong_secret(&SecretString::from("short")));
        assert!(is_strong_secret(&SecretString::from(
            "0123456789abcdef0123456789abcdef"
        )));
    }
}
