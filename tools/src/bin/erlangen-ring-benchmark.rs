//! W1 ring: `erlangen-ring-benchmark [n-hops] [n-agents] [timeout-seconds]`.
//! Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::time::Duration;

const USAGE: &str = "usage: erlangen-ring-benchmark [--async] [n-hops] [n-agents] [timeout-seconds]
  One message travels n-hops (default 1000000) around a ring of n-agents
  (default 10) agents; prints the time, messages per second and microseconds
  per hop. timeout-seconds defaults to 120.
  --async runs the same workload on async agents; result lines then
  start with \"async \".";

fn main() -> std::process::ExitCode {
    if erlangen::kernel::version_requested("erlangen-ring-benchmark") {
        return std::process::ExitCode::SUCCESS;
    }
    erlangen_tools::bench::program(
        "erlangen-ring-benchmark",
        USAGE,
        &[1_000_000, 10, 120],
        |a, mode| {
            let (hops, agents) = (a[0], a[1]);
            let t =
                erlangen_tools::bench::ring(hops, agents as usize, Duration::from_secs(a[2]), mode)
                    .map_err(|e| e.to_string())?;
            let s = t.as_secs_f64();
            erlangen::kernel::print_line(format_args!(
                "{}W1 ring n={agents}: {hops} hops in {s:.3} s, {:.0} msgs/s, {:.2} us/hop",
                mode.tag(),
                hops as f64 / s,
                s * 1e6 / hops as f64
            ));
            Ok(())
        },
    )
}
