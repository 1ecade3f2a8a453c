//! Config loading: the example file, defaults, and located errors.

use std::time::Duration;

use super::*;

fn issues(yaml: &str) -> Vec<ConfigIssue> {
    Config::from_yaml(yaml).expect_err("invalid")
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../conf/sse-edge.yaml");
    let config = Config::from_yaml(text).expect("conf/sse-edge.yaml is valid");
    assert!(config.routes.len() >= 4);
}

#[test]
fn defaults_apply_and_routes_override() {
    let config = Config::from_yaml(
        "defaults: { heartbeat: 250ms, replay: 10 }\nroutes:\n  - path: /a\n    heartbeat: 0s\n    per_client: 2\n    sse: { upstream: 'http://127.0.0.1:1/s' }\n  - path: /b\n    sse: { upstream: 'http://127.0.0.1:1/s' }\n",
    )
    .expect("valid");
    let [a, b] = &config.routes[..] else {
        panic!("two routes")
    };
    assert_eq!(a.settings.heartbeat, None);
    assert_eq!(a.per_client, Some(2));
    assert_eq!(b.settings.heartbeat, Some(Duration::from_millis(250)));
    assert_eq!(b.settings.replay, 10);
    assert_eq!(b.settings.retry, Duration::from_secs(3));
    assert_eq!(config.limits.per_client, 8);
    assert_eq!(config.admin_listen, "127.0.0.1:9090");
}

#[test]
fn unknown_key_names_its_path_and_line() {
    let found = issues(
        "routes:\n  - path: /a\n    sse:\n      upstream: 'http://h/s'\n      shares: true\n",
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "routes[0].sse.shares");
    assert_eq!(found[0].line, Some(5));
    assert!(
        found[0].reason.contains("unknown field `shares`"),
        "{}",
        found[0].reason
    );
}

#[test]
fn bad_duration_names_its_path() {
    let found = issues(
        "routes:\n  - path: /o/{id}\n    poll:\n      url: 'http://h/o/{id}'\n      interval: soon\n",
    );
    assert_eq!(found[0].path, "routes[0].poll.interval");
    assert_eq!(found[0].line, Some(5));
}

#[test]
fn missing_routes_is_reported() {
    let found = issues("listen: 127.0.0.1:8080\n");
    assert_eq!(found[0].path, "routes");
    assert!(found[0].reason.contains("missing field"));
}

#[test]
fn every_semantic_problem_is_listed_with_lines() {
    let found = issues(
        "limits:\n  client_id: ip\nroutes:\n  - path: /o/{id}\n    poll:\n      url: 'ftp://h/{user}'\n      interval: 0s\n  - path: /x\n",
    );
    let paths: Vec<(&str, Option<usize>)> =
        found.iter().map(|i| (i.path.as_str(), i.line)).collect();
    assert_eq!(
        paths,
        [
            ("limits.client_id", Some(2)),
            ("routes[0].poll.url", Some(6)),
            ("routes[0].poll.url", Some(6)),
            ("routes[0].poll.interval", Some(7)),
            ("routes[1]", Some(8)),
        ]
    );
}

#[test]
fn client_id_forms() {
    let config = Config::from_yaml(
        "limits: { client_id: 'header:X-Api-Key' }\nroutes: [{ path: /a, http: { upstream: 'http://h' } }]\n",
    )
    .expect("valid");
    assert_eq!(
        config.limits.client_id,
        ClientIdSource::Header("X-Api-Key".into())
    );
}

#[test]
fn cluster_defaults_and_errors() {
    let routes = "routes:\n  - path: /a\n    sse: { upstream: 'http://127.0.0.1:1/s' }\n";
    let single = Config::from_yaml(&format!("cluster: {{}}\n{routes}")).expect("valid");
    assert_eq!(single.cluster, None, "an empty block is a single instance");
    let config = Config::from_yaml(&format!(
        "cluster: {{ redis: 'redis://r:6379/0' }}\n{routes}"
    ))
    .expect("valid");
    let cluster = config.cluster.expect("cluster mode");
    assert_eq!(cluster.prefix, "sse-edge:");
    assert_eq!(cluster.lease, Duration::from_secs(5));
    let found = issues(&format!(
        "cluster: {{ redis: 'http://r', lease: 100ms }}\n{routes}"
    ));
    let paths: Vec<&str> = found.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["cluster.redis", "cluster.lease"]);
    let found = issues(&format!("cluster: {{ lease: 2s }}\n{routes}"));
    assert_eq!(found[0].path, "cluster.redis");
}

