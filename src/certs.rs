//! Certificates and keys read from files: checking a listener's PEM pair, and the trust
//! stores for upstreams that set `ca_file`.
//!
//! A leaf module: configuration checks, the TLS listener and the upstream clients all use it,
//! and it knows nothing of any of them. pingora's rustls listener panics at startup on files
//! it cannot use, so every check it would make (readable, a certificate, a key, the key
//! matching the certificate) is made here first, with a clear reason.

use std::sync::{Arc, OnceLock};

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, CryptoProvider, PrivateKeyDer, RusTlsError};
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;

/// The per-peer trust store type of pingora's upstream connector.
pub type CaType = pingora::protocols::tls::CaType;

/// Which file of a certificate/key pair a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

impl PairFile {
    /// The config key naming this file (`cert` or `key`).
    pub fn field(self) -> &'static str {
        match self {
            PairFile::Cert => "cert",
            PairFile::Key => "key",
        }
    }
}

/// Checks that the certificate chain in `cert` and the key in `key` parse and belong
/// together. On failure returns the offending file and the reason.
pub fn check_pair(cert: &str, key: &str) -> Result<(), (PairFile, String)> {
    let certs = read_certs(cert).map_err(|reason| (PairFile::Cert, reason))?;
    let private = read_key(key).map_err(|reason| (PairFile::Key, reason))?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or((
        PairFile::Key,
        "no TLS crypto provider installed".to_string(),
    ))?;
    let mismatch = |detail: String| {
        (
            PairFile::Key,
            format!("'{key}' does not match the certificate in '{cert}'{detail}"),
        )
    };
    let certified = CertifiedKey::from_der(certs, private, provider).map_err(|err| match err {
        RusTlsError::InconsistentKeys(_) => mismatch(String::new()),
        err => (PairFile::Key, format!("'{key}' cannot be used: {err}")),
    })?;
    // `from_der` accepts keys whose public half it cannot derive; those must match too.
    certified
        .keys_match()
        .map_err(|err| mismatch(format!(": {err}")))
}

/// Reads the PEM certificates in `path`: at least one, each a well-formed X.509 certificate.
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_pem(path)?;
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

/// The largest PEM file read: a long certificate chain is a few tens of KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a PEM file, refusing one over [`MAX_PEM_BYTES`] without reading it all (a path
/// such as `/dev/zero` would otherwise be read until memory runs out).
fn read_pem(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|err| format!("cannot read '{path}': {err}"))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("'{path}' is larger than 1 MiB"));
    }
    Ok(bytes)
}

/// Reads the first PEM private key (PKCS#8, PKCS#1 or SEC1) in `path`.
fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("'{path}' holds no PEM PRIVATE KEY (PKCS#8, RSA or EC)")
        }
        err => format!("'{path}' holds a malformed private key: {err}"),
    })
}

/// The trust store pingora's connector uses for a route with `ca_file`: the system roots
/// (as the connector loads them by default) plus the certificates in `path`. pingora
/// replaces its default store by a peer's CA list, so the system roots have to be in it too.
pub fn upstream_ca(path: &str) -> Result<Arc<CaType>, String> {
    let wrap = |cert: &CertificateDer<'_>| WrappedX509::new(cert.as_ref().to_vec(), parse_x509);
    let mut list: Vec<WrappedX509> = system_roots().iter().map(wrap).collect();
    list.extend(read_certs(path)?.iter().map(wrap));
    Ok(Arc::from(list))
}

/// The rustls client configuration for `wss://` upstreams with `ca_file`: the system roots
/// plus every certificate in `path`.
pub fn websocket_client_config(path: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|err| format!("'{path}': {err}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system roots, loaded once; only those `parse_x509` accepts (it panics on others).
fn system_roots() -> &'static [CertificateDer<'static>] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_errors() {
        assert!(websocket_client_config("/nonexistent/ca.pem").is_err());
        let dir = std::env::temp_dir().join(format!("sse-edge-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let path = empty.to_str().expect("utf-8 path");
        let err = websocket_client_config(path).expect_err("no certs");
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
        assert!(upstream_ca(path).is_err());
        let (file, reason) = check_pair(path, path).expect_err("no pair");
        assert_eq!(file, PairFile::Cert);
        assert!(reason.contains("no PEM CERTIFICATE"), "{reason}");
        let _ = std::fs::remove_dir_all(&dir);
        let endless = read_certs("/dev/zero").expect_err("too large");
        assert!(endless.contains("larger than 1 MiB"), "{endless}");
    }
}
