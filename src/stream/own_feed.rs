//! A private stream's feed as its one subscriber runs it: polled only when it has woken, or,
//! for a client that takes the feed's events directly, on every wake of the client's task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

use super::shared::Feed;

/// A private stream's feed, polled only when something it waits on has woken it: the
/// client's task wakes for other things too (a write, the client's socket, a timer), and a
/// poll of a feed with nothing to read goes down through its reconnect loop, timeout and
/// socket each time — once per delivery, after the write.
///
/// Once the client is the stream's outlet ([`OwnFeed::wake_directly`]), its writer seldom
/// wakes for anything but the feed (the feed writes the events itself), so the flag is let
/// go: the feed is polled with the task's own waker, and a wake-up no longer goes through a
/// waker of its own, an atomic flag and a second registration — eight atomic operations and
/// a separately allocated line of memory per delivery.
pub(super) struct OwnFeed {
    future: Feed,
    /// `None` once the feed wakes the client's task directly.
    flag: Option<Flag>,
}

/// The flag a feed sets when woken, and the waker that sets it.
struct Flag {
    woken: Arc<WokenFlag>,
    /// `woken` as the feed's waker, made once.
    waker: Waker,
}

/// Set when the feed is woken, then wakes the client's task.
struct WokenFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl OwnFeed {
    pub(super) fn new(future: Feed) -> Self {
        let woken = Arc::new(WokenFlag {
            // Polled the first time without being woken: that poll starts it.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let flag = Flag {
            waker: Waker::from(woken.clone()),
            woken,
        };
        OwnFeed {
            future,
            flag: Some(flag),
        }
    }

    /// From now on polls the feed on every poll, with the task's waker: the client's task
    /// wakes (almost) only for it. A waker the feed registered through the flag before
    /// still wakes the task.
    pub(super) fn wake_directly(&mut self) {
        self.flag = None;
    }

    /// Polls the feed if it was woken since its last poll (always, once it wakes the task
    /// directly); `Ready` once it has returned.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(flag) = &self.flag else {
            return self.future.as_mut().poll(cx);
        };
        // Registered before the flag is read, so a wake in between is not lost.
        flag.woken.task.register(cx.waker());
        if !flag.woken.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        self.future
            .as_mut()
            .poll(&mut Context::from_waker(&flag.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use super::*;

    /// A feed that counts its polls and keeps the waker of the last one.
    fn counting(polls: &Arc<AtomicU64>, waker: &Arc<Mutex<Option<Waker>>>) -> Feed {
        let (polls, waker) = (polls.clone(), waker.clone());
        Box::pin(std::future::poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            *waker.lock().expect("lock") = Some(cx.waker().clone());
            Poll::Pending
        }))
    }

    #[test]
    fn the_feed_is_polled_first_and_then_only_after_it_woke() {
        let (polls, waker) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(None)));
        let mut feed = OwnFeed::new(counting(&polls, &waker));
        let mut cx = Context::from_waker(Waker::noop());
        let polled = |feed: &mut OwnFeed, cx: &mut Context<'_>| {
            assert!(feed.poll(cx).is_pending());
            polls.load(Ordering::Relaxed)
        };
        assert_eq!(polled(&mut feed, &mut cx), 1, "the first poll starts it");
        assert_eq!(polled(&mut feed, &mut cx), 1, "not woken: not polled");
        let feed_waker = waker.lock().expect("lock").take().expect("a waker");
        feed_waker.wake_by_ref();
        assert_eq!(polled(&mut feed, &mut cx), 2, "woken: polled once");
        assert_eq!(polled(&mut feed, &mut cx), 2);
    }
}
