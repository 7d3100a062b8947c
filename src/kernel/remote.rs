//! Looking into and working on other nodes: the remote management
//! functions (`(agent-stats "host/node/aid")`, `(agent-tree :node …)`,
//! `(connection-stats :node …)`, `(nodes)`, `(node-info …)`) and the
//! remote shell (`erlangen-kernel --remote NODE`).
//!
//! Both use remote spawn, no frame of their own: the asking agent spawns a
//! registered function on the target node ([`QUERY`] or [`SESSION`]) with
//! its own agent as an argument; that function computes on the target
//! and sends the answer back as an ordinary message. A dead node fails the
//! spawn at once, with the reason, and that is the error the user sees.
//!
//! The query reply is `(:OPS-REPLY token (:OK value))` or
//! `(:OPS-REPLY token (:ERROR "text"))`. The shell session answers
//! `(:SHELL-READY token agent)` or `(:SHELL-REFUSED token "why")` first,
//! then one `(:SHELL-RESULT token n "printed lines" status text agent)` per
//! `(:SHELL-EVAL token n "form")`, where status is `:VALUE`, `:ERROR` or
//! `:QUIT`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::input::{self, Forms, Input};
use super::{Evaluation, Kernel};
use crate::agent::{self, Agent, Attach, SpawnOptions, Target};
use crate::call::{self, keyword_args, CallError};
use crate::management;
use crate::node;
use crate::term::{self, Term};

/// The registered function that answers a management query.
pub const QUERY: &str = "ops-query";
/// The registered function that runs a remote shell's session.
pub const SESSION: &str = "remote-shell-session";

/// How long a query waits for its answer once the spawn succeeded.
const QUERY_WAIT: Duration = Duration::from_secs(10);
/// How long a remote shell tries to reach (or reach again) its node.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How often a remote shell session that waits for its next form checks
/// that its client is still connected.
const CLIENT_CHECK: Duration = Duration::from_millis(250);

static ALLOW_REMOTE_SHELL: AtomicBool = AtomicBool::new(true);
static TOKENS: AtomicI64 = AtomicI64::new(1);

/// Whether this process accepts remote shells (`--no-remote-shell` turns
/// it off). A cookie holder can still spawn any registered function here.
pub fn allow_remote_shell(allow: bool) {
    ALLOW_REMOTE_SHELL.store(allow, Ordering::Relaxed);
}

/// When this process started counting (the kernel's start): what
/// `node-info` and `(nodes)` report as uptime.
pub(super) fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

fn token() -> Term {
    Term::Int(TOKENS.fetch_add(1, Ordering::Relaxed))
}

fn failed(message: String) -> CallError {
    CallError::Failed(message)
}

fn is_tagged(m: &Term, tag: &str, token: &Term) -> bool {
    matches!(m.as_list(), Some([Term::Keyword(k), t, ..]) if k == tag && t == token)
}

/// `"host/node"` or `"node"` (this node's host) as (host, node, full name).
fn split_node(target: &str) -> Result<(Option<String>, String, String), CallError> {
    let me = node::this_node();
    let (host, name) = match target.split_once('/') {
        Some((h, n)) => (Some(h.to_owned()), n.to_owned()),
        None => (None, target.to_owned()),
    };
    if name.is_empty() || name.contains('/') {
        return Err(failed(format!(
            "{target:?} is not a node name (\"node\" or \"host/node\")"
        )));
    }
    let host_shown = host
        .clone()
        .or_else(|| {
            me.as_ref()
                .and_then(|m| m.split_once('/').map(|p| p.0.to_owned()))
        })
        .unwrap_or_else(node::host_name);
    let full = format!("{host_shown}/{name}");
    Ok((host, name, full))
}

