//! Terms to Rust values and back: [`IntoTerm`] builds a term from a Rust
//! value, [`FromTerm`] takes one apart, and [`Term::decode`] does it in one
//! call, with an error that says which element did not fit.
//!
//! ```
//! use erlangen::term::{read, IntoTerm, Keyword, TermError};
//! use erlangen::{AgentRef, Term};
//!
//! let message = read("(:square 7 #(1 2 3))").unwrap();
//! let (op, n, weights): (Keyword, i64, Vec<i64>) = message.decode().unwrap();
//! assert_eq!((op.0.as_str(), n, weights), ("SQUARE", 7, vec![1, 2, 3]));
//!
//! let bad = read("(:square \"x\")").unwrap();
//! let error: TermError = bad.decode::<(Keyword, i64)>().unwrap_err();
//! assert_eq!(error.to_string(), "element 2 of the list: expected an integer, got \"x\"");
//!
//! // And back: a tuple is a list, an `Option` is its value or NIL.
//! let reply = (Keyword::new("ok"), 49, None::<String>).into_term();
//! assert_eq!(reply.to_string(), "(:OK 49 NIL)");
//! ```
//!
//! # The mapping
//!
//! | Rust | term it becomes | terms it is taken from |
//! |---|---|---|
//! | `i64`, `i32`, `i16`, `i8`, `isize`, `u64`, `u32`, `u16`, `usize` | an integer | an integer in the type's range |
//! | `f64` | a float | a float, or an integer (as the nearest float) |
//! | `bool` | `T` or `NIL` | `T` or `NIL` only |
//! | `String`, `&str` (into only) | a string | a string |
//! | [`Keyword`] | a keyword `:NAME` | a keyword |
//! | [`Symbol`] | a symbol | a symbol |
//! | [`AgentRef`], `Agent`, `&Agent` (into only) | an agent | an agent term; for `Agent`, one of this process that has not exited |
//! | `Target` | (from only) | an agent term, a `:NAME` keyword or a string (a name or an id `"host/node/aid"`) |
//! | `Vec<T>` | a proper list (`NIL` when empty) | a proper list (`NIL` is the empty one) or a vector `#(…)` |
//! | `Vec<u8>` | a byte vector | a byte vector |
//! | `Option<T>` | `NIL` for `None`, else the value's term | `NIL` is `None`, anything else `Some` |
//! | tuples of 1 to 6 | a list of that many elements | a proper list of exactly that many |
//! | [`Term`] | itself | anything (to take a part as it is) |
//!
//! What `NIL` means follows from Lisp, where it is false, the empty list
//! and "nothing" at once:
//!
//! - **`bool` is strict.** Only `T` and `NIL` decode as a `bool`; Lisp would
//!   call any other value true, but a `3` where a flag was expected is more
//!   likely a mistake than a yes. [`Term::is_true`] is the Lisp reading.
//! - **`NIL` is `None`.** So `Some(false)` and `Some(vec![])`, which become
//!   `NIL`, come back as `None`: an `Option` of a `bool` or a `Vec` does
//!   not round-trip its `Some` of false or of nothing.
//! - **`NIL` is the empty list**, so it decodes as an empty `Vec` (and as
//!   the empty tuple's list), and an empty `Vec` becomes `NIL`.
//! - **`u8` is not an integer here**, so that `Vec<u8>` can be the byte
//!   vector it is everywhere else in the crate (`Term::from(vec![1u8])`).
//!
//! Elements are numbered from 1 in error messages: `element 2 of the list`
//! is the second. The term shown after `got` is cut to 60 characters.

use std::borrow::Cow;
use std::fmt;

use super::value::{AgentRef, Symbol, Term};

/// A Rust value that can become a [`Term`]: see the [module](self) for
/// the mapping.
pub trait IntoTerm {
    /// This value as a term.
    fn into_term(self) -> Term;
}

/// A Rust value that can be taken from a [`Term`]: see the [module](self)
/// for the mapping.
pub trait FromTerm: Sized {
    /// The value `term` holds.
    ///
    /// # Errors
    /// [`TermError`] when `term` (or an element of it) is not of the shape
    /// the type expects; the error names the element.
    fn from_term(term: &Term) -> Result<Self, TermError>;
}

