//! Group membership and global names in a process that never starts a
//! node: an agent's exit must still remove it from its groups and free its
//! names (this test binary runs no node, so nothing else could).

mod support;

use erlangen::node::{global, groups};
use erlangen::{receive_timeout, Term};
use support::WAIT;

#[test]
fn an_exiting_agent_leaves_its_groups_and_frees_its_names() {
    let member = erlangen::spawn(|| {
        let _ = receive_timeout(WAIT);
    })
    .expect("spawn");
    groups::join("solo-group", &member).expect("join");
    global::register("solo-name", &member).expect("register");
    assert_eq!(groups::which_groups(), ["solo-group"]);
    assert_eq!(global::registered(), ["solo-name"]);

    // A second member stays: only the exited one goes.
    let stayer = erlangen::spawn(|| {
        let _ = receive_timeout(WAIT);
    })
    .expect("spawn");
    groups::join("other-group", &stayer).expect("join");

    member.send(Term::keyword("stop"));
    support::eventually("the exited member leaves its group", || {
        groups::which_groups() == ["other-group"]
    });
    support::eventually("the exited holder frees its name", || {
        global::registered().is_empty()
    });
    // The name is free for another agent.
    global::register("solo-name", &stayer).expect("register again");
    assert_eq!(global::whereis("solo-name"), Some(stayer.to_term()));
    stayer.send(Term::keyword("stop"));
    support::eventually("the second agent leaves too", || {
        groups::which_groups().is_empty() && global::registered().is_empty()
    });
}
