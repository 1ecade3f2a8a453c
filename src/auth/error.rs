//! Why a request was not let through. The `Display` is the log line and never holds any
//! part of the credential; [`AuthError::reason`] and [`AuthError::result`] are the metric
//! labels, [`AuthError::status`] the answer.

/// A refused or undecidable authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no credential where the authenticator looks.
    #[error("no credential")]
    Missing,
    /// The credential is not valid: malformed, badly signed, expired, wrong issuer...
    #[error("invalid credential: {0}")]
    Invalid(&'static str),
    /// The auth endpoint answered `401`; its `WWW-Authenticate` is passed on.
    #[error("the auth endpoint answered 401")]
    Denied {
        /// The endpoint's `WWW-Authenticate`, if it sent one.
        challenge: Option<String>,
    },
    /// A valid credential that may not open this route: the auth endpoint said `403`, or a
    /// `require` rule failed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The decision could not be made: the auth endpoint is down, slow or failing, or no
    /// JWKS could be fetched yet. The proxy fails closed.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The `reason` label of `connections_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Denied { .. } => {
                "unauthenticated"
            }
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Unavailable(_) => "auth_unavailable",
        }
    }

    /// The `result` label of `auth_decisions_total`.
    pub fn result(&self) -> &'static str {
        match self {
            AuthError::Unavailable(_) => "error",
            other => other.reason(),
        }
    }

    /// The status the client gets: 401, 403 or 503 (SPEC §4).
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Denied { .. } => 401,
            AuthError::Forbidden(_) => 403,
            AuthError::Unavailable(_) => 503,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401: the auth endpoint's own, else `Bearer`.
    pub fn challenge(&self) -> Option<&str> {
        match self {
            AuthError::Denied {
                challenge: Some(challenge),
            } => Some(challenge),
            _ if self.status() == 401 => Some("Bearer"),
            _ => None,
        }
    }
}

/// Why a token failed, in words that quote nothing of it.
pub fn jwt_failure(err: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    AuthError::Invalid(match err.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidAlgorithm => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (iss, aud) is missing",
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
        _ => "malformed token",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_known_label_and_status() {
        let all = [
            AuthError::Missing,
            AuthError::Invalid("expired"),
            AuthError::Denied { challenge: None },
            AuthError::Forbidden("scope".into()),
            AuthError::Unavailable("down".into()),
        ];
        for err in &all {
            assert!(crate::metrics::REJECTION_REASONS.contains(&err.reason()));
            assert!(crate::metrics::AUTH_RESULTS.contains(&err.result()));
        }
        let statuses: Vec<u16> = all.iter().map(AuthError::status).collect();
        assert_eq!(statuses, [401, 401, 401, 403, 503]);
        assert_eq!(all[0].challenge(), Some("Bearer"));
        let passed_on = AuthError::Denied {
            challenge: Some("Basic realm=\"legacy\"".into()),
        };
        assert_eq!(passed_on.challenge(), Some("Basic realm=\"legacy\""));
        assert_eq!(all[3].challenge(), None);
    }
}
