//! W3 spawn: `erlangen-spawn-benchmark [n-spawns] [n-alive] [timeout-seconds]`.
//! Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::time::Duration;

const USAGE: &str =
    "usage: erlangen-spawn-benchmark [--async] [n-spawns] [n-alive] [timeout-seconds]
  Spawns n-spawns (default 100000) monitored agents that return at once and
  waits for their exit notifications (prints microseconds per spawn); then
  keeps up to n-alive (default 10000) agents blocked in a receive at once and
  prints how many it reached and the resident memory per agent.
  --async runs the same workload on async agents; result lines then
  start with \"async \".";

fn main() -> std::process::ExitCode {
    if erlangen::kernel::version_requested("erlangen-spawn-benchmark") {
        return std::process::ExitCode::SUCCESS;
    }
    erlangen_tools::bench::program(
        "erlangen-spawn-benchmark",
        USAGE,
        &[100_000, 10_000, 120],
        |a, mode| {
            let f = erlangen_tools::bench::spawn_exit(a[0], a[1], Duration::from_secs(a[2]), mode)
                .map_err(|e| e.to_string())?;
            let s = f.elapsed.as_secs_f64();
            erlangen::kernel::print_line(format_args!(
                "{}W3 spawn: {} spawns+exits in {s:.3} s, {:.2} us/spawn",
                mode.tag(),
                f.count,
                s * 1e6 / f.count.max(1) as f64
            ));
            let mem = f
                .bytes_per_agent
                .map_or("unknown".to_owned(), |b| format!("{b} bytes"));
            erlangen::kernel::print_line(format_args!(
                "{}W3 alive: {} blocked agents at once, resident {mem}/agent",
                mode.tag(),
                f.alive
            ));
            if let Some(limit) = f.limit {
                erlangen::kernel::print_line(format_args!(
                    "{}W3 alive: stopped early: {limit}",
                    mode.tag()
                ));
            }
            Ok(())
        },
    )
}
