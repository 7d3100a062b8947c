//! Examples of the library API that are also registered functions:
//! `parallel-map` (SPEC section 8; its workers are async agents), the small
//! arithmetic functions the walkthroughs use (`1+`, `1-`, `+`, `-`, `*`),
//! and `async-echo`.
//!
//! `(async-echo)` is an async registered function: spawning it starts an
//! async agent that answers `(message target)` by sending `message` to
//! `target`.
//!
//! The registered `(parallel-map function vector &key level result-type)`
//! (also `erlangen.examples:parallel-map`) takes a vector or a list and
//! returns a vector. `level` is the number of workers, a positive integer
//! (default 2). `result-type` is the element type every result must have,
//! one of exactly: `t` (the default: anything), `integer` or `fixnum`
//! (integers), `float` or `double-float` (floats), `number` (integers and
//! floats), `string`; names are case-insensitive and any package prefix is
//! ignored. Another value is a bad-arguments error; a result of another
//! type fails the call with a message naming it.
//!
//! ```
//! use erlangen::examples::{parallel_map, register_functions};
//! use erlangen::{call, Term};
//!
//! register_functions();
//! let one_plus = call::function_of(&Term::symbol("1+")).unwrap();
//! let input: Vec<Term> = [2, 4, 6].iter().map(|&i| Term::from(i)).collect();
//! let result = parallel_map(one_plus, &input, 3).unwrap();
//! assert_eq!(result.to_string(), "#(3 5 7)");
//! ```

use crate::agent::async_agent;
use crate::agent::{self, Agent, Attach, SpawnOptions};
use crate::call::{self, CallError, Function};
use crate::term::{Symbol, Term};

/// `(async-echo)`, an async agent that answers `(message target)` by
/// sending `message` to `target`, forever: the smallest server, and a
/// registered async function, so `(spawn '(async-echo))` (locally or on
/// another node) starts an async agent.
pub async fn async_echo() -> Result<Term, CallError> {
    loop {
        let request = async_agent::receive().await;
        let (message, target): (Term, Term) = request.decode().map_err(|e| {
            CallError::bad_arguments("async-echo", format!("expected (message target): {e}"))
        })?;
        let _ = agent::send(message, &target);
    }
}

/// A worker of [`parallel_map`], an async agent: receives `(function
/// vector start)`, maps the function over the vector and returns `(start
/// results)`. The function runs on the worker thread: one that blocks (a
/// `(receive)` inside a lambda) holds that worker until it returns.
async fn worker() -> Result<Term, CallError> {
    let job = async_agent::receive().await;
    let (function, chunk, start) = match job.as_list() {
        Some([f, Term::Vector(chunk), start]) => (call::function_of(f)?, chunk, start.clone()),
        _ => {
            return Err(CallError::bad_arguments(
                "parallel-map worker",
                format!("unexpected job {job}"),
            ))
        }
    };
    let mut results = Vec::with_capacity(chunk.len());
    for item in chunk {
        results.push(function(std::slice::from_ref(item))?);
    }
    Ok(Term::list(vec![start, Term::Vector(results)]))
}

