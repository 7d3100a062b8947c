//! Operating a cluster: the event log, remote management from any REPL,
//! and `(top)` through a pipe.
mod support;

use std::process::Command;

use support::{Cluster, Proc};

/// A kernel node with the event log at info.
fn logging_node(cluster: &Cluster, name: &str) -> Proc {
    let form = format!("(node :host \"localhost\" :name \"{name}\")");
    let p = cluster.kernel(name, &["--log-level", "info", "-e", &form]);
    cluster.wait_registered(name);
    p
}

#[test]
fn the_event_log_shows_connect_wrong_cookie_and_a_killed_peer() {
    let cluster = Cluster::new("eventlog");
    let mut a = logging_node(&cluster, "log-a");
    let registered = a.line_matching(|l| l.contains("info localhost/log-a: name log-a registered"));
    assert!(
        registered.starts_with("stderr: 20"),
        "a timestamp first: {registered}"
    );
    // Connect.
    let mut b = cluster.client("log-b");
    let id = b.eval("(spawn '(receive) :node \"log-a\")");
    assert!(id.starts_with("\"localhost/log-a/"), "{id}");
    a.line_matching(|l| l.contains("info localhost/log-a: connected to localhost/log-b"));
    // A node whose cookie differs is refused, and the log says why.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    cmd.args(["-n", "-b", "--registry-port"])
        .arg(cluster.registry_port.to_string())
        .arg("--directory-port")
        .arg(cluster.directory_port.to_string())
        .arg("--cookie-file")
        .arg(cluster.dir.path("other-cookie"));
    let mut intruder = Proc::from_command(cmd, "intruder");
    let up = intruder.eval("(spawn '(node :host \"localhost\" :name \"log-intruder\"))");
    assert!(up.starts_with("#<AGENT"), "{up}");
    intruder.send("(spawn '(receive) :node \"log-a\")");
    let refused = a.line_matching(|l| l.contains("warn localhost/log-a: handshake from"));
    assert!(refused.contains("refused"), "{refused}");
    // kill -9 of a connected peer.
    b.kill();
    a.line_matching(|l| l.contains("warn localhost/log-a: peer localhost/log-b down:"));
}

#[test]
fn batch_kernels_and_quiet_kernels_keep_stderr_for_errors() {
    let cluster = Cluster::new("eventlog-quiet");
    // A batch kernel (-b: no event log by default), a quiet one (-Q, which
    // beats ERLANGEN_LOG), and for contrast a batch kernel that
    // ERLANGEN_LOG asks to log: each a node monitoring an agent on a peer
    // that is then killed, an event logged at warn.
    let node = |name: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut k = cluster.kernel_with_env(name, args, env);
        let out = k.eval(&format!(
            "(spawn '(node :host \"localhost\" :name \"{name}\"))"
        ));
        assert!(out.starts_with("#<AGENT"), "{name}: node start: {out}");
        k
    };
    let mut batch = node("quiet-b", &[], &[]);
    let mut quiet = node("quiet-q", &["-Q"], &[("ERLANGEN_LOG", "info")]);
    let mut logging = node("quiet-l", &[], &[("ERLANGEN_LOG", "warn")]);
    let mut peer = cluster.client("quiet-p");
    for k in [&mut batch, &mut quiet, &mut logging] {
        let id = k.eval("(spawn '(receive) :node \"quiet-p\" :attach :monitor)");
        assert!(id.starts_with("\"localhost/quiet-p/"), "{}: {id}", k.name);
    }
    peer.kill();
    for k in [&mut batch, &mut quiet, &mut logging] {
        // The notice (stdout) comes after the node logged the loss, if it
        // logs; then an error, on stderr behind whatever was logged.
        k.send("(receive :timeout 20)");
        k.send("(car 1)");
        let mut stderr = Vec::new();
        let notice = loop {
            let line = k.line();
            match line.strip_prefix("stderr: ") {
                Some(l) => stderr.push(l.to_owned()),
                None => break line,
            }
        };
        assert!(notice.contains(":NOCONNECTION"), "{}: {notice}", k.name);
        while !stderr.iter().any(|l| l.starts_with("error:")) {
            let line = k.line_matching(|l| l.starts_with("stderr: "));
            stderr.push(line["stderr: ".len()..].to_owned());
        }
        if k.name == "quiet-l" {
            assert!(
                stderr
                    .iter()
                    .any(|l| l.contains("warn localhost/quiet-l: peer localhost/quiet-p down:")),
                "the logging kernel logs the loss: {stderr:?}"
            );
        } else {
            assert_eq!(
                stderr.len(),
                1,
                "{}: the only line on stderr is the error: {stderr:?}",
                k.name
            );
        }
        // And stdout still carries the values.
        assert_eq!(k.eval("(+ 1 2)"), "3", "{}", k.name);
    }
}

