//! The README's supervised pool in the kernel ("Worked example: a
//! supervised pool"): examples/pool.lisp, fed to `erlangen-kernel -n -b`
//! one form at a time, prints what the README's transcript says after
//! each form (`→ value`, or `→ error: …` on stderr). Agent numbers are
//! blanked on both sides, as tools/examples_check.sh does for examples/.

mod support;

use std::path::Path;
use std::process::Command;

use support::Proc;

/// `#<AGENT 12>` → `#<AGENT n>`.
fn blank_agents(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("#<AGENT ") {
        let after = &rest[i + "#<AGENT ".len()..];
        let digits = after.chars().take_while(char::is_ascii_hexdigit).count();
        out.push_str(&rest[..i]);
        out.push_str("#<AGENT n");
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The README's kernel transcript of the pool: (form, what it prints).
fn transcript(readme: &str) -> Vec<(String, String)> {
    let marker = "<!-- transcript of examples/pool.lisp -->";
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no line {marker}"));
    let block = readme[start..]
        .split("```")
        .nth(1)
        .expect("a code block after the marker");
    let lines: Vec<&str> = block.lines().skip(1).filter(|l| !l.is_empty()).collect();
    lines
        .chunks(2)
        .map(|pair| match pair {
            [form, result] => {
                let result = result
                    .strip_prefix("→ ")
                    .unwrap_or_else(|| panic!("README: no → line after {form}"));
                (form.to_string(), result.to_string())
            }
            _ => panic!("README: a form without its result: {pair:?}"),
        })
        .collect()
}

#[test]
fn the_pool_runs_as_the_readme_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let file =
        std::fs::read_to_string(root.join("examples/pool.lisp")).expect("examples/pool.lisp");
    let forms: Vec<&str> = file
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with(';'))
        .collect();
    let quoted = transcript(&readme);
    assert_eq!(
        forms,
        quoted.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        "examples/pool.lisp and the README's transcript list different forms"
    );
    let mut kernel = Command::new(env!("CARGO_BIN_EXE_erlangen-kernel"));
    // The worker's panic message goes to stderr too; no backtrace with it.
    kernel.args(["-n", "-b"]).env("RUST_BACKTRACE", "0");
    let mut k = Proc::from_command(kernel, "kernel");
    for (form, want) in &quoted {
        k.send(form);
        // A value on stdout, or an error line on stderr; the panic's lines
        // are neither.
        let got =
            k.line_matching(|l| !l.starts_with("stderr: ") || l.starts_with("stderr: error: "));
        let got = got.strip_prefix("stderr: ").unwrap_or(&got);
        assert_eq!(blank_agents(got), blank_agents(want), "{form}");
    }
    k.close_stdin();
    // A form failed, so batch mode ends with status 1.
    let status = k
        .wait_exit()
        .expect("the kernel exits at the end of its input");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn agent_numbers_are_blanked() {
    assert_eq!(
        blank_agents("((\"w1\" #<AGENT 3>) (\"w2\" #<AGENT 1F>))"),
        "((\"w1\" #<AGENT n>) (\"w2\" #<AGENT n>))"
    );
}
