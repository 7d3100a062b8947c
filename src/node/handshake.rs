//! Mutual authentication of two nodes by a shared cookie, before anything
//! else is parsed (deny by default), and the keys that seal the frames
//! after it (PROTOCOL.md section 4).
//!
//! Challenge/response after the shape of Erlang's distribution handshake
//! (`dist_util.erl`: exactly one accepted message shape per step, anything
//! else ends the connection), with HMAC-SHA256 instead of MD5, and an
//! ephemeral X25519 key on each side:
//!
//! ```text
//! client                                          server
//!   HELLO  max, min, name_c, inc_c, nonce_c, flags_c, E_c  ->
//!      <-  CHALLENGE version, name_s, inc_s, nonce_s, flags_s, E_s, proof_s
//!   PROOF  proof_c                                 ->
//!      <-  ACCEPT            (or REFUSE code, reason)
//! ```
//!
//! `T` is the transcript: the HELLO payload followed by the CHALLENGE
//! payload without its proof, byte for byte, so every field (versions,
//! sealing flags, ephemeral keys) is bound. `proof_s = HMAC(cookie,
//! "erlangen server" || T)`, `proof_c = HMAC(cookie, "erlangen client" ||
//! T)`. Fresh nonces and keys make a recorded handshake prove nothing on a
//! new connection (replay); the role labels keep a server's proof from
//! being reflected as a client's; the cookie never crosses the wire; proofs
//! are compared in constant time.
//!
//! Keys (when both sides seal): the key schedule of TLS 1.3 (RFC 8446
//! section 7.1) in its `psk_dhe_ke` mode, with the cookie as the
//! pre-shared key and the X25519 secret as the (EC)DHE input; the pattern
//! is Noise's `NNpsk0` (ephemeral-ephemeral DH, authenticated by a PSK):
//!
//! ```text
//! dh      = X25519(e_c, E_s) = X25519(e_s, E_c)     (all-zero refused)
//! early   = HKDF-Extract(salt = "", ikm = cookie)
//! derived = HKDF-Expand(early, "erlangen v3 derived", 32)
//! secret  = HKDF-Extract(salt = derived, ikm = dh)
//! th      = SHA-256(T)
//! key_c2s = HKDF-Expand(secret, "erlangen v3 c2s" || th, 32)
//! key_s2c = HKDF-Expand(secret, "erlangen v3 s2c" || th, 32)
//! ```
//!
//! A recorded session stays secret if the cookie leaks later (the
//! ephemeral keys are gone: forward secrecy), and a peer without the
//! cookie learns nothing (it can neither prove nor derive).
//!
//! Versions: HELLO carries the range the client speaks, CHALLENGE the one
//! the server chose; fields a later version adds go after the key, where
//! this one ignores them. Without a common version the server answers a
//! CHALLENGE holding only its highest version and closes (a version 2
//! node then reports "unsupported protocol version 3").
//!
//! The whole exchange has one deadline, enforced on every socket read
//! (`frame::Deadline`): a peer that trickles bytes cannot hold a handshake
//! slot past it. REFUSE is sent only to a peer that proved the cookie; an
//! unauthenticated one gets nothing but a closed connection.

use std::fmt;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::seal::Keys;
use crate::crypto;
use crate::frame::{self, FrameError};
use crate::frame::{put_str, FieldError, Fields};

/// Handshake frame kinds.
pub(crate) mod kind {
    /// Client's opening: `magic: 4 = "ERLN"`, `version: u8` (highest
    /// spoken), `min_version: u8`, `name: str`, `incarnation: u64`,
    /// `nonce: 32`, `flags: u8`, `key: 32`.
    pub const HELLO: u8 = 0x01;
    /// Server's answer: `version: u8` (chosen), `name: str`,
    /// `incarnation: u64`, `nonce: 32`, `flags: u8`, `key: 32`,
    /// `proof: 32`.
    pub const CHALLENGE: u8 = 0x02;
    /// Client's proof: `proof: 32`.
    pub const PROOF: u8 = 0x03;
    /// Server accepts; no payload.
    pub const ACCEPT: u8 = 0x04;
    /// Server refuses an authenticated client: `code: u8`, `reason: str`.
    pub const REFUSE: u8 = 0x05;
}

