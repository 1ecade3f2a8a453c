//! The safe encoder against the parser: whatever text an event carries, its wire form
//! parses back to exactly that one event (data lines joined by LF), or the encoder refuses
//! it — never a second event or a forged field.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sse_edge::sse::event::split_lines;
use sse_edge::sse::{Event, Parser};

fuzz_target!(|input: (Option<String>, String, String)| {
    let (name, id, data) = input;
    let event = Event {
        id: None,
        event: name.clone(),
        data: data.clone(),
    };
    let mut wire = BytesMut::new();
    if event.encode_into(&id, &mut wire).is_err() {
        assert!(wire.is_empty(), "a refused event wrote {wire:?}");
        let unsafe_char = |text: &str| text.contains(['\r', '\n', '\0']);
        assert!(unsafe_char(&id) || name.as_deref().is_some_and(unsafe_char));
        return;
    }
    let outcome = Parser::new(usize::MAX).feed(&wire);
    let expected = Event {
        // The parser reads an empty `id:` or `event:` as absent.
        id: Some(id).filter(|id| !id.is_empty()),
        event: name.filter(|name| !name.is_empty()),
        data: split_lines(&data).collect::<Vec<_>>().join("\n"),
    };
    assert_eq!(outcome.events, vec![expected], "wire {wire:?}");
});
