//! The kernel's built-in functions: the whole agent, node and management
//! API, plus list, vector and comparison helpers. Each is a registered
//! function (see [`crate::call`]), so it can also be spawned and called by
//! other nodes; `(help)` lists them from [`HELP`] (`register.rs` registers
//! every group).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::args::{arity, bad, is_call_of, node_key, seconds, string_arg};
use super::eval::Evaluator;
use super::manage;
use super::program::{capturing, print_line};
use crate::agent::{self, Agent, Attach, SpawnOptions, Target};
use crate::call::{self, keyword_args, CallError};
use crate::management;
use crate::node;
use crate::term::Term;

/// `(name, usage and one line of help)`, in the order `(help)` prints them.
pub const HELP: &[(&str, &str)] = &[
    ("spawn", "(spawn call-or-function &key attach mailbox-size node host name) start an agent; returns it (or its id string on another node)"),
    ("send", "(send message agent) send a message; returns the message"),
    ("receive", "(receive &key timeout) next message; timeout in seconds gives an error when nothing came"),
    ("exit", "(exit reason &optional agent) kill an agent (default: the REPL's own)"),
    ("link", "(link agent &optional mode) attach the REPL's agent: mode :link (default) or :monitor"),
    ("unlink", "(unlink agent) detach"),
    ("watch", "(watch agent) one-way monitor: the REPL's agent is told when agent exits, and its own exit does nothing to agent"),
    ("unwatch", "(unwatch agent) end a watch"),
    ("register", "(register name &optional agent) name an agent, e.g. (register :logger a)"),
    ("unregister", "(unregister name) remove a name"),
    ("registered", "(registered) list of registered names"),
    ("agent", "(agent) the REPL's own agent"),
    ("agent-id", "(agent-id &optional agent) the agent's id \"host/node/aid\" (this process must be a node), which any call taking an agent accepts, here and on other nodes"),
    ("node", "(node &key host name tick timeout spawn-timeout max-connections remote-shell hidden connect-all seal) become a node (serves until its agent is killed; spawn it); it joins the cluster of every node it connects to unless :hidden t"),
    ("agent-stats", "(agent-stats &optional agent) messages received and dropped, birth and death; an id \"host/node/aid\" of another node asks that node"),
    ("agent-tree", "(agent-tree &optional agent &key node) print an agent and the agents it monitors; :node \"x\" prints every tree of node x"),
    ("flush-messages", "(flush-messages &key print-p) drop every message waiting for the REPL, printing each unless :print-p nil; returns how many"),
    ("connection-stats", "(connection-stats &key node) per remote node: errors, established, messages, bytes (of node x with :node \"x\")"),
    ("nodes", "(nodes &optional :hidden) the cluster's other visible nodes (with :hidden, hidden ones too) with incarnation, uptime and round-trip time in ms"),
    ("monitor-nodes", "(monitor-nodes &key hidden) receive (:NODEUP \"host/node\") and (:NODEDOWN \"host/node\" reason) as nodes join and leave the cluster"),
    ("demonitor-nodes", "(demonitor-nodes) stop receiving :NODEUP and :NODEDOWN"),
    ("node-info", "(node-info &key node) agents by kind, threads, resident memory, uptime, throttled connections of this node or node x"),
    ("top", "(top &key node refreshes) a live view redrawn every second until Enter or Ctrl-C (once outside the REPL): agents by mailbox depth, connections, totals"),
    ("parallel-map", "(parallel-map function vector &key level result-type) map with worker agents; result-type (quoted at the REPL: :result-type 'integer) t (default), integer, fixnum, float, double-float, number or string"),
    ("sleep", "(sleep seconds) pause"),
    ("list", "(list x…) a list; also cons car cdr first second third nth length append reverse"),
    ("vector", "(vector x…) a vector; also aref elt"),
    ("+", "(+ n…) arithmetic: + - * 1+ 1- = < > <= >="),
    ("equal", "(equal a b) structural equality; also eq eql not null"),
    ("funcall", "(funcall f x…) call a function; also apply, mapcar"),
    ("print", "(print x) print and return x"),
    ("help", "(help) this list"),
    ("quit", "(quit &optional status) leave the kernel with exit status 0-255 (default 0)"),
];

