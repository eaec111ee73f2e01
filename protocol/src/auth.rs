//! Identity: the bodies of `/api/auth/*` and `/api/admin/*`, the access-token claims, and roles.
//!
//! The paths and field names follow Motience's Authentication Platform, so that its devices and
//! consumers work unchanged.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a user may do. Producers stream, consumers subscribe, admins manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Producer,
    Consumer,
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "producer" => Some(Role::Producer),
            "consumer" => Some(Role::Consumer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/auth/register`. Creating an `admin` needs an admin's access token.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// 3 to 32 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit and not
    /// ending with `.`; unique regardless of case. (Surrounding spaces are trimmed.)
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,30}[A-Za-z0-9_-]$")
    )]
    pub username: String,
    /// 8 to 128 characters (the shortest is `--password-min-length`, 8 by default). No NUL:
    /// no JSON body may carry one.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 8, max_length = 128, pattern = r"^[^\u0000]*$")
    )]
    pub password: String,
    pub role: Role,
    /// The device a producer streams from, as the device knows itself: at most 128 bytes of
    /// UTF-8, not blank, without control, bidirectional or zero-width characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 128,
            // A visible character, with none of the characters names may not hold around it.
            pattern = r"^[^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff][^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*$"
        )
    )]
    pub device_id: Option<String>,
}

/// `POST /api/auth/register` → 201, and `GET /api/auth/verify` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserIdentity {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
}

/// `POST /api/auth/login`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// `POST /api/auth/refresh`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `POST /api/auth/login` and `POST /api/auth/refresh` → 200.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// A JWT (HS256) to send as `Authorization: Bearer …` or `?token=…`.
    pub access_token: String,
    /// Opaque; exchange it once at `/api/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user_id: i64,
    pub role: Role,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id, as a decimal string (JWT subjects are strings).
    pub sub: String,
    pub name: String,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    /// Unique per token.
    pub jti: String,
    /// The user's token version when the token was issued; a block raises it, so that older
    /// tokens stop working everywhere.
    pub ver: i32,
    /// The refresh-token family (the login session) the token belongs to.
    pub sid: String,
}

/// One user as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub blocked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/admin/users/{id}/block`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockRequest {
    /// Why; shown to admins and kept in the audit log. 1 to 500 characters, not blank (it is
    /// trimmed); control characters are kept escaped.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 500,
            // Something other than white space (as Rust trims it), and no NUL.
            pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub reason: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user who acted; absent for anonymous events (a failed login) and the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<i64>,
    /// The actor's username as known or as given (for a failed login), or `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What happened, e.g. `user.block`, `auth.login_failed`, `auth.refresh_reuse`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Event-specific facts; never a secret.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
    /// Items matching the filter, on all pages.
    pub total: i64,
}

// Passwords and tokens never reach a log, not even through `{:?}`.
macro_rules! redacted_debug {
    ($type:ident { $($shown:ident),* ; $($hidden:ident),* }) => {
        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($shown), &self.$shown))*
                    $(.field(stringify!($hidden), &"***"))*
                    .finish()
            }
        }
    };
}

redacted_debug!(RegisterRequest { username, role, device_id ; password });
redacted_debug!(LoginRequest { username ; password });
redacted_debug!(RefreshRequest { ; refresh_token });
redacted_debug!(TokenResponse { token_type, expires_in, user_id, role ; access_token, refresh_token });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let request = LoginRequest {
            username: "ada".into(),
            password: "correct horse".into(),
        };
        let text = format!("{request:?}");
        assert!(text.contains("ada"));
        assert!(!text.contains("correct horse"), "{text}");
    }

    #[test]
    fn roles_are_lowercase_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&Role::Consumer).unwrap(),
            "\"consumer\""
        );
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