#[test]
fn upstreams_take_one_url_or_a_pool_with_a_health_check() {
    let config = Config::from_yaml(
        "routes:\n  - path: /s/{id}\n    sse:\n      upstream: ['http://a:1/s/{id}', 'http://b:1/s/{id}']\n      health_check: { path: /healthz, interval: 250ms }\n  - path: /api/*\n    http: { upstream: 'http://a:1' }\n",
    )
    .expect("valid");
    let RouteKind::Stream(StreamSource::Sse(sse)) = &config.routes[0].kind else {
        panic!("an sse route")
    };
    assert_eq!(sse.upstream.urls.len(), 2);
    let check = sse.upstream.health_check.as_ref().expect("health check");
    assert_eq!(check.path.as_deref(), Some("/healthz"));
    assert_eq!(check.interval, Duration::from_millis(250));
    assert_eq!(check.timeout, Duration::from_secs(2), "the default");
    let RouteKind::Http(http) = &config.routes[1].kind else {
        panic!("an http route")
    };
    assert_eq!(http.upstream.urls.len(), 1);
    assert_eq!(http.upstream.health_check, None);
}

#[test]
fn every_url_of_a_pool_is_checked_at_its_own_path() {
    let found = issues(
        "routes:\n  - path: /s\n    sse:\n      upstream:\n        - 'http://a:1/s'\n        - 'ws://b:1/s'\n        - 'http://a:1/s?v=2'\n        - 'http://c:1/{nope}'\n  - path: /api/*\n    http: { upstream: [] }\n",
    );
    let paths: Vec<(&str, Option<usize>)> =
        found.iter().map(|i| (i.path.as_str(), i.line)).collect();
    assert_eq!(
        paths,
        [
            ("routes[0].sse.upstream[2]", Some(7)),
            ("routes[0].sse.upstream[1]", Some(6)),
            ("routes[0].sse.upstream[3]", Some(8)),
            ("routes[1].http.upstream", Some(10)),
        ],
        "{found:?}"
    );
    assert!(
        found[0].reason.contains("duplicates upstream[0]"),
        "{found:?}"
    );
    assert!(found[3].reason.contains("at least one URL"), "{found:?}");
}

#[test]
fn health_checks_are_validated() {
    let found = issues(
        "routes:\n  - path: /a\n    poll:\n      url: 'http://{host}:1/a'\n      health_check: { interval: 0s }\n  - path: /w\n    websocket:\n      url: 'ws://h:1/w'\n      health_check: { path: healthz }\n",
    );
    let paths: Vec<&str> = found.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[0].poll.url",
            "routes[0].poll.health_check",
            "routes[0].poll.health_check.interval",
            "routes[0].poll.url",
            "routes[1].websocket.health_check.path",
        ],
        "{found:?}"
    );
    assert!(found[1].reason.contains("needs a path"), "{found:?}");
    assert!(found[3].reason.contains("fixed host"), "{found:?}");
    let tcp = Config::from_yaml(
        "routes:\n  - path: /w\n    websocket: { url: 'ws://h:1/w', health_check: {} }\n",
    );
    assert!(
        tcp.is_ok(),
        "a websocket route checks by connecting: {tcp:?}"
    );
}

#[test]
fn a_url_that_is_neither_text_nor_a_list_says_what_is_accepted() {
    let found = issues("routes:\n  - path: /a\n    http: { upstream: { url: 'http://h' } }\n");
    assert_eq!(found[0].path, "routes[0].http.upstream");
    assert!(
        found[0].reason.contains("a URL or a list of URLs"),
        "{found:?}"
    );
}
