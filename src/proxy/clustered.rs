//! A stream route's client in cluster mode: the shared stream is fed through the cluster
//! (follow or hold), its first local client finds the cluster's replay window in the ring,
//! and the client's slot counts cluster-wide.

use std::sync::Arc;

use crate::app::{App, Route, StreamRoute};
use crate::cluster::{self, Cluster, Slot};
use crate::routes::Captures;
use crate::sources::{StreamKind, UpstreamRequest};
use crate::stream::{Feed, Publisher, StreamKey, Subscription};

/// A route's source for one upstream request, as the cluster runs it on the holder.
struct RouteSource {
    kind: Arc<dyn StreamKind>,
    upstream: UpstreamRequest,
    captures: Captures,
}

impl cluster::Source for RouteSource {
    fn start(&self, out: Publisher, resume: Option<String>) -> Feed {
        self.kind
            .start(self.upstream.clone(), &self.captures, resume, out)
    }

    fn take_over(&self, out: Publisher, last_id: String, document: Option<String>) -> Feed {
        let upstream = self.upstream.clone();
        self.kind
            .take_over(upstream, &self.captures, last_id, document, out)
    }
}

/// Joins the shared stream `key` through `cluster`: a stream new on this node is first
/// filled with the cluster's replay window, then follows or holds the stream key.
pub async fn join(
    app: &App,
    cluster: &Arc<Cluster>,
    (route, stream): (&Route, &StreamRoute),
    key: StreamKey,
    upstream: UpstreamRequest,
    captures: &Captures,
    last_event_id: Option<&str>,
) -> Subscription {
    // The cluster names a stream by what every node agrees on: the route and upstream URL.
    let cluster_key = format!("{}\n{}", route.config.path, upstream.url);
    let history = match app.hub.has(&key) {
        true => cluster::History::default(),
        false => cluster.history(&cluster_key, stream.spec.replay).await,
    };
    let source = Arc::new(RouteSource {
        kind: stream.kind.clone(),
        upstream,
        captures: captures.clone(),
    });
    let replay = stream.spec.replay;
    app.hub.join(
        key,
        &stream.spec,
        &route.metrics,
        last_event_id,
        |out, resume| cluster.feed(&cluster_key, history, out, resume, source, replay),
    )
}

/// The client's cluster-wide slot: `Err(())` when it is over `per_client` across the
/// cluster; `Ok(None)` in single-instance mode.
pub async fn slot(app: &App, route: &Route, client: &str) -> Result<Option<Slot>, ()> {
    let Some(cluster) = &app.cluster else {
        return Ok(None);
    };
    let per_client = app.limiter.limits().per_client;
    let path = &route.config.path;
    let slot = cluster.slot(client, per_client, path, route.config.per_client);
    slot.await.map(Some).ok_or(())
}
