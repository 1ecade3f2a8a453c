//! The id of the last event an upstream sent, kept for the `Last-Event-ID` of the next
//! connection: set once per event, read once per reconnect.

/// Ids up to this many bytes are kept in place (a number, a UUID, most ids).
const INLINE: usize = 46;

/// The last event id. A short one is kept in place, in the source's own state: setting it
/// per event then touches no heap buffer of its own, which on a stream that has been idle a
/// while is a cache miss per event.
#[derive(Debug, Default)]
pub(super) enum LastEventId {
    #[default]
    Unset,
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Long(String),
}

impl LastEventId {
    /// Keeps `id` as the last event id.
    pub(super) fn set(&mut self, id: &str) {
        if id.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            *self = LastEventId::Inline {
                len: id.len() as u8,
                bytes,
            };
            return;
        }
        match self {
            // Kept in place: no allocation per event once the id's length is reached.
            LastEventId::Long(long) => {
                long.clear();
                long.push_str(id);
            }
            _ => *self = LastEventId::Long(id.to_string()),
        }
    }

    /// The last event id, if one was set.
    pub(super) fn get(&self) -> Option<&str> {
        match self {
            LastEventId::Unset => None,
            // Always valid: copied whole from a `&str`.
            LastEventId::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).ok(),
            LastEventId::Long(long) => Some(long),
        }
    }
}

impl From<Option<String>> for LastEventId {
    fn from(id: Option<String>) -> Self {
        let mut last = LastEventId::default();
        if let Some(id) = id {
            last.set(&id);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_ids_read_back_as_set() {
        let mut last = LastEventId::from(None);
        assert_eq!(last.get(), None);
        let long = "é".repeat(40);
        for id in [
            "",
            "42",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            &long,
            "7",
            &long,
        ] {
            last.set(id);
            assert_eq!(last.get(), Some(id));
        }
        assert_eq!(LastEventId::from(Some("9".into())).get(), Some("9"));
    }
}
