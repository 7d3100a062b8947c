//! `erlangen-port-mapper [host]`: the per-host daemon that maps node names
//! to ports. Exit codes: 0 stopped normally, 1 could not start, 2 bad
//! command line. SIGINT and SIGTERM end it with the default action: it
//! keeps everything in memory and creates no files, so nothing is left
//! behind.

use std::process::ExitCode;

use erlangen::config::{self, Config};
use erlangen::port_mapper::server::{PortMapper, ServerConfig};

const USAGE: &str = "Usage: erlangen-port-mapper [options] [host]

Serves the registry (on 127.0.0.1 only) where nodes register their names,
and the directory (on host, default all interfaces) where nodes look up each
other's ports.";

fn main() -> ExitCode {
    let mut opts = getopts::Options::new();
    opts.optflag("h", "help", "print this help");
    config::add_options(&mut opts);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let matches = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("erlangen-port-mapper: {e}\n{}", opts.usage(USAGE));
            return ExitCode::from(2);
        }
    };
    if matches.opt_present("h") {
        println!("{}", opts.usage(USAGE));
        return ExitCode::SUCCESS;
    }
    if matches.free.len() > 1 {
        eprintln!(
            "erlangen-port-mapper: at most one host\n{}",
            opts.usage(USAGE)
        );
        return ExitCode::from(2);
    }
    let config = match Config::from_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("erlangen-port-mapper: {e}");
            return ExitCode::from(2);
        }
    };
    let server = ServerConfig {
        directory_host: matches
            .free
            .first()
            .cloned()
            .unwrap_or_else(|| "0.0.0.0".into()),
        registry_port: config.registry_port,
        directory_port: config.directory_port,
        log: true,
    };
    match PortMapper::start(server) {
        Ok(pm) => {
            eprintln!(
                "erlangen-port-mapper: registry on {}, directory on {}",
                pm.registry_addr(),
                pm.directory_addr()
            );
            // Serve until killed.
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("erlangen-port-mapper: {e}");
            ExitCode::from(1)
        }
    }
}
