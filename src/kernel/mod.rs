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

mod building_blocks;
mod builtins;
mod cluster_builtins;
mod eval;
mod input;
mod program;
mod remote;
mod signal;
mod top;

use std::io::{self, BufRead, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};

use input::{Forms, Input};

pub use builtins::HELP;
pub use eval::{EvalError, Evaluator};
pub use program::{exit_if_closed, print_line, version_requested};
pub use remote::{allow_remote_shell, run_remote};

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
    errors: Arc<AtomicUsize>,
    /// The exit status a `(quit …)` asked for.
    quit: Arc<Mutex<Option<u8>>>,
    /// What the REPL's thread and the Ctrl-C and stdin threads share.
    control: Arc<Mutex<Control>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("evaluator", &self.evaluator)
            .finish_non_exhaustive()
    }
}

/// The REPL's state as the Ctrl-C and stdin threads see it.
#[derive(Default)]
struct Control {
    /// The REPL's agent, once the REPL runs with Ctrl-C handling.
    agent: Option<Agent>,
    /// A form is being evaluated.
    evaluating: bool,
    /// Ctrl-C ended the evaluation in progress.
    interrupted: bool,
    /// The REPL waits for input in its mailbox (so it also learns at once
    /// that its agent was killed); a doorbell wakes it.
    idle: bool,
    /// A doorbell was rung since the REPL went idle.
    rung: bool,
    /// Ctrl-C presses at the idle prompt since the last input.
    idle_interrupts: u32,
    /// The hint for the first press was shown.
    hinted: bool,
}

/// The doorbell: wakes the idle REPL (input arrived, Ctrl-C). A local
/// value, so nothing from outside the process can forge it.
struct Doorbell;

fn doorbell() -> Term {
    static BELL: std::sync::OnceLock<Term> = std::sync::OnceLock::new();
    BELL.get_or_init(|| Term::local(Doorbell)).clone()
}

fn is_doorbell(t: &Term) -> bool {
    t.downcast_local::<Doorbell>().is_some()
}

impl Control {
    /// Wakes the REPL if it waits idle and no doorbell is on its way. The
    /// doorbell goes on the mailbox's priority lane, which is unbounded: a
    /// mailbox full of messages cannot drop it.
    fn ring(&mut self) {
        if self.idle && !self.rung {
            if let Some(agent) = &self.agent {
                self.rung = true;
                agent.notify(doorbell());
            }
        }
    }
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
    /// itself); a fresh agent took its place, with the messages the old
    /// one had not received.
    AgentExited(Term),
    /// Ctrl-C stopped it; the REPL's agent was replaced as for
    /// [`Evaluation::AgentExited`].
    Interrupted,
    /// `(quit status)`: the kernel should exit with this status.
    Quit(u8),
}

/// How the REPL loop ended.
enum Leave {
    /// End of input.
    End,
    /// `(quit status)`, or Ctrl-C twice at the idle prompt.
    Quit(u8),
}

/// The exit status after Ctrl-C twice at the idle prompt (128 + SIGINT,
/// as shells report a program ended by Ctrl-C).
const INTERRUPT_STATUS: u8 = 130;

impl Kernel {
    /// A session with the built-ins and the examples registered.
    pub fn new() -> Kernel {
        let evaluator = Evaluator::new();
        builtins::register(&evaluator);
        Kernel {
            evaluator,
            errors: Default::default(),
            quit: Default::default(),
            control: Default::default(),
        }
    }

    /// A session for a remote shell on this node: a fresh evaluator over
    /// the built-ins the kernel already registered.
    fn session() -> Kernel {
        Kernel {
            evaluator: Evaluator::new(),
            errors: Default::default(),
            quit: Default::default(),
            control: Default::default(),
        }
    }

