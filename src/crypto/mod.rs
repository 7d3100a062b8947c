//! The cryptography the cookie handshake needs, std-only: SHA-256 (FIPS
//! 180-4), HMAC-SHA256 (RFC 2104), constant-time comparison, OS randomness,
//! and the cookie file.

pub mod cookie;
mod hmac;
mod sha256;

pub use hmac::{hmac_sha256, HmacSha256};
pub use sha256::{sha256, Sha256};

use std::io::{self, Read};

/// Compares two byte strings in time that depends only on their lengths,
/// so a peer cannot learn a proof byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// Fills `buf` with random bytes from the operating system
/// (`/dev/urandom`).
///
/// # Errors
/// If the OS source cannot be read.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn random_bytes_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        random_bytes(&mut a).unwrap();
        random_bytes(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
