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
//!
//! The line goes to the reporter a layer above registered
//! ([`report_panics_with`]: the node's event log does, when a node starts
//! or a log level is set, so it carries the time, level and node); with
//! none, it is written to stderr as it is.

use std::fmt;
use std::io::Write;
use std::panic::{self, PanicHookInfo};
use std::sync::{Once, OnceLock};

use super::{Agent, ADOPTED, CURRENT};

/// Writes one agent-panic line (`agent #<AGENT 1F> panicked at …`).
pub(crate) type Reporter = fn(fmt::Arguments<'_>);

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Sends agent-panic lines to `reporter` from now on (the first call
/// only).
pub(crate) fn report_panics_with(reporter: Reporter) {
    let _ = REPORTER.set(reporter);
}

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

/// The line: `agent #<AGENT 1F> panicked at src/x.rs:3:5: "boom"`.
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
    match REPORTER.get() {
        Some(report) => report(format_args!("agent {agent:?} panicked{at}: {message:?}")),
        None => {
            let line = format!("agent {agent:?} panicked{at}: {message:?}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}
