//! What an agent's code calls: receive (plain, with a timeout, selective),
//! send, exit, link and unlink, watch and unwatch.

use super::*;

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

pub(super) fn unreachable_timeout() -> ! {
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
pub(super) fn with_current<R>(f: impl FnOnce(&Agent) -> R) -> R {
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

pub(super) fn receive_until(
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
    match with_current(|me| me.0.mailbox().receive(deadline, matches)) {
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
    Agent::current().0.mailbox().drain()
}
