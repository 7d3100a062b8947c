//! Requests to peers: what the agent layer asks of other nodes (send,
//! exit, link, unlink, exit notices) and remote spawn.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use super::attachments::{self, Attachment};
use super::connection::Connection;
use super::inbound::Route;
use super::protocol::Request;
use super::{current_node, lock, NodeState, PendingSpawn};
use crate::agent::target::{Remote, RemoteRef};
use crate::agent::{
    self, Agent, LinkError, Outcome, Peer, RemoteError, SendError, SpawnError, SpawnOptions,
};
use crate::call;
use crate::term::{self, AgentRef, Term};

/// Spawns `call` on node `node` of `host` (default: this node's host) with
/// `options` (attach mode and mailbox size; a name is not sent). Returns a
/// reference to the new agent, which prints as its id string
/// `"host/node/aid"` and names that agent of that run of the node only.
/// With `attach`, the calling agent is attached before the agent runs.
///
/// Blocks until the other node answers: in an async agent it fails at once
/// ([`RemoteError::WouldBlock`]); spawn a thread agent to call it.
///
/// # Errors
/// [`SpawnError::Remote`]: this process is not a node, the node cannot be
/// reached, the function is unknown there, the node cannot start the agent
/// (its agent ceiling), or no reply came in time.
pub fn spawn_on(
    host: Option<&str>,
    node: &str,
    call: &Term,
    options: &SpawnOptions,
) -> Result<AgentRef, SpawnError> {
    if crate::agent::on_async_worker() {
        return Err(RemoteError::WouldBlock("node::spawn_on").into());
    }
    let state = current_node().ok_or(RemoteError::NotANode)?;
    let host = host.unwrap_or(&state.host);
    let peer = format!("{host}/{node}");
    if peer == state.full {
        // What another node would answer for an unknown function.
        let agent = call::prepare_spawn(call)
            .map_err(|e| RemoteError::Refused {
                node: peer.clone(),
                reason: e.to_string(),
            })?
            .spawn(options)?;
        // The same form as for any other node: the id of this run.
        return Ok(AgentRef::Remote {
            id: Arc::from(state.full_id(&agent)),
            incarnation: state.incarnation,
        });
    }
    let conn = state.connection(&peer)?;
    let caller = Agent::current();
    let request = state.next_request.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    lock(&state.pending).insert(
        request,
        PendingSpawn {
            conn: Arc::clone(&conn),
            caller: caller.clone(),
            attach: options.attach,
            reply: Some(tx),
        },
    );
    let mailbox = u32::try_from(options.mailbox_size).unwrap_or(u32::MAX);
    let attach = match options.attach {
        agent::Attach::None => 0,
        agent::Attach::Link => 1,
        agent::Attach::Monitor => 2,
    };
    let sent = conn.send(
        &Request::Spawn {
            request,
            reply_to: state.full_id(&caller),
            attach,
            mailbox,
            call: call.clone(),
        },
        &*state,
    );
    match sent {
        Ok(true) => {}
        Ok(false) => {
            lock(&state.pending).remove(&request);
            return Err(RemoteError::Unreachable {
                node: peer,
                reason: "its connection is down or its queue is full".into(),
            }
            .into());
        }
        Err(e) => {
            lock(&state.pending).remove(&request);
            return Err(RemoteError::Unsendable(e).into());
        }
    }
    let waited = state.options.spawn_timeout;
    match rx.recv_timeout(waited) {
        Ok(Ok(agent)) => Ok(agent),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            // Keep the entry, without a reply channel: if the reply still
            // comes, the orphan it names is told to exit.
            if let Some(p) = lock(&state.pending).get_mut(&request) {
                p.reply = None;
            }
            Err(RemoteError::NoReply { node: peer, waited }.into())
        }
    }
}

impl NodeState {
    /// Sends an exit signal from local `from` to remote `to` over `conn`.
    pub(super) fn post_exit(&self, conn: &Connection, from: &Agent, to: &RemoteRef, reason: Term) {
        let Some((_, _, aid)) = term::split_id(&to.id) else {
            return;
        };
        let _ = conn.send(
            &Request::Exit {
                from: self.full_id(from),
                to_inc: to.incarnation,
                to: aid.to_owned(),
                reason,
            },
            self,
        );
    }

    /// The connection to the node of remote agent `to`, and the aid part of
    /// its id; an error if the node cannot be reached now (the agent layer
    /// only hands over well-formed ids).
    pub(super) fn route<'a>(
        self: &Arc<Self>,
        to: &'a RemoteRef,
    ) -> Result<(Arc<Connection>, &'a str), RemoteError> {
        let (host, node, aid) = term::split_id(&to.id).ok_or_else(|| RemoteError::Unreachable {
            node: to.id.to_string(),
            reason: "not an agent id host/node/aid".into(),
        })?;
        let peer = &to.id[..host.len() + 1 + node.len()];
        let conn = self.connection(peer)?;
        Ok((conn, aid))
    }

    /// `true` if `to` names an earlier run of its node than the one `conn`
    /// is connected to.
    pub(super) fn is_stale(conn: &Connection, to: &RemoteRef) -> bool {
        to.incarnation != 0 && conn.incarnation().is_some_and(|inc| inc != to.incarnation)
    }
}

