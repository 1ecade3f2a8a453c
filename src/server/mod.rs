//! The pingora server: the proxy listeners, the admin listener, and the signals — SIGHUP
//! reloads, SIGTERM/SIGINT drain, SIGQUIT hands the sockets to an upgrade.

mod admin;
mod signals;
mod tls;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::ShutdownWatch;
use pingora::server::{RunArgs, Server};
use pingora::services::background::{background_service, BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;

use crate::app::App;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::proxy::{HeadGuard, ProxyService};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address is taken or not bindable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A TLS listener could not be set up.
    #[error("tls listener {addr}: {reason}")]
    Tls {
        /// The address.
        addr: String,
        /// What failed.
        reason: String,
    },
}

/// Concurrent streams one HTTP/2 connection may open (pingora's default too). Per-client
/// limits still apply per stream; this bounds the work one connection can queue.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// HTTP/2 settings for downstream connections: bounded concurrent streams, and a decoded
/// header-list limit equal to `limits.max_header_bytes` (HPACK would otherwise let a small
/// header block expand past the HTTP/1.1 limit).
fn h2_options(config: &Config) -> H2Options {
    let mut options = default_h2_options();
    options.max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    options.max_header_list_size(u32::try_from(config.limits.max_header_bytes).unwrap_or(u32::MAX));
    options
}

/// Per-connection socket buffers: none. pingora's defaults (a 64 KiB read buffer and a
/// 1460-byte write buffer per connection) were most of what an idle stream cost (see
/// benches/README.md). Neither is needed: pingora's HTTP/1.1 session parses the request head
/// in a buffer of its own, a stream's client only ever sends that one small GET, and every
/// body write pingora makes is one vectored write (a chunk's size line, data and CRLF
/// together), so an unbuffered socket costs no extra system calls.
pub fn connection_buffers() -> L4BufferSettings {
    L4BufferSettings::unbuffered()
}

/// A cleartext listener: TCP keepalive on every accepted socket, no socket buffers.
fn plain_listener(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr)
        .tcp_socket_options(crate::keepalive::listener_options())
        .l4_buffer(connection_buffers())
}

/// How the process was started, beyond its configuration.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// The file SIGHUP re-reads (`None`: a generated configuration, e.g. the demo's).
    pub config_path: Option<PathBuf>,
    /// Take the listening sockets over from the running process (`--upgrade`).
    pub upgrade: bool,
}

/// Runs the proxy until SIGTERM/SIGINT (or SIGQUIT after an upgrade took over); returns
/// after streams were drained. SIGHUP reloads the configuration.
pub fn run(config: Config, launch: Launch) -> Result<(), ServerError> {
    let app = App::new(config, launch.config_path)?;
    let generation = app.current();
    let config = &generation.config;
    if !launch.upgrade {
        // Fail with a clear message before pingora would panic on a taken address. An
        // upgrade inherits the sockets instead: the addresses are the old process's.
        check_bindable(config)?;
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let conf = ServerConf {
        threads,
        // Every pingora timeout of a second or more on tokio's timer: pingora's own timer
        // needs a thread that wakes every 10 ms for the life of the process (a context switch
        // 100 times a second, a tenth of the CPU of 100 streams at 10 events/s).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        // Once the listeners close, a request accepted just before still gets its answer:
        // runtimes shut down by dropping their tasks, whatever they were doing. (Streams
        // have drained by then; see `signals`.)
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let options = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(options), conf);
    server.bootstrap();
    let phases = server.watch_execution_phase();

    let proxy = proxy_service(&server, &app, config)?;
    let mut admin = Service::new("admin".to_string(), admin::AdminApp::new(app.clone()));
    admin.add_tcp(&config.admin_listen);
    let checks = GenBackgroundService::new("upstream health checks".into(), app.health_checks());
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(checks);
    if let Some(cluster) = &app.cluster {
        server.add_service(background_service("cluster", ClusterTask(cluster.clone())));
    }
    tracing::info!(
        listen = ?config.listeners.iter().map(|l| &l.addr).collect::<Vec<_>>(),
        admin = %config.admin_listen,
        "sse-edge running"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(signals::Signals::new(app.clone(), phases)),
    });
    Ok(())
}

/// The SSE/HTTP service: every listener of `config`, HTTP/2 options, h2c.
fn proxy_service(
    server: &Server,
    app: &Arc<App>,
    config: &Config,
) -> Result<ProxyService, ServerError> {
    let mut proxy = crate::proxy::service(&server.configuration, app.clone());
    for listener in &config.listeners {
        match &listener.tls {
            Some(files) => {
                tls::add_listener(&mut proxy, &listener.addr, files).map_err(|reason| {
                    ServerError::Tls {
                        addr: listener.addr.clone(),
                        reason,
                    }
                })?
            }
            None => proxy.add_listener(plain_listener(&listener.addr)),
        }
    }
    if let Some(logic) = proxy.app_logic_mut().and_then(HeadGuard::inner_mut) {
        // pingora keeps server options per service, not per listener: one `h2c: true`
        // lets every cleartext listener of the proxy accept prior-knowledge HTTP/2.
        if config.listeners.iter().any(|l| l.h2c) {
            let mut options = HttpServerOptions::default();
            options.h2c = true;
            logic.server_options = Some(options);
        }
        logic.h2_options = Some(h2_options(config));
    }
    Ok(proxy)
}

/// The cluster's tasks as a pingora background service: they run until the process exits.
struct ClusterTask(Arc<Cluster>);

#[async_trait::async_trait]
impl BackgroundService for ClusterTask {
    async fn start(&self, _shutdown: ShutdownWatch) {
        self.0.clone().run().await;
    }
}

fn check_bindable(config: &Config) -> Result<(), ServerError> {
    let mut addrs: Vec<&str> = config.listeners.iter().map(|l| l.addr.as_str()).collect();
    addrs.push(&config.admin_listen);
    for addr in addrs {
        TcpListener::bind(addr).map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    }
    Ok(())
}
