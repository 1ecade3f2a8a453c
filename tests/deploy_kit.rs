//! The deployment kit without a Docker engine: `docker-compose.yml`, the Dockerfile, the
//! Prometheus and Grafana files parse and agree with each other, everything they mount or
//! copy exists, the dashboard only queries metrics sse-edge exports, and every sse-edge
//! config under `conf/` passes `sse-edge check`. The image ships the container config
//! (`conf/docker.yaml`), a release binary without debug info, and a HEALTHCHECK that runs
//! `sse-edge healthcheck` (checked by running that exact command against a live proxy).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::promql::selectors;
use common::{demo_metrics, Proxy};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The metric families of SPEC §5.
const SPEC_METRICS: &[&str] = &[
    "sse_edge_connections_active",
    "sse_edge_connections_total",
    "sse_edge_connections_rejected_total",
    "sse_edge_events_sent_total",
    "sse_edge_bytes_sent_total",
    "sse_edge_heartbeats_sent_total",
    "sse_edge_replay_hits_total",
    "sse_edge_replay_misses_total",
    "sse_edge_slow_client_disconnects_total",
    "sse_edge_upstream_connects_total",
    "sse_edge_upstream_errors_total",
    "sse_edge_upstream_streams_active",
    "sse_edge_polls_total",
    "sse_edge_poll_duration_seconds",
    "sse_edge_event_delivery_seconds",
    "sse_edge_stream_ends_total",
    "sse_edge_http_requests_total",
    "sse_edge_http_request_duration_seconds",
    "sse_edge_config_reloads_total",
    "sse_edge_config_last_reload_successful",
    "sse_edge_config_last_reload_success_timestamp_seconds",
    "sse_edge_cluster_up",
    "sse_edge_cluster_leases_held",
    "sse_edge_cluster_events_relayed_total",
    "sse_edge_cluster_errors_total",
];

/// Process-wide families: they carry no `route` label.
const PROCESS_METRICS: &[&str] = &[
    "sse_edge_config_reloads_total",
    "sse_edge_config_last_reload_successful",
    "sse_edge_config_last_reload_success_timestamp_seconds",
];

/// Families whose series appear only once counted: `http_requests_total`'s `status`
/// values cannot be known ahead (every `reason` / `result` family is exported at 0).
const LABELLED_ON_USE: &[&str] = &["sse_edge_http_requests_total"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()))
}

fn json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
}

fn compose() -> Yaml {
    yaml(&root().join("docker-compose.yml"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(
        service.is_mapping(),
        "docker-compose.yml has a `{name}` service"
    );
    service
}

/// `(host source, container target)` of every bind mount in the compose file.
fn bind_mounts(compose: &Yaml) -> Vec<(String, String, String)> {
    let mut mounts = Vec::new();
    let services = compose["services"].as_mapping().expect("services");
    for (name, service) in services {
        let name = name.as_str().expect("service name").to_string();
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let mut parts = spec.split(':');
            let source = parts.next().expect("source").to_string();
            let target = parts.next().expect("target").to_string();
            if source.starts_with('.') || source.starts_with('/') {
                mounts.push((name.clone(), source, target));
            }
        }
    }
    mounts
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `host:port` a URL or target points at.
fn host_port(target: &str) -> (String, u16) {
    let rest = target.split("://").last().unwrap_or(target);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("port"))
}

#[test]
fn compose_file_parses_and_everything_it_mounts_exists() {
    let compose = compose();
    for name in ["sse-edge", "prometheus", "grafana"] {
        service(&compose, name);
    }
    let edge = service(&compose, "sse-edge");
    let context = edge["build"]
        .as_str()
        .or_else(|| edge["build"]["context"].as_str())
        .expect("sse-edge is built from the repository");
    assert!(
        root().join(context).join("Dockerfile").is_file(),
        "the build context holds a Dockerfile"
    );
    let mounts = bind_mounts(&compose);
    assert!(
        mounts.len() >= 3,
        "prometheus and grafana mount their files"
    );
    for (service, source, target) in &mounts {
        assert!(
            root().join(source).exists(),
            "{service} mounts {source} (-> {target}), which does not exist"
        );
    }
}

#[test]
fn the_cluster_profile_runs_redis_three_nodes_and_a_balancer_over_them() {
    let compose = compose();
    let in_profile = |name: &str| {
        let profiles = service(&compose, name)["profiles"].as_sequence().cloned();
        profiles.unwrap_or_default().iter().any(|p| p == "cluster")
    };
    for name in ["redis", "legacy", "edge-1", "edge-2", "edge-3", "balancer"] {
        assert!(in_profile(name), "{name} runs in the cluster profile");
    }
    let config = yaml(&root().join("conf/cluster.yaml"));
    let redis = config["cluster"]["redis"].as_str().expect("cluster.redis");
    assert_eq!(
        host_port(redis).0,
        "redis",
        "the nodes use the compose Redis"
    );
    let haproxy = std::fs::read_to_string(root().join("conf/haproxy.cfg")).expect("haproxy.cfg");
    for node in ["edge-1", "edge-2", "edge-3"] {
        assert!(
            haproxy.contains(&format!("server {node} {node}:8080")),
            "{node} is balanced"
        );
        let mounts = service(&compose, node)["volumes"][0]
            .as_str()
            .unwrap_or_default();
        assert!(
            mounts.starts_with("./conf/cluster.yaml:"),
            "{node} runs conf/cluster.yaml"
        );
    }
}

#[test]
fn dockerfile_builds_in_rust_and_runs_slim_as_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    assert!(froms[0].contains("rust:1") && froms[0].contains(" AS builder"));
    assert!(froms[1].contains("debian:bookworm-slim"));
    assert!(text.contains("cmake"), "the builder installs cmake");
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "runs as non-root: {user}"
    );
    // Every file the runtime stage copies from the build context exists.
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(root().join(source).exists(), "COPY source {source} exists");
        }
    }
}

