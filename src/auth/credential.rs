//! Where a token sits in the client's request: the `from:` sources, tried in order (the
//! first one present wins), and the query parameters among them, which are taken out of
//! the upstream request.

use super::AuthRequest;
use crate::config::CredentialSource;
use crate::routes::{cookie, query_param};

/// The credential of `request`, from the first of `from` that holds a non-empty value; a
/// header's `Bearer ` scheme is stripped.
pub fn find(from: &[CredentialSource], request: &AuthRequest) -> Option<String> {
    from.iter()
        .filter_map(|source| match source {
            CredentialSource::Header(name) => request
                .headers
                .get_all(name.as_str())
                .iter()
                .find_map(|value| value.to_str().ok())
                .map(|value| strip_bearer(value).to_string()),
            CredentialSource::Cookie(name) => cookie(request.headers, name),
            CredentialSource::Query(name) => request.uri.query().and_then(|q| query_param(q, name)),
        })
        .find(|credential| !credential.is_empty())
}

/// The query parameters among `from`.
pub fn query_params(from: &[CredentialSource]) -> Vec<String> {
    from.iter()
        .filter_map(|source| match source {
            CredentialSource::Query(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn strip_bearer(value: &str) -> &str {
    let value = value.trim();
    match value.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => match &value[6..] {
            "" => "",
            rest if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => value,
        },
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Vec<CredentialSource> {
        vec![
            CredentialSource::Header("Authorization".into()),
            CredentialSource::Cookie("access_token".into()),
            CredentialSource::Query("access_token".into()),
        ]
    }

    fn found(headers: &[(&'static str, &str)], uri: &str) -> Option<String> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().expect("value"));
        }
        let uri: http::Uri = uri.parse().expect("uri");
        let request = AuthRequest {
            method: "GET",
            uri: &uri,
            headers: &map,
        };
        find(&sources(), &request)
    }

    #[test]
    fn sources_are_tried_in_order() {
        let all = [
            ("authorization", "Bearer h.h.h"),
            ("cookie", "a=1; access_token=c.c.c"),
        ];
        assert_eq!(
            found(&all, "/s?access_token=q.q.q").as_deref(),
            Some("h.h.h")
        );
        assert_eq!(
            found(&all[1..], "/s?access_token=q.q.q").as_deref(),
            Some("c.c.c")
        );
        assert_eq!(
            found(&[], "/s?x=1&access_token=q.q.q").as_deref(),
            Some("q.q.q")
        );
        assert_eq!(
            found(&[("authorization", "bearer  t")], "/s").as_deref(),
            Some("t")
        );
        assert_eq!(found(&[("authorization", "Bearer ")], "/s"), None);
        assert_eq!(found(&[], "/s"), None);
        assert_eq!(query_params(&sources()), ["access_token"]);
    }
}
