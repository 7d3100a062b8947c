//! An agent waiting in a busy worker's "next" slot is taken by an idle
//! worker (issue 22 item 15), as Go's scheduler lets idle processors take
//! `runnext`: an async agent wakes another and then computes without
//! awaiting; the woken agent runs on another worker while the first still
//! computes, instead of after it. Three workers, set before any async
//! agent exists (alone in this test binary for that reason).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use erlangen::{async_agent, receive_timeout, Agent, Term};
use support::WAIT;

#[test]
fn an_idle_worker_takes_the_agent_a_busy_worker_keeps_waiting() {
    assert!(
        async_agent::set_workers(3),
        "the scheduler must not run yet"
    );
    let me = Agent::current();
    let computing = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicBool::new(false));
    // The woken one: reports whether the waker was still computing.
    let (c, a) = (Arc::clone(&computing), Arc::clone(&answered));
    let woken = async_agent::spawn(async move {
        let _ = async_agent::receive().await;
        let still_computing = c.load(Ordering::SeqCst);
        a.store(true, Ordering::SeqCst);
        me.send(Term::from(still_computing));
    })
    .unwrap();
    // The waker: on :go, wakes `woken` (into its worker's next slot) and
    // computes, never awaiting, until `woken` has run (at most WAIT).
    let (c, a) = (Arc::clone(&computing), Arc::clone(&answered));
    let waker = async_agent::spawn(async move {
        let _ = async_agent::receive().await;
        c.store(true, Ordering::SeqCst);
        woken.send(Term::keyword("wake"));
        let deadline = Instant::now() + WAIT;
        while !a.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        c.store(false, Ordering::SeqCst);
    })
    .unwrap();
    waker.send(Term::keyword("go"));
    assert_eq!(
        receive_timeout(WAIT + WAIT),
        Ok(Term::T),
        "the woken agent ran only after its waker's poll ended"
    );
    assert_eq!(async_agent::workers(), 3);
}
