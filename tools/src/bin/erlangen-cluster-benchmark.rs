//! Cluster scale: one cluster member, driven by `bench/cluster-scale.py`.
//!
//! `erlangen-cluster-benchmark member --name nK [--seed n0]
//! [--registry-port P] [--directory-port Q] [--cookie-file F]`
//!
//! Starts node `localhost/nK`, contacts the seed (unless it is the seed) and
//! prints event lines on stdout, each with a wall-clock timestamp in
//! nanoseconds since the Unix epoch, flushed at once:
//!
//! - `up NS` once the node is started;
//! - `members COUNT NS` whenever its member count changes (counted from the
//!   `:NODEUP` / `:NODEDOWN` messages of `monitor_nodes`);
//! - `down NODE NS` on each `:NODEDOWN`.
//!
//! It reads commands on stdin, one per line:
//!
//! - `register NAME`: registers a new agent under global NAME, prints
//!   `registered NAME NS` (or `error register NAME why NS`);
//! - `join GROUP`: a new agent joins GROUP, prints `joined GROUP NS`;
//! - `watch-global NAME`, `watch-group GROUP`: prints `watching-global
//!   NAME NS` or `watching-group GROUP NS` as its poller starts, then polls
//!   every 200 µs until the name or a member of the group is visible, and
//!   prints `seen-global NAME NS` or `seen-group GROUP NS`;
//! - `quit` (or the end of stdin): exits.
//!
//! Exit codes: 0 ok, 1 the node could not start, 2 bad arguments.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use erlangen::agent::{self, SpawnOptions};
use erlangen::config::Config;
use erlangen::node::{self, global, groups, NodeOptions};
use erlangen::Term;

const USAGE: &str = "usage: erlangen-cluster-benchmark member --name NAME [--seed NAME] \
[--registry-port P] [--directory-port Q] [--cookie-file F]";
const HOST: &str = "localhost";
const POLL: Duration = Duration::from_micros(200);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Prints one event line with the current timestamp and flushes it.
fn event(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text} {}", now_ns());
    let _ = out.flush();
}

/// An agent that holds a name or a group membership until the process ends.
fn holder() -> Option<agent::Agent> {
    agent::spawn(|| -> () {
        loop {
            agent::receive();
        }
    })
    .ok()
}

/// Subscribes to membership changes in an agent of its own and prints
/// `members` and `down` lines; returns once subscribed.
fn start_monitor() {
    let (ready, subscribed) = mpsc::channel();
    let spawned = agent::spawn_with(&SpawnOptions::new().mailbox_size(1 << 16), move || -> () {
        node::monitor_nodes(false);
        let _ = ready.send(());
        let mut members = BTreeSet::new();
        loop {
            let m = agent::receive();
            let Some(items) = m.as_list() else { continue };
            let (Some(kind), Some(who)) = (
                items.first(),
                items.get(1).and_then(Term::as_str).map(str::to_owned),
            ) else {
                continue;
            };
            let before = members.len();
            if kind.is_keyword("nodeup") {
                members.insert(who);
            } else if kind.is_keyword("nodedown") {
                members.remove(&who);
                event(&format!("down {who}"));
            } else {
                continue;
            }
            if members.len() != before {
                event(&format!("members {}", members.len()));
            }
        }
    });
    if spawned.is_ok() {
        let _ = subscribed.recv_timeout(Duration::from_secs(10));
    }
}

