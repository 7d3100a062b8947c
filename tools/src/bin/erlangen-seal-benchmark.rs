//! The cost of sealing, on one core: `erlangen-seal-benchmark [megabytes]
//! [record-bytes]`. Seals `megabytes` (default 512) of data in records of
//! `record-bytes` (default 16,384) with ChaCha20-Poly1305 in place, as a
//! node connection does (the same function, `aead::seal_in_place`), then
//! opens them again, and prints bytes per second each way; then the same
//! for small records (64 bytes: a remote round trip's message), as records
//! per second; and X25519 operations per second (two per handshake side).
//!
//! Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use erlangen::crypto::{aead, x25519, x25519_public};

const USAGE: &str = "usage: erlangen-seal-benchmark [megabytes] [record-bytes]";

fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[4..].copy_from_slice(&n.to_le_bytes());
    out
}

/// Seals then opens `total` bytes in records of `size`; returns the
/// seconds each took.
fn run_records(total: u64, size: usize) -> Result<(f64, f64, u64), String> {
    let key = [7u8; 32];
    let records = (total / size as u64).max(1);
    let mut buf = vec![0x5au8; size];
    let mut tags = Vec::with_capacity(records as usize);
    let aad = (size as u32 + 16).to_be_bytes();
    // The same buffer is sealed over and over (each time under the next
    // nonce); opening runs the chain backwards.
    let start = Instant::now();
    for n in 0..records {
        tags.push(aead::seal_in_place(&key, &nonce(n), &aad, &mut buf));
    }
    let seal = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for n in (0..records).rev() {
        aead::open_in_place(&key, &nonce(n), &aad, &mut buf, &tags[n as usize])
            .map_err(|e| format!("record {n}: {e}"))?;
    }
    let open = start.elapsed().as_secs_f64();
    if buf.iter().any(|&b| b != 0x5a) {
        return Err("opened data differs".into());
    }
    Ok((seal, open, records))
}

fn run(megabytes: u64, size: usize) -> Result<(), String> {
    if size == 0 {
        return Err("record size 0".into());
    }
    let total = megabytes << 20;
    let (seal, open, records) = run_records(total, size)?;
    let bytes = (records * size as u64) as f64;
    erlangen::kernel::print_line(format_args!(
        "ChaCha20-Poly1305 {size}-byte records: seal {:.0} MB/s, open {:.0} MB/s (one core)",
        bytes / seal / 1e6,
        bytes / open / 1e6
    ));
    let (seal, open, records) = run_records(64 << 20, 64)?;
    erlangen::kernel::print_line(format_args!(
        "ChaCha20-Poly1305 64-byte records: seal {:.2} M/s ({:.0} ns each), open {:.2} M/s ({:.0} ns each)",
        records as f64 / seal / 1e6,
        seal * 1e9 / records as f64,
        records as f64 / open / 1e6,
        open * 1e9 / records as f64
    ));
    let n = 2000;
    let mut k = [9u8; 32];
    let start = Instant::now();
    for _ in 0..n {
        k = x25519(&k, &x25519_public(&[3u8; 32]));
    }
    black_box(k);
    let t = start.elapsed().as_secs_f64() / (2 * n) as f64;
    erlangen::kernel::print_line(format_args!(
        "X25519: {:.0} us per operation ({:.0}/s)",
        t * 1e6,
        1.0 / t
    ));
    Ok(())
}

fn main() -> ExitCode {
    if erlangen::kernel::version_requested("erlangen-seal-benchmark") {
        return ExitCode::SUCCESS;
    }
    erlangen_tools::bench::program("erlangen-seal-benchmark", USAGE, &[512, 16_384], |a, _| {
        run(a[0], usize::try_from(a[1]).map_err(|e| e.to_string())?)
    })
}
