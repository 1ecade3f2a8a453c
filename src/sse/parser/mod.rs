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
        rest = self.take_whole_events(rest, &mut outcome);
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

    /// Hands over the events that lie whole at the front of `rest` straight from it, with
    /// nothing copied, while the parser is between events (the common case: one read, one
    /// event). Returns what is left for the line-by-line path, from an event's start: one
    /// cut by the chunk's end, one with a CR line end, one past the size limit.
    fn take_whole_events<'a>(&mut self, mut rest: &'a [u8], outcome: &mut Sink<'_>) -> &'a [u8] {
        let between_events = self.event.is_empty() && self.skipping.is_none() && !self.after_cr;
        if !between_events {
            return rest;
        }
        while let Some((len, shape)) = whole_event(rest, self.max_event_bytes) {
            hand_over(&shape, (&rest[..len], Some(&rest[..=len])), outcome);
            rest = &rest[len + 1..];
        }
        rest
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
        hand_over(&shape, (&self.event, None), outcome);
        // Kept for the next event (no allocation per event), unless a long one grew it.
        if self.event.capacity() > KEPT_CAPACITY {
            self.event = Vec::new();
        } else {
            self.event.clear();
        }
        self.line_start = 0;
    }
}

/// The event at the front of `input`, if it is whole there, ended by LFs only and within
/// `max` bytes (as the line-by-line path counts them): the length of its lines, each with
/// its LF (the blank line after them is one byte more), and their shape.
fn whole_event(input: &[u8], max: usize) -> Option<(usize, Shape)> {
    if input.is_empty() {
        return None;
    }
    let mut shape = Shape::default();
    let mut at = 0;
    loop {
        let end = at + memchr::memchr2(b'\n', b'\r', &input[at..])?;
        if input[end] == b'\r' || end > max {
            return None;
        }
        if end == at {
            return Some((at, shape));
        }
        shape.line(&input[at..end], at);
        at = end + 1;
    }
}

/// Hands a complete event over, as sent when its lines allow, else decoded (an event with
/// no data is not handed over). `whole` is its lines with the blank line's LF, when the
/// input holds them together.
fn hand_over(shape: &Shape, (lines, whole): (&[u8], Option<&[u8]>), outcome: &mut Sink<'_>) {
    if let Some(as_sent) = shape.as_sent(lines, whole) {
        (outcome.on_event)(Parsed::AsSent(as_sent));
    } else if let Some(event) = decode(lines) {
        (outcome.on_event)(Parsed::Decoded(event));
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
mod tests;