    /// The evaluator (to set variables before the REPL starts).
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exit status `(quit …)` asked for, if a form asked.
    pub fn quit_requested(&self) -> Option<u8> {
        *self.quit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluates one form in the calling thread's agent. A panic or an exit
    /// of the agent does not escape: it is reported as an [`Evaluation`].
    pub fn eval(&self, form: &Term) -> Evaluation {
        // A `(quit)` left on this (pooled) thread by an agent that ran
        // here before is not this form's.
        let _ = builtins::take_quit();
        self.control().evaluating = true;
        let result = panic::catch_unwind(AssertUnwindSafe(|| self.evaluator.eval(form)));
        let interrupted = {
            let mut control = self.control();
            control.evaluating = false;
            std::mem::take(&mut control.interrupted)
        };
        let outcome = if interrupted {
            eval::INTERRUPT.store(false, Ordering::Relaxed);
            // The agent was killed to end a blocked receive; whatever the
            // form did, the agent must be replaced.
            let _ = builtins::take_quit();
            self.renew_agent(Term::keyword("interrupt"));
            Evaluation::Interrupted
        } else if let Some(status) = builtins::take_quit() {
            *self.quit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
            if let Err(payload) = result {
                self.renew_agent(crate::agent::exit_reason(payload));
            }
            Evaluation::Quit(status)
        } else {
            match result {
                Ok(Ok(v)) => Evaluation::Value(v),
                Ok(Err(e)) => Evaluation::Error(e.to_string()),
                Err(payload) => {
                    let reason = crate::agent::exit_reason(payload);
                    self.renew_agent(reason.clone());
                    Evaluation::AgentExited(reason)
                }
            }
        };
        if !matches!(outcome, Evaluation::Value(_) | Evaluation::Quit(_)) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Ends the calling thread's agent with `reason` and gives the thread
    /// a new one, which gets the messages the old one had not received
    /// (in arrival order), so nothing waiting is lost.
    fn renew_agent(&self, reason: Term) {
        let kept = crate::agent::flush_messages();
        let fresh = Agent::replace_current(reason);
        for message in kept {
            if !is_doorbell(&message) {
                fresh.send(message);
            }
        }
        let mut control = self.control();
        if control.agent.is_some() {
            control.agent = Some(fresh);
        }
    }

    /// Reads and evaluates every form of `text`, printing each result to
    /// `out` (and errors to `err`). Stops after a `(quit …)` (see
    /// [`Kernel::quit_requested`]).
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
                    let evaluation = self.eval(&form);
                    self.print(&evaluation, out, err)?;
                    if let Evaluation::Quit(_) = evaluation {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
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
                "error: the REPL's agent exited with reason {reason}; continuing with a new agent (variables and waiting messages kept)"
            )?,
            Evaluation::Interrupted => writeln!(
                err,
                "error: interrupted (Ctrl-C); continuing with a new agent (variables and waiting messages kept)"
            )?,
            Evaluation::Quit(_) => {}
        }
        out.flush()?;
        err.flush()
    }

    /// Forms evaluated so far that failed.
    pub fn error_count(&self) -> usize {
        self.errors.load(Ordering::Relaxed)
    }

    /// Adds a line of input and evaluates the forms it completes; the
    /// status of a `(quit …)` among them.
    fn feed(
        &self,
        line: &[u8],
        forms: &mut Forms,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<Option<u8>> {
        if let Err(message) = forms.push_line(line) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            writeln!(err, "error: {message}")?;
            return Ok(None);
        }
        loop {
            match forms.next_form() {
                Ok(None) => return Ok(None),
                Ok(Some((form, _text))) => {
                    let evaluation = self.eval(&form);
                    self.print(&evaluation, out, err)?;
                    if let Evaluation::Quit(status) = evaluation {
                        return Ok(Some(status));
                    }
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    writeln!(err, "error: {e}")?;
                    return Ok(None);
                }
            }
        }
    }

