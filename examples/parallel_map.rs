//! `cargo run --example parallel_map`: the SPEC's walkthrough from Rust.
//! Spawns `parallel-map` of `1+` over `#(2 4 6 8 10 12 14)` with three
//! workers, monitored, and prints the result from the exit notification.

use std::time::Duration;

use erlangen::call;
use erlangen::examples::{parallel_map, register_functions};
use erlangen::{receive_timeout, spawn_with, Attach, SpawnOptions, Term};

fn main() {
    register_functions();
    let one_plus = match call::function_of(&Term::symbol("1+")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let input: Vec<Term> = [2, 4, 6, 8, 10, 12, 14]
        .iter()
        .map(|&i| Term::from(i))
        .collect();
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let spawned = spawn_with(&monitor, move || parallel_map(one_plus, &input, 3));
    if let Err(e) = spawned {
        eprintln!("{e}");
        std::process::exit(1);
    }
    match receive_timeout(Duration::from_secs(10)) {
        // (agent :OK result)
        Ok(notice) => match notice.as_list() {
            Some([_, ok, result]) if ok.is_keyword("ok") => println!("{result}"),
            _ => {
                eprintln!("parallel-map failed: {notice}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
