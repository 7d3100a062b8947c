//! ChaCha20-Poly1305 authenticated encryption with associated data, as
//! specified in RFC 8439 section 2.8, in place: the caller's buffer is
//! encrypted where it lies and the tag written beside it, so sealing a
//! frame into a write buffer allocates nothing.

use super::chacha20::ChaCha20;
use super::poly1305::Poly1305;

/// Bytes of a tag.
pub const TAG_LEN: usize = 16;

/// Longest plaintext RFC 8439 allows under one nonce: 2^32 - 1 blocks of
/// 64 bytes after the Poly1305 key's block.
const MAX_TEXT: u64 = (1 << 38) - 64;

/// Why a ciphertext was not opened. Nothing of it is returned: the buffer
/// holds no plaintext afterwards (it is left as ciphertext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("authentication failed (the ciphertext, its associated data or its tag was altered, or the key or nonce differs)")
    }
}

impl std::error::Error for OpenError {}

/// The Poly1305 key of a message: the first 32 bytes of block 0.
fn poly_key(c: &ChaCha20) -> [u8; 32] {
    let mut block = [0u8; 64];
    c.block(0, &mut block);
    let mut key = [0u8; 32];
    key.copy_from_slice(&block[..32]);
    key
}

fn tag(poly_key: &[u8; 32], aad: &[u8], ciphertext: &[u8]) -> [u8; TAG_LEN] {
    let mut p = Poly1305::new(poly_key);
    p.update(aad);
    p.pad16();
    p.update(ciphertext);
    p.pad16();
    let mut lengths = [0u8; 16];
    lengths[..8].copy_from_slice(&(aad.len() as u64).to_le_bytes());
    lengths[8..].copy_from_slice(&(ciphertext.len() as u64).to_le_bytes());
    p.update(&lengths);
    p.finalize()
}

/// Encrypts `data` in place and returns its tag.
///
/// # Panics
/// If `data` is longer than RFC 8439 allows under one nonce (256 GiB);
/// callers seal frames of at most a few MiB.
pub fn seal_in_place(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
    assert!(
        data.len() as u64 <= MAX_TEXT,
        "ChaCha20-Poly1305 message over 2^38 - 64 bytes"
    );
    let c = ChaCha20::new(key, nonce);
    c.apply(1, data);
    tag(&poly_key(&c), aad, data)
}

/// Checks `tag` over `aad` and the ciphertext `data` (in constant time),
/// and only if it matches decrypts `data` in place.
///
/// # Errors
/// [`OpenError`] if the tag does not match (or `data` is longer than RFC
/// 8439 allows); `data` is then left as it was.
pub fn open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag_in: &[u8],
) -> Result<(), OpenError> {
    if data.len() as u64 > MAX_TEXT || tag_in.len() != TAG_LEN {
        return Err(OpenError);
    }
    let c = ChaCha20::new(key, nonce);
    // The ciphertext is decrypted only after its tag checked.
    if !super::constant_time_eq(&tag(&poly_key(&c), aad, data), tag_in) {
        return Err(OpenError);
    }
    c.apply(1, data);
    Ok(())
}

/// Encrypts `plaintext` and returns ciphertext followed by the 16-byte tag.
pub fn seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    let t = seal_in_place(key, nonce, aad, &mut out);
    out.extend_from_slice(&t);
    out
}

/// Checks and decrypts `sealed` (ciphertext followed by the 16-byte tag).
///
/// # Errors
/// [`OpenError`] if it is shorter than a tag or does not authenticate.
pub fn open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < TAG_LEN {
        return Err(OpenError);
    }
    let (ct, t) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut out = ct.to_vec();
    open_in_place(key, nonce, aad, &mut out, t)?;
    Ok(out)
}
