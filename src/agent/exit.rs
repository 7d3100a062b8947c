//! The exit protocol: an unwind's reason, the outcome recorded once, the
//! name released, links killed and monitors told, the agent tables left.

use super::*;

/// The exit reason carried by an unwind out of an agent's code, as caught
/// by `catch_unwind`: the reason of an exit signal or of [`exit_current`],
/// or a panic's message.
pub fn exit_reason(payload: Box<dyn std::any::Any + Send>) -> Term {
    unwind_reason(payload)
}

pub(super) fn unwind_reason(payload: Box<dyn std::any::Any + Send>) -> Term {
    match payload.downcast::<ExitUnwind>() {
        Ok(exit) => exit.0,
        Err(payload) => {
            let text = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "panic with a non-string payload".to_owned()
            };
            Term::Str(text)
        }
    }
}

/// Runs the exit protocol once: close the mailbox, record the outcome,
/// free the name, tell links and monitors (no lock held while telling),
/// and last leave the agent tables.
pub(super) fn finish(agent: &Agent, outcome: Outcome) {
    agent.0.mailbox().finish();
    end(agent, outcome);
}

impl Agent {
    /// Ends the agent now, from outside, with `reason`, whatever its code
    /// is doing: the exit protocol runs at once on the calling thread (the
    /// outcome is recorded, its name and registrations are released, its
    /// links and monitors are told, it leaves the agent tables), and it
    /// gets the exit signal `reason`. A Rust thread cannot be stopped from
    /// outside, so code still running goes on until its next receive
    /// (which ends it) or its return, as an agent that has exited: its
    /// outcome stays this one. A supervisor's brutal kill.
    pub(crate) fn end_now(&self, reason: Term) {
        self.kill(reason.clone());
        end(self, Outcome::Exited(reason));
    }
}

/// The exit protocol after the mailbox: see [`finish`]. The mailbox is
/// left to its owner when the agent is ended from outside
/// ([`Agent::end_now`]): its pending exit signal ends the code still
/// running at its next receive.
pub(super) fn end(agent: &Agent, outcome: Outcome) {
    let (mut peers, named) = {
        let mut a = agent.lock();
        if a.ended.is_some() {
            return;
        }
        a.ended = Some(Box::new(Ended {
            outcome: outcome.clone(),
            died: SystemTime::now(),
        }));
        (std::mem::take(&mut a.peers), a.name.is_some())
    };

    if named {
        crate::agent::registry::release(agent);
    }
    // Hooks first: by the time anyone hears of the exit, the layers above
    // have forgotten the agent (a timer aimed at it is cancelled).
    for hook in peers.take_hooks() {
        (hook.run)(agent, &outcome);
    }
    let me = PeerKey::Local(agent.serial());
    // Built once, on first use: most agents have a link or a monitor or
    // neither, and these are allocations.
    let mut reason = None;
    let mut notice = None;
    peers.for_each(|peer, role| match (peer, role) {
        (Peer::Local(other), Role::Link) => {
            other.detach_peer(&me);
            other.kill(reason.get_or_insert_with(|| outcome.link_reason()).clone());
        }
        (Peer::Local(other), Role::Monitor | Role::Watcher) => {
            other.detach_peer(&me);
            other.notify(
                notice
                    .get_or_insert_with(|| outcome.notification(agent.to_term()))
                    .clone(),
            );
        }
        // We watched it: it forgets us, nothing more.
        (Peer::Local(other), Role::Watching) => other.detach_peer(&me),
        (Peer::Remote(to), Role::Watching) => target::remote_unwatch(agent, &to),
        (Peer::Remote(to), role) => {
            target::remote_exit_notice(agent, &to, role != Role::Link, &outcome);
        }
        // Taken out and run above.
        (Peer::Hook(_), _) => {}
    });
    // Only now: the notices above may name the agent itself (its return
    // values can hold `(agent)`), which needs its wire id until they are
    // encoded. Anything that finds it meanwhile sees it has exited.
    target::remove(agent);
}

/// Ends the calling agent now with `reason` (unwinds its stack).
pub(super) fn exit_self(reason: Term) -> ! {
    let me = Agent::current();
    me.0.mailbox().close();
    panic::resume_unwind(Box::new(ExitUnwind(reason)))
}
