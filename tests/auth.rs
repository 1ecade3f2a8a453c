//! Authentication at the edge (SPEC §8) against the real binary: tokens signed here (HS256
//! and ES256), a JWKS file and a JWKS server, and a forward-auth endpoint written here.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use common::auth_server::AuthServer;
use common::json_api::{JsonApi, Reply};
use common::{yaml, Config, Proxy, Route, SseClient, SseUpstream, WAIT};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"a test secret, not a real one";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A file in this test process's temp dir.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sse-edge-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

fn hs256(claims: Value) -> String {
    let key = EncodingKey::from_secret(SECRET).expect("key");
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signed")
}

fn user(sub: &str) -> String {
    hs256(json!({ "sub": sub, "exp": now() + 600, "scope": "read notifications" }))
}

/// `users`: HS256 from a secret file; `/s` shares one upstream stream; `/u/{user}` requires
/// the path's user as `sub`.
fn jwt_config(upstream: &SseUpstream) -> Config {
    let secret = temp_file("secret", SECRET);
    Config::new()
        .set("defaults.heartbeat", "200ms")
        .authenticator(
            "users",
            "jwt",
            yaml(&format!(
                "{{ secret: 'file:{}', algorithms: [HS256] }}",
                secret.display()
            )),
        )
        .route(Route::sse("/s", upstream.url("/stream")).auth("users"))
        .route(
            Route::sse("/u/{user}", upstream.url("/users/{user}")).auth(yaml(
                "{ use: users, require: { sub: '{user}', scope: notifications } }",
            )),
        )
}

