//! Request/reply between agents, as Erlang's `gen_server:call`, and a small
//! server helper: an agent body written as a state and handlers.
//!
//! # Requests
//!
//! [`request`] (from a thread agent) and [`request_async`] (awaited in an
//! async agent) send a request to a server and wait for its reply, at most
//! a timeout ([`DEFAULT_TIMEOUT`] is Erlang's 5 s). The callee is monitored
//! for the duration of the call, so a callee that is dead, dies during the
//! call or whose node is unreachable is an immediate error
//! ([`RequestError::NoProc`], [`RequestError::NoConnection`],
//! [`RequestError::Exited`]), not a timeout. Local and remote servers (an
//! id string or reference of another node) alike.
//!
//! A late reply never lands in the caller's mailbox, nor does the
//! monitor's notice: the reply address of each call is a short-lived
//! *proxy* (an async agent) that watches the callee (a one-way monitor,
//! [`crate::agent::watch`]: the proxy's end never harms the callee), sends
//! the request, takes the reply or the notice and ends. A reply that comes
//! after the caller gave up goes to the proxy, which is gone (the message
//! is dropped as for any dead agent). The proxy hands the result to the
//! caller through a slot both share, waking the caller with one local
//! message that the caller removes itself, also when its timeout raced
//! with the answer. That wake-up goes on the lane exit notifications use,
//! so a caller whose mailbox is full still gets it.
//!
//! The callee is resolved once, when the call starts, as
//! `gen_server:call` does: a name names the agent that holds it then, and
//! the watch, the request and the proxy's end all concern that agent even
//! if the name passes to another meanwhile. (A `host/node/:name` id of
//! another node is looked up there, by that node.) A request to oneself
//! fails at once ([`RequestError::CallingSelf`], OTP's `calling_self`).
//!
//! [`request`] blocks its thread: called in an async agent (on a worker
//! of the scheduler, where it would stall every agent of that worker) it
//! fails at once with [`RequestError::WouldBlock`]; await
//! [`request_async`] there.
//!
//! # Wire shape
//!
//! What a server receives and sends, so another node, a REPL session or a
//! hand-written agent can take part:
//!
//! - a request: `(:CALL (from tag) request)`; `from` is the reply address
//!   (an agent), `tag` a term unique to this call;
//! - its reply, sent to `from`: `(:REPLY tag reply)` ([`reply`] does this
//!   given the `(from tag)` list);
//! - a cast (no reply): `(:CAST message)` ([`cast`]);
//! - anything else is *info* to the server (exit notices, timer messages).
//!
//! # Servers
//!
//! [`Server`] runs that protocol around a state: `on_call(state, request)
//! -> (reply, state)`, `on_cast(state, message) -> state`, `on_info(state,
//! message) -> state`, as a thread agent ([`Server::spawn`]) or an async
//! one ([`Server::spawn_async`]). A handler stops the server by exiting
//! (`erlangen::agent::exit_current(reason)`) or panicking; a caller waiting
//! on it then gets [`RequestError::Exited`].
//!
//! ```
//! use std::time::Duration;
//! use erlangen::server::{self, RequestError, Server};
//! use erlangen::{SpawnOptions, Term};
//!
//! // A counter: `(:add n)` adds and replies with the sum.
//! let counter = Server::new(0i64)
//!     .on_call(|sum, request| match request.as_list() {
//!         Some([op, Term::Int(n)]) if op.is_keyword("ADD") => (Term::from(sum + n), sum + n),
//!         _ => (Term::keyword("bad-request"), sum),
//!     })
//!     .spawn_async(&SpawnOptions::new())
//!     .unwrap();
//! let add = |n: i64| Term::list(vec![Term::keyword("add"), n.into()]);
//! assert_eq!(server::request(&counter, add(2), server::DEFAULT_TIMEOUT).unwrap(), Term::from(2));
//! assert_eq!(server::request(&counter, add(40), server::DEFAULT_TIMEOUT).unwrap(), Term::from(42));
//!
//! erlangen::exit(Term::keyword("stop"), &counter).unwrap();
//! // A dead server is an error at once, not after the timeout.
//! let dead = server::request(&counter, add(1), Duration::from_secs(60));
//! assert!(matches!(dead, Err(RequestError::NoProc { .. }) | Err(RequestError::Exited { .. })));
//! ```

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::agent::target::Resolved;
use crate::agent::{
    self, async_agent, Agent, LinkError, Outcome, SendError, SpawnError, SpawnOptions, Target,
};
use crate::term::Term;