/// Maps `function` over `vector` with up to `level` worker agents, each
/// monitored by the caller. Each worker is sent its chunk as a message; the
/// result is assembled from the workers' exit notifications. As in the seed,
/// the chunks are `len / n` long and the last takes the rest.
///
/// # Errors
/// If a worker exits abnormally, `CallError::Exit` with that worker's
/// reason (and the caller's other workers are killed when the caller
/// exits); `BadArguments` for a level of zero; a spawn failure as its
/// message.
pub fn parallel_map(function: Function, vector: &[Term], level: usize) -> Result<Term, CallError> {
    if level == 0 {
        return Err(CallError::bad_arguments(
            "parallel-map",
            ":level must be at least 1",
        ));
    }
    let length = vector.len();
    if length == 0 {
        return Ok(Term::Vector(Vec::new()));
    }
    let chunks = level.min(length);
    let chunk_size = length / chunks;
    let function_term = Term::local(function);
    let options = SpawnOptions::new().attach(Attach::Monitor);
    let mut workers: Vec<Agent> = Vec::with_capacity(chunks);
    for i in 0..chunks {
        let worker = async_agent::spawn_with(&options, worker())
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let start = i * chunk_size;
        let end = if i + 1 < chunks {
            start + chunk_size
        } else {
            length
        };
        worker.send(Term::list(vec![
            function_term.clone(),
            Term::Vector(vector[start..end].to_vec()),
            Term::from(start),
        ]));
        workers.push(worker);
    }
    let mut results: Vec<Term> = vec![Term::Nil; length];
    let mut pending = workers.len();
    while pending > 0 {
        // Only our workers' notifications: other messages stay queued for
        // whoever called us.
        let notice = agent::receive_matching(|m| is_notice_from(m, &workers), None)
            .map_err(|_| CallError::Exit(Term::keyword("timeout")))?;
        match notice.as_list() {
            Some([_, ok, Term::List(values)]) if ok.is_keyword("OK") => {
                if let [Term::Int(start), Term::Vector(chunk)] = values.as_slice() {
                    let start = usize::try_from(*start).unwrap_or(usize::MAX);
                    for (i, r) in chunk.iter().enumerate() {
                        if let Some(slot) = results.get_mut(start + i) {
                            *slot = r.clone();
                        }
                    }
                }
            }
            _ => return Err(CallError::Exit(exit_reason(&notice))),
        }
        pending -= 1;
    }
    Ok(Term::Vector(results))
}

fn is_notice_from(message: &Term, workers: &[Agent]) -> bool {
    let head = match message {
        Term::List(items) | Term::Dotted(items, _) => items.first(),
        _ => None,
    };
    match head {
        Some(h) => workers.iter().any(|w| *h == w.to_term()),
        None => false,
    }
}

/// The reason of an `(agent :EXIT . reason)` notification.
fn exit_reason(notice: &Term) -> Term {
    match notice {
        Term::Dotted(items, tail) if items.len() == 2 => (**tail).clone(),
        Term::List(items) if items.len() > 2 => Term::list(items[2..].to_vec()),
        Term::List(_) => Term::Nil,
        other => other.clone(),
    }
}

/// The registered form: `(parallel-map function vector &key level
/// result-type)`. `vector` may also be a list; the value is a vector.
/// `level` is the number of workers, a positive integer (default 2).
/// `result-type` is the element type every result must have, as in the
/// seed, one of exactly: `t` (default: anything), `integer` or `fixnum`
/// (integers), `float` or `double-float` (floats), `number` (integers and
/// floats), `string` (case-insensitive, any package). Another value is a
/// `BadArguments` error; a result of another type fails the call with a
/// message naming it.
fn parallel_map_call(args: &[Term]) -> Result<Term, CallError> {
    let name = "parallel-map";
    let (fixed, keys) = call::keyword_args(name, args, 2, &["LEVEL", "RESULT-TYPE"])?;
    let function = call::function_of(&fixed[0])?;
    let vector = match &fixed[1] {
        Term::Vector(v) => v.as_slice(),
        other => match other.as_list() {
            Some(items) => items,
            None => {
                return Err(CallError::bad_arguments(
                    name,
                    format!("expected a vector, got {}", other.kind()),
                ))
            }
        },
    };
    let level = match keys.get("LEVEL") {
        None => 2,
        Some(Term::Int(n)) if *n >= 1 => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(other) => {
            return Err(CallError::bad_arguments(
                name,
                format!(":level must be a positive integer, got {other}"),
            ))
        }
    };
    let result = parallel_map(function, vector, level)?;
    if let Some(ty) = keys.get("RESULT-TYPE") {
        check_element_type(&result, ty)?;
    }
    Ok(result)
}