/// Defaults for `(node …)` set by the command line (`--hidden`,
/// `--no-connect-all`, `--no-seal`); the keys `:hidden`, `:connect-all`
/// and `:seal` override them.
pub(super) struct NodeDefaults {
    pub(super) hidden: AtomicBool,
    pub(super) connect_all: AtomicBool,
    pub(super) seal: AtomicBool,
}

/// The [`NodeDefaults`] of this process.
pub(super) static NODE_DEFAULTS: NodeDefaults = NodeDefaults {
    hidden: AtomicBool::new(false),
    connect_all: AtomicBool::new(true),
    seal: AtomicBool::new(true),
};

thread_local! {
    /// The exit status `(quit …)` asked for on this thread. Only the REPL's
    /// thread looks at it, so a `quit` in a spawned agent (or one another
    /// node asked for) ends that agent, never the kernel.
    static QUIT: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
}

/// Takes the exit status a `(quit …)` on this thread asked for.
pub(super) fn take_quit() -> Option<u8> {
    QUIT.with(|q| q.take())
}

fn quit(args: &[Term]) -> Result<Term, CallError> {
    arity("quit", args, 0, 1)?;
    let status = match args.first() {
        None => 0,
        Some(Term::Int(n)) => u8::try_from(*n)
            .map_err(|_| bad("quit", format!("the exit status must be 0 to 255, got {n}")))?,
        Some(other) => {
            return Err(bad(
                "quit",
                format!("the exit status must be an integer 0 to 255, got {other}"),
            ))
        }
    };
    QUIT.with(|q| q.set(Some(status)));
    // Unwinds the evaluation of the whole form; the REPL then sees the
    // request. Elsewhere this is the agent's exit reason.
    Err(CallError::Failed(format!(
        "(quit {status}) leaves the kernel only when the REPL evaluates it"
    )))
}

fn target(function: &str, t: &Term) -> Result<Target, CallError> {
    match t {
        Term::Agent(_) | Term::Keyword(_) | Term::Str(_) => Ok(Target::from(t)),
        other => Err(bad(
            function,
            format!("{other} is not an agent (expected an agent, a :NAME or an id string)"),
        )),
    }
}

/// A failed `link`-family call in words; `what` names the attempt for the
/// caller itself ("an agent cannot watch itself").
fn link_failed(what: &'static str) -> impl Fn(agent::LinkError) -> CallError {
    move |e| match e {
        agent::LinkError::SelfLink => CallError::Failed(format!("an agent cannot {what} itself")),
        e => CallError::Failed(e.to_string()),
    }
}

/// A target for the management functions, which see only this node's
/// agents: an id string of another node is refused by name.
fn local_target(function: &str, t: &Term) -> Result<Target, CallError> {
    if let Term::Str(id) = t {
        let mut parts = id.splitn(3, '/');
        if let (Some(host), Some(node_name), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            let owner = format!("{host}/{node_name}");
            match node::this_node() {
                Some(me) if me == owner => {}
                Some(me) => {
                    return Err(CallError::Failed(format!(
                        "{function}: {id:?} is an agent of node {owner}; {function} reports only on agents of this node ({me})"
                    )))
                }
                None => {
                    return Err(CallError::Failed(format!(
                        "{function}: {id:?} is an agent of node {owner}, and this process is not a node (so it has no agent ids)"
                    )))
                }
            }
        }
    }
    target(function, t)
}

/// `(agent-stats "host/node/aid")` for an agent of another node (this
/// process being a node): asks that node. `None` for anything else.
fn remote_agent_stats(who: Option<&Term>) -> Option<Result<Term, CallError>> {
    let Some(Term::Str(id)) = who else {
        return None;
    };
    let (host, node_name, _) = crate::term::split_id(id)?;
    let owner = format!("{host}/{node_name}");
    let me = node::this_node()?;
    if me == owner {
        return None;
    }
    Some(
        manage::query(&owner, "agent-stats", vec![Term::Str(id.clone())]).map_err(|e| match e {
            // The node answered: the agent has exited, or the id names none.
            manage::QueryError::Answered { answer, .. } => CallError::Failed(answer),
            manage::QueryError::NotAsked(why) => CallError::Failed(format!(
                "agent-stats: {id:?} is an agent of node {owner}, which cannot be asked ({why}); without it agent-stats reports only on agents of this node ({me})"
            )),
        }),
    )
}