/// The timeout of a request when the caller has no better idea (Erlang's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a proxy outlives its call's timeout before giving up on a
/// caller that never collected the result (one that was killed): only a
/// backstop, the caller's own timeout decides.
const PROXY_GRACE: Duration = Duration::from_secs(1);

/// Why a request got no reply.
#[derive(Debug)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply came within the timeout.
    Timeout(Duration),
    /// The callee does not exist (it has exited, or the name or id names
    /// no agent): its monitor said `:NOPROC`.
    NoProc {
        /// The callee as given.
        callee: Term,
    },
    /// The callee's node cannot be reached, or the connection to it was
    /// lost during the call.
    NoConnection {
        /// The callee as given.
        callee: Term,
        /// The monitor's reason, `(:NOCONNECTION "host/node")`, or the
        /// node layer's words.
        reason: Term,
    },
    /// The callee exited during the call.
    Exited {
        /// The callee as given.
        callee: Term,
        /// Its exit reason; `(:OK . values)` if it returned normally.
        reason: Term,
    },
    /// The callee could not be monitored (the target is not an agent, or
    /// another node refused).
    Monitor(LinkError),
    /// The request could not be sent (it holds a local-only value and the
    /// callee is on another node).
    Send(SendError),
    /// The proxy agent of the call could not start.
    Spawn(SpawnError),
    /// The callee is the caller itself (OTP's `calling_self`): it could
    /// never answer.
    CallingSelf {
        /// The callee as given.
        callee: Term,
    },
    /// A blocking call was made on a worker of the async scheduler (in an
    /// async agent), where waiting would stall every agent of that worker:
    /// refused at once. The field names the async form to await instead.
    WouldBlock {
        /// The function called.
        function: &'static str,
        /// What to await instead.
        instead: &'static str,
    },
}

impl RequestError {
    /// The error as a term, as Erlang's exit reasons of `gen_server:call`:
    /// `:TIMEOUT`, `:NOPROC`, `(:NOCONNECTION …)`, the callee's exit
    /// reason, or a string for the rest.
    pub fn reason(&self) -> Term {
        match self {
            RequestError::Timeout(_) => Term::keyword("timeout"),
            RequestError::NoProc { .. } => Term::keyword("noproc"),
            RequestError::CallingSelf { .. } => Term::keyword("calling-self"),
            RequestError::NoConnection { reason, .. } | RequestError::Exited { reason, .. } => {
                reason.clone()
            }
            other => Term::Str(other.to_string()),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Timeout(t) => write!(f, "no reply within {t:?}"),
            RequestError::NoProc { callee } => write!(f, "{callee} does not exist (noproc)"),
            RequestError::NoConnection { callee, reason } => {
                write!(f, "{callee} cannot be reached: {reason}")
            }
            RequestError::Exited { callee, reason } => {
                write!(f, "{callee} exited during the request: {reason}")
            }
            RequestError::Monitor(e) => write!(f, "cannot monitor the callee: {e}"),
            RequestError::Send(e) => write!(f, "cannot send the request: {e}"),
            RequestError::Spawn(e) => write!(f, "cannot start the request's proxy: {e}"),
            RequestError::CallingSelf { callee } => {
                write!(f, "{callee} is the caller itself (calling-self)")
            }
            RequestError::WouldBlock { function, instead } => {
                f.write_str(&agent::blocking_refused(function, instead))
            }
        }
    }
}

impl Error for RequestError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RequestError::Monitor(e) => Some(e),
            RequestError::Send(e) => Some(e),
            RequestError::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

/// Sends `request` to `server` and waits at most `timeout` for the reply
/// (see the module doc). Call from a thread agent (or `main`); in an async
/// agent await [`request_async`] instead.
///
/// # Errors
/// [`RequestError`]: a timeout, a dead or unreachable callee, one that
/// exited during the call, a request that cannot be sent, the caller
/// itself as callee, a call from an async agent
/// ([`RequestError::WouldBlock`]).
pub fn request(
    server: impl Into<Target>,
    request: impl Into<Term>,
    timeout: Duration,
) -> Result<Term, RequestError> {
    if let Some(e) = would_block("server::request", "server::request_async") {
        return Err(e);
    }
    let call = Call::start(server.into(), request.into(), timeout)?;
    let woken = call.waiter.wait(timeout);
    call.finish(woken, timeout)
}

/// [`request`] for async agents: the same call, awaited.
///
/// # Errors
/// As for [`request`].
pub async fn request_async(
    server: impl Into<Target>,
    request: impl Into<Term>,
    timeout: Duration,
) -> Result<Term, RequestError> {
    let call = Call::start(server.into(), request.into(), timeout)?;
    let woken = call.waiter.wait_async(timeout).await;
    call.finish(woken, timeout)
}

