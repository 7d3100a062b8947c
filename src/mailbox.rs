//! Mailboxes: a bounded FIFO of messages plus an unbounded priority lane for
//! exit signals and exit notifications, on one `Mutex` and one `Condvar`.
//!
//! Lock rule: the mailbox lock is held only to move items in or out of the
//! queues. Nothing blocks, runs user code, or takes another lock while
//! holding it (predicates of selective receive are the one exception: they
//! are user code, but they only look at a message and must not send or
//! receive; the rustdoc of `receive_matching` says so).
//!
//! Wake-ups dominate local latency (BENCHMARKS.md), so a sender notifies only
//! when the receiver is actually parked, and a receiver spins briefly before
//! parking, but only while its spins have been paying off and while no more
//! threads are runnable than there are cores (see `Spinner`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::term::Term;

/// Default capacity of a mailbox, as in the seed.
pub const DEFAULT_MAILBOX_SIZE: usize = 64;

/// An item of the priority lane.
pub(crate) enum Signal {
    /// Ends the receiving agent with this reason at its next receive.
    Exit(Term),
    /// An exit notification: an ordinary term delivered before messages.
    Notice(Term),
}

/// What a receive can return besides a message.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// An exit signal arrived: the caller must end with this reason.
    Exit(Term),
    /// The deadline passed with nothing matching.
    Timeout,
}

struct State {
    messages: VecDeque<Term>,
    signals: VecDeque<Signal>,
    capacity: usize,
    /// Closed mailboxes accept no ordinary messages (signals still arrive,
    /// notably the exit signal that closed it).
    closed: bool,
    /// The owner is parked on `ready` and needs a notify.
    parked: bool,
}

/// A mailbox. Owned by one agent; any thread may deliver to it.
pub(crate) struct Mailbox {
    state: Mutex<State>,
    ready: Condvar,
    /// Bumped on every delivery; lets a spinning owner see arrivals without
    /// taking the lock.
    arrivals: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    /// Adaptive spin budget of the owner, in spin rounds.
    spin_budget: AtomicU32,
}

/// Threads currently runnable (running an agent and not parked in a
/// receive). Spinning only pays when the partner has a core of its own.
static RUNNABLE: AtomicUsize = AtomicUsize::new(0);

/// Marks the calling thread runnable for as long as the guard lives.
pub(crate) struct RunnableGuard;

impl RunnableGuard {
    pub(crate) fn enter() -> RunnableGuard {
        RUNNABLE.fetch_add(1, Ordering::Relaxed);
        RunnableGuard
    }
}

