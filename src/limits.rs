//! Who a client is, and how many streams it and the whole proxy may hold.
//!
//! Counting is exact and concurrent: a [`Permit`] is taken before a stream starts and gives
//! its slots back when dropped, so every way a stream can end (client close, upstream end,
//! error, shutdown, panic unwinding) releases them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::{ClientIdSource, Limits};
use crate::routes::{cookie, query_param};

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client identity holds its `per_client` streams already (429).
    PerClient,
    /// The proxy holds `max_connections` streams already (503).
    MaxConnections,
}

impl Refusal {
    /// The `reason` label of `connections_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::PerClient => "per_client",
            Refusal::MaxConnections => "max_connections",
        }
    }
}

/// Global and per-client stream counters.
pub struct Limiter {
    limits: RwLock<Arc<Limits>>,
    active: AtomicUsize,
    per_client: Mutex<HashMap<String, usize>>,
}

/// Slots held by one stream; released on drop.
pub struct Permit {
    limiter: Arc<Limiter>,
    keys: Vec<String>,
}

impl Limiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Limiter> {
        Arc::new(Limiter {
            limits: RwLock::new(Arc::new(limits)),
            active: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// The client's identity per `limits.client_id`; falls back to its address when the
    /// header, query parameter or cookie is missing, or — for `auth` — when the route is
    /// public (`authenticated` is the identity its authenticator established).
    pub fn identify(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        query: Option<&str>,
        authenticated: Option<&str>,
    ) -> String {
        let keyed = match &self.limits().client_id {
            ClientIdSource::PeerIp => None,
            ClientIdSource::Auth => authenticated.map(str::to_string),
            ClientIdSource::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ClientIdSource::Query(name) => query.and_then(|q| query_param(q, name)),
            ClientIdSource::Cookie(name) => cookie(headers, name),
        };
        match keyed.filter(|k| !k.is_empty()) {
            Some(key) => format!("key:{key}"),
            None => format!(
                "ip:{}",
                self.client_ip(peer, headers)
                    .map_or("unknown".into(), |ip| ip.to_string())
            ),
        }
    }

    /// The client address: the peer, or — when the peer is a trusted proxy — the rightmost
    /// untrusted hop of `X-Forwarded-For` / `Forwarded`.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let hops = forwarded_hops(headers);
        let untrusted = hops.iter().rev().find(|hop| !self.is_trusted(**hop));
        Some(untrusted.or(hops.first()).copied().unwrap_or(peer))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.limits()
            .trusted_proxies
            .iter()
            .any(|net: &IpNet| net.contains(&ip))
    }

    /// Takes a slot for `client` globally and, when the route sets its own `per_client`,
    /// on that route.
    pub fn acquire(
        self: &Arc<Self>,
        client: &str,
        route: &str,
        route_limit: Option<usize>,
    ) -> Result<Permit, Refusal> {
        let mut counts = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let limits = self.limits();
        if self.active.load(Ordering::Relaxed) >= limits.max_connections {
            return Err(Refusal::MaxConnections);
        }
        let mut wanted = vec![(client.to_string(), limits.per_client)];
        if let Some(limit) = route_limit {
            wanted.push((format!("{route}\u{0}{client}"), limit));
        }
        if wanted
            .iter()
            .any(|(key, limit)| counts.get(key).copied().unwrap_or(0) >= *limit)
        {
            return Err(Refusal::PerClient);
        }
        for (key, _) in &wanted {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            limiter: self.clone(),
            keys: wanted.into_iter().map(|(key, _)| key).collect(),
        })
    }

    /// The limits new admissions are held to.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies new limits to new admissions; streams already admitted keep their slots and
    /// go on counting against the new limits.
    pub fn reconfigure(&self, limits: Limits) {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(limits);
    }

    /// Streams currently holding a slot.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self
            .limiter
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some(count) = counts.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(key);
                }
            }
        }
        self.limiter.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every hop named by `X-Forwarded-For` and `Forwarded: for=`, in order (left = farthest).
