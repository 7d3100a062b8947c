//! The evaluator: Common Lisp's evaluation rules, cut down to what a
//! session at the prompt needs (SPEC section 8).
//!
//! - literals, keywords, strings, vectors and agents evaluate to themselves;
//! - a symbol is a variable (lexical `let` bindings, then the session's
//!   globals); an unbound symbol that names a registered or `defun`ed
//!   function evaluates to itself, so `(parallel-map 1+ #(1 2))` works as in
//!   the walkthrough;
//! - `(quote x)` / `'x` is data;
//! - special forms: `quote function setq defvar defparameter if when unless
//!   progn let let* dotimes lambda defun and or`;
//! - any other list is a call: its arguments are evaluated, then the
//!   `defun`ed or registered function of that name is applied.
//!
//! Lambdas become [`call::Function`] values, so they can be passed to
//! `parallel-map` or spawned as agents; a lambda captures its lexical
//! bindings by value and the session's globals by reference.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::call::{self, CallError, Function};
use crate::term::{Symbol, Term};

/// Nesting limit of evaluation, so a runaway recursive `defun` ends with an
/// error instead of overflowing the stack. Counted per thread across calls
/// (a `defun` calls back into the evaluator through the registry). Agents
/// run with the default 2 MiB stack, ample for this depth.
const MAX_DEPTH: usize = 256;

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Set on the thread the REPL evaluates in: only that evaluation
    /// stops for Ctrl-C, not lambdas running in other agents.
    static REPL_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set on the thread a remote shell's session evaluates in: an exit
    /// signal to its agent (the client's Ctrl-C) ends a busy loop too.
    static STOP_WHEN_KILLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes evaluations on the calling thread end, as the agent's exit,
/// when an exit signal is waiting for its agent (see [`Nesting`]); for a
/// remote shell's session, whose agent the client kills on Ctrl-C. Ends
/// when the returned guard is dropped.
pub(crate) fn stop_when_killed() -> impl Drop {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STOP_WHEN_KILLED.with(|s| s.set(false));
        }
    }
    STOP_WHEN_KILLED.with(|s| s.set(true));
    Reset
}

/// Ctrl-C asked the REPL's evaluation to stop: checked at every step, so
/// a busy loop ends too (a blocked receive is ended by killing the agent).
pub(crate) static INTERRUPT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Marks the calling thread as the REPL's (see [`INTERRUPT`]).
pub(crate) fn mark_repl_thread() {
    REPL_THREAD.with(|r| r.set(true));
}

/// Whether the calling thread is the REPL's (an interactive evaluation
/// that Enter and Ctrl-C can stop).
pub(crate) fn on_repl_thread() -> bool {
    REPL_THREAD.with(|r| r.get())
}

/// Counts one level of nesting for as long as it lives.
struct Nesting;

