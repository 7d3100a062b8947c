//! The kernel program driven through stdin in batch mode: SPEC section 8's
//! two walkthroughs as typed, and errors at the prompt.

mod support;

use std::process::Command;

use support::Cluster;

/// Runs the kernel on `input` to the end and returns (status, stdout, stderr).
fn batch(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    support::kernel_batch(args, input.as_bytes())
}

#[test]
fn local_walkthrough_prints_the_mapped_vector() {
    let (status, out, err) = batch(
        &[],
        "(spawn '(parallel-map 1+ #(2 4 6 8 10 12 14) :level 3) :attach :monitor)\n(receive)\n",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "stdout: {out}\nstderr: {err}");
    assert!(lines[0].starts_with("#<AGENT "));
    let agent = lines[0];
    assert_eq!(lines[1], format!("({agent} :OK #(3 5 7 9 11 13 15))"));
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn distributed_walkthrough_prints_the_remote_id() {
    let cluster = Cluster::new("walkthrough");
    let _map_node = cluster.node("map-node");
    let mut first = cluster.kernel("first kernel", &[]);
    first.send("(spawn '(node :host \"localhost\"))");
    assert!(first.line().starts_with("#<AGENT "));
    first.send("(spawn '(erlangen.examples:parallel-map 1+ #(2 4 6 8 10 12 14))");
    first.send("       :attach :monitor");
    first.send("       :node \"map-node\")");
    assert_eq!(first.line(), "\"localhost/map-node/0\"");
    first.send("(receive)");
    assert_eq!(
        first.line(),
        "(\"localhost/map-node/0\" :OK #(3 5 7 9 11 13 15))"
    );
}

#[test]
fn errors_at_the_prompt_leave_the_session_intact() {
    let input = "\
(setq keep 42)
(foo 1 2)
(1+ 1 2)
(1+ \"x\")
(receive :timeout 0.05)
)
(spawn '(1+ 1) :node \"nowhere\")
(exit :oops (agent))
keep
(+ keep 1)
(list 1
  2 3)
";
    let (status, out, err) = batch(&[], input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["42", "42", "43", "(1 2 3)"], "stderr: {err}");
    let errors: Vec<&str> = err.lines().collect();
    assert!(errors[0].contains("unknown function FOO"), "{err}");
    assert!(errors[1].contains("expected 1 argument, got 2"), "{err}");
    assert!(errors[2].contains("expected a number"), "{err}");
    assert!(
        errors[3].contains("timed out waiting for a message"),
        "{err}"
    );
    assert!(
        // The input's line, not the line within the failed form.
        errors[4].contains("unbalanced ')'") && errors[4].contains("line 6, column 1"),
        "{err}"
    );
    assert!(errors[5].contains("not a node"), "{err}");
    assert!(
        errors[6].contains("agent exited with reason :OOPS"),
        "{err}"
    );
    assert_eq!(errors.len(), 7, "{err}");
    // Batch mode reports that forms failed.
    assert_eq!(status, Some(1));
}

#[test]
fn unbalanced_input_at_end_is_reported() {
    let (status, out, err) = batch(&[], "(list 1 2\n");
    assert!(out.is_empty());
    assert!(err.contains("end of input"), "{err}");
    // An unfinished form is a failed one: exit status 1, reached.
    assert_eq!(status, Some(1), "{err}");
}

#[test]
fn eval_flags_run_in_order_and_help_works() {
    let (status, out, _) = batch(&["-e", "(setq x 5)", "-e", "(* x 2)"], "(1+ x)\n");
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["5", "10", "6"]);
    assert_eq!(status, Some(0));
    let mut help = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    help.arg("-h");
    let (status, text, _) = support::run_bounded(help, b"");
    assert!(
        text.contains("--registry-port") && text.contains("-e, --eval"),
        "{text}"
    );
    assert_eq!(status, Some(0));
    let mut bad = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    bad.arg("--bogus");
    let (status, _, _) = support::run_bounded(bad, b"");
    assert_eq!(status, Some(2));
}

#[test]
fn remote_node_that_is_down_is_a_clear_error() {
    let cluster = Cluster::new("down");
    let mut gone = cluster.node("gone-node");
    let mut k = cluster.client("asker");
    assert_eq!(
        k.eval("(spawn '(1+ 1) :node \"gone-node\")"),
        "\"localhost/gone-node/0\""
    );
    gone.kill();
    cluster.wait_unregistered("gone-node");
    let out = k.eval("(spawn '(1+ 1) :node \"gone-node\")");
    assert!(out.contains("unreachable") || out.contains("lost"), "{out}");
    // The session goes on.
    assert_eq!(k.eval("(+ 1 1)"), "2");
}

#[test]
fn init_file_runs_unless_n() {
    let dir = support::TempDir::new("init");
    let init = dir.path("init.lisp");
    std::fs::write(&init, "(setq from-init 7) ; set by the init file\n").unwrap();
    let run = |args: &[&str]| {
        let mut kernel = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
        kernel.args(args).env("ERLANGEN_INIT", &init);
        support::run_bounded(kernel, b"from-init\n")
    };
    let (status, out, err) = run(&["-b"]);
    assert_eq!(out.trim(), "7");
    assert_eq!(status, Some(0), "{err}");
    let (status, out, err) = run(&["-b", "-n"]);
    assert!(
        out.is_empty() && err.contains("unbound variable FROM-INIT"),
        "{out} {err}"
    );
    assert_eq!(status, Some(1), "{err}");
}

#[test]
fn read_errors_give_the_inputs_line_and_column() {
    let (_, out, err) = batch(&[], "(list 1 2)   )\n\n  (list\n 3))\n");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["(1 2)", "(3)"],
        "{err}"
    );
    let errors: Vec<&str> = err.lines().collect();
    assert_eq!(
        errors,
        vec![
            "error: read error at line 1, column 14: unbalanced ')'",
            "error: read error at line 4, column 4: unbalanced ')'",
        ],
        "{err}"
    );
}

