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

pub mod async_agent;
mod error;
mod pool;
pub mod registry;
pub(crate) mod scheduler;
pub(crate) mod target;
mod task;

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

/// How a new or existing agent is attached to the calling agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attach {
    /// Not attached.
    #[default]
    None,
    /// Linked both ways: when either exits, the other gets an exit signal.
    Link,
    /// The caller monitors the agent (gets an exit notification when it
    /// exits), and the agent is killed when the caller exits.
    Monitor,
}

impl Attach {
    /// Parses `:link`, `:monitor` or `nil`.
    pub fn from_term(term: &Term) -> Option<Attach> {
        match term {
            Term::Nil => Some(Attach::None),
            Term::Keyword(k) if k == "LINK" => Some(Attach::Link),
            Term::Keyword(k) if k == "MONITOR" => Some(Attach::Monitor),
            _ => None,
        }
    }
}

/// How an agent ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Its function returned these values.
    Returned(Vec<Term>),
    /// It was killed, panicked, or its function returned an error: the
    /// reason.
    Exited(Term),
}

impl Outcome {
    /// The exit notification a monitor receives: `(agent :OK . values)` or
    /// `(agent :EXIT . reason)`.
    pub fn notification(&self, agent: Term) -> Term {
        match self {
            Outcome::Returned(values) => {
                let mut items = Vec::with_capacity(values.len() + 2);
                items.push(agent);
                items.push(Term::Keyword("OK".into()));
                items.extend(values.iter().cloned());
                Term::List(items)
            }
            Outcome::Exited(reason) => {
                Term::dotted(vec![agent, Term::Keyword("EXIT".into())], reason.clone())
            }
        }
    }

    /// The inverse of [`Outcome::notification`]: the agent a notification
    /// is about and how it ended, if `term` has that shape, `(agent :OK .
    /// values)` or `(agent :EXIT . reason)` (a list reason arrives spliced
    /// in: `(agent :EXIT :NOCONNECTION "h/n")` is the reason
    /// `(:NOCONNECTION "h/n")`). The agent may be a reference, an id string
    /// or a `:NAME`.
    ///
    /// ```
    /// use erlangen::{Outcome, Term};
    /// let notice = Outcome::Exited(Term::keyword("stop")).notification(Term::keyword("w"));
    /// assert_eq!(
    ///     Outcome::from_notification(&notice),
    ///     Some((Term::keyword("w"), Outcome::Exited(Term::keyword("stop"))))
    /// );
    /// ```
    pub fn from_notification(term: &Term) -> Option<(Term, Outcome)> {
        let (agent, exited, rest, tail) = Self::notification_parts(term)?;
        let outcome = if exited {
            Outcome::Exited(Term::dotted(
                rest.to_vec(),
                tail.cloned().unwrap_or(Term::Nil),
            ))
        } else {
            Outcome::Returned(rest.to_vec())
        };
        Some((agent.clone(), outcome))
    }

    /// Whether `term` has the shape of a notification (what
    /// [`Outcome::from_notification`] takes apart), without copying it: for
    /// selective receives that look at every message.
    pub fn is_notification(term: &Term) -> bool {
        Self::notification_parts(term).is_some()
    }

    /// (agent, exited, the items after the kind, the dotted tail).
    fn notification_parts(term: &Term) -> Option<(&Term, bool, &[Term], Option<&Term>)> {
        let (items, tail) = match term {
            Term::Dotted(items, tail) => (items.as_slice(), Some(&**tail)),
            Term::List(items) => (items.as_slice(), None),
            _ => return None,
        };
        let [agent, Term::Keyword(kind), rest @ ..] = items else {
            return None;
        };
        if !matches!(agent, Term::Agent(_) | Term::Str(_) | Term::Keyword(_)) {
            return None;
        }
        match (kind.as_str(), tail) {
            ("EXIT", _) => Some((agent, true, rest, tail)),
            ("OK", None) => Some((agent, false, rest, None)),
            _ => None,
        }
    }

    /// The reason linked agents are killed with: the kill reason itself, or
    /// `(:OK . values)` for a normal return (the seed kills links on every
    /// exit, normal or not).
    pub fn link_reason(&self) -> Term {
        match self {
            Outcome::Returned(values) => {
                Term::dotted(vec![Term::Keyword("OK".into())], Term::list(values.clone()))
            }
            Outcome::Exited(reason) => reason.clone(),
        }
    }
}

/// What an agent function's return value means for its exit. Implemented
/// for `()` (no values), [`Term`], [`Values`], every type convertible into
/// a term, and `Result<T, E>` where `Err(e)` exits with `e.into_reason()`.
pub trait IntoOutcome {
    /// The outcome.
    fn into_outcome(self) -> Outcome;
}

