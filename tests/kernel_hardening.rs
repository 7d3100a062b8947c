//! The kernel's hardening: input it used to choke on, interrupts, nodes
//! that say what they do, and wording. Each test drives the real program.

mod support;

use erlangen::term::AgentRef;
use erlangen::Term;
use support::{kernel_batch, Cluster};

#[test]
fn local_values_and_agents_print_readably() {
    let (status, out, err) = kernel_batch(&[], b"(lambda (x) x)\n(defun twice (x) (* 2 x))\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["#<FUNCTION LAMBDA>", "TWICE"], "{err}");
    assert_eq!(status, Some(0), "{err}");
    // Agent numbers are decimal: 31, not 1F.
    assert_eq!(Term::Agent(AgentRef::Local(31)).to_string(), "#<AGENT 31>");
    let named = erlangen::call::named_function_term("erlangen.examples:twice", |_| Ok(Term::Nil));
    assert_eq!(named.to_string(), "#<FUNCTION ERLANGEN.EXAMPLES:TWICE>");
}

#[test]
fn error_messages_say_what_happened() {
    let input = "\
(unlink (agent))
(car 1 2)
(defun one (x) x)
(one 1 2)
(spawn '(1+ 1) :node \"nowhere\")
(agent-stats \"localhost/elsewhere/0\")
";
    let (status, out, err) = kernel_batch(&[], input.as_bytes());
    let errors: Vec<&str> = err.lines().collect();
    assert_eq!(errors.len(), 5, "out: {out}\nerr: {err}");
    // Batch mode: failed forms make exit status 1 (and it does exit).
    assert_eq!(status, Some(1), "{err}");
    assert!(errors[0].contains("cannot unlink from itself"), "{err}");
    assert!(errors[1].contains("expected 1 argument, got 2"), "{err}");
    assert!(errors[2].contains("expected 1 argument, got 2"), "{err}");
    assert!(errors[3].contains("not a node"), "{err}");
    assert!(errors[4].contains("localhost/elsewhere"), "{err}");
    assert!(!err.contains("exited with reason"), "{err}");
    assert!(!err.contains(" 1 arguments"), "{err}");
}

#[test]
fn agent_stats_accepts_an_id_of_this_node_and_refuses_others() {
    let cluster = Cluster::new("stats-id");
    let mut k = cluster.client("stats-node");
    // Spawning on our own node hands out an id string.
    let id = k.eval("(spawn '(receive) :node \"stats-node\")");
    assert!(id.starts_with("\"localhost/stats-node/"), "{id}");
    let stats = k.eval(&format!("(agent-stats {id})"));
    assert!(stats.starts_with("(:AGENT #<AGENT "), "{stats}");
    let other = k.eval("(agent-stats \"localhost/other-node/0\")");
    assert!(
        other.starts_with("stderr: error:") && other.contains("only on agents of this node"),
        "{other}"
    );
}

/// Runs `program args` with stdout a pipe whose reader is already gone.
fn with_closed_stdout(program: &str, args: &[&str]) -> (Option<i32>, String) {
    // A socket pair stands in for a pipe (std::io::pipe is newer than
    // the crate's minimum Rust): writes to it fail with EPIPE alike.
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    drop(reader);
    let writer = std::os::fd::OwnedFd::from(writer);
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdout(writer)
        .stdin(std::process::Stdio::null());
    let (status, _, err) = support::run_bounded_stdout_set(cmd);
    (status, err)
}

#[test]
fn a_closed_stdout_ends_every_program_quietly() {
    let (status, err) = with_closed_stdout(
        env!("CARGO_BIN_EXE_erlangen-kernel"),
        &["-n", "-b", "-e", "(print 1)", "-e", "(+ 1 2)"],
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status, Some(0), "{err}");
    // The benchmarks' half: tools/tests/programs.rs.
}

#[test]
fn every_program_prints_its_version() {
    for (program, name) in [
        (env!("CARGO_BIN_EXE_erlangen-kernel"), "erlangen-kernel"),
        (
            env!("CARGO_BIN_EXE_erlangen-port-mapper"),
            "erlangen-port-mapper",
        ),
        // The benchmarks: tools/tests/programs.rs.
    ] {
        // `--version` wins over arguments the program would refuse.
        let cmd = {
            let mut c = std::process::Command::new(program);
            c.args(["not-a-number", "--version", "--bogus"]);
            c
        };
        let (status, out, err) = support::run_bounded(cmd, b"");
        assert_eq!(
            out,
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{err}"
        );
        assert_eq!(status, Some(0), "{name}: {err}");
    }
}

#[test]
fn invalid_utf8_is_reported_and_the_session_goes_on() {
    let (status, out, err) = kernel_batch(&[], b"(setq x 1)\n(list \xff 2)\n(+ x 1)\n");
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["1", "2"], "{err}");
    assert!(err.contains("line 2 is not valid UTF-8"), "stderr: {err}");
    assert_eq!(status, Some(1), "{err}");
}

#[test]
fn an_init_file_that_is_not_utf8_is_named() {
    let dir = support::TempDir::new("init-utf8");
    let init = dir.path("init.lisp");
    std::fs::write(&init, b"(setq from-init \"\xff\")\n").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    cmd.arg("-b").env("ERLANGEN_INIT", &init);
    let (status, _, err) = support::run_bounded(cmd, b"");
    assert!(
        err.contains(&init.display().to_string()) && err.contains("UTF-8"),
        "{err}"
    );
    // A skipped init file is said, not a failed form.
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn quit_takes_a_status_anywhere() {
    let (status, out, _) = kernel_batch(&[], b"(print 1)\n(when t (quit 3))\n(print 2)\n");
    assert_eq!(out, "1\n1\n");
    assert_eq!(status, Some(3));
    let (status, _, _) = kernel_batch(&["-e", "(progn (quit 4))"], b"");
    assert_eq!(status, Some(4));
    let (status, _, _) = kernel_batch(&[], b"(defun bye () (quit 5))\n(bye)\n");
    assert_eq!(status, Some(5));
    let (status, _, err) = kernel_batch(&[], b"(quit 300)\n(quit)\n");
    assert!(err.contains("0 to 255"), "{err}");
    assert_eq!(status, Some(0));
}

#[test]
fn defun_cannot_replace_built_ins_or_registered_functions() {
    let input = "\
(defun spawn (x) x)
(defun parallel-map (f v) v)
(defun mine (x) x)
(defun mine (x) (1+ x))
(mine 1)
";
    let (status, out, err) = kernel_batch(&[], input.as_bytes());
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["MINE", "MINE", "2"],
        "{err}"
    );
    assert_eq!(status, Some(1), "{err}");
    let errors: Vec<&str> = err.lines().collect();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(errors[0].contains("SPAWN") && errors[0].contains("cannot be redefined"));
    assert!(errors[1].contains("PARALLEL-MAP"), "{err}");
}

#[test]
fn package_qualified_built_ins_and_print_p() {
    let input = "\
(erlangen:send :hello (erlangen:agent))
(erlangen.management:flush-messages :print-p nil)
(erlangen:send :again (agent))
(erlangen.management:flush-messages)
(erlangen.management:agent-stats)
";
    let (status, out, err) = kernel_batch(&[], input.as_bytes());
    assert_eq!(status, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        [":HELLO", "1", ":AGAIN", ":AGAIN", "1"],
        "{err}"
    );
    assert!(lines[5].starts_with("(:AGENT "), "{out}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn a_second_node_is_an_error() {
    let cluster = Cluster::new("second-node");
    let mut k = cluster.client("only-node");
    let again = k.eval("(spawn '(node :host \"localhost\" :name \"other-name\"))");
    assert!(
        again.starts_with("stderr: error:")
            && again.contains("already the node localhost/only-node"),
        "{again}"
    );
    let direct = k.eval("(node :host \"localhost\" :name \"other-name\")");
    assert!(direct.contains("already the node"), "{direct}");
}

/// A kernel in batch mode without a cluster, killed on drop.
fn kernel(name: &str) -> support::Proc {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    cmd.args(["-n", "-b"]);
    support::Proc::from_command(cmd, name)
}

#[test]
fn a_killed_repl_agent_is_reported_at_once_and_keeps_its_messages() {
    let mut k = kernel("killed");
    assert_eq!(k.eval("(setq keep 7)"), "7");
    assert!(k
        .eval("(setq w (spawn (lambda () (exit (receive))) :attach :link))")
        .starts_with("#<AGENT "));
    assert_eq!(k.eval("(send :waiting (agent))"), ":WAITING");
    k.send("(send :boom w)");
    // Both lines come without further input: the value, then the notice.
    let mut lines = vec![k.line(), k.line()];
    lines.sort();
    assert_eq!(lines[0], ":BOOM");
    assert!(
        lines[1].starts_with("stderr: error: the REPL's agent was killed with reason :BOOM"),
        "{lines:?}"
    );
    assert_eq!(k.eval("keep"), "7");
    assert_eq!(k.eval("(receive :timeout 10)"), ":WAITING");
}

#[test]
fn agents_spawned_at_the_prompt_print_while_the_session_waits() {
    let mut k = kernel("agent-print");
    // The agent prints after the REPL has answered and gone back to reading
    // input: its line must come without more input and before the end.
    assert!(k
        .eval("(setq a (spawn (lambda () (receive) (print :from-the-agent))))")
        .starts_with("#<AGENT "));
    k.send("(send :go a)");
    let lines = [k.line(), k.line()];
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, [":FROM-THE-AGENT", ":GO"], "{lines:?}");
    assert_eq!(k.eval("(+ 1 2)"), "3");
}

#[test]
fn ctrl_c_interrupts_the_form_and_twice_at_the_prompt_leaves() {
    let mut k = kernel("ctrl-c");
    assert_eq!(k.eval("(setq keep 5)"), "5");
    // Blocked in receive with nothing coming.
    assert_eq!(k.eval("(progn (print :blocking) (receive))"), ":BLOCKING");
    support::signal(&k, "INT");
    assert!(k.line().starts_with("stderr: error: interrupted"));
    assert_eq!(k.eval("keep"), "5");
    // A busy loop.
    assert_eq!(
        k.eval("(progn (print :busy) (dotimes (i 1000000000000) (+ i 1)))"),
        ":BUSY"
    );
    support::signal(&k, "INT");
    assert!(k.line().starts_with("stderr: error: interrupted"));
    assert_eq!(k.eval("(+ keep 1)"), "6");
    // At the idle prompt: a hint, then the second press leaves.
    support::signal(&k, "INT");
    assert!(k.line().contains("Ctrl-C again"));
    support::signal(&k, "INT");
    let status = k.wait_exit().expect("kernel exits after a second Ctrl-C");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn a_kernel_serving_as_a_node_says_so() {
    let cluster = Cluster::new("announce");
    let mut k = cluster.kernel(
        "announced",
        &["-e", "(node :host \"localhost\" :name \"announced\")"],
    );
    let up = k.line_matching(|l| l.contains("listening"));
    assert!(
        up.starts_with("stderr: node localhost/announced listening on port "),
        "{up}"
    );
    support::signal(&k, "INT");
    k.line_matching(|l| l == "stderr: node localhost/announced stopped");
    cluster.wait_unregistered("announced");
    // Ctrl-C ends a kernel serving as a node at once, with the status a
    // shell reports for Ctrl-C, and that one line said it all.
    let status = k.wait_exit().expect("the kernel exits");
    assert_eq!(status.code(), Some(130));
    let rest = k.rest_of_output();
    assert!(rest.is_empty(), "{rest:?}");

    // -Q: not a word.
    let mut quiet = cluster.kernel(
        "quiet",
        &["-Q", "-e", "(node :host \"localhost\" :name \"quiet\")"],
    );
    cluster.wait_registered("quiet");
    support::signal(&quiet, "INT");
    cluster.wait_unregistered("quiet");
    let status = quiet.wait_exit().expect("the kernel exits");
    assert_eq!(status.code(), Some(130));
    // Everything it wrote, read to the end of both pipes.
    let rest = quiet.rest_of_output();
    assert!(
        rest.iter().all(|l| !l.contains("node localhost/quiet")),
        "{rest:?}"
    );
}

#[test]
fn a_node_that_cannot_start_ends_the_kernel_with_an_error() {
    let mut cluster = Cluster::new("no-start");
    let _taken = cluster.node("taken");
    let mut second = cluster.kernel(
        "second",
        &["-e", "(node :host \"localhost\" :name \"taken\")"],
    );
    let status = second.wait_exit().expect("kernel exits");
    assert_eq!(status.code(), Some(1));
    let error = second.line_matching(|l| l.starts_with("stderr: error:"));
    assert!(error.contains("cannot start"), "{error}");

    cluster.stop_port_mapper();
    let mut third = cluster.kernel(
        "third",
        &["-e", "(node :host \"localhost\" :name \"lonely\")"],
    );
    let status = third.wait_exit().expect("kernel exits");
    assert_eq!(status.code(), Some(1));
    let error = third.line_matching(|l| l.starts_with("stderr: error:"));
    assert!(error.contains("port mapper"), "{error}");
}

#[test]
fn a_session_function_loops_by_recursion_in_tail_position() {
    // Far past the nesting limit: each tail call reuses the frame.
    let input = "\
(defun count-down (n) (if (= n 0) :done (count-down (- n 1))))
(count-down 100000)
(defun echo () (let ((m (receive))) (send (cdr m) (car m)) (echo)))
(setq e (spawn (lambda () (echo))))
(let ((sum 0)) (dotimes (i 2000) (send (cons (agent) i) e) (setq sum (+ sum (receive :timeout 10)))) sum)
(defun deep (n) (if (= n 0) 0 (+ 1 (deep (- n 1)))))
(deep 100000)
";
    let (status, out, err) = kernel_batch(&[], input.as_bytes());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"COUNT-DOWN"), "out: {out}\nerr: {err}");
    assert_eq!(lines.get(1), Some(&":DONE"), "out: {out}\nerr: {err}");
    assert_eq!(lines.get(4), Some(&"1999000"), "out: {out}\nerr: {err}");
    // A call that is not in tail position still meets the nesting limit,
    // as an error rather than a crash.
    assert!(err.contains("nest"), "out: {out}\nerr: {err}");
    // That error is the one failed form: exit status 1, reached.
    assert_eq!(status, Some(1), "out: {out}\nerr: {err}");
}

#[test]
fn ctrl_c_interrupts_a_tail_recursive_loop() {
    let mut k = kernel("tail-spin");
    assert_eq!(k.eval("(defun spin () (spin))"), "SPIN");
    assert_eq!(k.eval("(progn (print :spinning) (spin))"), ":SPINNING");
    support::signal(&k, "INT");
    assert!(k.line().starts_with("stderr: error: interrupted"));
    assert_eq!(k.eval("(+ 1 2)"), "3");
}

#[test]
fn agents_of_another_node_print_as_ids_that_work_in_the_next_call() {
    let cluster = Cluster::new("ids");
    let _b = cluster.node("ids-b");
    let mut k = cluster.client("ids-a");
    let id = k.eval("(spawn '(receive) :node \"ids-b\")");
    assert!(id.starts_with("\"localhost/ids-b/"), "{id}");
    // The other node's agent tree names it by that id, not by a number of
    // that node's.
    k.send("(agent-tree :node \"ids-b\")");
    let shown = k.line_matching(|l| l.contains("localhost/ids-b/") || l.contains("#<AGENT"));
    assert!(!shown.contains("#<AGENT"), "{shown}");
    k.line_matching(|l| l.trim() == id);
    k.line_matching(|l| l == "NIL");
    // The id works: its stats name it the same way.
    let stats = k.eval(&format!("(agent-stats {id})"));
    assert!(stats.starts_with(&format!("(:AGENT {id}")), "{stats}");
    // (agent-id) gives an agent's id; an id gives itself.
    let mine = k.eval("(agent-id)");
    assert!(mine.starts_with("\"localhost/ids-a/"), "{mine}");
    assert_eq!(k.eval("(agent-id (agent))"), mine);
    assert_eq!(k.eval(&format!("(agent-id {mine})")), mine);
    assert_eq!(k.eval(&format!("(agent-id {id})")), id);
    // An agent that has exited: its node says so.
    assert_eq!(k.eval(&format!("(exit :stop {id})")), "T");
    support::eval_until(
        &mut k,
        &format!("(agent-stats {id})"),
        &format!("stderr: error: agent-stats: {id} has exited"),
    );
}

#[test]
fn agent_id_needs_a_node() {
    let (_, out, err) = kernel_batch(&[], b"(agent-id)\n");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("not a node") && err.contains("(spawn '(node))"),
        "{err}"
    );
}

#[test]
fn an_exit_value_that_cannot_be_sent_arrives_as_a_reason_saying_so() {
    let cluster = Cluster::new("deep-exit");
    let _b = cluster.kernel(
        "deep-b",
        &[
            "-e",
            "(defun deep (n acc) (if (= n 0) acc (deep (1- n) (list acc))))",
            "-e",
            "(node :host \"localhost\" :name \"deep-b\")",
        ],
    );
    cluster.wait_registered("deep-b");
    let mut a = cluster.client("deep-a");
    let id = a.eval("(spawn '(deep 200 nil) :node \"deep-b\" :attach :monitor)");
    assert!(id.starts_with("\"localhost/deep-b/"), "{id}");
    let notice = a.eval("(receive :timeout 20)");
    assert!(
        notice.starts_with(&format!(
            "({id} :EXIT . \"exit values cannot be sent to another node: term nests 128 or more"
        )),
        "{notice}"
    );
}
