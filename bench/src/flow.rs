//! End-to-end flow control between publishers and subscribers of one scenario.
//!
//! A publisher that writes as fast as TCP lets it only fills the server's outbound buffer for a
//! slower subscriber until the server cuts that subscriber off as a slow consumer. So publishers
//! may only run `window` deliveries ahead of what the subscribers have counted. The window is the
//! same for every server (fair), small enough to stay far below any slow-consumer limit, and big
//! enough to keep the pipeline full. The check happens once per batch, not per message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Gate {
    /// Messages written by all publishers.
    sent: AtomicU64,
    /// Deliveries counted by all subscribers.
    received: AtomicU64,
    /// Deliveries each published message should cause (0 = nobody listens: no gating).
    fanout: u64,
    /// Deliveries allowed in flight.
    window: u64,
    /// Deliveries that make the scenario complete.
    expected: u64,
    done_at: OnceLock<Instant>,
    waiting: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Gate {
    pub fn new(fanout: u64, window: u64, expected: u64) -> Self {
        Gate {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            fanout,
            window,
            expected,
            done_at: OnceLock::new(),
            waiting: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    fn has_room(&self, batch: u64) -> bool {
        let in_flight =
            (self.sent.load(SeqCst) * self.fanout).saturating_sub(self.received.load(SeqCst));
        in_flight + batch * self.fanout <= self.window
    }

    /// Block until `batch` more messages fit in the window (or `abort` is raised).
    pub fn wait_room(&self, batch: u64, abort: &AtomicBool) {
        if self.fanout == 0 {
            return;
        }
        // A batch bigger than the window would never fit; callers size batches, this is the guard.
        let batch = batch.min(self.window / self.fanout.max(1)).max(1);
        while !self.has_room(batch) && !abort.load(SeqCst) {
            self.waiting.store(true, SeqCst);
            let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.has_room(batch) {
                break;
            }
            // The timeout is only a backstop against a missed wake-up.
            let _ = self.cv.wait_timeout(g, Duration::from_millis(1));
        }
    }

    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, SeqCst);
    }

    /// Subscribers report what they counted, once per read.
    pub fn add_received(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.received.fetch_add(n, SeqCst);
        if before < self.expected && before + n >= self.expected {
            let _ = self.done_at.set(Instant::now());
        }
        if self.waiting.swap(false, SeqCst) {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    pub fn received(&self) -> u64 {
        self.received.load(SeqCst)
    }

    /// Deliveries that make the scenario complete.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// When the last expected delivery was counted.
    pub fn done_at(&self) -> Option<Instant> {
        self.done_at.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn publisher_waits_for_subscribers() {
        let gate = Arc::new(Gate::new(2, 20, 40));
        let abort = AtomicBool::new(false);
        gate.wait_room(10, &abort); // 0 + 20 <= 20
        gate.add_sent(10);
        assert!(!gate.has_room(1));
        let g = gate.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            g.add_received(20);
        });
        gate.wait_room(10, &abort);
        assert_eq!(gate.received(), 20);
        t.join().unwrap();
        gate.add_sent(10);
        assert!(gate.done_at().is_none());
        gate.add_received(20);
        assert!(gate.done_at().is_some());
    }

    #[test]
    fn no_listeners_no_gating() {
        let gate = Gate::new(0, 0, 0);
        gate.add_sent(1_000_000);
        gate.wait_room(1_000_000, &AtomicBool::new(false));
    }
}
