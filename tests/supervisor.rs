//! Supervisors (src/supervisor.rs): strategies, restart policies, names,
//! the intensity limit, a tree three levels deep, shutdown.

mod support;

use std::time::Duration;

use erlangen::supervisor::{self, ChildSpec, Restart, Strategy, SupervisorSpec};
use erlangen::{async_agent, receive, receive_timeout, Attach, SpawnOptions, Term};
use support::{eventually, WAIT};

/// A worker: panics on `:crash`, exits with the reason of `(:exit r)`,
/// returns on `:return`, ignores the rest.
fn worker() -> Result<Term, Term> {
    loop {
        let m = receive();
        if m.is_keyword("CRASH") {
            panic!("crashed on request");
        }
        if m.is_keyword("RETURN") {
            return Ok(Term::keyword("done"));
        }
        if let Some([k, reason]) = m.as_list() {
            if k.is_keyword("EXIT") {
                return Err(reason.clone());
            }
        }
    }
}

async fn async_worker() -> Result<Term, Term> {
    loop {
        let m = async_agent::receive().await;
        if m.is_keyword("CRASH") {
            panic!("async crash");
        }
        if m.is_keyword("RETURN") {
            return Ok(Term::keyword("done"));
        }
    }
}

fn children(sup: impl Into<erlangen::Target>) -> Vec<(String, Term)> {
    supervisor::which_children(sup, WAIT).unwrap()
}

fn child(sup: impl Into<erlangen::Target>, id: &str) -> Option<Term> {
    children(sup)
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, a)| a)
}

/// Waits until child `id` runs as an agent other than `old`; returns it.
fn restarted(sup: &(impl Into<erlangen::Target> + Clone), id: &str, old: &Term) -> Term {
    let mut new = None;
    eventually(&format!("restart of {id}"), || {
        new = child(sup.clone(), id).filter(|a| a != old);
        new.is_some()
    });
    new.unwrap()
}

fn exit_with(reason: &str) -> Term {
    Term::list(vec![Term::keyword("exit"), Term::keyword(reason)])
}

fn is_dead(agent: &Term) -> bool {
    erlangen::management::agent_stats(agent).is_err()
        || erlangen::management::agent_stats(agent)
            .unwrap()
            .to_term()
            .to_string()
            .contains(":DIED \"")
}

#[test]
fn one_for_one_restarts_the_crashed_child_only_and_gives_its_name_back() {
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(60))
        .child(ChildSpec::thread("named", worker).name("sup-test-named"))
        .child(ChildSpec::async_body("async", async_worker));
    let sup = supervisor::start(spec, &SpawnOptions::new()).unwrap();
    let named = child(&sup, "named").unwrap();
    let other = child(&sup, "async").unwrap();
    // An exit with a reason.
    erlangen::send(exit_with("boom"), &named).unwrap();
    let named2 = restarted(&sup, "named", &named);
    // The name now leads to the new agent.
    let by_name = erlangen::registry::whereis("sup-test-named").unwrap();
    assert_eq!(by_name.to_term(), named2);
    // A panic, in the async child.
    erlangen::send(Term::keyword("crash"), &other).unwrap();
    let other2 = restarted(&sup, "async", &other);
    assert_ne!(other, other2);
    assert_eq!(child(&sup, "named"), Some(named2.clone()));
    erlangen::exit(Term::keyword("stop"), &sup).unwrap();
    eventually("children stopped with their supervisor", || {
        is_dead(&named2) && is_dead(&other2)
    });
}

#[test]
fn one_for_all_and_rest_for_one() {
    for strategy in [Strategy::OneForAll, Strategy::RestForOne] {
        let spec = SupervisorSpec::new(strategy)
            .intensity(10, Duration::from_secs(60))
            .child(ChildSpec::thread("a", worker))
            .child(ChildSpec::thread("b", worker))
            .child(ChildSpec::async_body("c", async_worker));
        let sup = supervisor::start(spec, &SpawnOptions::new()).unwrap();
        let before = children(&sup);
        erlangen::send(Term::keyword("crash"), &before[1].1).unwrap();
        let b = restarted(&sup, "b", &before[1].1);
        let after = children(&sup);
        assert_eq!(after[1].1, b);
        // c, started after b, is restarted either way; a only for one-for-all.
        assert_ne!(after[2].1, before[2].1);
        assert!(is_dead(&before[2].1));
        match strategy {
            Strategy::OneForAll => assert_ne!(after[0].1, before[0].1),
            _ => assert_eq!(after[0].1, before[0].1),
        }
        erlangen::exit(Term::keyword("stop"), &sup).unwrap();
    }
}