/// Sends `message` to `server` as a cast, `(:CAST message)`: no reply.
///
/// # Errors
/// As for [`crate::agent::send`].
pub fn cast(server: impl Into<Target>, message: impl Into<Term>) -> Result<(), SendError> {
    agent::send(
        Term::list(vec![Term::keyword("cast"), message.into()]),
        server,
    )
}

/// Answers a request: sends `(:REPLY tag reply)` to the `from` of a
/// request `(:CALL from request)`, where `from` is `(address tag)`.
/// Returns `false` if `from` is not of that shape. As any send, a reply to
/// a caller that gave up is dropped.
pub fn reply(from: &Term, reply: impl Into<Term>) -> bool {
    match from.as_list() {
        Some([address, tag]) => {
            let message = Term::list(vec![Term::keyword("reply"), tag.clone(), reply.into()]);
            agent::send(message, address).is_ok()
        }
        _ => false,
    }
}

/// The [`RequestError::WouldBlock`] of blocking `function` when called in
/// an async agent (`instead`: the async form to await); `None` elsewhere.
pub(crate) fn would_block(function: &'static str, instead: &'static str) -> Option<RequestError> {
    agent::on_async_worker().then_some(RequestError::WouldBlock { function, instead })
}

/// What one agent hands to another that waits for it (a request's proxy
/// to its caller, a starting supervisor to its starter): see [`handoff`].
struct Shared<T> {
    /// The waiter stopped waiting: it is sent nothing.
    abandoned: bool,
    /// The giver has given (and is done): nothing to cancel.
    answered: bool,
    result: Option<T>,
}

/// The wake-up message a giver sends its waiter: the hand-off's token.
struct Token(u64);

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn lock<T>(shared: &Mutex<Shared<T>>) -> MutexGuard<'_, Shared<T>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A one-shot hand-off of a result to the calling agent, which waits for
/// it: the result goes through a slot both share, and the waiter is woken
/// by one local message (labelled `label`, on the lane exit notifications
/// use, so a full mailbox cannot lose it) that it removes itself, also
/// when its timeout raced with the result. A result given after the
/// waiter stopped waiting is dropped.
pub(crate) fn handoff<T>(label: &'static str) -> (Waiter<T>, Giver<T>) {
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::new(Mutex::new(Shared {
        abandoned: false,
        answered: false,
        result: None,
    }));
    let giver = Giver {
        waiter: Agent::current(),
        label,
        token,
        shared: Arc::clone(&shared),
    };
    (Waiter { token, shared }, giver)
}

/// The giving side of a [`handoff`].
pub(crate) struct Giver<T> {
    waiter: Agent,
    label: &'static str,
    token: u64,
    shared: Arc<Mutex<Shared<T>>>,
}

impl<T> Giver<T> {
    /// Hands `result` to the waiter and wakes it, unless it has stopped
    /// waiting.
    pub(crate) fn give(self, result: T) {
        let mut shared = lock(&self.shared);
        shared.answered = true;
        if !shared.abandoned {
            shared.result = Some(result);
            // Sent under the lock: a waiter that sees the result also
            // finds this message in its mailbox (a local send is queued
            // before it returns).
            self.waiter
                .notify(Term::local_labeled(self.label, Token(self.token)));
        }
    }
}

/// The waiting side of a [`handoff`] (held by the agent that made it).
pub(crate) struct Waiter<T> {
    token: u64,
    shared: Arc<Mutex<Shared<T>>>,
}

impl<T> Waiter<T> {
    fn is_token(&self) -> impl FnMut(&Term) -> bool + Send + Unpin + 'static {
        let token = self.token;
        move |m| m.downcast_local::<Token>().is_some_and(|t| t.0 == token)
    }

    /// Waits (blocking) at most `timeout` for the wake-up; `true` if it came.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        agent::receive_matching(self.is_token(), Some(timeout)).is_ok()
    }

    /// [`Waiter::wait`] for async agents.
    pub(crate) async fn wait_async(&self, timeout: Duration) -> bool {
        async_agent::receive_matching(self.is_token(), Some(timeout))
            .await
            .is_ok()
    }

    /// Stops waiting; the result if it came. `woken`: whether [`wait`]
    /// took the wake-up (if not and the result came, its wake-up raced
    /// with the timeout and is taken out here, so it never lands).
    ///
    /// [`wait`]: Waiter::wait
    pub(crate) fn take(&self, woken: bool) -> Option<T> {
        let result = {
            let mut shared = lock(&self.shared);
            shared.abandoned = true;
            shared.result.take()
        };
        if result.is_some() && !woken {
            // A poll: never blocks (also allowed in an async agent).
            let _ = agent::receive_matching(self.is_token(), Some(Duration::ZERO));
        }
        result
    }

    /// Stops waiting; `true` if the giver has given already (it is done).
    pub(crate) fn abandon(&self) -> bool {
        let mut shared = lock(&self.shared);
        shared.abandoned = true;
        shared.answered
    }
}

