//! Management of other nodes, the server side and the asking side:
//! `(agent-stats "host/node/aid")`, `(agent-tree :node …)`,
//! `(connection-stats :node …)`, `(nodes)`, `(node-info …)` and the data
//! of `(top :node …)`.
//!
//! No frame of its own: the asking agent spawns the registered function
//! [`QUERY`] on the target node with its own agent as an argument; that
//! function computes the answer there ([`answer`]) and sends it back as an
//! ordinary message. A dead node fails the spawn at once, with the reason,
//! and that is the error the user sees. The reply is
//! `(:OPS-REPLY token (:OK value))` or `(:OPS-REPLY token (:ERROR "text"))`
//! (PROTOCOL.md, "Remote management").

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::args::{count_term, getf, node_key};
use crate::agent::{self, Agent, SpawnOptions, Target};
use crate::call::{self, keyword_args, CallError};
use crate::management;
use crate::node;
use crate::term::{self, Term};

/// The registered function that answers a management query.
pub const QUERY: &str = "ops-query";

/// How long a query waits for its answer once the spawn succeeded.
const QUERY_WAIT: Duration = Duration::from_secs(10);
static TOKENS: AtomicI64 = AtomicI64::new(1);

/// When this process started counting (the kernel's start): what
/// `node-info` and `(nodes)` report as uptime.
pub(super) fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

pub(super) fn token() -> Term {
    Term::Int(TOKENS.fetch_add(1, Ordering::Relaxed))
}

pub(super) fn failed(message: String) -> CallError {
    CallError::Failed(message)
}

pub(super) fn is_tagged(m: &Term, tag: &str, token: &Term) -> bool {
    matches!(m.as_list(), Some([Term::Keyword(k), t, ..]) if k == tag && t == token)
}

/// `"host/node"` or `"node"` (this node's host) as (host, node, full name).
pub(super) fn split_node(target: &str) -> Result<(Option<String>, String, String), CallError> {
    let me = node::this_node();
    let (host, name) = match target.split_once('/') {
        Some((h, n)) => (Some(h.to_owned()), n.to_owned()),
        None => (None, target.to_owned()),
    };
    if name.is_empty() || name.contains('/') {
        return Err(failed(format!(
            "{target:?} is not a node name (\"node\" or \"host/node\")"
        )));
    }
    let host_shown = host
        .clone()
        .or_else(|| {
            me.as_ref()
                .and_then(|m| m.split_once('/').map(|p| p.0.to_owned()))
        })
        .unwrap_or_else(node::host_name);
    let full = format!("{host_shown}/{name}");
    Ok((host, name, full))
}

/// Why a query has no value.
#[derive(Debug)]
pub(super) enum QueryError {
    /// The node could not be asked (not a node name, not reachable, no
    /// answer); the message says why.
    NotAsked(String),
    /// Node `node` answered with error `answer` (for `agent-stats`: the
    /// agent has exited, …).
    Answered {
        /// The node asked.
        node: String,
        /// Its answer.
        answer: String,
    },
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::NotAsked(e) => f.write_str(e),
            QueryError::Answered { node, answer } => write!(f, "node {node}: {answer}"),
        }
    }
}

impl From<QueryError> for CallError {
    fn from(e: QueryError) -> CallError {
        failed(e.to_string())
    }
}

/// Asks node `target` (`"host/node"` or `"node"`) for `kind` with `args`,
/// by spawning [`QUERY`] there; returns its answer.
pub(super) fn query(target: &str, kind: &str, args: Vec<Term>) -> Result<Term, QueryError> {
    let not_asked = QueryError::NotAsked;
    let (host, name, full) = split_node(target).map_err(|e| not_asked(e.to_string()))?;
    if node::this_node().is_none() {
        return Err(not_asked(format!(
            "node {full} can be asked only from a node: start one first, e.g. (spawn '(node))"
        )));
    }
    if node::this_node().as_deref() == Some(full.as_str()) {
        return answer(kind, &args).map_err(|answer| QueryError::Answered { node: full, answer });
    }
    let token = token();
    let mut call = vec![
        Term::symbol(QUERY),
        Term::Str(kind.to_owned()),
        Agent::current().to_term(),
        token.clone(),
    ];
    call.extend(args);
    node::spawn_on(
        host.as_deref(),
        &name,
        &Term::list(call),
        &SpawnOptions::new(),
    )
    .map_err(|e| not_asked(format!("node {full} cannot be asked: {e}")))?;
    let reply = agent::receive_matching(|m| is_tagged(m, "OPS-REPLY", &token), Some(QUERY_WAIT))
        .map_err(|_| {
            not_asked(format!(
                "node {full} did not answer within {} s (did it go down?)",
                QUERY_WAIT.as_secs()
            ))
        })?;
    match reply.as_list() {
        Some([_, _, Term::List(result)]) => match result.as_slice() {
            [Term::Keyword(k), value] if k == "OK" => Ok(value.clone()),
            [Term::Keyword(k), Term::Str(e)] if k == "ERROR" => Err(QueryError::Answered {
                node: full,
                answer: e.clone(),
            }),
            _ => Err(not_asked(format!("node {full} answered {reply}"))),
        },
        _ => Err(not_asked(format!("node {full} answered {reply}"))),
    }
}

