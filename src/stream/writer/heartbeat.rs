//! When the writer sends a heartbeat: after `heartbeat` of silence since the last write,
//! its own or one through the subscription's outlet.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

use super::poll_when_due;
use crate::stream::Subscription;

/// When the next heartbeat is due: `every` after the last write. The timer is not moved on
/// every write (a timer reset per event): it fires when set, and then
/// either a heartbeat is due or it is set again from the last write — at 1 event/s and a
/// 15 s heartbeat, one wake-up per fifteen deliveries.
pub(super) struct Heartbeat {
    every: Option<Duration>,
    last_write: Instant,
    /// When the timer is set to fire: a wake-up before then is not the timer's, and is told
    /// so by the clock, without reading the timer's own state (a line of memory elsewhere).
    timer_due: Instant,
    /// Whether the timer has been polled since it was last set: a timer polled once stays
    /// registered and wakes the task when it fires, so it is polled again only then.
    polled: bool,
    /// Whether the timer fired and waits to be set again.
    timer_fired: bool,
}

impl Heartbeat {
    pub(super) fn new(every: Option<Duration>, now: Instant) -> Self {
        Heartbeat {
            every,
            last_write: now,
            timer_due: now,
            polled: false,
            timer_fired: false,
        }
    }

    /// When a heartbeat is due; `None` when heartbeats are off.
    fn due(&self) -> Option<Instant> {
        self.every.map(|every| self.last_write + every)
    }

    /// The heartbeat timer, set for the first heartbeat (for a year away when they are off).
    pub(super) fn timer(&mut self) -> Sleep {
        let never = || Instant::now() + Duration::from_secs(86_400 * 365);
        self.timer_due = self.due().unwrap_or_else(never);
        sleep_until(self.timer_due)
    }

    /// Resolves when `timer` fires; polls it the first time after it was set, then only once
    /// it has fired.
    pub(super) fn timer_fired<'a>(
        &'a mut self,
        mut timer: Pin<&'a mut Sleep>,
    ) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            let fired = Instant::now() >= self.timer_due;
            let polled = poll_when_due(timer.as_mut(), cx, &mut self.polled, fired);
            self.timer_fired = polled.is_ready();
            polled
        })
    }

    /// Whether the timer fired early — events were written since it was set, by the writer
    /// or through the subscription's outlet — and so was set again, from the last of them.
    pub(super) fn waits_longer(
        &mut self,
        timer: Pin<&mut Sleep>,
        subscription: &Subscription,
    ) -> bool {
        if let Some(passed) = subscription.passed().last_write {
            self.last_write = self.last_write.max(passed);
        }
        match self.due() {
            Some(due) if due > Instant::now() => {
                self.rearm(timer, due);
                true
            }
            _ => false,
        }
    }

    /// Notes a write at `at`; a timer that has fired is set again from it.
    pub(super) fn wrote(&mut self, timer: Pin<&mut Sleep>, at: Instant) {
        self.last_write = at;
        if let Some(due) = self.due().filter(|_| self.timer_fired) {
            self.rearm(timer, due);
        }
    }

    /// Sets `timer` to `due`, to be polled (and so registered) again.
    fn rearm(&mut self, timer: Pin<&mut Sleep>, due: Instant) {
        timer.reset(due);
        self.timer_due = due;
        self.polled = false;
        self.timer_fired = false;
    }
}