    /// At end of input: an unfinished form is an error.
    fn finish_input(&self, forms: &Forms, err: &mut dyn Write) -> io::Result<()> {
        if let Some(e) = forms.finish() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            writeln!(err, "error: {e}")?;
        }
        Ok(())
    }

    /// The read-eval-print loop over `input` until end of input or
    /// `(quit …)` (then [`Kernel::quit_requested`] has the status). A form
    /// may span lines; a reader error discards the pending input, and a
    /// line that is not UTF-8 is reported and skipped.
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
        let mut forms = Forms::default();
        let mut line = Vec::new();
        loop {
            if prompt && forms.is_idle() {
                write!(out, "* ")?;
                out.flush()?;
            }
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                self.finish_input(&forms, err)?;
                if prompt {
                    writeln!(out)?;
                }
                return Ok(());
            }
            if self.feed(&line, &mut forms, out, err)?.is_some() {
                return Ok(());
            }
        }
    }

    /// Waits for the next line of input in the REPL's mailbox, so that a
    /// kill of the REPL's agent (a linked agent died) is reported at once,
    /// and Ctrl-C at the idle prompt is seen.
    fn next_input(
        &self,
        lines: &Receiver<Input>,
        out: &mut dyn Write,
        err: &mut dyn Write,
        prompt: bool,
    ) -> io::Result<Result<Input, Leave>> {
        loop {
            {
                let mut control = self.control();
                if control.idle_interrupts >= 2 {
                    return Ok(Err(Leave::Quit(INTERRUPT_STATUS)));
                }
                if control.idle_interrupts == 1 && !control.hinted {
                    control.hinted = true;
                    drop(control);
                    writeln!(
                        err,
                        "(interrupt: Ctrl-C again leaves the kernel, as does (quit))"
                    )?;
                    if prompt {
                        write!(out, "* ")?;
                        out.flush()?;
                    }
                    continue;
                }
                match lines.try_recv() {
                    Ok(input) => {
                        control.idle_interrupts = 0;
                        control.hinted = false;
                        return Ok(Ok(input));
                    }
                    Err(TryRecvError::Disconnected) => return Ok(Ok(Input::End)),
                    Err(TryRecvError::Empty) => {}
                }
                control.idle = true;
                control.rung = false;
            }
            let woke = panic::catch_unwind(|| crate::agent::receive_matching(is_doorbell, None));
            {
                let mut control = self.control();
                control.idle = false;
                control.rung = false;
            }
            if let Err(payload) = woke {
                let reason = crate::agent::exit_reason(payload);
                self.renew_agent(reason.clone());
                writeln!(
                    err,
                    "error: the REPL's agent was killed with reason {reason} (an agent linked to it exited?); continuing with a new agent (variables and waiting messages kept)"
                )?;
                if prompt {
                    write!(out, "* ")?;
                    out.flush()?;
                }
            }
        }
    }

    /// The interactive loop of the program: stdin is read by a thread, the
    /// REPL waits in its mailbox, Ctrl-C interrupts.
    fn interactive(
        &self,
        out: &mut dyn Write,
        err: &mut dyn Write,
        prompt: bool,
    ) -> io::Result<Leave> {
        let control = Arc::clone(&self.control);
        let lines = input::read_stdin("kernel-stdin", move || {
            control.lock().unwrap_or_else(|e| e.into_inner()).ring();
        })?;
        let mut forms = Forms::default();
        loop {
            if prompt && forms.is_idle() {
                write!(out, "* ")?;
                out.flush()?;
            }
            match self.next_input(&lines, out, err, prompt)? {
                Err(leave) => {
                    if prompt {
                        writeln!(out)?;
                    }
                    return Ok(leave);
                }
                Ok(Input::Line(line)) => {
                    if let Some(status) = self.feed(&line, &mut forms, out, err)? {
                        return Ok(Leave::Quit(status));
                    }
                }
                Ok(Input::End) => {
                    self.finish_input(&forms, err)?;
                    if prompt {
                        writeln!(out)?;
                    }
                    return Ok(Leave::End);
                }
                Ok(Input::Failed(e)) => return Err(e),
            }
        }
    }

    /// Acts on Ctrl-C: ends the evaluation in progress (killing the REPL's
    /// agent ends a blocked receive; the evaluator's check ends a busy
    /// loop), or counts a press at the idle prompt.
    fn interrupt(&self) {
        let mut control = self.control();
        if control.evaluating {
            control.interrupted = true;
            eval::INTERRUPT.store(true, Ordering::Relaxed);
            if let Some(agent) = &control.agent {
                let _ = crate::agent::exit(Term::keyword("interrupt"), agent);
            }
        } else {
            control.idle_interrupts = control.idle_interrupts.saturating_add(1);
            control.ring();
        }
    }

    /// Starts the thread that turns Ctrl-C into [`Kernel::interrupt`].
    fn handle_ctrl_c(&self, err: &mut dyn Write) {
        let mut presses = match signal::install() {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(err, "erlangen-kernel: Ctrl-C will end the kernel: {e}");
                return;
            }
        };
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("kernel-ctrl-c".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                while let Ok(1) = io::Read::read(&mut presses, &mut byte) {
                    me.interrupt();
                }
            });
    }

    /// Runs the kernel as the program does: init file, `-e` forms, banner,
    /// REPL on stdin. Returns the exit code: 0; the status of `(quit n)`;
    /// 1 in batch mode when a form failed, or when a `-e` `(node …)` could
    /// not start; 130 after Ctrl-C twice at the idle prompt.
    pub fn run(&self, options: &KernelOptions) -> ExitCode {
        // Unlocked handles, locked per write: agents the session spawns print
        // too, and must not wait for the session to end.
        let mut out = io::stdout();
        let mut err = io::stderr();
        eval::mark_repl_thread();
        if !options.quiet {
            builtins::announce_nodes();
        }
        self.control().agent = Some(Agent::current());
        self.handle_ctrl_c(&mut err);
        let result = (|| -> io::Result<Option<u8>> {
            if !options.no_init {
                if let Some(path) = options.init_file.clone().or_else(default_init_file) {
                    self.run_init_file(&path, &mut err)?;
                    if let Some(status) = self.quit_requested() {
                        return Ok(Some(status));
                    }
                }
            }
            for form in &options.eval {
                let before = self.error_count();
                self.eval_text(form, &mut out, &mut err)?;
                if let Some(status) = self.quit_requested() {
                    return Ok(Some(status));
                }
                // A kernel meant to serve as a node must not sit there
                // looking like one when it is not.
                if self.error_count() > before && starts_node(form) {
                    return Ok(Some(1));
                }
            }
            if !options.quiet && !options.batch {
                writeln!(
                    out,
                    "Erlangen kernel {} (Rust). (help) lists the built-ins; (quit) or end of input leaves.",
                    env!("CARGO_PKG_VERSION")
                )?;
            }
            match self.interactive(&mut out, &mut err, !options.batch)? {
                Leave::End => Ok(None),
                Leave::Quit(status) => Ok(Some(status)),
            }
        })();
        match result {
            Ok(Some(status)) => ExitCode::from(status),
            // A closed stdout (`| head`) is a normal way to stop reading.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                let _ = writeln!(err, "erlangen-kernel: {e}");
                ExitCode::from(1)
            }
            _ if options.batch && self.error_count() > 0 => ExitCode::from(1),
            _ => ExitCode::SUCCESS,
        }
    }

    /// Evaluates the init file quietly. A missing file is normal; one that
    /// cannot be read or is not UTF-8 is named and skipped.
    fn run_init_file(&self, path: &std::path::Path, err: &mut dyn Write) -> io::Result<()> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return writeln!(
                    err,
                    "erlangen-kernel: init file {} skipped: {e}",
                    path.display()
                )
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => self.eval_text(&text, &mut io::sink(), err),
            Err(e) => writeln!(
                err,
                "erlangen-kernel: init file {} skipped: not valid UTF-8 (bad byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        }
    }
}

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

