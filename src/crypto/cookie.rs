//! The cookie: the shared secret nodes prove to each other (SPEC section 6).
//! Per user by default (`~/.erlangen-cookie`), created on first use with 32
//! random bytes, readable only by its owner. Created atomically: a process
//! that finds the file finds its secret in it, however many start at once.
//!
//! The secret (the HMAC key of the handshake) is the file's bytes exactly as
//! they are, with leading and trailing ASCII whitespace removed: a binary
//! cookie is used byte for byte, never decoded as text.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Shortest accepted secret, in bytes.
pub const MIN_COOKIE_BYTES: usize = 32;

/// Largest accepted cookie file, in bytes: a secret needs no more, and a
/// path pointing at something huge must not be read into memory.
pub const MAX_COOKIE_FILE_BYTES: usize = 4096;

/// Why the cookie could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum CookieError {
    /// Reading or creating the file failed.
    Io(PathBuf, io::Error),
    /// Group or others may read or write the file.
    Permissions(PathBuf, u32),
    /// The secret is shorter than [`MIN_COOKIE_BYTES`].
    TooShort(PathBuf, usize),
    /// The file is larger than [`MAX_COOKIE_FILE_BYTES`].
    TooLarge(PathBuf),
    /// The file holds nothing but ASCII whitespace.
    Empty(PathBuf),
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CookieError::Io(p, e) => write!(f, "cookie file {}: {e}", p.display()),
            CookieError::Permissions(p, mode) => write!(
                f,
                "cookie file {} is accessible to others (mode {mode:o}); run: chmod 600 {}",
                p.display(),
                p.display()
            ),
            CookieError::TooShort(p, n) => write!(
                f,
                "cookie file {} holds {n} bytes; at least {MIN_COOKIE_BYTES} are needed (delete it to have a new one made)",
                p.display()
            ),
            CookieError::TooLarge(p) => write!(
                f,
                "cookie file {} is larger than {MAX_COOKIE_FILE_BYTES} bytes, the most a cookie file may hold",
                p.display()
            ),
            CookieError::Empty(p) => write!(
                f,
                "cookie file {} is empty (or only whitespace); delete it to have a new one made",
                p.display()
            ),
        }
    }
}

impl std::error::Error for CookieError {}

/// `$HOME/.erlangen-cookie` (or `./.erlangen-cookie` without `HOME`).
pub fn default_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".erlangen-cookie")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the cookie at `path`, creating it (mode 0600, 32 random bytes as
/// 64 hex digits) if it does not exist. The secret is the file's bytes
/// with leading and trailing ASCII whitespace removed (space, tab, CR, LF,
/// form feed), used as they are: no text decoding.
///
/// # Errors
/// [`CookieError`] if the file cannot be read or created, is readable or
/// writable by group or others, is larger than [`MAX_COOKIE_FILE_BYTES`],
/// is empty after trimming, or holds fewer than 32 bytes.
pub fn load_or_create(path: &Path) -> Result<Vec<u8>, CookieError> {
    let io_err = |e| CookieError::Io(path.to_owned(), e);
    match std::fs::File::open(path) {
        Ok(file) => {
            check_permissions(path)?;
            // One byte over the limit is enough to know it is too large.
            let mut content = Vec::new();
            file.take(MAX_COOKIE_FILE_BYTES as u64 + 1)
                .read_to_end(&mut content)
                .map_err(io_err)?;
            if content.len() > MAX_COOKIE_FILE_BYTES {
                return Err(CookieError::TooLarge(path.to_owned()));
            }
            let secret = content.trim_ascii();
            if secret.is_empty() {
                return Err(CookieError::Empty(path.to_owned()));
            }
            if secret.len() < MIN_COOKIE_BYTES {
                return Err(CookieError::TooShort(path.to_owned(), secret.len()));
            }
            Ok(secret.to_vec())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            super::random_bytes(&mut secret).map_err(io_err)?;
            let text = hex(&secret);
            match create_atomically(path, format!("{text}\n").as_bytes()) {
                Ok(()) => Ok(text.into_bytes()),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(e) => Err(io_err(e)),
            }
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Tells apart the temporary files of one process.
static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Creates `path` holding `content`, mode 0600, so that nobody ever sees
/// it without its content: the content is written to a temporary file
/// beside it, which is then hard-linked to `path` (a link, unlike a
/// rename, fails if `path` exists: `AlreadyExists`, someone else's cookie
/// is there). Where hard links are not available, the file is created in
/// place (`create_new`) and written, as before.
fn create_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let seq = TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".tmp-{}-{seq}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let write = |p: &Path| -> io::Result<()> {
        let mut f = private_new_file(p)?;
        f.write_all(content)?;
        f.sync_all()
    };
    if let Err(e) = write(&temp) {
        let _ = std::fs::remove_file(&temp);
        return match e.kind() {
            // No temporary file can be made there: create in place.
            io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported => write(path),
            _ => Err(e),
        };
    }
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: create in place.
        Err(_) => write(path),
    }
}

/// A new file (never an existing one), readable and writable by its
/// owner only.
fn private_new_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), CookieError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| CookieError::Io(path.to_owned(), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CookieError::Permissions(path.to_owned(), mode & 0o777));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> Result<(), CookieError> {
    Ok(())
}
