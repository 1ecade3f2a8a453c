//! The SSE wire format: a safe encoder for events the proxy writes and an incremental
//! WHATWG parser for upstream streams.

pub mod as_sent;
pub mod event;
pub mod parser;

pub use as_sent::AsSent;
pub use event::{EncodeError, Event};
pub use parser::{ParseOutcome, Parsed, Parser};
