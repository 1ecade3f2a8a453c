//! The `sse-edge` command: run, check, demo or healthcheck.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sse_edge::config::Config;

/// An edge proxy that turns SSE, polled JSON and WebSocket upstreams into Server-Sent Events.
#[derive(Parser)]
#[command(name = "sse-edge", version, about)]
struct Cli {
    /// The YAML configuration file.
    #[arg(long, global = true, default_value = "conf/sse-edge.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration file and exit.
    Check,
    /// Start demo upstreams, the proxy in front of them, and a live page at `/`.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the admin listener (/metrics) listens; default 127.0.0.1:9090 or the next free port.
        #[arg(long)]
        admin: Option<String>,
    },
    /// GET an admin URL and exit 0 when it answers 2xx (a container HEALTHCHECK without curl).
    Healthcheck {
        /// The URL to ask (plain http:// only).
        #[arg(long, default_value = sse_edge::healthcheck::DEFAULT_URL)]
        url: String,
        /// Deadline for the whole request, e.g. 2s or 500ms.
        #[arg(long, default_value = "2s", value_parser = sse_edge::healthcheck::parse_timeout)]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Check) => Config::load(&cli.config)
            .map(|config| println!("{}: ok: {}", cli.config.display(), config.summary()))
            .map_err(|err| err.to_string()),
        Some(Command::Demo { listen, admin }) => sse_edge::demo::run(&listen, admin.as_deref()),
        Some(Command::Healthcheck { url, timeout }) => sse_edge::healthcheck::run(&url, timeout),
        None => Config::load(&cli.config)
            .map_err(|err| err.to_string())
            .and_then(|config| sse_edge::server::run(config).map_err(|err| err.to_string())),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sse-edge: {message}");
            ExitCode::FAILURE
        }
    }
}
