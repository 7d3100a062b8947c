//! Reading forms from a terminal or a pipe, shared by the local REPL and
//! the remote shell: a thread that reads stdin line by line (so the
//! session can wait in its mailbox, and `(top)` sees Enter), and the
//! buffer that turns lines into complete forms (a form may span lines).

use std::io::{self, BufRead};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};

use crate::term::{self, Term};

/// Lines of input the kernel has read so far: `(top)` stops when it grows
/// (Enter was pressed).
pub(super) static INPUT_LINES: AtomicUsize = AtomicUsize::new(0);

/// What the stdin reader hands on.
pub(super) enum Input {
    /// A line of stdin, with its newline, as bytes.
    Line(Vec<u8>),
    /// End of stdin.
    End,
    /// Reading stdin failed.
    Failed(io::Error),
    /// Ctrl-C at the remote shell's idle prompt (the local REPL hears of
    /// Ctrl-C otherwise).
    Interrupt,
}

/// Starts the thread that reads stdin into the returned channel, calling
/// `after_each` once an input is sent (the local REPL rings its doorbell
/// there). It ends after end of input, a read error, or when the receiver
/// is dropped. It runs detached: it may be blocked in a read when the
/// session leaves, and the process exit ends it.
///
/// # Errors
/// The thread could not be started.
pub(super) fn read_stdin(
    name: &str,
    after_each: impl Fn() + Send + 'static,
) -> io::Result<Receiver<Input>> {
    let (send, lines) = mpsc::channel();
    read_stdin_to(name, send, after_each)?;
    Ok(lines)
}

/// [`read_stdin`] into a channel the caller made (and may send other
/// [`Input`] on).
///
/// # Errors
/// The thread could not be started.
pub(super) fn read_stdin_to(
    name: &str,
    send: mpsc::Sender<Input>,
    after_each: impl Fn() + Send + 'static,
) -> io::Result<()> {
    let reader = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let stdin = io::stdin();
            let mut input = stdin.lock();
            loop {
                let mut line = Vec::new();
                let event = match input.read_until(b'\n', &mut line) {
                    Ok(0) => Input::End,
                    Ok(_) => Input::Line(line),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Input::Failed(e),
                };
                let last = !matches!(event, Input::Line(_));
                INPUT_LINES.fetch_add(1, Ordering::Relaxed);
                if send.send(event).is_err() {
                    return;
                }
                after_each();
                if last {
                    return;
                }
            }
        })?;
    drop(reader);
    Ok(())
}

/// Lines of input not yet made into forms.
#[derive(Default)]
pub(super) struct Forms {
    buffer: String,
    /// Lines pushed so far.
    lines: usize,
    /// Where the buffer starts in the input: whole lines before it, and
    /// characters before it on its first line. Read errors are reported
    /// at the input's line and column, not the buffer's.
    start_line: usize,
    start_column: usize,
}

impl Forms {
    /// `true` when no unfinished form is pending (the prompt is shown
    /// then).
    pub(super) fn is_idle(&self) -> bool {
        self.buffer.trim().is_empty()
    }

    /// Adds a line of input.
    ///
    /// # Errors
    /// The line is not UTF-8: it is skipped with any unfinished form before
    /// it, and the message says where.
    pub(super) fn push_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.lines += 1;
        match std::str::from_utf8(line) {
            Ok(text) => {
                self.buffer.push_str(text);
                Ok(())
            }
            Err(e) => {
                let pending = if self.is_idle() {
                    ""
                } else {
                    " with the unfinished form before it"
                };
                self.discard();
                Err(format!(
                    "input line {} is not valid UTF-8 (bad byte at column {}); the line{pending} was skipped",
                    self.lines,
                    e.valid_up_to() + 1
                ))
            }
        }
    }

    /// The next complete form and its text, or `None` until more input
    /// comes.
    ///
    /// # Errors
    /// A reader error (unbalanced `)`, a bad token …): the pending input is
    /// discarded.
    pub(super) fn next_form(&mut self) -> Result<Option<(Term, String)>, term::ReadError> {
        match term::read_prefix(&self.buffer) {
            Ok(None) => {
                self.discard();
                Ok(None)
            }
            Ok(Some((form, used))) => {
                let text: String = self.buffer.drain(..used).collect();
                self.advance(&text);
                Ok(Some((form, text)))
            }
            Err(e) if e.is_incomplete() => Ok(None),
            Err(e) => {
                let e = self.in_input(e);
                self.discard();
                Err(e)
            }
        }
    }

    /// At end of input: the error of an unfinished form, if one is pending.
    pub(super) fn finish(&self) -> Option<term::ReadError> {
        if self.is_idle() {
            return None;
        }
        term::read_prefix(&self.buffer)
            .err()
            .map(|e| self.in_input(e))
    }

    /// Drops the pending input: the next line starts afresh.
    fn discard(&mut self) {
        self.buffer.clear();
        self.start_line = self.lines;
        self.start_column = 0;
    }

    /// Moves the buffer's start past `text`, taken from its front.
    fn advance(&mut self, text: &str) {
        for c in text.chars() {
            if c == '\n' {
                self.start_line += 1;
                self.start_column = 0;
            } else {
                self.start_column += 1;
            }
        }
    }

    /// A read error of the buffer, placed in the input.
    fn in_input(&self, mut e: term::ReadError) -> term::ReadError {
        if e.line == 1 {
            e.column += self.start_column;
        }
        e.line += self.start_line;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_span_lines_and_errors_clear_the_buffer() {
        let mut forms = Forms::default();
        forms.push_line(b"(+ 1\n").unwrap();
        assert!(forms.next_form().unwrap().is_none());
        assert!(!forms.is_idle());
        forms.push_line(b" 2) 3\n").unwrap();
        let (form, text) = forms.next_form().unwrap().unwrap();
        assert_eq!(form.to_string(), "(+ 1 2)");
        assert_eq!(text, "(+ 1\n 2)");
        assert_eq!(forms.next_form().unwrap().unwrap().0, Term::Int(3));
        assert!(forms.next_form().unwrap().is_none());
        assert!(forms.is_idle());

        // Positions are the input's, not the pending text's.
        forms.push_line(b"(list 1 2)   )\n").unwrap();
        assert!(forms.next_form().unwrap().is_some());
        let e = forms.next_form().unwrap_err();
        assert_eq!((e.line, e.column), (3, 14), "{e}");
        assert!(forms.is_idle());

        forms.push_line(b"(a\n").unwrap();
        let bad = forms.push_line(b"\xff\n").unwrap_err();
        assert!(bad.contains("input line 5"), "{bad}");
        assert!(bad.contains("with the unfinished form"), "{bad}");
        assert!(forms.is_idle());

        forms.push_line(b"(b\n").unwrap();
        assert!(forms.next_form().unwrap().is_none());
        // The end of input: the line after the last one.
        let e = forms.finish().unwrap();
        assert_eq!((e.line, e.column), (7, 1), "{e}");
    }
}
