//! Registration in one place: every group of built-ins, the examples, the
//! package aliases of the original's kernel, `(help)` over all of them,
//! and [`Kernel::new`], the session that has them. The groups
//! (`builtins`, `building_blocks`, `cluster_builtins`, `manage`, `shell`,
//! `top`) know nothing of each other's registration, and the REPL
//! (`repl.rs`) nothing of the groups.

use super::eval::Evaluator;
use super::program::print_line;
use super::repl::Kernel;
use super::{building_blocks, builtins, cluster_builtins, manage, shell, top};
use crate::call;
use crate::term::{Symbol, Term};

/// The packages of the original's kernel: its built-ins also answer to
/// `erlangen:spawn`, `erlangen.management:agent-tree`, … as well as to the
/// bare names (`erlangen.examples:parallel-map` is registered by the
/// examples).
const PACKAGES: &[(&str, &[&str])] = &[
    (
        "erlangen",
        &[
            "spawn",
            "send",
            "receive",
            "exit",
            "link",
            "unlink",
            "register",
            "unregister",
            "registered",
            "agent",
            "node",
        ],
    ),
    (
        "erlangen.management",
        &[
            "agent-stats",
            "agent-tree",
            "flush-messages",
            "connection-stats",
        ],
    ),
];

/// Every `(help)` line, as `(name, usage and one line of help)`, in the
/// order `(help)` prints them: the built-ins, the building blocks, the
/// cluster functions.
pub fn help() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    builtins::HELP
        .iter()
        .chain(building_blocks::HELP)
        .chain(cluster_builtins::CLUSTER_HELP)
}

/// Registers every built-in and the examples. `ev` is the session the REPL
/// evaluates in.
fn all(ev: &Evaluator) {
    crate::examples::register_functions();
    builtins::register(ev);
    building_blocks::register();
    cluster_builtins::register();
    manage::register();
    shell::register();
    call::register_function("top", top::top);
    call::register_function("help", |_| {
        for (_, line) in help() {
            print_line(format_args!("{line}"));
        }
        Ok(Term::Nil)
    });
    for (package, names) in PACKAGES {
        for name in *names {
            if let Ok(function) = call::lookup(&Symbol::new(name)) {
                call::register_function(&format!("{package}:{name}"), move |args| function(args));
            }
        }
    }
}

impl Kernel {
    /// A session with the built-ins and the examples registered.
    pub fn new() -> Kernel {
        let evaluator = Evaluator::new();
        all(&evaluator);
        Kernel::with_evaluator(evaluator)
    }
}

impl Default for Kernel {
    fn default() -> Kernel {
        Kernel::new()
    }
}
