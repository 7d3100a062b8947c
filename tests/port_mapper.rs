//! The port mapper (SPEC section 6): in-process servers on free ports for
//! the protocol, the program for the process-level cases. Ported in spirit
//! from the seed's `test/port-mapper-test.lisp` (register, query, release),
//! extended with hostile input.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use erlangen::frame::{self, put_str};
use erlangen::port_mapper::client::{list_nodes, query_port, register, KeepRegistered};
use erlangen::port_mapper::server::{PortMapper, ServerConfig, ServerLimits};
use erlangen::port_mapper::PortMapperError;
use support::{eventually, listening_addrs, Cluster, Proc, WAIT};

const T: Duration = Duration::from_secs(5);

fn start() -> PortMapper {
    PortMapper::start(ServerConfig {
        directory_host: "127.0.0.1".into(),
        registry_port: 0,
        directory_port: 0,
        log: false,
    })
    .expect("port mapper")
}

#[test]
fn register_query_list_and_release_on_close() {
    let pm = start();
    let r = register(pm.registry_addr(), "alpha", 4242, T).unwrap();
    let _s = register(pm.registry_addr(), "beta", 4343, T).unwrap();
    assert_eq!(query_port(pm.directory_addr(), "alpha", T).unwrap(), 4242);
    assert_eq!(
        list_nodes(pm.directory_addr(), T).unwrap(),
        vec![("alpha".into(), 4242), ("beta".into(), 4343)]
    );
    assert!(matches!(
        query_port(pm.directory_addr(), "gamma", T),
        Err(PortMapperError::UnknownNode(_))
    ));
    drop(r);
    eventually("release of alpha", || {
        matches!(
            query_port(pm.directory_addr(), "alpha", T),
            Err(PortMapperError::UnknownNode(_))
        )
    });
    // The name can be taken again.
    let _again = register(pm.registry_addr(), "alpha", 4444, T).unwrap();
    assert_eq!(query_port(pm.directory_addr(), "alpha", T).unwrap(), 4444);
}

