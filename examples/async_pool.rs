//! A thousand async workers under one async coordinator: each worker is
//! monitored, answers one job, then ends itself after a second without
//! work. Run with `cargo run --example async_pool`.

use std::time::Duration;

use erlangen::async_agent::{self, receive, receive_matching, receive_timeout};
use erlangen::{Agent, Attach, SpawnOptions, Term};

/// A worker: answers `(n reply-to)` with `n*n`; ends after a second idle.
async fn worker() -> Term {
    loop {
        match receive_timeout(Duration::from_secs(1)).await {
            Ok(job) => match job.as_list() {
                Some([Term::Int(n), to]) => {
                    let _ = erlangen::send(n * n, to);
                }
                _ => return Term::keyword("bad-job"),
            },
            Err(_) => return Term::keyword("idle"), // nothing for a second
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
        w.send(Term::list(vec![(i as i64).into(), me.to_term()]));
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
    Term::list(vec![sum.into(), idle.into(), (size as i64).into()])
}

fn main() {
    let options = SpawnOptions::new()
        .attach(Attach::Monitor)
        .mailbox_size(4096);
    async_agent::spawn_with(&options, coordinator()).expect("spawn coordinator");
    let notice = erlangen::receive_timeout(Duration::from_secs(30)).expect("the result");
    println!("{notice}");
    if let Some([_, _, Term::List(r)]) = notice.as_list() {
        if let [sum, idle, size] = &r[..] {
            println!("sum of squares {sum}, {idle} workers ended idle, Cargo.toml is {size} bytes");
        }
    }
}