#[test]
fn prometheus_scrapes_the_sse_edge_admin_listener() {
    let compose = compose();
    let prometheus = yaml(&root().join("conf/prometheus.yml"));
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .and_then(|jobs| jobs.iter().find(|j| j["job_name"] == "sse-edge"))
        .expect("an sse-edge scrape job");
    assert_eq!(job["metrics_path"], "/metrics");
    let target = job["static_configs"][0]["targets"][0]
        .as_str()
        .expect("a static target");
    let (host, port) = host_port(target);
    let edge = service(&compose, &host);
    let command: Vec<&str> = edge["command"]
        .as_sequence()
        .expect("sse-edge command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let admin = command
        .windows(2)
        .find(|w| w[0] == "--admin")
        .map(|w| w[1])
        .expect("the demo's admin listener is set for the container");
    assert_eq!(
        host_port(admin),
        ("0.0.0.0".to_string(), port),
        "Prometheus scrapes the port the admin listener binds, on all interfaces"
    );
}

#[test]
fn grafana_provisioning_points_at_prometheus_and_the_dashboards() {
    let compose = compose();
    let mounts = bind_mounts(&compose);
    let provisioning = root().join("conf/grafana/provisioning");
    let datasources = yaml(&provisioning.join("datasources/prometheus.yml"));
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    let (host, _) = host_port(source["url"].as_str().expect("datasource url"));
    service(&compose, &host);

    let providers = yaml(&provisioning.join("dashboards/sse-edge.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("dashboard provider path");
    let (_, host_dir, _) = mounts
        .iter()
        .find(|(service, _, target)| service == "grafana" && target == path)
        .expect("the provider's path is a grafana mount");
    let dashboards: Vec<PathBuf> = files_under(&root().join(host_dir))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(!dashboards.is_empty(), "dashboards to provision");
    for file in files_under(&provisioning) {
        yaml(&file);
    }
}

/// Every `sse_edge_*` family a dashboard expression names (histogram suffixes removed).
fn dashboard_families(dashboard: &Json) -> (BTreeSet<String>, Vec<String>) {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    let families = exprs
        .iter()
        .flat_map(|expr| selectors(expr))
        .map(|(family, _)| family)
        .collect();
    (families, exprs)
}

/// A cluster panel's query: per node (`instance`), the cluster families having no route.
fn is_per_node(expr: &str) -> bool {
    expr.contains("sse_edge_cluster_") && (expr.contains("instance") || expr.starts_with("sum ("))
}

#[test]
fn dashboard_shows_the_key_series_from_exported_metrics() {
    let dashboard = json(&root().join("conf/grafana/dashboards/sse-edge.json"));
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let (families, exprs) = dashboard_families(&dashboard);
    for family in &families {
        assert!(
            SPEC_METRICS.contains(&family.as_str()),
            "the dashboard queries {family}, which sse-edge does not export"
        );
    }
    let has = |needle: &str| exprs.iter().any(|e| e.contains(needle));
    assert!(has("sse_edge_connections_active"), "active streams");
    assert!(has("rate(sse_edge_events_sent_total"), "events/s");
    assert!(has("rate(sse_edge_heartbeats_sent_total"), "heartbeats/s");
    assert!(has("sse_edge_connections_rejected_total"), "rejections");
    assert!(has("sse_edge_upstream_errors_total"), "upstream errors");
    assert!(
        has("sum by (instance) (sse_edge_cluster_up)"),
        "cluster: per node"
    );
    assert!(
        has("histogram_quantile(0.5, sum by (route, le) (rate(sse_edge_event_delivery_seconds_bucket"),
        "delivery p50"
    );
    assert!(
        has("histogram_quantile(0.99, sum by (route, le) (rate(sse_edge_event_delivery_seconds_bucket"),
        "delivery p99"
    );
    let process_wide = |expr: &str| PROCESS_METRICS.iter().any(|m| expr.contains(m));
    for expr in &exprs {
        assert!(
            !expr.contains("sse_edge_")
                || expr.contains("route")
                || process_wide(expr)
                || is_per_node(expr),
            "every series is per route (process-wide and cluster series per node): {expr}"
        );
    }
    assert!(has("sse_edge_stream_ends_total"), "stream ends");
    assert!(has("sse_edge_http_requests_total"), "http route requests");
    assert!(has("sse_edge_config_reloads_total"), "reloads");

    // The names match the implementation: a running sse-edge exports every family the
    // dashboard uses (but those whose label values cannot be known ahead).
    let text = demo_metrics();
    for family in families
        .iter()
        .filter(|f| !LABELLED_ON_USE.contains(&f.as_str()))
    {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "sse-edge exports {family}"
        );
    }
}

#[test]
fn every_sse_edge_config_in_conf_passes_check() {
    let configs: Vec<PathBuf> = files_under(&root().join("conf"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| yaml(p).get("routes").is_some())
        .collect();
    assert!(
        configs.iter().any(|p| p.ends_with("conf/sse-edge.yaml")),
        "found the sse-edge configs: {configs:?}"
    );
    for config in configs {
        let output = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
            .arg("check")
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run sse-edge check");
        assert!(
            output.status.success(),
            "sse-edge check --config {} failed:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The Dockerfile's instructions, continuation lines joined, each with its stage (0 = builder).
fn dockerfile_instructions() -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let mut out = Vec::new();
    let mut stage = None::<usize>;
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let instruction = std::mem::take(&mut current);
                if instruction.starts_with("FROM ") {
                    stage = Some(stage.map_or(0, |s| s + 1));
                }
                out.push((stage.unwrap_or(0), instruction));
            }
        }
    }
    out
}

/// The argument list of an exec-form (`["a", "b"]`) instruction tail.
fn exec_form(tail: &str) -> Vec<String> {
    let start = tail.find('[').expect("exec form");
    serde_json::from_str(&tail[start..]).unwrap_or_else(|err| panic!("{tail}: {err}"))
}

#[test]
fn image_ships_the_container_config_and_runs_it() {
    let instructions = dockerfile_instructions();
    let runtime: Vec<&str> = instructions
        .iter()
        .filter(|(stage, _)| *stage == 1)
        .map(|(_, i)| i.as_str())
        .collect();
    let copy = runtime
        .iter()
        .find(|i| i.starts_with("COPY ") && i.contains("conf/docker.yaml"))
        .expect("the runtime stage copies conf/docker.yaml");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(
        parts.last(),
        Some(&"/etc/sse-edge/sse-edge.yaml"),
        "conf/docker.yaml is the image's default config: {copy}"
    );
    let cmd = runtime
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("CMD "))
        .expect("a CMD");
    assert_eq!(
        exec_form(cmd),
        ["--config", "/etc/sse-edge/sse-edge.yaml"],
        "the default command runs the copied config"
    );

    // A config made for containers: reachable listeners, upstreams by service name, and a
    // comment on every line for a first-time reader.
    let config = yaml(&root().join("conf/docker.yaml"));
    assert_eq!(config["listen"], "0.0.0.0:8080");
    assert_eq!(config["admin"]["listen"], "0.0.0.0:9090");
    let text = std::fs::read_to_string(root().join("conf/docker.yaml")).expect("read");
    for (n, line) in text.lines().enumerate() {
        assert!(
            line.trim().is_empty() || line.contains('#'),
            "conf/docker.yaml:{}: every line is commented: {line}",
            n + 1
        );
        let value = line.split(" #").next().unwrap_or(line);
        assert!(
            !value.contains("127.0.0.1") && !value.contains("localhost"),
            "conf/docker.yaml:{}: inside a container 127.0.0.1 is the container itself: {line}",
            n + 1
        );
    }
}

#[test]
fn image_ships_a_release_binary_without_debug_info() {
    let instructions = dockerfile_instructions();
    let builder: Vec<&str> = instructions
        .iter()
        .filter(|(stage, _)| *stage == 0)
        .map(|(_, i)| i.as_str())
        .collect();
    let build = builder
        .iter()
        .position(|i| i.starts_with("RUN ") && i.contains("cargo build --release"))
        .expect("the builder runs cargo build --release");
    let env: String = builder[..build]
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .collect::<Vec<_>>()
        .join(" ");
    let setting = |name: &str| {
        env.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    };
    assert!(
        matches!(setting("CARGO_PROFILE_RELEASE_DEBUG").as_deref(), Some("0" | "false" | "none")),
        "the builder sets CARGO_PROFILE_RELEASE_DEBUG=0 before building (Cargo.toml keeps debug = 1 for profiling): {env}"
    );
    let strips = matches!(
        setting("CARGO_PROFILE_RELEASE_STRIP").as_deref(),
        Some("symbols" | "true")
    ) || builder[build].contains("strip ");
    assert!(strips, "the builder strips the binary");
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        cargo.contains("[profile.release]"),
        "the profile the variables override exists"
    );
}

