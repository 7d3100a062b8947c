//! Agents, links, monitors, names and mailboxes in one process (SPEC
//! sections 1-3). The first four tests are ported from the seed's
//! `test/agent-test.lisp` (eugeneia/erlangen), with the pseudo-agent
//! replaced by the test thread's own agent; the rest follow the SPEC and
//! Erlang's rules for links and exit signals.
//!
//! Every receive here has a timeout, so a broken runtime fails a test
//! instead of hanging it.

use std::time::Duration;

use erlangen::agent::{exit_current, NameError, TargetError};
use erlangen::{
    exit, link, receive, receive_matching, receive_timeout, registry, send, spawn, spawn_with,
    unlink, Agent, Attach, SpawnOptions, Term, Timeout,
};

const WAIT: Duration = Duration::from_secs(10);

fn recv() -> Term {
    receive_timeout(WAIT).expect("a message within the test timeout")
}

fn monitor() -> SpawnOptions {
    SpawnOptions::new().attach(Attach::Monitor)
}

fn kw(name: &str) -> Term {
    Term::keyword(name)
}

// Source: test-send-receive
#[test]
fn send_receive_through_a_relay() {
    let me = Agent::current();
    let relay = spawn(move || me.send(receive())).unwrap();
    spawn(move || relay.send(kw("hello"))).unwrap();
    assert_eq!(recv(), kw("hello"));
}

// Source: test-send-receive (timeout part)
#[test]
fn unhandled_receive_timeout_exits_with_timeout() {
    let agent = spawn_with(&monitor(), || receive_timeout(Duration::from_millis(50))).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![agent.to_term(), kw("exit")], kw("timeout"))
    );
}

// Source: test-monitor-kill
#[test]
fn monitor_sees_kill_reason() {
    let monitored = spawn_with(&monitor(), receive).unwrap();
    exit(kw("kill"), &monitored).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![monitored.to_term(), kw("exit")], kw("kill"))
    );
}

// Source: test-link
#[test]
fn linked_child_returning_kills_parent_with_ok_values() {
    let parent = spawn_with(&monitor(), || {
        spawn_with(&SpawnOptions::new().attach(Attach::Link), || Term::from(6)).unwrap();
        receive()
    })
    .unwrap();
    // (parent :EXIT :OK 6), as in the seed.
    assert_eq!(
        recv(),
        Term::list(vec![parent.to_term(), kw("exit"), kw("ok"), 6.into()])
    );
}

// Source: test-send-error-killed (here sending to and killing a dead agent
// is silent, as SPEC section 1 says).
#[test]
fn sending_to_and_killing_a_dead_agent_do_nothing_harmful() {
    let agent = spawn_with(&monitor(), receive).unwrap();
    exit(kw("kill"), &agent).unwrap();
    recv();
    assert!(!agent.is_alive());
    assert!(send(kw("test"), &agent).is_ok());
    assert!(exit(kw("again"), &agent).is_ok());
    assert!(send(kw("test"), agent.to_term()).is_ok());
    assert_eq!(agent.outcome(), Some(erlangen::Outcome::Exited(kw("kill"))));
}

#[test]
fn messages_arrive_in_send_order() {
    let receiver = spawn_with(&monitor().mailbox_size(1000), || {
        let got: Vec<Term> = (0..1000).map(|_| recv()).collect();
        Term::list(got)
    })
    .unwrap();
    let sender = receiver.clone();
    spawn(move || {
        for i in 0..1000 {
            sender.send(Term::from(i));
        }
    })
    .unwrap();
    let notice = recv();
    let expected: Vec<Term> = (0..1000).map(Term::from).collect();
    assert_eq!(
        notice,
        Term::list(vec![receiver.to_term(), kw("ok"), Term::list(expected)])
    );
}

#[test]
fn receive_timeout_and_poll() {
    let _ = erlangen::flush_messages();
    assert_eq!(receive_timeout(Duration::ZERO), Err(Timeout));
    assert_eq!(receive_timeout(Duration::from_millis(20)), Err(Timeout));
    Agent::current().send(1);
    assert_eq!(receive_timeout(Duration::ZERO), Ok(Term::from(1)));
}

