//! The binary form of terms: a version byte, then one tagged value.
//! PROTOCOL.md ("Terms") documents every byte; this file is its one
//! implementation.
//!
//! Decoding treats its input as hostile: every length and count is checked
//! against the bytes that remain *before* anything is allocated (each
//! element takes at least one byte, so the elements that all open
//! collections still expect can never outnumber the bytes left), no
//! collection reserves more than a few thousand slots up front, nesting is
//! limited, strings must be UTF-8, and nothing read is interned. Integers
//! are big-endian.
//!
//! Encoding checks the same [`Limits`] (by default the ones decoders use
//! by default), so a term a receiver would refuse fails at the sender with
//! a typed [`EncodeError`] instead of being sent and dropped.

use std::fmt;
use std::sync::Arc;

use super::value::{AgentRef, Symbol, Term};

/// Format version written before every encoded term.
pub const VERSION: u8 = 1;

/// Tags of encoded values.
pub mod tag {
    /// `NIL` (also the empty list). No payload.
    pub const NIL: u8 = 0x00;
    /// `T`. No payload.
    pub const T: u8 = 0x01;
    /// Integer in one signed byte.
    pub const INT8: u8 = 0x02;
    /// Integer in four bytes, signed big-endian.
    pub const INT32: u8 = 0x03;
    /// Integer in eight bytes, signed big-endian.
    pub const INT64: u8 = 0x04;
    /// IEEE 754 double, its eight bytes big-endian.
    pub const FLOAT: u8 = 0x05;
    /// String: u32 length, UTF-8 bytes.
    pub const STRING: u8 = 0x06;
    /// Symbol without package: u32 length, UTF-8 name.
    pub const SYMBOL: u8 = 0x07;
    /// Symbol with package: u32 length, package, u32 length, name.
    pub const QUALIFIED_SYMBOL: u8 = 0x08;
    /// Keyword: u32 length, UTF-8 name (no colon).
    pub const KEYWORD: u8 = 0x09;
    /// Byte vector: u32 length, bytes.
    pub const BYTES: u8 = 0x0A;
    /// Proper list: u32 count (>= 1), that many values.
    pub const LIST: u8 = 0x0B;
    /// Dotted list: u32 count (>= 1), that many values, then the tail.
    pub const DOTTED: u8 = 0x0C;
    /// Vector: u32 count, that many values.
    pub const VECTOR: u8 = 0x0D;
    /// Agent reference in its node's current run (an id typed as text):
    /// u32 length, UTF-8 id `host/node/aid`.
    pub const AGENT: u8 = 0x0E;
    /// Agent reference to one run of its node: u64 incarnation (non-zero),
    /// u32 length, UTF-8 id `host/node/aid`.
    pub const AGENT_OF_RUN: u8 = 0x0F;
}

/// Limits on what [`decode`] accepts and [`encode_with`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded term in bytes, version byte included (default
    /// 16 MiB).
    pub max_size: usize,
    /// Nesting of lists, dotted lists and vectors must stay *below* this
    /// (default 128): at most `max_depth - 1` collections inside each
    /// other, an empty vector included.
    pub max_depth: usize,
    /// Most elements in one list or vector (default 1 Mi).
    pub max_elements: usize,
    /// Longest string, name or byte vector in bytes (default 16 MiB).
    pub max_string: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_size: 16 * 1024 * 1024,
            max_depth: 128,
            max_elements: 1 << 20,
            max_string: 16 * 1024 * 1024,
        }
    }
}

/// How the node layer names this process's agents on the wire.
pub trait AgentIds {
    /// The id string of the local agent with this serial number and the
    /// incarnation of this node's run, or `None` if it cannot be named (not
    /// a node, or the agent is gone).
    fn wire_id(&self, serial: u64) -> Option<(String, u64)>;
}

/// Names no local agent: terms holding `AgentRef::Local` fail to encode.
struct NoLocalAgents;

impl AgentIds for NoLocalAgents {
    fn wire_id(&self, _: u64) -> Option<(String, u64)> {
        None
    }
}

