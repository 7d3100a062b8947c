//! W5 distributed: `erlangen-remote-benchmark [--async] [round-trips]
//! [stream-messages] [timeout-seconds]`. Starts a port mapper (in process, on free ports) and a
//! second node (this program again, as a child process, which ends when
//! this one does), then measures
//! between two OS processes on 127.0.0.1:
//!
//! - round trip: 1,000 warm-up round trips, then `round-trips` (default
//!   100,000) of a small message to an echo agent; microseconds each;
//! - stream: `stream-messages` (default 1,000,000) small messages to a sink
//!   agent that acknowledges the count; messages per second until the
//!   acknowledgement.
//!
//! `--async` runs both ends on async agents (the measuring agent here, the
//! echo and sink agents on the second node); result lines then start with
//! "async ".
//!
//! Both nodes seal their connection (the default); with the environment
//! variable `ERLANGEN_BENCH_CLEAR=1` both send clear frames (`seal:
//! false`), for the sealed-beside-clear comparison. Every line says which.
//!
//! Exit codes: 0 ok, 1 the run failed, 2 bad arguments.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use erlangen::agent::{self, Agent, SpawnOptions};
use erlangen::async_agent as aa;
use erlangen::config::Config;
use erlangen::node::{self, NodeOptions};
use erlangen::port_mapper::server::{PortMapper, ServerConfig};
use erlangen::{AgentRef, Term, Timeout};
use erlangen_tools::bench::Mode;

const USAGE: &str =
    "usage: erlangen-remote-benchmark [--async] [round-trips] [stream-messages] [timeout-seconds]
  --async runs both nodes' agents as async agents; result lines then
  start with \"async \".";
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

fn seal_mode() -> &'static str {
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
fn serve(registry: u16, directory: u16, cookie: &str, total: u64, mode: Mode) -> ExitCode {
    let _handle = match node::start(options(SERVER_NODE, registry, directory, cookie, 64 << 20)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("erlangen-remote-benchmark server: {e}");
            return ExitCode::from(1);
        }
    };
    let echo_options = SpawnOptions::new().name("echo").mailbox_size(1024);
    let mailbox = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .saturating_add(16);
    let sink_options = SpawnOptions::new().name("sink").mailbox_size(mailbox);
    let spawned = if mode == Mode::Thread {
        agent::spawn_with(&echo_options, || loop {
            echo(&agent::receive());
        })
        .and_then(|_| {
            agent::spawn_with(&sink_options, || {
                // First message: (from n) names who to acknowledge and how
                // many.
                let first = agent::receive();
                let Some([from, Term::Int(n)]) = first.as_list() else {
                    return;
                };
                for _ in 0..*n {
                    agent::receive();
                }
                let _ = agent::send(Term::Int(*n), from);
            })
        })
    } else {
        aa::spawn_with(&echo_options, async {
            loop {
                echo(&aa::receive().await);
            }
        })
        .and_then(|_| {
            aa::spawn_with(&sink_options, async {
                let first = aa::receive().await;
                let Some([from, Term::Int(n)]) = first.as_list() else {
                    return;
                };
                for _ in 0..*n {
                    aa::receive().await;
                }
                let _ = agent::send(Term::Int(*n), from);
            })
        })
    };
    if spawned.is_err() {
        eprintln!("erlangen-remote-benchmark server: cannot spawn agents");
        return ExitCode::from(1);
    }
    erlangen::kernel::print_line(format_args!("ready"));
    // Serve until the parent is gone: it holds our stdin's other end, which
    // closes when it exits however it ends (also killed, or by SIGPIPE),
    // so no server outlives its run.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest);
    ExitCode::SUCCESS
}

/// The echo agent's answer to `(from i)`: `i`, sent to `from`.
fn echo(message: &Term) {
    if let Some([from, i]) = message.as_list() {
        let _ = agent::send(i.clone(), from);
    }
}

fn wait(timeout: Duration) -> Result<Term, String> {
    agent::receive_timeout(timeout).map_err(|Timeout| format!("no reply within {timeout:?}"))
}

