//! Terms: the values that messages, calls and exit reasons are made of, their
//! text form (Common Lisp syntax) and their binary form (the wire codec).
//!
//! This module depends on nothing else in the crate (the conversions of
//! agent handles and targets to and from terms are in `agent_terms.rs`).

pub mod codec;
pub mod convert;
mod print;
pub mod read;
mod value;

pub use codec::{
    decode, decode_prefix, encode, encode_into, encode_into_with, encode_with, AgentIds,
    DecodeError, EncodeError, Limits,
};
pub use convert::{FromTerm, IntoTerm, Keyword, TermError};
pub use read::{read, read_all, read_prefix, read_with, ReadError, ReadLimits};
pub(crate) use value::split_id;
pub use value::{AgentRef, LocalValue, Symbol, Term};
