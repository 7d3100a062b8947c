//! Errors of the agent operations, one type per operation.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::term::{EncodeError, Term};

/// Why an agent could not be spawned.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// The operating system refused a new thread, or the process is at its
    /// agent-thread ceiling (see README: `vm.max_map_count`,
    /// `ERLANGEN_MAX_THREADS`).
    Thread(io::Error),
    /// The requested name is taken or malformed.
    Name(NameError),
    /// The mailbox size was zero.
    ZeroMailbox,
    /// Spawning on another node failed.
    Remote(RemoteError),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Thread(e) => write!(f, "cannot start a thread for the agent: {e}"),
            SpawnError::Name(e) => write!(f, "cannot spawn: {e}"),
            SpawnError::ZeroMailbox => f.write_str("mailbox size must be at least 1"),
            SpawnError::Remote(e) => write!(f, "remote spawn failed: {e}"),
        }
    }
}

impl Error for SpawnError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SpawnError::Thread(e) => Some(e),
            SpawnError::Name(e) => Some(e),
            SpawnError::Remote(e) => Some(e),
            SpawnError::ZeroMailbox => None,
        }
    }
}

impl From<NameError> for SpawnError {
    fn from(e: NameError) -> SpawnError {
        SpawnError::Name(e)
    }
}

impl From<RemoteError> for SpawnError {
    fn from(e: RemoteError) -> SpawnError {
        SpawnError::Remote(e)
    }
}

/// Why an operation on another node (spawn, link, exit) could not be done.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteError {
    /// This process is not a node (call `node` first).
    NotANode,
    /// The node cannot be reached now: no such node, its host or port
    /// mapper does not answer, the handshake failed, or the connection was
    /// lost while waiting.
    Unreachable {
        /// `"host/node"`.
        node: String,
        /// What went wrong, as the node layer saw it.
        reason: String,
    },
    /// The node answered with an error (an unknown function, an agent it
    /// cannot start); its words.
    Refused {
        /// `"host/node"`.
        node: String,
        /// The other node's message.
        reason: String,
    },
    /// No answer came in time.
    NoReply {
        /// `"host/node"`.
        node: String,
        /// How long the caller waited (`NodeOptions::spawn_timeout`).
        waited: Duration,
    },
    /// A term of the request cannot go on the wire (a local value, one
    /// that receivers would refuse).
    Unsendable(EncodeError),
    /// Called in an async agent: waiting for the other node's answer would
    /// stall every async agent of the worker. The function that refused.
    WouldBlock(&'static str),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::NotANode => f.write_str("this process is not a node (call node first)"),
            RemoteError::Unreachable { node, reason } => {
                write!(f, "{node} is unreachable: {reason}")
            }
            RemoteError::Refused { node, reason } => write!(f, "{node} answered: {reason}"),
            RemoteError::NoReply { node, waited } => {
                write!(f, "no reply from {node} within {waited:?} (spawn_timeout)")
            }
            RemoteError::Unsendable(e) => write!(f, "the request cannot be sent: {e}"),
            RemoteError::WouldBlock(function) => write!(
                f,
                "{function} waits for the other node's answer and would stall this async \
                 agent's worker; call it from a thread agent (spawn one to do it and send \
                 you the result)"
            ),
        }
    }
}

impl Error for RemoteError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RemoteError::Unsendable(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a term does not designate an agent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TargetError {
    /// No agent is registered under this name.
    UnknownName(String),
    /// The term is not an agent, a `:NAME` keyword or an id string.
    NotAnAgent(String),
    /// The id string names another node, and this process is not a node.
    NotDistributed(String),
    /// The agent has exited (for operations that need a live agent).
    Exited(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::UnknownName(n) => write!(f, "no agent is registered as :{n}"),
            TargetError::NotAnAgent(t) => write!(
                f,
                "{t} is not an agent (expected an agent, a :NAME keyword or an id string \"host/node/aid\")"
            ),
            TargetError::Exited(a) => write!(f, "{a} has exited"),
            TargetError::NotDistributed(id) => write!(
                f,
                "{id:?} is on another node, and this process is not a node (call node first)"
            ),
        }
    }
}

impl std::error::Error for TargetError {}

