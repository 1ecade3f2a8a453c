//! Upstream pools: the backends of one route, which of them are healthy, and which one a
//! request or a stream uses — on pingora's load-balancing crate (`pingora::lb`).
//!
//! ```text
//!   config::Upstreams ─► Pool::new ─► Member × N   label · identity Backend · gauge · mark
//!                           │
//!                           ▼
//!   pingora LoadBalancer<RoundRobin>    (http routes: request by request)
//!   pingora LoadBalancer<KetamaHashing> (stream routes: by stream key, the same on every node)
//!        │  ready(b): pingora's health of b, flipped by run_health_check(Probe)
//!        │  marked(b): a refused connection (ours: pingora keeps no passive health)
//!        ▼
//!   Pool::round_robin(avoid) ─► backend index, or None: 502 at once
//!   Pool::for_key(key, avoid) ─► backend index, or Err(preferred): none passes its check
//!
//!   CheckRunner (a pingora background service) repeats each checked pool's pass; dropping
//!   the pool (its route retired, its last stream gone) ends it.
//! ```
//!
//! Selection prefers, in order: a backend that passes its check, was not refused and is not
//! the one to `avoid` (the one that just failed this stream or request); then one that
//! passes but was refused (a pool is never emptied by refusals alone, so a single backend
//! keeps being retried); never one failing its active check.

mod member;
mod probe;
mod runner;

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::selection::{Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};

pub use runner::{CheckRunner, StopGuard};

use crate::config::HealthCheck;
use crate::metrics::RouteMetrics;
use member::{Index, Member};

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Request by request, in turn (`http` routes).
    RoundRobin,
    /// By a key, on a Ketama ring (stream routes: the same key picks the same backend on
    /// every node, and the next one on the ring when it is down).
    Hashed,
}

/// What a pool is made of.
pub struct PoolSpec<'a> {
    /// The configured URLs (templates on stream routes), in file order.
    pub urls: Vec<String>,
    /// The route's active health check.
    pub health_check: Option<&'a HealthCheck>,
    /// How backends are picked.
    pub selection: Selection,
    /// An extra CA the checks of `https://`/`wss://` backends trust (the route's `ca_file`).
    pub ca_file: Option<&'a str>,
}

/// The backends of one route.
pub struct Pool {
    shared: Arc<Shared>,
    /// Ends the health-check loop with the pool.
    _checks: Option<StopGuard>,
}

/// What the pool and its health-check loop share.
struct Shared {
    members: Vec<Member>,
    balancer: Balancer,
    /// Whether an active check runs (refusal marks then wait for it instead of lapsing).
    checked: bool,
    /// The time base of refusal marks.
    epoch: Instant,
}

/// pingora's balancer for the pool's selection.
enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Hashed(LoadBalancer<Consistent>),
}

impl Pool {
    /// The pool of a route: its members, their gauges in `metrics`, and — with a health
    /// check — its loop, queued on `checks`.
    pub fn new(spec: PoolSpec, metrics: &RouteMetrics, checks: &CheckRunner) -> Pool {
        let labels: Vec<Arc<str>> = spec
            .urls
            .iter()
            .map(|url| crate::config::backend_name(url).into())
            .collect();
        let members: Vec<Member> = labels
            .iter()
            .enumerate()
            .map(|(index, label)| Member::new(index, label.clone(), metrics.backend_healthy(label)))
            .collect();
        let mut balancer = Balancer::new(spec.selection, &members);
        if let Some(check) = spec.health_check {
            let ca = spec
                .ca_file
                .and_then(|path| crate::certs::upstream_ca(path).ok());
            let probe = probe::Probe::new(metrics.route(), &spec.urls, &labels, check, ca);
            balancer.set_health_check(Box::new(probe));
        }
        let shared = Arc::new(Shared {
            members,
            balancer,
            checked: spec.health_check.is_some(),
            epoch: Instant::now(),
        });
        let _checks = spec.health_check.map(|check| {
            let shared = shared.clone();
            checks.repeat(check.interval, move || shared.clone().check_once())
        });
        Pool { shared, _checks }
    }

    /// The `backend` label of member `index`: its configured URL without the query.
    pub fn label(&self, index: usize) -> &Arc<str> {
        &self.shared.members[index].label
    }

    /// The number of backends.
    pub fn count(&self) -> usize {
        self.shared.members.len()
    }

    /// The next backend in turn for a request, other than `avoid` (the one that just refused
    /// it); `None` when every other backend fails its health check.
    pub fn round_robin(&self, avoid: Option<usize>) -> Option<usize> {
        let shared = &*self.shared;
        let other = |index: usize| Some(index) != avoid;
        shared
            .pick(b"", |index, ready| {
                ready && other(index) && !shared.marked(index, ready)
            })
            .or_else(|| shared.pick(b"", |index, ready| ready && other(index)))
    }

