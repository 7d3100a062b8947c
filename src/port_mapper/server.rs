//! The port-mapper daemon: two accept loops and a thread per connection,
//! each service with its own cap on connections, one deadline for every
//! request that is read (so a client trickling bytes cannot stretch it) and
//! one for every answer that is written (so a client that does not read
//! cannot pin a thread). Only an open registration waits without a
//! deadline: it lasts as long as its connection.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::protocol;
use super::{valid_node_name, PortMapperError};
use crate::frame;
use crate::frame::{put_str, Fields};

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
    /// Log to stderr: first where it listens (`registry on A, directory
    /// on B`, always before any connection is served), then registrations,
    /// releases and connections closed for bad input.
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

/// Caps and timeouts of the daemon (PROTOCOL.md, "Port mapper", gives the
/// defaults). Each service has its own cap, so clients of the directory,
/// which may come from other hosts, can never keep local nodes from
/// registering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Registry connections served at once (default 1,024); each open
    /// registration holds one. More are answered ERROR and closed.
    pub max_registry_connections: usize,
    /// Directory connections served at once (default 1,024). More are
    /// answered ERROR and closed.
    pub max_directory_connections: usize,
    /// HELLO and the first request must have arrived completely within
    /// this time of the connection being accepted (default 5 s).
    pub first_request_timeout: Duration,
    /// A directory connection must send each request completely within
    /// this time of the previous answer (WELCOME included), else it gets an
    /// ERROR and is closed (default 5 s).
    pub directory_idle_timeout: Duration,
    /// Every answer must be written completely within this time, else the
    /// connection is closed (default 5 s).
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_registry_connections: 1024,
            max_directory_connections: 1024,
            first_request_timeout: Duration::from_secs(5),
            directory_idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }
}

impl ServerLimits {
    fn check(&self) -> Result<(), PortMapperError> {
        let bad = |what: &str| Err(PortMapperError::Setting(format!("{what} must not be zero")));
        if self.max_registry_connections == 0 {
            return bad("max registry connections");
        }
        if self.max_directory_connections == 0 {
            return bad("max directory connections");
        }
        if self.first_request_timeout.is_zero() {
            return bad("first request timeout");
        }
        if self.directory_idle_timeout.is_zero() {
            return bad("directory idle timeout");
        }
        if self.write_timeout.is_zero() {
            return bad("write timeout");
        }
        Ok(())
    }
}

struct Entry {
    port: u16,
    connection: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Registry,
    Directory,
}

struct Shared {
    names: Mutex<HashMap<String, Entry>>,
    /// Open sockets, so shutdown can close them.
    open: Mutex<HashMap<u64, TcpStream>>,
    registry_connections: AtomicUsize,
    directory_connections: AtomicUsize,
    next_connection: AtomicU64,
    stopping: AtomicBool,
    /// Connections closed with an ERROR for bad or missing input.
    closed_with_error: AtomicU64,
    log: bool,
    limits: ServerLimits,
}

