//! W2 ping-pong: `erlangen-message-benchmark [n-messages] [n-pairs]
//! [timeout-seconds]`. Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::time::Duration;

const USAGE: &str =
    "usage: erlangen-message-benchmark [--async] [n-messages] [n-pairs] [timeout-seconds]
  n-pairs (default 1) pairs of agents ping-pong n-messages (default 1000000)
  messages each, concurrently; prints the time and the aggregate messages per
  second. timeout-seconds defaults to 120.
  --async runs the same workload on async agents (--mixed: a thread
  pinger and an async ponger); result lines then
  start with \"async \".";

fn main() -> std::process::ExitCode {
    if erlangen::kernel::version_requested("erlangen-message-benchmark") {
        return std::process::ExitCode::SUCCESS;
    }
    erlangen_tools::bench::program(
        "erlangen-message-benchmark",
        USAGE,
        &[1_000_000, 1, 120],
        |a, mode| {
            let (messages, pairs) = (a[0], a[1]);
            let t = erlangen_tools::bench::ping_pong(
                messages,
                pairs as usize,
                Duration::from_secs(a[2]),
                mode,
            )
            .map_err(|e| e.to_string())?;
            let s = t.as_secs_f64();
            let total = messages * pairs;
            erlangen::kernel::print_line(format_args!(
                "{}W2 ping-pong pairs={pairs}: {total} messages in {s:.3} s, {:.0} msgs/s, {:.2} us/msg",
                mode.tag(),
            total as f64 / s,
            s * 1e6 / total as f64
        ));
            Ok(())
        },
    )
}
