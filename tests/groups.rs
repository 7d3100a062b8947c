//! Process groups across three nodes (`node::groups`, PROTOCOL.md section
//! 6): every node sees every member, a group send reaches members on every
//! node, a member's exit and a node's death remove members everywhere.
//! Every node is a separate kernel process, killed when its test ends;
//! every wait is for an event, with a deadline.

mod support;

use support::{eval_until, expect, Cluster, Proc};

/// Three nodes a, b, c, each with its REPL agent in group `:g`, all
/// connected to each other: done when every node sees three members
/// (a node sees another's member only over a connection to it).
fn three_members(cluster: &Cluster) -> (Proc, Proc, Proc) {
    let mut a = cluster.client("a");
    let mut b = cluster.client("b");
    let mut c = cluster.client("c");
    for k in [&mut a, &mut b, &mut c] {
        expect(k, "(join-group :g)", "T");
    }
    // Connections open on demand: a send to a name nobody holds opens
    // one (the message itself is dropped there).
    expect(&mut a, "(send :hi \"localhost/b/:NOBODY\")", ":HI");
    expect(&mut a, "(send :hi \"localhost/c/:NOBODY\")", ":HI");
    expect(&mut b, "(send :hi \"localhost/c/:NOBODY\")", ":HI");
    for k in [&mut a, &mut b, &mut c] {
        eval_until(k, "(length (group-members :g))", "3");
    }
    (a, b, c)
}

#[test]
fn members_on_three_nodes_and_a_group_send_reaches_them_all() {
    let cluster = Cluster::new("groups-send");
    let (mut a, mut b, mut c) = three_members(&cluster);
    // The ids of the remote members, sorted, after the local one.
    let seen = a.eval("(group-members :g)");
    assert!(
        seen.starts_with("(#<AGENT")
            && seen.contains("\"localhost/b/")
            && seen.contains("\"localhost/c/"),
        "{seen}"
    );
    expect(&mut a, "(which-groups)", "(\"G\")");
    // A keyword names the group by its upper-case name.
    expect(&mut b, "(length (group-members \"G\"))", "3");
    expect(&mut c, "(send-group :g '(:hello 1))", "3");
    for k in [&mut a, &mut b, &mut c] {
        expect(k, "(receive :timeout 10)", "(:HELLO 1)");
    }
    // Leaving is seen everywhere, and the next send skips the member.
    expect(&mut b, "(leave-group :g)", "T");
    eval_until(&mut a, "(length (group-members :g))", "2");
    eval_until(&mut c, "(length (group-members :g))", "2");
    expect(&mut a, "(send-group :g :again)", "2");
    expect(&mut c, "(receive :timeout 10)", ":AGAIN");
    expect(&mut a, "(receive :timeout 10)", ":AGAIN");
    expect(
        &mut b,
        "(receive :timeout 0)",
        "stderr: error: timed out waiting for a message",
    );
}

#[test]
fn a_member_that_exits_leaves_everywhere_thread_and_async() {
    let cluster = Cluster::new("groups-exit");
    let (mut a, mut b, mut c) = three_members(&cluster);
    // A thread agent that returns after one message, and an async agent
    // that forwards `(message target)` requests.
    expect(&mut b, "(progn (setq w (spawn '(receive))) t)", "T");
    expect(&mut b, "(progn (setq e (spawn 'async-echo)) t)", "T");
    expect(&mut b, "(join-group :g w)", "T");
    expect(&mut b, "(join-group :g e)", "T");
    for k in [&mut a, &mut c] {
        eval_until(k, "(length (group-members :g))", "5");
    }
    expect(&mut a, "(send-group :g (list :via-async (agent)))", "5");
    // a's REPL gets its own copy and the async member's forward, in
    // either order.
    let mut got = vec![
        a.eval("(receive :timeout 10)"),
        a.eval("(receive :timeout 10)"),
    ];
    got.sort();
    assert!(got[0].starts_with("(:VIA-ASYNC #<AGENT "), "{got:?}");
    assert_eq!(got[1], ":VIA-ASYNC", "{got:?}");
    // w returned after its message: it left the group everywhere.
    for k in [&mut a, &mut b, &mut c] {
        eval_until(k, "(length (group-members :g))", "4");
    }
    // The async member killed: gone everywhere too.
    expect(&mut b, "(exit :bye e)", "T");
    for k in [&mut a, &mut b, &mut c] {
        eval_until(k, "(length (group-members :g))", "3");
    }
    // A member joined twice is there once.
    expect(&mut c, "(join-group :g)", "T");
    expect(&mut c, "(length (group-members :g))", "3");
}

#[test]
fn a_killed_node_loses_its_members_on_the_others() {
    let cluster = Cluster::new("groups-kill");
    let (mut a, mut b, mut c) = three_members(&cluster);
    expect(&mut c, "(join-group :only-c)", "T");
    eval_until(&mut a, "(length (group-members :only-c))", "1");
    c.kill(); // SIGKILL: the socket closes, no goodbye.
    for k in [&mut a, &mut b] {
        eval_until(k, "(length (group-members :g))", "2");
        eval_until(k, "(group-members :only-c)", "NIL");
    }
    expect(&mut a, "(send-group :g :still-here)", "2");
    expect(&mut b, "(receive :timeout 10)", ":STILL-HERE");
}
