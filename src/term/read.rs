//! Reading terms from Common Lisp text (SPEC section 4): the inverse of the
//! printer in `print.rs`.
//!
//! Supported: integers (64-bit; larger is an error), floats (`1.5`, `1e3`,
//! `1.5d0`), strings with `\` escapes, symbols (case-insensitive, printed
//! upper-case; `|Mixed Case|` keeps case; `package:name`), keywords, `'x`,
//! lists, dotted lists, `#(…)` vectors, `#.(BYTES "hex")` byte vectors, the
//! three non-finite float constants after `#.`, `;` and `#| |#` comments.
//! `#<…>` (how agents print) is an "unreadable object" error, as in CL.
//!
//! Nesting is limited ([`ReadLimits::max_depth`]) so hostile text cannot
//! overflow the stack.

use std::fmt;

use super::value::{Symbol, Term};

/// Limits of the reader.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Deepest nesting of lists and vectors (default 128).
    pub max_depth: usize,
    /// Largest input in bytes (default 16 MiB).
    pub max_size: usize,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_depth: 128,
            max_size: 16 * 1024 * 1024,
        }
    }
}

/// A reader error, with the line and column (1-based) where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// Line of the error, from 1.
    pub line: usize,
    /// Column of the error, from 1 (in characters).
    pub column: usize,
    /// What was wrong or expected.
    pub message: String,
    incomplete: bool,
}

impl ReadError {
    /// `true` when the text ended inside a form (an open list or string):
    /// more input may complete it.
    pub fn is_incomplete(&self) -> bool {
        self.incomplete
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read error at line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ReadError {}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
    limits: &'a ReadLimits,
}

/// Reads exactly one form; whitespace and comments may surround it.
///
/// # Errors
/// [`ReadError`] for malformed text, no form, or anything after the form.
pub fn read(text: &str) -> Result<Term, ReadError> {
    read_with(text, &ReadLimits::default())
}

/// [`read`] with explicit limits.
///
/// # Errors
/// As [`read`].
pub fn read_with(text: &str, limits: &ReadLimits) -> Result<Term, ReadError> {
    let mut r = Reader::new(text, limits)?;
    r.skip_atmosphere()?;
    if r.at_end() {
        return Err(r.incomplete("a form"));
    }
    let term = r.form(0)?;
    r.skip_atmosphere()?;
    if !r.at_end() {
        return Err(r.error("unexpected text after the form"));
    }
    Ok(term)
}

/// Reads every form in the text.
///
/// # Errors
/// The first [`ReadError`].
pub fn read_all(text: &str) -> Result<Vec<Term>, ReadError> {
    let limits = ReadLimits::default();
    let mut r = Reader::new(text, &limits)?;
    let mut out = Vec::new();
    loop {
        r.skip_atmosphere()?;
        if r.at_end() {
            return Ok(out);
        }
        out.push(r.form(0)?);
    }
}

/// Reads the first form and returns it with the byte offset just after it;
/// `Ok(None)` if the text holds only whitespace and comments.
///
/// # Errors
/// [`ReadError`]; [`ReadError::is_incomplete`] tells whether more text could
/// complete the form.
pub fn read_prefix(text: &str) -> Result<Option<(Term, usize)>, ReadError> {
    let limits = ReadLimits::default();
    let mut r = Reader::new(text, &limits)?;
    r.skip_atmosphere()?;
    if r.at_end() {
        return Ok(None);
    }
    let term = r.form(0)?;
    Ok(Some((term, r.pos)))
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'' | ';' | '`' | ',')
}

