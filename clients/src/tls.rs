//! The clients' TLS (rustls, ring): the system's authorities and those of a `--ca-file`; TLS
//! 1.3 only where asked (the child agent to its mother). One configuration serves a client's
//! HTTP calls and its sockets.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

pub fn client_config(
    ca_file: Option<&Path>,
    tls13_only: bool,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for certificate in native.certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(certificate);
    }
    if let Some(path) = ca_file {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect())
            .map_err(|error| format!("--ca-file {}: {error}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "--ca-file {}: no certificate in it",
                path.display()
            ));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| format!("--ca-file {}: {error}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
