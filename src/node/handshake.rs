//! Mutual authentication of two nodes by a shared cookie, before anything
//! else is parsed (deny by default).
//!
//! Challenge/response after the shape of Erlang's distribution handshake
//! (`dist_util.erl`: exactly one accepted message shape per step, anything
//! else ends the connection), with HMAC-SHA256 instead of MD5:
//!
//! ```text
//! client                                   server
//!   HELLO  version, name_c, inc_c, nonce_c  ->
//!      <-  CHALLENGE version, name_s, inc_s, nonce_s, proof_s
//!   PROOF  proof_c                          ->
//!      <-  ACCEPT            (or REFUSE code, reason)
//! ```
//!
//! The whole exchange has one deadline, enforced on every socket read
//! (`frame::Deadline`): a peer that trickles bytes cannot hold a handshake
//! slot past it. REFUSE is sent only to a peer that proved the cookie; an
//! unauthenticated one gets nothing but a closed connection.
//!
//! `T` is the transcript `name_c inc_c nonce_c name_s inc_s nonce_s` (str
//! fields length-prefixed), `proof_s = HMAC(cookie, "erlangen server" || T)`
//! and `proof_c = HMAC(cookie, "erlangen client" || T)`. Both nonces are 32
//! fresh bytes from the OS, so a recorded handshake proves nothing on a new
//! connection (replay), and the role labels differ, so a server's proof
//! cannot be reflected back as a client's. The cookie never crosses the
//! wire. Proofs are compared in constant time.

use std::fmt;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::crypto;
use crate::frame::{self, FrameError};
use crate::frame::{put_str, FieldError, Fields};

/// Handshake frame kinds.
pub(crate) mod kind {
    /// Client's opening: `magic: 4 = "ERLN"`, `version: u8`, `name: str`,
    /// `incarnation: u64`, `nonce: 32`.
    pub const HELLO: u8 = 0x01;
    /// Server's answer: `version: u8`, `name: str`, `incarnation: u64`,
    /// `nonce: 32`, `proof: 32`.
    pub const CHALLENGE: u8 = 0x02;
    /// Client's proof: `proof: 32`.
    pub const PROOF: u8 = 0x03;
    /// Server accepts; no payload.
    pub const ACCEPT: u8 = 0x04;
    /// Server refuses an authenticated client: `code: u8`, `reason: str`.
    pub const REFUSE: u8 = 0x05;
}

/// Why a server refuses an authenticated client (the REFUSE frame's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A connection between the two nodes exists, or the server is dialing
    /// the client at this moment and its dial wins (the node whose
    /// `host/node` name sorts first keeps its own dial): use that one.
    Busy = 1,
    /// The server has as many connections as it allows.
    Limit = 2,
    /// The server disconnected this run of the client to prevent an
    /// overlapping partition, and has not yet seen it reconnect to the
    /// node that lost it.
    Excluded = 3,
}

impl Refusal {
    fn text(self) -> &'static str {
        match self {
            Refusal::Busy => "a connection between these nodes exists or is being made",
            Refusal::Limit => "the node has reached its connection limit",
            Refusal::Excluded => "this node disconnected you to prevent an overlapping partition",
        }
    }
}

/// Protocol version spoken after the handshake (2: agent fields carry the
/// receiving node's incarnation).
pub(crate) const VERSION: u8 = 2;
const MAGIC: &[u8; 4] = b"ERLN";
/// Handshake frames are small; anything larger is hostile.
const MAX_HANDSHAKE_FRAME: usize = 1024;
const SERVER_LABEL: &[u8] = b"erlangen server";
const CLIENT_LABEL: &[u8] = b"erlangen client";

/// Who is on the other end, once proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    /// `"host/node"`.
    pub name: String,
    /// The peer's incarnation (changes on every start of the node).
    pub incarnation: u64,
}

/// Why a handshake failed. The connection is closed in every case.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    Io(io::Error),
    Frame(FrameError),
    /// A frame of the wrong kind or shape for this step.
    Unexpected(String),
    /// The version is not ours.
    Version(u8),
    /// The peer's proof does not match: it does not have our cookie.
    BadProof,
    /// We reached a node other than the one we asked for.
    WrongPeer {
        expected: String,
        got: String,
    },
    /// The deadline passed.
    Timeout,
    /// The server proved the cookie and then refused us.
    Refused(Refusal, String),
    /// We (the server) answered a client that proved the cookie with
    /// REFUSE.
    RefusedByUs(Refusal),
    /// The peer's name is not a valid `host/node` (or is our own).
    BadName(String),
}

