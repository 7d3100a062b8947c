//! Ctrl-C for the kernel: a SIGINT handler that only writes one byte to a
//! socket pair (a self-pipe), so an ordinary thread can act on it.
//!
//! One of the crate's three modules with `unsafe` code (the others are
//! `sys.rs`, the non-blocking `send` and the wider `listen`, and
//! `agent/waker.rs`, the waker an async agent is polled with, borrowed
//! from its handle): the C `signal` call that installs the handler, the
//! handler's `write`, and errno's address.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

const SIGINT: c_int = 2;
/// `SIG_ERR`, `(void (*)(int)) -1`.
const SIG_ERR: usize = usize::MAX;

extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
    #[cfg(any(target_os = "linux", target_os = "dragonfly"))]
    fn __errno_location() -> *mut c_int;
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    fn __error() -> *mut c_int;
    #[cfg(any(target_os = "netbsd", target_os = "openbsd", target_os = "android"))]
    fn __errno() -> *mut c_int;
}

/// Write end of the self-pipe; -1 until [`install`].
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// The calling thread's errno, where this platform's libc says it is;
/// `None` on a platform not listed (the handler then leaves errno alone:
/// its `write` may change it, which only a `write` of the interrupted code
/// checking errno at that instant could notice).
fn errno_location() -> Option<*mut c_int> {
    // SAFETY: these functions only return the calling thread's errno
    // address; they are async-signal-safe.
    #[cfg(any(target_os = "linux", target_os = "dragonfly"))]
    return Some(unsafe { __errno_location() });
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    return Some(unsafe { __error() });
    #[cfg(any(target_os = "netbsd", target_os = "openbsd", target_os = "android"))]
    return Some(unsafe { __errno() });
    #[allow(unreachable_code)]
    None
}

extern "C" fn on_sigint(_: c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let byte = 1u8;
    let errno = errno_location();
    // SAFETY: only async-signal-safe operations: an atomic load, `write`
    // of one byte from the stack to a non-blocking socket (a full buffer
    // just drops the byte: an interrupt is already pending), and saving
    // and restoring errno (a valid thread-local address, when known) so the
    // interrupted code does not see ours.
    unsafe {
        let saved = errno.map(|e| *e);
        let _ = write(fd, (&byte as *const u8).cast::<c_void>(), 1);
        if let (Some(e), Some(saved)) = (errno, saved) {
            *e = saved;
        }
    }
}

/// Installs the SIGINT handler and returns the reading end: one byte
/// arrives per Ctrl-C. Call once per process (a second call replaces the
/// first reading end).
///
/// # Errors
/// The socket pair cannot be made, or the handler cannot be installed.
pub(crate) fn install() -> io::Result<UnixStream> {
    let (read, write_end) = UnixStream::pair()?;
    write_end.set_nonblocking(true)?;
    // The write end lives as long as the process: the handler may run at
    // any time.
    let fd = write_end.into_raw_fd();
    // A replaced end stays open: a handler may be using it right now.
    WRITE_FD.store(fd, Ordering::Release);
    let handler: extern "C" fn(c_int) = on_sigint;
    // SAFETY: `signal` with a valid signal number and a handler that is an
    // `extern "C" fn(c_int)` doing only async-signal-safe work (above).
    let previous = unsafe { signal(SIGINT, handler as usize) };
    if previous == SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(read)
}
