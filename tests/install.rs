//! What `cargo install --path .` installs: the erlangen package's programs,
//! which must be the kernel and the port mapper only; the test tools and
//! benchmarks belong to tools/ (erlangen-tools), which is never installed.
//! Read from `cargo metadata` (no build, no network). `make install` has
//! its own check in the Makefile (test-install).

mod support;

use std::path::Path;
use std::process::Command;

/// (program name, source path) of every bin target in the workspace.
fn bin_targets() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut metadata = Command::new(cargo);
    metadata
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    // Bounded: cargo can wait on a lock another build holds.
    let (status, json, stderr) = support::run_bounded(metadata, b"");
    assert!(status == Some(0), "cargo metadata failed: {stderr}");
    // A bin target is `{"kind":["bin"],…,"name":"N",…,"src_path":"P",…}`.
    let field = |from: &str, key: &str| -> String {
        let start = from.find(key).map(|i| i + key.len()).expect(key);
        from[start..].split('"').next().unwrap_or("").to_owned()
    };
    json.match_indices("{\"kind\":[\"bin\"]")
        .map(|(i, _)| {
            let target = &json[i..];
            let target = &target[..target.find('}').unwrap_or(target.len())];
            (
                field(target, "\"name\":\""),
                field(target, "\"src_path\":\""),
            )
        })
        .collect()
}

#[test]
fn cargo_install_installs_the_kernel_and_the_port_mapper_only() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    let tools = tools.to_str().expect("UTF-8 path");
    let bins = bin_targets();
    let mut installed: Vec<&str> = bins
        .iter()
        .filter(|(_, src)| !src.starts_with(tools))
        .map(|(name, _)| name.as_str())
        .collect();
    installed.sort_unstable();
    assert_eq!(
        installed,
        ["erlangen-kernel", "erlangen-port-mapper"],
        "bin targets: {bins:?}"
    );
    // The tools are still programs of the workspace, built by cargo build.
    for tool in [
        "erlangen-hostile",
        "erlangen-chaos",
        "erlangen-ring-benchmark",
    ] {
        assert!(
            bins.iter()
                .any(|(name, src)| name == tool && src.starts_with(tools)),
            "{tool} is not a program of tools/: {bins:?}"
        );
    }
}
