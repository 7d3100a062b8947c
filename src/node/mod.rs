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

mod attachments;
mod connection;
pub(crate) mod handshake;
pub(crate) mod protocol;
mod sys;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::agent::target::{self, Remote, RemoteRef, Resolved};
use crate::agent::{
    self, Agent, LinkError, Outcome, Peer, PeerKey, SendError, SpawnError, SpawnOptions,
};
use crate::call;
use crate::config::Config;
use crate::port_mapper;
use crate::term::{self, AgentIds, AgentRef, Term};

use attachments::{Attachment, Entry};
use connection::{Connection, Dispatch, PeerStats, Unsendable};
use handshake::{HandshakeError, Identity, PeerInfo, Refusal};
use protocol::Request;

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Host name the node listens on and is known by (ids start with it).
    /// Default: the machine's host name.
    pub host: Option<String>,
    /// Node name, unique on the host. Default: `node-PID`.
    pub name: Option<String>,
    /// Port-mapper ports and cookie file.
    pub config: Config,
    /// Heartbeat interval on idle connections (default 1 s).
    pub tick: Duration,
    /// A peer silent this long is down (default 4 s; must exceed `tick`).
    pub timeout: Duration,
    /// Bytes queued per peer before sends are dropped (default 1 MiB).
    pub max_queue: usize,
    /// How long a remote spawn waits for its reply (default 10 s). A reply
    /// that comes later ends the agent it names if it was attached.
    pub spawn_timeout: Duration,
    /// Connections to other nodes (dialed and accepted, open or being
    /// opened) at once; each costs a reader and a writer thread. Default
    /// 256; beyond it dials fail and peers are refused.
    pub max_connections: usize,
    /// Limits on decoded terms.
    pub limits: term::Limits,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            host: None,
            name: None,
            config: crate::config::default(),
            tick: Duration::from_secs(1),
            timeout: Duration::from_secs(4),
            max_queue: 1024 * 1024,
            max_connections: 256,
            spawn_timeout: Duration::from_secs(10),
            limits: term::Limits::default(),
        }
    }
}

