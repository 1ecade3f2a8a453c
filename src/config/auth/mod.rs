//! Authentication settings (SPEC §8): the file schema ([`model`]), the validated runtime
//! types here, their checks ([`validate`]), and JWT verification keys ([`keys`]).

mod keys;
pub(super) mod model;
pub(super) mod validate;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

pub use keys::{KeySet, MAX_JWKS_BYTES};

use crate::routes::Template;

/// One validated named authenticator.
#[derive(Debug, Clone)]
pub enum AuthenticatorConfig {
    /// JWTs checked at the edge.
    Jwt(JwtConfig),
    /// The legacy API's auth endpoint decides.
    Forward(ForwardConfig),
}

/// A validated `jwt:` block.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Where the verification keys come from.
    pub keys: JwtKeys,
    /// The accepted `alg` values (all of one kind: HMAC with `secret`, public-key otherwise).
    pub algorithms: Vec<Algorithm>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, and past `exp` before a stream ends.
    pub leeway: Duration,
    /// Where the token is read, in order.
    pub from: Vec<CredentialSource>,
}

/// The verification keys of a `jwt:` block.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// Read once at load: the `secret`, or the `keys` file.
    Fixed(Arc<KeySet>),
    /// A JWKS URL fetched by the proxy, again every `refresh`.
    Remote {
        /// The JWKS URL.
        url: String,
        /// Time between fetches.
        refresh: Duration,
    },
}

/// Where a credential is read from the client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A request header (`Bearer ` stripped).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter: removed from the upstream request.
    Query(String),
}

/// A validated `forward:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The auth endpoint.
    pub url: String,
    /// Client headers sent to it (and the cache key, with the path).
    pub forward_headers: Vec<String>,
    /// The answer's header naming the client.
    pub identity_header: Option<String>,
    /// How long an answer is kept; zero asks every time.
    pub cache: Duration,
    /// Longest wait for an answer.
    pub timeout: Duration,
}

/// A route's authentication: which authenticator, and what the credential must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    /// The authenticator's name under `auth:` (validated to exist).
    pub name: String,
    /// Claim name and required value, with the path's `{name}` captures to substitute.
    pub require: Vec<(String, Template)>,
}
