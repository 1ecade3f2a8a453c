//! Upstream events already in the proxy's own wire form, passed on as they were received.
//!
//! Most upstreams write events the way [`Event::encode_into`] does: an optional `event:`
//! line, an optional `id:` line, then `data:` lines, each ending in LF. Such an event's bytes
//! are exactly what the encoder would write for it (with an id line put in when it has
//! none), so the parser hands them over as they came instead of decoding them into an
//! [`Event`] to be encoded again — the larger part of a passthrough stream's CPU per event.
//! Anything else (comments, other fields, CR line ends, fields out of that order, invalid
//! UTF-8) is decoded as before, so what a client receives is the same either way.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::event::Event;

/// How far the lines of the event being read follow the encoder's form.
#[derive(Debug, Clone, Default)]
pub(super) struct Shape {
    stage: Stage,
    /// End of the `event:` line (with its LF) in the event's bytes; 0 without one.
    event_end: usize,
    id: Option<Range<usize>>,
    data_len: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Stage {
    #[default]
    Start,
    AfterEvent,
    AfterId,
    Data,
    /// Not the encoder's form: the event is decoded.
    Other,
}

impl Shape {
    /// Takes in the next line of the event (`line`, without its end), which starts at byte
    /// `at` of the event's bytes.
    pub(super) fn line(&mut self, line: &[u8], at: usize) {
        let value = |name: &[u8]| {
            line.strip_prefix(name)
                .filter(|v| !v.is_empty() && memchr::memchr(0, v).is_none())
        };
        self.stage = match self.stage {
            Stage::Other => Stage::Other,
            _ if line.starts_with(b"data:") => self.data_line(&line[5..]),
            Stage::Start if value(b"event: ").is_some() => {
                self.event_end = at + line.len() + 1;
                Stage::AfterEvent
            }
            Stage::Start | Stage::AfterEvent if value(b"id: ").is_some() => {
                self.id = Some(at + 4..at + line.len());
                Stage::AfterId
            }
            _ => Stage::Other,
        };
    }

    /// Marks the event as not in the encoder's form whatever follows (a line ended by CR).
    pub(super) fn decode_only(&mut self) {
        self.stage = Stage::Other;
    }

    /// A `data:` line whose value (after the colon) is `rest`: the encoder writes `data:`
    /// for an empty line and `data: ` before any other.
    fn data_line(&mut self, rest: &[u8]) -> Stage {
        let len = match rest {
            [] => 0,
            [b' ', value @ ..] if !value.is_empty() => value.len(),
            _ => return Stage::Other,
        };
        if self.stage == Stage::Data {
            self.data_len += 1;
        }
        self.data_len += len;
        Stage::Data
    }

    /// The event, if its lines (`lines`, each with its LF) are in the encoder's form and
    /// carry data; `whole` is the same lines with the blank line's LF, when the input holds
    /// them together.
    pub(super) fn as_sent<'a>(
        &self,
        lines: &'a [u8],
        whole: Option<&'a [u8]>,
    ) -> Option<AsSent<'a>> {
        if self.stage != Stage::Data {
            return None;
        }
        let lines = utf8(lines)?;
        Some(AsSent {
            lines,
            whole,
            event_end: self.event_end,
            id: self.id.clone(),
            data_len: self.data_len,
        })
    }
}