fn check_element_type(result: &Term, ty: &Term) -> Result<(), CallError> {
    let ty = match ty {
        Term::T => return Ok(()),
        Term::Symbol(Symbol { name, .. }) => name.as_str(),
        other => {
            return Err(CallError::bad_arguments(
                "parallel-map",
                format!(":result-type must be a type name, got {other}"),
            ))
        }
    };
    let ok: fn(&Term) -> bool = match ty {
        "INTEGER" | "FIXNUM" => |t| matches!(t, Term::Int(_)),
        "FLOAT" | "DOUBLE-FLOAT" => |t| matches!(t, Term::Float(_)),
        "NUMBER" => |t| matches!(t, Term::Int(_) | Term::Float(_)),
        "STRING" => |t| matches!(t, Term::Str(_)),
        _ => {
            return Err(CallError::bad_arguments(
                "parallel-map",
                format!(":result-type {ty} is not one of T INTEGER FIXNUM FLOAT NUMBER STRING"),
            ))
        }
    };
    match result.as_vector().and_then(|v| v.iter().find(|t| !ok(t))) {
        Some(bad) => Err(CallError::Failed(format!(
            "parallel-map: result {bad} is not of type {ty}"
        ))),
        None => Ok(()),
    }
}

/// Folds `rest` into `first` with integer arithmetic while all are
/// integers (overflow is an error, not a wrap) and float arithmetic once a
/// float appears.
fn arith(
    name: &str,
    first: &Term,
    rest: &[Term],
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Term, CallError> {
    let mut acc = number(name, first)?;
    for a in rest {
        acc = match (acc, number(name, a)?) {
            (Term::Int(x), Term::Int(y)) => Term::Int(int(x, y).ok_or_else(|| {
                CallError::bad_arguments(name, "integer overflow (integers are 64-bit)")
            })?),
            (x, y) => Term::Float(float(as_f64(&x), as_f64(&y))),
        };
    }
    Ok(acc)
}

fn number(name: &str, t: &Term) -> Result<Term, CallError> {
    match t {
        Term::Int(_) | Term::Float(_) => Ok(t.clone()),
        other => Err(CallError::bad_arguments(
            name,
            format!("expected a number, got {other}"),
        )),
    }
}

fn as_f64(t: &Term) -> f64 {
    match t {
        Term::Int(i) => *i as f64,
        Term::Float(f) => *f,
        _ => f64::NAN,
    }
}

fn one_arg<'a>(name: &str, args: &'a [Term]) -> Result<&'a Term, CallError> {
    match args {
        [x] => Ok(x),
        _ => Err(CallError::bad_arguments(
            name,
            format!("expected 1 argument, got {}", args.len()),
        )),
    }
}

/// Registers `parallel-map` (also as `erlangen.examples:parallel-map`),
/// `1+`, `1-`, `+`, `-` and `*`. Safe to call more than once.
pub fn register_functions() {
    call::register_function("parallel-map", parallel_map_call);
    call::register_function("erlangen.examples:parallel-map", parallel_map_call);
    call::register_async_function("async-echo", |_| async_echo());
    call::register_async_function("erlangen.examples:async-echo", |_| async_echo());
    call::register_function("1+", |args| {
        arith(
            "1+",
            one_arg("1+", args)?,
            &[Term::Int(1)],
            i64::checked_add,
            |a, b| a + b,
        )
    });
    call::register_function("1-", |args| {
        arith(
            "1-",
            one_arg("1-", args)?,
            &[Term::Int(1)],
            i64::checked_sub,
            |a, b| a - b,
        )
    });
    call::register_function("+", |args| {
        arith("+", &Term::Int(0), args, i64::checked_add, |a, b| a + b)
    });
    call::register_function("*", |args| {
        arith("*", &Term::Int(1), args, i64::checked_mul, |a, b| a * b)
    });
    call::register_function("-", |args| match args {
        [] => Err(CallError::bad_arguments(
            "-",
            "expected at least 1 argument",
        )),
        // (- x) is negation, as in Lisp.
        [only] => arith(
            "-",
            &Term::Int(0),
            std::slice::from_ref(only),
            i64::checked_sub,
            |a, b| a - b,
        ),
        [first, rest @ ..] => arith("-", first, rest, i64::checked_sub, |a, b| a - b),
    });
}
