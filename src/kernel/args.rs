//! Argument helpers shared by every group of built-ins: arity checks, the
//! bad-argument error, seconds, string and `:node` arguments, property
//! list lookup. A leaf: it knows terms and calls, nothing of the kernel.

use std::time::Duration;

use crate::call::{self, keyword_args, CallError};
use crate::term::Term;

/// The error of a call with a bad argument.
pub(super) fn bad(function: &str, message: impl Into<String>) -> CallError {
    CallError::bad_arguments(function, message)
}

/// Checks that `args` has `min` to `max` elements.
pub(super) fn arity(
    function: &str,
    args: &[Term],
    min: usize,
    max: usize,
) -> Result<(), CallError> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            call::count_of(min, "argument")
        } else {
            format!("{min} to {max} arguments")
        };
        return Err(bad(
            function,
            format!("expected {expected}, got {}", args.len()),
        ));
    }
    Ok(())
}

/// A non-negative number of seconds (integer or float).
pub(super) fn seconds(function: &str, t: &Term) -> Result<Duration, CallError> {
    let secs = match t {
        Term::Int(i) if *i >= 0 => *i as f64,
        Term::Float(f) if *f >= 0.0 && f.is_finite() => *f,
        other => {
            return Err(bad(
                function,
                format!("expected a number of seconds, got {other}"),
            ))
        }
    };
    Ok(Duration::from_secs_f64(secs.min(1e9)))
}

/// A string argument for key `key`: a string as it is, a symbol or keyword
/// by its name in lower case.
pub(super) fn string_arg(function: &str, key: &str, t: &Term) -> Result<String, CallError> {
    match t {
        Term::Str(s) => Ok(s.clone()),
        Term::Symbol(s) => Ok(s.name.to_lowercase()),
        Term::Keyword(k) => Ok(k.to_lowercase()),
        other => Err(bad(
            function,
            format!(":{key} expects a string, got {other}"),
        )),
    }
}

/// Whether `call` is `(name …)` or `(erlangen:name …)`.
pub(super) fn is_call_of(call: &Term, name: &str) -> bool {
    matches!(call.as_list().and_then(<[Term]>::first), Some(Term::Symbol(s))
        if s.name == name && s.package.as_deref().is_none_or(|p| p == "ERLANGEN"))
}

/// The value of key `key` in property list `plist`.
pub(super) fn getf<'a>(plist: &'a Term, key: &str) -> Option<&'a Term> {
    plist
        .as_list()?
        .chunks(2)
        .find(|c| matches!(&c[0], Term::Keyword(k) if k == key))
        .and_then(|c| c.get(1))
}

/// The `:node` keyword argument as a string, if given.
pub(super) fn node_key(function: &str, args: &[Term]) -> Result<Option<String>, CallError> {
    let (_, keys) = keyword_args(function, args, 0, &["NODE"])?;
    keys.get("NODE")
        .map(|n| string_arg(function, "node", n))
        .transpose()
}

/// An unsigned number as a term: an integer, or, above the largest term
/// integer (2^63 - 1; only another implementation's incarnation can be),
/// its decimal digits as a string rather than a wrapped negative number.
pub(super) fn count_term(n: u64) -> Term {
    i64::try_from(n).map_or_else(|_| Term::Str(n.to_string()), Term::Int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plist_lookup() {
        let p = Term::plist(vec![("a", Term::Int(1)), ("b", Term::Int(2))]);
        assert_eq!(getf(&p, "B"), Some(&Term::Int(2)));
        assert_eq!(getf(&p, "C"), None);
    }
}
