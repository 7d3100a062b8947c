//! Per-peer tables of a node stay bounded (issue: every remote shell is a
//! new peer name): after dials to 1,100 names that no port mapper knows,
//! the node keeps counters for at most 1,024 peers plus the one dialed
//! last. One test only: a process is at most one node.

mod support;

use erlangen::node::{self, NodeOptions};
use erlangen::{send, Term};
use support::{eventually, port_mapper_in_process};

#[test]
fn counters_of_peers_ever_dialed_are_bounded() {
    let (_dir, _pm, config) = port_mapper_in_process("peer-tables");
    let handle = node::start(NodeOptions {
        host: Some("localhost".into()),
        name: Some("tables".into()),
        config,
        ..NodeOptions::default()
    })
    .expect("node");
    let ghosts = 1100;
    for i in 0..ghosts {
        // Each send dials a node nobody registered; the dial fails at the
        // port mapper and its connection is forgotten.
        let _ = send(
            Term::keyword("hi"),
            format!("localhost/ghost{i}/:X").as_str(),
        );
    }
    // Every dial has failed once the last one has (they fail in order of
    // nothing, so wait for all: no connection is left).
    eventually("every dial to a ghost failed", || {
        node::connection_stats().iter().all(|s| !s.connected)
            && node::connection_stats()
                .iter()
                .map(|s| s.errors)
                .sum::<u64>()
                > 0
    });
    let kept = node::connection_stats().len();
    assert!(
        kept <= 1025,
        "counters kept for {kept} peers after {ghosts} dials"
    );
    handle.stop();
}
