//! Request/reply and the server helper (src/server.rs): replies from
//! thread and async servers to thread and async callers, timeouts, dead
//! callees, a callee on another node that is killed, late replies that
//! never land.

mod support;

use std::time::{Duration, Instant};

use erlangen::node::{self, NodeOptions};
use erlangen::server::{self, RequestError, Server};
use erlangen::{
    async_agent, receive_timeout, spawn_async_with, spawn_with, Agent, Attach, SpawnOptions, Term,
};
use support::{Cluster, WAIT};

/// A server that answers `(:double n)` with 2n and crashes on `:crash`.
fn doubler() -> Server<u64> {
    Server::new(0u64).on_call(|served, request| match request.as_list() {
        Some([op, Term::Int(n)]) if op.is_keyword("DOUBLE") => (Term::from(2 * n), served + 1),
        _ if request.is_keyword("CRASH") => panic!("asked to crash"),
        _ if request.is_keyword("SERVED") => (Term::from(served as i64), served),
        _ => (Term::keyword("what"), served),
    })
}

fn double(n: i64) -> Term {
    Term::list(vec![Term::keyword("double"), n.into()])
}

#[test]
fn replies_from_thread_and_async_servers_to_both_kinds_of_caller() {
    let thread_server = doubler().spawn(&SpawnOptions::new()).unwrap();
    let async_server = doubler().spawn_async(&SpawnOptions::new()).unwrap();
    for s in [&thread_server, &async_server] {
        assert_eq!(
            server::request(s, double(21), WAIT).unwrap(),
            Term::from(42)
        );
    }
    // From an async caller, to both.
    let (t, a) = (thread_server.clone(), async_server.clone());
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let caller = spawn_async_with(&monitor, async move {
        let x = server::request_async(&t, double(1), WAIT).await.unwrap();
        let y = server::request_async(&a, double(2), WAIT).await.unwrap();
        let served = server::request_async(&a, Term::keyword("served"), WAIT)
            .await
            .unwrap();
        Term::list(vec![x, y, served])
    })
    .unwrap();
    let notice = receive_timeout(WAIT).unwrap();
    assert_eq!(
        notice,
        Term::list(vec![
            caller.to_term(),
            Term::keyword("ok"),
            Term::list(vec![2.into(), 4.into(), 2.into()])
        ])
    );
    // Casts and info reach their handlers.
    let tally = Server::new(0i64)
        .on_cast(|n, m| n + m.as_int().unwrap_or(0))
        .on_info(|n, _| n + 100)
        .on_call(|n, _| (Term::from(n), n))
        .spawn_async(&SpawnOptions::new())
        .unwrap();
    server::cast(&tally, 5).unwrap();
    tally.send(Term::keyword("stray"));
    assert_eq!(
        server::request(&tally, Term::Nil, WAIT).unwrap(),
        Term::from(105)
    );
    for s in [thread_server, async_server, tally] {
        erlangen::exit(Term::keyword("done"), &s).unwrap();
    }
}

#[test]
fn a_silent_server_times_out_no_earlier_than_the_timeout() {
    // Takes every message and answers none; gives up by itself after WAIT
    // should the test fail before it ends the agent.
    let silent = spawn_with::<_, ()>(&SpawnOptions::new(), || {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let _ = receive_timeout(left);
        }
    })
    .unwrap();
    let start = Instant::now();
    let result = server::request(&silent, double(1), Duration::from_millis(100));
    assert!(
        matches!(result, Err(RequestError::Timeout(_))),
        "{result:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(result.unwrap_err().reason(), Term::keyword("timeout"));
    erlangen::exit(Term::keyword("done"), &silent).unwrap();
}

#[test]
fn a_dead_callee_is_an_error_at_once_not_a_timeout() {
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let server = doubler().spawn(&monitor).unwrap();
    erlangen::exit(Term::keyword("stop"), &server).unwrap();
    let notice = receive_timeout(WAIT).unwrap();
    assert!(notice.to_string().ends_with(":EXIT . :STOP)"), "{notice}");
    // A timeout of an hour: an answer within the test's WAIT can only be
    // the monitor's, and it says NOPROC, not TIMEOUT.
    let hour = Duration::from_secs(3600);
    let result = server::request(&server, double(1), hour);
    assert!(
        matches!(result, Err(RequestError::NoProc { .. })),
        "{result:?}"
    );
    // Unknown names too.
    let result = server::request(":no-such-server", double(1), hour);
    assert!(
        matches!(result, Err(RequestError::NoProc { .. })),
        "{result:?}"
    );
    // A callee that dies during the call: its reason.
    let crashing = doubler().spawn_async(&SpawnOptions::new()).unwrap();
    let result = server::request(&crashing, Term::keyword("crash"), hour);
    match result {
        Err(RequestError::Exited { reason, .. }) => {
            assert_eq!(reason, Term::Str("asked to crash".into()))
        }
        other => panic!("expected an exit, got {other:?}"),
    }
}

