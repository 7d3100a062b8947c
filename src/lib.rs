//! Erlangen: Erlang-style agents for Rust, std-only.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
pub mod bench;
pub mod call;
pub mod config;
pub mod crypto;
pub mod examples;
pub mod frame;
pub mod kernel;
pub(crate) mod mailbox;
pub mod management;
pub mod node;
pub mod port_mapper;
pub mod registry;
pub mod term;

pub use agent::{
    exit, flush_messages, link, receive, receive_matching, receive_timeout, send, spawn,
    spawn_with, unlink, Agent, Attach, Outcome, SpawnOptions, Target, Timeout, Values,
};
pub use term::{AgentRef, Symbol, Term};
