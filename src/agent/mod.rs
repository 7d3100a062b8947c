//! Agents: a native thread plus a mailbox, with links and monitors (SPEC
//! sections 1 and 2).
//!
//! Exit semantics follow the seed (the Common Lisp Erlangen, `agent.lisp`):
//! when an agent ends, every agent in its *links* set gets an exit signal and
//! every agent in its *monitors* set gets an exit notification. `attach:
//! link` puts each agent in the other's links; `attach: monitor` puts the
//! parent in the child's monitors and the child in the parent's links, so a
//! parent that exits takes its monitored workers with it.
//!
//! Lock order: the registry lock, then an agent's `attachments` lock
//! (`registry::register` and `whereis` look at agents under it); likewise
//! the aid table lock, then an agent's lock (`target::export`). An agent's
//! lock is a leaf: nothing is locked while it is held, never another
//! agent's lock (so `link` attaches each side under that side's lock in
//! turn), nor the registry (`finish` releases the name after dropping it).
//! The mailbox lock is a leaf too. Exit signals and notifications are
//! delivered after the exiting agent's lock is released.

mod api;
pub mod async_agent;
mod error;
mod exit;
mod options;
mod outcome;
mod panics;
mod peers;
mod pool;
pub mod registry;
pub(crate) mod scheduler;
mod spawn;
pub(crate) mod target;
mod task;
mod waker;

use api::*;
pub(crate) use api::{blocking_refused, noproc, on_async_worker, refuse_blocking};
pub use api::{
    exit, exit_current, flush_messages, link, receive, receive_matching, receive_timeout,
    runnable_threads, send, unlink, unwatch, watch,
};
pub use exit::exit_reason;
use exit::*;
pub use options::{Attach, Kind, SpawnOptions};
pub use outcome::{IntoOutcome, Outcome, Values};
pub(crate) use panics::report_panics_with;
use peers::*;
pub(crate) use peers::{ExitHook, Peer, PeerKey, Role};
use spawn::*;
pub use spawn::{spawn, spawn_with};
pub(crate) use spawn::{spawn_async_inner, spawn_inner};

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Messages a mailbox holds unless the spawn asks for another size.
pub const DEFAULT_MAILBOX_SIZE: usize = mailbox::DEFAULT_MAILBOX_SIZE;

pub use error::{
    IntoReason, LinkError, NameError, RemoteError, SendError, SpawnError, TargetError, Timeout,
};
pub use target::Target;

use crate::mailbox::{self, Interrupt, Mailbox, RunnableGuard};
use crate::term::{AgentRef, Term};

/// How and when an agent ended.
struct Ended {
    outcome: Outcome,
    died: SystemTime,
}

/// What an agent's lock guards. Kept small: a million async agents each
/// have one.
#[derive(Default)]
struct Attachments {
    /// Links (killed with our reason when we exit) and monitors (notified
    /// when we exit).
    peers: PeerSet,
    ended: Option<Box<Ended>>,
    /// Boxed on purpose: one word here instead of two, since most agents
    /// have none.
    #[allow(clippy::box_collection)]
    name: Option<Box<String>>,
}

/// An agent: its mailbox, inline (one allocation per agent; what its owner
/// writes under a flood, its batch, is in an allocation of its own, made
/// when first needed), with the agent's other fields ([`Parts`]) kept in
/// the mailbox between what its owner reads per message and what senders
/// write per message (see `Mailbox`). The fields read as the cell's own
/// (`Deref`).
pub(crate) struct Cell(Mailbox<Parts>);

impl std::ops::Deref for Cell {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0.cold
    }
}

impl Cell {
    fn mailbox(&self) -> &Mailbox<Parts> {
        &self.0
    }
}

/// An agent's fields besides its mailbox.
pub(crate) struct Parts {
    serial: u64,
    /// An async agent's body and scheduling state (empty for threads), and
    /// the agent's kind.
    task: task::TaskSlot,
    attachments: Mutex<Attachments>,
    /// Birth time, nanoseconds since the Unix epoch (a `SystemTime` is
    /// twice the size, and there may be a million of these).
    born: u64,
    /// Wire id number, handed out when the agent is first named to another
    /// node (SPEC 6: "handed out when an agent is first referred to from
    /// outside").
    aid: Aid,
}

/// An agent's wire id number, set once (under the aid table's lock, see
/// `target::export`); `u64::MAX` until then. Half the size of a `OnceLock`.
pub(crate) struct Aid(AtomicU64);

impl Aid {
    const UNSET: u64 = u64::MAX;

    fn new() -> Aid {
        Aid(AtomicU64::new(Aid::UNSET))
    }

