//! Incremental parser for an upstream `text/event-stream`, following the WHATWG rules.
//!
//! Bytes arrive in arbitrary chunks; the parser keeps the lines of the event being read, and
//! yields the event only when its terminating blank line has arrived — so a partial event is
//! never dispatched. An event already in the encoder's form is handed over as its bytes
//! ([`Parsed::AsSent`], see [`super::as_sent`]); any other is decoded into its fields. Lines end in LF, CRLF or a bare CR (a CR at the end of one chunk
//! and an LF at the start of the next are one line end). An event that grows past the size
//! limit is skipped up to its blank line and reported, without buffering the rest of it.
//!
//! One deliberate departure from WHATWG: an `id:` value containing NUL is kept rather than
//! ignored, so that the stream refuses the whole event and counts it (`unsafe_field`, SPEC
//! §3) instead of passing it on silently under a proxy id.

use super::as_sent::{AsSent, Shape};
use super::event::Event;

/// The largest event buffer kept between events; a longer event's buffer is let go.
const KEPT_CAPACITY: usize = 1024;

/// What one call to [`Parser::feed`] found, besides complete events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParseOutcome {
    /// Complete events, in stream order.
    pub events: Vec<Event>,
    /// Events dropped because they passed the size limit.
    pub oversize: usize,
}

/// A complete event as the parser hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Received in the encoder's form: its bytes can be passed on as they are.
    AsSent(AsSent<'a>),
    /// Decoded into its fields.
    Decoded(Event),
}

impl Parsed<'_> {
    /// The event's own id, if it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Parsed::AsSent(event) => event.id(),
            Parsed::Decoded(event) => event.id.as_deref(),
        }
    }

    /// The event with its fields.
    pub fn into_event(self) -> Event {
        match self {
            Parsed::AsSent(event) => event.to_event(),
            Parsed::Decoded(event) => event,
        }
    }
}

/// Where one call hands its events, and its count of oversize ones.
struct Sink<'a> {
    on_event: &'a mut dyn FnMut(Parsed<'_>),
    oversize: usize,
}

/// The incremental `text/event-stream` parser; one per upstream connection.
#[derive(Debug)]
pub struct Parser {
    max_event_bytes: usize,
    /// The event being read: its complete lines, each ended by one LF whatever its end was,
    /// then the line being read. Decoded only at the blank line, and only when it is not in
    /// the encoder's form already.
    event: Vec<u8>,
    /// Where the line being read starts in `event`.
    line_start: usize,
    shape: Shape,
    after_cr: bool,
    /// `Some(n)` while the stream start may still be a byte order mark, `n` bytes in.
    bom_matched: Option<usize>,
    /// `Some(bytes skipped on the current line)` while dropping an oversize event.
    skipping: Option<usize>,
}

#[derive(Debug, Default)]
struct Pending {
    id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl Parser {
    /// A parser that drops any event larger than `max_event_bytes` (field bytes, as received).
    pub fn new(max_event_bytes: usize) -> Self {
        Parser {
            max_event_bytes,
            event: Vec::new(),
            line_start: 0,
            shape: Shape::default(),
            after_cr: false,
            bom_matched: Some(0),
            skipping: None,
        }
    }

    /// Consumes the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> ParseOutcome {
        let mut events = Vec::new();
        let oversize = self.feed_each(chunk, &mut |event| events.push(event.into_event()));
        ParseOutcome { events, oversize }
    }

