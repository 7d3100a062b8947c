//! The remote shell, `erlangen-kernel --remote NODE`: the session that
//! evaluates forms on the target node, and the client that reads them
//! here.
//!
//! No frame of its own: the client spawns the registered function
//! [`SESSION`] on the target with its own agent as an argument. The
//! session answers `(:SHELL-READY token agent)` or
//! `(:SHELL-REFUSED token "why")` first, then one
//! `(:SHELL-RESULT token n "printed lines" status value agent)` per
//! `(:SHELL-EVAL token n "form")`, where status is `:VALUE`, `:ERROR` or
//! `:QUIT`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::args::is_call_of;
use super::input::{self, Forms, Input};
use super::manage::{failed, is_tagged, split_node, token};
use super::repl::{Evaluation, Kernel, INTERRUPT_STATUS};
use crate::agent::{self, Agent, Attach, SpawnOptions, Target};
use crate::call::{self, CallError};
use crate::node;
use crate::term::{self, Term};

/// The registered function that runs a remote shell's session.
pub const SESSION: &str = "remote-shell-session";

/// How long a remote shell tries to reach its node again after losing it.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How often a remote shell session that waits for its next form checks
/// that its client is still connected.
const CLIENT_CHECK: Duration = Duration::from_millis(250);

static ALLOW_REMOTE_SHELL: AtomicBool = AtomicBool::new(true);

/// Whether this process accepts remote shells (`--no-remote-shell` turns
/// it off). A cookie holder can still spawn any registered function here.
pub fn allow_remote_shell(allow: bool) {
    ALLOW_REMOTE_SHELL.store(allow, Ordering::Relaxed);
}

/// Registers the session function.
pub(super) fn register() {
    call::register_function(SESSION, session);
}

/// `(remote-shell-session client token)` on the target: evaluates each
/// form the client sends, in this agent, and sends back the result.
fn session(args: &[Term]) -> Result<Term, CallError> {
    let [client, token] = args else {
        return Err(CallError::bad_arguments(
            SESSION,
            "expected the client agent and a token",
        ));
    };
    let me = node::this_node().unwrap_or_default();
    let send = |items: Vec<Term>| {
        agent::send(Term::list(items), Target::from(client)).map_err(|e| failed(e.to_string()))
    };
    if !ALLOW_REMOTE_SHELL.load(Ordering::Relaxed) || !node::remote_shells_allowed() {
        send(vec![
            Term::keyword("shell-refused"),
            token.clone(),
            Term::Str(format!(
                "node {me} does not accept remote shells (it runs with --no-remote-shell)"
            )),
        ])?;
        return Ok(Term::Nil);
    }
    let kernel = Kernel::session();
    // The client's Ctrl-C kills this agent: a busy loop ends too.
    let _stop = super::eval::stop_when_killed();
    send(vec![
        Term::keyword("shell-ready"),
        token.clone(),
        Agent::current().to_term(),
    ])?;
    let client_node = ClientNode::of(client);
    loop {
        // The client's monitor of this agent ends the session when the
        // client goes, but only for the agent it monitors: an agent
        // renewed after the client was lost mid-form (its kill is caught
        // by the evaluation) is watched by no one. So the session itself
        // checks, between forms, that its client's node is still
        // connected. (Not a monitor of the client: monitors kill the
        // monitored agent when the monitor exits, and this agent exits at
        // every renewal and at `(quit)`.)
        let request = match agent::receive_matching(
            |m| is_tagged(m, "SHELL-EVAL", token),
            Some(CLIENT_CHECK),
        ) {
            Ok(request) => request,
            Err(_) if client_node.as_ref().is_some_and(|c| !c.connected()) => return Ok(Term::Nil),
            Err(_) => continue,
        };
        let (n, text) = match request.as_list() {
            Some([_, _, n, Term::Str(text)]) => (n.clone(), text.clone()),
            _ => continue,
        };
        let (evaluation, printed) =
            super::program::capture_output(|| match term::read_prefix(&text) {
                Ok(Some((form, _))) => kernel.eval(&form),
                Ok(None) => Evaluation::Value(Term::Nil),
                Err(e) => Evaluation::Error(e.to_string()),
            });
        let (status, shown) = match &evaluation {
            // Sent as a term, so agents print as their ids there.
            Evaluation::Value(v) => ("value", v.clone()),
            Evaluation::Error(e) => ("error", Term::Str(e.clone())),
            Evaluation::AgentExited(Term::Keyword(k)) if k == "INTERRUPT" => (
                "error",
                Term::Str("interrupted (Ctrl-C); continuing with a new agent (variables and waiting messages kept)".to_owned()),
            ),
            Evaluation::AgentExited(reason) => (
                "error",
                Term::Str(format!("the session's agent exited with reason {reason}; continuing with a new agent (variables and waiting messages kept)")),
            ),
            Evaluation::Interrupted => ("error", Term::Str("interrupted".to_owned())),
            Evaluation::Quit(status) => ("quit", Term::Int(i64::from(*status))),
        };
        let reply = |shown: Term| {
            vec![
                Term::keyword("shell-result"),
                token.clone(),
                n.clone(),
                Term::Str(printed.clone()),
                Term::keyword(status),
                shown,
                Agent::current().to_term(),
            ]
        };
        if send(reply(shown.clone())).is_err() {
            // A value that cannot leave this process: its printed form.
            send(reply(Term::Str(shown.to_string())))?;
        }
        if status == "quit" {
            return Ok(Term::Nil);
        }
    }
}

