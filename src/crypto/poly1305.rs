//! The Poly1305 one-time authenticator as specified in RFC 8439 section
//! 2.5: the accumulator and `r` are three limbs of 44, 44 and 42 bits in
//! `u64`, products in `u128` (the shape of poly1305-donna's 64-bit code).
//! Multiplications, shifts and masks only; the final reduction selects
//! with a mask, not a branch.

const M44: u64 = (1 << 44) - 1;
const M42: u64 = (1 << 42) - 1;

/// Streaming Poly1305 under one 32-byte one-time key.
#[derive(Clone)]
pub struct Poly1305 {
    r: [u64; 3],
    /// `r[1]` and `r[2]` times 20 (5 for the reduction mod 2^130 - 5,
    /// times 4 for the limb offset).
    s: [u64; 2],
    h: [u64; 3],
    pad: [u64; 2],
    buf: [u8; 16],
    filled: usize,
}

/// Shows nothing of the key-dependent state.
impl std::fmt::Debug for Poly1305 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Poly1305 { .. }")
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

impl Poly1305 {
    /// An authenticator keyed with `key` (`r` clamped as RFC 8439 says, `s`
    /// the second half). A key must never authenticate two messages.
    pub fn new(key: &[u8; 32]) -> Poly1305 {
        let (t0, t1) = (le64(&key[0..8]), le64(&key[8..16]));
        let r0 = t0 & 0xffc_0fff_ffff;
        let r1 = ((t0 >> 44) | (t1 << 20)) & 0xfff_ffc0_ffff;
        let r2 = (t1 >> 24) & 0x00f_ffff_fc0f;
        Poly1305 {
            r: [r0, r1, r2],
            s: [r1 * 20, r2 * 20],
            h: [0; 3],
            pad: [le64(&key[16..24]), le64(&key[24..32])],
            buf: [0; 16],
            filled: 0,
        }
    }

    /// Adds one 16-byte block; `hibit` is 2^128 in the top limb's position
    /// for a full block, 0 for the final padded one.
    #[inline(always)]
    fn block(&mut self, m: &[u8], hibit: u64) {
        let (t0, t1) = (le64(&m[0..8]), le64(&m[8..16]));
        let [mut h0, mut h1, mut h2] = self.h;
        h0 += t0 & M44;
        h1 += ((t0 >> 44) | (t1 << 20)) & M44;
        h2 += ((t1 >> 24) & M42) | hibit;
        let w = |a: u64, b: u64| u128::from(a) * u128::from(b);
        let [r0, r1, r2] = self.r;
        let [s1, s2] = self.s;
        let d0 = w(h0, r0) + w(h1, s2) + w(h2, s1);
        let mut d1 = w(h0, r1) + w(h1, r0) + w(h2, s2);
        let mut d2 = w(h0, r2) + w(h1, r1) + w(h2, r0);
        d1 += d0 >> 44;
        h0 = d0 as u64 & M44;
        d2 += d1 >> 44;
        h1 = d1 as u64 & M44;
        let c = (d2 >> 42) as u64;
        h2 = d2 as u64 & M42;
        h0 += c * 5;
        h1 += h0 >> 44;
        h0 &= M44;
        self.h = [h0, h1, h2];
    }

    /// Feeds message bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.filled > 0 {
            let n = (16 - self.filled).min(data.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled < 16 {
                return;
            }
            let b = self.buf;
            self.block(&b, 1 << 40);
            self.filled = 0;
        }
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            self.block(b, 1 << 40);
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// Feeds zero bytes up to the next multiple of 16 bytes fed (the
    /// `pad16` of RFC 8439 section 2.8).
    pub fn pad16(&mut self) {
        if self.filled > 0 {
            self.buf[self.filled..].fill(0);
            let b = self.buf;
            self.block(&b, 1 << 40);
            self.filled = 0;
        }
    }

    /// The 16-byte tag.
    pub fn finalize(mut self) -> [u8; 16] {
        if self.filled > 0 {
            let mut b = [0u8; 16];
            b[..self.filled].copy_from_slice(&self.buf[..self.filled]);
            b[self.filled] = 1;
            self.block(&b, 0);
        }
        let [mut h0, mut h1, mut h2] = self.h;
        // Full carry.
        h2 += h1 >> 44;
        h1 &= M44;
        h0 += (h2 >> 42) * 5;
        h2 &= M42;
        h1 += h0 >> 44;
        h0 &= M44;
        h2 += h1 >> 44;
        h1 &= M44;
        h0 += (h2 >> 42) * 5;
        h2 &= M42;
        h1 += h0 >> 44;
        h0 &= M44;
        // g = h + 5 - 2^130; keep h if g is negative, else g.
        let mut g0 = h0 + 5;
        let mut g1 = h1 + (g0 >> 44);
        g0 &= M44;
        let g2 = (h2 + (g1 >> 44)).wrapping_sub(1 << 42);
        g1 &= M44;
        let use_g = (g2 >> 63).wrapping_sub(1); // all ones if g2 >= 0
        h0 = (h0 & !use_g) | (g0 & use_g);
        h1 = (h1 & !use_g) | (g1 & use_g);
        h2 = (h2 & !use_g) | (g2 & use_g & M42);
        // h + s mod 2^128.
        let [p0, p1] = self.pad;
        h0 += p0 & M44;
        h1 += (((p0 >> 44) | (p1 << 20)) & M44) + (h0 >> 44);
        h0 &= M44;
        h2 += ((p1 >> 24) & M42) + (h1 >> 44);
        h1 &= M44;
        h2 &= M42;
        let lo = h0 | (h1 << 44);
        let hi = (h1 >> 20) | (h2 << 24);
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&lo.to_le_bytes());
        tag[8..].copy_from_slice(&hi.to_le_bytes());
        tag
    }
}

/// The Poly1305 tag of `msg` under the one-time `key`.
pub fn poly1305(key: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    let mut p = Poly1305::new(key);
    p.update(msg);
    p.finalize()
}
