//! Nodes: this process's agents reachable from other processes and hosts
//! over TCP (SPEC section 6), with remote spawn, send, link, unlink, exit,
//! exit notifications and failure detection.
//!
//! A process is at most one node at a time. Starting a node binds a listener
//! on a free port of the given host, registers the node's name with the
//! host's port mapper (kept registered while the node runs, re-registered if
//! the port mapper restarts), and installs the node as the agent layer's
//! route to ids of other nodes. Connections are opened on demand, one per
//! peer, and authenticated by cookie before anything else is read
//! (see PROTOCOL.md, "Handshake").
//!
//! Every local agent attached to a remote agent is recorded with the
//! connection it was attached over (`attachments.rs`), so that when the
//! connection is lost each of them is told exactly once: a linked agent (or
//! one monitored by a remote agent, which the seed's two-way monitor link
//! kills) gets an exit signal, a monitoring agent gets
//! `("host/node/aid" :EXIT (:NOCONNECTION "host/node"))`.
//!
//! Identity across restarts follows Erlang's creation number: each start of
//! a node draws a fresh random incarnation, every agent reference handed out
//! carries it, and every request naming an agent of the receiving node says
//! which run it means (`to_incarnation`, 0 for "current", as for an id typed
//! as text). A node drops a SEND (counted) and answers LINK with `:NOPROC`
//! when the incarnation is not its own, so a reference from an earlier run
//! never reaches an agent of the new one, even one with the same id string.
//!
//! One connection per pair of nodes: when both dial at once, the dial of the
//! node whose `host/node` name sorts first wins on both sides (the other
//! side's accept adopts it into its own dialing connection, keeping what
//! was queued there).

// What is here, from the outside in:
//  1. options.rs     what a node starts with, and why it may not start
//  2. handle.rs      start and stop: listener, registration, accept loop
//  3. handshake.rs   cookie authentication of a new connection
//  4. peers.rs       one connection per pair: dialing, accepting, loss
//  5. connection.rs  one connection: batching writer, reader, heartbeats
//  6. latch.rs       a flag set once, waited for with a deadline
//  7. protocol.rs    the request frames
//  8. inbound.rs     what a node does with each request it reads
//  9. outbound.rs    what agents ask of other nodes; remote spawn
// 10. attachments.rs who is told when a connection is lost (exactly once)
// 11. stats.rs       connection-stats
// 12. ports.rs       port-mapper lookups shared by a burst of dials
// 13. cluster.rs     membership, transitive connections, overlap rule,
//                    heartbeats and redials (the ticker)
// 14. groups.rs      process groups across nodes (pg)
// 15. global.rs      cluster-wide names (global): claims and conflicts
// 16. eventlog.rs    one stderr line per connection event, by level
// 17. throttle.rs    failed handshakes throttled per source address
mod attachments;
pub mod cluster;
mod connection;
pub mod eventlog;
pub mod global;
pub mod groups;
mod handle;
pub(crate) mod handshake;
mod inbound;
mod latch;
mod options;
mod outbound;
mod peers;
mod ports;
pub(crate) mod protocol;
pub(crate) mod seal;
mod stats;
mod throttle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::agent::target;
use crate::agent::{self, Agent};
use crate::term::{AgentIds, AgentRef};

use connection::{Connection, PeerStats};

pub use crate::crypto::cookie::CookieError;
pub use cluster::{demonitor_nodes, monitor_nodes, nodes, nodes_with_hidden};
pub use handle::{node, start, NodeHandle};
pub use options::{NodeError, NodeOptions};
pub use outbound::spawn_on;
pub use stats::{
    connected_peers, connection_stats, refused_handshakes, sealed, slots_full_closes,
    this_incarnation, throttled_connections, ConnectionStats,
};

/// Handshakes in progress at once; more connections are closed at once.
const MAX_HANDSHAKES: usize = 64;
/// Time a whole handshake may take (every read and write of it).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed dial, sends to that peer are dropped for this long
/// instead of dialing again (no dial storm towards a dead node).
const DIAL_BACKOFF: Duration = Duration::from_millis(500);

/// A remote spawn waiting for its reply.
struct PendingSpawn {
    conn: Arc<Connection>,
    caller: Agent,
    attach: agent::Attach,
    /// `None` once the caller gave up waiting: a late success reply then
    /// ends the orphan it names (it was told it is attached to the caller).
    reply: Option<mpsc::Sender<Result<AgentRef, agent::RemoteError>>>,
}

