//! A million async agents spawned, messaged and exited, twice, without
//! leaking: every agent is gone afterwards (the agent table is back to
//! where it was) and the second million reuses the first's memory. Alone
//! in this test binary, so no other test's agents are counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use erlangen::async_agent::{self, receive};
use erlangen::{management, Term};

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn a_million_async_agents_come_and_go_without_leaking() {
    const N: usize = 1_000_000;
    let baseline = management::agents().len();
    let mut resident = Vec::new();
    for round in 0..2 {
        let done = Arc::new(AtomicUsize::new(0));
        let mut agents = Vec::with_capacity(N);
        for _ in 0..N {
            let done = Arc::clone(&done);
            agents.push(
                async_agent::spawn(async move {
                    if receive().await == Term::Int(1) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap(),
            );
        }
        assert_eq!(management::agents().len(), baseline + N, "round {round}");
        for a in &agents {
            a.send(1);
        }
        drop(agents);
        let deadline = Instant::now() + WAIT * 4;
        while done.load(Ordering::Relaxed) < N || management::agents().len() > baseline {
            assert!(
                Instant::now() < deadline,
                "round {round}: {} of {N} done, {} agents left",
                done.load(Ordering::Relaxed),
                management::agents().len() - baseline
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
        resident.push(erlangen::management::process_sample(None).map(|p| p.resident_kib * 1024));
    }
    // Every agent is gone, and the second million reused the first's
    // memory instead of adding to it (allow a tenth for the allocator).
    assert_eq!(management::agents().len(), baseline);
    // Both samples must exist: a missing one would skip the check unseen.
    let [Some(first), Some(second)] = resident[..] else {
        panic!("no resident-memory sample from /proc/self/status: {resident:?}");
    };
    assert!(
        second <= first + first / 10,
        "resident after the first million {first}, after the second {second}"
    );
}
