//! Sealed frames (PROTOCOL.md section 5, "Sealed frames"): after the
//! handshake every frame travels as one record, encrypted and
//! authenticated with ChaCha20-Poly1305 under the key of its direction.
//!
//! ```text
//! +----------------+--------------------------------+-----------+
//! | length: u32 BE | ChaCha20(kind || payload)      | tag: 16   |
//! +----------------+--------------------------------+-----------+
//!   length = 1 + payload + 16, in clear and authenticated (the AAD)
//!   nonce  = 4 zero bytes || record number: u64 little-endian
//! ```
//!
//! The record number is not sent: each side counts the records of a
//! direction from 0, so a record that was altered, dropped, replayed or
//! reordered fails to open (its tag was made under another nonce), and the
//! connection is closed with nothing of it delivered. After
//! [`REKEY_AFTER`] records of a direction both sides replace its key by
//! `HKDF-Expand(key, "erlangen v3 rekey", 32)` and count from 0 again
//! (TLS 1.3's KeyUpdate, done by count instead of by message), so a nonce
//! never repeats under a key and the counter never comes near wrapping.

use crate::crypto::{self, aead};
use crate::frame::{self, FrameError};

/// Bytes a record adds to a frame: the tag.
pub(crate) const TAG_LEN: usize = aead::TAG_LEN;

/// Records sealed under one key before it is replaced (2^24).
pub(crate) const REKEY_AFTER: u64 = 1 << 24;

const REKEY_LABEL: &[u8] = b"erlangen v3 rekey";

/// The two keys of a sealed connection, from the handshake.
pub(crate) struct Keys {
    /// For the records we send.
    pub send: [u8; 32],
    /// For the records we receive.
    pub recv: [u8; 32],
}

/// Shows nothing of the keys.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

/// One direction's key and record number.
struct Direction {
    key: [u8; 32],
    counter: u64,
    rekey_after: u64,
}

impl Direction {
    fn new(key: [u8; 32], rekey_after: u64) -> Direction {
        Direction {
            key,
            counter: 0,
            rekey_after,
        }
    }

    /// The nonce of the next record (rekeying first when the key has
    /// sealed `rekey_after` records).
    fn next_nonce(&mut self) -> [u8; 12] {
        if self.counter >= self.rekey_after {
            let mut next = [0u8; 32];
            // 32 bytes never exceed HKDF's limit.
            let _ = crypto::hkdf_expand(&self.key, REKEY_LABEL, &mut next);
            self.key = next;
            self.counter = 0;
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        nonce
    }
}

/// Seals the frames of one direction, in order.
pub(crate) struct Sealer(Direction);

impl Sealer {
    pub(crate) fn new(key: [u8; 32]) -> Sealer {
        Sealer(Direction::new(key, REKEY_AFTER))
    }

    #[cfg(test)]
    fn with_rekey(key: [u8; 32], rekey_after: u64) -> Sealer {
        Sealer(Direction::new(key, rekey_after))
    }

    /// Turns the one clear frame at `buf[start..]` (`length`, `kind`,
    /// `payload`, as `frame::finish_frame` left it) into a record, in
    /// place: the length grows by the tag, the body is encrypted where it
    /// lies and the tag appended. Returns `false`, with `buf` unchanged, if
    /// the longer length would not fit its `u32`.
    pub(crate) fn seal_frame(&mut self, buf: &mut Vec<u8>, start: usize) -> bool {
        let body = buf.len() - start - 4;
        let Ok(length) = u32::try_from(body + TAG_LEN) else {
            return false;
        };
        let aad = length.to_be_bytes();
        buf[start..start + 4].copy_from_slice(&aad);
        let nonce = self.0.next_nonce();
        let tag = aead::seal_in_place(&self.0.key, &nonce, &aad, &mut buf[start + 4..]);
        buf.extend_from_slice(&tag);
        true
    }

    /// Seals every clear frame in `buf` (frames queued before the
    /// handshake ended), in order.
    pub(crate) fn seal_all(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let clear = std::mem::take(buf);
        let mut at = 0;
        while at + 4 <= clear.len() {
            let len = u32::from_be_bytes([clear[at], clear[at + 1], clear[at + 2], clear[at + 3]])
                as usize;
            let end = (at + 4 + len).min(clear.len());
            let start = buf.len();
            buf.extend_from_slice(&clear[at..end]);
            // Frames in the queue passed the size check when queued.
            let _ = self.seal_frame(buf, start);
            at = end;
        }
    }
}

/// Opens the records of one direction, in order.
pub(crate) struct Opener(Direction);

/// Why a record was not read: the stream failed, or the record did not
/// authenticate.
#[derive(Debug)]
pub(crate) enum RecordError {
    Frame(FrameError),
    /// The record failed to open: altered, replayed, reordered or from
    /// someone without the key.
    Unsealed,
}

impl From<FrameError> for RecordError {
    fn from(e: FrameError) -> RecordError {
        RecordError::Frame(e)
    }
}

impl Opener {
    pub(crate) fn new(key: [u8; 32]) -> Opener {
        Opener(Direction::new(key, REKEY_AFTER))
    }

