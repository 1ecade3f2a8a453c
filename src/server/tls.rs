//! The HTTPS listener: rustls with ALPN `h2` + `http/1.1`, from files [`crate::certs`]
//! has checked.

use crate::certs::check_pair;
use crate::config::TlsFiles;

/// Adds an HTTPS listener (rustls, ALPN `h2` and `http/1.1`) to the proxy service.
/// The files are checked again first: pingora's listener panics on files it cannot use.
pub fn add_listener<A>(
    service: &mut pingora::services::listening::Service<A>,
    addr: &str,
    files: &TlsFiles,
) -> Result<(), String> {
    check_pair(&files.cert, &files.key)
        .map_err(|(file, reason)| format!("tls.{}: {reason}", file.field()))?;
    let mut settings = pingora::listeners::tls::TlsSettings::intermediate(&files.cert, &files.key)
        .map_err(|err| err.to_string())?;
    settings.enable_h2();
    service.add_listener(
        pingora::listeners::ListenerConfig::tcp(addr)
            .tcp_socket_options(crate::keepalive::listener_options())
            .tls(settings)
            .l4_buffer(super::connection_buffers()),
    );
    Ok(())
}
