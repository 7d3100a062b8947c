//! Agent panics go to the event log, one line each (the agent, where it
//! panicked and the message), rather than the default hook's lines on
//! stderr for every agent that panics, which would flood a kernel's
//! terminal. A panic is an agent's exit reason as well: its monitors and
//! links hear of it as before.
//!
//! The hook is installed once, at the first spawn, and keeps the hook it
//! replaces (the default one, or one the program set earlier) for every
//! panic outside a spawned agent: on `main` or a test thread (which act
//! as agents once they use one, but are not spawned), on plain threads.

use std::panic::{self, PanicHookInfo};
use std::sync::Once;

use super::{Agent, ADOPTED, CURRENT};
use crate::node::eventlog::{self, LogLevel};

/// Installs the hook (the first call only).
pub(super) fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| match spawned_agent() {
            Some(agent) => log(&agent, info),
            None => previous(info),
        }));
    });
}

/// The agent the panicking thread runs, if it is a spawned one (a thread
/// agent's thread, or a worker polling an async agent). Never waits: the
/// thread may panic with anything borrowed.
fn spawned_agent() -> Option<Agent> {
    let adopted = ADOPTED
        .try_with(|a| a.try_borrow().map_or(true, |a| a.is_some()))
        .unwrap_or(true);
    if adopted {
        return None;
    }
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
        .ok()
        .flatten()
}

/// The event line: `error host/node: agent #<AGENT 1F> panicked at
/// src/x.rs:3:5: "boom"`.
fn log(agent: &Agent, info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic with a non-string payload");
    let at = info
        .location()
        .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let node = crate::node::this_node_now().unwrap_or_else(|| "-".to_owned());
    eventlog::event(
        LogLevel::Error,
        &node,
        format_args!("agent {agent:?} panicked{at}: {message:?}"),
    );
}