/// Several return values: `(agent :OK v1 v2 …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Values(pub Vec<Term>);

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Returned(Vec::new())
    }
}
impl IntoOutcome for Values {
    fn into_outcome(self) -> Outcome {
        Outcome::Returned(self.0)
    }
}
impl<T: Into<Term>> IntoOutcome for T {
    fn into_outcome(self) -> Outcome {
        Outcome::Returned(vec![self.into()])
    }
}
impl<T: IntoOutcome, E: IntoReason> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(v) => v.into_outcome(),
            Err(e) => Outcome::Exited(e.into_reason()),
        }
    }
}

/// Options for [`spawn_with`]: attach mode, mailbox size, name, stack size.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// How the new agent is attached to the caller.
    pub attach: Attach,
    /// Mailbox capacity (default 64).
    pub mailbox_size: usize,
    /// A name to register before the agent runs.
    pub name: Option<String>,
    /// Stack size in bytes; `None` for the default (2 MiB, Rust's own;
    /// only agents with the default stack reuse parked threads).
    pub stack_size: Option<usize>,
}

impl Default for SpawnOptions {
    fn default() -> SpawnOptions {
        SpawnOptions {
            attach: Attach::None,
            mailbox_size: mailbox::DEFAULT_MAILBOX_SIZE,
            name: None,
            stack_size: None,
        }
    }
}

impl SpawnOptions {
    /// Default options.
    #[must_use]
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }
    /// Sets the attach mode.
    #[must_use]
    pub fn attach(mut self, attach: Attach) -> SpawnOptions {
        self.attach = attach;
        self
    }
    /// Sets the mailbox capacity.
    #[must_use]
    pub fn mailbox_size(mut self, size: usize) -> SpawnOptions {
        self.mailbox_size = size;
        self
    }
    /// Registers the agent under `name` (`"logger"` or `":logger"`) before
    /// it runs.
    #[must_use]
    pub fn name(mut self, name: &str) -> SpawnOptions {
        self.name = Some(name.to_owned());
        self
    }
    /// Sets the thread's stack size.
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> SpawnOptions {
        self.stack_size = Some(bytes);
        self
    }
}

/// Who an agent tells when it exits.
#[derive(Clone)]
pub(crate) enum Peer {
    Local(Agent),
    Remote(target::RemoteRef),
    /// A function run in the exit protocol (see [`ExitHook`]).
    Hook(&'static ExitHook),
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    Local(u64),
    Remote(Arc<str>),
    Hook(&'static str),
}

impl Peer {
    pub(crate) fn key(&self) -> PeerKey {
        match self {
            Peer::Local(a) => PeerKey::Local(a.serial()),
            Peer::Remote(r) => PeerKey::Remote(Arc::clone(&r.id)),
            Peer::Hook(h) => PeerKey::Hook(h.name),
        }
    }
}

/// A one-way watch that runs a function instead of sending a notice, for
/// the layers above agents that must hear of an exit without being agents
/// themselves (the timer service; groups and global names can use it the
/// same way). Attach it with [`Agent::attach_exit_hook`]; `run` is called
/// once, in the watched agent's exit protocol, on whatever thread that
/// runs, with no agent lock held. It must be quick and must not block.
pub(crate) struct ExitHook {
    /// Tells hooks apart: one entry per hook and agent.
    pub(crate) name: &'static str,
    /// What runs when the agent exits: the agent and how it ended.
    pub(crate) run: fn(&Agent, &Outcome),
}

/// What an entry of an agent's peer set means, seen from that agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// Linked, or the monitored end of a two-way monitor: killed with our
    /// reason when we exit.
    Link,
    /// Monitors us (`Attach::Monitor`, two-way): told when we exit.
    Monitor,
    /// Watches us ([`watch`], one way): told when we exit.
    Watcher,
    /// We watch it: when we exit it only forgets us (nobody dies and
    /// nobody is told).
    Watching,
}

impl Role {
    const ALL: [Role; 4] = [Role::Link, Role::Monitor, Role::Watcher, Role::Watching];

