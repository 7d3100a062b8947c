//! Distribution across real processes (SPEC sections 2 and 6): a port
//! mapper and kernels as nodes on free ports, driven through stdin. Every
//! node here is a separate OS process, killed when its test ends.

mod support;

use support::{expect, Cluster, Proc};

/// Node B with the helper functions the tests spawn remotely: defuns are
/// registered functions, so other nodes may call them.
fn node_b(cluster: &Cluster, name: &str) -> Proc {
    let check = "(defun check-order (n) (let ((ok t)) (dotimes (i n) (unless (= (receive) i) (setq ok nil))) ok))";
    let echo = "(defun echo () (let ((m (receive))) (send (first m) (second m)) (echo)))";
    let form = format!("(node :host \"localhost\" :name \"{name}\")");
    let p = cluster.kernel(name, &["-e", check, "-e", echo, "-e", &form]);
    cluster.wait_registered(name);
    p
}

fn expect_starts(k: &mut Proc, form: &str, prefix: &str) {
    let out = k.eval(form);
    assert!(out.starts_with(prefix), "{form}: {out}");
}

#[test]
fn remote_spawn_with_monitor_reports_values() {
    let cluster = Cluster::new("spawn");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(spawn '(+ 1 2) :node \"b\" :attach :monitor)",
        "\"localhost/b/0\"",
    );
    expect(&mut a, "(receive :timeout 10)", "(\"localhost/b/0\" :OK 3)");
    let out = a.eval("(spawn '(no-such-function 1) :node \"b\")");
    assert!(out.contains("unknown function NO-SUCH-FUNCTION"), "{out}");
    let out = a.eval("(spawn '(+ 1 2) :node \"no-such-node\")");
    assert!(out.contains("no node named \"no-such-node\""), "{out}");
    // Node b is still fine after both errors.
    expect(
        &mut a,
        "(spawn '(* 2 3) :node \"b\" :attach :monitor)",
        "\"localhost/b/1\"",
    );
    expect(&mut a, "(receive :timeout 10)", "(\"localhost/b/1\" :OK 6)");
}

#[test]
fn ten_thousand_remote_sends_arrive_in_order() {
    let cluster = Cluster::new("order");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq c (spawn '(check-order 10000) :node \"b\" :attach :monitor :mailbox-size 10001))",
        "\"localhost/b/0\"",
    );
    expect(&mut a, "(dotimes (i 10000) (send i c))", "NIL");
    expect(&mut a, "(receive :timeout 20)", "(\"localhost/b/0\" :OK T)");
    let stats = a.eval("(connection-stats)");
    assert!(stats.contains(":DROPPED 0"), "{stats}");
}

/// Round trips (whose replies a sender writes directly, as soon as the
/// peer answered) interleaved with a one-way series (queued behind the
/// writer thread and batched): the series still arrives complete and in
/// order, and every round trip is answered.
#[test]
fn round_trips_between_remote_sends_keep_the_order() {
    let cluster = Cluster::new("mixed");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq c (spawn '(check-order 3001) :node \"b\" :attach :monitor :mailbox-size 3002))",
        "\"localhost/b/0\"",
    );
    expect(
        &mut a,
        "(setq e (spawn '(echo) :node \"b\"))",
        "\"localhost/b/1\"",
    );
    expect(
        &mut a,
        "(let ((ok 0)) (dotimes (j 600) (send (list j (agent)) e) (dotimes (k 5) (send (+ (* j 5) k) c)) (when (eql (receive :timeout 10) j) (setq ok (+ ok 1)))) ok)",
        "600",
    );
    // The last of the series after the last round trip: the monitor's
    // notice cannot come before a reply.
    expect_starts(&mut a, "(send 3000 c)", "3000");
    expect(&mut a, "(receive :timeout 20)", "(\"localhost/b/0\" :OK T)");
    let stats = a.eval("(connection-stats)");
    assert!(stats.contains(":DROPPED 0"), "{stats}");
}

