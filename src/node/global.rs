//! Cluster-wide names (Erlang's `global`): a name held by one agent at a
//! time in the whole connected cluster, usable from every connected node.
//!
//! **Registration is local-first and announced.** A node refuses a name it
//! knows to be held by another agent (its own or one a peer announced);
//! otherwise it records the name with its *registration time*
//! (`registered_at`, microseconds since the Unix epoch on the registering
//! node's clock) and announces it to every connected peer
//! (GLOBAL_REGISTER; PROTOCOL.md section 6). When two nodes connect, each
//! sends the other the names its own agents hold (GLOBAL_SYNC).
//!
//! **Conflicts** (two registrations that crossed: made at the same moment
//! on two connected nodes, or on two sides of a partition that then
//! healed) are resolved by every node that sees both, with the same rule,
//! so they agree: the registration with the smaller key
//! `(registered_at, holder's node "host/node", holder's id)` wins, compared
//! in that order (numbers numerically, strings by bytes). The node of the
//! losing holder removes its name, announces GLOBAL_UNREGISTER, and sends
//! the losing agent an exit signal with reason
//! `(:GLOBAL-NAME-CONFLICT "name" winner)`, `winner` being the winning
//! agent (an agent term).
//!
//! A name vanishes when its agent exits (its node announces
//! GLOBAL_UNREGISTER) or when the connection to its node is lost (every
//! other node drops the names that node announced). A node only knows the
//! names of nodes it is connected to: in a cluster where every node is
//! connected to every other (as Erlang's `global` assumes), all agree.
//!
//! Lock order: the names lock, then the node's `peers` lock, then a
//! connection's queue (as in `groups.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use super::connection::Connection;
use super::groups;
use super::inbound::Route;
use super::protocol::{Request, MAX_NAME, MAX_SYNC_ENTRIES};
use super::{current_node, NodeState};
use crate::agent::target::{Remote, RemoteRef};
use crate::agent::Agent;
use crate::term::Term;

/// Most global names a node keeps for one peer; registrations beyond it
/// are dropped and counted (`:DROPPED`).
pub const MAX_NAMES_PER_PEER: usize = 65_536;

/// Why a global name operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GlobalNameError {
    /// A global name must be 1 to 255 bytes.
    Invalid(String),
    /// Another agent holds the name (its id or local agent, printed).
    Taken {
        /// The name.
        name: String,
        /// Who holds it.
        holder: String,
    },
    /// The agent has exited.
    Exited,
    /// No agent holds the name.
    Unknown(String),
    /// The name is held by an agent of another node, which alone can
    /// unregister it.
    NotLocal(String),
    /// The message cannot be sent to the holder's node.
    Unsendable(String),
}

impl fmt::Display for GlobalNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobalNameError::Invalid(name) => {
                write!(f, "invalid global name {name:?} (1 to 255 bytes)")
            }
            GlobalNameError::Taken { name, holder } => {
                write!(f, "global name {name:?} is held by {holder}")
            }
            GlobalNameError::Exited => f.write_str("the agent has exited"),
            GlobalNameError::Unknown(name) => write!(f, "no agent holds global name {name:?}"),
            GlobalNameError::NotLocal(name) => write!(
                f,
                "global name {name:?} is held on another node, which alone can unregister it"
            ),
            GlobalNameError::Unsendable(e) => write!(f, "cannot send: {e}"),
        }
    }
}

impl std::error::Error for GlobalNameError {}

enum Holder {
    Local(Agent),
    Remote {
        /// `host/node` of the holder's node.
        peer: String,
        agent: RemoteRef,
    },
}

struct Entry {
    holder: Holder,
    at: u64,
}

#[derive(Default)]
struct Names {
    names: HashMap<String, Entry>,
    /// Per peer, the connection its names came over, and how many.
    sources: HashMap<String, (Weak<Connection>, usize)>,
}

static NAMES: Mutex<Option<Names>> = Mutex::new(None);

fn names() -> MutexGuard<'static, Option<Names>> {
    super::lock(&NAMES)
}

fn with<R>(f: impl FnOnce(&mut Names) -> R) -> R {
    f(names().get_or_insert_with(Names::default))
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn check_name(name: &str) -> Result<(), GlobalNameError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(GlobalNameError::Invalid(name.to_owned()));
    }
    Ok(())
}

impl Entry {
    fn live(&self) -> bool {
        match &self.holder {
            Holder::Local(a) => a.is_alive(),
            Holder::Remote { .. } => true,
        }
    }

    fn term(&self) -> Term {
        match &self.holder {
            Holder::Local(a) => a.to_term(),
            Holder::Remote { agent, .. } => agent.to_term(),
        }
    }

    /// The conflict key: (registered_at, node, holder id).
    fn key(&self, state: &NodeState) -> (u64, String, String) {
        match &self.holder {
            Holder::Local(a) => (self.at, state.full.clone(), state.full_id(a)),
            Holder::Remote { peer, agent } => (self.at, peer.clone(), agent.id.to_string()),
        }
    }
}

