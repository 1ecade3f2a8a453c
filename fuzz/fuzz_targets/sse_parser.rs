//! The upstream SSE parser on arbitrary bytes: it never panics, an event never holds more
//! than the limit of received bytes, and how the stream is cut into chunks never changes
//! what it yields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_edge::sse::{Event, Parser};

/// Small, so that the oversize path is reached often.
const LIMIT: usize = 64;

fn parse(chunks: &[&[u8]]) -> (Vec<Event>, usize) {
    let mut parser = Parser::new(LIMIT);
    let mut events = Vec::new();
    let mut oversize = 0;
    for chunk in chunks {
        let outcome = parser.feed(chunk);
        events.extend(outcome.events);
        oversize += outcome.oversize;
    }
    (events, oversize)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the stream is split; the rest is the stream.
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = parse(&[stream]);
    let at = usize::from(cut) * stream.len() / 255;
    let (head, tail) = stream.split_at(at);
    assert_eq!(parse(&[head, tail]), whole, "split at {at}");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(parse(&bytes), whole, "byte at a time");
    // The limit counts bytes as received; an invalid UTF-8 byte decodes to U+FFFD (three
    // bytes), so decoded data can be up to three times as long — the stream's own
    // `max_event_bytes` check on publishing drops and counts such an event.
    for event in &whole.0 {
        assert!(event.data.len() <= 3 * LIMIT, "{event:?}");
    }
});
