//! Sealed frames (PROTOCOL.md section 5, "Sealed frames"): after the
//! handshake the frames of each direction travel in records, encrypted and
//! authenticated with ChaCha20-Poly1305 under the key of the direction. A
//! record carries one or more whole frames, as TLS records carry a
//! stream: a writer seals what it writes at once (one frame on a quiet
//! connection, a batch in a burst), so a stream of small messages pays for
//! the AEAD's set-up once per batch, not once per message.
//!
//! ```text
//! +----------------+----------------------------------------+-----------+
//! | length: u32 BE | ChaCha20(frame || frame || ...)        | tag: 16   |
//! +----------------+----------------------------------------+-----------+
//!   length = frames + 16, in clear and authenticated (the AAD)
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

/// Frames a record carries at most, in bytes, unless it carries a single
/// larger frame (256 KiB: large enough to amortise the AEAD, small enough
/// that a reader holds little before it can check a tag).
pub(crate) const RECORD_FRAMES: usize = 256 * 1024;

/// Smallest record: one frame of 5 bytes (length and kind) and the tag.
pub(crate) const MIN_RECORD: usize = frame::HEADER_LEN + TAG_LEN;

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

    /// Appends the clear frames `frames` (whole frames, as queued) to
    /// `out` as records of at most [`RECORD_FRAMES`] bytes of frames each
    /// (one larger frame goes alone), encrypted in place in `out`: the
    /// frames are copied once, into the write buffer, and sealed there.
    pub(crate) fn seal_batch(&mut self, frames: &[u8], out: &mut Vec<u8>) {
        let mut at = 0;
        while at < frames.len() {
            // Whole frames up to the record's size (at least one).
            let mut end = at;
            while end + 4 <= frames.len() {
                let len = u32::from_be_bytes([
                    frames[end],
                    frames[end + 1],
                    frames[end + 2],
                    frames[end + 3],
                ]) as usize;
                let next = (end + 4 + len).min(frames.len());
                if end > at && next - at > RECORD_FRAMES {
                    break;
                }
                end = next;
            }
            if end == at {
                // Not a whole frame header (never queued): send the rest.
                end = frames.len();
            }
            self.seal_one(&frames[at..end], out);
            at = end;
        }
    }

    /// Appends one record carrying `frames` to `out`.
    fn seal_one(&mut self, frames: &[u8], out: &mut Vec<u8>) {
        // Frames are bounded far below 4 GiB (the sender checks).
        let length = u32::try_from(frames.len() + TAG_LEN).unwrap_or(u32::MAX);
        let aad = length.to_be_bytes();
        out.extend_from_slice(&aad);
        let start = out.len();
        out.extend_from_slice(frames);
        let nonce = self.0.next_nonce();
        let tag = aead::seal_in_place(&self.0.key, &nonce, &aad, &mut out[start..]);
        out.extend_from_slice(&tag);
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

    /// Reads and opens the next record from `r` into `body`, which then
    /// holds its frames (whole clear frames, to be read with
    /// [`next_frame`]). `max` bounds one frame (length field) as for a
    /// clear connection; a record may hold [`RECORD_FRAMES`] bytes of
    /// frames, or one frame of up to `max`.
    pub(crate) fn read(
        &mut self,
        r: &mut impl std::io::Read,
        max: usize,
        body: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let limit = RECORD_FRAMES
            .max(max.saturating_add(4))
            .saturating_add(TAG_LEN);
        let aad = frame::read_record(r, MIN_RECORD, limit, body)?;
        let text_len = body.len() - TAG_LEN;
        let nonce = self.0.next_nonce();
        let (text, tag) = body.split_at_mut(text_len);
        aead::open_in_place(&self.0.key, &nonce, &aad, text, tag)
            .map_err(|_| RecordError::Unsealed)?;
        body.truncate(text_len);
        Ok(())
    }
}

