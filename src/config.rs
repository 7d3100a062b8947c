//! Port-mapper ports and the cookie file, taken the same way by every
//! program and by `node` (SPEC section 8): a flag beats the environment
//! variable, the variable beats the default.
//!
//! | setting | flag | variable | default |
//! |---|---|---|---|
//! | registry port | `--registry-port` | `ERLANGEN_REGISTRY_PORT` | 10001 |
//! | directory port | `--directory-port` | `ERLANGEN_DIRECTORY_PORT` | 20002 |
//! | cookie file | `--cookie-file` | `ERLANGEN_COOKIE_FILE` | `~/.erlangen-cookie` |

use std::fmt;
use std::path::PathBuf;
use std::sync::RwLock;

/// Default registry port (localhost only), as in the seed.
pub const DEFAULT_REGISTRY_PORT: u16 = 10001;
/// Default directory port, as in the seed.
pub const DEFAULT_DIRECTORY_PORT: u16 = 20002;

/// Where the port mapper is and which cookie to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The port mapper's registry port on 127.0.0.1.
    pub registry_port: u16,
    /// The port mapper's directory port on each host.
    pub directory_port: u16,
    /// The cookie file.
    pub cookie_file: PathBuf,
}

/// A setting with a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where it came from: a flag or a variable name.
    pub source: String,
    /// The value given.
    pub value: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} must be a port number from 1 to 65535, got {:?}",
            self.source, self.value
        )
    }
}

impl std::error::Error for ConfigError {}

fn port(source: &str, value: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ConfigError {
            source: source.to_owned(),
            value: value.to_owned(),
        }),
    }
}

impl Config {
    /// The defaults, with the environment variables applied.
    ///
    /// # Errors
    /// A variable that is not a port number.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut c = Config {
            registry_port: DEFAULT_REGISTRY_PORT,
            directory_port: DEFAULT_DIRECTORY_PORT,
            cookie_file: crate::crypto::cookie::default_path(),
        };
        if let Ok(v) = std::env::var("ERLANGEN_REGISTRY_PORT") {
            c.registry_port = port("ERLANGEN_REGISTRY_PORT", &v)?;
        }
        if let Ok(v) = std::env::var("ERLANGEN_DIRECTORY_PORT") {
            c.directory_port = port("ERLANGEN_DIRECTORY_PORT", &v)?;
        }
        if let Some(v) = std::env::var_os("ERLANGEN_COOKIE_FILE") {
            c.cookie_file = PathBuf::from(v);
        }
        Ok(c)
    }

    /// The environment, then the flags added by [`add_options`].
    ///
    /// # Errors
    /// A flag or variable that is not a port number.
    pub(crate) fn from_matches(m: &getopts::Matches) -> Result<Config, ConfigError> {
        let mut c = Config::from_env()?;
        if let Some(v) = m.opt_str("registry-port") {
            c.registry_port = port("--registry-port", &v)?;
        }
        if let Some(v) = m.opt_str("directory-port") {
            c.directory_port = port("--directory-port", &v)?;
        }
        if let Some(v) = m.opt_str("cookie-file") {
            c.cookie_file = PathBuf::from(v);
        }
        Ok(c)
    }
}

/// Adds `--registry-port`, `--directory-port` and `--cookie-file`.
pub(crate) fn add_options(opts: &mut getopts::Options) {
    opts.optopt(
        "",
        "registry-port",
        "port mapper registry port on 127.0.0.1 (default 10001; env ERLANGEN_REGISTRY_PORT)",
        "PORT",
    );
    opts.optopt(
        "",
        "directory-port",
        "port mapper directory port (default 20002; env ERLANGEN_DIRECTORY_PORT)",
        "PORT",
    );
    opts.optopt(
        "",
        "cookie-file",
        "cookie file (default ~/.erlangen-cookie; env ERLANGEN_COOKIE_FILE)",
        "PATH",
    );
}

/// How much a node's event log (connections, refusals, names) writes to
/// stderr: `--log-level` on the kernel, `ERLANGEN_LOG` in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing.
    Off = 0,
    /// Errors only.
    Error = 1,
    /// Errors and warnings: refused handshakes, lost connections.
    Warn = 2,
    /// Also connections made and names registered and released (the
    /// default).
    Info = 3,
    /// Everything.
    Debug = 4,
}

/// A log level that is none of `error`, `warn`, `info`, `debug`, `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevelError(pub String);

impl fmt::Display for LogLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the log level must be error, warn, info, debug or off, got {:?}",
            self.0
        )
    }
}

impl std::error::Error for LogLevelError {}

impl std::str::FromStr for LogLevel {
    type Err = LogLevelError;

    fn from_str(s: &str) -> Result<LogLevel, LogLevelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(LogLevel::Off),
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            _ => Err(LogLevelError(s.to_owned())),
        }
    }
}

impl LogLevel {
    /// The level `ERLANGEN_LOG` names, if it is set (a bad value is an
    /// error).
    ///
    /// # Errors
    /// The variable is set to something that is not a level.
    pub fn from_env() -> Result<Option<LogLevel>, LogLevelError> {
        match std::env::var("ERLANGEN_LOG") {
            Ok(v) => v.parse().map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Its name as lines of the log show it.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

static DEFAULT: RwLock<Option<Config>> = RwLock::new(None);

/// Sets the process-wide configuration `node` uses when given none.
pub fn set_default(config: Config) {
    *DEFAULT.write().unwrap_or_else(|e| e.into_inner()) = Some(config);
}

/// The process-wide configuration: what [`set_default`] set, else the
/// environment (a malformed variable falls back to the default, with a
/// warning on stderr).
pub fn default() -> Config {
    if let Some(c) = DEFAULT.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return c;
    }
    let c = Config::from_env().unwrap_or_else(|e| {
        eprintln!("erlangen: {e}; using the default");
        Config {
            registry_port: DEFAULT_REGISTRY_PORT,
            directory_port: DEFAULT_DIRECTORY_PORT,
            cookie_file: crate::crypto::cookie::default_path(),
        }
    });
    set_default(c.clone());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_environment_and_defaults() {
        let mut opts = getopts::Options::new();
        add_options(&mut opts);
        let m = opts
            .parse(["--registry-port", "4000", "--cookie-file", "/tmp/c"])
            .unwrap();
        let c = Config::from_matches(&m).unwrap();
        assert_eq!(c.registry_port, 4000);
        assert_eq!(c.cookie_file, PathBuf::from("/tmp/c"));
        let bad = opts.parse(["--directory-port", "0"]).unwrap();
        assert!(Config::from_matches(&bad)
            .unwrap_err()
            .to_string()
            .contains("--directory-port"));
    }
}