impl Drop for RunnableGuard {
    fn drop(&mut self) {
        RUNNABLE.fetch_sub(1, Ordering::Relaxed);
    }
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Spin rounds are ~50-100 ns each (a few `spin_loop` hints and an atomic
/// load), so the ceiling keeps a spin under about 10 µs: longer than a
/// cross-core hand-off, far shorter than a park/unpark round trip on an idle
/// vCPU (~12 µs measured in BENCHMARKS.md).
const SPIN_MAX: u32 = 128;
const SPIN_START: u32 = 32;

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Mailbox {
        Mailbox {
            state: Mutex::new(State {
                messages: VecDeque::with_capacity(capacity.min(DEFAULT_MAILBOX_SIZE)),
                signals: VecDeque::new(),
                capacity,
                closed: false,
                parked: false,
            }),
            ready: Condvar::new(),
            arrivals: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            spin_budget: AtomicU32::new(SPIN_START),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (no user code runs
        // under it but predicates, which run inside catch_unwind's scope of
        // the owner); recover the data if one ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers an ordinary message; a full or closed mailbox drops it and
    /// counts the drop. Returns whether it was queued.
    pub(crate) fn deliver(&self, message: Term) -> bool {
        let mut state = self.lock();
        if state.closed || state.messages.len() >= state.capacity {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        state.messages.push_back(message);
        self.arrivals.fetch_add(1, Ordering::Release);
        let wake = state.parked;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// Delivers onto the priority lane (never bounded, never refused: exit
    /// signals must arrive even at a full mailbox). An `Exit` closes the
    /// mailbox to ordinary messages.
    pub(crate) fn signal(&self, signal: Signal) {
        let mut state = self.lock();
        if let Signal::Exit(_) = signal {
            state.closed = true;
        }
        state.signals.push_back(signal);
        self.arrivals.fetch_add(1, Ordering::Release);
        let wake = state.parked;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Closes the mailbox: later ordinary messages are dropped and counted.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// The first pending exit signal's reason, if any (used when an agent
    /// that was killed finishes before its next receive).
    pub(crate) fn pending_exit(&self) -> Option<Term> {
        let state = self.lock();
        state.signals.iter().find_map(|s| match s {
            Signal::Exit(reason) => Some(reason.clone()),
            Signal::Notice(_) => None,
        })
    }

    /// Takes everything queued (notices first), for `flush-messages`.
    pub(crate) fn drain(&self) -> Vec<Term> {
        let mut state = self.lock();
        let mut out: Vec<Term> = Vec::with_capacity(state.messages.len());
        let signals = std::mem::take(&mut state.signals);
        for s in signals {
            match s {
                Signal::Notice(t) => out.push(t),
                // Exit signals stay: they must still end the agent.
                exit @ Signal::Exit(_) => state.signals.push_back(exit),
            }
        }
        out.extend(state.messages.drain(..));
        drop(state);
        self.received.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// (received, dropped, queued) counts.
    pub(crate) fn counts(&self) -> (u64, u64, usize) {
        let queued = {
            let state = self.lock();
            state.messages.len() + state.signals.len()
        };
        (
            self.received.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            queued,
        )
    }

    /// Counts a message dropped before it reached the mailbox (e.g. sent to
    /// an agent that had already exited).
    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the first item that matches, looking at the priority lane
    /// before ordinary messages. An exit signal always "matches".
    fn take(
        state: &mut State,
        matches: &mut dyn FnMut(&Term) -> bool,
    ) -> Option<Result<Term, Interrupt>> {
        if !state.signals.is_empty() {
            let pos = state.signals.iter().position(|s| match s {
                Signal::Exit(_) => true,
                Signal::Notice(t) => matches(t),
            });
            if let Some(pos) = pos {
                return match state.signals.remove(pos) {
                    Some(Signal::Exit(reason)) => Some(Err(Interrupt::Exit(reason))),
                    Some(Signal::Notice(t)) => Some(Ok(t)),
                    None => None,
                };
            }
        }
        // Fast path: the head matches (the common, non-selective case).
        let front_matches = match state.messages.front() {
            Some(front) => matches(front),
            None => return None,
        };
        if front_matches {
            return state.messages.pop_front().map(Ok);
        }
        let pos = state.messages.iter().skip(1).position(|t| matches(t))?;
        state.messages.remove(pos + 1).map(Ok)
    }

    /// Waits for the first item that matches `matches` (the priority lane
    /// first), until `deadline` (`None`: forever). Called only by the owner.
    pub(crate) fn receive(
        &self,
        deadline: Option<Instant>,
        matches: &mut dyn FnMut(&Term) -> bool,
    ) -> Result<Term, Interrupt> {
        let mut state = self.lock();
        loop {
            if let Some(found) = Self::take(&mut state, matches) {
                drop(state);
                if found.is_ok() {
                    self.received.fetch_add(1, Ordering::Relaxed);
                }
                return found;
            }
            let seen = self.arrivals.load(Ordering::Acquire);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Interrupt::Timeout);
            }
            drop(state);
            let arrived = self.spin(seen, deadline);
            state = self.lock();
            if arrived {
                continue;
            }
            // Park. Recheck under the lock first: an arrival between the
            // spin and here would otherwise be missed.
            if let Some(found) = Self::take(&mut state, matches) {
                drop(state);
                if found.is_ok() {
                    self.received.fetch_add(1, Ordering::Relaxed);
                }
                return found;
            }
            state.parked = true;
            RUNNABLE.fetch_sub(1, Ordering::Relaxed);
            state = match deadline {
                None => self.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    // One deadline; the remaining time is recomputed on
                    // every wake-up (spurious wake-ups happen).
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state
                    } else {
                        self.ready
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                }
            };
            RUNNABLE.fetch_add(1, Ordering::Relaxed);
            state.parked = false;
        }
    }

    /// Spins while it pays: returns true if something arrived. The budget
    /// doubles after a spin that caught a message and halves after one that
    /// did not, so agents whose partner answers fast (ping-pong) keep
    /// spinning and agents that wait long (a ring of 1000) soon stop.
    fn spin(&self, seen: u64, deadline: Option<Instant>) -> bool {
        let budget = self.spin_budget.load(Ordering::Relaxed);
        if budget == 0 || deadline.is_some() && deadline <= Some(Instant::now()) {
            // Probe again now and then so a changed workload can win the
            // spin back.
            self.spin_budget.store(
                if budget == 0 && seen % 64 == 0 {
                    1
                } else {
                    budget
                },
                Ordering::Relaxed,
            );
            return false;
        }
        if RUNNABLE.load(Ordering::Relaxed) > cores() {
            return false;
        }
        for _ in 0..budget {
            for _ in 0..8 {
                std::hint::spin_loop();
            }
            if self.arrivals.load(Ordering::Acquire) != seen {
                self.spin_budget
                    .store((budget * 2).min(SPIN_MAX), Ordering::Relaxed);
                return true;
            }
        }
        self.spin_budget.store(budget / 2, Ordering::Relaxed);
        false
    }
}

/// `Instant::now() + timeout`, or `None` (wait forever) if that overflows.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_capacity() {
        let m = Mailbox::new(2);
        assert!(m.deliver(1.into()));
        assert!(m.deliver(2.into()));
        assert!(!m.deliver(3.into()));
        let (_, dropped, queued) = m.counts();
        assert_eq!((dropped, queued), (1, 2));
        let t = m
            .receive(deadline_after(Duration::ZERO), &mut |_| true)
            .unwrap();
        assert_eq!(t, Term::from(1));
    }

    #[test]
    fn signals_come_first_and_close() {
        let m = Mailbox::new(4);
        m.deliver(1.into());
        m.signal(Signal::Notice(2.into()));
        assert_eq!(m.receive(None, &mut |_| true).unwrap(), Term::from(2));
        m.signal(Signal::Exit(Term::keyword("kill")));
        assert!(!m.deliver(3.into()));
        assert!(matches!(
            m.receive(None, &mut |_| true),
            Err(Interrupt::Exit(_))
        ));
    }

    #[test]
    fn selective_keeps_order() {
        let m = Mailbox::new(8);
        for i in 1..=4 {
            m.deliver(Term::from(i));
        }
        let even = m.receive(None, &mut |t| t.as_int() == Some(2)).unwrap();
        assert_eq!(even, Term::from(2));
        let rest: Vec<Term> = m.drain();
        assert_eq!(rest, vec![1.into(), 3.into(), 4.into()]);
    }

    #[test]
    fn timeout_and_poll() {
        let m = Mailbox::new(1);
        assert!(matches!(
            m.receive(deadline_after(Duration::ZERO), &mut |_| true),
            Err(Interrupt::Timeout)
        ));
        let start = Instant::now();
        assert!(matches!(
            m.receive(deadline_after(Duration::from_millis(20)), &mut |_| true),
            Err(Interrupt::Timeout)
        ));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
