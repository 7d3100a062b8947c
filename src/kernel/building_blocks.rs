//! The REPL's built-ins for the building blocks: timers
//! ([`crate::timer`]), request/reply ([`crate::server`]) and supervisors
//! ([`crate::supervisor`]), plus `pool-worker`, a small registered server
//! for the supervised-pool walkthrough (README).

use std::time::Duration;

use super::args::{arity, bad, seconds};
use crate::agent::SpawnOptions;
use crate::call::{self, keyword_args, CallError};
use crate::server::{self, Server};
use crate::supervisor::{self, ChildSpec, Strategy, SupervisorSpec};
use crate::term::Term;
use crate::timer::{self, TimerRef};

/// `(help)` lines of these built-ins, printed after the others.
pub(super) const HELP: &[(&str, &str)] = &[
    ("send-after", "(send-after ms message agent) send a message after ms milliseconds; returns a timer (:TIMER n)"),
    ("exit-after", "(exit-after ms reason agent) kill an agent after ms milliseconds; returns a timer"),
    ("cancel-timer", "(cancel-timer timer) stop a timer; t if it had not fired yet, else nil"),
    ("request", "(request agent request &key timeout) send (:CALL (from tag) request), return the reply (:REPLY tag reply); timeout in seconds, default 5"),
    ("cast", "(cast agent message) send (:CAST message), no reply"),
    ("start-supervisor", "(start-supervisor &key strategy intensity period name children) start a supervisor; strategy :one-for-one, :one-for-all, :rest-for-one or :simple-one-for-one (one child, the template); children '((id call &optional restart &key shutdown name node) …), restart :permanent, :transient or :temporary"),
    ("which-children", "(which-children supervisor) its running children: ((\"id\" agent) …)"),
    ("start-child", "(start-child supervisor child) start and keep one more child (id call …); for a :simple-one-for-one supervisor, child is the list of extra arguments; returns the agent"),
    ("terminate-child", "(terminate-child supervisor id) stop a child, keeping its spec (a :simple-one-for-one supervisor takes the child agent)"),
    ("restart-child", "(restart-child supervisor id) start a terminated child again; returns the agent"),
    ("delete-child", "(delete-child supervisor id) forget a terminated child's spec"),
    ("count-children", "(count-children supervisor) (:SPECS n :ACTIVE n :SUPERVISORS n :WORKERS n)"),
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
    register_dynamic();
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
        Some(Term::Keyword(k)) if k == "SIMPLE-ONE-FOR-ONE" => Strategy::SimpleOneForOne,
        Some(other) => {
            return Err(bad(
                f,
                format!(
                    ":strategy must be :one-for-one, :one-for-all, :rest-for-one or :simple-one-for-one, got {other}"
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
    ChildSpec::from_term(t).map_err(|e| bad("start-supervisor", e))
}

/// The dynamic-children built-ins: `(start-child sup child-or-args)`,
/// `(terminate-child sup id-or-agent)`, `(restart-child sup id)`,
/// `(delete-child sup id)`, `(count-children sup)`.
fn register_dynamic() {
    call::register_function("start-child", |args| {
        let f = "start-child";
        arity(f, args, 2, 2)?;
        let sup = agent_arg(f, &args[0])?;
        // Sent as a term: the supervisor reads it as a child spec, or as
        // the extra arguments of a simple-one-for-one child.
        let request = Term::list(vec![Term::keyword("start-child"), args[1].clone()]);
        server::request(sup, request, server::DEFAULT_TIMEOUT)
            .map_err(supervisor::ChildError::from)
            .and_then(supervisor::answer)
            .map_err(|e| child_failed(f, &e))
    });
    call::register_function("terminate-child", |args| {
        let f = "terminate-child";
        arity(f, args, 2, 2)?;
        let sup = agent_arg(f, &args[0])?;
        supervisor::terminate_child(sup, child_key(&args[1]), server::DEFAULT_TIMEOUT)
            .map_err(|e| child_failed(f, &e))?;
        Ok(Term::T)
    });
    call::register_function("restart-child", |args| {
        let f = "restart-child";
        arity(f, args, 2, 2)?;
        let sup = agent_arg(f, &args[0])?;
        let id = id_arg(f, &args[1])?;
        supervisor::restart_child(sup, &id, server::DEFAULT_TIMEOUT)
            .map_err(|e| child_failed(f, &e))
    });
    call::register_function("delete-child", |args| {
        let f = "delete-child";
        arity(f, args, 2, 2)?;
        let sup = agent_arg(f, &args[0])?;
        let id = id_arg(f, &args[1])?;
        supervisor::delete_child(sup, &id, server::DEFAULT_TIMEOUT)
            .map_err(|e| child_failed(f, &e))?;
        Ok(Term::T)
    });
    call::register_function("count-children", |args| {
        let f = "count-children";
        arity(f, args, 1, 1)?;
        let sup = agent_arg(f, &args[0])?;
        supervisor::count_children(sup, server::DEFAULT_TIMEOUT)
            .map(|c| c.to_term())
            .map_err(|e| child_failed(f, &e))
    });
}

/// A child's id as the REPL writes it (see [`supervisor::child_id`]).
fn id_arg(function: &str, t: &Term) -> Result<String, CallError> {
    supervisor::child_id(t).map_err(|e| bad(function, e))
}

/// An id, or a child agent (of a simple-one-for-one supervisor), or an
/// id string `"host/node/aid"` of a remote child.
fn child_key(t: &Term) -> Term {
    supervisor::child_id(t).map_or_else(|_| t.clone(), Term::Str)
}

/// A supervisor's refusal in words, then as the term it answered.
fn child_failed(function: &str, e: &supervisor::ChildError) -> CallError {
    match e {
        supervisor::ChildError::Request(_) | supervisor::ChildError::Unexpected(_) => {
            failed(function, e)
        }
        e => failed(function, format!("{e}: {}", e.reason())),
    }
}