/// The `flags` bit saying the sender seals its frames.
const FLAG_SEAL: u8 = 0x01;

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
    /// One side seals its frames and the other does not (`:seal`).
    Seal = 4,
}

impl Refusal {
    fn text(self) -> &'static str {
        match self {
            Refusal::Busy => "a connection between these nodes exists or is being made",
            Refusal::Limit => "the node has reached its connection limit",
            Refusal::Excluded => "this node disconnected you to prevent an overlapping partition",
            Refusal::Seal => "sealing settings differ",
        }
    }
}

/// Protocol version spoken after the handshake (3: ephemeral keys in the
/// handshake, sealed frames; 2: agent fields carry the receiving node's
/// incarnation).
pub(crate) const VERSION: u8 = 3;
/// The oldest version this node speaks.
pub(crate) const MIN_VERSION: u8 = 3;
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
    /// No version both sides speak: the peer's range (lowest, highest).
    Version {
        min: u8,
        max: u8,
    },
    /// The server closed the connection without answering our HELLO.
    ClosedOnHello,
    /// The peer's proof does not match: it does not have our cookie.
    BadProof,
    /// The peer's ephemeral key is a low-order point.
    LowOrderKey,
    /// One side seals and the other does not: (ours, theirs).
    SealMismatch {
        ours: bool,
        theirs: bool,
    },
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

/// `t` or `nil`, as the REPL's `:seal` option is written.
fn seal_word(seal: bool) -> &'static str {
    if seal {
        "t"
    } else {
        "nil"
    }
}