#[test]
fn image_healthcheck_runs_sse_edge_healthcheck_against_the_admin_listener() {
    let instructions = dockerfile_instructions();
    let healthcheck = instructions
        .iter()
        .filter(|(stage, _)| *stage == 1)
        .find_map(|(_, i)| i.strip_prefix("HEALTHCHECK "))
        .expect("the runtime stage has a HEALTHCHECK");
    for option in ["--interval=", "--timeout="] {
        assert!(healthcheck.contains(option), "HEALTHCHECK sets {option}");
    }
    let (_, command) = healthcheck.split_once("CMD ").expect("HEALTHCHECK ... CMD");
    let args = exec_form(command);
    let binary = instructions
        .iter()
        .filter(|(stage, i)| *stage == 1 && i.starts_with("COPY --from=builder"))
        .find_map(|(_, i)| i.split_whitespace().last())
        .expect("the runtime stage copies the binary");
    assert_eq!(args[0], binary, "the HEALTHCHECK runs the shipped binary");
    assert_eq!(args[1], "healthcheck");
    let url = args
        .windows(2)
        .find(|w| w[0] == "--url")
        .map(|w| w[1].clone())
        .expect("the HEALTHCHECK names its --url");
    let (host, port) = host_port(&url);
    assert_eq!(host, "127.0.0.1", "the container asks itself");
    let config = yaml(&root().join("conf/docker.yaml"));
    let admin = config["admin"]["listen"].as_str().expect("admin.listen");
    assert_eq!(
        host_port(admin).1,
        port,
        "the HEALTHCHECK asks the admin port conf/docker.yaml listens on"
    );
    assert!(url.ends_with("/readyz"), "readiness, which drains: {url}");

    // The exact command line, against a live proxy's admin listener: exit 0.
    let proxy =
        Proxy::start("routes:\n  - path: /api/*\n    http: { upstream: \"http://127.0.0.1:9\" }\n");
    let live = url.replace(&format!("{host}:{port}"), &proxy.admin.to_string());
    let run = |target: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
            .args(
                args[1..]
                    .iter()
                    .map(|a| if *a == url { target } else { a.as_str() }),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sse-edge healthcheck");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return (status.success(), stderr);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sse-edge healthcheck did not exit within 10s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (ok, stderr) = run(&live);
    assert!(ok, "healthy against a live admin listener: {stderr}");
    drop(proxy);
    let (ok, stderr) = run(&live);
    assert!(!ok, "unhealthy once the proxy is gone");
    assert!(stderr.contains(&live), "names the URL: {stderr}");
}
