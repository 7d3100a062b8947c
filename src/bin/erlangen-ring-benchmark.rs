//! W1 ring: `erlangen-ring-benchmark [n-hops] [n-agents] [timeout-seconds]`.
//! Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: erlangen-ring-benchmark [n-hops] [n-agents] [timeout-seconds]
  One message travels n-hops (default 1000000) around a ring of n-agents
  (default 10) agents; prints the time, messages per second and microseconds
  per hop. timeout-seconds defaults to 120.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hops, agents, timeout] = match erlangen::bench::parse_numbers(&args, &[1_000_000, 10, 120])
    {
        Ok(v) => [v[0], v[1], v[2]],
        Err(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Some(e)) => {
            eprintln!("erlangen-ring-benchmark: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match erlangen::bench::ring(hops, agents as usize, Duration::from_secs(timeout)) {
        Ok(t) => {
            let s = t.as_secs_f64();
            println!(
                "W1 ring n={agents}: {hops} hops in {s:.3} s, {:.0} msgs/s, {:.2} us/hop",
                hops as f64 / s,
                s * 1e6 / hops as f64
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("erlangen-ring-benchmark: {e}");
            ExitCode::from(1)
        }
    }
}