/// Whether `-e` text is a `(node …)` form.
fn starts_node(form: &str) -> bool {
    matches!(term::read_prefix(form), Ok(Some((t, _))) if matches!(
        t.as_list().and_then(<[Term]>::first),
        Some(Term::Symbol(s)) if s.name == "NODE" && s.package.as_deref().is_none_or(|p| p == "ERLANGEN")
    ))
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
        "node event log on stderr: error, warn, info, debug or off (default info, off with -Q or -b; env ERLANGEN_LOG)",
        "LEVEL",
    );
    config::add_options(&mut opts);
    opts
}

/// Defaults for `(node …)` set by the command line (`--hidden`,
/// `--no-connect-all`, `--no-seal`); the keys `:hidden`, `:connect-all` and
/// `:seal` override them.
pub(crate) struct NodeDefaults {
    pub hidden: AtomicBool,
    pub connect_all: AtomicBool,
    pub seal: AtomicBool,
}

pub(crate) static NODE_DEFAULTS: NodeDefaults = NodeDefaults {
    hidden: AtomicBool::new(false),
    connect_all: AtomicBool::new(true),
    seal: AtomicBool::new(true),
};

/// The `erlangen-kernel` program: parses the command line (`-e FORM`, `-n`,
/// `-Q`, `-b`, `-h`, `--registry-port`, `--directory-port`,
/// `--cookie-file`, `--log-level`, `--no-remote-shell`, `--hidden`,
/// `--no-connect-all`, `--no-seal`, `--remote NODE`)
/// and runs the kernel (or, with `--remote`, a remote shell). Exit codes: 0 ok, 1 a batch form
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
    NODE_DEFAULTS
        .hidden
        .store(matches.opt_present("hidden"), Ordering::Relaxed);
    NODE_DEFAULTS
        .connect_all
        .store(!matches.opt_present("no-connect-all"), Ordering::Relaxed);
    NODE_DEFAULTS
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