/// `bytes` as text if they are valid UTF-8. Most events are ASCII, which a check 16 bytes
/// at a time confirms in a fraction of the full validation's instructions (that one, and
/// `<[u8]>::is_ascii` here, go byte by byte over an event's unaligned ends).
fn utf8(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Whether every byte is below 0x80: the 16-byte words ORed together (the last one read
/// from the end, overlapping) and their top bits tested once.
fn is_ascii(bytes: &[u8]) -> bool {
    const TOP_BITS: u128 = u128::from_ne_bytes([0x80; 16]);
    let Some(last) = bytes.last_chunk::<16>() else {
        return bytes.iter().all(u8::is_ascii);
    };
    let (words, _) = bytes.as_chunks::<16>();
    let ored = words.iter().fold(u128::from_ne_bytes(*last), |acc, word| {
        acc | u128::from_ne_bytes(*word)
    });
    ored & TOP_BITS == 0
}

/// An upstream event in the encoder's form: its lines as received (each ending in LF),
/// without the blank line that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSent<'a> {
    lines: &'a str,
    /// `lines` and the blank line's LF, when they lay together in the parser's input.
    whole: Option<&'a [u8]>,
    event_end: usize,
    id: Option<Range<usize>>,
    data_len: usize,
}

impl AsSent<'_> {
    /// The event's own id, if it has one.
    pub fn id(&self) -> Option<&str> {
        self.id.clone().map(|id| &self.lines[id])
    }

    /// The length of its data, as [`Event::data`] would hold it.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// The wire form as it lies in the parser's input — the lines and the blank line, the
    /// event's own id among them — when it does (the common case: a whole event in one
    /// read); it can then be written from there, without being encoded anywhere.
    pub fn as_received(&self) -> Option<&[u8]> {
        self.whole.filter(|_| self.id.is_some())
    }

    /// The exact length of what [`AsSent::encode_into`] writes with `id`.
    pub fn wire_len(&self, id: &str) -> usize {
        let id_line = if self.id.is_some() { 0 } else { id.len() + 5 };
        self.lines.len() + id_line + 1
    }

    /// Appends the wire form: the lines as received, with `id` as the id line after the
    /// `event:` line when the event has none (its own is kept), and the blank line.
    pub fn encode_into(&self, id: &str, out: &mut BytesMut) {
        out.reserve(self.wire_len(id));
        if self.id.is_some() {
            out.put_slice(self.lines.as_bytes());
        } else {
            let (event, data) = self.lines.as_bytes().split_at(self.event_end);
            out.put_slice(event);
            out.put_slice(b"id: ");
            out.put_slice(id.as_bytes());
            out.put_u8(b'\n');
            out.put_slice(data);
        }
        out.put_u8(b'\n');
    }

    /// The event decoded, for whoever needs its fields (a cluster's shared log).
    pub fn to_event(&self) -> Event {
        let mut event = Event {
            id: self.id().map(str::to_string),
            ..Event::default()
        };
        let mut data = Vec::new();
        for line in self.lines.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                event.event = Some(name.to_string());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        event.data = data.join("\n");
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(lines: &str) -> Option<AsSent<'_>> {
        let mut shape = Shape::default();
        let mut at = 0;
        for line in lines.split_inclusive('\n') {
            shape.line(line.trim_end_matches('\n').as_bytes(), at);
            at += line.len();
        }
        shape.as_sent(lines.as_bytes(), None)
    }

    #[test]
    fn the_encoders_form_is_passed_on_and_anything_else_is_not() {
        for lines in [
            "data: x\n",
            "id: 7\ndata: x\ndata:\ndata:  two spaces\n",
            "event: tick\nid: a b\ndata: {}\n",
            "event: tick\ndata: é\n",
        ] {
            assert!(shape_of(lines).is_some(), "{lines:?}");
        }
        for lines in [
            "data:x\n",
            "data: \n",
            "id: 1\n",
            "data: x\nid: 1\n",
            "id: 1\nevent: a\ndata: x\n",
            ": comment\ndata: x\n",
            "retry: 5\ndata: x\n",
            "id:\ndata: x\n",
            "id: a\0b\ndata: x\n",
            "event: \ndata: x\n",
            "data: x\nevent: a\n",
        ] {
            assert!(shape_of(lines).is_none(), "{lines:?}");
        }
    }

    #[test]
    fn text_is_taken_exactly_when_it_is_valid_utf8() {
        let ascii: Vec<u8> = (0..100u8).map(|i| b' ' + i % 90).collect();
        for len in 0..ascii.len() {
            assert_eq!(utf8(&ascii[..len]), std::str::from_utf8(&ascii[..len]).ok());
            for (at, byte) in [(0, 0xC3), (len / 2, 0xA9), (len.saturating_sub(1), 0xFF)] {
                let mut bytes = ascii[..len].to_vec();
                if let Some(b) = bytes.get_mut(at) {
                    *b = byte;
                }
                assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok(), "{len} {at}");
            }
        }
        let text = "é, ü and 水, past the first sixteen bytes";
        assert_eq!(utf8(text.as_bytes()), Some(text));
    }

    #[test]
    fn wire_form_is_what_the_encoder_writes_for_the_decoded_event() {
        for lines in [
            "data: x\n",
            "id: 7\ndata: x\ndata:\ndata:  two\n",
            "event: tick\nid: a\ndata: {}\n",
            "event: tick\ndata: é\ndata: 2\n",
        ] {
            let as_sent = shape_of(lines).expect("encoder's form");
            let event = as_sent.to_event();
            assert_eq!(as_sent.data_len(), event.data.len(), "{lines:?}");
            assert_eq!(as_sent.id(), event.id.as_deref());
            let id = event.id.clone().unwrap_or_else(|| "42".into());
            let (mut ours, mut encoded) = (BytesMut::new(), BytesMut::new());
            as_sent.encode_into(&id, &mut ours);
            event.encode_into(&id, &mut encoded).expect("safe fields");
            assert_eq!(ours, encoded, "{lines:?}");
            assert_eq!(as_sent.wire_len(&id), ours.len());
        }
    }
}
