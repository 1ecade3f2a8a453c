//! The upstream SSE parser on arbitrary bytes: it never panics, an event is never larger
//! than the limit, and how the stream is cut into chunks never changes what it yields.

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
    for event in &whole.0 {
        assert!(event.data.len() <= LIMIT, "{event:?}");
    }
});
