//! Peers: one connection per pair of nodes, dialed on demand or accepted,
//! and what happens when one is lost.
//!
//! An accepted, authenticated dial from node P is admitted by what this
//! node holds for P: nothing (or a dead connection): a new connection; a
//! connection to an earlier run of P: replaced; one to this run of P
//! established more than twice the dial deadline ago: replaced (P dials
//! only when it holds no live connection, so it has lost that one); a
//! younger one: REFUSE 1 (the dials crossed); a dial of our own still
//! under way: the dial of the node whose name sorts first wins on both
//! sides, and the loser adopts the winner's connection.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use super::attachments;
use super::connection::Connection;
use super::eventlog::{self, LogLevel};
use super::handshake::{self, HandshakeError, Identity, Refusal};
use super::{lock, NodeState, PendingSpawn, DIAL_BACKOFF, HANDSHAKE_TIMEOUT};
use crate::agent::RemoteError;
use crate::port_mapper;

/// Peers whose connection counters are kept once their connection is gone
/// (`connection-stats`); past it, only connected peers' are.
const MAX_KEPT_STATS: usize = 1024;

impl NodeState {
    /// The connection to `peer`, dialing in the background if there is
    /// none: sends queue until the handshake is done.
    pub(super) fn connection(self: &Arc<Self>, peer: &str) -> Result<Arc<Connection>, RemoteError> {
        self.open(peer, false)
    }

    /// [`NodeState::connection`] for a dial this node makes on its own:
    /// the ticker's redial of a lost member, or a member another node
    /// listed (connect_all). If it dials, its failure is logged at debug:
    /// nobody asked for it, and a loss was logged when it happened (a
    /// list can name a node that died a moment ago).
    pub(super) fn background_dial(self: &Arc<Self>, peer: &str) {
        let _ = self.open(peer, true);
    }

    fn open(
        self: &Arc<Self>,
        peer: &str,
        background: bool,
    ) -> Result<Arc<Connection>, RemoteError> {
        if let Some(c) = lock(&self.peers).get(peer) {
            if !c.is_down() {
                return Ok(Arc::clone(c));
            }
        }
        let unreachable = |reason: String| RemoteError::Unreachable {
            node: peer.to_owned(),
            reason,
        };
        if !handshake::valid_full_name(peer) {
            return Err(unreachable(
                "not a valid host/node name (printable ASCII, no spaces)".into(),
            ));
        }
        if self.stopping.load(Ordering::Acquire) {
            return Err(unreachable("this node is stopping".into()));
        }
        if let Some(cause) = self.is_excluded(peer, None) {
            return Err(unreachable(format!(
                "disconnected to prevent an overlapping partition ({cause} lost it); \
                 connected again once {cause} is"
            )));
        }
        if let Some(at) = lock(&self.failed_dials).get(peer) {
            if at.elapsed() < DIAL_BACKOFF {
                self.stats_for(peer).dropped.fetch_add(1, Ordering::Relaxed);
                return Err(unreachable(
                    "the last attempt to connect failed just now".into(),
                ));
            }
        }
        let mut peers = lock(&self.peers);
        if let Some(c) = peers.get(peer) {
            if !c.is_down() {
                return Ok(Arc::clone(c));
            }
        }
        let Some(conn) = self.new_connection(&mut peers, peer) else {
            return Err(unreachable(format!(
                "this node has {} connections, its limit (max_connections)",
                peers.len()
            )));
        };
        drop(peers);
        conn.background.store(background, Ordering::Release);
        let state = Arc::clone(self);
        let dialing = Arc::clone(&conn);
        let spawned = thread::Builder::new()
            .name(format!("node-dial {peer}"))
            .spawn(move || state.dial(dialing));
        if let Err(e) = spawned {
            self.dial_failed(&conn, &format!("cannot start a thread: {e}"));
            return Err(unreachable(format!(
                "cannot start a thread to dial it: {e}"
            )));
        }
        Ok(conn)
    }

