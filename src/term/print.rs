//! Printing terms in Common Lisp reader syntax (the inverse of `read`).

use std::fmt::{self, Write};
use std::sync::Arc;

use super::value::{AgentRef, LocalValue, Term};

impl fmt::Display for Term {
    /// Writes the term as Common Lisp text: `(#<AGENT 3> :OK #(3 5 7))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Nil => f.write_str("NIL"),
            Term::T => f.write_str("T"),
            Term::Int(i) => write!(f, "{i}"),
            Term::Float(x) => write_float(*x, f),
            Term::Str(s) => write_string(s, f),
            Term::Symbol(s) => {
                if let Some(p) = &s.package {
                    write_symbol_name(p, f)?;
                    f.write_char(':')?;
                }
                write_symbol_name(&s.name, f)
            }
            Term::Keyword(k) => {
                f.write_char(':')?;
                write_symbol_name(k, f)
            }
            Term::Bytes(b) => {
                f.write_str("#.(BYTES \"")?;
                for byte in b {
                    write!(f, "{byte:02X}")?;
                }
                f.write_str("\")")
            }
            Term::List(items) => write_seq("(", items, None, f),
            Term::Dotted(items, tail) => write_seq("(", items, Some(tail), f),
            Term::Vector(items) => write_seq("#(", items, None, f),
            // Decimal: a bare hex number (`#<AGENT 21>` after `#<AGENT F>`)
            // reads as decimal to a person.
            Term::Agent(AgentRef::Local(serial)) => write!(f, "#<AGENT {serial}>"),
            // An id prints as the string it is written as, so the original's
            // walkthrough output (`("localhost/b/0" :OK …)`) is unchanged.
            Term::Agent(AgentRef::Id(id) | AgentRef::Remote { id, .. }) => write_string(id, f),
            Term::Local(v) => write_local(v, f),
        }
    }
}

/// A labeled local value prints as `#<LABEL>` (functions label themselves
/// `FUNCTION NAME`); any other as `#<LOCAL-VALUE n>`, `n` telling values
/// apart (they compare by identity).
fn write_local(v: &LocalValue, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some(label) = v.label() {
        return write!(f, "#<{label}>");
    }
    let address = Arc::as_ptr(v.value()) as *const () as usize;
    write!(f, "#<LOCAL-VALUE {address:X}>")
}

fn write_seq(
    open: &str,
    items: &[Term],
    tail: Option<&Term>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_char(' ')?;
        }
        write!(f, "{item}")?;
    }
    if let Some(tail) = tail {
        write!(f, " . {tail}")?;
    }
    f.write_char(')')
}

fn write_string(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

/// Symbol names that would not read back as the same symbol are written
/// between bars, as Common Lisp does: `|foo bar|`.
fn write_symbol_name(name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let plain = !name.is_empty()
        && name.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_lowercase()
                && !matches!(
                    c,
                    '(' | ')' | '"' | '\'' | ';' | '|' | '\\' | ':' | '#' | '`' | ','
                )
        })
        && super::read::number_token(name).is_none()
        && name != ".";
    if plain {
        return f.write_str(name);
    }
    f.write_char('|')?;
    for c in name.chars() {
        if c == '|' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('|')
}

/// Floats always carry a `.` or an exponent so they read back as floats;
/// non-finite values use SBCL's `#.` spellings.
fn write_float(x: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if x.is_nan() {
        return f.write_str("#.DOUBLE-FLOAT-NAN");
    }
    if x.is_infinite() {
        return f.write_str(if x > 0.0 {
            "#.DOUBLE-FLOAT-POSITIVE-INFINITY"
        } else {
            "#.DOUBLE-FLOAT-NEGATIVE-INFINITY"
        });
    }
    let text = format!("{x:?}");
    f.write_str(&text)
}