/// Why a node could not start or a remote operation failed.
#[derive(Debug)]
pub enum NodeError {
    /// This process is already a node.
    AlreadyRunning(String),
    /// The listener could not be bound.
    Bind(String, io::Error),
    /// The cookie could not be loaded.
    Cookie(String),
    /// The port mapper refused or could not be reached.
    PortMapper(String),
    /// A bad option value.
    Options(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::AlreadyRunning(n) => write!(f, "this process is already the node {n}"),
            NodeError::Bind(host, e) => write!(f, "cannot listen on {host}: {e}"),
            NodeError::Cookie(e) => write!(f, "{e}"),
            NodeError::PortMapper(e) => write!(f, "port mapper: {e}"),
            NodeError::Options(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NodeError {}

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
    reply: Option<mpsc::Sender<Result<AgentRef, String>>>,
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
    port: u16,
    /// Where the listener is bound (to wake its accept loop at shutdown).
    listen_addr: std::net::SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static NODE: RwLock<Option<Arc<NodeState>>> = RwLock::new(None);

fn current_node() -> Option<Arc<NodeState>> {
    NODE.read().unwrap_or_else(|e| e.into_inner()).clone()
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

/// A running node; dropping it (or [`NodeHandle::stop`]) takes the node down.
pub struct NodeHandle {
    state: Arc<NodeState>,
    listener: Option<thread::JoinHandle<()>>,
    registration: Option<port_mapper::client::KeepRegistered>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeHandle({})", self.state.full)
    }
}

impl NodeHandle {
    /// `"host/node"`.
    pub fn full_name(&self) -> &str {
        &self.state.full
    }

    /// The TCP port the node listens on.
    pub fn port(&self) -> u16 {
        self.state.port
    }

    /// Takes the node down: listener closed, registration dropped,
    /// connections closed (peers see them close), attached agents told.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let state = &self.state;
        if state.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake the accept loop by connecting to ourselves, at the address
        // the listener is bound to.
        let mut wake = state.listen_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(l) = self.listener.take() {
            // Without the wake-up the accept loop ends at its next
            // connection; joining would wait for that.
            if woke {
                let _ = l.join();
            }
        }
        drop(self.registration.take());
        {
            let mut slot = NODE.write().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|n| Arc::ptr_eq(n, state)) {
                *slot = None;
                target::remove_remote();
            }
        }
        let conns: Vec<Arc<Connection>> = lock(&state.peers).drain().map(|(_, c)| c).collect();
        let dispatch: Arc<dyn Dispatch> = Arc::clone(state) as Arc<dyn Dispatch>;
        for c in conns {
            c.fail(&dispatch, "this node stopped");
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A fresh, non-zero incarnation (0 means "current run" on the wire).
fn incarnation() -> u64 {
    let mut b = [0u8; 8];
    let drawn = if crate::crypto::random_bytes(&mut b).is_ok() {
        u64::from_be_bytes(b)
    } else {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    };
    drawn.max(1)
}

/// Starts this process's node and returns at once.
///
/// # Errors
/// [`NodeError`]: already a node, the listener cannot be bound, the cookie
/// cannot be loaded, the name is taken or the port mapper cannot be reached.
pub fn start(options: NodeOptions) -> Result<NodeHandle, NodeError> {
    if options.tick.is_zero() {
        // A zero tick would make every writer send heartbeats in a loop.
        return Err(NodeError::Options(
            "the heartbeat tick must be longer than zero".into(),
        ));
    }
    if options.max_connections == 0 {
        return Err(NodeError::Options(
            "max_connections must be at least 1".into(),
        ));
    }
    if options.timeout <= options.tick {
        return Err(NodeError::Options(format!(
            "the failure timeout ({:?}) must be longer than the heartbeat tick ({:?})",
            options.timeout, options.tick
        )));
    }
    if let Some(n) = current_node() {
        return Err(NodeError::AlreadyRunning(n.full.clone()));
    }
    let host = options.host.clone().unwrap_or_else(host_name);
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("node-{}", std::process::id()));
    port_mapper::valid_node_name(&name).map_err(|e| NodeError::Options(e.to_string()))?;
    if !valid_host_name(&host) {
        return Err(NodeError::Options(format!(
            "{host:?} is not a valid host name (1-255 printable ASCII characters, no '/')"
        )));
    }
    let cookie = crate::crypto::cookie::load_or_create(&options.config.cookie_file)
        .map_err(|e| NodeError::Cookie(e.to_string()))?;
    let listener =
        TcpListener::bind((host.as_str(), 0)).map_err(|e| NodeError::Bind(host.clone(), e))?;
    let listen_addr = listener
        .local_addr()
        .map_err(|e| NodeError::Bind(host.clone(), e))?;
    let port = listen_addr.port();
    let registry = std::net::SocketAddr::from(([127, 0, 0, 1], options.config.registry_port));
    let registration = port_mapper::client::KeepRegistered::start(registry, &name, port)
        .map_err(|e| NodeError::PortMapper(e.to_string()))?;
    let state = Arc::new(NodeState {
        full: format!("{host}/{name}"),
        host,
        name,
        incarnation: incarnation(),
        cookie,
        options,
        peers: Mutex::new(HashMap::new()),
        stats: Mutex::new(HashMap::new()),
        failed_dials: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        next_request: AtomicU64::new(1),
        handshakes: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        stale_drops: AtomicU64::new(0),
        port,
        listen_addr,
    });
    {
        let mut slot = NODE.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = slot.as_ref() {
            return Err(NodeError::AlreadyRunning(n.full.clone()));
        }
        *slot = Some(Arc::clone(&state));
        target::install_remote(Arc::clone(&state) as Arc<dyn Remote>);
    }
    let accept_state = Arc::clone(&state);
    let listener_thread = thread::Builder::new()
        .name(format!("node-listener {}", state.full))
        .spawn(move || accept_loop(accept_state, listener));
    let listener_thread = match listener_thread {
        Ok(t) => t,
        Err(e) => {
            let mut handle = NodeHandle {
                state,
                listener: None,
                registration: Some(registration),
            };
            handle.shutdown();
            return Err(NodeError::Bind("listener thread".into(), e));
        }
    };
    Ok(NodeHandle {
        state,
        listener: Some(listener_thread),
        registration: Some(registration),
    })
}

/// Makes the calling agent a node and serves until that agent is killed
/// (SPEC section 6: `node` does not return while the node is up). Messages
/// sent to the node's agent are ignored. When the agent exits, the node is
/// taken down cleanly.
///
/// # Errors
/// [`NodeError`] if the node cannot start; otherwise it does not return.
pub fn node(options: NodeOptions) -> Result<(), NodeError> {
    let handle = start(options)?;
    loop {
        // An exit signal unwinds from here; dropping `handle` on the way
        // out stops the node.
        let _ = agent::receive();
        if handle.state.stopping.load(Ordering::Acquire) {
            return Ok(());
        }
    }
}

/// One of the `MAX_HANDSHAKES` slots, released when dropped (also when the
/// handshake thread unwinds or cannot be started).
struct HandshakeSlot(Arc<NodeState>);

impl HandshakeSlot {
    fn take(state: &Arc<NodeState>) -> Option<HandshakeSlot> {
        if state.handshakes.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
            state.handshakes.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(HandshakeSlot(Arc::clone(state)))
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(state: Arc<NodeState>, listener: TcpListener) {
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Some(slot) = HandshakeSlot::take(&state) else {
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        };
        // If the thread cannot start, the closure (and the slot in it) is
        // dropped here and the slot is free again.
        let _ = thread::Builder::new()
            .name(format!("node-handshake {}", state.full))
            .spawn(move || {
                slot.0.accept(stream);
                drop(slot);
            });
    }
}

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
                    .map_or(Term::Nil, |t| Term::Str(crate::management::iso8601(t))),
            ),
            ("errors", count(self.errors)),
            ("messages-in", count(self.messages_in)),
            ("messages-out", count(self.messages_out)),
            ("bytes-in", count(self.bytes_in)),
            ("bytes-out", count(self.bytes_out)),
            ("dropped", count(self.dropped)),
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
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// Spawns `call` on node `node` of `host` (default: this node's host) with
/// `options` (attach mode and mailbox size; a name is not sent). Returns a
/// reference to the new agent, which prints as its id string
/// `"host/node/aid"` and names that agent of that run of the node only.
/// With `attach`, the calling agent is attached before the agent runs.
///
/// # Errors
/// [`SpawnError::Remote`]: this process is not a node, the node cannot be
/// reached, the function is unknown there, the node cannot start the agent
/// (its agent ceiling), or no reply came in time.
pub fn spawn_on(
    host: Option<&str>,
    node: &str,
    call: &Term,
    options: &SpawnOptions,
) -> Result<AgentRef, SpawnError> {
    let state = current_node()
        .ok_or_else(|| SpawnError::Remote("this process is not a node (call node first)".into()))?;
    let host = host.unwrap_or(&state.host);
    let peer = format!("{host}/{node}");
    if peer == state.full {
        let (function, args) = call::prepare(call)?;
        let agent = agent::spawn_with(options, move || function(&args))?;
        // The same form as for any other node: the id of this run.
        return Ok(AgentRef::Remote {
            id: Arc::from(state.full_id(&agent)),
            incarnation: state.incarnation,
        });
    }
    let conn = state.connection(&peer).map_err(SpawnError::Remote)?;
    let caller = Agent::current();
    let request = state.next_request.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    lock(&state.pending).insert(
        request,
        PendingSpawn {
            conn: Arc::clone(&conn),
            caller: caller.clone(),
            attach: options.attach,
            reply: Some(tx),
        },
    );
    let mailbox = u32::try_from(options.mailbox_size).unwrap_or(u32::MAX);
    let attach = match options.attach {
        agent::Attach::None => 0,
        agent::Attach::Link => 1,
        agent::Attach::Monitor => 2,
    };
    let sent = conn.send(
        &Request::Spawn {
            request,
            reply_to: state.full_id(&caller),
            attach,
            mailbox,
            call: call.clone(),
        },
        &*state,
    );
    match sent {
        Ok(true) => {}
        Ok(false) => {
            lock(&state.pending).remove(&request);
            return Err(SpawnError::Remote(format!("{peer} is not reachable")));
        }
        Err(e) => {
            lock(&state.pending).remove(&request);
            return Err(SpawnError::Remote(format!("the call cannot be sent: {e}")));
        }
    }
    let waited = state.options.spawn_timeout;
    match rx.recv_timeout(waited) {
        Ok(Ok(agent)) => Ok(agent),
        Ok(Err(e)) => Err(SpawnError::Remote(e)),
        Err(_) => {
            // Keep the entry, without a reply channel: if the reply still
            // comes, the orphan it names is told to exit.
            if let Some(p) = lock(&state.pending).get_mut(&request) {
                p.reply = None;
            }
            Err(SpawnError::Remote(format!(
                "no reply from {peer} within {waited:?} (spawn_timeout)"
            )))
        }
    }
}

impl AgentIds for NodeState {
    fn wire_id(&self, serial: u64) -> Option<(String, u64)> {
        target::by_serial(serial).map(|a| (self.full_id(&a), self.incarnation))
    }
}

/// The mailbox size a SPAWN request gets: 0 asks for the default; a peer's
/// `u32` is clamped to [`protocol::MAX_REMOTE_MAILBOX`], not trusted.
fn remote_mailbox_size(requested: u32) -> usize {
    match requested {
        0 => crate::mailbox::DEFAULT_MAILBOX_SIZE,
        n => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(protocol::MAX_REMOTE_MAILBOX),
    }
}

/// The reason an orphan of a remote spawn is ended with: its caller stopped
/// waiting for the reply.
fn abandoned_reason() -> Term {
    Term::keyword("spawn-abandoned")
}

impl NodeState {
    /// The id other nodes know `agent` by: `host/node/aid` (hex).
    fn full_id(&self, agent: &Agent) -> String {
        format!("{}/{:x}", self.full, agent.aid())
    }

    fn stats_for(&self, peer: &str) -> Arc<PeerStats> {
        Arc::clone(lock(&self.stats).entry(peer.to_owned()).or_default())
    }

    /// The connection to `peer`, dialing in the background if there is
    /// none: sends queue until the handshake is done.
    fn connection(self: &Arc<Self>, peer: &str) -> Result<Arc<Connection>, String> {
        if let Some(c) = lock(&self.peers).get(peer) {
            if !c.is_down() {
                return Ok(Arc::clone(c));
            }
        }
        if !handshake::valid_full_name(peer) {
            return Err(format!("{peer:?} is not a valid host/node name"));
        }
        if self.stopping.load(Ordering::Acquire) {
            return Err("this node is stopping".into());
        }
        if let Some(at) = lock(&self.failed_dials).get(peer) {
            if at.elapsed() < DIAL_BACKOFF {
                self.stats_for(peer).dropped.fetch_add(1, Ordering::Relaxed);
                return Err(format!(
                    "{peer} is not reachable (last attempt failed just now)"
                ));
            }
        }
        let mut peers = lock(&self.peers);
        if let Some(c) = peers.get(peer) {
            if !c.is_down() {
                return Ok(Arc::clone(c));
            }
        }
        peers.retain(|_, c| !c.is_down());
        if peers.len() >= self.options.max_connections {
            return Err(format!(
                "cannot connect to {peer}: this node has {} connections, its limit (max_connections)",
                peers.len()
            ));
        }
        let conn = Connection::new(
            peer.to_owned(),
            self.stats_for(peer),
            self.options.max_queue,
        );
        peers.insert(peer.to_owned(), Arc::clone(&conn));
        drop(peers);
        let state = Arc::clone(self);
        let dialing = Arc::clone(&conn);
        let spawned = thread::Builder::new()
            .name(format!("node-dial {peer}"))
            .spawn(move || state.dial(dialing));
        if let Err(e) = spawned {
            self.dial_failed(&conn, &format!("cannot start a thread: {e}"));
            return Err(format!("cannot dial {peer}: {e}"));
        }
        Ok(conn)
    }

    fn dial(self: Arc<Self>, conn: Arc<Connection>) {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match self.dial_inner(&conn.peer, deadline) {
            Ok((stream, info)) => {
                if conn.is_claimed() || conn.is_down() {
                    // An accepted connection from the peer took over (or
                    // the node stopped): this one is surplus.
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                let dispatch: Arc<dyn Dispatch> = Arc::clone(&self) as Arc<dyn Dispatch>;
                if let Err(e) = conn.establish(
                    stream,
                    info,
                    dispatch,
                    self.options.tick,
                    self.options.timeout,
                ) {
                    self.dial_failed(&conn, &e.to_string());
                    return;
                }
                lock(&self.failed_dials).remove(&conn.peer);
            }
            Err(DialError::Handshake(HandshakeError::Refused(Refusal::Busy, _))) => {
                // The peer is dialing us and its dial wins: our accept of
                // it adopts this connection (with everything queued on it).
                if !conn.wait_claimed(deadline) {
                    self.dial_failed(&conn, "the peer refused a second connection");
                }
            }
            Err(e) => self.dial_failed(&conn, &e.to_string()),
        }
    }

    fn dial_inner(
        &self,
        peer: &str,
        deadline: Instant,
    ) -> Result<(TcpStream, PeerInfo), DialError> {
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
        let port = port_mapper::client::query_port(directory, node, HANDSHAKE_TIMEOUT)
            .map_err(|e| DialError::Other(format!("cannot find {peer}: {e}")))?;
        let addr = resolve(port)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DialError::Handshake(HandshakeError::Timeout));
        }
        let mut stream = TcpStream::connect_timeout(&addr, left)
            .map_err(|e| DialError::Other(format!("cannot connect to {peer}: {e}")))?;
        let me = Identity {
            name: &self.full,
            incarnation: self.incarnation,
            cookie: &self.cookie,
        };
        let info =
            handshake::client(&mut stream, &me, peer, deadline).map_err(DialError::Handshake)?;
        Ok((stream, info))
    }

    fn dial_failed(&self, conn: &Arc<Connection>, reason: &str) {
        conn.stats.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.failed_dials).insert(conn.peer.clone(), Instant::now());
        if conn.mark_down() {
            self.connection_lost(conn, reason);
        }
    }

    /// A connection is gone for good: forget it, tell every agent attached
    /// over it (once), fail the spawns waiting for it.
    fn connection_lost(&self, conn: &Arc<Connection>, why: &str) {
        {
            let mut peers = lock(&self.peers);
            if peers.get(&conn.peer).is_some_and(|c| Arc::ptr_eq(c, conn)) {
                peers.remove(&conn.peer);
            }
        }
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
                let _ = reply.send(Err(format!("{} is unreachable: {why}", conn.peer)));
            }
        }
    }

    /// Serves an accepted connection: handshake, then one connection per
    /// peer (see the module doc for simultaneous dials).
    fn accept(self: &Arc<Self>, mut stream: TcpStream) {
        let me = Identity {
            name: &self.full,
            incarnation: self.incarnation,
            cookie: &self.cookie,
        };
        let mut chosen: Option<Arc<Connection>> = None;
        let mut replaced: Option<Arc<Connection>> = None;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let admitted = handshake::server(&mut stream, &me, deadline, |info| {
            if self.stopping.load(Ordering::Acquire) {
                return Err(Refusal::Limit);
            }
            let mut peers = lock(&self.peers);
            match peers.get(&info.name) {
                Some(c) if !c.is_down() => match c.incarnation() {
                    // Established with this very run: one connection per
                    // pair. (If the peer thinks ours is dead, it will
                    // soon be, and its next dial gets through.)
                    Some(inc) if inc == info.incarnation => Err(Refusal::Busy),
                    // Established with an earlier run: that run is gone.
                    Some(_) => {
                        replaced = Some(Arc::clone(c));
                        let conn = Connection::new(
                            info.name.clone(),
                            self.stats_for(&info.name),
                            self.options.max_queue,
                        );
                        peers.insert(info.name.clone(), Arc::clone(&conn));
                        chosen = Some(conn);
                        Ok(())
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
                    peers.retain(|_, c| !c.is_down());
                    if peers.len() >= self.options.max_connections {
                        return Err(Refusal::Limit);
                    }
                    let conn = Connection::new(
                        info.name.clone(),
                        self.stats_for(&info.name),
                        self.options.max_queue,
                    );
                    peers.insert(info.name.clone(), Arc::clone(&conn));
                    chosen = Some(conn);
                    Ok(())
                }
            }
        });
        let info = match admitted {
            Ok(info) => info,
            Err(_) => {
                // Nothing is served to a peer that did not prove the cookie
                // or was refused.
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        };
        let dispatch: Arc<dyn Dispatch> = Arc::clone(self) as Arc<dyn Dispatch>;
        if let Some(old) = replaced {
            old.fail(&dispatch, "the peer restarted (new incarnation)");
        }
        let Some(conn) = chosen else { return };
        if let Err(e) = conn.establish(
            stream,
            info,
            Arc::clone(&dispatch),
            self.options.tick,
            self.options.timeout,
        ) {
            conn.fail(&dispatch, &format!("cannot start the connection: {e}"));
        }
    }

    /// Records that local `agent` is attached to `remote` over `conn`; if
    /// the connection is already gone, the agent is told at once.
    fn record(&self, conn: &Connection, agent: &Agent, remote: RemoteRef, kind: Attachment) {
        let entry = Entry {
            agent: agent.clone(),
            remote,
            kind,
        };
        if let Err(entry) = conn.attached.record(entry) {
            attachments::tell_lost(entry, &conn.peer);
        }
    }

    /// Resolves the `to` fields of a request: an aid of ours, in the run
    /// `to_inc` (0: this one).
    fn local(&self, to_inc: u64, aid: &str) -> Option<Agent> {
        if to_inc != 0 && to_inc != self.incarnation {
            return None;
        }
        match target::resolve_local_aid(aid) {
            Ok(Resolved::Local(a)) => Some(a),
            _ => None,
        }
    }

    /// `from`'s id must be on the peer that sent the request.
    fn from_peer(conn: &Connection, from: &str) -> bool {
        target::split_id(from).is_some_and(|(h, n, _)| {
            conn.peer.len() == h.len() + 1 + n.len()
                && conn.peer.starts_with(h)
                && conn.peer.ends_with(n)
        })
    }

    /// The remote agent `from` of `conn`'s peer, in the peer's current run.
    fn peer_ref(conn: &Connection, from: &str) -> RemoteRef {
        RemoteRef {
            id: Arc::from(from),
            incarnation: conn.incarnation().unwrap_or(0),
        }
    }

    /// Tells remote `from` that local `to` (an aid, with the incarnation the
    /// peer meant) is not there.
    fn noproc_reply(
        &self,
        conn: &Arc<Connection>,
        from: &str,
        to_inc: u64,
        to: &str,
        monitor: bool,
    ) {
        let Some((_, _, from_aid)) = target::split_id(from) else {
            return;
        };
        let to_id = format!("{}/{}", self.full, to);
        let reason = Term::keyword("noproc");
        let peer_inc = conn.incarnation().unwrap_or(0);
        // The agent the peer asked for, in the run it meant.
        let named = if to_inc == 0 {
            Term::Agent(AgentRef::Id(Arc::from(to_id.as_str())))
        } else {
            Term::Agent(AgentRef::Remote {
                id: Arc::from(to_id.as_str()),
                incarnation: to_inc,
            })
        };
        let request = if monitor {
            Request::Notice {
                from: to_id,
                to_inc: peer_inc,
                to: from_aid.to_owned(),
                notification: Outcome::Exited(reason).notification(named),
            }
        } else {
            Request::Exit {
                from: to_id,
                to_inc: peer_inc,
                to: from_aid.to_owned(),
                reason,
            }
        };
        let _ = conn.send(&request, self);
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_spawn(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        request: u64,
        reply_to: String,
        attach: u8,
        mailbox: u32,
        call: Term,
    ) {
        let reply = move |ok: bool, text: String| Request::SpawnReply { request, ok, text };
        let (function, args) = match call::prepare(&call) {
            Ok(p) => p,
            Err(e) => {
                let _ = conn.send(&reply(false, e.to_string()), &**self);
                return;
            }
        };
        let monitor = match attach {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            other => {
                let _ = conn.send(
                    &reply(false, format!("unknown attach mode {other}")),
                    &**self,
                );
                return;
            }
        };
        if monitor.is_some() && !Self::from_peer(conn, &reply_to) {
            let _ = conn.send(
                &reply(
                    false,
                    "reply_to is not an agent of the requesting node".into(),
                ),
                &**self,
            );
            return;
        }
        let options = SpawnOptions::new().mailbox_size(remote_mailbox_size(mailbox));
        let requester = Self::peer_ref(conn, &reply_to);
        let parent: Option<(Peer, bool)> = monitor.map(|m| (Peer::Remote(requester.clone()), m));
        let state = Arc::clone(self);
        let c = Arc::clone(conn);
        let recorded = monitor.is_some();
        let spawned = agent::spawn_inner(
            &options,
            parent,
            |child| {
                if recorded {
                    // The requester's exit (or loss) kills the child.
                    self.record(conn, child, requester.clone(), Attachment::Bound);
                }
            },
            move || {
                // First thing on the child's own thread, so the reply goes
                // out only if the agent really started, and before any exit
                // notification of it on this connection.
                let me = Agent::current();
                let _ = c.send(&reply(true, format!("{:x}", me.aid())), &*state);
                function(&args)
            },
        );
        if let Err(e) = spawned {
            // Nothing ran; the requester hears the error instead of an id.
            let _ = conn.send(&reply(false, e.to_string()), &**self);
        }
    }

    fn handle_spawn_reply(&self, conn: &Arc<Connection>, request: u64, ok: bool, text: String) {
        let Some(pending) = lock(&self.pending).remove(&request) else {
            return;
        };
        if !ok {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(text));
            }
            return;
        }
        if text.is_empty() || text.contains('/') {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(format!("malformed reply {text:?}")));
            }
            return;
        }
        let child = RemoteRef {
            id: Arc::from(format!("{}/{}", conn.peer, text)),
            incarnation: conn.incarnation().unwrap_or(0),
        };
        let attached = pending.attach != agent::Attach::None;
        let Some(reply) = pending.reply else {
            // The caller gave up waiting; the child was told it is attached
            // to the caller, so end it rather than leave an orphan.
            if attached {
                self.post_exit(conn, &pending.caller, &child, abandoned_reason());
            }
            return;
        };
        if attached {
            // Recorded here, in the reader, before any later frame of this
            // connection (such as the child's exit notice) is handled.
            match pending
                .caller
                .attach_peer(Peer::Remote(child.clone()), false)
            {
                Ok(()) => {
                    let kind = if pending.attach == agent::Attach::Monitor {
                        Attachment::Watching
                    } else {
                        Attachment::Bound
                    };
                    self.record(conn, &pending.caller, child.clone(), kind);
                }
                // The caller exited meanwhile: the child goes with it, as
                // if the attachment had been made in time.
                Err(outcome) => {
                    self.post_exit(conn, &pending.caller, &child, outcome.link_reason());
                }
            }
        }
        let agent = if child.incarnation == 0 {
            AgentRef::Id(child.id)
        } else {
            AgentRef::Remote {
                id: child.id,
                incarnation: child.incarnation,
            }
        };
        let _ = reply.send(Ok(agent));
    }

    /// Sends an exit signal from local `from` to remote `to` over `conn`.
    fn post_exit(&self, conn: &Connection, from: &Agent, to: &RemoteRef, reason: Term) {
        let Some((_, _, aid)) = target::split_id(&to.id) else {
            return;
        };
        let _ = conn.send(
            &Request::Exit {
                from: self.full_id(from),
                to_inc: to.incarnation,
                to: aid.to_owned(),
                reason,
            },
            self,
        );
    }

    /// A request named an agent of an earlier run of this node: dropped and
    /// counted.
    fn stale(&self, conn: &Connection) {
        self.stale_drops.fetch_add(1, Ordering::Relaxed);
        conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection to the node of remote agent `to`, and the aid part of
    /// its id; `None` (nothing to do) if the id is malformed or the node
    /// cannot be reached now.
    fn route<'a>(
        self: &Arc<Self>,
        to: &'a RemoteRef,
    ) -> Result<(Arc<Connection>, &'a str), String> {
        let (host, node, aid) =
            target::split_id(&to.id).ok_or_else(|| format!("{:?} is not an agent id", to.id))?;
        let peer = &to.id[..host.len() + 1 + node.len()];
        let conn = self.connection(peer)?;
        Ok((conn, aid))
    }

    /// `true` if `to` names an earlier run of its node than the one `conn`
    /// is connected to.
    fn is_stale(conn: &Connection, to: &RemoteRef) -> bool {
        to.incarnation != 0 && conn.incarnation().is_some_and(|inc| inc != to.incarnation)
    }
}

