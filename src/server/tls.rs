//! TLS material for HTTPS listeners: checking the configured PEM files.

use super::super::config::TlsFiles;

/// Checks that the certificate and key files exist and hold PEM data.
/// On failure returns the offending field (`cert` or `key`) and the reason.
pub fn check_files(tls: &TlsFiles) -> Result<(), (&'static str, String)> {
    for (field, path, marker) in [
        ("cert", &tls.cert, "CERTIFICATE"),
        ("key", &tls.key, "PRIVATE KEY"),
    ] {
        let text = std::fs::read_to_string(path)
            .map_err(|err| (field, format!("cannot read '{path}': {err}")))?;
        if !text.contains(marker) {
            return Err((field, format!("'{path}' holds no PEM {marker}")));
        }
    }
    Ok(())
}

/// Adds an HTTPS listener (rustls, ALPN `h2` and `http/1.1`) to the proxy service.
pub fn add_listener<A>(
    service: &mut pingora::services::listening::Service<A>,
    addr: &str,
    files: &TlsFiles,
) -> Result<(), String> {
    let mut settings = pingora::listeners::tls::TlsSettings::intermediate(&files.cert, &files.key)
        .map_err(|err| err.to_string())?;
    settings.enable_h2();
    service.add_tls_with_settings(addr, None, settings);
    Ok(())
}
