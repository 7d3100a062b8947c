//! Calls: a term `(function argument…)` naming a registered function (SPEC
//! section 5). Remote spawn only ever runs registered functions, so the
//! function registry is the whole of what another node may ask us to run.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::agent::{self, Agent, IntoReason, SpawnError, SpawnOptions};
use crate::term::{Symbol, Term};

/// A registered function: takes evaluated arguments, returns a value or an
/// error that becomes the calling agent's exit reason.
pub type Function = Arc<dyn Fn(&[Term]) -> Result<Term, CallError> + Send + Sync>;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallError {
    /// No function is registered under this name.
    UnknownFunction(String),
    /// The term is not a call `(symbol argument…)`.
    NotACall(String),
    /// The arguments do not fit the function.
    BadArguments {
        /// The function's name.
        function: String,
        /// What is wrong, e.g. "expected a vector, got a string".
        message: String,
    },
    /// The function ended with this exit reason (passed on unchanged, so
    /// `parallel-map` exits with its worker's reason).
    Exit(Term),
    /// A receive inside the function timed out (exit reason `:TIMEOUT`).
    Timeout,
    /// The function could not do its work (a node is unreachable, a name
    /// is taken, …); the message says why. Its exit reason is the message.
    Failed(String),
}

impl CallError {
    /// A [`CallError::BadArguments`].
    pub fn bad_arguments(function: &str, message: impl Into<String>) -> CallError {
        CallError::BadArguments {
            function: function.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownFunction(n) => write!(f, "unknown function {n}"),
            CallError::NotACall(t) => write!(
                f,
                "{t} is not a call (expected a list whose first element names a registered function)"
            ),
            CallError::BadArguments { function, message } => {
                write!(f, "bad arguments to {function}: {message}")
            }
            CallError::Exit(reason) => write!(f, "exited with reason {reason}"),
            CallError::Timeout => f.write_str("timed out waiting for a message"),
            CallError::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CallError {}

impl From<crate::agent::Timeout> for CallError {
    fn from(_: crate::agent::Timeout) -> CallError {
        CallError::Timeout
    }
}

impl IntoReason for CallError {
    /// An `Exit` passes its reason on; other errors become their message.
    fn into_reason(self) -> Term {
        match self {
            CallError::Exit(reason) => reason,
            CallError::Timeout => Term::keyword("timeout"),
            other => Term::Str(other.to_string()),
        }
    }
}

/// A registered async function: takes its arguments, returns the future of
/// an async agent's body (see [`register_async_function`]).
pub type AsyncFunction = Arc<
    dyn Fn(Vec<Term>) -> Pin<Box<dyn Future<Output = Result<Term, CallError>> + Send>>
        + Send
        + Sync,
>;

/// What a name is registered as.
#[derive(Clone)]
enum Registered {
    Thread(Function),
    Async(AsyncFunction),
}

static FUNCTIONS: RwLock<Option<HashMap<String, Registered>>> = RwLock::new(None);

/// The registry key of a function name: `NAME` or `PACKAGE:NAME`, upper-case.
fn key(name: &str) -> String {
    name.to_uppercase()
}

/// Registers `function` under `name` (`"parallel-map"`,
/// `"erlangen.examples:parallel-map"`; case-insensitive), replacing any
/// earlier one.
pub fn register_function<F>(name: &str, function: F)
where
    F: Fn(&[Term]) -> Result<Term, CallError> + Send + Sync + 'static,
{
    register(name, Registered::Thread(Arc::new(function)));
}

fn register(name: &str, what: Registered) {
    FUNCTIONS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key(name), what);
}

/// Registers an async function under `name`: spawning a call of it
/// (`(spawn '(name …))`, from the REPL, from Rust with [`spawn_call`] or
/// from another node) starts an *async* agent whose body is the future
/// `function(arguments)` returns. Called in place ([`apply`], `funcall`) it
/// runs to completion on the calling thread ([`crate::async_agent::block_on`]);
/// inside an async agent that would block its worker, so there the call
/// fails with [`CallError::Failed`] instead: spawn it.
///
/// ```
/// use erlangen::{async_agent, call, Term};
/// call::register_async_function("double-later", |args: Vec<Term>| async move {
///     async_agent::sleep(std::time::Duration::from_millis(1)).await;
///     Ok(Term::from(args.first().and_then(Term::as_int).unwrap_or(0) * 2))
/// });
/// let result = call::apply(&erlangen::term::read("(double-later 21)").unwrap());
/// assert_eq!(result, Ok(Term::from(42)));
/// ```
pub fn register_async_function<F, Fut>(name: &str, function: F)
where
    F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Term, CallError>> + Send + 'static,
{
    register(
        name,
        Registered::Async(Arc::new(move |args| Box::pin(function(args)))),
    );
}

/// The names of all registered functions, sorted.
pub fn functions() -> Vec<String> {
    let mut names: Vec<String> = FUNCTIONS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The function registered under a symbol's name.
///
/// # Errors
/// [`CallError::UnknownFunction`].
pub fn lookup(symbol: &Symbol) -> Result<Function, CallError> {
    match registered(symbol)? {
        Registered::Thread(f) => Ok(f),
        // Called in place, an async function runs to completion here;
        // except on a scheduler worker (inside an async agent), where
        // blocking could deadlock the scheduler: that is an error.
        Registered::Async(f) => Ok(Arc::new(move |args: &[Term]| {
            if crate::agent::scheduler::on_worker() {
                return Err(CallError::Failed(
                    "async function called in place inside an async agent; spawn it".into(),
                ));
            }
            crate::agent::async_agent::block_on(f(args.to_vec()))
        })),
    }
}

fn registered(symbol: &Symbol) -> Result<Registered, CallError> {
    let name = symbol.full_name();
    FUNCTIONS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key(&name)).cloned())
        .ok_or(CallError::UnknownFunction(name))
}

/// `true` if `symbol` names an async function (so spawning a call of it
/// starts an async agent).
pub fn is_async(symbol: &Symbol) -> bool {
    matches!(registered(symbol), Ok(Registered::Async(_)))
}

/// A call ready to be spawned: the body of a thread agent or of an async
/// agent, depending on how its function was registered.
pub enum Prepared {
    /// A function registered with [`register_function`], and its arguments.
    Thread(Function, Vec<Term>),
    /// A function registered with [`register_async_function`], and its
    /// arguments.
    Async(AsyncFunction, Vec<Term>),
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepared::Thread(_, args) => write!(f, "Prepared::Thread({args:?})"),
            Prepared::Async(_, args) => write!(f, "Prepared::Async({args:?})"),
        }
    }
}

