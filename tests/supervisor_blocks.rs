//! Supervisor defects of issue 22 (items 5-9), with the API every version
//! has: a restart that keeps failing ends the supervisor within its
//! intensity; transient children that exit with `(:SHUTDOWN …)` stay down;
//! a start that fails returns only after the children it started are
//! stopped; one-for-all and rest-for-one do not start the later siblings
//! while a restart fails; a child that does not receive is counted gone
//! after its shutdown timeout, its name free for its successor. Thread and
//! async children.
//!
//! A start fails here the way it does in practice: the child's name is
//! taken (the child hands it to a squatter before it exits).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use erlangen::supervisor::{self, ChildSpec, Restart, Strategy, SupervisorSpec};
use erlangen::{
    async_agent, receive_timeout, registry, Agent, Attach, Kind, SpawnOptions, Target, Term,
};
use support::{eventually, WAIT};

const HOUR: Duration = Duration::from_secs(3600);

const KINDS: [Kind; 2] = [Kind::Thread, Kind::Async];

/// What a worker does with a message: `:crash` panics, `(:exit r)` exits
/// with `r`, `(:squat name)` hands the name to a fresh squatter agent and
/// exits with `:squatted`; anything else is ignored.
fn handle(m: &Term) -> Option<Term> {
    if m.is_keyword("CRASH") {
        panic!("crashed on request");
    }
    match m.as_list() {
        Some([k, reason]) if k.is_keyword("EXIT") => Some(reason.clone()),
        Some([k, Term::Str(name)]) if k.is_keyword("SQUAT") => {
            let squatter = squatter();
            registry::unregister(name).unwrap();
            registry::register(name, &squatter).unwrap();
            Some(Term::keyword("squatted"))
        }
        _ => None,
    }
}

/// An agent that only waits (at most the test's wait), to hold a name.
fn squatter() -> Agent {
    erlangen::spawn(|| {
        let _ = erlangen::receive_timeout(WAIT);
    })
    .unwrap()
}

/// Starts `spec`, monitored, and has its child `id` hand the child's name
/// `name` to a squatter, so that every restart of the child fails;
/// returns the supervisor and its exit notice, once the supervisor gave
/// up (within the wait), and ends the squatter.
fn squat_until_it_gives_up(spec: SupervisorSpec, id: &str, name: &str) -> (Agent, Term) {
    let sup = supervisor::start(spec, &SpawnOptions::new().attach(Attach::Monitor)).unwrap();
    let child = child(&sup, id).unwrap();
    erlangen::send(squat(name), &child).unwrap();
    let notice = receive_timeout(WAIT).expect("the supervisor gave up within the wait");
    if let Some(squatter) = registry::whereis(name) {
        erlangen::exit(Term::keyword("done"), &squatter).unwrap();
    }
    (sup, notice)
}

/// A worker child of `kind`; `started` counts its starts.
fn worker(kind: Kind, id: &str, started: &Arc<AtomicUsize>) -> ChildSpec {
    let started = Arc::clone(started);
    match kind {
        Kind::Thread => ChildSpec::thread(id, move || -> Result<(), Term> {
            started.fetch_add(1, Ordering::SeqCst);
            loop {
                if let Some(reason) = handle(&erlangen::receive()) {
                    return Err(reason);
                }
            }
        }),
        _ => ChildSpec::async_body(id, move || {
            started.fetch_add(1, Ordering::SeqCst);
            async {
                loop {
                    if let Some(reason) = handle(&async_agent::receive().await) {
                        return Err::<(), Term>(reason);
                    }
                }
            }
        }),
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn children(sup: impl Into<Target>) -> Vec<(String, Term)> {
    supervisor::which_children(sup, WAIT).unwrap()
}

fn child(sup: impl Into<Target>, id: &str) -> Option<Term> {
    children(sup)
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, a)| a)
}

fn squat(name: &str) -> Term {
    Term::list(vec![Term::keyword("squat"), Term::Str(name.to_owned())])
}

fn is_dead(agent: &Term) -> bool {
    erlangen::management::agent_stats(agent)
        .map_or(true, |s| s.to_term().to_string().contains(":DIED \""))
}

