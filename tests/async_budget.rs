//! A hot async agent (one whose mailbox is never empty) is held to its
//! per-poll budget, so it cannot starve the other agents on its worker.
//! One worker only, set before any async agent exists: with more, another
//! worker would serve the others anyway and prove nothing. Alone in this
//! test binary for that reason.

use std::time::Duration;

use erlangen::async_agent::{self, receive};
use erlangen::{Agent, Term};

#[test]
fn a_hot_agent_is_held_to_its_budget() {
    assert!(
        async_agent::set_workers(1),
        "the scheduler must not run yet"
    );
    let me = Agent::current();
    // Hot: it keeps its own mailbox full and never waits for anything.
    let hot = async_agent::spawn(async {
        let me = Agent::current();
        me.send(0);
        while let Term::Int(i) = receive().await {
            me.send(i + 1);
        }
    })
    .unwrap();
    // A quiet agent on the same (only) worker answers one question.
    let quiet = async_agent::spawn(async {
        let asker = receive().await;
        let _ = erlangen::send(Term::keyword("answered"), asker);
    })
    .unwrap();
    assert_eq!(async_agent::workers(), 1);
    quiet.send(me.to_term());
    // Without the budget, the hot agent's poll would never end, and this
    // answer would never come.
    assert_eq!(
        erlangen::receive_timeout(Duration::from_secs(30)),
        Ok(Term::keyword("answered"))
    );
    // The hot agent made progress too.
    let stats = erlangen::management::agent_stats(&hot).unwrap();
    assert!(stats.received > 0);
    let _ = erlangen::exit(Term::keyword("done"), &hot);
}
