//! The remote benchmark program (two nodes, two processes) runs its
//! workloads on both kinds of agents, small. (The local workloads run in
//! every mode in `src/bench.rs`'s unit test.) No figure is checked.

mod support;

use std::process::Command;

#[test]
fn the_remote_benchmark_runs_on_thread_and_async_agents() {
    for (flag, tag) in [("--thread", ""), ("--async", "async ")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_erlangen-remote-benchmark"));
        if flag == "--async" {
            cmd.arg(flag);
        }
        cmd.args(["200", "2000", "20"]);
        let (status, out, err) = support::run_bounded(cmd, b"");
        assert_eq!(status, Some(0), "{flag}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{flag}: {out}");
        assert!(
            lines[0].starts_with(&format!("{tag}W5 round trip: 200 round trips in ")),
            "{flag}: {out}"
        );
        assert!(
            lines[1].starts_with(&format!("{tag}W5 stream: 2000 messages in ")),
            "{flag}: {out}"
        );
    }
}
