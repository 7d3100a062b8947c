//! The event log: one line per connection event on stderr (connected,
//! reconnected, handshake refused and why, peer down and why, name
//! registered and released), each with a UTC timestamp, filtered by a
//! process-wide [`LogLevel`].
//!
//! A line reads `2024-05-01T12:00:00.123Z info localhost/a: connected to
//! localhost/b (incarnation 1234)`. The level is what [`set_level`] set,
//! else `ERLANGEN_LOG`, else `info`.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

pub use crate::config::LogLevel;

/// `UNSET` until a level is set or read from the environment.
const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

fn from_u8(n: u8) -> LogLevel {
    match n {
        0 => LogLevel::Off,
        1 => LogLevel::Error,
        2 => LogLevel::Warn,
        4 => LogLevel::Debug,
        _ => LogLevel::Info,
    }
}

/// Sets the level for this process. From then on a spawned agent's panic
/// is an event line too (see [`route_agent_panics`]).
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    route_agent_panics();
}

/// Makes a spawned agent's panic one event line at `error`, `error
/// host/node: agent #<AGENT 1F> panicked at src/x.rs:3:5: "boom"`, instead
/// of Rust's panic report (done when a node starts or a level is set).
pub fn route_agent_panics() {
    crate::agent::report_panics_with(|line| {
        // Without waiting on the node's lock: the panicking thread may
        // hold it.
        let node = super::this_node_now().unwrap_or_else(|| "-".to_owned());
        event(LogLevel::Error, &node, line);
    });
}

/// The level in force: what [`set_level`] set, else `ERLANGEN_LOG` (a bad
/// value means the default), else [`LogLevel::Info`].
pub fn level() -> LogLevel {
    let n = LEVEL.load(Ordering::Relaxed);
    if n != UNSET {
        return from_u8(n);
    }
    let level = LogLevel::from_env()
        .ok()
        .flatten()
        .unwrap_or(LogLevel::Info);
    let _ = LEVEL.compare_exchange(UNSET, level as u8, Ordering::Relaxed, Ordering::Relaxed);
    from_u8(LEVEL.load(Ordering::Relaxed))
}

/// Whether lines at `level` are written.
pub fn enabled(level: LogLevel) -> bool {
    level != LogLevel::Off && level <= self::level()
}

/// Writes one event line for node `node` if `level` is enabled. A failed
/// write of stderr is ignored (the log must never stop a node).
pub(crate) fn event(level: LogLevel, node: &str, message: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "{} {} {node}: {message}\n",
        crate::time::iso8601(SystemTime::now()),
        level.name()
    );
    // Not through `std::io::stderr()`: a program may hold its lock (to
    // write several lines together), and a node thread must never wait
    // for it. A duplicate of descriptor 2 takes no lock; one `write` per
    // line keeps lines whole.
    static STDERR: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let file = STDERR.get_or_init(|| {
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
    });
    if let Some(mut file) = file.as_ref() {
        let _ = file.write_all(line.as_bytes());
    }
}

/// `true` the first time this process connects to `peer` (later
/// connections are logged as reconnections).
pub(crate) fn first_connection(peer: &str) -> bool {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    let mut seen = super::lock(&SEEN);
    seen.get_or_insert_with(Default::default)
        .insert(peer.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_parse() {
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Info < LogLevel::Debug);
        assert_eq!("WARN".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert!("loud".parse::<LogLevel>().is_err());
    }
}
