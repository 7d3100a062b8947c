//! Timers aimed at an agent die with it (issue 22 item 11): as Erlang's
//! `erlang:send_after/3` to a pid, a timer aimed at an agent of this
//! process is cancelled when that agent exits, and cancelling it then
//! says `false` (the REPL's `cancel-timer` answers NIL). A timer aimed at
//! a name is resolved when it fires, and lives on. Thread and async
//! agents alike.

mod support;

use std::time::Duration;

use erlangen::{
    async_agent, receive_timeout, spawn_async_with, spawn_with, timer, Agent, Attach, Kind,
    SpawnOptions, Term,
};
use support::{gone, WAIT};

const HOUR: Duration = Duration::from_secs(3600);

/// An agent of `kind` that waits for one message and ends.
fn waiter(kind: Kind, options: &SpawnOptions) -> Agent {
    match kind {
        Kind::Thread => spawn_with(options, || {
            let _ = receive_timeout(WAIT);
        })
        .unwrap(),
        _ => spawn_async_with(options, async {
            let _ = async_agent::receive_timeout(WAIT).await;
        })
        .unwrap(),
    }
}

#[test]
fn a_timer_aimed_at_an_agent_is_cancelled_when_the_agent_exits() {
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    for kind in [Kind::Thread, Kind::Async] {
        let target = waiter(kind, &monitor);
        let by_handle = timer::send_after(HOUR, Term::keyword("late"), &target);
        let by_term = timer::send_after(HOUR, Term::keyword("late"), target.to_term());
        let exit = timer::exit_after(HOUR, Term::keyword("late"), &target);
        target.send(Term::keyword("go"));
        let notice = receive_timeout(WAIT).unwrap();
        assert!(notice.to_string().ends_with(":OK)"), "{notice}");
        gone(&target);
        for t in [by_handle, by_term, exit] {
            assert!(
                !timer::cancel(&t),
                "{kind:?}: a timer aimed at an exited agent was still pending"
            );
        }
        // Aimed at an agent already gone: never pending.
        let after = timer::send_after(HOUR, Term::keyword("late"), &target);
        assert!(!timer::cancel(&after), "{kind:?}");
    }
}

#[test]
fn a_timer_aimed_at_a_name_outlives_the_agent_holding_it() {
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    for (kind, name) in [
        (Kind::Thread, "timer-name-t"),
        (Kind::Async, "timer-name-a"),
    ] {
        let holder = waiter(kind, &monitor.clone().name(name));
        let by_name = timer::send_after(HOUR, Term::keyword("late"), format!(":{name}").as_str());
        holder.send(Term::keyword("go"));
        let _ = receive_timeout(WAIT).unwrap();
        gone(&holder);
        assert!(
            timer::cancel(&by_name),
            "{kind:?}: a name is resolved when the timer fires"
        );
    }
}

#[test]
fn other_timers_of_the_agent_still_fire_and_cancel_as_before() {
    // Two timers at one agent: one cancelled, one fires; the agent's exit
    // afterwards finds nothing left.
    let me = Agent::current();
    let kept = timer::send_after(Duration::from_millis(1), Term::keyword("kept"), &me);
    let dropped = timer::send_after(HOUR, Term::keyword("dropped"), &me);
    assert!(timer::cancel(&dropped));
    assert_eq!(receive_timeout(WAIT), Ok(Term::keyword("kept")));
    assert!(!timer::cancel(&kept));
}

#[test]
fn cancel_timer_at_the_prompt_answers_nil_after_the_target_exits() {
    let input = "\
(setq w (spawn '(receive) :attach :monitor))
(setq t1 (send-after 3600000 :late w))
(send :go w)
(receive :timeout 20)
(cancel-timer t1)
";
    let (_, out, err) = support::kernel_batch(&[], input.as_bytes());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[3].contains(":OK :GO"), "{out}\n{err}");
    // The exit protocol cancels the timers before it tells anyone, so
    // once the notice is in, the timer is gone.
    assert_eq!(lines[4], "NIL", "{out}\n{err}");
}
