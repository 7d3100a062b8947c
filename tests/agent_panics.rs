//! An agent's panic is one event-log line on stderr (the agent, where, the
//! message), not the default hook's report; a panic outside agents keeps
//! the default report. The panics happen in a child process (this test
//! binary run again), whose stderr the test reads.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use erlangen::async_agent;
use erlangen::{receive_timeout, spawn_with, Attach, SpawnOptions, Term};

const WAIT: Duration = Duration::from_secs(30);
const CHILD: &str = "ERLANGEN_PANICS_CHILD";

/// In the child: a thread agent and an async agent panic (their monitor
/// hears of it as before), then a plain thread does.
fn child() {
    // The event log takes agent panics once a level is set (or a node
    // starts), as the kernel does at its start.
    erlangen::node::eventlog::set_level(erlangen::node::eventlog::LogLevel::Info);
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let thread = spawn_with(&monitor, || panic!("thread boom")).unwrap();
    let notice = receive_timeout(WAIT).expect("the thread agent's exit notice");
    assert_eq!(
        notice.to_string(),
        format!("({} :EXIT . \"thread boom\")", Term::from(&thread))
    );
    let task = async_agent::spawn_with(&monitor, async {
        async_agent::receive().await;
        panic!("async boom")
    })
    .unwrap();
    task.send(Term::keyword("go"));
    let notice = receive_timeout(WAIT).expect("the async agent's exit notice");
    assert_eq!(
        notice.to_string(),
        format!("({} :EXIT . \"async boom\")", Term::from(&task))
    );
    let plain = std::thread::spawn(|| panic!("outside"));
    assert!(plain.join().is_err());
}

#[test]
fn agent_panics_are_one_event_line_each() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "agent_panics_are_one_event_line_each",
        "--nocapture",
    ])
    .env(CHILD, "1")
    .env("ERLANGEN_LOG", "info")
    .env_remove("RUST_BACKTRACE")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    // Killed (status None) if it outlives support::WAIT.
    let (status, _, stderr) = support::run_bounded_stdout_set(cmd);
    assert_eq!(status, Some(0), "the child failed:\n{stderr}");
    let panics: Vec<&str> = stderr.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(panics.len(), 3, "one line per panic:\n{stderr}");
    for (what, line) in [("thread boom", panics[0]), ("async boom", panics[1])] {
        assert!(
            line.contains(" error ")
                && line.contains(": agent #<AGENT ")
                && line.contains("panicked at tests/agent_panics.rs:")
                && line.ends_with(&format!(": \"{what}\"")),
            "an event line for {what}: {line}"
        );
    }
    assert!(
        panics[2].starts_with("thread '<unnamed>'")
            && panics[2].contains(" panicked at tests/agent_panics.rs:"),
        "the default report outside agents: {}",
        panics[2]
    );
    assert!(stderr.contains("\noutside\n"), "{stderr}");
}
