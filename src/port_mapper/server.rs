//! The port-mapper daemon: two accept loops and a thread per connection,
//! bounded in number, with a deadline on every read that is not an open
//! registration.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::protocol;
use super::{valid_node_name, PortMapperError};
use crate::frame;
use crate::frame::{put_str, Fields};

/// How a client must complete the version exchange and its first request.
const FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// A directory connection idle this long is closed.
const DIRECTORY_IDLE: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at once (a flood cannot
/// exhaust threads).
const MAX_CONNECTIONS: usize = 1024;

/// Where the daemon listens. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Host (name or address) of the directory service; the seed's default
    /// is every interface, `0.0.0.0`.
    pub directory_host: String,
    /// Registry port, on 127.0.0.1.
    pub registry_port: u16,
    /// Directory port.
    pub directory_port: u16,
    /// Log registrations and releases to stderr.
    pub log: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            directory_host: "0.0.0.0".into(),
            registry_port: crate::config::DEFAULT_REGISTRY_PORT,
            directory_port: crate::config::DEFAULT_DIRECTORY_PORT,
            log: false,
        }
    }
}

struct Entry {
    port: u16,
    connection: u64,
}

struct Shared {
    names: Mutex<HashMap<String, Entry>>,
    /// Open sockets, so shutdown can close them.
    open: Mutex<HashMap<u64, TcpStream>>,
    connections: AtomicUsize,
    next_connection: AtomicU64,
    stopping: AtomicBool,
    log: bool,
}

impl Shared {
    fn names(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn open(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running port mapper; dropping it stops it.
pub struct PortMapper {
    shared: Arc<Shared>,
    registry: SocketAddr,
    directory: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PortMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PortMapper(registry {}, directory {})",
            self.registry, self.directory
        )
    }
}

impl PortMapper {
    /// Binds both services and starts serving.
    ///
    /// # Errors
    /// [`PortMapperError::Io`] if a port cannot be bound.
    pub fn start(config: ServerConfig) -> Result<PortMapper, PortMapperError> {
        let registry = TcpListener::bind(("127.0.0.1", config.registry_port))
            .map_err(protocol::io("bind the registry port on 127.0.0.1"))?;
        let directory_addr = (config.directory_host.as_str(), config.directory_port)
            .to_socket_addrs()
            .map_err(protocol::io("resolve the directory host"))?
            .next()
            .ok_or_else(|| {
                PortMapperError::Protocol(format!("cannot resolve {}", config.directory_host))
            })?;
        let directory =
            TcpListener::bind(directory_addr).map_err(protocol::io("bind the directory port"))?;
        let shared = Arc::new(Shared {
            names: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            log: config.log,
        });
        let registry_addr = registry
            .local_addr()
            .map_err(protocol::io("registry address"))?;
        let directory_addr = directory
            .local_addr()
            .map_err(protocol::io("directory address"))?;
        let mut threads = Vec::new();
        for (listener, is_registry) in [(registry, true), (directory, false)] {
            let s = Arc::clone(&shared);
            let name = if is_registry {
                "port-mapper registry"
            } else {
                "port-mapper directory"
            };
            let t = thread::Builder::new()
                .name(name.into())
                .spawn(move || accept_loop(s, listener, is_registry))
                .map_err(protocol::io("start a thread"))?;
            threads.push(t);
        }
        Ok(PortMapper {
            shared,
            registry: registry_addr,
            directory: directory_addr,
            threads,
        })
    }

    /// The registry service's address (127.0.0.1).
    pub fn registry_addr(&self) -> SocketAddr {
        self.registry
    }

    /// The directory service's address.
    pub fn directory_addr(&self) -> SocketAddr {
        self.directory
    }

    /// Registered names with their ports, sorted.
    pub fn nodes(&self) -> Vec<(String, u16)> {
        let mut v: Vec<(String, u16)> = self
            .shared
            .names()
            .iter()
            .map(|(n, e)| (n.clone(), e.port))
            .collect();
        v.sort();
        v
    }