    #[cfg(test)]
    fn with_rekey(key: [u8; 32], rekey_after: u64) -> Opener {
        Opener(Direction::new(key, rekey_after))
    }

    /// Reads and opens the next record from `r` into `body`; returns the
    /// frame's kind, its payload being `body[1..]`. `max` bounds the
    /// frame (kind and payload) as for a clear one.
    pub(crate) fn read(
        &mut self,
        r: &mut impl std::io::Read,
        max: usize,
        body: &mut Vec<u8>,
    ) -> Result<u8, RecordError> {
        let aad = frame::read_record(r, 1 + TAG_LEN, max.saturating_add(TAG_LEN), body)?;
        self.open(&aad, body)
    }

    /// Opens the record body `body` (ciphertext and tag) whose length
    /// bytes were `aad`; on success `body` holds the frame (kind first).
    fn open(&mut self, aad: &[u8; 4], body: &mut Vec<u8>) -> Result<u8, RecordError> {
        let Some(text_len) = body.len().checked_sub(TAG_LEN).filter(|&n| n >= 1) else {
            return Err(RecordError::Unsealed);
        };
        let nonce = self.0.next_nonce();
        let (text, tag) = body.split_at_mut(text_len);
        aead::open_in_place(&self.0.key, &nonce, aad, text, tag)
            .map_err(|_| RecordError::Unsealed)?;
        body.truncate(text_len);
        Ok(body[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sealer: &mut Sealer, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        frame::encode_frame(&mut buf, kind, payload).unwrap();
        assert!(sealer.seal_frame(&mut buf, 0));
        buf
    }

    fn read_one(opener: &mut Opener, bytes: &[u8]) -> Result<(u8, Vec<u8>), RecordError> {
        let mut body = Vec::new();
        let kind = opener.read(&mut &bytes[..], 1 << 20, &mut body)?;
        Ok((kind, body[1..].to_vec()))
    }

    #[test]
    fn records_open_in_order_and_nothing_else_does() {
        let key = [7u8; 32];
        let (mut s, mut o) = (Sealer::new(key), Opener::new(key));
        let r0 = record(&mut s, 0x10, b"first");
        let r1 = record(&mut s, 0x17, b"");
        assert_eq!(r0.len(), 4 + 1 + 5 + 16);
        assert_eq!(&r0[..4], &22u32.to_be_bytes());
        assert!(!r0.windows(5).any(|w| w == b"first"));
        assert_eq!(read_one(&mut o, &r0).unwrap(), (0x10, b"first".to_vec()));
        // A replay of record 0 where record 1 is expected fails.
        let mut o2 = Opener::new(key);
        read_one(&mut o2, &r0).unwrap();
        assert!(matches!(read_one(&mut o2, &r0), Err(RecordError::Unsealed)));
        // Reordered: record 1 first fails.
        let mut o3 = Opener::new(key);
        assert!(matches!(read_one(&mut o3, &r1), Err(RecordError::Unsealed)));
        assert_eq!(read_one(&mut o, &r1).unwrap(), (0x17, Vec::new()));
        // Every single flipped bit, the length included, is refused.
        for bit in 0..r0.len() * 8 {
            let mut bad = r0.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut fresh = Opener::new(key);
            assert!(read_one(&mut fresh, &bad).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn both_sides_rekey_at_the_same_record() {
        let key = [9u8; 32];
        let (mut s, mut o) = (Sealer::with_rekey(key, 3), Opener::with_rekey(key, 3));
        let mut late = Opener::with_rekey(key, 1_000);
        for i in 0..10u8 {
            let r = record(&mut s, 0x10, &[i; 40]);
            assert_eq!(read_one(&mut o, &r).unwrap(), (0x10, vec![i; 40]));
            // A side that did not rekey cannot open records after the third.
            assert_eq!(read_one(&mut late, &r).is_ok(), i < 3, "record {i}");
            if i >= 3 {
                break;
            }
        }
    }

    #[test]
    fn queued_clear_frames_are_sealed_in_order() {
        let key = [1u8; 32];
        let mut buf = Vec::new();
        frame::encode_frame(&mut buf, 0x1e, b"nodes").unwrap();
        frame::encode_frame(&mut buf, 0x10, b"send").unwrap();
        let mut s = Sealer::new(key);
        s.seal_all(&mut buf);
        let mut o = Opener::new(key);
        let mut r = &buf[..];
        let mut body = Vec::new();
        assert_eq!(o.read(&mut r, 1024, &mut body).unwrap(), 0x1e);
        assert_eq!(&body[1..], b"nodes");
        assert_eq!(o.read(&mut r, 1024, &mut body).unwrap(), 0x10);
        assert_eq!(&body[1..], b"send");
        assert!(r.is_empty());
    }
}
