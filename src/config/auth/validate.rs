//! Checks of the `auth:` block and of every route's `auth:` choice, collected like every
//! other config problem: a missing `algorithms`, a literal secret, an unreadable key file, a
//! route naming an authenticator the file does not define.

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::model::{AuthChoiceFile, AuthenticatorFile, ForwardBlock, JwtBlock};
use super::{
    AuthenticatorConfig, CredentialSource, ForwardConfig, JwtConfig, JwtKeys, KeySet, RouteAuth,
};
use crate::config::issues::Issues;
use crate::config::kinds::{check_url, Site};
use crate::routes::{PathPattern, Template};

/// The algorithms `jsonwebtoken` verifies, as `check` lists them.
const ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";
const DEFAULT_FROM: [&str; 3] = [
    "header:Authorization",
    "cookie:access_token",
    "query:access_token",
];

/// Every authenticator under `auth:`, validated.
pub fn authenticators(
    file: BTreeMap<String, AuthenticatorFile>,
    issues: &mut Issues,
) -> BTreeMap<String, AuthenticatorConfig> {
    let mut found = BTreeMap::new();
    for (name, block) in file {
        let at = format!("auth.{name}");
        if name == "none" {
            issues.add(
                &at,
                "'none' means a public route and cannot name an authenticator",
            );
        }
        let config = match (block.jwt, block.forward) {
            (Some(jwt), None) => jwt_config(&at, jwt, issues).map(AuthenticatorConfig::Jwt),
            (None, Some(forward)) => Some(AuthenticatorConfig::Forward(forward_config(
                &at, forward, issues,
            ))),
            (None, None) => {
                issues.add(&at, "needs one of jwt or forward");
                None
            }
            (Some(_), Some(_)) => {
                issues.add(&at, "has both jwt and forward");
                None
            }
        };
        found.extend(config.map(|config| (name, config)));
    }
    found
}

fn jwt_config(at: &str, block: JwtBlock, issues: &mut Issues) -> Option<JwtConfig> {
    let algorithms = algorithms(at, block.algorithms.as_deref(), issues);
    let keys = jwt_keys(at, &block, &algorithms, issues)?;
    let from = credential_sources(&format!("{at}.jwt.from"), block.from, issues);
    Some(JwtConfig {
        keys,
        algorithms,
        issuer: block.issuer,
        audience: block.audience,
        leeway: block.leeway.unwrap_or(Duration::from_secs(30)),
        from,
    })
}

fn algorithms(at: &str, names: Option<&[String]>, issues: &mut Issues) -> Vec<Algorithm> {
    let at = format!("{at}.jwt.algorithms");
    let names = names.unwrap_or_default();
    if names.is_empty() {
        issues.add(
            &at,
            "required: the accepted algorithms, e.g. [HS256] or [RS256]",
        );
    }
    let mut found = Vec::new();
    for (index, name) in names.iter().enumerate() {
        match name.parse::<Algorithm>() {
            Ok(alg) => found.push(alg),
            Err(_) if name.eq_ignore_ascii_case("none") => {
                issues.add(format!("{at}[{index}]"), "'none' is never accepted");
            }
            Err(_) => issues.add(
                format!("{at}[{index}]"),
                format!("'{name}' is not one of {ALGORITHMS}"),
            ),
        }
    }
    found
}

/// Exactly one key source, with a key for every algorithm.
fn jwt_keys(
    at: &str,
    block: &JwtBlock,
    algorithms: &[Algorithm],
    issues: &mut Issues,
) -> Option<JwtKeys> {
    let field = |name: &str| format!("{at}.jwt.{name}");
    let keys = match (&block.secret, &block.keys, &block.jwks_url) {
        (Some(secret), None, None) => {
            JwtKeys::Fixed(secret_keys(&field("secret"), secret, issues)?.into())
        }
        (None, Some(file), None) => {
            let read = std::fs::read_to_string(file)
                .map_err(|err| format!("cannot read {file}: {err}"))
                .and_then(|text| KeySet::from_file_text(&text).map_err(|e| format!("{file}: {e}")));
            JwtKeys::Fixed(
                read.map_err(|reason| issues.add(field("keys"), reason))
                    .ok()?
                    .into(),
            )
        }
        (None, None, Some(url)) => {
            check_url(&field("jwks_url"), url, &["http", "https"], issues);
            let refresh = block.jwks_refresh.unwrap_or(Duration::from_secs(300));
            if refresh.is_zero() {
                issues.add(field("jwks_refresh"), "must be greater than 0s");
            }
            JwtKeys::Remote {
                url: url.clone(),
                refresh,
            }
        }
        _ => {
            issues.add(
                format!("{at}.jwt"),
                "needs exactly one of secret, keys or jwks_url",
            );
            return None;
        }
    };
    let source = block.keys.as_deref().unwrap_or("the secret");
    check_algorithms(
        &format!("{at}.jwt.algorithms"),
        &keys,
        source,
        algorithms,
        issues,
    );
    Some(keys)
}

