//! The streaming core shared by every SSE route kind.
//!
//! ```text
//!   source task (sse / poll / websocket)          one per stream key
//!        │ Publisher::publish(Event)               id assigned, encoded once
//!        ▼
//!   Stream ── Ring (replay + every client's queue) ── watch<head seq>
//!        │                                             wakes subscribers
//!        ▼
//!   Subscription (cursor)  ×N clients              nothing copied per client
//!        │
//!        ▼
//!   writer::run ── retry · heartbeats · batches · slow-client policy · shutdown
//!        │
//!        ▼
//!   Downstream (the pingora session)
//! ```
//!
//! [`Hub`] finds or creates the stream for a key and ends it `linger` after its last
//! subscriber leaves.

mod hub;
mod ring;
mod shared;
mod subscriber;
pub mod writer;

pub use hub::Hub;
pub use ring::{Backlog, StoredEvent};
pub use shared::{Publisher, Snapshot, StreamSpec};
pub use subscriber::Subscription;
pub use writer::{Downstream, StreamEnd, WriterSettings};