impl Term {
    /// Takes this term apart into a Rust value: `let (n, to): (i64,
    /// AgentRef) = message.decode()?`. See [`convert`](super::convert) for
    /// which terms each type is taken from.
    ///
    /// # Errors
    /// [`TermError`], naming the element that did not fit, what was
    /// expected there and what was found.
    pub fn decode<T: FromTerm>(&self) -> Result<T, TermError> {
        T::from_term(self)
    }
}

/// A keyword's name, upper-case and without the colon, as a Rust value:
/// `Keyword::new("ok")` is `:OK`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Keyword(pub String);

impl Keyword {
    /// The keyword named `name` (upper-cased, as the reader does).
    pub fn new(name: &str) -> Keyword {
        Keyword(name.to_uppercase())
    }

    /// `true` if this is the keyword `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }
}

impl fmt::Display for Keyword {
    /// `:NAME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", self.0)
    }
}

/// A term that is not of the shape a Rust type expects: where (the path of
/// element numbers from the outside in), what was expected and what was
/// found. Prints as `element 2 of the list: expected an integer, got "x"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermError {
    /// (1-based element number, "list" or "vector"), innermost last.
    path: Vec<(usize, &'static str)>,
    expected: Cow<'static, str>,
    got: String,
}

/// How much of the offending term an error shows.
const SHOWN: usize = 60;

impl TermError {
    /// `term` is not what was `expected` (`"an integer"`, `"a list of 2
    /// elements"`): for [`FromTerm`] implementations of your own.
    pub fn new(expected: impl Into<Cow<'static, str>>, term: &Term) -> TermError {
        let mut got = term.to_string();
        if got.chars().count() > SHOWN {
            got = got.chars().take(SHOWN - 1).collect::<String>() + "…";
        }
        TermError {
            path: Vec::new(),
            expected: expected.into(),
            got,
        }
    }

    /// The same error, one level further in: it happened in element `index`
    /// (0-based) of a list (or, with `vector`, of a vector).
    pub fn in_element(mut self, index: usize, vector: bool) -> TermError {
        let kind = if vector { "vector" } else { "list" };
        self.path.insert(0, (index + 1, kind));
        self
    }

    /// The element numbers (1-based) from the outermost term to the one
    /// that did not fit; empty when it was the term itself.
    pub fn path(&self) -> Vec<usize> {
        self.path.iter().map(|(n, _)| *n).collect()
    }

    /// What was expected there (`"an integer"`).
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// What was found there, printed (cut to 60 characters).
    pub fn got(&self) -> &str {
        &self.got
    }
}

impl fmt::Display for TermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Innermost first: "element 1 of element 3 of the list".
        for (i, (n, _)) in self.path.iter().enumerate().rev() {
            write!(f, "element {n} of ")?;
            if i == 0 {
                write!(f, "the {}: ", self.path[0].1)?;
            }
        }
        write!(f, "expected {}, got {}", self.expected, self.got)
    }
}

impl std::error::Error for TermError {}

// ---- Term itself ----

impl IntoTerm for Term {
    fn into_term(self) -> Term {
        self
    }
}

impl IntoTerm for &Term {
    fn into_term(self) -> Term {
        self.clone()
    }
}

impl FromTerm for Term {
    fn from_term(term: &Term) -> Result<Term, TermError> {
        Ok(term.clone())
    }
}

// ---- numbers ----

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl IntoTerm for $t {
            /// An integer (saturating at `i64::MAX` for wider unsigned values).
            fn into_term(self) -> Term {
                Term::Int(i64::try_from(self).unwrap_or(i64::MAX))
            }
        }

        impl FromTerm for $t {
            fn from_term(term: &Term) -> Result<$t, TermError> {
                match term {
                    Term::Int(i) => <$t>::try_from(*i).map_err(|_| {
                        TermError::new(
                            format!("an integer from {} to {}", <$t>::MIN, <$t>::MAX),
                            term,
                        )
                    }),
                    _ => Err(TermError::new("an integer", term)),
                }
            }
        }
    )*};
}

integers!(i64, i32, i16, i8, isize, u64, u32, u16, usize);

impl IntoTerm for f64 {
    fn into_term(self) -> Term {
        Term::Float(self)
    }
}

impl FromTerm for f64 {
    fn from_term(term: &Term) -> Result<f64, TermError> {
        match term {
            Term::Float(x) => Ok(*x),
            // The nearest float, as Lisp's (float n).
            Term::Int(i) => Ok(*i as f64),
            _ => Err(TermError::new("a float", term)),
        }
    }
}

