//! Requests from peers: what a node does with each frame it reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::attachments::Attachment;
use super::connection::{Connection, Dispatch};
use super::protocol::{self, Request};
use super::{lock, NodeState};
use crate::agent::target::{self, RemoteRef, Resolved};
use crate::agent::{self, Agent, Outcome, Peer, PeerKey, RemoteError, SpawnOptions};
use crate::call;
use crate::term::{self, AgentRef, Term};

/// The node as its connections and the agent layer reach it: the one way
/// in (`Dispatch` for frames read, `Remote` for agents of other nodes).
pub(crate) struct Route(pub(super) Arc<NodeState>);

/// The mailbox size a SPAWN request gets: 0 asks for the default; a peer's
/// `u32` is clamped to [`protocol::MAX_REMOTE_MAILBOX`], not trusted.
fn remote_mailbox_size(requested: u32) -> usize {
    match requested {
        0 => agent::DEFAULT_MAILBOX_SIZE,
        n => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(protocol::MAX_REMOTE_MAILBOX),
    }
}

/// The reason an orphan of a remote spawn is ended with: its caller stopped
/// waiting for the reply.
fn abandoned_reason() -> Term {
    Term::keyword("spawn-abandoned")
}

impl NodeState {
    /// Resolves the `to` fields of a request: an aid of ours, in the run
    /// `to_inc` (0: this one).
    pub(super) fn local(&self, to_inc: u64, aid: &str) -> Option<Agent> {
        if to_inc != 0 && to_inc != self.incarnation {
            return None;
        }
        match target::resolve_local_aid(aid) {
            Ok(Resolved::Local(a)) => Some(a),
            _ => None,
        }
    }

    /// `from`'s id must be on the peer that sent the request.
    pub(super) fn from_peer(conn: &Connection, from: &str) -> bool {
        term::split_id(from).is_some_and(|(h, n, _)| {
            conn.peer.len() == h.len() + 1 + n.len()
                && conn.peer.starts_with(h)
                && conn.peer.ends_with(n)
        })
    }

    /// The remote agent `from` of `conn`'s peer, in the peer's current run.
    pub(super) fn peer_ref(conn: &Connection, from: &str) -> RemoteRef {
        RemoteRef {
            id: Arc::from(from),
            incarnation: conn.incarnation().unwrap_or(0),
        }
    }