pub(crate) struct NodeState {
    host: String,
    name: String,
    /// `"host/name"`.
    full: String,
    incarnation: u64,
    cookie: Vec<u8>,
    options: NodeOptions,
    /// One connection per peer, open or being dialed.
    peers: Mutex<HashMap<String, Arc<Connection>>>,
    stats: Mutex<HashMap<String, Arc<PeerStats>>>,
    failed_dials: Mutex<HashMap<String, Instant>>,
    pending: Mutex<HashMap<u64, PendingSpawn>>,
    next_request: AtomicU64,
    handshakes: AtomicUsize,
    stopping: AtomicBool,
    /// Requests dropped because they named an agent of an earlier run.
    stale_drops: AtomicU64,
    /// Failed handshakes per source address (throttle.rs).
    throttle: Mutex<throttle::Throttle>,
    /// Connections closed at accept by the throttle.
    throttled: AtomicU64,
    /// Handshakes from peers that failed or were refused.
    refused_handshakes: AtomicU64,
    /// Connections closed at accept because every handshake slot was busy.
    slots_full: AtomicU64,
    port: u16,
    /// Where the listener is bound (to wake its accept loop at shutdown).
    listen_addr: std::net::SocketAddr,
    /// Members, exclusions and redials (cluster.rs).
    cluster: Mutex<cluster::Cluster>,
    /// Set at stop, to end the ticker's wait at once.
    ticker_stop: latch::Latch,
    /// Port-mapper answers shared by the dials of one moment.
    ports: ports::PortBook,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static NODE: RwLock<Option<Arc<NodeState>>> = RwLock::new(None);

fn current_node() -> Option<Arc<NodeState>> {
    NODE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `false` if this process is a node started with
/// `NodeOptions::remote_shell` off (true when it is not a node).
pub fn remote_shells_allowed() -> bool {
    current_node().is_none_or(|n| n.options.remote_shell)
}

/// As [`this_node`], without waiting: `None` while the node is being set
/// (for the panic hook, which must not wait on a lock its thread may hold).
pub(crate) fn this_node_now() -> Option<String> {
    NODE.try_read().ok()?.as_ref().map(|n| n.full.clone())
}

/// `"host/node"` of this process's node, if it is one.
pub fn this_node() -> Option<String> {
    current_node().map(|n| n.full.clone())
}

/// `true` if `host` can name a host in ids: 1-255 bytes of printable ASCII
/// without `/` (ids are split at `/`; names end up in thread names and log
/// lines, where a NUL or a space does not belong).
pub(crate) fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'/')
}

/// The machine's host name (`/proc/sys/kernel/hostname`, `/etc/hostname`,
/// `$HOSTNAME`), or `localhost`.
pub fn host_name() -> String {
    let from_file = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| valid_host_name(h))
        .unwrap_or_else(|| "localhost".to_owned())
}

impl NodeState {
    /// This node as its connections call back into it.
    fn dispatcher(self: &Arc<Self>) -> Arc<dyn connection::Dispatch> {
        Arc::new(inbound::Route(Arc::clone(self)))
    }

    /// The id other nodes know `agent` by: `host/node/aid` (hex).
    fn full_id(&self, agent: &Agent) -> String {
        format!("{}/{:x}", self.full, agent.aid())
    }

    fn stats_for(&self, peer: &str) -> Arc<PeerStats> {
        Arc::clone(lock(&self.stats).entry(peer.to_owned()).or_default())
    }
}

impl AgentIds for NodeState {
    fn wire_id(&self, serial: u64) -> Option<(String, u64)> {
        target::by_serial(serial).map(|a| (self.full_id(&a), self.incarnation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_printable_ascii_without_slashes() {
        assert!(valid_host_name("localhost"));
        assert!(valid_host_name("10.0.0.1"));
        assert!(!valid_host_name(""));
        assert!(!valid_host_name("a/b"));
        assert!(!valid_host_name("a b"));
        assert!(!valid_host_name("a\0b"));
        assert!(!valid_host_name(&"h".repeat(256)));
    }

    #[test]
    fn a_zero_tick_is_refused() {
        let options = NodeOptions {
            tick: Duration::ZERO,
            ..NodeOptions::default()
        };
        assert!(matches!(start(options), Err(NodeError::Options(_))));
    }
}