/// `true` if local `agent` holds a global name (so its exit watch stays).
pub(super) fn holds_any(agent: &Agent) -> bool {
    with(|n| {
        n.names
            .values()
            .any(|e| matches!(&e.holder, Holder::Local(a) if a == agent))
    })
}

/// Registers local `agent` under global `name` and announces it to every
/// connected node. An agent may hold several names. Registering the name
/// an agent already holds is a no-op.
///
/// # Errors
/// [`GlobalNameError::Invalid`], [`GlobalNameError::Taken`] if this node
/// knows another agent holds it, [`GlobalNameError::Exited`].
pub fn register(name: &str, agent: &Agent) -> Result<(), GlobalNameError> {
    check_name(name)?;
    if !groups::watch(agent) {
        return Err(GlobalNameError::Exited);
    }
    let state = current_node();
    with(|n| {
        if let Some(e) = n.names.get(name).filter(|e| e.live()) {
            if matches!(&e.holder, Holder::Local(a) if a == agent) {
                return Ok(());
            }
            return Err(GlobalNameError::Taken {
                name: name.to_owned(),
                holder: e.term().to_string(),
            });
        }
        let at = now_micros();
        n.names.insert(
            name.to_owned(),
            Entry {
                holder: Holder::Local(agent.clone()),
                at,
            },
        );
        if let Some(state) = &state {
            state.broadcast(&Request::GlobalRegister {
                incarnation: state.incarnation,
                at,
                name: name.to_owned(),
                holder: state.full_id(agent),
            });
        }
        Ok(())
    })?;
    if !agent.is_alive() {
        holder_exited(agent);
        return Err(GlobalNameError::Exited);
    }
    Ok(())
}

/// Removes global `name`, held by an agent of this node, and tells the
/// connected nodes.
///
/// # Errors
/// [`GlobalNameError::Unknown`], [`GlobalNameError::NotLocal`].
pub fn unregister(name: &str) -> Result<(), GlobalNameError> {
    let state = current_node();
    with(|n| {
        match n.names.get(name).filter(|e| e.live()) {
            None => return Err(GlobalNameError::Unknown(name.to_owned())),
            Some(Entry {
                holder: Holder::Remote { .. },
                ..
            }) => return Err(GlobalNameError::NotLocal(name.to_owned())),
            Some(_) => {}
        }
        if let Some(Entry {
            holder: Holder::Local(agent),
            ..
        }) = n.names.remove(name)
        {
            if let Some(state) = &state {
                state.broadcast(&Request::GlobalUnregister {
                    incarnation: state.incarnation,
                    name: name.to_owned(),
                    holder: state.full_id(&agent),
                });
            }
        }
        Ok(())
    })
}

/// The agent holding global `name`: a local agent, or the id of an agent
/// of a connected node.
pub fn whereis(name: &str) -> Option<Term> {
    with(|n| n.names.get(name).filter(|e| e.live()).map(Entry::term))
}

/// Every global name this node knows to be held, sorted.
pub fn registered() -> Vec<String> {
    let mut out: Vec<String> = with(|n| {
        n.names
            .iter()
            .filter(|(_, e)| e.live())
            .map(|(k, _)| k.clone())
            .collect()
    });
    out.sort();
    out
}

/// Sends `message` to the agent holding global `name`, wherever it is.
/// As every send, delivery is not guaranteed.
///
/// # Errors
/// [`GlobalNameError::Unknown`] if no agent holds the name,
/// [`GlobalNameError::Unsendable`] if the message cannot go on the wire to
/// a remote holder.
pub fn send(name: &str, message: Term) -> Result<(), GlobalNameError> {
    enum To {
        Local(Agent),
        Remote(RemoteRef),
    }
    let to = with(|n| {
        n.names
            .get(name)
            .filter(|e| e.live())
            .map(|e| match &e.holder {
                Holder::Local(a) => To::Local(a.clone()),
                Holder::Remote { agent, .. } => To::Remote(agent.clone()),
            })
    })
    .ok_or_else(|| GlobalNameError::Unknown(name.to_owned()))?;
    match to {
        To::Local(agent) => {
            agent.send(message);
            Ok(())
        }
        To::Remote(agent) => match current_node() {
            Some(state) => Route(state)
                .send(&agent, message)
                .map_err(|e| GlobalNameError::Unsendable(e.to_string())),
            None => Ok(()),
        },
    }
}

/// The reason a losing holder is killed with.
fn conflict_reason(name: &str, winner: Term) -> Term {
    Term::list(vec![
        Term::keyword("global-name-conflict"),
        Term::Str(name.to_owned()),
        winner,
    ])
}

/// A local holder exited: its names go, and the peers are told.
pub(super) fn holder_exited(agent: &Agent) {
    let state = current_node();
    with(|n| {
        let mut gone = Vec::new();
        n.names.retain(|name, e| {
            let mine = matches!(&e.holder, Holder::Local(a) if a == agent);
            if mine {
                gone.push(name.clone());
            }
            !mine
        });
        if let Some(state) = &state {
            for name in gone {
                state.broadcast(&Request::GlobalUnregister {
                    incarnation: state.incarnation,
                    name,
                    holder: state.full_id(agent),
                });
            }
        }
    });
}

