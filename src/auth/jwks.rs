//! A `jwks_url` key set: fetched when the first token arrives, again every `jwks_refresh`
//! (sooner, at most every [`MIN_REFETCH`], when a token names a `kid` the set lacks: keys
//! were rotated). A failed fetch keeps the last good set; until a first one succeeds,
//! tokens get `503` (fail closed). The refresher task ends when the authenticator is dropped.

use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::AuthError;
use crate::config::{KeySet, MAX_JWKS_BYTES};
use crate::sources::http_client::HttpClient;

/// The shortest time between two fetches.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// A JWKS endpoint slower than this has failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a token waits for the very first fetch.
const FIRST_WAIT: Duration = Duration::from_secs(5);

/// What the refresher has so far.
#[derive(Clone)]
enum State {
    /// The first fetch has not finished.
    Pending,
    /// The first fetch failed; no set yet.
    Failed(String),
    /// The last good set.
    Ready(Arc<KeySet>),
}

/// A refreshed JWKS.
pub struct RemoteKeys {
    url: String,
    refresh: Duration,
    http: Arc<HttpClient>,
    state: Arc<watch::Sender<State>>,
    wake: Arc<Notify>,
    started: Once,
}

impl RemoteKeys {
    /// Keys from `url`; nothing is fetched until [`RemoteKeys::current`] is first called.
    pub fn new(url: &str, refresh: Duration, http: &Arc<HttpClient>) -> Self {
        RemoteKeys {
            url: url.to_string(),
            refresh,
            http: http.clone(),
            state: Arc::new(watch::channel(State::Pending).0),
            wake: Arc::new(Notify::new()),
            started: Once::new(),
        }
    }

    /// The current set, waiting for the first fetch if it is still running.
    pub async fn current(&self) -> Result<Arc<KeySet>, AuthError> {
        self.started.call_once(|| {
            let refresher = Refresher {
                url: self.url.clone(),
                refresh: self.refresh,
                http: self.http.clone(),
                state: Arc::downgrade(&self.state),
                wake: self.wake.clone(),
            };
            tokio::spawn(refresher.run());
        });
        let mut state = self.state.subscribe();
        let settled =
            tokio::time::timeout(FIRST_WAIT, state.wait_for(|s| !matches!(s, State::Pending)))
                .await;
        let state = match settled {
            Ok(Ok(state)) => state.clone(),
            _ => return Err(AuthError::Unavailable("the JWKS is not fetched yet".into())),
        };
        match state {
            State::Ready(set) => Ok(set),
            State::Failed(reason) => Err(AuthError::Unavailable(format!("JWKS: {reason}"))),
            State::Pending => Err(AuthError::Unavailable("the JWKS is not fetched yet".into())),
        }
    }

    /// A token named a `kid` the set lacks: fetch again once [`MIN_REFETCH`] allows.
    pub fn unknown_kid(&self) {
        self.wake.notify_one();
    }
}

struct Refresher {
    url: String,
    refresh: Duration,
    http: Arc<HttpClient>,
    state: Weak<watch::Sender<State>>,
    wake: Arc<Notify>,
}

impl Refresher {
    async fn run(self) {
        let log_url = self.url.split('?').next().unwrap_or_default().to_string();
        let mut failing = false;
        let mut retry = Duration::from_secs(1);
        loop {
            let fetched = fetch(&self.http, &self.url).await;
            let Some(state) = self.state.upgrade() else {
                return;
            };
            let wait = match fetched {
                Ok(set) => {
                    if failing {
                        tracing::info!(url = %log_url, "JWKS fetched again");
                    }
                    (failing, retry) = (false, Duration::from_secs(1));
                    state.send_replace(State::Ready(Arc::new(set)));
                    self.refresh
                }
                Err(reason) => {
                    if !failing {
                        tracing::warn!(url = %log_url, %reason, "JWKS fetch failed; keeping the last good set");
                    }
                    failing = true;
                    state.send_if_modified(|s| match s {
                        State::Ready(_) => false,
                        other => {
                            *other = State::Failed(reason);
                            true
                        }
                    });
                    let wait = retry.min(self.refresh);
                    retry = (retry * 2).min(MIN_REFETCH * 2);
                    wait
                }
            };
            drop(state);
            let early = wait.min(MIN_REFETCH);
            tokio::time::sleep(early).await;
            tokio::select! {
                _ = tokio::time::sleep(wait - early) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

async fn fetch(http: &HttpClient, url: &str) -> Result<KeySet, String> {
    let work = async {
        let accept = [("Accept".to_string(), "application/json".to_string())];
        let mut response = http
            .get(url, &accept, Some(FETCH_TIMEOUT))
            .await
            .map_err(|err| err.to_string())?;
        if !(200..300).contains(&response.status) {
            return Err(format!("status {}", response.status));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
        }
        KeySet::from_jwks(&body)
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
}
