//! Port-mapper messages: frames (see [`crate::frame`]) with these kinds.

use std::io::Write;
use std::net::TcpStream;

use super::PortMapperError;
use crate::frame::{self, FrameError};
use crate::frame::{put_str, Fields};

/// Client's first frame: `magic: 4 = "ERPM"`, `version: u8`.
pub const HELLO: u8 = 0x20;
/// Server's answer to HELLO: `version: u8`.
pub const WELCOME: u8 = 0x21;
/// Registry: `name: str`, `port: u16`.
pub const REGISTER: u8 = 0x22;
/// Registry: registration accepted; no payload.
pub const REGISTERED: u8 = 0x23;
/// Directory: `name: str`.
pub const QUERY: u8 = 0x24;
/// Directory: `port: u16`.
pub const PORT: u8 = 0x25;
/// Directory: no payload.
pub const LIST: u8 = 0x26;
/// Directory: `count: u32`, then `count` times `name: str`, `port: u16`.
pub const NODES: u8 = 0x27;
/// Directory: the queried name is not registered; no payload.
pub const UNKNOWN: u8 = 0x28;
/// Server: `message: str`; the connection is closed after it.
pub const ERROR: u8 = 0x2F;

/// Protocol version.
pub const VERSION: u8 = 1;
/// The magic bytes of HELLO.
pub const MAGIC: &[u8; 4] = b"ERPM";
/// Largest port-mapper frame (a NODES answer for many nodes fits).
pub const MAX_FRAME: usize = 1024 * 1024;

pub(crate) fn io(what: &str) -> impl Fn(std::io::Error) -> PortMapperError + '_ {
    move |e| PortMapperError::Io(what.to_owned(), e)
}

pub(crate) fn frame_error(what: &str, e: FrameError) -> PortMapperError {
    match e {
        FrameError::Io(e) => PortMapperError::Io(what.to_owned(), e),
        other => PortMapperError::Protocol(format!("{what}: {other}")),
    }
}

/// Sends one frame.
pub(crate) fn send(
    stream: &mut TcpStream,
    kind: u8,
    payload: &[u8],
) -> Result<(), PortMapperError> {
    frame::write_frame(stream, kind, payload).map_err(io("send"))?;
    stream.flush().map_err(io("send"))
}

/// Reads one frame; an ERROR frame becomes `Refused`.
pub(crate) fn receive(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u8, PortMapperError> {
    let kind = frame::read_frame(stream, MAX_FRAME, buf).map_err(|e| frame_error("receive", e))?;
    if kind == ERROR {
        let mut f = Fields::new(buf);
        let message = f
            .str("message")
            .map_err(|e| PortMapperError::Protocol(e.to_string()))?;
        return Err(PortMapperError::Refused(message.to_owned()));
    }
    Ok(kind)
}

pub(crate) fn error_frame(message: &str) -> Vec<u8> {
    let mut p = Vec::new();
    put_str(&mut p, message);
    p
}

pub(crate) fn hello() -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.push(VERSION);
    p
}