/// An incarnation from the wire: 0 names no run (references use it for
/// "whatever run is current"), so a peer claiming it is malformed.
fn run_of(incarnation: u64) -> Result<u64, HandshakeError> {
    if incarnation == 0 {
        return Err(HandshakeError::Unexpected(
            "incarnation 0 (a node's incarnation is never 0)".into(),
        ));
    }
    Ok(incarnation)
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "handshake i/o error: {e}"),
            HandshakeError::Frame(e) => write!(f, "handshake: {e}"),
            HandshakeError::Unexpected(what) => write!(f, "handshake: unexpected {what}"),
            HandshakeError::Version(v) => write!(f, "handshake: unsupported protocol version {v}"),
            HandshakeError::BadProof => f.write_str(
                "authentication failed: the peer does not share our cookie (check --cookie-file / ERLANGEN_COOKIE_FILE on both nodes)",
            ),
            HandshakeError::WrongPeer { expected, got } => {
                write!(f, "handshake: expected node {expected}, reached {got}")
            }
            HandshakeError::Timeout => f.write_str("handshake timed out"),
            HandshakeError::Refused(_, reason) => write!(f, "the peer refused: {reason}"),
            HandshakeError::RefusedByUs(refusal) => {
                write!(f, "{} (answered REFUSE)", refusal.text())
            }
            HandshakeError::BadName(name) => {
                write!(f, "handshake: {name:?} is not a valid host/node name")
            }
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> HandshakeError {
        HandshakeError::Io(e)
    }
}

impl From<FrameError> for HandshakeError {
    fn from(e: FrameError) -> HandshakeError {
        if e.is_timeout() {
            HandshakeError::Timeout
        } else {
            HandshakeError::Frame(e)
        }
    }
}

/// What one side knows going in.
pub(crate) struct Identity<'a> {
    pub name: &'a str,
    pub incarnation: u64,
    pub cookie: &'a [u8],
}

fn transcript(
    client: &PeerInfo,
    nonce_c: &[u8; 32],
    server: &PeerInfo,
    nonce_s: &[u8; 32],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(160);
    put_str(&mut t, &client.name);
    t.extend_from_slice(&client.incarnation.to_be_bytes());
    t.extend_from_slice(nonce_c);
    put_str(&mut t, &server.name);
    t.extend_from_slice(&server.incarnation.to_be_bytes());
    t.extend_from_slice(nonce_s);
    t
}

fn proof(cookie: &[u8], label: &[u8], transcript: &[u8]) -> [u8; 32] {
    let mut mac = crypto::HmacSha256::new(cookie);
    mac.update(label);
    mac.update(transcript);
    mac.finalize()
}

fn nonce() -> Result<[u8; 32], HandshakeError> {
    let mut n = [0u8; 32];
    crypto::random_bytes(&mut n)?;
    Ok(n)
}

/// Reads one frame before the handshake's deadline: the socket timeout is
/// set to what is left before every read, not once per frame.
fn read_step(
    stream: &TcpStream,
    deadline: Instant,
    buf: &mut Vec<u8>,
) -> Result<u8, HandshakeError> {
    let mut r = frame::Deadline::new(stream, deadline);
    Ok(frame::read_frame(&mut r, MAX_HANDSHAKE_FRAME, buf)?)
}

/// Writes one frame; the write timeout is what is left of the deadline.
fn write_step(
    stream: &mut TcpStream,
    deadline: Instant,
    kind: u8,
    payload: &[u8],
) -> Result<(), HandshakeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HandshakeError::Timeout);
    }
    stream.set_write_timeout(Some(left))?;
    frame::write_frame(stream, kind, payload)?;
    Ok(())
}

/// `true` if `full` is a valid `host/node` name: both parts 1-255 bytes of
/// printable ASCII without `/` (a NUL or space never reaches a thread name
/// or a log line).
pub(crate) fn valid_full_name(full: &str) -> bool {
    let Some((host, node)) = full.split_once('/') else {
        return false;
    };
    super::valid_host_name(host) && crate::port_mapper::valid_node_name(node).is_ok()
}

fn nonce_field(f: &mut Fields<'_>, field: &'static str) -> Result<[u8; 32], HandshakeError> {
    let bytes = f
        .take(32, field)
        .map_err(|e| HandshakeError::Unexpected(e.to_string()))?;
    let mut n = [0u8; 32];
    n.copy_from_slice(bytes);
    Ok(n)
}

fn shape<T>(r: Result<T, FieldError>) -> Result<T, HandshakeError> {
    r.map_err(|e| HandshakeError::Unexpected(e.to_string()))
}