    pub(crate) fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            Aid::UNSET => None,
            aid => Some(aid),
        }
    }

    /// Sets the aid if none is set yet.
    pub(crate) fn set(&self, aid: u64) {
        let _ = self
            .0
            .compare_exchange(Aid::UNSET, aid, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A handle to an agent of this process. Cheap to clone; compares by
/// identity. Use [`Agent::to_term`] to put it in a message.
#[derive(Clone)]
pub struct Agent(Arc<Cell>);

impl PartialEq for Agent {
    fn eq(&self, other: &Agent) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Agent {}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#<AGENT {}>", self.0.serial)
    }
}

impl From<&Agent> for Term {
    fn from(agent: &Agent) -> Term {
        agent.to_term()
    }
}
impl From<Agent> for Term {
    fn from(agent: Agent) -> Term {
        agent.to_term()
    }
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: RefCell<Option<Agent>> = const { RefCell::new(None) };
    /// For threads not started by `spawn` that act as agents (`main`): ends
    /// their agent when the thread ends.
    static ADOPTED: RefCell<Option<AdoptedGuard>> = const { RefCell::new(None) };
}

struct AdoptedGuard {
    agent: Agent,
    _runnable: RunnableGuard,
}

impl Drop for AdoptedGuard {
    fn drop(&mut self) {
        finish(&self.agent, Outcome::Returned(Vec::new()));
    }
}

/// Unwinding payload that carries an exit reason out of an agent's stack.
/// Raised with `resume_unwind`, which skips the panic hook: exits are not
/// crashes and print nothing.
struct ExitUnwind(Term);

impl Agent {
    fn new(mailbox_size: usize) -> Agent {
        Agent::with_task(mailbox_size, task::TaskSlot::none())
    }

    fn with_task(mailbox_size: usize, task: task::TaskSlot) -> Agent {
        let parts = Parts {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            task,
            attachments: Mutex::new(Attachments::default()),
            born: u64::try_from(
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            )
            .unwrap_or(u64::MAX),
            aid: Aid::new(),
        };
        let agent = Agent(Arc::new(Cell(Mailbox::with(mailbox_size, parts))));
        target::insert(&agent);
        agent
    }

    /// The calling thread's agent. A thread not started by [`spawn`] (such
    /// as `main`) becomes an agent on first use, with a mailbox of the
    /// default size.
    pub fn current() -> Agent {
        if let Some(agent) = CURRENT.with(|c| c.borrow().clone()) {
            return agent;
        }
        let agent = Agent::new(mailbox::DEFAULT_MAILBOX_SIZE);
        CURRENT.with(|c| *c.borrow_mut() = Some(agent.clone()));
        let guard = AdoptedGuard {
            agent: agent.clone(),
            _runnable: RunnableGuard::enter(),
        };
        ADOPTED.with(|a| *a.borrow_mut() = Some(guard));
        agent
    }

    /// Ends the calling thread's agent with `reason` (if it has not ended
    /// yet) and gives the thread a fresh one. The REPL uses this after its
    /// agent was killed, as Erlang's shell starts a new shell process.
    ///
    /// On a thread started by [`spawn`] the replacement is that thread's
    /// agent from then on: it exits with the outcome of the spawned
    /// function when that returns.
    pub fn replace_current(reason: Term) -> Agent {
        let old = CURRENT.with(|c| c.borrow_mut().take());
        if let Some(old) = &old {
            finish(old, Outcome::Exited(reason));
        }
        let adopted = ADOPTED.with(|a| a.borrow_mut().take());
        if old.is_some() && adopted.is_none() {
            // A spawned agent's (pooled) thread: `run` ends whatever agent
            // is current when the job returns, and its guard already counts
            // the thread as runnable. Adopting here would leave an agent
            // and a runnable count behind on the pooled thread.
            let fresh = Agent::new(mailbox::DEFAULT_MAILBOX_SIZE);
            CURRENT.with(|c| *c.borrow_mut() = Some(fresh.clone()));
            return fresh;
        }
        drop(adopted);
        Agent::current()
    }

    /// Whether this is a thread agent or an async one.
    pub fn kind(&self) -> Kind {
        self.0.task.kind()
    }

    pub(crate) fn serial(&self) -> u64 {
        self.0.serial
    }

    /// The id other nodes know this agent by, `"host/node/aid"` (aid in
    /// hexadecimal, handed out on first use, SPEC section 6): what it
    /// prints as on another node, and what any call taking an agent
    /// accepts. `None` while this process is not a node.
    pub fn id(&self) -> Option<String> {
        target::id_of(self)
    }

    /// This agent as a term, for messages: `#<AGENT …>` locally, its id
    /// string once it crosses to another node.
    pub fn to_term(&self) -> Term {
        Term::Agent(AgentRef::Local(self.0.serial))
    }

    /// Sends a message to this agent. Never blocks; a full or closed
    /// mailbox drops the message and counts the drop. Returns whether the
    /// message was queued (which does not mean it will be received).
    pub fn send(&self, message: impl Into<Term>) -> bool {
        self.0.mailbox().deliver(message.into())
    }

    /// Sends several messages at once (see `Mailbox::offer_many`).
    pub(crate) fn offer_many(&self, messages: &mut Vec<Term>) -> Result<usize, ()> {
        self.0.mailbox().offer_many(messages)
    }

    /// `true` until the agent has exited.
    pub fn is_alive(&self) -> bool {
        self.lock().ended.is_none()
    }

    /// How the agent ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().ended.as_ref().map(|e| e.outcome.clone())
    }

    /// The agent's registered name, if any (upper-case, without colon).
    pub fn name(&self) -> Option<String> {
        self.lock().name.as_deref().cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Attachments> {
        self.0.attachments.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn aid(&self) -> u64 {
        match self.0.aid.get() {
            Some(aid) => aid,
            None => target::export(self),
        }
    }

    pub(crate) fn mailbox(&self) -> &Mailbox<Parts> {
        self.0.mailbox()
    }

    /// Delivers an exit signal: the agent ends at its next receive (or when
    /// it finishes) and its mailbox closes now.
    pub(crate) fn kill(&self, reason: Term) {
        self.0.mailbox().exit(reason);
    }

    /// Delivers an exit notification, behind the messages already queued.
    pub(crate) fn notify(&self, notice: Term) {
        self.0.mailbox().notice(notice);
    }

    /// Adds `peer` to this agent's links (`monitor == false`) or monitors.
    /// Returns the outcome instead if the agent has already exited.
    pub(crate) fn attach_peer(&self, peer: Peer, monitor: bool) -> Result<(), Outcome> {
        self.attach_peer_as(peer, Role::of(monitor))
    }

    /// Adds `peer` to this agent's peer set in `role`. Returns the outcome
    /// instead if the agent has already exited.
    pub(crate) fn attach_peer_as(&self, peer: Peer, role: Role) -> Result<(), Outcome> {
        let mut a = self.lock();
        if let Some(ended) = &a.ended {
            return Err(ended.outcome.clone());
        }
        a.peers.insert(peer, role);
        Ok(())
    }

    /// Removes `key` from this agent's peer set, in every role.
    pub(crate) fn detach_peer(&self, key: &PeerKey) {
        self.lock().peers.remove(key);
    }

    /// Removes `key` in `role` only; `true` if it was there.
    pub(crate) fn detach_role(&self, key: &PeerKey, role: Role) -> bool {
        self.lock().peers.remove_role(key, role)
    }

    /// Whether `key` is in this agent's peer set in `role`.
    pub(crate) fn has_role(&self, key: &PeerKey, role: Role) -> bool {
        self.lock().peers.contains(key, role)
    }

    /// Whether `key` is in this agent's peer set in any role.
    pub(crate) fn has_peer(&self, key: &PeerKey) -> bool {
        self.lock().peers.has(key)
    }

    /// Attaches `hook`: it runs when this agent exits (see [`ExitHook`]).
    /// `false` if the agent has exited already (the hook will not run).
    /// Attaching the same hook twice is attaching it once.
    pub(crate) fn attach_exit_hook(&self, hook: &'static ExitHook) -> bool {
        self.attach_peer_as(Peer::Hook(hook), Role::Watcher).is_ok()
    }

    /// Detaches `hook`; it will not run for this agent.
    pub(crate) fn detach_exit_hook(&self, hook: &'static ExitHook) {
        self.detach_role(&PeerKey::Hook(hook.name), Role::Watcher);
    }

    /// (links, monitors) now, for `agent-tree`.
    pub(crate) fn peers(&self) -> (Vec<Peer>, Vec<Peer>) {
        self.lock().peers.snapshot()
    }

    pub(crate) fn set_name(&self, name: Option<String>) -> Result<(), NameError> {
        let mut a = self.lock();
        if a.ended.is_some() {
            return Err(NameError::Dead(name.unwrap_or_default()));
        }
        if let (Some(old), Some(_)) = (&a.name, &name) {
            return Err(NameError::AlreadyNamed(old.to_string()));
        }
        a.name = name.map(Box::new);
        Ok(())
    }

    pub(crate) fn times(&self) -> (SystemTime, Option<SystemTime>) {
        let born = std::time::UNIX_EPOCH + Duration::from_nanos(self.0.born);
        (born, self.lock().ended.as_ref().map(|e| e.died))
    }
}

#[cfg(test)]
mod tests {
    /// A million waiting async agents must stay small (README: W3 alive):
    /// this catches a field added without thought before the benchmark does.
    #[test]
    fn an_agent_stays_small() {
        // One allocation of at most 232 bytes with the `Arc`'s counts, a
        // 240-byte malloc chunk: with a 32-byte body and the serial table,
        // under 320 bytes a parked agent.
        assert!(std::mem::size_of::<super::Cell>() <= 216);
        assert!(std::mem::size_of::<crate::mailbox::Mailbox>() <= 120);
    }
}
