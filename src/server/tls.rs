//! TLS material: checking a listener's PEM certificate and key, building the HTTPS
//! listener (rustls, ALPN `h2` + `http/1.1`), and loading a route's extra upstream CA.
//!
//! pingora's rustls listener panics at startup on files it cannot use, so every check it
//! would make (readable, a certificate, a key, the key matching the certificate) is made
//! first here, by `sse-edge check` and by config validation at startup, with a clear reason.

use std::sync::{Arc, OnceLock};

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, CryptoProvider, PrivateKeyDer, RusTlsError};
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls_pki_types::pem::PemObject;

use super::super::config::TlsFiles;

/// The per-peer trust store type of pingora's upstream connector.
pub type CaType = pingora::protocols::tls::CaType;

/// Checks that the certificate chain and key parse and belong together.
/// On failure returns the offending field (`cert` or `key`) and the reason.
pub fn check_files(tls: &TlsFiles) -> Result<(), (&'static str, String)> {
    let certs = read_certs(&tls.cert).map_err(|reason| ("cert", reason))?;
    let key = read_key(&tls.key).map_err(|reason| ("key", reason))?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or(("key", "no TLS crypto provider installed".to_string()))?;
    let certified = CertifiedKey::from_der(certs, key, provider).map_err(|err| {
        let reason = match err {
            RusTlsError::InconsistentKeys(_) => format!(
                "'{}' does not match the certificate in '{}'",
                tls.key, tls.cert
            ),
            err => format!("'{}' cannot be used: {err}", tls.key),
        };
        ("key", reason)
    })?;
    // `from_der` accepts keys whose public half it cannot derive; those must match too.
    certified.keys_match().map_err(|err| {
        (
            "key",
            format!(
                "'{}' does not match the certificate in '{}': {err}",
                tls.key, tls.cert
            ),
        )
    })
}

/// Reads the PEM certificates in `path`: at least one, each a well-formed X.509 certificate.
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read '{path}': {err}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("'{path}' holds malformed PEM: {err}"))?;
    if certs.is_empty() {
        return Err(format!("'{path}' holds no PEM CERTIFICATE"));
    }
    for (index, cert) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|err| format!("'{path}': certificate {index} is not valid X.509: {err}"))?;
    }
    Ok(certs)
}

/// Reads the first PEM private key (PKCS#8, PKCS#1 or SEC1) in `path`.
fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read '{path}': {err}"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("'{path}' holds no PEM PRIVATE KEY (PKCS#8, RSA or EC)")
        }
        err => format!("'{path}' holds a malformed private key: {err}"),
    })
}

/// Checks a route's `ca_file`: readable, with at least one valid certificate.
pub fn check_ca_file(path: &str) -> Result<(), String> {
    read_certs(path).map(|_| ())
}

/// The trust store for upstreams of a route with `ca_file`: the system roots (as pingora's
/// connector loads them by default) plus the certificates in `path`. pingora replaces its
/// default store by a peer's CA list, so the system roots have to be in the list too.
pub fn upstream_ca(path: &str) -> Result<Arc<CaType>, String> {
    let mut list: Vec<WrappedX509> = system_roots().iter().map(wrap).collect();
    list.extend(read_certs(path)?.iter().map(wrap));
    Ok(Arc::from(list))
}

fn wrap(cert: &CertificateDer<'_>) -> WrappedX509 {
    WrappedX509::new(cert.as_ref().to_vec(), parse_x509)
}

/// The system roots, loaded once; only those `parse_x509` accepts (it panics on others).
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let roots = pingora::tls::load_native_certs().unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot load the system CA roots");
            Vec::new()
        });
        roots
            .into_iter()
            .filter(|cert| x509_parser::parse_x509_certificate(cert.as_ref()).is_ok())
            .collect()
    })
}

/// Adds an HTTPS listener (rustls, ALPN `h2` and `http/1.1`) to the proxy service.
/// The files must have passed [`check_files`] (config validation does that).
pub fn add_listener<A>(
    service: &mut pingora::services::listening::Service<A>,
    addr: &str,
    files: &TlsFiles,
) -> Result<(), String> {
    check_files(files).map_err(|(field, reason)| format!("tls.{field}: {reason}"))?;
    let mut settings = pingora::listeners::tls::TlsSettings::intermediate(&files.cert, &files.key)
        .map_err(|err| err.to_string())?;
    settings.enable_h2();
    service.add_listener(
        pingora::listeners::ListenerConfig::tcp(addr)
            .tls(settings)
            .l4_buffer(super::connection_buffers()),
    );
    Ok(())
}
