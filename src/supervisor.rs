//! Supervisors, as Erlang's `supervisor`: an agent that starts children
//! from specifications, monitors them, and restarts them by a strategy,
//! within a restart intensity.
//!
//! A [`ChildSpec`] is an id, a way to start the child (a registered call
//! such as `(async-echo)`, a Rust closure for a thread agent, an async body
//! factory, a start function of your own that may fail, or a nested
//! [`SupervisorSpec`]), a [`Restart`] policy, a shutdown timeout, and
//! optionally a name (given back to each restarted agent) and a node (the
//! child is started there with [`crate::node::spawn_on`]; names are then
//! not used).
//!
//! - [`Strategy::OneForOne`] restarts the child that exited;
//!   [`Strategy::OneForAll`] stops the others (in reverse start order) and
//!   restarts all; [`Strategy::RestForOne`] stops and restarts the child
//!   and those started after it; [`Strategy::SimpleOneForOne`] has one
//!   child spec, a template, and starts no child until asked: each
//!   [`start_child_with_args`] starts one more identical child (with extra
//!   arguments), each restarted on its own.
//! - [`Restart::Permanent`] children are always restarted,
//!   [`Restart::Transient`] ones only after an abnormal exit (a normal one
//!   is a return, or reason `:NORMAL`, `:SHUTDOWN` or `(:SHUTDOWN …)`, as
//!   OTP's `normal`, `shutdown` and `{shutdown, _}`; a supervisor that gave
//!   up exits with a `(:SHUTDOWN …)` reason), [`Restart::Temporary`] ones
//!   never (their spec is dropped when they end, as OTP does).
//! - Every restart counts, and so does every attempt of a restart that
//!   failed: more than `intensity` of them within `period` and the
//!   supervisor stops its children and exits with `(:SHUTDOWN
//!   :REACHED-MAX-RESTART-INTENSITY id)`, naming the child whose restart
//!   was one too many; a supervisor above it then applies its own policy.
//!   A restart that fails is tried again at once (after the messages
//!   already waiting), as OTP does, so a child that cannot start (its node
//!   is gone, its name is taken) ends the supervisor within its intensity,
//!   not later. With one-for-all and rest-for-one, a failed restart
//!   leaves the later children of the group stopped, and the retry starts
//!   the whole group again.
//! - A start of the supervisor that fails (a child cannot start) stops
//!   the children started before it, and only then returns the error.
//! - When the supervisor exits (killed, or giving up) it stops its
//!   children in reverse start order: each gets an exit signal `:SHUTDOWN`
//!   and is waited for up to its shutdown timeout. A child still running
//!   then is ended from outside (see below) with reason `:KILLED`.
//!
//! **A child that does not receive.** An exit signal acts at a receive,
//! and a Rust thread cannot be stopped from outside, so a child busy in
//! code that never receives cannot be made to stop. After its shutdown
//! timeout the supervisor counts it as gone: its exit protocol runs at
//! once (its outcome is `:KILLED`, its name and registrations are
//! released, so a replacement can take the name at once, its links and
//! monitors are told), and its code runs on, detached, until its next
//! receive (which ends it) or its return.
//!
//! The supervisor monitors its children, so
//! [`crate::management::agent_tree`] shows them under it. It answers
//! requests in the wire shape of [`crate::server`]: `:WHICH-CHILDREN`,
//! `:COUNT-CHILDREN`, `(:START-CHILD spec-or-arguments)`,
//! `(:TERMINATE-CHILD id-or-agent)`, `(:RESTART-CHILD id)` and
//! `(:DELETE-CHILD id)` (see the functions of the same names), so the
//! REPL and other nodes can ask too.
//!
//! The functions that ask a supervisor and wait ([`start`],
//! [`which_children`], [`start_child`], …) block: in an async agent they
//! fail at once (a blocking wait would stall the worker), and their
//! `_async` forms are awaited instead.
//!
//! ```
//! use std::time::Duration;
//! use erlangen::supervisor::{self, ChildSpec, Restart, Strategy, SupervisorSpec};
//! use erlangen::{receive, SpawnOptions, Term};
//!
//! let spec = SupervisorSpec::new(Strategy::OneForOne)
//!     .intensity(3, Duration::from_secs(5))
//!     .child(ChildSpec::thread("worker", || -> () { loop { let _ = receive(); } }))
//!     .child(ChildSpec::call("echo", erlangen::term::read("(async-echo)").unwrap())
//!         .restart(Restart::Transient));
//! # erlangen::examples::register_functions();
//! let sup = supervisor::start(spec, &SpawnOptions::new()).unwrap();
//! let children = supervisor::which_children(&sup, Duration::from_secs(5)).unwrap();
//! assert_eq!(children.len(), 2);
//! let (_, worker) = &children[0];
//! erlangen::exit(Term::keyword("crash"), worker).unwrap(); // restarted
//! erlangen::exit(Term::keyword("stop"), &sup).unwrap(); // stops both
//! ```

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{
    self, async_agent, Agent, Attach, IntoOutcome, Outcome, SpawnError, SpawnOptions, Target,
};
use crate::call;
use crate::node;
use crate::server::{self, RequestError};
use crate::term::{AgentRef, Term};

/// How long [`start`] waits for the supervisor to report its start: a
/// child's start may wait on another node (its spawn timeout), never
/// forever.
const START_WAIT: Duration = Duration::from_secs(60);

/// How a supervisor reacts to a child's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Restart the child that exited.
    OneForOne,
    /// Stop all other children and restart them all.
    OneForAll,
    /// Stop the children started after it and restart it and them.
    RestForOne,
    /// Many identical children from one template spec, started on demand
    /// ([`start_child_with_args`]), each restarted as with
    /// [`Strategy::OneForOne`] (OTP's `simple_one_for_one`).
    SimpleOneForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit.
    Transient,
    /// Never.
    Temporary,
}

