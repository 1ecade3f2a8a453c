//! Token extraction (`auth::credential::find`) on arbitrary `from:` lists, headers, cookies
//! and queries: it never panics, a token it returns is non-empty and is, exactly, a header
//! value (its `Bearer ` scheme stripped), a cookie's `name=value` or a query's `name=value`
//! of one of the sources; and a token planted in one source among absent, empty and decoy
//! ones is found exactly, from the first source that holds a value.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use sse_edge::auth::credential::{find, query_params};
use sse_edge::auth::AuthRequest;
use sse_edge::config::CredentialSource;

/// Names that real `from:` lists use, so that sources and requests meet often.
const NAMES: [&str; 4] = ["authorization", "cookie", "access_token", "token"];

/// What a JWT (base64url and dots) and most opaque tokens are made of.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~".contains(c)
}

fn source(kind: u8, name: String) -> CredentialSource {
    match kind % 3 {
        0 => CredentialSource::Header(name),
        1 => CredentialSource::Cookie(name),
        _ => CredentialSource::Query(name),
    }
}

fn request<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> AuthRequest<'a> {
    AuthRequest {
        method: "GET",
        uri,
        headers,
    }
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
}

/// `value` is `token`, or `Bearer` (any case), whitespace and `token`; around it, whitespace.
fn header_holds(value: &str, token: &str) -> bool {
    let value = value.trim();
    if value == token {
        return true;
    }
    let Some(scheme_and_space) = value.strip_suffix(token) else {
        return false;
    };
    scheme_and_space.len() > 6
        && scheme_and_space[..6].eq_ignore_ascii_case("bearer")
        && scheme_and_space[6..].chars().all(|c| c == ' ' || c == '\t')
}

fn came_from(source: &CredentialSource, token: &str, headers: &HeaderMap, uri: &Uri) -> bool {
    match source {
        CredentialSource::Header(name) => values(headers, name).any(|v| header_holds(v, token)),
        CredentialSource::Cookie(name) => values(headers, "cookie")
            .flat_map(|v| v.split(';'))
            .any(|pair| pair.trim() == format!("{name}={token}")),
        // The query is not percent-decoded; only `+` becomes a space.
        CredentialSource::Query(name) => uri.query().is_some_and(|query| {
            let pair = format!("{name}={}", token.replace(' ', "+"));
            query.split('&').any(|p| p == pair)
        }),
    }
}

/// Arbitrary sources against an arbitrary request.
fn any_request(sources: Vec<(u8, String)>, headers: Vec<(u8, Vec<u8>)>, query: String) {
    let from: Vec<CredentialSource> = sources
        .into_iter()
        .map(|(kind, name)| match kind / 3 % 2 {
            0 => source(kind, NAMES[usize::from(kind / 6) % NAMES.len()].to_string()),
            _ => source(kind, name),
        })
        .collect();
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            map.append(NAMES[usize::from(name) % NAMES.len()], value);
        }
    }
    let query: String = query
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .collect();
    let uri = format!("/s?{query}")
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/s"));
    if let Some(token) = find(&from, &request(&map, &uri)) {
        assert!(!token.is_empty());
        assert!(
            from.iter().any(|s| came_from(s, &token, &map, &uri)),
            "{token:?} is in none of {from:?} ({map:?}, {uri})"
        );
    }
}

/// One token planted in source `k` of a list whose earlier sources are absent or empty and
/// whose later ones hold decoys: `find` gives back exactly the token.
fn planted(choices: Vec<u8>, token: String) {
    let mut token: String = token.chars().filter(|c| token_char(*c)).collect();
    if token.is_empty() {
        token.push('t');
    }
    let mut choice = choices.iter().copied().chain(std::iter::repeat(0));
    let mut next = || choice.next().unwrap_or_default();
    let count = 1 + usize::from(next() % 4);
    let planted_at = usize::from(next()) % count;
    let mut from = Vec::new();
    let mut headers = HeaderMap::new();
    let mut cookies = Vec::new();
    let mut query = Vec::new();
    for index in 0..count {
        let kind = next();
        let name = format!("n{index}");
        // Near misses on the name: never the source's value.
        cookies.push(format!("x{name}=noise"));
        query.push(format!("{name}x=noise"));
        let value = match index {
            i if i == planted_at => Some(token.clone()),
            i if i > planted_at => Some(format!("decoy{i}")),
            _ => None,
        };
        let style = next();
        match kind % 3 {
            0 => {
                let header = HeaderName::try_from(name.as_str()).expect("valid name");
                let text = match (&value, style % 6) {
                    (None, 0) => None,
                    (None, 1) => Some(String::new()),
                    (None, 2) => Some("Bearer".to_string()),
                    (None, _) => Some("bearer \t ".to_string()),
                    (Some(v), 0) if !v.eq_ignore_ascii_case("bearer") => Some(v.clone()),
                    (Some(v), 1) if !v.eq_ignore_ascii_case("bearer") => Some(format!(" {v}\t")),
                    (Some(v), 2) => Some(format!("bearer {v}")),
                    (Some(v), 3) => Some(format!("BEARER\t {v} ")),
                    (Some(v), _) => Some(format!("Bearer {v}")),
                };
                if let Some(text) = text {
                    headers.append(header, HeaderValue::from_str(&text).expect("valid value"));
                }
                // Header names match whatever their case in `from:`.
                let name = if style & 0x80 != 0 {
                    name.to_uppercase()
                } else {
                    name
                };
                from.push(CredentialSource::Header(name));
            }
            1 => {
                match (&value, style % 3) {
                    (None, 0) => {}
                    (None, _) => cookies.push(format!("{name}=")),
                    (Some(v), _) => cookies.push(format!("{name}={v}")),
                }
                from.push(CredentialSource::Cookie(name));
            }
            _ => {
                match (&value, style % 3) {
                    (None, 0) => {}
                    (None, 1) => query.push(format!("{name}=")),
                    (None, _) => query.push(name.clone()),
                    (Some(v), _) => query.push(format!("{name}={v}")),
                }
                from.push(CredentialSource::Query(name));
            }
        }
    }
    let rotate = usize::from(next());
    let cookie_len = cookies.len();
    cookies.rotate_left(rotate % cookie_len);
    let query_len = query.len();
    query.rotate_left(rotate % query_len);
    // The cookies in one `Cookie` header or split over two.
    let split = usize::from(next()) % (cookies.len() + 1);
    for part in [&cookies[..split], &cookies[split..]] {
        if !part.is_empty() {
            let value = HeaderValue::from_str(&part.join("; ")).expect("valid cookie");
            headers.append("cookie", value);
        }
    }
    let uri: Uri = format!("/s?{}", query.join("&"))
        .parse()
        .expect("valid query");
    assert_eq!(
        find(&from, &request(&headers, &uri)),
        Some(token),
        "{from:?} {headers:?} {uri}"
    );
    let in_query: Vec<String> = from
        .iter()
        .filter_map(|s| match s {
            CredentialSource::Query(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(query_params(&from), in_query);
}

type Input = (
    Vec<(u8, String)>,
    Vec<(u8, Vec<u8>)>,
    String,
    Vec<u8>,
    String,
);

fuzz_target!(|input: Input| {
    let (sources, headers, query, choices, token) = input;
    any_request(sources, headers, query);
    planted(choices, token);
});
