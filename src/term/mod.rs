//! Terms: the values that messages, calls and exit reasons are made of, their
//! text form (Common Lisp syntax) and their binary form (the wire codec).
//!
//! This module depends on nothing else in the crate.

mod print;
mod value;

pub use value::{AgentRef, LocalValue, Symbol, Term};