/// A start function: spawn options (attach and name set by the
/// supervisor) and extra arguments to the agent, or why it failed.
type Spawner = Arc<dyn Fn(&SpawnOptions, Vec<Term>) -> Result<Agent, Term> + Send + Sync>;

/// How a child is started.
#[derive(Clone)]
enum Start {
    Call(Term),
    Local {
        spawner: Spawner,
        /// Whether the spawner takes extra arguments.
        takes_args: bool,
    },
    Supervisor(Box<SupervisorSpec>),
}

/// A child of a supervisor: see the module doc.
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    start: Start,
    restart: Restart,
    shutdown: Duration,
    name: Option<String>,
    node: Option<String>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("name", &self.name)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A child's id as the REPL writes it: a symbol or keyword (read
/// lower-case) or a string.
pub(crate) fn child_id(t: &Term) -> Result<String, String> {
    match t {
        Term::Symbol(s) => Ok(s.name.to_lowercase()),
        Term::Keyword(k) => Ok(k.to_lowercase()),
        Term::Str(s) => Ok(s.clone()),
        other => Err(format!("a child's id is a symbol, got {other}")),
    }
}

fn spawn_error(e: SpawnError) -> Term {
    Term::Str(e.to_string())
}

impl ChildSpec {
    fn with(id: &str, start: Start) -> ChildSpec {
        ChildSpec {
            id: id.to_owned(),
            start,
            restart: Restart::Permanent,
            shutdown: Duration::from_secs(5),
            name: None,
            node: None,
        }
    }

    fn local(id: &str, takes_args: bool, spawner: Spawner) -> ChildSpec {
        ChildSpec::with(
            id,
            Start::Local {
                spawner,
                takes_args,
            },
        )
    }

    /// A child started as a registered call, such as `(async-echo)` (a
    /// thread or async agent, as the function is). A simple-one-for-one
    /// child gets the extra arguments of its start appended to the call.
    pub fn call(id: &str, call: Term) -> ChildSpec {
        ChildSpec::with(id, Start::Call(call))
    }

    /// A thread agent running `f` (called again for each restart).
    pub fn thread<F, R>(id: &str, f: F) -> ChildSpec
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: IntoOutcome + 'static,
    {
        ChildSpec::thread_child(id, false, move |_| f())
    }

    /// A thread agent running `f` with the extra arguments of its start
    /// (the template of a [`Strategy::SimpleOneForOne`] supervisor; a
    /// restart gets the same arguments again).
    pub fn thread_with_args<F, R>(id: &str, f: F) -> ChildSpec
    where
        F: Fn(Vec<Term>) -> R + Send + Sync + 'static,
        R: IntoOutcome + 'static,
    {
        ChildSpec::thread_child(id, true, f)
    }

    fn thread_child<F, R>(id: &str, takes_args: bool, f: F) -> ChildSpec
    where
        F: Fn(Vec<Term>) -> R + Send + Sync + 'static,
        R: IntoOutcome + 'static,
    {
        let f = Arc::new(f);
        ChildSpec::local(
            id,
            takes_args,
            Arc::new(move |options, args| {
                let f = Arc::clone(&f);
                agent::spawn_with(options, move || f(args)).map_err(spawn_error)
            }),
        )
    }

