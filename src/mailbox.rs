//! Mailboxes: a bounded FIFO of messages plus an unbounded priority lane for
//! exit signals, on one `Mutex` and one `Condvar`. Exit notifications join
//! the FIFO in arrival order but past its bound (they are never dropped):
//! an agent hears of an exit, or of a lost connection, after the messages
//! that arrived before it, as in Erlang.
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
//! threads are runnable than there are cores (see `spin`).
//!
//! An async owner does not park: [`Mailbox::poll_receive`] leaves its
//! `Waker` in the state when nothing matches, under the same lock that
//! deliveries take, so a delivery either is seen by that look or finds the
//! waker and wakes it: no wake-up is lost, and a sender wakes the owner only
//! when it is waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::term::Term;

/// Default capacity of a mailbox, as in the seed.
pub const DEFAULT_MAILBOX_SIZE: usize = 64;

/// What a receive can return besides a message.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// An exit signal arrived: the caller must end with this reason.
    Exit(Term),
    /// The deadline passed with nothing matching.
    Timeout,
}

struct State {
    /// Queued for the owner (a `Vec`, a word smaller than a `VecDeque`:
    /// the owner takes them all at once, or the one there is).
    messages: Vec<Term>,
    /// The exit signal that ends the owner at its next receive: only the
    /// first one counts, so one place is enough (boxed: a waiting agent's
    /// mailbox must stay small, and most never get one).
    exit: Option<Box<Term>>,
    /// An async owner waiting for something to arrive (taken by the first
    /// delivery that wakes it).
    waker: Option<Waker>,
    capacity: u32,
    /// Closed mailboxes accept no ordinary messages (signals still arrive,
    /// notably the exit signal that closed it).
    closed: bool,
    /// The owner is parked on `ready` and needs a notify.
    parked: bool,
    /// The owner has exited: nothing will ever be received again, so
    /// signals are not kept either.
    finished: bool,
    /// The owner's batch size when it last took one: an upper bound on
    /// what it holds now, so senders usually need not read `cached` (the
    /// owner's cache line) to check the capacity.
    cached_at_swap: u32,
}

/// Whom a delivery must wake, decided under the lock, done after it.
enum Waiter {
    Nobody,
    /// A thread parked on `ready`.
    Thread,
    /// An async owner's task.
    Task(Waker),
}

impl State {
    /// Takes the owner's wait, if it waits: a thread stays marked parked
    /// until it wakes; a task's waker is used once.
    fn waiter(&mut self) -> Waiter {
        if self.parked {
            Waiter::Thread
        } else if let Some(w) = self.waker.take() {
            Waiter::Task(w)
        } else {
            Waiter::Nobody
        }
    }
}

/// A mailbox. Owned by one agent; any thread may deliver to it.
///
/// The owner takes messages in batches: when its `inbox` runs dry it moves
/// everything queued in `state` over in one O(1) swap, so under a flood
/// (fan-in) it takes the shared lock once per batch instead of once per
/// message. Lock order: `state`, then `inbox`.
///
/// Laid out in order (`repr(C)`): first what the owner reads on every
/// receive, then `cold` (whatever the mailbox's holder keeps with it that
/// neither side touches per message: an agent's other fields), then what
/// senders write on every delivery. `cold` keeps the two more than a cache
/// line apart, so a receive does not miss on the line senders keep
/// writing, without aligning (and so padding) the mailbox: fan-in with a
/// thread receiver did 10 M msgs/s with the two sides adjacent, 17-20 M
/// apart.
#[repr(C)]
pub(crate) struct Mailbox<C = ()> {
    /// What only the owner writes: its batch and its spinning state. Made
    /// the first time the owner takes a batch or spins, so an async agent
    /// that has only taken messages one at a time (a million parked ones)
    /// has none, and the mailbox stays inline in the agent, unaligned. In
    /// an allocation of its own and on a cache line of its own, so the
    /// owner draining its batch does not slow the senders contending for
    /// `state` (fan-in: 11 M against 7 M msgs/s measured without it).
    owner: OnceLock<Box<CacheLine<Owner>>>,
    /// Messages received one at a time, before the owner first took a
    /// batch (the batch's side counts the rest).
    received: AtomicU64,
    /// Notified only while the owner (a thread) is parked.
    ready: Condvar,
    /// Something is on the priority lane (checked without the lock on every
    /// receive; senders write it rarely).
    signals_pending: AtomicBool,
    /// The holder's own fields, between the owner's and the senders'.
    pub(crate) cold: C,
    dropped: AtomicU64,
    state: Mutex<State>,
    /// Bumped on every delivery; lets a spinning owner see arrivals without
    /// taking the lock.
    arrivals: AtomicU64,
}