/// The node of a remote shell session's client, in the run the client
/// belongs to.
struct ClientNode {
    node: String,
    incarnation: Option<u64>,
}

impl ClientNode {
    /// `None` for a client that is not an agent of another node.
    fn of(client: &Term) -> Option<ClientNode> {
        let Term::Agent(agent) = client else {
            return None;
        };
        let incarnation = match agent {
            term::AgentRef::Remote { incarnation, .. } => Some(*incarnation),
            _ => None,
        };
        let (node, _) = agent.id()?.rsplit_once('/')?;
        Some(ClientNode {
            node: node.to_owned(),
            incarnation,
        })
    }

    /// Whether this node is connected to that run of the client's node.
    fn connected(&self) -> bool {
        node::connected_peers()
            .iter()
            .any(|(peer, run)| *peer == self.node && self.incarnation.is_none_or(|i| i == *run))
    }
}

/// The client's view of its session on the target.
struct Shell {
    host: Option<String>,
    name: String,
    full: String,
    token: Term,
    /// The session agent, while there is one.
    session: Option<Term>,
    next: i64,
    /// Forms that failed (for the exit status in batch mode).
    failed: usize,
}

/// Why a session could not be opened.
enum Unopened {
    /// The node could not be reached (the spawn's error).
    Unreachable(String),
    /// The node was reached and said no (or did not start the session).
    Refused(String),
}

impl std::fmt::Display for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unopened::Unreachable(why) => write!(f, "cannot open a shell: {why}"),
            Unopened::Refused(why) => f.write_str(why),
        }
    }
}

/// What came back for one form.
enum Outcome {
    Done(Option<u8>),
    Lost(String),
}

