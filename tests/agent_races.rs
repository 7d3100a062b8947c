//! Races in the agent layer: attaching to an agent while it exits, and a
//! spawned agent that replaces itself (as the REPL does). Each race runs
//! many rounds; every wait is bounded, so a lost notice fails the test
//! instead of hanging it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use erlangen::management::agent_tree;
use erlangen::{link, receive_timeout, spawn, spawn_with, Agent, Attach, SpawnOptions, Term};

const WAIT: Duration = Duration::from_secs(10);
const ROUNDS: usize = 2000;

fn kw(name: &str) -> Term {
    Term::keyword(name)
}

fn recv() -> Term {
    receive_timeout(WAIT).expect("a message within the test timeout")
}

/// The releasing side of [`exiting_target`]'s gate: a two-party barrier
/// made of channels, so neither side can wait on it unbounded.
struct Gate {
    ready: mpsc::Receiver<()>,
    go: mpsc::Sender<()>,
}

impl Gate {
    /// Waits (bounded) until the target is at the gate, then lets it go:
    /// both sides leave together, as from a two-party barrier.
    fn open(self) -> Result<(), Term> {
        self.ready
            .recv_timeout(WAIT)
            .map_err(|_| kw("target-not-at-gate"))?;
        let _ = self.go.send(());
        Ok(())
    }
}

/// A target that ends as soon as the gate opens, and the gate.
fn exiting_target() -> (Agent, Gate) {
    let (ready_tx, ready) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let target = spawn(move || {
        let _ = ready_tx.send(());
        let _ = go_rx.recv_timeout(WAIT);
        kw("bye")
    })
    .unwrap();
    (target, Gate { ready, go })
}

/// Takes and drops `agent`'s lock over and over until the guard drops:
/// the attaching agent then often waits for its own lock at the step the
/// race is about, which makes the bad interleaving likely instead of rare.
struct Hammer(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

impl Hammer {
    fn on(agent: &Agent) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let agent = agent.clone();
        let join = thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let _ = agent.name();
            }
        });
        Hammer(stop, Some(join))
    }
}

impl Drop for Hammer {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(join) = self.1.take() {
            let _ = join.join();
        }
    }
}

/// Monitor mode: the watcher is told exactly once (the target's real exit
/// or `:NOPROC`), and keeps no link to the dead target afterwards.
#[test]
fn monitor_racing_exit_is_told_once_and_keeps_no_dead_link() {
    for round in 0..ROUNDS {
        let (target, go) = exiting_target();
        let t = target.clone();
        let watcher = spawn_with(&SpawnOptions::new().attach(Attach::Monitor), move || {
            go.open()?;
            link(&t, Attach::Monitor).unwrap();
            let notice = receive_timeout(WAIT).map_err(|_| kw("no-notice"))?;
            // A marker sent after the notice: nothing may come before it
            // (a second notice, queued before the marker, would).
            Agent::current().send(kw("marker"));
            let next = receive_timeout(WAIT).map_err(|_| kw("no-marker"))?;
            let links = agent_tree(Agent::current())
                .map(|tree| Term::list(tree.links))
                .unwrap_or(Term::Nil);
            Ok::<_, Term>(erlangen::Values(vec![notice, next, links]))
        })
        .unwrap();
        let hammer = Hammer::on(&watcher);
        let done = recv();
        drop(hammer);
        let items = done.as_list().unwrap_or_else(|| panic!("{done}"));
        assert_eq!(items[0], watcher.to_term(), "round {round}: {done}");
        assert_eq!(items[1], kw("ok"), "round {round}: {done}");
        let notice = items[2].to_string();
        assert!(
            notice.ends_with(":OK :BYE)") || notice.ends_with(":EXIT . :NOPROC)"),
            "round {round}: {notice}"
        );
        assert_eq!(items[3], kw("marker"), "round {round}: told twice");
        assert_eq!(
            items[4],
            Term::Nil,
            "round {round}: the watcher kept a link to the dead target"
        );
    }
}

/// Link mode: the linker dies of the target's exit (its `(:OK …)` reason)
/// or of `:NOPROC`, once, in every round.
#[test]
fn link_racing_exit_always_kills_the_linker() {
    for round in 0..ROUNDS {
        let (target, go) = exiting_target();
        let t = target.clone();
        let linker = spawn_with(&SpawnOptions::new().attach(Attach::Monitor), move || {
            go.open()?;
            link(&t, Attach::Link).unwrap();
            // Only an exit signal ends this receive early.
            receive_timeout(WAIT).map_err(|_| kw("never-told"))
        })
        .unwrap();
        let hammer = Hammer::on(&linker);
        let done = recv().to_string();
        drop(hammer);
        let prefix = format!("({} :EXIT", linker.to_term());
        assert!(
            done == format!("{prefix} :OK :BYE)") || done == format!("{prefix} . :NOPROC)"),
            "round {round}: {done}"
        );
    }
}

/// A spawned agent that replaced itself (`Agent::replace_current`, as the
/// REPL does after its agent was killed) ends its replacement when its
/// function returns: the replacement exits with the function's outcome
/// and leaves nothing alive on the pooled thread.
#[test]
fn replacement_agent_ends_with_its_pooled_job() {
    for _ in 0..20 {
        let (tx, rx) = mpsc::channel();
        let original = spawn_with(&SpawnOptions::new().attach(Attach::Monitor), move || {
            let fresh = Agent::replace_current(kw("replaced"));
            tx.send(fresh).unwrap();
            // Wait until the test monitors the replacement.
            let _ = receive_timeout(WAIT);
            Term::from(7)
        })
        .unwrap();
        assert_eq!(
            recv(),
            Term::dotted(vec![original.to_term(), kw("exit")], kw("replaced"))
        );
        let fresh = rx.recv_timeout(WAIT).unwrap();
        link(&fresh, Attach::Monitor).unwrap();
        fresh.send(kw("go"));
        assert_eq!(
            recv(),
            Term::list(vec![fresh.to_term(), kw("ok"), 7.into()])
        );
        assert!(!fresh.is_alive());
    }
}