async fn data(client: &mut SseClient) -> Option<String> {
    client.next_event().await.and_then(|frame| frame.data())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_invalid_or_expired_token_is_401_and_nothing_goes_upstream() {
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&jwt_config(&upstream).yaml());
    let other_key = EncodingKey::from_secret(b"another secret").expect("key");
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "ada"}),
        &other_key,
    )
    .expect("signed");
    let expired = hs256(json!({ "sub": "ada", "exp": now() - 120 }));
    let wrong_alg = {
        let key = EncodingKey::from_secret(SECRET).expect("key");
        encode(&Header::new(Algorithm::HS512), &json!({"sub": "ada"}), &key).expect("signed")
    };
    let cases = [
        vec![],
        vec![("Authorization", "Bearer not.a.token".to_string())],
        vec![("Authorization", format!("Bearer {forged}"))],
        vec![("Authorization", format!("Bearer {expired}"))],
        vec![("Cookie", format!("access_token={wrong_alg}"))],
    ];
    for headers in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut refused = SseClient::connect(&proxy.url("/s"), &headers).await;
        assert_eq!(refused.status, 401, "{headers:?}");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        assert!(refused
            .read_to_end(WAIT)
            .await
            .contains("authentication required"));
    }
    assert_eq!(upstream.accepted(), 0, "nothing was sent upstream");
    let sample =
        |name: &str, label: &str| proxy.metric(&format!("sse_edge_{name}{{{label},route=\"/s\"}}"));
    assert_eq!(
        sample("auth_decisions_total", "result=\"unauthenticated\""),
        5.0
    );
    assert_eq!(
        sample("connections_rejected_total", "reason=\"unauthenticated\""),
        5.0
    );
    assert_eq!(sample("auth_decisions_total", "result=\"allowed\""), 0.0);
    let text = proxy.metrics();
    for result in ["allowed", "forbidden", "error"] {
        let series = format!("sse_edge_auth_decisions_total{{result=\"{result}\",route=\"/s\"}} 0");
        assert!(text.contains(&series), "{series} exported from the start");
    }
    assert!(text.contains(
        "sse_edge_connections_rejected_total{reason=\"auth_unavailable\",route=\"/s\"} 0"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_from_header_cookie_and_query_share_one_upstream_that_sees_no_credential() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&jwt_config(&upstream).yaml());
    let (ada, bob, cy) = (user("ada"), user("bob"), user("cy"));
    let query = proxy.url(&format!("/s?access_token={cy}"));
    let mut by_query = SseClient::connect(&query, &[]).await;
    let bearer = format!("Bearer {ada}");
    let mut by_header = SseClient::connect(&proxy.url("/s"), &[("Authorization", &bearer)]).await;
    let cookie = format!("theme=dark; access_token={bob}");
    let mut by_cookie = SseClient::connect(&proxy.url("/s"), &[("Cookie", &cookie)]).await;
    assert_eq!(
        (by_header.status, by_cookie.status, by_query.status),
        (200, 200, 200)
    );

    let mut conn = upstream.next_conn().await;
    assert_eq!(conn.path, "/stream", "the query token was taken out");
    for name in ["authorization", "cookie"] {
        assert_eq!(conn.header(name), None, "{name} never goes upstream");
    }
    conn.send("id: 1\ndata: for everyone\n\n").await;
    for client in [&mut by_header, &mut by_cookie, &mut by_query] {
        assert_eq!(data(client).await.as_deref(), Some("for everyone"));
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "three users, one upstream connection (the token left no trace in its URL)"
    );
    assert_eq!(
        proxy.metric("sse_edge_upstream_streams_active{route=\"/s\"}"),
        1.0
    );
    assert_eq!(
        proxy.metric("sse_edge_auth_decisions_total{result=\"allowed\",route=\"/s\"}"),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn require_admits_the_matching_user_and_forbids_the_others() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&jwt_config(&upstream).yaml());
    let ada = format!("Bearer {}", user("ada"));
    let own = SseClient::connect(&proxy.url("/u/ada"), &[("Authorization", &ada)]).await;
    assert_eq!(own.status, 200);
    let conn = upstream.next_conn().await;
    assert_eq!(conn.path, "/users/ada");

    let mut other = SseClient::connect(&proxy.url("/u/bob"), &[("Authorization", &ada)]).await;
    assert_eq!(other.status, 403);
    assert_eq!(other.header("www-authenticate"), None);
    assert!(other.read_to_end(WAIT).await.contains("forbidden"));
    let no_scope = format!("Bearer {}", hs256(json!({ "sub": "ada", "scope": "read" })));
    let narrow = SseClient::connect(&proxy.url("/u/ada"), &[("Authorization", &no_scope)]).await;
    assert_eq!(narrow.status, 403, "scope must contain notifications");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        upstream.accepted(),
        1,
        "nothing went upstream for the refused ones"
    );
    let forbidden = "sse_edge_connections_rejected_total{reason=\"forbidden\",route=\"/u/{user}\"}";
    assert_eq!(proxy.metric(forbidden), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_token_ends_its_stream_with_a_jittered_retry() {
    let mut upstream = SseUpstream::start().await;
    let yaml = jwt_config(&upstream)
        .set("defaults.retry", "2s")
        .set("auth.users.jwt.leeway", "0s")
        .yaml();
    let proxy = Proxy::start(&yaml);
    let short = format!(
        "Bearer {}",
        hs256(json!({ "sub": "ada", "exp": now() + 2 }))
    );
    let opened = Instant::now();
    let mut client = SseClient::connect(&proxy.url("/s"), &[("Authorization", &short)]).await;
    assert_eq!(client.status, 200);
    let first = client.next_frame().await.expect("retry frame");
    assert!(first.retry().is_some());
    let mut conn = upstream.next_conn().await;
    conn.send("id: 7\ndata: before expiry\n\n").await;
    assert_eq!(data(&mut client).await.as_deref(), Some("before expiry"));

    let rest = client.read_to_end(Duration::from_secs(5)).await;
    let lived = opened.elapsed();
    assert!(client.ended, "the stream was closed: {rest:?}");
    assert!(
        lived >= Duration::from_millis(900) && lived < Duration::from_secs(4),
        "ended at expiry (exp in whole seconds): {lived:?}"
    );
    let retry: u64 = rest
        .lines()
        .find_map(|line| line.strip_prefix("retry: ")?.parse().ok())
        .unwrap_or_else(|| panic!("a final retry: line in {rest:?}"));
    assert!(
        (1000..=3000).contains(&retry),
        "jittered around 2s: {retry}"
    );
    assert!(
        common::eventually(WAIT, || proxy.metric(
            "sse_edge_stream_ends_total{reason=\"token_expired\",route=\"/s\"}"
        ) == 1.0)
        .await
    );
}

/// An ES256 key: its private PEM (to sign) and its JWKS entry (to verify).
fn es256_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
    let point = pair.public_key_raw();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec key");
    (key, jwk)
}

