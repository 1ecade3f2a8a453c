//! SIGHUP: re-read the file the process started with, validate it exactly like `check`, and
//! swap in the next generation — or keep serving the old one and say why.
//!
//! Routes whose streams did not change keep them (client connections, upstreams, replay
//! rings); the streams of changed or removed routes get a final jittered `retry:` and close,
//! and their clients resume on the new route with `Last-Event-ID`. Limits apply to new
//! admissions only. What only an upgrade can change (listeners, TLS files, the admin
//! listener, the upgrade socket, the log format, the cluster) is kept as it runs, with a warning naming
//! each key.

use std::sync::{Arc, PoisonError};

use super::App;
use crate::config::{Config, ConfigError};
use crate::stream::RouteStop;

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The next generation serves: `retired` routes had their streams stopped.
    Applied {
        /// The generation now serving.
        generation: u64,
        /// Routes whose streams were ended (removed or changed).
        retired: usize,
    },
    /// The file is unreadable or invalid: nothing changed.
    Refused(ConfigError),
    /// The process runs a generated configuration (the demo): nothing to re-read.
    NoFile,
}

impl App {
    /// Re-reads and applies the configuration file; every outcome is logged and counted.
    pub fn reload(&self) -> ReloadOutcome {
        let Some(path) = &self.config_path else {
            tracing::info!("SIGHUP: the demo's configuration is generated; nothing to reload");
            return ReloadOutcome::NoFile;
        };
        let outcome = match Config::load(path) {
            Ok(config) => self.apply(config),
            Err(error) => {
                log_refusal(&error);
                ReloadOutcome::Refused(error)
            }
        };
        self.metrics
            .config_reloaded(matches!(outcome, ReloadOutcome::Applied { .. }));
        outcome
    }

    fn apply(&self, mut config: Config) -> ReloadOutcome {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        keep_upgrade_only_keys(&current.config, &mut config);
        self.limiter.reconfigure(config.limits.clone());
        let (next, retired) = current.next(config, &self.metrics, &self.connectors);
        let generation = next.number;
        let routes = next.routes.len();
        *current = Arc::new(next);
        drop(current);
        for route in &retired {
            route.stop.send_replace(Some(RouteStop::Reload));
        }
        tracing::info!(
            generation,
            routes,
            retired = retired.len(),
            "SIGHUP: configuration reloaded"
        );
        ReloadOutcome::Applied {
            generation,
            retired: retired.len(),
        }
    }
}

/// Logs every problem of a refused file, each with its path and line.
fn log_refusal(error: &ConfigError) {
    match error {
        ConfigError::Invalid { file, issues } => {
            for issue in issues {
                tracing::error!(
                    file = %file,
                    line = issue.line,
                    path = %issue.path,
                    reason = %issue.reason,
                    "SIGHUP: configuration refused; the previous one keeps serving"
                );
            }
        }
        error => tracing::error!(
            %error,
            "SIGHUP: configuration refused; the previous one keeps serving"
        ),
    }
}

/// Puts back what only an upgrade applies, warning about each key that differs.
fn keep_upgrade_only_keys(running: &Config, next: &mut Config) {
    let mut changed = Vec::new();
    if running.listeners != next.listeners {
        changed.push("listen (addresses, tls files, h2c)");
        next.listeners = running.listeners.clone();
    }
    if running.admin_listen != next.admin_listen {
        changed.push("admin.listen");
        next.admin_listen = running.admin_listen.clone();
    }
    if running.upgrade_sock != next.upgrade_sock {
        changed.push("upgrade_sock");
        next.upgrade_sock = running.upgrade_sock.clone();
    }
    if running.cluster != next.cluster {
        changed.push("cluster");
        next.cluster = running.cluster.clone();
    }
    if running.log_format != next.log_format {
        changed.push("log_format");
        next.log_format = running.log_format;
    }
    for key in changed {
        tracing::warn!(
            key,
            "SIGHUP: {key} changed; it is applied by an upgrade (--upgrade), not a reload"
        );
    }
}