impl Shell {
    /// Starts a session on the target. `retry`: keep trying for
    /// [`CONNECT_WAIT`] while the node cannot be reached (it is
    /// restarting); else one attempt, which fails within the dial's
    /// deadline.
    fn connect(&mut self, retry: bool) -> Result<(), Unopened> {
        let deadline = Instant::now() + CONNECT_WAIT;
        loop {
            let call = Term::list(vec![
                Term::symbol(SESSION),
                Agent::current().to_term(),
                self.token.clone(),
            ]);
            let options = SpawnOptions::new().attach(Attach::Monitor);
            match node::spawn_on(self.host.as_deref(), &self.name, &call, &options) {
                Ok(_) => break,
                Err(e) if !retry || Instant::now() >= deadline => {
                    return Err(Unopened::Unreachable(e.to_string()))
                }
                // A restarting node is back within seconds; a failed dial
                // is not tried again for 0.5 s anyway.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let token = self.token.clone();
        let answer = agent::receive_matching(
            |m| is_tagged(m, "SHELL-READY", &token) || is_tagged(m, "SHELL-REFUSED", &token),
            Some(CONNECT_WAIT),
        )
        .map_err(|_| {
            Unopened::Refused(format!("node {} did not start a shell session", self.full))
        })?;
        match answer.as_list() {
            Some([Term::Keyword(k), _, agent]) if k == "SHELL-READY" => {
                self.session = Some(agent.clone());
                Ok(())
            }
            Some([_, _, Term::Str(why)]) => Err(Unopened::Refused(why.clone())),
            _ => Err(Unopened::Refused(format!(
                "node {} answered {answer}",
                self.full
            ))),
        }
    }

    /// An exit notice of the current session waiting in the mailbox.
    fn lost_notice(&self, m: &Term) -> bool {
        matches!((m.as_list(), &self.session), (Some([who, Term::Keyword(k), ..]), Some(s))
            if (k == "EXIT" || k == "OK") && who.to_string() == s.to_string())
    }

    fn check_lost(&mut self) -> Option<String> {
        let notice = agent::receive_matching(|m| self.lost_notice(m), Some(Duration::ZERO)).ok()?;
        self.session = None;
        Some(describe_loss(&self.full, &notice))
    }

    /// Sends one form's text and waits for its result (or the loss of the
    /// session).
    fn eval(
        &mut self,
        text: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> io::Result<Outcome> {
        let Some(session) = self.session.clone() else {
            return Ok(Outcome::Lost("no session".into()));
        };
        self.next += 1;
        let n = Term::Int(self.next);
        let request = Term::list(vec![
            Term::keyword("shell-eval"),
            self.token.clone(),
            n.clone(),
            Term::Str(text.to_owned()),
        ]);
        if let Err(e) = agent::send(request, Target::from(&session)) {
            return Ok(Outcome::Lost(e.to_string()));
        }
        let token = self.token.clone();
        let is_result = |m: &Term| matches!(m.as_list(), Some([Term::Keyword(k), t, m_n, ..]) if k == "SHELL-RESULT" && *t == token && *m_n == n);
        lock_busy().remote = Some(session);
        // The session's agent exits when the form kills it (Ctrl-C, an
        // exit signal, a linked agent's crash): the session goes on with a
        // new agent and answers. Only a lost connection, or no answer for
        // CONNECT_WAIT after the exit, is the loss of the session.
        let mut exited: Option<Term> = None;
        let reply = loop {
            let wait = exited.as_ref().map(|_| CONNECT_WAIT);
            let watching = exited.is_none();
            match agent::receive_matching(
                |m| is_result(m) || (watching && self.lost_notice(m)),
                wait,
            ) {
                Ok(m) if is_result(&m) => break Ok(m),
                Ok(notice) if is_connection_loss(&notice) => break Err(notice),
                Ok(notice) => exited = Some(notice),
                Err(_) => break Err(exited.take().unwrap_or(Term::Nil)),
            }
        };
        lock_busy().remote = None;
        let reply = match reply {
            Ok(reply) => reply,
            Err(notice) => {
                self.session = None;
                return Ok(Outcome::Lost(describe_loss(&self.full, &notice)));
            }
        };
        let Some([_, _, _, Term::Str(printed), Term::Keyword(status), shown, agent]) =
            reply.as_list()
        else {
            self.session = None;
            return Ok(Outcome::Lost(describe_loss(&self.full, &reply)));
        };
        out.write_all(printed.as_bytes())?;
        match status.as_str() {
            "VALUE" => writeln!(out, "{shown}")?,
            "QUIT" => {
                let status = shown.as_int().and_then(|n| u8::try_from(n).ok());
                return Ok(Outcome::Done(Some(status.unwrap_or(0))));
            }
            _ => {
                self.failed += 1;
                writeln!(err, "error: {}", shown.as_str().unwrap_or_default())?;
            }
        }
        if Some(agent) != self.session.as_ref() {
            // The session's agent was replaced (it exited): watch the new one.
            let _ = agent::link(Target::from(agent), Attach::Monitor);
            self.session = Some(agent.clone());
        }
        out.flush()?;
        err.flush()?;
        Ok(Outcome::Done(None))
    }
}

/// Whether an exit notice of the session says the connection was lost.
fn is_connection_loss(notice: &Term) -> bool {
    matches!(notice.as_list(), Some([_, _, Term::List(reason)])
        if matches!(reason.first(), Some(Term::Keyword(k)) if k == "NOCONNECTION"))
}

/// What the remote shell's Ctrl-C acts on.
#[derive(Default)]
struct Busy {
    /// The session agent evaluating a form: Ctrl-C kills it (with reason
    /// `:INTERRUPT`), which ends the form there.
    remote: Option<Term>,
    /// A `(top)` runs here: Ctrl-C ends it.
    local: bool,
}

fn lock_busy() -> std::sync::MutexGuard<'static, Busy> {
    static BUSY: std::sync::Mutex<Busy> = std::sync::Mutex::new(Busy {
        remote: None,
        local: false,
    });
    BUSY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the thread that turns Ctrl-C into an interrupt of the form
/// evaluating on the target, of a `(top)` here, or, at the idle prompt,
/// an [`Input::Interrupt`] for the loop.
fn handle_ctrl_c(events: std::sync::mpsc::Sender<Input>, err: &mut dyn Write) {
    let mut presses = match super::signal::install() {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "erlangen-kernel: Ctrl-C will end the shell: {e}");
            return;
        }
    };
    let _ = std::thread::Builder::new()
        .name("remote-shell-ctrl-c".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = io::Read::read(&mut presses, &mut byte) {
                let busy = lock_busy();
                if let Some(session) = busy.remote.clone() {
                    drop(busy);
                    let _ = agent::exit(Term::keyword("interrupt"), Target::from(&session));
                } else if busy.local {
                    super::eval::INTERRUPT.store(true, Ordering::Relaxed);
                } else if events.send(Input::Interrupt).is_err() {
                    return;
                }
            }
        });
}

