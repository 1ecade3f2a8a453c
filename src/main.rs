//! The `sse-edge` command: run, check, demo or healthcheck.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sse_edge::config::{Config, LogFormat};
use sse_edge::server::Launch;

/// An edge proxy that turns SSE, polled JSON and WebSocket upstreams into Server-Sent Events.
#[derive(Parser)]
#[command(name = "sse-edge", version, about)]
struct Cli {
    #[command(flatten)]
    file: ConfigFile,
    /// Take the listening sockets over from the running process (zero-downtime upgrade:
    /// start this, then send SIGQUIT to the old process).
    #[arg(long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Which configuration file to use.
#[derive(Args)]
struct ConfigFile {
    /// The YAML configuration file [default: ./conf/sse-edge.yaml, else
    /// /etc/sse-edge/sse-edge.yaml].
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ConfigFile {
    /// This choice, or `other` when this one names no file.
    fn or(self, other: ConfigFile) -> ConfigFile {
        ConfigFile {
            config: self.config.or(other.config),
        }
    }

    fn path(self) -> Result<PathBuf, String> {
        self.config.map_or_else(Config::default_path, Ok)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration file and exit.
    Check {
        #[command(flatten)]
        file: ConfigFile,
    },
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
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Check { file }) => check(file.or(cli.file)),
        Some(Command::Demo { listen, admin }) => {
            sse_edge::logging::init(LogFormat::Text);
            sse_edge::demo::run(&listen, admin.as_deref())
        }
        Some(Command::Healthcheck { url, timeout }) => sse_edge::healthcheck::run(&url, timeout),
        None => run(cli.file, cli.upgrade),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sse-edge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: ConfigFile) -> Result<(), String> {
    let path = file.path()?;
    let config = Config::load(&path).map_err(|err| err.to_string())?;
    println!("{}: ok: {}", path.display(), config.summary());
    Ok(())
}

fn run(file: ConfigFile, upgrade: bool) -> Result<(), String> {
    let path = file.path()?;
    let config = Config::load(&path).map_err(|err| err.to_string())?;
    sse_edge::logging::init(config.log_format);
    let launch = Launch {
        config_path: Some(path),
        upgrade,
    };
    sse_edge::server::run(config, launch).map_err(|err| err.to_string())
}
