//! The local benchmark workloads of BENCHMARKS.md (W1 ring, W2 ping-pong,
//! W3 spawn, W4 fan-in), written against the public API only. The
//! `erlangen-*-benchmark` programs are thin fronts over these; tests run them
//! with small sizes to keep them working.
//!
//! Timing follows BENCHMARKS.md: the clock starts once all agents exist
//! (except W3, which times spawning) and stops when the last message has been
//! received; wall clock, monotonic.

use std::fmt;
use std::time::{Duration, Instant};

use erlangen::agent::async_agent as aa;
use erlangen::agent::{self, Agent, Attach, SpawnError, SpawnOptions};
use erlangen::term::Term;

/// Which agents a workload runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Thread agents (the default).
    Thread,
    /// Async agents (`--async`).
    Async,
    /// Ping-pong between a thread agent and an async one (`--mixed`); the
    /// other workloads run on async agents.
    Mixed,
}

impl Mode {
    /// The mode a benchmark program's flags ask for, and the remaining
    /// arguments.
    pub fn from_args(args: Vec<String>) -> (Mode, Vec<String>) {
        let mut mode = Mode::Thread;
        let rest = args
            .into_iter()
            .filter(|a| match a.as_str() {
                "--async" => {
                    mode = Mode::Async;
                    false
                }
                "--mixed" => {
                    mode = Mode::Mixed;
                    false
                }
                _ => true,
            })
            .collect();
        (mode, rest)
    }

    /// `""`, `"async "` or `"mixed "`: the prefix the programs put before
    /// their result lines, so one sitting's output tells the kinds apart.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Thread => "",
            Mode::Async => "async ",
            Mode::Mixed => "mixed ",
        }
    }
}

/// Why a benchmark could not finish.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// An agent could not be spawned.
    Spawn(SpawnError),
    /// The run did not finish within the given timeout.
    Timeout(Duration),
    /// An agent of the run exited abnormally.
    Failed(Term),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Spawn(e) => write!(f, "{e}"),
            BenchError::Timeout(t) => write!(
                f,
                "benchmark did not finish within {t:?} (timeout argument)"
            ),
            BenchError::Failed(reason) => write!(f, "a benchmark agent failed: {reason}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<SpawnError> for BenchError {
    fn from(e: SpawnError) -> BenchError {
        BenchError::Spawn(e)
    }
}

fn wait(timeout: Duration) -> Result<Term, BenchError> {
    agent::receive_timeout(timeout).map_err(|_| BenchError::Timeout(timeout))
}

fn kill_all(agents: &[Agent]) {
    for a in agents {
        let _ = agent::exit(Term::keyword("done"), a);
    }
}

/// A ring member's answer to `msg`, the same for a thread and an async
/// agent: the token passed on as `k - 1`, or `done` to `report` at 0;
/// false for anything else (the member ends).
fn ring_step(msg: Term, next: &Agent, report: &Agent) -> bool {
    match msg {
        Term::Int(0) => report.send(Term::keyword("done")),
        Term::Int(k) => next.send(Term::Int(k - 1)),
        _ => return false,
    };
    true
}

/// W1: one token carrying `hops` travels around a ring of `n_agents`
/// agents, each forwarding `k - 1` to the next, until it reaches 0.
/// Returns the elapsed time.
///
/// # Errors
/// [`BenchError`] if agents cannot be spawned or the run times out.
pub fn ring(
    hops: u64,
    n_agents: usize,
    timeout: Duration,
    mode: Mode,
) -> Result<Duration, BenchError> {
    let me = Agent::current();
    let n_agents = n_agents.max(1);
    let mut ring = Vec::with_capacity(n_agents);
    for _ in 0..n_agents {
        let report = me.clone();
        if mode != Mode::Thread {
            ring.push(aa::spawn(async move {
                let first = aa::receive().await;
                let Some(next) = first.downcast_local::<Agent>().cloned() else {
                    return;
                };
                while ring_step(aa::receive().await, &next, &report) {}
            })?);
            continue;
        }
        ring.push(agent::spawn(move || {
            let first = agent::receive();
            let Some(next) = first.downcast_local::<Agent>().cloned() else {
                return;
            };
            while ring_step(agent::receive(), &next, &report) {}
        })?);
    }
    for (i, a) in ring.iter().enumerate() {
        a.send(Term::local(ring[(i + 1) % n_agents].clone()));
    }
    let start = Instant::now();
    ring[0].send(Term::Int(hops as i64));
    let result = wait(timeout).map(|_| start.elapsed());
    kill_all(&ring);
    result
}

