//! The module graph points one way (README, "Layout"): every `crate::X`
//! named in a top-level module's files must be a layer below it. This test
//! reads the sources, so a new upward or sideways edge fails `make test`
//! with the file and line that made it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of src/ and the modules it may name, lowest layer
/// first. Terms, frames, crypto and time know nothing of the rest; agents
/// use mailboxes; calls and management use agents; nodes
/// use agents, calls and the port-mapper client; the kernel uses all.
const LAYERS: &[(&str, &[&str])] = &[
    ("term", &[]),
    ("frame", &[]),
    ("crypto", &[]),
    ("time", &[]),
    ("sys", &[]),
    ("config", &["crypto"]),
    ("mailbox", &["term"]),
    ("agent", &["mailbox", "term"]),
    ("agent_terms", &["agent", "term"]),
    ("call", &["agent", "term"]),
    ("management", &["agent", "term", "time"]),
    ("examples", &["agent", "call", "term"]),
    ("timer", &["agent", "term"]),
    ("server", &["agent", "call", "node", "term", "timer"]),
    (
        "supervisor",
        &["agent", "call", "node", "server", "term", "timer"],
    ),
    ("port_mapper", &["config", "frame", "sys"]),
    (
        "node",
        &[
            "agent",
            "call",
            "config",
            "crypto",
            "frame",
            "port_mapper",
            "sys",
            "term",
            "time",
        ],
    ),
    (
        "kernel",
        &[
            "agent",
            "call",
            "config",
            "examples",
            "management",
            "node",
            "server",
            "supervisor",
            "term",
            "timer",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to (`None` for lib.rs and
/// the programs in src/bin, which are not inside the graph).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// The `crate::NAME` paths a line names, outside comments.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        seen.insert(module.clone());
        let Some(may_use) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "{}: module {module} is not in the layer table of tests/layers.rs",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("read file");
        for (n, line) in text.lines().enumerate() {
            for used in crate_paths(line) {
                if used != module && !may_use.contains(&used.as_str()) {
                    violations.push(format!(
                        "{}:{}: {module} uses crate::{used}",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies that do not point down:\n{}",
        violations.join("\n")
    );
    // Every layer named exists, so the table cannot rot unnoticed.
    for (module, _) in LAYERS {
        assert!(seen.contains(*module), "no module {module} in src/");
    }
}

#[test]
fn the_check_sees_a_crate_path() {
    assert_eq!(
        crate_paths("use crate::node::x; // crate::kernel"),
        vec!["node".to_owned()]
    );
    assert_eq!(crate_paths("a(crate::b::c, crate::d)"), vec!["b", "d"]);
}

/// The sibling modules of `dir` (its `NAME.rs` files but `mod.rs`) that
/// each one names (`super::NAME`, `crate::DIR::NAME`), outside its tests.
fn sibling_edges(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let name = dir.file_name().and_then(|n| n.to_str()).expect("dir name");
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let modules: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_owned))
        .filter(|m| m != "mod")
        .collect();
    let prefixes = ["super::".to_owned(), format!("crate::{name}::")];
    let mut edges = BTreeMap::new();
    for file in &files {
        let module = file.file_stem().and_then(|s| s.to_str()).expect("stem");
        if module == "mod" {
            continue;
        }
        let text = fs::read_to_string(file).expect("read file");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut uses = Vec::new();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or("");
            for prefix in &prefixes {
                for (i, _) in line.match_indices(prefix.as_str()) {
                    let after = &line[i + prefix.len()..];
                    // `super::{a, b::c}` names several.
                    let names: Vec<&str> = match after.strip_prefix('{') {
                        Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                        None => vec![after],
                    };
                    for n in names {
                        let n: String = n
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if n != module && modules.contains(&n) && !uses.contains(&n) {
                            uses.push(n);
                        }
                    }
                }
            }
        }
        edges.insert(module.to_owned(), uses);
    }
    edges
}

/// A cycle in `edges`, as the path that closes it, if there is one.
fn find_cycle(edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.iter().any(|d| d == node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(node.to_owned());
        None
    }
    let mut done = Vec::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_node_modules_import_each_other_one_way() {
    let node = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/node");
    let edges = sibling_edges(&node);
    // The check sees the edges it is meant to see.
    assert!(edges["inbound"].contains(&"global".to_owned()), "{edges:?}");
    assert!(
        edges["connection"].contains(&"attachments".to_owned()),
        "{edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "src/node modules import each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let edges: BTreeMap<String, Vec<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(find_cycle(&edges).unwrap().join(" "), "a b c a");
    let mut acyclic = edges.clone();
    acyclic.insert("c".to_owned(), vec!["d".to_owned()]);
    assert_eq!(find_cycle(&acyclic), None);
}