    fn of(monitor: bool) -> Role {
        if monitor {
            Role::Monitor
        } else {
            Role::Link
        }
    }
}

/// An agent's links, monitors and watches: a short list (most agents have
/// a few), or a map once there are many (a parent of a thousand workers),
/// so both the common agent stays small and removal stays cheap.
enum PeerSet {
    Few(Vec<(PeerKey, Peer, Role)>),
    // Boxed on purpose: inline, the map would make every agent's set (and
    // so every agent) 24 bytes larger for the rare agent with many peers.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<(PeerKey, Role), Peer>>),
}

/// Past this many entries a `PeerSet` becomes a map.
const FEW_PEERS: usize = 16;

impl Default for PeerSet {
    fn default() -> PeerSet {
        PeerSet::Few(Vec::new())
    }
}

impl PeerSet {
    /// Adds `peer` in `role`, replacing an entry of the same role for the
    /// same peer.
    fn insert(&mut self, peer: Peer, role: Role) {
        let key = peer.key();
        match self {
            PeerSet::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _, r)| *k == key && *r == role) {
                    slot.1 = peer;
                } else if v.len() < FEW_PEERS {
                    v.push((key, peer, role));
                } else {
                    let mut map: HashMap<(PeerKey, Role), Peer> =
                        v.drain(..).map(|(k, p, r)| ((k, r), p)).collect();
                    map.insert((key, role), peer);
                    *self = PeerSet::Many(Box::new(map));
                }
            }
            PeerSet::Many(map) => {
                map.insert((key, role), peer);
            }
        }
    }

    /// Removes `key` in every role.
    fn remove(&mut self, key: &PeerKey) {
        match self {
            PeerSet::Few(v) => v.retain(|(k, _, _)| k != key),
            PeerSet::Many(map) => {
                for role in Role::ALL {
                    map.remove(&(key.clone(), role));
                }
            }
        }
    }

    /// Removes `key` in `role` only; `true` if it was there.
    fn remove_role(&mut self, key: &PeerKey, role: Role) -> bool {
        match self {
            PeerSet::Few(v) => {
                let before = v.len();
                v.retain(|(k, _, r)| !(k == key && *r == role));
                v.len() != before
            }
            PeerSet::Many(map) => map.remove(&(key.clone(), role)).is_some(),
        }
    }

    /// Whether `key` is here in `role`.
    fn contains(&self, key: &PeerKey, role: Role) -> bool {
        match self {
            PeerSet::Few(v) => v.iter().any(|(k, _, r)| k == key && *r == role),
            PeerSet::Many(map) => map.contains_key(&(key.clone(), role)),
        }
    }

    /// Whether `key` is here in any role.
    fn has(&self, key: &PeerKey) -> bool {
        match self {
            PeerSet::Few(v) => v.iter().any(|(k, _, _)| k == key),
            PeerSet::Many(_) => Role::ALL.iter().any(|r| self.contains(key, *r)),
        }
    }

    /// Takes the exit hooks out of the set (no allocation when there is
    /// none, as for most agents).
    fn take_hooks(&mut self) -> Vec<&'static ExitHook> {
        let mut hooks = Vec::new();
        match self {
            PeerSet::Few(v) => {
                if v.iter().any(|(_, p, _)| matches!(p, Peer::Hook(_))) {
                    v.retain(|(_, p, _)| match p {
                        Peer::Hook(h) => {
                            hooks.push(*h);
                            false
                        }
                        _ => true,
                    });
                }
            }
            PeerSet::Many(map) => map.retain(|_, p| match p {
                Peer::Hook(h) => {
                    hooks.push(*h);
                    false
                }
                _ => true,
            }),
        }
        hooks
    }

    /// Calls `f` with each entry, consuming the set.
    fn for_each(self, mut f: impl FnMut(Peer, Role)) {
        match self {
            PeerSet::Few(v) => v.into_iter().for_each(|(_, p, r)| f(p, r)),
            PeerSet::Many(map) => map.into_iter().for_each(|((_, r), p)| f(p, r)),
        }
    }

    /// (links, agents told when we exit), without the hooks and without
    /// the agents we watch.
    fn snapshot(&self) -> (Vec<Peer>, Vec<Peer>) {
        let (mut links, mut monitors) = (Vec::new(), Vec::new());
        let mut put = |peer: &Peer, role: Role| match (peer, role) {
            (Peer::Hook(_), _) | (_, Role::Watching) => {}
            (_, Role::Link) => links.push(peer.clone()),
            (_, Role::Monitor | Role::Watcher) => monitors.push(peer.clone()),
        };
        match self {
            PeerSet::Few(v) => v.iter().for_each(|(_, p, r)| put(p, *r)),
            PeerSet::Many(map) => map.iter().for_each(|((_, r), p)| put(p, *r)),
        }
        (links, monitors)
    }
}

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
    name: Option<Box<str>>,
}

