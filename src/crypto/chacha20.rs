//! The ChaCha20 stream cipher as specified in RFC 8439 section 2.4 (96-bit
//! nonce, 32-bit block counter).
//!
//! One block at a time in sixteen local `u32` words (a four-lane layout,
//! each word a `[u32; 4]` of four blocks, was tried: on the baseline
//! x86-64 target the compiler kept it scalar and spilled, and it ran
//! slower). Only additions, rotations and exclusive-ors: nothing depends
//! on the key for a branch or a table index.

#[inline(always)]
fn qr(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

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

    /// The keystream block `counter` (RFC 8439 section 2.3). One block at
    /// a time, in sixteen local words: on x86-64 without SSSE3 (the
    /// baseline target) that beats four blocks in vector lanes, whose
    /// rotations cost three instructions each.
    #[inline]
    pub(crate) fn block(&self, counter: u32, out: &mut [u8; 64]) {
        let mut x = self.state;
        x[12] = counter;
        let init = x;
        for _ in 0..10 {
            qr(&mut x, 0, 4, 8, 12);
            qr(&mut x, 1, 5, 9, 13);
            qr(&mut x, 2, 6, 10, 14);
            qr(&mut x, 3, 7, 11, 15);
            qr(&mut x, 0, 5, 10, 15);
            qr(&mut x, 1, 6, 11, 12);
            qr(&mut x, 2, 7, 8, 13);
            qr(&mut x, 3, 4, 9, 14);
        }
        for (chunk, (w, i)) in out.chunks_exact_mut(4).zip(x.iter().zip(init.iter())) {
            chunk.copy_from_slice(&w.wrapping_add(*i).to_le_bytes());
        }
    }

    /// Exclusive-ors `data` with the keystream starting at block
    /// `counter` (encryption and decryption are the same).
    pub(crate) fn apply(&self, counter: u32, data: &mut [u8]) {
        let mut ks = [0u8; 64];
        let mut counter = counter;
        for chunk in data.chunks_mut(64) {
            self.block(counter, &mut ks);
            xor(chunk, &ks);
            counter = counter.wrapping_add(1);
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
    let mut out = [0u8; 64];
    ChaCha20::new(key, nonce).block(counter, &mut out);
    out
}
