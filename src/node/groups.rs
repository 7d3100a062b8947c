//! Process groups (Erlang's `pg`): named sets of agents across the
//! connected nodes, for sending one message to all of them.
//!
//! Each node owns its local members: it alone adds and removes them, and
//! tells every connected peer (GROUP_JOIN, GROUP_LEAVE; PROTOCOL.md
//! section 6). When two nodes connect, each sends the other its whole local
//! membership (GROUP_SYNC). A node watches its local members: when one
//! exits it leaves all its groups and the peers are told. When a connection
//! is lost, every member of that peer is forgotten at once, so a lost node's
//! members vanish everywhere (and come back with the next GROUP_SYNC if the
//! node is reached again).
//!
//! What a node knows of a peer's members is tied to the connection it
//! learned them over: a frame over a newer connection to the same peer
//! first drops what the older one said, and losing a connection drops only
//! what came over it, so a late loss of an old connection never erases
//! what a new one said.
//!
//! Lock order: the groups lock, then the node's `peers` lock, then a
//! connection's queue (broadcasts are queued while the groups lock is held,
//! so every peer sees changes in the order they were made, and a GROUP_SYNC
//! never overtakes a GROUP_LEAVE).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::connection::Connection;
use super::protocol::{Request, MAX_NAME, MAX_SYNC_ENTRIES};
use super::{current_node, NodeState};
use crate::agent::target::RemoteRef;
use crate::agent::{Agent, ExitHook};
use crate::term::Term;

/// Most group memberships (pairs of group and member) a node keeps for one
/// peer; joins beyond it are dropped and counted (`:DROPPED`).
pub const MAX_MEMBERS_PER_PEER: usize = 65_536;

/// Why a group operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// A group name must be 1 to 255 bytes.
    InvalidName(String),
    /// The agent has exited.
    Exited,
    /// The agent is not a member of the group.
    NotAMember(String),
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::InvalidName(name) => {
                write!(f, "invalid group name {name:?} (1 to 255 bytes)")
            }
            GroupError::Exited => f.write_str("the agent has exited"),
            GroupError::NotAMember(group) => {
                write!(f, "the agent is not a member of group {group:?}")
            }
        }
    }
}

impl std::error::Error for GroupError {}

/// What one peer said about its members, over one connection.
struct PeerMembers {
    source: Weak<Connection>,
    incarnation: u64,
    /// Group -> member ids.
    groups: HashMap<String, BTreeSet<String>>,
    count: usize,
}

#[derive(Default)]
struct Groups {
    /// Group -> local members (each at most once).
    local: HashMap<String, Vec<Agent>>,
    /// Peer `host/node` -> its members.
    remote: HashMap<String, PeerMembers>,
}

static GROUPS: Mutex<Option<Groups>> = Mutex::new(None);

fn groups() -> MutexGuard<'static, Option<Groups>> {
    super::lock(&GROUPS)
}

fn with<R>(f: impl FnOnce(&mut Groups) -> R) -> R {
    f(groups().get_or_insert_with(Groups::default))
}

fn check_name(group: &str) -> Result<(), GroupError> {
    if group.is_empty() || group.len() > MAX_NAME {
        return Err(GroupError::InvalidName(group.to_owned()));
    }
    Ok(())
}

/// The exit watch: a one-way hook on each local member, so nothing dies
/// with it, and its exit removes it from its groups whether or not a node
/// is running. (Global names have a hook of their own.)
static EXIT_HOOK: ExitHook = ExitHook {
    name: "process groups",
    run: |agent, _| member_exited(agent),
};

/// Removes the exit watch if `agent` is in no group.
fn unwatch_if_idle(agent: &Agent, g: &Groups) {
    if !g.local.values().any(|v| v.contains(agent)) {
        agent.detach_exit_hook(&EXIT_HOOK);
    }
}

/// Adds local `agent` to `group` (a no-op if it is a member already) and
/// tells the connected peers. The agent leaves all its groups when it
/// exits.
///
/// # Errors
/// [`GroupError::InvalidName`], [`GroupError::Exited`].
pub fn join(group: &str, agent: &Agent) -> Result<(), GroupError> {
    check_name(group)?;
    // Watched first, then added: an exit in between finds nothing to
    // remove, but then `is_alive` below is false and we remove it.
    if !agent.attach_exit_hook(&EXIT_HOOK) {
        return Err(GroupError::Exited);
    }
    let state = current_node();
    with(|g| {
        let members = g.local.entry(group.to_owned()).or_default();
        if members.contains(agent) {
            return;
        }
        members.push(agent.clone());
        if let Some(state) = &state {
            state.broadcast(&Request::GroupJoin {
                incarnation: state.incarnation,
                group: group.to_owned(),
                member: state.full_id(agent),
            });
        }
    });
    if !agent.is_alive() {
        member_exited(agent);
        return Err(GroupError::Exited);
    }
    Ok(())
}

/// Removes local `agent` from `group` and tells the connected peers.
///
/// # Errors
/// [`GroupError::NotAMember`].
pub fn leave(group: &str, agent: &Agent) -> Result<(), GroupError> {
    let state = current_node();
    with(|g| {
        let members = g
            .local
            .get_mut(group)
            .filter(|m| m.contains(agent))
            .ok_or_else(|| GroupError::NotAMember(group.to_owned()))?;
        members.retain(|a| a != agent);
        if members.is_empty() {
            g.local.remove(group);
        }
        if let Some(state) = &state {
            state.broadcast(&Request::GroupLeave {
                incarnation: state.incarnation,
                group: group.to_owned(),
                member: state.full_id(agent),
            });
        }
        unwatch_if_idle(agent, g);
        Ok(())
    })
}

