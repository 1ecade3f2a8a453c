//! The authentication step of a request, before admission and before anything goes
//! upstream: the route's guard checks the credential, and a refusal is answered here —
//! `401` with `WWW-Authenticate`, `403`, or `503` with `Retry-After` — and counted.

use pingora::proxy::Session;
use pingora::Result;

use super::respond;
use super::stream_route::retry_after;
use crate::app::Route;
use crate::auth::{AuthError, AuthRequest, Identity};
use crate::routes::Captures;

/// What the step decided.
pub enum Checked {
    /// The route is public.
    Public,
    /// The credential is valid and meets the route's `require`.
    Passed(Identity),
    /// The client was refused, and has its answer.
    Refused,
}

/// Runs the route's guard on the request.
pub async fn check(route: &Route, captures: &Captures, session: &mut Session) -> Result<Checked> {
    let Some(guard) = &route.auth else {
        return Ok(Checked::Public);
    };
    let header = session.req_header();
    let request = AuthRequest {
        method: header.method.as_str(),
        uri: &header.uri,
        headers: &header.headers,
    };
    let metrics = &route.metrics;
    match guard.check(&request, captures).await {
        Ok(identity) => {
            metrics.auth_decision("allowed");
            Ok(Checked::Passed(identity))
        }
        Err(refusal) => {
            metrics.auth_decision(refusal.result());
            metrics.rejected(refusal.reason());
            tracing::debug!(reason = %refusal, "authentication refused");
            refuse(route, &refusal, session).await?;
            Ok(Checked::Refused)
        }
    }
}

async fn refuse(route: &Route, refusal: &AuthError, session: &mut Session) -> Result<()> {
    let mut headers = Vec::new();
    if let Some(challenge) = refusal.challenge() {
        headers.push(("WWW-Authenticate", challenge.to_string()));
    }
    let body = match refusal.status() {
        401 => "authentication required\n",
        403 => "forbidden\n",
        _ => {
            headers.push(("Retry-After", retry_after(route)));
            "authentication unavailable, retry shortly\n"
        }
    };
    respond::text(session, refusal.status(), body, &headers).await
}
