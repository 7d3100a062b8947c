//! The module graph points one way (README, "Layout"): every `crate::X`
//! named in a top-level module's files must be a layer below it. This test
//! reads the sources, so a new upward or sideways edge fails `make test`
//! with the file and line that made it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of src/ and the modules it may name, lowest layer
/// first. Terms, frames, crypto and time know nothing of the rest; agents
/// use mailboxes; calls, management and the benchmarks use agents (the
/// benchmarks also management's process sample); nodes
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
    ("bench", &["agent", "management", "term"]),
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
