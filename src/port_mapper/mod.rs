//! The port mapper: one small daemon per host that maps node names to the
//! ports their listeners use (SPEC section 6).
//!
//! - The *registry* service listens on 127.0.0.1 only (default port 10001),
//!   so no other host can register or squat a name. A node registers its
//!   name and port over a connection it keeps open; the registration lasts
//!   exactly as long as that connection (also when the node is killed: the
//!   kernel closes its socket).
//! - The *directory* service (default port 20002, on the host named on the
//!   command line) answers "which port has node N" and "which nodes are
//!   here".
//!
//! PROTOCOL.md ("Port mapper") documents every byte of both.

pub mod client;
pub(crate) mod protocol;
pub mod server;

use std::fmt;
use std::io;

/// Why a port-mapper operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PortMapperError {
    /// A socket operation failed (what was being done, the error).
    Io(String, io::Error),
    /// The server answered with an error (its message).
    Refused(String),
    /// No node of this name is registered.
    UnknownNode(String),
    /// The name cannot be a node name.
    InvalidName(String),
    /// The peer broke the protocol.
    Protocol(String),
    /// A server setting has a value it cannot work with (which, why).
    Setting(String),
}

impl fmt::Display for PortMapperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortMapperError::Io(what, e) => write!(f, "{what}: {e}"),
            PortMapperError::Refused(m) => write!(f, "refused: {m}"),
            PortMapperError::UnknownNode(n) => write!(f, "no node named {n:?} is registered"),
            PortMapperError::InvalidName(n) => write!(
                f,
                "{n:?} is not a valid node name (1 to 255 printable ASCII characters, no '/' or spaces)"
            ),
            PortMapperError::Protocol(m) => write!(f, "protocol error: {m}"),
            PortMapperError::Setting(m) => write!(f, "invalid setting: {m}"),
        }
    }
}

impl std::error::Error for PortMapperError {}

/// Checks a node name: 1 to 255 bytes of printable ASCII, no `/` (ids are
/// `host/node/aid`) and no spaces.
///
/// # Errors
/// [`PortMapperError::InvalidName`].
pub fn valid_node_name(name: &str) -> Result<(), PortMapperError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'/');
    if ok {
        Ok(())
    } else {
        Err(PortMapperError::InvalidName(name.to_owned()))
    }
}
