//! Starting agents: [`spawn`] and [`spawn_with`], the naming and attaching
//! before an agent runs, and a thread agent's run loop on its pooled
//! thread.

use super::*;

/// Starts an agent running `f` with default options and returns its handle
/// at once.
///
/// `f` may return nothing, a term (or anything convertible into one),
/// [`Values`], or a `Result` (see [`IntoOutcome`]); a function that never
/// returns compiles as written, with no `-> ()`:
///
/// ```
/// use std::time::Duration;
/// use erlangen::{receive, receive_timeout, send, spawn, watch, Term};
///
/// let agent = spawn(|| {
///     receive();
///     panic!("boom")
/// })
/// .unwrap();
/// watch(&agent).unwrap();
/// send(1, &agent).unwrap();
/// let notice = receive_timeout(Duration::from_secs(10)).unwrap();
/// assert_eq!(notice.to_string(), format!("({} :EXIT . \"boom\")", Term::from(&agent)));
/// ```
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
pub(super) fn parent_of(options: &SpawnOptions) -> Option<(Peer, bool)> {
    match options.attach {
        Attach::None => None,
        mode => Some((Peer::Local(Agent::current()), mode == Attach::Monitor)),
    }
}

/// A new agent, named and attached to `parent` as `options` and the caller
/// say, not yet running. On an error nothing is left behind.
pub(super) fn new_child(
    options: &SpawnOptions,
    parent: &Option<(Peer, bool)>,
    task: task::TaskSlot,
) -> Result<Agent, SpawnError> {
    if options.mailbox_size == 0 {
        return Err(SpawnError::ZeroMailbox);
    }
    panics::install_hook();
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
    scheduler::start(child.clone());
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
pub(super) fn run<F, R>(agent: Agent, f: F)
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
        Ok(Outcome::Returned(values)) => match current.0.mailbox().pending_exit() {
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
