//! Timers: a message sent, or an exit signal delivered, after a delay, as
//! Erlang's `erlang:send_after/3` and `timer:exit_after/3`. Every timer of
//! the process is kept by one service thread (a binary heap ordered by
//! deadline and a condition variable), started on first use: ten thousand
//! timers are ten thousand heap entries, not ten thousand threads.
//!
//! A timer fires at its deadline or a little later, never earlier; timers
//! fire one after the other in the order of their deadlines (equal
//! deadlines in the order they were set), so messages they send to one
//! agent arrive sorted. [`cancel`] says whether it stopped the timer
//! before it fired.
//!
//! As in Erlang, a timer aimed at an agent of this process (an [`Agent`]
//! handle or an agent term such as `#<AGENT 12>`, what Erlang calls a pid)
//! is cancelled when that agent exits: it never fires, and [`cancel`] then
//! says `false`. A timer aimed at a name (`:logger`), an id string or an
//! agent of another node is resolved when it fires, as Erlang does for a
//! name: a name registered by then is found, a dead or unknown target is a
//! dropped message, as for [`crate::agent::send`].
//!
//! The service thread is not an agent: firing a timer adopts no agent and
//! counts no runnable thread. (An exit signal for an agent of another node
//! is sent from a short-lived async agent, since a remote exit names its
//! sender.)
//!
//! ```
//! use std::time::Duration;
//! use erlangen::{receive_timeout, timer, Agent, Term};
//!
//! let me = Agent::current();
//! let late = timer::send_after(Duration::from_secs(3600), Term::keyword("late"), &me);
//! let soon = timer::send_after(Duration::from_millis(10), Term::keyword("soon"), &me);
//! assert!(timer::cancel(&late)); // stopped before it fired
//! assert_eq!(receive_timeout(Duration::from_secs(5)), Ok(Term::keyword("soon")));
//! assert!(!timer::cancel(&soon)); // it has fired already
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::agent::target::{self, Resolved};
use crate::agent::{self, async_agent, Agent, ExitHook, Outcome, Target};
use crate::term::{AgentRef, Term};

/// A timer set by [`send_after`] or [`exit_after`]: pass it to [`cancel`].
/// As a term (for the REPL and messages) it is `(:TIMER n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerRef(u64);

impl TimerRef {
    /// `(:TIMER n)`.
    pub fn to_term(self) -> Term {
        Term::list(vec![
            Term::keyword("timer"),
            Term::Int(i64::try_from(self.0).unwrap_or(i64::MAX)),
        ])
    }

    /// The timer a `(:TIMER n)` term stands for, if it is one.
    pub fn from_term(term: &Term) -> Option<TimerRef> {
        match term.as_list() {
            Some([tag, Term::Int(n)]) if tag.is_keyword("TIMER") => {
                u64::try_from(*n).ok().map(TimerRef)
            }
            _ => None,
        }
    }
}

impl fmt::Display for TimerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(:TIMER {})", self.0)
    }
}

/// What a timer does when it fires.
enum Action {
    Send(Term, Target),
    Exit(Term, Target),
}

impl Action {
    fn fire(self) {
        // A timer's target may be gone by now: as for any send or exit,
        // that is not an error anyone could act on.
        match self {
            Action::Send(message, to) => {
                let _ = agent::send(message, to);
            }
            Action::Exit(reason, to) => match to.resolve() {
                // Not `agent::exit`: that looks for the calling agent, and
                // would make this thread one.
                Ok(Resolved::Local(a)) => a.kill(reason),
                Ok(Resolved::Remote(..)) => {
                    // A remote exit signal names its sender: a short-lived
                    // agent sends it, not this thread.
                    let _ = async_agent::spawn(async move {
                        let _ = agent::exit(reason, to);
                    });
                }
                Ok(Resolved::Dead) | Err(_) => {}
            },
        }
    }
}

/// A timer waiting to fire.
struct Entry {
    action: Action,
    /// The agent of this process the timer is aimed at, if it is aimed at
    /// one (not at a name): its exit cancels the timer.
    aimed_at: Option<Agent>,
}

#[derive(Default)]
struct Timers {
    /// Deadlines and ids; an id no longer in `entries` was cancelled and
    /// is skipped when it comes up (cheaper than removing from the heap).
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: HashMap<u64, Entry>,
    /// Timers by the serial of the agent they are aimed at, for cancelling
    /// them when it exits. An agent is here exactly while it carries the
    /// exit hook.
    by_agent: HashMap<u64, Vec<u64>>,
}

impl Timers {
    /// Takes timer `id` out (fired or cancelled), and its agent's hook
    /// with its last timer.
    fn take(&mut self, id: u64) -> Option<Action> {
        let entry = self.entries.remove(&id)?;
        if let Some(agent) = &entry.aimed_at {
            let serial = agent.serial();
            if let Some(ids) = self.by_agent.get_mut(&serial) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_agent.remove(&serial);
                    agent.detach_exit_hook(&EXIT_HOOK);
                }
            }
        }
        Some(entry.action)
    }

    /// Drops the heap entries of timers no longer wanted when they are
    /// most of the heap (many long timeouts cancelled early, as request
    /// timeouts are), so the heap does not grow without bound.
    fn compact(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.entries.len() {
            let Timers { heap, entries, .. } = self;
            heap.retain(|Reverse((_, id))| entries.contains_key(id));
        }
    }
}

