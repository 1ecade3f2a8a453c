//! One record of a stream's log in Redis: entry id `NUMBER-0` (the cluster-wide number of
//! the record). An event has fields `i` (the SSE id it was sent with), `e` (event name, when
//! not `message`), `d` (data), and on poll routes `j`/`s` (the snapshot's join event and
//! the full document the event leads to). The mark that the holder's upstream ended the
//! stream for good has the one field `end`.

use std::collections::HashMap;

use redis::Value;

use crate::sse::Event;
use crate::stream::Snapshot;

/// An event of a stream's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its cluster-wide number: increasing per stream, below 2^53.
    pub number: u64,
    /// The event, with the id it was sent with.
    pub event: Event,
    /// The document it leads to (poll routes).
    pub snapshot: Option<(String, String)>,
}

impl Entry {
    /// The entry of an event just published.
    pub fn new(number: u64, id: &str, event: &Event, snapshot: Option<&Snapshot>) -> Entry {
        Entry {
            number,
            event: Event {
                id: Some(id.to_string()),
                ..event.clone()
            },
            snapshot: snapshot.map(|s| (s.join_event.clone(), s.data.clone())),
        }
    }

    /// The `XADD` field/value pairs.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut fields = vec![("i", self.event.id.as_deref().unwrap_or_default())];
        if let Some(name) = &self.event.event {
            fields.push(("e", name));
        }
        fields.push(("d", &self.event.data));
        if let Some((join, document)) = &self.snapshot {
            fields.push(("j", join));
            fields.push(("s", document));
        }
        fields
    }

    /// The entry `XRANGE`/`XREAD` returned as `id` and `fields`; `None` if it is not one of
    /// ours.
    pub fn parse(id: &str, fields: &HashMap<String, Value>) -> Option<Entry> {
        let number = id.split_once('-')?.0.parse().ok()?;
        let text =
            |name: &str| -> Option<String> { redis::from_redis_value_ref(fields.get(name)?).ok() };
        let event = Event {
            id: Some(text("i")?),
            event: text("e"),
            data: text("d")?,
        };
        let snapshot = text("j").zip(text("s"));
        Some(Entry {
            number,
            event,
            snapshot,
        })
    }

    /// The event and the snapshot to publish it with.
    pub fn into_parts(self) -> (Event, Option<Snapshot>) {
        let snapshot = self
            .snapshot
            .map(|(join_event, data)| Snapshot { join_event, data });
        (self.event, snapshot)
    }
}

/// A record of a stream's log, as nodes append and read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An event.
    Event(Entry),
    /// The holder's upstream ended the stream for good (an sse `204`), numbered like an
    /// event: the streams that follow the log end there too.
    End(u64),
}

/// The field of an end mark, and its value.
const END: (&str, &str) = ("end", "upstream_ended");

impl Record {
    /// Its cluster-wide number.
    pub fn number(&self) -> u64 {
        match self {
            Record::Event(entry) => entry.number,
            Record::End(number) => *number,
        }
    }

    /// The stream-log id of this record.
    pub fn log_id(&self) -> String {
        format!("{}-0", self.number())
    }

    /// The `XADD` field/value pairs.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Record::Event(entry) => entry.fields(),
            Record::End(_) => vec![END],
        }
    }

    /// The record `XRANGE`/`XREAD` returned as `id` and `fields`; `None` if it is not one of
    /// ours.
    pub fn parse(id: &str, fields: &HashMap<String, Value>) -> Option<Record> {
        if !fields.contains_key(END.0) {
            return Entry::parse(id, fields).map(Record::Event);
        }
        let number = id.split_once('-')?.0.parse().ok()?;
        Some(Record::End(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(entry: &Entry) -> Option<Entry> {
        match record_round_trip(&Record::Event(entry.clone()))? {
            Record::Event(entry) => Some(entry),
            Record::End(_) => None,
        }
    }

    fn record_round_trip(record: &Record) -> Option<Record> {
        let fields = record
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
            .collect();
        Record::parse(&record.log_id(), &fields)
    }

    #[test]
    fn entries_round_trip_with_and_without_name_and_snapshot() {
        let plain = Entry::new(17, "17", &Event::message("a\nb"), None);
        assert_eq!(round_trip(&plain), Some(plain.clone()));
        let snapshot = Snapshot {
            join_event: "snapshot".into(),
            data: "{\"a\":1}".into(),
        };
        let event = Event {
            id: Some("up-3".into()),
            ..Event::named("patch", "[]")
        };
        let rich = Entry::new(18, "up-3", &event, Some(&snapshot));
        assert_eq!(rich.event.id.as_deref(), Some("up-3"));
        assert_eq!(round_trip(&rich), Some(rich.clone()));
        assert_eq!(Entry::parse("x", &HashMap::new()), None);
    }

    #[test]
    fn an_end_mark_round_trips_and_is_told_from_an_event() {
        let end = Record::End(42);
        assert_eq!(end.log_id(), "42-0");
        assert_eq!(record_round_trip(&end), Some(end));
        let event = Record::Event(Entry::new(43, "43", &Event::message("end"), None));
        assert_eq!(record_round_trip(&event), Some(event));
    }
}
