//! A hostile peer: speaks the node and port-mapper protocols of
//! PROTOCOL.md badly on purpose, one case at a time, and reports how each
//! ended (`closed`, `error "…"` from the port mapper, or `open` when the
//! server still held the connection at the case's deadline).
//!
//! ```text
//! erlangen-hostile --port N [--host IP] [--cookie-file F]
//!     [--registry-port R] [--directory-port D] [--canary ID] [--pid P]
//!     [--live-name host/node] [--node-log F] [--pm-log F] [case…|all|list]
//! ```
//!
//! `--port` is the node's listening port; `--host` (default 127.0.0.1)
//! must be a loopback or private address. `--canary ID` makes this program
//! a node itself (it needs the registry port and the cookie) that spawns
//! `(echo)` on node `ID` (`host/node`; the target must define `echo`, an
//! agent that answers `(x from)` with `x`), then sends `(seq self)` to it
//! every 10 ms for the whole run and expects `seq` back; its figures are
//! printed at the end.
//! `--pid` samples the target node's resident memory, threads and
//! descriptors before and after each case.
//!
//! The node throttles failed handshakes per source address (PROTOCOL.md,
//! "Node handshake"), and every case comes from this one address:
//! `node-failed-flood` checks that the throttle closes most of its 500
//! wrong cookies unread and lets an honest handshake in again, and the
//! cases that need an honest handshake retry it (at most 10 s) while the
//! node closes this address's connections unread.
//!
//! `--node-log F` and `--pm-log F` name the target's and its port mapper's
//! logs: each case then says how many lines each gained. With a canary,
//! each case also says how the target's counters moved (`refused-
//! handshakes`, `connection-errors`, `throttled` of its `node-info`, asked
//! through the canary node with the kernel's `ops-query`).
//!
//! One line per case: `case NAME: OUTCOME after MS ms ok|FAIL`, then the
//! canary's figures, the target's sample, log lines and counters.
//! Exit codes: 0 every case ended as expected within its deadline and the
//! canary lost nothing; 1 a case failed or the canary lost or reordered
//! messages; 2 bad arguments.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use erlangen::agent;
use erlangen::config::Config;
use erlangen::crypto::{
    aead, hkdf_expand, hkdf_extract, random_bytes, sha256, x25519_public, x25519_shared, HmacSha256,
};
use erlangen::frame::{self, put_str};
use erlangen::node::{self, NodeOptions};
use erlangen::Term;

const USAGE: &str = "usage: erlangen-hostile --port N [--host IP] [--cookie-file F] \
[--registry-port R] [--directory-port D] [--canary ID] [--pid P] [--live-name host/node] \
[--node-log F] [--pm-log F] [case…|all|list]";

const HELLO: u8 = 0x01;
const CHALLENGE: u8 = 0x02;
const PROOF: u8 = 0x03;
const ACCEPT: u8 = 0x04;
const SEND: u8 = 0x10;
/// The protocol version of PROTOCOL.md (section 4).
const VERSION: u8 = 3;
const PM_HELLO: u8 = 0x20;
const PM_REGISTER: u8 = 0x22;
const PM_QUERY: u8 = 0x24;
const PM_ERROR: u8 = 0x2F;

/// Every case: name and what it sends (each has a 12 s deadline, see
/// `run_case`, longer for the floods).
const CASES: &[(&str, &str)] = &[
    ("node-garbage", "random bytes instead of HELLO"),
    ("node-zero-length", "a frame length of 0"),
    ("node-oversized", "a handshake frame length of 4 GiB"),
    ("node-half-frame", "half a HELLO, then silence"),
    ("node-silence", "connect and send nothing"),
    ("node-trickle", "a HELLO one byte every 250 ms"),
    ("node-wrong-version", "HELLO with only version 99"),
    ("node-unknown-kind", "a frame of kind 0x7F first"),
    ("node-bad-name", "HELLO with a name without host part"),
    ("node-own-name", "HELLO claiming the server's own name"),
    ("node-live-name", "HELLO claiming --live-name, wrong proof"),
    (
        "node-wrong-cookie",
        "HELLO, then a PROOF made with another cookie",
    ),
    ("node-no-handshake", "a SEND frame instead of HELLO"),
    (
        "node-replay",
        "an honest handshake's HELLO and PROOF replayed",
    ),
    (
        "node-failed-flood",
        "500 wrong cookies in a row: throttled, then let in again",
    ),
    ("node-idle-1000", "1,000 idle connections at once"),
    (
        "codec-truncated",
        "after ACCEPT: a SEND whose term ends early",
    ),
    (
        "codec-oversized-length",
        "after ACCEPT: a STRING of declared 4 GiB",
    ),
    (
        "codec-lying-counts",
        "after ACCEPT: nested LISTs declaring 1M elements each",
    ),
    (
        "codec-bad-utf8",
        "after ACCEPT: a SYMBOL with invalid UTF-8",
    ),
    ("codec-unknown-tag", "after ACCEPT: tag 0x7E"),
    ("codec-too-deep", "after ACCEPT: 200 nested VECTORs"),
    ("codec-trailing", "after ACCEPT: bytes after the term"),
    (
        "codec-frame-oversized",
        "after ACCEPT: a frame length of 4 GiB",
    ),
    (
        "codec-symbols-1e6",
        "after ACCEPT: 10^6 distinct symbols in 100 frames",
    ),
    ("pm-garbage", "port mapper directory: random bytes"),
    ("pm-wrong-magic", "HELLO with magic XXXX"),
    ("pm-wrong-version", "HELLO with version 9"),
    ("pm-oversized", "a frame length of 2 MiB"),
    ("pm-zero-length", "a frame length of 0"),
    ("pm-half-frame", "half a HELLO, then silence"),
    ("pm-silence", "connect and send nothing"),
    ("pm-trickle", "HELLO and QUERY one byte every 250 ms"),
    ("pm-wrong-kind", "REGISTER sent to the directory"),
    ("pm-bad-utf8", "QUERY with a name that is not UTF-8"),
    (
        "pm-squat",
        "REGISTER --live-name's node part on the registry",
    ),
    ("pm-idle-1000", "1,000 idle directory connections at once"),
];

