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

/// Bodies up to this size are read into a buffer sized up front; larger
/// ones grow as their bytes arrive, so a lying length costs nothing.
const EAGER_BODY: usize = 64 * 1024;

/// Default upper bound on a frame's length (kind + payload): 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
#[non_exhaustive]
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
    // The length alone decides whether the frame is acceptable: a zero or
    // oversized length is refused as soon as its four bytes are in, without
    // waiting for a kind byte that may never come.
    let mut header = [0u8; HEADER_LEN];
    read_header_part(r, &mut header, 0, 4)?;
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
    read_header_part(r, &mut header, 4, HEADER_LEN)?;
    let body_len = declared as usize - 1;
    payload.clear();
    if body_len <= EAGER_BODY {
        // Small bodies (almost every frame): one exact read into a buffer
        // that is reused from frame to frame.
        payload.resize(body_len, 0);
        if let Err(e) = r.read_exact(payload) {
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => FrameError::Truncated {
                    got: HEADER_LEN,
                    expected: HEADER_LEN + body_len,
                },
                _ => FrameError::Io(e),
            });
        }
        return Ok(header[4]);
    }
    // Large bodies grow only as bytes actually arrive.
    let read = r.take(body_len as u64).read_to_end(payload)?;
    if read < body_len {
        return Err(FrameError::Truncated {
            got: HEADER_LEN + read,
            expected: HEADER_LEN + body_len,
        });
    }
    Ok(header[4])
}

/// Reads one record of a sealed connection (PROTOCOL.md section 5,
/// "Sealed frames"): a `u32` length, then that many bytes, which go to
/// `body` (cleared first); returns the length's four bytes (the record's
/// associated data). A length below `min_len` or above `max_len` is
/// refused as soon as its four bytes are in; large bodies grow only as
/// their bytes arrive, as in [`read_frame`].
///
/// # Errors
/// [`FrameError`], as for [`read_frame`] ([`FrameError::Empty`] for a
/// length below `min_len`).
pub fn read_record(
    r: &mut impl Read,
    min_len: usize,
    max_len: usize,
    body: &mut Vec<u8>,
) -> Result<[u8; 4], FrameError> {
    let mut header = [0u8; HEADER_LEN];
    read_header_part(r, &mut header, 0, 4)?;
    let length = [header[0], header[1], header[2], header[3]];
    let declared = u32::from_be_bytes(length) as usize;
    if declared < min_len {
        return Err(FrameError::Empty);
    }
    if declared as u64 > max_len as u64 {
        return Err(FrameError::TooBig {
            declared: declared as u64,
            max: max_len,
        });
    }
    body.clear();
    let read = if declared <= EAGER_BODY {
        body.resize(declared, 0);
        let mut got = 0;
        while got < declared {
            match r.read(&mut body[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
        got
    } else {
        r.take(declared as u64).read_to_end(body)?
    };
    if read < declared {
        return Err(FrameError::Truncated {
            got: 4 + read,
            expected: 4 + declared,
        });
    }
    Ok(length)
}

/// Fills `header[from..to]`; a clean end of stream before the first byte of
/// the frame is [`FrameError::Closed`].
fn read_header_part(
    r: &mut impl Read,
    header: &mut [u8; HEADER_LEN],
    from: usize,
    to: usize,
) -> Result<(), FrameError> {
    let mut got = from;
    while got < to {
        match r.read(&mut header[got..to]) {
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
    Ok(())
}

/// A socket read side with one deadline for a whole exchange (a handshake,
/// a port mapper's first request): before every `read` the socket timeout
/// is set to what is left, so a peer that trickles one byte at a time
/// cannot stretch the exchange past the deadline.
///
/// ```no_run
/// # use std::time::{Duration, Instant};
/// # let stream = std::net::TcpStream::connect("127.0.0.1:1").unwrap();
/// use erlangen::frame::{read_frame, Deadline};
/// let mut payload = Vec::new();
/// let mut r = Deadline::new(&stream, Instant::now() + Duration::from_secs(5));
/// let kind = read_frame(&mut r, 4096, &mut payload);
/// ```
#[derive(Debug)]
pub struct Deadline<'a> {
    stream: &'a std::net::TcpStream,
    deadline: std::time::Instant,
}

impl<'a> Deadline<'a> {
    /// Reads from `stream` until `deadline`.
    pub fn new(stream: &'a std::net::TcpStream, deadline: std::time::Instant) -> Deadline<'a> {
        Deadline { stream, deadline }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed before the exchange was complete",
            ));
        }
        // `Some(0)` would be InvalidInput; `left` is never zero here.
        self.stream.set_read_timeout(Some(left))?;
        (&*self.stream).read(buf)
    }
}

/// Appends a `str` field: a u16 length, then UTF-8 bytes. Strings here are ids and error messages; longer
/// than 65535 bytes is cut at a character boundary (only error texts can
/// be that long).
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Bounds-checked reading of a frame's fields (integers big-endian, `str`
/// as a u16 length then UTF-8).
pub struct Fields<'a> {
    bytes: &'a [u8],
}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fields {{ {} bytes left }}", self.bytes.len())
    }
}

