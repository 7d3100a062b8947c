//! HMAC-SHA256 as specified in RFC 2104 (test vectors: RFC 4231).

use super::sha256::{sha256, Sha256};

const BLOCK: usize = 64;

/// Streaming HMAC-SHA256, so a transcript can be fed in parts.
#[derive(Clone)]
pub struct HmacSha256 {
    inner: Sha256,
    outer: Sha256,
}

/// Shows nothing of the key-dependent state.
impl std::fmt::Debug for HmacSha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSha256 { .. }")
    }
}

impl HmacSha256 {
    /// A MAC keyed with `key` (keys longer than a block are hashed first).
    pub fn new(key: &[u8]) -> HmacSha256 {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&sha256(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        let mut outer = Sha256::new();
        inner.update(&block.map(|b| b ^ 0x36));
        outer.update(&block.map(|b| b ^ 0x5c));
        HmacSha256 { inner, outer }
    }

    /// Feeds message bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The MAC.
    pub fn finalize(self) -> [u8; 32] {
        let inner = self.inner.finalize();
        let mut outer = self.outer;
        outer.update(&inner);
        outer.finalize()
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new(key);
    mac.update(data);
    mac.finalize()
}
