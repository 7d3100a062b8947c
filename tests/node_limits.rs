//! What a node refuses at the sender, and what it never waits for: terms the
//! receiver would refuse (too deep, too big) are errors of the sending call
//! and leave the connection up; a send to a stopped peer returns at once; a
//! remote spawn whose reply comes after the caller gave up ends the orphan.
//!
//! One in-process node (a process is at most one node), kernel processes as
//! peers; the scenarios run in one test, in order.

mod support;

use std::time::{Duration, Instant};

use erlangen::node::{self, NodeOptions};
use erlangen::term::EncodeError;
use erlangen::{
    agent::SendError, link, receive_timeout, send, Agent, AgentRef, Attach, SpawnOptions, Term,
};
use support::Cluster;

const ECHO: &str = "(defun echo () (let ((m (receive))) (send (first m) (second m)) (echo)))";
const ORPHAN: &str = "(defun orphan (who) (send (list :started (agent)) who) (receive))";
const SINK: &str = "(defun sink () (receive) (sink))";

fn config(cluster: &Cluster) -> erlangen::config::Config {
    erlangen::config::Config {
        registry_port: cluster.registry().port(),
        directory_port: cluster.directory().port(),
        cookie_file: cluster.cookie_file(),
    }
}

fn deep(levels: usize) -> Term {
    let mut t = Term::from(1);
    for _ in 0..levels {
        t = Term::Vector(vec![t]);
    }
    t
}

/// The peer echoes `tag` back to us.
fn echo_round_trip(echo: &AgentRef, tag: &str) {
    let me = Agent::current();
    send(Term::list(vec![Term::keyword(tag), me.to_term()]), echo).expect("send");
    assert_eq!(
        receive_timeout(support::WAIT).expect("echo"),
        Term::keyword(tag)
    );
}

/// As [`echo_round_trip`], asking again while the request may have been
/// dropped: after a stopped peer resumes, the connection's queue is full
/// until the backlog drains, and requests meanwhile are dropped and counted.
fn echo_eventually(echo: &AgentRef, tag: &str) {
    let me = Agent::current();
    let deadline = Instant::now() + support::WAIT;
    loop {
        send(Term::list(vec![Term::keyword(tag), me.to_term()]), echo).expect("send");
        if let Ok(reply) = receive_timeout(Duration::from_millis(500)) {
            assert_eq!(reply, Term::keyword(tag));
            return;
        }
        assert!(Instant::now() < deadline, "no echo after the backlog");
    }
}

fn connected_to(peer: &str) -> bool {
    node::connection_stats()
        .iter()
        .any(|s| s.node == peer && s.connected)
}

