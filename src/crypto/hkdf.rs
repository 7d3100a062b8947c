//! HKDF with HMAC-SHA256 as specified in RFC 5869.

use super::hmac::HmacSha256;

/// Longest output of [`hkdf_expand`]: 255 blocks of 32 bytes.
pub const MAX_OKM: usize = 255 * 32;

/// The requested output is longer than [`MAX_OKM`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputTooLong;

impl std::fmt::Display for OutputTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HKDF-SHA256 output longer than {MAX_OKM} bytes")
    }
}

impl std::error::Error for OutputTooLong {}

/// HKDF-Extract: the pseudorandom key `HMAC(salt, ikm)`. An empty salt is
/// 32 zero bytes, which HMAC's key padding makes the same thing.
pub fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new(salt);
    mac.update(ikm);
    mac.finalize()
}

/// HKDF-Expand: fills `okm` from the pseudorandom key `prk` and `info`.
///
/// # Errors
/// [`OutputTooLong`] if `okm` is longer than [`MAX_OKM`] (nothing is
/// written).
pub fn hkdf_expand(prk: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), OutputTooLong> {
    if okm.len() > MAX_OKM {
        return Err(OutputTooLong);
    }
    let mut previous: Option<[u8; 32]> = None;
    for (i, chunk) in okm.chunks_mut(32).enumerate() {
        let mut mac = HmacSha256::new(prk);
        if let Some(t) = &previous {
            mac.update(t);
        }
        mac.update(info);
        // i < 255, checked above.
        mac.update(&[i as u8 + 1]);
        let t = mac.finalize();
        chunk.copy_from_slice(&t[..chunk.len()]);
        previous = Some(t);
    }
    Ok(())
}

/// HKDF (extract, then expand) into `okm`.
///
/// # Errors
/// [`OutputTooLong`] if `okm` is longer than [`MAX_OKM`].
pub fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), OutputTooLong> {
    hkdf_expand(&hkdf_extract(salt, ikm), info, okm)
}
