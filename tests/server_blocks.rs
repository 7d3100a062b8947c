//! Request/reply defects of issue 22 (items 1-3, and 14 for `request`):
//! a reply's wake-up is never lost to a full mailbox, the callee is
//! resolved once (a server handing its name on while answering is not
//! killed by the proxy), a request to oneself fails at once, and the
//! blocking `request` refuses to run in an async agent. Thread and async
//! agents on both sides.

mod support;

use std::time::Duration;

use erlangen::server::{self, RequestError, Server};
use erlangen::{
    async_agent, receive_timeout, spawn_async_with, spawn_with, Agent, Attach, Kind, SpawnOptions,
    Term,
};
use support::{eventually, WAIT};

/// Longer than any test may take: a call that waits for it has failed.
const HOUR: Duration = Duration::from_secs(3600);

const KINDS: [Kind; 2] = [Kind::Thread, Kind::Async];

/// A server of `kind` answering every request with the request itself.
fn echo(kind: Kind) -> Agent {
    let server = Server::new(()).on_call(|(), request| (request, ()));
    match kind {
        Kind::Thread => server.spawn(&SpawnOptions::new()).unwrap(),
        _ => server.spawn_async(&SpawnOptions::new()).unwrap(),
    }
}

/// Spawns a monitored caller of `kind` whose body's result comes back as
/// its exit notification; returns that result.
fn in_caller(
    kind: Kind,
    options: &SpawnOptions,
    thread_body: impl FnOnce() -> Term + Send + 'static,
    async_body: impl std::future::Future<Output = Term> + Send + 'static,
) -> Term {
    let options = options.clone().attach(Attach::Monitor);
    let caller = match kind {
        Kind::Thread => spawn_with(&options, thread_body).unwrap(),
        _ => spawn_async_with(&options, async_body).unwrap(),
    };
    let notice = receive_timeout(WAIT).expect("the caller finished within the wait");
    match notice.as_list() {
        Some([who, ok, result]) if *who == caller.to_term() && ok.is_keyword("OK") => {
            result.clone()
        }
        _ => panic!("the caller ended otherwise: {notice}"),
    }
}

fn outcome(result: Result<Term, RequestError>) -> Term {
    match result {
        Ok(t) => Term::list(vec![Term::keyword("ok"), t]),
        Err(e) => Term::list(vec![Term::keyword("error"), e.reason()]),
    }
}

/// Item 1: a caller whose mailbox is full when the answer's wake-up comes
/// still gets the answer at once (an hour's timeout: only the wake-up can
/// end the wait within the test).
#[test]
fn a_full_mailbox_does_not_lose_the_reply() {
    for server_kind in KINDS {
        for caller_kind in KINDS {
            let server = echo(server_kind);
            let (s1, s2) = (server.clone(), server.clone());
            let full = SpawnOptions::new().mailbox_size(2);
            let result = in_caller(
                caller_kind,
                &full,
                move || {
                    let me = Agent::current();
                    me.send(1);
                    me.send(2);
                    outcome(server::request(&s1, 7, HOUR))
                },
                async move {
                    let me = Agent::current();
                    me.send(1);
                    me.send(2);
                    outcome(server::request_async(&s2, 7, HOUR).await)
                },
            );
            assert_eq!(
                result.to_string(),
                "(:OK 7)",
                "{caller_kind:?} caller, {server_kind:?} server"
            );
            erlangen::exit(Term::keyword("done"), &server).unwrap();
        }
    }
}

/// A server of `kind` registered as `name` that, while answering, hands
/// its name to a fresh agent, and answers with the request's `from` (so
/// the test learns the proxy).
fn name_passer(kind: Kind, name: &'static str) -> (Agent, Agent) {
    let heir = spawn_with(&SpawnOptions::new(), || {
        let _ = receive_timeout(WAIT);
    })
    .unwrap();
    let h = heir.clone();
    let handle = move |m: Term| {
        if let Some([k, from, _]) = m.as_list() {
            if k.is_keyword("CALL") {
                erlangen::registry::unregister(name).unwrap();
                erlangen::registry::register(name, &h).unwrap();
                server::reply(from, from.clone());
            }
        }
    };
    let options = SpawnOptions::new().name(name);
    let server = match kind {
        Kind::Thread => spawn_with(&options, move || serve(handle)).unwrap(),
        _ => spawn_async_with(&options, serve_async(handle)).unwrap(),
    };
    (server, heir)
}

