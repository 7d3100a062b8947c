//! The cryptography node connections need, std-only and without `unsafe`:
//! SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104), HKDF-SHA256 (RFC 5869),
//! X25519 (RFC 7748), ChaCha20-Poly1305 (RFC 8439), constant-time
//! comparison, OS randomness, and the cookie file.
//!
//! No branch and no table index depends on a secret (keys, scalars,
//! plaintext, tags): the field and Poly1305 arithmetic is multiplications,
//! shifts and masks, the X25519 ladder swaps with a mask, and tags and
//! proofs are compared in constant time. Checked against the RFCs' test
//! vectors (tests/crypto.rs) and every Wycheproof vector for these
//! algorithms (tests/wycheproof.rs).

pub mod aead;
mod chacha20;
pub mod cookie;
mod hkdf;
mod hmac;
mod poly1305;
mod sha256;
mod x25519;

pub use chacha20::{chacha20_block, chacha20_xor};
pub use hkdf::{hkdf, hkdf_expand, hkdf_extract, OutputTooLong, MAX_OKM};
pub use hmac::{hmac_sha256, HmacSha256};
pub use poly1305::{poly1305, Poly1305};
pub use sha256::{sha256, Sha256};
pub use x25519::{x25519, x25519_public, x25519_shared, LowOrderPoint, BASEPOINT};

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

/// Fills `buf` with random bytes from the operating system's CSPRNG
/// (`/dev/urandom`, the same generator as `getrandom(2)`; std offers no
/// other way without `unsafe`).
///
/// # Errors
/// If the OS source cannot be opened or read, with an error saying so.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("no operating-system randomness (/dev/urandom): {e}"),
            )
        })
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