#[test]
fn monitor_gets_return_values() {
    let agent = spawn_with(&monitor(), || {
        erlangen::Values(vec![1.into(), "two".into()])
    })
    .unwrap();
    assert_eq!(
        recv(),
        Term::list(vec![agent.to_term(), kw("ok"), 1.into(), "two".into()])
    );
    let unit = spawn_with(&monitor(), || ()).unwrap();
    assert_eq!(recv(), Term::list(vec![unit.to_term(), kw("ok")]));
}

#[test]
fn panic_becomes_exit_reason() {
    let agent = spawn_with(&monitor(), || -> Term { panic!("boom at the agent") }).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(
            vec![agent.to_term(), kw("exit")],
            Term::from("boom at the agent")
        )
    );
}

#[test]
fn error_result_becomes_exit_reason() {
    let agent = spawn_with(&monitor(), || -> Result<Term, Term> { Err(kw("bad")) }).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![agent.to_term(), kw("exit")], kw("bad"))
    );
}

#[test]
fn exit_self_ends_the_agent_now() {
    let agent = spawn_with(&monitor(), || -> Term {
        exit_current(kw("done"));
    })
    .unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![agent.to_term(), kw("exit")], kw("done"))
    );
}

#[test]
fn link_chain_dies_together() {
    // a - b - c linked in a chain; the test monitors c; killing a takes
    // down b, then c, each with the same reason.
    let (tx, rx) = std::sync::mpsc::channel();
    let c = spawn_with(&monitor(), receive).unwrap();
    let c2 = c.clone();
    let b = spawn(move || {
        link(&c2, Attach::Link).unwrap();
        tx.send(()).unwrap();
        receive()
    })
    .unwrap();
    rx.recv_timeout(WAIT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let b2 = b.clone();
    let a = spawn(move || {
        link(&b2, Attach::Link).unwrap();
        tx.send(()).unwrap();
        receive()
    })
    .unwrap();
    rx.recv_timeout(WAIT).unwrap();
    exit(kw("crash"), &a).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![c.to_term(), kw("exit")], kw("crash"))
    );
    assert!(!b.is_alive() || wait_dead(&b));
}

/// Waits for `agent`'s exit itself: monitors it and takes its exit
/// notification (`:NOPROC` if it has already exited), leaving other
/// messages queued. False if none came within the test timeout.
fn wait_dead(agent: &Agent) -> bool {
    if link(agent, Attach::Monitor).is_err() {
        return false;
    }
    let about = agent.to_term();
    receive_matching(
        |m| match m {
            Term::List(items) | Term::Dotted(items, _) => items.first() == Some(&about),
            _ => false,
        },
        Some(WAIT),
    )
    .is_ok()
        && !agent.is_alive()
}

#[test]
fn monitoring_parent_exit_kills_its_child() {
    let (tx, rx) = std::sync::mpsc::channel();
    let parent = spawn_with(&monitor(), move || {
        let child = spawn_with(&monitor(), receive).unwrap();
        tx.send(child).unwrap();
        receive()
    })
    .unwrap();
    let child = rx.recv_timeout(WAIT).unwrap();
    exit(kw("give-up"), &parent).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![parent.to_term(), kw("exit")], kw("give-up"))
    );
    assert!(wait_dead(&child));
    assert_eq!(
        child.outcome(),
        Some(erlangen::Outcome::Exited(kw("give-up")))
    );
}

#[test]
fn linking_to_a_dead_agent_reports_noproc() {
    let dead = spawn_with(&monitor(), || ()).unwrap();
    recv();
    let watcher = spawn_with(&monitor(), move || {
        link(&dead, Attach::Monitor).unwrap();
        receive_timeout(WAIT)
    })
    .unwrap();
    // The watcher got (dead :EXIT . :NOPROC) and returned it.
    let notice = recv();
    let items = notice.as_list().unwrap();
    assert_eq!(items[0], watcher.to_term());
    assert_eq!(items[1], kw("ok"));
    assert!(
        items[2].to_string().ends_with(":EXIT . :NOPROC)"),
        "{notice}"
    );
}

