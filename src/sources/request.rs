//! The upstream request of one client: the kind's URL template filled with the path
//! captures and the client's query (minus `lastEventId`, which is the proxy's own, and any
//! credential the route's authenticator reads from it), plus the configured extra headers and
//! the client headers the route forwards.

use http::HeaderMap;

use crate::config::ExtraHeaders;
use crate::routes::{query_without, Captures, Template};

/// What of a client's request may reach its upstream.
pub struct ClientRequest<'a> {
    /// The route path's `{name}` captures.
    pub captures: &'a Captures,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The names of the headers the route forwards.
    pub forward_headers: &'a [String],
    /// Query parameters that carry the client's credential: never sent upstream.
    pub credential_params: &'a [String],
}

/// What a source needs to reach its upstream for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The final URL: captures and query substituted.
    pub url: String,
    /// Headers to send: configured extras and forwarded client headers.
    pub headers: Vec<(String, String)>,
}

impl UpstreamRequest {
    /// The request for `client` to the upstream `url`, with the route's `extra` headers.
    pub fn new(url: &Template, extra: &ExtraHeaders, client: &ClientRequest) -> Self {
        let query = query_without(client.query, |name| {
            name == "lastEventId" || client.credential_params.iter().any(|p| p == name)
        });
        let mut headers = extra.clone();
        for name in client.forward_headers {
            for value in client.headers.get_all(name.as_str()).iter() {
                if let Ok(value) = value.to_str() {
                    headers.push((name.clone(), value.to_string()));
                }
            }
        }
        UpstreamRequest {
            url: url.fill_url(client.captures, Some(&query)),
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_query_and_forwarded_headers() {
        let captures = Captures::from([("id".to_string(), "7".to_string())]);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer t".parse().expect("value"));
        headers.insert("cookie", "a=1".parse().expect("value"));
        let client = ClientRequest {
            captures: &captures,
            query: Some("lastEventId=9&x=1&access_token=secret"),
            headers: &headers,
            forward_headers: &["Authorization".to_string()],
            credential_params: &["access_token".to_string()],
        };
        let extra = vec![("X-Edge".to_string(), "1".to_string())];
        let request = UpstreamRequest::new(&Template::new("http://u/o/{id}"), &extra, &client);
        assert_eq!(request.url, "http://u/o/7?x=1");
        assert_eq!(
            request.headers,
            [
                ("X-Edge".to_string(), "1".to_string()),
                ("Authorization".to_string(), "Bearer t".to_string())
            ]
        );
    }
}