struct Owner {
    /// The owner's batch: older than anything in `state.messages`.
    inbox: Mutex<VecDeque<Term>>,
    /// `inbox.len()`, for the capacity check when the mailbox is nearly
    /// full.
    cached: AtomicU32,
    /// Messages received since this part was made.
    received: AtomicU64,
    /// Adaptive spin budget, in nanoseconds.
    spin_budget: AtomicU32,
    /// Parks without spinning since the budget ran out.
    spin_skips: AtomicU32,
}

/// Aligns its content to a cache line (64 bytes on x86-64 and most ARM).
#[repr(align(64))]
struct CacheLine<T>(T);

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

/// The current value of the runnable count.
pub(crate) fn runnable() -> usize {
    RUNNABLE.load(Ordering::Relaxed)
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Spin budgets, in nanoseconds. The ceiling stays under a park/unpark round
/// trip on an idle vCPU (~12 µs in BENCHMARKS.md) and well above a
/// cross-core hand-off (< 1 µs); the floor keeps a failing spin cheap.
const SPIN_MAX: u32 = 10_000;
const SPIN_MIN: u32 = 500;
const SPIN_START: u32 = 4_000;
/// With more runnable threads than cores, a receiver yields its core this
/// many times (the partner it just woke may run there and answer) before
/// it parks.
const YIELDS: u32 = 3;

/// While spinning does not pay, one receive in this many probes again.
const SPIN_PROBE_EVERY: u32 = 64;

impl Mailbox {
    /// A mailbox holding nothing else (tests).
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Mailbox {
        Mailbox::with(capacity, ())
    }
}

impl<C> Mailbox<C> {
    /// A mailbox for `capacity` messages, keeping `cold` between the
    /// owner's fields and the senders' (see the type's doc).
    pub(crate) fn with(capacity: usize, cold: C) -> Mailbox<C> {
        Mailbox {
            cold,
            state: Mutex::new(State {
                // Grown on demand: a million waiting async agents must not
                // each hold room for 64 messages.
                messages: Vec::new(),
                exit: None,
                waker: None,
                capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
                closed: false,
                parked: false,
                finished: false,
                cached_at_swap: 0,
            }),
            ready: Condvar::new(),
            arrivals: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            signals_pending: AtomicBool::new(false),
            owner: OnceLock::new(),
        }
    }

    /// The owner's part, made on first use (by the owner: taking a batch
    /// or spinning).
    fn owner(&self) -> &Owner {
        &self
            .owner
            .get_or_init(|| {
                Box::new(CacheLine(Owner {
                    inbox: Mutex::new(VecDeque::new()),
                    cached: AtomicU32::new(0),
                    received: AtomicU64::new(0),
                    spin_budget: AtomicU32::new(SPIN_START),
                    spin_skips: AtomicU32::new(0),
                }))
            })
            .0
    }

    /// What the owner's batch holds (0 while it has none).
    fn cached(&self) -> u32 {
        self.owner
            .get()
            .map_or(0, |o| o.0.cached.load(Ordering::Relaxed))
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
        match self.offer(message) {
            Ok(()) => true,
            Err(Some(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(None) => false,
        }
    }

    /// Like [`Mailbox::deliver`], but a closed mailbox hands the message
    /// back uncounted (`Err(Some)`), so the caller can try another route; a
    /// full one drops and counts it (`Err(None)`).
    pub(crate) fn offer(&self, message: Term) -> Result<(), Option<Term>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Some(message));
        }
        if self.room(&state) == 0 {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(None);
        }
        state.messages.push(message);
        self.bump_arrivals(1);
        let waiter = state.waiter();
        drop(state);
        self.wake(waiter);
        Ok(())
    }

    fn wake(&self, waiter: Waiter) {
        match waiter {
            Waiter::Nobody => {}
            Waiter::Thread => self.ready.notify_one(),
            Waiter::Task(w) => w.wake(),
        }
    }

    /// Free places: capacity minus what is queued and what the owner holds.
    fn room(&self, state: &State) -> usize {
        let queued = state.messages.len();
        let capacity = state.capacity as usize;
        let cached_at_swap = state.cached_at_swap as usize;
        if queued + cached_at_swap < capacity {
            return capacity - queued - cached_at_swap;
        }
        let held = queued + self.cached() as usize;
        capacity.saturating_sub(held)
    }

    /// Counts deliveries. Every writer holds the state lock, so a plain
    /// load and store suffice: no locked read-modify-write on the hot path.
    fn bump_arrivals(&self, n: u64) {
        let now = self.arrivals.load(Ordering::Relaxed);
        self.arrivals.store(now.wrapping_add(n), Ordering::Release);
    }

    /// Delivers several messages under one lock with at most one wake-up;
    /// those that do not fit are dropped and counted (returns how many).
    /// A closed mailbox takes none (`Err`), leaving `messages` as it was.
    pub(crate) fn offer_many(&self, messages: &mut Vec<Term>) -> Result<usize, ()> {
        let mut state = self.lock();
        if state.closed {
            return Err(());
        }
        let room = self.room(&state).min(messages.len());
        let dropped = messages.len() - room;
        state.messages.extend(messages.drain(..room));
        messages.clear();
        if room > 0 {
            self.bump_arrivals(room as u64);
        }
        let waiter = if room > 0 {
            state.waiter()
        } else {
            Waiter::Nobody
        };
        drop(state);
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        self.wake(waiter);
        Ok(dropped)
    }

    /// Delivers an exit signal, ahead of every message (never bounded,
    /// never refused: it must arrive even at a full mailbox); it closes the
    /// mailbox to ordinary messages.
    pub(crate) fn exit(&self, reason: Term) {
        let mut state = self.lock();
        if state.finished {
            return;
        }
        // The first exit signal decides how the agent ends; later ones
        // change nothing, so they are not kept (a flood of them from other
        // agents or nodes costs no memory).
        if state.exit.is_some() {
            return;
        }
        state.closed = true;
        state.exit = Some(Box::new(reason));
        self.signals_pending.store(true, Ordering::Release);
        self.bump_arrivals(1);
        let waiter = state.waiter();
        drop(state);
        self.wake(waiter);
    }

    /// Delivers an exit notification: behind the messages already queued,
    /// never refused for room (a full mailbox must still hear of an exit),
    /// dropped only once the owner has exited.
    pub(crate) fn notice(&self, notice: Term) {
        let mut state = self.lock();
        if state.finished {
            return;
        }
        state.messages.push(notice);
        self.bump_arrivals(1);
        let waiter = state.waiter();
        drop(state);
        self.wake(waiter);
    }

    /// Marks the owner exited: closes the mailbox, drops what is queued
    /// and refuses signals from now on (nobody will receive them).
    pub(crate) fn finish(&self) {
        let (messages, exit, waker) = {
            let mut state = self.lock();
            state.closed = true;
            state.finished = true;
            self.signals_pending.store(false, Ordering::Release);
            (
                std::mem::take(&mut state.messages),
                state.exit.take(),
                // The waker holds the owner's task: keeping it would keep
                // the exited agent alive.
                state.waker.take(),
            )
        };
        let cached = self.owner.get().map(|o| {
            let batch = std::mem::take(&mut *lock_inbox(&o.0));
            o.0.cached.store(0, Ordering::Relaxed);
            batch
        });
        // Dropped outside the locks: terms may be large. A local value's
        // destructor may panic; the exit protocol (and the worker or
        // pooled thread running it) must go on regardless, so the panic
        // stops here (the panic hook has reported it).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            drop((messages, exit, cached, waker));
        }));
    }

    /// Closes the mailbox: later ordinary messages are dropped and counted.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// The first pending exit signal's reason, if any (used when an agent
    /// that was killed finishes before its next receive).
    pub(crate) fn pending_exit(&self) -> Option<Term> {
        // Set and cleared with `exit`, under the lock: without one pending
        // (nearly always) the lock is not taken.
        if !self.signals_pending.load(Ordering::Acquire) {
            return None;
        }
        self.lock().exit.as_deref().cloned()
    }

    /// Takes every message queued, for `flush-messages` (an exit signal
    /// stays: it must still end the agent).
    pub(crate) fn drain(&self) -> Vec<Term> {
        let mut state = self.lock();
        let mut out: Vec<Term> = Vec::with_capacity(state.messages.len());
        if let Some(o) = self.owner.get() {
            out.extend(lock_inbox(&o.0).drain(..));
            o.0.cached.store(0, Ordering::Relaxed);
        }
        state.cached_at_swap = 0;
        out.append(&mut state.messages);
        drop(state);
        self.received.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// (received, dropped, queued) counts.
    pub(crate) fn counts(&self) -> (u64, u64, usize) {
        let queued = {
            let state = self.lock();
            state.messages.len() + usize::from(state.exit.is_some())
        } + self.cached() as usize;
        let batched = self
            .owner
            .get()
            .map_or(0, |o| o.0.received.load(Ordering::Relaxed));
        (
            self.received.load(Ordering::Relaxed) + batched,
            self.dropped.load(Ordering::Relaxed),
            queued,
        )
    }

    fn inbox(&self) -> MutexGuard<'_, VecDeque<Term>> {
        lock_inbox(self.owner())
    }

    /// Takes the pending exit signal, if any.
    fn take_exit(&self, state: &mut State) -> Option<Result<Term, Interrupt>> {
        let reason = state.exit.take()?;
        self.signals_pending.store(false, Ordering::Release);
        Some(Err(Interrupt::Exit(*reason)))
    }

    /// Takes the first message of the owner's batch that matches.
    fn take_cached(&self, matches: &mut dyn FnMut(&Term) -> bool) -> Option<Term> {
        let owner = self.owner.get()?;
        let mut inbox = lock_inbox(&owner.0);
        self.take_from(&mut inbox, matches)
    }

    /// Takes the first message of `inbox` (the owner's batch, locked by
    /// the caller) that matches.
    fn take_from(
        &self,
        inbox: &mut VecDeque<Term>,
        matches: &mut dyn FnMut(&Term) -> bool,
    ) -> Option<Term> {
        // Fast path: the head matches (the common, non-selective case).
        let found = if matches(inbox.front()?) {
            inbox.pop_front()
        } else {
            let pos = inbox.iter().skip(1).position(&mut *matches)?;
            inbox.remove(pos + 1)
        };
        self.owner()
            .cached
            .store(len32(inbox.len()), Ordering::Relaxed);
        found
    }

    /// Moves everything queued in `state` into the owner's batch (one swap
    /// when the batch is empty).
    fn refill(&self, state: &mut State, inbox: &mut VecDeque<Term>) {
        if inbox.is_empty() {
            // Both conversions keep the buffers (no copy: the batch is
            // empty, and a `Vec` becomes a deque as it is): the queue takes
            // the batch's old buffer, the batch the queue's.
            let old = Vec::from(std::mem::take(inbox));
            *inbox = VecDeque::from(std::mem::replace(&mut state.messages, old));
        } else {
            inbox.extend(state.messages.drain(..));
        }
        self.owner()
            .cached
            .store(len32(inbox.len()), Ordering::Relaxed);
        state.cached_at_swap = len32(inbox.len());
    }

    fn got(&self, found: Result<Term, Interrupt>) -> Result<Term, Interrupt> {
        if found.is_ok() {
            // Only the owner writes it: no locked read-modify-write. Once
            // it takes batches, on its own cache line.
            let received = match self.owner.get() {
                Some(o) => &o.0.received,
                None => &self.received,
            };
            let n = received.load(Ordering::Relaxed);
            received.store(n + 1, Ordering::Relaxed);
        }
        found
    }

    /// Waits for the first item that matches `matches` (the priority lane
    /// first), until `deadline` (`None`: forever). Called only by the owner.
    pub(crate) fn receive(
        &self,
        deadline: Option<Instant>,
        matches: &mut dyn FnMut(&Term) -> bool,
    ) -> Result<Term, Interrupt> {
        let mut spun = false;
        loop {
            if self.signals_pending.load(Ordering::Acquire) {
                let mut state = self.lock();
                if let Some(found) = self.take_exit(&mut state) {
                    drop(state);
                    return self.got(found);
                }
            }
            if let Some(found) = self.take_cached(matches) {
                return self.got(Ok(found));
            }
            let mut state = self.lock();
            if !state.messages.is_empty() {
                let mut inbox = self.inbox();
                self.refill(&mut state, &mut inbox);
                if let Some(found) = self.take_from(&mut inbox, matches) {
                    return self.got(Ok(found));
                }
                continue;
            }
            if let Some(found) = self.take_exit(&mut state) {
                drop(state);
                return self.got(found);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Interrupt::Timeout);
            }
            let seen = self.arrivals.load(Ordering::Acquire);
            if !spun {
                spun = true;
                drop(state);
                if self.spin(seen, deadline) {
                    continue;
                }
                state = self.lock();
            }
            // Park until something new arrives. `arrivals` only changes
            // under the lock we hold, so nothing slips in between.
            state.parked = true;
            RUNNABLE.fetch_sub(1, Ordering::Relaxed);
            while self.arrivals.load(Ordering::Acquire) == seen {
                state = match deadline {
                    None => self.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        // One deadline; the remaining time is recomputed on
                        // every wake-up (spurious wake-ups happen).
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        self.ready
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
            RUNNABLE.fetch_add(1, Ordering::Relaxed);
            state.parked = false;
            spun = false;
        }
    }

    /// The async form of [`Mailbox::receive`]: the first item that matches,
    /// or `None` after leaving `waker` to be woken by the next delivery.
    /// Never blocks. Called only by the owner.
    pub(crate) fn poll_receive(
        &self,
        waker: &Waker,
        matches: &mut dyn FnMut(&Term) -> bool,
    ) -> Option<Result<Term, Interrupt>> {
        if self.signals_pending.load(Ordering::Acquire) {
            let mut state = self.lock();
            if let Some(found) = self.take_exit(&mut state) {
                drop(state);
                return Some(self.got(found));
            }
        }
        // The batch is the owner's (only the owner locks it, so taking it
        // inside the state lock cannot deadlock).
        // An empty batch (known without its lock: only the owner changes
        // it) need not be locked before the state is.
        if self.cached() > 0 {
            let mut inbox = self.inbox();
            if let Some(found) = self.take_from(&mut inbox, matches) {
                return Some(self.got(Ok(found)));
            }
        }
        let mut state = self.lock();
        // One message and an empty batch (a hand-off: a ring, a ping-pong):
        // taken from the queue itself, without locking the batch.
        if state.messages.len() == 1
            && self.cached() == 0
            && state.messages.first().is_some_and(&mut *matches)
        {
            if let Some(found) = state.messages.pop() {
                drop(state);
                return Some(self.got(Ok(found)));
            }
        }
        if !state.messages.is_empty() {
            let mut inbox = self.inbox();
            self.refill(&mut state, &mut inbox);
            if let Some(found) = self.take_from(&mut inbox, matches) {
                return Some(self.got(Ok(found)));
            }
        }
        if let Some(found) = self.take_exit(&mut state) {
            drop(state);
            return Some(self.got(found));
        }
        // Nothing: wait, under the lock deliveries take. The same task
        // asking again keeps the waker it left (no clone per poll).
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
        None
    }

    /// Spins while it pays: returns true if something arrived. The budget
    /// (a time) doubles after a spin that caught a message and halves after
    /// one that did not, within [`SPIN_MIN`, `SPIN_MAX`], so agents whose
    /// partner answers fast (ping-pong) keep spinning and agents that wait
    /// long (a ring of 1000) soon spin only briefly. With more runnable
    /// threads than cores a spin would only steal the partner's core, so
    /// the thread yields once instead.
    fn spin(&self, seen: u64, deadline: Option<Instant>) -> bool {
        if RUNNABLE.load(Ordering::Relaxed) > cores() {
            for _ in 0..YIELDS {
                std::thread::yield_now();
                if self.arrivals.load(Ordering::Acquire) != seen {
                    return true;
                }
            }
            return false;
        }
        let mut budget_ns = self.owner().spin_budget.load(Ordering::Relaxed);
        if budget_ns < SPIN_MIN {
            // Spinning stopped paying: park at once, but probe now and then
            // in case the workload changed (a partner moved to another core).
            let skips = self.owner().spin_skips.fetch_add(1, Ordering::Relaxed);
            if skips % SPIN_PROBE_EVERY != 0 {
                return false;
            }
            budget_ns = SPIN_START;
        }
        let budget = Duration::from_nanos(budget_ns.into());
        let start = Instant::now();
        let stop = deadline.map_or(budget, |d| budget.min(d.saturating_duration_since(start)));
        loop {
            for _ in 0..4 {
                std::hint::spin_loop();
            }
            if self.arrivals.load(Ordering::Acquire) != seen {
                let grown = (budget_ns * 2).clamp(SPIN_MIN, SPIN_MAX);
                self.owner().spin_budget.store(grown, Ordering::Relaxed);
                return true;
            }
            if start.elapsed() >= stop {
                // Below SPIN_MIN means "do not spin".
                let shrunk = budget_ns / 2;
                self.owner().spin_budget.store(shrunk, Ordering::Relaxed);
                return false;
            }
        }
    }
}