impl Prepared {
    /// Starts the agent: a thread agent or an async one.
    ///
    /// # Errors
    /// [`SpawnError`] as for [`agent::spawn_with`].
    pub fn spawn(self, options: &SpawnOptions) -> Result<Agent, SpawnError> {
        match self {
            Prepared::Thread(function, args) => agent::spawn_with(options, move || function(&args)),
            Prepared::Async(function, args) => {
                crate::agent::async_agent::spawn_with(options, function(args))
            }
        }
    }
}

/// Splits a call term into what [`Prepared::spawn`] starts.
///
/// # Errors
/// [`CallError::NotACall`] or [`CallError::UnknownFunction`].
pub fn prepare_spawn(call: &Term) -> Result<Prepared, CallError> {
    let (symbol, args) = match call {
        Term::List(items) => match items.split_first() {
            Some((Term::Symbol(s), args)) => (s, args.to_vec()),
            _ => return Err(CallError::NotACall(call.to_string())),
        },
        Term::Symbol(s) => (s, Vec::new()),
        _ => return Err(CallError::NotACall(call.to_string())),
    };
    Ok(match registered(symbol)? {
        Registered::Thread(f) => Prepared::Thread(f, args),
        Registered::Async(f) => Prepared::Async(f, args),
    })
}

/// A function with the name it prints as (`#<FUNCTION NAME>`), for
/// [`Term::local`] values that [`function_of`] accepts.
#[derive(Clone)]
pub struct NamedFunction {
    /// Upper-case name, `NAME` or `PACKAGE:NAME` (`LAMBDA` for a lambda).
    pub name: String,
    /// The function.
    pub function: Function,
}

impl fmt::Debug for NamedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#<FUNCTION {}>", self.name)
    }
}

