//! The parser's tests: every split of the input, each line end, limits and the BOM.

use super::*;
use bytes::BytesMut;
use proptest::prelude::*;

const LIMIT: usize = 1 << 20;

fn parse_all(input: &[u8]) -> Vec<Event> {
    Parser::new(LIMIT).feed(input).events
}

fn parse_split_everywhere(input: &[u8]) -> Vec<Event> {
    let whole = parse_all(input);
    for split in 0..=input.len() {
        let mut parser = Parser::new(LIMIT);
        let mut events = parser.feed(&input[..split]).events;
        events.extend(parser.feed(&input[split..]).events);
        assert_eq!(events, whole, "split at byte {split} of {input:?}");
    }
    for_each_byte_alone(input, &whole);
    whole
}

fn for_each_byte_alone(input: &[u8], whole: &[Event]) {
    let mut parser = Parser::new(LIMIT);
    let events: Vec<_> = input
        .iter()
        .flat_map(|b| parser.feed(std::slice::from_ref(b)).events)
        .collect();
    assert_eq!(events, whole, "byte-at-a-time of {input:?}");
}

#[test]
fn all_three_line_ends_at_every_split() {
    let input = b"\xEF\xBB\xBFid: 1\nevent: a\ndata: x\r\ndata: y\r\rdata:z\n\n:comment\r\ndata: last\r\n\r\n";
    let events = parse_split_everywhere(input);
    assert_eq!(
        events,
        vec![
            Event {
                id: Some("1".into()),
                event: Some("a".into()),
                data: "x\ny".into()
            },
            Event::message("z"),
            Event::message("last"),
        ]
    );
}

#[test]
fn a_partial_event_is_never_dispatched() {
    let mut parser = Parser::new(LIMIT);
    assert!(parser.feed(b"data: half\ndata: more").events.is_empty());
    assert!(parser.feed(b"\n").events.is_empty());
    assert_eq!(
        parser.feed(b"\n").events,
        vec![Event::message("half\nmore")]
    );
}

#[test]
fn events_without_data_are_not_dispatched() {
    assert!(parse_split_everywhere(b"event: x\nid: 3\n\n: hi\n\n").is_empty());
}

#[test]
fn field_without_colon_and_unknown_fields() {
    let events = parse_split_everywhere(b"data\nretry: 10\nfoo: bar\n\n");
    assert_eq!(events, vec![Event::message("")]);
}

#[test]
fn ids_with_nul_are_kept_for_the_stream_to_refuse() {
    let events = parse_split_everywhere(b"id: a\0b\ndata: x\n\n");
    let expected = Event {
        id: Some("a\0b".into()),
        ..Event::message("x")
    };
    assert_eq!(events, vec![expected]);
}

#[test]
fn oversize_events_are_skipped_and_counted() {
    let mut parser = Parser::new(16);
    let outcome = parser.feed(b"data: 0123456789abcdef\ndata: more\n\ndata: ok\n\n");
    assert_eq!(outcome.oversize, 1);
    assert_eq!(outcome.events, vec![Event::message("ok")]);
}

#[test]
fn overflowing_on_the_last_byte_of_a_line_still_drops_the_whole_event() {
    // "data: 12345" is 11 bytes: the limit of 11 is passed exactly by its last byte.
    for input in [
        &b"data: 12345\ndata: tail\n\ndata: ok\n\n"[..],
        b"data: 12345\r\ndata: tail\r\n\r\ndata: ok\r\n\r\n",
    ] {
        for split in 0..=input.len() {
            let mut parser = Parser::new(10);
            let mut outcome = parser.feed(&input[..split]);
            let rest = parser.feed(&input[split..]);
            outcome.events.extend(rest.events);
            outcome.oversize += rest.oversize;
            assert_eq!(
                outcome.events,
                vec![Event::message("ok")],
                "split at {split}"
            );
            assert_eq!(outcome.oversize, 1);
        }
    }
}

#[test]
fn bom_split_across_chunks() {
    let mut parser = Parser::new(LIMIT);
    assert!(parser.feed(b"\xEF").events.is_empty());
    assert!(parser.feed(b"\xBB").events.is_empty());
    assert_eq!(
        parser.feed(b"\xBFdata: a\n\n").events,
        vec![Event::message("a")]
    );
}

