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
//! Every local agent attached to a remote agent is recorded here per peer,
//! so that when a peer goes down each of them is told exactly once: a linked
//! agent (or one monitored by a remote agent, which the seed's two-way
//! monitor link kills) gets an exit signal, a monitoring agent gets
//! `("host/node/aid" :EXIT :NOCONNECTION "host/node")`.

mod connection;
pub(crate) mod handshake;
pub(crate) mod protocol;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::agent::target::{self, Remote, Resolved};
use crate::agent::{
    self, Agent, LinkError, Outcome, Peer, PeerKey, SendError, SpawnError, SpawnOptions,
};
use crate::call;
use crate::config::Config;
use crate::port_mapper;
use crate::term::{self, AgentIds, Term};

use connection::{Connection, Dispatch, PeerStats};
use handshake::{Identity, PeerInfo};
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

/// Agent ids remembered with their node's incarnation (for stale-id
/// detection) before the oldest knowledge is dropped.
const MAX_KNOWN_IDS: usize = 65_536;

/// How long a remote spawn waits for its reply.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections are closed at once.
const MAX_HANDSHAKES: usize = 64;
/// Time a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed dial, sends to that peer are dropped for this long
/// instead of dialing again (no dial storm towards a dead node).
const DIAL_BACKOFF: Duration = Duration::from_millis(500);

/// How a local agent is attached to a remote one, for telling it when the
/// peer goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attachment {
    /// The local agent monitors the remote one: it gets a notification.
    Watching,
    /// Linked both ways, or the remote agent monitors the local one (and
    /// its exit kills it): the local agent gets an exit signal.
    Bound,
}

type AttachKey = (u64, Arc<str>);
/// Per peer node: (local serial, remote id) → the local agent and how it is
/// attached.
type AttachmentTable = HashMap<String, HashMap<AttachKey, (Agent, Attachment)>>;

struct PendingSpawn {
    peer: String,
    caller: Agent,
    attach: agent::Attach,
    reply: mpsc::Sender<Result<String, String>>,
}

