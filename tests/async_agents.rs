//! What only async agents have to prove (a million of them coming and
//! going without leaking is `async_million.rs`, alone in its process): a kill ends one at the receive it awaits and runs its
//! destructors, timers fire on time while the workers are busy, blocking
//! work goes to a thread agent, and a thread agent and an async one talk
//! as any two agents do. (Every other rule is in `agents.rs`, which runs
//! each test on both kinds.)

mod support;

use std::time::{Duration, Instant};

use erlangen::async_agent::{self, receive, receive_timeout};
use erlangen::{exit, Agent, Attach, SpawnOptions, Term};

const WAIT: Duration = Duration::from_secs(30);

fn recv() -> Term {
    erlangen::receive_timeout(WAIT).expect("a message within the test timeout")
}

fn kw(name: &str) -> Term {
    Term::keyword(name)
}

/// Sends on drop: shows that a body's destructors ran.
struct Farewell(Agent, Term);

impl Drop for Farewell {
    fn drop(&mut self) {
        self.0.send(self.1.clone());
    }
}

#[test]
fn a_killed_async_agent_ends_at_its_awaited_receive_and_drops_its_body() {
    let me = Agent::current();
    let agent = async_agent::spawn_with(&SpawnOptions::new().attach(Attach::Monitor), async move {
        let _guard = Farewell(me.clone(), kw("dropped"));
        me.send(kw("waiting"));
        // Killed here, mid-await.
        receive().await;
        me.send(kw("not reached"));
    })
    .unwrap();
    assert_eq!(recv(), kw("waiting"));
    exit(kw("stop"), &agent).unwrap();
    // The destructor's message and the notice both arrive (in either order:
    // they come from different agents), nothing else does.
    let first = recv();
    let second = recv();
    let mut got = [first.to_string(), second.to_string()];
    got.sort();
    assert_eq!(got[0], format!("({} :EXIT . :STOP)", agent.to_term()));
    assert_eq!(got[1], ":DROPPED");
    me_marker_is_next();
}

/// A marker sent now is the next message: nothing else is queued.
fn me_marker_is_next() {
    Agent::current().send(kw("marker"));
    assert_eq!(recv(), kw("marker"));
}

#[test]
fn timers_fire_on_time_while_the_workers_are_busy() {
    let me = Agent::current();
    // Load: one agent per worker (however many this machine or
    // ERLANGEN_WORKERS gives), so every worker is kept busy for a while,
    // yielding often (as a well-behaved agent does), then reports. Fewer
    // would leave a worker idle to fire the timers, whatever the busy ones
    // do. The scheduler starts with the first async agent.
    async_agent::spawn(async {}).unwrap();
    let workers = async_agent::workers();
    assert!(workers > 0, "the scheduler runs");
    let load: Vec<Agent> = (0..workers)
        .map(|_| {
            let me = me.clone();
            async_agent::spawn(async move {
                let start = Instant::now();
                let mut spins = 0u64;
                while start.elapsed() < Duration::from_secs(2) {
                    spins += 1;
                    if spins % 64 == 0 {
                        async_agent::yield_now().await;
                    }
                }
                me.send(kw("load-done"));
            })
            .unwrap()
        })
        .collect();
    // Timed waits under that load: a receive deadline and a sleep, each
    // 100 ms. Neither may fire early, and each must fire while the load is
    // still running (its 2 s), not after it.
    let timed = |sleep: bool| {
        let me = me.clone();
        async_agent::spawn(async move {
            let start = Instant::now();
            if sleep {
                async_agent::sleep(Duration::from_millis(100)).await;
            } else {
                let _ = receive_timeout(Duration::from_millis(100)).await;
            }
            let waited = start.elapsed();
            me.send(Term::list(vec![
                kw(if sleep { "slept" } else { "timed-out" }),
                Term::from(waited >= Duration::from_millis(100)),
            ]));
        })
        .unwrap()
    };
    timed(false);
    timed(true);
    let mut got = vec![recv().to_string(), recv().to_string()];
    got.sort();
    assert_eq!(got, vec!["(:SLEPT T)", "(:TIMED-OUT T)"]);
    for _ in &load {
        assert_eq!(recv(), kw("load-done"));
    }
}

