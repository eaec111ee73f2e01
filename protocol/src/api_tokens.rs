//! API tokens (`ngt_…`): credentials an admin issues to programs (a backend that publishes for
//! producers, a node operator, a heavy pNode API client), each limited to its scopes.
//!
//! A token is shown once, when it is issued; the server keeps only a keyed hash of it. It is
//! presented as `Authorization: Bearer ngt_…`, told apart from an access token by its prefix.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every API token starts with this.
pub const API_TOKEN_PREFIX: &str = "ngt_";

/// What a token may do. New scopes are added; none is ever renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApiScope {
    /// Publish for producers (`POST /api/producers/{id}/publish`, `POST /api/data`), for
    /// every producer or only those the token names.
    #[serde(rename = "publish")]
    Publish,
    /// Read the node registry.
    #[serde(rename = "nodes:read")]
    NodesRead,
    /// Change the node registry.
    #[serde(rename = "nodes:write")]
    NodesWrite,
    /// The pNode API without its per-client rate limit.
    #[serde(rename = "xandeum:unlimited")]
    XandeumUnlimited,
}

impl ApiScope {
    pub const ALL: [ApiScope; 4] = [
        ApiScope::Publish,
        ApiScope::NodesRead,
        ApiScope::NodesWrite,
        ApiScope::XandeumUnlimited,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ApiScope::Publish => "publish",
            ApiScope::NodesRead => "nodes:read",
            ApiScope::NodesWrite => "nodes:write",
            ApiScope::XandeumUnlimited => "xandeum:unlimited",
        }
    }

    pub fn parse(text: &str) -> Option<ApiScope> {
        ApiScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
    }
}

/// `POST /api/admin/api-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiTokenRequest {
    /// What the token is for, for people (1–100 characters, not blank: it is trimmed).
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            // Something other than white space (as Rust trims it), and no NUL.
            pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub name: String,
    /// At least one (repeats count once).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub scopes: Vec<ApiScope>,
    /// With `publish` only: the only producers the token may publish for (absent: any
    /// producer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_ids: Option<Vec<i64>>,
    /// Days until the token stops working, 1 to 36 500 (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 36_500))]
    pub expires_in_days: Option<u32>,
    /// With `xandeum:unlimited` only: the token's own limit on the pNode API, in requests per
    /// second on each instance, in place of the per-address one (absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub rate_per_sec: Option<u32>,
}

/// An API token as admins see it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenView {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to recognise it (`ngt_` and 8 more).
    pub prefix: String,
    pub scopes: Vec<ApiScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_ids: Option<Vec<i64>>,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
}

/// `POST /api/admin/api-tokens` → 201: the token, shown this once.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub view: ApiTokenView,
}

impl std::fmt::Debug for ApiTokenCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokenCreated")
            .field("token", &"***")
            .field("view", &self.view)
            .finish()
    }
}

/// `GET /api/admin/api-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokensResponse {
    pub tokens: Vec<ApiTokenView>,
}