    /// An async agent running the body `f` makes (called again for each
    /// restart).
    pub fn async_body<F, Fut>(id: &str, f: F) -> ChildSpec
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        ChildSpec::async_child(id, false, move |_| f())
    }

    /// An async agent running the body `f` makes from the extra arguments
    /// of its start (see [`ChildSpec::thread_with_args`]).
    pub fn async_with_args<F, Fut>(id: &str, f: F) -> ChildSpec
    where
        F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        ChildSpec::async_child(id, true, f)
    }

    fn async_child<F, Fut>(id: &str, takes_args: bool, f: F) -> ChildSpec
    where
        F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoOutcome,
    {
        ChildSpec::local(
            id,
            takes_args,
            Arc::new(move |options, args| {
                async_agent::spawn_with(options, f(args)).map_err(spawn_error)
            }),
        )
    }

    /// A child started by a function of your own, as OTP's start function
    /// `{M, F, A}`: it spawns the agent with the options it is given (the
    /// supervisor's attachment and the child's name: pass them on) and
    /// the extra arguments of the start, or returns why it cannot (OTP's
    /// `{error, Reason}`), which counts as a failed start.
    pub fn start_with<F>(id: &str, f: F) -> ChildSpec
    where
        F: Fn(&SpawnOptions, Vec<Term>) -> Result<Agent, Term> + Send + Sync + 'static,
    {
        ChildSpec::local(id, true, Arc::new(f))
    }

    /// A nested supervisor. Its shutdown timeout is unbounded by default
    /// (`Duration::MAX`), as OTP's `infinity` for supervisor children: it
    /// is given the time to stop its own children, each within its own
    /// timeout.
    pub fn supervisor(id: &str, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec::with(id, Start::Supervisor(Box::new(spec))).shutdown(Duration::MAX)
    }

    /// The spec a term describes, as the REPL writes one: `(id call
    /// &optional restart &key shutdown name node)`, with `id` a symbol,
    /// keyword or string, `call` a call such as `(pool-worker)` (or a
    /// symbol naming a function of no arguments), `restart` `:permanent`,
    /// `:transient` or `:temporary`, `:shutdown` in seconds, `:name` a
    /// keyword and `:node` a string.
    ///
    /// # Errors
    /// Words saying what is wrong with the term.
    pub fn from_term(term: &Term) -> Result<ChildSpec, String> {
        let shape = || {
            format!("a child is (id call &optional restart &key shutdown name node), got {term}")
        };
        let items = term.as_list().ok_or_else(shape)?;
        let [id, call, rest @ ..] = items else {
            return Err(shape());
        };
        let id = child_id(id)?;
        let call = match call {
            Term::List(_) => call.clone(),
            Term::Symbol(_) => Term::list(vec![call.clone()]),
            other => {
                return Err(format!(
                    "child {id}: expected a call such as (pool-worker), got {other}"
                ))
            }
        };
        let mut spec = ChildSpec::call(&id, call);
        let mut rest = rest;
        if let Some(Term::Keyword(k)) = rest.first() {
            let restart = match k.as_str() {
                "PERMANENT" => Some(Restart::Permanent),
                "TRANSIENT" => Some(Restart::Transient),
                "TEMPORARY" => Some(Restart::Temporary),
                _ => None,
            };
            if let Some(r) = restart {
                spec = spec.restart(r);
                rest = &rest[1..];
            }
        }
        let (_, keys) = call::keyword_args("child", rest, 0, &["SHUTDOWN", "NAME", "NODE"])
            .map_err(|e| format!("child {id}: {e}"))?;
        if let Some(s) = keys.get("SHUTDOWN") {
            let secs = match s {
                Term::Int(i) if *i >= 0 => *i as f64,
                Term::Float(f) if *f >= 0.0 && f.is_finite() => *f,
                other => {
                    return Err(format!(
                        "child {id}: :shutdown is a number of seconds, got {other}"
                    ))
                }
            };
            spec = spec.shutdown(Duration::from_secs_f64(secs.min(1e9)));
        }
        if let Some(n) = keys.get("NAME") {
            match n {
                Term::Keyword(k) | Term::Str(k) => spec = spec.name(k),
                other => return Err(format!("child {id}: :name must be a keyword, got {other}")),
            }
        }
        if let Some(n) = keys.get("NODE") {
            match n {
                Term::Str(s) => spec = spec.node(s),
                other => return Err(format!("child {id}: :node must be a string, got {other}")),
            }
        }
        Ok(spec)
    }

    /// Sets the restart policy (default [`Restart::Permanent`]).
    #[must_use]
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets the shutdown timeout (default 5 s; unbounded for a nested
    /// supervisor; `Duration::MAX` waits as long as it takes).
    #[must_use]
    pub fn shutdown(mut self, timeout: Duration) -> ChildSpec {
        self.shutdown = timeout;
        self
    }

    /// Registers each incarnation of the child under `name`.
    #[must_use]
    pub fn name(mut self, name: &str) -> ChildSpec {
        self.name = Some(name.to_owned());
        self
    }

    /// Starts the child on node `node` (`"name"` on this host or
    /// `"host/name"`); only calls can be started there.
    #[must_use]
    pub fn node(mut self, node: &str) -> ChildSpec {
        self.node = Some(node.to_owned());
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn is_supervisor(&self) -> bool {
        matches!(self.start, Start::Supervisor(_))
    }
}

/// A supervisor: its strategy, restart intensity and children.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with `strategy`, no children, and Erlang's default
    /// intensity: 1 restart in 5 s.
    pub fn new(strategy: Strategy) -> SupervisorSpec {
        SupervisorSpec {
            strategy,
            intensity: 1,
            period: Duration::from_secs(5),
            children: Vec::new(),
        }
    }

    /// At most `restarts` restarts within `period`.
    #[must_use]
    pub fn intensity(mut self, restarts: u32, period: Duration) -> SupervisorSpec {
        self.intensity = restarts;
        self.period = period;
        self
    }

    /// Adds a child (started in the order added); for
    /// [`Strategy::SimpleOneForOne`], the one template.
    #[must_use]
    pub fn child(mut self, child: ChildSpec) -> SupervisorSpec {
        self.children.push(child);
        self
    }
}

/// Why a supervisor did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The supervisor's own agent could not start.
    Spawn(SpawnError),
    /// Two children have the same id.
    DuplicateId(String),
    /// A child could not start (the supervisor has stopped those started
    /// before it, and exited).
    Child {
        /// The child's id.
        id: String,
        /// Why, in words.
        reason: String,
    },
    /// A simple-one-for-one supervisor needs exactly one child spec, its
    /// template (which cannot be a supervisor's own start on another
    /// node).
    Template(String),
    /// The supervisor did not say it had started in time.
    NoAnswer,
    /// [`start`] was called in an async agent, where its wait would stall
    /// the worker: await [`start_async`] there.
    WouldBlock,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn(e) => write!(f, "cannot start the supervisor: {e}"),
            StartError::DuplicateId(id) => write!(f, "two children have the id {id}"),
            StartError::Child { id, reason } => write!(f, "child {id} cannot start: {reason}"),
            StartError::Template(why) => write!(f, "simple-one-for-one: {why}"),
            StartError::NoAnswer => f.write_str("the supervisor did not report its start"),
            StartError::WouldBlock => f.write_str(&agent::blocking_refused(
                "supervisor::start",
                "supervisor::start_async",
            )),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StartError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a request about a supervisor's children failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChildError {
    /// The request itself failed (the supervisor is gone, no answer in
    /// time, called in an async agent: [`RequestError::WouldBlock`]).
    Request(RequestError),
    /// A child with this id runs already: this agent.
    AlreadyStarted(Term),
    /// A child with this id is known, not running (restart or delete it).
    AlreadyPresent,
    /// No child has this id (or is this agent).
    NotFound,
    /// The child runs: terminate it first.
    Running,
    /// The child's restart failed and waits for its retry.
    Restarting,
    /// Not with [`Strategy::SimpleOneForOne`] (its children have no ids of
    /// their own), or only with it (extra arguments).
    SimpleOneForOne,
    /// The child could not start: why.
    Start(Term),
    /// The spec or arguments given cannot be used: why.
    BadSpec(String),
    /// An answer this version does not know.
    Unexpected(Term),
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::Request(e) => write!(f, "{e}"),
            ChildError::AlreadyStarted(a) => write!(f, "the child runs already as {a}"),
            ChildError::AlreadyPresent => {
                f.write_str("a child with this id is present (restart or delete it)")
            }
            ChildError::NotFound => f.write_str("no such child"),
            ChildError::Running => f.write_str("the child is running (terminate it first)"),
            ChildError::Restarting => f.write_str("the child's restart is being retried"),
            ChildError::SimpleOneForOne => f.write_str(
                "the request does not fit the strategy (a simple-one-for-one supervisor's children are started with arguments and named by their agent; other children by a spec and an id)",
            ),
            ChildError::Start(why) => write!(f, "the child cannot start: {why}"),
            ChildError::BadSpec(why) => write!(f, "bad child spec: {why}"),
            ChildError::Unexpected(t) => write!(f, "unexpected answer {t}"),
        }
    }
}

