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
//!      <-  ACCEPT
//! ```
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
use std::time::{Duration, Instant};

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
}

/// Protocol version spoken after the handshake.
pub(crate) const VERSION: u8 = 1;
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

/// Reads one frame, with the socket's read timeout set to what is left of
/// the deadline (never zero: that would be `InvalidInput`).
fn read_step(
    stream: &mut TcpStream,
    deadline: Instant,
    buf: &mut Vec<u8>,
) -> Result<u8, HandshakeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HandshakeError::Timeout);
    }
    stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    Ok(frame::read_frame(stream, MAX_HANDSHAKE_FRAME, buf)?)
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

/// Runs the client side on a fresh connection to `expected` (`"host/node"`).
pub(crate) fn client(
    stream: &mut TcpStream,
    me: &Identity<'_>,
    expected: &str,
    timeout: Duration,
) -> Result<PeerInfo, HandshakeError> {
    let deadline = Instant::now() + timeout;
    stream.set_write_timeout(Some(timeout))?;
    let nonce_c = nonce()?;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_str(&mut out, me.name);
    out.extend_from_slice(&me.incarnation.to_be_bytes());
    out.extend_from_slice(&nonce_c);
    frame::write_frame(stream, kind::HELLO, &out)?;

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
        incarnation: shape(f.u64("incarnation"))?,
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
    frame::write_frame(stream, kind::PROOF, &proof(me.cookie, CLIENT_LABEL, &t))?;
    let k = read_step(stream, deadline, &mut buf)?;
    if k != kind::ACCEPT || !buf.is_empty() {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of ACCEPT"
        )));
    }
    stream.set_read_timeout(None)?;
    Ok(server)
}

/// Runs the server side on an accepted connection.
pub(crate) fn server(
    stream: &mut TcpStream,
    me: &Identity<'_>,
    timeout: Duration,
) -> Result<PeerInfo, HandshakeError> {
    let deadline = Instant::now() + timeout;
    stream.set_write_timeout(Some(timeout))?;
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
        incarnation: shape(f.u64("incarnation"))?,
    };
    let nonce_c = nonce_field(&mut f, "nonce")?;
    shape(f.end())?;
    if crate::agent::target::split_id(&format!("{}/x", client.name)).is_none() {
        return Err(HandshakeError::Unexpected(format!(
            "peer name {:?}",
            client.name
        )));
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
    frame::write_frame(stream, kind::CHALLENGE, &out)?;

    let k = read_step(stream, deadline, &mut buf)?;
    if k != kind::PROOF || buf.len() != 32 {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of PROOF"
        )));
    }
    if !crypto::constant_time_eq(&proof(me.cookie, CLIENT_LABEL, &t), &buf) {
        return Err(HandshakeError::BadProof);
    }
    frame::write_frame(stream, kind::ACCEPT, &[])?;
    stream.flush()?;
    stream.set_read_timeout(None)?;
    Ok(client)
}
