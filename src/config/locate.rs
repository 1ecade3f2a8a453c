//! Finds the line of a YAML path such as `routes[2].poll.interval`.
//!
//! serde_yaml stamps every error raised while a node is visited with that node's position, so
//! walking the document along the path and failing on purpose at its end yields the line
//! without a second YAML library. Semantic checks use it; schema errors already carry lines.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The 1-based line of `path` in `text`, or of its nearest existing ancestor.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let segments = parse_path(path);
    let probe = Probe { rest: &segments };
    match probe.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Ok(()) => None,
        Err(found) => found.location().map(|at| at.line()),
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            segments.push(Segment::Key(key.to_string()));
        }
        for index in pieces {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(index));
            }
        }
    }
    segments
}

struct Probe<'a> {
    rest: &'a [Segment],
}

const FOUND: &str = "found";

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(wanted), rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key::<String>()? {
            if &key == wanted {
                return map.next_value_seed(Probe { rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(FOUND))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(wanted), rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut index = 0;
        while index < *wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(FOUND));
            }
            index += 1;
        }
        match seq.next_element_seed(Probe { rest })? {
            Some(()) => Ok(()),
            None => Err(de::Error::custom(FOUND)),
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const DOC: &str = "listen: 1.2.3.4:80\nroutes:\n  - path: /a\n    sse: { upstream: x }\n  - path: /b\n    poll:\n      url: http://u\n      interval: 0s\n";

    #[test]
    fn finds_nested_paths() {
        assert_eq!(line_of(DOC, "listen"), Some(1));
        assert_eq!(line_of(DOC, "routes[1].poll.interval"), Some(8));
        assert_eq!(line_of(DOC, "routes[0].sse.upstream"), Some(4));
        assert_eq!(line_of(DOC, "routes[1].path"), Some(5));
    }

    #[test]
    fn missing_leaf_reports_where_its_parent_starts() {
        assert_eq!(line_of(DOC, "routes[1].poll.emit"), Some(7));
    }
}
