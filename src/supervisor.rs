//! Supervisors, as Erlang's `supervisor`: an agent that starts children
//! from specifications, monitors them, and restarts them by a strategy,
//! within a restart intensity.
//!
//! A [`ChildSpec`] is an id, a way to start the child (a registered call
//! such as `(async-echo)`, a Rust closure for a thread agent, an async body
//! factory, or a nested [`SupervisorSpec`]), a [`Restart`] policy, a
//! shutdown timeout, and optionally a name (given back to each restarted
//! agent) and a node (the child is started there with
//! [`crate::node::spawn_on`]; names are then not used).
//!
//! - [`Strategy::OneForOne`] restarts the child that exited;
//!   [`Strategy::OneForAll`] stops the others (in reverse start order) and
//!   restarts all; [`Strategy::RestForOne`] stops and restarts the child
//!   and those started after it.
//! - [`Restart::Permanent`] children are always restarted,
//!   [`Restart::Transient`] ones only after an abnormal exit (a normal one
//!   is a return, or reason `:NORMAL` or `:SHUTDOWN`), [`Restart::Temporary`]
//!   ones never.
//! - More than `intensity` restarts within `period` and the supervisor
//!   stops its children and exits with `(:SHUTDOWN
//!   :REACHED-MAX-RESTART-INTENSITY id)`, naming the child whose exit was
//!   one too many; a supervisor above it then applies its own policy.
//! - A remote child whose node is lost (`(:NOCONNECTION …)`) is restarted
//!   as any other: the node is tried again, and a start that fails counts
//!   as a restart and is retried after `period / intensity`, so the
//!   intensity decides when to give up.
//! - When the supervisor exits (killed, or giving up) it stops its
//!   children in reverse start order: each gets an exit signal `:SHUTDOWN`
//!   and is waited for up to its shutdown timeout, then killed with
//!   `:KILL` (a child that never receives again cannot be made to end
//!   sooner: exit signals act at a receive).
//!
//! The supervisor monitors its children, so
//! [`crate::management::agent_tree`] shows them under it. It answers the
//! request `:WHICH-CHILDREN` (see [`which_children`]) in the wire shape of
//! [`crate::server`].
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
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::agent::{self, Agent, Attach, IntoOutcome, Outcome, SpawnError, SpawnOptions, Target};
use crate::call;
use crate::node;
use crate::server::{self, RequestError};
use crate::term::{AgentRef, Term};
use crate::timer;

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

type Spawner = Arc<dyn Fn(&SpawnOptions) -> Result<Agent, SpawnError> + Send + Sync>;

/// How a child is started.
#[derive(Clone)]
enum Start {
    Call(Term),
    Local(Spawner),
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

    /// A child started as a registered call, such as `(async-echo)` (a
    /// thread or async agent, as the function is).
    pub fn call(id: &str, call: Term) -> ChildSpec {
        ChildSpec::with(id, Start::Call(call))
    }

    /// A thread agent running `f` (called again for each restart).
    pub fn thread<F, R>(id: &str, f: F) -> ChildSpec
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: IntoOutcome + 'static,
    {
        let f = Arc::new(f);
        ChildSpec::with(
            id,
            Start::Local(Arc::new(move |options| {
                let f = Arc::clone(&f);
                agent::spawn_with(options, move || f())
            })),
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
        ChildSpec::with(
            id,
            Start::Local(Arc::new(move |options| {
                agent::async_agent::spawn_with(options, f())
            })),
        )
    }

    /// A nested supervisor.
    pub fn supervisor(id: &str, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec::with(id, Start::Supervisor(Box::new(spec)))
    }

    /// Sets the restart policy (default [`Restart::Permanent`]).
    #[must_use]
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets the shutdown timeout (default 5 s).
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

    /// Adds a child (started in the order added).
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
    /// The supervisor did not say it had started in time.
    NoAnswer,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn(e) => write!(f, "cannot start the supervisor: {e}"),
            StartError::DuplicateId(id) => write!(f, "two children have the id {id}"),
            StartError::Child { id, reason } => write!(f, "child {id} cannot start: {reason}"),
            StartError::NoAnswer => f.write_str("the supervisor did not report its start"),
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

/// Starts a supervisor (a thread agent, attached to the caller as
/// `options` say) and its children, in order; returns once all have
/// started.
///
/// # Errors
/// [`StartError`]: the agent or a child could not start, or ids repeat.
pub fn start(spec: SupervisorSpec, options: &SpawnOptions) -> Result<Agent, StartError> {
    for (i, c) in spec.children.iter().enumerate() {
        if spec.children[..i].iter().any(|o| o.id == c.id) {
            return Err(StartError::DuplicateId(c.id.clone()));
        }
    }
    let (tx, rx) = mpsc::channel();
    let sup = agent::spawn_with(options, move || run(spec, tx)).map_err(StartError::Spawn)?;
    // Bounded: a child's start may wait on another node (its spawn
    // timeout), never forever.
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => Ok(sup),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            // The caller gives up on it: it must not go on running.
            let _ = agent::exit(Term::keyword("kill"), &sup);
            Err(StartError::NoAnswer)
        }
    }
}

/// The children of a supervisor now, in start order: `(id, agent)` for
/// each running child (an agent term, or an id string for a remote one).
///
/// # Errors
/// As for [`crate::server::request`].
pub fn which_children(
    supervisor: impl Into<Target>,
    timeout: Duration,
) -> Result<Vec<(String, Term)>, RequestError> {
    let answer = server::request(supervisor, Term::keyword("which-children"), timeout)?;
    Ok(answer
        .as_list()
        .unwrap_or(&[])
        .iter()
        .filter_map(|pair| match pair.as_list() {
            Some([Term::Str(id), agent]) => Some((id.clone(), agent.clone())),
            _ => None,
        })
        .collect())
}

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
    running: Option<Running>,
}

