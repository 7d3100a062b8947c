//! Cluster-wide names (Erlang's `global`): a name held by one agent at a
//! time in the whole connected cluster, usable from every connected node.
//!
//! **Registration is claimed, then announced.** A node refuses a name it
//! knows to be held by another agent (its own or one a peer announced) or
//! being claimed by one of its own. Otherwise it stamps the registration
//! with its *registration time* (`registered_at`, microseconds since the
//! Unix epoch on the registering node's clock) and, if it is a visible
//! member of a cluster, asks every member (GLOBAL_CLAIM, one round trip to
//! all of them at once). A member answers HELD if it knows another holder,
//! and COMPETING if it is claiming the same name itself with a smaller key
//! (below); with a larger key it abandons its own claim and grants. The
//! name is registered only when every member granted (a member whose
//! connection is lost meanwhile counts as granting). Two claims that cross
//! meet at both claimants, which compare the same keys, so exactly one
//! succeeds. The name is then recorded and announced to every connected
//! peer (GLOBAL_REGISTER; PROTOCOL.md section 6). When two nodes connect,
//! each sends the other the names its own agents hold (GLOBAL_SYNC).
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
//! A hidden node, or one with no members, registers without a claim.
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
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::connection::Connection;
use super::protocol::{claim, Request, MAX_NAME, MAX_SYNC_ENTRIES};
use super::{current_node, NodeState};
use crate::agent::target::RemoteRef;
use crate::agent::{Agent, ExitHook};
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
    /// Members of the cluster did not answer the claim in time (their
    /// names); nothing was registered.
    NoAnswer(Vec<String>),
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
            GlobalNameError::NoAnswer(nodes) => write!(
                f,
                "no answer to the claim from {}; nothing was registered",
                nodes.join(", ")
            ),
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

/// A registration of this node's waiting for the members' answers.
struct Claim {
    name: String,
    /// The conflict key of the registration it would make.
    key: (u64, String, String),
    /// Members that have not answered yet.
    waiting: Vec<String>,
    /// Who holds or claims the name, once a member refused.
    refused: Option<String>,
}

#[derive(Default)]
struct Names {
    names: HashMap<String, Entry>,
    /// Per peer, the connection its names came over, and how many.
    sources: HashMap<String, (Weak<Connection>, usize)>,
    /// Claims under way (a few at most), by request number.
    claims: HashMap<u64, Claim>,
}

