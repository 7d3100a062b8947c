//! The REPL's built-ins for the building blocks: timers
//! ([`crate::timer`]), request/reply ([`crate::server`]) and supervisors
//! ([`crate::supervisor`]), plus `pool-worker`, a small registered server
//! for the supervised-pool walkthrough (README).

use std::time::Duration;

use super::builtins::{arity, bad, seconds};
use crate::agent::SpawnOptions;
use crate::call::{self, keyword_args, CallError};
use crate::server::{self, Server};
use crate::supervisor::{self, ChildSpec, Restart, Strategy, SupervisorSpec};
use crate::term::Term;
use crate::timer::{self, TimerRef};

/// `(help)` lines of these built-ins, printed after the others.
pub(super) const HELP: &[(&str, &str)] = &[
    ("send-after", "(send-after ms message agent) send a message after ms milliseconds; returns a timer (:TIMER n)"),
    ("exit-after", "(exit-after ms reason agent) kill an agent after ms milliseconds; returns a timer"),
    ("cancel-timer", "(cancel-timer timer) stop a timer; t if it had not fired yet, else nil"),
    ("request", "(request agent request &key timeout) send (:CALL (from tag) request), return the reply (:REPLY tag reply); timeout in seconds, default 5"),
    ("cast", "(cast agent message) send (:CAST message), no reply"),
    ("start-supervisor", "(start-supervisor &key strategy intensity period name children) start a supervisor; strategy :one-for-one, :one-for-all or :rest-for-one; children '((id call &optional restart &key shutdown name node) …), restart :permanent, :transient or :temporary"),
    ("which-children", "(which-children supervisor) its running children: ((\"id\" agent) …)"),
    ("pool-worker", "(pool-worker) a server: a number n is answered with n*n, :crash crashes it, anything else is echoed"),
];

fn failed(function: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Failed(format!("{function}: {e}"))
}

fn millis(function: &str, t: &Term) -> Result<Duration, CallError> {
    match t {
        Term::Int(n) if *n >= 0 => Ok(Duration::from_millis(u64::try_from(*n).unwrap_or(0))),
        other => Err(bad(function, format!("expected milliseconds, got {other}"))),
    }
}

fn agent_arg(function: &str, t: &Term) -> Result<Term, CallError> {
    match t {
        Term::Agent(_) | Term::Keyword(_) | Term::Str(_) => Ok(t.clone()),
        other => Err(bad(
            function,
            format!("{other} is not an agent (expected an agent, a :NAME or an id string)"),
        )),
    }
}

pub(super) fn register() {
    call::register_function("send-after", |args| {
        arity("send-after", args, 3, 3)?;
        let delay = millis("send-after", &args[0])?;
        let to = agent_arg("send-after", &args[2])?;
        Ok(timer::send_after(delay, args[1].clone(), to).to_term())
    });
    call::register_function("exit-after", |args| {
        arity("exit-after", args, 3, 3)?;
        let delay = millis("exit-after", &args[0])?;
        let to = agent_arg("exit-after", &args[2])?;
        Ok(timer::exit_after(delay, args[1].clone(), to).to_term())
    });
    call::register_function("cancel-timer", |args| {
        arity("cancel-timer", args, 1, 1)?;
        let t = TimerRef::from_term(&args[0])
            .ok_or_else(|| bad("cancel-timer", format!("{} is not a timer", args[0])))?;
        Ok(Term::from(timer::cancel(&t)))
    });
    call::register_function("request", |args| {
        let (fixed, keys) = keyword_args("request", args, 2, &["TIMEOUT"])?;
        let to = agent_arg("request", &fixed[0])?;
        let timeout = match keys.get("TIMEOUT") {
            Some(t) => seconds("request", t)?,
            None => server::DEFAULT_TIMEOUT,
        };
        server::request(to, fixed[1].clone(), timeout).map_err(|e| failed("request", e))
    });
    call::register_function("cast", |args| {
        arity("cast", args, 2, 2)?;
        server::cast(agent_arg("cast", &args[0])?, args[1].clone())
            .map_err(|e| failed("cast", e))?;
        Ok(Term::T)
    });
    call::register_function("start-supervisor", start_supervisor);
    call::register_function("which-children", |args| {
        arity("which-children", args, 1, 1)?;
        let sup = agent_arg("which-children", &args[0])?;
        let children = supervisor::which_children(sup, server::DEFAULT_TIMEOUT)
            .map_err(|e| failed("which-children", e))?;
        Ok(Term::list(
            children
                .into_iter()
                .map(|(id, agent)| Term::list(vec![Term::Str(id), agent]))
                .collect(),
        ))
    });
    call::register_async_function("pool-worker", |_| pool_worker());
}

