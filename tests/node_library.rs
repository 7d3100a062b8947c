//! The node API used from Rust (as an embedding program would): a port
//! mapper and a node in this process, a kernel node as the peer. One test
//! only: a process is at most one node.

mod support;

use std::time::Duration;

use erlangen::node::{self, NodeOptions};
use erlangen::{receive_timeout, send, Agent, Attach, SpawnOptions, Term};
use support::{eventually, port_mapper_in_process, Proc};

#[test]
fn library_node_spawns_sends_and_stops() {
    let (_dir, pm, config) = port_mapper_in_process("library");
    let handle = node::start(NodeOptions {
        host: Some("localhost".into()),
        name: Some("lib".into()),
        config: config.clone(),
        ..NodeOptions::default()
    })
    .unwrap();
    assert_eq!(handle.full_name(), "localhost/lib");
    assert_eq!(node::this_node().as_deref(), Some("localhost/lib"));
    // A second node in the same process is refused.
    assert!(matches!(
        node::start(NodeOptions {
            config: config.clone(),
            ..NodeOptions::default()
        }),
        Err(node::NodeError::AlreadyRunning(_))
    ));

    // The peer: a kernel node with an echo function.
    let echo = "(defun echo () (let ((m (receive))) (send (first m) (second m)) (echo)))";
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    cmd.args([
        "-n",
        "-b",
        "-e",
        echo,
        "-e",
        "(node :host \"localhost\" :name \"peer\")",
    ])
    .arg("--registry-port")
    .arg(config.registry_port.to_string())
    .arg("--directory-port")
    .arg(config.directory_port.to_string())
    .arg("--cookie-file")
    .arg(&config.cookie_file);
    let _peer = Proc::from_command(cmd, "peer");
    eventually("registration of peer", || {
        erlangen::port_mapper::client::query_port(
            pm.directory_addr(),
            "peer",
            Duration::from_secs(1),
        )
        .is_ok()
    });

    // Remote spawn with monitor, then a message round trip by id string.
    let call = erlangen::term::read("(+ 20 22)").unwrap();
    let id = node::spawn_on(
        None,
        "peer",
        &call,
        &SpawnOptions::new().attach(Attach::Monitor),
    )
    .unwrap();
    assert_eq!(id.to_string(), "localhost/peer/0");
    let notice = receive_timeout(support::WAIT).unwrap();
    assert_eq!(notice.to_string(), "(\"localhost/peer/0\" :OK 42)");
    let echo_call = erlangen::term::read("(echo)").unwrap();
    let echo_id = node::spawn_on(None, "peer", &echo_call, &SpawnOptions::new()).unwrap();
    let me = Agent::current();
    send(
        Term::list(vec![Term::keyword("hello"), me.to_term()]),
        &echo_id,
    )
    .unwrap();
    assert_eq!(
        receive_timeout(support::WAIT).unwrap(),
        Term::keyword("hello")
    );
    // Local-only values are refused at the sender.
    assert!(send(Term::local(5u8), &echo_id).is_err());
    let stats = node::connection_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].node, "localhost/peer");
    assert!(stats[0].connected && stats[0].messages_out >= 3);

    // Stopping the node releases its name.
    handle.stop();
    assert!(node::this_node().is_none());
    eventually("release of lib", || {
        matches!(
            erlangen::port_mapper::client::query_port(
                pm.directory_addr(),
                "lib",
                Duration::from_secs(1),
            ),
            Err(erlangen::port_mapper::PortMapperError::UnknownNode(_))
        )
    });
}
