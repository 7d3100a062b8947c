//! How an agent is started: the attach mode, [`SpawnOptions`] and the
//! agent's [`Kind`].

use super::*;

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