struct Ctx {
    host: IpAddr,
    port: u16,
    registry: u16,
    directory: u16,
    cookie: Option<Vec<u8>>,
    pid: Option<u32>,
    live_name: Option<String>,
    serial: Mutex<u64>,
}

#[derive(Debug)]
enum End {
    Closed,
    Error(String),
    Open,
    Other(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed => write!(f, "closed"),
            End::Error(m) => write!(f, "error {m:?}"),
            End::Open => write!(f, "open"),
            End::Other(m) => write!(f, "{m}"),
        }
    }
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback() || v.is_private(),
        IpAddr::V6(v) => v.is_loopback(),
    }
}

fn connect(ctx: &Ctx, port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&SocketAddr::new(ctx.host, port), Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    Ok(s)
}

/// Reads until the server closes or `deadline`; an ERROR frame (port
/// mapper) in what was read makes the outcome `Error`.
fn await_end(s: &mut TcpStream, deadline: Instant) -> End {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return End::Open;
        }
        let _ = s.set_read_timeout(Some(left.min(Duration::from_millis(500))));
        match s.read(&mut buf) {
            Ok(0) => return classify(&got),
            Ok(n) => {
                if got.len() < 65_536 {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => return classify(&got),
        }
    }
}

fn classify(got: &[u8]) -> End {
    let mut r = got;
    let mut payload = Vec::new();
    while let Ok(kind) = frame::read_frame(&mut r, 1 << 20, &mut payload) {
        if kind == PM_ERROR {
            let mut f = frame::Fields::new(&payload);
            return End::Error(f.str("message").unwrap_or("?").to_owned());
        }
    }
    End::Closed
}

fn frame_bytes(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = frame::encode_frame(&mut out, kind, payload);
    out
}

fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// The HELLO payload of a node speaking only `version`, sealing, whose
/// ephemeral X25519 private key is `nonce` (good enough for a test peer).
fn hello_payload(name: &str, version: u8, incarnation: u64, nonce: &[u8; 32]) -> Vec<u8> {
    let mut p = b"ERLN".to_vec();
    p.extend_from_slice(&[version, version]);
    put_str(&mut p, name);
    p.extend_from_slice(&incarnation.to_be_bytes());
    p.extend_from_slice(nonce);
    p.push(1);
    p.extend_from_slice(&x25519_public(nonce));
    p
}

fn node_hello(name: &str, version: u8, incarnation: u64, nonce: &[u8; 32]) -> Vec<u8> {
    frame_bytes(HELLO, &hello_payload(name, version, incarnation, nonce))
}

fn pm_hello(magic: &[u8], version: u8) -> Vec<u8> {
    let mut p = magic.to_vec();
    p.push(version);
    frame_bytes(PM_HELLO, &p)
}

fn random_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    let _ = random_bytes(&mut n);
    n
}

fn own_name(ctx: &Ctx) -> String {
    let mut n = ctx.serial.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    format!("{}/hostile-{}-{}", ctx.host, std::process::id(), *n)
}

struct Challenge {
    name: String,
    /// The server's ephemeral X25519 key.
    key: [u8; 32],
    /// The payload as received.
    raw: Vec<u8>,
}

/// Why no CHALLENGE came.
enum NoChallenge {
    /// The node closed the connection without writing a byte: its
    /// throttle of failed handshakes (or all its handshake slots busy).
    Unread,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for NoChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoChallenge::Unread => f.write_str("challenge: closed unread"),
            NoChallenge::Other(m) => f.write_str(m),
        }
    }
}

fn read_challenge(s: &mut TcpStream) -> Result<Challenge, NoChallenge> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(6)));
    let mut buf = Vec::new();
    let kind = frame::read_frame(s, 4096, &mut buf).map_err(|e| match e {
        frame::FrameError::Closed => NoChallenge::Unread,
        frame::FrameError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            NoChallenge::Unread
        }
        e => NoChallenge::Other(format!("challenge: {e}")),
    })?;
    if kind != CHALLENGE {
        return Err(NoChallenge::Other(format!(
            "kind {kind:#x} instead of CHALLENGE"
        )));
    }
    let mut f = frame::Fields::new(&buf);
    let parse = |f: &mut frame::Fields| -> Result<Challenge, frame::FieldError> {
        f.u8("version")?;
        let name = f.str("name")?.to_owned();
        f.u64("incarnation")?;
        f.take(32, "nonce")?;
        f.u8("flags")?;
        let mut key = [0u8; 32];
        key.copy_from_slice(f.take(32, "key")?);
        Ok(Challenge {
            name,
            key,
            raw: buf.clone(),
        })
    };
    let ch = parse(&mut f).map_err(|e| NoChallenge::Other(format!("challenge: {e}")))?;
    *ctx_server_name().lock().unwrap_or_else(|e| e.into_inner()) = Some(ch.name.clone());
    Ok(ch)
}