/// `(ops-query kind reply-to token arg…)` on the target: computes and
/// sends the answer.
fn serve_query(args: &[Term]) -> Result<Term, CallError> {
    let [Term::Str(kind), reply_to, token, rest @ ..] = args else {
        return Err(CallError::bad_arguments(
            QUERY,
            "expected a kind, an agent to answer and a token",
        ));
    };
    let result = match answer(kind, rest) {
        Ok(v) => Term::list(vec![Term::keyword("ok"), v]),
        Err(e) => Term::list(vec![Term::keyword("error"), Term::Str(e)]),
    };
    let reply = Term::list(vec![Term::keyword("ops-reply"), token.clone(), result]);
    agent::send(reply, Target::from(reply_to)).map_err(|e| failed(e.to_string()))?;
    Ok(Term::Nil)
}

/// The answer to a query, computed on this node.
pub(super) fn answer(kind: &str, args: &[Term]) -> Result<Term, String> {
    match kind {
        "agent-stats" => {
            let who = args.first().ok_or("agent-stats needs an agent")?;
            management::agent_stats(Target::from(who))
                .map(|s| s.to_term())
                .map_err(|e| format!("agent-stats: {e}"))
        }
        "agent-tree" => Ok(Term::Str(tree_text(args.first())?)),
        "connection-stats" => Ok(Term::list(
            node::connection_stats()
                .iter()
                .map(|s| s.to_term())
                .collect(),
        )),
        "node-info" => Ok(node_info()),
        "top" => Ok(snapshot()),
        other => Err(format!("unknown query {other:?}")),
    }
}

/// `t` with this node's agents written as their ids, as they print on
/// another node (and can be used there in the next call).
pub(super) fn as_ids(t: &Term) -> Term {
    match t {
        Term::Agent(term::AgentRef::Local(serial)) => {
            match (
                agent::target::by_serial(*serial).and_then(|a| a.id()),
                node::this_incarnation(),
            ) {
                (Some(id), Some(incarnation)) => Term::Agent(term::AgentRef::Remote {
                    id: id.into(),
                    incarnation,
                }),
                _ => t.clone(),
            }
        }
        Term::List(items) => Term::list(items.iter().map(as_ids).collect()),
        Term::Vector(items) => Term::Vector(items.iter().map(as_ids).collect()),
        Term::Dotted(items, tail) => Term::dotted(items.iter().map(as_ids).collect(), as_ids(tail)),
        other => other.clone(),
    }
}

/// An agent tree with this node's agents written as their ids.
pub(super) fn tree_with_ids(tree: management::AgentTree) -> management::AgentTree {
    management::AgentTree {
        agent: as_ids(&tree.agent),
        monitored: tree.monitored.into_iter().map(tree_with_ids).collect(),
        links: tree.links.iter().map(as_ids).collect(),
    }
}

/// The agent tree of `who`, or of every agent no other local agent
/// monitors, as text, agents written as their ids (the text is shown on
/// the asking node).
fn tree_text(who: Option<&Term>) -> Result<String, String> {
    if let Some(who) = who {
        return management::agent_tree(Target::from(who))
            .map(|t| tree_with_ids(t).to_string())
            .map_err(|e| format!("agent-tree: {e}"));
    }
    let all = management::agents();
    let monitored: std::collections::HashSet<u64> = all
        .iter()
        .flat_map(|a| {
            let me = agent::PeerKey::Local(a.serial());
            a.peers().0.into_iter().filter_map(move |p| match p {
                agent::Peer::Local(child) if child.peers().1.iter().any(|m| m.key() == me) => {
                    Some(child.serial())
                }
                _ => None,
            })
        })
        .collect();
    let mut text = String::new();
    for a in all.iter().filter(|a| !monitored.contains(&a.serial())) {
        if let Ok(t) = management::agent_tree(a.clone()) {
            text.push_str(&tree_with_ids(t).to_string());
        }
    }
    Ok(text)
}

