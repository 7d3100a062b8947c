//! W5 distributed: `erlangen-remote-benchmark [round-trips] [stream-messages]
//! [timeout-seconds]`. Starts a port mapper (in process, on free ports) and a
//! second node (this program again, as a child process), then measures
//! between two OS processes on 127.0.0.1:
//!
//! - round trip: 1,000 warm-up round trips, then `round-trips` (default
//!   100,000) of a small message to an echo agent; microseconds each;
//! - stream: `stream-messages` (default 1,000,000) small messages to a sink
//!   agent that acknowledges the count; messages per second until the
//!   acknowledgement.
//!
//! Both nodes seal their connection (the default); with the environment
//! variable `ERLANGEN_BENCH_CLEAR=1` both send clear frames (`seal:
//! false`), for the sealed-beside-clear comparison. Every line says which.
//!
//! Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use erlangen::agent::{self, Agent, SpawnOptions};
use erlangen::config::Config;
use erlangen::node::{self, NodeOptions};
use erlangen::port_mapper::server::{PortMapper, ServerConfig};
use erlangen::{AgentRef, Term, Timeout};

const USAGE: &str =
    "usage: erlangen-remote-benchmark [round-trips] [stream-messages] [timeout-seconds]";
const SERVER_NODE: &str = "bench-server";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether this run seals (the child inherits the environment).
fn sealed() -> bool {
    std::env::var_os("ERLANGEN_BENCH_CLEAR").is_none_or(|v| v != "1")
}

fn mode() -> &'static str {
    if sealed() {
        "sealed"
    } else {
        "clear"
    }
}

fn options(name: &str, registry: u16, directory: u16, cookie: &str, queue: usize) -> NodeOptions {
    NodeOptions {
        host: Some("localhost".into()),
        name: Some(name.into()),
        config: Config {
            registry_port: registry,
            directory_port: directory,
            cookie_file: cookie.into(),
        },
        // The stream benchmark sends a million messages in one burst;
        // the per-peer queue bound is raised so none is dropped.
        max_queue: queue,
        seal: sealed(),
        ..NodeOptions::default()
    }
}

/// The child: a node with an `:ECHO` agent (replies `(reply i)` to
/// `(from i)`) and a `:SINK` agent (counts messages, then acknowledges
/// the count to `(from n)`).
fn serve(registry: u16, directory: u16, cookie: &str, total: u64) -> ExitCode {
    let _handle = match node::start(options(SERVER_NODE, registry, directory, cookie, 64 << 20)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("erlangen-remote-benchmark server: {e}");
            return ExitCode::from(1);
        }
    };
    let echo = agent::spawn_with(
        &SpawnOptions::new().name("echo").mailbox_size(1024),
        || -> () {
            loop {
                let m = agent::receive();
                if let Some([from, i]) = m.as_list() {
                    let _ = agent::send(i.clone(), from);
                }
            }
        },
    );
    let mailbox = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .saturating_add(16);
    let sink = agent::spawn_with(
        &SpawnOptions::new().name("sink").mailbox_size(mailbox),
        move || {
            // First message: (from n) names who to acknowledge and how many.
            let first = agent::receive();
            let Some([from, Term::Int(n)]) = first.as_list() else {
                return;
            };
            for _ in 0..*n {
                agent::receive();
            }
            let _ = agent::send(Term::Int(*n), from);
        },
    );
    if echo.is_err() || sink.is_err() {
        eprintln!("erlangen-remote-benchmark server: cannot spawn agents");
        return ExitCode::from(1);
    }
    erlangen::kernel::print_line(format_args!("ready"));
    // Serve until killed by the parent.
    loop {
        std::thread::park();
    }
}

fn wait(timeout: Duration) -> Result<Term, String> {
    agent::receive_timeout(timeout).map_err(|Timeout| format!("no reply within {timeout:?}"))
}

