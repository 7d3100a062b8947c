//! `erlangen-chaos node`: one node of the harness, run inside its network
//! namespace. It starts an erlangen node, waits for the controller's go
//! file, then runs
//!
//! - `AGENTS` traffic agents `:T0`…: agent `:Tj` sends `(:M self seq)` to
//!   `:Tj` of every other node in turn, one message per interval, with one
//!   sequence per destination, and checks what it receives: per sender
//!   (id and incarnation) every sequence number must be the last plus one.
//!   Once it hears from a node it monitors a *sentinel* it spawns there
//!   (`(chaos-hold)`, an agent that only waits), so a gap is *explained*
//!   only when the receiver was told (the sentinel's notice) between the
//!   two messages; any other gap is a loss, a repeat a duplicate, a step
//!   back a reordering. (Sentinels, not the senders, are monitored because
//!   a monitor is two-way here, SPEC section 2: losing the connection
//!   kills the agents that remote agents monitor.)
//! - one watcher per peer that holds a link (a remote-spawned
//!   `(chaos-hold)` linked to a local holder) and a monitor (on another
//!   remote-spawned sentinel) over the connection, logs `down` with the
//!   time each notice arrived, and re-attaches until it succeeds (`up`:
//!   the reconnect time).
//!
//! Traffic starts when `DIR/traffic` appears (the controller writes it once
//! the full mesh is up; a restarted node finds it at once). Everything
//! lands in `DIR/events-NAME.log` (see `events.rs`); a stats line every
//! second. The node stops when `DIR/stop` appears: it stops sending, lets
//! what is in flight arrive, logs every stream's last sequence (`sent`,
//! `recvd`) and exits 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use erlangen::config::Config;
use erlangen::node::{self, NodeOptions};
use erlangen::term::AgentRef;
use erlangen::{
    call, exit, receive, receive_timeout, send, spawn, spawn_with, Agent, Attach, Outcome,
    SpawnOptions, Term,
};

use crate::events::EventLog;
use crate::Args;

/// What a node process is told on its command line.
pub struct NodeArgs {
    name: String,
    host: String,
    peers: Vec<String>,
    agents: usize,
    interval: Duration,
    /// Messages per send turn (a burst), to fill small mailboxes.
    burst: u64,
    /// The traffic agents' mailbox size.
    mailbox: usize,
    dir: PathBuf,
    config: Config,
    tick: Duration,
    timeout: Duration,
}

impl NodeArgs {
    pub fn parse(args: &Args) -> Result<NodeArgs, String> {
        let dir = PathBuf::from(args.get("dir")?);
        Ok(NodeArgs {
            name: args.get("name")?.to_owned(),
            host: args.get("host")?.to_owned(),
            peers: args
                .get("peers")?
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            agents: args.number("agents", 100)?,
            interval: Duration::from_millis(args.number("interval-ms", 50)?),
            burst: args.number("burst", 1)?,
            mailbox: args.number("mailbox", 64)?,
            config: Config {
                registry_port: args.number("registry-port", 10001)?,
                directory_port: args.number("directory-port", 20002)?,
                cookie_file: dir.join("cookie"),
            },
            dir,
            tick: Duration::from_millis(args.number("tick-ms", 1000)?),
            timeout: Duration::from_millis(args.number("timeout-ms", 4000)?),
        })
    }
}

/// Counters of one node, logged every second.
struct Counters {
    sent: AtomicU64,
    send_errors: AtomicU64,
    received: AtomicU64,
    /// Gaps with no notice in between: must stay 0.
    lost: AtomicU64,
    /// Gaps after a notice about the sender (the connection broke).
    lost_after_notice: AtomicU64,
    /// Streams whose first message here was not the sender's first: a
    /// restarted receiver (the earlier ones went to its last run) or a new
    /// sender run whose first messages its node dropped while no
    /// connection was up (counted in its `dropped`).
    joined_midway: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    notices: AtomicU64,
    /// Notices about a sender not monitored at the time: must stay 0.
    extra_notices: AtomicU64,
    /// Messages the traffic agents' mailboxes dropped (full), as their
    /// counters say; the largest sum seen (an exited agent has none).
    mailbox_dropped: AtomicU64,
    received_from: Vec<AtomicU64>,
    finals: AtomicUsize,
}

/// Traffic flows once the controller says the full mesh is up (the file
/// `DIR/traffic`), and stops at `DIR/stop`.
static SENDING: AtomicBool = AtomicBool::new(false);
static FINAL: AtomicBool = AtomicBool::new(false);

