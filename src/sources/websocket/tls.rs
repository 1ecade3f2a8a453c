//! TLS for `wss://` upstreams that need an extra CA (`ca_file`): the system roots plus the
//! certificates of that PEM file — loaded by the same functions as the HTTP upstreams' CA
//! (`server::tls`), turned into the rustls configuration tungstenite takes.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::server::tls::{read_certs, system_roots};

/// A client configuration trusting the system roots and every certificate in `ca_file`.
pub fn client_config(ca_file: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    for cert in read_certs(ca_file)? {
        roots
            .add(cert)
            .map_err(|err| format!("'{ca_file}': {err}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
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
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