// ---- bool, text, keywords, symbols, agents ----

impl IntoTerm for bool {
    fn into_term(self) -> Term {
        Term::from(self)
    }
}

impl FromTerm for bool {
    fn from_term(term: &Term) -> Result<bool, TermError> {
        match term {
            Term::T => Ok(true),
            t if t.is_nil() => Ok(false),
            _ => Err(TermError::new("T or NIL", term)),
        }
    }
}

impl IntoTerm for String {
    fn into_term(self) -> Term {
        Term::Str(self)
    }
}

impl IntoTerm for &str {
    fn into_term(self) -> Term {
        Term::Str(self.to_owned())
    }
}

impl FromTerm for String {
    fn from_term(term: &Term) -> Result<String, TermError> {
        match term {
            Term::Str(s) => Ok(s.clone()),
            _ => Err(TermError::new("a string", term)),
        }
    }
}

impl IntoTerm for Keyword {
    fn into_term(self) -> Term {
        Term::Keyword(self.0.to_uppercase())
    }
}

impl FromTerm for Keyword {
    fn from_term(term: &Term) -> Result<Keyword, TermError> {
        match term {
            Term::Keyword(k) => Ok(Keyword(k.clone())),
            _ => Err(TermError::new("a keyword", term)),
        }
    }
}

impl IntoTerm for Symbol {
    fn into_term(self) -> Term {
        Term::Symbol(self)
    }
}

impl FromTerm for Symbol {
    fn from_term(term: &Term) -> Result<Symbol, TermError> {
        match term {
            Term::Symbol(s) => Ok(s.clone()),
            _ => Err(TermError::new("a symbol", term)),
        }
    }
}

impl IntoTerm for AgentRef {
    fn into_term(self) -> Term {
        Term::Agent(self)
    }
}

impl FromTerm for AgentRef {
    fn from_term(term: &Term) -> Result<AgentRef, TermError> {
        match term {
            Term::Agent(a) => Ok(a.clone()),
            _ => Err(TermError::new("an agent", term)),
        }
    }
}

// ---- containers ----

impl<T: IntoTerm> IntoTerm for Vec<T> {
    /// A proper list; `NIL` when empty.
    fn into_term(self) -> Term {
        Term::list(self.into_iter().map(IntoTerm::into_term).collect())
    }
}

impl<T: FromTerm> FromTerm for Vec<T> {
    /// From a proper list (`NIL` is the empty one) or a vector.
    fn from_term(term: &Term) -> Result<Vec<T>, TermError> {
        let (items, vector) = match (term.as_list(), term.as_vector()) {
            (Some(items), _) => (items, false),
            (None, Some(items)) => (items, true),
            (None, None) => return Err(TermError::new("a list", term)),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_term(item).map_err(|e| e.in_element(i, vector)))
            .collect()
    }
}

impl IntoTerm for Vec<u8> {
    /// A byte vector, as `Term::from(Vec<u8>)`.
    fn into_term(self) -> Term {
        Term::Bytes(self)
    }
}

impl FromTerm for Vec<u8> {
    fn from_term(term: &Term) -> Result<Vec<u8>, TermError> {
        match term {
            Term::Bytes(b) => Ok(b.clone()),
            _ => Err(TermError::new("a byte vector", term)),
        }
    }
}

impl<T: IntoTerm> IntoTerm for Option<T> {
    /// `NIL` for `None`.
    fn into_term(self) -> Term {
        self.map_or(Term::Nil, IntoTerm::into_term)
    }
}

impl<T: FromTerm> FromTerm for Option<T> {
    /// `None` for `NIL`.
    fn from_term(term: &Term) -> Result<Option<T>, TermError> {
        if term.is_nil() {
            Ok(None)
        } else {
            T::from_term(term).map(Some)
        }
    }
}

/// The items of `term` if it is a proper list of exactly `n`.
fn list_of(term: &Term, n: usize) -> Result<&[Term], TermError> {
    match term.as_list() {
        Some(items) if items.len() == n => Ok(items),
        _ if n == 1 => Err(TermError::new("a list of 1 element", term)),
        _ => Err(TermError::new(format!("a list of {n} elements"), term)),
    }
}

