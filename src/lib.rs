//! Erlangen: Erlang-style agents for Rust, std-only.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod crypto;
pub mod frame;
pub mod port_mapper;
pub mod term;

pub use term::{AgentRef, Symbol, Term};
