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
use erlangen::port_mapper::server::{PortMapper, ServerConfig};
use erlangen::port_mapper::PortMapperError;
use support::{Cluster, WAIT};

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

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("{what} did not happen within {WAIT:?}");
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
    // At most an ERROR frame saying why, then end of stream.
    let _ = silent.read_to_end(&mut buf);
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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_erlangen-port-mapper"))
        .arg("-h")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("--directory-port"),
        "{text}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_erlangen-port-mapper"))
        .args(["--registry-port", "nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