fn ctx_server_name() -> &'static Mutex<Option<String>> {
    static NAME: Mutex<Option<String>> = Mutex::new(None);
    &NAME
}

/// The transcript: our HELLO payload, then the CHALLENGE's without its
/// proof.
fn transcript(name: &str, inc: u64, nonce: &[u8; 32], ch: &Challenge) -> Vec<u8> {
    let mut t = hello_payload(name, VERSION, inc, nonce);
    t.extend_from_slice(&ch.raw[..ch.raw.len().saturating_sub(32)]);
    t
}

fn client_proof(cookie: &[u8], name: &str, inc: u64, nonce: &[u8; 32], ch: &Challenge) -> [u8; 32] {
    let t = transcript(name, inc, nonce, ch);
    let mut m = HmacSha256::new(cookie);
    m.update(b"erlangen client");
    m.update(&t);
    m.finalize()
}

/// The sending side of a sealed connection (PROTOCOL.md section 5): the
/// client-to-server key and the next record number.
struct Sealer {
    key: [u8; 32],
    next: u64,
}

impl Sealer {
    /// The key schedule of PROTOCOL.md section 4, client side.
    fn new(cookie: &[u8], private: &[u8; 32], ch: &Challenge, t: &[u8]) -> Result<Sealer, String> {
        let dh = x25519_shared(private, &ch.key).map_err(|e| e.to_string())?;
        let early = hkdf_extract(b"", cookie);
        let mut derived = [0u8; 32];
        let _ = hkdf_expand(&early, b"erlangen v3 derived", &mut derived);
        let secret = hkdf_extract(&derived, &dh);
        let mut info = b"erlangen v3 c2s".to_vec();
        info.extend_from_slice(&sha256(t));
        let mut key = [0u8; 32];
        let _ = hkdf_expand(&secret, &info, &mut key);
        Ok(Sealer { key, next: 0 })
    }

    /// Seals every whole frame in `bytes` as a record; what is not a whole
    /// frame (a lying length) goes as it is.
    fn seal(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                as usize;
            if len == 0 || at + 4 + len > bytes.len() {
                break;
            }
            // One whole frame (its length field included) per record.
            let length = ((4 + len + 16) as u32).to_be_bytes();
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&self.next.to_le_bytes());
            self.next += 1;
            out.extend_from_slice(&length);
            out.extend_from_slice(&aead::seal(
                &self.key,
                &nonce,
                &length,
                &bytes[at..at + 4 + len],
            ));
            at += 4 + len;
        }
        out.extend_from_slice(&bytes[at..]);
        out
    }
}

/// An honest handshake; returns the stream after ACCEPT and the bytes sent.
/// While the node closes this address's connections unread (its throttle
/// of failed handshakes, after an earlier case), it tries again, for at
/// most 10 s: an honest handshake costs the address nothing, so one gets
/// in as soon as a token is back.
fn authenticate(ctx: &Ctx) -> Result<(TcpStream, Vec<u8>, Sealer), String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match authenticate_once(ctx) {
            Err(NoChallenge::Unread) if Instant::now() < until => {
                thread::park_timeout(Duration::from_millis(20));
            }
            r => return r.map_err(|e| e.to_string()),
        }
    }
}

fn authenticate_once(ctx: &Ctx) -> Result<(TcpStream, Vec<u8>, Sealer), NoChallenge> {
    let cookie = ctx
        .cookie
        .as_ref()
        .ok_or_else(|| NoChallenge::Other("this case needs --cookie-file".into()))?;
    let mut s = connect(ctx, ctx.port).map_err(NoChallenge::Other)?;
    let name = own_name(ctx);
    let nonce = random_nonce();
    let inc = u64::from(std::process::id()) << 16 | 1;
    let mut sent = node_hello(&name, VERSION, inc, &nonce);
    // A node that closed unread may reset the write; the read tells.
    let _ = s.write_all(&sent);
    let ch = read_challenge(&mut s)?;
    let p = frame_bytes(PROOF, &client_proof(cookie, &name, inc, &nonce, &ch));
    s.write_all(&p)
        .map_err(|e| NoChallenge::Other(format!("proof: {e}")))?;
    sent.extend_from_slice(&p);
    let sealer = Sealer::new(cookie, &nonce, &ch, &transcript(&name, inc, &nonce, &ch))
        .map_err(NoChallenge::Other)?;
    let mut buf = Vec::new();
    match frame::read_frame(&mut s, 4096, &mut buf) {
        Ok(ACCEPT) => Ok((s, sent, sealer)),
        Ok(k) => Err(NoChallenge::Other(format!("kind {k:#x} instead of ACCEPT"))),
        Err(e) => Err(NoChallenge::Other(format!("accept: {e}"))),
    }
}