#[test]
fn linking_to_self_is_an_error() {
    assert!(matches!(
        link(Agent::current(), Attach::Link),
        Err(erlangen::agent::LinkError::SelfLink)
    ));
}

#[test]
fn unlink_detaches_both_ways() {
    let (tx, rx) = std::sync::mpsc::channel();
    // b answers whoever asks, then waits.
    let b_body = || {
        let asker = receive();
        let _ = send(kw("alive"), asker);
        receive()
    };
    let a = spawn_with(&monitor(), move || -> Term {
        let b = spawn_with(&SpawnOptions::new().attach(Attach::Link), b_body).unwrap();
        unlink(&b).unwrap();
        tx.send(b.clone()).unwrap();
        exit_current(kw("alone"));
    })
    .unwrap();
    let b = rx.recv_timeout(WAIT).unwrap();
    link(&b, Attach::Monitor).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![a.to_term(), kw("exit")], kw("alone"))
    );
    // b survives its former partner's exit. A kill from a's exit would
    // already be on b's priority lane (a tells its links before its
    // monitors, this thread among them), so it would end b at the receive
    // that takes our question, and we would get b's exit notification
    // instead of the answer.
    send(Agent::current().to_term(), &b).unwrap();
    assert_eq!(recv(), kw("alive"));
    exit(kw("cleanup"), &b).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![b.to_term(), kw("exit")], kw("cleanup"))
    );
}

#[test]
fn full_mailbox_drops_and_counts() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let agent = spawn_with(&SpawnOptions::new().mailbox_size(4), move || {
        rx.recv_timeout(WAIT).ok();
        let mut got = Vec::new();
        while let Ok(m) = receive_timeout(Duration::ZERO) {
            got.push(m);
        }
        Term::list(got)
    })
    .unwrap();
    for i in 0..10 {
        agent.send(Term::from(i));
    }
    let stats = erlangen::management::agent_stats(&agent).unwrap();
    assert_eq!(stats.dropped, 6);
    assert_eq!(stats.queued, 4);
    link(&agent, Attach::Monitor).unwrap();
    tx.send(()).unwrap();
    let notice = recv();
    assert_eq!(
        notice,
        Term::list(vec![
            agent.to_term(),
            kw("ok"),
            Term::list(vec![0.into(), 1.into(), 2.into(), 3.into()])
        ])
    );
}

#[test]
fn exit_signal_overtakes_queued_messages_and_closes_mailbox() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let agent = spawn_with(&monitor(), move || {
        rx.recv_timeout(WAIT).ok();
        receive()
    })
    .unwrap();
    agent.send(1);
    exit(kw("stop"), &agent).unwrap();
    assert!(!agent.send(2), "a killed agent's mailbox is closed");
    tx.send(()).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![agent.to_term(), kw("exit")], kw("stop"))
    );
}

#[test]
fn killed_agent_that_finishes_exits_with_kill_reason() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let agent = spawn_with(&monitor(), move || {
        rx.recv_timeout(WAIT).ok();
        Term::from("finished anyway")
    })
    .unwrap();
    exit(kw("late"), &agent).unwrap();
    tx.send(()).unwrap();
    assert_eq!(
        recv(),
        Term::dotted(vec![agent.to_term(), kw("exit")], kw("late"))
    );
}

#[test]
fn selective_receive_keeps_others_in_order() {
    let me = Agent::current();
    let _ = erlangen::flush_messages();
    for i in 1..=5 {
        me.send(Term::from(i));
    }
    let four = receive_matching(|m| m.as_int() == Some(4), Some(WAIT)).unwrap();
    assert_eq!(four, Term::from(4));
    assert_eq!(
        receive_matching(|m| m.as_int() == Some(9), Some(Duration::from_millis(10))),
        Err(Timeout)
    );
    let rest: Vec<Term> = (0..4).map(|_| recv()).collect();
    assert_eq!(rest, vec![1.into(), 2.into(), 3.into(), 5.into()]);
}