/// One request in flight, on the caller's side. Dropping it (also when the
/// caller is killed while waiting) stops the proxy.
struct Call {
    waiter: Waiter<Result<Term, RequestError>>,
    proxy: Agent,
}

impl Call {
    fn start(server: Target, request: Term, timeout: Duration) -> Result<Call, RequestError> {
        let caller = Agent::current();
        let callee = match &server {
            Target::Agent(a) => a.to_term(),
            Target::Term(t) => t.clone(),
        };
        // Resolved once: the watch, the request and the proxy's end all
        // concern this agent (a name is not looked up again).
        let server = match server.resolve() {
            Ok(Resolved::Local(a)) if a == caller => {
                return Err(RequestError::CallingSelf { callee })
            }
            Ok(Resolved::Local(a)) => Target::Agent(a),
            Ok(Resolved::Remote(_, remote)) => Target::Term(remote.to_term()),
            Ok(Resolved::Dead) | Err(_) => return Err(RequestError::NoProc { callee }),
        };
        let (waiter, giver) = handoff("request-token");
        let token = waiter.token;
        let body = async move {
            giver.give(proxy(server, callee, request, token, timeout + PROXY_GRACE).await);
        };
        let proxy = async_agent::spawn(body).map_err(RequestError::Spawn)?;
        Ok(Call { waiter, proxy })
    }

    fn finish(&self, woken: bool, timeout: Duration) -> Result<Term, RequestError> {
        self.waiter
            .take(woken)
            .unwrap_or(Err(RequestError::Timeout(timeout)))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A proxy that has its answer is ending on its own: only one still
        // waiting is stopped. It only watches the callee (one way), so its
        // end does nothing to the callee.
        if !self.waiter.abandon() {
            self.proxy.kill(Term::keyword("cancelled"));
        }
    }
}

/// The proxy's body: watch, send, wait for the reply or the notice. Runs
/// as an async agent, so a call costs no thread; `server` is resolved
/// already (see [`Call::start`]).
async fn proxy(
    server: Target,
    callee: Term,
    request: Term,
    token: u64,
    wait: Duration,
) -> Result<Term, RequestError> {
    if let Err(e) = agent::watch(&server) {
        return Err(match e {
            LinkError::Target(_) => RequestError::NoProc { callee },
            LinkError::Remote(e) => RequestError::NoConnection {
                callee,
                reason: Term::Str(e.to_string()),
            },
            e => RequestError::Monitor(e),
        });
    }
    let me = Agent::current();
    let tag = Term::list(vec![
        Term::keyword("ref"),
        Term::Int(i64::from(std::process::id())),
        Term::Int(i64::try_from(token).unwrap_or(i64::MAX)),
    ]);
    let message = Term::list(vec![
        Term::keyword("call"),
        Term::list(vec![me.to_term(), tag.clone()]),
        request,
    ]);
    // The watch ends with the proxy (its exit protocol drops it): nothing
    // to undo here.
    match agent::send(message, &server) {
        Err(e) => Err(RequestError::Send(e)),
        Ok(()) => {
            let answer = async_agent::receive_matching(
                move |m| is_reply(m, &tag) || Outcome::is_notification(m),
                Some(wait),
            )
            .await;
            match answer {
                Err(_) => Err(RequestError::Timeout(wait)),
                Ok(m) => match (m.as_list(), notice_reason(&m)) {
                    (_, Some(reason)) => Err(notice_error(callee, reason)),
                    (Some([_, _, reply]), None) => Ok(reply.clone()),
                    _ => Err(RequestError::Timeout(wait)),
                },
            }
        }
    }
}

fn is_reply(message: &Term, tag: &Term) -> bool {
    matches!(message.as_list(), Some([kind, t, _]) if kind.is_keyword("REPLY") && t == tag)
}

/// The reason of an exit notice `(agent :EXIT . reason)` or `(agent :OK .
/// values)`. The proxy monitors one agent only, so any notice is its.
fn notice_reason(message: &Term) -> Option<Term> {
    Outcome::from_notification(message).map(|(_, outcome)| outcome.link_reason())
}