pub(crate) struct Cell {
    serial: u64,
    /// An async agent's body and scheduling state (empty for threads), and
    /// the agent's kind.
    task: task::TaskSlot,
    /// Boxed: the mailbox is cache-line aligned (its owner's fields must
    /// not share a line with what senders write), and inline it would make
    /// the whole agent 64-byte aligned, padding every one of a million
    /// async agents.
    mailbox: Box<Mailbox>,
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
        let agent = Agent(Arc::new(Cell {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            task,
            mailbox: Box::new(Mailbox::new(mailbox_size)),
            attachments: Mutex::new(Attachments::default()),
            born: u64::try_from(
                SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            )
            .unwrap_or(u64::MAX),
            aid: Aid::new(),
        }));
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
        self.0.mailbox.deliver(message.into())
    }

    /// Sends several messages at once (see `Mailbox::offer_many`).
    pub(crate) fn offer_many(&self, messages: &mut Vec<Term>) -> Result<usize, ()> {
        self.0.mailbox.offer_many(messages)
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
        self.lock().name.as_deref().map(str::to_owned)
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

    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.0.mailbox
    }

    /// Delivers an exit signal: the agent ends at its next receive (or when
    /// it finishes) and its mailbox closes now.
    pub(crate) fn kill(&self, reason: Term) {
        self.0.mailbox.exit(reason);
    }

    /// Delivers an exit notification, behind the messages already queued.
    pub(crate) fn notify(&self, notice: Term) {
        self.0.mailbox.notice(notice);
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
        a.name = name.map(String::into_boxed_str);
        Ok(())
    }

    pub(crate) fn times(&self) -> (SystemTime, Option<SystemTime>) {
        let born = std::time::UNIX_EPOCH + Duration::from_nanos(self.0.born);
        (born, self.lock().ended.as_ref().map(|e| e.died))
    }
}

/// Starts an agent running `f` with default options and returns its handle
/// at once.
///
/// # Errors
/// [`SpawnError::Thread`] if the OS refuses a thread.
pub fn spawn<F, R>(f: F) -> Result<Agent, SpawnError>
where
    F: FnOnce() -> R + Send + 'static,
    R: IntoOutcome,
{
    spawn_with(&SpawnOptions::default(), f)
}

/// Starts an agent running `f` with `options`. Attaching and registering
/// happen before the agent runs, so no exit can be missed.
///
/// # Errors
/// [`SpawnError`]: no thread, a taken or invalid name, a zero mailbox.
pub fn spawn_with<F, R>(options: &SpawnOptions, f: F) -> Result<Agent, SpawnError>
where
    F: FnOnce() -> R + Send + 'static,
    R: IntoOutcome,
{
    spawn_inner(options, parent_of(options), |_| (), f)
}

/// The calling agent as the parent `options` asks to attach, if any.
fn parent_of(options: &SpawnOptions) -> Option<(Peer, bool)> {
    match options.attach {
        Attach::None => None,
        mode => Some((Peer::Local(Agent::current()), mode == Attach::Monitor)),
    }
}

/// What kind of agent this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A native thread (the original's agents): may block.
    Thread,
    /// An `async` body on the scheduler's workers: must not block.
    Async,
}

impl Kind {
    /// `:THREAD` or `:ASYNC`, for management output.
    pub fn to_term(self) -> Term {
        Term::keyword(match self {
            Kind::Thread => "thread",
            Kind::Async => "async",
        })
    }
}

/// A new agent, named and attached to `parent` as `options` and the caller
/// say, not yet running. On an error nothing is left behind.
fn new_child(
    options: &SpawnOptions,
    parent: &Option<(Peer, bool)>,
    task: task::TaskSlot,
) -> Result<Agent, SpawnError> {
    if options.mailbox_size == 0 {
        return Err(SpawnError::ZeroMailbox);
    }
    let child = Agent::with_task(options.mailbox_size, task);
    if let Some(name) = &options.name {
        if let Err(e) = crate::agent::registry::register(name, &child) {
            target::remove(&child);
            return Err(e.into());
        }
    }
    if let Some((parent, monitor)) = parent {
        // The child cannot have exited yet: attach_peer cannot fail.
        let _ = child.attach_peer(parent.clone(), *monitor);
        if let Peer::Local(parent) = parent {
            let _ = parent.attach_peer(Peer::Local(child.clone()), false);
        }
    }
    Ok(child)
}

/// As [`spawn_inner`], for an async body: the agent is queued on the
/// scheduler after `before_start`.
pub(crate) fn spawn_async_inner(
    options: &SpawnOptions,
    parent: Option<(Peer, bool)>,
    before_start: impl FnOnce(&Agent),
    body: task::Body,
) -> Result<Agent, SpawnError> {
    scheduler::check_started().map_err(SpawnError::Thread)?;
    let child = new_child(options, &parent, task::TaskSlot::new(body))?;
    before_start(&child);
    task::start(child.clone());
    Ok(child)
}

/// Spawns with `parent` (a local or remote agent, and whether it monitors)
/// attached before the agent runs; `before_start` runs after attaching and
/// before the agent's first instruction (the node layer sends its spawn
/// reply there, so the reply precedes any exit notification on the wire).
pub(crate) fn spawn_inner<F, R>(
    options: &SpawnOptions,
    parent: Option<(Peer, bool)>,
    before_start: impl FnOnce(&Agent),
    f: F,
) -> Result<Agent, SpawnError>
where
    F: FnOnce() -> R + Send + 'static,
    R: IntoOutcome,
{
    let child = new_child(options, &parent, task::TaskSlot::none())?;
    before_start(&child);
    let runner = child.clone();
    let job = Box::new(move || run(runner, f));
    if let Err(e) = pool::execute(job, options.stack_size) {
        // A local parent gets the error instead of a notification; a remote
        // one was already told the spawn worked, so it hears of the exit.
        if let Some((Peer::Local(parent), _)) = parent {
            parent.detach_peer(&PeerKey::Local(child.serial()));
            child.detach_peer(&PeerKey::Local(parent.serial()));
        }
        finish(
            &child,
            Outcome::Exited(Term::Str(format!("cannot start a thread: {e}"))),
        );
        return Err(SpawnError::Thread(e));
    }
    Ok(child)
}

