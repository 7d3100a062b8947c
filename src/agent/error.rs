//! Errors of the agent operations, one type per operation.

use std::fmt;
use std::io;

use crate::term::Term;

/// Why an agent could not be spawned.
#[derive(Debug)]
pub enum SpawnError {
    /// The operating system refused a new thread (see README: the kernel's
    /// thread limit, `vm.max_map_count`).
    Thread(io::Error),
    /// The requested name is taken or malformed.
    Name(NameError),
    /// The call could not be prepared (unknown function, not a call).
    Call(crate::call::CallError),
    /// The mailbox size was zero.
    ZeroMailbox,
    /// A remote spawn failed (the node layer's message says why).
    Remote(String),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Thread(e) => write!(f, "cannot start a thread for the agent: {e}"),
            SpawnError::Name(e) => write!(f, "cannot spawn: {e}"),
            SpawnError::Call(e) => write!(f, "cannot spawn: {e}"),
            SpawnError::ZeroMailbox => f.write_str("mailbox size must be at least 1"),
            SpawnError::Remote(e) => write!(f, "remote spawn failed: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

impl From<NameError> for SpawnError {
    fn from(e: NameError) -> SpawnError {
        SpawnError::Name(e)
    }
}

impl From<crate::call::CallError> for SpawnError {
    fn from(e: crate::call::CallError) -> SpawnError {
        SpawnError::Call(e)
    }
}

/// Why a term does not designate an agent.
#[derive(Debug, Clone, PartialEq)]
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
pub enum SendError {
    /// The destination does not designate an agent.
    Target(TargetError),
    /// The message holds a value that cannot leave this process.
    NotWireable(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Target(e) => write!(f, "cannot send: {e}"),
            SendError::NotWireable(e) => write!(f, "cannot send to another node: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<TargetError> for SendError {
    fn from(e: TargetError) -> SendError {
        SendError::Target(e)
    }
}

/// Why a link, unlink or exit could not be done.
#[derive(Debug)]
pub enum LinkError {
    /// An agent cannot link to itself.
    SelfLink,
    /// The target does not designate an agent.
    Target(TargetError),
    /// The remote node could not be asked (its message says why).
    Remote(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::SelfLink => f.write_str("an agent cannot link to or unlink from itself"),
            LinkError::Target(e) => e.fmt(f),
            LinkError::Remote(e) => write!(f, "remote link failed: {e}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<TargetError> for LinkError {
    fn from(e: TargetError) -> LinkError {
        LinkError::Target(e)
    }
}

/// Why a name could not be registered or used.
#[derive(Debug, Clone, PartialEq)]
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
