//! The `jwt` authenticator: the token from the first `from:` source that has one, its key
//! chosen by `kid` among fixed keys or a refreshed JWKS, verified and validated by
//! `jsonwebtoken` (signature, `alg` in `algorithms`, `exp`/`nbf` with `leeway`, `iss`, `aud`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::error::jwt_failure;
use super::jwks::RemoteKeys;
use super::{credential, AuthError, AuthRequest, Identity};
use crate::config::{CredentialSource, JwtConfig, JwtKeys, KeySet};
use crate::sources::http_client::HttpClient;

/// A `jwt:` authenticator, ready.
pub struct JwtAuth {
    keys: Keys,
    /// One validation per accepted algorithm: `jsonwebtoken` wants the key's family to match
    /// every algorithm it is given.
    validations: HashMap<Algorithm, Validation>,
    leeway: Duration,
    from: Vec<CredentialSource>,
}

enum Keys {
    Fixed(Arc<KeySet>),
    Remote(RemoteKeys),
}

impl JwtAuth {
    /// Prepares `config`; a `jwks_url` is first fetched when the first token arrives.
    pub fn new(config: &JwtConfig, http: &Arc<HttpClient>) -> Self {
        let keys = match &config.keys {
            JwtKeys::Fixed(set) => Keys::Fixed(set.clone()),
            JwtKeys::Remote { url, refresh } => Keys::Remote(RemoteKeys::new(url, *refresh, http)),
        };
        let validations = config
            .algorithms
            .iter()
            .map(|alg| (*alg, validation(config, *alg)))
            .collect();
        JwtAuth {
            keys,
            validations,
            leeway: config.leeway,
            from: config.from.clone(),
        }
    }

    /// The identity of the request's token.
    pub async fn verify(&self, request: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        let token = credential::find(&self.from, request).ok_or(AuthError::Missing)?;
        let header = decode_header(&token).map_err(|err| jwt_failure(&err))?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(AuthError::Invalid("algorithm not accepted"))?;
        let keys = match &self.keys {
            Keys::Fixed(set) => set.clone(),
            Keys::Remote(remote) => remote.current().await?,
        };
        let Some(key) = keys.find(header.kid.as_deref(), header.alg) else {
            if let Keys::Remote(remote) = &self.keys {
                remote.unknown_kid();
            }
            return Err(AuthError::Invalid("no key for its kid"));
        };
        let data = decode::<Map<String, Value>>(&token, key, validation)
            .map_err(|err| jwt_failure(&err))?;
        Ok(self.identity(data.claims))
    }

    fn identity(&self, claims: Map<String, Value>) -> Identity {
        let expires = claims.get("exp").and_then(Value::as_f64).map(|exp| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let end = Duration::from_secs(exp.max(0.0) as u64) + self.leeway;
            Instant::now() + end.saturating_sub(now)
        });
        Identity {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .map(str::to_string),
            claims,
            expires,
        }
    }

    /// The `query:` sources of `from`.
    pub fn credential_params(&self) -> Vec<String> {
        credential::query_params(&self.from)
    }
}

/// What `jsonwebtoken` checks for `alg`: `exp` and `nbf` when present, `iss` and `aud`
/// (then required) when configured.
fn validation(config: &JwtConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_nbf = true;
    let mut required = Vec::new();
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn auth(issuer: Option<&str>, audience: Option<&str>) -> JwtAuth {
        let config = JwtConfig {
            keys: JwtKeys::Fixed(Arc::new(KeySet::secret(b"s3cret").expect("secret"))),
            algorithms: vec![Algorithm::HS256],
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            leeway: Duration::from_secs(30),
            from: vec![CredentialSource::Query("t".into())],
        };
        JwtAuth::new(&config, &Arc::new(HttpClient::default()))
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    async fn verify(
        auth: &JwtAuth,
        alg: Algorithm,
        secret: &[u8],
        claims: Value,
    ) -> Result<Identity, AuthError> {
        let token = encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret).expect("key"),
        )
        .expect("signed");
        let uri: http::Uri = format!("/s?t={token}").parse().expect("uri");
        let headers = http::HeaderMap::new();
        auth.verify(&AuthRequest {
            method: "GET",
            uri: &uri,
            headers: &headers,
        })
        .await
    }

    #[tokio::test]
    async fn valid_tokens_give_their_subject_and_expiry() {
        let auth = auth(Some("https://id"), Some("edge"));
        let claims =
            json!({"sub": "ada", "exp": now() + 60, "iss": "https://id", "aud": ["x", "edge"]});
        let identity = verify(&auth, Algorithm::HS256, b"s3cret", claims)
            .await
            .expect("valid");
        assert_eq!(identity.subject.as_deref(), Some("ada"));
        let left = identity.expires.expect("expires") - Instant::now();
        assert!(
            left > Duration::from_secs(85) && left <= Duration::from_secs(90),
            "{left:?}"
        );
    }

    #[tokio::test]
    async fn each_broken_token_is_unauthenticated() {
        let auth = auth(Some("https://id"), Some("edge"));
        let good = json!({"sub": "ada", "exp": now() + 60, "iss": "https://id", "aud": "edge"});
        let mut cases = vec![
            (
                Algorithm::HS256,
                &b"other"[..],
                good.clone(),
                "bad signature",
            ),
            (
                Algorithm::HS384,
                b"s3cret",
                good.clone(),
                "algorithm not accepted",
            ),
        ];
        for (claim, value, why) in [
            ("exp", json!(now() - 31), "expired"),
            ("nbf", json!(now() + 31), "not valid yet (nbf)"),
            ("iss", json!("https://evil"), "wrong issuer"),
            ("aud", json!("other"), "wrong audience"),
        ] {
            let mut claims = good.clone();
            claims[claim] = value;
            cases.push((Algorithm::HS256, b"s3cret", claims, why));
        }
        let mut no_aud = good.clone();
        no_aud.as_object_mut().expect("object").remove("aud");
        cases.push((
            Algorithm::HS256,
            b"s3cret",
            no_aud,
            "a required claim (iss, aud) is missing",
        ));
        for (alg, secret, claims, why) in cases {
            let refused = verify(&auth, alg, secret, claims).await;
            assert_eq!(refused, Err(AuthError::Invalid(why)));
        }
    }

    #[tokio::test]
    async fn leeway_admits_a_just_expired_token_and_no_exp_never_expires() {
        let auth = auth(None, None);
        let claims = json!({"sub": "ada", "exp": now() - 10, "aud": "anything"});
        let identity = verify(&auth, Algorithm::HS256, b"s3cret", claims)
            .await
            .expect("within leeway");
        assert!(identity.expires.expect("expires") > Instant::now());
        let forever = verify(&auth, Algorithm::HS256, b"s3cret", json!({"sub": "bob"})).await;
        assert_eq!(forever.map(|i| i.expires), Ok(None));
    }
}
