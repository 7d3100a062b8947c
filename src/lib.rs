//! Erlangen: Erlang-style agents for Rust, std-only.
//!
//! An *agent* is a native thread (or an async task, see below) with a
//! bounded mailbox. Agents spawn, message, link to and monitor each other,
//! in one process or across *nodes* that find each other through a
//! per-host port mapper and talk TCP. No async runtime from outside, no
//! dependencies beyond `std` (and `getopts` for the programs).
//!
//! # Hello, world!
//!
//! ```
//! use erlangen::{receive, spawn, Agent, Term};
//!
//! let me = Agent::current(); // any thread, even main, can act as an agent
//! let echo = spawn(move || {
//!     let message = receive();
//!     me.send(Term::list(vec![Term::keyword("echo"), message]));
//! })
//! .unwrap();
//! echo.send("hello");
//! assert_eq!(receive().to_string(), "(:ECHO \"hello\")");
//! ```
//!
//! # Sending and receiving
//!
//! [`send`] never blocks and never fails loudly: `Ok` does not mean the
//! message will be received (the agent may exit first, its mailbox may be
//! full, its node unreachable), but an `Err` means it never will be (an
//! unknown name, or a local-only value bound for another node). Messages
//! from one agent to another arrive in the order they were sent.
//! [`receive_timeout`] gives [`Timeout`]; a zero timeout polls.
//! [`receive_matching`] takes the first message a predicate accepts and
//! leaves the others queued in order.
//!
//! ```
//! use std::time::Duration;
//! use erlangen::{receive_matching, receive_timeout, Agent, Term, Timeout};
//!
//! let me = Agent::current();
//! me.send(1);
//! me.send(2);
//! let two = receive_matching(|m| m.as_int() == Some(2), Some(Duration::from_secs(1)));
//! assert_eq!(two, Ok(Term::from(2)));
//! assert_eq!(receive_timeout(Duration::ZERO), Ok(Term::from(1)));
//! assert_eq!(receive_timeout(Duration::ZERO), Err(Timeout));
//! ```
//!
//! # Taking messages apart
//!
//! [`Term::decode`] turns a message into Rust values in one call, and a
//! tuple (or anything [`term::IntoTerm`]) is sent as a list; an element
//! that does not fit is a [`term::TermError`] naming it. The mapping (what
//! `NIL` means for `bool`, `Option` and `Vec`) is in [`term::convert`].
//!
//! ```
//! use erlangen::term::Keyword;
//! use erlangen::{receive, Agent, AgentRef};
//!
//! let me = Agent::current();
//! me.send((Keyword::new("square"), 7, &me));
//! let (_, n, reply_to): (Keyword, i64, AgentRef) = receive().decode().unwrap();
//! assert_eq!((n * n, reply_to), (49, me.to_term().decode().unwrap()));
//!
//! me.send((Keyword::new("square"), "seven", &me));
//! let error = receive().decode::<(Keyword, i64, AgentRef)>().unwrap_err();
//! assert_eq!(error.to_string(), "element 2 of the list: expected an integer, got \"seven\"");
//! ```
//!
//! # Links and monitors
//!
//! Spawn with [`Attach::Monitor`] and the spawner receives an exit
//! notification `(agent :OK . values)` or `(agent :EXIT . reason)`; with
//! [`Attach::Link`] either agent's exit kills the other. A panic is an
//! exit with the panic message as reason. Attaching happens before the new
//! agent runs, so no exit is missed. A monitor is two-way, as in the seed
//! (the monitored agent dies with its monitor); [`watch`] is the one-way
//! kind, Erlang's monitor.
//!
//! ```
//! use std::time::Duration;
//! use erlangen::{exit, receive, receive_timeout, spawn_with, Attach, SpawnOptions, Term};
//!
//! let monitor = SpawnOptions::new().attach(Attach::Monitor);
//! let worker = spawn_with(&monitor, || Term::from(6 * 7)).unwrap();
//! let notice = receive_timeout(Duration::from_secs(5)).unwrap();
//! assert_eq!(notice, Term::list(vec![worker.to_term(), Term::keyword("ok"), 42.into()]));
//!
//! let sleeper = spawn_with(&monitor, receive).unwrap();
//! exit(Term::keyword("stop"), &sleeper).unwrap();
//! let notice = receive_timeout(Duration::from_secs(5)).unwrap();
//! assert!(notice.to_string().ends_with(":EXIT . :STOP)"));
//! ```
//!
//! # Async agents
//!
//! [`spawn_async`] starts an agent whose body is an `async` block, run by a
//! small scheduler of worker threads: a million fit in a process, and a
//! message hand-off costs no OS wake-up. It awaits
//! [`async_agent::receive`] (and the timeout and selective forms) instead
//! of blocking, and must not block; everything else (send, links,
//! monitors, names, exits) is as for thread agents, across kinds.
//!
//! ```
//! use std::time::Duration;
//! use erlangen::{async_agent, receive_timeout, spawn_async_with, Attach, SpawnOptions, Term};
//!
//! let monitor = SpawnOptions::new().attach(Attach::Monitor);
//! let squarer = spawn_async_with(&monitor, async {
//!     let n = async_agent::receive().await.as_int().unwrap_or(0);
//!     Term::from(n * n)
//! })
//! .unwrap();
//! squarer.send(12);
//! let notice = receive_timeout(Duration::from_secs(5)).unwrap();
//! assert_eq!(notice, Term::list(vec![squarer.to_term(), Term::keyword("ok"), 144.into()]));
//! ```
//!
//! # Names, calls and nodes
//!
//! [`registry`] names agents (`:logger`); [`call`] holds the functions that
//! calls such as `(parallel-map 1+ #(1 2 3))` and other nodes may run;
//! [`node`] makes this process a node; [`kernel`] is the REPL;
//! [`management`] has `agent-stats` and `agent-tree`. The wire formats are
//! in PROTOCOL.md.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
// Denied, not forbidden: two small modules allow it, each call with a
// SAFETY note: the kernel's SIGINT handler (kernel/signal.rs) and the
// socket calls std lacks (sys.rs: a non-blocking write, a wider listen).
#![deny(unsafe_code)]

pub mod agent;
mod agent_terms;
// `crypto` and `frame` are implementation details, public only so the
// test tools (tools/, erlangen-tools) and the byte-level tests can reach
// them; they are not part of the API and may change.
pub mod call;
pub mod config;
#[doc(hidden)]
pub mod crypto;
pub mod examples;
#[doc(hidden)]
pub mod frame;
pub mod kernel;
pub(crate) mod mailbox;
pub mod management;
pub mod node;
pub mod port_mapper;
pub mod server;
pub mod supervisor;
mod sys;
pub mod term;
mod time;
pub mod timer;

pub use agent::async_agent;
pub use agent::async_agent::{spawn as spawn_async, spawn_with as spawn_async_with};
pub use agent::registry;
pub use agent::{
    exit, exit_current, flush_messages, link, receive, receive_matching, receive_timeout, send,
    spawn, spawn_with, unlink, unwatch, watch, Agent, Attach, IntoReason, Kind, LinkError,
    NameError, Outcome, RemoteError, SendError, SpawnError, SpawnOptions, Target, TargetError,
    Timeout, Values,
};
pub use call::spawn_call;
pub use term::{AgentRef, Symbol, Term};
