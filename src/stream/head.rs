//! The head of a stream as its subscribers watch it: the newest sequence number, whether the
//! upstream has finished, and one standing waker per waiting subscriber.
//!
//! It stands where a `tokio::sync::watch` stood, whose every wait registered a new waiter
//! under one of eight mutexes and whose every send locked all eight: a fifth of a fan-out
//! delivery's instructions. Here a subscriber's waker is stored once, in a slot of its own,
//! and replaced only when its task's waker changes; looking for news is two atomic loads,
//! and an append wakes every stored waker under one lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::Waker;

/// The newest sequence number and the end flag of one stream, and who waits on them.
/// (`repr(C)`: the two atomics first, where the stream puts them in the cache line a
/// delivery reads; the waiters, which only a shared stream's wake-ups lock, after them.)
#[derive(Debug, Default)]
#[repr(C)]
pub(super) struct Head {
    seq: AtomicU64,
    finished: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// One subscriber's standing registration: its slot and the waker stored there.
#[derive(Debug, Default)]
pub(super) struct Registration {
    slot: Option<usize>,
    waker: Option<Waker>,
}

impl Head {
    /// The bytes at its start that a wake-up of a subscriber reads.
    #[cfg(test)]
    pub(super) const HOT_BYTES: usize = std::mem::offset_of!(Head, finished) + 1;

    /// Sequence number of the newest event (0 before the first).
    pub(super) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Whether the upstream has ended the stream for good.
    pub(super) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Moves the head to `seq`, waking the registered subscribers when `wake`.
    pub(super) fn advance(&self, seq: u64, wake: bool) {
        self.seq.store(seq, Ordering::Release);
        if wake {
            self.wake_all();
        }
    }

    /// Marks the stream finished and wakes every registered subscriber.
    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.wake_all();
    }

    fn wake_all(&self) {
        let waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        waiters.slots.iter().flatten().for_each(Waker::wake_by_ref);
    }

    /// Makes sure `waker` is the one stored for `registration`: a lock only the first time
    /// and when the task's waker has changed. Check for news after it, not only before: an
    /// advance between the check and the registration would otherwise be missed.
    pub(super) fn register(&self, registration: &mut Registration, waker: &Waker) {
        if registration
            .waker
            .as_ref()
            .is_some_and(|stored| stored.will_wake(waker))
        {
            return;
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match registration.slot {
            Some(slot) => slot,
            None => waiters.free.pop().unwrap_or_else(|| {
                waiters.slots.push(None);
                waiters.slots.len() - 1
            }),
        };
        waiters.slots[slot] = Some(waker.clone());
        registration.slot = Some(slot);
        registration.waker = Some(waker.clone());
    }

    /// Frees a subscriber's slot (it is leaving).
    pub(super) fn unregister(&self, registration: &Registration) {
        if let Some(slot) = registration.slot {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            waiters.slots[slot] = None;
            waiters.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counting>, Waker) {
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn registered_waiters_are_woken_until_they_leave_and_slots_are_reused() {
        let head = Head::default();
        let ((first, first_waker), (second, second_waker)) = (counting(), counting());
        let (mut one, mut two) = (Registration::default(), Registration::default());
        head.register(&mut one, &first_waker);
        head.register(&mut two, &second_waker);
        head.register(&mut one, &first_waker);
        head.advance(1, true);
        head.advance(2, false);
        assert_eq!(head.seq(), 2);
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            1,
            "one wake per waking advance"
        );
        head.unregister(&one);
        head.finish();
        assert!(head.is_finished());
        assert_eq!(first.0.load(Ordering::SeqCst), 1, "not woken after leaving");
        assert_eq!(second.0.load(Ordering::SeqCst), 2);
        let mut three = Registration::default();
        head.register(&mut three, &first_waker);
        assert_eq!(three.slot, one.slot, "the freed slot is reused");
    }
}
