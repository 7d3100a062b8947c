//! The cluster: which nodes are members, how they find each other, who is
//! told when one joins or leaves, and how overlapping partitions are
//! prevented (PROTOCOL.md section 7).
//!
//! **Transitive connections.** When two visible nodes connect, each sends
//! the other a NODES frame naming every visible node it is connected to;
//! after that, each sends every member a NODES frame naming each node that
//! joins it. A node with `connect_all` (the default) dials every node it
//! hears of and lacks, so the visible nodes form a full mesh. A hidden node
//! (`NodeOptions::hidden`) says so in its NODES frame, is never passed on,
//! and passes on no one; a peer that sends no NODES frame at all (an older
//! or foreign client) counts as hidden.
//!
//! **Membership.** A visible peer is a *member* from its first NODES frame
//! until its connection is lost. Subscribers (`monitor_nodes`) get
//! `(:NODEUP "host/node")` and `(:NODEDOWN "host/node" reason)`, once per
//! change, in the order the changes happened (both are sent under the
//! lock that makes the change).
//!
//! **Overlapping partitions.** When member P's connection to member Q
//! fails, P tells every member (NODE_LOST Q). A member X that is still
//! connected to both acts only if P's name sorts before Q's: it excludes
//! Q's run, tells Q why (DISCONNECT) and closes the connection. Q's own
//! report of losing P is ignored by everyone (Q sorts after P), so every
//! node that sees both drops the same one, Q, whatever order the reports
//! arrive in, and the cluster splits into fully connected parts. A node
//! that died is dropped by the same rule, harmlessly. Deliberate closes
//! (DISCONNECT, a replaced connection, this node stopping) are not
//! reported, so one cut does not cascade.
//!
//! **Healing.** A member lost for any other reason is dialed again by the
//! ticker, after 1 s, then at doubling intervals up to 8 s, for an hour,
//! or until the port mapper of its host says it is gone. An exclusion
//! lasts until its cause lists the excluded node again (they reconnected)
//! or is no longer a member; the excluded node is then dialed again. When
//! two parts meet again, NODES frames complete the mesh and global names
//! and groups are synchronised as on any new connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::connection::Connection;
use super::eventlog::{self, LogLevel};
use super::protocol::{Request, DISCONNECT_OVERLAP};
use super::{current_node, lock, NodeState};
use crate::agent::Agent;
use crate::term::Term;

/// First wait before a lost member is dialed again; doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(8);
/// A lost member is dialed again for this long, then forgotten.
const RETRY_FOR: Duration = Duration::from_secs(3600);

/// A lost member to dial again.
struct Retry {
    next: Instant,
    wait: Duration,
    since: Instant,
}

impl Retry {
    /// Lost now, first dialed again at `next`.
    fn from(now: Instant, next: Instant) -> Retry {
        Retry {
            next,
            wait: RETRY_FIRST,
            since: now,
        }
    }
}

/// The membership state of a node (inside `NodeState`).
#[derive(Default)]
pub(crate) struct Cluster {
    /// Visible members: name to the connection they are members over.
    members: BTreeMap<String, Arc<Connection>>,
    /// Runs this node disconnected to prevent an overlapping partition:
    /// name to (incarnation, the member whose loss of it was the cause).
    excluded: HashMap<String, (u64, String)>,
    /// Members lost (not on purpose), dialed again by the ticker.
    retry: HashMap<String, Retry>,
}

/// Who is told of membership changes: agents and whether they want hidden
/// nodes too. Kept outside the node, so subscribing works before a node
/// starts and across restarts.
static SUBSCRIBERS: Mutex<Vec<(Agent, bool)>> = Mutex::new(Vec::new());

/// Subscribes the calling agent to `(:NODEUP "host/node")` and
/// `(:NODEDOWN "host/node" reason)` messages for every visible node that
/// joins or leaves this node's cluster (and hidden ones too if `hidden`),
/// as Erlang's `net_kernel:monitor_nodes(true)`. Subscribing again changes
/// only `hidden`. The subscription ends with the agent or with
/// [`demonitor_nodes`]. As every message, these are dropped if the
/// mailbox is full.
pub fn monitor_nodes(hidden: bool) {
    let me = Agent::current();
    let mut subs = lock(&SUBSCRIBERS);
    subs.retain(|(a, _)| a.is_alive() && *a != me);
    subs.push((me, hidden));
}