/// A local member exited: it leaves every group, and the peers are told.
fn member_exited(agent: &Agent) {
    let state = current_node();
    with(|g| {
        let mut left = Vec::new();
        g.local.retain(|group, members| {
            if members.contains(agent) {
                members.retain(|a| a != agent);
                left.push(group.clone());
            }
            !members.is_empty()
        });
        if let Some(state) = &state {
            for group in left {
                state.broadcast(&Request::GroupLeave {
                    incarnation: state.incarnation,
                    group,
                    member: state.full_id(agent),
                });
            }
        }
    });
}

/// The live local members of `group`.
pub fn local_members(group: &str) -> Vec<Agent> {
    with(|g| {
        g.local
            .get(group)
            .map(|m| m.iter().filter(|a| a.is_alive()).cloned().collect())
            .unwrap_or_default()
    })
}

/// Remote members of `group` as the connected peers announced them,
/// sorted by id.
fn remote_members(group: &str) -> Vec<RemoteRef> {
    with(|g| {
        let mut out: Vec<RemoteRef> = g
            .remote
            .values()
            .filter(|p| p.source.strong_count() > 0)
            .flat_map(|p| {
                p.groups
                    .get(group)
                    .into_iter()
                    .flatten()
                    .map(|id| RemoteRef {
                        id: Arc::from(id.as_str()),
                        incarnation: p.incarnation,
                    })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    })
}

/// Every member of `group` this node knows of: its own live members
/// first (as agents), then those of connected peers (as their ids, which
/// name the agent in its node's run), sorted by id.
pub fn members(group: &str) -> Vec<Term> {
    let mut out: Vec<Term> = local_members(group).iter().map(Agent::to_term).collect();
    out.extend(remote_members(group).iter().map(RemoteRef::to_term));
    out
}

/// The groups with at least one member this node knows of, sorted.
pub fn which_groups() -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    with(|g| {
        out.extend(g.local.keys().cloned());
        for p in g.remote.values() {
            out.extend(
                p.groups
                    .iter()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(k, _)| k.clone()),
            );
        }
    });
    out.into_iter().collect()
}

/// Sends `message` to every member of `group` this node knows of, local
/// and remote; returns how many it was sent to. Delivery is not
/// guaranteed, as for every send (a member may be gone, its mailbox full).
/// A message that cannot go on the wire (a closure) reaches only the local
/// members.
pub fn send_to_group(group: &str, message: &Term) -> usize {
    let local = local_members(group);
    let mut sent = 0;
    for agent in &local {
        agent.send(message.clone());
        sent += 1;
    }
    let remote = remote_members(group);
    // Through the agent layer, which hands them to this node's route.
    if current_node().is_some() {
        for member in &remote {
            if crate::agent::send(message.clone(), member.to_term()).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

impl NodeState {
    /// Queues `request` on every connection (open or being dialed).
    pub(super) fn broadcast(&self, request: &Request) {
        let conns: Vec<Arc<Connection>> = super::lock(&self.peers).values().cloned().collect();
        for conn in conns.iter().filter(|c| !c.is_down()) {
            let _ = conn.send(request, self);
        }
    }

    /// Sends `conn`'s peer this node's whole local membership, in frames of
    /// at most [`MAX_SYNC_ENTRIES`] entries (nothing if there is none).
    pub(super) fn sync_groups(&self, conn: &Connection) {
        with(|g| {
            let entries: Vec<(String, String)> = g
                .local
                .iter()
                .flat_map(|(group, members)| {
                    members
                        .iter()
                        .filter(|a| a.is_alive())
                        .map(|a| (group.clone(), self.full_id(a)))
                })
                .collect();
            for chunk in entries.chunks(MAX_SYNC_ENTRIES) {
                let _ = conn.send(
                    &Request::GroupSync {
                        incarnation: self.incarnation,
                        entries: chunk.to_vec(),
                    },
                    self,
                );
            }
        });
    }

    /// A GROUP_JOIN, GROUP_LEAVE or GROUP_SYNC from `conn`'s peer.
    pub(super) fn group_frame(
        &self,
        conn: &Arc<Connection>,
        incarnation: u64,
        joins: Vec<(String, String)>,
        leave: bool,
    ) {
        if conn.incarnation() != Some(incarnation) {
            self.stale(conn);
            return;
        }
        with(|g| {
            let fresh = || PeerMembers {
                source: Arc::downgrade(conn),
                incarnation,
                groups: HashMap::new(),
                count: 0,
            };
            let peer = g.remote.entry(conn.peer.clone()).or_insert_with(fresh);
            if !Weak::ptr_eq(&peer.source, &Arc::downgrade(conn)) {
                // A newer connection: what the older one said is obsolete.
                *peer = fresh();
            }
            for (group, member) in joins {
                if !NodeState::from_peer(conn, &member) {
                    conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if leave {
                    if let Some(m) = peer.groups.get_mut(&group) {
                        if m.remove(&member) {
                            peer.count -= 1;
                        }
                        if m.is_empty() {
                            peer.groups.remove(&group);
                        }
                    }
                } else if peer.count >= MAX_MEMBERS_PER_PEER {
                    conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                } else if peer.groups.entry(group).or_default().insert(member) {
                    peer.count += 1;
                }
            }
        });
    }
}

/// `conn` is lost: its peer's members, as it told them, are gone.
pub(super) fn connection_lost(conn: &Arc<Connection>) {
    with(|g| {
        let ours = g
            .remote
            .get(&conn.peer)
            .is_some_and(|p| Weak::ptr_eq(&p.source, &Arc::downgrade(conn)));
        if ours {
            g.remote.remove(&conn.peer);
        }
    });
}
