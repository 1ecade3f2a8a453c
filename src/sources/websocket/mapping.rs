//! How one WebSocket message becomes one [`Event`]: JSON pointers for name, id and payload,
//! the binary policy, and the window of recent ids that keeps a reconnect from repeating.

use std::collections::{HashSet, VecDeque};

use base64::Engine as _;
use serde_json::Value;

use crate::config::{BinaryPolicy, MessageMapping};
use crate::sse::Event;

/// The JSON pointers and binary policy of a route, applied to each message.
#[derive(Debug, Clone)]
pub struct Mapping {
    fields: MessageMapping,
}

impl Mapping {
    /// The mapping configured for a `websocket:` route.
    pub fn new(fields: &MessageMapping) -> Self {
        Mapping {
            fields: fields.clone(),
        }
    }

    /// One text message as an event. JSON messages go through the pointers; anything else
    /// (or a pointer that finds nothing usable) falls back to the default event type, a
    /// proxy-assigned id and the whole text as data.
    pub fn text(&self, text: &str) -> Event {
        let MessageMapping {
            event_from,
            id_from,
            data_from,
            ..
        } = &self.fields;
        let wants_json = event_from.is_some() || id_from.is_some() || data_from.is_some();
        let json = if wants_json {
            serde_json::from_str::<Value>(text).ok()
        } else {
            None
        };
        let Some(json) = json else {
            return Event::message(text);
        };
        let data = match data_from.as_deref().and_then(|p| json.pointer(p)) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => text.to_string(),
        };
        Event {
            id: scalar(&json, id_from.as_deref()),
            event: scalar(&json, event_from.as_deref()),
            data,
        }
    }

    /// One binary message as an event (base64 text), or `None` when the policy drops it.
    /// Raw bytes never reach a client.
    pub fn binary(&self, bytes: &[u8]) -> Option<Event> {
        match self.fields.binary {
            BinaryPolicy::Base64 => Some(Event::message(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )),
            BinaryPolicy::Drop => None,
        }
    }
}

/// A string or number at `pointer`, as text; anything else means "use the default".
fn scalar(json: &Value, pointer: Option<&str>) -> Option<String> {
    match json.pointer(pointer?)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The last few ids published, so messages replayed by the upstream after a reconnect are
/// not published twice. Bounded: the oldest id is forgotten first.
#[derive(Debug)]
pub struct RecentIds {
    order: VecDeque<String>,
    seen: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    /// Remembers up to `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; returns `false` when it was already among the recent ids.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(id.to_string());
        self.seen.insert(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(event_from: &str, id_from: &str, data_from: &str, binary: BinaryPolicy) -> Mapping {
        let pointer = |p: &str| (!p.is_empty()).then(|| p.to_string());
        Mapping::new(&MessageMapping {
            event_from: pointer(event_from),
            id_from: pointer(id_from),
            data_from: pointer(data_from),
            binary,
        })
    }

    #[test]
    fn pointers_pick_event_id_and_data() {
        let m = mapping("/type", "/seq", "/body", BinaryPolicy::Base64);
        let event = m.text(r#"{"type":"trade","seq":42,"body":{"p":1}}"#);
        assert_eq!(event.event.as_deref(), Some("trade"));
        assert_eq!(event.id.as_deref(), Some("42"));
        assert_eq!(event.data, r#"{"p":1}"#);
        let event = m.text(r#"{"type":"t","seq":"a-1","body":"raw text"}"#);
        assert_eq!(event.id.as_deref(), Some("a-1"));
        assert_eq!(event.data, "raw text");
    }

    #[test]
    fn unusable_values_and_non_json_fall_back_to_defaults() {
        let m = mapping("/type", "/seq", "", BinaryPolicy::Base64);
        let event = m.text(r#"{"type":{"nested":1},"seq":null}"#);
        assert_eq!(event.event, None);
        assert_eq!(event.id, None);
        assert_eq!(event.data, r#"{"type":{"nested":1},"seq":null}"#);
        assert_eq!(m.text("not json"), Event::message("not json"));
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(m.text(&deep), Event::message(deep.clone()));
    }

    #[test]
    fn without_pointers_the_whole_text_is_the_data() {
        let m = mapping("", "", "", BinaryPolicy::Base64);
        assert_eq!(m.text(r#"{"a":1}"#), Event::message(r#"{"a":1}"#));
    }

    #[test]
    fn binary_is_base64_or_dropped() {
        let m = mapping("", "", "", BinaryPolicy::Base64);
        assert_eq!(m.binary(&[0, 255, 10]), Some(Event::message("AP8K")));
        let m = mapping("", "", "", BinaryPolicy::Drop);
        assert_eq!(m.binary(&[1, 2]), None);
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut recent = RecentIds::new(2);
        assert!(recent.insert("1"));
        assert!(!recent.insert("1"));
        assert!(recent.insert("2"));
        assert!(recent.insert("3"));
        assert!(recent.insert("1"), "the oldest id was forgotten");
        assert!(!recent.insert("3"));
    }
}