/// Why a dial did not give a connection.
enum DialError {
    Handshake(HandshakeError),
    Other(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Handshake(e) => e.fmt(f),
            DialError::Other(e) => f.write_str(e),
        }
    }
}

impl Dispatch for NodeState {
    fn limits(&self) -> &term::Limits {
        &self.options.limits
    }

    fn resolve(&self, to_inc: u64, aid: &str) -> Option<Agent> {
        if to_inc != 0 && to_inc != self.incarnation {
            self.stale_drops.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.local(to_inc, aid)
    }

    fn down(&self, conn: &Arc<Connection>, reason: &str) {
        self.connection_lost(conn, reason);
    }

    fn dispatch(&self, conn: &Arc<Connection>, request: Request) {
        let Some(me) = current_node() else { return };
        match request {
            Request::Send {
                to_inc,
                to,
                message,
            } => match self.local(to_inc, &to) {
                Some(agent) => {
                    agent.send(message);
                }
                None if to_inc != 0 && to_inc != self.incarnation => self.stale(conn),
                None => {
                    conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            Request::Spawn {
                request,
                reply_to,
                attach,
                mailbox,
                call,
            } => me.handle_spawn(conn, request, reply_to, attach, mailbox, call),
            Request::SpawnReply { request, ok, text } => {
                self.handle_spawn_reply(conn, request, ok, text)
            }
            Request::Link {
                from,
                to_inc,
                to,
                monitor,
            } => {
                if !Self::from_peer(conn, &from) {
                    return;
                }
                let remote = Self::peer_ref(conn, &from);
                let attached = self.local(to_inc, &to).and_then(|agent| {
                    agent
                        .attach_peer(Peer::Remote(remote.clone()), monitor)
                        .ok()
                        .map(|()| self.record(conn, &agent, remote, Attachment::Bound))
                });
                if attached.is_none() {
                    self.noproc_reply(conn, &from, to_inc, &to, monitor);
                }
            }
            Request::Unlink { from, to_inc, to } => {
                if !Self::from_peer(conn, &from) {
                    return;
                }
                if let Some(agent) = self.local(to_inc, &to) {
                    agent.detach_peer(&PeerKey::Remote(Arc::from(from.as_str())));
                    conn.attached.take(agent.serial(), &from);
                }
            }
            Request::Exit {
                from,
                to_inc,
                to,
                reason,
            } => {
                // Links stay as they are (as Erlang's exit/2): the agent
                // dies, and its own exit tells its peers, `from` included.
                let _ = from;
                if let Some(agent) = self.local(to_inc, &to) {
                    agent.kill(reason);
                }
            }
            Request::Notice {
                from,
                to_inc,
                to,
                notification,
            } => {
                if let Some(agent) = self.local(to_inc, &to) {
                    // Delivered only if the attachment was still recorded:
                    // a connection-lost notice may already have been given.
                    if conn.attached.take(agent.serial(), &from).is_some() {
                        agent.detach_peer(&PeerKey::Remote(Arc::from(from.as_str())));
                        agent.notify(notification);
                    }
                }
            }
            Request::Heartbeat => {}
        }
    }
}

/// The node as the agent layer's route to other nodes.
impl Remote for NodeState {
    fn is_self(&self, host: &str, node: &str) -> bool {
        host == self.host && node == self.name
    }

    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn send(&self, to: &RemoteRef, message: Term) -> Result<(), SendError> {
        let Some(me) = current_node() else {
            return Ok(());
        };
        // Unreachable now: dropped (and counted by `connection`), as
        // `send` promises no delivery.
        let Ok((conn, aid)) = me.route(to) else {
            return Ok(());
        };
        if Self::is_stale(&conn, to) {
            self.stale(&conn);
            return Ok(());
        }
        match conn.send_message(to.incarnation, aid, &message, self) {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::NotWireable(e.to_string())),
        }
    }

    fn exit(&self, to: &RemoteRef, reason: Term) -> Result<(), LinkError> {
        let Some(me) = current_node() else {
            return Ok(());
        };
        let Ok((conn, aid)) = me.route(to) else {
            return Ok(());
        };
        if Self::is_stale(&conn, to) {
            return Ok(());
        }
        let request = Request::Exit {
            from: self.full_id(&Agent::current()),
            to_inc: to.incarnation,
            to: aid.to_owned(),
            reason,
        };
        match conn.send(&request, self) {
            Ok(_) => Ok(()),
            Err(e) => Err(LinkError::Remote(format!(
                "the exit reason cannot be sent: {e}"
            ))),
        }
    }

    fn link(&self, from: &Agent, to: &RemoteRef, monitor: bool) -> Result<(), LinkError> {
        let Some(me) = current_node() else {
            return Err(LinkError::Remote("this process is not a node".into()));
        };
        let (conn, aid) = match me.route(to) {
            Ok(route) => route,
            Err(_) => {
                // Unreachable now: the same as losing the connection.
                let reason = attachments::lost_reason(
                    to.id.rsplit_once('/').map_or(&*to.id, |(peer, _)| peer),
                );
                if monitor {
                    from.notify(Outcome::Exited(reason).notification(to.to_term()));
                } else {
                    from.kill(reason);
                }
                return Ok(());
            }
        };
        if Self::is_stale(&conn, to) {
            agent::noproc(from, to.to_term(), monitor);
            return Ok(());
        }
        let _ = from.attach_peer(Peer::Remote(to.clone()), false);
        let kind = if monitor {
            Attachment::Watching
        } else {
            Attachment::Bound
        };
        self.record(&conn, from, to.clone(), kind);
        let _ = conn.send(
            &Request::Link {
                from: self.full_id(from),
                to_inc: to.incarnation,
                to: aid.to_owned(),
                monitor,
            },
            self,
        );
        Ok(())
    }

    fn unlink(&self, from: &Agent, to: &RemoteRef) {
        let Some(me) = current_node() else { return };
        let Ok((conn, aid)) = me.route(to) else {
            return;
        };
        conn.attached.take(from.serial(), &to.id);
        let _ = conn.send(
            &Request::Unlink {
                from: self.full_id(from),
                to_inc: to.incarnation,
                to: aid.to_owned(),
            },
            self,
        );
    }

    fn exit_notice(&self, from: &Agent, to: &RemoteRef, monitor: bool, outcome: &Outcome) {
        let Some(me) = current_node() else { return };
        let Ok((conn, aid)) = me.route(to) else {
            return;
        };
        conn.attached.take(from.serial(), &to.id);
        if Self::is_stale(&conn, to) {
            return;
        }
        let from_id = self.full_id(from);
        let make = |outcome: &Outcome| {
            if monitor {
                Request::Notice {
                    from: from_id.clone(),
                    to_inc: to.incarnation,
                    to: aid.to_owned(),
                    notification: outcome.notification(from.to_term()),
                }
            } else {
                Request::Exit {
                    from: from_id.clone(),
                    to_inc: to.incarnation,
                    to: aid.to_owned(),
                    reason: outcome.link_reason(),
                }
            }
        };
        if let Err(e) = conn.send(&make(outcome), self) {
            // Return values that cannot leave this process: say so instead
            // of leaving the peer without a notification.
            let fallback = Outcome::Exited(Term::Str(format!(
                "exit values cannot be sent to another node: {e}"
            )));
            let _ = conn.send(&make(&fallback), self);
        }
    }
}

/// How a failed [`Unsendable`] reads in errors.
impl From<Unsendable> for SendError {
    fn from(e: Unsendable) -> SendError {
        SendError::NotWireable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_mailbox_sizes_are_clamped() {
        assert_eq!(remote_mailbox_size(0), crate::mailbox::DEFAULT_MAILBOX_SIZE);
        assert_eq!(remote_mailbox_size(10), 10);
        assert_eq!(remote_mailbox_size(u32::MAX), protocol::MAX_REMOTE_MAILBOX);
    }

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