fn describe_loss(full: &str, notice: &Term) -> String {
    if is_connection_loss(notice) {
        return format!("the connection to node {full} was lost (the node went down or restarted)");
    }
    match notice.as_list() {
        Some([_, _, reason, ..]) => format!("the shell session on node {full} ended: {reason}"),
        _ => format!("the shell session on node {full} ended"),
    }
}

impl Shell {
    /// Opens the first session: on `host`'s node of the shell's name, or,
    /// for a bare name, on the node of that name on this host, whichever
    /// host name it was started under (this machine's, the default, or
    /// `localhost`, as in the README's walkthrough). One attempt per host
    /// name, so a wrong name fails within the dial's deadline, with one
    /// line.
    fn open(&mut self, host: Option<String>) -> Result<(), String> {
        let hosts = match host {
            Some(h) => vec![h],
            None => {
                let mine = node::this_node()
                    .and_then(|m| m.split_once('/').map(|p| p.0.to_owned()))
                    .unwrap_or_else(node::host_name);
                let mut hosts = vec![mine];
                if hosts[0] != "localhost" {
                    hosts.push("localhost".to_owned());
                }
                hosts
            }
        };
        // Trying a host name the node does not answer to is no news for
        // the event log: the one line below says what failed.
        let level = node::eventlog::level();
        if hosts.len() > 1 {
            node::eventlog::set_level(crate::config::LogLevel::Off);
        }
        let mut unreachable = Vec::new();
        // `None`: no host name reached a node that answered.
        let mut answered = None;
        for h in &hosts {
            self.full = format!("{h}/{}", self.name);
            self.host = Some(h.clone());
            match self.connect(false) {
                Ok(()) => answered = Some(Ok(())),
                Err(Unopened::Refused(why)) => answered = Some(Err(why)),
                Err(Unopened::Unreachable(why)) => unreachable.push(why),
            }
            if answered.is_some() {
                break;
            }
        }
        node::eventlog::set_level(level);
        answered.unwrap_or_else(|| {
            let tried: Vec<String> = hosts.iter().map(|h| format!("{h}/{}", self.name)).collect();
            let why = unreachable.first().map_or("", String::as_str);
            Err(if tried.len() > 1 {
                format!(
                    "cannot open a shell on node {}: no node of that name answers on this host (as {}): {why}",
                    self.name,
                    tried.join(" or ")
                )
            } else {
                format!("cannot open a shell on node {}: {why}", self.full)
            })
        })
    }
}