/// Item 5: the child's restart fails every time (its name is taken):
/// each attempt counts, so with intensity 2 the supervisor gives up at
/// once, not after retrying for ever.
#[test]
fn a_restart_that_keeps_failing_ends_the_supervisor() {
    for kind in KINDS {
        let name = format!("flaky-{kind:?}");
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(2, HOUR)
            .child(worker(kind, "flaky", &counter()).name(&name));
        let (sup, notice) = squat_until_it_gives_up(spec, "flaky", &name);
        assert_eq!(
            notice.to_string(),
            format!(
                "({} :EXIT :SHUTDOWN :REACHED-MAX-RESTART-INTENSITY \"flaky\")",
                sup.to_term()
            ),
            "{kind:?}"
        );
    }
}

/// Item 6: a transient child that exits with `(:SHUTDOWN …)`, and a
/// transient child supervisor that gave up, are not restarted.
#[test]
fn transient_children_that_shut_down_stay_down() {
    for kind in KINDS {
        let leaf = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(0, HOUR)
            .child(worker(kind, "leaf-worker", &counter()));
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .intensity(10, HOUR)
            .child(worker(kind, "shut", &counter()).restart(Restart::Transient))
            .child(ChildSpec::supervisor("leaf", leaf).restart(Restart::Transient))
            .child(worker(kind, "permanent", &counter()));
        let sup = supervisor::start(spec, &SpawnOptions::new()).unwrap();
        let shut = child(&sup, "shut").unwrap();
        let leaf = child(&sup, "leaf").unwrap();
        let leaf_worker = child(&leaf, "leaf-worker").unwrap();
        let shutdown = Term::list(vec![Term::keyword("shutdown"), Term::keyword("moved")]);
        erlangen::send(Term::list(vec![Term::keyword("exit"), shutdown]), &shut).unwrap();
        // The leaf may not restart at all: it gives up, with a (:SHUTDOWN …)
        // reason.
        erlangen::send(Term::keyword("crash"), &leaf_worker).unwrap();
        eventually("both ended", || is_dead(&shut) && is_dead(&leaf));
        // The positive event after them: a permanent child's restart. The
        // supervisor handles notices in order, so by then it has seen theirs.
        let permanent = child(&sup, "permanent").unwrap();
        erlangen::exit(Term::keyword("kill"), &permanent).unwrap();
        eventually("the permanent child restarted", || {
            child(&sup, "permanent").is_some_and(|a| a != permanent)
        });
        let ids: Vec<String> = children(&sup).into_iter().map(|(i, _)| i).collect();
        assert_eq!(ids, ["permanent"], "{kind:?}");
        erlangen::exit(Term::keyword("stop"), &sup).unwrap();
    }
}

/// A child of `kind` that sends its agent to `me` and then never receives
/// until `release` is set (at most the test's wait): a thread computes
/// (parks in short steps), an async agent sleeps in short steps (a sleep is
/// not a receive: an exit signal does not end it, and its worker is free).
fn busy(kind: Kind, id: &str, me: &Agent, release: &Arc<AtomicBool>) -> ChildSpec {
    fn spin(release: &AtomicBool) {
        let deadline = Instant::now() + WAIT;
        while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
    let (me, release) = (me.clone(), Arc::clone(release));
    match kind {
        Kind::Thread => ChildSpec::thread(id, move || {
            me.send(Term::list(vec![
                Term::keyword("busy"),
                Agent::current().to_term(),
            ]));
            spin(&release);
        }),
        _ => ChildSpec::async_body(id, move || {
            let (me, release) = (me.clone(), Arc::clone(&release));
            async move {
                me.send(Term::list(vec![
                    Term::keyword("busy"),
                    Agent::current().to_term(),
                ]));
                let deadline = Instant::now() + WAIT;
                while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                    async_agent::sleep(Duration::from_millis(1)).await;
                }
            }
        }),
    }
}

fn busy_agent() -> Term {
    let m = erlangen::receive_matching(
        |m| matches!(m.as_list(), Some([k, _]) if k.is_keyword("BUSY")),
        Some(WAIT),
    )
    .expect("the busy child started");
    m.as_list().unwrap()[1].clone()
}