/// Asks node `target` (`"host/node"` or `"node"`) for `kind` with `args`,
/// by spawning [`QUERY`] there; returns its answer.
pub(super) fn query(target: &str, kind: &str, args: Vec<Term>) -> Result<Term, CallError> {
    let (host, name, full) = split_node(target)?;
    if node::this_node().is_none() {
        return Err(failed(format!(
            "node {full} can be asked only from a node: start one first, e.g. (spawn '(node))"
        )));
    }
    if node::this_node().as_deref() == Some(full.as_str()) {
        return answer(kind, &args).map_err(failed);
    }
    let token = token();
    let mut call = vec![
        Term::symbol(QUERY),
        Term::Str(kind.to_owned()),
        Agent::current().to_term(),
        token.clone(),
    ];
    call.extend(args);
    node::spawn_on(
        host.as_deref(),
        &name,
        &Term::list(call),
        &SpawnOptions::new(),
    )
    .map_err(|e| failed(format!("node {full} cannot be asked: {e}")))?;
    let reply = agent::receive_matching(|m| is_tagged(m, "OPS-REPLY", &token), Some(QUERY_WAIT))
        .map_err(|_| {
            failed(format!(
                "node {full} did not answer within {} s (did it go down?)",
                QUERY_WAIT.as_secs()
            ))
        })?;
    match reply.as_list() {
        Some([_, _, Term::List(result)]) => match result.as_slice() {
            [Term::Keyword(k), value] if k == "OK" => Ok(value.clone()),
            [Term::Keyword(k), Term::Str(e)] if k == "ERROR" => {
                Err(failed(format!("node {full}: {e}")))
            }
            _ => Err(failed(format!("node {full} answered {reply}"))),
        },
        _ => Err(failed(format!("node {full} answered {reply}"))),
    }
}

/// `(ops-query kind reply-to token arg…)` on the target: computes and
/// sends the answer.
fn serve_query(args: &[Term]) -> Result<Term, CallError> {
    let [Term::Str(kind), reply_to, token, rest @ ..] = args else {
        return Err(CallError::bad_arguments(
            QUERY,
            "expected a kind, an agent to answer and a token",
        ));
    };
    let result = match answer(kind, rest) {
        Ok(v) => Term::list(vec![Term::keyword("ok"), v]),
        Err(e) => Term::list(vec![Term::keyword("error"), Term::Str(e)]),
    };
    let reply = Term::list(vec![Term::keyword("ops-reply"), token.clone(), result]);
    agent::send(reply, Target::from(reply_to)).map_err(|e| failed(e.to_string()))?;
    Ok(Term::Nil)
}

/// The answer to a query, computed on this node.
pub(super) fn answer(kind: &str, args: &[Term]) -> Result<Term, String> {
    match kind {
        "agent-stats" => {
            let who = args.first().ok_or("agent-stats needs an agent")?;
            management::agent_stats(Target::from(who))
                .map(|s| s.to_term())
                .map_err(|e| format!("agent-stats: {e}"))
        }
        "agent-tree" => Ok(Term::Str(tree_text(args.first())?)),
        "connection-stats" => Ok(Term::list(
            node::connection_stats()
                .iter()
                .map(|s| s.to_term())
                .collect(),
        )),
        "node-info" => Ok(node_info()),
        "top" => Ok(super::top::snapshot()),
        other => Err(format!("unknown query {other:?}")),
    }
}

/// The agent tree of `who`, or of every agent no other local agent
/// monitors, as text.
fn tree_text(who: Option<&Term>) -> Result<String, String> {
    if let Some(who) = who {
        return management::agent_tree(Target::from(who))
            .map(|t| t.to_string())
            .map_err(|e| format!("agent-tree: {e}"));
    }
    let all = management::agents();
    let monitored: std::collections::HashSet<u64> = all
        .iter()
        .flat_map(|a| {
            let me = agent::PeerKey::Local(a.serial());
            a.peers().0.into_iter().filter_map(move |p| match p {
                agent::Peer::Local(child) if child.peers().1.iter().any(|m| m.key() == me) => {
                    Some(child.serial())
                }
                _ => None,
            })
        })
        .collect();
    let mut text = String::new();
    for a in all.iter().filter(|a| !monitored.contains(&a.serial())) {
        if let Ok(t) = management::agent_tree(a.clone()) {
            text.push_str(&t.to_string());
        }
    }
    Ok(text)
}

/// `(:NODE "h/n" :INCARNATION i :UPTIME s :AGENTS n :THREAD-AGENTS t
/// :ASYNC-AGENTS a :THREADS n :RESIDENT-KB k :THROTTLED c
/// :REFUSED-HANDSHAKES r :SLOTS-FULL f :CONNECTION-ERRORS e)` of this
/// process (`c`: connections closed by the failed-handshake throttle; `r`:
/// handshakes that failed or were refused; `f`: connections closed at
/// accept because every handshake slot was busy; `e`: I/O and protocol
/// errors on established connections, summed over peers).
/// An unsigned number as a term: an integer, or, above the largest term
/// integer (2^63 - 1; only another implementation's incarnation can be),
/// its decimal digits as a string rather than a wrapped negative number.
fn count_term(n: u64) -> Term {
    i64::try_from(n).map_or_else(|_| Term::Str(n.to_string()), Term::Int)
}

