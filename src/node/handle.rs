//! Starting and stopping a node: the listener, the port-mapper
//! registration, the accept loop with its per-address throttle of failed
//! handshakes and its handshake slots.

use std::fmt;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::connection::Connection;
use super::eventlog::{self, LogLevel};
use super::inbound::Route;
use super::throttle::{self, Admission, Throttle};
use super::{
    current_node, host_name, lock, valid_host_name, NodeError, NodeOptions, NodeState,
    MAX_HANDSHAKES, NODE,
};
use crate::agent;
use crate::agent::target::{self, Remote};
use crate::port_mapper;
use std::collections::HashMap;

/// A running node; dropping it (or [`NodeHandle::stop`]) takes the node down.
#[must_use = "dropping the handle stops the node"]
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
        state.stop_ticker();
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
        if self.registration.take().is_some() {
            eventlog::event(
                LogLevel::Info,
                &state.full,
                format_args!("name {} released", state.name),
            );
        }
        {
            let mut slot = NODE.write().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|n| Arc::ptr_eq(n, state)) {
                *slot = None;
                target::remove_remote();
            }
        }
        let conns: Vec<Arc<Connection>> = lock(&state.peers).drain().map(|(_, c)| c).collect();
        let dispatch = state.dispatcher();
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

/// A fresh incarnation: non-zero (0 means "current run" on the wire) and
/// below 2^63, so that it is a positive integer where the kernel shows it
/// (terms hold signed 64-bit integers); 63 random bits are plenty to tell
/// runs apart.
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
    (drawn >> 1).max(1)
}

/// Starts this process's node and returns at once.
///
/// # Errors
/// [`NodeError`]: already a node, the listener cannot be bound, the cookie
/// cannot be loaded, the name is taken or the port mapper cannot be reached.
pub fn start(options: NodeOptions) -> Result<NodeHandle, NodeError> {
    super::eventlog::route_agent_panics();
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
    // A quiet connection hears a heartbeat within 1.5 ticks (cluster.rs).
    if options.timeout * 2 <= options.tick * 3 {
        return Err(NodeError::Options(format!(
            "the failure timeout ({:?}) must be longer than 1.5 heartbeat ticks ({:?})",
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
        .map_err(NodeError::Cookie)?;
    let listener =
        TcpListener::bind((host.as_str(), 0)).map_err(|e| NodeError::Bind(host.clone(), e))?;
    crate::sys::widen_backlog(&listener);
    let listen_addr = listener
        .local_addr()
        .map_err(|e| NodeError::Bind(host.clone(), e))?;
    let port = listen_addr.port();
    let registry = std::net::SocketAddr::from(([127, 0, 0, 1], options.config.registry_port));
    let registration = port_mapper::client::KeepRegistered::start(registry, &name, port)
        .map_err(NodeError::PortMapper)?;
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
        throttle: Mutex::new(Throttle::default()),
        throttled: AtomicU64::new(0),
        refused_handshakes: AtomicU64::new(0),
        slots_full: AtomicU64::new(0),
        port,
        listen_addr,
        cluster: Mutex::new(super::cluster::Cluster::default()),
        ticker_stop: super::latch::Latch::new(),
        ports: super::ports::PortBook::default(),
    });
    {
        let mut slot = NODE.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = slot.as_ref() {
            return Err(NodeError::AlreadyRunning(n.full.clone()));
        }
        *slot = Some(Arc::clone(&state));
        target::install_remote(Arc::new(Route(Arc::clone(&state))) as Arc<dyn Remote>);
    }
    // A thread that cannot start: the node is taken down again.
    let abandon = |state, registration, e| {
        let mut handle = NodeHandle {
            state,
            listener: None,
            registration: Some(registration),
        };
        handle.shutdown();
        NodeError::Thread(e)
    };
    if let Err(e) = state.start_ticker() {
        return Err(abandon(state, registration, e));
    }
    let accept_state = Arc::clone(&state);
    let listener_thread = thread::Builder::new()
        .name(format!("node-listener {}", state.full))
        .spawn(move || accept_loop(accept_state, listener));
    let listener_thread = match listener_thread {
        Ok(t) => t,
        Err(e) => return Err(abandon(state, registration, e)),
    };
    eventlog::event(
        LogLevel::Info,
        &state.full,
        format_args!("name {} registered, port {}", state.name, state.port),
    );
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
        // Without an address (the peer is already gone) there is nothing
        // to throttle or charge; the handshake fails on its own.
        let from = stream.peer_addr().ok().map(|a| a.ip());
        if let Some(ip) = from {
            // The lock is released before the close and the log line.
            let admission = lock(&state.throttle).admit(ip, Instant::now());
            if let Admission::Refuse { first } = admission {
                // Counted before the close, so whoever sees the close sees
                // the count.
                state.throttled.fetch_add(1, Ordering::Relaxed);
                let _ = stream.shutdown(Shutdown::Both);
                drop(stream);
                if first {
                    eventlog::event(
                        LogLevel::Warn,
                        &state.full,
                        format_args!(
                            "throttling {ip}: it used up its {} failed handshakes; \
                             its new connections are closed unread until a token is back \
                             (one every {} ms)",
                            throttle::CAPACITY,
                            throttle::REFILL.as_millis()
                        ),
                    );
                }
                continue;
            }
        }
        let Some(slot) = HandshakeSlot::take(&state) else {
            // Counted, not logged: a flood must not flood the log.
            state.slots_full.fetch_add(1, Ordering::Relaxed);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        };
        // If the thread cannot start, the closure (and the slot in it) is
        // dropped here and the slot is free again.
        let _ = thread::Builder::new()
            .name(format!("node-handshake {}", state.full))
            .spawn(move || {
                slot.0.accept(stream, from);
                drop(slot);
            });
    }
}