#[test]
fn blocking_work_runs_on_a_thread_agent_and_its_result_is_awaited() {
    let me = Agent::current();
    async_agent::spawn(async move {
        let kind = async_agent::blocking(|| Agent::current().kind()).await;
        let sum = async_agent::blocking(|| (1..=100u64).sum::<u64>()).await;
        let failed = async_agent::blocking(|| -> u64 { panic!("blocked and failed") }).await;
        me.send(Term::list(vec![
            Term::from(kind == Ok(erlangen::Kind::Thread)),
            Term::from(sum.map_or(-1, |s| s as i64)),
            failed.err().unwrap_or(Term::Nil),
        ]));
    })
    .unwrap();
    assert_eq!(recv().to_string(), "(T 5050 \"blocked and failed\")");
}

#[test]
fn an_async_function_called_in_place_inside_an_async_agent_is_an_error() {
    erlangen::call::register_async_function(
        "async-agents-test-double",
        |args: Vec<Term>| async move {
            async_agent::sleep(Duration::from_millis(1)).await;
            Ok(Term::from(
                args.first().and_then(Term::as_int).unwrap_or(0) * 2,
            ))
        },
    );
    let call = erlangen::term::read("(async-agents-test-double 21)").unwrap();
    // On a thread it runs to completion in place.
    assert_eq!(erlangen::call::apply(&call), Ok(Term::from(42)));
    // On a worker it would block the scheduler: an error, not a deadlock.
    let me = Agent::current();
    async_agent::spawn(async move {
        let result = erlangen::call::apply(&call);
        me.send(Term::Str(format!("{result:?}")));
    })
    .unwrap();
    let answer = recv().to_string();
    assert!(answer.contains("spawn it"), "{answer}");
}

#[test]
fn a_thread_agent_and_an_async_agent_ping_pong() {
    let ponger = async_agent::spawn(async move {
        loop {
            match receive().await.as_list() {
                Some([Term::Int(i), from]) => {
                    let _ = erlangen::send(Term::Int(*i), from);
                }
                _ => return,
            }
        }
    })
    .unwrap();
    let pinger = erlangen::spawn_with(&SpawnOptions::new().attach(Attach::Monitor), move || {
        for i in 0..20_000i64 {
            ponger.send(Term::list(vec![Term::Int(i), Agent::current().to_term()]));
            if erlangen::receive_timeout(WAIT) != Ok(Term::Int(i)) {
                return Term::keyword("lost");
            }
        }
        ponger.send(Term::Nil);
        Term::keyword("all-back")
    })
    .unwrap();
    assert_eq!(
        recv(),
        Term::list(vec![pinger.to_term(), kw("ok"), kw("all-back")])
    );
}

/// An async body that never returns compiles as written (its output is
/// `!`, which falls back to `()`), and its panic is its exit reason.
#[test]
fn an_async_body_that_ends_in_a_panic_compiles_as_written() {
    let agent = async_agent::spawn_with(&SpawnOptions::new().attach(Attach::Monitor), async {
        receive().await;
        panic!("boom")
    })
    .unwrap();
    agent.send(kw("go"));
    assert_eq!(
        recv().to_string(),
        format!("({} :EXIT . \"boom\")", agent.to_term())
    );
}

/// Agents spawned on a worker wait there for their first poll (so a
/// short-lived one runs and is freed next to its spawner), but not behind
/// a poll that never ends: while one agent computes, another worker takes
/// the agents spawned behind it. (With one worker nothing can: skipped.)
#[test]
fn agents_spawned_behind_a_long_poll_run_on_another_worker() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let me = Agent::current();
    // Starts the scheduler, so `workers` is known.
    let probe = async_agent::spawn(async {}).unwrap();
    drop(probe);
    if async_agent::workers() < 2 {
        return;
    }
    let flag = Arc::new(AtomicBool::new(false));
    let (set, seen) = (Arc::clone(&flag), Arc::clone(&flag));
    let spawner = me.clone();
    async_agent::spawn(async move {
        let report = spawner.clone();
        // Computes in one poll until the sibling spawned after it (queued
        // behind it on this worker) has run, or the test's timeout.
        async_agent::spawn(async move {
            let deadline = Instant::now() + WAIT;
            while !seen.load(Ordering::Acquire) && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            report.send(Term::from(seen.load(Ordering::Acquire)));
        })
        .unwrap();
        async_agent::spawn(async move { set.store(true, Ordering::Release) }).unwrap();
    })
    .unwrap();
    assert_eq!(recv(), Term::from(true));
}