#[test]
fn remote_management_against_a_live_and_a_dead_node() {
    let cluster = Cluster::new("remote-mgmt");
    let mut target = cluster.node("mg-target");
    let mut k = cluster.client("mg-asker");
    let id = k.eval("(spawn '(receive) :node \"mg-target\")");
    assert!(id.starts_with("\"localhost/mg-target/"), "{id}");
    let stats = k.eval(&format!("(agent-stats {id})"));
    assert!(
        stats.starts_with("(:AGENT \"localhost/mg-target/"),
        "{stats}"
    );
    assert!(stats.contains(":KIND :THREAD"), "{stats}");
    let info = k.eval("(node-info :node \"mg-target\")");
    assert!(
        info.starts_with("(:NODE \"localhost/mg-target\" :INCARNATION "),
        "{info}"
    );
    assert!(info.contains(":RESIDENT-KB "), "{info}");
    for counter in [
        ":THROTTLED 0",
        ":REFUSED-HANDSHAKES 0",
        ":SLOTS-FULL 0",
        ":CONNECTION-ERRORS 0",
    ] {
        assert!(info.contains(counter), "{counter} in {info}");
    }
    let conns = k.eval("(connection-stats :node \"mg-target\")");
    assert!(
        conns.contains(":NODE \"localhost/mg-asker\" :CONNECTED T"),
        "{conns}"
    );
    // Bytes queued for the peer: named so, unlike agent-stats' :QUEUED
    // (messages).
    assert!(conns.contains(":QUEUED-BYTES "), "{conns}");
    k.send("(agent-tree :node \"mg-target\")");
    let tree_end = k.line_matching(|l| l == "NIL" || l.starts_with("stderr:"));
    assert_eq!(tree_end, "NIL");
    let nodes = k.eval("(nodes)");
    assert!(
        nodes.contains("(:NODE \"localhost/mg-target\" :INCARNATION "),
        "{nodes}"
    );
    assert!(nodes.contains(":RTT-MS "), "{nodes}");
    // The target dies: every function says so.
    target.kill();
    cluster.wait_unregistered("mg-target");
    for form in [
        "(node-info :node \"mg-target\")".to_owned(),
        "(connection-stats :node \"mg-target\")".to_owned(),
        "(agent-tree :node \"mg-target\")".to_owned(),
        format!("(agent-stats {id})"),
    ] {
        let error = k.eval(&form);
        assert!(
            error.starts_with("stderr: error:") && error.contains("localhost/mg-target"),
            "{form}: {error}"
        );
        assert!(error.contains("cannot be asked"), "{form}: {error}");
    }
}

#[test]
fn top_refreshes_through_a_pipe() {
    let cluster = Cluster::new("top");
    let _target = cluster.node("top-target");
    let mut k = cluster.client("top-viewer");
    k.eval("(spawn '(receive) :node \"top-target\")");
    for form in [
        "(top :refreshes 2)",
        "(top :node \"top-target\" :refreshes 2)",
    ] {
        k.send(form);
        for refresh in 1..=2 {
            let header = k.line_matching(|l| l.contains("erlangen top:"));
            assert!(header.starts_with("\u{1b}[H\u{1b}[2J"), "{header}");
            assert!(header.contains(&format!("refresh {refresh}")), "{header}");
            let totals = k.line();
            assert!(totals.starts_with("node: agents "), "{totals}");
            k.line_matching(|l| l.starts_with("AGENT "));
            k.line_matching(|l| l.starts_with("NODE "));
        }
        k.line_matching(|l| l == "NIL");
    }
}

#[test]
fn top_stops_for_ctrl_c_and_runs_once_outside_the_repl() {
    let cluster = Cluster::new("top-stop");
    // Outside the REPL (here a remote shell's session on the target, which
    // nothing can interrupt): one refresh, then the value.
    let _target = cluster.node("top-once");
    let mut sh = cluster.kernel("top shell", &["--remote", "localhost/top-once"]);
    sh.send("(list (top))");
    sh.line_matching(|l| l.contains("erlangen top:") && l.contains("refresh 1"));
    sh.line_matching(|l| l == "(NIL)");
    // At the REPL: refreshes until Ctrl-C.
    let mut k = cluster.kernel("top-stop", &[]);
    k.send("(top)");
    k.line_matching(|l| l.contains("erlangen top:") && l.contains("refresh 2"));
    support::signal(&k, "INT");
    k.line_matching(|l| l.contains("interrupted (Ctrl-C)"));
    k.send("(+ 1 2)");
    k.line_matching(|l| l == "3");
}