    /// The backend for the stream `key`: the key's own on the ring, else the next usable one
    /// after it, other than `avoid` (the one that just failed the stream) while another is
    /// usable. `Err` with the key's own backend when every backend fails its health check.
    pub fn for_key(&self, key: &str, avoid: Option<usize>) -> Result<usize, usize> {
        let shared = &*self.shared;
        let key = key.as_bytes();
        let other = |index: usize| Some(index) != avoid;
        let unmarked = |index: usize, ready: bool| ready && !shared.marked(index, ready);
        shared
            .pick(key, |index, ready| unmarked(index, ready) && other(index))
            .or_else(|| shared.pick(key, unmarked))
            .or_else(|| shared.pick(key, |index, ready| ready && other(index)))
            .or_else(|| shared.pick(key, |_, ready| ready))
            .ok_or_else(|| shared.pick(key, |_, _| true).unwrap_or(0))
    }

    /// A connection to member `index` was refused (or could not be made): it is skipped
    /// while another backend is usable, until it passes a health check (or, without one,
    /// for 10 s).
    pub fn refused(&self, index: usize) {
        if let Some(member) = self.shared.members.get(index) {
            member.mark_refused(self.shared.epoch);
        }
    }

    /// Member `index` answered: a refusal no longer marks it.
    pub fn answered(&self, index: usize) {
        let shared = &*self.shared;
        if let Some(member) = shared.members.get(index) {
            member.clear(shared.ready(member));
        }
    }
}

impl Shared {
    fn ready(&self, member: &Member) -> bool {
        self.balancer.backends().ready(&member.backend)
    }

    fn marked(&self, index: usize, ready: bool) -> bool {
        self.members[index].is_marked(self.epoch, self.checked, ready)
    }

    /// The first member the balancer offers for `key` that `accept` takes, given its index
    /// and whether it passes its health check. pingora's iteration is bounded; members it
    /// did not reach are then tried in order.
    fn pick(&self, key: &[u8], accept: impl Fn(usize, bool) -> bool) -> Option<usize> {
        let index = |backend: &Backend| backend.ext.get::<Index>().map_or(0, |index| index.0);
        let offered = self
            .balancer
            .select_with(key, self.members.len(), |backend, ready| {
                accept(index(backend), ready)
            })
            .map(|backend| index(&backend));
        offered.or_else(|| {
            (0..self.members.len()).find(|&index| accept(index, self.ready(&self.members[index])))
        })
    }

    /// One health-check pass over every member, then their marks and gauges.
    async fn check_once(self: Arc<Self>) {
        let started = Instant::now();
        self.balancer.backends().run_health_check(true).await;
        for member in &self.members {
            member.checked(self.epoch, started, self.ready(member));
        }
    }
}

impl Balancer {
    fn new(selection: Selection, members: &[Member]) -> Balancer {
        let backends = members
            .iter()
            .map(|member| member.backend.clone())
            .collect();
        let backends = Backends::new(Static::new(backends));
        let balancer = match selection {
            Selection::RoundRobin => Balancer::RoundRobin(LoadBalancer::from_backends(backends)),
            Selection::Hashed => Balancer::Hashed(LoadBalancer::from_backends(backends)),
        };
        // Static discovery answers at once and never fails.
        let _ = match &balancer {
            Balancer::RoundRobin(lb) => lb.update().now_or_never(),
            Balancer::Hashed(lb) => lb.update().now_or_never(),
        };
        balancer
    }

    fn set_health_check(&mut self, probe: Box<probe::Probe>) {
        match self {
            Balancer::RoundRobin(lb) => lb.set_health_check(probe),
            Balancer::Hashed(lb) => lb.set_health_check(probe),
        }
    }

    fn backends(&self) -> &Backends {
        match self {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Hashed(lb) => lb.backends(),
        }
    }

    /// pingora's selection, walking at most every point of the ring of `members` backends.
    fn select_with(
        &self,
        key: &[u8],
        members: usize,
        accept: impl Fn(&Backend, bool) -> bool,
    ) -> Option<Backend> {
        match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, members * 4, accept),
            Balancer::Hashed(lb) => lb.select_with(key, members * KETAMA_POINTS, accept),
        }
    }
}

/// Points each backend has on pingora's Ketama ring (nginx's 160 per unit of weight).
const KETAMA_POINTS: usize = 160;

#[cfg(test)]
mod tests;
