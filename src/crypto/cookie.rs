//! The cookie: the shared secret nodes prove to each other (SPEC section 6).
//! Per user by default (`~/.erlangen-cookie`), created on first use with 32
//! random bytes, readable only by its owner.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Shortest accepted secret, in bytes.
pub const MIN_COOKIE_BYTES: usize = 32;

/// Why the cookie could not be loaded.
#[derive(Debug)]
pub enum CookieError {
    /// Reading or creating the file failed.
    Io(PathBuf, io::Error),
    /// Group or others may read or write the file.
    Permissions(PathBuf, u32),
    /// The secret is shorter than [`MIN_COOKIE_BYTES`].
    TooShort(PathBuf, usize),
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
/// 64 hex digits) if it does not exist. The secret is the file's content
/// with surrounding whitespace trimmed.
///
/// # Errors
/// [`CookieError`] if the file cannot be read or created, is readable or
/// writable by group or others, or holds fewer than 32 bytes.
pub fn load_or_create(path: &Path) -> Result<Vec<u8>, CookieError> {
    let io_err = |e| CookieError::Io(path.to_owned(), e);
    match std::fs::read(path) {
        Ok(content) => {
            check_permissions(path)?;
            let text = String::from_utf8_lossy(&content);
            let secret = text.trim().as_bytes().to_vec();
            if secret.len() < MIN_COOKIE_BYTES {
                return Err(CookieError::TooShort(path.to_owned(), secret.len()));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            super::random_bytes(&mut secret).map_err(io_err)?;
            let text = hex(&secret);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(path) {
                Ok(mut f) => {
                    f.write_all(format!("{text}\n").as_bytes())
                        .map_err(io_err)?;
                    Ok(text.into_bytes())
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(e) => Err(io_err(e)),
            }
        }
        Err(e) => Err(io_err(e)),
    }
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