/// W2: `pairs` pairs ping-pong concurrently, `messages` messages per pair
/// (`messages / 2` round trips). Returns the time until the last pair
/// finished.
///
/// # Errors
/// [`BenchError`] if agents cannot be spawned or the run times out.
pub fn ping_pong(
    messages: u64,
    pairs: usize,
    timeout: Duration,
    mode: Mode,
) -> Result<Duration, BenchError> {
    let me = Agent::current();
    let round_trips = (messages / 2).max(1) as i64;
    let mut agents = Vec::new();
    let mut pingers = Vec::new();
    for _ in 0..pairs.max(1) {
        if mode != Mode::Thread {
            // The ponger is async; the pinger too, or a thread (mixed).
            let ponger = aa::spawn(async {
                let first = aa::receive().await;
                let Some(pinger) = first.downcast_local::<Agent>().cloned() else {
                    return;
                };
                loop {
                    match aa::receive().await {
                        Term::Int(i) => {
                            pinger.send(Term::Int(i));
                        }
                        _ => return,
                    }
                }
            })?;
            let report = me.clone();
            let partner = ponger.clone();
            let pinger = if mode == Mode::Async {
                aa::spawn(async move {
                    aa::receive().await;
                    for i in 0..round_trips {
                        partner.send(Term::Int(i));
                        aa::receive().await;
                    }
                    report.send(Term::keyword("done"));
                })?
            } else {
                agent::spawn(move || {
                    agent::receive();
                    for i in 0..round_trips {
                        partner.send(Term::Int(i));
                        agent::receive();
                    }
                    report.send(Term::keyword("done"));
                })?
            };
            ponger.send(Term::local(pinger.clone()));
            agents.push(ponger);
            agents.push(pinger.clone());
            pingers.push(pinger);
            continue;
        }
        let ponger = agent::spawn(|| loop {
            match agent::receive() {
                Term::Local(v) => {
                    if let Some(pinger) = v.value().downcast_ref::<Agent>() {
                        let pinger = pinger.clone();
                        loop {
                            match agent::receive() {
                                Term::Int(i) => {
                                    pinger.send(Term::Int(i));
                                }
                                _ => return,
                            }
                        }
                    }
                }
                _ => return,
            }
        })?;
        let report = me.clone();
        let partner = ponger.clone();
        let pinger = agent::spawn(move || {
            // Wait for the start signal, so the clock starts with all
            // agents in place.
            agent::receive();
            for i in 0..round_trips {
                partner.send(Term::Int(i));
                agent::receive();
            }
            report.send(Term::keyword("done"));
        })?;
        ponger.send(Term::local(pinger.clone()));
        agents.push(ponger);
        agents.push(pinger.clone());
        pingers.push(pinger);
    }
    let start = Instant::now();
    for p in &pingers {
        p.send(Term::keyword("go"));
    }
    let mut result = Ok(Duration::ZERO);
    for _ in &pingers {
        if let Err(e) = wait(timeout) {
            result = Err(e);
            break;
        }
        result = Ok(start.elapsed());
    }
    kill_all(&agents);
    result
}

/// W3 result: spawn-and-exit cost, and how many blocked agents could be
/// alive at once with their memory.
#[derive(Debug, Clone)]
pub struct SpawnFigures {
    /// Time to spawn `count` agents that return at once and to receive all
    /// their exit notifications.
    pub elapsed: Duration,
    /// Agents spawned.
    pub count: u64,
    /// Blocked agents alive at once (the target, or where spawning failed).
    pub alive: u64,
    /// Resident memory added per blocked agent, in bytes (Linux only).
    pub bytes_per_agent: Option<u64>,
    /// Why spawning stopped before the target, if it did.
    pub limit: Option<String>,
}

impl SpawnFigures {
    /// Reads resident memory with `alive` still running (against `before`,
    /// read before the first spawn), then kills them.
    fn measure(
        elapsed: Duration,
        count: u64,
        alive: &[Agent],
        before: Option<u64>,
        limit: Option<String>,
    ) -> SpawnFigures {
        let after = resident_bytes();
        let n = alive.len() as u64;
        kill_all(alive);
        SpawnFigures {
            elapsed,
            count,
            alive: n,
            bytes_per_agent: match (before, after) {
                (Some(b), Some(a)) if n > 0 => Some(a.saturating_sub(b) / n),
                _ => None,
            },
            limit,
        }
    }
}