/// The frame at `frames[*at..]` of an opened record: its kind and the
/// range of its payload, moving `at` past it. `Err` for a frame of length
/// 0, over `max`, or running past the record's end (frames never straddle
/// records).
pub(crate) fn next_frame(
    frames: &[u8],
    at: &mut usize,
    max: usize,
) -> Result<(u8, std::ops::Range<usize>), FrameError> {
    let rest = &frames[*at..];
    if rest.len() < frame::HEADER_LEN {
        return Err(FrameError::Truncated {
            got: rest.len(),
            expected: frame::HEADER_LEN,
        });
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooBig {
            declared: len as u64,
            max,
        });
    }
    if 4 + len > rest.len() {
        return Err(FrameError::Truncated {
            got: rest.len(),
            expected: 4 + len,
        });
    }
    let kind = rest[4];
    let payload = *at + 5..*at + 4 + len;
    *at += 4 + len;
    Ok((kind, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(list: &[(u8, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (kind, payload) in list {
            frame::encode_frame(&mut buf, *kind, payload).unwrap();
        }
        buf
    }

    fn sealed(sealer: &mut Sealer, list: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        sealer.seal_batch(&frames(list), &mut out);
        out
    }

    /// Every frame of the next record.
    fn read_one(opener: &mut Opener, mut bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, RecordError> {
        let mut body = Vec::new();
        opener.read(&mut bytes, 1 << 20, &mut body)?;
        let mut at = 0;
        let mut out = Vec::new();
        while at < body.len() {
            let (kind, range) = next_frame(&body, &mut at, 1 << 20)?;
            out.push((kind, body[range].to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn records_open_in_order_and_nothing_else_does() {
        let key = [7u8; 32];
        let (mut s, mut o) = (Sealer::new(key), Opener::new(key));
        let r0 = sealed(&mut s, &[(0x10, b"first"), (0x17, b"")]);
        let r1 = sealed(&mut s, &[(0x17, b"")]);
        assert_eq!(r0.len(), 4 + 10 + 5 + 16);
        assert_eq!(&r0[..4], &31u32.to_be_bytes());
        assert!(!r0.windows(5).any(|w| w == b"first"));
        assert_eq!(
            read_one(&mut o, &r0).unwrap(),
            vec![(0x10, b"first".to_vec()), (0x17, Vec::new())]
        );
        // A replay of record 0 where record 1 is expected fails.
        let mut o2 = Opener::new(key);
        read_one(&mut o2, &r0).unwrap();
        assert!(matches!(read_one(&mut o2, &r0), Err(RecordError::Unsealed)));
        // Reordered: record 1 first fails.
        let mut o3 = Opener::new(key);
        assert!(matches!(read_one(&mut o3, &r1), Err(RecordError::Unsealed)));
        assert_eq!(read_one(&mut o, &r1).unwrap(), vec![(0x17, Vec::new())]);
        // Every single flipped bit, the length included, is refused.
        for bit in 0..r0.len() * 8 {
            let mut bad = r0.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut fresh = Opener::new(key);
            assert!(read_one(&mut fresh, &bad).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn large_batches_are_cut_into_records_at_frame_boundaries() {
        let key = [3u8; 32];
        let (mut s, mut o) = (Sealer::new(key), Opener::new(key));
        let big = vec![0xabu8; 100_000];
        let small = vec![0x01u8; 10];
        let huge = vec![2u8; 300_000];
        let list: Vec<(u8, &[u8])> = vec![
            (0x10, &big),
            (0x10, &big),
            (0x10, &small),
            (0x10, &big),
            (0x10, &huge),
        ];
        let out = sealed(&mut s, &list);
        let mut r = &out[..];
        let mut got = Vec::new();
        let mut records = 0;
        while !r.is_empty() {
            let mut body = Vec::new();
            o.read(&mut r, 1 << 20, &mut body).unwrap();
            assert!(
                body.len() <= RECORD_FRAMES || records == 2,
                "record {records}"
            );
            let mut at = 0;
            while at < body.len() {
                let (kind, range) = next_frame(&body, &mut at, 1 << 20).unwrap();
                got.push((kind, body[range].len()));
            }
            records += 1;
        }
        // 200 KB + 10 B + 100 KB would pass 256 KiB: the third big frame
        // starts a record; the 300 KB frame goes alone.
        assert_eq!(records, 3);
        assert_eq!(
            got,
            vec![
                (0x10, 100_000),
                (0x10, 100_000),
                (0x10, 10),
                (0x10, 100_000),
                (0x10, 300_000)
            ]
        );
    }

    #[test]
    fn a_frame_running_past_its_record_is_refused() {
        let mut at = 0;
        let bytes = [0, 0, 0, 9, 0x10, 1, 2];
        assert!(next_frame(&bytes, &mut at, 100).is_err());
        let mut at = 0;
        assert!(next_frame(&[0, 0, 0, 0, 0x10], &mut at, 100).is_err());
    }

    #[test]
    fn both_sides_rekey_at_the_same_record() {
        let key = [9u8; 32];
        let (mut s, mut o) = (Sealer::with_rekey(key, 3), Opener::with_rekey(key, 3));
        let mut late = Opener::with_rekey(key, 1_000);
        for i in 0..4u8 {
            let r = sealed(&mut s, &[(0x10, &[i; 40])]);
            assert_eq!(read_one(&mut o, &r).unwrap(), vec![(0x10, vec![i; 40])]);
            // A side that did not rekey cannot open records after the third.
            assert_eq!(read_one(&mut late, &r).is_ok(), i < 3, "record {i}");
        }
    }
}