/// A SEND frame to agent `nobody` of the current run carrying `term`
/// (already encoded, version byte included).
fn send_frame(term: &[u8]) -> Vec<u8> {
    let mut p = 0u64.to_be_bytes().to_vec();
    put_str(&mut p, "nobody");
    p.extend_from_slice(term);
    raw_frame(SEND, &p)
}

fn write_then_end(ctx: &Ctx, port: u16, bytes: &[u8], deadline: Instant) -> End {
    match connect(ctx, port) {
        Ok(mut s) => {
            if s.write_all(bytes).is_err() {
                return End::Closed;
            }
            await_end(&mut s, deadline)
        }
        Err(e) => End::Other(e),
    }
}

fn after_accept(ctx: &Ctx, bytes: &[u8], deadline: Instant) -> End {
    match authenticate(ctx) {
        Ok((mut s, _, mut sealer)) => {
            if s.write_all(&sealer.seal(bytes)).is_err() {
                return End::Closed;
            }
            await_end(&mut s, deadline)
        }
        Err(e) => End::Other(e),
    }
}

fn trickle(ctx: &Ctx, port: u16, bytes: &[u8], deadline: Instant) -> End {
    let mut s = match connect(ctx, port) {
        Ok(s) => s,
        Err(e) => return End::Other(e),
    };
    for b in bytes.iter().cycle() {
        if Instant::now() >= deadline {
            return End::Open;
        }
        if s.write_all(&[*b]).is_err() {
            return End::Closed;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(250)));
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => return End::Closed,
            Ok(n) => {
                return match (classify(&buf[..n]), await_end(&mut s, deadline)) {
                    (_, End::Open) => End::Open,
                    (End::Error(m), _) => End::Error(m),
                    (_, end) => end,
                };
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return End::Closed,
        }
    }
    End::Open
}

/// Opens `n` connections, then waits until every one is closed or the
/// deadline; reports how many ended each way.
fn many_idle(ctx: &Ctx, port: u16, n: usize, deadline: Instant) -> End {
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..n {
        match connect(ctx, port) {
            Ok(s) => streams.push(s),
            Err(_) => refused += 1,
        }
    }
    let (mut closed, mut errors, mut open) = (0, 0, 0);
    for mut s in streams {
        match await_end(&mut s, deadline) {
            End::Closed => closed += 1,
            End::Error(_) => errors += 1,
            _ => open += 1,
        }
    }
    if open > 0 {
        End::Other(format!(
            "open: {open} of {n} still open ({closed} closed, {errors} error, {refused} refused)"
        ))
    } else {
        End::Other(format!(
            "closed: {closed} closed, {errors} error, {refused} not connected, of {n}"
        ))
    }
}

fn wrong_proof(ctx: &Ctx, name: &str, deadline: Instant) -> End {
    let mut s = match connect(ctx, ctx.port) {
        Ok(s) => s,
        Err(e) => return End::Other(e),
    };
    match hello_then_wrong_proof(&mut s, name) {
        Ok(()) => await_end(&mut s, deadline),
        Err(_) => End::Closed,
    }
}

/// HELLO as `name`, then, once the CHALLENGE is in, a PROOF made with the
/// wrong cookie (written or not: the server may have closed first).
fn hello_then_wrong_proof(s: &mut TcpStream, name: &str) -> Result<(), NoChallenge> {
    let nonce = random_nonce();
    let _ = s.write_all(&node_hello(name, VERSION, 7, &nonce));
    let ch = read_challenge(s)?;
    let proof = client_proof(
        b"not the cookie, not the cookie, not it",
        name,
        7,
        &nonce,
        &ch,
    );
    let _ = s.write_all(&frame_bytes(PROOF, &proof));
    Ok(())
}

/// 500 wrong cookies in a row from this address. The node must serve the
/// first ones (a CHALLENGE, then a close) and, once the address has used
/// up its failed handshakes, close the rest unread; then an honest
/// handshake from the same address must get in again once a token is back
/// (retried, at most 10 s). The canary's connection, from the same
/// address, is already established and must not notice.
fn failed_flood(ctx: &Ctx, deadline: Instant) -> End {
    let started = Instant::now();
    let (mut served, mut unread, mut other) = (0u32, 0u32, 0u32);
    let (mut served_time, mut unread_time) = (Duration::ZERO, Duration::ZERO);
    let mut first_unread = None;
    for i in 0..500 {
        let one = Instant::now();
        let name = own_name(ctx);
        let outcome = match connect(ctx, ctx.port) {
            Ok(mut s) => match hello_then_wrong_proof(&mut s, &name) {
                Ok(()) => Some(matches!(await_end(&mut s, deadline), End::Closed)),
                Err(NoChallenge::Unread) => None,
                Err(NoChallenge::Other(_)) => Some(false),
            },
            Err(_) => Some(false),
        };
        match outcome {
            Some(true) => {
                served += 1;
                served_time += one.elapsed();
            }
            None => {
                unread += 1;
                unread_time += one.elapsed();
                first_unread.get_or_insert(i + 1);
            }
            Some(false) => other += 1,
        }
    }
    let took = started.elapsed();
    let waiting = Instant::now();
    let again = authenticate(ctx);
    let waited = waiting.elapsed();
    let avg = |t: Duration, n: u32| {
        if n == 0 {
            0
        } else {
            t.as_micros() / u128::from(n)
        }
    };
    let ok = other == 0 && unread > 0 && again.is_ok();
    End::Other(format!(
        "{}: {served} served a CHALLENGE and closed ({} us each), {unread} closed unread \
         (throttled from attempt {}, {} us each), {other} otherwise, in {} ms; {}",
        if ok {
            "closed"
        } else {
            "not throttled as expected"
        },
        avg(served_time, served),
        first_unread.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        avg(unread_time, unread),
        took.as_millis(),
        match again {
            Ok(_) => format!(
                "an honest handshake from the same address got in {} ms later",
                waited.as_millis()
            ),
            Err(e) => format!("no honest handshake got in: {e}"),
        }
    ))
}