#[test]
fn not_a_bom_prefix() {
    let mut parser = Parser::new(LIMIT);
    assert!(parser.feed(b"da").events.is_empty());
    assert_eq!(parser.feed(b"ta: a\n\n").events, vec![Event::message("a")]);
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(
        data in "(?s)[a-z\r\n\0é😀 :]{0,40}",
        name in proptest::option::of("[a-z:é ]{1,8}"),
        id in "[a-z0-9 é:]{1,8}",
    ) {
        let event = Event { id: None, event: name.clone(), data: data.clone() };
        let mut wire = BytesMut::new();
        event.encode_into(&id, &mut wire).expect("safe fields");
        let parsed = parse_split_everywhere(&wire);
        let expected_data = super::super::event::split_lines(&data).collect::<Vec<_>>().join("\n");
        prop_assert_eq!(parsed, vec![Event { id: Some(id), event: name, data: expected_data }]);
    }
}

/// Each event as `feed_each` hands it over, and the bytes a stream would write for it
/// with `id` 9 when it has none.
fn handed_over(input: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut handed = Vec::new();
    Parser::new(LIMIT).feed_each(input, &mut |event| {
        let mut wire = BytesMut::new();
        let id = event.id().unwrap_or("9").to_string();
        let as_sent = matches!(event, Parsed::AsSent(_));
        match event {
            Parsed::AsSent(event) => {
                event.encode_into(&id, &mut wire);
                if let Some(received) = event.as_received() {
                    assert_eq!(received, &wire[..], "as received is as encoded");
                }
            }
            Parsed::Decoded(event) => event.encode_into(&id, &mut wire).expect("safe"),
        }
        handed.push((as_sent, wire.to_vec()));
    });
    handed
}

#[test]
fn events_in_the_encoders_form_are_handed_over_as_sent() {
    let input = b"id: 1\ndata: a\n\nevent: e\ndata: b\ndata:\n\ndata: c\r\n\r\n: hi\ndata: d\n\n";
    let handed = handed_over(input);
    let forms: Vec<bool> = handed.iter().map(|(as_sent, _)| *as_sent).collect();
    assert_eq!(forms, [true, true, false, false]);
    let wire: Vec<&[u8]> = handed.iter().map(|(_, wire)| &wire[..]).collect();
    let expected: [&[u8]; 4] = [
        b"id: 1\ndata: a\n\n",
        b"event: e\nid: 9\ndata: b\ndata:\n\n",
        b"id: 9\ndata: c\n\n",
        b"id: 9\ndata: d\n\n",
    ];
    assert_eq!(wire, expected);
}

#[test]
fn a_whole_event_with_its_own_id_is_handed_over_as_received() {
    let mut parser = Parser::new(LIMIT);
    let mut received = Vec::new();
    let mut record = |event: Parsed<'_>| {
        if let Parsed::AsSent(event) = event {
            received.push(event.as_received().map(<[u8]>::to_vec));
        }
    };
    parser.feed_each(
        b"id: 1\ndata: a\n\ndata: no id\n\nid: 2\ndata: cut",
        &mut record,
    );
    parser.feed_each(b"\n\n", &mut record);
    let want = [Some(b"id: 1\ndata: a\n\n".to_vec()), None, None];
    assert_eq!(received, want, "the last one was cut by the chunk's end");
}

proptest! {
    /// Whichever way an event is handed over, a client receives the same bytes as from the
    /// decoded event, encoded; and events found whole in a chunk are the ones found line
    /// by line.
    #[test]
    fn as_sent_or_decoded_the_wire_is_the_same(
        lines in proptest::collection::vec(
            "(data: [a-z ]{0,4}|data:|data:x|id: [a-z]{0,2}|event: [a-z]{0,2}|: c|retry: 1|)\n?\r?",
            0..12,
        ),
    ) {
        let input = lines.concat();
        let decoded = parse_all(input.as_bytes());
        // Whole events are taken straight from the chunk; byte by byte, none is whole.
        for_each_byte_alone(input.as_bytes(), &decoded);
        let handed = handed_over(input.as_bytes());
        prop_assert_eq!(decoded.len(), handed.len());
        for (event, (_, wire)) in decoded.iter().zip(&handed) {
            let mut encoded = BytesMut::new();
            let id = event.id.clone().unwrap_or_else(|| "9".into());
            event.encode_into(&id, &mut encoded).expect("safe");
            prop_assert_eq!(&encoded[..], &wire[..]);
        }
    }
}
