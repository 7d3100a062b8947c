//! A flag set once, which threads can wait for with a deadline: a dial
//! waiting to be taken over, a connection's loss being told, the ticker
//! waiting for its next tick or the node's stop.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// A flag set once, which threads can wait for with a deadline.
pub(crate) struct Latch {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Latch {
    pub(crate) fn new() -> Latch {
        Latch {
            set: Mutex::new(false),
            changed: Condvar::new(),
        }
    }

    /// Sets the flag; `true` the first time.
    pub(crate) fn set(&self) -> bool {
        let first = !std::mem::replace(&mut *super::lock(&self.set), true);
        self.changed.notify_all();
        first
    }

    pub(crate) fn is_set(&self) -> bool {
        *super::lock(&self.set)
    }

    /// Wakes the waiters without setting the flag, so they look at their
    /// other condition again.
    pub(crate) fn nudge(&self) {
        let _set = super::lock(&self.set);
        self.changed.notify_all();
    }

    /// Waits until the flag is set, `wait_on` turns false or `deadline`
    /// passes; returns the flag.
    pub(crate) fn wait(&self, deadline: Instant, wait_on: impl Fn() -> bool) -> bool {
        let mut set = super::lock(&self.set);
        while !*set && wait_on() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            set = self
                .changed
                .wait_timeout(set, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *set
    }
}