#[test]
fn a_result_type_is_quoted_at_the_prompt() {
    let (_, out, err) = batch(
        &[],
        "(parallel-map '1+ #(1 2 3) :result-type 'integer)\n(parallel-map '1+ #(1 2 3) :result-type integer)\n",
    );
    assert_eq!(out.trim(), "#(2 3 4)", "{err}");
    // Unquoted, the type is a variable: the error says how to pass it.
    assert!(
        err.contains("unbound variable INTEGER") && err.contains("quote it: 'INTEGER"),
        "{err}"
    );
}

/// The README's section `## title`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README has no section {title}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_owned()
}

#[test]
fn the_readme_names_every_built_in_and_every_flag() {
    let section = readme_section("The kernel");
    let words: std::collections::HashSet<&str> = section
        .split(|c: char| c.is_whitespace() || matches!(c, '`' | ',' | ';' | '(' | ')' | '['))
        .collect();
    // Every name (help) lists.
    let (_, help, _) = batch(&[], "(help)\n");
    let names: Vec<&str> = help
        .lines()
        .filter_map(|l| l.strip_prefix('('))
        .filter_map(|l| l.split([' ', ')']).next())
        .collect();
    assert!(names.len() > 50, "{help}");
    let missing: Vec<&&str> = names.iter().filter(|n| !words.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "README's kernel section lacks {missing:?}"
    );
    // Every long flag -h shows.
    let mut h = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    h.arg("-h");
    let (_, usage, _) = support::run_bounded(h, b"");
    let flags: Vec<&str> = usage
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| {
            w.chars()
                .skip(2)
                .all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect();
    assert!(
        flags.contains(&"--remote") && flags.contains(&"--version"),
        "{usage}"
    );
    let missing: Vec<&&str> = flags.iter().filter(|f| !section.contains(**f)).collect();
    assert!(
        missing.is_empty(),
        "README's kernel section lacks {missing:?}"
    );
}

/// The modules of `src/kernel/` that `text` (one of them) uses through
/// `super::`, tests left out.
fn kernel_imports(text: &str, modules: &[String]) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = Vec::new();
    for (i, _) in code.match_indices("super::") {
        let rest = &code[i + "super::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(0)];
            group.split(',').map(|n| n.trim()).collect()
        } else {
            vec![rest]
        };
        for name in names {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn kernel_modules_import_each_other_one_way() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/kernel"));
    let mut modules: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .filter(|m| m != "mod")
        .collect();
    modules.sort();
    let imports: std::collections::HashMap<String, Vec<String>> = modules
        .iter()
        .map(|m| {
            let text = std::fs::read_to_string(dir.join(format!("{m}.rs"))).unwrap();
            (m.clone(), kernel_imports(&text, &modules))
        })
        .collect();
    // Depth-first search for a path back to where it started.
    fn back_to(
        start: &str,
        at: &str,
        imports: &std::collections::HashMap<String, Vec<String>>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in &imports[at] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if path.contains(next) {
                continue;
            }
            path.push(next.clone());
            if back_to(start, next, imports, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    assert!(
        imports["args"].is_empty(),
        "args.rs is a leaf: {:?}",
        imports["args"]
    );
    for m in &modules {
        let mut path = vec![m.clone()];
        assert!(
            !back_to(m, m, &imports, &mut path),
            "kernel modules import each other: {}",
            path.join(" -> ")
        );
    }
}
