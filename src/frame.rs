//! Length-prefixed frames: the unit every Erlangen connection (node to node,
//! node to port mapper) exchanges.
//!
//! ```text
//! +----------------+--------+--------------------+
//! | length: u32 BE | kind:u8| payload            |
//! +----------------+--------+--------------------+
//!   length counts kind + payload (so it is >= 1)
//! ```
//!
//! Reading checks the declared length against the caller's maximum before
//! allocating anything, and reads the body through `Read::take` so memory
//! grows only as bytes actually arrive (a peer that claims 16 MiB and sends
//! 3 bytes costs 3 bytes).

use std::fmt;
use std::io::{self, Read, Write};

/// Size of the frame header: length (4) + kind (1).
pub const HEADER_LEN: usize = 5;

/// Default upper bound on a frame's length (kind + payload): 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The connection ended cleanly before the first byte of a frame.
    Closed,
    /// The connection ended inside a frame (after `got` of `expected` bytes).
    Truncated {
        /// Bytes of the frame that arrived.
        got: usize,
        /// Bytes the frame declared.
        expected: usize,
    },
    /// The declared length is zero (a frame always has a kind byte).
    Empty,
    /// The declared length exceeds the configured maximum.
    TooBig {
        /// The declared length.
        declared: u64,
        /// The maximum allowed by the reader's setting.
        max: usize,
    },
    /// An I/O error, including a read timeout (`WouldBlock`/`TimedOut`).
    Io(io::Error),
}

impl FrameError {
    /// `true` if the error is a read timeout set on the socket.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Truncated { got, expected } => write!(
                f,
                "connection closed inside a frame ({got} of {expected} bytes)"
            ),
            FrameError::Empty => f.write_str("frame of length zero (no kind byte)"),
            FrameError::TooBig { declared, max } => write!(
                f,
                "frame size too big: {declared} bytes declared, maximum is {max} (max frame size setting)"
            ),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> FrameError {
        FrameError::Io(e)
    }
}

/// Appends one frame (`kind`, `payload`) to `out`.
///
/// # Errors
/// `InvalidInput` if the payload is too large for a `u32` length.
pub fn encode_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame payload over 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    Ok(())
}

/// Starts a frame of `kind` in `out` whose payload the caller appends next;
/// returns the offset to give [`finish_frame`]. Saves a copy of the payload.
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    start
}

/// Fills in the length of the frame begun at `start` by [`begin_frame`].
///
/// # Errors
/// `InvalidInput` if the frame grew beyond a `u32` length.
pub fn finish_frame(out: &mut [u8], start: usize) -> io::Result<()> {
    let len = u32::try_from(out.len() - start - 4)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Writes one frame to `w` (one `write_all`, no flush).
///
/// # Errors
/// Any I/O error of `w`.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_frame(&mut buf, kind, payload)?;
    w.write_all(&buf)
}

/// Reads one frame from `r` into `payload` (cleared first) and returns its
/// kind. Frames longer than `max_len` are refused before allocation.
///
/// # Errors
/// [`FrameError`]; after any error other than a timeout *before the first
/// byte* the stream is out of step and must be closed.
pub fn read_frame(
    r: &mut impl Read,
    max_len: usize,
    payload: &mut Vec<u8>,
) -> Result<u8, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    got,
                    expected: HEADER_LEN,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let declared = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if declared == 0 {
        return Err(FrameError::Empty);
    }
    if declared as u64 > max_len as u64 {
        return Err(FrameError::TooBig {
            declared: declared.into(),
            max: max_len,
        });
    }
    let body_len = declared as usize - 1;
    payload.clear();
    let read = r.take(body_len as u64).read_to_end(payload)?;
    if read < body_len {
        return Err(FrameError::Truncated {
            got: HEADER_LEN + read,
            expected: HEADER_LEN + body_len,
        });
    }
    Ok(header[4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 7, b"hello").unwrap();
        let start = begin_frame(&mut buf, 9);
        buf.extend_from_slice(b"xy");
        finish_frame(&mut buf, start).unwrap();
        let mut r = &buf[..];
        let mut p = Vec::new();
        assert_eq!(read_frame(&mut r, 100, &mut p).unwrap(), 7);
        assert_eq!(p, b"hello");
        assert_eq!(read_frame(&mut r, 100, &mut p).unwrap(), 9);
        assert_eq!(p, b"xy");
        assert!(matches!(
            read_frame(&mut r, 100, &mut p),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn refuses_oversized_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut p = Vec::new();
        let err = read_frame(&mut &bytes[..], 1024, &mut p).unwrap_err();
        assert!(matches!(err, FrameError::TooBig { .. }), "{err}");
        assert!(p.capacity() < 1024);
    }

    #[test]
    fn truncated_and_empty() {
        let mut p = Vec::new();
        let err = read_frame(&mut &[0u8, 0, 0, 10, 1, 2][..], 100, &mut p).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }));
        let err = read_frame(&mut &[0u8, 0][..], 100, &mut p).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }));
        let err = read_frame(&mut &[0u8, 0, 0, 0, 1][..], 100, &mut p).unwrap_err();
        assert!(matches!(err, FrameError::Empty));
    }
}