    fn dial(self: Arc<Self>, conn: Arc<Connection>) {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match self.dial_inner(&conn.peer, deadline) {
            Ok((stream, (info, keys))) => {
                if conn.is_claimed() || conn.is_down() {
                    // An accepted connection from the peer took over (or
                    // the node stopped): this one is surplus.
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                let dispatch = self.dispatcher();
                self.announce_membership(&conn);
                if let Err(e) = conn.establish(stream, info, keys, dispatch, self.options.timeout) {
                    self.dial_failed(&conn, &e.to_string());
                    return;
                }
                lock(&self.failed_dials).remove(&conn.peer);
                self.established(&conn);
            }
            Err(DialError::Handshake(HandshakeError::Refused(Refusal::Busy, _))) => {
                // The peer is dialing us and its dial wins: our accept of
                // it adopts this connection (with everything queued on it).
                if !conn.wait_claimed(deadline) {
                    self.dial_failed(&conn, "the peer refused a second connection");
                }
            }
            Err(DialError::Gone(e)) => {
                // Stopped or dead: a lost member is not dialed again.
                self.forget_lost(&conn.peer);
                self.dial_failed(&conn, &e);
            }
            Err(e) => self.dial_failed(&conn, &e.to_string()),
        }
    }

    fn dial_inner(
        &self,
        peer: &str,
        deadline: Instant,
    ) -> Result<(TcpStream, handshake::Session), DialError> {
        let (host, node) = peer
            .split_once('/')
            .ok_or_else(|| DialError::Other(format!("{peer:?} is not host/node")))?;
        let resolve = |port: u16| {
            (host, port)
                .to_socket_addrs()
                .map_err(|e| DialError::Other(format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| DialError::Other(format!("cannot resolve {host}")))
        };
        let directory = resolve(self.options.config.directory_port)?;
        let found = |e: port_mapper::PortMapperError| match e {
            port_mapper::PortMapperError::UnknownNode(_) => {
                DialError::Gone(format!("cannot find {peer}: {e}"))
            }
            e => DialError::Other(format!("cannot find {peer}: {e}")),
        };
        let connect = |port: u16| -> Result<TcpStream, DialError> {
            let addr = resolve(port)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DialError::Handshake(HandshakeError::Timeout));
            }
            TcpStream::connect_timeout(&addr, left)
                .map_err(|e| DialError::Other(format!("cannot connect to {peer}: {e}")))
        };
        let (port, maybe_stale) = self
            .ports
            .port(directory, node, HANDSHAKE_TIMEOUT)
            .map_err(found)?;
        let mut stream = match connect(port) {
            // A port from a LIST of the last second may be stale (the node
            // restarted): ask again by name, once.
            Err(_) if maybe_stale => connect(
                self.ports
                    .query_again(directory, node, HANDSHAKE_TIMEOUT)
                    .map_err(found)?,
            )?,
            other => other?,
        };
        let me = Identity {
            name: &self.full,
            incarnation: self.incarnation,
            cookie: &self.cookie,
            seal: self.options.seal,
        };
        let info = handshake::client(&mut stream, &me, peer, deadline).map_err(|e| {
            if matches!(e, HandshakeError::WrongPeer { .. }) {
                self.ports.forget(directory);
            }
            DialError::Handshake(e)
        })?;
        Ok((stream, info))
    }

    fn dial_failed(&self, conn: &Arc<Connection>, reason: &str) {
        conn.stats.errors.fetch_add(1, Ordering::Relaxed);
        {
            // Entries past the back-off mean nothing: dropped, so the
            // table holds only the dials that failed in the last 500 ms.
            let mut failed = lock(&self.failed_dials);
            failed.retain(|_, at| at.elapsed() < DIAL_BACKOFF);
            failed.insert(conn.peer.clone(), Instant::now());
        }
        if conn.mark_down() {
            self.connection_lost(conn, reason);
        }
    }

    /// A new connection to `peer` in the map, in place of the one there (it
    /// then delivers nothing before that one's loss was told, see
    /// `Connection::follows`); `None` at `max_connections`.
    fn new_connection(
        &self,
        peers: &mut HashMap<String, Arc<Connection>>,
        peer: &str,
    ) -> Option<Arc<Connection>> {
        let old = peers.get(peer).cloned();
        if peers.len() - usize::from(old.is_some()) >= self.options.max_connections {
            return None;
        }
        let conn = Connection::new(
            peer.to_owned(),
            self.stats_for(peer),
            self.options.max_queue,
        );
        if let Some(old) = old {
            conn.follows(old);
        }
        peers.insert(peer.to_owned(), Arc::clone(&conn));
        // Counters are kept across reconnects, but not for every peer ever
        // seen (each remote shell is a new one): past the bound, those of
        // peers without a connection go.
        let mut stats = lock(&self.stats);
        if stats.len() > MAX_KEPT_STATS {
            stats.retain(|name, _| peers.contains_key(name));
        }
        Some(conn)
    }

