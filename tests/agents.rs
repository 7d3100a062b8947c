//! Agents, links, monitors, names and mailboxes in one process (SPEC
//! sections 1-3), as **one suite over both kinds of agent**: every test
//! body is written once, as an `async` block that receives through
//! [`Kind`], and runs once on a thread agent (the block driven by
//! `block_on` on the agent's own thread, receiving with the blocking
//! `receive`) and once on an async agent (on the scheduler, receiving with
//! `.await`). Where a test has two agents, it also runs with the kinds
//! mixed. The first tests are ported from the seed's `test/agent-test.lisp`
//! (eugeneia/erlangen), with the pseudo-agent replaced by the test thread's
//! own agent; the rest follow the SPEC and Erlang's rules for links and
//! exit signals.
//!
//! Every receive here has a timeout, so a broken runtime fails a test
//! instead of hanging it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use erlangen::agent::{exit_current, IntoOutcome, NameError, SpawnError, TargetError};
use erlangen::async_agent;
use erlangen::{
    exit, link, receive_matching, receive_timeout, registry, send, unlink, Agent, Attach,
    SpawnOptions, Term, Timeout,
};

const WAIT: Duration = Duration::from_secs(10);

/// Which kind of agent a test body runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Thread,
    Async,
}

impl Kind {
    /// Spawns an agent of this kind running `body`.
    fn spawn<F>(self, options: &SpawnOptions, body: F) -> Result<Agent, SpawnError>
    where
        F: Future + Send + 'static,
        F::Output: IntoOutcome,
    {
        match self {
            Kind::Thread => erlangen::spawn_with(options, move || async_agent::block_on(body)),
            Kind::Async => async_agent::spawn_with(options, body),
        }
    }

    /// The next message, as this kind receives: blocking on a thread,
    /// awaiting on the scheduler.
    async fn receive(self) -> Term {
        match self {
            Kind::Thread => erlangen::receive(),
            Kind::Async => async_agent::receive().await,
        }
    }

    async fn receive_timeout(self, timeout: Duration) -> Result<Term, Timeout> {
        match self {
            Kind::Thread => receive_timeout(timeout),
            Kind::Async => async_agent::receive_timeout(timeout).await,
        }
    }
}

