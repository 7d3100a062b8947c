//! The timer service's thread is not an agent (issue 22 item 12): an
//! `exit_after` firing must not adopt it as one (it would stay in
//! `management::agents()` and count as a runnable thread in the mailbox's
//! spin heuristic for the rest of the process). One test in this binary,
//! so nothing else spawns agents while it counts them.

mod support;

use std::time::Duration;

use erlangen::{receive_timeout, spawn_with, timer, Agent, Attach, SpawnOptions, Term};
use support::WAIT;

#[test]
fn firing_timers_makes_no_agent_of_the_timer_thread() {
    let me = Agent::current();
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let victim = spawn_with(&monitor, || {
        let _ = erlangen::receive_timeout(WAIT);
    })
    .unwrap();
    let agents_before = erlangen::management::agents().len();
    // A message first (through a name, resolved when it fires), then the
    // exit: both fire on the service thread.
    erlangen::registry::register("timer-thread-me", &me).unwrap();
    timer::send_after(
        Duration::from_millis(1),
        Term::keyword("tick"),
        ":timer-thread-me",
    );
    assert_eq!(receive_timeout(WAIT), Ok(Term::keyword("tick")));
    timer::exit_after(Duration::from_millis(1), Term::keyword("late"), &victim);
    let notice = receive_timeout(WAIT).unwrap();
    assert!(notice.to_string().ends_with(":EXIT . :LATE)"), "{notice}");
    // The victim's exit protocol ends.
    support::gone(&victim);
    let agents: Vec<Agent> = erlangen::management::agents();
    assert_eq!(
        agents.len(),
        agents_before - 1,
        "only the victim should have gone, and no agent come: {agents:?}"
    );
    assert_eq!(agents, vec![me]);
}
