//! The one-way monitor (`watch`, `unwatch`; issue 22 item 4): the watcher
//! is told of the watched agent's exit, and the watcher's own exit does
//! nothing to the watched agent. Every case runs with thread and async
//! agents on both sides.

mod support;

use std::time::Duration;

use erlangen::agent::LinkError;
use erlangen::{
    async_agent, receive_timeout, spawn_async_with, spawn_with, unwatch, watch, Agent, Attach,
    Kind, SpawnOptions, Term,
};
use support::{gone, WAIT};

const KINDS: [Kind; 2] = [Kind::Thread, Kind::Async];

/// An agent of `kind` that answers `(:ping from)` with `:pong` and exits
/// with the reason of `(:exit reason)`.
fn pinger(kind: Kind, options: &SpawnOptions) -> Agent {
    fn handle(m: &Term) -> Option<Result<(), Term>> {
        match m.as_list() {
            Some([k, from]) if k.is_keyword("PING") => {
                let _ = erlangen::send(Term::keyword("pong"), from);
                None
            }
            Some([k, reason]) if k.is_keyword("EXIT") => Some(Err(reason.clone())),
            _ => None,
        }
    }
    match kind {
        Kind::Thread => spawn_with(options, || loop {
            if let Some(end) = handle(&erlangen::receive()) {
                return end;
            }
        })
        .unwrap(),
        _ => spawn_async_with(options, async {
            loop {
                if let Some(end) = handle(&async_agent::receive().await) {
                    return end;
                }
            }
        })
        .unwrap(),
    }
}

fn exit_with(reason: &str) -> Term {
    Term::list(vec![Term::keyword("exit"), Term::keyword(reason)])
}

fn answers_ping(agent: &Agent) -> bool {
    let me = Agent::current();
    agent.send(Term::list(vec![Term::keyword("ping"), me.to_term()]));
    erlangen::receive_matching(|m| m.is_keyword("PONG"), Some(WAIT)).is_ok()
}

#[test]
fn the_watcher_is_told_of_the_exit_with_its_reason() {
    for kind in KINDS {
        let watched = pinger(kind, &SpawnOptions::new());
        watch(&watched).unwrap();
        watched.send(exit_with("boom"));
        let notice = receive_timeout(WAIT).unwrap();
        assert_eq!(
            notice.to_string(),
            format!("({} :EXIT . :BOOM)", watched.to_term()),
            "{kind:?}"
        );
    }
}

#[test]
fn an_async_watcher_is_told_too() {
    for kind in KINDS {
        let watched = pinger(kind, &SpawnOptions::new());
        let w = watched.clone();
        let monitor = SpawnOptions::new().attach(Attach::Monitor);
        let watcher = spawn_async_with(&monitor, async move {
            watch(&w).unwrap();
            w.send(exit_with("gone"));
            async_agent::receive_timeout(WAIT).await.unwrap()
        })
        .unwrap();
        let notice = receive_timeout(WAIT).unwrap();
        assert_eq!(
            notice.to_string(),
            format!(
                "({} :OK ({} :EXIT . :GONE))",
                watcher.to_term(),
                watched.to_term()
            ),
            "{kind:?}"
        );
    }
}

/// The difference from `Attach::Monitor`: the watcher's exit leaves the
/// watched agent running.
#[test]
fn a_watcher_that_exits_leaves_the_watched_agent_alive() {
    for watcher_kind in KINDS {
        for watched_kind in KINDS {
            let watched = pinger(watched_kind, &SpawnOptions::new());
            let w = watched.clone();
            let monitor = SpawnOptions::new().attach(Attach::Monitor);
            let watcher = match watcher_kind {
                Kind::Thread => spawn_with(&monitor, move || -> Result<(), Term> {
                    watch(&w).unwrap();
                    Err(Term::keyword("watcher-died"))
                })
                .unwrap(),
                _ => spawn_async_with(&monitor, async move {
                    watch(&w).unwrap();
                    Err::<(), Term>(Term::keyword("watcher-died"))
                })
                .unwrap(),
            };
            let notice = receive_timeout(WAIT).unwrap();
            assert!(notice.to_string().ends_with(":WATCHER-DIED)"), "{notice}");
            gone(&watcher);
            assert!(
                watched.is_alive() && answers_ping(&watched),
                "{watcher_kind:?} watching {watched_kind:?}: the watched agent died with its watcher"
            );
            watched.send(exit_with("done"));
        }
    }
}

#[test]
fn after_unwatch_no_notice_comes() {
    for kind in KINDS {
        let watched = pinger(kind, &SpawnOptions::new());
        watch(&watched).unwrap();
        unwatch(&watched).unwrap();
        watched.send(exit_with("quiet"));
        gone(&watched);
        assert_eq!(receive_timeout(Duration::ZERO), Err(erlangen::Timeout));
    }
}

#[test]
fn watching_a_dead_agent_says_noproc_and_oneself_is_an_error() {
    for kind in KINDS {
        let watched = pinger(kind, &SpawnOptions::new());
        watched.send(exit_with("early"));
        gone(&watched);
        watch(&watched).unwrap();
        let notice = receive_timeout(WAIT).unwrap();
        assert_eq!(
            notice.to_string(),
            format!("({} :EXIT . :NOPROC)", watched.to_term())
        );
    }
    assert!(matches!(watch(Agent::current()), Err(LinkError::SelfLink)));
    // A name is resolved once, at the watch.
    let named = pinger(Kind::Async, &SpawnOptions::new().name("watch-test-named"));
    watch(":watch-test-named").unwrap();
    named.send(exit_with("named"));
    let notice = receive_timeout(WAIT).unwrap();
    assert_eq!(
        notice.to_string(),
        format!("({} :EXIT . :NAMED)", named.to_term())
    );
}

/// A watch does not stop the agent from being monitored two-way as well:
/// each attachment tells its own notice.
#[test]
fn a_watch_and_a_monitor_of_one_agent_each_tell() {
    let watched = pinger(Kind::Async, &SpawnOptions::new());
    watch(&watched).unwrap();
    erlangen::link(&watched, Attach::Monitor).unwrap();
    unwatch(&watched).unwrap();
    watch(&watched).unwrap();
    watched.send(exit_with("twice"));
    for _ in 0..2 {
        let notice = receive_timeout(WAIT).unwrap();
        assert!(notice.to_string().ends_with(":TWICE)"), "{notice}");
    }
    gone(&watched);
    assert_eq!(receive_timeout(Duration::ZERO), Err(erlangen::Timeout));
}
