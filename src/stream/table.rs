//! The table of live streams by key, and the membership guard whose drop leaves one.
//!
//! Leaving by drop, as mini-redis's `DbDropGuard`: a [`Membership`] holds only what leaving
//! needs — the table, the key and the stream — so every way a client's stream ends frees its
//! place, and the last one to leave ends the stream `linger` later (its feed task is aborted
//! when its entry is removed). A private stream is not in the table: its one membership
//! is its whole life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::AbortHandle;

use super::shared::Stream;

/// Live streams by key.
#[derive(Default)]
pub(super) struct Table {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    stream: Arc<Stream>,
    /// Members, counted under the table's lock so joining and the last leave cannot race.
    members: usize,
    _feed: FeedTask,
}

/// The task feeding a stream, aborted when the stream's entry goes.
struct FeedTask(AbortHandle);

impl Drop for FeedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One subscriber's place in a stream; dropping it leaves.
/// (`repr(C)`: the stream first, which every wake-up of its subscriber reads.)
#[repr(C)]
pub(super) struct Membership {
    stream: Arc<Stream>,
    /// The table and key of a shared stream; `None` for a private one, which nobody else can
    /// join and which ends with its only subscriber.
    place: Option<(Arc<Table>, String)>,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the stream `key`, creating it with `create` (the stream and the handle of the
    /// task feeding it) when there is none. Returns the membership and whether it was created.
    pub(super) fn join(
        self: &Arc<Self>,
        key: String,
        create: impl FnOnce() -> (Arc<Stream>, AbortHandle),
    ) -> (Membership, bool) {
        let mut entries = self.lock();
        let (stream, created) = match entries.get_mut(&key) {
            Some(entry) => {
                entry.members += 1;
                (entry.stream.clone(), false)
            }
            None => {
                let (stream, feed) = create();
                let entry = Entry {
                    stream: stream.clone(),
                    members: 1,
                    _feed: FeedTask(feed),
                };
                entries.insert(key.clone(), entry);
                (stream, true)
            }
        };
        let membership = Membership {
            place: Some((self.clone(), key)),
            stream,
        };
        (membership, created)
    }

    /// Whether the stream `key` is live.
    pub(super) fn has(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    /// Number of live streams.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Removes the entry of `stream` if nobody has joined it again; its feed stops.
    fn remove_if_idle(&self, key: &str, stream: &Arc<Stream>) {
        let mut entries = self.lock();
        let idle = entries
            .get(key)
            .is_some_and(|e| e.members == 0 && Arc::ptr_eq(&e.stream, stream));
        if idle {
            // Dropped outside the lock: aborting the feed may drop its last `Stream` handle.
            let entry = entries.remove(key);
            drop(entries);
            drop(entry);
        }
    }
}

impl Membership {
    /// The only member of a stream outside the table (a private stream).
    pub(super) fn private(stream: Arc<Stream>) -> Self {
        Membership {
            place: None,
            stream,
        }
    }

    /// Whether the stream has no other member and nobody can join it.
    pub(super) fn is_private(&self) -> bool {
        self.place.is_none()
    }

    /// The stream joined.
    pub(super) fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let Some((table, key)) = &mut self.place else {
            return;
        };
        let mut entries = table.lock();
        let Some(entry) = entries
            .get_mut(key.as_str())
            .filter(|e| Arc::ptr_eq(&e.stream, &self.stream))
        else {
            return;
        };
        entry.members -= 1;
        if entry.members > 0 {
            return;
        }
        drop(entries);
        let linger = self.stream.spec().linger;
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if !linger.is_zero() => {
                let (table, key, stream) =
                    (table.clone(), std::mem::take(key), self.stream.clone());
                runtime.spawn(async move {
                    tokio::time::sleep(linger).await;
                    table.remove_if_idle(&key, &stream);
                });
            }
            _ => table.remove_if_idle(key, &self.stream),
        }
    }
}