#[test]
fn sender_side_limits_stopped_peers_and_late_spawn_replies() {
    let cluster = Cluster::new("limits");
    let b = cluster.kernel(
        "b",
        &[
            "-e",
            ECHO,
            "-e",
            ORPHAN,
            "-e",
            SINK,
            "-e",
            "(node :host \"localhost\" :name \"b\")",
        ],
    );
    cluster.wait_registered("b");
    let _handle = node::start(NodeOptions {
        host: Some("localhost".into()),
        name: Some("lim".into()),
        config: config(&cluster),
        // Long enough that only a blocked send, never a heartbeat timeout,
        // could take the connection down while b is stopped below.
        timeout: Duration::from_secs(60),
        spawn_timeout: Duration::from_millis(500),
        ..NodeOptions::default()
    })
    .expect("node");
    let echo = node::spawn_on(
        None,
        "b",
        &erlangen::term::read("(echo)").expect("call"),
        &SpawnOptions::new().mailbox_size(100_000),
    )
    .expect("spawn echo");
    echo_round_trip(&echo, "first");
    let sink = node::spawn_on(
        None,
        "b",
        &erlangen::term::read("(sink)").expect("call"),
        &SpawnOptions::new(),
    )
    .expect("spawn sink");

    // Depth: the decoder accepts 127 nested collections; the encoder
    // refuses the 128th at the sender, and the connection stays up.
    let refused = send(deep(128), &echo);
    assert!(
        matches!(
            &refused,
            Err(SendError::NotWireable(EncodeError::TooDeep(_)))
        ),
        "{refused:?}"
    );
    echo_round_trip(&echo, "after-deep");

    // Size: a string over the 16 MiB term limit is refused at the sender;
    // one just under it travels (its frame is bigger than the term, and
    // every node accepts such frames).
    let refused = send(Term::Str("x".repeat(17 << 20)), &echo);
    assert!(
        matches!(
            &refused,
            Err(SendError::NotWireable(
                EncodeError::StringTooLong { .. } | EncodeError::TooBig { .. }
            ))
        ),
        "{refused:?}"
    );
    let me = Agent::current();
    let big = Term::Str("y".repeat((16 << 20) - 64));
    send(Term::list(vec![big.clone(), me.to_term()]), &echo).expect("big send");
    assert_eq!(receive_timeout(support::WAIT).expect("big echo"), big);
    assert!(connected_to("localhost/b"));
    echo_round_trip(&echo, "after-big");

    // A spawn whose reply comes after the caller gave up: b is stopped, so
    // the spawn times out; once b runs again the orphan starts, tells us,
    // and is ended because it was told it was attached to us.
    support::signal(&b, "STOP");
    let call = Term::list(vec![Term::symbol("orphan"), me.to_term()]);
    let late = node::spawn_on(
        None,
        "b",
        &call,
        &SpawnOptions::new().attach(Attach::Monitor),
    );
    assert!(late.is_err(), "{late:?}");
    support::signal(&b, "CONT");
    let deadline = Instant::now() + support::WAIT;
    let orphan = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = receive_timeout(left).expect("the orphan starts");
        if let Some([tag, who]) = m.as_list() {
            if *tag == Term::keyword("started") {
                break who.clone();
            }
        }
    };
    link(orphan.clone(), Attach::Monitor).expect("monitor");
    let deadline = Instant::now() + support::WAIT;
    let reason = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = receive_timeout(left).expect("the orphan's end");
        if let Term::Dotted(items, _) = &m {
            if items.first() == Some(&orphan) && items.get(1) == Some(&Term::keyword("exit")) {
                break m.to_string();
            }
        }
    };
    assert!(
        reason.ends_with(":SPAWN-ABANDONED)") || reason.ends_with(":NOPROC)"),
        "{reason}"
    );
    // A stopped peer: sends return at once. 400 messages of 64 KiB fill
    // the socket and the 1 MiB queue; the rest are dropped and counted.
    // Had any send blocked on the socket, it would have returned only when
    // the write timed out and took the connection down: the connection is
    // still up when they have all returned, with b still stopped.
    let payload = Term::Bytes(vec![7; 64 * 1024]);
    support::signal(&b, "STOP");
    let started = Instant::now();
    for _ in 0..400 {
        let _ = send(payload.clone(), &sink);
    }
    let took = started.elapsed();
    assert!(
        connected_to("localhost/b"),
        "sends took {took:?} and the connection went down"
    );
    let dropped = node::connection_stats()
        .iter()
        .find(|s| s.node == "localhost/b")
        .map_or(0, |s| s.dropped);
    assert!(dropped > 0, "a full queue drops and counts");
    eprintln!("400 sends to a stopped peer took {took:?} in all");

    support::signal(&b, "CONT");
    echo_eventually(&echo, "at-the-end");

    // Across kinds and nodes: an async agent here, linked to a thread
    // agent on b, dies with it; and a remote monitor of it is told.
    let remote = node::spawn_on(
        None,
        "b",
        &erlangen::term::read("(receive)").expect("call"),
        &SpawnOptions::new(),
    )
    .expect("spawn remote");
    let watched = remote.clone();
    let local = erlangen::async_agent::spawn_with(
        &SpawnOptions::new().attach(Attach::Monitor),
        async move {
            link(watched, Attach::Link).expect("link");
            // Only the link's exit signal ends this receive early.
            erlangen::async_agent::receive_timeout(support::WAIT)
                .await
                .unwrap_or_else(|_| Term::keyword("never-told"))
        },
    )
    .expect("async agent");
    // The link request is on its way once the agent has run: wait until it
    // appears among the agent's links, then end the remote agent.
    support::eventually("the async agent's link", || {
        !erlangen::management::agent_tree(&local)
            .map(|t| t.links.is_empty())
            .unwrap_or(false)
    });
    erlangen::exit(Term::keyword("gone"), &remote).expect("exit");
    let deadline = Instant::now() + support::WAIT;
    let notice = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = receive_timeout(left).expect("the async agent's end");
        if let Term::Dotted(items, _) = &m {
            if items.first() == Some(&local.to_term()) {
                break m;
            }
        }
    };
    assert_eq!(
        notice,
        Term::dotted(
            vec![local.to_term(), Term::keyword("exit")],
            Term::keyword("gone")
        )
    );
}
