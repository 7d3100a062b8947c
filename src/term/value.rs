//! The term data model: what a message, a call or an exit reason is made of.
//!
//! Terms follow Common Lisp's data model, narrowed to what can cross a node
//! boundary (SPEC section 4), plus [`Term::Local`] for values that only make
//! sense inside this process. This module knows nothing of agents, nodes or
//! codecs; agent references are carried as [`AgentRef`], an opaque id.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A value that can be sent as a message, used as an exit reason or written
/// in the REPL.
///
/// Lists are stored as vectors for speed; the empty list is [`Term::Nil`]
/// (a `Term::List(vec![])` compares equal to `Nil`, but the constructors
/// [`Term::list`] and [`Term::dotted`] always normalise).
#[derive(Clone)]
pub enum Term {
    /// `NIL`: false and the empty list.
    Nil,
    /// `T`: true.
    T,
    /// A signed 64-bit integer.
    Int(i64),
    /// A double-precision float.
    Float(f64),
    /// A string.
    Str(String),
    /// A symbol such as `PARALLEL-MAP` or `ERLANGEN.EXAMPLES:PARALLEL-MAP`.
    Symbol(Symbol),
    /// A keyword such as `:OK`; holds the upper-case name without the colon.
    Keyword(String),
    /// A byte vector, written `#.(BYTES "…hex…")` in text.
    Bytes(Vec<u8>),
    /// A proper, non-empty list `(a b c)`.
    List(Vec<Term>),
    /// A dotted list `(a b . tail)`: at least one item, and a tail that is
    /// neither a list nor `NIL`.
    Dotted(Vec<Term>, Box<Term>),
    /// A vector `#(a b c)`.
    Vector(Vec<Term>),
    /// A reference to an agent.
    Agent(AgentRef),
    /// A value that only makes sense in this process (a closure, any Rust
    /// value). Sending one to another node is an error at the sender.
    Local(LocalValue),
}

/// A symbol: an optional package prefix and a name, both stored upper-case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    /// The package prefix (`ERLANGEN.EXAMPLES` in
    /// `ERLANGEN.EXAMPLES:PARALLEL-MAP`), if any.
    pub package: Option<String>,
    /// The symbol's name.
    pub name: String,
}

impl Symbol {
    /// A symbol without a package; the name is upper-cased as the reader does.
    pub fn new(name: &str) -> Symbol {
        Symbol {
            package: None,
            name: name.to_uppercase(),
        }
    }

    /// A symbol with a package prefix; both parts are upper-cased.
    pub fn qualified(package: &str, name: &str) -> Symbol {
        Symbol {
            package: Some(package.to_uppercase()),
            name: name.to_uppercase(),
        }
    }

    /// The full printed name: `NAME` or `PACKAGE:NAME`.
    pub fn full_name(&self) -> String {
        match &self.package {
            Some(p) => format!("{p}:{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A reference to an agent, as carried inside terms.
///
/// `Local` names an agent of this process by its process-unique serial
/// number; `Id` names any agent by its id string `"host/node/aid"` (which may
/// turn out to be this node's own) in whatever run of that node is current;
/// `Remote` names the agent of one particular run (incarnation) of a node,
/// as Erlang's pids carry their node's creation: once that node restarts,
/// the reference reaches nothing. The agent layer resolves all three.
///
/// `Id` and `Remote` print as the id string (`"localhost/b/0"`); `Local`
/// prints as `#<AGENT 12>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum AgentRef {
    /// An agent of this process, by serial number.
    Local(u64),
    /// An agent named by its id string, `"host/node/aid"` or
    /// `"host/node/:NAME"`, in its node's current run (an id typed as text).
    Id(Arc<str>),
    /// An agent of one run of its node: the id string and that run's
    /// incarnation number (never 0). Handed out by the system (remote
    /// spawns, agent terms received from other nodes).
    Remote {
        /// `"host/node/aid"`.
        id: Arc<str>,
        /// The incarnation of the node run the agent belongs to.
        incarnation: u64,
    },
}

impl AgentRef {
    /// The id string of an `Id` or `Remote` reference.
    pub fn id(&self) -> Option<&str> {
        match self {
            AgentRef::Local(_) => None,
            AgentRef::Id(id) | AgentRef::Remote { id, .. } => Some(id),
        }
    }
}

/// Splits an agent id `"host/node/aid"` into its three parts (none empty,
/// no `/` in the aid).
pub(crate) fn split_id(id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = id.splitn(3, '/');
    let host = parts.next()?;
    let node = parts.next()?;
    let aid = parts.next()?;
    if host.is_empty() || node.is_empty() || aid.is_empty() || aid.contains('/') {
        return None;
    }
    Some((host, node, aid))
}

impl fmt::Display for AgentRef {
    /// `#<AGENT 12>` for a local agent, the bare id string otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentRef::Local(serial) => write!(f, "#<AGENT {serial}>"),
            AgentRef::Id(id) | AgentRef::Remote { id, .. } => f.write_str(id),
        }
    }
}

/// A process-local value inside a term: compared by identity, never sent
/// to another node. It prints as `#<LABEL>` when it has a label (a
/// function prints as `#<FUNCTION NAME>`), as `#<LOCAL-VALUE n>` otherwise.
#[derive(Clone)]
pub struct LocalValue {
    value: Arc<dyn Any + Send + Sync>,
    label: Option<Arc<str>>,
}

impl LocalValue {
    /// The Rust value.
    pub fn value(&self) -> &Arc<dyn Any + Send + Sync> {
        &self.value
    }