/// The life of a spawned agent on its (pooled) thread.
fn run<F, R>(agent: Agent, f: F)
where
    F: FnOnce() -> R,
    R: IntoOutcome,
{
    let _runnable = RunnableGuard::enter();
    CURRENT.with(|c| *c.borrow_mut() = Some(agent.clone()));
    let result = panic::catch_unwind(AssertUnwindSafe(|| f().into_outcome()));
    // The function may have replaced its agent (`Agent::replace_current`):
    // the outcome then belongs to the replacement; the original has ended.
    let current = CURRENT
        .with(|c| c.borrow_mut().take())
        .unwrap_or_else(|| agent.clone());
    let outcome = match result {
        // Killed while busy: the kill reason wins over the return values.
        Ok(Outcome::Returned(values)) => match current.0.mailbox.pending_exit() {
            Some(reason) => Outcome::Exited(reason),
            None => Outcome::Returned(values),
        },
        Ok(exited) => exited,
        Err(payload) => Outcome::Exited(unwind_reason(payload)),
    };
    finish(&current, outcome);
    // The pooled thread outlives the job: nothing adopted may stay on it
    // (its agent would never end, its guard would keep the thread counted
    // as runnable). `replace_current` adopts nothing here; this is the
    // backstop.
    drop(ADOPTED.with(|a| a.borrow_mut().take()));
}

/// The exit reason carried by an unwind out of an agent's code, as caught
/// by `catch_unwind`: the reason of an exit signal or of [`exit_current`],
/// or a panic's message.
pub fn exit_reason(payload: Box<dyn std::any::Any + Send>) -> Term {
    unwind_reason(payload)
}

fn unwind_reason(payload: Box<dyn std::any::Any + Send>) -> Term {
    match payload.downcast::<ExitUnwind>() {
        Ok(exit) => exit.0,
        Err(payload) => {
            let text = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "panic with a non-string payload".to_owned()
            };
            Term::Str(text)
        }
    }
}

/// Runs the exit protocol once: close the mailbox, record the outcome,
/// free the name, tell links and monitors (no lock held while telling),
/// and last leave the agent tables.
fn finish(agent: &Agent, outcome: Outcome) {
    agent.0.mailbox.finish();
    end(agent, outcome);
}

impl Agent {
    /// Ends the agent now, from outside, with `reason`, whatever its code
    /// is doing: the exit protocol runs at once on the calling thread (the
    /// outcome is recorded, its name and registrations are released, its
    /// links and monitors are told, it leaves the agent tables), and it
    /// gets the exit signal `reason`. A Rust thread cannot be stopped from
    /// outside, so code still running goes on until its next receive
    /// (which ends it) or its return, as an agent that has exited: its
    /// outcome stays this one. A supervisor's brutal kill.
    pub(crate) fn end_now(&self, reason: Term) {
        self.kill(reason.clone());
        end(self, Outcome::Exited(reason));
    }
}

/// The exit protocol after the mailbox: see [`finish`]. The mailbox is
/// left to its owner when the agent is ended from outside
/// ([`Agent::end_now`]): its pending exit signal ends the code still
/// running at its next receive.
fn end(agent: &Agent, outcome: Outcome) {
    let (mut peers, named) = {
        let mut a = agent.lock();
        if a.ended.is_some() {
            return;
        }
        a.ended = Some(Box::new(Ended {
            outcome: outcome.clone(),
            died: SystemTime::now(),
        }));
        (std::mem::take(&mut a.peers), a.name.is_some())
    };

    if named {
        crate::agent::registry::release(agent);
    }
    // Hooks first: by the time anyone hears of the exit, the layers above
    // have forgotten the agent (a timer aimed at it is cancelled).
    for hook in peers.take_hooks() {
        (hook.run)(agent, &outcome);
    }
    let me = PeerKey::Local(agent.serial());
    // Built once, on first use: most agents have a link or a monitor or
    // neither, and these are allocations.
    let mut reason = None;
    let mut notice = None;
    peers.for_each(|peer, role| match (peer, role) {
        (Peer::Local(other), Role::Link) => {
            other.detach_peer(&me);
            other.kill(reason.get_or_insert_with(|| outcome.link_reason()).clone());
        }
        (Peer::Local(other), Role::Monitor | Role::Watcher) => {
            other.detach_peer(&me);
            other.notify(
                notice
                    .get_or_insert_with(|| outcome.notification(agent.to_term()))
                    .clone(),
            );
        }
        // We watched it: it forgets us, nothing more.
        (Peer::Local(other), Role::Watching) => other.detach_peer(&me),
        (Peer::Remote(to), Role::Watching) => target::remote_unwatch(agent, &to),
        (Peer::Remote(to), role) => {
            target::remote_exit_notice(agent, &to, role != Role::Link, &outcome);
        }
        // Taken out and run above.
        (Peer::Hook(_), _) => {}
    });
    // Only now: the notices above may name the agent itself (its return
    // values can hold `(agent)`), which needs its wire id until they are
    // encoded. Anything that finds it meanwhile sees it has exited.
    target::remove(agent);
}