/// Why a term cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A process-local value (closure, Rust value) cannot leave the process.
    LocalValue(String),
    /// A local agent that has no wire id (this process is not a node).
    LocalAgent(u64),
    /// A string or collection longer than a u32 length can say.
    TooLong(&'static str),
    /// Collections nested `max_depth` deep or more (the max depth setting).
    TooDeep(usize),
    /// A string, name, agent id or byte vector longer than the max string
    /// setting.
    StringTooLong {
        /// What it is ("string", "symbol", …).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The max string setting.
        max: usize,
    },
    /// A list or vector with more elements than the max elements setting.
    TooManyElements {
        /// Its number of elements.
        len: usize,
        /// The max elements setting.
        max: usize,
    },
    /// The encoding would be larger than the max size setting.
    TooBig {
        /// Bytes the encoding reached before it was refused.
        size: usize,
        /// The max size setting.
        max: usize,
    },
    /// An agent reference with an empty id.
    EmptyAgentId,
    /// A `Term::Dotted` without items, or with a tail that is `NIL`, a list
    /// or a dotted list ([`Term::dotted`] builds the right shape).
    MalformedDotted,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::LocalValue(what) => write!(
                f,
                "a {what} only makes sense in this process and cannot be sent to another node"
            ),
            EncodeError::LocalAgent(serial) => write!(
                f,
                "agent #<AGENT {serial:X}> has no id on the wire (this process is not a node)"
            ),
            EncodeError::TooLong(what) => write!(f, "{what} longer than 4 GiB"),
            EncodeError::TooDeep(max) => write!(
                f,
                "term nests {max} or more lists or vectors; at most {} are allowed (max depth setting {max})",
                max.saturating_sub(1)
            ),
            EncodeError::StringTooLong { what, len, max } => write!(
                f,
                "{what} of {len} bytes exceeds the limit {max} (max string setting)"
            ),
            EncodeError::TooManyElements { len, max } => write!(
                f,
                "collection of {len} elements exceeds the limit {max} (max elements setting)"
            ),
            EncodeError::TooBig { size, max } => write!(
                f,
                "encoded term would take at least {size} bytes, over the maximum {max} (max size setting)"
            ),
            EncodeError::EmptyAgentId => f.write_str("agent reference with an empty id"),
            EncodeError::MalformedDotted => f.write_str(
                "dotted list without items or with a list or NIL as its tail (build it with Term::dotted)",
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why bytes are not a term.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes.
    Empty,
    /// The version byte is not [`VERSION`].
    Version(u8),
    /// The input ended inside a value (while reading what is named).
    Truncated(&'static str),
    /// An unknown tag byte.
    UnknownTag(u8, usize),
    /// Bytes left after the term.
    Trailing(usize),
    /// Nesting deeper than the limit.
    TooDeep(usize),
    /// A count larger than the limit or than the bytes left.
    TooMany(u64, usize),
    /// The open collections together still expect more elements (first
    /// number) than bytes remain (second); each element takes at least one
    /// byte, so the input cannot hold them.
    Overcommitted(u64, usize),
    /// A string longer than the limit or than the bytes left.
    TooLong(u64, usize),
    /// The input is larger than the size limit.
    TooBig(usize, usize),
    /// A string or name is not UTF-8.
    BadUtf8(usize),
    /// A value that the format forbids (an empty list tagged LIST, …).
    Invalid(&'static str, usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("no bytes to decode"),
            DecodeError::Version(v) => write!(
                f,
                "unknown term format version {v} (this side speaks {VERSION})"
            ),
            DecodeError::Truncated(what) => write!(f, "input ends inside {what}"),
            DecodeError::UnknownTag(t, at) => write!(f, "unknown tag 0x{t:02x} at byte {at}"),
            DecodeError::Trailing(n) => write!(f, "{n} bytes after the term"),
            DecodeError::TooDeep(max) => write!(
                f,
                "{max} or more nested lists or vectors; at most {} are allowed (max depth setting {max})",
                max.saturating_sub(1)
            ),
            DecodeError::Overcommitted(n, left) => write!(
                f,
                "open lists and vectors still expect {n} elements but only {left} bytes remain (each element takes at least one byte)"
            ),
            DecodeError::TooMany(n, max) => write!(
                f,
                "count {n} exceeds the limit {max} (max elements setting, or bytes left)"
            ),
            DecodeError::TooLong(n, max) => write!(
                f,
                "length {n} exceeds the limit {max} (max string setting, or bytes left)"
            ),
            DecodeError::TooBig(n, max) => write!(
                f,
                "term of {n} bytes exceeds the maximum {max} (max size setting)"
            ),
            DecodeError::BadUtf8(at) => write!(f, "invalid UTF-8 in string at byte {at}"),
            DecodeError::Invalid(what, at) => write!(f, "invalid {what} at byte {at}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn put_len(out: &mut Vec<u8>, n: usize, what: &'static str) -> Result<(), EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLong(what))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Encodes `term` (version byte first), appending to `out`, within the
/// default [`Limits`] (what decoders accept by default). On error `out` is
/// left as it was.
///
/// # Errors
/// [`EncodeError`] for local values, unnamed local agents, malformed
/// dotted lists and anything beyond the default limits.
pub fn encode_into(
    term: &Term,
    out: &mut Vec<u8>,
    agents: &dyn AgentIds,
) -> Result<(), EncodeError> {
    encode_into_with(term, out, agents, &Limits::default())
}

/// Encodes `term` (version byte first), appending to `out`, refusing
/// whatever [`decode`] with the same `limits` would refuse. On error `out`
/// is left as it was.
///
/// # Errors
/// As [`encode_into`], with `limits` instead of the defaults.
pub fn encode_into_with(
    term: &Term,
    out: &mut Vec<u8>,
    agents: &dyn AgentIds,
    limits: &Limits,
) -> Result<(), EncodeError> {
    let start = out.len();
    let mut e = Encoder {
        out,
        start,
        agents,
        limits,
    };
    e.out.push(VERSION);
    let result = e.value(term, 0).and_then(|()| e.check_size(0));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `term` into a new buffer within the default [`Limits`]. Local
/// agents cannot be named here.
///
/// # Errors
/// As [`encode_into`].
pub fn encode(term: &Term) -> Result<Vec<u8>, EncodeError> {
    encode_with(term, &Limits::default())
}

/// Encodes `term` into a new buffer within `limits`. Local agents cannot
/// be named here.
///
/// # Errors
/// As [`encode_into_with`].
pub fn encode_with(term: &Term, limits: &Limits) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(32);
    encode_into_with(term, &mut out, &NoLocalAgents, limits)?;
    Ok(out)
}

/// One encoding in progress: the limits it must respect and where in `out`
/// it began (the size limit counts only this term's bytes).
struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    agents: &'a dyn AgentIds,
    limits: &'a Limits,
}

impl Encoder<'_> {
    /// Fails if the encoding, with `more` bytes still to come, would pass
    /// the size limit. Checked before every string is copied, so a huge
    /// string is refused without being copied.
    fn check_size(&self, more: usize) -> Result<(), EncodeError> {
        let size = (self.out.len() - self.start).saturating_add(more);
        if size > self.limits.max_size {
            return Err(EncodeError::TooBig {
                size,
                max: self.limits.max_size,
            });
        }
        Ok(())
    }

    /// A u32 length and the bytes of a string, name, id or byte vector.
    fn bytes(&mut self, bytes: &[u8], what: &'static str) -> Result<(), EncodeError> {
        if bytes.len() > self.limits.max_string {
            return Err(EncodeError::StringTooLong {
                what,
                len: bytes.len(),
                max: self.limits.max_string,
            });
        }
        self.check_size(4 + bytes.len())?;
        put_len(self.out, bytes.len(), what)?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// An agent reference to one run of its node (AGENT_OF_RUN), or to
    /// the current run (AGENT) when the incarnation is 0.
    fn agent_of_run(&mut self, id: &str, incarnation: u64) -> Result<(), EncodeError> {
        if id.is_empty() {
            return Err(EncodeError::EmptyAgentId);
        }
        if incarnation == 0 {
            self.out.push(tag::AGENT);
        } else {
            self.check_size(9)?;
            self.out.push(tag::AGENT_OF_RUN);
            self.out.extend_from_slice(&incarnation.to_be_bytes());
        }
        self.bytes(id.as_bytes(), "agent id")
    }

    /// A collection's count and items; `depth` counts the collections
    /// around this one.
    fn items(&mut self, items: &[Term], depth: usize) -> Result<(), EncodeError> {
        // The decoder's rule: a collection opens only while fewer than
        // max_depth - 1 are open around it.
        if depth + 1 >= self.limits.max_depth {
            return Err(EncodeError::TooDeep(self.limits.max_depth));
        }
        if items.len() > self.limits.max_elements {
            return Err(EncodeError::TooManyElements {
                len: items.len(),
                max: self.limits.max_elements,
            });
        }
        self.check_size(4 + items.len())?;
        put_len(self.out, items.len(), "list")?;
        for item in items {
            self.value(item, depth + 1)?;
        }
        Ok(())
    }

    fn value(&mut self, term: &Term, depth: usize) -> Result<(), EncodeError> {
        let out = &mut *self.out;
        match term {
            Term::Nil => out.push(tag::NIL),
            Term::T => out.push(tag::T),
            Term::Int(i) => {
                if let Ok(small) = i8::try_from(*i) {
                    out.push(tag::INT8);
                    out.push(small as u8);
                } else if let Ok(mid) = i32::try_from(*i) {
                    out.push(tag::INT32);
                    out.extend_from_slice(&mid.to_be_bytes());
                } else {
                    out.push(tag::INT64);
                    out.extend_from_slice(&i.to_be_bytes());
                }
            }
            Term::Float(x) => {
                out.push(tag::FLOAT);
                out.extend_from_slice(&x.to_bits().to_be_bytes());
            }
            Term::Str(s) => {
                out.push(tag::STRING);
                self.bytes(s.as_bytes(), "string")?;
            }
            Term::Symbol(Symbol {
                package: None,
                name,
            }) => {
                out.push(tag::SYMBOL);
                self.bytes(name.as_bytes(), "symbol")?;
            }
            Term::Symbol(Symbol {
                package: Some(p),
                name,
            }) => {
                out.push(tag::QUALIFIED_SYMBOL);
                self.bytes(p.as_bytes(), "package")?;
                self.bytes(name.as_bytes(), "symbol")?;
            }
            Term::Keyword(k) => {
                out.push(tag::KEYWORD);
                self.bytes(k.as_bytes(), "keyword")?;
            }
            Term::Bytes(b) => {
                out.push(tag::BYTES);
                self.bytes(b, "byte vector")?;
            }
            Term::List(items) if items.is_empty() => out.push(tag::NIL),
            Term::List(items) => {
                out.push(tag::LIST);
                self.items(items, depth)?;
            }
            Term::Dotted(items, tail) => {
                // The decoder refuses these shapes; Term::dotted never
                // builds them.
                if items.is_empty()
                    || matches!(**tail, Term::Nil | Term::List(_) | Term::Dotted(..))
                {
                    return Err(EncodeError::MalformedDotted);
                }
                out.push(tag::DOTTED);
                self.items(items, depth)?;
                self.value(tail, depth + 1)?;
            }
            Term::Vector(items) => {
                out.push(tag::VECTOR);
                self.items(items, depth)?;
            }
            Term::Agent(AgentRef::Id(id)) => {
                if id.is_empty() {
                    return Err(EncodeError::EmptyAgentId);
                }
                out.push(tag::AGENT);
                self.bytes(id.as_bytes(), "agent id")?;
            }
            Term::Agent(AgentRef::Remote { id, incarnation }) => {
                self.agent_of_run(id, *incarnation)?;
            }
            Term::Agent(AgentRef::Local(serial)) => {
                let (id, incarnation) = self
                    .agents
                    .wire_id(*serial)
                    .ok_or(EncodeError::LocalAgent(*serial))?;
                self.agent_of_run(&id, incarnation)?;
            }
            Term::Local(v) => return Err(EncodeError::LocalValue(v.kind().to_owned())),
        }
        Ok(())
    }
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

/// Decodes exactly one term from `bytes`.
///
/// # Errors
/// [`DecodeError`] for anything but one well-formed term within `limits`.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Term, DecodeError> {
    let (term, used) = decode_prefix(bytes, limits)?;
    if used != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - used));
    }
    Ok(term)
}

/// Decodes one term at the start of `bytes`; returns it and the bytes used.
///
/// # Errors
/// As [`decode`], except that trailing bytes are allowed.
pub fn decode_prefix(bytes: &[u8], limits: &Limits) -> Result<(Term, usize), DecodeError> {
    let version = *bytes.first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let mut d = Decoder {
        bytes: &bytes[..bytes.len().min(limits.max_size.saturating_add(1))],
        pos: 1,
        limits,
    };
    let term = d.value()?;
    if d.pos > limits.max_size {
        return Err(DecodeError::TooBig(d.pos, limits.max_size));
    }
    Ok((term, d.pos))
}

impl Decoder<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.left() < n {
            if self.bytes.len() > self.limits.max_size {
                return Err(DecodeError::TooBig(self.pos + n, self.limits.max_size));
            }
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?).into())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u32(what)?;
        let max = self.limits.max_string.min(self.left());
        if len > max as u64 {
            if len <= self.limits.max_string as u64 {
                return Err(DecodeError::Truncated(what));
            }
            return Err(DecodeError::TooLong(len, self.limits.max_string));
        }
        let at = self.pos;
        let bytes = self.take(len as usize, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8(at))
    }

    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32("count")?;
        if n > self.limits.max_elements as u64 {
            return Err(DecodeError::TooMany(n, self.limits.max_elements));
        }
        Ok(n as usize)
    }

    /// One value, iteratively: an explicit stack of open collections
    /// instead of recursion, so hostile nesting costs heap bounded by the
    /// depth limit, never native stack.
    fn value(&mut self) -> Result<Term, DecodeError> {
        let mut open: Vec<Open> = Vec::new();
        // Elements (and dotted tails) that the open collections declared
        // and that have not begun yet. Each takes at least one byte, so
        // more of them than bytes left is a lie, refused before anything
        // is reserved for it.
        let mut pending: u64 = 0;
        loop {
            if !open.is_empty() {
                // This iteration reads the next of them (never below zero:
                // an open collection always has one pending).
                pending = pending.saturating_sub(1);
            }
            let at = self.pos;
            let [t] = self.array::<1>("tag")?;
            let mut done = match t {
                tag::LIST | tag::DOTTED | tag::VECTOR => {
                    if open.len() + 1 >= self.limits.max_depth {
                        return Err(DecodeError::TooDeep(self.limits.max_depth));
                    }
                    let n = self.count()?;
                    if n == 0 && t != tag::VECTOR {
                        return Err(DecodeError::Invalid(
                            "empty LIST or DOTTED (NIL is the empty list)",
                            at,
                        ));
                    }
                    if n == 0 {
                        Term::Vector(Vec::new())
                    } else {
                        pending += n as u64 + u64::from(t == tag::DOTTED);
                        if pending > self.left() as u64 {
                            return Err(DecodeError::Overcommitted(pending, self.left()));
                        }
                        open.push(Open {
                            tag: t,
                            at,
                            // A count is only a claim until its elements
                            // arrive: reserve a bounded part of it, grow
                            // with what actually comes.
                            items: Vec::with_capacity(n.min(PREALLOCATE)),
                            left: n,
                        });
                        continue;
                    }
                }
                _ => self.leaf(t, at)?,
            };
            // Hand the finished value to the innermost open collection,
            // closing every collection it completes.
            loop {
                let Some(top) = open.last_mut() else {
                    return Ok(done);
                };
                if top.left > 0 {
                    top.items.push(done);
                    top.left -= 1;
                    if top.left > 0 || top.tag == tag::DOTTED {
                        break;
                    }
                    let Some(top) = open.pop() else { break };
                    done = if top.tag == tag::LIST {
                        Term::List(top.items)
                    } else {
                        Term::Vector(top.items)
                    };
                } else {
                    // A dotted list's tail.
                    let Some(top) = open.pop() else { break };
                    if matches!(done, Term::Nil | Term::List(_) | Term::Dotted(..)) {
                        return Err(DecodeError::Invalid(
                            "dotted list tail (must be an atom)",
                            top.at,
                        ));
                    }
                    done = Term::Dotted(top.items, Box::new(done));
                }
            }
        }
    }

    fn leaf(&mut self, t: u8, at: usize) -> Result<Term, DecodeError> {
        Ok(match t {
            tag::NIL => Term::Nil,
            tag::T => Term::T,
            tag::INT8 => Term::Int(i8::from_be_bytes(self.array("integer")?).into()),
            tag::INT32 => Term::Int(i32::from_be_bytes(self.array("integer")?).into()),
            tag::INT64 => Term::Int(i64::from_be_bytes(self.array("integer")?)),
            tag::FLOAT => Term::Float(f64::from_bits(u64::from_be_bytes(self.array("float")?))),
            tag::STRING => Term::Str(self.string("string")?),
            tag::SYMBOL => Term::Symbol(Symbol {
                package: None,
                name: self.string("symbol")?,
            }),
            tag::QUALIFIED_SYMBOL => {
                let package = self.string("package")?;
                Term::Symbol(Symbol {
                    package: Some(package),
                    name: self.string("symbol")?,
                })
            }
            tag::KEYWORD => Term::Keyword(self.string("keyword")?),
            tag::BYTES => {
                let len = self.u32("byte vector")?;
                if len > self.limits.max_string as u64 {
                    return Err(DecodeError::TooLong(len, self.limits.max_string));
                }
                Term::Bytes(self.take(len as usize, "byte vector")?.to_vec())
            }
            tag::AGENT => {
                let id = self.string("agent id")?;
                if id.is_empty() {
                    return Err(DecodeError::Invalid("empty agent id", at));
                }
                Term::Agent(AgentRef::Id(Arc::from(id)))
            }
            tag::AGENT_OF_RUN => {
                let incarnation = self.u64("agent incarnation")?;
                let id = self.string("agent id")?;
                if id.is_empty() {
                    return Err(DecodeError::Invalid("empty agent id", at));
                }
                if incarnation == 0 {
                    return Err(DecodeError::Invalid("agent incarnation 0", at));
                }
                Term::Agent(AgentRef::Remote {
                    id: Arc::from(id),
                    incarnation,
                })
            }
            other => return Err(DecodeError::UnknownTag(other, at)),
        })
    }
}

