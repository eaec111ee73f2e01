//! HTTPS and WSS on the API port (rustls, ring): the certificate and key come from PEM files
//! that are checked every few seconds and re-read when they change, so that a renewed
//! certificate is served without a restart; a file that cannot be read keeps the old one (and
//! says so in the log and a metric). `--tls13-only` offers TLS 1.3 alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use nodegrid_services::config::TlsSettings;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::TLS_RELOADS_TOTAL;

/// How often the files are checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a TLS key: {0}")]
    Key(String),
}

fn read_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|error| file_error(cert, error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| file_error(cert, error.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate in it".into()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|error| file_error(key, error.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, private, &provider)
        .map_err(|error| TlsError::Key(error.to_string()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// The current certificate, swapped when the files change.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The server's TLS configuration; a thread watches the files for the life of the process.
pub fn server_config(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let key = read_key(&settings.cert, &settings.key)?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(key)),
    });
    let versions: &[&'static rustls::SupportedProtocolVersion] = if settings.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| TlsError::Key(error.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (cert, key) = (settings.cert.clone(), settings.key.clone());
    // The thread holds the resolver weakly: it ends when the server (its configuration) does.
    let resolver = Arc::downgrade(&resolver);
    let watcher = std::thread::Builder::new().name("tls-reload".into()).spawn(move || {
        let mut seen = (modified(&cert), modified(&key));
        loop {
            std::thread::sleep(CHECK_EVERY);
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            let now = (modified(&cert), modified(&key));
            if now == seen {
                continue;
            }
            seen = now;
            match read_key(&cert, &key) {
                Ok(fresh) => {
                    *resolver.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
                    metrics::counter!(TLS_RELOADS_TOTAL, "outcome" => "ok").increment(1);
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                }
                Err(error) => {
                    metrics::counter!(TLS_RELOADS_TOTAL, "outcome" => "failed").increment(1);
                    tracing::error!(%error, "the TLS files changed but cannot be used; serving the previous certificate");
                }
            }
        }
    });
    if let Err(error) = watcher {
        tracing::warn!(%error, "cannot watch the TLS files; a renewed certificate needs a restart");
    }
    Ok(config)
}
