//! X25519 Diffie-Hellman as specified in RFC 7748 (sections 5 and 6.1).
//!
//! Field elements of GF(2^255 - 19) are five 51-bit limbs in `u64`, and
//! products are computed in `u128`, so no operation depends on a secret
//! for a branch or a table index: the scalar's bits pick the ladder's
//! points through a masked conditional swap, and the inverse is a fixed
//! exponentiation (Fermat), whose exponent is public.

const MASK51: u64 = (1 << 51) - 1;

/// An element of GF(2^255 - 19), limbs of 51 bits (may be slightly larger
/// between operations; every operation accepts limbs below 2^54).
#[derive(Clone, Copy)]
struct Fe([u64; 5]);

impl Fe {
    const ZERO: Fe = Fe([0; 5]);
    const ONE: Fe = Fe([1, 0, 0, 0, 0]);

    /// The u-coordinate decoding of RFC 7748 section 5: little-endian, the
    /// top bit masked; values from p to 2^255 - 1 (non-canonical) are
    /// accepted and reduced by the arithmetic.
    fn from_bytes(b: &[u8; 32]) -> Fe {
        let load = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Fe([
            load(0) & MASK51,
            (load(6) >> 3) & MASK51,
            (load(12) >> 6) & MASK51,
            (load(19) >> 1) & MASK51,
            (load(24) >> 12) & MASK51,
        ])
    }

    /// The canonical encoding (fully reduced modulo p).
    fn to_bytes(self) -> [u8; 32] {
        let mut l = self.carry().0;
        // q = 1 if the value is >= p, computed without a branch.
        let mut q = (l[0] + 19) >> 51;
        q = (l[1] + q) >> 51;
        q = (l[2] + q) >> 51;
        q = (l[3] + q) >> 51;
        q = (l[4] + q) >> 51;
        l[0] += 19 * q;
        l[1] += l[0] >> 51;
        l[0] &= MASK51;
        l[2] += l[1] >> 51;
        l[1] &= MASK51;
        l[3] += l[2] >> 51;
        l[2] &= MASK51;
        l[4] += l[3] >> 51;
        l[3] &= MASK51;
        l[4] &= MASK51;
        let words = [
            l[0] | (l[1] << 51),
            (l[1] >> 13) | (l[2] << 38),
            (l[2] >> 26) | (l[3] << 25),
            (l[3] >> 39) | (l[4] << 12),
        ];
        let mut out = [0u8; 32];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Brings every limb below 2^51 + 2^13 (one carry pass).
    fn carry(self) -> Fe {
        let l = self.0;
        let c = [l[0] >> 51, l[1] >> 51, l[2] >> 51, l[3] >> 51, l[4] >> 51];
        Fe([
            (l[0] & MASK51) + c[4] * 19,
            (l[1] & MASK51) + c[0],
            (l[2] & MASK51) + c[1],
            (l[3] & MASK51) + c[2],
            (l[4] & MASK51) + c[3],
        ])
    }

    fn add(self, o: Fe) -> Fe {
        let (a, b) = (self.0, o.0);
        Fe([
            a[0] + b[0],
            a[1] + b[1],
            a[2] + b[2],
            a[3] + b[3],
            a[4] + b[4],
        ])
        .carry()
    }

    fn sub(self, o: Fe) -> Fe {
        // Adds 16p first so no limb goes below zero (limbs of `o` are
        // below 2^54 = 16 * 2^50).
        const P16_0: u64 = 16 * ((1 << 51) - 19);
        const P16_N: u64 = 16 * ((1 << 51) - 1);
        let (a, b) = (self.0, o.0);
        Fe([
            a[0] + P16_0 - b[0],
            a[1] + P16_N - b[1],
            a[2] + P16_N - b[2],
            a[3] + P16_N - b[3],
            a[4] + P16_N - b[4],
        ])
        .carry()
    }

    fn mul(self, o: Fe) -> Fe {
        let m = |x: u64, y: u64| u128::from(x) * u128::from(y);
        let (a, b) = (self.0, o.0);
        let (b1, b2, b3, b4) = (b[1] * 19, b[2] * 19, b[3] * 19, b[4] * 19);
        let c0 = m(a[0], b[0]) + m(a[4], b1) + m(a[3], b2) + m(a[2], b3) + m(a[1], b4);
        let c1 = m(a[1], b[0]) + m(a[0], b[1]) + m(a[4], b2) + m(a[3], b3) + m(a[2], b4);
        let c2 = m(a[2], b[0]) + m(a[1], b[1]) + m(a[0], b[2]) + m(a[4], b3) + m(a[3], b4);
        let c3 = m(a[3], b[0]) + m(a[2], b[1]) + m(a[1], b[2]) + m(a[0], b[3]) + m(a[4], b4);
        let c4 = m(a[4], b[0]) + m(a[3], b[1]) + m(a[2], b[2]) + m(a[1], b[3]) + m(a[0], b[4]);
        Fe::carry_wide([c0, c1, c2, c3, c4])
    }

    fn carry_wide(c: [u128; 5]) -> Fe {
        let mask = u128::from(MASK51);
        let c1 = c[1] + (c[0] >> 51);
        let c2 = c[2] + (c1 >> 51);
        let c3 = c[3] + (c2 >> 51);
        let c4 = c[4] + (c3 >> 51);
        let top = (c4 >> 51) as u64;
        let mut l0 = (c[0] & mask) as u64 + top * 19;
        let l1 = (c1 & mask) as u64 + (l0 >> 51);
        l0 &= MASK51;
        Fe([
            l0,
            l1,
            (c2 & mask) as u64,
            (c3 & mask) as u64,
            (c4 & mask) as u64,
        ])
    }

    fn square(self) -> Fe {
        self.mul(self)
    }

    /// Multiplies by a small constant (below 2^20).
    fn mul_small(self, k: u64) -> Fe {
        let a = self.0;
        let m = |x: u64| u128::from(x) * u128::from(k);
        Fe::carry_wide([m(a[0]), m(a[1]), m(a[2]), m(a[3]), m(a[4])])
    }

    /// `self^(p-2)`, the inverse (0 for 0). The exponent is public, so
    /// branching on its bits reveals nothing.
    fn invert(self) -> Fe {
        // p - 2 = 2^255 - 21: bits 254..0 all set except bits 2 and 4.
        let mut r = Fe::ONE;
        for bit in (0..255).rev() {
            r = r.square();
            if bit != 2 && bit != 4 {
                r = r.mul(self);
            }
        }
        r
    }

    /// Swaps `a` and `b` if `swap` is 1, leaves them if 0, in the same
    /// instructions either way.
    fn cswap(swap: u64, a: &mut Fe, b: &mut Fe) {
        let mask = std::hint::black_box(0u64.wrapping_sub(swap));
        for (x, y) in a.0.iter_mut().zip(b.0.iter_mut()) {
            let t = mask & (*x ^ *y);
            *x ^= t;
            *y ^= t;
        }
    }
}

/// The u-coordinate of the base point (9).
pub const BASEPOINT: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 9;
    b
};