/// Every algorithm has a key: fixed keys are known now; a JWKS URL publishes public keys,
/// so HMAC algorithms need a `secret`.
fn check_algorithms(
    at: &str,
    keys: &JwtKeys,
    source: &str,
    algorithms: &[Algorithm],
    issues: &mut Issues,
) {
    for (index, alg) in algorithms.iter().enumerate() {
        let at = format!("{at}[{index}]");
        match keys {
            JwtKeys::Fixed(set) if !set.supports(*alg) => {
                issues.add(at, format!("no key in {source} verifies {alg:?}"));
            }
            JwtKeys::Remote { .. } if alg.family() == AlgorithmFamily::Hmac => {
                issues.add(at, "an HMAC algorithm needs a secret");
            }
            _ => {}
        }
    }
}

/// `env:NAME` or `file:PATH`, read now. A literal secret is refused (and never echoed).
fn secret_keys(at: &str, secret: &str, issues: &mut Issues) -> Option<KeySet> {
    let bytes = match secret.split_once(':') {
        Some(("env", name)) => std::env::var(name)
            .map_err(|_| format!("the environment variable {name} is not set"))
            .map(String::into_bytes),
        Some(("file", path)) => std::fs::read(path)
            .map_err(|err| format!("cannot read {path}: {err}"))
            .map(|mut bytes| {
                // One trailing line end, as `echo secret > file` writes it, is not the secret's.
                for end in [b'\n', b'\r'] {
                    if bytes.last() == Some(&end) {
                        bytes.pop();
                    }
                }
                bytes
            }),
        _ => Err("a literal secret is refused: use env:NAME or file:PATH".to_string()),
    };
    bytes
        .and_then(|bytes| KeySet::secret(&bytes))
        .map_err(|reason| issues.add(at, reason))
        .ok()
}

fn credential_sources(
    at: &str,
    from: Option<Vec<String>>,
    issues: &mut Issues,
) -> Vec<CredentialSource> {
    let from = from.unwrap_or_else(|| DEFAULT_FROM.map(String::from).to_vec());
    if from.is_empty() {
        issues.add(
            at,
            "needs at least one of header:NAME, cookie:NAME, query:NAME",
        );
    }
    let mut sources = Vec::new();
    for (index, text) in from.iter().enumerate() {
        let source = match text.split_once(':') {
            Some(("header", name)) if http::HeaderName::try_from(name).is_ok() => {
                Some(CredentialSource::Header(name.to_string()))
            }
            Some(("cookie", name)) if !name.is_empty() => {
                Some(CredentialSource::Cookie(name.into()))
            }
            Some(("query", name)) if !name.is_empty() => Some(CredentialSource::Query(name.into())),
            _ => None,
        };
        match source {
            Some(source) => sources.push(source),
            None => issues.add(
                format!("{at}[{index}]"),
                format!("'{text}' is not one of header:NAME, cookie:NAME, query:NAME"),
            ),
        }
    }
    sources
}

fn forward_config(at: &str, block: ForwardBlock, issues: &mut Issues) -> ForwardConfig {
    let field = |name: &str| format!("{at}.forward.{name}");
    check_url(&field("url"), &block.url, &["http", "https"], issues);
    for (index, name) in block.forward_headers.iter().enumerate() {
        if http::HeaderName::try_from(name.as_str()).is_err() {
            issues.add(
                format!("{}[{index}]", field("forward_headers")),
                "not a valid header name",
            );
        }
    }
    if let Some(name) = &block.identity_header {
        if http::HeaderName::try_from(name.as_str()).is_err() {
            issues.add(field("identity_header"), "not a valid header name");
        }
    }
    let timeout = block.timeout.unwrap_or(Duration::from_secs(2));
    if timeout.is_zero() {
        issues.add(field("timeout"), "must be greater than 0s");
    }
    ForwardConfig {
        url: block.url,
        forward_headers: block.forward_headers,
        identity_header: block.identity_header,
        cache: block.cache.unwrap_or_default(),
        timeout,
    }
}

/// A route's authentication: its own `auth:` (at `routes[i].auth`) or else the inherited
/// `defaults.auth`; `None` for a public route.
pub fn route_auth(
    at: &str,
    choice: Option<&AuthChoiceFile>,
    defined: &BTreeMap<String, AuthenticatorConfig>,
    pattern: Option<&PathPattern>,
    issues: &mut Issues,
) -> Option<RouteAuth> {
    let choice = choice.filter(|c| c.name != "none")?;
    if !defined.contains_key(&choice.name) {
        let known: Vec<&str> = defined.keys().map(String::as_str).collect();
        issues.add(
            at,
            format!(
                "'{}' is not an authenticator under auth: (defined: {})",
                choice.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    let site = Site { at, pattern };
    let require = choice
        .require
        .iter()
        .map(|(claim, value)| {
            let value = Template::new(value);
            site.template(&format!("{at}.require.{claim}"), &value, issues);
            (claim.clone(), value)
        })
        .collect();
    Some(RouteAuth {
        name: choice.name.clone(),
        require,
    })
}