fn run(round_trips: u64, stream: u64, timeout: Duration, mode: Mode) -> Result<(), String> {
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
                if mode == Mode::Thread {
                    "--thread"
                } else {
                    "--async"
                },
            ])
            .stdin(Stdio::piped())
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
    let figures = if mode == Mode::Thread {
        measure(round_trips, stream, timeout)
    } else {
        // The measuring agent is async too: it reports its figures here.
        let me = Agent::current();
        let client = aa::spawn(async move {
            me.send(match measure_async(round_trips, stream, timeout).await {
                Ok((rt, st)) => Term::list(vec![
                    Term::Int(i64::try_from(rt.as_nanos()).unwrap_or(i64::MAX)),
                    Term::Int(i64::try_from(st.as_nanos()).unwrap_or(i64::MAX)),
                ]),
                Err(e) => Term::Str(e),
            });
        })
        .map_err(|e| e.to_string())?;
        let nanos = |t: &Term| {
            Duration::from_nanos(t.as_int().and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
        };
        // Each of its waits has the time limit; the whole run, three times it.
        let reply = agent::receive_timeout(timeout.saturating_mul(3));
        let _ = agent::exit(Term::keyword("done"), &client);
        match reply {
            Ok(Term::Str(e)) => Err(e),
            Ok(reply) => match reply.as_list() {
                Some([rt, st]) => Ok((nanos(rt), nanos(st))),
                _ => Err(format!("unexpected report {reply}")),
            },
            Err(Timeout) => Err("the measuring agent did not report".into()),
        }
    };
    let (rt, st) = figures?;
    erlangen::kernel::print_line(format_args!(
        "{}W5 round trip: {round_trips} round trips in {:.3} s, {:.1} us each ({})",
        mode.tag(),
        rt.as_secs_f64(),
        rt.as_secs_f64() * 1e6 / round_trips.max(1) as f64,
        seal_mode()
    ));
    erlangen::kernel::print_line(format_args!(
        "{}W5 stream: {stream} messages in {:.3} s, {:.0} msgs/s ({})",
        mode.tag(),
        st.as_secs_f64(),
        stream as f64 / st.as_secs_f64(),
        seal_mode()
    ));
    let _ = std::fs::remove_file(&cookie);
    Ok(())
}

/// The agents on the other node, as ids decoded from the wire would be:
/// the echo agent and the sink (a clone is a reference count, not a copy).
fn targets() -> (Term, Term) {
    let named = |name: &str| {
        Term::Agent(AgentRef::Id(
            format!("localhost/{SERVER_NODE}/:{name}").into(),
        ))
    };
    (named("ECHO"), named("SINK"))
}

/// Sends `(me n)` to `to`: to the echo agent a round trip's request, to
/// the sink the length of the stream that follows.
fn request(me: &Term, to: &Term, n: i64) -> Result<(), String> {
    agent::send(Term::list(vec![me.clone(), Term::Int(n)]), to).map_err(|e| e.to_string())
}

/// The stream: its length to the sink, then that many messages.
fn send_stream(me: &Term, sink: &Term, stream: u64) -> Result<(), String> {
    request(me, sink, stream as i64)?;
    for i in 0..stream as i64 {
        agent::send(Term::Int(i), sink).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The sink's acknowledgement counts the whole stream.
fn check_ack(ack: &Term, stream: u64) -> Result<(), String> {
    if *ack != Term::Int(stream as i64) {
        return Err(format!("sink acknowledged {ack}, expected {stream}"));
    }
    Ok(())
}

/// Round trips then the stream, from the calling thread agent: the time
/// each took.
fn measure(
    round_trips: u64,
    stream: u64,
    timeout: Duration,
) -> Result<(Duration, Duration), String> {
    let me = Agent::current().to_term();
    let (echo, sink) = targets();
    let ask = |i: i64| request(&me, &echo, i);
    for i in 0..1000 {
        ask(i)?;
        wait(timeout)?;
    }
    let start = Instant::now();
    for i in 0..round_trips as i64 {
        ask(i)?;
        wait(timeout)?;
    }
    let rt = start.elapsed();
    let start = Instant::now();
    send_stream(&me, &sink, stream)?;
    let ack = wait(timeout)?;
    let st = start.elapsed();
    check_ack(&ack, stream)?;
    Ok((rt, st))
}

/// As [`measure`], from an async agent.
async fn measure_async(
    round_trips: u64,
    stream: u64,
    timeout: Duration,
) -> Result<(Duration, Duration), String> {
    let me = Agent::current().to_term();
    let (echo, sink) = targets();
    let ask = |i: i64| request(&me, &echo, i);
    let wait = || async {
        aa::receive_timeout(timeout)
            .await
            .map_err(|Timeout| format!("no reply within {timeout:?}"))
    };
    for i in 0..1000 {
        ask(i)?;
        wait().await?;
    }
    let start = Instant::now();
    for i in 0..round_trips as i64 {
        ask(i)?;
        wait().await?;
    }
    let rt = start.elapsed();
    let start = Instant::now();
    send_stream(&me, &sink, stream)?;
    let ack = wait().await?;
    let st = start.elapsed();
    check_ack(&ack, stream)?;
    Ok((rt, st))
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
        let mode = match args.get(5).map(String::as_str) {
            Some("--async") => Mode::Async,
            _ => Mode::Thread,
        };
        return serve(r, d, c, n, mode);
    }
    erlangen_tools::bench::program(
        "erlangen-remote-benchmark",
        USAGE,
        &[100_000, 1_000_000, 120],
        |a, mode| run(a[0], a[1], Duration::from_secs(a[2]), mode),
    )
}