pub(super) fn node_info() -> Term {
    let agents = management::agents();
    let threads = agents
        .iter()
        .filter(|a| a.kind() == agent::Kind::Thread)
        .count();
    let opt = |v: Option<u64>| v.map_or(Term::Nil, count_term);
    let process = management::process_sample(None);
    Term::plist(vec![
        ("node", node::this_node().map_or(Term::Nil, Term::Str)),
        ("incarnation", opt(node::this_incarnation())),
        ("uptime", Term::Int(started().elapsed().as_secs() as i64)),
        ("agents", Term::from(agents.len())),
        ("thread-agents", Term::from(threads)),
        ("async-agents", Term::from(agents.len() - threads)),
        ("threads", opt(process.map(|p| p.threads))),
        ("resident-kb", opt(process.map(|p| p.resident_kib))),
        ("throttled", count_term(node::throttled_connections())),
        ("refused-handshakes", count_term(node::refused_handshakes())),
        ("slots-full", count_term(node::slots_full_closes())),
        ("sealed", Term::from(node::sealed())),
        (
            "bad-seals",
            count_term(node::connection_stats().iter().map(|s| s.bad_seals).sum()),
        ),
        (
            "connection-errors",
            count_term(node::connection_stats().iter().map(|s| s.errors).sum()),
        ),
    ])
}

/// The value of key `key` in property list `plist`.
pub(super) fn getf<'a>(plist: &'a Term, key: &str) -> Option<&'a Term> {
    plist
        .as_list()?
        .chunks(2)
        .find(|c| matches!(&c[0], Term::Keyword(k) if k == key))
        .and_then(|c| c.get(1))
}

/// The `:node` keyword argument as a string, if given.
pub(super) fn node_key(function: &str, args: &[Term]) -> Result<Option<String>, CallError> {
    let (_, keys) = keyword_args(function, args, 0, &["NODE"])?;
    keys.get("NODE")
        .map(|n| match n {
            Term::Str(s) => Ok(s.clone()),
            Term::Keyword(k) => Ok(k.to_lowercase()),
            Term::Symbol(s) => Ok(s.name.to_lowercase()),
            other => Err(CallError::bad_arguments(
                function,
                format!(":node expects a string, got {other}"),
            )),
        })
        .transpose()
}

/// `(nodes)`: every other visible node of the cluster (with `:hidden`,
/// hidden ones too) with its incarnation, uptime and the round-trip time
/// of asking it.
fn nodes(args: &[Term]) -> Result<Term, CallError> {
    let hidden = match args {
        [] => false,
        [Term::Keyword(k)] if k == "HIDDEN" => true,
        _ => {
            return Err(CallError::bad_arguments(
                "nodes",
                "expected no arguments, or :hidden",
            ))
        }
    };
    let listed = if hidden {
        node::nodes_with_hidden()
    } else {
        node::nodes()
    };
    let incarnations: std::collections::HashMap<String, u64> =
        node::connected_peers().into_iter().collect();
    let mut out = Vec::new();
    for peer in listed {
        let Some(&incarnation) = incarnations.get(&peer) else {
            continue;
        };
        let asked = Instant::now();
        let info = query(&peer, "node-info", Vec::new());
        let rtt = asked.elapsed();
        let mut plist = vec![
            ("node", Term::Str(peer)),
            ("incarnation", count_term(incarnation)),
        ];
        match info {
            Ok(info) => {
                plist.push((
                    "uptime",
                    getf(&info, "UPTIME").cloned().unwrap_or(Term::Nil),
                ));
                plist.push(("rtt-ms", Term::Float(rtt.as_secs_f64() * 1000.0)));
            }
            Err(e) => plist.push(("error", Term::Str(e.to_string()))),
        }
        out.push(Term::plist(plist));
    }
    Ok(Term::list(out))
}

/// `(monitor-nodes &key hidden)` and `(demonitor-nodes)`.
fn monitor_nodes(args: &[Term]) -> Result<Term, CallError> {
    let (_, keys) = keyword_args("monitor-nodes", args, 0, &["HIDDEN"])?;
    node::monitor_nodes(keys.get("HIDDEN").is_some_and(|t| t.is_true()));
    Ok(Term::T)
}

