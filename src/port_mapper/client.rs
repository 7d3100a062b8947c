//! Client side of the port mapper, used by nodes: register (holding the
//! connection open), keep registered across port-mapper restarts, query one
//! name, list all. Every operation has a timeout.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::protocol::{self, io};
use super::{valid_node_name, PortMapperError};
use crate::frame::{put_str, Fields};

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, PortMapperError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(io(&format!("connect to the port mapper at {addr}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io("set timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(io("set timeout"))?;
    stream.set_nodelay(true).map_err(io("set nodelay"))?;
    protocol::send(&mut stream, protocol::HELLO, &protocol::hello())?;
    let mut buf = Vec::new();
    match protocol::receive(&mut stream, &mut buf)? {
        protocol::WELCOME if buf == [protocol::VERSION] => Ok(stream),
        kind => Err(PortMapperError::Protocol(format!(
            "expected WELCOME, got frame kind 0x{kind:02x}"
        ))),
    }
}

/// A registration: the name is held while this lives. Dropping it closes
/// the connection, which releases the name.
#[derive(Debug)]
pub struct Registration {
    stream: TcpStream,
}

impl Registration {
    /// Waits up to `timeout` for the port mapper to close the connection;
    /// `true` if it did (the port mapper stopped: the name is gone).
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let mut probe = [0u8; 1];
        if self
            .stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .is_err()
        {
            return true;
        }
        match std::io::Read::read(&mut &self.stream, &mut probe) {
            Ok(0) => true,
            // The server never sends after REGISTERED: data is a broken
            // server, treat as closed.
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Registers `name` with `port` at the registry service `registry`.
///
/// # Errors
/// [`PortMapperError::Refused`] if the name is taken; I/O and protocol
/// errors; an invalid name.
pub fn register(
    registry: SocketAddr,
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<Registration, PortMapperError> {
    valid_node_name(name)?;
    let mut stream = connect(registry, timeout)?;
    let mut payload = Vec::new();
    put_str(&mut payload, name);
    payload.extend_from_slice(&port.to_be_bytes());
    protocol::send(&mut stream, protocol::REGISTER, &payload)?;
    let mut buf = Vec::new();
    match protocol::receive(&mut stream, &mut buf)? {
        protocol::REGISTERED => Ok(Registration { stream }),
        kind => Err(PortMapperError::Protocol(format!(
            "expected REGISTERED, got frame kind 0x{kind:02x}"
        ))),
    }
}

/// The port of node `name` from the directory service at `directory`.
///
/// # Errors
/// [`PortMapperError::UnknownNode`] if it is not registered; I/O and
/// protocol errors.
pub fn query_port(
    directory: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<u16, PortMapperError> {
    valid_node_name(name)?;
    let mut stream = connect(directory, timeout)?;
    let mut payload = Vec::new();
    put_str(&mut payload, name);
    protocol::send(&mut stream, protocol::QUERY, &payload)?;
    let mut buf = Vec::new();
    match protocol::receive(&mut stream, &mut buf)? {
        protocol::PORT if buf.len() == 2 => Ok(u16::from_be_bytes([buf[0], buf[1]])),
        protocol::UNKNOWN => Err(PortMapperError::UnknownNode(name.to_owned())),
        kind => Err(PortMapperError::Protocol(format!(
            "expected PORT, got frame kind 0x{kind:02x}"
        ))),
    }
}

/// Every registered node with its port, from the directory at `directory`.
///
/// # Errors
/// I/O and protocol errors.
pub fn list_nodes(
    directory: SocketAddr,
    timeout: Duration,
) -> Result<Vec<(String, u16)>, PortMapperError> {
    let mut stream = connect(directory, timeout)?;
    protocol::send(&mut stream, protocol::LIST, &[])?;
    let mut buf = Vec::new();
    let kind = protocol::receive(&mut stream, &mut buf)?;
    if kind != protocol::NODES {
        return Err(PortMapperError::Protocol(format!(
            "expected NODES, got frame kind 0x{kind:02x}"
        )));
    }
    let bad = |e: crate::frame::FieldError| PortMapperError::Protocol(e.to_string());
    let mut f = Fields::new(&buf);
    let count = f.u32("count").map_err(bad)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let name = f.str("name").map_err(bad)?.to_owned();
        let port = f.take(2, "port").map_err(bad)?;
        out.push((name, u16::from_be_bytes([port[0], port[1]])));
    }
    f.end().map_err(bad)?;
    out.sort();
    Ok(out)
}

/// How often a node whose port mapper went away tries to register again.
const RETRY: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps a name registered for as long as it lives: registers once (a taken
/// name is an error at once), then a background thread re-registers
/// whenever the port mapper restarts. Dropping it releases the name.
#[derive(Debug)]
pub struct KeepRegistered {
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<Registration>>>,
    thread: Option<JoinHandle<()>>,
}

impl KeepRegistered {
    /// Registers `name` with `port` and starts watching.
    ///
    /// # Errors
    /// As [`register`] for the first registration.
    pub fn start(
        registry: SocketAddr,
        name: &str,
        port: u16,
    ) -> Result<KeepRegistered, PortMapperError> {
        let first = register(registry, name, port, TIMEOUT)?;
        let watch = first
            .stream
            .try_clone()
            .map_err(io("clone the registration socket"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(Mutex::new(Some(first)));
        let (s, c, name) = (Arc::clone(&stop), Arc::clone(&current), name.to_owned());
        let thread = thread::Builder::new()
            .name(format!("port-mapper keeper {name}"))
            .spawn(move || keep(registry, &name, port, watch, &s, &c))
            .map_err(io("start a thread"))?;
        Ok(KeepRegistered {
            stop,
            current,
            thread: Some(thread),
        })
    }
}

fn keep(
    registry: SocketAddr,
    name: &str,
    port: u16,
    mut watch: TcpStream,
    stop: &AtomicBool,
    current: &Mutex<Option<Registration>>,
) {
    loop {
        // Wait for the registration connection to close, waking now and
        // then to notice a stop.
        let _ = watch.set_read_timeout(Some(RETRY));
        let mut probe = [0u8; 1];
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match std::io::Read::read(&mut watch, &mut probe) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                _ => break,
            }
        }
        // The port mapper went away: register again until it is back.
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if let Ok(r) = register(registry, name, port, TIMEOUT) {
                if let Ok(w) = r.stream.try_clone() {
                    watch = w;
                    *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    break;
                }
            }
            thread::sleep(RETRY);
        }
    }
}

impl Drop for KeepRegistered {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Closing the registration releases the name and wakes the watcher.
        drop(
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