fn wait_for_file(path: &Path, stop: &Path) -> bool {
    loop {
        if path.exists() {
            return true;
        }
        if stop.exists() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(args: &NodeArgs) -> ExitCode {
    let log = match EventLog::open(
        &args.dir.join(format!("events-{}.log", args.name)),
        &args.name,
    ) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("erlangen-chaos node: cannot open the event log: {e}");
            return ExitCode::from(1);
        }
    };
    // The remote half of a link or monitor: waits until killed (async, so
    // hundreds of them cost little).
    call::register_async_function("chaos-hold", |_| async {
        loop {
            let _: Term = erlangen::async_agent::receive().await;
        }
    });
    let handle = match node::start(NodeOptions {
        host: Some(args.host.clone()),
        name: Some(args.name.clone()),
        config: args.config.clone(),
        tick: args.tick,
        timeout: args.timeout,
        ..NodeOptions::default()
    }) {
        Ok(h) => h,
        Err(e) => {
            log.log("error", &format!("node start: {e}"));
            eprintln!("erlangen-chaos node: {e}");
            return ExitCode::from(1);
        }
    };
    log.log(
        "start",
        &format!(
            "port={} incarnation={} pid={}",
            handle.port(),
            node::this_incarnation().unwrap_or(0),
            std::process::id()
        ),
    );
    let stop = args.dir.join("stop");
    if !wait_for_file(&args.dir.join(format!("go.{}", args.name)), &stop) {
        handle.stop();
        return ExitCode::SUCCESS;
    }
    log.log("go", "");

    let peers: Arc<Vec<String>> = Arc::new(args.peers.clone());
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        received: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        lost_after_notice: AtomicU64::new(0),
        joined_midway: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        reordered: AtomicU64::new(0),
        notices: AtomicU64::new(0),
        extra_notices: AtomicU64::new(0),
        mailbox_dropped: AtomicU64::new(0),
        received_from: peers.iter().map(|_| AtomicU64::new(0)).collect(),
        finals: AtomicUsize::new(0),
    });
    let watchers_stop = Arc::new(AtomicBool::new(false));
    start_view(Arc::clone(&log), Arc::clone(&watchers_stop));
    for peer in peers.iter() {
        let (peer, log2, stop) = (peer.clone(), Arc::clone(&log), Arc::clone(&watchers_stop));
        if let Err(e) = spawn(move || watch_peer(&peer, &log2, &stop)) {
            log.log("error", &format!("watcher: {e}"));
        }
    }
    let mut traffic_agents = Vec::new();
    for j in 0..args.agents {
        let options = SpawnOptions::new()
            .name(&format!("t{j}"))
            .mailbox_size(args.mailbox);
        let (peers, log2, counters) = (Arc::clone(&peers), Arc::clone(&log), Arc::clone(&counters));
        let (interval, burst) = (args.interval, args.burst);
        match spawn_with(&options, move || {
            traffic(j, &peers, interval, burst, &log2, &counters)
        }) {
            Ok(agent) => traffic_agents.push(agent),
            Err(e) => log.log("error", &format!("traffic agent {j}: {e}")),
        }
    }

    // Stats every second until told to stop.
    let mut next_stats = Instant::now();
    let traffic = args.dir.join("traffic");
    let mut sending = false;
    while !stop.exists() {
        if !sending && traffic.exists() {
            sending = true;
            SENDING.store(true, Ordering::SeqCst);
        }
        if Instant::now() >= next_stats {
            log_stats(&log, &peers, &counters, &traffic_agents);
            next_stats += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stop sending, let in-flight messages arrive, then the finals.
    SENDING.store(false, Ordering::SeqCst);
    log.log("quiet", "");
    std::thread::sleep(Duration::from_secs(2));
    // The mailboxes' counters, before the agents exit.
    log_stats(&log, &peers, &counters, &traffic_agents);
    FINAL.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.finals.load(Ordering::SeqCst) < args.agents && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    log_stats(&log, &peers, &counters, &traffic_agents);
    watchers_stop.store(true, Ordering::SeqCst);
    log.log(
        "end",
        &format!("finals={}", counters.finals.load(Ordering::SeqCst)),
    );
    handle.stop();
    ExitCode::SUCCESS
}

fn log_stats(log: &EventLog, peers: &[String], c: &Counters, traffic: &[Agent]) {
    let dropped: u64 = node::connection_stats().iter().map(|s| s.dropped).sum();
    let in_mailboxes: u64 = traffic
        .iter()
        .filter_map(|a| erlangen::management::agent_stats(a).ok())
        .map(|s| s.dropped)
        .sum();
    let mailbox_dropped = c
        .mailbox_dropped
        .fetch_max(in_mailboxes, Ordering::Relaxed)
        .max(in_mailboxes);
    let agents = erlangen::management::agents().len();
    let mut line = format!(
        "sent={} senderr={} recv={} lost={} lostnotice={} midway={} dup={} reord={} \
         notices={} extra={} dropped={dropped} mailboxdrop={mailbox_dropped} agents={agents} heap={}",
        c.sent.load(Ordering::Relaxed),
        c.send_errors.load(Ordering::Relaxed),
        c.received.load(Ordering::Relaxed),
        c.lost.load(Ordering::Relaxed),
        c.lost_after_notice.load(Ordering::Relaxed),
        c.joined_midway.load(Ordering::Relaxed),
        c.duplicated.load(Ordering::Relaxed),
        c.reordered.load(Ordering::Relaxed),
        c.notices.load(Ordering::Relaxed),
        c.extra_notices.load(Ordering::Relaxed),
        crate::heap::live_bytes(),
    );
    for (peer, n) in peers.iter().zip(&c.received_from) {
        line.push_str(&format!(" from:{peer}={}", n.load(Ordering::Relaxed)));
    }
    log.log("stats", &line);
}

/// The cluster as this node sees it, logged once a second as
/// `view members=A,B group=N leader=NODE`: its members (`node::nodes()`),
/// how many members group `chaos` has (every node's view agent joins it),
/// and the node of the agent holding global name `chaos-leader` (every
/// view agent registers a candidate under it when it sees no holder, so
/// each part of a partition elects one, and a heal must leave one). The controller checks
/// that every node's view agrees after each fault.
fn start_view(log: Arc<EventLog>, stop: Arc<AtomicBool>) {
    let view_log = Arc::clone(&log);
    let spawned = spawn(move || {
        let log = view_log;
        let me = Agent::current();
        let _ = node::groups::join("chaos", &me);
        let this = node::this_node().unwrap_or_default();
        while !stop.load(Ordering::SeqCst) {
            if node::global::whereis("chaos-leader").is_none() {
                // A candidate of its own, not the view agent: the loser of
                // a conflict after a heal is killed.
                if let Ok(candidate) = spawn(|| {
                    let _ = receive();
                }) {
                    if node::global::register("chaos-leader", &candidate).is_err() {
                        let _ = exit(Term::keyword("not-elected"), &candidate);
                    }
                }
            }
            let node_of = |id: &str| id.rsplit_once('/').map_or(id, |(n, _)| n).to_owned();
            let leader = match node::global::whereis("chaos-leader") {
                Some(Term::Str(id)) => node_of(&id),
                Some(Term::Agent(AgentRef::Id(id) | AgentRef::Remote { id, .. })) => node_of(&id),
                Some(_) => this.clone(),
                None => "-".to_owned(),
            };
            log.log(
                "view",
                &format!(
                    "members={} group={} leader={leader}",
                    node::nodes().join(","),
                    node::groups::members("chaos").len()
                ),
            );
            let _ = receive_timeout(Duration::from_secs(1));
        }
    });
    if let Err(e) = spawned {
        log.log("error", &format!("view agent: {e}"));
    }
}

/// What a receiver knows of one sender (one agent of one node run).
struct Stream {
    peer: usize,
    last: Option<u64>,
    /// The sender node's notice count at this stream's last message: a
    /// larger count now means the receiver was told the connection broke.
    epoch: u64,
}

/// What a receiver knows of one peer node.
#[derive(Default)]
struct PeerWatch {
    /// The id of the sentinel this agent monitors on the peer, if any.
    sentinel: Option<String>,
    /// Notices about the peer's sentinels so far.
    epoch: u64,
}

/// `"id#incarnation"`: a sender of one node run.
fn sender_key(term: &Term) -> Option<String> {
    match term {
        Term::Agent(AgentRef::Remote { id, incarnation }) => Some(format!("{id}#{incarnation}")),
        Term::Agent(AgentRef::Id(id)) => Some(format!("{id}#0")),
        _ => None,
    }
}

/// The `host/node` part of an id.
fn node_of(id: &str) -> &str {
    id.rfind('/').map_or(id, |i| &id[..i])
}

/// An exit notice about an agent: the agent, and how it ended as one word
/// for the log.
fn exit_notice(term: &Term) -> Option<(Term, String)> {
    let (agent, outcome) = Outcome::from_notification(term)?;
    if !matches!(agent, Term::Agent(_)) {
        return None;
    }
    Some((agent, outcome.link_reason().to_string().replace(' ', "_")))
}

fn traffic(
    j: usize,
    peers: &[String],
    interval: Duration,
    burst: u64,
    log: &EventLog,
    c: &Counters,
) -> Term {
    let me = Agent::current().to_term();
    let targets: Vec<String> = peers.iter().map(|p| format!("{p}/:T{j}")).collect();
    let mut next_seq = vec![0u64; peers.len()];
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let mut watches: Vec<PeerWatch> = peers.iter().map(|_| PeerWatch::default()).collect();
    let hold = erlangen::term::read("(chaos-hold)").unwrap_or(Term::Nil);
    let mut turn = j % peers.len().max(1);
    let mut next_send = Instant::now() + interval.mul_f64((j % 10) as f64 / 10.0);
    loop {
        if FINAL.load(Ordering::SeqCst) {
            for (peer, seq) in peers.iter().zip(&next_seq) {
                log.log("sent", &format!("{j} {peer} {seq}"));
            }
            for (key, s) in &streams {
                let last = s.last.map_or(-1, |l| l as i64);
                log.log("recvd", &format!("{j} {key} {last}"));
            }
            c.finals.fetch_add(1, Ordering::SeqCst);
            return Term::keyword("done");
        }
        let now = Instant::now();
        if SENDING.load(Ordering::Relaxed) && !peers.is_empty() && now >= next_send {
            for _ in 0..burst {
                let message = Term::list(vec![
                    Term::keyword("m"),
                    me.clone(),
                    Term::from(next_seq[turn] as i64),
                ]);
                match send(message, targets[turn].as_str()) {
                    Ok(()) => {
                        next_seq[turn] += 1;
                        c.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        c.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            turn = (turn + 1) % peers.len();
            next_send += interval;
            if next_send < now {
                next_send = now + interval;
            }
        }
        let wait = if SENDING.load(Ordering::Relaxed) {
            next_send
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100))
        } else {
            Duration::from_millis(100)
        };
        let Ok(message) = receive_timeout(wait) else {
            continue;
        };
        if let Some((agent, reason)) = exit_notice(&message) {
            let id = agent.to_string();
            c.notices.fetch_add(1, Ordering::Relaxed);
            match watches
                .iter()
                .position(|w| w.sentinel.as_deref() == Some(&id))
            {
                Some(p) => {
                    watches[p].sentinel = None;
                    watches[p].epoch += 1;
                    log.log("notice", &format!("{j} {} {reason}", peers[p]));
                }
                None => {
                    c.extra_notices.fetch_add(1, Ordering::Relaxed);
                    log.log("extra", &format!("{j} {id} {reason}"));
                }
            }
            continue;
        }
        let Some(items) = message.as_list() else {
            continue;
        };
        if items.len() != 3 || !items[0].is_keyword("m") {
            continue;
        }
        let (Some(key), Some(seq)) = (sender_key(&items[1]), items[2].as_int()) else {
            continue;
        };
        let seq = seq as u64;
        let peer_index = {
            let id = key.split('#').next().unwrap_or("");
            peers.iter().position(|p| p == node_of(id)).unwrap_or(0)
        };
        let epoch = watches[peer_index].epoch;
        let s = streams.entry(key.clone()).or_insert(Stream {
            peer: peer_index,
            last: None,
            epoch,
        });
        match s.last {
            None if seq > 0 => {
                c.joined_midway.fetch_add(1, Ordering::Relaxed);
                log.log("early", &format!("{j} {key} first={seq}"));
            }
            None => {}
            Some(last) if seq == last + 1 => {}
            Some(last) if seq > last + 1 => {
                let gap = seq - last - 1;
                if s.epoch != epoch {
                    c.lost_after_notice.fetch_add(gap, Ordering::Relaxed);
                } else {
                    c.lost.fetch_add(gap, Ordering::Relaxed);
                    log.log("lost", &format!("{j} {key} after={last} got={seq}"));
                }
            }
            Some(last) if seq == last => {
                c.duplicated.fetch_add(1, Ordering::Relaxed);
                log.log("dup", &format!("{j} {key} seq={seq}"));
            }
            Some(last) => {
                c.reordered.fetch_add(1, Ordering::Relaxed);
                log.log("reord", &format!("{j} {key} after={last} got={seq}"));
            }
        }
        if s.last.is_none_or(|l| seq > l) {
            s.last = Some(seq);
        }
        s.epoch = epoch;
        c.received.fetch_add(1, Ordering::Relaxed);
        c.received_from[s.peer].fetch_add(1, Ordering::Relaxed);
        if watches[peer_index].sentinel.is_none() {
            let (host, name) = peers[peer_index].split_once('/').unwrap_or(("", ""));
            let monitor = SpawnOptions::new().attach(Attach::Monitor);
            if let Ok(sentinel) = node::spawn_on(Some(host), name, &hold, &monitor) {
                watches[peer_index].sentinel = Some(Term::Agent(sentinel).to_string());
                log.log("mon", &format!("{j} {}", peers[peer_index]));
            }
        }
    }
}

/// Holds a link and a monitor to `peer` (`host/node`) over the
/// connection, logs each notice (`down`), and attaches again until it
/// succeeds (`up`).
fn watch_peer(peer: &str, log: &EventLog, stop: &AtomicBool) -> Term {
    let me = Agent::current();
    let (host, name) = peer.split_once('/').unwrap_or(("", peer));
    let hold = erlangen::term::read("(chaos-hold)").unwrap_or(Term::Nil);
    let mut attempts = 0u64;
    while !stop.load(Ordering::SeqCst) {
        attempts += 1;
        // The link: a local holder linked to a remote (chaos-hold).
        let (host2, name2, hold2, me2) =
            (host.to_owned(), name.to_owned(), hold.clone(), me.clone());
        let monitor = SpawnOptions::new().attach(Attach::Monitor);
        let Ok(holder) = spawn_with(&monitor, move || {
            let link = SpawnOptions::new().attach(Attach::Link);
            match node::spawn_on(Some(&host2), &name2, &hold2, &link) {
                Ok(_) => {
                    me2.send(Term::keyword("linked"));
                    loop {
                        let _: Term = receive();
                    }
                }
                Err(e) => Term::from(e.to_string()),
            }
        }) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let holder_term = holder.to_term();
        // Wait for the link, or the holder's failure.
        let linked = loop {
            match receive_timeout(Duration::from_secs(30)) {
                Ok(m) if m.is_keyword("linked") => break true,
                Ok(m) => {
                    if let Some((a, _)) = exit_notice(&m) {
                        if a == holder_term {
                            break false;
                        }
                    }
                }
                Err(_) => break false,
            }
        };
        if !linked {
            let _ = exit(Term::keyword("kill"), &holder);
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // The monitor: a sentinel spawned there, monitored from here.
        let monitor = SpawnOptions::new().attach(Attach::Monitor);
        let sentinel = match node::spawn_on(Some(host), name, &hold, &monitor) {
            Ok(r) => Term::Agent(r).to_string(),
            Err(_) => {
                let _ = exit(Term::keyword("kill"), &holder);
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        log.log("up", &format!("{peer} attempts={attempts}"));
        attempts = 0;
        let (mut link_down, mut monitor_down) = (false, false);
        let mut first_down: Option<Instant> = None;
        while !(link_down && monitor_down) {
            if stop.load(Ordering::SeqCst) {
                return Term::keyword("stopped");
            }
            if first_down.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
                log.log(
                    "missing",
                    &format!("{peer} link={link_down} monitor={monitor_down}"),
                );
                break;
            }
            let Ok(m) = receive_timeout(Duration::from_millis(100)) else {
                continue;
            };
            let Some((agent, reason)) = exit_notice(&m) else {
                continue;
            };
            if agent == holder_term {
                if link_down {
                    log.log("twice", &format!("{peer} link {reason}"));
                }
                link_down = true;
                log.log("down", &format!("{peer} link {reason}"));
            } else if agent.to_string() == sentinel {
                if monitor_down {
                    log.log("twice", &format!("{peer} monitor {reason}"));
                }
                monitor_down = true;
                log.log("down", &format!("{peer} monitor {reason}"));
            } else {
                continue;
            }
            first_down.get_or_insert_with(Instant::now);
        }
        if !link_down {
            let _ = exit(Term::keyword("kill"), &holder);
        }
    }
    Term::keyword("stopped")
}