#[test]
fn duplicate_name_is_refused() {
    let pm = start();
    let _first = register(pm.registry_addr(), "dup", 1000, T).unwrap();
    match register(pm.registry_addr(), "dup", 2000, T) {
        Err(PortMapperError::Refused(m)) => assert!(m.contains("already registered"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(query_port(pm.directory_addr(), "dup", T).unwrap(), 1000);
}

#[test]
fn registration_is_released_when_the_node_process_is_killed() {
    let cluster = Cluster::new("pmkill");
    let mut node = cluster.node("victim");
    node.kill();
    cluster.wait_unregistered("victim");
}

#[test]
fn registry_listens_on_loopback_only() {
    let pm = PortMapper::start(ServerConfig {
        directory_host: "0.0.0.0".into(),
        registry_port: 0,
        directory_port: 0,
        log: false,
    })
    .unwrap();
    assert!(pm.registry_addr().ip().is_loopback());
}

#[test]
fn many_concurrent_registrations_and_queries_are_consistent() {
    let pm = Arc::new(start());
    let mut registrations = Vec::new();
    let mut joins = Vec::new();
    for t in 0..8 {
        let pm = Arc::clone(&pm);
        joins.push(thread::spawn(move || {
            (0..25)
                .map(|i| {
                    let n = t * 25 + i;
                    register(
                        pm.registry_addr(),
                        &format!("node-{n}"),
                        10_000 + n as u16,
                        T,
                    )
                    .unwrap()
                })
                .collect::<Vec<_>>()
        }));
    }
    for j in joins {
        registrations.extend(j.join().unwrap());
    }
    let mut queries = Vec::new();
    for q in 0..20 {
        let pm = Arc::clone(&pm);
        queries.push(thread::spawn(move || {
            for i in 0..20 {
                let n = (q * 7 + i * 13) % 200;
                assert_eq!(
                    query_port(pm.directory_addr(), &format!("node-{n}"), T).unwrap(),
                    10_000 + n as u16
                );
            }
            assert_eq!(list_nodes(pm.directory_addr(), T).unwrap().len(), 200);
        }));
    }
    for q in queries {
        q.join().unwrap();
    }
    assert_eq!(pm.nodes().len(), 200);
    drop(registrations);
    eventually("release of all 200", || pm.nodes().is_empty());
}

#[test]
fn keep_registered_survives_a_port_mapper_restart() {
    let pm = start();
    let (registry, directory) = (pm.registry_addr(), pm.directory_addr());
    let keeper = KeepRegistered::start(registry, "steady", 5555).unwrap();
    pm.shutdown();
    let pm2 = PortMapper::start(ServerConfig {
        directory_host: "127.0.0.1".into(),
        registry_port: registry.port(),
        directory_port: directory.port(),
        log: false,
    })
    .unwrap();
    eventually("re-registration", || {
        query_port(pm2.directory_addr(), "steady", T).is_ok()
    });
    drop(keeper);
    eventually("release", || pm2.nodes().is_empty());
}

/// Sends raw bytes and reports whether the server closed the connection
/// (after at most one frame of answer).
fn raw(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = Vec::new();
    // Read until EOF: an ERROR frame may come first.
    match s.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn hello() -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_frame(&mut out, 0x20, b"ERPM\x01").unwrap();
    out
}

fn register_frame(name: &str, port: u16) -> Vec<u8> {
    let mut p = Vec::new();
    put_str(&mut p, name);
    p.extend_from_slice(&port.to_be_bytes());
    let mut out = hello();
    frame::encode_frame(&mut out, 0x22, &p).unwrap();
    out
}

#[test]
fn bad_input_gets_an_error_or_a_closed_connection_and_nothing_else_breaks() {
    let pm = start();
    let _held = register(pm.registry_addr(), "bystander", 7777, T).unwrap();
    let wrong_version = {
        let mut out = Vec::new();
        frame::encode_frame(&mut out, 0x20, b"ERPM\x09").unwrap();
        out
    };
    let half_frame = {
        let mut v = register_frame("half", 1);
        v.truncate(v.len() - 2);
        v
    };
    let cases: Vec<(&str, SocketAddr, Vec<u8>)> = vec![
        (
            "garbage",
            pm.registry_addr(),
            b"\x00\x00\x00\x05garbage!".to_vec(),
        ),
        ("garbage", pm.directory_addr(), b"hello world\r\n".to_vec()),
        ("wrong version", pm.registry_addr(), wrong_version.clone()),
        ("wrong version", pm.directory_addr(), wrong_version),
        (
            "oversized length",
            pm.registry_addr(),
            vec![0xFF, 0xFF, 0xFF, 0xFF, 0x20],
        ),
        ("half-sent frame", pm.registry_addr(), half_frame),
        ("name with /", pm.registry_addr(), register_frame("a/b", 1)),
        ("empty name", pm.registry_addr(), register_frame("", 1)),
        (
            "name with space",
            pm.registry_addr(),
            register_frame("a b", 1),
        ),
        (
            "long name",
            pm.registry_addr(),
            register_frame(&"x".repeat(300), 1),
        ),
        ("port 0", pm.registry_addr(), register_frame("zero", 0)),
        ("query on registry", pm.registry_addr(), {
            let mut v = hello();
            frame::encode_frame(&mut v, 0x24, b"\x00\x01x").unwrap();
            v
        }),
    ];
    for (what, addr, bytes) in cases {
        assert!(raw(addr, &bytes), "{what}: connection should close");
        assert_eq!(
            query_port(pm.directory_addr(), "bystander", T).unwrap(),
            7777,
            "after {what}"
        );
    }
    assert_eq!(pm.nodes(), vec![("bystander".into(), 7777)]);
    // A client that connects and says nothing is closed after the deadline
    // and holds no name.
    let mut silent = TcpStream::connect(pm.registry_addr()).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    // At most an ERROR frame saying why, then end of stream (or a reset):
    // a read that times out means the server never closed it.
    let read = silent.read_to_end(&mut buf);
    assert!(
        read.is_ok() || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the silent client was not closed within {WAIT:?}: {read:?}"
    );
    assert!(buf.len() < 100, "{buf:?}");
    assert_eq!(pm.nodes().len(), 1);
    // Client-side validation names the problem.
    assert!(matches!(
        register(pm.registry_addr(), "bad/name", 1, T),
        Err(PortMapperError::InvalidName(_))
    ));
}

#[test]
fn program_help_and_bad_flags() {
    let mut cmd = program();
    cmd.arg("-h");
    let (status, text, _) = support::run_bounded(cmd, b"");
    assert!(
        status == Some(0) && text.contains("--directory-port"),
        "{text}"
    );
    let mut bad = program();
    bad.args(["--registry-port", "nope"]);
    let (status, _, _) = support::run_bounded(bad, b"");
    assert_eq!(status, Some(2));
}

fn start_with(limits: ServerLimits) -> PortMapper {
    PortMapper::start_with(
        ServerConfig {
            directory_host: "127.0.0.1".into(),
            registry_port: 0,
            directory_port: 0,
            log: false,
        },
        limits,
    )
    .expect("port mapper")
}

/// Limits for tests that must not be cut short by a timeout they do not
/// test: every timeout far beyond any wait of the test.
fn patient() -> ServerLimits {
    ServerLimits {
        first_request_timeout: 4 * WAIT,
        directory_idle_timeout: 4 * WAIT,
        write_timeout: 4 * WAIT,
        ..ServerLimits::default()
    }
}

/// A raw connection with a read timeout, so no test read can hang.
fn dial(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads one frame (the socket's read timeout bounds the wait).
fn frame_from(s: &mut TcpStream) -> Result<(u8, Vec<u8>), frame::FrameError> {
    let mut buf = Vec::new();
    let kind = frame::read_frame(s, 1 << 20, &mut buf)?;
    Ok((kind, buf))
}

/// The message of an ERROR frame, which must be the next frame and be
/// followed by the end of the stream.
fn error_then_close(s: &mut TcpStream) -> String {
    let (kind, payload) = frame_from(s).expect("an ERROR frame");
    assert_eq!(kind, 0x2F, "expected ERROR, got kind {kind:#x}");
    let len = u16::from_be_bytes([payload[0], payload[1]]) as usize;
    let message = String::from_utf8(payload[2..2 + len].to_vec()).unwrap();
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "bytes after ERROR: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    message
}

/// Connects, sends HELLO and reads WELCOME.
fn welcomed(addr: SocketAddr) -> TcpStream {
    let mut s = dial(addr);
    s.write_all(&hello()).unwrap();
    let (kind, payload) = frame_from(&mut s).expect("WELCOME");
    assert_eq!((kind, payload), (0x21, vec![1]));
    s
}

/// Writes `head`, then one byte every 50 ms for as long as the server
/// keeps the connection open (at most `WAIT`), and returns what the server
/// said. Each byte comes well inside any per-read timeout, so only a
/// deadline for the whole request ends this; the server must end it while
/// bytes are still coming.
fn trickle(mut s: TcpStream, head: &[u8]) -> String {
    s.write_all(head).unwrap();
    let mut writer = s.try_clone().unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let trickler = thread::spawn(move || {
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if writer.write_all(&[0]).is_err() {
                return true;
            }
            // One byte per 50 ms, ending as soon as the reader saw the
            // server close (or gave up: the sender is dropped).
            if stopped.recv_timeout(Duration::from_millis(50))
                != Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                return true;
            }
        }
        false
    });
    let message = error_then_close(&mut s);
    drop(stop);
    assert!(
        trickler.join().unwrap(),
        "the server waited until the client stopped sending ({message})"
    );
    message
}

#[test]
fn first_request_deadline_covers_the_whole_request_not_each_read() {
    let pm = start_with(ServerLimits {
        first_request_timeout: Duration::from_millis(300),
        ..patient()
    });
    // A HELLO that claims 1,000 bytes and never ends, on both services.
    for addr in [pm.registry_addr(), pm.directory_addr()] {
        let m = trickle(dial(addr), &[0, 0, 3, 0xE8, 0x20]);
        assert!(m.contains("first request timeout"), "{m}");
    }
    // A complete HELLO, then a REGISTER that never ends: the deadline
    // covers both.
    let m = trickle(welcomed(pm.registry_addr()), &[0, 0, 3, 0xE8, 0x22]);
    assert!(m.contains("first request timeout"), "{m}");
    assert!(pm.nodes().is_empty());
}

#[test]
fn later_directory_requests_have_a_deadline_for_the_whole_request() {
    let pm = start_with(ServerLimits {
        directory_idle_timeout: Duration::from_millis(300),
        ..patient()
    });
    let mut s = welcomed(pm.directory_addr());
    s.write_all(&[0, 0, 0, 1, 0x26]).unwrap();
    assert_eq!(frame_from(&mut s).unwrap().0, 0x27, "NODES");
    let m = trickle(s, &[0, 0, 3, 0xE8, 0x24]);
    assert!(m.contains("directory idle timeout"), "{m}");
}

#[test]
fn an_idle_directory_connection_gets_an_error_saying_why_then_is_closed() {
    assert_eq!(
        ServerLimits::default().directory_idle_timeout,
        Duration::from_secs(5),
        "PROTOCOL.md promises 5 s"
    );
    let pm = start_with(ServerLimits {
        directory_idle_timeout: Duration::from_millis(200),
        ..patient()
    });
    let _node = register(pm.registry_addr(), "idler", 4100, T).unwrap();
    // HELLO, then silence.
    let mut s = welcomed(pm.directory_addr());
    let m = error_then_close(&mut s);
    assert!(m.contains("idle timeout"), "{m}");
    // A request answered, then silence.
    let mut s = welcomed(pm.directory_addr());
    let mut query = Vec::new();
    put_str(&mut query, "idler");
    frame::write_frame(&mut s, 0x24, &query).unwrap();
    assert_eq!(
        frame_from(&mut s).unwrap(),
        (0x25, 4100u16.to_be_bytes().to_vec())
    );
    let m = error_then_close(&mut s);
    assert!(m.contains("idle timeout"), "{m}");
}

#[test]
fn registration_works_while_the_directory_is_full() {
    let pm = start_with(ServerLimits {
        max_directory_connections: 3,
        ..patient()
    });
    // Fill the directory with idle connections (each surely accepted: it
    // got its WELCOME).
    let idle: Vec<TcpStream> = (0..3).map(|_| welcomed(pm.directory_addr())).collect();
    let m = error_then_close(&mut dial(pm.directory_addr()));
    assert!(m.contains("too many directory connections"), "{m}");
    // The registry has its own cap: a local node still registers.
    let _local = register(pm.registry_addr(), "local", 4200, T).unwrap();
    assert_eq!(pm.nodes(), vec![("local".into(), 4200)]);
    // Once the idle ones are gone, queries are served again.
    drop(idle);
    eventually("a directory slot", || {
        query_port(pm.directory_addr(), "local", T).ok() == Some(4200)
    });
}

#[test]
fn the_registry_has_its_own_cap() {
    let pm = start_with(ServerLimits {
        max_registry_connections: 2,
        ..patient()
    });
    let _a = register(pm.registry_addr(), "a", 1, T).unwrap();
    let _b = register(pm.registry_addr(), "b", 2, T).unwrap();
    let m = error_then_close(&mut dial(pm.registry_addr()));
    assert!(m.contains("too many registry connections"), "{m}");
    // The directory is unaffected.
    assert_eq!(list_nodes(pm.directory_addr(), T).unwrap().len(), 2);
}

#[test]
fn a_client_that_does_not_read_answers_cannot_pin_a_thread() {
    let pm = start_with(ServerLimits {
        max_directory_connections: 1,
        write_timeout: Duration::from_millis(200),
        ..patient()
    });
    // Long names make every NODES answer a few kilobytes.
    let _nodes: Vec<_> = (0..20)
        .map(|i| register(pm.registry_addr(), &format!("{i:0>250}"), 5000 + i, T).unwrap())
        .collect();
    // The only directory slot: a client that asks and asks and never reads.
    let mut greedy = welcomed(pm.directory_addr());
    greedy.set_write_timeout(Some(WAIT)).unwrap();
    let asker = thread::spawn(move || {
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if greedy.write_all(&[0, 0, 0, 1, 0x26]).is_err() {
                return true;
            }
        }
        false
    });
    // The server gives up on the answer it cannot write, which frees the
    // slot.
    eventually("a directory slot", || {
        list_nodes(pm.directory_addr(), T).is_ok_and(|n| n.len() == 20)
    });
    assert!(asker.join().unwrap(), "the server closed the greedy client");
}

#[test]
fn a_second_registration_of_a_name_is_refused_and_the_first_stands() {
    let pm = start();
    let _first = register(pm.registry_addr(), "taken", 4300, T).unwrap();
    let mut s = welcomed(pm.registry_addr());
    let mut p = Vec::new();
    put_str(&mut p, "taken");
    p.extend_from_slice(&4400u16.to_be_bytes());
    frame::write_frame(&mut s, 0x22, &p).unwrap();
    let m = error_then_close(&mut s);
    assert!(m.contains("already registered"), "{m}");
    assert_eq!(query_port(pm.directory_addr(), "taken", T).unwrap(), 4300);
}

fn program() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_erlangen-port-mapper"))
}

#[test]
fn program_help_lists_only_flags_it_uses_and_version_comes_first() {
    let mut cmd = program();
    cmd.arg("-h");
    let (status, text, _) = support::run_bounded(cmd, b"");
    assert_eq!(status, Some(0), "{text}");
    assert!(!text.contains("--cookie-file"), "{text}");
    assert!(text.contains("--max-directory-connections"), "{text}");
    assert!(text.contains("--version"), "{text}");
    // --version answers before anything else is validated.
    for args in [
        &["--version"][..],
        &["--version", "--registry-port", "nope"],
    ] {
        let mut cmd = program();
        cmd.args(args);
        let (status, out, _) = support::run_bounded(cmd, b"");
        assert_eq!(status, Some(0), "{args:?}");
        assert_eq!(
            out,
            format!("erlangen-port-mapper {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn program_survives_a_broken_stdout_pipe() {
    for args in [&["--version"][..], &["-h"]] {
        // A pipe whose reading end is closed: `cat` holds it, and is gone
        // before the port mapper starts.
        let mut reader = program_reader();
        let write_end = reader.stdin.take().unwrap();
        reader.kill().unwrap();
        reader.wait().unwrap();
        let mut cmd = program();
        cmd.args(args)
            .stdout(std::process::Stdio::from(write_end))
            .stdin(std::process::Stdio::null());
        let (status, _, err) = support::run_bounded_stdout_set(cmd);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status, Some(0), "{args:?}: {status:?} {err}");
    }
}

fn program_reader() -> std::process::Child {
    std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn program_caps_directory_connections_by_flag() {
    let mut cmd = program();
    cmd.args([
        "127.0.0.1",
        "--registry-port",
        "0",
        "--directory-port",
        "0",
        "--max-directory-connections",
        "1",
    ]);
    let mut pm = Proc::from_command(cmd, "port mapper");
    let line = pm.line_matching(|l| l.contains("directory on"));
    let (registry, directory) = listening_addrs(&line).expect(&line);
    let _held = welcomed(directory);
    let m = error_then_close(&mut dial(directory));
    assert!(m.contains("at most 1"), "{m}");
    let _r = register(registry, "flagged", 4500, T).unwrap();
}
