//! `connection-stats`: per peer node, counters kept across reconnects;
//! and the node's own counters.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{current_node, lock};
use crate::term::Term;

/// Counters of the connection to one peer node (SPEC section 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    /// `"host/node"` of the peer.
    pub node: String,
    /// `true` while a connection is open.
    pub connected: bool,
    /// When the last connection was established.
    pub established: Option<SystemTime>,
    /// I/O and protocol errors seen.
    pub errors: u64,
    /// Requests received and sent.
    pub messages_in: u64,
    /// Requests sent.
    pub messages_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Requests dropped (queue full, connection down, stale ids).
    pub dropped: u64,
    /// Sealed frames that failed to open (altered, replayed, reordered);
    /// each closed its connection, and counts in `errors` too.
    pub bad_seals: u64,
    /// Bytes queued for the peer now, not yet written (bounded by
    /// `NodeOptions::max_queue`).
    pub queued: u64,
}

impl ConnectionStats {
    /// As a property list term.
    pub fn to_term(&self) -> Term {
        let count = |n: u64| Term::Int(i64::try_from(n).unwrap_or(i64::MAX));
        Term::plist(vec![
            ("node", Term::Str(self.node.clone())),
            ("connected", Term::from(self.connected)),
            (
                "established",
                self.established
                    .map_or(Term::Nil, |t| Term::Str(crate::time::iso8601(t))),
            ),
            ("errors", count(self.errors)),
            ("messages-in", count(self.messages_in)),
            ("messages-out", count(self.messages_out)),
            ("bytes-in", count(self.bytes_in)),
            ("bytes-out", count(self.bytes_out)),
            ("dropped", count(self.dropped)),
            ("bad-seals", count(self.bad_seals)),
            ("queued-bytes", count(self.queued)),
        ])
    }
}

/// Per-peer connection counters of this node (empty if not a node).
pub fn connection_stats() -> Vec<ConnectionStats> {
    let Some(node) = current_node() else {
        return Vec::new();
    };
    let peers = lock(&node.peers);
    let mut out: Vec<ConnectionStats> = lock(&node.stats)
        .iter()
        .map(|(name, s)| ConnectionStats {
            node: name.clone(),
            connected: peers
                .get(name)
                .is_some_and(|c| !c.is_down() && c.incarnation().is_some()),
            established: *lock(&s.established),
            errors: s.errors.load(Ordering::Relaxed),
            messages_in: s.messages_in.load(Ordering::Relaxed),
            messages_out: s.messages_out.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            bad_seals: s.bad_seals.load(Ordering::Relaxed),
            queued: peers
                .get(name)
                .map_or(0, |c| u64::try_from(c.queued_bytes()).unwrap_or(u64::MAX)),
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// The incarnation of this node's run (a fresh random number at each
/// start), if this process is a node.
pub fn this_incarnation() -> Option<u64> {
    current_node().map(|n| n.incarnation)
}

/// Connections this node closed at accept, unread, because their source
/// address had used up its failed handshakes (PROTOCOL.md, "Node
/// handshake"; 32 in a burst, then 8 a second). 0 if this process is not a
/// node; counted from the node's start.
pub fn throttled_connections() -> u64 {
    current_node().map_or(0, |n| n.throttled.load(Ordering::Relaxed))
}

/// Handshakes that peers started and that failed or were refused (each
/// also logged as one `handshake from … refused` line). 0 if this process
/// is not a node; counted from the node's start.
pub fn refused_handshakes() -> u64 {
    current_node().map_or(0, |n| n.refused_handshakes.load(Ordering::Relaxed))
}

/// Connections closed at accept, unread and unlogged, because all 64
/// handshake slots were busy (PROTOCOL.md, "Node handshake"). 0 if this
/// process is not a node; counted from the node's start.
pub fn slots_full_closes() -> u64 {
    current_node().map_or(0, |n| n.slots_full.load(Ordering::Relaxed))
}

/// Whether this node seals its connections (`NodeOptions::seal`); false
/// if this process is not a node.
pub fn sealed() -> bool {
    current_node().is_some_and(|n| n.options.seal)
}

/// The peers connected now, as `("host/node", incarnation)`, sorted.
pub fn connected_peers() -> Vec<(String, u64)> {
    let Some(node) = current_node() else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = lock(&node.peers)
        .iter()
        .filter(|(_, c)| !c.is_down())
        .filter_map(|(name, c)| Some((name.clone(), c.incarnation()?)))
        .collect();
    out.sort();
    out
}