fn symbols(ctx: &Ctx, deadline: Instant) -> End {
    let (mut s, _, mut sealer) = match authenticate(ctx) {
        Ok(x) => x,
        Err(e) => return End::Other(e),
    };
    let before = sample(ctx.pid);
    for f in 0..100u32 {
        let mut term = vec![1u8, 0x0D];
        term.extend_from_slice(&10_000u32.to_be_bytes());
        for i in 0..10_000u32 {
            let name = format!("S{}", f * 10_000 + i);
            term.push(0x07);
            term.extend_from_slice(&(name.len() as u32).to_be_bytes());
            term.extend_from_slice(name.as_bytes());
        }
        if s.write_all(&sealer.seal(&send_frame(&term))).is_err() {
            return End::Other(format!("closed after {f} frames"));
        }
        if Instant::now() >= deadline {
            return End::Other(format!("deadline after {f} frames"));
        }
    }
    // The node drops them (no agent `nobody`): the connection stays open and
    // a heartbeat or other frame still comes.
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = [0u8; 1024];
    let alive = matches!(s.read(&mut buf), Ok(n) if n > 0);
    let after = sample(ctx.pid);
    End::Other(format!(
        "{}: 1000000 symbols sent; node before {before}, after {after}",
        if alive { "open, dropped" } else { "closed" }
    ))
}