static NAMES: Mutex<Option<Names>> = Mutex::new(None);
/// Notified whenever a claim gets an answer or loses a member.
static CLAIM_ANSWERED: Condvar = Condvar::new();

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

    /// The holder's id, `"host/node/aid"` (or the local agent printed,
    /// when this process is not a node).
    fn id(&self, state: Option<&NodeState>) -> String {
        match (&self.holder, state) {
            (Holder::Local(a), Some(state)) => state.full_id(a),
            (Holder::Local(a), None) => a.to_term().to_string(),
            (Holder::Remote { agent, .. }, _) => agent.id.to_string(),
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

/// The exit watch: a one-way hook on each local holder, so nothing dies
/// with it, and its exit frees its names whether or not a node is running.
static EXIT_HOOK: ExitHook = ExitHook {
    name: "global names",
    run: |agent, _| holder_exited(agent),
};

/// Removes the exit watch if local `agent` holds no global name.
fn unwatch_if_idle(agent: &Agent, n: &Names) {
    let holds = n
        .names
        .values()
        .any(|e| matches!(&e.holder, Holder::Local(a) if a == agent));
    if !holds {
        agent.detach_exit_hook(&EXIT_HOOK);
    }
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
    if !agent.attach_exit_hook(&EXIT_HOOK) {
        return Err(GlobalNameError::Exited);
    }
    let result = claim_and_record(name, agent);
    if result.is_err() {
        // Refused or exited: the watch stays only for names it holds.
        with(|n| unwatch_if_idle(agent, n));
    }
    result
}

/// The part of [`register`] after the watch: claim, wait, record.
fn claim_and_record(name: &str, agent: &Agent) -> Result<(), GlobalNameError> {
    let state = current_node();
    let members = state
        .as_ref()
        .filter(|s| !s.options.hidden)
        .map(|s| s.member_connections())
        .unwrap_or_default();
    let at = now_micros();
    let claimed = with(|n| {
        if let Some(e) = n.names.get(name).filter(|e| e.live()) {
            if matches!(&e.holder, Holder::Local(a) if a == agent) {
                return Ok(None);
            }
            return Err(GlobalNameError::Taken {
                name: name.to_owned(),
                holder: e.term().to_string(),
            });
        }
        if let Some(claim) = n.claims.values().find(|c| c.name == name) {
            return Err(GlobalNameError::Taken {
                name: name.to_owned(),
                holder: Term::Str(claim.key.2.clone()).to_string(),
            });
        }
        match &state {
            Some(state) if !members.is_empty() => {
                // Ask every member first (the module doc).
                let request = state.next_request.fetch_add(1, Ordering::Relaxed);
                let holder = state.full_id(agent);
                n.claims.insert(
                    request,
                    Claim {
                        name: name.to_owned(),
                        key: (at, state.full.clone(), holder.clone()),
                        waiting: members.iter().map(|m| m.peer.clone()).collect(),
                        refused: None,
                    },
                );
                let ask = Request::GlobalClaim {
                    incarnation: state.incarnation,
                    request,
                    at,
                    name: name.to_owned(),
                    holder,
                };
                for member in &members {
                    if !matches!(member.send(&ask, &**state), Ok(true)) {
                        // Not queued (connection down, queue full): that
                        // member will not answer.
                        if let Some(c) = n.claims.get_mut(&request) {
                            c.waiting.retain(|p| *p != member.peer);
                        }
                    }
                }
                Ok(Some(request))
            }
            _ => {
                n.record_local(name, agent, at, state.as_deref());
                Ok(None)
            }
        }
    })?;
    if let (Some(request), Some(state)) = (claimed, &state) {
        // A member that dies is declared down within the failure
        // timeout, which ends its part of the wait; this bound is for a
        // live member that never answers.
        let deadline = Instant::now() + state.options.timeout * 2 + Duration::from_secs(1);
        await_claim(request, agent, at, state, deadline)?;
    }
    if !agent.is_alive() {
        holder_exited(agent);
        return Err(GlobalNameError::Exited);
    }
    Ok(())
}

/// Waits for every member's answer to claim `request`, then registers the
/// name (or says who holds it).
fn await_claim(
    request: u64,
    agent: &Agent,
    at: u64,
    state: &NodeState,
    deadline: Instant,
) -> Result<(), GlobalNameError> {
    let mut guard = names();
    loop {
        let n = guard.get_or_insert_with(Names::default);
        let Some(claim) = n.claims.get(&request) else {
            return Err(GlobalNameError::Exited);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if claim.refused.is_some() || claim.waiting.is_empty() || left.is_zero() {
            let Some(claim) = n.claims.remove(&request) else {
                return Err(GlobalNameError::Exited);
            };
            if let Some(holder) = claim.refused {
                return Err(GlobalNameError::Taken {
                    name: claim.name,
                    holder: Term::Str(holder).to_string(),
                });
            }
            if !claim.waiting.is_empty() {
                return Err(GlobalNameError::NoAnswer(claim.waiting));
            }
            if let Some(e) = n.names.get(&claim.name).filter(|e| e.live()) {
                // Registered meanwhile by a node that joined after the
                // claim was sent.
                return Err(GlobalNameError::Taken {
                    name: claim.name,
                    holder: e.term().to_string(),
                });
            }
            n.record_local(&claim.name, agent, at, Some(state));
            return Ok(());
        }
        guard = CLAIM_ANSWERED
            .wait_timeout(guard, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A GLOBAL_CLAIM_REPLY from `conn`'s peer.
pub(super) fn claim_reply(conn: &Arc<Connection>, request: u64, answer: u8, holder: String) {
    with(|n| {
        let Some(claim) = n.claims.get_mut(&request) else {
            return;
        };
        if !claim.waiting.contains(&conn.peer) {
            return;
        }
        claim.waiting.retain(|p| *p != conn.peer);
        if answer != claim::GRANTED {
            claim.refused = Some(holder);
        }
    });
    CLAIM_ANSWERED.notify_all();
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
            unwatch_if_idle(&agent, n);
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
        // Through the agent layer, which hands it to this node's route.
        To::Remote(agent) => match current_node() {
            Some(_) => crate::agent::send(message, agent.to_term())
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

    /// A GLOBAL_CLAIM from `conn`'s peer: answered at once (the module
    /// doc gives the rule).
    pub(super) fn global_claim(
        &self,
        conn: &Arc<Connection>,
        incarnation: u64,
        request: u64,
        at: u64,
        name: &str,
        holder: &str,
    ) {
        if conn.incarnation() != Some(incarnation) {
            self.stale(conn);
            return;
        }
        if !NodeState::from_peer(conn, holder) {
            // Not an agent of the claiming node: never a valid claim.
            conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = (at, conn.peer.clone(), holder.to_owned());
        let (answer, who) = with(|n| {
            if let Some(e) = n.names.get(name).filter(|e| e.live()) {
                if e.key(self) != key {
                    return (claim::HELD, e.id(Some(self)));
                }
            }
            let Some(mine) = n.claims.values_mut().find(|c| c.name == name) else {
                return (claim::GRANTED, String::new());
            };
            if key < mine.key {
                // The earlier claim wins at both claimants: ours yields.
                mine.refused = Some(holder.to_owned());
                (claim::GRANTED, String::new())
            } else {
                (claim::COMPETING, mine.key.2.clone())
            }
        });
        if answer == claim::GRANTED {
            CLAIM_ANSWERED.notify_all();
        }
        let _ = conn.send(
            &Request::GlobalClaimReply {
                request,
                answer,
                holder: who,
            },
            self,
        );
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
    /// Records local `agent` as the holder of `name` and announces it to
    /// every connected peer.
    fn record_local(&mut self, name: &str, agent: &Agent, at: u64, state: Option<&NodeState>) {
        self.names.insert(
            name.to_owned(),
            Entry {
                holder: Holder::Local(agent.clone()),
                at,
            },
        );
        if let Some(state) = state {
            state.broadcast(&Request::GlobalRegister {
                incarnation: state.incarnation,
                at,
                name: name.to_owned(),
                holder: state.full_id(agent),
            });
        }
    }

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

/// `conn` is lost: the names its peer announced over it are gone, and
/// claims waiting for its answer wait no longer.
pub(super) fn connection_lost(conn: &Arc<Connection>) {
    with(|n| {
        for claim in n.claims.values_mut() {
            claim.waiting.retain(|p| *p != conn.peer);
        }
        let ours = n
            .sources
            .get(&conn.peer)
            .is_some_and(|(w, _)| Weak::ptr_eq(w, &Arc::downgrade(conn)));
        if ours {
            n.drop_peer(&conn.peer);
        }
    });
    CLAIM_ANSWERED.notify_all();
}
