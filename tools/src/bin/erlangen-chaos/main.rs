//! The multi-host chaos harness's driver (see chaos/netns.sh, which makes
//! the network namespaces and runs `erlangen-chaos run` inside the hub).
//!
//! ```text
//! erlangen-chaos run    --dir D --prefix P --nodes N --bin-dir B
//!                       [--scenario faults|soak|partitions|mailboxes] [--duration-s S]
//!                       [--fault-every-s F] [--agents A] [--interval-ms I] [--burst B]
//!                       [--mailbox M] [--seed X] [--cycles C] [--no-iptables]
//! erlangen-chaos node   --dir D --name NAME --host IP --peers host/node,…
//!                       [--agents A] [--interval-ms I] [--burst B] [--mailbox M]
//!                       [--tick-ms T] [--timeout-ms T]
//! erlangen-chaos cycles --dir D --host IP --target host/node --count C
//! ```
//!
//! `run` is the controller: it starts a port mapper and a node in every
//! namespace, injects the faults, samples every process, and checks the
//! events the nodes log (`DIR/events-*.log`); it prints a report (also
//! `DIR/report.txt`) and exits 0 only if every check held. `node` is one
//! node of the harness (node.rs); `cycles` connects to a node and
//! disconnects, C times (cycles.rs).

mod controller;
mod cycles;
mod events;
mod heap;
mod node;
mod relay;

use std::collections::HashMap;
use std::process::ExitCode;

const USAGE: &str = "usage: erlangen-chaos run|node|cycles --dir D … (see the source's header)";

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// Every option of every command.
const KNOWN: &[&str] = &[
    "burst",
    "mailbox",
    "dir",
    "prefix",
    "nodes",
    "bin-dir",
    "scenario",
    "duration-s",
    "fault-every-s",
    "agents",
    "interval-ms",
    "seed",
    "cycles",
    "no-iptables",
    "tick-ms",
    "timeout-ms",
    "name",
    "host",
    "peers",
    "registry-port",
    "directory-port",
    "target",
    "count",
];

/// `--key value` pairs.
pub struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {a:?}"))?;
            if !KNOWN.contains(&key) {
                return Err(format!("unknown option --{key}"));
            }
            if key == "no-iptables" {
                map.insert(key.to_owned(), "1".to_owned());
                continue;
            }
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_owned(), value.clone());
        }
        Ok(Args(map))
    }

    pub fn get(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn flag(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: {v:?} is not a number")),
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match Args::parse(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("erlangen-chaos: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "node" => node::NodeArgs::parse(&args).map(|a| node::run(&a)),
        "run" => controller::RunArgs::parse(&args).map(|a| controller::run(&a)),
        "cycles" => cycles::CycleArgs::parse(&args).map(|a| cycles::run(&a)),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("erlangen-chaos: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