/// Locks the owner's batch.
fn lock_inbox(owner: &Owner) -> MutexGuard<'_, VecDeque<Term>> {
    owner.inbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// A queue length as stored in the mailbox's 32-bit counters (capacities
/// are 32-bit, so lengths fit; saturate rather than wrap regardless).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
    fn notices_keep_their_order_exit_signals_come_first_and_close() {
        let m = Mailbox::new(1);
        m.deliver(1.into());
        // Past the bound, behind the message that came first.
        m.notice(2.into());
        assert_eq!(m.receive(None, &mut |_| true).unwrap(), Term::from(1));
        assert_eq!(m.receive(None, &mut |_| true).unwrap(), Term::from(2));
        m.deliver(4.into());
        m.exit(Term::keyword("kill"));
        assert!(!m.deliver(3.into()));
        assert!(matches!(
            m.receive(None, &mut |_| true),
            Err(Interrupt::Exit(_))
        ));
    }

    #[test]
    fn only_the_first_exit_signal_is_kept() {
        let m = Mailbox::new(4);
        for i in 0..10_000 {
            m.exit(Term::from(i));
        }
        let (_, _, queued) = m.counts();
        assert_eq!(queued, 1);
        match m.receive(None, &mut |_| true) {
            Err(Interrupt::Exit(reason)) => assert_eq!(reason, Term::from(0)),
            _ => panic!("expected the first exit signal"),
        }
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