/// The supervisor's state. Dropping it (also when the supervisor is
/// killed and unwinds) stops the children.
struct Supervisor {
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
}

fn start_child(spec: &ChildSpec) -> Result<Running, String> {
    let mut options = SpawnOptions::new().attach(Attach::Monitor);
    if let Some(node_name) = &spec.node {
        let call = match &spec.start {
            Start::Call(call) => call,
            _ => return Err("only a call can be started on another node".to_owned()),
        };
        let (host, name) = match node_name.split_once('/') {
            Some((h, n)) => (Some(h), n),
            None => (None, node_name.as_str()),
        };
        return node::spawn_on(host, name, call, &options)
            .map(Running::Remote)
            .map_err(|e| e.to_string());
    }
    options.name = spec.name.clone();
    let started = match &spec.start {
        Start::Call(call) => call::spawn_call(call, &options).map_err(|e| e.to_string()),
        Start::Local(spawner) => spawner(&options).map_err(|e| e.to_string()),
        Start::Supervisor(sup) => {
            let sup = (**sup).clone();
            start(sup, &options).map_err(|e| e.to_string())
        }
    };
    started.map(Running::Local)
}

/// Whether an exit reason counts as normal for a transient child.
fn is_normal(reason: Option<&Term>) -> bool {
    match reason {
        None => true,
        Some(r) => r.is_keyword("NORMAL") || r.is_keyword("SHUTDOWN"),
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

impl Supervisor {
    fn stop_child(&mut self, i: usize) {
        let Some(running) = self.children[i].running.take() else {
            return;
        };
        let shutdown = self.children[i].spec.shutdown;
        match running {
            Running::Local(a) => {
                let _ = agent::exit(Term::keyword("shutdown"), &a);
                // Polled, not received: a supervisor that was killed has
                // a closed mailbox and gets no notices any more.
                let deadline = Instant::now() + shutdown;
                while a.is_alive() && Instant::now() < deadline {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
                if a.is_alive() {
                    let _ = agent::exit(Term::keyword("kill"), &a);
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

    /// Counts a restart; `false` if that is one too many.
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

    /// Starts child `i` (if it should run); on failure asks for a retry.
    fn restart(&mut self, i: usize) {
        match start_child(&self.children[i].spec) {
            Ok(r) => self.children[i].running = Some(r),
            Err(_) => {
                let retry = self.period / self.intensity.max(1);
                let message = Term::list(vec![
                    Term::keyword("retry"),
                    Term::Str(self.children[i].spec.id.clone()),
                ]);
                timer::send_after(retry, message, Agent::current());
            }
        }
    }

    /// A child exited: restart per policy and strategy. `Err` is the
    /// supervisor's exit reason when the intensity is exceeded.
    fn child_exited(&mut self, i: usize, reason: Option<Term>) -> Result<(), Term> {
        self.children[i].running = None;
        let wanted = match self.children[i].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => !is_normal(reason.as_ref()),
            Restart::Temporary => false,
        };
        if !wanted {
            return Ok(());
        }
        if !self.allow_restart() {
            return Err(self.give_up(i));
        }
        let first = match self.strategy {
            Strategy::OneForOne => {
                self.restart(i);
                return Ok(());
            }
            Strategy::OneForAll => 0,
            Strategy::RestForOne => i,
        };
        self.stop_from(first);
        for j in first..self.children.len() {
            // Temporary siblings are not brought back.
            if j == i || self.children[j].spec.restart != Restart::Temporary {
                self.restart(j);
            }
        }
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
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_from(0);
    }
}

fn run(spec: SupervisorSpec, started: mpsc::Sender<Result<(), StartError>>) -> Result<(), Term> {
    let mut sup = Supervisor {
        strategy: spec.strategy,
        intensity: spec.intensity,
        period: spec.period,
        children: Vec::new(),
        restarts: VecDeque::new(),
    };
    for child in spec.children {
        match start_child(&child) {
            Ok(r) => sup.children.push(Child {
                spec: child,
                running: Some(r),
            }),
            Err(reason) => {
                let id = child.id.clone();
                let _ = started.send(Err(StartError::Child {
                    id,
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
    let _ = started.send(Ok(()));
    loop {
        let message = agent::receive();
        if let Some((who, reason)) = notice(&message) {
            let found = sup
                .children
                .iter()
                .position(|c| c.running.as_ref().is_some_and(|r| r.is(&who)));
            // A notice of an agent no longer a child (stopped by a
            // strategy) is stale: ignored.
            if let Some(i) = found {
                if let Err(reason) = sup.child_exited(i, reason) {
                    drop(sup);
                    return Err(reason);
                }
            }
            continue;
        }
        match message.as_list() {
            Some([kind, from, request]) if kind.is_keyword("CALL") => {
                let answer = if request.is_keyword("WHICH-CHILDREN") {
                    sup.which_children()
                } else {
                    Term::list(vec![
                        Term::keyword("error"),
                        Term::keyword("unknown-request"),
                    ])
                };
                server::reply(from, answer);
            }
            Some([kind, Term::Str(id)]) if kind.is_keyword("RETRY") => {
                if let Some(i) = sup.children.iter().position(|c| &c.spec.id == id) {
                    if sup.children[i].running.is_none() {
                        if !sup.allow_restart() {
                            let reason = sup.give_up(i);
                            drop(sup);
                            return Err(reason);
                        }
                        sup.restart(i);
                    }
                }
            }
            _ => {}
        }
    }
}