impl Nesting {
    fn enter() -> Result<Nesting, EvalError> {
        let d = DEPTH.with(|d| {
            let v = d.get() + 1;
            d.set(v);
            v
        });
        let guard = Nesting;
        if d > MAX_DEPTH {
            return Err(EvalError::TooDeep);
        }
        if INTERRUPT.load(std::sync::atomic::Ordering::Relaxed) && REPL_THREAD.with(|r| r.get()) {
            return Err(EvalError::Interrupted);
        }
        if STOP_WHEN_KILLED.with(|s| s.get())
            && crate::agent::Agent::current()
                .mailbox()
                .pending_exit()
                .is_some()
        {
            // A receive that finds the exit signal unwinds as the agent's
            // exit, as a blocked receive would have.
            drop(guard);
            let _ = crate::agent::receive_matching(|_| false, Some(std::time::Duration::ZERO));
            return Err(EvalError::Interrupted);
        }
        Ok(guard)
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// An evaluation error: what went wrong, for the prompt to print.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EvalError {
    /// A symbol with no value that names no function.
    Unbound(String),
    /// A malformed special form.
    Syntax(String),
    /// A call failed.
    Call(CallError),
    /// Evaluation nested deeper than the limit.
    TooDeep,
    /// Ctrl-C stopped the evaluation.
    Interrupted,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Unbound(s) => write!(
                f,
                "unbound variable {s} (and no function of that name); to pass the symbol as data, quote it: '{s}"
            ),
            EvalError::Syntax(s) => write!(f, "{s}"),
            EvalError::Call(e) => write!(f, "{e}"),
            EvalError::TooDeep => write!(f, "evaluation nested deeper than {MAX_DEPTH} levels"),
            EvalError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for EvalError {}

impl From<CallError> for EvalError {
    fn from(e: CallError) -> EvalError {
        EvalError::Call(e)
    }
}

impl From<EvalError> for CallError {
    fn from(e: EvalError) -> CallError {
        match e {
            EvalError::Call(c) => c,
            other => CallError::Failed(other.to_string()),
        }
    }
}

/// A user function: parameters and body. Not `Clone`: held in an [`Arc`],
/// so a call never copies the body.
struct Lambda {
    params: Vec<Symbol>,
    body: Vec<Term>,
    env: Vec<(Symbol, Term)>,
}

/// Session state shared by the prompt and every lambda it made.
#[derive(Default)]
pub(crate) struct Globals {
    vars: HashMap<Symbol, Term>,
    /// Functions this session defined with `defun`, by full name: only
    /// these may be defined again, and a call of one in tail position
    /// runs in the same frame (see [`Evaluator::apply_lambda`]). Shared,
    /// so a call copies a pointer, not the body.
    defuns: HashMap<String, Arc<Lambda>>,
}

/// The special forms (their names are never calls of user functions).
fn is_special(name: &str) -> bool {
    matches!(
        name,
        "QUOTE"
            | "FUNCTION"
            | "IF"
            | "WHEN"
            | "UNLESS"
            | "PROGN"
            | "DOTIMES"
            | "AND"
            | "OR"
            | "SETQ"
            | "SETF"
            | "DEFVAR"
            | "DEFPARAMETER"
            | "LET"
            | "LET*"
            | "LAMBDA"
            | "DEFUN"
    )
}

/// What the last form of a function body comes to: a value, or a call of
/// a session function to make in the caller's frame (a tail call).
enum Tail {
    Value(Term),
    Call(String, Arc<Lambda>, Vec<Term>),
}

/// An evaluator over shared globals. Cheap to clone.
#[derive(Clone, Default)]
pub struct Evaluator {
    globals: Arc<RwLock<Globals>>,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let globals = self.globals.read().unwrap_or_else(|e| e.into_inner());
        write!(
            f,
            "Evaluator {{ {} variables, {} defuns }}",
            globals.vars.len(),
            globals.defuns.len()
        )
    }
}

/// Local bindings, innermost last.
type Env = Vec<(Symbol, Term)>;

/// A special form: the evaluator, the form's name (upper-case), its
/// unevaluated arguments and the local bindings.
type SpecialForm = fn(&Evaluator, &str, &[Term], &mut Env) -> Result<Term, EvalError>;

/// A special form whose last step may be a tail call (`if`, `when`,
/// `unless`, `progn`, `let`, `let*`): same arguments, a [`Tail`] back.
type TailForm = fn(&Evaluator, &str, &[Term], &mut Env) -> Result<Tail, EvalError>;

fn syntax(msg: impl Into<String>) -> EvalError {
    EvalError::Syntax(msg.into())
}

fn symbol_of(t: &Term, what: &str) -> Result<Symbol, EvalError> {
    match t {
        Term::Symbol(s) => Ok(s.clone()),
        other => Err(syntax(format!("{what}: expected a symbol, got {other}"))),
    }
}

/// The items of a proper list, or a syntax error naming `form`.
fn items<'a>(t: &'a Term, form: &str) -> Result<&'a [Term], EvalError> {
    t.as_list()
        .ok_or_else(|| syntax(format!("{form}: expected a list, got {t}")))
}

impl Evaluator {
    /// A fresh session.
    pub fn new() -> Evaluator {
        Evaluator::default()
    }