/// Ends the calling agent's [`monitor_nodes`] subscription.
pub fn demonitor_nodes() {
    let me = Agent::current();
    lock(&SUBSCRIBERS).retain(|(a, _)| a.is_alive() && *a != me);
}

/// Tells the subscribers; called with the cluster lock held, so that
/// changes are told in the order they were made.
fn tell(message: &Term, hidden_node: bool) {
    let mut subs = lock(&SUBSCRIBERS);
    subs.retain(|(a, _)| a.is_alive());
    for (agent, wants_hidden) in subs.iter() {
        if !hidden_node || *wants_hidden {
            agent.send(message.clone());
        }
    }
}

fn nodeup(node: &str) -> Term {
    Term::list(vec![Term::keyword("nodeup"), Term::Str(node.to_owned())])
}

fn nodedown(node: &str, reason: &str) -> Term {
    Term::list(vec![
        Term::keyword("nodedown"),
        Term::Str(node.to_owned()),
        Term::Str(reason.to_owned()),
    ])
}

/// The visible members of this node's cluster (`"host/node"`, sorted), as
/// Erlang's `nodes()`; empty if this process is not a node or is hidden.
pub fn nodes() -> Vec<String> {
    current_node().map_or_else(Vec::new, |n| {
        n.cluster_lock().members.keys().cloned().collect()
    })
}

/// Every connected node: the visible members, then hidden peers (and
/// peers that never said), each sorted, as Erlang's `nodes(connected)`.
pub fn nodes_with_hidden() -> Vec<String> {
    let Some(state) = current_node() else {
        return Vec::new();
    };
    let members: Vec<String> = state.cluster_lock().members.keys().cloned().collect();
    let mut hidden: Vec<String> = super::stats::connected_peers()
        .into_iter()
        .map(|(peer, _)| peer)
        .filter(|p| !members.contains(p))
        .collect();
    hidden.sort();
    members.into_iter().chain(hidden).collect()
}

