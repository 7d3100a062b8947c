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

mod builtins;
mod eval;
mod program;

use std::io::{self, BufRead, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;

pub use builtins::HELP;
pub use eval::{EvalError, Evaluator};
pub use program::{exit_if_closed, print_line, version_requested};

use crate::agent::Agent;
use crate::config::{self, Config};
use crate::term::{self, Term};

/// How the kernel runs.
#[derive(Debug, Clone, Default)]
pub struct KernelOptions {
    /// Forms to evaluate, in order, before the REPL (`-e`).
    pub eval: Vec<String>,
    /// Skip the init file (`-n`).
    pub no_init: bool,
    /// No banner (`-Q`).
    pub quiet: bool,
    /// Batch mode: no prompt, exit at end of input (`-b`).
    pub batch: bool,
    /// Init file; default `$ERLANGEN_INIT` or `~/.erlangen-init`.
    pub init_file: Option<PathBuf>,
}

/// A session: the evaluator with every built-in registered.
#[derive(Clone)]
pub struct Kernel {
    evaluator: Evaluator,
    errors: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for Kernel {
    fn default() -> Kernel {
        Kernel::new()
    }
}

/// What evaluating one form gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// Its value.
    Value(Term),
    /// It failed; the message says why.
    Error(String),
    /// The REPL's own agent exited (killed by a link, or `(exit …)` of
    /// itself); a fresh agent took its place.
    AgentExited(Term),
}

impl Kernel {
    /// A session with the built-ins and the examples registered.
    pub fn new() -> Kernel {
        let evaluator = Evaluator::new();
        builtins::register(&evaluator);
        Kernel {
            evaluator,
            errors: Default::default(),
        }
    }

    /// The evaluator (to set variables before the REPL starts).
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// Evaluates one form in the calling thread's agent. A panic or an exit
    /// of the agent does not escape: it is reported as an [`Evaluation`].
    pub fn eval(&self, form: &Term) -> Evaluation {
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.evaluator.eval(form)));
        let outcome = match result {
            Ok(Ok(v)) => Evaluation::Value(v),
            Ok(Err(e)) => Evaluation::Error(e.to_string()),
            Err(payload) => {
                let reason = crate::agent::exit_reason(payload);
                Agent::replace_current(reason.clone());
                Evaluation::AgentExited(reason)
            }
        };
        if !matches!(outcome, Evaluation::Value(_)) {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        outcome
    }

    /// Reads and evaluates every form of `text`, printing each result to
    /// `out` (and errors to `err`).
    ///
    /// # Errors
    /// Only I/O errors on `out`/`err`; evaluation errors are printed.
    pub fn eval_text(
        &self,
        text: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        let mut rest = text;
        loop {
            match term::read_prefix(rest) {
                Ok(None) => return Ok(()),
                Ok(Some((form, used))) => {
                    rest = &rest[used..];
                    self.print(&self.eval(&form), out, err)?;
                }
                Err(e) => {
                    self.errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return writeln!(err, "error: {e}");
                }
            }
        }
    }

    fn print(
        &self,
        evaluation: &Evaluation,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        match evaluation {
            Evaluation::Value(v) => writeln!(out, "{v}")?,
            Evaluation::Error(e) => writeln!(err, "error: {e}")?,
            Evaluation::AgentExited(reason) => writeln!(
                err,
                "error: the REPL's agent exited with reason {reason}; continuing with a new agent"
            )?,
        }
        out.flush()?;
        err.flush()
    }

    /// Forms evaluated so far that failed.
    pub fn error_count(&self) -> usize {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The read-eval-print loop over `input` until end of input or `(quit)`.
    /// A form may span lines; a reader error discards the pending input.
    ///
    /// # Errors
    /// I/O errors on the streams.
    pub fn repl(
        &self,
        input: &mut dyn BufRead,
        out: &mut dyn Write,
        err: &mut dyn Write,
        prompt: bool,
    ) -> io::Result<()> {
        let mut buffer = String::new();
        let mut line = String::new();
        loop {
            if prompt && buffer.trim().is_empty() {
                write!(out, "* ")?;
                out.flush()?;
            }
            line.clear();
            if input.read_line(&mut line)? == 0 {
                if !buffer.trim().is_empty() {
                    if let Err(e) = term::read_prefix(&buffer) {
                        self.errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        writeln!(err, "error: {e}")?;
                    }
                }
                if prompt {
                    writeln!(out)?;
                }
                return Ok(());
            }
            buffer.push_str(&line);
            loop {
                match term::read_prefix(&buffer) {
                    Ok(None) => {
                        buffer.clear();
                        break;
                    }
                    Ok(Some((form, used))) => {
                        buffer.drain(..used);
                        if is_quit(&form) {
                            return Ok(());
                        }
                        self.print(&self.eval(&form), out, err)?;
                    }
                    Err(e) if e.is_incomplete() => break,
                    Err(e) => {
                        self.errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        writeln!(err, "error: {e}")?;
                        buffer.clear();
                        break;
                    }
                }
            }
        }
    }

    /// Runs the kernel as the program does: init file, `-e` forms, banner,
    /// REPL on stdin. Returns the exit code: 0, or 1 in batch mode when a
    /// form failed.
    pub fn run(&self, options: &KernelOptions) -> ExitCode {
        let stdout = io::stdout();
        let stderr = io::stderr();
        let mut out = stdout.lock();
        let mut err = stderr.lock();
        let result = (|| -> io::Result<()> {
            if !options.no_init {
                if let Some(path) = options.init_file.clone().or_else(default_init_file) {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        self.eval_text(&text, &mut io::sink(), &mut err)?;
                    }
                }
            }
            for form in &options.eval {
                let trimmed = form.trim();
                if trimmed == "(quit)" {
                    return Ok(());
                }
                self.eval_text(form, &mut out, &mut err)?;
            }
            if !options.quiet && !options.batch {
                writeln!(
                    out,
                    "Erlangen kernel {} (Rust). (help) lists the built-ins; (quit) or end of input leaves.",
                    env!("CARGO_PKG_VERSION")
                )?;
            }
            let stdin = io::stdin();
            let mut input = stdin.lock();
            self.repl(&mut input, &mut out, &mut err, !options.batch)
        })();
        match result {
            // A closed stdout (`| head`) is a normal way to stop reading.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                let _ = writeln!(err, "erlangen-kernel: {e}");
                ExitCode::from(1)
            }
            _ if options.batch && self.error_count() > 0 => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        }
    }
}

fn is_quit(form: &Term) -> bool {
    matches!(form.as_list(), Some([Term::Symbol(s)]) if s.package.is_none() && s.name == "QUIT")
}

fn default_init_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ERLANGEN_INIT") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".erlangen-init"))
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
    opts.optflag("Q", "quiet", "no banner");
    opts.optflag(
        "b",
        "batch",
        "batch mode: no prompt, exit at end of input (status 1 if a form failed)",
    );
    opts.optflag("h", "help", "print this help");
    config::add_options(&mut opts);
    opts
}

/// The `erlangen-kernel` program: parses the command line (`-e FORM`, `-n`,
/// `-Q`, `-b`, `-h`, `--registry-port`, `--directory-port`,
/// `--cookie-file`) and runs the kernel. Exit codes: 0 ok, 1 a batch form
/// failed or output failed, 2 bad command line.
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
    let options = KernelOptions {
        eval: matches.opt_strs("e"),
        no_init: matches.opt_present("n"),
        quiet: matches.opt_present("Q"),
        batch: matches.opt_present("b"),
        init_file: None,
    };
    Kernel::new().run(&options)
}
