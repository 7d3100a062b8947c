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
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Messages a mailbox holds unless the spawn asks for another size.
pub const DEFAULT_MAILBOX_SIZE: usize = mailbox::DEFAULT_MAILBOX_SIZE;

pub use error::{
    IntoReason, LinkError, NameError, RemoteError, SendError, SpawnError, TargetError, Timeout,
};
pub use target::Target;

use crate::mailbox::{self, Interrupt, Mailbox, RunnableGuard, Signal};
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
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    Local(u64),
    Remote(Arc<str>),
}

impl Peer {
    pub(crate) fn key(&self) -> PeerKey {
        match self {
            Peer::Local(a) => PeerKey::Local(a.serial()),
            Peer::Remote(r) => PeerKey::Remote(Arc::clone(&r.id)),
        }
    }
}

#[derive(Default)]
struct Attachments {
    /// Killed with our reason when we exit.
    links: HashMap<PeerKey, Peer>,
    /// Notified when we exit.
    monitors: HashMap<PeerKey, Peer>,
    outcome: Option<Outcome>,
    died: Option<SystemTime>,
    name: Option<String>,
}

pub(crate) struct Cell {
    serial: u64,
    kind: Kind,
    /// An async agent's body and scheduling state (empty for threads).
    task: task::TaskSlot,
    mailbox: Mailbox,
    attachments: Mutex<Attachments>,
    born: SystemTime,
    /// Wire id number, handed out when the agent is first named to another
    /// node (SPEC 6: "handed out when an agent is first referred to from
    /// outside").
    aid: OnceLock<u64>,
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
        write!(f, "#<AGENT {:X}>", self.0.serial)
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
        Agent::with_task(mailbox_size, Kind::Thread, task::TaskSlot::none())
    }

    fn with_task(mailbox_size: usize, kind: Kind, task: task::TaskSlot) -> Agent {
        let agent = Agent(Arc::new(Cell {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            kind,
            task,
            mailbox: Mailbox::new(mailbox_size),
            attachments: Mutex::new(Attachments::default()),
            born: SystemTime::now(),
            aid: OnceLock::new(),
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
        self.0.kind
    }

    pub(crate) fn serial(&self) -> u64 {
        self.0.serial
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
        self.lock().outcome.is_none()
    }

    /// How the agent ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome.clone()
    }

    /// The agent's registered name, if any (upper-case, without colon).
    pub fn name(&self) -> Option<String> {
        self.lock().name.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Attachments> {
        self.0.attachments.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn aid(&self) -> u64 {
        match self.0.aid.get() {
            Some(aid) => *aid,
            None => target::export(self),
        }
    }

    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.0.mailbox
    }

    /// Delivers an exit signal: the agent ends at its next receive (or when
    /// it finishes) and its mailbox closes now.
    pub(crate) fn kill(&self, reason: Term) {
        self.0.mailbox.signal(Signal::Exit(reason));
    }

    /// Delivers an exit notification on the priority lane.
    pub(crate) fn notify(&self, notice: Term) {
        self.0.mailbox.signal(Signal::Notice(notice));
    }

    /// Adds `peer` to this agent's links (`monitor == false`) or monitors.
    /// Returns the outcome instead if the agent has already exited.
    pub(crate) fn attach_peer(&self, peer: Peer, monitor: bool) -> Result<(), Outcome> {
        let mut a = self.lock();
        if let Some(outcome) = &a.outcome {
            return Err(outcome.clone());
        }
        let set = if monitor {
            &mut a.monitors
        } else {
            &mut a.links
        };
        set.insert(peer.key(), peer);
        Ok(())
    }

    /// Removes `key` from this agent's links and monitors.
    pub(crate) fn detach_peer(&self, key: &PeerKey) {
        let mut a = self.lock();
        a.links.remove(key);
        a.monitors.remove(key);
    }

    /// (links, monitors) now, for `agent-tree`.
    pub(crate) fn peers(&self) -> (Vec<Peer>, Vec<Peer>) {
        let a = self.lock();
        (
            a.links.values().cloned().collect(),
            a.monitors.values().cloned().collect(),
        )
    }

    pub(crate) fn set_name(&self, name: Option<String>) -> Result<(), NameError> {
        let mut a = self.lock();
        if a.outcome.is_some() {
            return Err(NameError::Dead(name.unwrap_or_default()));
        }
        if let (Some(old), Some(_)) = (&a.name, &name) {
            return Err(NameError::AlreadyNamed(old.clone()));
        }
        a.name = name;
        Ok(())
    }

    pub(crate) fn times(&self) -> (SystemTime, Option<SystemTime>) {
        (self.0.born, self.lock().died)
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
    kind: Kind,
    task: task::TaskSlot,
) -> Result<Agent, SpawnError> {
    if options.mailbox_size == 0 {
        return Err(SpawnError::ZeroMailbox);
    }
    let child = Agent::with_task(options.mailbox_size, kind, task);
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
    let child = new_child(options, &parent, Kind::Async, task::TaskSlot::new(body))?;
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
    let child = new_child(options, &parent, Kind::Thread, task::TaskSlot::none())?;
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
    let (links, monitors, named) = {
        let mut a = agent.lock();
        if a.outcome.is_some() {
            return;
        }
        a.outcome = Some(outcome.clone());
        a.died = Some(SystemTime::now());
        (
            std::mem::take(&mut a.links),
            std::mem::take(&mut a.monitors),
            a.name.is_some(),
        )
    };
    if named {
        crate::agent::registry::release(agent);
    }
    let me = PeerKey::Local(agent.serial());
    let reason = outcome.link_reason();
    for (_, peer) in links {
        match peer {
            Peer::Local(other) => {
                other.detach_peer(&me);
                other.kill(reason.clone());
            }
            Peer::Remote(to) => target::remote_exit_notice(agent, &to, false, &outcome),
        }
    }
    if !monitors.is_empty() {
        let notice = outcome.notification(agent.to_term());
        for (_, peer) in monitors {
            match peer {
                Peer::Local(other) => {
                    other.detach_peer(&me);
                    other.notify(notice.clone());
                }
                Peer::Remote(to) => target::remote_exit_notice(agent, &to, true, &outcome),
            }
        }
    }
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

fn receive_until(
    deadline: Option<Instant>,
    matches: &mut dyn FnMut(&Term) -> bool,
) -> Result<Term, Timeout> {
    let me = Agent::current();
    match me.0.mailbox.receive(deadline, matches) {
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

/// Threads now counted as runnable (running an agent, not parked in a
/// receive). For tests of the agent layer's bookkeeping; not a stable API.
#[doc(hidden)]
pub fn runnable_threads() -> usize {
    mailbox::runnable()
}

/// Drains the calling agent's mailbox, notifications first, and returns
/// what was there (the REPL's `flush-messages` prints it).
pub fn flush_messages() -> Vec<Term> {
    Agent::current().0.mailbox.drain()
}
