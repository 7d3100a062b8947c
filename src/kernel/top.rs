//! `(top)`: a live view of a node, redrawn every second with plain ANSI
//! (clear screen, cursor home) until Enter or Ctrl-C, or `:refreshes n`
//! times (once by default outside the REPL's own evaluation).
//!
//! Each refresh takes a [`snapshot`] (here, or on another node through the
//! `top` query of `manage.rs`) and shows the difference to the one before:
//! agents sorted by mailbox depth, with receive rate and drops;
//! connections with bytes and messages per second each way and drops;
//! node totals (agents, threads, resident memory, uptime).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::args::{getf, string_arg};
use super::input::INPUT_LINES;
use super::manage;
use crate::call::{keyword_args, CallError};
use crate::term::Term;

/// Agents shown at most.
const MAX_AGENTS: usize = 20;

fn int(t: Option<&Term>) -> i64 {
    t.and_then(Term::as_int).unwrap_or(0)
}

fn rate(now: i64, before: Option<i64>, dt: f64) -> String {
    match before {
        Some(b) if dt > 0.0 => format!("{:.1}", (now - b).max(0) as f64 / dt),
        _ => "-".to_owned(),
    }
}

/// The screen for `snap`, with rates against `prev` taken `dt` seconds
/// earlier.
fn render(where_: &str, refresh: usize, snap: &Term, prev: Option<(&Term, f64)>) -> String {
    let mut s = String::new();
    let info = getf(snap, "INFO").cloned().unwrap_or(Term::Nil);
    let shown = |k: &str| getf(&info, k).map_or("?".to_owned(), |v| v.to_string());
    let _ = writeln!(
        s,
        "erlangen top: {where_}  refresh {refresh} (every 1 s; Enter stops)"
    );
    let _ = writeln!(
        s,
        "node: agents {} (thread {}, async {})  threads {}  resident {} kB  uptime {} s",
        shown("AGENTS"),
        shown("THREAD-AGENTS"),
        shown("ASYNC-AGENTS"),
        shown("THREADS"),
        shown("RESIDENT-KB"),
        shown("UPTIME")
    );
    let empty: [Term; 0] = [];
    let items = |t: Option<&Term>, k: &str| -> Vec<Term> {
        t.and_then(|t| getf(t, k))
            .and_then(Term::as_list)
            .unwrap_or(&empty)
            .to_vec()
    };
    let dt = prev.map_or(0.0, |p| p.1);
    let before_agents = items(prev.map(|p| p.0), "AGENTS");
    let mut agents = items(Some(snap), "AGENTS");
    agents.sort_by_key(|a| std::cmp::Reverse(int(a.as_list().and_then(|l| l.get(2)))));
    let _ = writeln!(s, "\nAGENTS (by mailbox depth)");
    let _ = writeln!(
        s,
        "{:<40} {:<14} {:>7} {:>9} {:>8}",
        "AGENT", "NAME", "QUEUED", "RECV/S", "DROPPED"
    );
    for a in agents.iter().take(MAX_AGENTS) {
        let Some([agent, name, queued, received, dropped]) = a.as_list() else {
            continue;
        };
        let key = agent.to_string();
        let old = before_agents
            .iter()
            .filter_map(Term::as_list)
            .find(|l| l.first().is_some_and(|x| x.to_string() == key))
            .and_then(|l| l.get(3))
            .and_then(Term::as_int);
        let name = if name.is_nil() {
            String::new()
        } else {
            name.to_string()
        };
        let _ = writeln!(
            s,
            "{key:<40} {name:<14} {:>7} {:>9} {:>8}",
            queued.to_string(),
            rate(received.as_int().unwrap_or(0), old, dt),
            dropped.to_string()
        );
    }
    if agents.len() > MAX_AGENTS {
        let _ = writeln!(s, "… and {} more", agents.len() - MAX_AGENTS);
    }
    let before_conns = items(prev.map(|p| p.0), "CONNECTIONS");
    let _ = writeln!(s, "\nCONNECTIONS");
    let _ = writeln!(
        s,
        "{:<28} {:<4} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "NODE", "UP", "IN B/S", "OUT B/S", "IN MSG/S", "OUT MSG/S", "QUEUED B", "DROPPED"
    );
    for c in items(Some(snap), "CONNECTIONS") {
        let node = getf(&c, "NODE").map_or(String::new(), |n| {
            n.as_str().map_or_else(|| n.to_string(), str::to_owned)
        });
        let old = before_conns
            .iter()
            .find(|o| getf(o, "NODE").and_then(Term::as_str) == Some(node.as_str()));
        let r = |k: &str| rate(int(getf(&c, k)), old.map(|o| int(getf(o, k))), dt);
        let up = if getf(&c, "CONNECTED").is_some_and(Term::is_true) {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(
            s,
            "{node:<28} {up:<4} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
            r("BYTES-IN"),
            r("BYTES-OUT"),
            r("MESSAGES-IN"),
            r("MESSAGES-OUT"),
            int(getf(&c, "QUEUED-BYTES")),
            int(getf(&c, "DROPPED"))
        );
    }
    s
}

/// `(top &key node refreshes)`.
pub(super) fn top(args: &[Term]) -> Result<Term, CallError> {
    let (_, keys) = keyword_args("top", args, 0, &["NODE", "REFRESHES"])?;
    let node = keys
        .get("NODE")
        .map(|n| string_arg("top", "node", n))
        .transpose()?;
    let interactive = super::eval::on_repl_thread();
    let refreshes = match keys.get("REFRESHES") {
        // Only the REPL's evaluation can be stopped by Enter or Ctrl-C: in
        // an agent (or a remote evaluation) one refresh, not a loop no one
        // can end.
        None if !interactive => Some(1),
        None => None,
        Some(Term::Int(n)) if *n >= 1 => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
        Some(other) => {
            return Err(CallError::bad_arguments(
                "top",
                format!(":refreshes expects a positive integer, got {other}"),
            ))
        }
    };
    let where_ = node
        .clone()
        .or_else(crate::node::this_node)
        .unwrap_or_else(|| "this process (not a node)".to_owned());
    let lines_at_start = INPUT_LINES.load(Ordering::Relaxed);
    let mut prev: Option<(Term, Instant)> = None;
    let mut refresh = 0;
    loop {
        refresh += 1;
        let snap = match &node {
            Some(n) => manage::query(n, "top", Vec::new())?,
            None => manage::snapshot(),
        };
        let screen = render(
            &where_,
            refresh,
            &snap,
            prev.as_ref().map(|(p, at)| (p, at.elapsed().as_secs_f64())),
        );
        super::program::print_line(format_args!("\x1b[H\x1b[2J{}", screen.trim_end()));
        prev = Some((snap, Instant::now()));
        if refreshes.is_some_and(|n| refresh >= n) {
            return Ok(Term::Nil);
        }
        let next = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next {
            if INPUT_LINES.load(Ordering::Relaxed) != lines_at_start
                || (interactive && super::eval::INTERRUPT.load(Ordering::Relaxed))
            {
                return Ok(Term::Nil);
            }
            // A wait that an exit signal ends (Ctrl-C kills the REPL's
            // agent; a killed agent running `(top)` exits here).
            let _ = crate::agent::receive_matching(|_| false, Some(Duration::from_millis(50)));
        }
    }
}
