//! Erlangen's test tools and benchmarks, kept out of the `erlangen`
//! package so that `cargo install --path .` and `make install` install the
//! kernel and the port mapper only. The programs are in `src/bin`:
//! `erlangen-hostile` (hostile peers, chaos/hostile.sh), `erlangen-chaos`
//! (the multi-host harness, chaos/netns.sh) and the benchmark programs
//! (bench/run-all.sh, bench/cluster-scale.py); [`bench`](mod@bench) holds the
//! benchmarks' workloads.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(unsafe_code)]

pub mod bench;
