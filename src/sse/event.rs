//! One Server-Sent Event and its safe wire encoding.
//!
//! Whatever text a source hands us (an upstream SSE field, a JSON document, a WebSocket
//! message), the encoder guarantees it lands in `data:` lines only: the text is split on LF,
//! CRLF and bare CR, so no content can open a new field or end the event early. `event:` and
//! `id:` values cannot be split that way, so values holding CR, LF or NUL are refused.

use bytes::{BufMut, BytesMut};

/// A complete event as a source publishes it; the stream assigns the id when it is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field; `None` lets the stream assign the next proxy id.
    pub id: Option<String>,
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The payload; may span several lines.
    pub data: String,
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// A single-line field held CR, LF or NUL, which would let upstream text forge fields.
    #[error("the {0} field contains CR, LF or NUL")]
    UnsafeField(&'static str),
}

impl Event {
    /// An event of the default type carrying `data`.
    pub fn message(data: impl Into<String>) -> Self {
        Event {
            data: data.into(),
            ..Event::default()
        }
    }

    /// An event of type `name` carrying `data`.
    pub fn named(name: impl Into<String>, data: impl Into<String>) -> Self {
        Event {
            event: Some(name.into()),
            data: data.into(),
            ..Event::default()
        }
    }

    /// Appends the wire form (`event:`, `id:`, `data:` lines, blank line) to `out`, with `id`
    /// as the id field. Nothing is written when the event is refused.
    pub fn encode_into(&self, id: &str, out: &mut BytesMut) -> Result<(), EncodeError> {
        check_single_line("id", id)?;
        if let Some(name) = &self.event {
            check_single_line("event", name)?;
        }
        out.reserve(self.wire_len(id));
        if let Some(name) = &self.event {
            put_field(out, "event", name);
        }
        put_field(out, "id", id);
        for line in split_lines(&self.data) {
            put_field(out, "data", line);
        }
        out.put_u8(b'\n');
        Ok(())
    }
}

impl Event {
    /// The exact length of the wire form [`Event::encode_into`] writes with `id`.
    pub fn wire_len(&self, id: &str) -> usize {
        let field =
            |name: &str, value: &str| name.len() + value.len() + 2 + !value.is_empty() as usize;
        let name = self.event.as_deref().map_or(0, |name| field("event", name));
        let data: usize = split_lines(&self.data)
            .map(|line| field("data", line))
            .sum();
        name + field("id", id) + data + 1
    }
}

/// Splits text on LF, CRLF and bare CR — the three line ends an SSE parser honours.
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr2(b'\r', b'\n', current.as_bytes()) {
            None => {
                rest = None;
                Some(current)
            }
            Some(end) => {
                let skip = if current[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[end + skip..]);
                Some(&current[..end])
            }
        }
    })
}

fn check_single_line(field: &'static str, value: &str) -> Result<(), EncodeError> {
    if memchr::memchr3(b'\r', b'\n', b'\0', value.as_bytes()).is_some() {
        return Err(EncodeError::UnsafeField(field));
    }
    Ok(())
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    if value.is_empty() {
        out.put_u8(b':');
    } else {
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(event: &Event, id: &str) -> String {
        let mut out = BytesMut::new();
        event.encode_into(id, &mut out).expect("encodable");
        String::from_utf8(out.to_vec()).expect("utf-8")
    }

    #[test]
    fn every_line_end_becomes_its_own_data_line() {
        let event = Event::message("line1\nline2\r\nline3\rline4");
        assert_eq!(
            encode(&event, "7"),
            "id: 7\ndata: line1\ndata: line2\ndata: line3\ndata: line4\n\n"
        );
    }

    #[test]
    fn injected_fields_stay_inside_data() {
        let event = Event::message("x\n\nevent: admin\ndata: pwn");
        assert_eq!(
            encode(&event, "1"),
            "id: 1\ndata: x\ndata:\ndata: event: admin\ndata: data: pwn\n\n"
        );
    }

    #[test]
    fn named_event_and_empty_data() {
        assert_eq!(
            encode(&Event::named("tick", ""), "a"),
            "event: tick\nid: a\ndata:\n\n"
        );
    }

    #[test]
    fn unsafe_single_line_fields_are_refused() {
        let mut out = BytesMut::new();
        let event = Event::named("a\nb", "x");
        assert_eq!(
            event.encode_into("1", &mut out),
            Err(EncodeError::UnsafeField("event"))
        );
        assert_eq!(
            Event::message("x").encode_into("1\0", &mut out),
            Err(EncodeError::UnsafeField("id"))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn wire_len_is_the_encoded_length() {
        let events = [
            Event::message("line1\nline2\r\nline3\rline4"),
            Event::named("tick", ""),
            Event::named("", "x\n\n"),
            Event::message("é😀"),
        ];
        for event in events {
            for id in ["7", "", "long-id-é"] {
                assert_eq!(
                    event.wire_len(id),
                    encode(&event, id).len(),
                    "{event:?} {id:?}"
                );
            }
        }
    }

    #[test]
    fn split_lines_matches_the_sse_rules() {
        let lines: Vec<_> = split_lines("a\r\n\rb\n").collect();
        assert_eq!(lines, ["a", "", "b", ""]);
    }
}
