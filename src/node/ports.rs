//! Where peers listen: port-mapper lookups, shared by the dials of one
//! moment.
//!
//! A node that joins a cluster dials every member at once, and every
//! member dials it: one QUERY each would send N² requests to the port
//! mappers in a burst, more than a port mapper's accept queue holds (the
//! kernel then drops connection attempts, which are retried a second
//! later). Instead the first dial to a host asks its directory for the
//! whole LIST, and the dials of the next [`FRESH`] use that answer; a node
//! missing from it is asked for by name, so a node that registered since
//! is found at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::port_mapper::{self, PortMapperError};

/// How long one LIST answers the dials to its host.
const FRESH: Duration = Duration::from_secs(1);

#[derive(Default)]
struct HostPorts {
    fetched: Option<Instant>,
    ports: HashMap<String, u16>,
}

/// Per-host port lists (inside `NodeState`).
#[derive(Default)]
pub(crate) struct PortBook {
    hosts: Mutex<HashMap<SocketAddr, Arc<Mutex<HostPorts>>>>,
}

impl PortBook {
    /// The port of `node` at the directory `directory`, and whether it may
    /// be stale: it came from a LIST fetched by an earlier dial (a node
    /// that restarted since listens elsewhere), not from one fetched or a
    /// QUERY made just now.
    ///
    /// # Errors
    /// The port mapper's error ([`PortMapperError::UnknownNode`] if it
    /// does not know the node).
    pub(crate) fn port(
        &self,
        directory: SocketAddr,
        node: &str,
        timeout: Duration,
    ) -> Result<(u16, bool), PortMapperError> {
        let host = Arc::clone(lock(&self.hosts).entry(directory).or_default());
        // Held while fetching: the dials of a burst wait for one LIST
        // instead of each sending one.
        let mut entry = lock(&host);
        let fresh = entry.fetched.is_some_and(|t| t.elapsed() < FRESH);
        let mut listed_now = false;
        if !fresh {
            // A failed LIST leaves nothing stale behind: the QUERY below
            // answers instead.
            entry.ports = port_mapper::client::list_nodes(directory, timeout)
                .map(|list| list.into_iter().collect())
                .unwrap_or_default();
            entry.fetched = Some(Instant::now());
            listed_now = true;
        }
        if let Some(&port) = entry.ports.get(node) {
            return Ok((port, !listed_now));
        }
        drop(entry);
        port_mapper::client::query_port(directory, node, timeout).map(|port| (port, false))
    }

    /// Asks for `node` by name, after a port from a LIST failed (the node
    /// may have restarted elsewhere); the LIST is forgotten.
    ///
    /// # Errors
    /// As [`PortBook::port`].
    pub(crate) fn query_again(
        &self,
        directory: SocketAddr,
        node: &str,
        timeout: Duration,
    ) -> Result<u16, PortMapperError> {
        self.forget(directory);
        port_mapper::client::query_port(directory, node, timeout)
    }

    /// Forgets what the directory at `directory` said (a dial with its
    /// answer reached another node: the port was reused).
    pub(crate) fn forget(&self, directory: SocketAddr) {
        lock(&self.hosts).remove(&directory);
    }
}