impl Error for ChildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ChildError::Request(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RequestError> for ChildError {
    fn from(e: RequestError) -> ChildError {
        ChildError::Request(e)
    }
}

impl ChildError {
    /// The error as a term, as the supervisor answers it: `:NOT-FOUND`,
    /// `:RUNNING`, `(:ALREADY-STARTED agent)`, … (a request's own failure
    /// as [`RequestError::reason`]).
    pub fn reason(&self) -> Term {
        match self {
            ChildError::Request(e) => e.reason(),
            ChildError::AlreadyStarted(a) => {
                Term::list(vec![Term::keyword("already-started"), a.clone()])
            }
            ChildError::AlreadyPresent => Term::keyword("already-present"),
            ChildError::NotFound => Term::keyword("not-found"),
            ChildError::Running => Term::keyword("running"),
            ChildError::Restarting => Term::keyword("restarting"),
            ChildError::SimpleOneForOne => Term::keyword("simple-one-for-one"),
            ChildError::Start(why) => Term::list(vec![Term::keyword("start-failed"), why.clone()]),
            ChildError::BadSpec(why) => {
                Term::list(vec![Term::keyword("bad-spec"), Term::Str(why.clone())])
            }
            ChildError::Unexpected(t) => t.clone(),
        }
    }

    /// The error a supervisor's answer `(:ERROR reason)` stands for (the
    /// inverse of [`ChildError::reason`] for the supervisor's own errors).
    pub fn from_reason(reason: &Term) -> ChildError {
        match reason {
            Term::Keyword(k) => match k.as_str() {
                "ALREADY-PRESENT" => ChildError::AlreadyPresent,
                "NOT-FOUND" => ChildError::NotFound,
                "RUNNING" => ChildError::Running,
                "RESTARTING" => ChildError::Restarting,
                "SIMPLE-ONE-FOR-ONE" => ChildError::SimpleOneForOne,
                _ => ChildError::Unexpected(reason.clone()),
            },
            _ => match reason.as_list() {
                Some([k, a]) if k.is_keyword("ALREADY-STARTED") => {
                    ChildError::AlreadyStarted(a.clone())
                }
                Some([k, why]) if k.is_keyword("START-FAILED") => ChildError::Start(why.clone()),
                Some([k, Term::Str(why)]) if k.is_keyword("BAD-SPEC") => {
                    ChildError::BadSpec(why.clone())
                }
                _ => ChildError::Unexpected(reason.clone()),
            },
        }
    }
}

/// A supervisor's child counts, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildCounts {
    /// Child specs, running or not (for a simple-one-for-one supervisor,
    /// its one template).
    pub specs: usize,
    /// Children running now.
    pub active: usize,
    /// Children that are supervisors (running or not).
    pub supervisors: usize,
    /// Children that are not supervisors (running or not).
    pub workers: usize,
}

impl ChildCounts {
    /// `(:SPECS n :ACTIVE n :SUPERVISORS n :WORKERS n)`.
    pub fn to_term(&self) -> Term {
        let n = |v: usize| Term::Int(i64::try_from(v).unwrap_or(i64::MAX));
        Term::list(vec![
            Term::keyword("specs"),
            n(self.specs),
            Term::keyword("active"),
            n(self.active),
            Term::keyword("supervisors"),
            n(self.supervisors),
            Term::keyword("workers"),
            n(self.workers),
        ])
    }

    /// The counts a [`ChildCounts::to_term`] term holds.
    pub fn from_term(term: &Term) -> Option<ChildCounts> {
        let items = term.as_list()?;
        let get = |key: &str| {
            items
                .chunks(2)
                .find(|kv| kv[0].is_keyword(key))
                .and_then(|kv| kv.get(1)?.as_int())
                .and_then(|n| usize::try_from(n).ok())
        };
        Some(ChildCounts {
            specs: get("SPECS")?,
            active: get("ACTIVE")?,
            supervisors: get("SUPERVISORS")?,
            workers: get("WORKERS")?,
        })
    }
}

// ---- Starting a supervisor ----

/// How the supervisor tells its starter how the start went: once; an
/// unsent report (the supervisor's agent ended before it said) says
/// [`StartError::NoAnswer`].
struct Reporter(Option<server::Giver<Result<(), StartError>>>);

impl Reporter {
    fn send(&mut self, result: Result<(), StartError>) {
        if let Some(giver) = self.0.take() {
            giver.give(result);
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.send(Err(StartError::NoAnswer));
    }
}

/// A start in progress, on the starter's side.
struct Starting {
    sup: Agent,
    report: server::Waiter<Result<(), StartError>>,
}

fn validate(spec: &SupervisorSpec) -> Result<(), StartError> {
    if spec.strategy == Strategy::SimpleOneForOne {
        if spec.children.len() != 1 {
            return Err(StartError::Template(format!(
                "needs exactly one child spec (the template), got {}",
                spec.children.len()
            )));
        }
        return Ok(());
    }
    for (i, c) in spec.children.iter().enumerate() {
        if spec.children[..i].iter().any(|o| o.id == c.id) {
            return Err(StartError::DuplicateId(c.id.clone()));
        }
    }
    Ok(())
}

impl Starting {
    fn launch(spec: SupervisorSpec, options: &SpawnOptions) -> Result<Starting, StartError> {
        validate(&spec)?;
        let (report, giver) = server::handoff("supervisor-start");
        let reporter = Reporter(Some(giver));
        let sup =
            agent::spawn_with(options, move || run(spec, reporter)).map_err(StartError::Spawn)?;
        Ok(Starting { sup, report })
    }

