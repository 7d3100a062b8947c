//! `erlangen-port-mapper [host]`: the per-host daemon that maps node names
//! to ports. Exit codes: 0 stopped normally (or `-h`, `--version`), 1 could
//! not start, 2 bad command line. SIGINT and SIGTERM end it with the
//! default action: it keeps everything in memory and creates no files, so
//! nothing is left behind.

use std::io::Write;
use std::process::ExitCode;

use erlangen::config::Config;
use erlangen::port_mapper::server::{PortMapper, ServerConfig, ServerLimits};

const USAGE: &str = "Usage: erlangen-port-mapper [options] [host]

Serves the registry (on 127.0.0.1 only) where nodes register their names,
and the directory (on host, default all interfaces) where nodes look up each
other's ports.";

/// Writes to stdout; a closed or broken stdout (`| head`) is not an error
/// worth a panic: the text simply has nowhere to go.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Writes to stderr, ignoring failures for the same reason.
fn complain(text: &str) {
    let _ = writeln!(std::io::stderr(), "erlangen-port-mapper: {text}");
}

fn options() -> getopts::Options {
    let mut opts = getopts::Options::new();
    opts.optflag("h", "help", "print this help");
    opts.optflag("", "version", "print the version and exit");
    // Only the ports: the port mapper authenticates nobody, so it takes no
    // cookie.
    opts.optopt(
        "",
        "registry-port",
        "registry port on 127.0.0.1 (default 10001; env ERLANGEN_REGISTRY_PORT; 0: any free port)",
        "PORT",
    );
    opts.optopt(
        "",
        "directory-port",
        "directory port (default 20002; env ERLANGEN_DIRECTORY_PORT; 0: any free port)",
        "PORT",
    );
    opts.optopt(
        "",
        "max-registry-connections",
        "registry connections served at once (default 1024)",
        "N",
    );
    opts.optopt(
        "",
        "max-directory-connections",
        "directory connections served at once (default 1024)",
        "N",
    );
    opts
}

/// A port flag; 0 asks the system for a free port (the startup line on
/// stderr says which), which lets tests avoid racing for one.
fn port(flag: &str, value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{flag} must be a port number from 0 to 65535, got {value:?}"))
}

fn count(flag: &str, value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} must be a positive integer, got {value:?}")),
    }
}

/// The server's settings from the command line, or a message for stderr.
fn settings(matches: &getopts::Matches) -> Result<(ServerConfig, ServerLimits), String> {
    if matches.free.len() > 1 {
        return Err("at most one host".into());
    }
    let env = Config::from_env().map_err(|e| e.to_string())?;
    let mut server = ServerConfig {
        directory_host: matches
            .free
            .first()
            .cloned()
            .unwrap_or_else(|| "0.0.0.0".into()),
        registry_port: env.registry_port,
        directory_port: env.directory_port,
        log: true,
    };
    if let Some(v) = matches.opt_str("registry-port") {
        server.registry_port = port("--registry-port", &v)?;
    }
    if let Some(v) = matches.opt_str("directory-port") {
        server.directory_port = port("--directory-port", &v)?;
    }
    let mut limits = ServerLimits::default();
    if let Some(v) = matches.opt_str("max-registry-connections") {
        limits.max_registry_connections = count("--max-registry-connections", &v)?;
    }
    if let Some(v) = matches.opt_str("max-directory-connections") {
        limits.max_directory_connections = count("--max-directory-connections", &v)?;
    }
    Ok((server, limits))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // --version answers before anything else is looked at.
    if args
        .iter()
        .take_while(|a| a.as_str() != "--")
        .any(|a| a == "--version")
    {
        print(&format!(
            "erlangen-port-mapper {}",
            env!("CARGO_PKG_VERSION")
        ));
        return ExitCode::SUCCESS;
    }
    let opts = options();
    let matches = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => {
            complain(&format!("{e}\n{}", opts.usage(USAGE)));
            return ExitCode::from(2);
        }
    };
    if matches.opt_present("h") {
        print(&opts.usage(USAGE));
        return ExitCode::SUCCESS;
    }
    let (server, limits) = match settings(&matches) {
        Ok(s) => s,
        Err(e) => {
            complain(&format!("{e}\n{}", opts.usage(USAGE)));
            return ExitCode::from(2);
        }
    };
    match PortMapper::start_with(server, limits) {
        Ok(_serving) => {
            // The server has logged where it listens. Serve until killed.
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            complain(&e.to_string());
            ExitCode::from(1)
        }
    }
}
