//! Every name the README's "The library in short" table lists is reachable
//! at the path it gives: the root items with `use erlangen::{…}`, the rest
//! under their module. This file compiling is the test; the one test below
//! also uses a few of them, so the imports are not only names.
#![allow(unused_imports)]

// agents, targets, outcomes, and the error types listed beside them.
use erlangen::async_agent::{
    block_on, blocking, receive as async_receive, receive_matching as async_receive_matching,
    receive_timeout as async_receive_timeout, sleep, yield_now,
};
use erlangen::AgentRef;
use erlangen::{
    exit, exit_current, flush_messages, link, receive, receive_matching, receive_timeout, send,
    spawn, spawn_async, spawn_async_with, spawn_with, unlink, unwatch, watch, Agent, Attach,
    LinkError, NameError, RemoteError, SendError, SpawnError, SpawnOptions, Target, TargetError,
    Term, Timeout, Values,
};
// names
use erlangen::registry::{register, registered, unregister, whereis};
// terms
use erlangen::term::{decode, encode, read, read_prefix, DecodeError, EncodeError, ReadError};
use erlangen::term::{FromTerm, IntoTerm, Keyword, TermError};
// calls
use erlangen::call::{
    apply, function_of, prepare, register_function, spawn_call, CallError, SpawnCallError,
};
use erlangen::examples::{parallel_map, register_functions};
// nodes
use erlangen::node::{
    connection_stats, node, spawn_on, start, CookieError, NodeError, NodeHandle, NodeOptions,
};
// management
use erlangen::management::{agent_stats, agent_tree, agents};
// port mapper
use erlangen::port_mapper::client::{
    list_nodes, query_port, register as register_node, KeepRegistered,
};
use erlangen::port_mapper::server::PortMapper;
use erlangen::port_mapper::PortMapperError;

#[test]
fn root_items_are_the_agent_items() {
    // The root names and the `agent::` names are the same items: each
    // converts to the other without a conversion.
    fn same_error(e: erlangen::agent::SpawnError) -> SpawnError {
        e
    }
    fn same_link_error(e: LinkError) -> erlangen::agent::LinkError {
        e
    }
    let _: fn(Term) -> ! = exit_current;
    let _: fn(Term) -> ! = erlangen::agent::exit_current;
    let error = same_error(SpawnError::ZeroMailbox);
    assert!(error.to_string().contains("mailbox"), "{error}");
    let error = same_link_error(LinkError::SelfLink);
    assert!(!error.to_string().is_empty());
    let _: erlangen::agent::Timeout = Timeout;
}

/// The request handler of the README's "Taking a message apart", as
/// quoted there.
fn serve_one() -> Result<(), TermError> {
    let (_, n, reply_to): (Keyword, i64, AgentRef) = receive().decode()?;
    let _ = send((Keyword::new("squared"), n, n * n), &reply_to);
    Ok(())
}

#[test]
fn the_readme_request_handler_works_as_quoted() {
    use std::time::Duration;
    let me = Agent::current();
    let monitor = SpawnOptions::new().attach(Attach::Monitor);
    let server = spawn_with(&monitor, || -> Term {
        let first = serve_one();
        let second = serve_one();
        Term::list(vec![
            Term::from(format!("{first:?}")),
            Term::from(second.map_err(|e| e.to_string()).unwrap_err()),
        ])
    })
    .unwrap();
    server.send((Keyword::new("square"), 7, &me));
    let reply = receive_timeout(Duration::from_secs(20)).expect("the reply");
    assert_eq!(reply.to_string(), "(:SQUARED 7 49)");
    server.send((Keyword::new("square"), "x", &me));
    let notice = receive_timeout(Duration::from_secs(20)).expect("the exit notice");
    assert_eq!(
        notice,
        Term::list(vec![
            server.to_term(),
            Term::keyword("ok"),
            Term::list(vec![
                "Ok(())".into(),
                "element 2 of the list: expected an integer, got \"x\"".into()
            ])
        ])
    );
}
