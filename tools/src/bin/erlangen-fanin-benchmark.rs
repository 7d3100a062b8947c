//! W4 fan-in: `erlangen-fanin-benchmark [n-per-sender] [n-senders]
//! [timeout-seconds]`. Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::time::Duration;

const USAGE: &str =
    "usage: erlangen-fanin-benchmark [--async] [n-per-sender] [n-senders] [timeout-seconds]
  n-senders (default 4) agents each send n-per-sender (default 1000000) small
  messages to one receiver; prints messages per second received.
  --async runs the same workload on async agents; result lines then
  start with \"async \".";

fn main() -> std::process::ExitCode {
    if erlangen::kernel::version_requested("erlangen-fanin-benchmark") {
        return std::process::ExitCode::SUCCESS;
    }
    erlangen_tools::bench::program(
        "erlangen-fanin-benchmark",
        USAGE,
        &[1_000_000, 4, 120],
        |a, mode| {
            let (per, senders) = (a[0], a[1]);
            let t = erlangen_tools::bench::fan_in(
                per,
                senders as usize,
                Duration::from_secs(a[2]),
                mode,
            )
            .map_err(|e| e.to_string())?;
            let s = t.as_secs_f64();
            let total = per * senders;
            erlangen::kernel::print_line(format_args!(
                "{}W4 fan-in senders={senders}: {total} messages in {s:.3} s, {:.0} msgs/s",
                mode.tag(),
                total as f64 / s
            ));
            Ok(())
        },
    )
}
