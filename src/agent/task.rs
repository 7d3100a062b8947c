//! An async agent's task: its future, the state that keeps it queued at
//! most once, and one poll of it on a worker.
//!
//! The agent itself is the task: `Cell` implements `Wake`, so a waker is
//! the agent's `Arc` and waking it queues the agent on the scheduler. States
//! (one `AtomicU8`):
//!
//! ```text
//! IDLE --wake--> SCHEDULED --worker--> RUNNING --Pending--> IDLE
//!                    ^                    |  \--wake--> NOTIFIED --end of poll--> SCHEDULED
//!                    |                    \--Ready/exit--> DONE
//! ```
//!
//! A wake while the agent runs only marks it NOTIFIED, and the worker queues
//! it again when the poll ends, so an agent is never in two queues nor
//! polled by two workers at once.
//!
//! This module is a leaf below the scheduler: it knows the task's state
//! and how to poll it once, and the scheduler (`scheduler.rs`) knows the
//! queues, queues a woken agent (`impl Wake for Cell` is there) and calls
//! [`run`].

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use super::{finish, unwind_reason, Agent, IntoOutcome, Kind, Outcome, CURRENT};

const IDLE: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// An async agent's body as the scheduler sees it: a future whose output
/// becomes the agent's exit outcome. A trait rather than a wrapping future,
/// so the box holds the user's future and nothing more.
pub(crate) trait AgentBody: Send {
    fn poll_outcome(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome>;
}

impl<F> AgentBody for F
where
    F: Future + Send,
    F::Output: IntoOutcome,
{
    fn poll_outcome(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.poll(cx).map(IntoOutcome::into_outcome)
    }
}

/// An async agent's body, boxed once at spawn.
pub(crate) type Body = Pin<Box<dyn AgentBody>>;

/// The task part of an agent (unused by thread agents, which are DONE from
/// the start).
pub(crate) struct TaskSlot {
    state: AtomicU8,
    /// Here, in the state's padding, to keep agents small.
    kind: Kind,
    future: Mutex<Option<Body>>,
}

impl TaskSlot {
    /// The slot of a thread agent: never scheduled.
    pub(crate) fn none() -> TaskSlot {
        TaskSlot {
            state: AtomicU8::new(DONE),
            kind: Kind::Thread,
            future: Mutex::new(None),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The slot of a new async agent, ready to be queued once.
    pub(crate) fn new(body: Body) -> TaskSlot {
        TaskSlot {
            state: AtomicU8::new(SCHEDULED),
            kind: Kind::Async,
            future: Mutex::new(Some(body)),
        }
    }

    /// A wake: `true` if the caller must queue the agent.
    pub(crate) fn wake(&self) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let next = match state {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next == SCHEDULED,
                Err(now) => state = now,
            }
        }
    }

    /// A worker starts a poll: `false` if the agent is not queued (done).
    fn begin(&self) -> bool {
        self.state
            .compare_exchange(SCHEDULED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The poll returned `Pending`: `true` if the agent was woken meanwhile
    /// and must be queued again.
    fn end(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(_) => {
                // NOTIFIED: only this worker changes it from here.
                self.state.store(SCHEDULED, Ordering::Release);
                true
            }
        }
    }
}

/// Polls `agent` once, on the calling worker. Returns the agent when it
/// was woken during the poll and must be queued again (the scheduler
/// queues it: this module knows the task, not the queues).
pub(crate) fn run(agent: Agent) -> Option<Agent> {
    if !agent.0.task.begin() {
        return None;
    }
    // The agent is moved into CURRENT for the poll and taken back after,
    // rather than cloned: a clone and its drop are two locked operations on
    // the reference count, on every message hand-off.
    let previous = CURRENT.with(|c| c.replace(Some(agent)));
    let polled = CURRENT.with(|c| {
        let current = c.borrow();
        let Some(me) = current.as_ref() else {
            return Ok(Poll::Pending);
        };
        let mut slot = me.0.task.future.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            // The waker borrows the handle in CURRENT, which stays there
            // (borrowed) for the whole poll.
            Some(body) => super::waker::with_waker(&me.0, |waker| {
                let mut cx = Context::from_waker(waker);
                panic::catch_unwind(AssertUnwindSafe(|| body.as_mut().poll_outcome(&mut cx)))
            }),
            None => Ok(Poll::Pending),
        }
    });
    let agent = CURRENT.with(|c| c.replace(previous))?;
    match polled {
        Ok(Poll::Pending) => agent.0.task.end().then_some(agent),
        Ok(Poll::Ready(outcome)) => {
            complete(&agent, outcome);
            None
        }
        // A panic, or an exit (an exit signal taken by a receive, `exit`
        // on itself): the reason rides the unwind, as for thread agents.
        Err(payload) => {
            complete(&agent, Outcome::Exited(unwind_reason(payload)));
            None
        }
    }
}

/// The body ended: drop it (its destructors run now, before anyone hears
/// of the exit), then run the exit protocol.
fn complete(agent: &Agent, outcome: Outcome) {
    let cell = &agent.0;
    cell.task.state.store(DONE, Ordering::Release);
    let body = cell
        .task
        .future
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    // Dropped with this agent current, so destructors that send or look at
    // `Agent::current()` see it.
    let previous = CURRENT.with(|c| c.replace(Some(agent.clone())));
    let dropped = panic::catch_unwind(AssertUnwindSafe(|| drop(body)));
    CURRENT.with(|c| *c.borrow_mut() = previous);
    let outcome = match (outcome, dropped) {
        (_, Err(payload)) => Outcome::Exited(unwind_reason(payload)),
        // Killed while busy: the kill reason wins over the return values.
        (Outcome::Returned(values), Ok(())) => match cell.mailbox().pending_exit() {
            Some(reason) => Outcome::Exited(reason),
            None => Outcome::Returned(values),
        },
        (exited, Ok(())) => exited,
    };
    finish(agent, outcome);
}
