//! The `forward` authenticator, like nginx's `auth_request`: a `GET` to the legacy API's
//! auth endpoint with the client's listed headers as they came, plus `X-Original-URI` and
//! `X-Original-Method`. `2xx` allows (`identity_header` names the client), `401` and `403`
//! are passed on, anything else — down, slow, `5xx` — is `503` (fail closed). Answers are
//! cached per credential and path for `cache`; failures never are.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::cache::DecisionCache;
use super::{AuthError, AuthRequest, Identity};
use crate::config::ForwardConfig;
use crate::sources::http_client::HttpClient;

/// Decisions kept at most, per authenticator.
pub const CACHE_CAPACITY: usize = 65_536;

type Decision = Result<Identity, AuthError>;

/// A `forward:` authenticator, ready.
pub struct ForwardAuth {
    config: ForwardConfig,
    http: Arc<HttpClient>,
    cache: Option<DecisionCache<Decision>>,
    /// Whether the endpoint is failing: logged once per outage, and once when it recovers.
    down: AtomicBool,
}

impl ForwardAuth {
    /// Prepares `config`, with a cache when `cache` is not zero.
    pub fn new(config: &ForwardConfig, http: &Arc<HttpClient>) -> Self {
        ForwardAuth {
            cache: (!config.cache.is_zero())
                .then(|| DecisionCache::new(config.cache, CACHE_CAPACITY)),
            config: config.clone(),
            http: http.clone(),
            down: AtomicBool::new(false),
        }
    }

    /// The auth endpoint's decision on `request`, cached or asked.
    pub async fn verify(&self, request: &AuthRequest<'_>) -> Decision {
        let credential = self.credential(request);
        let Some(cache) = &self.cache else {
            return self.ask(request, credential).await;
        };
        let mut parts: Vec<&[u8]> = vec![request.uri.path().as_bytes()];
        for (name, value) in &credential {
            parts.extend([name.as_bytes(), value.as_bytes()]);
        }
        let key = DecisionCache::<Decision>::key(&parts);
        if let Some(decision) = cache.get(&key) {
            return decision;
        }
        let decision = self.ask(request, credential).await;
        if !matches!(decision, Err(AuthError::Unavailable(_))) {
            cache.insert(key, decision.clone());
        }
        decision
    }

    /// The listed headers of the request, as they came.
    fn credential(&self, request: &AuthRequest) -> Vec<(String, String)> {
        let mut sent = Vec::new();
        for name in &self.config.forward_headers {
            for value in request.headers.get_all(name.as_str()) {
                if let Ok(value) = value.to_str() {
                    sent.push((name.clone(), value.to_string()));
                }
            }
        }
        sent
    }

    async fn ask(&self, request: &AuthRequest<'_>, mut headers: Vec<(String, String)>) -> Decision {
        let original = request.uri.path_and_query().map_or("/", |p| p.as_str());
        headers.push(("X-Original-URI".into(), original.into()));
        headers.push(("X-Original-Method".into(), request.method.into()));
        let timeout = self.config.timeout;
        let asked = self.http.get(&self.config.url, &headers, Some(timeout));
        let response = match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return self.unavailable(err.to_string()),
            Err(_) => return self.unavailable(format!("no answer within {timeout:?}")),
        };
        let identity_header = self.config.identity_header.as_deref();
        let decision = match response.status {
            200..=299 => Ok(self.identity(identity_header.and_then(|name| response.header(name)))),
            401 => Err(AuthError::Denied {
                challenge: response.header("www-authenticate").map(str::to_string),
            }),
            403 => Err(AuthError::Forbidden(
                "the auth endpoint answered 403".into(),
            )),
            status => return self.unavailable(format!("the auth endpoint answered {status}")),
        };
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(url = %self.log_url(), "auth endpoint answers again");
        }
        // Read the (short) body in the background, so the connection goes back to the pool.
        tokio::spawn(response.finish());
        decision
    }

    fn identity(&self, subject: Option<&str>) -> Identity {
        let mut claims = Map::new();
        if let Some(subject) = subject {
            claims.insert("sub".into(), Value::String(subject.to_string()));
        }
        Identity {
            subject: subject.map(str::to_string),
            claims,
            expires: None,
        }
    }

    fn unavailable(&self, reason: String) -> Decision {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(url = %self.log_url(), %reason, "auth endpoint unavailable: refusing with 503");
        }
        Err(AuthError::Unavailable(reason))
    }

    fn log_url(&self) -> &str {
        self.config.url.split('?').next().unwrap_or_default()
    }
}
