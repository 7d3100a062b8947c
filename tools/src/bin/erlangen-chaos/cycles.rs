//! `erlangen-chaos cycles`: starts a node, connects to a target node (a
//! remote spawn of `(chaos-hold)` with a monitor: a full round trip over
//! a new connection), ends it, stops the node, COUNT times. It samples its
//! own threads and descriptors after the first and the last cycle, so a
//! leak on the dialing side shows as well as one on the target's (which
//! the controller samples).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use erlangen::config::Config;
use erlangen::node::{self, NodeOptions};
use erlangen::{exit, receive_timeout, Attach, SpawnOptions, Term};

use crate::Args;

pub struct CycleArgs {
    host: String,
    target: String,
    count: usize,
    dir: PathBuf,
}

impl CycleArgs {
    pub fn parse(args: &Args) -> Result<CycleArgs, String> {
        Ok(CycleArgs {
            host: args.get("host")?.to_owned(),
            target: args.get("target")?.to_owned(),
            count: args.number("count", 1000)?,
            dir: PathBuf::from(args.get("dir")?),
        })
    }
}

/// `(threads, descriptors)` of this process (zeros without `/proc`).
fn own_sample() -> (u64, u64) {
    erlangen::management::process_sample(None).map_or((0, 0), |p| (p.threads, p.descriptors))
}

pub fn run(args: &CycleArgs) -> ExitCode {
    let Some((thost, tname)) = args.target.split_once('/') else {
        eprintln!("cycles: --target must be host/node");
        return ExitCode::from(2);
    };
    let hold = erlangen::term::read("(chaos-hold)").unwrap_or(Term::Nil);
    let mut after_first = (0, 0);
    let mut failures = 0usize;
    for i in 0..args.count {
        // The port mapper frees the name when it sees the last run's
        // registration connection close, which can come a moment after
        // `stop` returned: retry a refused name for a while.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let started = loop {
            match node::start(NodeOptions {
                host: Some(args.host.clone()),
                name: Some("cycler".into()),
                config: Config {
                    cookie_file: args.dir.join("cookie"),
                    ..erlangen::config::default()
                },
                // A tool, not a member: hidden, as remote shells are.
                hidden: true,
                ..NodeOptions::default()
            }) {
                Ok(h) => break Ok(h),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => break Err(e),
            }
        };
        let handle = match started {
            Ok(h) => h,
            Err(e) => {
                eprintln!("cycles: cycle {i}: {e}");
                failures += 1;
                continue;
            }
        };
        let monitor = SpawnOptions::new().attach(Attach::Monitor);
        match node::spawn_on(Some(thost), tname, &hold, &monitor) {
            Ok(remote) => {
                let _ = exit(Term::keyword("done"), &remote);
                // Its notice proves the exit went over the connection and back.
                if receive_timeout(Duration::from_secs(10)).is_err() {
                    failures += 1;
                }
            }
            Err(e) => {
                eprintln!("cycles: cycle {i}: {e}");
                failures += 1;
            }
        }
        handle.stop();
        if i == 0 {
            after_first = own_sample();
        }
    }
    // The last run's threads end a moment after `stop` returns: wait (at
    // most 5 s) for this process to be back where the first cycle left it.
    let settle = std::time::Instant::now() + Duration::from_secs(5);
    let mut last = own_sample();
    while (last.0 > after_first.0 || last.1 > after_first.1) && std::time::Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(20));
        last = own_sample();
    }
    println!(
        "cycles={} failures={failures} dialer_threads_after_first={} after_last={} \
         dialer_fds_after_first={} after_last={}",
        args.count, after_first.0, last.0, after_first.1, last.1
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