fn notice_error(callee: Term, reason: Term) -> RequestError {
    if reason.is_keyword("NOPROC") {
        return RequestError::NoProc { callee };
    }
    if matches!(reason.as_list(), Some([kind, ..]) if kind.is_keyword("NOCONNECTION")) {
        return RequestError::NoConnection { callee, reason };
    }
    RequestError::Exited { callee, reason }
}

type CallHandler<S> = Box<dyn FnMut(S, Term) -> (Term, S) + Send>;
type MessageHandler<S> = Box<dyn FnMut(S, Term) -> S + Send>;

/// A server: a state and the handlers of the wire shape above. Build with
/// [`Server::new`] and the `on_*` methods; start with [`Server::spawn`] or
/// [`Server::spawn_async`] (or run its loop yourself with
/// [`Server::handle`]).
///
/// Defaults: a call is answered `(:ERROR :UNKNOWN-REQUEST request)`; casts
/// and info are ignored.
pub struct Server<S> {
    state: Option<S>,
    call: CallHandler<S>,
    cast: MessageHandler<S>,
    info: MessageHandler<S>,
}

impl<S> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Server<S> {
    /// A server holding `state`, with the default handlers.
    pub fn new(state: S) -> Server<S> {
        Server {
            state: Some(state),
            call: Box::new(|state, request| {
                let reply = Term::list(vec![
                    Term::keyword("error"),
                    Term::keyword("unknown-request"),
                    request,
                ]);
                (reply, state)
            }),
            cast: Box::new(|state, _| state),
            info: Box::new(|state, _| state),
        }
    }

    /// Sets the call handler: `(state, request) -> (reply, state)`.
    #[must_use]
    pub fn on_call(mut self, f: impl FnMut(S, Term) -> (Term, S) + Send + 'static) -> Server<S> {
        self.call = Box::new(f);
        self
    }

    /// Sets the cast handler: `(state, message) -> state`.
    #[must_use]
    pub fn on_cast(mut self, f: impl FnMut(S, Term) -> S + Send + 'static) -> Server<S> {
        self.cast = Box::new(f);
        self
    }

    /// Sets the info handler (every other message): `(state, message) ->
    /// state`.
    #[must_use]
    pub fn on_info(mut self, f: impl FnMut(S, Term) -> S + Send + 'static) -> Server<S> {
        self.info = Box::new(f);
        self
    }

    /// Handles one received message: a request (answered), a cast or info.
    pub fn handle(&mut self, message: Term) {
        let Some(state) = self.state.take() else {
            return;
        };
        let state = match classify(message) {
            Incoming::Call(from, request) => {
                let (answer, state) = (self.call)(state, request);
                reply(&from, answer);
                state
            }
            Incoming::Cast(message) => (self.cast)(state, message),
            Incoming::Info(message) => (self.info)(state, message),
        };
        self.state = Some(state);
    }

    /// Serves forever on the calling thread agent (until it is killed or a
    /// handler exits).
    pub fn run(mut self) {
        loop {
            let message = agent::receive();
            self.handle(message);
        }
    }

    /// Serves forever in the calling async agent.
    pub async fn run_async(mut self) {
        loop {
            let message = async_agent::receive().await;
            self.handle(message);
        }
    }

    /// Starts the server as a thread agent.
    ///
    /// # Errors
    /// As for [`crate::agent::spawn_with`].
    pub fn spawn(self, options: &SpawnOptions) -> Result<Agent, SpawnError> {
        agent::spawn_with(options, move || self.run())
    }

    /// Starts the server as an async agent.
    ///
    /// # Errors
    /// As for [`crate::agent::async_agent::spawn_with`].
    pub fn spawn_async(self, options: &SpawnOptions) -> Result<Agent, SpawnError> {
        async_agent::spawn_with(options, self.run_async())
    }
}

enum Incoming {
    Call(Term, Term),
    Cast(Term),
    Info(Term),
}

fn classify(message: Term) -> Incoming {
    match message {
        Term::List(mut items) if items.len() == 3 && items[0].is_keyword("CALL") => {
            let request = items.pop().unwrap_or(Term::Nil);
            let from = items.pop().unwrap_or(Term::Nil);
            Incoming::Call(from, request)
        }
        Term::List(mut items) if items.len() == 2 && items[0].is_keyword("CAST") => {
            Incoming::Cast(items.pop().unwrap_or(Term::Nil))
        }
        other => Incoming::Info(other),
    }
}
