//! The agent's login session: its access token, and renewing it (by refresh token, else by
//! logging in again) before it expires.

use std::time::{Duration, Instant};

use nodegrid_protocol::auth::{LoginRequest, RefreshRequest, TokenResponse};
use nodegrid_protocol::error::ErrorBody;

use super::backoff::Backoff;
use super::options::{Credentials, DeviceError, DeviceSettings};

/// The access token and how to renew it.
pub(super) struct Session {
    pub(super) access_token: String,
    refresh_token: Option<String>,
    pub(super) renew_at: Option<Instant>,
}

/// Why a login or refresh call did not return tokens.
#[derive(Debug, thiserror::Error)]
enum AuthCallError {
    /// The server could not be reached or its answer could not be read: worth retrying.
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered with an error status and its stable `code`.
    #[error("HTTP {status} ({code})")]
    Refused { status: u16, code: String },
}

async fn post_json<T: serde::Serialize>(
    http: &reqwest::Client,
    url: &str,
    body: &T,
) -> Result<TokenResponse, AuthCallError> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(response.json::<TokenResponse>().await?);
    }
    let code = response
        .json::<ErrorBody>()
        .await
        .map(|body| body.code)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    Err(AuthCallError::Refused { status, code })
}

impl Session {
    pub(super) fn from_tokens(tokens: TokenResponse) -> Session {
        // Renew at four fifths of the lifetime, so a slow network still has time.
        let lifetime = Duration::from_secs(tokens.expires_in.max(1));
        Session {
            access_token: tokens.access_token,
            refresh_token: Some(tokens.refresh_token),
            renew_at: Some(Instant::now() + lifetime.mul_f64(0.8)),
        }
    }

    /// Logs in, retrying network failures with backoff; credentials the server refuses end it.
    pub(super) async fn open(
        http: &reqwest::Client,
        settings: &DeviceSettings,
        backoff: &mut Backoff,
    ) -> Result<Session, DeviceError> {
        let (username, password) = match &settings.credentials {
            Credentials::Token(token) => {
                return Ok(Session {
                    access_token: token.clone(),
                    refresh_token: None,
                    renew_at: None,
                });
            }
            Credentials::Login { username, password } => (username, password),
        };
        let url = format!("{}/api/auth/login", settings.auth_base);
        loop {
            let request = LoginRequest {
                username: username.clone(),
                password: password.clone(),
            };
            match post_json(http, &url, &request).await {
                Ok(tokens) => {
                    tracing::info!(user_id = tokens.user_id, "logged in");
                    backoff.reset();
                    return Ok(Session::from_tokens(tokens));
                }
                Err(AuthCallError::Refused { status: 401, code }) => {
                    return Err(DeviceError::BadCredentials(code));
                }
                Err(AuthCallError::Refused { status: 403, code }) => {
                    return Err(DeviceError::Refused(code));
                }
                Err(error) => tracing::warn!(%error, url, "login failed"),
            }
            if settings.once {
                return Err(DeviceError::Failed("cannot log in".into()));
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Renews the access token if it is due: by refresh token, else by logging in again.
    pub(super) async fn renew_if_due(
        &mut self,
        http: &reqwest::Client,
        settings: &DeviceSettings,
        backoff: &mut Backoff,
    ) -> Result<(), DeviceError> {
        if self.renew_at.is_none_or(|at| Instant::now() < at) {
            return Ok(());
        }
        if let Some(refresh_token) = self.refresh_token.take() {
            let url = format!("{}/api/auth/refresh", settings.auth_base);
            if let Ok(tokens) = post_json(http, &url, &RefreshRequest { refresh_token }).await {
                tracing::info!("access token refreshed");
                *self = Session::from_tokens(tokens);
                return Ok(());
            }
            tracing::warn!("refresh failed; logging in again");
        }
        *self = Session::open(http, settings, backoff).await?;
        Ok(())
    }
}
