//! Erlangen: Erlang-style agents for Rust, std-only.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod term;
pub mod crypto;
pub mod config;
pub mod port_mapper;

pub use term::{AgentRef, Symbol, Term};