    /// Sets a global variable.
    pub fn set_var(&self, name: &str, value: Term) {
        self.globals
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .vars
            .insert(Symbol::new(name), value);
    }

    /// Evaluates one form at top level.
    ///
    /// # Errors
    /// [`EvalError`] for unbound variables, malformed forms and failed calls.
    pub fn eval(&self, form: &Term) -> Result<Term, EvalError> {
        self.eval_in(form, &mut Vec::new())
    }

    fn lookup(&self, s: &Symbol, env: &[(Symbol, Term)]) -> Option<Term> {
        if let Some((_, v)) = env.iter().rev().find(|(k, _)| k == s) {
            return Some(v.clone());
        }
        self.globals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .vars
            .get(s)
            .cloned()
    }

    fn names_function(&self, s: &Symbol) -> bool {
        call::lookup(s).is_ok()
    }

    fn eval_in(&self, form: &Term, env: &mut Vec<(Symbol, Term)>) -> Result<Term, EvalError> {
        let _nesting = Nesting::enter()?;
        match form {
            Term::Symbol(s) => match self.lookup(s, env) {
                Some(v) => Ok(v),
                None if self.names_function(s) => Ok(form.clone()),
                None => Err(EvalError::Unbound(s.full_name())),
            },
            Term::List(list) => self.eval_list(list, env),
            Term::Dotted(..) => Err(syntax(format!("cannot evaluate the dotted list {form}"))),
            other => Ok(other.clone()),
        }
    }

    fn eval_body(&self, body: &[Term], env: &mut Vec<(Symbol, Term)>) -> Result<Term, EvalError> {
        let mut last = Term::Nil;
        for f in body {
            last = self.eval_in(f, env)?;
        }
        Ok(last)
    }

