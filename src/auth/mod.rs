//! Authentication at the edge (SPEC §8): a route's credential is checked before anything
//! goes upstream, so authenticated clients can share one upstream that knows nothing of auth.
//!
//! ```text
//!   request ─► Guard::check ─► Authenticator::verify ─┬─ jwt: credential::find ─► key by kid
//!                  │                                  │       (fixed, or jwks refreshed) ─► jsonwebtoken
//!                  │                                  └─ forward: cache hit? else GET the auth
//!                  │                                          endpoint ─► cache the answer
//!                  └─► require::check (claims, path captures) ─► Identity { subject, expires }
//! ```
//!
//! One enum dispatches to one file per kind ([`jwt`], [`forward`]); refusals are an
//! [`AuthError`] whose `reason()` and `result()` are the metric labels.

mod cache;
pub mod credential;
mod error;
mod forward;
mod jwks;
mod jwt;
mod require;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::time::Instant;

pub use error::AuthError;

use crate::config::{AuthenticatorConfig, RouteAuth};
use crate::routes::{Captures, Template};
use crate::sources::http_client::HttpClient;

/// What of a client's request an authenticator reads.
pub struct AuthRequest<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request target: path and query.
    pub uri: &'a http::Uri,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
}

/// Who a valid credential belongs to, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The JWT's `sub`, or forward auth's `identity_header`: the client for `client_id: auth`.
    pub subject: Option<String>,
    /// The claims `require` reads (forward auth: `sub` only).
    pub claims: Map<String, Value>,
    /// When the credential runs out (a JWT's `exp` plus `leeway`): the stream ends then.
    pub expires: Option<Instant>,
}

/// One named authenticator, made ready.
enum Authenticator {
    Jwt(jwt::JwtAuth),
    Forward(forward::ForwardAuth),
}

impl Authenticator {
    fn new(config: &AuthenticatorConfig, http: &Arc<HttpClient>) -> Authenticator {
        match config {
            AuthenticatorConfig::Jwt(config) => Authenticator::Jwt(jwt::JwtAuth::new(config, http)),
            AuthenticatorConfig::Forward(config) => {
                Authenticator::Forward(forward::ForwardAuth::new(config, http))
            }
        }
    }

    async fn verify(&self, request: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        match self {
            Authenticator::Jwt(jwt) => jwt.verify(request).await,
            Authenticator::Forward(forward) => forward.verify(request).await,
        }
    }

    fn credential_params(&self) -> Vec<String> {
        match self {
            Authenticator::Jwt(jwt) => jwt.credential_params(),
            Authenticator::Forward(_) => Vec::new(),
        }
    }
}

/// Every named authenticator, built once with the route table: routes naming the same one
/// share its JWKS and its decision cache.
pub struct Authenticators {
    by_name: HashMap<String, Arc<Authenticator>>,
}

impl Authenticators {
    /// Prepares every authenticator of the `auth:` block.
    pub fn new(configs: &BTreeMap<String, AuthenticatorConfig>, http: &Arc<HttpClient>) -> Self {
        let by_name = configs
            .iter()
            .map(|(name, config)| (name.clone(), Arc::new(Authenticator::new(config, http))))
            .collect();
        Authenticators { by_name }
    }

    /// The guard of a route that uses `auth`.
    pub fn guard(&self, auth: &RouteAuth) -> Guard {
        let authenticator = self
            .by_name
            .get(&auth.name)
            .expect("validation refuses a route naming an undefined authenticator")
            .clone();
        Guard {
            credential_params: authenticator.credential_params(),
            authenticator,
            require: auth.require.clone(),
        }
    }
}

/// The authentication step of one route.
pub struct Guard {
    authenticator: Arc<Authenticator>,
    require: Vec<(String, Template)>,
    credential_params: Vec<String>,
}

impl Guard {
    /// Who the request's credential belongs to, if it is valid and meets the route's
    /// `require` (with the path's `captures`).
    pub async fn check(
        &self,
        request: &AuthRequest<'_>,
        captures: &Captures,
    ) -> Result<Identity, AuthError> {
        let identity = self.authenticator.verify(request).await?;
        require::check(&self.require, &identity.claims, captures)?;
        Ok(identity)
    }

    /// The query parameters the credential may come in: removed from upstream requests.
    pub fn credential_params(&self) -> &[String] {
        &self.credential_params
    }
}