/// `n` followed by `noun`, in the plural unless `n` is 1: "1 argument",
/// "2 arguments".
pub fn count_of(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A function designated by a term: a symbol naming a registered function,
/// or a [`Function`] or [`NamedFunction`] wrapped as a local term
/// ([`Term::local`]).
///
/// # Errors
/// [`CallError::UnknownFunction`], or `BadArguments` for any other term.
pub fn function_of(term: &Term) -> Result<Function, CallError> {
    match term {
        Term::Symbol(s) => lookup(s),
        Term::Local(_) => term
            .downcast_local::<Function>()
            .cloned()
            .or_else(|| {
                term.downcast_local::<NamedFunction>()
                    .map(|n| Arc::clone(&n.function))
            })
            .ok_or_else(|| {
                CallError::bad_arguments("funcall", format!("{term} is not a function"))
            }),
        other => Err(CallError::bad_arguments(
            "funcall",
            format!("{other} does not name a function"),
        )),
    }
}

/// Wraps a Rust closure as a term that [`function_of`] accepts, so local
/// code can pass closures where a function name is expected. It prints as
/// `#<FUNCTION LAMBDA>`.
pub fn function_term<F>(f: F) -> Term
where
    F: Fn(&[Term]) -> Result<Term, CallError> + Send + Sync + 'static,
{
    named_function_term("lambda", f)
}

/// As [`function_term`], printing as `#<FUNCTION NAME>`.
pub fn named_function_term<F>(name: &str, f: F) -> Term
where
    F: Fn(&[Term]) -> Result<Term, CallError> + Send + Sync + 'static,
{
    let name = name.to_uppercase();
    // Printed as the symbol it names: `PACKAGE:NAME` with the reader's
    // escapes where the name needs them.
    let symbol = match name.split_once(':') {
        Some((package, n)) => crate::term::Symbol::qualified(package, n),
        None => crate::term::Symbol::new(&name),
    };
    let label = format!("FUNCTION {}", Term::Symbol(symbol));
    Term::local_labeled(
        &label,
        NamedFunction {
            name,
            function: Arc::new(f),
        },
    )
}

/// Splits a call term into its function and arguments.
///
/// # Errors
/// [`CallError::NotACall`] or [`CallError::UnknownFunction`].
pub fn prepare(call: &Term) -> Result<(Function, Vec<Term>), CallError> {
    match call {
        Term::List(items) => match items.split_first() {
            Some((Term::Symbol(s), args)) => Ok((lookup(s)?, args.to_vec())),
            _ => Err(CallError::NotACall(call.to_string())),
        },
        Term::Symbol(s) => Ok((lookup(s)?, Vec::new())),
        _ => Err(CallError::NotACall(call.to_string())),
    }
}

/// Why [`spawn_call`] could not start an agent.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnCallError {
    /// The term is not a call of a registered function.
    Call(CallError),
    /// The agent could not be spawned.
    Spawn(SpawnError),
}

impl fmt::Display for SpawnCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnCallError::Call(e) => write!(f, "cannot spawn: {e}"),
            SpawnCallError::Spawn(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SpawnCallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnCallError::Call(e) => Some(e),
            SpawnCallError::Spawn(e) => Some(e),
        }
    }
}

/// Starts an agent running a call `(function argument…)` of a registered
/// function with `options`: an async agent if the function was registered
/// with [`register_async_function`], a thread agent otherwise. The function is looked up before anything
/// starts, so an unknown name is an error here.
///
/// # Errors
/// [`SpawnCallError::Call`] for an unknown function or a term that is not
/// a call, [`SpawnCallError::Spawn`] with the errors of
/// [`agent::spawn_with`].
pub fn spawn_call(call: &Term, options: &SpawnOptions) -> Result<Agent, SpawnCallError> {
    prepare_spawn(call)
        .map_err(SpawnCallError::Call)?
        .spawn(options)
        .map_err(SpawnCallError::Spawn)
}

/// Runs a call now, in the calling thread.
///
/// # Errors
/// Whatever [`prepare`] or the function returns.
pub fn apply(call: &Term) -> Result<Term, CallError> {
    let (function, args) = prepare(call)?;
    function(&args)
}

/// Splits arguments into positional ones and `&key` pairs (`:level 3`),
/// checking the keys against `allowed` (upper-case names without colon).
///
/// # Errors
/// `BadArguments` for an unknown key or a key without value.
pub fn keyword_args<'a>(
    function: &str,
    args: &'a [Term],
    positional: usize,
    allowed: &[&str],
) -> Result<(&'a [Term], HashMap<String, &'a Term>), CallError> {
    if args.len() < positional {
        return Err(CallError::bad_arguments(
            function,
            format!(
                "expected at least {}, got {}",
                count_of(positional, "argument"),
                args.len()
            ),
        ));
    }
    let (fixed, rest) = args.split_at(positional);
    let mut keys = HashMap::new();
    let mut it = rest.iter();
    while let Some(k) = it.next() {
        let name = match k {
            Term::Keyword(name) if allowed.contains(&name.as_str()) => name.clone(),
            other => {
                return Err(CallError::bad_arguments(
                    function,
                    format!(
                        "unexpected argument {other} (keyword arguments: {})",
                        allowed
                            .iter()
                            .map(|a| format!(":{a}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                ))
            }
        };
        let value = it.next().ok_or_else(|| {
            CallError::bad_arguments(function, format!("keyword :{name} has no value"))
        })?;
        keys.insert(name, value);
    }
    Ok((fixed, keys))
}