fn run(round_trips: u64, stream: u64, timeout: Duration) -> Result<(), String> {
    let pm = PortMapper::start(ServerConfig {
        directory_host: "127.0.0.1".into(),
        registry_port: 0,
        directory_port: 0,
        log: false,
    })
    .map_err(|e| e.to_string())?;
    let (registry, directory) = (pm.registry_addr().port(), pm.directory_addr().port());
    let cookie = std::env::temp_dir().join(format!("erlangen-bench-cookie-{}", std::process::id()));
    let cookie_text = cookie.to_string_lossy().into_owned();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = KillOnDrop(
        Command::new(exe)
            .args([
                "--serve",
                &registry.to_string(),
                &directory.to_string(),
                &cookie_text,
                &stream.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server node: {e}"))?,
    );
    // Wait for "ready".
    let mut line = String::new();
    if let Some(out) = child.0.stdout.take() {
        use std::io::BufRead;
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        return Err("the server node did not start".into());
    }
    let _client = node::start(options(
        "bench-client",
        registry,
        directory,
        &cookie_text,
        64 << 20,
    ))
    .map_err(|e| e.to_string())?;
    let me = Agent::current().to_term();
    let echo = Term::Agent(AgentRef::Id(
        format!("localhost/{SERVER_NODE}/:ECHO").into(),
    ));
    for i in 0..1000 {
        agent::send(Term::list(vec![me.clone(), Term::Int(i)]), &echo)
            .map_err(|e| e.to_string())?;
        wait(timeout)?;
    }
    let start = Instant::now();
    for i in 0..round_trips as i64 {
        agent::send(Term::list(vec![me.clone(), Term::Int(i)]), &echo)
            .map_err(|e| e.to_string())?;
        wait(timeout)?;
    }
    let rt = start.elapsed();
    erlangen::kernel::print_line(format_args!(
        "W5 round trip: {round_trips} round trips in {:.3} s, {:.1} us each ({})",
        rt.as_secs_f64(),
        rt.as_secs_f64() * 1e6 / round_trips.max(1) as f64,
        mode()
    ));
    // An agent reference (as decoded from the wire), not a string: a clone
    // is a reference count, not a copy.
    let sink = Term::Agent(AgentRef::Id(
        format!("localhost/{SERVER_NODE}/:SINK").into(),
    ));
    let start = Instant::now();
    agent::send(
        Term::list(vec![me.clone(), Term::Int(stream as i64)]),
        &sink,
    )
    .map_err(|e| e.to_string())?;
    for i in 0..stream as i64 {
        agent::send(Term::Int(i), &sink).map_err(|e| e.to_string())?;
    }
    let ack = wait(timeout)?;
    let st = start.elapsed();
    if ack != Term::Int(stream as i64) {
        return Err(format!("sink acknowledged {ack}, expected {stream}"));
    }
    erlangen::kernel::print_line(format_args!(
        "W5 stream: {stream} messages in {:.3} s, {:.0} msgs/s ({})",
        st.as_secs_f64(),
        stream as f64 / st.as_secs_f64(),
        mode()
    ));
    let _ = std::fs::remove_file(&cookie);
    Ok(())
}

fn main() -> ExitCode {
    if erlangen::kernel::version_requested("erlangen-remote-benchmark") {
        return std::process::ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The child process this program starts as the second node.
    if args.first().map(String::as_str) == Some("--serve") {
        let (Some(r), Some(d), Some(c), Some(n)) =
            (args.get(1), args.get(2), args.get(3), args.get(4))
        else {
            return ExitCode::from(2);
        };
        let (Ok(r), Ok(d), Ok(n)) = (r.parse(), d.parse(), n.parse()) else {
            return ExitCode::from(2);
        };
        return serve(r, d, c, n);
    }
    erlangen_tools::bench::program(
        "erlangen-remote-benchmark",
        USAGE,
        &[100_000, 1_000_000, 120],
        |a, _| run(a[0], a[1], Duration::from_secs(a[2])),
    )
}