    /// Tells remote `from` that local `to` (an aid, with the incarnation the
    /// peer meant) is not there.
    pub(super) fn noproc_reply(
        &self,
        conn: &Arc<Connection>,
        from: &str,
        to_inc: u64,
        to: &str,
        monitor: bool,
    ) {
        let Some((_, _, from_aid)) = term::split_id(from) else {
            return;
        };
        let to_id = format!("{}/{}", self.full, to);
        let reason = Term::keyword("noproc");
        let peer_inc = conn.incarnation().unwrap_or(0);
        // The agent the peer asked for, in the run it meant.
        let named = if to_inc == 0 {
            Term::Agent(AgentRef::Id(Arc::from(to_id.as_str())))
        } else {
            Term::Agent(AgentRef::Remote {
                id: Arc::from(to_id.as_str()),
                incarnation: to_inc,
            })
        };
        let request = if monitor {
            Request::Notice {
                from: to_id,
                to_inc: peer_inc,
                to: from_aid.to_owned(),
                notification: Outcome::Exited(reason).notification(named),
            }
        } else {
            Request::Exit {
                from: to_id,
                to_inc: peer_inc,
                to: from_aid.to_owned(),
                reason,
            }
        };
        let _ = conn.send(&request, self);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_spawn(
        self: &Arc<Self>,
        conn: &Arc<Connection>,
        request: u64,
        reply_to: String,
        attach: u8,
        mailbox: u32,
        call: Term,
    ) {
        let reply = move |ok: bool, text: String| Request::SpawnReply { request, ok, text };
        let prepared = match call::prepare_spawn(&call) {
            Ok(p) => p,
            Err(e) => {
                let _ = conn.send(&reply(false, e.to_string()), &**self);
                return;
            }
        };
        let monitor = match attach {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            other => {
                let _ = conn.send(
                    &reply(false, format!("unknown attach mode {other}")),
                    &**self,
                );
                return;
            }
        };
        if monitor.is_some() && !Self::from_peer(conn, &reply_to) {
            let _ = conn.send(
                &reply(
                    false,
                    "reply_to is not an agent of the requesting node".into(),
                ),
                &**self,
            );
            return;
        }
        let options = SpawnOptions::new().mailbox_size(remote_mailbox_size(mailbox));
        let requester = Self::peer_ref(conn, &reply_to);
        let parent: Option<(Peer, bool)> = monitor.map(|m| (Peer::Remote(requester.clone()), m));
        let state = Arc::clone(self);
        let c = Arc::clone(conn);
        let recorded = monitor.is_some();
        let on_parent = |child: &Agent| {
            if recorded {
                // The requester's exit (or loss) kills the child.
                conn.attached
                    .record(&conn.peer, child, requester.clone(), Attachment::Bound);
            }
        };
        // The reply is the first thing the child does when it runs, so it
        // goes out only if the agent really started, and before any exit
        // notification of it on this connection.
        let reply_started = move || {
            let me = Agent::current();
            let _ = c.send(&reply(true, format!("{:x}", me.aid())), &*state);
        };
        let spawned = match prepared {
            call::Prepared::Thread(function, args) => {
                agent::spawn_inner(&options, parent, on_parent, move || {
                    reply_started();
                    function(&args)
                })
            }
            call::Prepared::Async(function, args) => agent::spawn_async_inner(
                &options,
                parent,
                on_parent,
                Box::pin(async move {
                    reply_started();
                    function(args).await
                }),
            ),
        };
        if let Err(e) = spawned {
            // Nothing ran; the requester hears the error instead of an id.
            let _ = conn.send(&reply(false, e.to_string()), &**self);
        }
    }

    pub(super) fn handle_spawn_reply(
        &self,
        conn: &Arc<Connection>,
        request: u64,
        ok: bool,
        text: String,
    ) {
        let Some(pending) = lock(&self.pending).remove(&request) else {
            return;
        };
        if !ok {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(RemoteError::Refused {
                    node: conn.peer.clone(),
                    reason: text,
                }));
            }
            return;
        }
        if text.is_empty() || text.contains('/') {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(RemoteError::Refused {
                    node: conn.peer.clone(),
                    reason: format!("malformed reply {text:?}"),
                }));
            }
            return;
        }
        let child = RemoteRef {
            id: Arc::from(format!("{}/{}", conn.peer, text)),
            incarnation: conn.incarnation().unwrap_or(0),
        };
        let attached = pending.attach != agent::Attach::None;
        let Some(reply) = pending.reply else {
            // The caller gave up waiting; the child was told it is attached
            // to the caller, so end it rather than leave an orphan.
            if attached {
                self.post_exit(conn, &pending.caller, &child, abandoned_reason());
            }
            return;
        };
        if attached {
            // Recorded here, in the reader, before any later frame of this
            // connection (such as the child's exit notice) is handled.
            // Recorded before attaching, so a caller exiting in between
            // leaves no record behind (as for LINK).
            let kind = if pending.attach == agent::Attach::Monitor {
                Attachment::Watching
            } else {
                Attachment::Bound
            };
            conn.attached
                .record(&conn.peer, &pending.caller, child.clone(), kind);
            if let Err(outcome) = pending
                .caller
                .attach_peer(Peer::Remote(child.clone()), false)
            {
                // The caller exited meanwhile: the child goes with it, as
                // if the attachment had been made in time.
                conn.attached.take(pending.caller.serial(), &child.id);
                self.post_exit(conn, &pending.caller, &child, outcome.link_reason());
            }
        }
        let agent = if child.incarnation == 0 {
            AgentRef::Id(child.id)
        } else {
            AgentRef::Remote {
                id: child.id,
                incarnation: child.incarnation,
            }
        };
        let _ = reply.send(Ok(agent));
    }

    /// A request named an agent of an earlier run of this node: dropped and
    /// counted.
    pub(super) fn stale(&self, conn: &Connection) {
        self.stale_drops.fetch_add(1, Ordering::Relaxed);
        conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Dispatch for Route {
    fn limits(&self) -> &term::Limits {
        &self.0.options.limits
    }

    fn resolve(&self, to_inc: u64, aid: &str) -> Option<Agent> {
        let node = &self.0;
        if to_inc != 0 && to_inc != node.incarnation {
            node.stale_drops.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        node.local(to_inc, aid)
    }

    fn down(&self, conn: &Arc<Connection>, reason: &str) {
        self.0.connection_lost(conn, reason);
    }

    fn dispatch(&self, conn: &Arc<Connection>, request: Request) {
        let node = &self.0;
        match request {
            Request::Send {
                to_inc,
                to,
                message,
            } => match node.local(to_inc, &to) {
                Some(agent) => {
                    agent.send(message);
                }
                None if to_inc != 0 && to_inc != node.incarnation => node.stale(conn),
                None => {
                    conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
            Request::Spawn {
                request,
                reply_to,
                attach,
                mailbox,
                call,
            } => node.handle_spawn(conn, request, reply_to, attach, mailbox, call),
            Request::SpawnReply { request, ok, text } => {
                node.handle_spawn_reply(conn, request, ok, text)
            }
            Request::Link {
                from,
                to_inc,
                to,
                monitor,
            } => {
                if !NodeState::from_peer(conn, &from) {
                    return;
                }
                let remote = NodeState::peer_ref(conn, &from);
                // Recorded before attaching: if the agent exits in between,
                // its exit notice finds the record and removes it, or the
                // attach fails and we remove it; no record outlives it.
                let attached = node.local(to_inc, &to).is_some_and(|agent| {
                    conn.attached
                        .record(&conn.peer, &agent, remote.clone(), Attachment::Bound);
                    let ok = agent.attach_peer(Peer::Remote(remote), monitor).is_ok();
                    if !ok {
                        conn.attached.take(agent.serial(), &from);
                    }
                    ok
                });
                if !attached {
                    node.noproc_reply(conn, &from, to_inc, &to, monitor);
                }
            }
            Request::Unlink { from, to_inc, to } => {
                if !NodeState::from_peer(conn, &from) {
                    return;
                }
                if let Some(agent) = node.local(to_inc, &to) {
                    agent.detach_peer(&PeerKey::Remote(Arc::from(from.as_str())));
                    conn.attached.take(agent.serial(), &from);
                }
            }
            Request::Exit {
                from,
                to_inc,
                to,
                reason,
            } => {
                // Links stay as they are (as Erlang's exit/2): the agent
                // dies, and its own exit tells its peers, `from` included.
                let _ = from;
                if let Some(agent) = node.local(to_inc, &to) {
                    agent.kill(reason);
                }
            }
            Request::Notice {
                from,
                to_inc,
                to,
                notification,
            } => {
                if let Some(agent) = node.local(to_inc, &to) {
                    // Delivered only if `to` monitors `from` and that is
                    // still recorded (a connection-lost notice may already
                    // have been given). A monitor notification goes to the
                    // monitoring side only, as in Erlang: an agent linked
                    // to `from`, or one `from` monitors, hears of `from`'s
                    // exit by an EXIT, and a NOTICE must not end that
                    // attachment (nor the monitor `from` holds on it).
                    // (Checked and taken under one lock: another attachment
                    // is never out of the table, even for a moment.)
                    if conn.attached.take_watching(agent.serial(), &from).is_some() {
                        agent.detach_peer(&PeerKey::Remote(Arc::from(from.as_str())));
                        agent.notify(notification);
                    }
                }
            }
            Request::Heartbeat => {}
            Request::GroupJoin {
                incarnation,
                group,
                member,
            } => node.group_frame(conn, incarnation, vec![(group, member)], false),
            Request::GroupLeave {
                incarnation,
                group,
                member,
            } => node.group_frame(conn, incarnation, vec![(group, member)], true),
            Request::GroupSync {
                incarnation,
                entries,
            } => node.group_frame(conn, incarnation, entries, false),
            Request::GlobalRegister {
                incarnation,
                at,
                name,
                holder,
            } => node.global_register(conn, incarnation, vec![(at, name, holder)]),
            Request::GlobalUnregister {
                incarnation,
                name,
                holder,
            } => node.global_unregister(conn, incarnation, &name, &holder),
            Request::GlobalSync {
                incarnation,
                entries,
            } => node.global_register(conn, incarnation, entries),
            Request::Nodes { hidden, nodes } => node.on_nodes(conn, hidden, nodes),
            Request::NodeLost {
                node: lost,
                incarnation,
            } => {
                node.on_node_lost(conn, &lost, incarnation);
            }
            Request::Disconnect { cause, .. } => node.on_disconnect(conn, &cause),
            Request::GlobalClaim {
                incarnation,
                request,
                at,
                name,
                holder,
            } => node.global_claim(conn, incarnation, request, at, &name, &holder),
            Request::GlobalClaimReply {
                request,
                answer,
                holder,
            } => super::global::claim_reply(conn, request, answer, holder),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_mailbox_sizes_are_clamped() {
        assert_eq!(remote_mailbox_size(0), agent::DEFAULT_MAILBOX_SIZE);
        assert_eq!(remote_mailbox_size(10), 10);
        assert_eq!(remote_mailbox_size(u32::MAX), protocol::MAX_REMOTE_MAILBOX);
    }
}