fn forwarded_hops(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut hops = Vec::new();
    for value in headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        hops.extend(value.split(',').filter_map(|hop| parse_hop(hop.trim())));
    }
    if hops.is_empty() {
        for value in headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for element in value.split(',') {
                let found = element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for")
                        .then(|| parse_hop(value.trim_matches('"')))?
                });
                hops.extend(found);
            }
        }
    }
    hops
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    // "[v6]:port", "[v6]" or "v4:port"
    let bracketed = hop.strip_prefix('[').and_then(|h| h.split(']').next());
    bracketed
        .or_else(|| hop.rsplit_once(':').map(|(ip, _)| ip))
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(
        per_client: usize,
        max: usize,
        trusted: &[&str],
        client_id: ClientIdSource,
    ) -> Arc<Limiter> {
        Limiter::new(Limits {
            max_connections: max,
            per_client,
            client_id,
            trusted_proxies: trusted.iter().map(|t| t.parse().expect("cidr")).collect(),
            max_lag: 1,
            slow_client_policy: Default::default(),
            max_header_bytes: 1,
            header_timeout: None,
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn per_client_and_global_counts_release_on_drop() {
        let limiter = limiter(2, 3, &[], ClientIdSource::PeerIp);
        let a1 = limiter.acquire("a", "/r", None).expect("first");
        let _a2 = limiter.acquire("a", "/r", None).expect("second");
        assert_eq!(
            limiter.acquire("a", "/r", None).err(),
            Some(Refusal::PerClient)
        );
        let _b = limiter.acquire("b", "/r", None).expect("other client");
        assert_eq!(
            limiter.acquire("c", "/r", None).err(),
            Some(Refusal::MaxConnections)
        );
        drop(a1);
        let _a3 = limiter.acquire("a", "/r", None).expect("slot released");
        assert_eq!(limiter.active(), 3);
    }

    #[test]
    fn route_limit_tightens() {
        let limiter = limiter(8, 100, &[], ClientIdSource::PeerIp);
        let _one = limiter.acquire("a", "/r", Some(1)).expect("first");
        assert_eq!(
            limiter.acquire("a", "/r", Some(1)).err(),
            Some(Refusal::PerClient)
        );
        let _other_route = limiter.acquire("a", "/s", None).expect("other route");
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let limiter = limiter(1, 10, &["10.0.0.0/8"], ClientIdSource::PeerIp);
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let untrusted: IpAddr = "192.0.2.9".parse().expect("ip");
        assert_eq!(
            limiter.identify(Some(untrusted), &spoofed, None, None),
            "ip:192.0.2.9"
        );
        let proxy: IpAddr = "10.1.1.1".parse().expect("ip");
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 2.2.2.2, 10.9.9.9")]);
        assert_eq!(
            limiter.identify(Some(proxy), &chain, None, None),
            "ip:2.2.2.2"
        );
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::1]:99\";proto=https")]);
        assert_eq!(
            limiter.identify(Some(proxy), &forwarded, None, None),
            "ip:2001:db8::1"
        );
    }

    #[test]
    fn keyed_identities_fall_back_to_the_address() {
        let limiter = limiter(1, 10, &[], ClientIdSource::Cookie("sid".into()));
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let with_cookie = headers(&[("cookie", "a=1; sid=xyz")]);
        assert_eq!(
            limiter.identify(Some(peer), &with_cookie, None, None),
            "key:xyz"
        );
        assert_eq!(
            limiter.identify(Some(peer), &HeaderMap::new(), None, None),
            "ip:127.0.0.1"
        );
        assert_eq!(
            query_param("a=1&token=t+1", "token").as_deref(),
            Some("t 1")
        );
    }

    #[test]
    fn auth_identities_count_per_subject_and_public_routes_per_address() {
        let limiter = limiter(1, 10, &[], ClientIdSource::Auth);
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let none = HeaderMap::new();
        assert_eq!(
            limiter.identify(Some(peer), &none, None, Some("ada")),
            "key:ada"
        );
        assert_eq!(
            limiter.identify(Some(peer), &none, None, None),
            "ip:127.0.0.1"
        );
    }
}