/// Lines in a log file (0 without one).
fn log_lines(path: Option<&str>) -> usize {
    path.and_then(|p| std::fs::read(p).ok())
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Lines in a log file once it stopped growing (the server logs a case
/// as it closes the connection, which the case may see first): no new
/// line for 100 ms, at most 1 s.
fn settled_lines(path: Option<&str>) -> usize {
    let until = Instant::now() + Duration::from_secs(1);
    let mut last = log_lines(path);
    let mut stable_since = Instant::now();
    while path.is_some() && Instant::now() < until {
        thread::park_timeout(Duration::from_millis(20));
        let now = log_lines(path);
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(100) {
            break;
        }
    }
    last
}

/// `[refused handshakes, connection errors, throttled, slots full]` of node `target`
/// (`host/node`), from its `node-info`, asked with the kernel's
/// `ops-query` (a remote spawn; the answer comes back as a message).
fn node_counters(target: &str) -> Option<[i64; 4]> {
    static TOKEN: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let (host, name) = target.split_once('/')?;
    let token = Term::Int(TOKEN.fetch_add(1, Ordering::Relaxed));
    let call = Term::list(vec![
        Term::symbol("ops-query"),
        Term::Str("node-info".into()),
        agent::Agent::current().to_term(),
        token.clone(),
    ]);
    node::spawn_on(Some(host), name, &call, &agent::SpawnOptions::new()).ok()?;
    let reply = agent::receive_matching(
        |m| matches!(m.as_list(), Some([k, t, _]) if k.is_keyword("ops-reply") && *t == token),
        Some(Duration::from_secs(5)),
    )
    .ok()?;
    let info = match reply.as_list()? {
        [_, _, result] => result.as_list()?.get(1)?.clone(),
        _ => return None,
    };
    let items = info.as_list()?;
    let get = |key: &str| -> Option<i64> {
        items
            .chunks(2)
            .find(|c| c[0].is_keyword(key))
            .and_then(|c| c.get(1))
            .and_then(Term::as_int)
    };
    Some([
        get("refused-handshakes")?,
        get("connection-errors")?,
        get("throttled")?,
        get("slots-full")?,
    ])
}

/// `rss_kib threads fds` of a process, or `-` without `--pid`.
fn sample(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "-".into();
    };
    match erlangen::management::process_sample(Some(pid)) {
        Some(p) => format!(
            "rss={}KiB threads={} fds={}",
            p.resident_kib, p.threads, p.descriptors
        ),
        None => "rss=? threads=? fds=?".into(),
    }
}

/// Runs one case; returns (outcome, passed).
fn run_case(ctx: &Ctx, name: &str) -> (End, bool) {
    let deadline = Instant::now() + Duration::from_secs(12);
    let p = ctx.port;
    let d = ctx.directory;
    let end = match name {
        "node-garbage" => write_then_end(ctx, p, b"GET / HTTP/1.0\r\n\r\n\xff\xfe\x00", deadline),
        "node-zero-length" => write_then_end(ctx, p, &[0, 0, 0, 0, 1], deadline),
        "node-oversized" => write_then_end(ctx, p, &[0xff, 0xff, 0xff, 0xff], deadline),
        "node-half-frame" => {
            let h = node_hello("10.0.0.1/x", VERSION, 1, &random_nonce());
            write_then_end(ctx, p, &h[..h.len() / 2], deadline)
        }
        "node-silence" => write_then_end(ctx, p, &[], deadline),
        "node-trickle" => trickle(
            ctx,
            p,
            &node_hello(&own_name(ctx), VERSION, 1, &random_nonce()),
            deadline,
        ),
        "node-wrong-version" => write_then_end(
            ctx,
            p,
            &node_hello(&own_name(ctx), 99, 1, &random_nonce()),
            deadline,
        ),
        "node-unknown-kind" => write_then_end(ctx, p, &raw_frame(0x7F, b"hi"), deadline),
        "node-bad-name" => write_then_end(
            ctx,
            p,
            &node_hello("nohost", VERSION, 1, &random_nonce()),
            deadline,
        ),
        "node-own-name" => {
            let known = ctx_server_name()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let server = match known {
                Some(n) => Some(n),
                None => {
                    // Learn it from one CHALLENGE.
                    let _ = wrong_proof(ctx, &own_name(ctx), deadline);
                    ctx_server_name()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                }
            };
            match server {
                Some(n) => write_then_end(
                    ctx,
                    p,
                    &node_hello(&n, VERSION, 1, &random_nonce()),
                    deadline,
                ),
                None => End::Other("server name unknown".into()),
            }
        }
        "node-live-name" => match &ctx.live_name {
            Some(n) => wrong_proof(ctx, n, deadline),
            None => End::Other("skipped: needs --live-name".into()),
        },
        "node-wrong-cookie" => wrong_proof(ctx, &own_name(ctx), deadline),
        "node-no-handshake" => write_then_end(ctx, p, &send_frame(&[1, 0]), deadline),
        "node-replay" => match authenticate(ctx) {
            Ok((s, sent, _)) => {
                drop(s);
                write_then_end(ctx, p, &sent, deadline)
            }
            Err(e) => End::Other(e),
        },
        "node-failed-flood" => failed_flood(ctx, deadline + Duration::from_secs(20)),
        "node-idle-1000" => many_idle(ctx, p, 1000, Instant::now() + Duration::from_secs(30)),
        "codec-truncated" => after_accept(ctx, &send_frame(&[1, 0x06, 0, 0, 0, 9, b'a']), deadline),
        "codec-oversized-length" => after_accept(
            ctx,
            &send_frame(&[1, 0x06, 0xff, 0xff, 0xff, 0xff]),
            deadline,
        ),
        "codec-lying-counts" => {
            let mut t = vec![1u8];
            for _ in 0..50 {
                t.extend_from_slice(&[0x0B, 0, 0x10, 0, 0]);
            }
            after_accept(ctx, &send_frame(&t), deadline)
        }
        "codec-bad-utf8" => after_accept(
            ctx,
            &send_frame(&[1, 0x07, 0, 0, 0, 2, 0xC3, 0x28]),
            deadline,
        ),
        "codec-unknown-tag" => after_accept(ctx, &send_frame(&[1, 0x7E]), deadline),
        "codec-too-deep" => {
            let mut t = vec![1u8];
            for _ in 0..199 {
                t.extend_from_slice(&[0x0D, 0, 0, 0, 1]);
            }
            t.extend_from_slice(&[0x0D, 0, 0, 0, 0]);
            after_accept(ctx, &send_frame(&t), deadline)
        }
        "codec-trailing" => after_accept(ctx, &send_frame(&[1, 0x00, 0x00]), deadline),
        "codec-frame-oversized" => after_accept(ctx, &[0xff, 0xff, 0xff, 0xff], deadline),
        "codec-symbols-1e6" => {
            let end = symbols(ctx, Instant::now() + Duration::from_secs(60));
            let ok = matches!(&end, End::Other(m) if m.starts_with("open"));
            return (end, ok);
        }
        "pm-garbage" => write_then_end(ctx, d, b"\x00\x00\x00\x05garbage", deadline),
        "pm-wrong-magic" => write_then_end(ctx, d, &pm_hello(b"XXXX", 1), deadline),
        "pm-wrong-version" => write_then_end(ctx, d, &pm_hello(b"ERPM", 9), deadline),
        "pm-oversized" => write_then_end(ctx, d, &[0, 0x20, 0, 0, PM_HELLO], deadline),
        "pm-zero-length" => write_then_end(ctx, d, &[0, 0, 0, 0], deadline),
        "pm-half-frame" => {
            let h = pm_hello(b"ERPM", 1);
            write_then_end(ctx, d, &h[..5], deadline)
        }
        "pm-silence" => write_then_end(ctx, d, &[], deadline),
        "pm-trickle" => {
            let mut b = pm_hello(b"ERPM", 1);
            let mut q = Vec::new();
            put_str(&mut q, "nobody");
            b.extend(frame_bytes(PM_QUERY, &q));
            trickle(ctx, d, &b, deadline)
        }
        "pm-wrong-kind" => {
            let mut b = pm_hello(b"ERPM", 1);
            let mut r = Vec::new();
            put_str(&mut r, "squat");
            r.extend_from_slice(&4242u16.to_be_bytes());
            b.extend(frame_bytes(PM_REGISTER, &r));
            write_then_end(ctx, d, &b, deadline)
        }
        "pm-bad-utf8" => {
            let mut b = pm_hello(b"ERPM", 1);
            b.extend(frame_bytes(PM_QUERY, &[0, 2, 0xC3, 0x28]));
            write_then_end(ctx, d, &b, deadline)
        }
        "pm-squat" => match &ctx.live_name {
            Some(n) => {
                let node = n.rsplit('/').next().unwrap_or(n);
                let mut b = pm_hello(b"ERPM", 1);
                let mut r = Vec::new();
                put_str(&mut r, node);
                r.extend_from_slice(&4242u16.to_be_bytes());
                b.extend(frame_bytes(PM_REGISTER, &r));
                let local = Ctx {
                    host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: ctx.port,
                    registry: ctx.registry,
                    directory: ctx.directory,
                    cookie: None,
                    pid: None,
                    live_name: None,
                    serial: Mutex::new(0),
                };
                write_then_end(&local, ctx.registry, &b, deadline)
            }
            None => End::Other("skipped: needs --live-name".into()),
        },
        "pm-idle-1000" => many_idle(ctx, d, 1000, Instant::now() + Duration::from_secs(30)),
        _ => End::Other("unknown case".into()),
    };
    let ok = match &end {
        End::Closed | End::Error(_) => true,
        End::Open => false,
        End::Other(m) => m.starts_with("closed") || m.starts_with("skipped"),
    };
    (end, ok)
}

#[derive(Default)]
struct Canary {
    sent: u64,
    received: u64,
    reordered: u64,
    duplicated: u64,
    last: i64,
    max_gap_ms: u128,
}

fn start_canary(
    ctx: &Ctx,
    cookie_file: &str,
    target: String,
    stop: Arc<AtomicBool>,
) -> Result<(node::NodeHandle, Arc<Mutex<Canary>>), String> {
    let handle = node::start(NodeOptions {
        host: Some(ctx.host.to_string()),
        name: Some(format!("canary-{}", std::process::id())),
        config: Config {
            registry_port: ctx.registry,
            directory_port: ctx.directory,
            cookie_file: cookie_file.into(),
        },
        // A tool, not a member: hidden, as remote shells are.
        hidden: true,
        ..NodeOptions::default()
    })
    .map_err(|e| format!("canary node: {e}"))?;
    let stats = Arc::new(Mutex::new(Canary {
        last: -1,
        ..Canary::default()
    }));
    let st = stats.clone();
    agent::spawn(move || {
        let me = agent::Agent::current().to_term();
        let (host, node_name) = target.split_once('/').unwrap_or(("", target.as_str()));
        let call = Term::list(vec![Term::symbol("ECHO")]);
        let until = Instant::now() + Duration::from_secs(10);
        let echo = loop {
            match node::spawn_on(Some(host), node_name, &call, &agent::SpawnOptions::new()) {
                Ok(e) => break e,
                Err(e) if Instant::now() >= until => {
                    eprintln!("erlangen-hostile: canary: cannot spawn (echo) on {target}: {e}");
                    return;
                }
                Err(_) => thread::park_timeout(Duration::from_millis(100)),
            }
        };
        let mut seq: i64 = 0;
        let mut last_reply = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                // Drain what is still on its way.
                let until = Instant::now() + Duration::from_secs(3);
                loop {
                    {
                        let c = st.lock().unwrap_or_else(|e| e.into_inner());
                        if c.received + c.duplicated >= c.sent {
                            break;
                        }
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if let Ok(Term::Int(n)) = agent::receive_timeout(left) {
                        record(&st, n, &mut last_reply);
                    }
                }
                return;
            }
            if agent::send(Term::list(vec![Term::Int(seq), me.clone()]), &echo).is_ok() {
                st.lock().unwrap_or_else(|e| e.into_inner()).sent += 1;
            }
            seq += 1;
            let until = Instant::now() + Duration::from_millis(10);
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match agent::receive_timeout(left) {
                    Ok(Term::Int(n)) => record(&st, n, &mut last_reply),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    })
    .map_err(|e| format!("canary agent: {e}"))?;
    Ok((handle, stats))
}

fn record(st: &Mutex<Canary>, n: i64, last_reply: &mut Instant) {
    let mut c = st.lock().unwrap_or_else(|e| e.into_inner());
    let gap = last_reply.elapsed().as_millis();
    *last_reply = Instant::now();
    if c.received > 0 {
        c.max_gap_ms = c.max_gap_ms.max(gap);
    }
    if n == c.last {
        c.duplicated += 1;
        return;
    }
    if n < c.last {
        c.reordered += 1;
    }
    c.last = c.last.max(n);
    c.received += 1;
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (mut port, mut registry, mut directory) = (None, 10001u16, 20002u16);
    let (mut cookie_file, mut canary, mut pid, mut live_name) = (None, None, None, None);
    let (mut node_log, mut pm_log): (Option<String>, Option<String>) = (None, None);
    let mut cases = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let value = args.get(i + 1).cloned();
        let takes = matches!(
            a,
            "--port"
                | "--host"
                | "--cookie-file"
                | "--registry-port"
                | "--directory-port"
                | "--canary"
                | "--pid"
                | "--live-name"
                | "--node-log"
                | "--pm-log"
        );
        if takes && value.is_none() {
            eprintln!("erlangen-hostile: {a} needs a value\n{USAGE}");
            return ExitCode::from(2);
        }
        let v = value.unwrap_or_default();
        let bad = |what: &str| {
            eprintln!("erlangen-hostile: bad {what}: {v}\n{USAGE}");
            ExitCode::from(2)
        };
        match a {
            "--port" => match v.parse() {
                Ok(p) => port = Some(p),
                Err(_) => return bad("port"),
            },
            "--host" => match v.parse() {
                Ok(h) if private(h) => host = h,
                _ => return bad("host (loopback or private IPv4 only)"),
            },
            "--registry-port" => match v.parse() {
                Ok(p) => registry = p,
                Err(_) => return bad("registry port"),
            },
            "--directory-port" => match v.parse() {
                Ok(p) => directory = p,
                Err(_) => return bad("directory port"),
            },
            "--cookie-file" => cookie_file = Some(v.clone()),
            "--canary" => canary = Some(v.clone()),
            "--pid" => match v.parse() {
                Ok(p) => pid = Some(p),
                Err(_) => return bad("pid"),
            },
            "--live-name" => live_name = Some(v.clone()),
            "--node-log" => node_log = Some(v.clone()),
            "--pm-log" => pm_log = Some(v.clone()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "list" => {
                for (n, what) in CASES {
                    println!("{n:24} {what}");
                }
                return ExitCode::SUCCESS;
            }
            "all" => cases.extend(CASES.iter().map(|(n, _)| n.to_string())),
            c if CASES.iter().any(|(n, _)| *n == c) => cases.push(c.to_owned()),
            other => {
                eprintln!("erlangen-hostile: unknown argument or case {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        i += if takes { 2 } else { 1 };
    }
    let Some(port) = port else {
        eprintln!("erlangen-hostile: --port is required\n{USAGE}");
        return ExitCode::from(2);
    };
    if cases.is_empty() {
        cases.extend(CASES.iter().map(|(n, _)| n.to_string()));
    }
    let cookie = match &cookie_file {
        Some(f) => match erlangen::crypto::cookie::load_or_create(std::path::Path::new(f)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("erlangen-hostile: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let ctx = Ctx {
        host,
        port,
        registry,
        directory,
        cookie,
        pid,
        live_name,
        serial: Mutex::new(0),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let canary_state = match (&canary, &cookie_file) {
        (Some(target), Some(f)) => match start_canary(&ctx, f, target.clone(), stop.clone()) {
            Ok(x) => {
                // Wait (bounded) for the first echo before attacking.
                let until = Instant::now() + Duration::from_secs(10);
                while x.1.lock().unwrap_or_else(|e| e.into_inner()).received == 0
                    && Instant::now() < until
                {
                    thread::park_timeout(Duration::from_millis(20));
                }
                Some(x)
            }
            Err(e) => {
                eprintln!("erlangen-hostile: {e}");
                return ExitCode::from(1);
            }
        },
        (Some(_), None) => {
            eprintln!("erlangen-hostile: --canary needs --cookie-file\n{USAGE}");
            return ExitCode::from(2);
        }
        _ => None,
    };
    let mut failed = 0;
    // The target's counters are asked through the canary node.
    let counters_of = canary.as_deref().filter(|_| canary_state.is_some());
    for c in &cases {
        let logs_before = (log_lines(node_log.as_deref()), log_lines(pm_log.as_deref()));
        let counters_before = counters_of.and_then(node_counters);
        let started = Instant::now();
        let (end, ok) = run_case(&ctx, c);
        let elapsed = started.elapsed().as_millis();
        let node_lines = settled_lines(node_log.as_deref()).saturating_sub(logs_before.0);
        let pm_lines = settled_lines(pm_log.as_deref()).saturating_sub(logs_before.1);
        let counted = match (counters_before, counters_of.and_then(node_counters)) {
            (Some(b), Some(a)) => format!(
                " counters refused-handshakes+{} connection-errors+{} throttled+{} slots-full+{}",
                a[0] - b[0],
                a[1] - b[1],
                a[2] - b[2],
                a[3] - b[3]
            ),
            _ => String::new(),
        };
        if !ok {
            failed += 1;
        }
        let canary_now = canary_state.as_ref().map(|(_, st)| {
            let s = st.lock().unwrap_or_else(|e| e.into_inner());
            format!(" canary sent={} received={}", s.sent, s.received)
        });
        println!(
            "case {c}: {end} after {elapsed} ms {}{} node {} log lines node+{node_lines} \
             port-mapper+{pm_lines}{counted}",
            if ok { "ok" } else { "FAIL" },
            canary_now.unwrap_or_default(),
            sample(ctx.pid)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut canary_bad = false;
    if let Some((_handle, st)) = canary_state {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let c = st.lock().unwrap_or_else(|e| e.into_inner());
                let done = c.received + c.duplicated >= c.sent;
                if done || Instant::now() >= until {
                    let lost = c.sent.saturating_sub(c.received);
                    println!(
                        "canary: sent={} received={} lost={lost} duplicated={} reordered={} longest-gap-ms={}",
                        c.sent, c.received, c.duplicated, c.reordered, c.max_gap_ms
                    );
                    canary_bad = lost > 0 || c.duplicated > 0 || c.reordered > 0 || c.received == 0;
                    break;
                }
            }
            thread::park_timeout(Duration::from_millis(20));
        }
    }
    println!(
        "hostile: {} cases, {} failed{}",
        cases.len(),
        failed,
        if canary_bad {
            ", canary lost messages"
        } else {
            ""
        }
    );
    if failed > 0 || canary_bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