/// Why a message could not be sent. `Ok` from a send does not mean the
/// message will be received (the agent may exit first, its mailbox may be
/// full, its node may be unreachable); an `Err` means it never will be.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The destination does not designate an agent.
    Target(TargetError),
    /// The message cannot go to another node: it holds a value that only
    /// makes sense in this process, or is deeper or bigger than receivers
    /// accept.
    NotWireable(EncodeError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Target(e) => write!(f, "cannot send: {e}"),
            SendError::NotWireable(e) => write!(f, "cannot send to another node: {e}"),
        }
    }
}

impl Error for SendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SendError::Target(e) => Some(e),
            SendError::NotWireable(e) => Some(e),
        }
    }
}

impl From<TargetError> for SendError {
    fn from(e: TargetError) -> SendError {
        SendError::Target(e)
    }
}

/// Why a link, unlink or exit could not be done.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkError {
    /// An agent cannot link to itself.
    SelfLink,
    /// The target does not designate an agent.
    Target(TargetError),
    /// The other node could not be asked.
    Remote(RemoteError),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::SelfLink => f.write_str("an agent cannot link to or unlink from itself"),
            LinkError::Target(e) => e.fmt(f),
            LinkError::Remote(e) => write!(f, "remote operation failed: {e}"),
        }
    }
}

impl Error for LinkError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LinkError::SelfLink => None,
            LinkError::Target(e) => Some(e),
            LinkError::Remote(e) => Some(e),
        }
    }
}

impl From<RemoteError> for LinkError {
    fn from(e: RemoteError) -> LinkError {
        LinkError::Remote(e)
    }
}

impl From<TargetError> for LinkError {
    fn from(e: TargetError) -> LinkError {
        LinkError::Target(e)
    }
}

/// Why a name could not be registered or used.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NameError {
    /// Another agent holds the name.
    Taken(String),
    /// The agent has exited.
    Dead(String),
    /// The agent already has a (different) name.
    AlreadyNamed(String),
    /// Empty, or holds a character names cannot have (`/`, space, …).
    Invalid(String),
    /// No agent has this name.
    Unknown(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Taken(n) => write!(f, "the name :{n} is already registered"),
            NameError::Dead(n) => write!(f, "cannot register :{n}: the agent has exited"),
            NameError::AlreadyNamed(n) => write!(f, "the agent is already registered as :{n}"),
            NameError::Invalid(n) => write!(
                f,
                "{n:?} is not a valid name (use a keyword such as :logger; no '/', spaces or control characters)"
            ),
            NameError::Unknown(n) => write!(f, "no agent is registered as :{n}"),
        }
    }
}

impl std::error::Error for NameError {}

/// `receive` with a timeout found nothing in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout;

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for a message")
    }
}

impl std::error::Error for Timeout {}

/// Turns an error into an agent's exit reason, so an agent function can
/// return `Result<_, E>` and `?` its way out: `Err(e)` exits with
/// `e.into_reason()`.
pub trait IntoReason {
    /// The exit reason term.
    fn into_reason(self) -> Term;
}

impl IntoReason for Term {
    fn into_reason(self) -> Term {
        self
    }
}
impl IntoReason for String {
    fn into_reason(self) -> Term {
        Term::Str(self)
    }
}
impl IntoReason for &str {
    fn into_reason(self) -> Term {
        Term::from(self)
    }
}
impl IntoReason for Timeout {
    /// `:TIMEOUT`, as the seed's unhandled timeout condition.
    fn into_reason(self) -> Term {
        Term::keyword("timeout")
    }
}
impl IntoReason for SpawnError {
    fn into_reason(self) -> Term {
        Term::Str(self.to_string())
    }
}
impl IntoReason for SendError {
    fn into_reason(self) -> Term {
        Term::Str(self.to_string())
    }
}
impl IntoReason for LinkError {
    fn into_reason(self) -> Term {
        Term::Str(self.to_string())
    }
}
impl IntoReason for NameError {
    fn into_reason(self) -> Term {
        Term::Str(self.to_string())
    }
}
impl IntoReason for TargetError {
    fn into_reason(self) -> Term {
        Term::Str(self.to_string())
    }
}
