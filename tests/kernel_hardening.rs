//! The kernel's hardening: input it used to choke on, interrupts, nodes
//! that say what they do, and wording. Each test drives the real program.

mod support;

use erlangen::term::AgentRef;
use erlangen::Term;
use support::{kernel_batch, Cluster};

#[test]
fn local_values_and_agents_print_readably() {
    let (_, out, err) = kernel_batch(&[], b"(lambda (x) x)\n(defun twice (x) (* 2 x))\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["#<FUNCTION LAMBDA>", "TWICE"], "{err}");
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
    let (_, out, err) = kernel_batch(&[], input.as_bytes());
    let errors: Vec<&str> = err.lines().collect();
    assert_eq!(errors.len(), 5, "out: {out}\nerr: {err}");
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
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
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
    let (status, err) = with_closed_stdout(
        env!("CARGO_BIN_EXE_erlangen-ring-benchmark"),
        &["10", "2", "10"],
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn every_program_prints_its_version() {
    for (program, name) in [
        (env!("CARGO_BIN_EXE_erlangen-kernel"), "erlangen-kernel"),
        (
            env!("CARGO_BIN_EXE_erlangen-ring-benchmark"),
            "erlangen-ring-benchmark",
        ),
        (
            env!("CARGO_BIN_EXE_erlangen-message-benchmark"),
            "erlangen-message-benchmark",
        ),
        (
            env!("CARGO_BIN_EXE_erlangen-spawn-benchmark"),
            "erlangen-spawn-benchmark",
        ),
        (
            env!("CARGO_BIN_EXE_erlangen-fanin-benchmark"),
            "erlangen-fanin-benchmark",
        ),
        (
            env!("CARGO_BIN_EXE_erlangen-codec-benchmark"),
            "erlangen-codec-benchmark",
        ),
        (
            env!("CARGO_BIN_EXE_erlangen-remote-benchmark"),
            "erlangen-remote-benchmark",
        ),
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