    /// Consumes the next chunk of the stream, handing each complete event to `on_event` as
    /// it ends (nothing is collected); returns the number of events dropped as oversize.
    pub fn feed_each(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Parsed<'_>)) -> usize {
        let mut outcome = Sink {
            on_event,
            oversize: 0,
        };
        let mut rest = chunk;
        while self.bom_matched.is_some() {
            let Some((&byte, tail)) = rest.split_first() else {
                return outcome.oversize;
            };
            if !self.skip_bom_byte(byte, &mut outcome) {
                break;
            }
            rest = tail;
        }
        while !rest.is_empty() {
            if std::mem::take(&mut self.after_cr) && rest[0] == b'\n' {
                rest = &rest[1..];
                continue;
            }
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.push_bytes(rest, &mut outcome);
                break;
            };
            self.push_bytes(&rest[..end], &mut outcome);
            self.after_cr = rest[end] == b'\r';
            self.end_line(&mut outcome);
            rest = &rest[end + 1..];
        }
        outcome.oversize
    }

    /// Matches the optional UTF-8 byte order mark at the stream start, even when it is split
    /// across chunks. Returns whether `byte` was consumed as part of it.
    fn skip_bom_byte(&mut self, byte: u8, outcome: &mut Sink<'_>) -> bool {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let matched = self.bom_matched.unwrap_or(0);
        if BOM[matched] == byte {
            self.bom_matched = (matched + 1 < BOM.len()).then_some(matched + 1);
            return true;
        }
        self.bom_matched = None;
        self.push_bytes(&BOM[..matched], outcome);
        false
    }

    /// Adds line content; past the size limit the event is dropped up to its blank line.
    fn push_bytes(&mut self, bytes: &[u8], outcome: &mut Sink<'_>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(skipped) = &mut self.skipping {
            *skipped += bytes.len();
            return;
        }
        if self.event.len() + bytes.len() > self.max_event_bytes {
            outcome.oversize += 1;
            // The overflowing bytes count as skipped content of this line, so its line end
            // is never mistaken for the blank line that ends the event.
            self.skipping = Some(bytes.len());
            self.event = Vec::new();
            self.line_start = 0;
            self.shape = Shape::default();
            return;
        }
        self.event.extend_from_slice(bytes);
    }

    fn end_line(&mut self, outcome: &mut Sink<'_>) {
        if let Some(skipped) = self.skipping {
            // Only a blank line ends the event being dropped.
            self.skipping = (skipped > 0).then_some(0);
            return;
        }
        if self.event.len() == self.line_start {
            self.dispatch(outcome);
            return;
        }
        self.shape
            .line(&self.event[self.line_start..], self.line_start);
        if self.after_cr {
            self.shape.decode_only();
        }
        self.event.push(b'\n');
        self.line_start = self.event.len();
    }

    fn dispatch(&mut self, outcome: &mut Sink<'_>) {
        let shape = std::mem::take(&mut self.shape);
        if let Some(as_sent) = shape.as_sent(&self.event) {
            (outcome.on_event)(Parsed::AsSent(as_sent));
        } else if let Some(event) = decode(&self.event) {
            (outcome.on_event)(Parsed::Decoded(event));
        }
        // Kept for the next event (no allocation per event), unless a long one grew it.
        if self.event.capacity() > KEPT_CAPACITY {
            self.event = Vec::new();
        } else {
            self.event.clear();
        }
        self.line_start = 0;
    }
}

/// Decodes an event from its lines (each ended by LF); `None` when it carries no data.
fn decode(lines: &[u8]) -> Option<Event> {
    let mut pending = Pending::default();
    let mut lines = lines.split(|&b| b == b'\n');
    // The piece after the last LF is empty.
    lines.next_back();
    lines.for_each(|line| apply_field(&mut pending, line));
    pending.has_data.then(|| Event {
        id: pending.id.filter(|id| !id.is_empty()),
        event: pending.event.filter(|name| !name.is_empty()),
        data: pending.data,
    })
}

/// Applies one field line to the event being built.
fn apply_field(pending: &mut Pending, line: &[u8]) {
    if line.first() == Some(&b':') {
        return; // a comment
    }
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
    };
    let value = text(value);
    match name {
        b"data" => {
            if pending.has_data {
                pending.data.push('\n');
            }
            pending.data.push_str(&value);
            pending.has_data = true;
        }
        b"event" => pending.event = Some(value.into_owned()),
        b"id" => pending.id = Some(value.into_owned()),
        _ => {} // `retry` belongs to the proxy's own clients; unknown fields are ignored
    }
}

/// A field value as text: borrowed when it is valid UTF-8 (the common case, checked word by
/// word), else with U+FFFD for each invalid sequence.
fn text(value: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}

#[cfg(test)]
mod tests {
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
}
