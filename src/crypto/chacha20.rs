//! The ChaCha20 stream cipher as specified in RFC 8439 section 2.4 (96-bit
//! nonce, 32-bit block counter).
//!
//! Four blocks are computed at once: each of the 16 state words is a
//! `[u32; 4]` holding that word of four consecutive blocks, so every step
//! of a round is the same operation on four lanes, which the compiler
//! turns into SIMD instructions (SSE2 on x86-64, NEON on AArch64). Only
//! additions, rotations and exclusive-ors: nothing depends on the key for
//! a branch or a table index.

/// One state word of four blocks.
type V = [u32; 4];

#[inline(always)]
fn add(a: V, b: V) -> V {
    [
        a[0].wrapping_add(b[0]),
        a[1].wrapping_add(b[1]),
        a[2].wrapping_add(b[2]),
        a[3].wrapping_add(b[3]),
    ]
}

#[inline(always)]
fn xor_rotl(a: V, b: V, n: u32) -> V {
    [
        (a[0] ^ b[0]).rotate_left(n),
        (a[1] ^ b[1]).rotate_left(n),
        (a[2] ^ b[2]).rotate_left(n),
        (a[3] ^ b[3]).rotate_left(n),
    ]
}

#[inline(always)]
fn quarter(x: &mut [V; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = add(x[a], x[b]);
    x[d] = xor_rotl(x[d], x[a], 16);
    x[c] = add(x[c], x[d]);
    x[b] = xor_rotl(x[b], x[c], 12);
    x[a] = add(x[a], x[b]);
    x[d] = xor_rotl(x[d], x[a], 8);
    x[c] = add(x[c], x[d]);
    x[b] = xor_rotl(x[b], x[c], 7);
}

/// Bytes of keystream one call of [`ChaCha20::blocks4`] yields.
pub(crate) const FOUR_BLOCKS: usize = 256;

/// A ChaCha20 key and nonce, ready to produce keystream.
#[derive(Clone)]
pub(crate) struct ChaCha20 {
    /// Words 0-3 constants, 4-11 key, 12 counter (unused here), 13-15 nonce.
    state: [u32; 16],
}

impl ChaCha20 {
    /// The cipher for `key` and `nonce` (RFC 8439 section 2.3).
    pub(crate) fn new(key: &[u8; 32], nonce: &[u8; 12]) -> ChaCha20 {
        let mut state = [0u32; 16];
        state[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
        for (i, w) in key.chunks_exact(4).enumerate() {
            state[4 + i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
        for (i, w) in nonce.chunks_exact(4).enumerate() {
            state[13 + i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
        ChaCha20 { state }
    }

    /// The keystream of blocks `counter` .. `counter + 3` (the counter
    /// wraps modulo 2^32, as RFC 8439 leaves to the caller to prevent).
    pub(crate) fn blocks4(&self, counter: u32, out: &mut [u8; FOUR_BLOCKS]) {
        let mut init = [[0u32; 4]; 16];
        for (w, s) in init.iter_mut().zip(self.state) {
            *w = [s; 4];
        }
        init[12] = [
            counter,
            counter.wrapping_add(1),
            counter.wrapping_add(2),
            counter.wrapping_add(3),
        ];
        let mut x = init;
        for _ in 0..10 {
            quarter(&mut x, 0, 4, 8, 12);
            quarter(&mut x, 1, 5, 9, 13);
            quarter(&mut x, 2, 6, 10, 14);
            quarter(&mut x, 3, 7, 11, 15);
            quarter(&mut x, 0, 5, 10, 15);
            quarter(&mut x, 1, 6, 11, 12);
            quarter(&mut x, 2, 7, 8, 13);
            quarter(&mut x, 3, 4, 9, 14);
        }
        for (word, (xv, iv)) in x.iter().zip(init.iter()).enumerate() {
            let v = add(*xv, *iv);
            for (block, w) in v.iter().enumerate() {
                let at = block * 64 + word * 4;
                out[at..at + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// Exclusive-ors `data` with the keystream starting at block
    /// `counter` (encryption and decryption are the same).
    pub(crate) fn apply(&self, counter: u32, data: &mut [u8]) {
        let mut ks = [0u8; FOUR_BLOCKS];
        let mut counter = counter;
        for chunk in data.chunks_mut(FOUR_BLOCKS) {
            self.blocks4(counter, &mut ks);
            xor(chunk, &ks);
            counter = counter.wrapping_add(4);
        }
    }
}

/// `data ^= ks` over `data`'s length (`ks` at least as long).
#[inline]
pub(crate) fn xor(data: &mut [u8], ks: &[u8]) {
    for (d, k) in data.iter_mut().zip(ks) {
        *d ^= k;
    }
}

/// ChaCha20 encryption (RFC 8439 section 2.4): `data` exclusive-ored with
/// the keystream of `key` and `nonce` from block `counter` on.
pub fn chacha20_xor(key: &[u8; 32], nonce: &[u8; 12], counter: u32, data: &mut [u8]) {
    ChaCha20::new(key, nonce).apply(counter, data);
}

/// The 64-byte block `counter` of the keystream (RFC 8439 section 2.3).
pub fn chacha20_block(key: &[u8; 32], nonce: &[u8; 12], counter: u32) -> [u8; 64] {
    let mut ks = [0u8; FOUR_BLOCKS];
    ChaCha20::new(key, nonce).blocks4(counter, &mut ks);
    let mut out = [0u8; 64];
    out.copy_from_slice(&ks[..64]);
    out
}
