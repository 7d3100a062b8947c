//! How an agent ended ([`Outcome`]) and what an agent function's return
//! value means for it ([`IntoOutcome`], [`Values`]).

use super::*;

/// How an agent ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Its function returned these values.
    Returned(Vec<Term>),
    /// It was killed, panicked, or its function returned an error: the
    /// reason.
    Exited(Term),
}

impl Outcome {
    /// The exit notification a monitor receives: `(agent :OK . values)` or
    /// `(agent :EXIT . reason)`.
    pub fn notification(&self, agent: Term) -> Term {
        match self {
            Outcome::Returned(values) => {
                let mut items = Vec::with_capacity(values.len() + 2);
                items.push(agent);
                items.push(Term::Keyword("OK".into()));
                items.extend(values.iter().cloned());
                Term::List(items)
            }
            Outcome::Exited(reason) => {
                Term::dotted(vec![agent, Term::Keyword("EXIT".into())], reason.clone())
            }
        }
    }

    /// The inverse of [`Outcome::notification`]: the agent a notification
    /// is about and how it ended, if `term` has that shape, `(agent :OK .
    /// values)` or `(agent :EXIT . reason)` (a list reason arrives spliced
    /// in: `(agent :EXIT :NOCONNECTION "h/n")` is the reason
    /// `(:NOCONNECTION "h/n")`). The agent may be a reference, an id string
    /// or a `:NAME`.
    ///
    /// ```
    /// use erlangen::{Outcome, Term};
    /// let notice = Outcome::Exited(Term::keyword("stop")).notification(Term::keyword("w"));
    /// assert_eq!(
    ///     Outcome::from_notification(&notice),
    ///     Some((Term::keyword("w"), Outcome::Exited(Term::keyword("stop"))))
    /// );
    /// ```
    pub fn from_notification(term: &Term) -> Option<(Term, Outcome)> {
        let (agent, exited, rest, tail) = Self::notification_parts(term)?;
        let outcome = if exited {
            Outcome::Exited(Term::dotted(
                rest.to_vec(),
                tail.cloned().unwrap_or(Term::Nil),
            ))
        } else {
            Outcome::Returned(rest.to_vec())
        };
        Some((agent.clone(), outcome))
    }

    /// Whether `term` has the shape of a notification (what
    /// [`Outcome::from_notification`] takes apart), without copying it: for
    /// selective receives that look at every message.
    pub fn is_notification(term: &Term) -> bool {
        Self::notification_parts(term).is_some()
    }

    /// (agent, exited, the items after the kind, the dotted tail).
    pub(super) fn notification_parts(term: &Term) -> Option<(&Term, bool, &[Term], Option<&Term>)> {
        let (items, tail) = match term {
            Term::Dotted(items, tail) => (items.as_slice(), Some(&**tail)),
            Term::List(items) => (items.as_slice(), None),
            _ => return None,
        };
        let [agent, Term::Keyword(kind), rest @ ..] = items else {
            return None;
        };
        if !matches!(agent, Term::Agent(_) | Term::Str(_) | Term::Keyword(_)) {
            return None;
        }
        match (kind.as_str(), tail) {
            ("EXIT", _) => Some((agent, true, rest, tail)),
            ("OK", None) => Some((agent, false, rest, None)),
            _ => None,
        }
    }

    /// The reason linked agents are killed with: the kill reason itself, or
    /// `(:OK . values)` for a normal return (the seed kills links on every
    /// exit, normal or not).
    pub fn link_reason(&self) -> Term {
        match self {
            Outcome::Returned(values) => {
                Term::dotted(vec![Term::Keyword("OK".into())], Term::list(values.clone()))
            }
            Outcome::Exited(reason) => reason.clone(),
        }
    }
}

/// What an agent function's return value means for its exit. Implemented
/// for `()` (no values), [`Term`], [`Values`], every type convertible into
/// a term, and `Result<T, E>` where `Err(e)` exits with `e.into_reason()`.
pub trait IntoOutcome {
    /// The outcome.
    fn into_outcome(self) -> Outcome;
}

/// Several return values: `(agent :OK v1 v2 …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Values(pub Vec<Term>);

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Returned(Vec::new())
    }
}
impl IntoOutcome for Values {
    fn into_outcome(self) -> Outcome {
        Outcome::Returned(self.0)
    }
}
impl<T: Into<Term>> IntoOutcome for T {
    fn into_outcome(self) -> Outcome {
        Outcome::Returned(vec![self.into()])
    }
}
impl<T: IntoOutcome, E: IntoReason> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(v) => v.into_outcome(),
            Err(e) => Outcome::Exited(e.into_reason()),
        }
    }
}

/// Names the never type `!` on stable Rust: the output of `fn() -> !`.
pub trait FnOutput {
    /// The function's return type.
    type Output;
}
impl<T> FnOutput for fn() -> T {
    type Output = T;
}
/// The never type, the return type of an agent function that never
/// returns (it ends in `panic!`, `exit_current` or an endless loop).
type Never = <fn() -> ! as FnOutput>::Output;

/// So that `spawn(|| { receive(); panic!("boom") })` compiles as written:
/// the closure's return type is `!` falling back to `()`, and since Rust
/// 1.8x a fallback that a trait bound depends on is an error
/// (`dependency_on_unit_never_type_fallback`) unless the bound also holds
/// for `!`. With this, `!` is `Into<Term>`, hence [`IntoOutcome`].
impl From<Never> for Term {
    fn from(never: Never) -> Term {
        match never {}
    }
}