/// `(agent-id &optional agent)`: the id of an agent (the caller's by
/// default), as other nodes know it.
fn agent_id(args: &[Term]) -> Result<Term, CallError> {
    use crate::agent::target::Resolved;
    arity("agent-id", args, 0, 1)?;
    let who = match args.first() {
        Some(t) => target("agent-id", t)?,
        None => Target::from(Agent::current()),
    };
    match who.resolve() {
        Ok(Resolved::Local(a)) => a.id().map(Term::Str).ok_or_else(|| {
            CallError::Failed(
                "agent-id: this process is not a node, so its agents have no ids yet; start one first, e.g. (spawn '(node))".to_owned(),
            )
        }),
        Ok(Resolved::Remote(_, r)) => Ok(Term::Str(r.id.to_string())),
        Ok(Resolved::Dead) => Err(CallError::Failed(format!(
            "agent-id: {} has exited",
            args.first().map_or_else(|| "the agent".to_owned(), Term::to_string)
        ))),
        Err(e) => Err(CallError::Failed(format!("agent-id: {e}"))),
    }
}

/// `t` as printed here: as it is, or, when the lines go to a remote
/// shell's client (another node), with this node's agents written as
/// their ids, as values sent there are.
fn shown(t: &Term) -> Term {
    if capturing() {
        manage::as_ids(t)
    } else {
        t.clone()
    }
}

fn list_items<'a>(function: &str, t: &'a Term) -> Result<&'a [Term], CallError> {
    t.as_list()
        .or_else(|| t.as_vector())
        .ok_or_else(|| bad(function, format!("expected a list, got {t}")))
}

fn spawn(ev: &Evaluator, args: &[Term]) -> Result<Term, CallError> {
    let name = "spawn";
    let (fixed, keys) = keyword_args(
        name,
        args,
        1,
        &["ATTACH", "MAILBOX-SIZE", "NODE", "HOST", "NAME"],
    )?;
    let what = &fixed[0];
    let mut options = SpawnOptions::new();
    if let Some(a) = keys.get("ATTACH") {
        options.attach = Attach::from_term(a).ok_or_else(|| {
            bad(
                name,
                format!(":attach must be :link, :monitor or nil, got {a}"),
            )
        })?;
    }
    if let Some(m) = keys.get("MAILBOX-SIZE") {
        match m {
            Term::Int(n) if *n >= 1 => {
                options.mailbox_size = usize::try_from(*n).unwrap_or(usize::MAX)
            }
            other => {
                return Err(bad(
                    name,
                    format!(":mailbox-size must be a positive integer, got {other}"),
                ))
            }
        }
    }
    if let Some(n) = keys.get("NAME") {
        options.name = Some(string_arg(name, "name", n)?);
    }
    if let Some(target_node) = keys.get("NODE") {
        let target_node = string_arg(name, "node", target_node)?;
        let host = keys
            .get("HOST")
            .map(|h| string_arg(name, "host", h))
            .transpose()?;
        if !matches!(what, Term::List(_) | Term::Symbol(_)) {
            return Err(bad(
                name,
                "only a call of a registered function, such as '(parallel-map 1+ #(1 2)), can be spawned on another node",
            ));
        }
        let call = match what {
            Term::Symbol(_) => Term::list(vec![what.clone()]),
            other => other.clone(),
        };
        let id = node::spawn_on(host.as_deref(), &target_node, &call, &options)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        return Ok(Term::Agent(id));
    }
    if is_call_of(what, "NODE") {
        // Checked here: the spawned agent would fail at once and be
        // returned dead, looking like a node that started.
        if let Some(me) = node::this_node() {
            return Err(CallError::Failed(format!(
                "this process is already the node {me} (a process can be one node only)"
            )));
        }
    }
    let spawned = match what {
        // A call of a registered function: a thread agent, or an async one
        // if the function is async.
        Term::List(_) | Term::Symbol(_) => call::prepare_spawn(what)?.spawn(&options),
        Term::Local(_) => {
            let function = call::function_of(what)?;
            agent::spawn_with(&options, move || function(&[]))
        }
        other => {
            return Err(bad(
                name,
                format!(
                    "expected a call such as '(parallel-map 1+ #(1 2)) or a function, got {other}"
                ),
            ))
        }
    };
    let _ = ev;
    let agent = spawned.map_err(|e| CallError::Failed(e.to_string()))?;
    if is_call_of(what, "NODE") {
        wait_for_node(&agent)?;
    }
    Ok(agent.to_term())
}