/// W3: spawns `count` monitored agents that return at once and waits for
/// their notifications; then keeps up to `alive_target` agents blocked in a
/// receive at once, measuring resident memory.
///
/// # Errors
/// [`BenchError`] if the first part fails or times out.
pub fn spawn_exit(
    count: u64,
    alive_target: u64,
    timeout: Duration,
    mode: Mode,
) -> Result<SpawnFigures, BenchError> {
    if mode != Mode::Thread {
        return spawn_exit_async(count, alive_target, timeout);
    }
    let options = SpawnOptions::new().attach(Attach::Monitor);
    let start = Instant::now();
    // Keep at most this many unacknowledged spawns in flight, so the
    // priority lane does not hold 100,000 notifications at once.
    let window = 1000u64;
    let mut outstanding = 0u64;
    for _ in 0..count {
        if outstanding == window {
            wait(timeout)?;
            outstanding -= 1;
        }
        agent::spawn_with(&options, || ())?;
        outstanding += 1;
    }
    for _ in 0..outstanding {
        wait(timeout)?;
    }
    let elapsed = start.elapsed();

    let before = resident_bytes();
    let mut alive = Vec::new();
    let mut limit = None;
    for _ in 0..alive_target {
        match agent::spawn(|| {
            agent::receive();
        }) {
            Ok(a) => alive.push(a),
            Err(e) => {
                limit = Some(e.to_string());
                break;
            }
        }
    }
    Ok(SpawnFigures::measure(elapsed, count, &alive, before, limit))
}

/// W3 on async agents: a coordinator agent spawns `count` monitored async
/// agents that return at once (at most 1,000 unacknowledged) and waits for
/// their notifications; then `alive_target` async agents wait in a receive.
fn spawn_exit_async(
    count: u64,
    alive_target: u64,
    timeout: Duration,
) -> Result<SpawnFigures, BenchError> {
    let me = Agent::current();
    let coordinator = aa::spawn(async move {
        let options = SpawnOptions::new().attach(Attach::Monitor);
        let start = Instant::now();
        let window = 1000u64;
        let mut outstanding = 0u64;
        for _ in 0..count {
            if outstanding == window {
                aa::receive().await;
                outstanding -= 1;
            }
            if let Err(e) = aa::spawn_with(&options, async {}) {
                me.send(Term::Str(e.to_string()));
                return;
            }
            outstanding += 1;
        }
        for _ in 0..outstanding {
            aa::receive().await;
        }
        me.send(Term::Int(
            i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX),
        ));
    })?;
    let elapsed = match wait(timeout) {
        Ok(Term::Int(nanos)) => Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)),
        Ok(other) => {
            kill_all(&[coordinator]);
            return Err(BenchError::Failed(other));
        }
        Err(e) => {
            kill_all(&[coordinator]);
            return Err(e);
        }
    };

    let before = resident_bytes();
    let mut alive = Vec::with_capacity(usize::try_from(alive_target).unwrap_or(0));
    let mut limit = None;
    for _ in 0..alive_target {
        match aa::spawn(async {
            aa::receive().await;
        }) {
            Ok(a) => alive.push(a),
            Err(e) => {
                limit = Some(e.to_string());
                break;
            }
        }
    }
    // Let every one of them reach its receive before measuring.
    let probe = aa::spawn_with(&SpawnOptions::new().attach(Attach::Monitor), async {})?;
    let _ = wait(timeout);
    drop(probe);
    Ok(SpawnFigures::measure(elapsed, count, &alive, before, limit))
}

