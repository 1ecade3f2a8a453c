//! One backend of a pool as the balancer sees it: its name, the pingora [`Backend`] that
//! stands for it, its `upstream_backend_healthy` gauge, and the mark a refused connection
//! leaves on it.
//!
//! pingora's `Backend` is a socket address, and its Ketama ring hashes that address. Our
//! backends are URLs — templates on stream routes — whose host may resolve differently on
//! each node, or to several addresses, and whose DNS may change while the pool lives. So the
//! address a member is known by in pingora is an *identity*: derived from its configured URL
//! alone, the same on every node with the same list, never connected to. The health probe
//! resolves the real host on every check (see `probe.rs`), and requests resolve it
//! themselves.
//!
//! pingora keeps active health only; a refused connection is ours to remember. The mark
//! lasts until the next health check that passes after it, or — when the route has no
//! `health_check` — for [`PASSIVE_HOLD`], nginx's default `fail_timeout`.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::lb::Backend;
use prometheus::IntGauge;

/// How long a refused backend is skipped when no health check can bring it back sooner.
pub const PASSIVE_HOLD: Duration = Duration::from_secs(10);

/// The position of a member in its pool, carried in its pingora `Backend`'s extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index(pub usize);

/// One backend of a pool.
pub struct Member {
    /// The configured URL without its query: the `backend` label of metrics and logs.
    pub label: Arc<str>,
    /// The pingora backend standing for this member (identity address, index extension).
    pub backend: Backend,
    gauge: IntGauge,
    /// When a connection was last refused, in milliseconds since `epoch` plus one; 0: never
    /// (or since cleared).
    refused_at: AtomicU64,
}

impl Member {
    /// Member `index` of a pool, named `label`, reporting on `gauge`.
    pub fn new(index: usize, label: Arc<str>, gauge: IntGauge) -> Member {
        let mut backend = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(identity(&label)),
            weight: 1,
            ext: Default::default(),
        };
        backend.ext.insert(Index(index));
        Member {
            label,
            backend,
            gauge,
            refused_at: AtomicU64::new(0),
        }
    }

    /// Records a refused connection: the member is skipped while others are available.
    pub fn mark_refused(&self, epoch: Instant) {
        let now = epoch.elapsed().as_millis() as u64 + 1;
        self.refused_at.store(now, Ordering::Relaxed);
        self.gauge.set(0);
    }

    /// Whether a refused connection still marks the member. `checked`: a health check will
    /// clear the mark; else it lapses after [`PASSIVE_HOLD`] (and the gauge follows `ready`).
    pub fn is_marked(&self, epoch: Instant, checked: bool, ready: bool) -> bool {
        let at = self.refused_at.load(Ordering::Relaxed);
        if at == 0 {
            return false;
        }
        let since = epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(at - 1));
        if checked || since < PASSIVE_HOLD {
            return true;
        }
        self.clear(ready);
        false
    }

    /// Clears the mark of a refused connection (the member answered, or passed a check),
    /// and reports `ready`: whether the member's health check passes.
    pub fn clear(&self, ready: bool) {
        self.refused_at.store(0, Ordering::Relaxed);
        self.gauge.set(i64::from(ready));
    }

    /// After a health-check pass that began at `started`: a member that passed loses the
    /// marks made before the pass, and the gauge shows the outcome.
    pub fn checked(&self, epoch: Instant, started: Instant, ready: bool) {
        let began = started.saturating_duration_since(epoch).as_millis() as u64 + 1;
        let at = self.refused_at.load(Ordering::Relaxed);
        if ready && at != 0 && at <= began {
            self.refused_at.store(0, Ordering::Relaxed);
        }
        let marked = self.refused_at.load(Ordering::Relaxed) != 0;
        self.gauge.set(i64::from(ready && !marked));
    }
}

/// The identity address of a backend named `label`: an address in the unique-local range
/// `fd00::/8` from a 64-bit FNV-1a hash of the name. A hash fixed here (not Rust's
/// `DefaultHasher`, which may change between releases) keeps the Ketama ring the same on
/// every node and across upgrades.
pub fn identity(label: &str) -> SocketAddr {
    let hash = label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let address = (0xfd00_u128 << 112) | u128::from(hash);
    SocketAddr::new(Ipv6Addr::from(address).into(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        let gauge = IntGauge::new("g", "test gauge").expect("gauge");
        gauge.set(1);
        Member::new(0, Arc::from("http://a:1/s"), gauge)
    }

    #[test]
    fn identities_depend_on_the_name_alone() {
        assert_eq!(identity("http://a:1/s"), identity("http://a:1/s"));
        assert_ne!(identity("http://a:1/s"), identity("http://b:1/s"));
        assert_eq!(
            identity("http://a:1/s").to_string(),
            "[fd00::64fa:7fa4:40c2:37d1]:0",
            "fixed across builds and nodes"
        );
    }

    #[test]
    fn a_refusal_lasts_until_a_later_pass_or_the_hold() {
        let epoch = Instant::now() - Duration::from_secs(60);
        let m = member();
        m.mark_refused(epoch);
        assert!(m.is_marked(epoch, true, true));
        assert_eq!(m.gauge.get(), 0);
        m.checked(epoch, Instant::now() - Duration::from_secs(1), true);
        assert!(
            m.is_marked(epoch, true, true),
            "the pass began before the refusal"
        );
        m.checked(epoch, Instant::now(), true);
        assert!(!m.is_marked(epoch, true, true));
        assert_eq!(m.gauge.get(), 1);

        m.mark_refused(epoch);
        assert!(m.is_marked(epoch, false, true), "within the hold");
        m.refused_at.store(1, Ordering::Relaxed); // refused 60 s ago, at the epoch
        assert!(m.is_marked(epoch, true, true), "a checked pool keeps it");
        assert!(
            !m.is_marked(epoch, false, true),
            "an unchecked one lets it lapse"
        );
        assert_eq!(m.gauge.get(), 1);
    }
}
