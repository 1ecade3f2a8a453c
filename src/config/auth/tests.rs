//! The `auth:` block and route choices: what is accepted, and every refusal with its path
//! and line.

use crate::config::{AuthenticatorConfig, ClientIdSource, Config, ConfigIssue};

const ROUTE: &str =
    "routes:\n  - path: /u/{user}\n    sse: { upstream: 'http://127.0.0.1:1/u/{user}' }\n";

fn issues(yaml: &str) -> Vec<(String, Option<usize>, String)> {
    Config::from_yaml(yaml)
        .expect_err("invalid")
        .into_iter()
        .map(|ConfigIssue { path, line, reason }| (path, line, reason))
        .collect()
}

#[test]
fn authenticators_and_route_choices_are_accepted() {
    std::env::set_var("SSE_EDGE_TEST_SECRET", "s3cret");
    let yaml = format!(
        "auth:\n  users:\n    jwt: {{ secret: 'env:SSE_EDGE_TEST_SECRET', algorithms: [HS256] }}\n  legacy:\n    forward: {{ url: 'http://127.0.0.1:1/check', cache: 30s }}\ndefaults:\n  auth: users\nlimits: {{ client_id: auth }}\n{ROUTE}    auth: {{ use: legacy, require: {{ sub: '{{user}}' }} }}\n  - path: /public\n    auth: none\n    sse: {{ upstream: 'http://127.0.0.1:1/p' }}\n  - path: /inherits\n    sse: {{ upstream: 'http://127.0.0.1:1/p' }}\n"
    );
    let config = Config::from_yaml(&yaml).expect("valid");
    assert!(matches!(config.auth["users"], AuthenticatorConfig::Jwt(_)));
    assert!(matches!(
        config.auth["legacy"],
        AuthenticatorConfig::Forward(_)
    ));
    assert_eq!(config.limits.client_id, ClientIdSource::Auth);
    let names: Vec<Option<&str>> = config
        .routes
        .iter()
        .map(|r| r.auth.as_ref().map(|a| a.name.as_str()))
        .collect();
    assert_eq!(names, [Some("legacy"), None, Some("users")]);
    assert_eq!(
        config.routes[0].auth.as_ref().map(|a| a.require.len()),
        Some(1)
    );
}

#[test]
fn every_refusal_names_its_path_and_line() {
    let yaml = format!(
        "auth:\n  a:\n    jwt:\n      secret: hunter2\n  b:\n    jwt:\n      keys: /nonexistent/keys.pem\n      algorithms: [RS256, none]\n  c:\n    jwt: {{ jwks_url: 'http://127.0.0.1:1/jwks', algorithms: [HS256] }}\ndefaults:\n  cors: {{ allow_origins: ['*'], allow_credentials: true }}\n{ROUTE}    auth: {{ use: missing, require: {{ sub: '{{nope}}' }} }}\n"
    );
    let found = issues(&yaml);
    let at: Vec<(&str, Option<usize>)> = found.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(
        at,
        [
            ("auth.a.jwt.algorithms", Some(4)),
            ("auth.a.jwt.secret", Some(4)),
            ("auth.b.jwt.algorithms[1]", Some(8)),
            ("auth.b.jwt.keys", Some(7)),
            ("auth.c.jwt.algorithms[0]", Some(10)),
            ("defaults.cors", Some(12)),
            ("routes[0].auth", Some(16)),
            ("routes[0].auth.require.sub", Some(16)),
        ],
        "{found:#?}"
    );
    let text = format!("{found:?}");
    assert!(
        !text.contains("hunter2"),
        "a literal secret is never echoed: {text}"
    );
    assert!(text.contains("'none' is never accepted"), "{text}");
    assert!(text.contains("'missing' is not an authenticator"), "{text}");
}

#[test]
fn a_wrong_auth_value_names_the_accepted_forms() {
    let found = issues(&format!("{ROUTE}    auth: [users]\n"));
    assert_eq!(found[0].0, "routes[0].auth");
    assert!(
        found[0]
            .2
            .contains("an authenticator name, none, or { use: NAME"),
        "{found:?}"
    );
}
