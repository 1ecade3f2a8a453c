//! Path patterns and upstream URL templates (the route table itself is the app's), and the
//! query parameters and cookies of a request that fill them, identify or authenticate it.
//!
//! A pattern is an exact path (`/events/prices`), may capture whole segments
//! (`/events/orders/{id}`) and may end in `/*` to match a prefix. Routes are tried in the
//! order the file lists them; the first match wins.

use std::collections::HashMap;
use std::fmt;

/// One compiled `path:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<PathSegment>,
    prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathSegment {
    Literal(String),
    Capture(String),
}

/// Values of `{name}` captures from a matched request path.
pub type Captures = HashMap<String, String>;

impl PathPattern {
    /// Compiles a `path:` value, explaining what is wrong with a bad one.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err("must start with '/'".into());
        };
        let (rest, prefix) = match rest.strip_suffix('*') {
            Some(head) if head.is_empty() || head.ends_with('/') => {
                (head.trim_end_matches('/'), true)
            }
            Some(_) => return Err("'*' is only allowed as a whole last segment ('/*')".into()),
            None => (rest, false),
        };
        let mut segments = Vec::new();
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            segments.push(parse_segment(part)?);
        }
        Ok(PathPattern { segments, prefix })
    }

    /// The names this pattern captures.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            PathSegment::Capture(name) => Some(name.as_str()),
            PathSegment::Literal(_) => None,
        })
    }

    /// Matches a request path (without query), returning its captures.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let mut captures = Captures::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                PathSegment::Literal(literal) if literal == part => {}
                PathSegment::Literal(_) => return None,
                PathSegment::Capture(_) if part == "." || part == ".." => return None,
                PathSegment::Capture(name) => {
                    captures.insert(name.clone(), part.to_string());
                }
            }
        }
        if parts.next().is_some() && !self.prefix {
            return None;
        }
        Some(captures)
    }
}

fn parse_segment(part: &str) -> Result<PathSegment, String> {
    if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "capture '{{{name}}}' needs a name of letters, digits or '_'"
            ));
        }
        return Ok(PathSegment::Capture(name.to_string()));
    }
    if part.contains(['{', '}', '*']) {
        return Err(format!(
            "segment '{part}' mixes text with '{{', '}}' or '*'"
        ));
    }
    Ok(PathSegment::Literal(part.to_string()))
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                PathSegment::Literal(text) => write!(f, "/{text}")?,
                PathSegment::Capture(name) => write!(f, "/{{{name}}}")?,
            }
        }
        if self.prefix {
            f.write_str("/*")?;
        } else if self.segments.is_empty() {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// A string with `{name}` placeholders, filled from path captures (upstream URLs, the
/// WebSocket `subscribe` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
}

impl Template {
    /// Wraps a configured string.
    pub fn new(text: impl Into<String>) -> Self {
        Template { text: text.into() }
    }

    /// The placeholder names used, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.text.split('{').skip(1).filter_map(|tail| {
            let name = &tail[..tail.find('}')?];
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then_some(name)
        })
    }

    /// Replaces every `{name}` that has a capture; other braces are left as they are.
    pub fn fill(&self, captures: &Captures) -> String {
        let mut out = self.text.clone();
        for (name, value) in captures {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// Fills the placeholders and appends the client's query string.
    pub fn fill_url(&self, captures: &Captures, query: Option<&str>) -> String {
        let mut url = self.fill(captures);
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(query);
        }
        url
    }
}

impl fmt::Display for Template {
    /// The configured text, placeholders included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A query parameter's value (no percent-decoding beyond `+`: ids are opaque).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.replace('+', " "))
    })
}

/// A cookie's value.
pub fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_string())
        })
}

/// `query` without the parameters `drop` names, for an upstream request: the proxy's own
/// (`lastEventId`) and credentials never go upstream.
pub fn query_without(query: Option<&str>, drop: impl Fn(&str) -> bool) -> String {
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !drop(pair.split('=').next().unwrap_or_default()))
        .collect();
    kept.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_captures() {
        let exact = PathPattern::parse("/events/prices").expect("valid");
        assert!(exact.matches("/events/prices").is_some());
        assert!(exact.matches("/events/prices/x").is_none());
        assert!(exact.matches("/events").is_none());

        let prefix = PathPattern::parse("/api/*").expect("valid");
        assert!(prefix.matches("/api").is_some());
        assert!(prefix.matches("/api/a/b").is_some());
        assert!(prefix.matches("/apix").is_none());

        let capture = PathPattern::parse("/events/orders/{id}").expect("valid");
        let found = capture.matches("/events/orders/42").expect("match");
        assert_eq!(found["id"], "42");
        assert!(capture.matches("/events/orders/..").is_none());
        assert_eq!(capture.to_string(), "/events/orders/{id}");
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(PathPattern::parse("events").is_err());
        assert!(PathPattern::parse("/a*").is_err());
        assert!(PathPattern::parse("/a/{}").is_err());
        assert!(PathPattern::parse("/a/x{id}").is_err());
        assert_eq!(PathPattern::parse("/*").expect("valid").to_string(), "/*");
        assert_eq!(PathPattern::parse("/").expect("valid").to_string(), "/");
    }

    #[test]
    fn templates_fill_captures_and_query() {
        let template = Template::new("http://u/orders/{id}?v=1");
        assert_eq!(template.placeholders().collect::<Vec<_>>(), ["id"]);
        let captures = Captures::from([("id".to_string(), "7".to_string())]);
        assert_eq!(
            template.fill_url(&captures, Some("a=b")),
            "http://u/orders/7?v=1&a=b"
        );
        assert_eq!(
            Template::new("http://u/x").fill_url(&captures, Some("q=1")),
            "http://u/x?q=1"
        );
    }
}
