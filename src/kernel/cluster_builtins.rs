//! REPL built-ins for process groups and cluster-wide names
//! (`node::groups`, `node::global`). `register.rs` calls [`register`];
//! `(help)` lists these lines after the others.

use crate::agent::target::{Resolved, Target};
use crate::agent::Agent;
use crate::call::{self, CallError};
use crate::node::{global, groups};
use crate::term::Term;

/// `(name, usage and one line of help)` of the cluster built-ins.
pub const CLUSTER_HELP: &[(&str, &str)] = &[
    ("join-group", "(join-group group &optional agent) add a local agent (default: the REPL's) to a process group, :keyword or \"string\"; seen by every connected node"),
    ("leave-group", "(leave-group group &optional agent) remove a local agent from a group"),
    ("group-members", "(group-members group) the group's members on this and every connected node"),
    ("which-groups", "(which-groups) the groups with members, as strings"),
    ("send-group", "(send-group group message) send to every member of a group; returns how many"),
    ("register-global", "(register-global name &optional agent) give a local agent a cluster-wide name (a string; a keyword means its upper-case name)"),
    ("unregister-global", "(unregister-global name) remove a cluster-wide name held by an agent of this node"),
    ("whereis-global", "(whereis-global name) the agent holding a cluster-wide name, or NIL"),
    ("registered-global", "(registered-global) the cluster-wide names this node knows, sorted"),
    ("send-global", "(send-global name message) send to the holder of a cluster-wide name; returns the message"),
];

use super::args::{arity, bad};

/// A group or global name: a string as it is, a keyword or symbol by its
/// (upper-case) name.
fn name_arg(function: &str, t: &Term) -> Result<String, CallError> {
    match t {
        Term::Str(s) => Ok(s.clone()),
        Term::Keyword(k) => Ok(k.clone()),
        Term::Symbol(s) => Ok(s.name.clone()),
        other => Err(bad(
            function,
            format!("a name is a string or a keyword, got {other}"),
        )),
    }
}

/// A local agent: the REPL's own when absent.
fn local_agent(function: &str, t: Option<&Term>) -> Result<Agent, CallError> {
    let Some(t) = t else {
        return Ok(Agent::current());
    };
    match t {
        Term::Agent(_) | Term::Keyword(_) | Term::Str(_) => {}
        other => return Err(bad(function, format!("{other} is not an agent"))),
    }
    match Target::from(t).resolve() {
        Ok(Resolved::Local(a)) => Ok(a),
        Ok(Resolved::Dead) => Err(bad(function, "the agent has exited")),
        Ok(Resolved::Remote(..)) => Err(bad(
            function,
            format!("{t} is an agent of another node; only its own node can add it"),
        )),
        Err(e) => Err(bad(function, e.to_string())),
    }
}

/// Registers the cluster built-ins.
pub(super) fn register() {
    call::register_function("join-group", |args| {
        arity("join-group", args, 1, 2)?;
        let group = name_arg("join-group", &args[0])?;
        let agent = local_agent("join-group", args.get(1))?;
        groups::join(&group, &agent).map_err(|e| bad("join-group", e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("leave-group", |args| {
        arity("leave-group", args, 1, 2)?;
        let group = name_arg("leave-group", &args[0])?;
        let agent = local_agent("leave-group", args.get(1))?;
        groups::leave(&group, &agent).map_err(|e| bad("leave-group", e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("group-members", |args| {
        arity("group-members", args, 1, 1)?;
        let group = name_arg("group-members", &args[0])?;
        Ok(Term::list(groups::members(&group)))
    });
    call::register_function("which-groups", |args| {
        arity("which-groups", args, 0, 0)?;
        Ok(Term::list(
            groups::which_groups().into_iter().map(Term::Str).collect(),
        ))
    });
    call::register_function("send-group", |args| {
        arity("send-group", args, 2, 2)?;
        let group = name_arg("send-group", &args[0])?;
        Ok(Term::from(groups::send_to_group(&group, &args[1])))
    });
    call::register_function("register-global", |args| {
        arity("register-global", args, 1, 2)?;
        let name = name_arg("register-global", &args[0])?;
        let agent = local_agent("register-global", args.get(1))?;
        global::register(&name, &agent).map_err(|e| bad("register-global", e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("unregister-global", |args| {
        arity("unregister-global", args, 1, 1)?;
        let name = name_arg("unregister-global", &args[0])?;
        global::unregister(&name).map_err(|e| bad("unregister-global", e.to_string()))?;
        Ok(Term::T)
    });
    call::register_function("whereis-global", |args| {
        arity("whereis-global", args, 1, 1)?;
        let name = name_arg("whereis-global", &args[0])?;
        Ok(global::whereis(&name).unwrap_or(Term::Nil))
    });
    call::register_function("registered-global", |args| {
        arity("registered-global", args, 0, 0)?;
        Ok(Term::list(
            global::registered().into_iter().map(Term::Str).collect(),
        ))
    });
    call::register_function("send-global", |args| {
        arity("send-global", args, 2, 2)?;
        let name = name_arg("send-global", &args[0])?;
        global::send(&name, args[1].clone()).map_err(|e| bad("send-global", e.to_string()))?;
        Ok(args[1].clone())
    });
}