/// Ends the calling agent now with `reason` (unwinds its stack).
fn exit_self(reason: Term) -> ! {
    let me = Agent::current();
    me.0.mailbox.close();
    panic::resume_unwind(Box::new(ExitUnwind(reason)))
}

/// Receives the next message, blocking. Exit notifications come before
/// ordinary messages.
///
/// In an async agent this would block the worker thread it runs on (and
/// every agent queued there): called there, it ends the agent at once
/// with a reason naming [`async_agent::receive`], the form to await. The
/// same holds for [`receive_timeout`] and [`receive_matching`], except a
/// zero timeout, which only polls.
///
/// # Panics
/// Does not return if the calling agent has been killed: its stack unwinds
/// and the agent exits with the kill reason (as in Erlang, an exit signal
/// ends the receiver). Spawned agents catch this; on `main` it ends the
/// program unless caught with `catch_unwind`.
pub fn receive() -> Term {
    match receive_until(None, &mut |_| true) {
        Ok(t) => t,
        Err(_) => unreachable_timeout(),
    }
}

fn unreachable_timeout() -> ! {
    // receive_until without deadline never times out; exit rather than
    // panic if that ever changed.
    exit_self(Term::keyword("timeout"))
}

/// Receives the next message, waiting at most `timeout`; zero polls.
///
/// # Errors
/// [`Timeout`] if nothing arrived in time.
pub fn receive_timeout(timeout: Duration) -> Result<Term, Timeout> {
    receive_until(mailbox::deadline_after(timeout), &mut |_| true)
}

/// Selective receive: the first message for which `matches` is true, in
/// arrival order; the others stay queued in their order. `timeout` `None`
/// waits forever.
///
/// `matches` runs while the mailbox is locked: it must only look at the
/// message (no sending or receiving).
///
/// # Errors
/// [`Timeout`] if nothing matching arrived in time.
pub fn receive_matching(
    mut matches: impl FnMut(&Term) -> bool,
    timeout: Option<Duration>,
) -> Result<Term, Timeout> {
    let deadline = timeout.and_then(mailbox::deadline_after);
    receive_until(deadline, &mut matches)
}

/// Runs `f` on the calling thread's agent without cloning its handle: a
/// receive does this on every message, and a clone would write the agent's
/// reference count, on a cache line senders use (fan-in: 7 M against 11 M
/// msgs/s measured with the clone).
fn with_current<R>(f: impl FnOnce(&Agent) -> R) -> R {
    CURRENT.with(|c| {
        if c.borrow().is_none() {
            // Adopts the thread (as `Agent::current` does) and retries.
            drop(Agent::current());
        }
        match c.borrow().as_ref() {
            Some(me) => f(me),
            None => f(&Agent::current()),
        }
    })
}

/// Ends the calling async agent, whose code called the blocking `what`
/// (which would stall its worker, and every agent queued there), with a
/// reason that names the async form to await instead.
pub(crate) fn refuse_blocking(what: &str, instead: &str) -> ! {
    exit_self(Term::Str(blocking_refused(what, instead)))
}

/// Why the blocking `what`, called in an async agent, refuses: in words
/// that name the async form to await instead.
pub(crate) fn blocking_refused(what: &str, instead: &str) -> String {
    format!(
        "{what} blocks, and this is an async agent (it would stall its worker): await {instead} instead"
    )
}

fn receive_until(
    deadline: Option<Instant>,
    matches: &mut dyn FnMut(&Term) -> bool,
) -> Result<Term, Timeout> {
    // A poll (a deadline already past) never blocks, and is allowed.
    if scheduler::on_worker() && deadline.is_none_or(|d| d > Instant::now()) {
        refuse_blocking(
            "the thread receive (erlangen::receive, receive_timeout, receive_matching)",
            "erlangen::async_agent::receive, receive_timeout or receive_matching",
        );
    }
    match with_current(|me| me.0.mailbox.receive(deadline, matches)) {
        Ok(t) => Ok(t),
        Err(Interrupt::Timeout) => Err(Timeout),
        Err(Interrupt::Exit(reason)) => exit_self(reason),
    }
}

