//! Comments that say what the code does (issue 22 item 18), checked from
//! the sources: the module with the SIGINT handler names every module of
//! the crate that has `unsafe` code (it once said it was the only one),
//! and its errno lookup covers NetBSD and OpenBSD (it had no body there)
//! and has a fallback for the rest.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The module doc (the leading `//!` lines) of `text`.
fn module_doc(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_signal_module_names_every_module_with_unsafe_code() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let with_unsafe: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap();
            text.contains("allow(unsafe_code)")
        })
        .map(|f| {
            f.strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    assert!(
        with_unsafe.contains(&"kernel/signal.rs".to_owned()),
        "{with_unsafe:?}"
    );
    let doc = module_doc(&fs::read_to_string(src().join("kernel/signal.rs")).unwrap());
    for file in &with_unsafe {
        if file != "kernel/signal.rs" {
            assert!(
                doc.contains(file.as_str()),
                "kernel/signal.rs's doc does not name {file}, which has unsafe code: {doc}"
            );
        }
    }
    if with_unsafe.len() > 1 {
        assert!(!doc.contains("only `unsafe`"), "{doc}");
    }
}

#[test]
fn errno_is_found_on_netbsd_and_openbsd_and_has_a_fallback() {
    let text = fs::read_to_string(src().join("kernel/signal.rs")).unwrap();
    let body = &text[text.find("fn errno_location").expect("errno_location")..];
    let body = &body[..body.find("\n}\n").expect("its end")];
    for os in ["linux", "macos", "freebsd", "netbsd", "openbsd"] {
        assert!(
            body.contains(&format!("target_os = \"{os}\"")),
            "no errno for {os}: {body}"
        );
    }
    assert!(
        body.trim_end().ends_with("None"),
        "no fallback for other systems: {body}"
    );
}