impl<'a> Fields<'a> {
    /// Reads fields from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { bytes }
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`FieldError::Truncated`] naming `field`.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FieldError> {
        if self.bytes.len() < n {
            return Err(FieldError::Truncated(field));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A byte.
    ///
    /// # Errors
    /// [`FieldError::Truncated`].
    pub fn u8(&mut self, field: &'static str) -> Result<u8, FieldError> {
        Ok(self.take(1, field)?[0])
    }

    /// A big-endian u16.
    ///
    /// # Errors
    /// [`FieldError::Truncated`].
    pub fn u16(&mut self, field: &'static str) -> Result<u16, FieldError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u32.
    ///
    /// # Errors
    /// [`FieldError::Truncated`].
    pub fn u32(&mut self, field: &'static str) -> Result<u32, FieldError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian u64.
    ///
    /// # Errors
    /// [`FieldError::Truncated`].
    pub fn u64(&mut self, field: &'static str) -> Result<u64, FieldError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A byte that must be 0 or 1.
    ///
    /// # Errors
    /// [`FieldError::Truncated`] or [`FieldError::BadValue`].
    pub fn bool(&mut self, field: &'static str) -> Result<bool, FieldError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FieldError::BadValue(field)),
        }
    }

    /// A u16 length, then that many bytes of UTF-8.
    ///
    /// # Errors
    /// [`FieldError::Truncated`] or [`FieldError::BadUtf8`].
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, FieldError> {
        let len = self.take(2, field)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| FieldError::BadUtf8(field))
    }

    /// Takes everything that remains.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Succeeds if nothing remains.
    ///
    /// # Errors
    /// [`FieldError::Trailing`].
    pub fn end(&self) -> Result<(), FieldError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(FieldError::Trailing(self.bytes.len()))
        }
    }
}

/// A field that could not be read from a frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldError {
    /// The payload ends inside this field.
    Truncated(&'static str),
    /// This string field is not UTF-8.
    BadUtf8(&'static str),
    /// This field holds a value the protocol does not allow.
    BadValue(&'static str),
    /// Bytes remain after the last field.
    Trailing(usize),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::Truncated(field) => write!(f, "frame ends inside field {field}"),
            FieldError::BadUtf8(field) => write!(f, "field {field} is not UTF-8"),
            FieldError::BadValue(field) => write!(f, "invalid value in field {field}"),
            FieldError::Trailing(n) => write!(f, "{n} bytes after the last field"),
        }
    }
}

impl std::error::Error for FieldError {}

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

    /// A reader that has only the bytes given and then would block: shows
    /// what the frame reader decided before asking for more.
    struct Starved<'a>(&'a [u8]);

    impl Read for Starved<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn zero_length_is_refused_without_a_fifth_byte() {
        let mut p = Vec::new();
        let err = read_frame(&mut Starved(&[0, 0, 0, 0]), 100, &mut p).unwrap_err();
        assert!(matches!(err, FrameError::Empty), "{err}");
        let err = read_frame(&mut Starved(&[0, 0, 1, 0]), 100, &mut p).unwrap_err();
        assert!(matches!(err, FrameError::TooBig { .. }), "{err}");
    }

    #[test]
    fn deadline_covers_the_whole_frame_not_each_read() {
        use std::io::Write;
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{mpsc, Arc};
        use std::time::{Duration, Instant};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (reading, started) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        // A trickler: once the reader has started (so a reader that starts
        // late finds no more of the frame than one on time), the length of
        // a frame that never completes, then one byte of its body at a time,
        // each well inside any per-read timeout, until the reader is done.
        // Returns whether it was stopped (true), or gave up after 20 s.
        let trickler = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                if started.recv_timeout(Duration::from_secs(20)).is_err() {
                    return false;
                }
                let gave_up = Instant::now() + Duration::from_secs(20);
                let _ = client.write_all(&[0, 0x10, 0, 0, 1]);
                while !stop.load(Ordering::SeqCst) {
                    if Instant::now() >= gave_up || client.write_all(&[0]).is_err() {
                        return false;
                    }
                    std::thread::park_timeout(Duration::from_millis(20));
                }
                true
            })
        };
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut p = Vec::new();
        reading.send(()).unwrap();
        let err = read_frame(&mut Deadline::new(&server, deadline), 1 << 20, &mut p).unwrap_err();
        stop.store(true, Ordering::SeqCst);
        assert!(err.is_timeout(), "{err}");
        assert!(Instant::now() >= deadline);
        drop(server);
        // Bytes kept coming until the read gave up: only the deadline for
        // the whole frame can have ended it.
        assert!(
            trickler.join().unwrap(),
            "the read outlasted the trickle: a deadline per read, not per frame"
        );
    }
}