/// Cancels the timers aimed at an agent when it exits (as Erlang cancels
/// a timer whose destination process is gone).
static EXIT_HOOK: ExitHook = ExitHook {
    name: "timers",
    run: agent_exited,
};

fn agent_exited(agent: &Agent, _: &Outcome) {
    let mut timers = service().lock();
    if let Some(ids) = timers.by_agent.remove(&agent.serial()) {
        for id in ids {
            timers.entries.remove(&id);
        }
        timers.compact();
    }
}

/// The agent of this process `to` designates by identity (a handle or an
/// agent term), as opposed to a name or an id resolved when the timer
/// fires. `Err(())` if it designates one that has exited.
fn aimed_at(to: &Target) -> Result<Option<Agent>, ()> {
    match to {
        Target::Agent(a) => Ok(Some(a.clone())),
        Target::Term(Term::Agent(AgentRef::Local(serial))) => {
            target::by_serial(*serial).map(Some).ok_or(())
        }
        _ => Ok(None),
    }
}

struct Service {
    timers: Mutex<Timers>,
    wake: Condvar,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Service {
    fn lock(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service thread: fires what is due, then sleeps until the next
    /// deadline or until a new earlier timer wakes it.
    fn run(&self) {
        let mut timers = self.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(Reverse((deadline, id))) = timers.heap.peek().copied() {
                if deadline > now {
                    break;
                }
                timers.heap.pop();
                if let Some(action) = timers.take(id) {
                    due.push(action);
                }
            }
            if !due.is_empty() {
                // Fired outside the lock: a send may take a while (a remote
                // target), and setting or cancelling timers must not wait.
                drop(timers);
                for action in due {
                    action.fire();
                }
                timers = self.lock();
                continue;
            }
            timers = match timers.heap.peek() {
                Some(Reverse((deadline, _))) => {
                    let wait = deadline.saturating_duration_since(now);
                    self.wake
                        .wait_timeout(timers, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.wake.wait(timers).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// The service, its thread started on first use. If the OS refuses the
/// thread, timers are still accepted and the next call tries again.
fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    static STARTED: AtomicBool = AtomicBool::new(false);
    static STARTING: Mutex<()> = Mutex::new(());
    let service = SERVICE.get_or_init(|| Service {
        timers: Mutex::new(Timers::default()),
        wake: Condvar::new(),
    });
    if !STARTED.load(Ordering::Acquire) {
        // One starter at a time, so there is never a second thread.
        let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        if !STARTED.load(Ordering::Acquire) {
            let spawned = std::thread::Builder::new()
                .name("erlangen-timers".into())
                .spawn(move || service.run());
            STARTED.store(spawned.is_ok(), Ordering::Release);
        }
    }
    service
}

fn set(delay: Duration, action: Action) -> TimerRef {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let to = match &action {
        Action::Send(_, to) | Action::Exit(_, to) => to,
    };
    let Ok(aimed_at) = aimed_at(to) else {
        // Aimed at an agent that has exited: cancelled at once.
        return TimerRef(id);
    };
    // A delay past the end of time never fires (but can be cancelled).
    let deadline = Instant::now().checked_add(delay);
    let service = service();
    let mut timers = service.lock();
    if let Some(agent) = &aimed_at {
        match timers.by_agent.get_mut(&agent.serial()) {
            // The agent carries the hook already (should it be exiting,
            // the hook waits for this lock and then finds this timer).
            Some(ids) => ids.push(id),
            None => {
                // Under the timers lock, so the hook (which takes it) runs
                // after this timer is in the table, and finds it.
                if !agent.attach_exit_hook(&EXIT_HOOK) {
                    return TimerRef(id);
                }
                timers.by_agent.insert(agent.serial(), vec![id]);
            }
        }
    }
    timers.entries.insert(id, Entry { action, aimed_at });
    if let Some(deadline) = deadline {
        let earliest = timers
            .heap
            .peek()
            .is_none_or(|Reverse((first, _))| deadline < *first);
        timers.heap.push(Reverse((deadline, id)));
        if earliest {
            service.wake.notify_one();
        }
    }
    TimerRef(id)
}

/// Sends `message` to `to` (anything [`crate::agent::send`] accepts) once
/// `delay` has passed. Never blocks and never fails: the message is
/// delivered as a send at that time would be. A timer aimed at an agent of
/// this process (not a name) is cancelled when that agent exits.
pub fn send_after(delay: Duration, message: impl Into<Term>, to: impl Into<Target>) -> TimerRef {
    set(delay, Action::Send(message.into(), to.into()))
}

/// Kills `agent` with `reason` once `delay` has passed (as
/// [`crate::agent::exit`] would then; an agent that has exited by then is
/// left alone, and a timer aimed at an agent of this process is cancelled
/// when it exits).
pub fn exit_after(delay: Duration, reason: impl Into<Term>, agent: impl Into<Target>) -> TimerRef {
    set(delay, Action::Exit(reason.into(), agent.into()))
}

/// Cancels a timer. `true` if it was stopped before it fired; `false` if
/// it has fired (or is firing right now), was cancelled already, or was
/// aimed at an agent that has exited.
pub fn cancel(timer: &TimerRef) -> bool {
    // The heap entry stays until its deadline comes up and finds no
    // entry: removing it here would cost a linear search.
    let mut timers = service().lock();
    let cancelled = timers.take(timer.0).is_some();
    timers.compact();
    cancelled
}

/// Timers set and not yet fired or cancelled.
pub fn pending() -> usize {
    service().lock().entries.len()
}