/// Sends to the seed until this node is a member of some cluster.
fn contact(seed: &str) {
    let target = format!("{HOST}/{seed}/:NOBODY");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let _ = agent::send(Term::keyword("hello"), target.as_str());
        let tried = Instant::now();
        while tried.elapsed() < Duration::from_secs(1) {
            if !node::nodes().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    event(&format!("error contact {seed} no-member-after-60s"));
}

fn watch(kind: &'static str, name: String, visible: fn(&str) -> bool) {
    std::thread::spawn(move || {
        // Said before the first look: once the driver has read it, nothing
        // the driver does next can be visible before this poller looks.
        event(&format!("watching-{kind} {name}"));
        while !visible(&name) {
            std::thread::sleep(POLL);
        }
        event(&format!("seen-{kind} {name}"));
    });
}

fn command(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (Some(verb), arg) = (words.next(), words.next()) else {
        return true;
    };
    match (verb, arg) {
        ("quit", _) => return false,
        ("register", Some(name)) => match holder() {
            Some(a) => match global::register(name, &a) {
                Ok(()) => event(&format!("registered {name}")),
                Err(e) => event(&format!("error register {name} {}", one_word(&e))),
            },
            None => event(&format!("error register {name} spawn")),
        },
        ("join", Some(group)) => match holder() {
            Some(a) => match groups::join(group, &a) {
                Ok(()) => event(&format!("joined {group}")),
                Err(e) => event(&format!("error join {group} {}", one_word(&e))),
            },
            None => event(&format!("error join {group} spawn")),
        },
        ("watch-global", Some(name)) => {
            watch("global", name.to_owned(), |n| global::whereis(n).is_some());
        }
        ("watch-group", Some(group)) => {
            watch("group", group.to_owned(), |g| {
                !groups::members(g).is_empty()
            });
        }
        _ => event(&format!("error unknown-command {}", one_word(&line))),
    }
    true
}

fn one_word(what: &dyn std::fmt::Display) -> String {
    what.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
}

fn member(m: &getopts::Matches) -> ExitCode {
    let Some(name) = m.opt_str("name") else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("erlangen-cluster-benchmark: {e}");
            return ExitCode::from(2);
        }
    };
    for (flag, port) in [
        ("registry-port", &mut config.registry_port),
        ("directory-port", &mut config.directory_port),
    ] {
        if let Some(value) = m.opt_str(flag) {
            let Ok(p) = value.parse() else {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            };
            *port = p;
        }
    }
    if let Some(f) = m.opt_str("cookie-file") {
        config.cookie_file = f.into();
    }
    // Subscribed before the node exists, so that no NODEUP is missed.
    start_monitor();
    let seconds = |key: &str| -> Option<Duration> {
        m.opt_str(key)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .map(Duration::from_secs_f64)
    };
    let defaults = NodeOptions::default();
    let _handle = match node::start(NodeOptions {
        host: Some(HOST.into()),
        name: Some(name.clone()),
        config,
        tick: seconds("tick").unwrap_or(defaults.tick),
        timeout: seconds("timeout").unwrap_or(defaults.timeout),
        ..defaults
    }) {
        Ok(h) => h,
        Err(e) => {
            event(&format!("error start {}", one_word(&e)));
            return ExitCode::from(1);
        }
    };
    event("up");
    if let Some(seed) = m.opt_str("seed").filter(|s| *s != name) {
        contact(&seed);
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if !command(&line) {
            break;
        }
    }
    // Exit without running destructors: the other members see a closed
    // connection, as after a stop.
    std::process::exit(0);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = getopts::Options::new();
    opts.optopt("", "name", "node name", "NAME");
    opts.optopt("", "seed", "node to contact first", "NAME");
    opts.optopt("", "registry-port", "port mapper registry port", "PORT");
    opts.optopt("", "directory-port", "port mapper directory port", "PORT");
    opts.optopt("", "cookie-file", "cookie file", "FILE");
    opts.optopt(
        "",
        "tick",
        "heartbeat interval, seconds (default 1)",
        "SECS",
    );
    opts.optopt(
        "",
        "timeout",
        "failure timeout, seconds (default 4)",
        "SECS",
    );
    opts.optflag("h", "help", "print this help");
    opts.optflag("", "version", "print the version");
    let m = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("erlangen-cluster-benchmark: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if m.opt_present("version") {
        println!("erlangen-cluster-benchmark {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if m.opt_present("help") {
        print!("{}", opts.usage(USAGE));
        return ExitCode::SUCCESS;
    }
    match m.free.first().map(String::as_str) {
        Some("member") if m.free.len() == 1 => member(&m),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
