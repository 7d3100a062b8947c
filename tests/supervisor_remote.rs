//! Supervisors from the REPL, with children on another node: the REPL's
//! built-ins (`start-supervisor`, `which-children`, `request`,
//! `pool-worker`), a remote child restarted on its node after it crashes,
//! and a supervisor giving up when the node is killed (every failed
//! restart attempt counts, as in OTP). Every
//! node is a kernel process, killed when the test ends; every wait is for
//! an event with a deadline.

mod support;

use support::{Cluster, Proc};

/// A kernel serving as node `name`, once registered.
fn node(cluster: &Cluster, name: &str) -> Proc {
    let form = format!("(node :host \"localhost\" :name \"{name}\")");
    let p = cluster.kernel(name, &["-e", &form]);
    cluster.wait_registered(name);
    p
}

/// Evaluates `form` until its output satisfies `ok`, within the test wait.
fn until(k: &mut Proc, form: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let out = k.eval(form);
        if ok(&out) {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "{form}: {out}");
        k.eval("(receive :timeout 0.05)");
    }
}

#[test]
fn a_remote_child_is_restarted_on_its_node_and_a_lost_node_ends_the_supervisor() {
    let cluster = Cluster::new("suprem");
    let mut b = node(&cluster, "b");
    let mut a = cluster.client("a");
    // Two children: one here, one on b, both request servers.
    let out = a.eval(
        "(setq sup (start-supervisor :strategy :one-for-one :intensity 10 :period 10 \
         :children '((here (pool-worker)) (there (pool-worker) :permanent :node \"b\"))))",
    );
    assert!(out.starts_with("#<AGENT"), "{out}");
    let children = a.eval("(which-children sup)");
    assert!(children.contains("\"localhost/b/"), "{children}");
    // Both serve requests, wherever they run.
    assert_eq!(
        a.eval("(mapcar (lambda (c) (request (second c) 7)) (which-children sup))"),
        "(49 49)"
    );
    // The remote child crashes: restarted on b, as a new agent there.
    let before = a.eval("(second (second (which-children sup)))");
    let out = a.eval("(request (second (second (which-children sup))) :crash)");
    assert!(out.contains("error"), "{out}");
    let after = until(&mut a, "(second (second (which-children sup)))", |o| {
        o != before && o.starts_with("\"localhost/b/")
    });
    assert_ne!(after, before);
    assert_eq!(a.eval(&format!("(request {after} 6)")), "36");
    // b is killed: the supervisor learns it (:NOCONNECTION), and every
    // restart attempt fails while b is gone; each counts, as in OTP, so
    // the supervisor gives up within its intensity (it does not wait for
    // b to come back) and stops its local child.
    let here = a.eval("(second (first (which-children sup)))");
    a.eval("(link sup :monitor)");
    b.kill();
    let notice = a.eval("(receive :timeout 20)");
    assert!(
        notice.ends_with(":EXIT :SHUTDOWN :REACHED-MAX-RESTART-INTENSITY \"there\")"),
        "{notice}"
    );
    let err = a.eval(&format!("(request {here} 3)"));
    assert!(err.contains("error"), "{err}");
}

#[test]
fn timer_and_request_built_ins_at_the_prompt() {
    let input = "\
(setq w (spawn '(pool-worker)))
(request w 12)
(setq t1 (send-after 50 :tick (agent)))
(cancel-timer (send-after 100000 :never (agent)))
(receive :timeout 10)
(cancel-timer t1)
(send :marker (agent))
(receive :timeout 10)
(request w :crash)
(request w 2 :timeout 1)
";
    let (status, out, err) = support::kernel_batch(&[], input.as_bytes());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "144", "{out}\n{err}");
    assert!(lines[2].starts_with("(:TIMER"), "{out}");
    // Cancelled before it fired, then the other one's :TICK; the first
    // cancel said T, the second (after firing) NIL; nothing else came in
    // between (the marker is next).
    assert_eq!(&lines[3..7], &["T", ":TICK", "NIL", ":MARKER"], "{out}");
    assert_eq!(lines[7], ":MARKER", "{out}");
    // A crashed server is an error at once, and so is asking it again.
    assert!(err.contains("exited during the request"), "{err}");
    assert!(
        err.contains("does not exist") || err.contains("noproc"),
        "{err}"
    );
    // Those two failed forms: exit status 1, reached at end of input.
    assert_eq!(status, Some(1), "{err}");
}
