//! The child's calls to the mother: each request signed (key, timestamp, fresh nonce, body
//! hash), the mother's URLs tried in order, a refusal told apart from an outage.

use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::children::lease::{PublicKeyView, PublicKeysResponse};
use nodegrid_protocol::children::signing::{
    AUTHORIZATION_SCHEME, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request,
};

/// Why a call got no answer to use. `kind` names are bounded (metrics and logs use them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No mother answered (connection refused, reset, DNS, TLS).
    #[error("no mother answered: {0}")]
    Unreachable(String),
    #[error("the mother did not answer in time")]
    Timeout,
    /// 5xx or 429 from every mother tried.
    #[error("the mother is unavailable ({0})")]
    Unavailable(u16),
    /// The mother refused the request (401: the key or signature; 4xx otherwise).
    #[error("the mother refused the request: {status} {code}")]
    Refused { status: u16, code: String },
}

impl CallError {
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Unreachable(_) => "unreachable",
            CallError::Timeout => "timeout",
            CallError::Unavailable(429) => "rate_limited",
            CallError::Unavailable(_) => "server_error",
            CallError::Refused { .. } => "refused",
        }
    }
}

/// An answer: its body and the nonce its request was signed with (signed answers echo it).
pub struct Answer {
    pub body: Vec<u8>,
    pub nonce: String,
}

pub struct Mother {
    urls: Vec<String>,
    key: String,
    http: reqwest::Client,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn fresh_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Mother {
    /// `tls`: the configuration of `https://` mothers (TLS 1.3, the trusted authorities).
    pub fn new(
        urls: Vec<String>,
        key: String,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Mother, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(config) = &tls {
            builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(config));
        }
        let http = builder
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Mother {
            urls,
            key,
            http,
            tls,
        })
    }

    /// A mother client on an HTTP client of the caller's (many children, one pool).
    pub fn with_client(http: reqwest::Client, urls: Vec<String>, key: String) -> Mother {
        Mother {
            urls,
            key,
            http,
            tls: None,
        }
    }

    /// The TLS configuration of `wss://` sockets to the mother.
    pub fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// The mother's base URLs, in the order they are tried.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The headers that sign a request of `method` to `url` with `body` (a fresh nonce each
    /// time); `None` for a URL that cannot be read.
    pub fn signed_headers(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Option<Vec<(&'static str, String)>> {
        let parsed = reqwest::Url::parse(url).ok()?;
        // Signed as the mother sees it: the URL's own path (a base URL may have one).
        let signed_path = match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let nonce = fresh_nonce();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign_request(&self.key, method, &signed_path, timestamp, &nonce, body);
        Some(vec![
            (
                "authorization",
                format!("{AUTHORIZATION_SCHEME} {}", self.key),
            ),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (NONCE_HEADER, nonce),
            (SIGNATURE_HEADER, signature),
        ])
    }

    /// A signed call, to each mother URL in turn until one answers.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, CallError> {
        let mut last = CallError::Unreachable("no mother URL".into());
        for base in &self.urls {
            let url = format!("{base}{path_and_query}");
            let payload = body.clone().unwrap_or_default();
            let Some(headers) = self.signed_headers(method.as_str(), &url, &payload) else {
                last = CallError::Unreachable(format!("{url} is not a URL"));
                continue;
            };
            let nonce = headers
                .iter()
                .find(|(name, _)| *name == NONCE_HEADER)
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            let mut request = self.http.request(method.clone(), &url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if body.is_some() {
                request = request
                    .header("Content-Type", "application/json")
                    .body(payload);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = match response.bytes().await {
                        Ok(bytes) => bytes.to_vec(),
                        Err(error) if error.is_timeout() => {
                            last = CallError::Timeout;
                            continue;
                        }
                        Err(error) => {
                            last = CallError::Unreachable(error.to_string());
                            continue;
                        }
                    };
                    match status {
                        200..=299 => return Ok(Answer { body: bytes, nonce }),
                        429 | 500..=599 => last = CallError::Unavailable(status),
                        _ => {
                            let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                                .ok()
                                .and_then(|body| body["code"].as_str().map(str::to_owned))
                                .unwrap_or_default();
                            return Err(CallError::Refused { status, code });
                        }
                    }
                }
                Err(error) if error.is_timeout() => last = CallError::Timeout,
                Err(error) => last = CallError::Unreachable(error.to_string()),
            }
        }
        Err(last)
    }

    /// The mother's public keys (no signature needed).
    pub async fn public_keys(&self) -> Result<Vec<PublicKeyView>, CallError> {
        let mut last = CallError::Unreachable("no mother URL".into());
        for base in &self.urls {
            match self
                .http
                .get(format!("{base}/api/child/public-keys"))
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    match response.json::<PublicKeysResponse>().await {
                        Ok(keys) => return Ok(keys.keys),
                        Err(error) => last = CallError::Unreachable(error.to_string()),
                    }
                }
                Ok(response) => last = CallError::Unavailable(response.status().as_u16()),
                Err(error) if error.is_timeout() => last = CallError::Timeout,
                Err(error) => last = CallError::Unreachable(error.to_string()),
            }
        }
        Err(last)
    }
}