/// Most elements reserved up front for one collection (the rest grow as
/// elements arrive): 127 open collections then reserve at most a few MiB
/// whatever they claim, and never more slots than the pending-elements
/// check has found bytes for.
const PREALLOCATE: usize = 1024;

/// A collection being decoded.
struct Open {
    tag: u8,
    at: usize,
    items: Vec<Term>,
    left: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_message_bytes() {
        let t = Term::list(vec![Term::keyword("ping"), 42.into(), "x".into()]);
        let bytes = encode(&t).unwrap();
        assert_eq!(
            bytes,
            [
                1, // version
                0x0B, 0, 0, 0, 3, // list of 3
                0x09, 0, 0, 0, 4, b'P', b'I', b'N', b'G', // :PING
                0x02, 42, // 42
                0x06, 0, 0, 0, 1, b'x' // "x"
            ]
        );
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), t);
    }

    #[test]
    fn local_values_refused() {
        assert!(matches!(
            encode(&Term::local(1u8)),
            Err(EncodeError::LocalValue(_))
        ));
        assert!(matches!(
            encode(&Term::Agent(AgentRef::Local(3))),
            Err(EncodeError::LocalAgent(3))
        ));
    }

    /// Allocation itself is observed in `tests/codec_alloc.rs`.
    #[test]
    fn lying_counts_are_refused() {
        let mut bytes = vec![1, tag::VECTOR, 0xff, 0xff, 0xff, 0xff];
        bytes.extend_from_slice(&[0; 10]);
        let limits = Limits {
            max_elements: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(
            decode(&bytes, &limits),
            Err(DecodeError::Overcommitted(u32::MAX.into(), 10))
        );
    }

    #[test]
    fn claims_of_nested_collections_add_up() {
        // The outer list claims two elements, the inner (its first) three:
        // once the inner header is read, four are pending (three inner,
        // one outer) and only three bytes remain.
        let bytes = [1, tag::LIST, 0, 0, 0, 2, tag::LIST, 0, 0, 0, 3, 0, 0, 0];
        assert_eq!(
            decode(&bytes, &Limits::default()),
            Err(DecodeError::Overcommitted(4, 3))
        );
        // One byte more is enough.
        let ok = [1, tag::LIST, 0, 0, 0, 2, tag::LIST, 0, 0, 0, 3, 0, 0, 0, 0];
        assert!(decode(&ok, &Limits::default()).is_ok());
    }
}
