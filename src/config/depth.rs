//! How deeply a YAML document nests, measured before serde sees it.
//!
//! serde_yaml loads every event of a document before its recursion limit applies, and
//! libyaml's scanner does work in proportion to the flow depth for every token, so nesting
//! alone made loading quadratic in time (100 000 `[` took 36 s) and linear in memory at
//! ~300 bytes a level. This pass drives the same parser — libyaml, through the
//! `unsafe-libyaml` port serde_yaml is built on — one event at a time and stops at the first
//! collection past the limit, so its work is linear in the file and its memory is one event.
//! Flow and block collections count alike; quoted strings, comments and block scalars never
//! count, because to the parser they are scalars or nothing. A syntax error ends the scan
//! without a verdict: serde_yaml then reports it with its own message and line.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// Where a collection starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// The start of the first sequence or mapping nested deeper than `limit`, if any.
pub fn first_too_deep(text: &str, limit: usize) -> Option<Position> {
    let mut events = Events::new(text)?;
    let mut depth = 0usize;
    loop {
        let (kind, position) = events.next()?;
        match kind {
            Kind::Open => {
                depth += 1;
                if depth > limit {
                    return Some(position);
                }
            }
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::End => return None,
            Kind::Other => {}
        }
    }
}

/// What an event does to the nesting.
enum Kind {
    Open,
    Close,
    End,
    Other,
}

/// A libyaml parser over borrowed text, yielding one event at a time.
struct Events<'a> {
    /// Boxed because libyaml keeps a pointer to the parser inside it (its read handler's
    /// data), so it must not move once the input is set.
    parser: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
    /// libyaml reads `text` through raw pointers for as long as the parser lives.
    text: PhantomData<&'a str>,
}

impl<'a> Events<'a> {
    fn new(text: &'a str) -> Option<Events<'a>> {
        let mut parser = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
        let raw = parser.as_mut_ptr();
        // SAFETY: `raw` points to writable memory for a parser, which `yaml_parser_initialize`
        // fills in completely (it zeroes it first). On success the parser is deleted exactly
        // once, in `Drop`; the input pointer stays valid for `'a`, which outlives `Events`.
        unsafe {
            if unsafe_libyaml::yaml_parser_initialize(raw).fail {
                return None;
            }
            unsafe_libyaml::yaml_parser_set_encoding(raw, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(raw, text.as_ptr(), text.len() as u64);
        }
        Some(Events {
            parser,
            text: PhantomData,
        })
    }

    /// The next event's kind and start, or `None` after a syntax error.
    fn next(&mut self) -> Option<(Kind, Position)> {
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; `yaml_parser_parse` writes the whole
        // event (it zeroes it first) before we read it, and the event is deleted right after
        // its type and mark are copied out.
        unsafe {
            let event = event.as_mut_ptr();
            if unsafe_libyaml::yaml_parser_parse(self.parser.as_mut_ptr(), event).fail {
                return None;
            }
            let kind = match (*event).type_ {
                unsafe_libyaml::YAML_SEQUENCE_START_EVENT
                | unsafe_libyaml::YAML_MAPPING_START_EVENT => Kind::Open,
                unsafe_libyaml::YAML_SEQUENCE_END_EVENT
                | unsafe_libyaml::YAML_MAPPING_END_EVENT => Kind::Close,
                // After the stream ends, or after an error, libyaml only returns NO_EVENT.
                unsafe_libyaml::YAML_STREAM_END_EVENT | unsafe_libyaml::YAML_NO_EVENT => Kind::End,
                _ => Kind::Other,
            };
            let mark = (*event).start_mark;
            unsafe_libyaml::yaml_event_delete(event);
            let position = Position {
                line: mark.line as usize + 1,
                column: mark.column as usize + 1,
            };
            Some((kind, position))
        }
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: `Events` exists only once `yaml_parser_initialize` succeeded.
        unsafe { unsafe_libyaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deepest_allowed(text: &str) -> Option<usize> {
        (0..100).find(|&limit| first_too_deep(text, limit).is_none())
    }

    #[test]
    fn flow_and_block_collections_both_count() {
        assert_eq!(deepest_allowed("a: 1\n"), Some(1));
        assert_eq!(deepest_allowed("a: [[1]]\n"), Some(3));
        assert_eq!(deepest_allowed("a: {b: {c: 1}}\n"), Some(3));
        assert_eq!(deepest_allowed("- - - x\n"), Some(3));
        assert_eq!(deepest_allowed("a:\n  b:\n    - [1]\n"), Some(4));
    }

    #[test]
    fn quoted_strings_comments_and_block_scalars_do_not_count() {
        let text =
            "a: '[[[[{{{{'\nb: \"[[[\\\"[[[\"\n# [[[[[[[[\nc: |\n  [[[[[[[[\n  {{{{\nd: x [[[[\n";
        assert_eq!(deepest_allowed(text), Some(1));
    }

    #[test]
    fn the_first_collection_past_the_limit_is_located() {
        let text = "routes:\n  - path: /a\n    sse: {upstream: [[x]]}\n";
        assert_eq!(
            first_too_deep(text, 4),
            Some(Position {
                line: 3,
                column: 21
            })
        );
    }

    #[test]
    fn a_syntax_error_ends_the_scan_without_a_verdict() {
        assert_eq!(first_too_deep("a: [[[\n\"", 64), None);
        assert_eq!(first_too_deep("a: ]\n[[[[", 1), None);
    }

    #[test]
    fn pathological_nesting_stops_at_the_limit() {
        let deep = format!("routes: {}", "[".repeat(1_000_000));
        assert_eq!(
            first_too_deep(&deep, 64),
            Some(Position {
                line: 1,
                column: 9 + 63
            })
        );
        let block = format!("routes:\n{}x\n", "- ".repeat(1_000_000));
        assert!(first_too_deep(&block, 64).is_some());
    }
}