/// The node as the agent layer's route to other nodes: every operation
/// finds the connection to the agent's node with one routing step
/// ([`NodeState::route`]); an unreachable node means the message is
/// dropped (sends promise no delivery) or the attachment is told at once.
impl Remote for Route {
    fn is_self(&self, host: &str, node: &str) -> bool {
        host == self.0.host && node == self.0.name
    }

    fn node_name(&self) -> &str {
        &self.0.full
    }

    fn incarnation(&self) -> u64 {
        self.0.incarnation
    }

    fn send(&self, to: &RemoteRef, message: Term) -> Result<(), SendError> {
        let node = &self.0;
        let Ok((conn, aid)) = node.route(to) else {
            return Ok(());
        };
        if NodeState::is_stale(&conn, to) {
            node.stale(&conn);
            return Ok(());
        }
        match conn.send_message(to.incarnation, aid, &message, &**node) {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::NotWireable(e)),
        }
    }

    fn exit(&self, to: &RemoteRef, reason: Term) -> Result<(), LinkError> {
        let node = &self.0;
        let Ok((conn, aid)) = node.route(to) else {
            return Ok(());
        };
        if NodeState::is_stale(&conn, to) {
            return Ok(());
        }
        let request = Request::Exit {
            from: node.full_id(&Agent::current()),
            to_inc: to.incarnation,
            to: aid.to_owned(),
            reason,
        };
        match conn.send(&request, &**node) {
            Ok(_) => Ok(()),
            Err(e) => Err(RemoteError::Unsendable(e).into()),
        }
    }

    fn link(&self, from: &Agent, to: &RemoteRef, monitor: bool) -> Result<(), LinkError> {
        let node = &self.0;
        let (conn, aid) = match node.route(to) {
            Ok(route) => route,
            Err(_) => {
                // Unreachable now: the same as losing the connection.
                let peer = to.id.rsplit_once('/').map_or(&*to.id, |(peer, _)| peer);
                let reason = attachments::lost_reason(peer);
                if monitor {
                    from.notify(Outcome::Exited(reason).notification(to.to_term()));
                } else {
                    from.kill(reason);
                }
                return Ok(());
            }
        };
        if NodeState::is_stale(&conn, to) {
            agent::noproc(from, to.to_term(), monitor);
            return Ok(());
        }
        let _ = from.attach_peer(Peer::Remote(to.clone()), false);
        let kind = if monitor {
            Attachment::Watching
        } else {
            Attachment::Bound
        };
        conn.attached.record(&conn.peer, from, to.clone(), kind);
        let _ = conn.send(
            &Request::Link {
                from: node.full_id(from),
                to_inc: to.incarnation,
                to: aid.to_owned(),
                monitor,
            },
            &**node,
        );
        Ok(())
    }

    fn unlink(&self, from: &Agent, to: &RemoteRef) {
        let node = &self.0;
        let Ok((conn, aid)) = node.route(to) else {
            return;
        };
        if NodeState::is_stale(&conn, to) {
            // That run is gone: nothing to detach (as for EXIT and the
            // exit notice; a SEND to it is dropped and counted), and an
            // attachment to the current run's agent of the same id stays.
            return;
        }
        conn.attached.take(from.serial(), &to.id);
        let _ = conn.send(
            &Request::Unlink {
                from: node.full_id(from),
                to_inc: to.incarnation,
                to: aid.to_owned(),
            },
            &**node,
        );
    }

    fn exit_notice(&self, from: &Agent, to: &RemoteRef, monitor: bool, outcome: &Outcome) {
        let node = &self.0;
        let Ok((conn, aid)) = node.route(to) else {
            return;
        };
        conn.attached.take(from.serial(), &to.id);
        if NodeState::is_stale(&conn, to) {
            return;
        }
        let from_id = node.full_id(from);
        let make = |outcome: &Outcome| {
            if monitor {
                Request::Notice {
                    from: from_id.clone(),
                    to_inc: to.incarnation,
                    to: aid.to_owned(),
                    notification: outcome.notification(from.to_term()),
                }
            } else {
                Request::Exit {
                    from: from_id.clone(),
                    to_inc: to.incarnation,
                    to: aid.to_owned(),
                    reason: outcome.link_reason(),
                }
            }
        };
        if let Err(e) = conn.send(&make(outcome), &**node) {
            // Return values that cannot leave this process: say so instead
            // of leaving the peer without a notification.
            let fallback = Outcome::Exited(Term::Str(format!(
                "exit values cannot be sent to another node: {e}"
            )));
            let _ = conn.send(&make(&fallback), &**node);
        }
    }
}