/// The X25519 function of RFC 7748 section 5: the scalar `k` (clamped
/// here) times the point with u-coordinate `u`. Returns the all-zero
/// string for a low-order `u`; [`x25519_shared`] rejects that.
pub fn x25519(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    let mut k = *k;
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    let x1 = Fe::from_bytes(u);
    let (mut x2, mut z2, mut x3, mut z3) = (Fe::ONE, Fe::ZERO, x1, Fe::ONE);
    let mut swap = 0u64;
    for t in (0..255).rev() {
        let kt = u64::from((k[t / 8] >> (t % 8)) & 1);
        swap ^= kt;
        Fe::cswap(swap, &mut x2, &mut x3);
        Fe::cswap(swap, &mut z2, &mut z3);
        swap = kt;
        let a = x2.add(z2);
        let aa = a.square();
        let b = x2.sub(z2);
        let bb = b.square();
        let e = aa.sub(bb);
        let c = x3.add(z3);
        let d = x3.sub(z3);
        let da = d.mul(a);
        let cb = c.mul(b);
        x3 = da.add(cb).square();
        z3 = x1.mul(da.sub(cb).square());
        x2 = aa.mul(bb);
        z2 = e.mul(aa.add(e.mul_small(121_665)));
    }
    Fe::cswap(swap, &mut x2, &mut x3);
    Fe::cswap(swap, &mut z2, &mut z3);
    x2.mul(z2.invert()).to_bytes()
}

/// The public key of private key `k`: `X25519(k, 9)`.
pub fn x25519_public(k: &[u8; 32]) -> [u8; 32] {
    x25519(k, &BASEPOINT)
}

/// The all-zero shared secret: the peer sent a point of low order, which
/// would make the secret known to anyone (RFC 7748 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowOrderPoint;

impl std::fmt::Display for LowOrderPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer's X25519 key is a low-order point (all-zero shared secret)")
    }
}

impl std::error::Error for LowOrderPoint {}

/// The Diffie-Hellman shared secret of our private `k` and the peer's
/// public `u`, refused when all zero (checked in constant time, as RFC 7748
/// section 6.1 recommends).
///
/// # Errors
/// [`LowOrderPoint`] if the result is all zero.
pub fn x25519_shared(k: &[u8; 32], u: &[u8; 32]) -> Result<[u8; 32], LowOrderPoint> {
    let s = x25519(k, u);
    if super::constant_time_eq(&s, &[0u8; 32]) {
        return Err(LowOrderPoint);
    }
    Ok(s)
}