    /// What it prints as between `#<` and `>`, if it was given a label.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The Rust type name is not recoverable from `dyn Any`; this names the
    /// kind for error messages.
    pub fn kind(&self) -> &'static str {
        "local value"
    }
}

impl Term {
    /// A proper list from items; `NIL` when empty.
    pub fn list(items: Vec<Term>) -> Term {
        if items.is_empty() {
            Term::Nil
        } else {
            Term::List(items)
        }
    }

    /// A dotted list `(items… . tail)`, normalised: a list tail is spliced
    /// in, a `NIL` tail gives a proper list, and no items gives the tail.
    pub fn dotted(mut items: Vec<Term>, tail: Term) -> Term {
        match tail {
            Term::Nil => Term::list(items),
            Term::List(rest) => {
                items.extend(rest);
                Term::List(items)
            }
            Term::Dotted(rest, tail) => {
                items.extend(rest);
                Term::Dotted(items, tail)
            }
            tail if items.is_empty() => tail,
            tail => Term::Dotted(items, Box::new(tail)),
        }
    }

    /// A property list `(:KEY1 value1 :KEY2 value2 …)` from pairs of
    /// keyword names and values.
    pub fn plist(pairs: Vec<(&str, Term)>) -> Term {
        let mut items = Vec::with_capacity(pairs.len() * 2);
        for (key, value) in pairs {
            items.push(Term::keyword(key));
            items.push(value);
        }
        Term::list(items)
    }

    /// `(car . cdr)`.
    pub fn cons(car: Term, cdr: Term) -> Term {
        Term::dotted(vec![car], cdr)
    }

    /// A keyword from its name, without colon, upper-cased: `keyword("ok")`
    /// is `:OK`.
    pub fn keyword(name: &str) -> Term {
        Term::Keyword(name.to_uppercase())
    }

    /// A symbol without package, upper-cased.
    pub fn symbol(name: &str) -> Term {
        Term::Symbol(Symbol::new(name))
    }

    /// Wraps any Rust value as a process-local term.
    pub fn local<T: Any + Send + Sync>(value: T) -> Term {
        Term::Local(LocalValue {
            value: Arc::new(value),
            label: None,
        })
    }

    /// Wraps a Rust value as a process-local term that prints as
    /// `#<label>` (`#<FUNCTION DOUBLE>`).
    pub fn local_labeled<T: Any + Send + Sync>(label: &str, value: T) -> Term {
        Term::Local(LocalValue {
            value: Arc::new(value),
            label: Some(Arc::from(label)),
        })
    }

    /// The Rust value inside a [`Term::Local`], if it is one of type `T`.
    pub fn downcast_local<T: Any + Send + Sync>(&self) -> Option<&T> {
        match self {
            Term::Local(v) => v.value.downcast_ref::<T>(),
            _ => None,
        }
    }

    /// `true` for everything but `NIL`, as in Lisp.
    pub fn is_true(&self) -> bool {
        !self.is_nil()
    }

    /// `true` for `NIL` and the empty list.
    pub fn is_nil(&self) -> bool {
        match self {
            Term::Nil => true,
            Term::List(items) => items.is_empty(),
            _ => false,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Term::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The keyword's name (upper-case, no colon), if this is a keyword.
    pub fn as_keyword(&self) -> Option<&str> {
        match self {
            Term::Keyword(k) => Some(k),
            _ => None,
        }
    }

    /// `true` if this is the keyword with the given (case-insensitive) name.
    pub fn is_keyword(&self, name: &str) -> bool {
        matches!(self, Term::Keyword(k) if k.eq_ignore_ascii_case(name))
    }

    /// The items of a proper list (`NIL` is the empty list).
    pub fn as_list(&self) -> Option<&[Term]> {
        match self {
            Term::Nil => Some(&[]),
            Term::List(items) => Some(items),
            _ => None,
        }
    }

    /// The items of a vector.
    pub fn as_vector(&self) -> Option<&[Term]> {
        match self {
            Term::Vector(items) => Some(items),
            _ => None,
        }
    }

    /// A short name of this term's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Term::Nil => "nil",
            Term::T => "t",
            Term::Int(_) => "integer",
            Term::Float(_) => "float",
            Term::Str(_) => "string",
            Term::Symbol(_) => "symbol",
            Term::Keyword(_) => "keyword",
            Term::Bytes(_) => "byte vector",
            Term::List(_) | Term::Dotted(..) => "list",
            Term::Vector(_) => "vector",
            Term::Agent(_) => "agent",
            Term::Local(_) => "local value",
        }
    }
}