impl NodeState {
    fn cluster_lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        lock(&self.cluster)
    }

    /// Whether this node takes part in the mesh and its overlap rule.
    fn meshing(&self) -> bool {
        !self.options.hidden && self.options.connect_all
    }

    /// A connection's handshake is done and its writer not yet started:
    /// the first frame the peer reads says whether this node is hidden
    /// and, if it is not, names every visible node it is connected to.
    pub(super) fn announce_membership(&self, conn: &Arc<Connection>) {
        let nodes = if self.options.hidden {
            Vec::new()
        } else {
            self.cluster_lock()
                .members
                .keys()
                .filter(|m| **m != conn.peer)
                .cloned()
                .collect()
        };
        let _ = conn.send_first(
            &Request::Nodes {
                hidden: self.options.hidden,
                nodes,
            },
            self,
        );
    }

    /// Refuses a NODES frame that breaks a rule only the receiver can
    /// check (PROTOCOL.md section 7): a protocol error that closes this
    /// connection only.
    fn refuse_list(self: &Arc<Self>, conn: &Arc<Connection>, why: &str) {
        conn.stats.errors.fetch_add(1, Ordering::Relaxed);
        conn.fail(
            &self.dispatcher(),
            &format!("protocol error: NODES refused: {why}"),
        );
    }

    /// A NODES frame from `conn`'s peer.
    pub(super) fn on_nodes(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        hidden: bool,
        nodes: Vec<String>,
    ) {
        if nodes.iter().any(|n| *n == self.full) {
            return self.refuse_list(conn, "it names the receiver");
        }
        if nodes.iter().any(|n| *n == conn.peer) {
            return self.refuse_list(conn, "it names the sender");
        }
        let first = conn.hidden.set(hidden).is_ok();
        if !first && conn.hidden.get() != Some(&hidden) {
            return self.refuse_list(conn, "the sender changed between hidden and visible");
        }
        if self.options.hidden || hidden {
            // A connection with a hidden end: listed with the hidden ones,
            // told only to subscribers that asked for hidden nodes.
            if first {
                let _cluster = self.cluster_lock();
                if !conn.is_down() {
                    tell(&nodeup(&conn.peer), true);
                }
            }
            return;
        }
        let mut to_dial = Vec::new();
        {
            let mut cluster = self.cluster_lock();
            if conn.is_down() {
                return;
            }
            if first {
                cluster.retry.remove(&conn.peer);
                cluster.excluded.remove(&conn.peer);
                let old = cluster.members.insert(conn.peer.clone(), Arc::clone(conn));
                if old.is_some_and(|o| !Arc::ptr_eq(&o, conn)) {
                    // A replaced connection whose loss is still being
                    // handled: tell its end before the new start.
                    tell(&nodedown(&conn.peer, "replaced by a new connection"), false);
                }
                tell(&nodeup(&conn.peer), false);
                // The other members hear of the new one (and dial it if
                // they lack it).
                let announce = Request::Nodes {
                    hidden: false,
                    nodes: vec![conn.peer.clone()],
                };
                for (name, member) in &cluster.members {
                    if *name != conn.peer {
                        let _ = member.send(&announce, &**self);
                    }
                }
            }
            // Exclusions this peer caused end when it lists the node again.
            cluster.excluded.retain(|name, (_, cause)| {
                let lifted = *cause == conn.peer && nodes.contains(name);
                if lifted {
                    eventlog::event(
                        LogLevel::Info,
                        &self.full,
                        format_args!("{} reconnected to {name}: no longer excluded", conn.peer),
                    );
                }
                !lifted
            });
            if self.options.connect_all {
                for name in nodes {
                    if !cluster.members.contains_key(&name) && !cluster.excluded.contains_key(&name)
                    {
                        to_dial.push(name);
                    }
                }
            }
        }
        // Outside the lock: dialing takes the peers lock.
        for name in to_dial {
            self.background_dial(&name);
        }
    }

    /// A NODE_LOST frame: `conn`'s peer P lost its connection to `node`
    /// Q (run `incarnation`). The overlap rule: if this node is connected
    /// to both and P sorts before Q, Q is dropped.
    pub(super) fn on_node_lost(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        node: &str,
        incarnation: u64,
    ) {
        if !self.meshing() || node == self.full || conn.hidden.get() != Some(&false) {
            return;
        }
        let reporter = conn.peer.as_str();
        if reporter >= node {
            // Q's report of losing P, or a report about a node that sorts
            // first: the one about the later node decides.
            return;
        }
        let victim = {
            let mut cluster = self.cluster_lock();
            if !cluster.members.contains_key(reporter) {
                return;
            }
            let Some(victim) = cluster.members.get(node).cloned() else {
                return;
            };
            if victim.incarnation() != Some(incarnation) {
                return;
            }
            cluster
                .excluded
                .insert(node.to_owned(), (incarnation, reporter.to_owned()));
            victim
        };
        eventlog::event(
            LogLevel::Warn,
            &self.full,
            format_args!(
                "disconnecting {node} to prevent an overlapping partition: {reporter} lost it"
            ),
        );
        victim.quiet_loss.store(true, Ordering::Release);
        victim.send_last(
            &Request::Disconnect {
                code: DISCONNECT_OVERLAP,
                cause: reporter.to_owned(),
            },
            &**self,
        );
    }

    /// A DISCONNECT frame: the peer is closing this connection on purpose.
    pub(super) fn on_disconnect(&self, conn: &Arc<Connection>, cause: &str) {
        conn.quiet_loss.store(true, Ordering::Release);
        eventlog::event(
            LogLevel::Warn,
            &self.full,
            format_args!(
                "{} disconnects from us to prevent an overlapping partition: {cause} lost us",
                conn.peer
            ),
        );
    }

    /// `true` if `peer`'s run `incarnation` is excluded (a handshake from
    /// it is refused); `None` for the run: any run.
    pub(super) fn is_excluded(&self, peer: &str, incarnation: Option<u64>) -> Option<String> {
        let cluster = self.cluster_lock();
        let (inc, cause) = cluster.excluded.get(peer)?;
        (incarnation.is_none() || incarnation == Some(*inc)).then(|| cause.clone())
    }

    /// `conn` is lost (called once, by `connection_lost`): members and
    /// subscribers hear of it, and a member lost by accident is dialed
    /// again.
    pub(super) fn cluster_lost(&self, conn: &Arc<Connection>, why: &str) {
        let Some(&hidden) = conn.hidden.get() else {
            return;
        };
        let mut cluster = self.cluster_lock();
        if hidden || self.options.hidden {
            tell(&nodedown(&conn.peer, why), true);
            return;
        }
        if !cluster
            .members
            .get(&conn.peer)
            .is_some_and(|m| Arc::ptr_eq(m, conn))
        {
            return;
        }
        cluster.members.remove(&conn.peer);
        tell(&nodedown(&conn.peer, why), false);
        // Exclusions this member caused end with it: the excluded nodes
        // are dialed again.
        let now = Instant::now();
        let Cluster {
            excluded, retry, ..
        } = &mut *cluster;
        excluded.retain(|name, (_, cause)| {
            let lifted = *cause == conn.peer;
            if lifted {
                retry.insert(name.clone(), Retry::from(now, now));
            }
            !lifted
        });
        if self.stopping.load(Ordering::Acquire) || conn.quiet_loss.load(Ordering::Acquire) {
            return;
        }
        if let Some(incarnation) = conn.incarnation() {
            let report = Request::NodeLost {
                node: conn.peer.clone(),
                incarnation,
            };
            for member in cluster.members.values() {
                let _ = member.send(&report, self);
            }
        }
        if self.meshing() {
            cluster
                .retry
                .insert(conn.peer.clone(), Retry::from(now, now + RETRY_FIRST));
        }
    }

    /// The connections of the visible members.
    pub(super) fn member_connections(&self) -> Vec<Arc<Connection>> {
        self.cluster_lock().members.values().cloned().collect()
    }

    /// A dial of `peer` failed because its host's port mapper does not
    /// know it: it stopped or died, and is no longer dialed again.
    pub(super) fn forget_lost(&self, peer: &str) {
        if self.cluster_lock().retry.remove(peer).is_some() {
            eventlog::event(
                LogLevel::Info,
                &self.full,
                format_args!(
                    "{peer} is gone (its port mapper no longer knows it): not dialed again"
                ),
            );
        }
    }

    /// One tick: heartbeats on quiet connections, and lost members whose
    /// time has come dialed again.
    fn tick(self: &Arc<Self>) {
        let conns: Vec<Arc<Connection>> = lock(&self.peers).values().cloned().collect();
        for conn in &conns {
            conn.heartbeat_if_quiet(self.options.tick, &**self);
        }
        let now = Instant::now();
        let due: Vec<String> = {
            let mut cluster = self.cluster_lock();
            let Cluster { members, retry, .. } = &mut *cluster;
            retry.retain(|_, r| now.duration_since(r.since) < RETRY_FOR);
            let mut due = Vec::new();
            for (name, r) in retry.iter_mut() {
                if members.contains_key(name) || r.next > now {
                    continue;
                }
                r.next = now + r.wait;
                r.wait = (r.wait * 2).min(RETRY_MAX);
                due.push(name.clone());
            }
            due
        };
        for name in due {
            self.background_dial(&name);
        }
    }

    /// Starts the node's ticker thread; it ends when the node stops.
    pub(super) fn start_ticker(self: &Arc<Self>) -> std::io::Result<()> {
        let state = Arc::clone(self);
        thread::Builder::new()
            .name(format!("node-ticker {}", self.full))
            .spawn(move || {
                // One tick, or less if the node stops meanwhile.
                while !state.stopping.load(Ordering::Acquire) {
                    state.tick();
                    state
                        .ticker_stop
                        .wait(Instant::now() + state.options.tick, || true);
                }
            })?;
        Ok(())
    }

    /// Wakes the ticker so it sees the node stopping.
    pub(super) fn stop_ticker(&self) {
        self.ticker_stop.set();
    }
}