    /// A connection is gone for good: forget it, tell every agent attached
    /// over it (once), fail the spawns waiting for it.
    pub(super) fn connection_lost(&self, conn: &Arc<Connection>, why: &str) {
        if conn.incarnation().is_some() {
            let level = if self.stopping.load(Ordering::Acquire) {
                LogLevel::Info
            } else {
                LogLevel::Warn
            };
            eventlog::event(
                level,
                &self.full,
                format_args!("peer {} down: {why}", conn.peer),
            );
        } else {
            // A dial made on the node's own (a redial of a lost member,
            // a member another node listed) fails quietly: a loss was
            // logged, and the ticker tries again (or, when the node is
            // gone, `forget_lost` says so once).
            let level = if conn.background.load(Ordering::Acquire) {
                LogLevel::Debug
            } else {
                LogLevel::Warn
            };
            eventlog::event(
                level,
                &self.full,
                format_args!("cannot connect to {}: {why}", conn.peer),
            );
        }
        self.cluster_lost(conn, why);
        super::groups::connection_lost(conn);
        super::global::connection_lost(conn);
        for entry in conn.attached.close() {
            attachments::tell_lost(entry, &conn.peer);
        }
        let failed: Vec<PendingSpawn> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| Arc::ptr_eq(&p.conn, conn))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for p in failed {
            if let Some(reply) = p.reply {
                let _ = reply.send(Err(RemoteError::Unreachable {
                    node: conn.peer.clone(),
                    reason: why.to_owned(),
                }));
            }
        }
        // Forgotten only now, and a connection that replaced it delivers
        // only now (`Connection::follows`): whoever was attached over this
        // one hears of its loss before anything of the next.
        {
            let mut peers = lock(&self.peers);
            if peers.get(&conn.peer).is_some_and(|c| Arc::ptr_eq(c, conn)) {
                peers.remove(&conn.peer);
            }
        }
        conn.loss_handled();
    }

    /// Serves a connection accepted from address `from`: handshake, then
    /// one connection per peer (see the module doc for simultaneous
    /// dials). A handshake that fails before the peer proved the cookie
    /// costs `from` a token of its throttle (throttle.rs).
    pub(super) fn accept(self: &Arc<Self>, mut stream: TcpStream, from: Option<IpAddr>) {
        let me = Identity {
            name: &self.full,
            incarnation: self.incarnation,
            cookie: &self.cookie,
            seal: self.options.seal,
        };
        let mut chosen: Option<Arc<Connection>> = None;
        let mut replaced: Option<(Arc<Connection>, &str)> = None;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let admitted = handshake::server(&mut stream, &me, deadline, |info| {
            if self.stopping.load(Ordering::Acquire) {
                return Err(Refusal::Limit);
            }
            if self
                .is_excluded(&info.name, Some(info.incarnation))
                .is_some()
            {
                return Err(Refusal::Excluded);
            }
            let mut peers = lock(&self.peers);
            match peers.get(&info.name) {
                Some(c) if !c.is_down() => match c.incarnation() {
                    Some(inc) => {
                        let why = if inc != info.incarnation {
                            // Established with an earlier run: that run is
                            // gone.
                            "the peer restarted (new incarnation)"
                        } else if c
                            .established_for()
                            .is_some_and(|t| t > 2 * HANDSHAKE_TIMEOUT)
                        {
                            // Established with this very run more than
                            // twice a dial's deadline ago (a dial,
                            // port-mapper lookup included, ends within
                            // one), and it dials us anyway: that dial began
                            // after both ends of ours were up, and a node
                            // dials only when it holds no live connection,
                            // so the peer has lost ours (declared us down,
                            // say while we were stopped) and ours is half
                            // open, to be found dead only later. The peer
                            // proved the cookie; as Erlang does, the new
                            // connection replaces the old one, and whoever
                            // was attached over it is told now.
                            "the peer dialed again (it had lost this connection)"
                        } else {
                            // Established with this run just now: its dial
                            // crossed ours. One connection per pair.
                            return Err(Refusal::Busy);
                        };
                        replaced = Some((Arc::clone(c), why));
                        chosen = self.new_connection(&mut peers, &info.name);
                        chosen.as_ref().map(|_| ()).ok_or(Refusal::Limit)
                    }
                    // We are dialing it at this moment: the dial of the
                    // node whose name sorts first wins, on both sides.
                    None if self.full < info.name => Err(Refusal::Busy),
                    None => {
                        if !c.claim() {
                            return Err(Refusal::Busy);
                        }
                        chosen = Some(Arc::clone(c));
                        Ok(())
                    }
                },
                _ => {
                    chosen = self.new_connection(&mut peers, &info.name);
                    chosen.as_ref().map(|_| ()).ok_or(Refusal::Limit)
                }
            }
        });
        let (info, keys) = match admitted {
            Ok(session) => session,
            Err(e) => {
                // Admitted, then the handshake failed (the ACCEPT could not
                // be written): the connection made for it must not stay in
                // the map, undialable and never established.
                let admitted = chosen.take();
                if let Some(c) = &admitted {
                    if c.mark_down() {
                        self.connection_lost(c, &e.to_string());
                    }
                }
                // What it replaced is out of the map already: end it too
                // (the peer had lost it, or is a new run).
                if let Some((old, why)) = replaced.take() {
                    old.quiet_loss.store(true, Ordering::Release);
                    old.fail(&self.dispatcher(), why);
                }
                // A peer that did not prove the cookie costs its address a
                // token (throttle.rs); one refused or admitted after proving
                // it does not.
                let proved = admitted.is_some()
                    || matches!(
                        e,
                        HandshakeError::RefusedByUs(..)
                            | HandshakeError::SealMismatch { .. }
                            | HandshakeError::LowOrderKey
                    );
                if let (Some(ip), false) = (from, proved) {
                    lock(&self.throttle).failed(ip, Instant::now());
                }
                self.refused_handshakes.fetch_add(1, Ordering::Relaxed);
                let addr = stream
                    .peer_addr()
                    .map_or_else(|_| "?".to_owned(), |a| a.to_string());
                // Crossed dials are routine in a cluster that connects
                // transitively: not worth a warning.
                let level = if matches!(e, HandshakeError::RefusedByUs(Refusal::Busy)) {
                    LogLevel::Debug
                } else {
                    LogLevel::Warn
                };
                eventlog::event(
                    level,
                    &self.full,
                    format_args!("handshake from {addr} refused: {e}"),
                );
                // Nothing is served to a peer that did not prove the cookie
                // or was refused.
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        };
        let dispatch = self.dispatcher();
        if let Some((old, why)) = replaced {
            // Replaced, not lost: the other members are not told.
            old.quiet_loss.store(true, Ordering::Release);
            old.fail(&dispatch, why);
        }
        let Some(conn) = chosen else { return };
        self.announce_membership(&conn);
        if let Err(e) = conn.establish(
            stream,
            info,
            keys,
            Arc::clone(&dispatch),
            self.options.timeout,
        ) {
            conn.fail(&dispatch, &format!("cannot start the connection: {e}"));
            return;
        }
        self.established(&conn);
    }

    /// A connection is up: the peer hears this node's group members and
    /// global names (groups.rs, global.rs), after the NODES frame queued
    /// in front of everything before the writer started (cluster.rs).
    fn established(&self, conn: &Arc<Connection>) {
        let again = !eventlog::first_connection(&conn.peer);
        eventlog::event(
            LogLevel::Info,
            &self.full,
            format_args!(
                "{} {} (incarnation {})",
                if again {
                    "reconnected to"
                } else {
                    "connected to"
                },
                conn.peer,
                conn.incarnation().unwrap_or(0)
            ),
        );
        self.sync_groups(conn);
        self.sync_global(conn);
    }
}

/// Why a dial did not give a connection.
enum DialError {
    Handshake(HandshakeError),
    /// The peer's host does not know it (stopped, or died).
    Gone(String),
    Other(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Handshake(e) => e.fmt(f),
            DialError::Gone(e) | DialError::Other(e) => f.write_str(e),
        }
    }
}