/// Runs a test body once per kind (`thread`, `async_`), so a failure names
/// the kind.
macro_rules! both_kinds {
    ($(#[$doc:meta])* fn $name:ident($k:ident) $body:block) => {
        mod $name {
            use super::*;
            fn run($k: Kind) $body
            #[test]
            fn thread() {
                run(Kind::Thread)
            }
            #[test]
            fn async_() {
                run(Kind::Async)
            }
        }
    };
}

/// Runs a test body with every pair of kinds (`tt`, `ta`, `at`, `aa`).
macro_rules! kind_pairs {
    (fn $name:ident($a:ident, $b:ident) $body:block) => {
        mod $name {
            use super::*;
            fn run($a: Kind, $b: Kind) $body
            #[test]
            fn tt() {
                run(Kind::Thread, Kind::Thread)
            }
            #[test]
            fn ta() {
                run(Kind::Thread, Kind::Async)
            }
            #[test]
            fn at() {
                run(Kind::Async, Kind::Thread)
            }
            #[test]
            fn aa() {
                run(Kind::Async, Kind::Async)
            }
        }
    };
}

/// The test thread (a thread agent) receives with a timeout.
fn recv() -> Term {
    receive_timeout(WAIT).expect("a message within the test timeout")
}

fn monitor() -> SpawnOptions {
    SpawnOptions::new().attach(Attach::Monitor)
}

fn kw(name: &str) -> Term {
    Term::keyword(name)
}

fn exited(agent: &Agent, reason: Term) -> Term {
    Term::dotted(vec![agent.to_term(), kw("exit")], reason)
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

// Source: test-send-receive
kind_pairs! {
    fn send_receive_through_a_relay(relay_kind, sender_kind) {
        let me = Agent::current();
        let relay = relay_kind
            .spawn(&SpawnOptions::new(), async move {
                me.send(relay_kind.receive().await);
            })
            .unwrap();
        sender_kind
            .spawn(&SpawnOptions::new(), async move {
                relay.send(kw("hello"));
            })
            .unwrap();
        assert_eq!(recv(), kw("hello"));
    }
}

// Source: test-send-receive (timeout part)
both_kinds! {
    fn unhandled_receive_timeout_exits_with_timeout(k) {
        let agent = k
            .spawn(&monitor(), async move {
                k.receive_timeout(Duration::from_millis(50)).await
            })
            .unwrap();
        assert_eq!(recv(), exited(&agent, kw("timeout")));
    }
}

// Source: test-monitor-kill
both_kinds! {
    fn monitor_sees_kill_reason(k) {
        let monitored = k.spawn(&monitor(), k.receive()).unwrap();
        exit(kw("kill"), &monitored).unwrap();
        assert_eq!(recv(), exited(&monitored, kw("kill")));
    }
}

// Source: test-link
kind_pairs! {
    fn linked_child_returning_kills_parent_with_ok_values(parent_kind, child_kind) {
        let parent = parent_kind
            .spawn(&monitor(), async move {
                child_kind
                    .spawn(&SpawnOptions::new().attach(Attach::Link), async {
                        Term::from(6)
                    })
                    .unwrap();
                parent_kind.receive().await
            })
            .unwrap();
        // (parent :EXIT :OK 6), as in the seed.
        assert_eq!(
            recv(),
            Term::list(vec![parent.to_term(), kw("exit"), kw("ok"), 6.into()])
        );
    }
}

// Source: test-send-error-killed (here sending to and killing a dead agent
// is silent, as SPEC section 1 says).
both_kinds! {
    fn sending_to_and_killing_a_dead_agent_do_nothing_harmful(k) {
        let agent = k.spawn(&monitor(), k.receive()).unwrap();
        exit(kw("kill"), &agent).unwrap();
        recv();
        assert!(!agent.is_alive());
        assert!(send(kw("test"), &agent).is_ok());
        assert!(exit(kw("again"), &agent).is_ok());
        assert!(send(kw("test"), agent.to_term()).is_ok());
        assert_eq!(agent.outcome(), Some(erlangen::Outcome::Exited(kw("kill"))));
    }
}

kind_pairs! {
    fn messages_arrive_in_send_order(receiver_kind, sender_kind) {
        let receiver = receiver_kind
            .spawn(&monitor().mailbox_size(1000), async move {
                let mut got = Vec::new();
                for _ in 0..1000 {
                    got.push(receiver_kind.receive_timeout(WAIT).await.unwrap());
                }
                Term::list(got)
            })
            .unwrap();
        let to = receiver.clone();
        sender_kind
            .spawn(&SpawnOptions::new(), async move {
                for i in 0..1000 {
                    to.send(Term::from(i));
                }
            })
            .unwrap();
        let expected: Vec<Term> = (0..1000).map(Term::from).collect();
        assert_eq!(
            recv(),
            Term::list(vec![receiver.to_term(), kw("ok"), Term::list(expected)])
        );
    }
}

both_kinds! {
    fn receive_timeout_and_poll(k) {
        let agent = k
            .spawn(&monitor(), async move {
                let nothing = k.receive_timeout(Duration::ZERO).await;
                let late = k.receive_timeout(Duration::from_millis(20)).await;
                Agent::current().send(1);
                let polled = k.receive_timeout(Duration::ZERO).await;
                Term::list(vec![
                    Term::from(nothing == Err(Timeout)),
                    Term::from(late == Err(Timeout)),
                    polled.unwrap_or(Term::Nil),
                ])
            })
            .unwrap();
        assert_eq!(
            recv(),
            Term::list(vec![
                agent.to_term(),
                kw("ok"),
                Term::list(vec![Term::T, Term::T, 1.into()])
            ])
        );
    }
}

both_kinds! {
    fn monitor_gets_return_values(k) {
        let agent = k
            .spawn(&monitor(), async {
                erlangen::Values(vec![1.into(), "two".into()])
            })
            .unwrap();
        assert_eq!(
            recv(),
            Term::list(vec![agent.to_term(), kw("ok"), 1.into(), "two".into()])
        );
        let unit = k.spawn(&monitor(), async {}).unwrap();
        assert_eq!(recv(), Term::list(vec![unit.to_term(), kw("ok")]));
    }
}

both_kinds! {
    fn panic_becomes_exit_reason(k) {
        let agent = k
            .spawn(&monitor(), async {
                if true {
                    panic!("boom at the agent");
                }
                Term::Nil
            })
            .unwrap();
        assert_eq!(recv(), exited(&agent, Term::from("boom at the agent")));
        // The runtime goes on: a fresh agent of the same kind works.
        let next = k.spawn(&monitor(), async { 7 }).unwrap();
        assert_eq!(recv(), Term::list(vec![next.to_term(), kw("ok"), 7.into()]));
    }
}

both_kinds! {
    fn error_result_becomes_exit_reason(k) {
        let agent = k
            .spawn(&monitor(), async { Err::<Term, Term>(kw("bad")) })
            .unwrap();
        assert_eq!(recv(), exited(&agent, kw("bad")));
    }
}

both_kinds! {
    fn exit_self_ends_the_agent_now(k) {
        let agent = k
            .spawn(&monitor(), async {
                if true {
                    exit_current(kw("done"));
                }
                Term::Nil
            })
            .unwrap();
        assert_eq!(recv(), exited(&agent, kw("done")));
        // exit(reason, self) is the same.
        let agent = k
            .spawn(&monitor(), async {
                let _ = exit(kw("by-exit"), Agent::current());
                Term::from("not reached")
            })
            .unwrap();
        assert_eq!(recv(), exited(&agent, kw("by-exit")));
    }
}

kind_pairs! {
    fn link_chain_dies_together(a_kind, b_kind) {
        // a - b - c linked in a chain (c of a's kind); the test monitors c;
        // killing a takes down b, then c, each with the same reason.
        let me = Agent::current();
        let c = a_kind.spawn(&monitor(), a_kind.receive()).unwrap();
        let c2 = c.clone();
        let tell = me.clone();
        let b = b_kind
            .spawn(&SpawnOptions::new(), async move {
                link(&c2, Attach::Link).unwrap();
                tell.send(kw("b-linked"));
                b_kind.receive().await
            })
            .unwrap();
        assert_eq!(recv(), kw("b-linked"));
        let b2 = b.clone();
        let a = a_kind
            .spawn(&SpawnOptions::new(), async move {
                link(&b2, Attach::Link).unwrap();
                me.send(kw("a-linked"));
                a_kind.receive().await
            })
            .unwrap();
        assert_eq!(recv(), kw("a-linked"));
        exit(kw("crash"), &a).unwrap();
        assert_eq!(recv(), exited(&c, kw("crash")));
        assert!(!b.is_alive() || wait_dead(&b));
    }
}

kind_pairs! {
    fn monitoring_parent_exit_kills_its_child(parent_kind, child_kind) {
        let me = Agent::current();
        let parent = parent_kind
            .spawn(&monitor(), async move {
                let child = child_kind.spawn(&monitor(), child_kind.receive()).unwrap();
                me.send(child.to_term());
                parent_kind.receive().await
            })
            .unwrap();
        let child_term = recv();
        exit(kw("give-up"), &parent).unwrap();
        assert_eq!(recv(), exited(&parent, kw("give-up")));
        // The child went with it.
        link(child_term.clone(), Attach::Monitor).unwrap();
        let notice = recv();
        assert!(
            notice == Term::dotted(vec![child_term.clone(), kw("exit")], kw("give-up"))
                || notice == Term::dotted(vec![child_term, kw("exit")], kw("noproc")),
            "{notice}"
        );
    }
}

both_kinds! {
    fn linking_to_a_dead_agent_reports_noproc(k) {
        let dead = k.spawn(&monitor(), async {}).unwrap();
        recv();
        let watcher = k
            .spawn(&monitor(), async move {
                link(&dead, Attach::Monitor).unwrap();
                k.receive_timeout(WAIT).await
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
}

both_kinds! {
    fn linking_to_self_is_an_error(k) {
        let agent = k
            .spawn(&monitor(), async {
                matches!(
                    link(Agent::current(), Attach::Link),
                    Err(erlangen::agent::LinkError::SelfLink)
                )
            })
            .unwrap();
        assert_eq!(recv(), Term::list(vec![agent.to_term(), kw("ok"), Term::T]));
    }
}

kind_pairs! {
    fn unlink_detaches_both_ways(a_kind, b_kind) {
        let me = Agent::current();
        let a = a_kind
            .spawn(&monitor(), async move {
                // b answers whoever asks, then waits.
                let b = b_kind
                    .spawn(&SpawnOptions::new().attach(Attach::Link), async move {
                        let asker = b_kind.receive().await;
                        let _ = send(kw("alive"), asker);
                        b_kind.receive().await
                    })
                    .unwrap();
                unlink(&b).unwrap();
                me.send(b.to_term());
                if true {
                    exit_current(kw("alone"));
                }
                Term::Nil
            })
            .unwrap();
        // a's exit notice comes after the message a sent before exiting.
        let b = receive_matching(|m| matches!(m, Term::Agent(_)), Some(WAIT)).unwrap();
        link(b.clone(), Attach::Monitor).unwrap();
        assert_eq!(recv(), exited(&a, kw("alone")));
        // b survives its former partner's exit. A kill from a's exit would
        // already be on b's priority lane (a tells its links before its
        // monitors, this thread among them), so it would end b at the
        // receive that takes our question, and we would get b's exit
        // notification instead of the answer.
        send(Agent::current().to_term(), b.clone()).unwrap();
        assert_eq!(recv(), kw("alive"));
        exit(kw("cleanup"), b.clone()).unwrap();
        assert_eq!(recv(), Term::dotted(vec![b, kw("exit")], kw("cleanup")));
    }
}

/// A flag a test body polls (yielding) instead of receiving, so messages
/// can pile up in its mailbox meanwhile.
fn flag() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let f = Arc::new(AtomicBool::new(false));
    (Arc::clone(&f), f)
}

async fn until(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        async_agent::yield_now().await;
    }
}

both_kinds! {
    fn full_mailbox_drops_and_counts(k) {
        let (go, go_seen) = flag();
        let agent = k
            .spawn(&monitor().mailbox_size(4), async move {
                until(&go_seen).await;
                let mut got = Vec::new();
                while let Ok(m) = k.receive_timeout(Duration::ZERO).await {
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
        go.store(true, Ordering::Release);
        assert_eq!(
            recv(),
            Term::list(vec![
                agent.to_term(),
                kw("ok"),
                Term::list(vec![0.into(), 1.into(), 2.into(), 3.into()])
            ])
        );
    }
}

both_kinds! {
    fn exit_signal_overtakes_queued_messages_and_closes_mailbox(k) {
        let (go, go_seen) = flag();
        let agent = k
            .spawn(&monitor(), async move {
                until(&go_seen).await;
                k.receive().await
            })
            .unwrap();
        agent.send(1);
        exit(kw("stop"), &agent).unwrap();
        assert!(!agent.send(2), "a killed agent's mailbox is closed");
        go.store(true, Ordering::Release);
        assert_eq!(recv(), exited(&agent, kw("stop")));
    }
}

both_kinds! {
    fn killed_agent_that_finishes_exits_with_kill_reason(k) {
        let (go, go_seen) = flag();
        let agent = k
            .spawn(&monitor(), async move {
                // Never receives: finishes once the test lets it.
                until(&go_seen).await;
                Term::from("finished anyway")
            })
            .unwrap();
        exit(kw("late"), &agent).unwrap();
        go.store(true, Ordering::Release);
        assert_eq!(recv(), exited(&agent, kw("late")));
    }
}

both_kinds! {
    fn selective_receive_keeps_others_in_order(k) {
        let agent = k
            .spawn(&monitor(), async move {
                let me = Agent::current();
                for i in 1..=5 {
                    me.send(Term::from(i));
                }
                let four = match k {
                    Kind::Thread => receive_matching(|m| m.as_int() == Some(4), Some(WAIT)),
                    Kind::Async => {
                        async_agent::receive_matching(|m| m.as_int() == Some(4), Some(WAIT)).await
                    }
                };
                let none = match k {
                    Kind::Thread => {
                        receive_matching(|m| m.as_int() == Some(9), Some(Duration::from_millis(10)))
                    }
                    Kind::Async => {
                        async_agent::receive_matching(
                            |m| m.as_int() == Some(9),
                            Some(Duration::from_millis(10)),
                        )
                        .await
                    }
                };
                let mut rest = Vec::new();
                for _ in 0..4 {
                    rest.push(k.receive_timeout(WAIT).await.unwrap());
                }
                Term::list(vec![
                    four.unwrap(),
                    Term::from(none == Err(Timeout)),
                    Term::list(rest),
                ])
            })
            .unwrap();
        assert_eq!(
            recv(),
            Term::list(vec![
                agent.to_term(),
                kw("ok"),
                Term::list(vec![
                    4.into(),
                    Term::T,
                    Term::list(vec![1.into(), 2.into(), 3.into(), 5.into()])
                ])
            ])
        );
    }
}

both_kinds! {
    fn names_register_resolve_and_free_on_exit(k) {
        let name = format!("test-names-echo-{k:?}");
        let agent = k
            .spawn(&monitor(), async move {
                let m = k.receive().await;
                Term::list(vec![kw("got"), m])
            })
            .unwrap();
        registry::register(&name, &agent).unwrap();
        assert!(registry::registered().contains(&name.to_uppercase()));
        // Taken.
        let other = k.spawn(&SpawnOptions::new(), k.receive()).unwrap();
        assert_eq!(
            registry::register(&name, &other),
            Err(NameError::Taken(name.to_uppercase()))
        );
        // Usable wherever an agent is.
        send(kw("hi"), kw(&name)).unwrap();
        assert_eq!(
            recv(),
            Term::list(vec![
                agent.to_term(),
                kw("ok"),
                Term::list(vec![kw("got"), kw("hi")])
            ])
        );
        // Freed on exit.
        assert!(registry::whereis(&name).is_none());
        registry::register(&name, &other).unwrap();
        exit(kw("done"), kw(&name)).unwrap();
        assert!(wait_dead(&other));
    }
}

both_kinds! {
    fn unknown_and_invalid_names_are_clear_errors(k) {
        match send(1, kw("test-no-such-name")) {
            Err(erlangen::agent::SendError::Target(TargetError::UnknownName(n))) => {
                assert_eq!(n, "TEST-NO-SUCH-NAME")
            }
            other => panic!("unexpected {other:?}"),
        }
        let agent = k.spawn(&SpawnOptions::new(), k.receive()).unwrap();
        assert!(matches!(registry::register("", &agent), Err(NameError::Invalid(_))));
        assert!(matches!(registry::register("a/b", &agent), Err(NameError::Invalid(_))));
        assert!(send(1, Term::from(5)).is_err());
        exit(kw("done"), &agent).unwrap();
    }
}

both_kinds! {
    fn spawn_with_name_registers_before_running(k) {
        let name = format!("test-spawn-named-{k:?}");
        let look = name.clone();
        let agent = k
            .spawn(&SpawnOptions::new().name(&name).attach(Attach::Monitor), async move {
                registry::whereis(&look).map(|a| a.to_term())
            })
            .unwrap();
        assert_eq!(
            recv(),
            Term::list(vec![agent.to_term(), kw("ok"), agent.to_term()])
        );
        let taken_name = format!("{name}-2");
        let taken = k
            .spawn(&SpawnOptions::new().name(&taken_name), k.receive())
            .unwrap();
        assert!(k
            .spawn(&SpawnOptions::new().name(&taken_name), k.receive())
            .is_err());
        exit(kw("done"), &taken).unwrap();
    }
}

both_kinds! {
    fn many_agents_spawn_and_report(k) {
        let n = 2000;
        for i in 0..n {
            k.spawn(&monitor(), async move { Term::from(i) }).unwrap();
        }
        let mut sum = 0;
        for _ in 0..n {
            let notice = recv();
            sum += notice.as_list().unwrap()[2].as_int().unwrap();
        }
        assert_eq!(sum, (0..n).sum::<i64>());
    }
}

kind_pairs! {
    fn agent_tree_shows_monitored_children_and_links(root_kind, child_kind) {
        let me = Agent::current();
        let root = root_kind
            .spawn(&SpawnOptions::new(), async move {
                let a = child_kind.spawn(&monitor(), child_kind.receive()).unwrap();
                let b = child_kind
                    .spawn(&SpawnOptions::new().attach(Attach::Link), child_kind.receive())
                    .unwrap();
                me.send(Term::list(vec![a.to_term(), b.to_term()]));
                root_kind.receive().await
            })
            .unwrap();
        let pair = recv();
        let (a, b) = match pair.as_list() {
            Some([a, b]) => (a.clone(), b.clone()),
            _ => panic!("{pair}"),
        };
        let tree = erlangen::management::agent_tree(&root).unwrap();
        assert_eq!(tree.monitored.len(), 1);
        let label = |t: &Term| match child_kind {
            Kind::Thread => t.clone(),
            Kind::Async => Term::list(vec![t.clone(), kw("async")]),
        };
        assert_eq!(tree.monitored[0].agent, label(&a));
        assert_eq!(tree.links, vec![label(&b)]);
        let text = tree.to_string();
        assert!(text.lines().count() == 2, "{text}");
        exit(kw("done"), &root).unwrap();
        for t in [a, b] {
            link(t.clone(), Attach::Monitor).unwrap();
            recv();
        }
    }
}

both_kinds! {
    fn stats_count_messages_and_times(k) {
        let agent = k
            .spawn(&monitor(), async move {
                k.receive().await;
                k.receive().await;
            })
            .unwrap();
        agent.send(1);
        agent.send(2);
        recv();
        let stats = erlangen::management::agent_stats(&agent).unwrap();
        assert_eq!(stats.received, 2);
        assert_eq!(
            stats.kind,
            match k {
                Kind::Thread => erlangen::Kind::Thread,
                Kind::Async => erlangen::Kind::Async,
            }
        );
        assert!(stats.death.is_some());
        assert!(stats.death.unwrap() >= stats.birth);
    }
}

/// An exit notification joins the mailbox behind what arrived before it,
/// as in Erlang: everything an agent sent before it exited is received
/// before the notice of its exit, even at a mailbox filled past its bound.
#[test]
fn exit_notice_comes_after_the_messages_sent_before_the_exit() {
    let me = Agent::current();
    let options = SpawnOptions::new().attach(Attach::Monitor);
    let sender = erlangen::spawn_with(&options, move || {
        for i in 0..1000 {
            me.send(i);
        }
        Term::keyword("sent")
    })
    .unwrap();
    let mut got = Vec::new();
    let notice = loop {
        let m = recv();
        match m.as_int() {
            Some(i) => got.push(i),
            None => break m,
        }
    };
    assert_eq!(
        notice,
        Term::list(vec![sender.to_term(), kw("ok"), kw("sent")])
    );
    // The mailbox (64) dropped what did not fit, but nothing came after the
    // notice, and what came kept its order.
    assert!(!got.is_empty());
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(receive_timeout(Duration::ZERO), Err(Timeout));
}
