//! Codec throughput: `erlangen-codec-benchmark [seconds-per-case]`. Prints
//! encode and decode rates in MB/s and terms/s for a small message
//! `(:PING 42 "x")` and a vector of 100,000 integers. Exit codes: 0 ok,
//! 2 bad arguments.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use erlangen::term::{decode, encode_into, AgentIds, Limits};
use erlangen::Term;

struct NoIds;
impl AgentIds for NoIds {
    fn wire_id(&self, _: u64) -> Option<(String, u64)> {
        None
    }
}

/// Runs `f` repeatedly for about `budget`; returns runs per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        runs += 16;
    }
    runs as f64 / start.elapsed().as_secs_f64()
}

fn case(name: &str, term: &Term, budget: Duration) {
    let mut buf = Vec::with_capacity(1 << 20);
    buf.clear();
    if encode_into(term, &mut buf, &NoIds).is_err() {
        eprintln!("{name}: cannot encode");
        return;
    }
    let size = buf.len() as f64;
    let enc = rate(budget, || {
        buf.clear();
        let _ = encode_into(black_box(term), &mut buf, &NoIds);
        black_box(&buf);
    });
    let limits = Limits::default();
    let bytes = buf.clone();
    let dec = rate(budget, || {
        let t = decode(black_box(&bytes), &limits);
        black_box(t.is_ok());
    });
    erlangen::kernel::print_line(format_args!(
        "codec {name} ({size} bytes): encode {:.0} terms/s {:.0} MB/s, decode {:.0} terms/s {:.0} MB/s",
        enc,
        enc * size / 1e6,
        dec,
        dec * size / 1e6
    ));
}

fn main() -> ExitCode {
    if erlangen::kernel::version_requested("erlangen-codec-benchmark") {
        return std::process::ExitCode::SUCCESS;
    }
    erlangen_tools::bench::program(
        "erlangen-codec-benchmark",
        "usage: erlangen-codec-benchmark [seconds-per-case]",
        &[2],
        |a, _| {
            let budget = Duration::from_secs(a[0].max(1));
            let small = Term::list(vec![Term::keyword("ping"), 42.into(), "x".into()]);
            case("small message", &small, budget);
            let large = Term::Vector((0..100_000i64).map(|i| Term::Int(i * 7919)).collect());
            case("vector of 100000 integers", &large, budget);
            Ok(())
        },
    )
}
