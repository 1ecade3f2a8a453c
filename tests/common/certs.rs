//! A per-test PKI: a CA and a server certificate for `localhost` and `127.0.0.1`, as PEM
//! files for the proxy and as rustls configs for test clients and servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls;

use super::WAIT;

/// A test CA and a server certificate for `localhost` and `127.0.0.1`, written as PEM files.
pub struct Pki {
    /// The directory holding `ca.pem`, `cert.pem`, `key.pem` and `other-key.pem`.
    pub dir: PathBuf,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
    spki_der: Vec<u8>,
}

impl Pki {
    /// Generates the CA and certificate into a fresh temp directory.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("sse-edge-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sse-edge test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
        let other_key = KeyPair::generate().expect("other key");
        for (file, pem) in [
            ("ca.pem", ca.pem()),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-key.pem", other_key.serialize_pem()),
        ] {
            std::fs::write(dir.join(file), pem).expect("write pem");
        }
        Pki {
            ca_der: ca.der().clone(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            spki_der: key.public_key_der(),
            dir,
        }
    }

    /// The path of one of the PEM files.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// A client config trusting only the test CA.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add CA");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Base64 of the SHA-256 of the server key's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes.
    pub fn spki_sha256_base64(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.spki_der);
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    }

    /// A server config presenting the test certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![self.cert_der.clone()], key)
        .expect("server config");
        Arc::new(config)
    }

    /// A TLS connection to `addr` (server name `localhost`) offering `alpn`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let connector = tokio_rustls::TlsConnector::from(self.client_config(alpn));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        timeout(WAIT, connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