#[test]
fn names_register_resolve_and_free_on_exit() {
    let agent = spawn_with(&monitor(), || {
        let m = receive();
        Term::list(vec![kw("got"), m])
    })
    .unwrap();
    registry::register(":test-names-echo", &agent).unwrap();
    assert!(registry::registered().contains(&"TEST-NAMES-ECHO".to_owned()));
    // Taken.
    let other = spawn(receive).unwrap();
    assert_eq!(
        registry::register("test-names-echo", &other),
        Err(NameError::Taken("TEST-NAMES-ECHO".into()))
    );
    // Usable wherever an agent is: send by keyword and by string.
    send(kw("hi"), kw("test-names-echo")).unwrap();
    assert_eq!(
        recv(),
        Term::list(vec![
            agent.to_term(),
            kw("ok"),
            Term::list(vec![kw("got"), kw("hi")])
        ])
    );
    // Freed on exit.
    assert!(registry::whereis("test-names-echo").is_none());
    registry::register(":test-names-echo", &other).unwrap();
    exit(kw("done"), ":test-names-echo").unwrap();
    assert!(wait_dead(&other));
}

#[test]
fn unknown_and_invalid_names_are_clear_errors() {
    match send(1, kw("test-no-such-name")) {
        Err(erlangen::agent::SendError::Target(TargetError::UnknownName(n))) => {
            assert_eq!(n, "TEST-NO-SUCH-NAME")
        }
        other => panic!("unexpected {other:?}"),
    }
    let agent = spawn(receive).unwrap();
    assert!(matches!(
        registry::register("", &agent),
        Err(NameError::Invalid(_))
    ));
    assert!(matches!(
        registry::register("a/b", &agent),
        Err(NameError::Invalid(_))
    ));
    assert!(send(1, Term::from(5)).is_err());
    exit(kw("done"), &agent).unwrap();
}

#[test]
fn spawn_with_name_registers_before_running() {
    let agent = spawn_with(
        &SpawnOptions::new()
            .name(":test-spawn-named")
            .attach(Attach::Monitor),
        || registry::whereis("test-spawn-named").map(|a| a.to_term()),
    )
    .unwrap();
    assert_eq!(
        recv(),
        Term::list(vec![agent.to_term(), kw("ok"), agent.to_term()])
    );
    let taken = spawn_with(&SpawnOptions::new().name("test-spawn-named-2"), receive).unwrap();
    assert!(spawn_with(&SpawnOptions::new().name("test-spawn-named-2"), receive).is_err());
    exit(kw("done"), &taken).unwrap();
}

#[test]
fn many_agents_spawn_and_report() {
    let n = 2000;
    let mut agents = Vec::new();
    for i in 0..n {
        agents.push(spawn_with(&monitor(), move || Term::from(i)).unwrap());
    }
    let mut sum = 0;
    for _ in 0..n {
        let notice = recv();
        sum += notice.as_list().unwrap()[2].as_int().unwrap();
    }
    assert_eq!(sum, (0..n).sum::<i64>());
}

#[test]
fn agent_tree_shows_monitored_children_and_links() {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = spawn(move || {
        let a = spawn_with(&monitor(), receive).unwrap();
        let b = spawn_with(&SpawnOptions::new().attach(Attach::Link), receive).unwrap();
        tx.send((a, b)).unwrap();
        receive()
    })
    .unwrap();
    let (a, b) = rx.recv_timeout(WAIT).unwrap();
    let tree = erlangen::management::agent_tree(&root).unwrap();
    assert_eq!(tree.monitored.len(), 1);
    assert_eq!(tree.monitored[0].agent, a.to_term());
    assert_eq!(tree.links, vec![b.to_term()]);
    let text = tree.to_string();
    assert!(text.lines().count() == 2, "{text}");
    exit(kw("done"), &root).unwrap();
    assert!(wait_dead(&a) && wait_dead(&b));
}

#[test]
fn stats_count_messages_and_times() {
    let agent = spawn_with(&monitor(), || {
        receive();
        receive();
    })
    .unwrap();
    agent.send(1);
    agent.send(2);
    recv();
    let stats = erlangen::management::agent_stats(&agent).unwrap();
    assert_eq!(stats.received, 2);
    assert!(stats.death.is_some());
    assert!(stats.death.unwrap() >= stats.birth);
}
