//! The kernel program driven through stdin in batch mode: SPEC section 8's
//! two walkthroughs as typed, and errors at the prompt.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Cluster, WAIT};

/// Runs the kernel on `input` to the end and returns (status, stdout, stderr).
fn batch(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"))
        .args(["-n", "-b"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kernel");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write input");
    // Bounded wait: kill the kernel if it has not finished in time (and
    // only then, so a recycled pid is never hit).
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(WAIT).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().expect("kernel output");
    let _ = done.send(());
    let _ = watchdog.join();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn local_walkthrough_prints_the_mapped_vector() {
    let (status, out, err) = batch(
        &[],
        "(spawn '(parallel-map 1+ #(2 4 6 8 10 12 14) :level 3) :attach :monitor)\n(receive)\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "stdout: {out}\nstderr: {err}");
    assert!(lines[0].starts_with("#<AGENT "));
    let agent = lines[0];
    assert_eq!(lines[1], format!("({agent} :OK #(3 5 7 9 11 13 15))"));
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn distributed_walkthrough_prints_the_remote_id() {
    let cluster = Cluster::new("walkthrough");
    let _map_node = cluster.node("map-node");
    let mut first = cluster.kernel("first kernel", &[]);
    first.send("(spawn '(node :host \"localhost\"))");
    assert!(first.line().starts_with("#<AGENT "));
    first.send("(spawn '(erlangen.examples:parallel-map 1+ #(2 4 6 8 10 12 14))");
    first.send("       :attach :monitor");
    first.send("       :node \"map-node\")");
    assert_eq!(first.line(), "\"localhost/map-node/0\"");
    first.send("(receive)");
    assert_eq!(
        first.line(),
        "(\"localhost/map-node/0\" :OK #(3 5 7 9 11 13 15))"
    );
}

#[test]
fn errors_at_the_prompt_leave_the_session_intact() {
    let input = "\
(setq keep 42)
(foo 1 2)
(1+ 1 2)
(1+ \"x\")
(receive :timeout 0.05)
)
(spawn '(1+ 1) :node \"nowhere\")
(exit :oops (agent))
keep
(+ keep 1)
(list 1
  2 3)
";
    let (status, out, err) = batch(&[], input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["42", "42", "43", "(1 2 3)"], "stderr: {err}");
    let errors: Vec<&str> = err.lines().collect();
    assert!(errors[0].contains("unknown function FOO"), "{err}");
    assert!(errors[1].contains("expected 1 argument, got 2"), "{err}");
    assert!(errors[2].contains("expected a number"), "{err}");
    assert!(
        errors[3].contains("timed out waiting for a message"),
        "{err}"
    );
    assert!(
        errors[4].contains("unbalanced ')'") && errors[4].contains("line 1"),
        "{err}"
    );
    assert!(errors[5].contains("not a node"), "{err}");
    assert!(
        errors[6].contains("agent exited with reason :OOPS"),
        "{err}"
    );
    assert_eq!(errors.len(), 7, "{err}");
    // Batch mode reports that forms failed.
    assert_eq!(status, Some(1));
}

#[test]
fn unbalanced_input_at_end_is_reported() {
    let (_, out, err) = batch(&[], "(list 1 2\n");
    assert!(out.is_empty());
    assert!(err.contains("end of input"), "{err}");
}

#[test]
fn eval_flags_run_in_order_and_help_works() {
    let (status, out, _) = batch(&["-e", "(setq x 5)", "-e", "(* x 2)"], "(1+ x)\n");
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["5", "10", "6"]);
    assert_eq!(status, Some(0));
    let help = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"))
        .arg("-h")
        .output()
        .expect("kernel -h");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--registry-port") && text.contains("-e, --eval"),
        "{text}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"))
        .arg("--bogus")
        .stdin(Stdio::null())
        .output()
        .expect("kernel --bogus");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn remote_node_that_is_down_is_a_clear_error() {
    let cluster = Cluster::new("down");
    let mut gone = cluster.node("gone-node");
    let mut k = cluster.client("asker");
    assert_eq!(
        k.eval("(spawn '(1+ 1) :node \"gone-node\")"),
        "\"localhost/gone-node/0\""
    );
    gone.kill();
    cluster.wait_unregistered("gone-node");
    let out = k.eval("(spawn '(1+ 1) :node \"gone-node\")");
    assert!(out.contains("unreachable") || out.contains("lost"), "{out}");
    // The session goes on.
    assert_eq!(k.eval("(+ 1 1)"), "2");
}

#[test]
fn init_file_runs_unless_n() {
    let dir = support::TempDir::new("init");
    let init = dir.path("init.lisp");
    std::fs::write(&init, "(setq from-init 7) ; set by the init file\n").unwrap();
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"))
            .args(args)
            .env("ERLANGEN_INIT", &init)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kernel");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"from-init\n")
            .expect("input");
        let out = child.wait_with_output().expect("output");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (out, _) = run(&["-b"]);
    assert_eq!(out.trim(), "7");
    let (out, err) = run(&["-b", "-n"]);
    assert!(
        out.is_empty() && err.contains("unbound variable FROM-INIT"),
        "{out} {err}"
    );
}