fn versions(min: u8, max: u8) -> String {
    if min == max {
        format!("version {max}")
    } else {
        format!("versions {min} to {max}")
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "handshake i/o error: {e}"),
            HandshakeError::Frame(e) => write!(f, "handshake: {e}"),
            HandshakeError::Unexpected(what) => write!(f, "handshake: unexpected {what}"),
            HandshakeError::Version { min, max } => write!(
                f,
                "handshake: no common protocol version: the peer speaks {}, this node {}",
                versions(*min, *max),
                versions(MIN_VERSION, VERSION)
            ),
            HandshakeError::ClosedOnHello => write!(
                f,
                "handshake: the peer closed the connection without answering HELLO (it throttles this address, or speaks an older protocol version than this node's {})",
                versions(MIN_VERSION, VERSION)
            ),
            HandshakeError::BadProof => f.write_str(
                "authentication failed: the peer does not share our cookie (check --cookie-file / ERLANGEN_COOKIE_FILE on both nodes)",
            ),
            HandshakeError::LowOrderKey => {
                f.write_str("handshake: the peer's X25519 key is a low-order point")
            }
            HandshakeError::SealMismatch { ours, theirs } => write!(
                f,
                "sealing settings differ: this node has seal {}, the peer seal {}; both sides must agree (node option :seal, --no-seal)",
                seal_word(*ours),
                seal_word(*theirs)
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
    /// Whether this node seals its frames (`NodeOptions::seal`).
    pub seal: bool,
}

/// What a successful handshake yields: the peer, and the keys if both
/// sides seal.
pub(crate) type Session = (PeerInfo, Option<Keys>);

fn proof(cookie: &[u8], label: &[u8], transcript: &[u8]) -> [u8; 32] {
    let mut mac = crypto::HmacSha256::new(cookie);
    mac.update(label);
    mac.update(transcript);
    mac.finalize()
}

fn random32() -> Result<[u8; 32], HandshakeError> {
    let mut n = [0u8; 32];
    crypto::random_bytes(&mut n)?;
    Ok(n)
}

fn expand(prk: &[u8; 32], label: &[u8], th: &[u8; 32]) -> [u8; 32] {
    let mut info = Vec::with_capacity(label.len() + 32);
    info.extend_from_slice(label);
    info.extend_from_slice(th);
    let mut out = [0u8; 32];
    // 32 bytes never exceed HKDF's limit.
    let _ = crypto::hkdf_expand(prk, &info, &mut out);
    out
}

/// The key schedule of the module doc: `(key_c2s, key_s2c)`.
pub(crate) fn derive_keys(cookie: &[u8], dh: &[u8; 32], transcript: &[u8]) -> ([u8; 32], [u8; 32]) {
    let early = crypto::hkdf_extract(b"", cookie);
    let mut derived = [0u8; 32];
    let _ = crypto::hkdf_expand(&early, b"erlangen v3 derived", &mut derived);
    let secret = crypto::hkdf_extract(&derived, dh);
    let th = crypto::sha256(transcript);
    (
        expand(&secret, b"erlangen v3 c2s", &th),
        expand(&secret, b"erlangen v3 s2c", &th),
    )
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

fn field32(f: &mut Fields<'_>, field: &'static str) -> Result<[u8; 32], HandshakeError> {
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

/// The HELLO payload (without its frame header).
fn hello_payload(
    name: &str,
    incarnation: u64,
    nonce: &[u8; 32],
    seal: bool,
    public: &[u8; 32],
) -> Vec<u8> {
    let mut hello = Vec::with_capacity(128);
    hello.extend_from_slice(MAGIC);
    hello.push(VERSION);
    hello.push(MIN_VERSION);
    put_identity(&mut hello, name, incarnation, nonce, seal, public);
    hello
}

/// The CHALLENGE payload up to (without) its proof.
fn challenge_payload(
    name: &str,
    incarnation: u64,
    nonce: &[u8; 32],
    seal: bool,
    public: &[u8; 32],
) -> Vec<u8> {
    let mut challenge = Vec::with_capacity(160);
    challenge.push(VERSION);
    put_identity(&mut challenge, name, incarnation, nonce, seal, public);
    challenge
}

/// The fields HELLO and CHALLENGE share, in order: name, incarnation,
/// nonce, flags, ephemeral public key.
fn put_identity(
    buf: &mut Vec<u8>,
    name: &str,
    incarnation: u64,
    nonce: &[u8; 32],
    seal: bool,
    public: &[u8; 32],
) {
    put_str(buf, name);
    buf.extend_from_slice(&incarnation.to_be_bytes());
    buf.extend_from_slice(nonce);
    buf.push(if seal { FLAG_SEAL } else { 0 });
    buf.extend_from_slice(public);
}

/// Reads the fields [`put_identity`] writes: the peer, whether it seals,
/// and its ephemeral public key (its nonce counts only in the transcript).
fn read_identity(f: &mut Fields<'_>) -> Result<(PeerInfo, bool, [u8; 32]), HandshakeError> {
    let peer = PeerInfo {
        name: shape(f.str("name"))?.to_owned(),
        incarnation: run_of(shape(f.u64("incarnation"))?)?,
    };
    let _nonce = field32(f, "nonce")?;
    let seal = shape(f.u8("flags"))? & FLAG_SEAL != 0;
    let key = field32(f, "key")?;
    Ok((peer, seal, key))
}

/// An ephemeral X25519 key pair: (private, public).
fn ephemeral() -> Result<([u8; 32], [u8; 32]), HandshakeError> {
    let private = random32()?;
    Ok((private, crypto::x25519_public(&private)))
}

/// The keys of a session both sides seal; `client` says which side we are.
fn session_keys(
    cookie: &[u8],
    private: &[u8; 32],
    peer_public: &[u8; 32],
    transcript: &[u8],
    client: bool,
) -> Result<Keys, HandshakeError> {
    let dh =
        crypto::x25519_shared(private, peer_public).map_err(|_| HandshakeError::LowOrderKey)?;
    let (c2s, s2c) = derive_keys(cookie, &dh, transcript);
    Ok(if client {
        Keys {
            send: c2s,
            recv: s2c,
        }
    } else {
        Keys {
            send: s2c,
            recv: c2s,
        }
    })
}

/// Runs the client side on a fresh connection to `expected` (`"host/node"`),
/// all of it before `deadline`.
pub(crate) fn client(
    stream: &mut TcpStream,
    me: &Identity<'_>,
    expected: &str,
    deadline: Instant,
) -> Result<Session, HandshakeError> {
    let nonce_c = random32()?;
    let (private, public) = ephemeral()?;
    let hello = hello_payload(me.name, me.incarnation, &nonce_c, me.seal, &public);
    write_step(stream, deadline, kind::HELLO, &hello)?;

    let mut buf = Vec::new();
    let k = match read_step(stream, deadline, &mut buf) {
        Err(HandshakeError::Frame(FrameError::Closed)) => {
            return Err(HandshakeError::ClosedOnHello)
        }
        other => other?,
    };
    if k != kind::CHALLENGE {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of CHALLENGE"
        )));
    }
    let mut f = Fields::new(&buf);
    let version = shape(f.u8("version"))?;
    if version != VERSION || buf.len() == 1 {
        // A server must choose a version of our range; one that has none
        // in common answers its highest alone.
        return Err(HandshakeError::Version {
            min: version,
            max: version,
        });
    }
    let (server, theirs, key_s) = read_identity(&mut f)?;
    let proof_s = field32(&mut f, "proof")?;
    shape(f.end())?;
    if server.name != expected {
        return Err(HandshakeError::WrongPeer {
            expected: expected.to_owned(),
            got: server.name,
        });
    }
    let mut t = hello;
    t.extend_from_slice(&buf[..buf.len() - 32]);
    if !crypto::constant_time_eq(&proof(me.cookie, SERVER_LABEL, &t), &proof_s) {
        return Err(HandshakeError::BadProof);
    }
    let keys = if me.seal && theirs {
        Some(session_keys(me.cookie, &private, &key_s, &t, true)?)
    } else {
        None
    };
    // With differing sealing settings the PROOF is sent all the same: the
    // server then refuses with code 4 and logs both settings.
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
            4 => {
                return Err(HandshakeError::SealMismatch {
                    ours: me.seal,
                    theirs,
                })
            }
            other => return Err(HandshakeError::Unexpected(format!("refusal code {other}"))),
        };
        return Err(HandshakeError::Refused(refusal, reason));
    }
    if k != kind::ACCEPT || !buf.is_empty() {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of ACCEPT"
        )));
    }
    if me.seal != theirs {
        return Err(HandshakeError::SealMismatch {
            ours: me.seal,
            theirs,
        });
    }
    stream.set_read_timeout(None)?;
    Ok((server, keys))
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
) -> Result<Session, HandshakeError> {
    let mut hello = Vec::new();
    let k = read_step(stream, deadline, &mut hello)?;
    if k != kind::HELLO {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of HELLO"
        )));
    }
    let mut f = Fields::new(&hello);
    if shape(f.take(4, "magic"))? != MAGIC {
        return Err(HandshakeError::Unexpected("magic bytes".into()));
    }
    // No common version: the answer is a CHALLENGE holding only our
    // highest version, which a node of version 2 reports as "unsupported
    // protocol version 3" and a later one as the versions both speak.
    let refuse_version = |stream: &mut TcpStream, min: u8, max: u8| {
        let _ = write_step(stream, deadline, kind::CHALLENGE, &[VERSION]);
        let _ = stream.flush();
        HandshakeError::Version { min, max }
    };
    let max = shape(f.u8("version"))?;
    if max < MIN_VERSION {
        // A node of version 2 or earlier sent one version and nothing else
        // we could read: its HELLO continues with its name.
        return Err(refuse_version(stream, max, max));
    }
    let min = shape(f.u8("min_version"))?;
    if min > max {
        return Err(HandshakeError::Unexpected(format!(
            "version range {min} to {max}"
        )));
    }
    if min > VERSION {
        return Err(refuse_version(stream, min, max));
    }
    let (client, theirs, key_c) = read_identity(&mut f)?;
    // Bytes after the key are left for later versions (they are in the
    // transcript, so bound all the same): a version-3 server ignores them.
    if !valid_full_name(&client.name) || client.name == me.name {
        return Err(HandshakeError::BadName(client.name));
    }
    let nonce_s = random32()?;
    let (private, public) = ephemeral()?;
    let mut challenge = challenge_payload(me.name, me.incarnation, &nonce_s, me.seal, &public);
    let mut t = hello.clone();
    t.extend_from_slice(&challenge);
    challenge.extend_from_slice(&proof(me.cookie, SERVER_LABEL, &t));
    write_step(stream, deadline, kind::CHALLENGE, &challenge)?;

    let mut buf = Vec::new();
    let k = read_step(stream, deadline, &mut buf)?;
    if k != kind::PROOF || buf.len() != 32 {
        return Err(HandshakeError::Unexpected(format!(
            "frame kind 0x{k:02x} instead of PROOF"
        )));
    }
    if !crypto::constant_time_eq(&proof(me.cookie, CLIENT_LABEL, &t), &buf) {
        return Err(HandshakeError::BadProof);
    }
    let refuse = |stream: &mut TcpStream, refusal: Refusal, reason: &str| {
        let mut out = vec![refusal as u8];
        put_str(&mut out, reason);
        write_step(stream, deadline, kind::REFUSE, &out)?;
        stream.flush()?;
        Ok::<(), HandshakeError>(())
    };
    if me.seal != theirs {
        let e = HandshakeError::SealMismatch {
            ours: me.seal,
            theirs,
        };
        refuse(
            stream,
            Refusal::Seal,
            &format!(
                "sealing settings differ: the server has seal {}, you (the client) seal {}; both sides must agree",
                seal_word(me.seal),
                seal_word(theirs)
            ),
        )?;
        return Err(e);
    }
    let keys = if me.seal {
        Some(session_keys(me.cookie, &private, &key_c, &t, false)?)
    } else {
        None
    };
    if let Err(refusal) = admit(&client) {
        refuse(stream, refusal, refusal.text())?;
        return Err(HandshakeError::RefusedByUs(refusal));
    }
    write_step(stream, deadline, kind::ACCEPT, &[])?;
    stream.flush()?;
    stream.set_read_timeout(None)?;
    Ok((client, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::seal::{Opener, Sealer};

    /// One dump line: up to 16 bytes in hex, then what they are.
    fn line(out: &mut String, bytes: &[u8], what: &str) {
        for (i, chunk) in bytes.chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let note = if i == 0 { what } else { "" };
            out.push_str(format!("{:<48}{note}", hex.join(" ")).trim_end());
            out.push('\n');
        }
    }

    fn frame_header(out: &mut String, payload_len: usize, kind: u8, name: &str) {
        line(
            out,
            &((payload_len + 1) as u32).to_be_bytes(),
            &format!("length {}", payload_len + 1),
        );
        line(out, &[kind], &format!("kind {name}"));
    }

    fn str_field(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        put_str(&mut v, name);
        v
    }

    /// The annotated dump of PROTOCOL.md section 4 ("A handshake and two
    /// records, byte by byte"), computed with the code that runs.
    fn dump() -> String {
        let cookie = b"0123456789abcdef0123456789abcdef";
        let (nonce_c, e_c) = ([0x11u8; 32], [0x22u8; 32]);
        let (nonce_s, e_s) = ([0x33u8; 32], [0x44u8; 32]);
        let (pub_c, pub_s) = (crypto::x25519_public(&e_c), crypto::x25519_public(&e_s));
        let hello = hello_payload("h/c", 1, &nonce_c, true, &pub_c);
        let challenge = challenge_payload("h/s", 2, &nonce_s, true, &pub_s);
        let mut t = hello.clone();
        t.extend_from_slice(&challenge);
        let proof_s = proof(cookie, SERVER_LABEL, &t);
        let proof_c = proof(cookie, CLIENT_LABEL, &t);
        let dh = crypto::x25519_shared(&e_c, &pub_s).expect("not low order");
        assert_eq!(crypto::x25519_shared(&e_s, &pub_c).expect("same"), dh);
        let (c2s, s2c) = derive_keys(cookie, &dh, &t);

        let mut d = String::new();
        d.push_str("HELLO (client to server)\n");
        frame_header(&mut d, hello.len(), kind::HELLO, "HELLO");
        line(&mut d, MAGIC, "magic \"ERLN\"");
        line(
            &mut d,
            &[VERSION],
            "version 3 (the highest the client speaks)",
        );
        line(&mut d, &[MIN_VERSION], "min_version 3 (the lowest)");
        line(&mut d, &str_field("h/c"), "name \"h/c\"");
        line(&mut d, &1u64.to_be_bytes(), "incarnation 1");
        line(&mut d, &nonce_c, "nonce_c");
        line(&mut d, &[FLAG_SEAL], "flags: bit 0, seal");
        line(
            &mut d,
            &pub_c,
            "key_c = X25519(e_c, 9), e_c = 32 bytes 0x22",
        );
        d.push_str("\nCHALLENGE (server to client)\n");
        frame_header(&mut d, challenge.len() + 32, kind::CHALLENGE, "CHALLENGE");
        line(&mut d, &[VERSION], "version 3 (chosen)");
        line(&mut d, &str_field("h/s"), "name \"h/s\"");
        line(&mut d, &2u64.to_be_bytes(), "incarnation 2");
        line(&mut d, &nonce_s, "nonce_s");
        line(&mut d, &[FLAG_SEAL], "flags: seal");
        line(
            &mut d,
            &pub_s,
            "key_s = X25519(e_s, 9), e_s = 32 bytes 0x44",
        );
        line(
            &mut d,
            &proof_s,
            "proof_s = HMAC(cookie, \"erlangen server\" || T)",
        );
        d.push_str("\nPROOF (client to server)\n");
        frame_header(&mut d, 32, kind::PROOF, "PROOF");
        line(
            &mut d,
            &proof_c,
            "proof_c = HMAC(cookie, \"erlangen client\" || T)",
        );
        d.push_str("\nACCEPT (server to client)\n");
        frame_header(&mut d, 0, kind::ACCEPT, "ACCEPT");
        d.push_str("\nKeys\n");
        line(&mut d, &dh, "dh = X25519(e_c, key_s) = X25519(e_s, key_c)");
        line(&mut d, &crypto::sha256(&t), "th = SHA-256(T)");
        line(&mut d, &c2s, "key_c2s");
        line(&mut d, &s2c, "key_s2c");

        let mut sealer = Sealer::new(c2s);
        let mut opener = Opener::new(c2s);
        for n in 0..2u64 {
            let mut clear = Vec::new();
            frame::encode_frame(&mut clear, 0x17, &[]).expect("frame");
            let mut rec = Vec::new();
            sealer.seal_batch(&clear, &mut rec);
            let mut body = Vec::new();
            opener.read(&mut &rec[..], 64, &mut body).expect("opens");
            assert_eq!(body, clear);
            d.push_str(&format!(
                "\nRecord {n} client to server: one HEARTBEAT frame (00 00 00 01 17)\n"
            ));
            line(&mut d, &rec[..4], "length 21 = 5 + 16, the AAD");
            let nonce: Vec<String> = {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_le_bytes());
                nonce.iter().map(|b| format!("{b:02x}")).collect()
            };
            line(
                &mut d,
                &rec[4..9],
                &format!("the frame encrypted, nonce {}", nonce.join("")),
            );
            line(&mut d, &rec[9..], "tag");
        }
        d
    }

    #[test]
    fn protocol_md_dump_is_exact() {
        let doc = include_str!("../../PROTOCOL.md");
        let want = dump();
        assert!(
            doc.contains(&want),
            "PROTOCOL.md's annotated handshake dump is out of date; it should read:\n{want}"
        );
    }

    #[test]
    fn both_sides_derive_the_same_keys_and_a_different_cookie_does_not() {
        let t = b"transcript";
        let dh = [5u8; 32];
        let (a, b) = derive_keys(b"cookie one, long enough.........", &dh, t);
        assert_ne!(a, b);
        let (c, _) = derive_keys(b"cookie two, long enough.........", &dh, t);
        assert_ne!(a, c);
        let (e, _) = derive_keys(b"cookie one, long enough.........", &dh, b"transcripT");
        assert_ne!(a, e);
    }
}
