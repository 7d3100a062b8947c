//! A thousand async workers under one async coordinator: each worker is
//! monitored, answers one job, then ends itself after a second without
//! work. Run with `cargo run --example async_pool`.

use std::time::Duration;

use erlangen::async_agent::{self, receive, receive_matching, receive_timeout};
use erlangen::term::Keyword;
use erlangen::{Agent, AgentRef, Attach, SpawnOptions, Term};

/// A worker: answers `(n reply-to)` with `n*n`; ends after a second idle.
async fn worker() -> Term {
    loop {
        let Ok(job) = receive_timeout(Duration::from_secs(1)).await else {
            return Term::keyword("idle"); // nothing for a second
        };
        // The reply address is an AgentRef: any agent, on any node.
        match job.decode::<(i64, AgentRef)>() {
            Ok((n, reply_to)) => {
                let _ = erlangen::send(n * n, &reply_to);
            }
            // "element 1 of the list: expected an integer, got …"
            Err(e) => return Term::from(format!("bad job: {e}")),
        }
    }
}

/// Spawns the pool, hands out the jobs, adds up the answers and counts the
/// workers that ended idle.
async fn coordinator() -> Term {
    let me = Agent::current();
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let workers: Vec<Agent> = (0..1000)
        .map(|_| async_agent::spawn_with(&monitor, worker()).expect("spawn"))
        .collect();
    for (i, w) in workers.iter().enumerate() {
        w.send((i, &me)); // a tuple is sent as the list (i me)
    }
    let mut sum = 0;
    for _ in 0..workers.len() {
        // The answers are integers; exit notifications may come between.
        let answer = receive_matching(|m| m.as_int().is_some(), None).await;
        sum += answer.map_or(0, |a| a.as_int().unwrap_or(0));
    }
    let mut idle = 0;
    for _ in 0..workers.len() {
        if receive().await.to_string().ends_with(":OK :IDLE)") {
            idle += 1;
        }
    }
    // Blocking work goes to a thread agent, awaited without blocking.
    let size = async_agent::blocking(|| std::fs::metadata("Cargo.toml").map_or(0, |m| m.len()))
        .await
        .unwrap_or(0);
    Term::from((sum, idle, size))
}

fn main() {
    let options = SpawnOptions::new()
        .attach(Attach::Monitor)
        .mailbox_size(4096);
    async_agent::spawn_with(&options, coordinator()).expect("spawn coordinator");
    let notice = erlangen::receive_timeout(Duration::from_secs(30)).expect("the result");
    println!("{notice}");
    // (coordinator :OK (sum idle size))
    if let Ok((_, _, (sum, idle, size))) = notice.decode::<(AgentRef, Keyword, (i64, u32, u64))>() {
        println!("sum of squares {sum}, {idle} workers ended idle, Cargo.toml is {size} bytes");
    }
}
