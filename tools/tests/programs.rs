//! The benchmark programs as programs: `--version`, and a closed stdout
//! (moved here from tests/kernel_hardening.rs with the programs; the
//! kernel's half of each check stayed there).

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// How long one program may take.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `cmd` (stdin empty; stdout piped unless already set) to its end,
/// killing it after [`WAIT`]: (exit code, stdout, stderr).
fn run_bounded(mut cmd: Command, capture_stdout: bool) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    if capture_stdout {
        cmd.stdout(Stdio::piped());
    }
    // A child sees only the ERLANGEN_* variables its test chose.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ERLANGEN_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd.spawn().expect("start program");
    let pid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        // Killed only on timeout, so a recycled pid is never hit.
        if finished.recv_timeout(WAIT).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().expect("program output");
    let _ = done.send(());
    let _ = watchdog.join();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_a_benchmark_quietly() {
    // A socket pair stands in for a pipe (std::io::pipe is newer than
    // the crate's minimum Rust): writes to it fail with EPIPE alike.
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_erlangen-ring-benchmark"));
    cmd.args(["10", "2", "10"])
        .stdout(std::os::fd::OwnedFd::from(writer));
    let (status, _, err) = run_bounded(cmd, false);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn every_benchmark_prints_its_version() {
    for (program, name) in [
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
        (
            env!("CARGO_BIN_EXE_erlangen-seal-benchmark"),
            "erlangen-seal-benchmark",
        ),
    ] {
        // `--version` wins over arguments the program would refuse.
        let mut cmd = Command::new(program);
        cmd.args(["not-a-number", "--version", "--bogus"]);
        let (status, out, err) = run_bounded(cmd, true);
        assert_eq!(
            out,
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{err}"
        );
        assert_eq!(status, Some(0), "{name}: {err}");
    }
}