/// The walkthrough's worker: squares numbers, crashes on `:crash`.
async fn pool_worker() -> Result<Term, CallError> {
    Server::new(())
        .on_call(|(), request| match request {
            Term::Int(n) => (Term::from(n.wrapping_mul(n)), ()),
            r if r.is_keyword("CRASH") => panic!("pool-worker crashed on request"),
            other => (other, ()),
        })
        .run_async()
        .await;
    Ok(Term::Nil)
}

fn start_supervisor(args: &[Term]) -> Result<Term, CallError> {
    let f = "start-supervisor";
    let (_, keys) = keyword_args(
        f,
        args,
        0,
        &["STRATEGY", "INTENSITY", "PERIOD", "NAME", "CHILDREN"],
    )?;
    let strategy = match keys.get("STRATEGY") {
        None => Strategy::OneForOne,
        Some(Term::Keyword(k)) if k == "ONE-FOR-ONE" => Strategy::OneForOne,
        Some(Term::Keyword(k)) if k == "ONE-FOR-ALL" => Strategy::OneForAll,
        Some(Term::Keyword(k)) if k == "REST-FOR-ONE" => Strategy::RestForOne,
        Some(other) => {
            return Err(bad(
                f,
                format!(
                    ":strategy must be :one-for-one, :one-for-all or :rest-for-one, got {other}"
                ),
            ))
        }
    };
    let intensity = match keys.get("INTENSITY") {
        None => 1,
        Some(Term::Int(n)) if *n >= 0 => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(other) => {
            return Err(bad(
                f,
                format!(":intensity must be a count of restarts, got {other}"),
            ))
        }
    };
    let period = match keys.get("PERIOD") {
        None => Duration::from_secs(5),
        Some(t) => seconds(f, t)?,
    };
    let mut spec = SupervisorSpec::new(strategy).intensity(intensity, period);
    if let Some(children) = keys.get("CHILDREN") {
        let items = match children {
            Term::Nil => &[][..],
            t => t
                .as_list()
                .ok_or_else(|| bad(f, format!(":children must be a list, got {t}")))?,
        };
        for c in items {
            spec = spec.child(child_spec(c)?);
        }
    }
    let mut options = SpawnOptions::new();
    if let Some(n) = keys.get("NAME") {
        options.name = Some(match n {
            Term::Keyword(k) | Term::Str(k) => k.clone(),
            other => return Err(bad(f, format!(":name must be a keyword, got {other}"))),
        });
    }
    let sup = supervisor::start(spec, &options).map_err(|e| failed(f, e))?;
    Ok(sup.to_term())
}

/// `(id call &optional restart &key shutdown name node)`.
fn child_spec(t: &Term) -> Result<ChildSpec, CallError> {
    let f = "start-supervisor";
    let items = t.as_list().ok_or_else(|| {
        bad(
            f,
            format!("a child is (id call &optional restart …), got {t}"),
        )
    })?;
    let (id, call, rest) = match items {
        [id, call, rest @ ..] => (id, call, rest),
        _ => {
            return Err(bad(
                f,
                format!("a child is (id call &optional restart …), got {t}"),
            ))
        }
    };
    let id = match id {
        Term::Symbol(s) => s.name.to_lowercase(),
        Term::Keyword(k) => k.to_lowercase(),
        Term::Str(s) => s.clone(),
        other => return Err(bad(f, format!("a child's id is a symbol, got {other}"))),
    };
    let call = match call {
        Term::List(_) => call.clone(),
        Term::Symbol(_) => Term::list(vec![call.clone()]),
        other => {
            return Err(bad(
                f,
                format!("child {id}: expected a call such as (pool-worker), got {other}"),
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
    let (_, keys) = keyword_args(f, rest, 0, &["SHUTDOWN", "NAME", "NODE"])?;
    if let Some(s) = keys.get("SHUTDOWN") {
        spec = spec.shutdown(seconds(f, s)?);
    }
    if let Some(n) = keys.get("NAME") {
        match n {
            Term::Keyword(k) | Term::Str(k) => spec = spec.name(k),
            other => {
                return Err(bad(
                    f,
                    format!("child {id}: :name must be a keyword, got {other}"),
                ))
            }
        }
    }
    if let Some(n) = keys.get("NODE") {
        match n {
            Term::Str(s) => spec = spec.node(s),
            other => {
                return Err(bad(
                    f,
                    format!("child {id}: :node must be a string, got {other}"),
                ))
            }
        }
    }
    Ok(spec)
}
