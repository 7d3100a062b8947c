//! Which local agents are attached to agents of a peer, per connection, so
//! that when the connection is lost each of them is told exactly once.
//!
//! The exactly-once rule: an attachment is told either by the peer (a
//! NOTICE or EXIT naming it, which removes it here first) or by the loss of
//! the connection it was made over (which drains the whole table), never
//! both, because both paths remove under one lock and only the one that
//! found the entry tells the agent. An attachment recorded on a connection
//! that is already down is told at once. Attachments belong to one
//! connection, so a connection to a restarted peer (a new incarnation)
//! starts with an empty table: nothing made on it is told of the earlier
//! run's loss.

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::agent::target::RemoteRef;
use crate::agent::{Agent, Outcome, PeerKey};
use crate::term::Term;

/// How a local agent is attached to a remote one, for telling it when the
/// connection is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attachment {
    /// The local agent monitors the remote one: it gets a notification.
    Watching,
    /// Linked both ways, or the remote agent monitors the local one (and
    /// its exit kills it): the local agent gets an exit signal.
    Bound,
}

/// One attachment: the local agent, the remote agent, and how.
pub(crate) struct Entry {
    pub agent: Agent,
    pub remote: RemoteRef,
    pub kind: Attachment,
}

/// (local serial, remote id) → the attachment.
type Table = HashMap<(u64, Arc<str>), Entry>;

/// The attachments made over one connection; `None` once it is down.
#[derive(Default)]
pub(crate) struct Attachments {
    table: Mutex<Option<Table>>,
}

impl Attachments {
    pub(crate) fn new() -> Attachments {
        Attachments {
            table: Mutex::new(Some(HashMap::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Table>> {
        super::lock(&self.table)
    }

    /// Records that local `agent` is attached to `remote` over the
    /// connection to `peer` these attachments belong to; if that
    /// connection is already down, the agent is told at once.
    pub(crate) fn record(&self, peer: &str, agent: &Agent, remote: RemoteRef, kind: Attachment) {
        let entry = Entry {
            agent: agent.clone(),
            remote,
            kind,
        };
        let mut table = self.lock();
        match table.as_mut() {
            Some(t) => {
                t.insert((entry.agent.serial(), Arc::clone(&entry.remote.id)), entry);
            }
            None => {
                drop(table);
                tell_lost(entry, peer);
            }
        }
    }

    /// Removes and returns the attachment of local `serial` to remote `id`.
    pub(crate) fn take(&self, serial: u64, id: &str) -> Option<Entry> {
        let mut table = self.lock();
        table.as_mut()?.remove(&(serial, Arc::from(id)))
    }

    /// Removes and returns the attachment of local `serial` to remote `id`
    /// if it is a monitor of the remote agent (`Watching`); any other
    /// attachment stays as it is.
    pub(crate) fn take_watching(&self, serial: u64, id: &str) -> Option<Entry> {
        let mut table = self.lock();
        match table.as_mut()?.entry((serial, Arc::from(id))) {
            Slot::Occupied(e) if e.get().kind == Attachment::Watching => Some(e.remove()),
            _ => None,
        }
    }

    /// Marks the connection down and returns every attachment, once.
    pub(crate) fn close(&self) -> Vec<Entry> {
        self.lock()
            .take()
            .map(|t| t.into_values().collect())
            .unwrap_or_default()
    }
}

/// The reason given when the connection to `peer` is lost (SPEC 2:
/// "a reason that says the connection was lost").
pub(crate) fn lost_reason(peer: &str) -> Term {
    Term::list(vec![
        Term::keyword("noconnection"),
        Term::Str(peer.to_owned()),
    ])
}

/// Tells the agent of `entry` that the connection to `peer` is lost: an
/// exit notification if it was watching, an exit signal otherwise.
pub(crate) fn tell_lost(entry: Entry, peer: &str) {
    let reason = lost_reason(peer);
    entry
        .agent
        .detach_peer(&PeerKey::Remote(Arc::clone(&entry.remote.id)));
    match entry.kind {
        Attachment::Watching => entry
            .agent
            .notify(Outcome::Exited(reason).notification(entry.remote.to_term())),
        Attachment::Bound => entry.agent.kill(reason),
    }
}