/// Registers the query and session functions and the remote management
/// built-ins that are not extensions of older ones.
pub(super) fn register() {
    let _ = started();
    call::register_function(QUERY, serve_query);
    call::register_function(SESSION, session);
    call::register_function("nodes", nodes);
    call::register_function("monitor-nodes", monitor_nodes);
    call::register_function("demonitor-nodes", |args| {
        if !args.is_empty() {
            return Err(CallError::bad_arguments(
                "demonitor-nodes",
                "expected no arguments",
            ));
        }
        node::demonitor_nodes();
        Ok(Term::T)
    });
    call::register_function("node-info", |args| match node_key("node-info", args)? {
        Some(n) => query(&n, "node-info", Vec::new()),
        None => Ok(node_info()),
    });
}

// The remote shell: the session on the target, then the client.

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

/// What came back for one form.
enum Outcome {
    Done(Option<u8>),
    Lost(String),
}

impl Shell {
    /// Starts a session on the target, retrying for [`CONNECT_WAIT`]
    /// while the node cannot be reached.
    fn connect(&mut self) -> Result<(), String> {
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
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot open a shell on node {}: {e}", self.full))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let token = self.token.clone();
        let answer = agent::receive_matching(
            |m| is_tagged(m, "SHELL-READY", &token) || is_tagged(m, "SHELL-REFUSED", &token),
            Some(CONNECT_WAIT),
        )
        .map_err(|_| format!("node {} did not start a shell session", self.full))?;
        match answer.as_list() {
            Some([Term::Keyword(k), _, agent]) if k == "SHELL-READY" => {
                self.session = Some(agent.clone());
                Ok(())
            }
            Some([_, _, Term::Str(why)]) => Err(why.clone()),
            _ => Err(format!("node {} answered {answer}", self.full)),
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
        let reply = agent::receive_matching(
            |m| {
                matches!(m.as_list(), Some([Term::Keyword(k), t, m_n, ..]) if k == "SHELL-RESULT" && *t == token && *m_n == n)
                    || self.lost_notice(m)
            },
            None,
        );
        let Ok(reply) = reply else {
            return Ok(Outcome::Lost("the wait ended".into()));
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

fn describe_loss(full: &str, notice: &Term) -> String {
    match notice.as_list() {
        Some([_, _, Term::List(reason)]) if matches!(reason.first(), Some(Term::Keyword(k)) if k == "NOCONNECTION") =>
        {
            format!("the connection to node {full} was lost (the node went down or restarted)")
        }
        Some([_, _, reason, ..]) => format!("the shell session on node {full} ended: {reason}"),
        _ => format!("the shell session on node {full} ended"),
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
        seal: super::NODE_DEFAULTS
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
    let full = match &host {
        Some(h) => format!("{h}/{name}"),
        None => format!(
            "{}/{name}",
            node::this_node()
                .and_then(|m| m.split_once('/').map(|p| p.0.to_owned()))
                .unwrap_or_default()
        ),
    };
    // Interactive like the REPL: `(top)` here runs until Enter.
    super::eval::mark_repl_thread();
    let mut shell = Shell {
        host,
        name,
        full: full.clone(),
        token: token(),
        session: None,
        next: 0,
        failed: 0,
    };
    if let Err(e) = shell.connect() {
        let _ = writeln!(err, "erlangen-kernel: {e}");
        return ExitCode::from(1);
    }
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
    let lines = input::read_stdin("remote-shell-stdin", || {})?;
    let mut forms = Forms::default();
    loop {
        if prompt && forms.is_idle() {
            write!(out, "{}* ", shell.full)?;
            out.flush()?;
        }
        let line = match lines.recv() {
            Ok(Input::Line(line)) => line,
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
        match shell.connect() {
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
    if super::builtins::is_call_of(form, "TOP") {
        let mut args = form.as_list().map(|l| l[1..].to_vec()).unwrap_or_default();
        args.extend([Term::keyword("node"), Term::Str(shell.full.clone())]);
        if let Err(e) = super::top::top(&args) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_split() {
        let (host, name, full) = split_node("h/n").unwrap();
        assert_eq!(
            (host.as_deref(), name.as_str(), full.as_str()),
            (Some("h"), "n", "h/n")
        );
        assert!(split_node("h/").is_err());
        assert!(split_node("a/b/c").is_err());
    }

    #[test]
    fn plist_lookup() {
        let p = Term::plist(vec![("a", Term::Int(1)), ("b", Term::Int(2))]);
        assert_eq!(getf(&p, "B"), Some(&Term::Int(2)));
        assert_eq!(getf(&p, "C"), None);
    }
}