/// `(spawn '(node …))` returns once the node is up (or failed), so the next
/// form can use it; the seed left that race to the typist.
fn wait_for_node(agent: &Agent) -> Result<(), CallError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if node::this_node().is_some() {
            return Ok(());
        }
        if let Some(outcome) = agent.outcome() {
            return Err(CallError::Failed(match outcome {
                agent::Outcome::Exited(Term::Str(reason)) => reason,
                agent::Outcome::Exited(reason) => format!("the node's agent exited: {reason}"),
                agent::Outcome::Returned(_) => "the node stopped".to_owned(),
            }));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(CallError::Failed(
        "the node did not start within 10 s".to_owned(),
    ))
}

thread_local! {
    /// Whether a node started on this thread says so on stderr: set on the
    /// REPL's thread unless `-Q`, so a kernel serving as a node shows it.
    static ANNOUNCE_NODE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes a node started by the calling thread print when it is up and
/// when it stops.
pub(super) fn announce_nodes() {
    ANNOUNCE_NODE.with(|a| a.set(true));
}

/// The node while `node` serves; dropping it (also when an exit signal
/// unwinds the serving agent) stops the node.
struct Serving {
    handle: Option<node::NodeHandle>,
    announce: bool,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let name = handle.full_name().to_owned();
            handle.stop();
            if self.announce {
                let _ = writeln!(std::io::stderr(), "node {name} stopped");
            }
        }
    }
}

fn node_call(args: &[Term]) -> Result<Term, CallError> {
    let name = "node";
    let (_, keys) = keyword_args(
        name,
        args,
        0,
        &[
            "HOST",
            "NAME",
            "TICK",
            "TIMEOUT",
            "MAX-CONNECTIONS",
            "SPAWN-TIMEOUT",
            "REMOTE-SHELL",
            "HIDDEN",
            "CONNECT-ALL",
            "SEAL",
        ],
    )?;
    let mut options = node::NodeOptions {
        hidden: NODE_DEFAULTS.hidden.load(Ordering::Relaxed),
        connect_all: NODE_DEFAULTS.connect_all.load(Ordering::Relaxed),
        seal: NODE_DEFAULTS.seal.load(Ordering::Relaxed),
        ..node::NodeOptions::default()
    };
    if let Some(hidden) = keys.get("HIDDEN") {
        options.hidden = hidden.is_true();
    }
    if let Some(all) = keys.get("CONNECT-ALL") {
        options.connect_all = all.is_true();
    }
    if let Some(seal) = keys.get("SEAL") {
        options.seal = seal.is_true();
    }
    if let Some(h) = keys.get("HOST") {
        options.host = Some(string_arg(name, "host", h)?);
    }
    if let Some(n) = keys.get("NAME") {
        options.name = Some(string_arg(name, "name", n)?);
    }
    if let Some(t) = keys.get("TICK") {
        options.tick = seconds(name, t)?;
    }
    if let Some(t) = keys.get("TIMEOUT") {
        options.timeout = seconds(name, t)?;
    }
    if let Some(t) = keys.get("SPAWN-TIMEOUT") {
        options.spawn_timeout = seconds(name, t)?;
    }
    if let Some(allow) = keys.get("REMOTE-SHELL") {
        options.remote_shell = allow.is_true();
    }
    if let Some(n) = keys.get("MAX-CONNECTIONS") {
        options.max_connections = match n {
            Term::Int(i) if *i >= 1 => usize::try_from(*i).unwrap_or(usize::MAX),
            other => {
                return Err(bad(
                    name,
                    format!(":max-connections expects a positive integer, got {other}"),
                ))
            }
        };
    }
    let handle = node::start(options)
        .map_err(|e| CallError::Failed(format!("the node cannot start: {e}")))?;
    let announce = ANNOUNCE_NODE.with(|a| a.get());
    if announce {
        let _ = writeln!(
            std::io::stderr(),
            "node {} listening on port {}",
            handle.full_name(),
            handle.port()
        );
    }
    let _serving = Serving {
        handle: Some(handle),
        announce,
    };
    // Serves until the agent is killed: the exit signal unwinds from this
    // receive and `_serving` stops the node (SPEC section 6).
    loop {
        let _ = agent::receive();
    }
}

