//! A supervised pool of workers serving requests: one worker crashes, its
//! supervisor restarts it, and the others keep serving throughout.
//!
//! `cargo run --example supervised_pool`

use std::time::{Duration, Instant};

use erlangen::server::{self, Server};
use erlangen::supervisor::{self, ChildSpec, Strategy, SupervisorSpec};
use erlangen::{Attach, SpawnOptions, Term};

/// A worker: squares numbers, crashes on `:crash`.
fn worker() -> Server<u64> {
    Server::new(0).on_call(|served, request| match request {
        Term::Int(n) => (Term::from(n * n), served + 1),
        r if r.is_keyword("CRASH") => panic!("worker crashed on request"),
        other => (other, served),
    })
}

fn main() {
    // A worker's panic is one event-log line on stderr (an agent's panic
    // does not go through Rust's default panic report).
    let mut spec = SupervisorSpec::new(Strategy::OneForOne).intensity(3, Duration::from_secs(5));
    for i in 1..=3 {
        let id = format!("worker-{i}");
        spec = spec.child(ChildSpec::async_body(&id, || worker().run_async()).name(&id));
    }
    let pool = supervisor::start(spec, &SpawnOptions::new().attach(Attach::Monitor))
        .expect("the pool starts");
    let show = |when: &str| {
        let children = supervisor::which_children(&pool, server::DEFAULT_TIMEOUT).unwrap();
        let list: Vec<String> = children.iter().map(|(id, a)| format!("{id}={a}")).collect();
        println!("{when}: {}", list.join(" "));
    };
    show("pool started");
    for n in 1..=3 {
        let name = format!(":worker-{n}");
        let reply = server::request(name.as_str(), n as i64 * 10, server::DEFAULT_TIMEOUT);
        println!("request {} to worker-{n} -> {reply:?}", n * 10);
    }
    let crash = server::request(":worker-2", Term::keyword("crash"), server::DEFAULT_TIMEOUT);
    println!("worker-2 asked to crash -> {}", crash.unwrap_err());
    // The others serve on while worker-2 is restarted.
    for n in [1, 3] {
        let name = format!(":worker-{n}");
        match server::request(name.as_str(), n as i64, server::DEFAULT_TIMEOUT) {
            Ok(reply) => println!("worker-{n} serves on -> {reply}"),
            Err(e) => println!("worker-{n} failed: {e}"),
        }
    }
    // The restarted worker-2 has its name back as soon as its supervisor
    // has started it again: wait for that (10 s at most).
    let deadline = Instant::now() + Duration::from_secs(10);
    while erlangen::registry::whereis("worker-2").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for round in 0..2 {
        for n in 1..=3 {
            let name = format!(":worker-{n}");
            match server::request(name.as_str(), round * 10 + n, server::DEFAULT_TIMEOUT) {
                Ok(reply) => println!("round {round}: worker-{n} -> {reply}"),
                Err(e) => println!("round {round}: worker-{n} failed: {e}"),
            }
        }
    }
    show("after the restart");
    erlangen::exit(Term::keyword("shutdown"), &pool).unwrap();
    let notice = erlangen::receive_timeout(Duration::from_secs(10)).unwrap();
    println!("pool stopped: {notice}");
}