/// `erlangen-kernel --remote TARGET`: becomes the node `remsh-PID` and
/// evaluates every form read from stdin on `TARGET` (`"host/node"` or
/// `"node"`), printing results and errors here. End of input leaves; the
/// target keeps running.
pub fn run_remote(target: &str, quiet: bool, batch: bool) -> ExitCode {
    // Unlocked handles, locked per write: agents the session spawns print
    // too, and must not wait for the session to end.
    let mut out = io::stdout();
    let mut err = io::stderr();
    let (host, name, _) = match split_node(target) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "erlangen-kernel: {e}");
            return ExitCode::from(2);
        }
    };
    // Hidden, as Erlang's remote shells are: not passed on, not listed.
    let options = node::NodeOptions {
        host: host.clone(),
        name: Some(format!("remsh-{}", std::process::id())),
        hidden: true,
        seal: super::builtins::NODE_DEFAULTS
            .seal
            .load(std::sync::atomic::Ordering::Relaxed),
        ..node::NodeOptions::default()
    };
    let _handle = match node::start(options) {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(
                err,
                "erlangen-kernel: the remote shell cannot start its node: {e}"
            );
            return ExitCode::from(1);
        }
    };
    // Interactive like the REPL: `(top)` here runs until Enter.
    super::eval::mark_repl_thread();
    let mut shell = Shell {
        host: None,
        name,
        full: String::new(),
        token: token(),
        session: None,
        next: 0,
        failed: 0,
    };
    if let Err(e) = shell.open(host) {
        let _ = writeln!(err, "erlangen-kernel: {e}");
        return ExitCode::from(1);
    }
    let full = shell.full.clone();
    if !quiet && !batch {
        let _ = writeln!(
            out,
            "Remote shell on node {full}: forms are evaluated there. End of input (Ctrl-D) leaves; the node keeps running."
        );
    }
    let result = remote_loop(&mut shell, &mut out, &mut err, !batch);
    match result {
        Ok(Some(status)) => ExitCode::from(status),
        Ok(None) if batch && shell.failed > 0 => ExitCode::from(1),
        Ok(None) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(err, "erlangen-kernel: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads forms from stdin and evaluates each on the target, as the local
/// REPL does (same reader, same errors); the status of a `(quit …)`.
fn remote_loop(
    shell: &mut Shell,
    out: &mut dyn Write,
    err: &mut dyn Write,
    prompt: bool,
) -> io::Result<Option<u8>> {
    // A reader thread, so that `(top)` sees Enter while it runs.
    let (events, lines) = std::sync::mpsc::channel();
    input::read_stdin_to("remote-shell-stdin", events.clone(), || {})?;
    handle_ctrl_c(events, err);
    let mut forms = Forms::default();
    // Ctrl-C presses at the idle prompt since the last input.
    let mut idle_interrupts = 0;
    loop {
        if prompt && forms.is_idle() {
            write!(out, "{}* ", shell.full)?;
            out.flush()?;
        }
        let line = match lines.recv() {
            Ok(Input::Line(line)) => {
                idle_interrupts = 0;
                line
            }
            Ok(Input::Interrupt) => {
                // As the local REPL: a hint, then the second press leaves
                // (the node keeps running).
                idle_interrupts += 1;
                if idle_interrupts >= 2 {
                    if prompt {
                        writeln!(out)?;
                    }
                    return Ok(Some(INTERRUPT_STATUS));
                }
                writeln!(
                    err,
                    "(interrupt: Ctrl-C again leaves the remote shell, as does end of input; the node keeps running)"
                )?;
                if prompt {
                    write!(out, "{}* ", shell.full)?;
                    out.flush()?;
                }
                continue;
            }
            Ok(Input::Failed(e)) => return Err(e),
            Ok(Input::End) | Err(_) => {
                if let Some(e) = forms.finish() {
                    shell.failed += 1;
                    writeln!(err, "error: {e}")?;
                }
                if prompt {
                    writeln!(out)?;
                }
                return Ok(None);
            }
        };
        if let Err(message) = forms.push_line(&line) {
            shell.failed += 1;
            writeln!(err, "error: {message}")?;
            continue;
        }
        loop {
            match forms.next_form() {
                Ok(None) => break,
                Ok(Some((form, text))) => {
                    if let Some(status) = shell_form(shell, &form, &text, out, err)? {
                        return Ok(Some(status));
                    }
                }
                Err(e) => {
                    shell.failed += 1;
                    writeln!(err, "error: {e}")?;
                    break;
                }
            }
        }
    }
}

/// Evaluates one form on the target (a `(top …)` runs here, watching the
/// target); reconnects first if the session was lost.
fn shell_form(
    shell: &mut Shell,
    form: &Term,
    text: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<Option<u8>> {
    if let Some(why) = shell.check_lost() {
        writeln!(err, "error: {why}")?;
    }
    if shell.session.is_none() {
        match shell.connect(true) {
            Ok(()) => writeln!(
                err,
                "reconnected to node {}: a new session (the old session's variables and agents are gone)",
                shell.full
            )?,
            Err(e) => {
                shell.failed += 1;
                writeln!(err, "error: {e}")?;
                return Ok(None);
            }
        }
    }
    if is_call_of(form, "TOP") {
        let mut args = form.as_list().map(|l| l[1..].to_vec()).unwrap_or_default();
        args.extend([Term::keyword("node"), Term::Str(shell.full.clone())]);
        lock_busy().local = true;
        let shown = super::top::top(&args);
        lock_busy().local = false;
        super::eval::INTERRUPT.store(false, Ordering::Relaxed);
        if let Err(e) = shown {
            shell.failed += 1;
            writeln!(err, "error: {e}")?;
        }
        return Ok(None);
    }
    match shell.eval(text, out, err)? {
        Outcome::Done(status) => Ok(status),
        Outcome::Lost(why) => {
            shell.failed += 1;
            writeln!(
                err,
                "error: {why}; the form's result is unknown. The next form opens a new session."
            )?;
            Ok(None)
        }
    }
}
