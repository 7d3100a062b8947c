//! The event log every chaos process appends to: one line per event,
//! `MS NODE KIND FIELDS…`, where MS is milliseconds since the Unix epoch.
//! All namespaces share one kernel clock, so times written by different
//! node processes and by the controller compare directly.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An append-only event file, written unbuffered (a node killed with
/// SIGKILL loses nothing it logged).
pub struct EventLog {
    node: String,
    file: Mutex<File>,
}

impl EventLog {
    pub fn open(path: &Path, node: &str) -> std::io::Result<EventLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EventLog {
            node: node.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Appends `MS NODE KIND REST`.
    pub fn log(&self, kind: &str, rest: &str) {
        let line = format!("{} {} {kind} {rest}\n", now_ms(), self.node);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(line.as_bytes());
    }
}

/// One parsed line of an event file.
#[derive(Debug, Clone)]
pub struct Event {
    pub ms: u64,
    pub node: String,
    pub kind: String,
    pub fields: Vec<String>,
}

impl Event {
    pub fn parse(line: &str) -> Option<Event> {
        let mut parts = line.split_whitespace();
        let ms = parts.next()?.parse().ok()?;
        let node = parts.next()?.to_owned();
        let kind = parts.next()?.to_owned();
        Some(Event {
            ms,
            node,
            kind,
            fields: parts.map(str::to_owned).collect(),
        })
    }

    pub fn field(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", String::as_str)
    }

    /// The value of a `key=value` field.
    pub fn value(&self, key: &str) -> Option<u64> {
        self.fields.iter().find_map(|f| {
            f.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .and_then(|v| v.parse().ok())
        })
    }
}