fn compare(
    name: &'static str,
    ord: fn(std::cmp::Ordering) -> bool,
) -> impl Fn(&[Term]) -> Result<Term, CallError> {
    move |args: &[Term]| {
        let nums: Result<Vec<f64>, CallError> = args
            .iter()
            .map(|a| match a {
                Term::Int(i) => Ok(*i as f64),
                Term::Float(f) => Ok(*f),
                other => Err(bad(name, format!("expected a number, got {other}"))),
            })
            .collect();
        let nums = nums?;
        if nums.is_empty() {
            return Err(bad(name, "expected at least 1 argument"));
        }
        let ok = nums
            .windows(2)
            .all(|w| w[0].partial_cmp(&w[1]).is_some_and(ord));
        Ok(Term::from(ok))
    }
}

fn index(function: &str, t: &Term) -> Result<usize, CallError> {
    match t {
        Term::Int(i) if *i >= 0 => Ok(usize::try_from(*i).unwrap_or(usize::MAX)),
        other => Err(bad(function, format!("expected an index, got {other}"))),
    }
}

/// Registers these built-ins. `ev` is the session the REPL evaluates in.
pub(super) fn register(ev: &Evaluator) {
    let e = ev.clone();
    call::register_function("spawn", move |args| spawn(&e, args));
    call::register_function("send", |args| {
        arity("send", args, 2, 2)?;
        agent::send(args[0].clone(), target("send", &args[1])?)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(args[0].clone())
    });
    call::register_function("receive", |args| {
        let (_, keys) = keyword_args("receive", args, 0, &["TIMEOUT"])?;
        match keys.get("TIMEOUT") {
            None => Ok(agent::receive()),
            Some(t) => Ok(agent::receive_timeout(seconds("receive", t)?)?),
        }
    });
    call::register_function("exit", |args| {
        arity("exit", args, 1, 2)?;
        let who = match args.get(1) {
            Some(t) => target("exit", t)?,
            None => Target::from(Agent::current()),
        };
        agent::exit(args[0].clone(), who).map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("link", |args| {
        arity("link", args, 1, 2)?;
        let mode = match args.get(1) {
            None => Attach::Link,
            Some(m) => match Attach::from_term(m) {
                Some(Attach::None) | None => {
                    return Err(bad(
                        "link",
                        format!("mode must be :link or :monitor, got {m}"),
                    ))
                }
                Some(mode) => mode,
            },
        };
        agent::link(target("link", &args[0])?, mode)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("unlink", |args| {
        arity("unlink", args, 1, 1)?;
        agent::unlink(target("unlink", &args[0])?).map_err(link_failed("unlink from"))?;
        Ok(Term::T)
    });
    call::register_function("watch", |args| {
        arity("watch", args, 1, 1)?;
        agent::watch(target("watch", &args[0])?).map_err(link_failed("watch"))?;
        Ok(Term::T)
    });
    call::register_function("unwatch", |args| {
        arity("unwatch", args, 1, 1)?;
        agent::unwatch(target("unwatch", &args[0])?)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("register", |args| {
        arity("register", args, 1, 2)?;
        let name = string_arg("register", "name", &args[0])?;
        let who = match args.get(1) {
            None => Agent::current(),
            Some(t) => match target("register", t)?.clone() {
                Target::Agent(a) => a,
                Target::Term(Term::Agent(crate::term::AgentRef::Local(serial))) => {
                    crate::agent::target::by_serial(serial)
                        .ok_or_else(|| bad("register", "the agent has exited"))?
                }
                Target::Term(other) => {
                    return Err(bad("register", format!("{other} is not a local agent")))
                }
            },
        };
        crate::agent::registry::register(&name, &who)
            .map_err(|e| bad("register", e.to_string()))?;
        Ok(Term::keyword(&name))
    });
    call::register_function("unregister", |args| {
        arity("unregister", args, 1, 1)?;
        let name = string_arg("unregister", "name", &args[0])?;
        crate::agent::registry::unregister(&name).map_err(|e| bad("unregister", e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("registered", |args| {
        arity("registered", args, 0, 0)?;
        Ok(Term::list(
            crate::agent::registry::registered()
                .iter()
                .map(|n| Term::Keyword(n.clone()))
                .collect(),
        ))
    });
    call::register_function("agent", |args| {
        arity("agent", args, 0, 0)?;
        Ok(Agent::current().to_term())
    });
    call::register_function("agent-id", agent_id);
    call::register_function("node", node_call);
    call::register_function("agent-stats", |args| {
        arity("agent-stats", args, 0, 1)?;
        if let Some(answer) = remote_agent_stats(args.first()) {
            return answer;
        }
        let who = match args.first() {
            Some(t) => local_target("agent-stats", t)?,
            None => Target::from(Agent::current()),
        };
        Ok(management::agent_stats(who)
            .map_err(|e| CallError::Failed(format!("agent-stats: {e}")))?
            .to_term())
    });
    call::register_function("agent-tree", |args| {
        if matches!(args.first(), Some(Term::Keyword(k)) if k == "NODE") {
            let node = node_key("agent-tree", args)?.unwrap_or_default();
            let text = manage::query(&node, "agent-tree", Vec::new())?;
            print_line(format_args!(
                "{}",
                text.as_str().unwrap_or_default().trim_end_matches('\n')
            ));
            return Ok(Term::Nil);
        }
        arity("agent-tree", args, 0, 1)?;
        let who = match args.first() {
            Some(t) => local_target("agent-tree", t)?,
            None => Target::from(Agent::current()),
        };
        let tree = management::agent_tree(who)
            .map_err(|e| CallError::Failed(format!("agent-tree: {e}")))?;
        let text = if capturing() {
            manage::tree_with_ids(tree).to_string()
        } else {
            tree.to_string()
        };
        print_line(format_args!("{}", text.trim_end_matches('\n')));
        Ok(Term::Nil)
    });
    call::register_function("flush-messages", |args| {
        // :print-p as in the original's (flush-messages &key print-p).
        let (_, keys) = keyword_args("flush-messages", args, 0, &["PRINT-P"])?;
        let print = keys.get("PRINT-P").is_none_or(|p| p.is_true());
        let messages = agent::flush_messages();
        if print {
            for m in &messages {
                print_line(format_args!("{}", shown(m)));
            }
        }
        Ok(Term::from(messages.len()))
    });
    call::register_function("connection-stats", |args| {
        if let Some(node) = node_key("connection-stats", args)? {
            return Ok(manage::query(&node, "connection-stats", Vec::new())?);
        }
        Ok(Term::list(
            node::connection_stats()
                .iter()
                .map(|s| s.to_term())
                .collect(),
        ))
    });
    call::register_function("sleep", |args| {
        arity("sleep", args, 1, 1)?;
        std::thread::sleep(seconds("sleep", &args[0])?);
        Ok(Term::Nil)
    });
    call::register_function("print", |args| {
        arity("print", args, 1, 1)?;
        print_line(format_args!("{}", shown(&args[0])));
        Ok(args[0].clone())
    });
    call::register_function("quit", quit);
    register_data_helpers();
}

fn register_data_helpers() {
    call::register_function("list", |args| Ok(Term::list(args.to_vec())));
    call::register_function("vector", |args| Ok(Term::Vector(args.to_vec())));
    call::register_function("cons", |args| {
        arity("cons", args, 2, 2)?;
        Ok(Term::cons(args[0].clone(), args[1].clone()))
    });
    for name in ["car", "first"] {
        call::register_function(name, move |args| {
            arity(name, args, 1, 1)?;
            Ok(match &args[0] {
                Term::List(items) | Term::Dotted(items, _) => items[0].clone(),
                Term::Nil => Term::Nil,
                other => return Err(bad(name, format!("expected a list, got {other}"))),
            })
        });
    }
    call::register_function("cdr", |args| {
        arity("cdr", args, 1, 1)?;
        Ok(match &args[0] {
            Term::List(items) => Term::list(items[1..].to_vec()),
            Term::Dotted(items, tail) => Term::dotted(items[1..].to_vec(), (**tail).clone()),
            Term::Nil => Term::Nil,
            other => return Err(bad("cdr", format!("expected a list, got {other}"))),
        })
    });
    call::register_function("nth", |args| {
        arity("nth", args, 2, 2)?;
        let i = index("nth", &args[0])?;
        Ok(list_items("nth", &args[1])?
            .get(i)
            .cloned()
            .unwrap_or(Term::Nil))
    });
    call::register_function("second", |args| {
        arity("second", args, 1, 1)?;
        Ok(list_items("second", &args[0])?
            .get(1)
            .cloned()
            .unwrap_or(Term::Nil))
    });
    call::register_function("third", |args| {
        arity("third", args, 1, 1)?;
        Ok(list_items("third", &args[0])?
            .get(2)
            .cloned()
            .unwrap_or(Term::Nil))
    });
    for name in ["aref", "elt"] {
        call::register_function(name, move |args| {
            arity(name, args, 2, 2)?;
            let items = list_items(name, &args[0])?;
            let i = index(name, &args[1])?;
            items.get(i).cloned().ok_or_else(|| {
                bad(
                    name,
                    format!("index {i} out of bounds for length {}", items.len()),
                )
            })
        });
    }
    call::register_function("length", |args| {
        arity("length", args, 1, 1)?;
        Ok(match &args[0] {
            Term::Str(s) => Term::from(s.chars().count()),
            Term::Bytes(b) => Term::from(b.len()),
            other => Term::from(list_items("length", other)?.len()),
        })
    });
    call::register_function("append", |args| {
        let mut out = Vec::new();
        for a in args {
            out.extend_from_slice(list_items("append", a)?);
        }
        Ok(Term::list(out))
    });
    call::register_function("reverse", |args| {
        arity("reverse", args, 1, 1)?;
        let mut items = list_items("reverse", &args[0])?.to_vec();
        items.reverse();
        Ok(match &args[0] {
            Term::Vector(_) => Term::Vector(items),
            _ => Term::list(items),
        })
    });
    for name in ["equal", "eql", "eq"] {
        call::register_function(name, move |args| {
            arity(name, args, 2, 2)?;
            Ok(Term::from(args[0] == args[1]))
        });
    }
    for name in ["not", "null"] {
        call::register_function(name, move |args| {
            arity(name, args, 1, 1)?;
            Ok(Term::from(args[0].is_nil()))
        });
    }
    call::register_function("=", compare("=", |o| o.is_eq()));
    call::register_function("<", compare("<", |o| o.is_lt()));
    call::register_function(">", compare(">", |o| o.is_gt()));
    call::register_function("<=", compare("<=", |o| o.is_le()));
    call::register_function(">=", compare(">=", |o| o.is_ge()));
    call::register_function("funcall", |args| {
        let (f, rest) = args
            .split_first()
            .ok_or_else(|| bad("funcall", "expected a function"))?;
        call::function_of(f)?(rest)
    });
    call::register_function("apply", |args| {
        arity("apply", args, 2, 2)?;
        call::function_of(&args[0])?(list_items("apply", &args[1])?)
    });
    call::register_function("mapcar", |args| {
        arity("mapcar", args, 2, 2)?;
        let f = call::function_of(&args[0])?;
        let mut out = Vec::new();
        for x in list_items("mapcar", &args[1])? {
            out.push(f(std::slice::from_ref(x))?);
        }
        Ok(Term::list(out))
    });
}
