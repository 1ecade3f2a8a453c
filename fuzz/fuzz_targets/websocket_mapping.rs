//! WebSocket messages to events: for any message and any JSON pointers, the event the
//! mapping makes is either refused by the encoder or reaches the client as exactly one
//! event with the same fields — no message can inject a field or a second event.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sse_edge::config::{BinaryPolicy, MessageMapping};
use sse_edge::sources::websocket::mapping::Mapping;
use sse_edge::sse::event::split_lines;
use sse_edge::sse::{Event, Parser};

/// Pointers chosen by the input, from a small set that real configurations use.
const POINTERS: [Option<&str>; 5] = [None, Some(""), Some("/type"), Some("/id"), Some("/a/0")];

fn pointer(byte: u8) -> Option<String> {
    POINTERS[usize::from(byte) % POINTERS.len()].map(str::to_string)
}

fn assert_delivered_intact(event: &Event) {
    let mut wire = BytesMut::new();
    if event
        .encode_into(event.id.as_deref().unwrap_or("1"), &mut wire)
        .is_err()
    {
        return;
    }
    let events = Parser::new(usize::MAX).feed(&wire).events;
    assert_eq!(events.len(), 1, "{event:?} became {events:?}");
    let data = split_lines(&event.data).collect::<Vec<_>>().join("\n");
    assert_eq!(events[0].data, data);
    assert_eq!(
        events[0].event,
        event.event.clone().filter(|e| !e.is_empty())
    );
}

fuzz_target!(|input: (u8, u8, u8, bool, String, Vec<u8>)| {
    let (event_from, id_from, data_from, base64, text, binary) = input;
    let mapping = Mapping::new(&MessageMapping {
        event_from: pointer(event_from),
        id_from: pointer(id_from),
        data_from: pointer(data_from),
        binary: if base64 {
            BinaryPolicy::Base64
        } else {
            BinaryPolicy::Drop
        },
    });
    assert_delivered_intact(&mapping.text(&text));
    match mapping.binary(&binary) {
        Some(event) => {
            assert!(base64);
            assert!(event.data.is_ascii() && !event.data.contains(['\r', '\n']));
            assert_delivered_intact(&event);
        }
        None => assert!(!base64),
    }
});
