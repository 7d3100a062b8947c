//! One cluster (node/cluster.rs, PROTOCOL.md section 7): nodes that
//! connect pass on whom they know, so the visible nodes form a full mesh;
//! hidden nodes are not passed on; subscribers hear of every join and
//! loss once; and two registrations of one global name never both
//! succeed. Every node is a separate kernel process, killed when its test
//! ends; every wait is for an event, with a deadline.

mod support;

use support::{eval_until, expect, Cluster, Proc};

/// The names `(nodes)` (or `(nodes :hidden)`) lists on `k`, in order.
fn listed(k: &mut Proc, form: &str) -> Vec<String> {
    let out = k.eval(form);
    out.split(":NODE \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn wait_listed(k: &mut Proc, form: &str, expected: &[&str]) {
    let mut last = Vec::new();
    support::eventually(&format!("{form} listing {expected:?}"), || {
        last = listed(k, form);
        last == expected
    });
}

/// Opens a connection from `k` to node `to` (a send to a name nobody
/// holds; the message itself is dropped there).
fn reach(k: &mut Proc, to: &str) {
    expect(k, &format!("(send :hi \"localhost/{to}/:NOBODY\")"), ":HI");
}

#[test]
fn nodes_connected_in_a_line_form_one_cluster_with_one_holder_per_name() {
    let cluster = Cluster::new("cluster-line");
    let mut a = cluster.client("a");
    let mut b = cluster.client("b");
    let mut c = cluster.client("c");
    // a-b and b-c only: a and c never address each other.
    reach(&mut a, "b");
    reach(&mut b, "c");
    wait_listed(&mut a, "(nodes)", &["localhost/b", "localhost/c"]);
    wait_listed(&mut b, "(nodes)", &["localhost/a", "localhost/c"]);
    wait_listed(&mut c, "(nodes)", &["localhost/a", "localhost/b"]);
    // The two registrations: the second is refused, and every
    // node names the first holder.
    expect(&mut a, "(register-global \"boss\" (spawn '(receive)))", "T");
    let out = c.eval("(register-global \"boss\" (spawn '(receive)))");
    assert!(
        out.contains("global name \"boss\" is held by \"localhost/a/"),
        "{out}"
    );
    // a recorded the name before its registration returned; b and c hear
    // of it from a's announcement, which c has (it refused), and b soon
    // (a separate connection: no order with the refusal).
    let mut holder = String::new();
    support::eventually("b names a's agent", || {
        holder = b.eval("(whereis-global \"boss\")");
        holder.starts_with("\"localhost/a/")
    });
    eval_until(&mut c, "(whereis-global \"boss\")", &holder);
}

#[test]
fn hidden_nodes_and_remote_shells_are_not_passed_on() {
    let cluster = Cluster::new("cluster-hidden");
    let mut a = cluster.client("a");
    let mut b = cluster.client("b");
    let mut h = cluster.client_with("h", ":hidden t");
    reach(&mut a, "b");
    wait_listed(&mut b, "(nodes)", &["localhost/a"]);
    // h addresses a only.
    reach(&mut h, "a");
    wait_listed(&mut a, "(nodes :hidden)", &["localhost/b", "localhost/h"]);
    // A remote shell on a is hidden too.
    let mut shell = cluster.kernel("shell", &["--remote", "localhost/a"]);
    let on_a = listed(&mut shell, "(nodes :hidden)");
    assert_eq!(on_a.len(), 3, "{on_a:?}");
    assert!(on_a[2].starts_with("localhost/remsh-"), "{on_a:?}");
    // A visible node that joins through a reaches b: b has heard
    // everything a passed on by then, and neither hidden node among it.
    let mut d = cluster.client("d");
    reach(&mut d, "a");
    wait_listed(&mut b, "(nodes)", &["localhost/a", "localhost/d"]);
    assert_eq!(
        listed(&mut b, "(nodes :hidden)"),
        ["localhost/a", "localhost/d"]
    );
    // a lists the hidden ones only when asked; h lists nothing visible.
    assert_eq!(listed(&mut a, "(nodes)"), ["localhost/b", "localhost/d"]);
    assert_eq!(listed(&mut h, "(nodes)"), Vec::<String>::new());
    assert_eq!(listed(&mut h, "(nodes :hidden)"), ["localhost/a"]);
    shell.close_stdin();
    assert!(shell.wait_exit().is_some_and(|s| s.success()));
}

#[test]
fn monitor_nodes_tells_each_join_and_loss_once_in_order() {
    let cluster = Cluster::new("cluster-monitor");
    let mut a = cluster.client("a");
    let mut b = cluster.client("b");
    let mut c = cluster.client("c");
    expect(&mut a, "(monitor-nodes)", "T");
    reach(&mut b, "a");
    expect(&mut a, "(receive :timeout 10)", "(:NODEUP \"localhost/b\")");
    // c joins through b; a hears of it from b and connects.
    reach(&mut c, "b");
    expect(&mut a, "(receive :timeout 10)", "(:NODEUP \"localhost/c\")");
    c.kill();
    let down = a.eval("(receive :timeout 10)");
    assert!(down.starts_with("(:NODEDOWN \"localhost/c\" \""), "{down}");
    // Exactly once: the next message is b's loss, not c's again.
    b.kill();
    let down = a.eval("(receive :timeout 10)");
    assert!(down.starts_with("(:NODEDOWN \"localhost/b\" \""), "{down}");
    expect(&mut a, "(nodes)", "NIL");
}

#[test]
fn two_nodes_registering_one_name_at_once_never_both_succeed() {
    let cluster = Cluster::new("cluster-claims");
    let mut a = cluster.client("a");
    let mut b = cluster.client("b");
    reach(&mut a, "b");
    wait_listed(&mut a, "(nodes)", &["localhost/b"]);
    wait_listed(&mut b, "(nodes)", &["localhost/a"]);
    for k in [&mut a, &mut b] {
        expect(k, "(progn (setq w (spawn '(receive))) t)", "T");
    }
    let trials = 40;
    let mut b_won = Vec::new();
    for i in 0..trials {
        let form = format!("(register-global \"n{i:02}\" w)");
        // Both forms are written before either answer is read.
        a.send(&form);
        b.send(&form);
        let on_a = a.line();
        let on_b = b.line();
        let won = [&on_a, &on_b].iter().filter(|o| o.as_str() == "T").count();
        assert_eq!(won, 1, "trial {i}: a said {on_a}, b said {on_b}");
        for lost in [&on_a, &on_b].into_iter().filter(|o| o.as_str() != "T") {
            assert!(lost.contains("is held by"), "trial {i}: {lost}");
        }
        b_won.push(on_b == "T");
    }
    // Both name the same holder for every name: each node's own `w`
    // where that node won, the other's where it lost (names are listed
    // sorted).
    let mine = "(mapcar (lambda (n) (equal (whereis-global n) w)) (registered-global))";
    let t_or_nil = |won: bool| if won { "T" } else { "NIL" };
    let on_a: Vec<&str> = b_won.iter().map(|&w| t_or_nil(!w)).collect();
    let on_b: Vec<&str> = b_won.iter().map(|&w| t_or_nil(w)).collect();
    eval_until(&mut a, mine, &format!("({})", on_a.join(" ")));
    eval_until(&mut b, mine, &format!("({})", on_b.join(" ")));
}