fn es256(key: &EncodingKey, kid: &str, sub: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let claims = json!({ "sub": sub, "exp": now() + 600 });
    format!("Bearer {}", encode(&header, &claims, key).expect("signed"))
}

#[tokio::test(flavor = "multi_thread")]
async fn es256_keys_from_a_jwks_file_and_a_jwks_server_keeping_the_last_good_set() {
    let upstream = SseUpstream::start().await;
    let (key, jwk) = es256_key("k1");
    let (stranger, _) = es256_key("k1");
    let jwks = json!({ "keys": [jwk] });
    let file = temp_file("jwks.json", jwks.to_string().as_bytes());
    let server = JsonApi::start_json(&jwks).await;
    let yaml = Config::new()
        .authenticator(
            "file",
            "jwt",
            yaml(&format!(
                "{{ keys: '{}', algorithms: [ES256] }}",
                file.display()
            )),
        )
        .authenticator(
            "remote",
            "jwt",
            yaml(&format!(
                "{{ jwks_url: '{}', jwks_refresh: 200ms, algorithms: [ES256] }}",
                server.url("/jwks")
            )),
        )
        .route(Route::sse("/file", upstream.url("/stream")).auth("file"))
        .route(Route::sse("/remote", upstream.url("/stream")).auth("remote"))
        .yaml();
    let proxy = Proxy::start(&yaml);
    let good = es256(&key, "k1", "ada");
    let forged = es256(&stranger, "k1", "ada");
    let hmac = format!("Bearer {}", user("ada"));
    for route in ["/file", "/remote"] {
        let status = |token: String| {
            let url = proxy.url(route);
            async move {
                SseClient::connect(&url, &[("Authorization", &token)])
                    .await
                    .status
            }
        };
        assert_eq!(status(good.clone()).await, 200, "{route}");
        assert_eq!(status(forged.clone()).await, 401, "{route}: another key");
        assert_eq!(
            status(hmac.clone()).await,
            401,
            "{route}: HS256 is not accepted"
        );
    }
    let fetched = server.requests();
    assert!(fetched >= 1);
    server.set(Reply::Status(500));
    assert!(
        common::eventually(WAIT, || server.requests() >= fetched + 2).await,
        "refreshed"
    );
    let still = SseClient::connect(&proxy.url("/remote"), &[("Authorization", &good)]).await;
    assert_eq!(
        still.status, 200,
        "a failed refresh keeps the last good set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_server_that_never_answered_is_503() {
    let upstream = SseUpstream::start().await;
    let server = JsonApi::start(Reply::Status(503)).await;
    let jwks = format!(
        "{{ jwks_url: '{}', algorithms: [RS256] }}",
        server.url("/jwks")
    );
    let yaml = Config::new()
        .authenticator("remote", "jwt", yaml(&jwks))
        .route(Route::sse("/remote", upstream.url("/stream")).auth("remote"))
        .yaml();
    let proxy = Proxy::start(&yaml);
    // The signature is never looked at: there is no key to check it with.
    let b64 =
        |json: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string());
    let unsigned = [
        b64(json!({"alg": "RS256", "kid": "k1"})),
        b64(json!({"sub": "ada"})),
    ];
    let token = format!("Bearer {}.{}.c2ln", unsigned[0], unsigned[1]);
    let refused = SseClient::connect(&proxy.url("/remote"), &[("Authorization", &token)]).await;
    assert_eq!(refused.status, 503, "fail closed without keys");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(upstream.accepted(), 0);
}

/// The legacy API's auth endpoint: `sid=NAME` is user NAME, `sid=eve` is forbidden, no
/// cookie is `401` with the endpoint's own challenge, `sid=broken` a `500`.
async fn legacy_auth() -> AuthServer {
    AuthServer::start(|headers| {
        let cookie = headers
            .iter()
            .find(|(n, _)| n == "cookie")
            .map(|(_, v)| v.as_str());
        match cookie.and_then(|c| c.strip_prefix("sid=")) {
            None => (
                401,
                vec![("WWW-Authenticate", "Cookie realm=\"legacy\"".to_string())],
            ),
            Some("eve") => (403, vec![]),
            Some("broken") => (500, vec![]),
            Some(name) => (200, vec![("X-User-Id", name.to_string())]),
        }
    })
    .await
}

