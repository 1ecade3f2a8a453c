//! TCP keepalive for every socket the proxy holds: accepted client connections and every
//! upstream connection (pingora's connector for sse, poll and http routes, and the
//! WebSocket source's own socket).
//!
//! A stream can sit idle for hours, so a peer that vanishes without a FIN or RST (a host
//! powered off, a NAT entry dropped) would otherwise hold its connection — and on an sse
//! route the whole upstream stream — forever. After [`IDLE`] of silence the kernel probes
//! every [`INTERVAL`]; a peer that misses [`PROBES`] probes is declared dead and the next
//! read fails, so sources reconnect and client slots are freed. `TCP_USER_TIMEOUT` is set to
//! the same total, so a client that stops acknowledging what we send (heartbeats keep a
//! stream's socket busy, which suspends keepalive probes) is dropped as quickly.

use std::time::Duration;

use pingora::listeners::TcpSocketOptions;
use pingora::protocols::TcpKeepalive;

/// Silence before the first probe.
pub const IDLE: Duration = Duration::from_secs(60);
/// Time between probes.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped.
pub const PROBES: usize = 5;

/// The keepalive settings, in pingora's form (for [`pingora::upstreams::peer::HttpPeer`]
/// options and listeners).
pub fn settings() -> TcpKeepalive {
    TcpKeepalive {
        idle: IDLE,
        interval: INTERVAL,
        count: PROBES,
        #[cfg(target_os = "linux")]
        user_timeout: IDLE + INTERVAL * PROBES as u32,
    }
}

/// Socket options for the proxy's listeners: keepalive on every accepted connection.
pub fn listener_options() -> TcpSocketOptions {
    let mut options = TcpSocketOptions::default();
    options.tcp_keepalive = Some(settings());
    options
}

/// Turns keepalive on for a socket opened outside pingora (the WebSocket source's).
pub fn enable(socket: &tokio::net::TcpStream) -> Result<(), Box<pingora::Error>> {
    pingora::protocols::l4::ext::set_tcp_keepalive(socket, &settings())
}
