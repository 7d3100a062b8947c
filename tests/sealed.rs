//! Sealed node connections under an on-path attacker: node a reaches node
//! b through a TCP relay in this test (a second port mapper tells a that
//! b listens on the relay's port), which can flip a bit in a record,
//! replay one, or record everything. Whatever it does, b closes the
//! connection with one log line and one count, delivers nothing altered,
//! and a's agents attached over it are told as for any lost connection;
//! a recorded handshake replayed gets nowhere; and a capture holds none of
//! the messages' bytes in clear (while a `:seal nil` cluster's does).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use erlangen::port_mapper::client::{query_port, register, Registration};
use support::{Cluster, Proc};

/// What the relay does to the records a sends to b.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    /// Forward as they are.
    Pass,
    /// Flip one bit in the ciphertext of the next large record.
    FlipBig,
    /// Forward the next large record twice.
    DuplicateBig,
}

/// Large records: the test's big message, not heartbeats or syncs.
const BIG: usize = 2000;

struct Shared {
    tamper: Mutex<Tamper>,
    /// Everything a sent to b, and b to a, on every connection.
    a_to_b: Mutex<Vec<u8>>,
    b_to_a: Mutex<Vec<u8>>,
    /// The a-to-b bytes of the first connection only.
    first_a_to_b: Mutex<Vec<u8>>,
    tampered: AtomicU64,
    connections: AtomicU64,
    stop: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

/// The relay: stopped, its sockets shut and its threads joined, when
/// dropped.
struct Relay {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            tamper: Mutex::new(Tamper::Pass),
            a_to_b: Mutex::new(Vec::new()),
            b_to_a: Mutex::new(Vec::new()),
            first_a_to_b: Mutex::new(Vec::new()),
            tampered: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let pumps: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (s, p) = (Arc::clone(&shared), Arc::clone(&pumps));
        let accept = thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let first = s.connections.fetch_add(1, Ordering::SeqCst) == 0;
                {
                    let mut socks = s.sockets.lock().unwrap();
                    socks.push(client.try_clone().expect("clone"));
                    socks.push(server.try_clone().expect("clone"));
                }
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let sa = Arc::clone(&s);
                let up = thread::spawn(move || pump_a_to_b(client, server, &sa, first));
                let sb = Arc::clone(&s);
                let down = thread::spawn(move || pump_b_to_a(s2, c2, &sb));
                p.lock().unwrap().extend([up, down]);
            }
        });
        Relay {
            port,
            shared,
            accept: Some(accept),
            pumps,
        }
    }

    fn set(&self, t: Tamper) {
        *self.shared.tamper.lock().unwrap() = t;
    }

    fn tampered(&self) -> u64 {
        self.shared.tampered.load(Ordering::SeqCst)
    }

    /// Everything captured, both directions.
    fn capture(&self) -> Vec<u8> {
        let mut all = self.shared.a_to_b.lock().unwrap().clone();
        all.extend_from_slice(&self.shared.b_to_a.lock().unwrap());
        all
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for s in self.shared.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Sockets of a connection accepted while stopping.
        for s in self.shared.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in self.pumps.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

/// Reads one length-prefixed unit (a handshake frame or a record): its
/// length bytes and body.
fn read_unit(r: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > 32 << 20 {
        return None;
    }
    let mut unit = len.to_vec();
    unit.resize(4 + n, 0);
    r.read_exact(&mut unit[4..]).ok()?;
    Some(unit)
}

/// a to b, unit by unit: the first two are HELLO and PROOF, the rest
/// records, which the tamper mode may alter.
fn pump_a_to_b(mut from: TcpStream, mut to: TcpStream, s: &Shared, first: bool) {
    let mut units = 0u64;
    while let Some(mut unit) = read_unit(&mut from) {
        units += 1;
        s.a_to_b.lock().unwrap().extend_from_slice(&unit);
        if first {
            s.first_a_to_b.lock().unwrap().extend_from_slice(&unit);
        }
        let mut copies = 1;
        if units > 2 && unit.len() > BIG {
            let mut t = s.tamper.lock().unwrap();
            match *t {
                Tamper::Pass => {}
                Tamper::FlipBig => {
                    let mid = unit.len() / 2;
                    unit[mid] ^= 0x10;
                    *t = Tamper::Pass;
                    s.tampered.fetch_add(1, Ordering::SeqCst);
                }
                Tamper::DuplicateBig => {
                    copies = 2;
                    *t = Tamper::Pass;
                    s.tampered.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        for _ in 0..copies {
            if to.write_all(&unit).is_err() {
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

fn pump_b_to_a(mut from: TcpStream, mut to: TcpStream, s: &Shared) {
    let mut buf = [0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                s.b_to_a.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// b (a node whose log shows warnings), a (a node that finds b at the
/// relay), the relay, and the registration that points a at it.
struct Setup {
    b: Proc,
    a: Proc,
    relay: Relay,
    b_port: u16,
    _registration: Registration,
    _clusters: (Cluster, Cluster),
}

/// A tally on b: a one-element list `(reply-to)` is answered with the
/// number of other messages received so far.
const TALLY: &str = "(defun tally (n) (let ((m (receive))) (if (= (length m) 1) (progn (send n (first m)) (tally n)) (tally (+ n 1)))))";

fn setup(tag: &str, node_options: &str) -> Setup {
    let c1 = Cluster::new(&format!("{tag}-b"));
    let c2 = Cluster::new(&format!("{tag}-a"));
    let mut b = c1.kernel("b", &["--log-level", "warn", "-e", TALLY]);
    b.line_matching(|l| l == "TALLY");
    let out = eval(
        &mut b,
        &format!("(spawn '(node :host \"localhost\" :name \"b\" {node_options}))"),
    );
    assert!(out.starts_with("#<AGENT"), "node start: {out}");
    c1.wait_registered("b");
    let b_port = query_port(c1.directory(), "b", Duration::from_secs(5)).expect("port of b");
    // One cookie for both.
    std::fs::copy(c1.cookie_file(), c2.cookie_file()).expect("cookie copy");
    let relay = Relay::start(b_port);
    let registration =
        register(c2.registry(), "b", relay.port, Duration::from_secs(5)).expect("register relay");
    let a = c2.client_with("a", node_options);
    Setup {
        b,
        a,
        relay,
        b_port,
        _registration: registration,
        _clusters: (c1, c2),
    }
}

/// Sends a form and returns its printed value, skipping log lines.
fn eval(k: &mut Proc, form: &str) -> String {
    k.send(form);
    k.line_matching(|l| !l.starts_with("stderr:") || l.starts_with("stderr: error"))
}

fn expect(k: &mut Proc, form: &str, want: &str) {
    assert_eq!(eval(k, form), want, "{form}");
}

/// The big message: a list of two (so the tally counts it).
fn big_message(marker: &str) -> String {
    format!("(list :big \"{}\")", marker.repeat(BIG / marker.len() + 10))
}

/// Starts a tally on b (`tl` on a) and an agent there that a monitors.
fn start_tally(s: &mut Setup) {
    expect(
        &mut s.a,
        "(setq tl (spawn '(tally 0) :node \"b\"))",
        "\"localhost/b/0\"",
    );
    // A second agent, attached to a's REPL agent: told when the
    // connection is lost (the tally stays unattached and keeps counting).
    expect(
        &mut s.a,
        "(setq m (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/1\"",
    );
}

fn tally(s: &mut Setup) -> String {
    let sent = eval(&mut s.a, "(send (list (agent)) tl)");
    assert!(sent.starts_with("(#<AGENT"), "{sent}");
    eval(&mut s.a, "(receive :timeout 10)")
}

/// b's `bad-seals` count in its `node-info`.
fn bad_seals_on_b(s: &mut Setup) -> String {
    let info = eval(&mut s.b, "(node-info)");
    let at = info.find(":BAD-SEALS ").expect("bad-seals in node-info") + 11;
    info[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("")
        .to_owned()
}

/// a is told its tally is gone, as for any lost connection.
fn a_told_the_connection_is_lost(s: &mut Setup) {
    assert_eq!(
        eval(&mut s.a, "(receive :timeout 15)"),
        "(\"localhost/b/1\" :EXIT :NOCONNECTION \"localhost/b\")"
    );
}

#[test]
fn a_flipped_bit_closes_the_connection_and_delivers_nothing() {
    let mut s = setup("sealflip", "");
    start_tally(&mut s);
    s.relay.set(Tamper::FlipBig);
    expect(
        &mut s.a,
        &format!("(progn (send {} tl) :sent)", big_message("flip")),
        ":SENT",
    );
    let line = s.b.line_matching(|l| l.contains("peer localhost/a down"));
    assert!(line.contains("sealed frame failed to open"), "{line}");
    assert_eq!(s.relay.tampered(), 1);
    a_told_the_connection_is_lost(&mut s);
    assert_eq!(bad_seals_on_b(&mut s), "1");
    // The tally (still running on b) never counted the altered message:
    // asked over a new connection, it has 0.
    assert_eq!(tally(&mut s), "0");
    // An honest message afterwards is counted.
    expect(
        &mut s.a,
        &format!("(progn (send {} tl) :sent)", big_message("fine")),
        ":SENT",
    );
    assert_eq!(tally(&mut s), "1");
}

#[test]
fn a_replayed_record_closes_the_connection_and_is_not_delivered_twice() {
    let mut s = setup("sealdup", "");
    start_tally(&mut s);
    s.relay.set(Tamper::DuplicateBig);
    expect(
        &mut s.a,
        &format!("(progn (send {} tl) :sent)", big_message("dup")),
        ":SENT",
    );
    let line = s.b.line_matching(|l| l.contains("peer localhost/a down"));
    assert!(line.contains("sealed frame failed to open"), "{line}");
    a_told_the_connection_is_lost(&mut s);
    assert_eq!(bad_seals_on_b(&mut s), "1");
    // The first copy was the real one and was delivered; the replay not.
    assert_eq!(tally(&mut s), "1");
}

#[test]
fn a_recorded_handshake_and_session_replayed_get_nowhere() {
    let mut s = setup("sealreplay", "");
    start_tally(&mut s);
    expect(
        &mut s.a,
        &format!("(progn (send {} tl) :sent)", big_message("once")),
        ":SENT",
    );
    assert_eq!(tally(&mut s), "1");
    let recorded = s.relay.shared.first_a_to_b.lock().unwrap().clone();
    assert!(recorded.len() > BIG);
    // Everything a sent on that connection, replayed on a new one straight
    // to b: b answers the HELLO with a fresh nonce and key, so the recorded
    // PROOF fails and b closes without ACCEPT, reading nothing further.
    let mut replay = support::connect(s.b_port);
    replay.write_all(&recorded).expect("replay");
    let mut answer = Vec::new();
    let _ = replay.read_to_end(&mut answer);
    let challenge_len = u32::from_be_bytes(answer[..4].try_into().expect("len")) as usize;
    assert_eq!(answer[4], 0x02, "a CHALLENGE");
    assert_eq!(
        answer.len(),
        4 + challenge_len,
        "nothing after the CHALLENGE"
    );
    s.b.line_matching(|l| l.contains("handshake from") && l.contains("authentication failed"));
    // The tally saw the message once.
    assert_eq!(tally(&mut s), "1");
    assert_eq!(bad_seals_on_b(&mut s), "0");
}

/// True if `hay` holds any 12-byte piece of `needle`.
fn holds_piece_of(hay: &[u8], needle: &[u8]) -> bool {
    needle.windows(12).any(|w| hay.windows(12).any(|h| h == w))
}

#[test]
fn a_capture_holds_no_message_bytes_in_clear_unless_sealing_is_off() {
    let marker = "Attack-at-dawn-0123456789-";
    for (options, sealed) in [("", true), (":seal nil", false)] {
        let mut s = setup(if sealed { "sealcap" } else { "clearcap" }, options);
        start_tally(&mut s);
        for _ in 0..20 {
            expect(
                &mut s.a,
                &format!("(progn (send {} tl) :sent)", big_message(marker)),
                ":SENT",
            );
        }
        expect(
            &mut s.a,
            "(progn (send (list :small \"Attack-at-dusk-9876543210\") tl) :sent)",
            ":SENT",
        );
        assert_eq!(tally(&mut s), "21");
        let capture = s.relay.capture();
        assert_eq!(
            holds_piece_of(&capture, marker.as_bytes()),
            !sealed,
            "{options}: marker in the capture"
        );
        assert_eq!(
            holds_piece_of(&capture, b"Attack-at-dusk-9876543210"),
            !sealed,
            "{options}: small message in the capture"
        );
    }
}

#[test]
fn differing_seal_settings_are_refused_naming_both() {
    let c = Cluster::new("sealmismatch");
    let mut b = c.kernel("b", &["--log-level", "warn", "-e", TALLY]);
    b.line_matching(|l| l == "TALLY");
    let out = eval(&mut b, "(spawn '(node :host \"localhost\" :name \"b\"))");
    assert!(out.starts_with("#<AGENT"), "{out}");
    c.wait_registered("b");
    let mut a = c.client_with("a", ":seal nil");
    let out = eval(&mut a, "(spawn '(tally 0) :node \"b\")");
    assert!(
        out.contains("this node has seal nil, the peer seal t"),
        "{out}"
    );
    let line = b.line_matching(|l| l.contains("handshake from"));
    assert!(
        line.contains("this node has seal t, the peer seal nil"),
        "{line}"
    );
}

#[test]
fn a_newer_client_is_answered_in_version_3_and_an_older_one_is_named_in_the_log() {
    let c = Cluster::new("sealversion");
    let mut b = c.kernel("b", &["--log-level", "warn"]);
    let out = eval(&mut b, "(spawn '(node :host \"localhost\" :name \"b\"))");
    assert!(out.starts_with("#<AGENT"), "{out}");
    c.wait_registered("b");
    let port = query_port(c.directory(), "b", Duration::from_secs(5)).expect("port");
    let hello = |max: u8, min: u8, extra: &[u8]| {
        let mut p = b"ERLN".to_vec();
        p.extend_from_slice(&[max, min]);
        erlangen::frame::put_str(&mut p, "localhost/future");
        p.extend_from_slice(&1u64.to_be_bytes());
        p.extend_from_slice(&[3; 32]);
        p.push(1);
        p.extend_from_slice(&erlangen::crypto::x25519_public(&[4; 32]));
        p.extend_from_slice(extra);
        let mut f = Vec::new();
        erlangen::frame::encode_frame(&mut f, 0x01, &p).expect("frame");
        f
    };
    // A node speaking versions 3 to 4, with a field version 4 added after
    // the key: answered in version 3.
    let mut t = support::connect(port);
    t.write_all(&hello(4, 3, b"v4 extension")).expect("hello");
    let mut buf = Vec::new();
    assert_eq!(
        erlangen::frame::read_frame(&mut t, 4096, &mut buf).expect("challenge"),
        0x02
    );
    assert_eq!(buf[0], 3, "version chosen");
    drop(t);
    // A node of version 2: closed, and the log names both versions.
    let mut old = b"ERLN".to_vec();
    old.push(2);
    erlangen::frame::put_str(&mut old, "localhost/old");
    old.extend_from_slice(&1u64.to_be_bytes());
    old.extend_from_slice(&[5; 32]);
    let mut f = Vec::new();
    erlangen::frame::encode_frame(&mut f, 0x01, &old).expect("frame");
    let mut t = support::connect(port);
    t.write_all(&f).expect("hello");
    let mut rest = Vec::new();
    let _ = t.read_to_end(&mut rest);
    // A CHALLENGE holding only version 3 (a node of version 2 reports
    // "unsupported protocol version 3"), then the end.
    assert_eq!(
        rest,
        [0, 0, 0, 2, 0x02, 3],
        "the answer to a version 2 HELLO"
    );
    let line = b.line_matching(|l| l.contains("no common protocol version"));
    assert!(
        line.contains("the peer speaks version 2, this node version 3"),
        "{line}"
    );
}