impl<'a> Reader<'a> {
    fn new(text: &'a str, limits: &'a ReadLimits) -> Result<Reader<'a>, ReadError> {
        let r = Reader {
            text,
            pos: 0,
            limits,
        };
        if text.len() > limits.max_size {
            return Err(r.error(&format!(
                "input of {} bytes exceeds the maximum of {} (max size setting)",
                text.len(),
                limits.max_size
            )));
        }
        Ok(r)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.text[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn position(&self) -> (usize, usize) {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn error(&self, message: &str) -> ReadError {
        let (line, column) = self.position();
        ReadError {
            line,
            column,
            message: message.to_owned(),
            incomplete: false,
        }
    }

    fn incomplete(&self, expected: &str) -> ReadError {
        let mut e = self.error(&format!("end of input, expected {expected}"));
        e.incomplete = true;
        e
    }

    /// Skips whitespace and comments.
    fn skip_atmosphere(&mut self) -> Result<(), ReadError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some(';') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('#') if self.peek2() == Some('|') => {
                    self.pos += 2;
                    let mut depth = 1;
                    while depth > 0 {
                        match self.bump() {
                            None => return Err(self.incomplete("|# to close the comment")),
                            Some('|') if self.peek() == Some('#') => {
                                self.bump();
                                depth -= 1;
                            }
                            Some('#') if self.peek() == Some('|') => {
                                self.bump();
                                depth += 1;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn form(&mut self, depth: usize) -> Result<Term, ReadError> {
        if depth >= self.limits.max_depth {
            return Err(self.error(&format!(
                "nesting deeper than {} (max depth setting)",
                self.limits.max_depth
            )));
        }
        self.skip_atmosphere()?;
        let c = self.peek().ok_or_else(|| self.incomplete("a form"))?;
        match c {
            '(' => {
                self.bump();
                self.list(depth)
            }
            ')' => Err(self.error("unbalanced ')'")),
            '\'' => {
                self.bump();
                let quoted = self.form(depth + 1)?;
                Ok(Term::list(vec![Term::symbol("quote"), quoted]))
            }
            '"' => {
                self.bump();
                self.string().map(Term::Str)
            }
            '#' => self.dispatch(depth),
            '`' | ',' => Err(self.error("backquote syntax is not supported")),
            _ => self.atom(),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Term, ReadError> {
        let mut items = Vec::new();
        loop {
            self.skip_atmosphere()?;
            match self.peek() {
                None => return Err(self.incomplete("')'")),
                Some(')') => {
                    self.bump();
                    return Ok(Term::list(items));
                }
                Some('.') if self.peek2().is_none_or(is_delimiter) => {
                    if items.is_empty() {
                        return Err(self.error("a dot needs an item before it"));
                    }
                    self.bump();
                    let tail = self.form(depth + 1)?;
                    self.skip_atmosphere()?;
                    match self.peek() {
                        None => return Err(self.incomplete("')' after the dotted tail")),
                        Some(')') => {
                            self.bump();
                            return Ok(Term::dotted(items, tail));
                        }
                        Some(_) => return Err(self.error("expected ')' after the dotted tail")),
                    }
                }
                Some(_) => items.push(self.form(depth + 1)?),
            }
        }
    }

    fn string(&mut self) -> Result<String, ReadError> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err(self.incomplete("'\"' to close the string")),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    None => return Err(self.incomplete("a character after '\\'")),
                    Some(c) => s.push(c),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn dispatch(&mut self, depth: usize) -> Result<Term, ReadError> {
        self.bump();
        match self.peek() {
            Some('(') => {
                self.bump();
                match self.list(depth)? {
                    Term::Nil => Ok(Term::Vector(Vec::new())),
                    Term::List(items) => Ok(Term::Vector(items)),
                    _ => Err(self.error("a vector cannot be a dotted list")),
                }
            }
            Some('<') => Err(self.error(
                "unreadable object #<…> (agents are written as id strings or kept in variables)",
            )),
            Some('\'') => {
                // #'f is (function f).
                self.bump();
                let f = self.form(depth + 1)?;
                Ok(Term::list(vec![Term::symbol("function"), f]))
            }
            Some('.') => {
                self.bump();
                self.read_eval(depth)
            }
            None => Err(self.incomplete("a character after '#'")),
            Some(c) => Err(self.error(&format!("unsupported syntax #{c}"))),
        }
    }

    /// `#.` accepts exactly the forms the printer writes, nothing else: no
    /// code is run at read time.
    fn read_eval(&mut self, depth: usize) -> Result<Term, ReadError> {
        let form = self.form(depth + 1)?;
        match &form {
            Term::Symbol(s) if s.package.is_none() => match s.name.as_str() {
                "DOUBLE-FLOAT-NAN" => return Ok(Term::Float(f64::NAN)),
                "DOUBLE-FLOAT-POSITIVE-INFINITY" => return Ok(Term::Float(f64::INFINITY)),
                "DOUBLE-FLOAT-NEGATIVE-INFINITY" => return Ok(Term::Float(f64::NEG_INFINITY)),
                _ => {}
            },
            Term::List(items) => {
                if let [Term::Symbol(s), Term::Str(hex)] = items.as_slice() {
                    if s.package.is_none() && s.name == "BYTES" {
                        return decode_hex(hex).map(Term::Bytes).ok_or_else(|| {
                            self.error("#.(BYTES \"…\") needs an even number of hex digits")
                        });
                    }
                }
            }
            _ => {}
        }
        Err(self.error(
            "#. only reads DOUBLE-FLOAT-NAN, DOUBLE-FLOAT-POSITIVE-INFINITY, DOUBLE-FLOAT-NEGATIVE-INFINITY and (BYTES \"hex\")",
        ))
    }

    /// A token: number, symbol or keyword.
    fn atom(&mut self) -> Result<Term, ReadError> {
        let start = self.pos;
        let mut name = String::new();
        let mut package: Option<String> = None;
        let mut escaped = false;
        let mut colons = 0;
        loop {
            match self.peek() {
                Some('|') => {
                    escaped = true;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.incomplete("'|' to close the symbol name")),
                            Some('|') => break,
                            Some('\\') => match self.bump() {
                                None => return Err(self.incomplete("a character after '\\'")),
                                Some(c) => name.push(c),
                            },
                            Some(c) => name.push(c),
                        }
                    }
                }
                Some('\\') => {
                    escaped = true;
                    self.bump();
                    match self.bump() {
                        None => return Err(self.incomplete("a character after '\\'")),
                        Some(c) => name.push(c),
                    }
                }
                Some(':') => {
                    self.bump();
                    colons += 1;
                    if colons > 1 && !(colons == 2 && package.is_some() && name.is_empty()) {
                        return Err(self.error("too many colons in a symbol"));
                    }
                    if package.is_none() {
                        package = Some(std::mem::take(&mut name));
                    }
                }
                Some(c) if !is_delimiter(c) => {
                    self.bump();
                    name.extend(c.to_uppercase());
                }
                _ => break,
            }
        }
        let token = &self.text[start..self.pos];
        if !escaped && package.is_none() {
            match number_token(token) {
                Some(Ok(number)) => return Ok(number),
                Some(Err(message)) => return Err(self.error(&message)),
                None => {}
            }
            if name == "." {
                return Err(self.error("a dot outside a list"));
            }
        }
        match package {
            Some(p) if p.is_empty() => {
                if name.is_empty() {
                    return Err(self.error("a keyword needs a name"));
                }
                Ok(Term::Keyword(name))
            }
            Some(p) => {
                if name.is_empty() {
                    return Err(self.error("a symbol needs a name after the package"));
                }
                Ok(Term::Symbol(Symbol {
                    package: Some(p),
                    name,
                }))
            }
            None if !escaped && name == "NIL" => Ok(Term::Nil),
            None if !escaped && name == "T" => Ok(Term::T),
            None => Ok(Term::Symbol(Symbol {
                package: None,
                name,
            })),
        }
    }
}

/// What the reader makes of a token without escapes: `None` if it is not a
/// number (so a symbol), `Some(Err)` for an integer too big for 64 bits.
/// The printer uses this to decide which symbol names need bars.
pub(crate) fn number_token(token: &str) -> Option<Result<Term, String>> {
    let too_big = || Some(Err(format!("integer {token} does not fit in 64 bits")));
    let body = token.strip_prefix(['+', '-']).unwrap_or(token);
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        return match token.parse::<i64>() {
            Ok(i) => Some(Ok(Term::Int(i))),
            Err(_) => too_big(),
        };
    }
    // A trailing '.' marks a decimal integer in CL: "12." is 12.
    if let Some(int) = token.strip_suffix('.') {
        let digits = int.strip_prefix(['+', '-']).unwrap_or(int);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match int.parse::<i64>() {
                Ok(i) => Some(Ok(Term::Int(i))),
                Err(_) => too_big(),
            };
        }
    }
    let float_chars = body.bytes().all(|b| {
        b.is_ascii_digit()
            || matches!(
                b,
                b'.' | b'e'
                    | b'E'
                    | b'd'
                    | b'D'
                    | b'f'
                    | b'F'
                    | b's'
                    | b'S'
                    | b'l'
                    | b'L'
                    | b'+'
                    | b'-'
            )
    });
    if !float_chars || !body.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // CL exponent markers d, f, s, l all mean "exponent" here.
    let normalized: String = token
        .chars()
        .map(|c| {
            if matches!(c, 'd' | 'D' | 'f' | 'F' | 's' | 'S' | 'l' | 'L') {
                'e'
            } else {
                c
            }
        })
        .collect();
    normalized.parse::<f64>().ok().map(|x| Ok(Term::Float(x)))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_walkthrough() {
        let t = read("(spawn '(parallel-map 1+ #(2 4 6 8 10 12 14) :level 3) :attach :monitor)")
            .unwrap();
        assert_eq!(
            t.to_string(),
            "(SPAWN (QUOTE (PARALLEL-MAP 1+ #(2 4 6 8 10 12 14) :LEVEL 3)) :ATTACH :MONITOR)"
        );
        let q = read("erlangen.examples:parallel-map").unwrap();
        assert_eq!(
            q,
            Term::Symbol(Symbol::qualified("erlangen.examples", "parallel-map"))
        );
    }

    #[test]
    fn atoms() {
        assert_eq!(read("-42").unwrap(), Term::Int(-42));
        assert_eq!(read("+7").unwrap(), Term::Int(7));
        assert_eq!(read("1.5").unwrap(), Term::Float(1.5));
        assert_eq!(read("1.5d0").unwrap(), Term::Float(1.5));
        assert_eq!(read("-0.0").unwrap(), Term::Float(-0.0));
        assert_eq!(read("1e3").unwrap(), Term::Float(1000.0));
        assert_eq!(read("nil").unwrap(), Term::Nil);
        assert_eq!(read("()").unwrap(), Term::Nil);
        assert_eq!(read("t").unwrap(), Term::T);
        assert_eq!(read(":ok").unwrap(), Term::keyword("OK"));
        assert_eq!(read("1+").unwrap(), Term::symbol("1+"));
        assert_eq!(read("|Mixed Case|").unwrap().to_string(), "|Mixed Case|");
        assert_eq!(read("\"a\\\"b\"").unwrap(), Term::from("a\"b"));
        assert_eq!(read("(1 . 2)").unwrap(), Term::cons(1.into(), 2.into()));
        assert_eq!(
            read("#.(bytes \"00ff\")").unwrap(),
            Term::Bytes(vec![0, 255])
        );
        assert!(read("99999999999999999999")
            .unwrap_err()
            .message
            .contains("64 bits"));
    }

    #[test]
    fn errors_and_incomplete() {
        assert!(read("(1 2").unwrap_err().is_incomplete());
        assert!(read("\"abc").unwrap_err().is_incomplete());
        let e = read("(1 2))").unwrap_err();
        assert!(!e.is_incomplete());
        let e = read("\n  )").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(read("#<AGENT 1>")
            .unwrap_err()
            .message
            .contains("unreadable"));
        assert!(read("#.(launch-missiles)").is_err());
        assert!(read("(. 1)").is_err());
    }

    #[test]
    fn prefix_reading() {
        let (t, n) = read_prefix("  (a b) (c)").unwrap().unwrap();
        assert_eq!(t.to_string(), "(A B)");
        assert_eq!(n, 7);
        assert_eq!(read_prefix("  ; only a comment\n").unwrap(), None);
        assert_eq!(read_all("1 2 3").unwrap().len(), 3);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "(".repeat(100_000);
        let e = read(&deep).unwrap_err();
        assert!(e.message.contains("max depth"), "{e}");
    }
}