/// W4: `senders` agents each send `per_sender` small messages to one
/// receiver as fast as they can. Returns the time until the receiver has
/// them all.
///
/// # Errors
/// [`BenchError`] if agents cannot be spawned or the run times out.
pub fn fan_in(
    per_sender: u64,
    senders: usize,
    timeout: Duration,
    mode: Mode,
) -> Result<Duration, BenchError> {
    let me = Agent::current();
    let total = per_sender * senders as u64;
    let capacity = usize::try_from(total).unwrap_or(usize::MAX).max(1);
    let report = me.clone();
    if mode != Mode::Thread {
        let receiver = aa::spawn_with(&SpawnOptions::new().mailbox_size(capacity), async move {
            for _ in 0..total {
                aa::receive().await;
            }
            report.send(Term::keyword("done"));
        })?;
        let mut agents = vec![receiver.clone()];
        let mut ready = Vec::new();
        for _ in 0..senders {
            let to = receiver.clone();
            let sender = aa::spawn(async move {
                aa::receive().await;
                for i in 0..per_sender {
                    to.send(Term::Int(i as i64));
                    // Senders share the workers with the receiver: let it
                    // run now and then, as a sender's time slice would.
                    if i % 512 == 511 {
                        aa::yield_now().await;
                    }
                }
            })?;
            ready.push(sender.clone());
            agents.push(sender);
        }
        let start = Instant::now();
        for s in &ready {
            s.send(Term::keyword("go"));
        }
        let result = wait(timeout).map(|_| start.elapsed());
        kill_all(&agents);
        return result;
    }
    let receiver = agent::spawn_with(&SpawnOptions::new().mailbox_size(capacity), move || {
        for _ in 0..total {
            agent::receive();
        }
        report.send(Term::keyword("done"));
    })?;
    let mut agents = vec![receiver.clone()];
    let mut ready = Vec::new();
    for _ in 0..senders {
        let to = receiver.clone();
        let sender = agent::spawn(move || {
            agent::receive();
            for i in 0..per_sender {
                to.send(Term::Int(i as i64));
            }
        })?;
        ready.push(sender.clone());
        agents.push(sender);
    }
    let start = Instant::now();
    for s in &ready {
        s.send(Term::keyword("go"));
    }
    let result = wait(timeout).map(|_| start.elapsed());
    kill_all(&agents);
    result
}

/// Resident set size of this process from `/proc/self/status` (Linux).
pub fn resident_bytes() -> Option<u64> {
    erlangen::management::process_sample(None).map(|p| p.resident_kib * 1024)
}

/// The body of a benchmark program: parses positional numbers over
/// `defaults` (`-h` prints `usage`), runs `run` with them and turns the
/// outcome into the exit code (0 ok, 1 the run failed, 2 bad arguments).
pub fn program(
    name: &str,
    usage: &str,
    defaults: &[u64],
    run: impl FnOnce(&[u64], Mode) -> Result<(), String>,
) -> std::process::ExitCode {
    let (mode, args) = Mode::from_args(std::env::args().skip(1).collect());
    let numbers = match parse_numbers(&args, defaults) {
        Ok(v) => v,
        Err(None) => {
            println!("{usage}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(Some(e)) => {
            eprintln!("{name}: {e}\n{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&numbers, mode) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Parses positional numeric arguments over defaults, for the benchmark
/// programs: `args` are the command-line words after the program name.
///
/// # Errors
/// A message naming the argument that is not a number, or `-h`/`--help`
/// as `Err(None)`.
pub fn parse_numbers(args: &[String], defaults: &[u64]) -> Result<Vec<u64>, Option<String>> {
    let mut out = defaults.to_vec();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Err(None);
    }
    if args.len() > defaults.len() {
        return Err(Some(format!(
            "expected at most {} arguments, got {}",
            defaults.len(),
            args.len()
        )));
    }
    for (i, a) in args.iter().enumerate() {
        out[i] = a
            .replace('_', "")
            .parse()
            .map_err(|_| Some(format!("argument {} ({a:?}) is not a whole number", i + 1)))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn workloads_run_small() {
        for mode in [Mode::Thread, Mode::Async, Mode::Mixed] {
            assert!(ring(1000, 10, T, mode).is_ok(), "{mode:?}");
            assert!(ping_pong(1000, 2, T, mode).is_ok(), "{mode:?}");
            let s = spawn_exit(2000, 50, T, mode).unwrap();
            assert_eq!(s.alive, 50, "{mode:?}");
            assert!(fan_in(1000, 4, T, mode).is_ok(), "{mode:?}");
        }
    }

    #[test]
    fn numbers_parse() {
        let args = vec!["1_000".to_owned()];
        assert_eq!(parse_numbers(&args, &[5, 6]).unwrap(), vec![1000, 6]);
        assert!(parse_numbers(&["x".to_owned()], &[5]).is_err());
        assert!(matches!(parse_numbers(&["-h".to_owned()], &[5]), Err(None)));
    }
}