fn forward_config(upstream: &SseUpstream, url: &str, extra: &str) -> Config {
    let block = format!(
        "{{ url: '{url}', forward_headers: [Cookie], identity_header: X-User-Id, {extra} }}"
    );
    Config::new()
        .authenticator("legacy", "forward", yaml(&block))
        .set("limits.client_id", "auth")
        .route(Route::sse("/f", upstream.url("/stream")).auth("legacy"))
}

async fn status(proxy: &Proxy, path: &str, cookie: Option<&str>) -> (u16, Option<String>) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    let client = SseClient::connect(&proxy.url(path), &headers).await;
    (
        client.status,
        client.header("www-authenticate").map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_is_asked_once_per_credential_per_cache_and_passes_401_and_403_on() {
    let mut upstream = SseUpstream::start().await;
    let auth = legacy_auth().await;
    let proxy =
        Proxy::start(&forward_config(&upstream, &auth.url("/auth/check"), "cache: 1s").yaml());
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(SseClient::connect(&proxy.url("/f?x=1"), &[("Cookie", "sid=ada")]).await);
    }
    clients.push(SseClient::connect(&proxy.url("/f?x=1"), &[("Cookie", "sid=bob")]).await);
    assert!(clients.iter().all(|c| c.status == 200));
    assert_eq!(auth.requests(), 2, "asked once for ada, once for bob");
    assert_eq!(auth.seen("x-original-uri")[0].as_deref(), Some("/f?x=1"));
    assert_eq!(auth.seen("x-original-method")[0].as_deref(), Some("GET"));
    assert_eq!(auth.seen("cookie")[0].as_deref(), Some("sid=ada"));

    let mut conn = upstream.next_conn().await;
    assert_eq!(conn.header("cookie"), None, "the cookie stays at the edge");
    conn.send("data: shared\n\n").await;
    for client in &mut clients {
        assert_eq!(data(client).await.as_deref(), Some("shared"));
    }
    assert_eq!(upstream.accepted(), 1, "two users, one upstream");

    assert_eq!(status(&proxy, "/f", Some("sid=eve")).await, (403, None));
    assert_eq!(
        status(&proxy, "/f", Some("sid=eve")).await.0,
        403,
        "deny is cached too"
    );
    let challenge = Some("Cookie realm=\"legacy\"".to_string());
    assert_eq!(status(&proxy, "/f", None).await, (401, challenge));
    assert_eq!(auth.requests(), 4);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&proxy, "/f?x=1", Some("sid=ada")).await.0, 200);
    assert_eq!(auth.requests(), 5, "asked again once the answer expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_down_slow_or_failing_is_503_and_never_cached() {
    let upstream = SseUpstream::start().await;
    let closed = common::free_addr();
    let proxy = Proxy::start(
        &forward_config(&upstream, &format!("http://{closed}/check"), "cache: 30s").yaml(),
    );
    let down = SseClient::connect(&proxy.url("/f"), &[("Cookie", "sid=ada")]).await;
    assert_eq!(down.status, 503, "an unreachable endpoint fails closed");
    assert!(down
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    let sample = |label: &str| proxy.metric(&format!("sse_edge_{label},route=\"/f\"}}"));
    assert_eq!(
        sample("connections_rejected_total{reason=\"auth_unavailable\""),
        1.0
    );
    assert_eq!(sample("auth_decisions_total{result=\"error\""), 1.0);

    let auth = legacy_auth().await;
    let extra = "cache: 30s, timeout: 300ms";
    let proxy = Proxy::start(&forward_config(&upstream, &auth.url("/check"), extra).yaml());
    assert_eq!(status(&proxy, "/f", Some("sid=broken")).await.0, 503, "5xx");
    auth.set_delay(Duration::from_millis(800));
    let asked = Instant::now();
    assert_eq!(status(&proxy, "/f", Some("sid=ada")).await.0, 503, "slow");
    assert!(
        asked.elapsed() < Duration::from_millis(750),
        "refused at the timeout"
    );
    auth.set_delay(Duration::ZERO);
    let admitted = SseClient::connect(&proxy.url("/f"), &[("Cookie", "sid=ada")]).await;
    assert_eq!(admitted.status, 200, "the failure was not cached");
    assert!(common::eventually(WAIT, || upstream.accepted() >= 1).await);
    assert_eq!(
        upstream.accepted(),
        1,
        "only the admitted client reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_id_auth_counts_per_client_limits_per_user() {
    let upstream = SseUpstream::start().await;
    let auth = legacy_auth().await;
    let yaml = forward_config(&upstream, &auth.url("/check"), "cache: 30s")
        .set("limits.per_client", 1)
        .yaml();
    let proxy = Proxy::start(&yaml);
    let _ada = SseClient::connect(&proxy.url("/f"), &[("Cookie", "sid=ada")]).await;
    assert_eq!(_ada.status, 200);
    assert_eq!(
        status(&proxy, "/f", Some("sid=ada")).await.0,
        429,
        "same user, same address"
    );
    assert_eq!(
        status(&proxy, "/f", Some("sid=bob")).await.0,
        200,
        "another user, same address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_routes_are_authenticated_and_lose_the_query_token() {
    let mut upstream = SseUpstream::start().await;
    let yaml = jwt_config(&upstream)
        .route(Route::http("/api/*", upstream.url("")).auth("users"))
        .yaml();
    let proxy = Proxy::start(&yaml);
    assert_eq!(status(&proxy, "/api/x?a=1", None).await.0, 401);
    assert_eq!(upstream.accepted(), 0);
    let url = proxy.url(&format!("/api/x?a=1&access_token={}&b=2", user("ada")));
    let passed = SseClient::connect(&url, &[]).await;
    assert_eq!(passed.status, 200);
    assert_eq!(upstream.next_conn().await.path, "/api/x?a=1&b=2");
}

#[test]
fn check_names_an_undefined_authenticator_with_its_path_and_line() {
    let dir = std::env::temp_dir().join(format!("sse-edge-auth-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let yaml = Config::new()
        .route(Route::sse("/s", "http://127.0.0.1:1/s").auth("users"))
        .yaml();
    let (ok, out) = common::check_config(&dir, "auth.yaml", &yaml);
    assert!(!ok, "{out}");
    let line = yaml
        .lines()
        .position(|l| l.contains("auth: users"))
        .expect("line")
        + 1;
    assert!(
        out.contains(&format!(
            "{line}: routes[0].auth: 'users' is not an authenticator"
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_part_of_a_credential_reaches_a_log_line_or_a_metric() {
    let upstream = SseUpstream::start().await;
    let auth = legacy_auth().await;
    let yaml = jwt_config(&upstream)
        .authenticator(
            "legacy",
            "forward",
            yaml(&format!(
                "{{ url: '{}', forward_headers: [Cookie] }}",
                auth.url("/check")
            )),
        )
        .route(Route::sse("/f", upstream.url("/stream")).auth("legacy"))
        .yaml();
    let proxy = Proxy::start_logged(&yaml, &[("RUST_LOG", "sse_edge=debug,warn")]);
    let (good, expired) = (
        user("ada"),
        hs256(json!({ "sub": "ada", "exp": now() - 120 })),
    );
    let tampered = format!("{}x", &good[..good.len() - 1]);
    let mut secrets = vec![good.clone(), expired.clone(), tampered.clone()];
    for token in [&good, &expired, &tampered] {
        let _ = SseClient::connect(&proxy.url(&format!("/s?access_token={token}")), &[]).await;
        let bearer = format!("Bearer {token}");
        let _ = SseClient::connect(&proxy.url("/s"), &[("Authorization", &bearer)]).await;
    }
    for sid in [
        "sid=ada-session-7f3a",
        "sid=eve-session-91c2",
        "sid=broken-session-c0de",
    ] {
        let _ = SseClient::connect(&proxy.url("/f"), &[("Cookie", sid)]).await;
        secrets.push(sid.to_string());
    }
    let metrics = proxy.metrics();
    let logged = proxy.log();
    assert!(
        logged.contains("authentication refused"),
        "refusals were logged: {logged}"
    );
    for secret in &secrets {
        // Any 12 characters of it would be a leak; the signature's tail is the telling part.
        let tail = &secret[secret.len() - 12..];
        assert!(!logged.contains(tail), "{tail} is in the log");
        assert!(!metrics.contains(tail), "{tail} is in the metrics");
    }
}