/// Sends `message` to `to`: an [`Agent`], a `:NAME` keyword or name string,
/// an id string `"host/node/aid"`, or an agent term. Never blocks.
///
/// `Ok` does not mean the message will be received: the agent may exit
/// first, its mailbox may be full (the message is dropped and counted), its
/// node may be unreachable. An `Err` means it never will be.
///
/// # Errors
/// [`SendError`]: an unknown name, a term that is not an agent, or a message
/// holding a local-only value bound for another node.
pub fn send(message: impl Into<Term>, to: impl Into<Target>) -> Result<(), SendError> {
    let message = message.into();
    let to = to.into();
    // A handle needs no lookup: a dead agent's closed mailbox drops and
    // counts the message.
    if let Target::Agent(agent) = &to {
        agent.send(message);
        return Ok(());
    }
    match to.resolve()? {
        target::Resolved::Local(agent) => {
            agent.send(message);
            Ok(())
        }
        target::Resolved::Dead => Ok(()),
        target::Resolved::Remote(remote, id) => remote.send(&id, message),
    }
}

/// Ends an agent: the caller itself now (does not return), or another
/// agent at its next receive, closing its mailbox at once. Killing an
/// agent that has exited does nothing.
///
/// # Errors
/// [`LinkError::Target`] if `agent` names nothing.
pub fn exit(reason: impl Into<Term>, agent: impl Into<Target>) -> Result<(), LinkError> {
    let reason = reason.into();
    match agent.into().resolve()? {
        target::Resolved::Local(a) if a == Agent::current() => exit_self(reason),
        target::Resolved::Local(a) => {
            a.kill(reason);
            Ok(())
        }
        target::Resolved::Dead => Ok(()),
        target::Resolved::Remote(remote, to) => remote.exit(&to, reason),
    }
}

/// Ends the calling agent with `reason`; does not return.
pub fn exit_current(reason: impl Into<Term>) -> ! {
    exit_self(reason.into())
}

/// Attaches the calling agent to `agent`: [`Attach::Link`] links both
/// ways; [`Attach::Monitor`] makes the caller a monitor of `agent` (and
/// `agent` is killed when the caller exits). If `agent` has already exited,
/// the caller is told at once with reason `:NOPROC`: an exit signal for a
/// link, a notification for a monitor.
///
/// # Errors
/// [`LinkError::SelfLink`], or a target that names nothing.
pub fn link(agent: impl Into<Target>, mode: Attach) -> Result<(), LinkError> {
    let me = Agent::current();
    let target = agent.into();
    let monitor = match mode {
        Attach::None => return unlink(target),
        Attach::Link => false,
        Attach::Monitor => true,
    };
    match target.resolve()? {
        target::Resolved::Local(other) if other == me => Err(LinkError::SelfLink),
        target::Resolved::Local(other) => {
            // Our side first, then theirs, each under its own lock (never
            // both: see the lock order). If `other` takes its peers after
            // our attach, its exit protocol finds us and removes our side;
            // if before, our attach fails and we remove our side ourselves.
            // Either way we are told once and keep no link to a dead agent.
            // (Recording our side second left it behind when `other`
            // exited in between.)
            let _ = me.attach_peer(Peer::Local(other.clone()), false);
            if other.attach_peer(Peer::Local(me.clone()), monitor).is_err() {
                me.detach_peer(&PeerKey::Local(other.serial()));
                noproc(&me, other.to_term(), monitor);
            }
            Ok(())
        }
        target::Resolved::Dead => {
            let term = target.term().unwrap_or(Term::Nil);
            noproc(&me, term, monitor);
            Ok(())
        }
        target::Resolved::Remote(remote, id) => remote.link(&me, &id, monitor),
    }
}

/// Tells `me` that the agent it tried to attach to does not exist.
pub(crate) fn noproc(me: &Agent, agent: Term, monitor: bool) {
    let reason = Term::keyword("noproc");
    if monitor {
        me.notify(Outcome::Exited(reason).notification(agent));
    } else {
        me.kill(reason);
    }
}

/// Detaches the calling agent from `agent`, both ways.
///
/// # Errors
/// [`LinkError::SelfLink`], or a target that names nothing.
pub fn unlink(agent: impl Into<Target>) -> Result<(), LinkError> {
    let me = Agent::current();
    match agent.into().resolve()? {
        target::Resolved::Local(other) if other == me => Err(LinkError::SelfLink),
        target::Resolved::Local(other) => {
            other.detach_peer(&PeerKey::Local(me.serial()));
            me.detach_peer(&PeerKey::Local(other.serial()));
            Ok(())
        }
        target::Resolved::Dead => Ok(()),
        target::Resolved::Remote(remote, to) => {
            me.detach_peer(&PeerKey::Remote(Arc::clone(&to.id)));
            remote.unlink(&me, &to);
            Ok(())
        }
    }
}

