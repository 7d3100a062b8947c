//! The runnable count stays balanced when a spawned agent replaces itself
//! (`Agent::replace_current`, as the REPL does). Alone in its binary: the
//! count is process-wide, and any other test's agents would move it.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use erlangen::agent::runnable_threads;
use erlangen::{link, receive_timeout, spawn, Agent, Attach, Term};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn replacing_a_spawned_agent_leaves_the_runnable_count_balanced() {
    // This thread is an agent from here on, and counted as runnable.
    let me = Agent::current();
    let before = runnable_threads();
    for _ in 0..10 {
        let (tx, rx) = mpsc::channel();
        spawn(move || {
            let fresh = Agent::replace_current(Term::keyword("replaced"));
            tx.send(fresh).unwrap();
            let _ = receive_timeout(Duration::from_secs(20));
        })
        .unwrap();
        let fresh = rx.recv_timeout(WAIT).unwrap();
        link(&fresh, Attach::Monitor).unwrap();
        fresh.send(Term::keyword("go"));
        let notice = receive_timeout(WAIT).expect("the replacement ends with its job");
        assert_eq!(
            notice,
            Term::list(vec![fresh.to_term(), Term::keyword("ok")])
        );
    }
    // The job's own guard drops just after the notice: wait for the count
    // to come back (it never does if a thread stays counted twice).
    let deadline = Instant::now() + WAIT;
    while runnable_threads() != before {
        assert!(
            Instant::now() < deadline,
            "runnable count {} after the jobs, {before} before",
            runnable_threads()
        );
        thread::park_timeout(Duration::from_millis(5));
    }
    drop(me);
}