    fn finish(self, woken: bool) -> Result<Agent, StartError> {
        match self.report.take(woken) {
            Some(Ok(())) => Ok(self.sup),
            Some(Err(e)) => Err(e),
            None => {
                // The caller gives up on it: it must not go on running.
                self.sup.kill(Term::keyword("kill"));
                Err(StartError::NoAnswer)
            }
        }
    }
}

/// Starts a supervisor (a thread agent, attached to the caller as
/// `options` say) and its children, in order; returns once all have
/// started, or, if one cannot start, once those started before it are
/// stopped again.
///
/// # Errors
/// [`StartError`]: the agent or a child could not start, ids repeat, a
/// simple-one-for-one spec without exactly one template, or the call is
/// made in an async agent ([`StartError::WouldBlock`]: await
/// [`start_async`] there).
pub fn start(spec: SupervisorSpec, options: &SpawnOptions) -> Result<Agent, StartError> {
    if agent::on_async_worker() {
        return Err(StartError::WouldBlock);
    }
    let starting = Starting::launch(spec, options)?;
    let woken = starting.report.wait(START_WAIT);
    starting.finish(woken)
}

/// [`start`] for async agents: the same start, awaited.
///
/// # Errors
/// As for [`start`] (never [`StartError::WouldBlock`]).
pub async fn start_async(
    spec: SupervisorSpec,
    options: &SpawnOptions,
) -> Result<Agent, StartError> {
    let starting = Starting::launch(spec, options)?;
    let woken = starting.report.wait_async(START_WAIT).await;
    starting.finish(woken)
}

// ---- Asking a supervisor ----

/// `(:OK value)` → value; `(:ERROR reason)` → the error; `:OK` → nil.
pub(crate) fn answer(reply: Term) -> Result<Term, ChildError> {
    if reply.is_keyword("OK") {
        return Ok(Term::Nil);
    }
    match reply.as_list() {
        Some([k, v]) if k.is_keyword("OK") => Ok(v.clone()),
        Some([k, reason]) if k.is_keyword("ERROR") => Err(ChildError::from_reason(reason)),
        _ => Err(ChildError::Unexpected(reply)),
    }
}

fn children_of(answer: &Term) -> Vec<(String, Term)> {
    answer
        .as_list()
        .unwrap_or(&[])
        .iter()
        .filter_map(|pair| match pair.as_list() {
            Some([Term::Str(id), agent]) => Some((id.clone(), agent.clone())),
            _ => None,
        })
        .collect()
}

/// The children of a supervisor now, in start order: `(id, agent)` for
/// each running child (an agent term, or an id string for a remote one).
/// Children that are not running (terminated, or waiting for a restart)
/// are not listed (see [`count_children`]).
///
/// # Errors
/// As for [`crate::server::request`]; in an async agent,
/// [`RequestError::WouldBlock`] (await [`which_children_async`]).
pub fn which_children(
    supervisor: impl Into<Target>,
    timeout: Duration,
) -> Result<Vec<(String, Term)>, RequestError> {
    if let Some(e) = server::would_block(
        "supervisor::which_children",
        "supervisor::which_children_async",
    ) {
        return Err(e);
    }
    let answer = server::request(supervisor, Term::keyword("which-children"), timeout)?;
    Ok(children_of(&answer))
}

/// [`which_children`] for async agents.
///
/// # Errors
/// As for [`crate::server::request_async`].
pub async fn which_children_async(
    supervisor: impl Into<Target>,
    timeout: Duration,
) -> Result<Vec<(String, Term)>, RequestError> {
    let answer =
        server::request_async(supervisor, Term::keyword("which-children"), timeout).await?;
    Ok(children_of(&answer))
}

/// Defines a blocking request to a supervisor and its async form.
macro_rules! ask {
    (
        $(#[$doc:meta])* $name:ident / $async_name:ident
        ($($arg:ident : $ty:ty),*) -> $out:ty,
        $request:expr, $decode:expr
    ) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// [`ChildError`]; in an async agent
        #[doc = concat!("[`RequestError::WouldBlock`] (await [`", stringify!($async_name), "`] there).")]
        pub fn $name(
            supervisor: impl Into<Target>,
            $($arg: $ty,)*
            timeout: Duration,
        ) -> Result<$out, ChildError> {
            if let Some(e) = server::would_block(
                concat!("supervisor::", stringify!($name)),
                concat!("supervisor::", stringify!($async_name)),
            ) {
                return Err(e.into());
            }
            let reply = server::request(supervisor, $request, timeout)?;
            $decode(reply)
        }

        #[doc = concat!("[`", stringify!($name), "`] for async agents.")]
        ///
        /// # Errors
        #[doc = concat!("As for [`", stringify!($name), "`].")]
        pub async fn $async_name(
            supervisor: impl Into<Target>,
            $($arg: $ty,)*
            timeout: Duration,
        ) -> Result<$out, ChildError> {
            let reply = server::request_async(supervisor, $request, timeout).await?;
            $decode(reply)
        }
    };
}

fn request_of(kind: &str, argument: Term) -> Term {
    Term::list(vec![Term::keyword(kind), argument])
}

fn decode_counts(reply: Term) -> Result<ChildCounts, ChildError> {
    ChildCounts::from_term(&reply).ok_or(ChildError::Unexpected(reply))
}

fn decode_unit(reply: Term) -> Result<(), ChildError> {
    answer(reply).map(|_| ())
}

ask! {
    /// Starts one more child from `spec` and keeps the spec (OTP's
    /// `start_child`): the new child's agent. Not for a
    /// [`Strategy::SimpleOneForOne`] supervisor (see
    /// [`start_child_with_args`]). The spec travels as a local value, so
    /// the supervisor must be of this process (another node's takes the
    /// request `(:START-CHILD (id call …))`, as the REPL sends it).
    start_child / start_child_async (spec: ChildSpec) -> Term,
    request_of("start-child", Term::local_labeled("child-spec", spec)),
    answer
}

ask! {
    /// Starts one more child of a [`Strategy::SimpleOneForOne`]
    /// supervisor, from its template with `args` as extra arguments (a
    /// call gets them appended; see [`ChildSpec::thread_with_args`]): the
    /// new child's agent.
    start_child_with_args / start_child_with_args_async (args: Vec<Term>) -> Term,
    request_of("start-child", Term::list(args)),
    answer
}

ask! {
    /// Stops the child `id` (or, for a [`Strategy::SimpleOneForOne`]
    /// supervisor, the child agent `child`, an agent term) as the
    /// supervisor stops children, and keeps its spec for
    /// [`restart_child`] (a temporary child's spec, and a
    /// simple-one-for-one child, are dropped). `child` is a string id or
    /// an agent term.
    terminate_child / terminate_child_async (child: Term) -> (),
    request_of("terminate-child", child),
    decode_unit
}

ask! {
    /// Starts again the terminated child `id`, from its kept spec: the new
    /// agent.
    restart_child / restart_child_async (id: &str) -> Term,
    request_of("restart-child", Term::Str(id.to_owned())),
    answer
}

ask! {
    /// Forgets the spec of the terminated child `id`.
    delete_child / delete_child_async (id: &str) -> (),
    request_of("delete-child", Term::Str(id.to_owned())),
    decode_unit
}

ask! {
    /// The supervisor's child counts (OTP's `count_children`).
    count_children / count_children_async () -> ChildCounts,
    Term::keyword("count-children"),
    decode_counts
}

// ---- The supervisor's agent ----

/// A running child.
#[derive(Clone)]
enum Running {
    Local(Agent),
    Remote(AgentRef),
}

impl Running {
    fn to_term(&self) -> Term {
        match self {
            Running::Local(a) => a.to_term(),
            Running::Remote(r) => Term::Agent(r.clone()),
        }
    }

