use std::sync::Arc;

use super::{Digits, Direct, Head, Ring, Stream};
use crate::metrics::Metrics;
use crate::stream::StreamSpec;

/// The cache lines from `start` through `len` bytes.
fn lines<T>(start: &T, len: usize) -> std::ops::RangeInclusive<usize> {
    let start = start as *const T as usize;
    start / 64..=(start + len - 1) / 64
}

#[test]
fn what_a_delivery_touches_lies_in_three_cache_lines() {
    let registry = Metrics::register().expect("metrics");
    let spec = Arc::new(StreamSpec::for_tests());
    let stream = Stream::new(spec, registry.route("/t"), true);
    let hot = &stream.hot;
    let hot_end = std::mem::offset_of!(super::Hot, head) + Head::HOT_BYTES;
    let hot_lines = lines(hot, hot_end);
    assert_eq!(
        hot_lines.start(),
        hot_lines.end(),
        "outside the lock: one line"
    );
    let state = stream.state.read().expect("lock");
    let lock_lines = lines(&stream.state, 1);
    let direct_lines = lines(&state.direct, Direct::HOT_BYTES);
    assert_eq!(
        lock_lines.start(),
        direct_lines.end(),
        "the lock and the outlet"
    );
    let ring_lines = lines(&state.ring, Ring::COUNTER_BYTES);
    assert_eq!(ring_lines.start(), ring_lines.end(), "the ring's counters");
}

#[test]
fn digits_write_every_u64_as_to_string_does() {
    for n in [0, 7, 10, 99, 4_503_599_627_370_495, u64::MAX] {
        assert_eq!(Digits::default().decimal(n), n.to_string());
    }
}
