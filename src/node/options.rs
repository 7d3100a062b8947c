//! What a node is started with, and why it may not start.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::config::Config;
use crate::crypto::cookie::CookieError;
use crate::port_mapper::PortMapperError;
use crate::term;

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
    /// Whether a remote shell (`erlangen-kernel --remote`) may open a
    /// session on this node (default true). The node only records it; the
    /// kernel's session function asks [`crate::node::remote_shells_allowed`].
    pub remote_shell: bool,
    /// A hidden node (Erlang's `-hidden`; default false) connects only to
    /// the nodes it addresses, is never passed on to others, takes no part
    /// in global-name claims and is listed only by `nodes(true)`. Remote
    /// shells and test tools are hidden.
    pub hidden: bool,
    /// Whether this node connects to the nodes its peers are connected to,
    /// so that visible nodes form a full mesh (Erlang's `connect_all`;
    /// default true). Off, the node connects only to what it addresses and
    /// does not disconnect peers to prevent overlapping partitions.
    pub connect_all: bool,
    /// Whether frames to and from other nodes are sealed: encrypted and
    /// authenticated with ChaCha20-Poly1305 under keys agreed in the
    /// handshake (default true; PROTOCOL.md section 5, "Sealed frames").
    /// Off (REPL `:seal nil`, kernel `--no-seal`), frames travel in clear,
    /// for a cluster on a trusted network; both sides of a connection must
    /// agree, or the handshake is refused naming both settings.
    pub seal: bool,
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
            remote_shell: true,
            hidden: false,
            connect_all: true,
            seal: true,
            limits: term::Limits::default(),
        }
    }
}

/// Why a node could not start or a remote operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeError {
    /// This process is already a node.
    AlreadyRunning(String),
    /// The listener could not be bound to the host.
    Bind(String, io::Error),
    /// The node's threads could not be started.
    Thread(io::Error),
    /// The cookie could not be loaded or created.
    Cookie(CookieError),
    /// The port mapper refused the name or could not be reached.
    PortMapper(PortMapperError),
    /// A bad option value.
    Options(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::AlreadyRunning(n) => write!(f, "this process is already the node {n}"),
            NodeError::Bind(host, e) => write!(f, "cannot listen on {host}: {e}"),
            NodeError::Thread(e) => write!(f, "cannot start the node's threads: {e}"),
            NodeError::Cookie(e) => write!(f, "{e}"),
            NodeError::PortMapper(e) => write!(f, "port mapper: {e}"),
            NodeError::Options(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Bind(_, e) | NodeError::Thread(e) => Some(e),
            NodeError::Cookie(e) => Some(e),
            NodeError::PortMapper(e) => Some(e),
            NodeError::AlreadyRunning(_) | NodeError::Options(_) => None,
        }
    }
}