impl Shared {
    fn names(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn open(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The service's connection count and its cap.
    fn slots(&self, service: Service) -> (&AtomicUsize, usize, &'static str) {
        match service {
            Service::Registry => (
                &self.registry_connections,
                self.limits.max_registry_connections,
                "registry",
            ),
            Service::Directory => (
                &self.directory_connections,
                self.limits.max_directory_connections,
                "directory",
            ),
        }
    }
    /// Logs to stderr; a closed or broken stderr is ignored, never a panic.
    fn log(&self, args: std::fmt::Arguments<'_>) {
        if self.log {
            let _ = writeln!(io::stderr(), "erlangen-port-mapper: {args}");
        }
    }
}

impl PortMapper {
    /// Connections closed with an ERROR frame for bad or missing input
    /// since the start (each also logged as one line).
    pub fn closed_with_error(&self) -> u64 {
        self.shared.closed_with_error.load(Ordering::Relaxed)
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
    /// Binds both services and starts serving, with the default
    /// [`ServerLimits`].
    ///
    /// # Errors
    /// [`PortMapperError::Io`] if a port cannot be bound.
    pub fn start(config: ServerConfig) -> Result<PortMapper, PortMapperError> {
        PortMapper::start_with(config, ServerLimits::default())
    }

    /// Binds both services and starts serving with these caps and
    /// timeouts.
    ///
    /// # Errors
    /// [`PortMapperError::Setting`] if a cap or timeout is zero;
    /// [`PortMapperError::Io`] if a port cannot be bound.
    pub fn start_with(
        config: ServerConfig,
        limits: ServerLimits,
    ) -> Result<PortMapper, PortMapperError> {
        limits.check()?;
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
        // Every node of a cluster that forms asks at once.
        crate::sys::widen_backlog(&registry);
        crate::sys::widen_backlog(&directory);
        let shared = Arc::new(Shared {
            names: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            registry_connections: AtomicUsize::new(0),
            directory_connections: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            closed_with_error: AtomicU64::new(0),
            log: config.log,
            limits,
        });
        let registry_addr = registry
            .local_addr()
            .map_err(protocol::io("registry address"))?;
        let directory_addr = directory
            .local_addr()
            .map_err(protocol::io("directory address"))?;
        // Said before any accept loop runs, so this line comes first in the
        // log even when nodes re-register the moment the ports open.
        shared.log(format_args!(
            "registry on {registry_addr}, directory on {directory_addr}"
        ));
        let mut threads = Vec::new();
        for (listener, service) in [
            (registry, Service::Registry),
            (directory, Service::Directory),
        ] {
            let s = Arc::clone(&shared);
            let name = match service {
                Service::Registry => "port-mapper registry",
                Service::Directory => "port-mapper directory",
            };
            let t = thread::Builder::new()
                .name(name.into())
                .spawn(move || accept_loop(s, listener, service))
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

/// Why a connection ends early.
enum Close {
    /// Tell the client this (an ERROR frame), then close.
    Tell(String),
    /// Close without a word: the socket itself failed, so nothing more can
    /// be said on it.
    Silent,
}

impl From<String> for Close {
    fn from(message: String) -> Close {
        Close::Tell(message)
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, service: Service) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let (count, max, name) = shared.slots(service);
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            refuse(
                stream,
                &format!("too many {name} connections (at most {max}); try again later"),
            );
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
                let accepted = Instant::now();
                let result = match service {
                    Service::Registry => serve_registry(&s, &stream, id, accepted),
                    Service::Directory => serve_directory(&s, &stream, accepted),
                };
                if let Err(Close::Tell(message)) = result {
                    // Tell the client why, then close: bad input never
                    // affects anyone else. One line in the log per such
                    // connection.
                    let from = stream
                        .peer_addr()
                        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
                    let count = s.closed_with_error.fetch_add(1, Ordering::Relaxed) + 1;
                    s.log(format_args!(
                        "{} connection from {from} closed: {message} ({count} closed for errors so far)",
                        s.slots(service).2
                    ));
                    let _ = reply(
                        &stream,
                        protocol::ERROR,
                        &protocol::error_frame(&message),
                        s.limits.write_timeout,
                    );
                }
                let _ = stream.shutdown(Shutdown::Both);
                s.open().remove(&id);
                s.slots(service).0.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            shared.open().remove(&id);
            shared.slots(service).0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Answers a connection over the cap with an ERROR and closes it, without
/// a thread: the write is non-blocking (a fresh socket's buffer takes a
/// small frame), so a flood cannot stall the accept loop.
fn refuse(stream: TcpStream, message: &str) {
    let mut out = Vec::new();
    if frame::encode_frame(&mut out, protocol::ERROR, &protocol::error_frame(message)).is_ok()
        && stream.set_nonblocking(true).is_ok()
    {
        let _ = (&stream).write(&out);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes one frame; all of it must be written before `timeout` has
/// passed (the socket's write timeout is set to what is left before every
/// write, so a client reading a byte at a time cannot stretch it).
fn reply(stream: &TcpStream, kind: u8, payload: &[u8], timeout: Duration) -> Result<(), Close> {
    let mut out = Vec::with_capacity(frame::HEADER_LEN + payload.len());
    frame::encode_frame(&mut out, kind, payload).map_err(|_| Close::Silent)?;
    let deadline = Instant::now() + timeout;
    let mut rest = &out[..];
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
            return Err(Close::Silent);
        }
        match (&*stream).write(rest) {
            Ok(0) => return Err(Close::Silent),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Close::Silent),
        }
    }
    Ok(())
}

/// Reads one frame, all of it before `deadline` (none: wait as long as it
/// takes). `Ok(None)` is a clean close; a timeout is `Close::Tell` with
/// `timed_out`.
fn read(
    stream: &TcpStream,
    deadline: Option<Instant>,
    buf: &mut Vec<u8>,
    timed_out: impl FnOnce() -> String,
) -> Result<Option<u8>, Close> {
    let result = match deadline {
        Some(deadline) => frame::read_frame(
            &mut frame::Deadline::new(stream, deadline),
            protocol::MAX_FRAME,
            buf,
        ),
        None => {
            stream.set_read_timeout(None).map_err(|_| Close::Silent)?;
            frame::read_frame(&mut &*stream, protocol::MAX_FRAME, buf)
        }
    };
    match result {
        Ok(kind) => Ok(Some(kind)),
        Err(frame::FrameError::Closed) => Ok(None),
        Err(e) if e.is_timeout() => Err(Close::Tell(timed_out())),
        // The socket failed, or the client left mid-frame: nothing more
        // can be said on it.
        Err(frame::FrameError::Io(_) | frame::FrameError::Truncated { .. }) => Err(Close::Silent),
        Err(e) => Err(Close::Tell(e.to_string())),
    }
}

/// The message for a client that missed the first-request deadline.
fn first_request_late(limits: &ServerLimits) -> String {
    format!(
        "no complete HELLO and first request within {:?} of connecting (first request timeout); closing",
        limits.first_request_timeout
    )
}

fn version_exchange(
    shared: &Shared,
    stream: &TcpStream,
    deadline: Instant,
    buf: &mut Vec<u8>,
) -> Result<bool, Close> {
    let limits = &shared.limits;
    match read(stream, Some(deadline), buf, || first_request_late(limits))? {
        None => Ok(false),
        Some(protocol::HELLO) => {
            if buf.len() != 5 || &buf[..4] != protocol::MAGIC {
                return Err("expected HELLO with magic ERPM and a version byte"
                    .to_owned()
                    .into());
            }
            if buf[4] != protocol::VERSION {
                return Err(format!(
                    "unsupported protocol version {} (this port mapper speaks {})",
                    buf[4],
                    protocol::VERSION
                )
                .into());
            }
            reply(
                stream,
                protocol::WELCOME,
                &[protocol::VERSION],
                limits.write_timeout,
            )?;
            Ok(true)
        }
        Some(kind) => Err(format!("expected HELLO, got frame kind 0x{kind:02x}").into()),
    }
}

fn field(e: frame::FieldError) -> Close {
    Close::Tell(e.to_string())
}

fn serve_registry(
    shared: &Shared,
    stream: &TcpStream,
    id: u64,
    accepted: Instant,
) -> Result<(), Close> {
    let limits = &shared.limits;
    // One deadline for HELLO and REGISTER together.
    let deadline = accepted + limits.first_request_timeout;
    let mut buf = Vec::new();
    if !version_exchange(shared, stream, deadline, &mut buf)? {
        return Ok(());
    }
    let (name, port) = match read(stream, Some(deadline), &mut buf, || {
        first_request_late(limits)
    })? {
        None => return Ok(()),
        Some(protocol::REGISTER) => {
            let mut f = Fields::new(&buf);
            let name = f.str("name").map_err(field)?.to_owned();
            let port = f.take(2, "port").map_err(field)?;
            let port = u16::from_be_bytes([port[0], port[1]]);
            f.end().map_err(field)?;
            valid_node_name(&name).map_err(|e| Close::Tell(e.to_string()))?;
            if port == 0 {
                return Err("port 0 cannot be registered".to_owned().into());
            }
            (name, port)
        }
        Some(kind) => return Err(format!("expected REGISTER, got frame kind 0x{kind:02x}").into()),
    };
    {
        let mut names = shared.names();
        if names.contains_key(&name) {
            // The first registration stands; this one is refused.
            return Err(
                format!("the name {name:?} is already registered by another connection").into(),
            );
        }
        names.insert(
            name.clone(),
            Entry {
                port,
                connection: id,
            },
        );
    }
    shared.log(format_args!("registered {name} on port {port}"));
    let answered = reply(stream, protocol::REGISTERED, &[], limits.write_timeout);
    // The registration lasts as long as the connection: wait for it to
    // close. Anything the client sends now is a protocol error, which also
    // ends the registration.
    let outcome = match answered {
        Ok(()) => match read(stream, None, &mut buf, String::new) {
            Ok(None) => Ok(()),
            Ok(Some(kind)) => {
                Err(format!("unexpected frame kind 0x{kind:02x} after REGISTERED").into())
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    {
        let mut names = shared.names();
        if names.get(&name).is_some_and(|e| e.connection == id) {
            names.remove(&name);
        }
    }
    shared.log(format_args!("released {name}"));
    outcome
}

fn serve_directory(shared: &Shared, stream: &TcpStream, accepted: Instant) -> Result<(), Close> {
    let limits = &shared.limits;
    let first = accepted + limits.first_request_timeout;
    let mut buf = Vec::new();
    if !version_exchange(shared, stream, first, &mut buf)? {
        return Ok(());
    }
    let mut first_request = true;
    loop {
        // Each request must be complete within the idle timeout of the
        // previous answer; the first also within the first-request
        // deadline.
        let idle = Instant::now() + limits.directory_idle_timeout;
        let use_first = first_request && first < idle;
        first_request = false;
        let deadline = if use_first { first } else { idle };
        let late = || {
            if use_first {
                first_request_late(limits)
            } else {
                format!(
                    "no complete request within {:?} of the last answer (directory idle timeout); closing",
                    limits.directory_idle_timeout
                )
            }
        };
        let kind = match read(stream, Some(deadline), &mut buf, late)? {
            Some(kind) => kind,
            None => return Ok(()),
        };
        match kind {
            protocol::QUERY => {
                let mut f = Fields::new(&buf);
                let name = f.str("name").map_err(field)?.to_owned();
                f.end().map_err(field)?;
                let port = shared.names().get(&name).map(|e| e.port);
                match port {
                    Some(port) => reply(
                        stream,
                        protocol::PORT,
                        &port.to_be_bytes(),
                        limits.write_timeout,
                    )?,
                    // Unknown names are an answer, not a protocol error: the
                    // connection stays open.
                    None => reply(stream, protocol::UNKNOWN, &[], limits.write_timeout)?,
                }
            }
            protocol::LIST => {
                if !buf.is_empty() {
                    return Err("LIST takes no payload".to_owned().into());
                }
                let mut out = Vec::new();
                {
                    let names = shared.names();
                    // At most one name per registry connection, so the
                    // count fits a u32.
                    out.extend_from_slice(&(names.len() as u32).to_be_bytes());
                    for (n, e) in names.iter() {
                        put_str(&mut out, n);
                        out.extend_from_slice(&e.port.to_be_bytes());
                    }
                }
                reply(stream, protocol::NODES, &out, limits.write_timeout)?;
            }
            other => {
                return Err(format!("expected QUERY or LIST, got frame kind 0x{other:02x}").into())
            }
        }
    }
}
