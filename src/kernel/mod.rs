//! The kernel: a read-eval-print loop over the text form of terms, running
//! in the calling thread's agent (SPEC section 8).
//!
//! The `erlangen-kernel` program is [`main`]; a program that ships its own
//! agent code registers its functions with [`crate::call::register_function`]
//! and then calls [`main`] (or [`Kernel::run`]) the same way:
//!
//! ```no_run
//! use erlangen::{call, Term};
//!
//! fn main() -> std::process::ExitCode {
//!     call::register_function("double", |args: &[Term]| {
//!         let n = args.first().and_then(Term::as_int).unwrap_or(0);
//!         Ok(Term::from(n * 2))
//!     });
//!     erlangen::kernel::main()
//! }
//! ```

mod args;
mod building_blocks;
mod builtins;
mod cluster_builtins;
mod eval;
mod input;
mod manage;
mod program;
mod register;
mod repl;
mod shell;
mod signal;
mod top;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

pub use builtins::HELP;
pub use eval::{EvalError, Evaluator};
pub use program::{exit_if_closed, print_line, version_requested};
pub use register::help;
pub use repl::{Evaluation, Kernel, KernelOptions};
pub use shell::{allow_remote_shell, run_remote};

use crate::config::{self, Config};
use repl::starts_node;

/// The event log's level: `--log-level` beats `-Q` (off), which beats
/// `ERLANGEN_LOG`; batch mode (`-b`) defaults to off (its stderr is for
/// the errors of its forms), a kernel serving as a node (`-e '(node …)'`)
/// to info, an interactive prompt and a remote shell to warn.
fn log_level(
    m: &getopts::Matches,
    remote: bool,
) -> Result<config::LogLevel, config::LogLevelError> {
    if let Some(v) = m.opt_str("log-level") {
        return v.parse();
    }
    if m.opt_present("Q") {
        return Ok(config::LogLevel::Off);
    }
    if let Some(level) = config::LogLevel::from_env()? {
        return Ok(level);
    }
    let serves_node = m.opt_strs("e").iter().any(|form| starts_node(form));
    Ok(if m.opt_present("b") {
        config::LogLevel::Off
    } else if remote || !serves_node {
        // At an interactive prompt, connections come and go as the person
        // uses other nodes: only what goes wrong is news there.
        config::LogLevel::Warn
    } else {
        config::LogLevel::Info
    })
}

const USAGE: &str = "Usage: erlangen-kernel [options]

Boots a REPL that reads Common Lisp-style forms, evaluates them and prints
the value. (help) lists the built-ins.";

fn options() -> getopts::Options {
    let mut opts = getopts::Options::new();
    opts.optmulti(
        "e",
        "eval",
        "evaluate FORM before the REPL (repeatable, in order)",
        "FORM",
    );
    opts.optflag(
        "n",
        "no-init",
        "skip the init file ($ERLANGEN_INIT or ~/.erlangen-init)",
    );
    opts.optflag(
        "Q",
        "quiet",
        "quiet: no banner, no node up/stopped lines, event log off (unless --log-level)",
    );
    opts.optflag(
        "b",
        "batch",
        "batch mode: no prompt, exit at end of input (status 1 if a form failed)",
    );
    opts.optflag("h", "help", "print this help");
    opts.optflag("", "version", "print \"erlangen-kernel VERSION\" and exit");
    opts.optopt(
        "",
        "remote",
        "remote shell: evaluate every form on node NODE (\"host/node\" or a node of this host), joining the cluster as node remsh-PID",
        "NODE",
    );
    opts.optflag(
        "",
        "no-remote-shell",
        "refuse remote shells (--remote) from other nodes",
    );
    opts.optflag(
        "",
        "hidden",
        "a node started here is hidden: it connects only to the nodes it addresses and is not passed on",
    );
    opts.optflag(
        "",
        "no-connect-all",
        "a node started here does not connect to the nodes its peers are connected to",
    );
    opts.optflag(
        "",
        "no-seal",
        "a node started here sends clear frames (for a trusted network; every node of the cluster must agree)",
    );
    opts.optopt(
        "",
        "log-level",
        "node event log on stderr: error, warn, info, debug or off (default: off with -Q, else $ERLANGEN_LOG, else off with -b, info for a kernel serving as a node (-e '(node …)'), warn at a prompt and in a remote shell)",
        "LEVEL",
    );
    config::add_options(&mut opts);
    opts
}

/// The `erlangen-kernel` program: parses the command line (`-e FORM`, `-n`,
/// `-Q`, `-b`, `-h`, `--version`, `--registry-port`, `--directory-port`,
/// `--cookie-file`, `--log-level`, `--no-remote-shell`, `--hidden`,
/// `--no-connect-all`, `--no-seal`, `--remote NODE`) and runs the kernel (or, with
/// `--remote`, a remote shell). Exit codes: 0 ok; the status of `(quit n)`;
/// 1 a batch form failed, output failed, a `-e` node could not start or a
/// remote shell could not open; 2 bad command line; 130 Ctrl-C twice at the
/// idle prompt, or once while a `-e` node serves.
pub fn main() -> ExitCode {
    if version_requested("erlangen-kernel") {
        return ExitCode::SUCCESS;
    }
    let opts = options();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let matches = match opts.parse(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("erlangen-kernel: {e}\n{}", opts.usage(USAGE));
            return ExitCode::from(2);
        }
    };
    if matches.opt_present("h") {
        print_line(format_args!("{}", opts.usage(USAGE)));
        return ExitCode::SUCCESS;
    }
    if !matches.free.is_empty() {
        eprintln!(
            "erlangen-kernel: unexpected argument {:?}\n{}",
            matches.free[0],
            opts.usage(USAGE)
        );
        return ExitCode::from(2);
    }
    let config: Config = match Config::from_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("erlangen-kernel: {e}");
            return ExitCode::from(2);
        }
    };
    config::set_default(config);
    let level = match log_level(&matches, matches.opt_present("remote")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("erlangen-kernel: {e}");
            return ExitCode::from(2);
        }
    };
    crate::node::eventlog::set_level(level);
    if matches.opt_present("no-remote-shell") {
        allow_remote_shell(false);
    }
    builtins::NODE_DEFAULTS
        .hidden
        .store(matches.opt_present("hidden"), Ordering::Relaxed);
    builtins::NODE_DEFAULTS
        .connect_all
        .store(!matches.opt_present("no-connect-all"), Ordering::Relaxed);
    builtins::NODE_DEFAULTS
        .seal
        .store(!matches.opt_present("no-seal"), Ordering::Relaxed);
    if let Some(target) = matches.opt_str("remote") {
        return run_remote(&target, matches.opt_present("Q"), matches.opt_present("b"));
    }
    let options = KernelOptions {
        eval: matches.opt_strs("e"),
        no_init: matches.opt_present("n"),
        quiet: matches.opt_present("Q"),
        batch: matches.opt_present("b"),
        init_file: None,
    };
    Kernel::new().run(&options)
}
