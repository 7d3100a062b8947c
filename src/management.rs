//! Management: `agent-stats`, `agent-tree` and the time format they use
//! (SPEC section 7). `flush-messages` is [`crate::agent::flush_messages`];
//! `connection-stats` belongs to the node layer.

use std::fmt;
use std::time::SystemTime;

use crate::agent::{target, Agent, Kind, Peer, Target, TargetError};
use crate::term::Term;

/// Counters and times of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStats {
    /// The agent.
    pub agent: Term,
    /// Registered name, if any.
    pub name: Option<String>,
    /// A thread agent or an async one.
    pub kind: Kind,
    /// Messages taken out of its mailbox.
    pub received: u64,
    /// Messages dropped: mailbox full or closed.
    pub dropped: u64,
    /// Messages and notifications waiting now.
    pub queued: usize,
    /// When it was created.
    pub birth: SystemTime,
    /// When it exited, if it has.
    pub death: Option<SystemTime>,
}

impl AgentStats {
    /// As a property list: `(:AGENT a :NAME n :KIND :THREAD|:ASYNC :RECEIVED
    /// r :DROPPED d :QUEUED q :BIRTH "…" :DEATH "…"|NIL)`.
    pub fn to_term(&self) -> Term {
        let count = |n: u64| Term::Int(i64::try_from(n).unwrap_or(i64::MAX));
        Term::plist(vec![
            ("agent", self.agent.clone()),
            (
                "name",
                self.name.as_deref().map_or(Term::Nil, Term::keyword),
            ),
            ("kind", self.kind.to_term()),
            ("received", count(self.received)),
            ("dropped", count(self.dropped)),
            ("queued", Term::from(self.queued)),
            ("birth", Term::Str(iso8601(self.birth))),
            (
                "death",
                self.death.map_or(Term::Nil, |d| Term::Str(iso8601(d))),
            ),
        ])
    }
}

/// What the operating system says of a process (Linux `/proc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident memory (`VmRSS`), KiB.
    pub resident_kib: u64,
    /// OS threads.
    pub threads: u64,
    /// Open file descriptors.
    pub descriptors: u64,
}

/// Resident memory, threads and open descriptors of process `pid`, or of
/// this process with `None`, from `/proc/PID/status` and `/proc/PID/fd`.
/// `None` where `/proc` does not have them (not Linux, a process gone).
///
/// ```
/// let me = erlangen::management::process_sample(None);
/// if cfg!(target_os = "linux") {
///     assert!(me.is_some_and(|s| s.threads >= 1));
/// }
/// ```
pub fn process_sample(pid: Option<u32>) -> Option<ProcessSample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let descriptors = std::fs::read_dir(format!("{dir}/fd")).ok()?.count() as u64;
    Some(ProcessSample {
        resident_kib: field("VmRSS")?,
        threads: field("Threads")?,
        descriptors,
    })
}

fn resolve_handle(target: Target) -> Result<Agent, TargetError> {
    match target {
        Target::Agent(a) => Ok(a),
        t => match t.resolve()? {
            target::Resolved::Local(a) => Ok(a),
            target::Resolved::Dead => Err(TargetError::Exited(
                t.term().map(|t| t.to_string()).unwrap_or_default(),
            )),
            target::Resolved::Remote(_, id) => Err(TargetError::NotAnAgent(format!(
                "{id:?} (management works on agents of this node)"
            ))),
        },
    }
}

/// Statistics of a local agent (a handle works even after it exited).
///
/// # Errors
/// [`TargetError`] if `agent` names no live local agent.
pub fn agent_stats(agent: impl Into<Target>) -> Result<AgentStats, TargetError> {
    let agent = resolve_handle(agent.into())?;
    let (received, dropped, queued) = agent.mailbox().counts();
    let (birth, death) = agent.times();
    Ok(AgentStats {
        agent: agent.to_term(),
        name: agent.name(),
        kind: agent.kind(),
        received,
        dropped,
        queued,
        birth,
        death,
    })
}

/// An agent, the agents it monitors (recursively) and its plain links.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentTree {
    /// The agent (with its name if it has one).
    pub agent: Term,
    /// Agents it monitors, each with its own tree.
    pub monitored: Vec<AgentTree>,
    /// Agents it is linked to both ways, and remote peers.
    pub links: Vec<Term>,
}

/// The tree rooted at `agent`.
///
/// # Errors
/// [`TargetError`] if `agent` names no live local agent.
pub fn agent_tree(agent: impl Into<Target>) -> Result<AgentTree, TargetError> {
    let agent = resolve_handle(agent.into())?;
    let mut seen = std::collections::HashSet::new();
    Ok(tree(&agent, &mut seen))
}

/// An agent as `agent-tree` shows it: the agent, then its name if it has
/// one, then `:ASYNC` if it is an async agent.
fn label(agent: &Agent) -> Term {
    let mut parts = vec![agent.to_term()];
    if let Some(n) = agent.name() {
        parts.push(Term::Keyword(n));
    }
    if agent.kind() == Kind::Async {
        parts.push(Kind::Async.to_term());
    }
    match parts.len() {
        1 => agent.to_term(),
        _ => Term::list(parts),
    }
}

fn tree(agent: &Agent, seen: &mut std::collections::HashSet<u64>) -> AgentTree {
    seen.insert(agent.serial());
    let (links, _) = agent.peers();
    let me = crate::agent::PeerKey::Local(agent.serial());
    let mut monitored = Vec::new();
    let mut plain = Vec::new();
    for peer in links {
        match peer {
            Peer::Local(child) => {
                // A child we monitor has us among its monitors.
                let (_, child_monitors) = child.peers();
                let is_monitored = child_monitors.iter().any(|p| p.key() == me);
                if is_monitored && !seen.contains(&child.serial()) {
                    monitored.push(tree(&child, seen));
                } else {
                    plain.push(label(&child));
                }
            }
            Peer::Remote(r) => plain.push(r.to_term()),
            // Not in a snapshot; nothing to show.
            Peer::Hook(_) => {}
        }
    }
    monitored.sort_by_key(|t| t.agent.to_string());
    plain.sort_by_key(|t| t.to_string());
    AgentTree {
        agent: label(agent),
        monitored,
        links: plain,
    }
}

impl AgentTree {
    /// As a term: `(agent (:LINKS …) subtree…)`.
    pub fn to_term(&self) -> Term {
        let mut items = vec![
            self.agent.clone(),
            Term::dotted(vec![Term::keyword("links")], Term::list(self.links.clone())),
        ];
        items.extend(self.monitored.iter().map(AgentTree::to_term));
        Term::list(items)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        write!(f, "{:width$}{}", "", self.agent, width = depth * 2)?;
        if !self.links.is_empty() {
            f.write_str("  links:")?;
            for l in &self.links {
                write!(f, " {l}")?;
            }
        }
        writeln!(f)?;
        for child in &self.monitored {
            child.write(f, depth + 1)?;
        }
        Ok(())
    }
}

impl fmt::Display for AgentTree {
    /// An indented tree, one agent per line, monitored agents below their
    /// monitor.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

/// Every live agent of this process.
pub fn agents() -> Vec<Agent> {
    target::all()
}

pub use crate::time::iso8601;