    /// Stops serving: closes the listeners and every connection.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake the accept loops by connecting to them; a loop that could not
        // be woken ends at its next connection, so it is not waited for.
        let mut woke = Vec::new();
        for addr in [self.registry, self.directory] {
            let mut wake = addr;
            if wake.ip().is_unspecified() {
                wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            woke.push(TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok());
        }
        for (t, woke) in self.threads.drain(..).zip(woke) {
            if woke {
                let _ = t.join();
            }
        }
        for (_, s) in self.shared.open().drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.shared.names().clear();
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, registry: bool) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared.open().insert(id, clone);
        }
        let s = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("port-mapper connection".into())
            .spawn(move || {
                let mut stream = stream;
                let result = if registry {
                    serve_registry(&s, &mut stream, id)
                } else {
                    serve_directory(&s, &mut stream)
                };
                if let Err(message) = result {
                    // Tell the client why, then close: bad input never
                    // affects anyone else.
                    let _ = frame::write_frame(
                        &mut stream,
                        protocol::ERROR,
                        &protocol::error_frame(&message),
                    );
                }
                let _ = stream.shutdown(Shutdown::Both);
                s.open().remove(&id);
                s.connections.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.open().remove(&id);
            shared.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads one frame with a read timeout; `Err` is a message for the client.
fn read(
    stream: &mut TcpStream,
    timeout: Option<Duration>,
    buf: &mut Vec<u8>,
) -> Result<Option<u8>, String> {
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    match frame::read_frame(stream, protocol::MAX_FRAME, buf) {
        Ok(kind) => Ok(Some(kind)),
        Err(frame::FrameError::Closed) => Ok(None),
        Err(e) if e.is_timeout() => Err("timed out waiting for a request".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn version_exchange(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    match read(stream, Some(FIRST_REQUEST_DEADLINE), buf)? {
        None => Ok(false),
        Some(protocol::HELLO) => {
            if buf.len() != 5 || &buf[..4] != protocol::MAGIC {
                return Err("expected HELLO with magic ERPM and a version byte".into());
            }
            if buf[4] != protocol::VERSION {
                return Err(format!(
                    "unsupported protocol version {} (this port mapper speaks {})",
                    buf[4],
                    protocol::VERSION
                ));
            }
            frame::write_frame(stream, protocol::WELCOME, &[protocol::VERSION])
                .map_err(|e| e.to_string())?;
            Ok(true)
        }
        Some(kind) => Err(format!("expected HELLO, got frame kind 0x{kind:02x}")),
    }
}

fn serve_registry(shared: &Shared, stream: &mut TcpStream, id: u64) -> Result<(), String> {
    let mut buf = Vec::new();
    if !version_exchange(stream, &mut buf)? {
        return Ok(());
    }
    let (name, port) = match read(stream, Some(FIRST_REQUEST_DEADLINE), &mut buf)? {
        None => return Ok(()),
        Some(protocol::REGISTER) => {
            let mut f = Fields::new(&buf);
            let name = f.str("name").map_err(|e| e.to_string())?.to_owned();
            let port = f.take(2, "port").map_err(|e| e.to_string())?;
            let port = u16::from_be_bytes([port[0], port[1]]);
            f.end().map_err(|e| e.to_string())?;
            valid_node_name(&name).map_err(|e| e.to_string())?;
            if port == 0 {
                return Err("port 0 cannot be registered".into());
            }
            (name, port)
        }
        Some(kind) => return Err(format!("expected REGISTER, got frame kind 0x{kind:02x}")),
    };
    {
        let mut names = shared.names();
        if names.contains_key(&name) {
            return Err(format!("the name {name:?} is already registered"));
        }
        names.insert(
            name.clone(),
            Entry {
                port,
                connection: id,
            },
        );
    }
    if shared.log {
        eprintln!("erlangen-port-mapper: registered {name} on port {port}");
    }
    let answered = frame::write_frame(stream, protocol::REGISTERED, &[]);
    // The registration lasts as long as the connection: wait for it to
    // close. Anything the client sends now is a protocol error, which also
    // ends the registration.
    let outcome = match answered {
        Ok(()) => match read(stream, None, &mut buf) {
            Ok(None) => Ok(()),
            Ok(Some(kind)) => Err(format!("unexpected frame kind 0x{kind:02x} after REGISTER")),
            Err(e) => Err(e),
        },
        Err(_) => Ok(()),
    };
    {
        let mut names = shared.names();
        if names.get(&name).is_some_and(|e| e.connection == id) {
            names.remove(&name);
        }
    }
    if shared.log {
        eprintln!("erlangen-port-mapper: released {name}");
    }
    outcome
}

fn serve_directory(shared: &Shared, stream: &mut TcpStream) -> Result<(), String> {
    let mut buf = Vec::new();
    if !version_exchange(stream, &mut buf)? {
        return Ok(());
    }
    loop {
        let kind = match read(stream, Some(DIRECTORY_IDLE), &mut buf) {
            Ok(Some(kind)) => kind,
            Ok(None) => return Ok(()),
            // An idle client is simply closed.
            Err(e) if e.starts_with("timed out") => return Ok(()),
            Err(e) => return Err(e),
        };
        match kind {
            protocol::QUERY => {
                let mut f = Fields::new(&buf);
                let name = f.str("name").map_err(|e| e.to_string())?.to_owned();
                f.end().map_err(|e| e.to_string())?;
                let port = shared.names().get(&name).map(|e| e.port);
                match port {
                    Some(port) => frame::write_frame(stream, protocol::PORT, &port.to_be_bytes()),
                    // Unknown names are an answer, not a protocol error: the
                    // connection stays open.
                    None => frame::write_frame(stream, protocol::UNKNOWN, &[]),
                }
                .map_err(|e| e.to_string())?;
            }
            protocol::LIST => {
                if !buf.is_empty() {
                    return Err("LIST takes no payload".into());
                }
                let mut out = Vec::new();
                {
                    let names = shared.names();
                    out.extend_from_slice(&(names.len() as u32).to_be_bytes());
                    for (n, e) in names.iter() {
                        put_str(&mut out, n);
                        out.extend_from_slice(&e.port.to_be_bytes());
                    }
                }
                frame::write_frame(stream, protocol::NODES, &out).map_err(|e| e.to_string())?;
            }
            other => {
                return Err(format!(
                    "expected QUERY or LIST, got frame kind 0x{other:02x}"
                ))
            }
        }
    }
}