#[test]
fn transient_children_stay_down_after_a_normal_exit_temporary_ones_always() {
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(60))
        .child(ChildSpec::thread("transient", worker).restart(Restart::Transient))
        .child(ChildSpec::thread("transient-2", worker).restart(Restart::Transient))
        .child(ChildSpec::thread("temporary", worker).restart(Restart::Temporary))
        .child(ChildSpec::thread("permanent", worker));
    let sup = supervisor::start(spec, &SpawnOptions::new()).unwrap();
    let transient = child(&sup, "transient").unwrap();
    let transient2 = child(&sup, "transient-2").unwrap();
    let temporary = child(&sup, "temporary").unwrap();
    let permanent = child(&sup, "permanent").unwrap();
    // An abnormal exit of a transient child: restarted.
    erlangen::send(exit_with("boom"), &transient2).unwrap();
    restarted(&sup, "transient-2", &transient2);
    // A normal return of a transient child, a crash of a temporary one.
    erlangen::send(Term::keyword("return"), &transient).unwrap();
    erlangen::send(Term::keyword("crash"), &temporary).unwrap();
    eventually("both gone", || is_dead(&transient) && is_dead(&temporary));
    // The positive event after them: a permanent child's restart. The
    // supervisor handles notices in order, so by then it has seen theirs.
    erlangen::exit(Term::keyword("kill"), &permanent).unwrap();
    restarted(&sup, "permanent", &permanent);
    eventually("the supervisor saw the exits", || {
        let ids: Vec<String> = children(&sup).into_iter().map(|(i, _)| i).collect();
        ids == ["transient-2", "permanent"]
    });
    erlangen::exit(Term::keyword("stop"), &sup).unwrap();
}

#[test]
fn beyond_its_intensity_a_supervisor_gives_up_and_stops_its_children() {
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(2, Duration::from_secs(3600))
        .child(ChildSpec::thread("flaky", worker))
        .child(ChildSpec::async_body("bystander", async_worker));
    let sup = supervisor::start(spec, &SpawnOptions::new().attach(Attach::Monitor)).unwrap();
    let bystander = child(&sup, "bystander").unwrap();
    let mut flaky = child(&sup, "flaky").unwrap();
    for _ in 0..2 {
        erlangen::send(Term::keyword("crash"), &flaky).unwrap();
        flaky = restarted(&sup, "flaky", &flaky);
    }
    erlangen::send(Term::keyword("crash"), &flaky).unwrap();
    let notice = receive_timeout(WAIT).unwrap();
    assert_eq!(
        notice.to_string(),
        format!(
            "({} :EXIT :SHUTDOWN :REACHED-MAX-RESTART-INTENSITY \"flaky\")",
            sup.to_term()
        )
    );
    assert!(is_dead(&bystander));
}

/// root (one-for-one) → mid (one-for-all) → leaf (rest-for-one) → workers.
#[test]
fn a_tree_three_levels_deep() {
    let leaf = SupervisorSpec::new(Strategy::RestForOne)
        .intensity(1, Duration::from_secs(3600))
        .child(ChildSpec::thread("w1", worker))
        .child(ChildSpec::async_body("w2", async_worker));
    let mid = SupervisorSpec::new(Strategy::OneForAll)
        .intensity(5, Duration::from_secs(3600))
        .child(ChildSpec::supervisor("leaf", leaf))
        .child(ChildSpec::thread("m1", worker));
    let root = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(3600))
        .child(ChildSpec::supervisor("mid", mid))
        .child(ChildSpec::thread("r1", worker));
    let root = supervisor::start(root, &SpawnOptions::new()).unwrap();
    let r1 = child(&root, "r1").unwrap();
    let mid = child(&root, "mid").unwrap();
    let mid_agent = mid.clone();
    let leaf = child(&mid_agent, "leaf").unwrap();
    let leaf_agent = leaf.clone();
    let m1 = child(&mid_agent, "m1").unwrap();
    // agent-tree shows all three levels under the root.
    let tree = erlangen::management::agent_tree(&root).unwrap().to_string();
    assert!(
        tree.contains(&leaf.to_string()) && tree.contains(&m1.to_string()),
        "{tree}"
    );
    let w1 = child(&leaf_agent, "w1").unwrap();
    assert!(tree.contains(&w1.to_string()), "{tree}");
    // A leaf worker's crash: the leaf restarts it (its one restart).
    erlangen::send(Term::keyword("crash"), &w1).unwrap();
    let w1b = restarted(&leaf_agent, "w1", &w1);
    // The next exceeds the leaf's intensity: the leaf gives up, and mid
    // (one-for-all) restarts the leaf and m1; root's r1 is untouched.
    erlangen::send(exit_with("again"), &w1b).unwrap();
    let leaf2 = restarted(&mid_agent, "leaf", &leaf);
    assert!(is_dead(&leaf) && is_dead(&w1b));
    eventually("m1 restarted", || {
        child(&mid_agent, "m1").is_some_and(|a| a != m1)
    });
    assert_eq!(child(&root, "r1"), Some(r1.clone()));
    assert_eq!(child(&root, "mid"), Some(mid.clone()));
    // Stopping the root stops everything, in reverse start order.
    erlangen::exit(Term::keyword("stop"), &root).unwrap();
    eventually("the whole tree stopped", || {
        is_dead(&r1) && is_dead(&mid) && is_dead(&leaf2)
    });
}