/// `(:NODE "h/n" :INCARNATION i :UPTIME s :AGENTS n :THREAD-AGENTS t
/// :ASYNC-AGENTS a :THREADS n :RESIDENT-KB k :THROTTLED c
/// :REFUSED-HANDSHAKES r :SLOTS-FULL f :CONNECTION-ERRORS e)` of this
/// process (`c`: connections closed by the failed-handshake throttle; `r`:
/// handshakes that failed or were refused; `f`: connections closed at
/// accept because every handshake slot was busy; `e`: I/O and protocol
/// errors on established connections, summed over peers).
pub(super) fn node_info() -> Term {
    let agents = management::agents();
    let threads = agents
        .iter()
        .filter(|a| a.kind() == agent::Kind::Thread)
        .count();
    let opt = |v: Option<u64>| v.map_or(Term::Nil, count_term);
    let process = management::process_sample(None);
    Term::plist(vec![
        ("node", node::this_node().map_or(Term::Nil, Term::Str)),
        ("incarnation", opt(node::this_incarnation())),
        ("uptime", Term::Int(started().elapsed().as_secs() as i64)),
        ("agents", Term::from(agents.len())),
        ("thread-agents", Term::from(threads)),
        ("async-agents", Term::from(agents.len() - threads)),
        ("threads", opt(process.map(|p| p.threads))),
        ("resident-kb", opt(process.map(|p| p.resident_kib))),
        ("throttled", count_term(node::throttled_connections())),
        ("refused-handshakes", count_term(node::refused_handshakes())),
        ("slots-full", count_term(node::slots_full_closes())),
        ("sealed", Term::from(node::sealed())),
        (
            "bad-seals",
            count_term(node::connection_stats().iter().map(|s| s.bad_seals).sum()),
        ),
        (
            "connection-errors",
            count_term(node::connection_stats().iter().map(|s| s.errors).sum()),
        ),
    ])
}

/// `(nodes)`: every other visible node of the cluster (with `:hidden`,
/// hidden ones too) with its incarnation, uptime and the round-trip time
/// of asking it.
fn nodes(args: &[Term]) -> Result<Term, CallError> {
    let hidden = match args {
        [] => false,
        [Term::Keyword(k)] if k == "HIDDEN" => true,
        _ => {
            return Err(CallError::bad_arguments(
                "nodes",
                "expected no arguments, or :hidden",
            ))
        }
    };
    let listed = if hidden {
        node::nodes_with_hidden()
    } else {
        node::nodes()
    };
    let incarnations: std::collections::HashMap<String, u64> =
        node::connected_peers().into_iter().collect();
    let mut out = Vec::new();
    for peer in listed {
        let Some(&incarnation) = incarnations.get(&peer) else {
            continue;
        };
        let asked = Instant::now();
        let info = query(&peer, "node-info", Vec::new());
        let rtt = asked.elapsed();
        let mut plist = vec![
            ("node", Term::Str(peer)),
            ("incarnation", count_term(incarnation)),
        ];
        match info {
            Ok(info) => {
                plist.push((
                    "uptime",
                    getf(&info, "UPTIME").cloned().unwrap_or(Term::Nil),
                ));
                plist.push(("rtt-ms", Term::Float(rtt.as_secs_f64() * 1000.0)));
            }
            Err(e) => plist.push(("error", Term::Str(e.to_string()))),
        }
        out.push(Term::plist(plist));
    }
    Ok(Term::list(out))
}

/// `(monitor-nodes &key hidden)` and `(demonitor-nodes)`.
fn monitor_nodes(args: &[Term]) -> Result<Term, CallError> {
    let (_, keys) = keyword_args("monitor-nodes", args, 0, &["HIDDEN"])?;
    node::monitor_nodes(keys.get("HIDDEN").is_some_and(|t| t.is_true()));
    Ok(Term::T)
}

/// Registers the query function and the remote management built-ins that
/// are not extensions of older ones.
pub(super) fn register() {
    let _ = started();
    call::register_function(QUERY, serve_query);
    call::register_function("nodes", nodes);
    call::register_function("monitor-nodes", monitor_nodes);
    call::register_function("demonitor-nodes", |args| {
        if !args.is_empty() {
            return Err(CallError::bad_arguments(
                "demonitor-nodes",
                "expected no arguments",
            ));
        }
        node::demonitor_nodes();
        Ok(Term::T)
    });
    call::register_function("node-info", |args| match node_key("node-info", args)? {
        Some(n) => Ok(query(&n, "node-info", Vec::new())?),
        None => Ok(node_info()),
    });
}

/// This node now: `(:INFO node-info :AGENTS ((agent name queued received
/// dropped) …) :CONNECTIONS (connection-stats…))`.
pub(super) fn snapshot() -> Term {
    let agents = management::agents()
        .iter()
        .filter_map(|a| management::agent_stats(a.clone()).ok())
        .map(|s| {
            Term::list(vec![
                s.agent.clone(),
                s.name.as_deref().map_or(Term::Nil, Term::keyword),
                Term::from(s.queued),
                count_term(s.received),
                count_term(s.dropped),
            ])
        })
        .collect();
    Term::plist(vec![
        ("info", node_info()),
        ("agents", Term::list(agents)),
        (
            "connections",
            Term::list(
                crate::node::connection_stats()
                    .iter()
                    .map(|s| s.to_term())
                    .collect(),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_split() {
        let (host, name, full) = split_node("h/n").unwrap();
        assert_eq!(
            (host.as_deref(), name.as_str(), full.as_str()),
            (Some("h"), "n", "h/n")
        );
        assert!(split_node("h/").is_err());
        assert!(split_node("a/b/c").is_err());
    }
}
