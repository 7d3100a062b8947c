//! The scheduler's edges with one worker (issue 22 items 13 and 14), where
//! anything that kills or blocks the worker stops every async agent: a
//! destructor that panics while an agent exits, and the blocking calls
//! (the thread receive, `block_on`, `server::request`,
//! `supervisor::start`) called inside an async agent, which fail at once
//! naming the async form instead of blocking. Every test of this binary
//! asks for one worker before any async agent exists.

mod support;

use std::time::Duration;

use erlangen::server::{self, RequestError, Server};
use erlangen::supervisor::{self, ChildSpec, StartError, Strategy, SupervisorSpec};
use erlangen::{
    async_agent, receive_timeout, spawn_async_with, spawn_with, Agent, Attach, Kind, SpawnOptions,
    Term,
};
use support::WAIT;

const HOUR: Duration = Duration::from_secs(3600);

/// One worker for the whole binary (the first test to spawn an async
/// agent starts the scheduler; every test asks the same before that).
fn one_worker() {
    async_agent::set_workers(1);
}

fn monitored() -> SpawnOptions {
    SpawnOptions::new().attach(Attach::Monitor)
}

/// The async agents still run: a fresh one answers.
fn async_agents_run() {
    let me = Agent::current();
    async_agent::spawn(async move {
        me.send(Term::keyword("alive"));
    })
    .unwrap();
    assert_eq!(
        erlangen::receive_matching(|m| m.is_keyword("ALIVE"), Some(WAIT)),
        Ok(Term::keyword("alive")),
        "the worker stopped running async agents"
    );
    assert_eq!(async_agent::workers(), 1);
}

/// A value whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a destructor that panics");
    }
}

/// Item 13: an agent exits with a value whose destructor panics still in
/// its mailbox (it took another message selectively): its exit protocol
/// completes (its monitor is told) and, for an async agent, the worker goes
/// on running the others.
#[test]
fn a_destructor_that_panics_while_an_agent_exits_stops_nothing_else() {
    one_worker();
    for kind in [Kind::Async, Kind::Thread] {
        let agent = match kind {
            Kind::Async => spawn_async_with(&monitored(), async {
                let _ = async_agent::receive_matching(|m| m.is_keyword("GO"), Some(WAIT)).await;
                Term::keyword("done")
            })
            .unwrap(),
            _ => spawn_with(&monitored(), || {
                let _ = erlangen::receive_matching(|m| m.is_keyword("GO"), Some(WAIT));
                Term::keyword("done")
            })
            .unwrap(),
        };
        agent.send(Term::local(PanicOnDrop));
        agent.send(Term::keyword("go"));
        let notice = receive_timeout(WAIT).expect("the exit protocol completed");
        assert_eq!(
            notice.to_string(),
            format!("({} :OK :DONE)", agent.to_term()),
            "{kind:?}"
        );
        async_agents_run();
    }
}

/// The exit reason of an agent that ran `body`, from its notice.
fn exit_reason_of(body: impl std::future::Future<Output = ()> + Send + 'static) -> String {
    let agent = spawn_async_with(&monitored(), body).unwrap();
    let notice = receive_timeout(WAIT).expect("the agent ended at once");
    let text = notice.to_string();
    assert!(
        text.starts_with(&format!("({} :EXIT", agent.to_term())),
        "{text}"
    );
    text
}

/// Item 14: the thread receive in an async agent ends it at once (it
/// would block the only worker for ever), naming the async form; a zero
/// timeout only polls and is allowed.
#[test]
fn the_thread_receive_in_an_async_agent_fails_at_once() {
    one_worker();
    for text in [
        exit_reason_of(async {
            let _ = erlangen::receive();
        }),
        exit_reason_of(async {
            let _ = erlangen::receive_timeout(HOUR);
        }),
        exit_reason_of(async {
            let _ = erlangen::receive_matching(|_| true, None);
        }),
    ] {
        assert!(
            text.contains("await erlangen::async_agent::receive"),
            "{text}"
        );
    }
    let poll = spawn_async_with(&monitored(), async {
        Term::from(erlangen::receive_timeout(Duration::ZERO).is_err())
    })
    .unwrap();
    assert_eq!(
        receive_timeout(WAIT).unwrap().to_string(),
        format!("({} :OK T)", poll.to_term())
    );
    async_agents_run();
}

/// Item 14: `block_on` in an async agent ends it at once.
#[test]
fn block_on_in_an_async_agent_fails_at_once() {
    one_worker();
    let text = exit_reason_of(async {
        async_agent::block_on(async_agent::sleep(HOUR));
    });
    assert!(text.contains("async_agent::block_on blocks"), "{text}");
    async_agents_run();
}

/// Item 14, the case: with one worker, a request from an async
/// agent to a live server answers (awaited), and the blocking form refuses
/// at once instead of timing out; so does `supervisor::start`, whose async
/// form starts the supervisor.
#[test]
fn requests_and_supervisor_starts_from_an_async_agent_with_one_worker() {
    one_worker();
    let echo = Server::new(())
        .on_call(|(), request| (request, ()))
        .spawn_async(&SpawnOptions::new())
        .unwrap();
    let e = echo.clone();
    let caller = spawn_async_with(&monitored(), async move {
        let refused = matches!(
            server::request(&e, 1, HOUR),
            Err(RequestError::WouldBlock { .. })
        );
        let answer = server::request_async(&e, 2, HOUR)
            .await
            .unwrap_or(Term::Nil);
        let spec = || {
            SupervisorSpec::new(Strategy::OneForOne)
                .child(ChildSpec::async_body("w", || async_agent::sleep(HOUR)))
        };
        let start_refused = matches!(
            supervisor::start(spec(), &SpawnOptions::new()),
            Err(StartError::WouldBlock)
        );
        let sup = supervisor::start_async(spec(), &SpawnOptions::new()).await;
        let children = match &sup {
            Ok(sup) => supervisor::which_children_async(sup, WAIT)
                .await
                .map_or(0, |c| c.len()),
            Err(_) => 0,
        };
        if let Ok(sup) = sup {
            let _ = erlangen::exit(Term::keyword("stop"), &sup);
        }
        Term::list(vec![
            Term::from(refused),
            answer,
            Term::from(start_refused),
            Term::from(children as i64),
        ])
    })
    .unwrap();
    assert_eq!(
        receive_timeout(WAIT).unwrap().to_string(),
        format!("({} :OK (T 2 T 1))", caller.to_term())
    );
    erlangen::exit(Term::keyword("done"), &echo).unwrap();
    async_agents_run();
}

/// `node::spawn_on` waits for the other node's answer: in an async agent
/// it fails at once, saying to call it from a thread agent, and the
/// worker goes on.
#[test]
fn a_remote_spawn_from_an_async_agent_fails_at_once() {
    one_worker();
    spawn_async_with(&monitored(), async {
        let call = Term::list(vec![Term::symbol("list")]);
        match erlangen::node::spawn_on(None, "elsewhere", &call, &SpawnOptions::new()) {
            Err(e) => Term::Str(e.to_string()),
            Ok(_) => Term::keyword("spawned"),
        }
    })
    .unwrap();
    let out = receive_timeout(WAIT).unwrap().to_string();
    assert!(
        out.contains("node::spawn_on waits for the other node's answer")
            && out.contains("call it from a thread agent"),
        "{out}"
    );
    async_agents_run();
}
