//! W4 fan-in: `erlangen-fanin-benchmark [n-per-sender] [n-senders]
//! [timeout-seconds]`. Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: erlangen-fanin-benchmark [n-per-sender] [n-senders] [timeout-seconds]
  n-senders (default 4) agents each send n-per-sender (default 1000000) small
  messages to one receiver; prints messages per second received.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [per, senders, timeout] = match erlangen::bench::parse_numbers(&args, &[1_000_000, 4, 120])
    {
        Ok(v) => [v[0], v[1], v[2]],
        Err(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Some(e)) => {
            eprintln!("erlangen-fanin-benchmark: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match erlangen::bench::fan_in(per, senders as usize, Duration::from_secs(timeout)) {
        Ok(t) => {
            let s = t.as_secs_f64();
            let total = per * senders;
            println!(
                "W4 fan-in senders={senders}: {total} messages in {s:.3} s, {:.0} msgs/s",
                total as f64 / s
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("erlangen-fanin-benchmark: {e}");
            ExitCode::from(1)
        }
    }
}