impl PartialEq for Term {
    /// Structural equality; floats compare by bit pattern (so a decoded
    /// `NaN` equals the one encoded) and local values by identity.
    fn eq(&self, other: &Term) -> bool {
        use Term::*;
        match (self, other) {
            (Nil, Nil) | (T, T) => true,
            (Nil, List(v)) | (List(v), Nil) => v.is_empty(),
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Str(a), Str(b)) => a == b,
            (Symbol(a), Symbol(b)) => a == b,
            (Keyword(a), Keyword(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (List(a), List(b)) | (Vector(a), Vector(b)) => a == b,
            (Dotted(a, x), Dotted(b, y)) => a == b && x == y,
            (Agent(a), Agent(b)) => a == b,
            (Local(a), Local(b)) => Arc::ptr_eq(&a.value, &b.value),
            _ => false,
        }
    }
}

impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())
    }
}

impl fmt::Debug for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentRef::Local(serial) => write!(f, "#<AGENT {serial}>"),
            AgentRef::Id(id) => write!(f, "#<AGENT {id:?}>"),
            AgentRef::Remote { id, incarnation } => {
                write!(f, "#<AGENT {id:?} run {incarnation:x}>")
            }
        }
    }
}

impl fmt::Debug for LocalValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Term::Local(self.clone()), f)
    }
}

// Conversions, so building a message is short: `Term::from(3)`,
// `Term::from("text")`, `vec![1.into(), "a".into()].into()`.

impl From<i64> for Term {
    fn from(v: i64) -> Term {
        Term::Int(v)
    }
}
impl From<i32> for Term {
    fn from(v: i32) -> Term {
        Term::Int(v.into())
    }
}
impl From<u32> for Term {
    fn from(v: u32) -> Term {
        Term::Int(v.into())
    }
}
impl From<usize> for Term {
    /// Saturates at `i64::MAX` (unreachable for real lengths and counts).
    fn from(v: usize) -> Term {
        Term::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Term {
    fn from(v: f64) -> Term {
        Term::Float(v)
    }
}
impl From<bool> for Term {
    fn from(v: bool) -> Term {
        if v {
            Term::T
        } else {
            Term::Nil
        }
    }
}
impl From<&str> for Term {
    fn from(v: &str) -> Term {
        Term::Str(v.to_owned())
    }
}
impl From<String> for Term {
    fn from(v: String) -> Term {
        Term::Str(v)
    }
}
impl From<Symbol> for Term {
    fn from(v: Symbol) -> Term {
        Term::Symbol(v)
    }
}
impl From<AgentRef> for Term {
    fn from(v: AgentRef) -> Term {
        Term::Agent(v)
    }
}
impl From<Vec<Term>> for Term {
    /// A vector of terms becomes a proper list (`NIL` when empty); use
    /// [`Term::Vector`] for `#(…)`.
    fn from(v: Vec<Term>) -> Term {
        Term::list(v)
    }
}
impl From<Vec<u8>> for Term {
    fn from(v: Vec<u8>) -> Term {
        Term::Bytes(v)
    }
}
impl From<Option<Term>> for Term {
    fn from(v: Option<Term>) -> Term {
        v.unwrap_or(Term::Nil)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_is_nil() {
        assert_eq!(Term::list(vec![]), Term::Nil);
        assert_eq!(Term::List(vec![]), Term::Nil);
        assert!(Term::List(vec![]).is_nil());
    }

    #[test]
    fn dotted_normalises() {
        let a = Term::from(1);
        assert_eq!(
            Term::dotted(vec![a.clone()], Term::Nil),
            Term::list(vec![a.clone()])
        );
        assert_eq!(
            Term::dotted(vec![a.clone()], Term::list(vec![2.into()])),
            Term::list(vec![a.clone(), 2.into()])
        );
        assert_eq!(Term::dotted(vec![], 5.into()), Term::from(5));
        assert!(matches!(Term::cons(a, 2.into()), Term::Dotted(..)));
    }

    #[test]
    fn floats_compare_by_bits() {
        assert_eq!(Term::Float(f64::NAN), Term::Float(f64::NAN));
        assert_ne!(Term::Float(0.0), Term::Float(-0.0));
    }

    #[test]
    fn local_values_compare_by_identity() {
        let a = Term::local(5u8);
        assert_eq!(a, a.clone());
        assert_ne!(a, Term::local(5u8));
        assert_eq!(a.downcast_local::<u8>(), Some(&5));
    }
}