/// Item 7: a start that fails returns only once the children it started
/// are stopped (here a child that does not receive, so stopping it takes
/// its shutdown timeout).
#[test]
fn a_failed_start_returns_after_its_children_are_stopped() {
    for kind in KINDS {
        let me = Agent::current();
        let release = Arc::new(AtomicBool::new(false));
        let name = format!("start-fails-{kind:?}");
        let squatter = squatter();
        registry::register(&name, &squatter).unwrap();
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .child(busy(kind, "busy", &me, &release).shutdown(Duration::from_millis(50)))
            .child(worker(kind, "blocked", &counter()).name(&name));
        let result = supervisor::start(spec, &SpawnOptions::new());
        assert!(
            matches!(&result, Err(supervisor::StartError::Child { id, .. }) if id == "blocked"),
            "{result:?}"
        );
        let started = busy_agent();
        assert!(
            is_dead(&started),
            "{kind:?}: start returned while a child it started was running"
        );
        release.store(true, Ordering::SeqCst);
        erlangen::exit(Term::keyword("done"), &squatter).unwrap();
    }
}

/// Item 8: when the restart of one child of a group fails, the children
/// after it are not started: the group is retried (each attempt counted;
/// here they all fail, and the supervisor gives up).
#[test]
fn a_failed_restart_in_a_group_does_not_start_the_later_siblings() {
    for strategy in [Strategy::OneForAll, Strategy::RestForOne] {
        for kind in KINDS {
            let name = format!("group-{strategy:?}-{kind:?}");
            let later = counter();
            let spec = SupervisorSpec::new(strategy)
                .intensity(3, HOUR)
                .child(worker(kind, "a", &counter()))
                .child(worker(kind, "b", &counter()).name(&name))
                .child(worker(kind, "c", &later));
            let (_, notice) = squat_until_it_gives_up(spec, "b", &name);
            assert!(
                notice
                    .to_string()
                    .ends_with(":EXIT :SHUTDOWN :REACHED-MAX-RESTART-INTENSITY \"b\")"),
                "{strategy:?} {kind:?}: {notice}"
            );
            assert_eq!(
                later.load(Ordering::SeqCst),
                1,
                "{strategy:?} {kind:?}: c was started again while b could not start"
            );
        }
    }
}

/// Item 9: a child that does not receive is counted gone after its
/// shutdown timeout: its name is free at once for its successor, and it
/// is reported dead though its code still runs.
#[test]
fn a_child_that_does_not_receive_is_counted_gone_after_its_shutdown_timeout() {
    for kind in KINDS {
        let me = Agent::current();
        let release = Arc::new(AtomicBool::new(false));
        let name = format!("busy-{kind:?}");
        let spec = SupervisorSpec::new(Strategy::OneForAll)
            .intensity(10, HOUR)
            .child(
                busy(kind, "busy", &me, &release)
                    .name(&name)
                    .shutdown(Duration::from_millis(50)),
            )
            .child(worker(kind, "crasher", &counter()));
        let sup = supervisor::start(spec, &SpawnOptions::new()).unwrap();
        let old = busy_agent();
        let crasher = child(&sup, "crasher").unwrap();
        erlangen::send(Term::keyword("crash"), &crasher).unwrap();
        // The successor starts under the name while the old code still runs.
        let new = busy_agent();
        assert_ne!(new, old);
        assert_eq!(
            registry::whereis(&name).map(|a| a.to_term()),
            Some(new.clone()),
            "{kind:?}"
        );
        assert!(
            is_dead(&old),
            "{kind:?}: the old child still counts as alive"
        );
        assert!(
            erlangen::management::agent_stats(&old)
                .map_or(true, |s| s.to_term().to_string().contains(":KILLED")),
            "{kind:?}"
        );
        assert_eq!(child(&sup, "busy"), Some(new));
        release.store(true, Ordering::SeqCst);
        erlangen::exit(Term::keyword("stop"), &sup).unwrap();
    }
}