impl NodeState {
    /// Sends `conn`'s peer the names held by this node's agents.
    pub(super) fn sync_global(&self, conn: &Connection) {
        with(|n| {
            let entries: Vec<(u64, String, String)> = n
                .names
                .iter()
                .filter_map(|(name, e)| match &e.holder {
                    Holder::Local(a) if a.is_alive() => Some((e.at, name.clone(), self.full_id(a))),
                    _ => None,
                })
                .collect();
            for chunk in entries.chunks(MAX_SYNC_ENTRIES) {
                let _ = conn.send(
                    &Request::GlobalSync {
                        incarnation: self.incarnation,
                        entries: chunk.to_vec(),
                    },
                    self,
                );
            }
        });
    }

    /// A GLOBAL_REGISTER or GLOBAL_SYNC from `conn`'s peer.
    pub(super) fn global_register(
        &self,
        conn: &Arc<Connection>,
        incarnation: u64,
        entries: Vec<(u64, String, String)>,
    ) {
        if conn.incarnation() != Some(incarnation) {
            self.stale(conn);
            return;
        }
        let mut losers: Vec<(Agent, Term)> = Vec::new();
        with(|n| {
            n.take_source(conn);
            for (at, name, holder) in entries {
                if !NodeState::from_peer(conn, &holder) {
                    conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let incoming = Entry {
                    holder: Holder::Remote {
                        peer: conn.peer.clone(),
                        agent: RemoteRef {
                            id: Arc::from(holder.as_str()),
                            incarnation,
                        },
                    },
                    at,
                };
                if let Some(e) = n.names.get(&name).filter(|e| e.live()) {
                    if e.key(self) <= incoming.key(self) {
                        // Ours is earlier (or the same registration): it
                        // stays; the peer resolves the same way when it
                        // hears of ours (broadcast or sync).
                        continue;
                    }
                }
                let Some(source) = n.sources.get_mut(&conn.peer) else {
                    continue;
                };
                if source.1 >= MAX_NAMES_PER_PEER {
                    conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                source.1 += 1;
                let replaced = n.names.remove(&name);
                let winner = incoming.term();
                n.names.insert(name.clone(), incoming);
                match replaced.map(|e| e.holder) {
                    Some(Holder::Local(agent)) => {
                        self.broadcast(&Request::GlobalUnregister {
                            incarnation: self.incarnation,
                            name: name.clone(),
                            holder: self.full_id(&agent),
                        });
                        losers.push((agent, conflict_reason(&name, winner)));
                    }
                    Some(Holder::Remote { peer, .. }) => {
                        if let Some(s) = n.sources.get_mut(&peer) {
                            s.1 = s.1.saturating_sub(1);
                        }
                    }
                    None => {}
                }
            }
        });
        // Outside the lock: the killed agent's exit runs our exit watch.
        for (agent, reason) in losers {
            agent.kill(reason);
        }
    }

    /// A GLOBAL_UNREGISTER from `conn`'s peer: removed if that holder of
    /// that peer has the name.
    pub(super) fn global_unregister(
        &self,
        conn: &Arc<Connection>,
        incarnation: u64,
        name: &str,
        holder: &str,
    ) {
        if conn.incarnation() != Some(incarnation) {
            self.stale(conn);
            return;
        }
        with(|n| {
            n.take_source(conn);
            let held = n.names.get(name).is_some_and(|e| {
                matches!(&e.holder, Holder::Remote { peer, agent }
                    if *peer == conn.peer && &*agent.id == holder)
            });
            if held {
                n.names.remove(name);
                if let Some(s) = n.sources.get_mut(&conn.peer) {
                    s.1 = s.1.saturating_sub(1);
                }
            }
        });
    }
}

impl Names {
    /// Makes `conn` the source of its peer's names: names from an older
    /// connection to the same peer are dropped first.
    fn take_source(&mut self, conn: &Arc<Connection>) {
        let current = self
            .sources
            .get(&conn.peer)
            .is_some_and(|(w, _)| Weak::ptr_eq(w, &Arc::downgrade(conn)));
        if !current {
            self.drop_peer(&conn.peer);
            self.sources
                .insert(conn.peer.clone(), (Arc::downgrade(conn), 0));
        }
    }

    fn drop_peer(&mut self, peer: &str) {
        self.names
            .retain(|_, e| !matches!(&e.holder, Holder::Remote { peer: p, .. } if p == peer));
        self.sources.remove(peer);
    }
}

/// `conn` is lost: the names its peer announced over it are gone.
pub(super) fn connection_lost(conn: &Arc<Connection>) {
    with(|n| {
        let ours = n
            .sources
            .get(&conn.peer)
            .is_some_and(|(w, _)| Weak::ptr_eq(w, &Arc::downgrade(conn)));
        if ours {
            n.drop_peer(&conn.peer);
        }
    });
}