#[test]
fn remote_links_kill_both_ways() {
    let cluster = Cluster::new("links");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    // A local agent linked to a remote one dies when the remote one is
    // killed.
    expect(
        &mut a,
        "(setq r (spawn '(receive) :node \"b\"))",
        "\"localhost/b/0\"",
    );
    let l = a.eval(
        "(setq l (let ((me (agent))) (spawn (lambda () (link r) (send :linked me) (receive)))))",
    );
    assert!(l.starts_with("#<AGENT"), "{l}");
    expect(&mut a, "(link l :monitor)", "T");
    // l's LINK is on the connection before its :LINKED came to us, so b
    // handles it before our EXIT below.
    expect(&mut a, "(receive :timeout 10)", ":LINKED");
    expect(&mut a, "(exit :boom r)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        &format!("({l} :EXIT . :BOOM)"),
    );
    // A remote agent linked to a local one dies when the local one is
    // killed.
    expect(
        &mut a,
        "(setq r2 (spawn '(receive) :node \"b\"))",
        "\"localhost/b/1\"",
    );
    expect(&mut a, "(link r2 :monitor)", "T");
    // l2 links before it receives (where the kill below ends it), so its
    // LINK precedes the EXIT its own end sends to r2.
    let l2 = a.eval("(setq l2 (spawn (lambda () (link r2) (receive))))");
    expect(&mut a, "(exit :boom2 l2)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/1\" :EXIT . :BOOM2)",
    );
    assert!(l2.starts_with("#<AGENT"));
}