fn serve(handle: impl Fn(Term)) {
    loop {
        handle(erlangen::receive());
    }
}

async fn serve_async(handle: impl Fn(Term)) {
    loop {
        handle(async_agent::receive().await);
    }
}

/// Item 2: the name is looked up once; the proxy's end does nothing to
/// the server that answered, though the name now names another agent.
#[test]
fn a_server_that_hands_its_name_on_while_answering_survives_the_call() {
    for (kind, name) in [(Kind::Thread, "passer-t"), (Kind::Async, "passer-a")] {
        let (server, heir) = name_passer(kind, name);
        let from = server::request(format!(":{name}").as_str(), Term::Nil, WAIT).unwrap();
        let proxy = from.as_list().unwrap()[0].clone();
        eventually("the proxy ends", || {
            erlangen::management::agents()
                .iter()
                .all(|a| a.to_term() != proxy)
        });
        assert!(
            server.is_alive(),
            "{kind:?}: the proxy's end killed the server: {:?}",
            server.outcome()
        );
        assert!(heir.is_alive());
        for a in [server, heir] {
            erlangen::exit(Term::keyword("done"), &a).unwrap();
        }
    }
}

/// Item 3: a request to oneself fails at once with `:CALLING-SELF` (an
/// hour's timeout), by handle or by name, and leaves nothing in the
/// caller's mailbox.
#[test]
fn a_request_to_oneself_fails_at_once() {
    for kind in KINDS {
        let name = match kind {
            Kind::Thread => "self-caller-t",
            _ => "self-caller-a",
        };
        let result = in_caller(
            kind,
            &SpawnOptions::new().name(name),
            move || {
                let me = Agent::current();
                let by_handle = outcome(server::request(&me, 1, HOUR));
                let by_name = outcome(server::request(format!(":{name}").as_str(), 1, HOUR));
                let left = receive_timeout(Duration::ZERO).is_ok();
                Term::list(vec![by_handle, by_name, Term::from(left)])
            },
            async move {
                let me = Agent::current();
                let by_handle = outcome(server::request_async(&me, 1, HOUR).await);
                let by_name =
                    outcome(server::request_async(format!(":{name}").as_str(), 1, HOUR).await);
                let left = async_agent::receive_timeout(Duration::ZERO).await.is_ok();
                Term::list(vec![by_handle, by_name, Term::from(left)])
            },
        );
        assert_eq!(
            result.to_string(),
            "((:ERROR :CALLING-SELF) (:ERROR :CALLING-SELF) NIL)",
            "{kind:?}"
        );
    }
}

/// Item 14: the blocking `request` in an async agent refuses at once,
/// naming `request_async`; awaited, `request_async` answers.
#[test]
fn the_blocking_request_refuses_to_run_in_an_async_agent() {
    let server = echo(Kind::Async);
    let s = server.clone();
    let result = in_caller(
        Kind::Async,
        &SpawnOptions::new(),
        || Term::Nil,
        async move {
            let blocking = match server::request(&s, 5, HOUR) {
                Err(e @ RequestError::WouldBlock { .. }) => Term::Str(e.to_string()),
                other => Term::Str(format!("{other:?}")),
            };
            let awaited = outcome(server::request_async(&s, 5, HOUR).await);
            Term::list(vec![blocking, awaited])
        },
    );
    let text = result.to_string();
    assert!(
        text.contains("await server::request_async instead") && text.ends_with("(:OK 5))"),
        "{text}"
    );
    erlangen::exit(Term::keyword("done"), &server).unwrap();
}
