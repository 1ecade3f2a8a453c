//! Reading the series a PromQL expression selects, to check dashboards and alert rules
//! against what sse-edge exports.

/// One `family{matchers}` selector of an expression: the family and each matcher as
/// (label, operator, value).
pub type Selector = (String, Vec<(String, String, String)>);

/// Every `sse_edge_*` selector in `expr` (histogram suffixes removed from the family).
pub fn selectors(expr: &str) -> Vec<Selector> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sse_edge_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_string();
        let mut matchers = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').expect("a closing brace");
            matchers = inner[..end].split(',').map(matcher).collect();
            rest = &inner[end..];
        }
        found.push((family, matchers));
    }
    found
}

/// `label="value"` (or `!=`, `=~`, `!~`) as its three parts.
fn matcher(text: &str) -> (String, String, String) {
    let at = text.find(['=', '!']).expect("an operator");
    let operator: String = text[at..]
        .chars()
        .take_while(|c| "=!~".contains(*c))
        .collect();
    let value = text[at + operator.len()..].trim().trim_matches('"');
    (text[..at].trim().to_string(), operator, value.to_string())
}