macro_rules! tuples {
    ($($n:literal: ($($t:ident $i:tt),+);)*) => {$(
        impl<$($t: IntoTerm),+> IntoTerm for ($($t,)+) {
            /// A list of the elements in order.
            fn into_term(self) -> Term {
                Term::list(vec![$(self.$i.into_term()),+])
            }
        }

        impl<$($t: IntoTerm),+> From<($($t,)+)> for Term {
            /// A list of the elements in order (as [`IntoTerm`]), so a
            /// tuple can be sent as it is: `send((Keyword::new("ok"), 42), to)`.
            fn from(tuple: ($($t,)+)) -> Term {
                tuple.into_term()
            }
        }

        impl<$($t: FromTerm),+> FromTerm for ($($t,)+) {
            /// From a proper list of exactly as many elements.
            fn from_term(term: &Term) -> Result<Self, TermError> {
                let items = list_of(term, $n)?;
                Ok(($($t::from_term(&items[$i]).map_err(|e| e.in_element($i, false))?,)+))
            }
        }
    )*};
}

tuples! {
    1: (A 0);
    2: (A 0, B 1);
    3: (A 0, B 1, C 2);
    4: (A 0, B 1, C 2, D 3);
    5: (A 0, B 1, C 2, D 3, E 4);
    6: (A 0, B 1, C 2, D 3, E 4, F 5);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::read;

    fn t(text: &str) -> Term {
        read(text).unwrap()
    }

    /// `value` becomes `text`, and `text` decodes to `value`.
    fn both_ways<T: IntoTerm + FromTerm + Clone + PartialEq + fmt::Debug>(value: T, text: &str) {
        assert_eq!(value.clone().into_term().to_string(), text);
        assert_eq!(t(text).decode::<T>(), Ok(value));
    }

    fn error<T: FromTerm + fmt::Debug>(text: &str) -> String {
        t(text).decode::<T>().unwrap_err().to_string()
    }

    #[test]
    fn integers_both_ways_and_ranges_checked() {
        both_ways(42i64, "42");
        both_ways(i64::MIN, &i64::MIN.to_string());
        both_ways(-7i32, "-7");
        both_ways(-7i16, "-7");
        both_ways(-7i8, "-7");
        both_ways(-7isize, "-7");
        both_ways(7u16, "7");
        both_ways(7u32, "7");
        both_ways(7u64, "7");
        both_ways(7usize, "7");
        assert_eq!(u64::MAX.into_term(), Term::Int(i64::MAX));
        assert_eq!(
            error::<u32>("-1"),
            "expected an integer from 0 to 4294967295, got -1"
        );
        assert_eq!(
            error::<i8>("300"),
            "expected an integer from -128 to 127, got 300"
        );
        assert_eq!(error::<i64>("\"x\""), "expected an integer, got \"x\"");
        assert_eq!(error::<i64>("1.5"), "expected an integer, got 1.5");
    }

    #[test]
    fn floats_take_integers_too() {
        both_ways(1.5f64, "1.5");
        assert_eq!(t("3").decode::<f64>(), Ok(3.0));
        assert_eq!(error::<f64>(":x"), "expected a float, got :X");
    }

    #[test]
    fn bool_is_t_or_nil_only() {
        both_ways(true, "T");
        both_ways(false, "NIL");
        assert_eq!(t("()").decode::<bool>(), Ok(false));
        assert_eq!(error::<bool>("3"), "expected T or NIL, got 3");
    }

    #[test]
    fn strings_keywords_symbols() {
        both_ways(String::from("hi \"you\""), "\"hi \\\"you\\\"\"");
        assert_eq!("x".into_term(), Term::from("x"));
        both_ways(Keyword::new("ok"), ":OK");
        assert_eq!(Keyword("ok".into()).into_term(), Term::keyword("ok"));
        assert!(Keyword::new("ok").is("OK"));
        assert_eq!(Keyword::new("ok").to_string(), ":OK");
        both_ways(Symbol::new("car"), "CAR");
        assert_eq!(error::<String>(":x"), "expected a string, got :X");
        assert_eq!(error::<Keyword>("\"x\""), "expected a keyword, got \"x\"");
        assert_eq!(error::<Symbol>("1"), "expected a symbol, got 1");
    }

    #[test]
    fn agent_refs() {
        let id = AgentRef::Id("h/n/3".into());
        assert_eq!(id.clone().into_term(), Term::Agent(id.clone()));
        assert_eq!(Term::Agent(id.clone()).decode::<AgentRef>(), Ok(id));
        assert_eq!(
            error::<AgentRef>("\"h/n/3\""),
            "expected an agent, got \"h/n/3\""
        );
    }

    #[test]
    fn vecs_from_lists_and_vectors() {
        both_ways(vec![1i64, 2, 3], "(1 2 3)");
        both_ways(Vec::<i64>::new(), "NIL");
        assert_eq!(t("#(1 2)").decode::<Vec<i64>>(), Ok(vec![1, 2]));
        assert_eq!(
            error::<Vec<i64>>("(1 \"x\")"),
            "element 2 of the list: expected an integer, got \"x\""
        );
        assert_eq!(
            error::<Vec<i64>>("#(1 2 :three)"),
            "element 3 of the vector: expected an integer, got :THREE"
        );
        assert_eq!(error::<Vec<i64>>("5"), "expected a list, got 5");
        assert_eq!(error::<Vec<i64>>("(1 . 2)"), "expected a list, got (1 . 2)");
        both_ways(vec![1u8, 2], "#.(BYTES \"0102\")");
        assert_eq!(
            error::<Vec<u8>>("(1 2)"),
            "expected a byte vector, got (1 2)"
        );
    }

    #[test]
    fn options_and_nil() {
        both_ways(Some(3i64), "3");
        both_ways(None::<i64>, "NIL");
        // NIL is None, so these do not come back as Some.
        assert_eq!(Some(false).into_term().decode::<Option<bool>>(), Ok(None));
        assert_eq!(
            Some(Vec::<i64>::new())
                .into_term()
                .decode::<Option<Vec<i64>>>(),
            Ok(None)
        );
        assert_eq!(error::<Option<i64>>(":x"), "expected an integer, got :X");
    }

    #[test]
    fn tuples_one_to_six() {
        both_ways((1i64,), "(1)");
        both_ways((1i64, "a".to_string()), "(1 \"a\")");
        both_ways((1i64, 2u32, 3.5f64), "(1 2 3.5)");
        both_ways((Keyword::new("a"), 1i64, true, false), "(:A 1 T NIL)");
        both_ways((1i64, 2i64, 3i64, 4i64, 5i64), "(1 2 3 4 5)");
        both_ways(
            (1i64, 2i64, 3i64, 4i64, 5i64, vec![String::from("six")]),
            "(1 2 3 4 5 (\"six\"))",
        );
        assert_eq!(Term::from((Keyword::new("ok"), 42i64)), t("(:ok 42)"));
        assert_eq!(
            error::<(i64, i64)>("(1 2 3)"),
            "expected a list of 2 elements, got (1 2 3)"
        );
        assert_eq!(
            error::<(i64,)>("NIL"),
            "expected a list of 1 element, got NIL"
        );
        assert_eq!(
            error::<(Keyword, i64)>("(:square \"x\")"),
            "element 2 of the list: expected an integer, got \"x\""
        );
    }

    #[test]
    fn nested_errors_name_the_path() {
        let error = t("(:job ((\"a\" 1) (\"b\" x)))")
            .decode::<(Keyword, Vec<(String, i64)>)>()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "element 2 of element 2 of element 2 of the list: expected an integer, got X"
        );
        assert_eq!(error.path(), vec![2, 2, 2]);
        assert_eq!(error.expected(), "an integer");
        assert_eq!(error.got(), "X");
        let error = t("(1 #(2 \"x\"))").decode::<(i64, Vec<i64>)>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "element 2 of element 2 of the list: expected an integer, got \"x\""
        );
    }

    #[test]
    fn long_terms_are_cut_in_errors() {
        let long = Term::from("x".repeat(500));
        let error = long.decode::<i64>().unwrap_err();
        assert_eq!(error.got().chars().count(), 60);
        assert!(error.got().ends_with('…'));
    }

    #[test]
    fn terms_pass_through() {
        let (k, rest): (Keyword, Term) = t("(:call (1 2))").decode().unwrap();
        assert_eq!((k.0.as_str(), rest), ("CALL", t("(1 2)")));
        assert_eq!((&t("(1)")).into_term(), t("(1)"));
    }
}
