//! W2 ping-pong: `erlangen-message-benchmark [n-messages] [n-pairs]
//! [timeout-seconds]`. Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: erlangen-message-benchmark [n-messages] [n-pairs] [timeout-seconds]
  n-pairs (default 1) pairs of agents ping-pong n-messages (default 1000000)
  messages each, concurrently; prints the time and the aggregate messages per
  second. timeout-seconds defaults to 120.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [messages, pairs, timeout] =
        match erlangen::bench::parse_numbers(&args, &[1_000_000, 1, 120]) {
            Ok(v) => [v[0], v[1], v[2]],
            Err(None) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(Some(e)) => {
                eprintln!("erlangen-message-benchmark: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
    match erlangen::bench::ping_pong(messages, pairs as usize, Duration::from_secs(timeout)) {
        Ok(t) => {
            let s = t.as_secs_f64();
            let total = messages * pairs;
            println!(
                "W2 ping-pong pairs={pairs}: {total} messages in {s:.3} s, {:.0} msgs/s, {:.2} us/msg",
                total as f64 / s,
                s * 1e6 / total as f64
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("erlangen-message-benchmark: {e}");
            ExitCode::from(1)
        }
    }
}
