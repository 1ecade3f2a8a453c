//! TLS for `wss://` upstreams that need an extra CA (`ca_file`): the system roots plus the
//! certificates of that PEM file.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Why the `ca_file` could not be turned into a TLS client configuration.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read or holds no usable PEM certificate.
    #[error("cannot read CA certificates from {path}: {reason}")]
    Read {
        /// The configured `ca_file`.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A client configuration trusting the system roots and every certificate in `ca_file`.
pub fn client_config(ca_file: &str) -> Result<Arc<ClientConfig>, CaFileError> {
    let read_error = |reason: String| CaFileError::Read {
        path: ca_file.to_string(),
        reason,
    };
    let extra = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| read_error(err.to_string()))?;
    if extra.is_empty() {
        return Err(read_error("no certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for cert in extra {
        roots.add(cert).map_err(|err| read_error(err.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_errors() {
        assert!(client_config("/nonexistent/ca.pem").is_err());
        let dir = std::env::temp_dir().join(format!("sse-edge-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = client_config(empty.to_str().expect("utf-8 path")).expect_err("no certs");
        assert!(err.to_string().contains("no certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
