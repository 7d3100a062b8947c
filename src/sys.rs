//! The socket calls std does not offer.
//!
//! - `readable_now`: whether a read would return at once (a peek that
//!   never blocks, the same trick as `write_now`): a node's reader that
//!   has just had traffic polls the socket for a few microseconds before
//!   it blocks, so a reply arriving soon costs no OS wake-up.
//! - `write_now`: a socket write that never blocks, without switching the
//!   socket (and so its `try_clone` halves, which share the open file) to
//!   non-blocking mode. A sender on a quiet connection writes its frame
//!   itself with it; whatever the kernel does not take at once is handed to
//!   the connection's writer thread, so `send` never waits for a slow or
//!   stopped peer.
//! - `widen_backlog`: a listener's accept queue longer than std's 128, so
//!   that the burst of connections a node joining a large cluster causes
//!   (every member dials it, and the port mappers are asked) is queued, not
//!   dropped by the kernel and retried a second later.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpStream;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod imp {
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    // `send(2)` flags. MSG_DONTWAIT: this call alone does not block.
    // MSG_NOSIGNAL (Linux): a closed peer gives EPIPE, not SIGPIPE.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const FLAGS: i32 = 0x40 | 0x4000;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const FLAGS: i32 = 0x80;
    // `recv(2)` flags: MSG_DONTWAIT | MSG_PEEK.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const RECV_FLAGS: i32 = 0x40 | 0x2;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const RECV_FLAGS: i32 = 0x80 | 0x2;

    extern "C" {
        fn send(fd: i32, buf: *const u8, len: usize, flags: i32) -> isize;
        fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
        fn listen(fd: i32, backlog: i32) -> i32;
    }

    pub(super) fn widen_backlog(listener: &std::net::TcpListener, backlog: i32) {
        // SAFETY: `fd` is the open, listening socket `listener` owns for
        // the whole call; `listen` on it only sets its queue length (the
        // kernel caps it at net.core.somaxconn). A failure leaves std's
        // backlog, which still works.
        let _ = unsafe { listen(listener.as_raw_fd(), backlog) };
    }

    /// A byte count, or the error `errno` holds for a negative result.
    fn checked(n: isize) -> io::Result<usize> {
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    pub(super) fn readable_now(stream: &TcpStream) -> io::Result<()> {
        let fd = stream.as_raw_fd();
        let mut byte = 0u8;
        // SAFETY: `fd` is the open socket `stream` owns for the whole call;
        // `byte` is a live local and `recv` writes at most one byte to it
        // (MSG_PEEK: nothing is taken from the socket). No other memory
        // effects.
        checked(unsafe { recv(fd, &mut byte, 1, RECV_FLAGS) }).map(drop)
    }

    pub(super) fn write_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
        let fd = stream.as_raw_fd();
        // SAFETY: `fd` is the open socket `stream` owns for the whole call
        // (we hold a shared borrow of it); `bytes` is a live slice, and
        // `send` reads at most `bytes.len()` bytes from its start. The call
        // has no other memory effects.
        checked(unsafe { send(fd, bytes.as_ptr(), bytes.len(), FLAGS) })
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
mod imp {
    use std::io;
    use std::net::TcpStream;

    /// Elsewhere a reader never polls: it blocks at once.
    pub(super) fn readable_now(_: &TcpStream) -> io::Result<()> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Elsewhere every frame goes through the writer thread.
    pub(super) fn write_now(_: &TcpStream, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Elsewhere std's backlog stays.
    pub(super) fn widen_backlog(_: &std::net::TcpListener, _: i32) {}
}

/// Asks for an accept queue of 1,024 connections on `listener` (std binds
/// with 128; the kernel caps it at its own maximum).
pub(crate) fn widen_backlog(listener: &std::net::TcpListener) {
    imp::widen_backlog(listener, 1024);
}

/// `Ok` if a read of `stream` would return at once (bytes are there, or
/// the end of the stream), without taking anything from it and without
/// waiting.
///
/// # Errors
/// `WouldBlock` when nothing is there yet; any other error means the
/// connection is broken (a read reports it).
pub(crate) fn readable_now(stream: &TcpStream) -> io::Result<()> {
    retry(|| imp::readable_now(stream))
}

/// Writes what the socket takes without waiting: the number of bytes
/// written (possibly fewer than `bytes.len()`, possibly 0 as
/// `WouldBlock`).
///
/// # Errors
/// `WouldBlock` when the socket buffer is full; any other error means the
/// connection is broken.
pub(crate) fn write_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    retry(|| imp::write_now(stream, bytes))
}

/// Calls `call` again while a signal interrupts it.
fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