pub(crate) struct NodeState {
    host: String,
    name: String,
    /// `"host/name"`.
    full: String,
    incarnation: u64,
    cookie: Vec<u8>,
    options: NodeOptions,
    peers: Mutex<HashMap<String, Arc<Connection>>>,
    stats: Mutex<HashMap<String, Arc<PeerStats>>>,
    failed_dials: Mutex<HashMap<String, Instant>>,
    attachments: Mutex<AttachmentTable>,
    /// Ids learned from a peer (spawn replies), with the peer incarnation
    /// they belong to: an id from an earlier run of a restarted node is
    /// stale.
    known: Mutex<HashMap<Arc<str>, u64>>,
    pending: Mutex<HashMap<u64, PendingSpawn>>,
    next_request: AtomicU64,
    handshakes: AtomicUsize,
    stopping: AtomicBool,
    /// Requests dropped because they named a stale id.
    stale_drops: AtomicU64,
    /// Some peer has come back with a new incarnation.
    restarts_seen: AtomicBool,
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

/// The machine's host name (`/proc/sys/kernel/hostname`, `/etc/hostname`,
/// `$HOSTNAME`), or `localhost`.
pub fn host_name() -> String {
    let from_file = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty() && !h.contains('/'))
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
        // Peers we were only dialing or whose connection was replaced.
        let names: Vec<String> = lock(&state.attachments).keys().cloned().collect();
        for peer in names {
            state.peer_down(&peer, "this node stopped");
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn incarnation() -> u64 {
    let mut b = [0u8; 8];
    if crate::crypto::random_bytes(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_be_bytes(b)
}

/// Starts this process's node and returns at once.
///
/// # Errors
/// [`NodeError`]: already a node, the listener cannot be bound, the cookie
/// cannot be loaded, the name is taken or the port mapper cannot be reached.
pub fn start(options: NodeOptions) -> Result<NodeHandle, NodeError> {
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
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(NodeError::Options(format!(
            "{host:?} is not a valid host name"
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
        attachments: Mutex::new(HashMap::new()),
        known: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        next_request: AtomicU64::new(1),
        handshakes: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        stale_drops: AtomicU64::new(0),
        restarts_seen: AtomicBool::new(false),
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

fn accept_loop(state: Arc<NodeState>, listener: TcpListener) {
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if state.handshakes.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
            state.handshakes.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let s = Arc::clone(&state);
        let spawned = thread::Builder::new()
            .name(format!("node-handshake {}", state.full))
            .spawn(move || {
                s.accept(stream);
                s.handshakes.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            state.handshakes.fetch_sub(1, Ordering::AcqRel);
        }
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
/// `options` (attach mode and mailbox size; a name is not sent). Returns
/// the new agent's id string `"host/node/aid"`. With `attach`, the calling
/// agent is attached before the agent runs.
///
/// # Errors
/// [`SpawnError::Remote`]: this process is not a node, the node cannot be
/// reached, the function is unknown there, or no reply came in time.
pub fn spawn_on(
    host: Option<&str>,
    node: &str,
    call: &Term,
    options: &SpawnOptions,
) -> Result<String, SpawnError> {
    let state = current_node()
        .ok_or_else(|| SpawnError::Remote("this process is not a node (call node first)".into()))?;
    let host = host.unwrap_or(&state.host);
    let peer = format!("{host}/{node}");
    if peer == state.full {
        let (function, args) = call::prepare(call)?;
        let agent = agent::spawn_with(options, move || function(&args))?;
        return Ok(format!("{}/{:x}", state.full, agent.aid()));
    }
    let conn = state.connection(&peer).map_err(SpawnError::Remote)?;
    let caller = Agent::current();
    let request = state.next_request.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    lock(&state.pending).insert(
        request,
        PendingSpawn {
            peer: peer.clone(),
            caller: caller.clone(),
            attach: options.attach,
            reply: tx,
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
    match rx.recv_timeout(SPAWN_TIMEOUT) {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(e)) => Err(SpawnError::Remote(e)),
        Err(_) => {
            lock(&state.pending).remove(&request);
            Err(SpawnError::Remote(format!(
                "no reply from {peer} within {SPAWN_TIMEOUT:?}"
            )))
        }
    }
}

impl AgentIds for NodeState {
    fn wire_id(&self, serial: u64) -> Option<String> {
        target::by_serial(serial).map(|a| self.full_id(&a))
    }
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
        match self.dial_inner(&conn.peer) {
            Ok((stream, info)) => {
                if let Some(old) = self.known_incarnation(&conn.peer) {
                    if old != info.incarnation {
                        // The peer restarted since we last talked: agents
                        // attached to its earlier run are told (requests
                        // queued on this new connection stand).
                        self.attachments_down(&conn.peer);
                    }
                }
                let dispatch: Arc<dyn Dispatch> = Arc::clone(&self) as Arc<dyn Dispatch>;
                let inc = info.incarnation;
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
                self.remember_incarnation(&conn.peer, inc);
                lock(&self.failed_dials).remove(&conn.peer);
            }
            Err(e) => self.dial_failed(&conn, &e),
        }
    }

    fn dial_inner(&self, peer: &str) -> Result<(TcpStream, PeerInfo), String> {
        let (host, node) = peer
            .split_once('/')
            .ok_or_else(|| format!("{peer:?} is not host/node"))?;
        let timeout = HANDSHAKE_TIMEOUT;
        let directory = (host, self.options.config.directory_port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {host}"))?;
        let port = port_mapper::client::query_port(directory, node, timeout)
            .map_err(|e| format!("cannot find {peer}: {e}"))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {host}"))?;
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
        let me = Identity {
            name: &self.full,
            incarnation: self.incarnation,
            cookie: &self.cookie,
        };
        let info = handshake::client(&mut stream, &me, peer, timeout).map_err(|e| e.to_string())?;
        Ok((stream, info))
    }

    fn dial_failed(&self, conn: &Arc<Connection>, reason: &str) {
        conn.stats.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.failed_dials).insert(conn.peer.clone(), Instant::now());
        if conn.mark_down() {
            self.forget_connection(conn);
            self.peer_down(&conn.peer, reason);
        }
    }

    fn forget_connection(&self, conn: &Arc<Connection>) {
        let mut peers = lock(&self.peers);
        if peers.get(&conn.peer).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            peers.remove(&conn.peer);
        }
    }

    fn known_incarnation(&self, peer: &str) -> Option<u64> {
        lock(&self.known).get(peer).copied()
    }

    fn remember_incarnation(&self, peer: &str, inc: u64) {
        let old = lock(&self.known).insert(Arc::from(peer), inc);
        if old.is_some_and(|o| o != inc) {
            self.restarts_seen.store(true, Ordering::Relaxed);
        }
    }

    /// Serves an accepted connection: handshake, then register it.
    fn accept(self: &Arc<Self>, mut stream: TcpStream) {
        let me = Identity {
            name: &self.full,
            incarnation: self.incarnation,
            cookie: &self.cookie,
        };
        let info = match handshake::server(&mut stream, &me, HANDSHAKE_TIMEOUT) {
            Ok(info) => info,
            Err(_) => {
                // Nothing is served to a peer that did not prove the cookie.
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        };
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let peer = info.name.clone();
        if let Some(old) = self.known_incarnation(&peer) {
            if old != info.incarnation {
                if let Some(c) = lock(&self.peers).remove(&peer) {
                    c.mark_down();
                }
                self.attachments_down(&peer);
            }
        }
        let conn = Connection::new(peer.clone(), self.stats_for(&peer), self.options.max_queue);
        let inc = info.incarnation;
        let dispatch: Arc<dyn Dispatch> = Arc::clone(self) as Arc<dyn Dispatch>;
        if conn
            .establish(
                stream,
                info,
                dispatch,
                self.options.tick,
                self.options.timeout,
            )
            .is_err()
        {
            conn.mark_down();
            return;
        }
        self.remember_incarnation(&peer, inc);
        // Use the incoming connection for our sends too, unless we already
        // have one (then each side keeps sending on its own, which keeps
        // per-pair order).
        let mut peers = lock(&self.peers);
        let replace = peers.get(&peer).is_none_or(|c| c.is_down());
        if replace {
            peers.insert(peer, conn);
        }
    }

    fn record(&self, peer: &str, agent: &Agent, remote: Arc<str>, kind: Attachment) {
        lock(&self.attachments)
            .entry(peer.to_owned())
            .or_default()
            .insert((agent.serial(), remote), (agent.clone(), kind));
    }

    fn unrecord(&self, peer: &str, serial: u64, remote: &str) -> Option<(Agent, Attachment)> {
        let mut all = lock(&self.attachments);
        let map = all.get_mut(peer)?;
        let found = map.remove(&(serial, Arc::from(remote)));
        if map.is_empty() {
            all.remove(peer);
        }
        found
    }

    /// The peer is gone: tells every attached agent and fails the spawn
    /// requests waiting for it.
    fn peer_down(&self, peer: &str, why: &str) {
        self.attachments_down(peer);
        self.fail_pending(peer, why);
    }

    /// Tells every local agent attached to an agent of `peer`, once.
    fn attachments_down(&self, peer: &str) {
        let attached = lock(&self.attachments).remove(peer).unwrap_or_default();
        let reason = Term::list(vec![
            Term::keyword("noconnection"),
            Term::Str(peer.to_owned()),
        ]);
        for ((_, remote), (agent, kind)) in attached {
            agent.detach_peer(&PeerKey::Remote(Arc::clone(&remote)));
            match kind {
                Attachment::Watching => agent.notify(
                    Outcome::Exited(reason.clone()).notification(Term::Str(remote.to_string())),
                ),
                Attachment::Bound => agent.kill(reason.clone()),
            }
        }
    }

    fn fail_pending(&self, peer: &str, why: &str) {
        let failed: Vec<PendingSpawn> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.peer == peer)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for p in failed {
            let _ = p.reply.send(Err(format!("{peer} is unreachable: {why}")));
        }
    }

    /// Resolves the `to` field of a request (an aid of ours).
    fn local(&self, aid: &str) -> Option<Agent> {
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

    /// Sends `request` to `peer`, counting a drop when that fails.
    fn post(self: &Arc<Self>, peer: &str, request: &Request) {
        if let Ok(conn) = self.connection(peer) {
            let _ = conn.send(request, &**self);
        }
    }

    /// Tells remote `from` that local `to` (an aid) is not there.
    fn noproc_reply(self: &Arc<Self>, conn: &Arc<Connection>, from: &str, to: &str, monitor: bool) {
        let Some((_, _, from_aid)) = target::split_id(from) else {
            return;
        };
        let to_id = format!("{}/{}", self.full, to);
        let reason = Term::keyword("noproc");
        let request = if monitor {
            Request::Notice {
                from: to_id.clone(),
                to: from_aid.to_owned(),
                notification: Outcome::Exited(reason).notification(Term::Str(to_id)),
            }
        } else {
            Request::Exit {
                from: to_id,
                to: from_aid.to_owned(),
                reason,
            }
        };
        let _ = conn.send(&request, &**self);
    }

    fn handle_spawn(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        request: u64,
        reply_to: String,
        attach: u8,
        mailbox: u32,
        call: Term,
    ) {
        let reply = |ok: bool, text: String| Request::SpawnReply { request, ok, text };
        let prepared = call::prepare(&call);
        let (function, args) = match prepared {
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
        let options = SpawnOptions::new().mailbox_size((mailbox as usize).max(1));
        let parent: Option<(Peer, bool)> =
            monitor.map(|m| (Peer::Remote(Arc::from(reply_to.as_str())), m));
        let state = Arc::clone(self);
        let c = Arc::clone(conn);
        let spawned = agent::spawn_inner(
            &options,
            parent,
            move |child| {
                if monitor.is_some() {
                    // The requester's exit (or loss) kills the child.
                    state.record(
                        &c.peer,
                        child,
                        Arc::from(reply_to.as_str()),
                        Attachment::Bound,
                    );
                }
                // Reply before the child runs, so the reply precedes any
                // exit notification on this connection.
                let _ = c.send(&reply(true, format!("{:x}", child.aid())), &*state);
            },
            move || function(&args),
        );
        if let Err(e) = spawned {
            let _ = conn.send(&reply(false, e.to_string()), &**self);
        }
    }

    fn handle_spawn_reply(&self, conn: &Arc<Connection>, request: u64, ok: bool, text: String) {
        let Some(pending) = lock(&self.pending).remove(&request) else {
            return;
        };
        if !ok {
            let _ = pending.reply.send(Err(text));
            return;
        }
        if text.is_empty() || text.contains('/') {
            let _ = pending.reply.send(Err(format!("malformed reply {text:?}")));
            return;
        }
        let id: Arc<str> = Arc::from(format!("{}/{}", conn.peer, text));
        if let Some(inc) = conn.incarnation() {
            let mut known = lock(&self.known);
            if known.len() >= MAX_KNOWN_IDS {
                // Bounded memory: forget learned agent ids (peers' own
                // incarnations, keys without an aid, stay). Forgotten ids
                // are taken to name their node's current run.
                known.retain(|k, _| k.matches('/').count() < 2);
            }
            known.insert(Arc::clone(&id), inc);
        }
        // Recorded here, in the reader, before any later frame of this
        // connection (such as the child's exit notice) is handled.
        match pending.attach {
            agent::Attach::None => {}
            mode => {
                let _ = pending
                    .caller
                    .attach_peer(Peer::Remote(Arc::clone(&id)), false);
                let kind = if mode == agent::Attach::Monitor {
                    Attachment::Watching
                } else {
                    Attachment::Bound
                };
                self.record(&conn.peer, &pending.caller, Arc::clone(&id), kind);
            }
        }
        let _ = pending.reply.send(Ok(id.to_string()));
    }

    /// `true` if `id` was learned from an earlier run of its node.
    fn is_stale(&self, peer: &str, id: &str) -> bool {
        // Only a peer that restarted can make an id stale: until one has,
        // sends skip the lookup.
        if !self.restarts_seen.load(Ordering::Relaxed) {
            return false;
        }
        let known = lock(&self.known);
        match (known.get(id), known.get(peer)) {
            (Some(id_inc), Some(peer_inc)) => id_inc != peer_inc,
            _ => false,
        }
    }
}

impl Dispatch for NodeState {
    fn limits(&self) -> &term::Limits {
        &self.options.limits
    }

    fn resolve(&self, aid: &str) -> Option<Agent> {
        self.local(aid)
    }

    fn down(&self, conn: &Arc<Connection>, reason: &str) {
        self.forget_connection(conn);
        // Another live connection to the same peer (both dialed at once)
        // means the peer is still up.
        let other_alive = lock(&self.peers)
            .get(&conn.peer)
            .is_some_and(|c| !c.is_down());
        if !other_alive {
            self.peer_down(&conn.peer, reason);
        }
    }

    fn dispatch(&self, conn: &Arc<Connection>, request: Request) {
        let Some(me) = current_node() else { return };
        match request {
            Request::Send { to, message } => match self.local(&to) {
                Some(agent) => {
                    agent.send(message);
                }
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
            Request::Link { from, to, monitor } => {
                if !Self::from_peer(conn, &from) {
                    return;
                }
                let attached = self.local(&to).and_then(|agent| {
                    let remote: Arc<str> = Arc::from(from.as_str());
                    agent
                        .attach_peer(Peer::Remote(Arc::clone(&remote)), monitor)
                        .ok()
                        .map(|()| self.record(&conn.peer, &agent, remote, Attachment::Bound))
                });
                if attached.is_none() {
                    me.noproc_reply(conn, &from, &to, monitor);
                }
            }
            Request::Unlink { from, to } => {
                if let Some(agent) = self.local(&to) {
                    agent.detach_peer(&PeerKey::Remote(Arc::from(from.as_str())));
                    self.unrecord(&conn.peer, agent.serial(), &from);
                }
            }
            Request::Exit {
                from: _,
                to,
                reason,
            } => {
                // Links stay as they are (as Erlang's exit/2): the agent
                // dies, and its own exit tells its peers, `from` included.
                if let Some(agent) = self.local(&to) {
                    agent.kill(reason);
                }
            }
            Request::Notice {
                from,
                to,
                notification,
            } => {
                if let Some(agent) = self.local(&to) {
                    // Delivered only if the attachment was still recorded:
                    // a peer-down notice may already have been given.
                    if self.unrecord(&conn.peer, agent.serial(), &from).is_some() {
                        agent.detach_peer(&PeerKey::Remote(Arc::from(from.as_str())));
                        agent.notify(notification);
                    }
                }
            }
            Request::Heartbeat => {}
        }
    }
}

impl Remote for NodeState {
    fn is_self(&self, host: &str, node: &str) -> bool {
        host == self.host && node == self.name
    }

    fn send(&self, id: &str, message: Term) -> Result<(), SendError> {
        let Some(me) = current_node() else {
            return Ok(());
        };
        let Some((host, node, aid)) = target::split_id(id) else {
            return Ok(());
        };
        let peer = &id[..host.len() + 1 + node.len()];
        if self.is_stale(peer, id) {
            self.stale_drops.fetch_add(1, Ordering::Relaxed);
            self.stats_for(peer).dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let Ok(conn) = me.connection(peer) else {
            return Ok(());
        };
        match conn.send_message(aid, &message, self) {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::NotWireable(e.to_string())),
        }
    }

    fn exit(&self, id: &str, reason: Term) {
        let Some(me) = current_node() else { return };
        let Some((host, node, aid)) = target::split_id(id) else {
            return;
        };
        let peer = format!("{host}/{node}");
        if self.is_stale(&peer, id) {
            return;
        }
        let from = self.full_id(&Agent::current());
        me.post(
            &peer,
            &Request::Exit {
                from,
                to: aid.to_owned(),
                reason,
            },
        );
    }

    fn link(&self, from: &Agent, id: &str, monitor: bool) -> Result<(), LinkError> {
        let Some(me) = current_node() else {
            return Err(LinkError::Remote("this process is not a node".into()));
        };
        let (host, node, aid) = target::split_id(id)
            .ok_or_else(|| LinkError::Remote(format!("{id:?} is not an agent id")))?;
        let peer = format!("{host}/{node}");
        if self.is_stale(&peer, id) {
            agent::noproc(from, Term::Str(id.to_owned()), monitor);
            return Ok(());
        }
        let conn = match me.connection(&peer) {
            Ok(c) => c,
            Err(e) => {
                // Unreachable now: the same as losing the connection.
                let reason =
                    Term::list(vec![Term::keyword("noconnection"), Term::Str(peer.clone())]);
                if monitor {
                    from.notify(Outcome::Exited(reason).notification(Term::Str(id.to_owned())));
                } else {
                    from.kill(reason);
                }
                let _ = e;
                return Ok(());
            }
        };
        let remote: Arc<str> = Arc::from(id);
        let _ = from.attach_peer(Peer::Remote(Arc::clone(&remote)), false);
        let kind = if monitor {
            Attachment::Watching
        } else {
            Attachment::Bound
        };
        self.record(&peer, from, remote, kind);
        let _ = conn.send(
            &Request::Link {
                from: self.full_id(from),
                to: aid.to_owned(),
                monitor,
            },
            self,
        );
        Ok(())
    }

    fn unlink(&self, from: &Agent, id: &str) {
        let Some(me) = current_node() else { return };
        let Some((host, node, aid)) = target::split_id(id) else {
            return;
        };
        let peer = format!("{host}/{node}");
        self.unrecord(&peer, from.serial(), id);
        me.post(
            &peer,
            &Request::Unlink {
                from: self.full_id(from),
                to: aid.to_owned(),
            },
        );
    }

    fn exit_notice(&self, from: &Agent, to: &str, monitor: bool, outcome: &Outcome) {
        let Some(me) = current_node() else { return };
        let Some((host, node, aid)) = target::split_id(to) else {
            return;
        };
        let peer = format!("{host}/{node}");
        self.unrecord(&peer, from.serial(), to);
        let from_id = self.full_id(from);
        let make = |outcome: &Outcome| {
            if monitor {
                Request::Notice {
                    from: from_id.clone(),
                    to: aid.to_owned(),
                    notification: outcome.notification(Term::Str(from_id.clone())),
                }
            } else {
                Request::Exit {
                    from: from_id.clone(),
                    to: aid.to_owned(),
                    reason: outcome.link_reason(),
                }
            }
        };
        let Ok(conn) = me.connection(&peer) else {
            return;
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
