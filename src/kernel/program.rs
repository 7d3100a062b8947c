//! What every program of the crate does the same way: `--version`, and
//! leaving quietly when stdout is closed (`erlangen-kernel … | head`).

use std::fmt;
use std::io::{self, Write};

/// If `--version` is among the command-line arguments, prints
/// `NAME VERSION` (the crate's version) and returns `true`: the program
/// then exits with status 0 before looking at any other argument.
pub fn version_requested(name: &str) -> bool {
    if std::env::args().skip(1).any(|a| a == "--version") {
        print_line(format_args!("{name} {}", env!("CARGO_PKG_VERSION")));
        true
    } else {
        false
    }
}

/// Writes one line to stdout. If stdout is closed (its reader, such as
/// `head`, has gone), the program ends at once with status 0 and prints
/// nothing: nobody is left to read its output. `println!` would panic
/// instead.
pub fn print_line(line: fmt::Arguments<'_>) {
    let captured = CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(text) => {
                let _ = fmt::Write::write_fmt(text, line);
                text.push('\n');
                true
            }
            None => false,
        }
    });
    if captured {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        exit_if_closed(&e);
    }
}

thread_local! {
    /// What [`print_line`] wrote on this thread while a capture is on (a
    /// remote shell's session sends it back instead of printing it on the
    /// node it runs on).
    static CAPTURE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with [`print_line`] on this thread collecting its lines;
/// returns `f`'s value and the lines.
pub(crate) fn capture_output<T>(f: impl FnOnce() -> T) -> (T, String) {
    let before = CAPTURE.with(|c| c.borrow_mut().replace(String::new()));
    let value = f();
    let text = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), before));
    (value, text.unwrap_or_default())
}

/// Whether [`print_line`] on this thread collects its lines now (for a
/// remote shell's client, on another node).
pub(crate) fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// Ends the program quietly (status 0) if `e` says stdout's reader is
/// gone; otherwise does nothing.
pub fn exit_if_closed(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
}
