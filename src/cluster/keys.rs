//! Every Redis key the cluster uses (docs/cluster.md lists them with their lifetimes). Each
//! carries the configured prefix and a `{hash tag}`, so that in a Redis Cluster all the keys
//! of one stream (or of one client) live in one slot.

/// The keys of one stream key (route path and final upstream URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    /// String: the holder's node id, with a `lease` expiry.
    pub lease: String,
    /// Stream: the last `replay` events, entry ids `NUMBER-0`.
    pub events: String,
}

impl StreamKeys {
    /// The keys of the stream `key` under `prefix`.
    pub fn new(prefix: &str, key: &str) -> StreamKeys {
        let tag = format!("{prefix}{{s:{:016x}}}", fnv1a(key));
        StreamKeys {
            lease: format!("{tag}:lease"),
            events: format!("{tag}:events"),
        }
    }
}

/// The sorted sets of a client identity's slots: all routes, and one route's own limit.
pub fn client_slots(prefix: &str, client: &str, route: Option<&str>) -> String {
    let tag = format!("{prefix}{{c:{:016x}}}:slots", fnv1a(client));
    match route {
        None => tag,
        Some(route) => format!("{tag}:{:016x}", fnv1a(route)),
    }
}

/// FNV-1a, 64 bits: the same on every node and every build (std's hasher is not promised
/// to be), so every node names a stream's keys alike.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_prefix_and_one_hash_tag_per_stream() {
        let keys = StreamKeys::new("edge:", "/p\nhttp://u/a");
        assert!(keys.lease.starts_with("edge:{s:"));
        let tag =
            |key: &str| key[key.find('{').unwrap_or(0)..=key.find('}').unwrap_or(0)].to_string();
        assert_eq!(tag(&keys.lease), tag(&keys.events));
        assert_ne!(keys, StreamKeys::new("edge:", "/p\nhttp://u/b"));
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        let (all, route) = (
            client_slots("e:", "ip:1", None),
            client_slots("e:", "ip:1", Some("/r")),
        );
        assert_eq!(tag(&all), tag(&route));
        assert!(route.starts_with(&all));
    }
}