/// The callee replies after the caller's timeout: neither the reply nor the
/// monitor's notice ever lands in the caller's mailbox.
#[test]
fn a_late_reply_never_lands() {
    // Replies to each request once the next message (a go) comes.
    let slow = spawn_async_with(&SpawnOptions::new(), async {
        let Ok(request) = async_agent::receive_timeout(WAIT).await else {
            return Term::keyword("no-request");
        };
        let _go = async_agent::receive_timeout(WAIT).await;
        if let Some([_, from, _]) = request.as_list() {
            server::reply(from, Term::keyword("late"));
        }
        // Ends after replying, so the notice would come too if it could.
        Term::keyword("bye")
    })
    .unwrap();
    let result = server::request(&slow, double(1), Duration::from_millis(50));
    assert!(
        matches!(result, Err(RequestError::Timeout(_))),
        "{result:?}"
    );
    // Now let it reply, and wait until it has ended (and so replied).
    erlangen::link(&slow, Attach::Monitor).unwrap();
    slow.send(Term::keyword("go"));
    let notice = receive_timeout(WAIT).unwrap();
    assert!(notice.to_string().ends_with(":OK :BYE)"), "{notice}");
    // A marker sent to myself is the next message: nothing from the call
    // came before it.
    let me = Agent::current();
    me.send(Term::keyword("marker"));
    assert_eq!(receive_timeout(WAIT), Ok(Term::keyword("marker")));
    assert_eq!(receive_timeout(Duration::ZERO), Err(erlangen::Timeout));
}

/// A callee on another node whose process is killed (SIGKILL): the call
/// fails with a connection error, not a timeout. The only test of this
/// binary that makes this process a node (a process is one node at most).
#[test]
fn a_remote_callee_replies_and_its_nodes_death_is_a_connection_error() {
    let cluster = Cluster::new("server");
    let _node = node::start(NodeOptions {
        host: Some("localhost".into()),
        name: Some(format!("server-test-{}", std::process::id())),
        config: erlangen::config::Config {
            registry_port: cluster.registry_port,
            directory_port: cluster.directory_port,
            cookie_file: cluster.cookie_file(),
        },
        ..NodeOptions::default()
    })
    .unwrap();
    // The peer: a kernel node with a server written in Lisp that speaks
    // the wire shape: (:CALL (from tag) request) -> (:REPLY tag request).
    let echo = "(defun echo-server () (let ((m (receive))) \
                (send (list :reply (second (second m)) (third m)) (first (second m))) \
                (echo-server)))";
    let silent_server = "(defun silent-server () (receive) (print \"request-arrived\") (receive))";
    let mut peer = cluster.kernel(
        "peer",
        &[
            "-e",
            echo,
            "-e",
            silent_server,
            "-e",
            "(node :host \"localhost\" :name \"peer\")",
        ],
    );
    cluster.wait_registered("peer");
    let call = erlangen::term::read("(echo-server)").unwrap();
    let id = node::spawn_on(None, "peer", &call, &SpawnOptions::new()).unwrap();
    assert_eq!(
        server::request(&id, Term::keyword("ping"), WAIT).unwrap(),
        Term::keyword("ping")
    );
    // A server that never answers (it says on the peer's stdout that the
    // request has arrived, then waits for ever), then the node's death
    // mid-call: killed only once the request is there, so the caller is
    // blocked in the call, not refused at its start.
    let silent = node::spawn_on(
        None,
        "peer",
        &erlangen::term::read("(silent-server)").unwrap(),
        &SpawnOptions::new(),
    )
    .unwrap();
    let me = Agent::current();
    let caller = spawn_with(&SpawnOptions::new(), move || {
        let result = server::request(&silent, Term::keyword("ping"), Duration::from_secs(3600));
        me.send(Term::Str(format!("{result:?}")));
    })
    .unwrap();
    peer.line_matching(|l| l.contains("request-arrived"));
    peer.kill();
    let result = receive_timeout(WAIT).unwrap();
    assert!(result.to_string().contains("NoConnection"), "{result}");
    drop(caller);
    // And a call to the dead node's agent now: at once, a connection error.
    let result = server::request(&id, Term::keyword("ping"), Duration::from_secs(3600));
    assert!(
        matches!(result, Err(RequestError::NoConnection { .. })),
        "{result:?}"
    );
}