    fn is(&self, who: &Term) -> bool {
        match (self, who) {
            (Running::Local(a), t) => a.to_term() == *t,
            (Running::Remote(r), Term::Agent(other)) => r.id().is_some() && r.id() == other.id(),
            (Running::Remote(r), Term::Str(s)) => r.id() == Some(s.as_str()),
            _ => false,
        }
    }
}

struct Child {
    spec: ChildSpec,
    /// Extra arguments of its start (simple-one-for-one children).
    args: Vec<Term>,
    running: Option<Running>,
    /// Its restart failed; a retry is queued.
    restarting: bool,
}

impl Child {
    fn new(spec: ChildSpec, args: Vec<Term>) -> Child {
        Child {
            spec,
            args,
            running: None,
            restarting: false,
        }
    }
}

/// The message a supervisor sends itself to try a failed restart again.
struct Retry;

/// The supervisor's state. Dropping it (also when the supervisor is
/// killed and unwinds) stops the children.
struct Supervisor {
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
    /// The template of a simple-one-for-one supervisor.
    template: Option<ChildSpec>,
}

fn start_child_spec(spec: &ChildSpec, args: &[Term]) -> Result<Running, Term> {
    let mut options = SpawnOptions::new().attach(Attach::Monitor);
    let with_args = |call: &Term| -> Term {
        match call.as_list() {
            Some(items) if !args.is_empty() => {
                Term::list(items.iter().chain(args.iter()).cloned().collect())
            }
            _ => call.clone(),
        }
    };
    if let Some(node_name) = &spec.node {
        let call = match &spec.start {
            Start::Call(call) => with_args(call),
            _ => {
                return Err(Term::Str(
                    "only a call can be started on another node".to_owned(),
                ))
            }
        };
        let (host, name) = match node_name.split_once('/') {
            Some((h, n)) => (Some(h), n),
            None => (None, node_name.as_str()),
        };
        return node::spawn_on(host, name, &call, &options)
            .map(Running::Remote)
            .map_err(|e| Term::Str(e.to_string()));
    }
    options.name = spec.name.clone();
    let started = match &spec.start {
        Start::Call(call) => {
            call::spawn_call(&with_args(call), &options).map_err(|e| Term::Str(e.to_string()))
        }
        Start::Local {
            spawner,
            takes_args,
        } => {
            if !takes_args && !args.is_empty() {
                return Err(Term::Str(format!(
                    "child {} takes no arguments, got {}",
                    spec.id,
                    Term::list(args.to_vec())
                )));
            }
            spawner(&options, args.to_vec())
        }
        Start::Supervisor(sup) => {
            if !args.is_empty() {
                return Err(Term::Str(format!(
                    "supervisor child {} takes no arguments",
                    spec.id
                )));
            }
            start((**sup).clone(), &options).map_err(|e| Term::Str(e.to_string()))
        }
    };
    started.map(Running::Local)
}

/// Whether an exit reason counts as normal for a transient child: a
/// return, `:NORMAL`, `:SHUTDOWN` or `(:SHUTDOWN …)` (OTP's `normal`,
/// `shutdown` and `{shutdown, _}`).
fn is_normal(reason: Option<&Term>) -> bool {
    match reason {
        None => true,
        Some(Term::Keyword(k)) => k == "NORMAL" || k == "SHUTDOWN",
        Some(Term::List(items)) => items.first().is_some_and(|k| k.is_keyword("SHUTDOWN")),
        Some(Term::Dotted(items, _)) => items.first().is_some_and(|k| k.is_keyword("SHUTDOWN")),
        Some(_) => false,
    }
}

/// Splits an exit notice into the agent and its reason (`None` for a
/// normal return).
fn notice(message: &Term) -> Option<(Term, Option<Term>)> {
    Outcome::from_notification(message).map(|(who, outcome)| match outcome {
        Outcome::Exited(reason) => (who, Some(reason)),
        Outcome::Returned(_) => (who, None),
    })
}

fn ok(value: Term) -> Term {
    Term::list(vec![Term::keyword("ok"), value])
}

fn error(reason: ChildError) -> Term {
    Term::list(vec![Term::keyword("error"), reason.reason()])
}

impl Supervisor {
    fn stop_child(&mut self, i: usize) {
        let Some(running) = self.children[i].running.take() else {
            return;
        };
        let shutdown = self.children[i].spec.shutdown;
        match running {
            Running::Local(a) => {
                a.kill(Term::keyword("shutdown"));
                // Polled, not received: a supervisor that was killed has
                // a closed mailbox and gets no notices any more.
                let deadline = Instant::now().checked_add(shutdown);
                while a.is_alive() && deadline.is_none_or(|d| Instant::now() < d) {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
                if a.is_alive() {
                    // It did not receive in time, and no signal can stop
                    // a thread: it is gone as an agent from now on (see
                    // the module doc), its name free for its successor.
                    a.end_now(Term::keyword("killed"));
                }
            }
            Running::Remote(r) => {
                // No way to watch a remote agent end without a mailbox:
                // the exit signal goes out in order, and that is all.
                let _ = agent::exit(Term::keyword("shutdown"), r);
            }
        }
    }

    fn stop_from(&mut self, first: usize) {
        for i in (first..self.children.len()).rev() {
            self.stop_child(i);
        }
    }

    /// Counts a restart (or an attempt of one); `false` if that is one too
    /// many.
    fn allow_restart(&mut self) -> bool {
        let now = Instant::now();
        self.restarts.push_back(now);
        while let Some(first) = self.restarts.front() {
            if now.duration_since(*first) > self.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len() <= self.intensity as usize
    }

    /// Starts child `i`: its agent as a term, or why it cannot start.
    fn start_one(&mut self, i: usize) -> Result<Term, Term> {
        let child = &mut self.children[i];
        let running = start_child_spec(&child.spec, &child.args)?;
        let agent = running.to_term();
        child.running = Some(running);
        child.restarting = false;
        Ok(agent)
    }

    /// Marks child `i` as waiting for a retry and queues the retry, which
    /// comes after the messages already waiting (OTP's
    /// `try_again_restart`), on the lane nothing is dropped from.
    fn retry_later(&mut self, i: usize) {
        self.children[i].restarting = true;
        Agent::current().notify(Term::local_labeled("supervisor-retry", Retry));
    }

    /// Restarts child `i` by the strategy (OTP's `restart/3`): alone, or
    /// with its group (every child for one-for-all, those from `i` on for
    /// rest-for-one), stopping the group's running children first. A start
    /// that fails leaves the rest of the group stopped and queues a retry.
    fn restart(&mut self, i: usize) {
        let first = match self.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => {
                if self.start_one(i).is_err() {
                    self.retry_later(i);
                }
                return;
            }
            Strategy::OneForAll => 0,
            Strategy::RestForOne => i,
        };
        let id = self.children[i].spec.id.clone();
        self.stop_from(first);
        // Temporary children of the group are not brought back: their
        // specs go, as OTP drops them.
        let mut j = first;
        while j < self.children.len() {
            if self.children[j].spec.restart == Restart::Temporary && self.children[j].spec.id != id
            {
                self.children.remove(j);
            } else {
                j += 1;
            }
        }
        for j in first..self.children.len() {
            if self.start_one(j).is_err() {
                self.retry_later(j);
                return;
            }
        }
    }

    /// A child exited: restart per policy and strategy. `Err` is the
    /// supervisor's exit reason when the intensity is exceeded.
    fn child_exited(&mut self, i: usize, reason: Option<Term>) -> Result<(), Term> {
        self.children[i].running = None;
        let spec = &self.children[i].spec;
        let wanted = match spec.restart {
            Restart::Permanent => true,
            Restart::Transient => !is_normal(reason.as_ref()),
            Restart::Temporary => false,
        };
        if !wanted {
            // A temporary child's spec goes; so does every child of a
            // simple-one-for-one supervisor that stays down.
            if spec.restart == Restart::Temporary || self.strategy == Strategy::SimpleOneForOne {
                self.children.remove(i);
            }
            return Ok(());
        }
        if !self.allow_restart() {
            return Err(self.give_up(i));
        }
        self.restart(i);
        Ok(())
    }

    /// A queued retry: the first child waiting for one is restarted again
    /// (counted as a restart), by the strategy.
    fn retry(&mut self) -> Result<(), Term> {
        let Some(i) = self.children.iter().position(|c| c.restarting) else {
            return Ok(());
        };
        if !self.allow_restart() {
            return Err(self.give_up(i));
        }
        self.children[i].restarting = false;
        self.restart(i);
        Ok(())
    }

    fn give_up(&mut self, i: usize) -> Term {
        Term::list(vec![
            Term::keyword("shutdown"),
            Term::keyword("reached-max-restart-intensity"),
            Term::Str(self.children[i].spec.id.clone()),
        ])
    }

    fn which_children(&self) -> Term {
        Term::list(
            self.children
                .iter()
                .filter_map(|c| {
                    c.running
                        .as_ref()
                        .map(|r| Term::list(vec![Term::Str(c.spec.id.clone()), r.to_term()]))
                })
                .collect(),
        )
    }

    fn count_children(&self) -> Term {
        let supervisors = self
            .children
            .iter()
            .filter(|c| c.spec.is_supervisor())
            .count();
        ChildCounts {
            specs: if self.template.is_some() {
                1
            } else {
                self.children.len()
            },
            active: self.children.iter().filter(|c| c.running.is_some()).count(),
            supervisors,
            workers: self.children.len() - supervisors,
        }
        .to_term()
    }

    fn by_id(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    fn start_new_child(&mut self, argument: &Term) -> Result<Term, ChildError> {
        let child = match &self.template {
            Some(template) => {
                let args = match argument {
                    Term::Nil => Vec::new(),
                    Term::List(items) => items.clone(),
                    _ => return Err(ChildError::SimpleOneForOne),
                };
                Child::new(template.clone(), args)
            }
            None => {
                let spec = match argument.downcast_local::<ChildSpec>() {
                    Some(spec) => spec.clone(),
                    None if matches!(argument, Term::List(_)) => {
                        ChildSpec::from_term(argument).map_err(ChildError::BadSpec)?
                    }
                    None => return Err(ChildError::SimpleOneForOne),
                };
                if let Some(i) = self.by_id(&spec.id) {
                    return Err(match &self.children[i].running {
                        Some(r) => ChildError::AlreadyStarted(r.to_term()),
                        None => ChildError::AlreadyPresent,
                    });
                }
                Child::new(spec, Vec::new())
            }
        };
        let running = start_child_spec(&child.spec, &child.args).map_err(ChildError::Start)?;
        let agent = running.to_term();
        self.children.push(Child {
            running: Some(running),
            ..child
        });
        Ok(agent)
    }

    fn terminate_child(&mut self, key: &Term) -> Result<(), ChildError> {
        let i = match (key, &self.template) {
            // An id string "host/node/aid" names a remote child's agent.
            (Term::Str(id), Some(_)) if !id.contains('/') => {
                return Err(ChildError::SimpleOneForOne)
            }
            (Term::Str(id), None) => self.by_id(id).ok_or(ChildError::NotFound)?,
            (_, Some(_)) => self
                .children
                .iter()
                .position(|c| c.running.as_ref().is_some_and(|r| r.is(key)))
                .ok_or(ChildError::NotFound)?,
            (_, None) => return Err(ChildError::NotFound),
        };
        self.stop_child(i);
        self.children[i].restarting = false;
        if self.template.is_some() || self.children[i].spec.restart == Restart::Temporary {
            self.children.remove(i);
        }
        Ok(())
    }

    fn child_by_id(&self, key: &Term) -> Result<usize, ChildError> {
        if self.template.is_some() {
            return Err(ChildError::SimpleOneForOne);
        }
        let Term::Str(id) = key else {
            return Err(ChildError::NotFound);
        };
        let i = self.by_id(id).ok_or(ChildError::NotFound)?;
        if self.children[i].running.is_some() {
            return Err(ChildError::Running);
        }
        if self.children[i].restarting {
            return Err(ChildError::Restarting);
        }
        Ok(i)
    }

    fn restart_child(&mut self, key: &Term) -> Result<Term, ChildError> {
        let i = self.child_by_id(key)?;
        self.start_one(i).map_err(ChildError::Start)
    }

    fn delete_child(&mut self, key: &Term) -> Result<(), ChildError> {
        let i = self.child_by_id(key)?;
        self.children.remove(i);
        Ok(())
    }

    /// Answers a request of the wire shape of [`crate::server`].
    fn handle_call(&mut self, request: &Term) -> Term {
        let unit = |r: Result<(), ChildError>| r.map_or_else(error, |()| Term::keyword("ok"));
        let value = |r: Result<Term, ChildError>| r.map_or_else(error, ok);
        match request.as_list() {
            _ if request.is_keyword("WHICH-CHILDREN") => self.which_children(),
            _ if request.is_keyword("COUNT-CHILDREN") => self.count_children(),
            Some([Term::Keyword(kind), argument]) => match kind.as_str() {
                "START-CHILD" => value(self.start_new_child(argument)),
                "TERMINATE-CHILD" => unit(self.terminate_child(argument)),
                "RESTART-CHILD" => value(self.restart_child(argument)),
                "DELETE-CHILD" => unit(self.delete_child(argument)),
                _ => unknown_request(),
            },
            _ => unknown_request(),
        }
    }
}

fn unknown_request() -> Term {
    Term::list(vec![
        Term::keyword("error"),
        Term::keyword("unknown-request"),
    ])
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_from(0);
    }
}

fn run(spec: SupervisorSpec, mut reporter: Reporter) -> Result<(), Term> {
    let mut sup = Supervisor {
        strategy: spec.strategy,
        intensity: spec.intensity,
        period: spec.period,
        children: Vec::new(),
        restarts: VecDeque::new(),
        template: None,
    };
    if spec.strategy == Strategy::SimpleOneForOne {
        sup.template = spec.children.into_iter().next();
    } else {
        for child in spec.children {
            match start_child_spec(&child, &[]) {
                Ok(running) => {
                    let mut started = Child::new(child, Vec::new());
                    started.running = Some(running);
                    sup.children.push(started);
                }
                Err(reason) => {
                    // Those started before it are stopped before the
                    // starter hears of the failure (OTP returns only after
                    // that too).
                    sup.stop_from(0);
                    let reason = match reason {
                        Term::Str(s) => s,
                        other => other.to_string(),
                    };
                    reporter.send(Err(StartError::Child {
                        id: child.id.clone(),
                        reason: reason.clone(),
                    }));
                    drop(sup);
                    return Err(Term::list(vec![
                        Term::keyword("shutdown"),
                        Term::keyword("failed-to-start-child"),
                        Term::Str(child.id),
                        Term::Str(reason),
                    ]));
                }
            }
        }
    }
    reporter.send(Ok(()));
    drop(reporter);
    loop {
        let message = agent::receive();
        if let Some((who, reason)) = notice(&message) {
            let found = sup
                .children
                .iter()
                .position(|c| c.running.as_ref().is_some_and(|r| r.is(&who)));
            // A notice of an agent no longer a child (stopped by a
            // strategy or a request) is stale: ignored.
            if let Some(i) = found {
                if let Err(reason) = sup.child_exited(i, reason) {
                    drop(sup);
                    return Err(reason);
                }
            }
            continue;
        }
        if message.downcast_local::<Retry>().is_some() {
            if let Err(reason) = sup.retry() {
                drop(sup);
                return Err(reason);
            }
            continue;
        }
        if let Some([kind, from, request]) = message.as_list() {
            if kind.is_keyword("CALL") {
                let answer = sup.handle_call(request);
                server::reply(from, answer);
            }
        }
    }
}
