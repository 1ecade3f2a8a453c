//! A bounded cache of authentication decisions, so a flood of random credentials cannot grow
//! memory: keys are SHA-256 digests of the credential (fixed size, and no credential is kept
//! in memory), entries expire after one fixed time, and past `capacity` the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};

/// The digest a decision is cached under.
pub type CacheKey = [u8; 32];

/// Decisions by credential, each kept for `ttl`.
pub struct DecisionCache<V> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Entries<V>>,
}

struct Entries<V> {
    by_key: HashMap<CacheKey, (Instant, V)>,
    /// Keys in insertion order, which is also expiry order (one `ttl` for all).
    order: VecDeque<(CacheKey, Instant)>,
}

impl<V: Clone> DecisionCache<V> {
    /// An empty cache keeping at most `capacity` decisions for `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        DecisionCache {
            ttl,
            capacity,
            inner: Mutex::new(Entries {
                by_key: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The key of a credential made of `parts` (each length-prefixed, so no two different
    /// lists of parts share a key).
    pub fn key(parts: &[&[u8]]) -> CacheKey {
        let mut digest = Context::new(&SHA256);
        for part in parts {
            digest.update(&(part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        let mut key = [0; 32];
        key.copy_from_slice(digest.finish().as_ref());
        key
    }

    /// The decision cached under `key`, unless it has expired.
    pub fn get(&self, key: &CacheKey) -> Option<V> {
        let entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (expires, value) = entries.by_key.get(key)?;
        (*expires > Instant::now()).then(|| value.clone())
    }

    /// Caches `value` under `key` for `ttl`, first dropping expired entries and, when full,
    /// the oldest.
    pub fn insert(&self, key: CacheKey, value: V) {
        let now = Instant::now();
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(old, expires)) = entries.order.front() {
            if expires > now && entries.by_key.len() < self.capacity {
                break;
            }
            entries.order.pop_front();
            // A key inserted twice (two concurrent misses) keeps its newer entry.
            if entries.by_key.get(&old).is_some_and(|(e, _)| *e == expires) {
                entries.by_key.remove(&old);
            }
        }
        let expires = now + self.ttl;
        entries.by_key.insert(key, (expires, value));
        entries.order.push_back((key, expires));
    }

    /// Decisions held (expired ones included until they are pushed out).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = DecisionCache<&'static str>;

    #[test]
    fn hits_until_expiry() {
        // Two caches, so that neither assertion depends on how fast this machine is: hits
        // within a TTL no test run can pass, expiry well after a TTL of a millisecond.
        let (lasting, brief) = (
            Cache::new(Duration::from_secs(600), 10),
            Cache::new(Duration::from_millis(1), 10),
        );
        let key = Cache::key(&[b"cookie", b"sid=1"]);
        for cache in [&lasting, &brief] {
            assert_eq!(cache.get(&key), None);
            cache.insert(key, "allow");
        }
        assert_eq!(lasting.get(&key), Some("allow"));
        assert_eq!(lasting.get(&Cache::key(&[b"cookie", b"sid=2"])), None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(brief.get(&key), None, "expired");
        assert_eq!(lasting.get(&key), Some("allow"));
    }

    #[test]
    fn a_flood_of_credentials_stays_within_capacity() {
        let cache = Cache::new(Duration::from_secs(60), 100);
        let first = Cache::key(&[b"0"]);
        for n in 0..10_000u32 {
            cache.insert(Cache::key(&[&n.to_be_bytes()]), "deny");
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.get(&first), None, "the oldest went first");
        assert_eq!(
            cache.get(&Cache::key(&[&9_999u32.to_be_bytes()])),
            Some("deny")
        );
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(Cache::key(&[b"ab", b"c"]), Cache::key(&[b"a", b"bc"]));
    }
}