/// Watches `agent` one way, as Erlang's `erlang:monitor(process, Agent)`:
/// when it exits, the calling agent receives the same exit notification a
/// monitor does, `(agent :OK . values)` or `(agent :EXIT . reason)`; when
/// the caller exits first, nothing happens to `agent` (unlike
/// [`Attach::Monitor`], whose monitored agent dies with its monitor). If
/// `agent` has already exited, or its node cannot be reached, the
/// notification comes at once, with reason `:NOPROC` or `(:NOCONNECTION
/// "host/node")`. Watching an agent twice is watching it once (there is
/// no reference per watch: [`unwatch`] ends it).
///
/// ```
/// use std::time::Duration;
/// use erlangen::{receive_timeout, spawn, watch, Term};
///
/// let worker = spawn(|| Term::keyword("done")).unwrap();
/// watch(&worker).unwrap();
/// let notice = receive_timeout(Duration::from_secs(5)).unwrap();
/// // (#<AGENT …> :OK :DONE), or :NOPROC if it had ended before the watch.
/// assert!(notice.to_string().ends_with(":DONE)") || notice.to_string().ends_with(":NOPROC)"));
/// ```
///
/// # Errors
/// [`LinkError::SelfLink`] for the caller itself, or a target that names
/// nothing.
pub fn watch(agent: impl Into<Target>) -> Result<(), LinkError> {
    let me = Agent::current();
    let target = agent.into();
    match target.resolve()? {
        target::Resolved::Local(other) if other == me => Err(LinkError::SelfLink),
        target::Resolved::Local(other) => {
            watch_local(&me, &other);
            Ok(())
        }
        target::Resolved::Dead => {
            noproc(&me, target.term().unwrap_or(Term::Nil), true);
            Ok(())
        }
        target::Resolved::Remote(remote, id) => remote.watch(&me, &id),
    }
}

/// `me` watches local `other` (see [`watch`]): our side first, then
/// theirs, as [`link`] does; if `other` has exited meanwhile we are told
/// `:NOPROC` and keep nothing.
pub(crate) fn watch_local(me: &Agent, other: &Agent) {
    let _ = me.attach_peer_as(Peer::Local(other.clone()), Role::Watching);
    if other
        .attach_peer_as(Peer::Local(me.clone()), Role::Watcher)
        .is_err()
    {
        me.detach_role(&PeerKey::Local(other.serial()), Role::Watching);
        noproc(me, other.to_term(), true);
    }
}

/// Ends the calling agent's watch of `agent` (see [`watch`]): no
/// notification of its exit comes after this returns, except one already
/// queued. Links and monitors between the two stay as they are (for an
/// agent of another node, its node drops every attachment of the caller
/// to it). Unwatching an agent not watched does nothing.
///
/// # Errors
/// [`LinkError::SelfLink`], or a target that names nothing.
pub fn unwatch(agent: impl Into<Target>) -> Result<(), LinkError> {
    let me = Agent::current();
    match agent.into().resolve()? {
        target::Resolved::Local(other) if other == me => Err(LinkError::SelfLink),
        target::Resolved::Local(other) => {
            unwatch_local(&me, &other);
            Ok(())
        }
        target::Resolved::Dead => Ok(()),
        target::Resolved::Remote(remote, to) => {
            remote.unwatch(&me, &to);
            Ok(())
        }
    }
}

/// Ends `me`'s watch of local `other`.
pub(crate) fn unwatch_local(me: &Agent, other: &Agent) {
    me.detach_role(&PeerKey::Local(other.serial()), Role::Watching);
    other.detach_role(&PeerKey::Local(me.serial()), Role::Watcher);
}

/// `true` when the calling thread is a worker of the async scheduler
/// (the caller is an async agent): a blocking call here would stall every
/// async agent of the worker, so blocking functions refuse at once.
pub(crate) fn on_async_worker() -> bool {
    scheduler::on_worker()
}

/// Threads now counted as runnable (running an agent, not parked in a
/// receive). For tests of the agent layer's bookkeeping; not a stable API.
#[doc(hidden)]
pub fn runnable_threads() -> usize {
    mailbox::runnable()
}

/// Drains the calling agent's mailbox, in arrival order, and returns
/// what was there (the REPL's `flush-messages` prints it).
pub fn flush_messages() -> Vec<Term> {
    Agent::current().0.mailbox.drain()
}
#[cfg(test)]
mod tests {
    /// A million waiting async agents must stay small (README: W3 alive):
    /// this catches a field added without thought before the benchmark does.
    #[test]
    fn an_agent_stays_small() {
        assert!(std::mem::size_of::<super::Cell>() <= 128);
        assert!(std::mem::size_of::<crate::mailbox::Mailbox>() <= 192);
    }
}