/// Runs the client side on a fresh connection to `expected` (`"host/node"`),
/// all of it before `deadline`.
pub(crate) fn client(
    stream: &mut TcpStream,
    me: &Identity<'_>,
    expected: &str,
    deadline: Instant,
) -> Result<PeerInfo, HandshakeError> {
    let nonce_c = nonce()?;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_str(&mut out, me.name);
    out.extend_from_slice(&me.incarnation.to_be_bytes());
    out.extend_from_slice(&nonce_c);
    write_step(stream, deadline, kind::HELLO, &out)?;

    let mut buf = Vec::new();
    let k = read_step(stream, deadline, &mut buf)?;
    if k != kind::CHALLENGE {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of CHALLENGE"
        )));
    }
    let mut f = Fields::new(&buf);
    let version = shape(f.u8("version"))?;
    if version != VERSION {
        return Err(HandshakeError::Version(version));
    }
    let server = PeerInfo {
        name: shape(f.str("name"))?.to_owned(),
        incarnation: run_of(shape(f.u64("incarnation"))?)?,
    };
    let nonce_s = nonce_field(&mut f, "nonce")?;
    let proof_s = nonce_field(&mut f, "proof")?;
    shape(f.end())?;
    if server.name != expected {
        return Err(HandshakeError::WrongPeer {
            expected: expected.to_owned(),
            got: server.name,
        });
    }
    let client = PeerInfo {
        name: me.name.to_owned(),
        incarnation: me.incarnation,
    };
    let t = transcript(&client, &nonce_c, &server, &nonce_s);
    if !crypto::constant_time_eq(&proof(me.cookie, SERVER_LABEL, &t), &proof_s) {
        return Err(HandshakeError::BadProof);
    }
    write_step(
        stream,
        deadline,
        kind::PROOF,
        &proof(me.cookie, CLIENT_LABEL, &t),
    )?;
    let k = read_step(stream, deadline, &mut buf)?;
    if k == kind::REFUSE {
        let mut f = Fields::new(&buf);
        let code = shape(f.u8("code"))?;
        let reason = shape(f.str("reason"))?.to_owned();
        shape(f.end())?;
        let refusal = match code {
            1 => Refusal::Busy,
            2 => Refusal::Limit,
            3 => Refusal::Excluded,
            other => return Err(HandshakeError::Unexpected(format!("refusal code {other}"))),
        };
        return Err(HandshakeError::Refused(refusal, reason));
    }
    if k != kind::ACCEPT || !buf.is_empty() {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of ACCEPT"
        )));
    }
    stream.set_read_timeout(None)?;
    Ok(server)
}

/// Runs the server side on an accepted connection, all of it before
/// `deadline`. Once the client has proved the cookie, `admit` decides
/// between ACCEPT (`Ok`) and REFUSE; it runs before the answer is written,
/// so the caller can claim the peer's slot first.
pub(crate) fn server(
    stream: &mut TcpStream,
    me: &Identity<'_>,
    deadline: Instant,
    admit: impl FnOnce(&PeerInfo) -> Result<(), Refusal>,
) -> Result<PeerInfo, HandshakeError> {
    let mut buf = Vec::new();
    let k = read_step(stream, deadline, &mut buf)?;
    if k != kind::HELLO {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of HELLO"
        )));
    }
    let mut f = Fields::new(&buf);
    if shape(f.take(4, "magic"))? != MAGIC {
        return Err(HandshakeError::Unexpected("magic bytes".into()));
    }
    let version = shape(f.u8("version"))?;
    if version != VERSION {
        return Err(HandshakeError::Version(version));
    }
    let client = PeerInfo {
        name: shape(f.str("name"))?.to_owned(),
        incarnation: run_of(shape(f.u64("incarnation"))?)?,
    };
    let nonce_c = nonce_field(&mut f, "nonce")?;
    shape(f.end())?;
    if !valid_full_name(&client.name) || client.name == me.name {
        return Err(HandshakeError::BadName(client.name));
    }
    let server_info = PeerInfo {
        name: me.name.to_owned(),
        incarnation: me.incarnation,
    };
    let nonce_s = nonce()?;
    let t = transcript(&client, &nonce_c, &server_info, &nonce_s);
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    put_str(&mut out, me.name);
    out.extend_from_slice(&me.incarnation.to_be_bytes());
    out.extend_from_slice(&nonce_s);
    out.extend_from_slice(&proof(me.cookie, SERVER_LABEL, &t));
    write_step(stream, deadline, kind::CHALLENGE, &out)?;

    let k = read_step(stream, deadline, &mut buf)?;
    if k != kind::PROOF || buf.len() != 32 {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of PROOF"
        )));
    }
    if !crypto::constant_time_eq(&proof(me.cookie, CLIENT_LABEL, &t), &buf) {
        return Err(HandshakeError::BadProof);
    }
    if let Err(refusal) = admit(&client) {
        let mut out = vec![refusal as u8];
        put_str(&mut out, refusal.text());
        write_step(stream, deadline, kind::REFUSE, &out)?;
        stream.flush()?;
        return Err(HandshakeError::RefusedByUs(refusal));
    }
    write_step(stream, deadline, kind::ACCEPT, &[])?;
    stream.flush()?;
    stream.set_read_timeout(None)?;
    Ok(client)
}