    fn eval_list(&self, list: &[Term], env: &mut Vec<(Symbol, Term)>) -> Result<Term, EvalError> {
        let (head, args) = match list.split_first() {
            Some(x) => x,
            None => return Ok(Term::Nil),
        };
        let op = match head {
            Term::Symbol(s) => s,
            other => return Err(syntax(format!("{other} is not a function name"))),
        };
        // Special forms are bare symbols; `pkg:if` is an ordinary call.
        let name = if op.package.is_none() {
            op.name.as_str()
        } else {
            ""
        };
        if let Some(form) = Self::tail_form(name) {
            return match form(self, name, args, env)? {
                Tail::Value(v) => Ok(v),
                Tail::Call(name, lambda, values) => self.apply_lambda(&name, &lambda, &values),
            };
        }
        let form: Option<SpecialForm> = match name {
            "QUOTE" | "FUNCTION" => Some(Self::quote),
            "DOTIMES" => Some(Self::dotimes),
            "AND" => Some(Self::and),
            "OR" => Some(Self::or),
            "SETQ" | "SETF" => Some(Self::setq),
            "DEFVAR" | "DEFPARAMETER" => Some(Self::defvar),
            "LAMBDA" => Some(Self::lambda),
            "DEFUN" => Some(Self::defun),
            _ => None,
        };
        match form {
            Some(form) => form(self, name, args, env),
            None => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.eval_in(a, env)?);
                }
                self.apply_symbol(op, &values)
            }
        }
    }

    /// `(quote x)`, `(function x)`: `x` unevaluated.
    fn quote(&self, name: &str, args: &[Term], _: &mut Env) -> Result<Term, EvalError> {
        match args {
            [x] => Ok(x.clone()),
            _ => Err(syntax(format!(
                "{}: expected one argument",
                name.to_lowercase()
            ))),
        }
    }

    /// `(if test then [else])`.
    fn if_form(&self, _: &str, args: &[Term], env: &mut Env) -> Result<Tail, EvalError> {
        match args {
            [c, then] | [c, then, _] => {
                if self.eval_in(c, env)?.is_true() {
                    self.eval_tail(then, env)
                } else if let [_, _, otherwise] = args {
                    self.eval_tail(otherwise, env)
                } else {
                    Ok(Tail::Value(Term::Nil))
                }
            }
            _ => Err(syntax("if: expected (if test then [else])")),
        }
    }

    /// `(when test body…)`, `(unless test body…)`.
    fn when_unless(&self, name: &str, args: &[Term], env: &mut Env) -> Result<Tail, EvalError> {
        let (c, body) = args
            .split_first()
            .ok_or_else(|| syntax(format!("{}: expected a test", name.to_lowercase())))?;
        let truth = self.eval_in(c, env)?.is_true();
        if truth == (name == "WHEN") {
            self.body_tail(body, env)
        } else {
            Ok(Tail::Value(Term::Nil))
        }
    }

    /// `(dotimes (var count [result]) body…)`.
    fn dotimes(&self, _: &str, args: &[Term], env: &mut Env) -> Result<Term, EvalError> {
        let (spec, body) = args
            .split_first()
            .ok_or_else(|| syntax("dotimes: expected (dotimes (var count) body…)"))?;
        let spec = items(spec, "dotimes")?;
        let (var, count, result) = match spec {
            [v, c] => (symbol_of(v, "dotimes")?, c, None),
            [v, c, r] => (symbol_of(v, "dotimes")?, c, Some(r)),
            _ => return Err(syntax("dotimes: expected (var count [result])")),
        };
        let n = match self.eval_in(count, env)? {
            Term::Int(n) => n,
            other => {
                return Err(syntax(format!(
                    "dotimes: count must be an integer, got {other}"
                )))
            }
        };
        let mark = env.len();
        env.push((var, Term::Int(0)));
        let mut outcome = Ok(());
        for i in 0..n.max(0) {
            env[mark].1 = Term::Int(i);
            if let Err(e) = self.eval_body(body, env) {
                outcome = Err(e);
                break;
            }
        }
        let value = match (outcome, result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => {
                env[mark].1 = Term::Int(n.max(0));
                self.eval_in(r, env)
            }
            (Ok(()), None) => Ok(Term::Nil),
        };
        env.truncate(mark);
        value
    }

    /// `(and form…)`: the first false value, or the last.
    fn and(&self, _: &str, args: &[Term], env: &mut Env) -> Result<Term, EvalError> {
        let mut last = Term::T;
        for a in args {
            last = self.eval_in(a, env)?;
            if !last.is_true() {
                return Ok(Term::Nil);
            }
        }
        Ok(last)
    }

    /// `(or form…)`: the first true value.
    fn or(&self, _: &str, args: &[Term], env: &mut Env) -> Result<Term, EvalError> {
        for a in args {
            let v = self.eval_in(a, env)?;
            if v.is_true() {
                return Ok(v);
            }
        }
        Ok(Term::Nil)
    }

    /// `(setq var value …)`: a local binding if there is one, else a
    /// session variable.
    fn setq(&self, _: &str, args: &[Term], env: &mut Env) -> Result<Term, EvalError> {
        if args.len() % 2 != 0 {
            return Err(syntax("setq: expected (setq var value …)"));
        }
        let mut last = Term::Nil;
        for pair in args.chunks(2) {
            let var = symbol_of(&pair[0], "setq")?;
            last = self.eval_in(&pair[1], env)?;
            if let Some(slot) = env.iter_mut().rev().find(|(k, _)| *k == var) {
                slot.1 = last.clone();
            } else {
                self.globals
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .vars
                    .insert(var, last.clone());
            }
        }
        Ok(last)
    }

    /// `(defvar var [value])` sets only an unbound variable;
    /// `(defparameter var value)` always.
    fn defvar(&self, name: &str, args: &[Term], env: &mut Env) -> Result<Term, EvalError> {
        let (var, rest) = args
            .split_first()
            .ok_or_else(|| syntax(format!("{}: expected a name", name.to_lowercase())))?;
        let var = symbol_of(var, "defvar")?;
        let bound = self.lookup(&var, &[]).is_some();
        if let Some(init) = rest.first() {
            if name == "DEFPARAMETER" || !bound {
                let v = self.eval_in(init, env)?;
                self.globals
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .vars
                    .insert(var.clone(), v);
            }
        }
        Ok(Term::Symbol(var))
    }

    /// `(let ((var value) …) body…)`; `let*` binds one after the other.
    fn let_form(&self, name: &str, args: &[Term], env: &mut Env) -> Result<Tail, EvalError> {
        let (bindings, body) = args
            .split_first()
            .ok_or_else(|| syntax("let: expected (let ((var value) …) body…)"))?;
        let mark = env.len();
        let result = self
            .bind_let(name == "LET*", bindings, env)
            .and_then(|()| self.body_tail(body, env));
        env.truncate(mark);
        result
    }

    /// Pushes the bindings of a `let` (in parallel) or `let*` (in turn) onto
    /// `env`; the caller truncates `env` back afterwards.
    fn bind_let(&self, sequential: bool, bindings: &Term, env: &mut Env) -> Result<(), EvalError> {
        let mut new = Vec::new();
        for b in items(bindings, "let")? {
            let (var, value) = match b {
                Term::Symbol(s) => (s.clone(), Term::Nil),
                Term::List(pair) if pair.len() <= 2 && !pair.is_empty() => {
                    let var = symbol_of(&pair[0], "let")?;
                    let value = match pair.get(1) {
                        Some(v) => self.eval_in(v, env)?,
                        None => Term::Nil,
                    };
                    (var, value)
                }
                other => return Err(syntax(format!("let: bad binding {other}"))),
            };
            if sequential {
                env.push((var, value));
            } else {
                new.push((var, value));
            }
        }
        env.extend(new);
        Ok(())
    }

    /// `(lambda (params…) body…)`: a function closing over the bindings.
    fn lambda(&self, _: &str, args: &[Term], env: &mut Env) -> Result<Term, EvalError> {
        let (params, body) = args
            .split_first()
            .ok_or_else(|| syntax("lambda: expected (lambda (params…) body…)"))?;
        let lambda = Lambda {
            params: self.params(params)?,
            body: body.to_vec(),
            env: env.clone(),
        };
        Ok(Term::local_labeled(
            "FUNCTION LAMBDA",
            self.function(lambda),
        ))
    }

    /// `(defun name (params…) body…)`: a registered function like any
    /// other, so it can be spawned, passed to parallel-map, and called by
    /// other nodes.
    fn defun(&self, _: &str, args: &[Term], _: &mut Env) -> Result<Term, EvalError> {
        let [fname, params, body @ ..] = args else {
            return Err(syntax("defun: expected (defun name (params…) body…)"));
        };
        let fname = symbol_of(fname, "defun")?;
        let lambda = Arc::new(Lambda {
            params: self.params(params)?,
            body: body.to_vec(),
            env: Vec::new(),
        });
        let label = fname.full_name();
        {
            let mut globals = self.globals.write().unwrap_or_else(|e| e.into_inner());
            // Built-ins and the program's functions are what other nodes
            // call: a silent redefinition would change what they run.
            if !globals.defuns.contains_key(&label) && call::lookup(&fname).is_ok() {
                return Err(syntax(format!(
                    "defun: {label} is a built-in or registered function (other nodes may call it) and cannot be redefined; choose another name"
                )));
            }
            globals.defuns.insert(label.clone(), Arc::clone(&lambda));
        }
        let me = self.clone();
        call::register_function(&label.clone(), move |args: &[Term]| {
            Ok(me.apply_lambda(&label, &lambda, args)?)
        });
        Ok(Term::Symbol(fname))
    }

    fn params(&self, params: &Term) -> Result<Vec<Symbol>, EvalError> {
        items(params, "parameter list")?
            .iter()
            .map(|p| symbol_of(p, "parameter list"))
            .collect()
    }

    fn apply_symbol(&self, op: &Symbol, args: &[Term]) -> Result<Term, EvalError> {
        Ok(call::lookup(op)?(args)?)
    }

    /// Calls a user function. A call of a session function (`defun`) in
    /// tail position (the last form of the body, through `if`, `when`,
    /// `unless`, `progn`, `let`) reuses this frame instead of nesting, so a
    /// server written as a recursive loop, `(defun serve () (receive …)
    /// (serve))`, runs forever instead of hitting the nesting limit.
    fn apply_lambda(
        &self,
        name: &str,
        lambda: &Arc<Lambda>,
        args: &[Term],
    ) -> Result<Term, EvalError> {
        let mut name = name.to_owned();
        let mut lambda = Arc::clone(lambda);
        let mut args = args.to_vec();
        loop {
            // Each iteration is a fresh call: checked for Ctrl-C, so a
            // `(defun spin () (spin))` loop can still be interrupted.
            let _nesting = Nesting::enter()?;
            if args.len() != lambda.params.len() {
                return Err(EvalError::Call(CallError::bad_arguments(
                    &name,
                    format!(
                        "expected {}, got {}",
                        call::count_of(lambda.params.len(), "argument"),
                        args.len()
                    ),
                )));
            }
            let mut env = lambda.env.clone();
            env.extend(lambda.params.iter().cloned().zip(args.drain(..)));
            match self.body_tail(&lambda.body, &mut env)? {
                Tail::Value(v) => return Ok(v),
                Tail::Call(next_name, next, next_args) => {
                    name = next_name;
                    lambda = next;
                    args = next_args;
                }
            }
        }
    }

    /// Evaluates `form` in tail position: a call of a session function
    /// comes back as [`Tail::Call`] (arguments evaluated) for the caller's
    /// loop to make; anything else is evaluated as usual.
    fn eval_tail(&self, form: &Term, env: &mut Env) -> Result<Tail, EvalError> {
        if let Term::List(list) = form {
            if let Some((Term::Symbol(op), args)) = list.split_first() {
                if op.package.is_none() {
                    if let Some(form) = Self::tail_form(&op.name) {
                        let _nesting = Nesting::enter()?;
                        return form(self, &op.name, args, env);
                    }
                }
                if let Some((name, lambda)) = self.session_function(op, env) {
                    let mut values = Vec::with_capacity(args.len());
                    for a in args {
                        values.push(self.eval_in(a, env)?);
                    }
                    return Ok(Tail::Call(name, lambda, values));
                }
            }
        }
        self.eval_in(form, env).map(Tail::Value)
    }

    /// The special forms that pass tail position on to a sub-form.
    fn tail_form(name: &str) -> Option<TailForm> {
        match name {
            "IF" => Some(Self::if_form),
            "WHEN" | "UNLESS" => Some(Self::when_unless),
            "PROGN" => Some(|ev, _, body, env| ev.body_tail(body, env)),
            "LET" | "LET*" => Some(Self::let_form),
            _ => None,
        }
    }

    /// The session function (`defun`) `op` calls, with its full name:
    /// none for a special form or a name bound locally (a local function
    /// value is called as usual).
    fn session_function(&self, op: &Symbol, env: &Env) -> Option<(String, Arc<Lambda>)> {
        if (op.package.is_none() && is_special(&op.name)) || env.iter().any(|(k, _)| k == op) {
            return None;
        }
        let name = op.full_name();
        let globals = self.globals.read().unwrap_or_else(|e| e.into_inner());
        let lambda = Arc::clone(globals.defuns.get(&name)?);
        Some((name, lambda))
    }

    /// A body whose last form is in tail position.
    fn body_tail(&self, body: &[Term], env: &mut Env) -> Result<Tail, EvalError> {
        let Some((last, init)) = body.split_last() else {
            return Ok(Tail::Value(Term::Nil));
        };
        for f in init {
            self.eval_in(f, env)?;
        }
        self.eval_tail(last, env)
    }

    fn function(&self, lambda: Lambda) -> Function {
        let me = self.clone();
        let lambda = Arc::new(lambda);
        Arc::new(move |args: &[Term]| Ok(me.apply_lambda("lambda", &lambda, args)?))
    }
}