#[test]
fn remote_exit_and_notification() {
    let cluster = Cluster::new("exit");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq r (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    expect(&mut a, "(exit :bye r)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/0\" :EXIT . :BYE)",
    );
    // Killing it again, or sending to it, is harmless, and tells nobody
    // again: b answers a later spawn after handling both, so a second
    // notice would arrive before that spawn's own.
    expect(&mut a, "(exit :again r)", "T");
    expect(&mut a, "(send 1 r)", "1");
    expect(
        &mut a,
        "(spawn '(+ 1 1) :node \"b\" :attach :monitor)",
        "\"localhost/b/1\"",
    );
    expect(&mut a, "(receive :timeout 10)", "(\"localhost/b/1\" :OK 2)");
}

#[test]
fn killed_node_is_reported_once_to_every_attached_agent() {
    let cluster = Cluster::new("kill9");
    let mut b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq m (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    expect(
        &mut a,
        "(setq r (spawn '(receive) :node \"b\"))",
        "\"localhost/b/1\"",
    );
    let l = a.eval(
        "(setq l (let ((me (agent))) (spawn (lambda () (link r) (send :linked me) (receive)))))",
    );
    expect(&mut a, "(link l :monitor)", "T");
    expect(&mut a, "(receive :timeout 10)", ":LINKED");
    b.kill();
    let mut got = vec![
        a.eval("(receive :timeout 10)"),
        a.eval("(receive :timeout 10)"),
    ];
    got.sort();
    let mut want = vec![
        "(\"localhost/b/0\" :EXIT :NOCONNECTION \"localhost/b\")".to_owned(),
        format!("({l} :EXIT :NOCONNECTION \"localhost/b\")"),
    ];
    want.sort();
    assert_eq!(got, want);
    // Exactly once: the connection's loss told everyone in one go, and
    // notices come before ordinary messages, so a marker sent now is the
    // next thing received.
    expect(&mut a, "(send :marker (agent))", ":MARKER");
    expect(&mut a, "(receive :timeout 10)", ":MARKER");
}

#[test]
fn silent_node_is_declared_down_by_heartbeat_timeout() {
    let cluster = Cluster::new("sigstop");
    let b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq m (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    // Freeze b: its socket stays open but it sends no heartbeats.
    let pid = b.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let out = a.eval("(receive :timeout 15)");
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert_eq!(
        out,
        "(\"localhost/b/0\" :EXIT :NOCONNECTION \"localhost/b\")"
    );
    drop(b);
}

#[test]
fn restarted_node_makes_old_ids_stale_even_reused_ones() {
    let cluster = Cluster::new("restart");
    let mut b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq old (spawn '(echo) :node \"b\"))",
        "\"localhost/b/0\"",
    );
    b.kill();
    cluster.wait_unregistered("b");
    let _b2 = node_b(&cluster, "b");
    // The new run hands out the very same id string to a new agent...
    expect(
        &mut a,
        "(setq new (spawn '(echo) :node \"b\"))",
        "\"localhost/b/0\"",
    );
    // ...which the new reference reaches,
    expect_starts(&mut a, "(send (list :new (agent)) new)", "(:NEW");
    expect(&mut a, "(receive :timeout 10)", ":NEW");
    // while the old reference, printed the same, reaches nothing: a send
    // is dropped and counted by the receiving node, a monitor is answered
    // with :NOPROC. (Before incarnations in references, the echo answered.)
    expect_starts(&mut a, "(send (list :old (agent)) old)", "(:OLD");
    expect(&mut a, "(link old :monitor)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/0\" :EXIT . :NOPROC)",
    );
    // The :OLD message never came: the :NOPROC notice above came after it
    // would have, and nothing else is queued.
    expect(&mut a, "(flush-messages)", "0");
    // An id typed as text names the current run.
    expect_starts(
        &mut a,
        "(send (list :typed (agent)) \"localhost/b/0\")",
        "(:TYPED",
    );
    expect(&mut a, "(receive :timeout 10)", ":TYPED");
}

#[test]
fn first_monitor_after_a_restart_stays_quiet() {
    let cluster = Cluster::new("restartmon");
    let mut b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq old (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    b.kill();
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/0\" :EXIT :NOCONNECTION \"localhost/b\")",
    );
    cluster.wait_unregistered("b");
    let _b2 = node_b(&cluster, "b");
    // A live agent of the new run, monitored: no :NOCONNECTION for it.
    expect(
        &mut a,
        "(setq live (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    expect(&mut a, "(link live :monitor)", "T");
    // The positive event that must come after any spurious notice: the
    // agent's real exit, told once per monitor... and nothing before it.
    expect(&mut a, "(exit :done live)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/0\" :EXIT . :DONE)",
    );
}

#[test]
fn remote_agent_can_return_its_own_reference() {
    let cluster = Cluster::new("selfref");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(spawn '(agent) :node \"b\" :attach :monitor)",
        "\"localhost/b/0\"",
    );
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/0\" :OK \"localhost/b/0\")",
    );
}

#[test]
fn remote_spawn_beyond_the_agent_ceiling_is_an_error() {
    let cluster = Cluster::new("ceiling");
    let form = "(node :host \"localhost\" :name \"b\")";
    // Node b may run few agent threads: the node agent and a handful.
    let _b = cluster.kernel_with_env("b", &["-e", form], &[("ERLANGEN_MAX_THREADS", "4")]);
    cluster.wait_registered("b");
    let mut a = cluster.client("a");
    let mut refused = None;
    for i in 0..8 {
        let out = a.eval("(spawn '(receive) :node \"b\")");
        if out.contains("error") {
            refused = Some((i, out));
            break;
        }
        assert!(out.starts_with("\"localhost/b/"), "{out}");
    }
    let (i, out) = refused.expect("a spawn beyond the ceiling must fail");
    assert!(out.contains("remote spawn failed"), "{out}");
    assert!(i >= 1, "the first spawns fit: {out}");
    // The connection and node b are fine: the refused agent left no
    // notice behind, and an agent that ends frees a thread for the next.
    expect(&mut a, "(flush-messages)", "0");
    expect_starts(&mut a, "(exit :bye \"localhost/b/0\")", "T");
    let mut started = false;
    for _ in 0..50 {
        let out = a.eval("(spawn '(+ 1 2) :node \"b\" :attach :monitor)");
        if out.starts_with("\"localhost/b/") {
            started = true;
            break;
        }
    }
    assert!(started, "a freed thread takes a new agent");
    let out = a.eval("(receive :timeout 10)");
    assert!(out.ends_with(":OK 3)"), "{out}");
}

#[test]
fn port_mapper_restart_is_survived() {
    let mut cluster = Cluster::new("pmrestart");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq e (spawn '(echo) :node \"b\"))",
        "\"localhost/b/0\"",
    );
    assert!(a
        .eval("(send (list :one (agent)) e)")
        .starts_with("(:ONE #<AGENT"));
    expect(&mut a, "(receive :timeout 10)", ":ONE");
    cluster.stop_port_mapper();
    cluster.start_port_mapper();
    // Both nodes register again.
    cluster.wait_registered("b");
    cluster.wait_registered("a");
    // The existing connection was not affected.
    assert!(a
        .eval("(send (list :two (agent)) e)")
        .starts_with("(:TWO #<AGENT"));
    expect(&mut a, "(receive :timeout 10)", ":TWO");
    let stats = a.eval("(connection-stats)");
    assert!(stats.contains(":ERRORS 0"), "{stats}");
}

#[test]
fn local_only_values_are_refused_at_the_sender() {
    let cluster = Cluster::new("wire");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    expect(
        &mut a,
        "(setq r (spawn '(receive) :node \"b\"))",
        "\"localhost/b/0\"",
    );
    let out = a.eval("(send (lambda () 1) r)");
    assert!(out.contains("cannot be sent to another node"), "{out}");
    expect(&mut a, "(+ 1 1)", "2");
}

#[test]
fn killing_the_node_agent_takes_the_node_down_cleanly() {
    let cluster = Cluster::new("nodestop");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.kernel("a", &[]);
    let n = a.eval("(setq n (spawn '(node :host \"localhost\" :name \"a\") :attach :monitor))");
    assert!(n.starts_with("#<AGENT"), "{n}");
    expect(
        &mut a,
        "(setq r (spawn '(receive) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    expect(&mut a, "(exit :stop n)", "T");
    // The node agent's exit, then the REPL's monitor of the remote agent
    // hears that the connection is gone (the node stopped).
    let mut got = vec![
        a.eval("(receive :timeout 10)"),
        a.eval("(receive :timeout 10)"),
    ];
    got.sort();
    assert_eq!(
        got,
        vec![
            "(\"localhost/b/0\" :EXIT :NOCONNECTION \"localhost/b\")".to_owned(),
            format!("({n} :EXIT . :STOP)"),
        ]
    );
    // Registration dropped; a new node may take the name.
    cluster.wait_unregistered("a");
    let again = a.eval("(spawn '(node :host \"localhost\" :name \"a\"))");
    assert!(again.starts_with("#<AGENT"), "{again}");
    cluster.wait_registered("a");
}

#[test]
fn async_agents_across_nodes() {
    let cluster = Cluster::new("asyncnode");
    let _b = node_b(&cluster, "b");
    let mut a = cluster.client("a");
    // A registered async function spawned on another node is an async
    // agent there, monitored from here like any other.
    expect(
        &mut a,
        "(setq e (spawn '(async-echo) :node \"b\" :attach :monitor))",
        "\"localhost/b/0\"",
    );
    expect_starts(&mut a, "(send (list :hi (agent)) e)", "(:HI");
    expect(&mut a, "(receive :timeout 10)", ":HI");
    expect(&mut a, "(exit :bye e)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        "(\"localhost/b/0\" :EXIT . :BYE)",
    );
    // Linked across kinds and nodes: a thread agent here and an async one
    // on b; the remote one's end kills the local one.
    expect(
        &mut a,
        "(setq e2 (spawn '(async-echo) :node \"b\"))",
        "\"localhost/b/1\"",
    );
    let l = a.eval(
        "(setq l (let ((me (agent))) (spawn (lambda () (link e2) (send :linked me) (receive)) :attach :monitor)))",
    );
    expect(&mut a, "(receive :timeout 10)", ":LINKED");
    expect(&mut a, "(exit :gone e2)", "T");
    expect(
        &mut a,
        "(receive :timeout 10)",
        &format!("({l} :EXIT . :GONE)"),
    );
}
