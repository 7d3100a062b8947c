//! `erlangen-chaos run`: the controller, run inside the hub namespace
//! that holds the bridge (chaos/netns.sh). Node k lives in namespace
//! `PREFIX-nk` at 10.77.0.k with its own port mapper; the hub is
//! 10.77.0.254 and runs the latency relays.
//!
//! It starts everything, waits for the full mesh, injects faults (one
//! scripted pass of each kind, or a random one every F seconds for a
//! soak), samples memory, threads and descriptors of every process every
//! 5 s, stops the nodes, and checks what they logged: per fault, who was
//! told, how late and how often, whether unaffected pairs kept
//! exchanging, how long reconnecting took; over the run, lost, duplicated
//! and reordered messages and notices nobody expected.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{now_ms, Event, EventLog};
use crate::relay::Relay;
use crate::Args;

const HUB: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
const HUB_TEXT: &str = "10.77.0.254";
/// How long any awaited event may take before the check fails.
const DEADLINE: Duration = Duration::from_secs(40);

pub struct RunArgs {
    dir: PathBuf,
    prefix: String,
    nodes: usize,
    bin_dir: PathBuf,
    scenario: String,
    duration: Duration,
    fault_every: Duration,
    agents: usize,
    interval_ms: u64,
    seed: u64,
    cycles: usize,
    iptables: bool,
    tick_ms: u64,
    timeout_ms: u64,
    burst: u64,
    mailbox: usize,
}

impl RunArgs {
    pub fn parse(args: &Args) -> Result<RunArgs, String> {
        let nodes = args.number("nodes", 3)?;
        if !(3..=9).contains(&nodes) {
            return Err("--nodes must be 3 to 9".into());
        }
        let scenario = args
            .0
            .get("scenario")
            .cloned()
            .unwrap_or_else(|| "faults".into());
        if !["faults", "soak", "partitions", "mailboxes"].contains(&scenario.as_str()) {
            return Err(format!(
                "--scenario {scenario:?}: expected faults, soak, partitions or mailboxes"
            ));
        }
        // Full mailboxes: bursts of 20 into mailboxes of 8, unless told.
        let full = scenario == "mailboxes";
        Ok(RunArgs {
            dir: PathBuf::from(args.get("dir")?),
            prefix: args.get("prefix")?.to_owned(),
            nodes,
            bin_dir: PathBuf::from(args.get("bin-dir")?),
            scenario: args
                .0
                .get("scenario")
                .cloned()
                .unwrap_or_else(|| "faults".into()),
            duration: Duration::from_secs(args.number("duration-s", 600)?),
            fault_every: Duration::from_secs(args.number("fault-every-s", 30)?),
            agents: args.number("agents", 100)?,
            interval_ms: args.number("interval-ms", 50)?,
            seed: args.number("seed", now_ms())?,
            cycles: args.number("cycles", 0)?,
            iptables: !args.flag("no-iptables"),
            tick_ms: args.number("tick-ms", 1000)?,
            timeout_ms: args.number("timeout-ms", 4000)?,
            burst: args.number("burst", if full { 20 } else { 1 })?,
            mailbox: args.number("mailbox", if full { 8 } else { 64 })?,
        })
    }
}

/// A fault's window and the node pairs it cuts.
struct Window {
    label: String,
    start: u64,
    end: u64,
    pairs: HashSet<(usize, usize)>,
}

struct Cluster<'a> {
    args: &'a RunArgs,
    children: Vec<Option<Child>>,
    pms: Vec<Option<Child>>,
    pids: Arc<Mutex<Vec<(String, u32)>>>,
    events: Vec<Event>,
    offsets: HashMap<PathBuf, (u64, String)>,
    log: EventLog,
    /// Relays for the pair (1, 2): index 0 carries 1 → 2, index 1 2 → 1.
    relays: Vec<Relay>,
    report: String,
    failures: Vec<String>,
    windows: Vec<Window>,
    rng: u64,
}

fn ip(k: usize) -> String {
    format!("10.77.0.{k}")
}
fn node_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, u8::try_from(k).unwrap_or(0)))
}
/// Node k's port-mapper directory (default port, in its namespace).
fn directory(k: usize) -> SocketAddr {
    SocketAddr::new(node_ip(k), 20002)
}
fn name(k: usize) -> String {
    format!("n{k}")
}
fn full(k: usize) -> String {
    format!("10.77.0.{k}/n{k}")
}
fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// `[min, median, max]` of a list of milliseconds.
fn spread(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    format!("{}/{}/{} ms", v[0], v[v.len() / 2], v[v.len() - 1])
}

/// `(rss KiB, threads, descriptors)` of process `pid`.
fn proc_sample(pid: u32) -> Option<(u64, u64, u64)> {
    erlangen::management::process_sample(Some(pid))
        .map(|p| (p.resident_kib, p.threads, p.descriptors))
}

impl<'a> Cluster<'a> {
    fn ns(&self, k: usize) -> String {
        format!("{}-n{k}", self.args.prefix)
    }

    fn netns(&self, k: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(k)]);
        c
    }

    /// `iptables -w ARGS` in node k's namespace.
    fn iptables(&mut self, k: usize, args: &[&str]) -> bool {
        let ok = self
            .netns(k)
            .arg("iptables")
            .arg("-w")
            .args(args)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            self.fail(format!(
                "iptables {} in {} failed",
                args.join(" "),
                self.ns(k)
            ));
        }
        ok
    }

    fn fail(&mut self, what: String) {
        eprintln!("chaos: FAIL {what}");
        self.log.log("fail", &what);
        self.failures.push(what);
    }

    fn note(&mut self, line: &str) {
        println!("{line}");
        self.report.push_str(line);
        self.report.push('\n');
    }

    fn random(&mut self, n: usize) -> usize {
        // xorshift64*: a reproducible sequence from --seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    /// Reads what was appended to the event files since the last poll.
    fn poll(&mut self) {
        let Ok(entries) = fs::read_dir(&self.args.dir) else {
            return;
        };
        let mut fresh = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            if !(file.starts_with("events-") && file.ends_with(".log")) {
                continue;
            }
            let (offset, partial) = self.offsets.entry(path.clone()).or_default();
            let Ok(mut f) = fs::File::open(&path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut text = String::new();
            if let Ok(n) = f.read_to_string(&mut text) {
                *offset += n as u64;
                partial.push_str(&text);
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    fresh.extend(Event::parse(&line));
                }
            }
        }
        fresh.sort_by_key(|e| e.ms);
        self.events.extend(fresh);
    }

    /// Polls until `done` holds for the events, or the deadline.
    fn wait_for(&mut self, deadline: Duration, done: impl Fn(&[Event]) -> bool) -> bool {
        let end = Instant::now() + deadline;
        loop {
            self.poll();
            if done(&self.events) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The run directory's log `name`, opened for appending (a failure is
    /// the run's).
    fn log_file(&mut self, name: &str) -> Option<fs::File> {
        let path = self.args.dir.join(name);
        match fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                self.fail(format!("cannot open {}: {e}", path.display()));
                None
            }
        }
    }

    fn start_port_mapper(&mut self, k: usize) -> bool {
        let Some(err) = self.log_file(&format!("pm-n{k}.log")) else {
            return false;
        };
        let Ok(out) = err.try_clone() else {
            self.fail(format!("cannot share pm-n{k}.log"));
            return false;
        };
        let child = self
            .netns(k)
            .arg(self.args.bin_dir.join("erlangen-port-mapper"))
            .arg(ip(k))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let Some(child) = self.started(
            child,
            &format!("pm{k}"),
            &format!("the port mapper of n{k}"),
        ) else {
            return false;
        };
        self.pms[k - 1] = Some(child);
        let addr = directory(k);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.fail(format!("the port mapper of n{k} did not come up"));
        false
    }

    /// A process the controller just spawned, sampled from now on under
    /// `label`; `None` (the run failed, naming `what`) if it did not start.
    fn started(&mut self, child: std::io::Result<Child>, label: &str, what: &str) -> Option<Child> {
        match child {
            Ok(child) => {
                self.set_pid(label, child.id());
                Some(child)
            }
            Err(e) => {
                self.fail(format!("cannot start {what}: {e}"));
                None
            }
        }
    }

    fn set_pid(&self, label: &str, pid: u32) {
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        pids.retain(|(l, _)| l != label);
        pids.push((label.to_owned(), pid));
    }

    /// Starts node k, waits for its `start` event, points the relay at its
    /// port, then lets it go.
    fn start_node(&mut self, k: usize) -> bool {
        let go = self.args.dir.join(format!("go.n{k}"));
        let _ = fs::remove_file(&go);
        let peers: Vec<String> = (1..=self.args.nodes)
            .filter(|&p| p != k)
            .map(full)
            .collect();
        let Some(err) = self.log_file(&format!("node-n{k}.log")) else {
            return false;
        };
        let since = now_ms();
        let child = self
            .netns(k)
            .arg(self.args.bin_dir.join("erlangen-chaos"))
            .args([
                "node",
                "--name",
                &name(k),
                "--host",
                &ip(k),
                "--peers",
                &peers.join(","),
            ])
            .arg("--dir")
            .arg(&self.args.dir)
            .args(["--agents", &self.args.agents.to_string()])
            .args(["--interval-ms", &self.args.interval_ms.to_string()])
            .args(["--tick-ms", &self.args.tick_ms.to_string()])
            .args(["--timeout-ms", &self.args.timeout_ms.to_string()])
            .args(["--burst", &self.args.burst.to_string()])
            .args(["--mailbox", &self.args.mailbox.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn();
        let Some(child) = self.started(child, &format!("n{k}"), &format!("n{k}")) else {
            return false;
        };
        self.children[k - 1] = Some(child);
        let me = name(k);
        if !self.wait_for(DEADLINE, |ev| {
            ev.iter()
                .any(|e| e.node == me && e.kind == "start" && e.ms >= since)
        }) {
            self.fail(format!("n{k} did not start (see node-n{k}.log)"));
            return false;
        }
        let port = self
            .events
            .iter()
            .rev()
            .find(|e| e.node == me && e.kind == "start")
            .and_then(|e| e.value("port"))
            .unwrap_or(0) as u16;
        self.reroute(k, port);
        let _ = fs::write(&go, "");
        true
    }

    /// Points the relay in front of node k (1 or 2) at its current port.
    fn reroute(&mut self, k: usize, port: u16) {
        if self.relays.is_empty() || k > 2 {
            return;
        }
        let relay = if k == 2 { 0 } else { 1 };
        self.relays[relay].target_port.store(port, Ordering::SeqCst);
    }

    /// Sends every connection between n1 and n2 other than port-mapper
    /// lookups through the relays, from before the first node starts. The
    /// rules name no node port (a node's port is only known once it runs,
    /// and changes when it restarts; the relay follows it, see
    /// `reroute`): a rule added while a connection is open would take over
    /// its packets mid-stream, and the relay would reset it.
    fn route_pair_through_relays(&mut self) {
        for (from, to, relay) in [(1, 2, 0), (2, 1, 1)] {
            let listen = self.relays[relay].listen.to_string();
            let rule = dnat_rule(&ip(to), &listen);
            let mut args = vec!["-t", "nat", "-A", "OUTPUT"];
            args.extend(rule.iter().map(String::as_str));
            self.iptables(from, &args);
        }
    }

    fn live(&self) -> Vec<usize> {
        (1..=self.args.nodes).collect()
    }

    /// Waits until every ordered pair in `pairs` logged `up` after `since`;
    /// the reconnect time (the last `up` minus `since`).
    fn wait_up(&mut self, pairs: &[(usize, usize)], since: u64, what: &str) -> Option<u64> {
        let wanted: Vec<(String, String)> =
            pairs.iter().map(|&(a, b)| (name(a), full(b))).collect();
        let ok = self.wait_for(DEADLINE + DEADLINE, |ev| {
            wanted.iter().all(|(a, b)| {
                ev.iter()
                    .any(|e| e.ms >= since && e.kind == "up" && &e.node == a && e.field(0) == b)
            })
        });
        if !ok {
            self.fail(format!(
                "{what}: not every pair reconnected within {:?}",
                DEADLINE + DEADLINE
            ));
            return None;
        }
        let last = wanted
            .iter()
            .filter_map(|(a, b)| {
                self.events
                    .iter()
                    .find(|e| e.ms >= since && e.kind == "up" && &e.node == a && e.field(0) == b)
                    .map(|e| e.ms)
            })
            .max()
            .unwrap_or(since);
        Some(last - since)
    }

    /// Waits until every observer logged `down` (link and monitor) about
    /// its subject after `since`; returns the detection times in ms.
    fn wait_down(&mut self, who: &[(usize, usize)], since: u64, what: &str) -> Vec<u64> {
        let wanted: Vec<(String, String)> = who.iter().map(|&(o, s)| (name(o), full(s))).collect();
        let seen = |ev: &[Event], o: &str, s: &str, kind: &str| {
            ev.iter()
                .find(|e| {
                    e.ms >= since
                        && e.kind == "down"
                        && e.node == o
                        && e.field(0) == s
                        && e.field(1) == kind
                })
                .map(|e| e.ms)
        };
        let ok = self.wait_for(DEADLINE, |ev| {
            wanted.iter().all(|(o, s)| {
                seen(ev, o, s, "link").is_some() && seen(ev, o, s, "monitor").is_some()
            })
        });
        if !ok {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(o, s)| {
                    seen(&self.events, o, s, "link").is_none()
                        || seen(&self.events, o, s, "monitor").is_none()
                })
                .map(|(o, s)| format!("{o} about {s}"))
                .collect();
            self.fail(format!(
                "{what}: not told within {DEADLINE:?}: {}",
                missing.join(", ")
            ));
        }
        let mut times = Vec::new();
        for (o, s) in &wanted {
            for kind in ["link", "monitor"] {
                if let Some(ms) = seen(&self.events, o, s, kind) {
                    times.push(ms - since);
                }
            }
        }
        times
    }

    /// The traffic agents' monitors from `o` on senders of node `s` that
    /// were active at `at`: (agent index, sender key).
    fn active_monitors(&self, o: usize, s: usize, at: u64) -> HashSet<(String, String)> {
        let (on, peer) = (name(o), full(s));
        let mut active = HashSet::new();
        for e in self.events.iter().take_while(|e| e.ms < at) {
            if e.node != on || e.field(1) != peer {
                continue;
            }
            let key = (e.field(0).to_owned(), e.field(1).to_owned());
            match e.kind.as_str() {
                "mon" => {
                    active.insert(key);
                }
                "notice" => {
                    active.remove(&key);
                }
                _ => {}
            }
        }
        active
    }

    /// Checks the traffic monitors of a fault: each one active at `start`
    /// told exactly once by `end` (before it was renewed). Returns (told,
    /// expected, twice, times).
    fn check_traffic_notices(
        &mut self,
        who: &[(usize, usize, u64)],
        start: u64,
        end: u64,
    ) -> (usize, usize, usize, Vec<u64>) {
        let (mut told, mut expected, mut twice, mut times) = (0, 0, 0, Vec::new());
        for &(o, s, reference) in who {
            let on = name(o);
            for key in self.active_monitors(o, s, start) {
                expected += 1;
                let mut count = 0;
                for e in self.events.iter().filter(|e| {
                    e.ms >= start
                        && e.ms <= end
                        && e.node == on
                        && e.field(0) == key.0
                        && e.field(1) == key.1
                }) {
                    if e.kind == "mon" {
                        break;
                    }
                    if e.kind == "notice" || e.kind == "extra" {
                        count += 1;
                        if count == 1 {
                            times.push(e.ms.saturating_sub(reference));
                        }
                    }
                }
                if count >= 1 {
                    told += 1;
                }
                if count > 1 {
                    twice += 1;
                }
            }
        }
        (told, expected, twice, times)
    }

    /// `from:PEER` of node o's last stats line at or before `at`.
    fn received_from(&self, o: usize, p: usize, at: u64) -> Option<u64> {
        let (on, key) = (name(o), format!("from:{}", full(p)));
        self.events
            .iter()
            .take_while(|e| e.ms <= at)
            .filter(|e| e.node == on && e.kind == "stats")
            .last()
            .and_then(|e| e.value(&key))
    }

    /// Pairs not in `cut` (and not involving `down_nodes`) must have kept
    /// exchanging between `from` and `to`.
    fn check_unaffected(
        &mut self,
        cut: &HashSet<(usize, usize)>,
        down_nodes: &[usize],
        from: u64,
        to: u64,
        what: &str,
    ) -> usize {
        self.poll();
        let mut kept = 0;
        for o in self.live() {
            for p in self.live() {
                if o == p
                    || cut.contains(&pair(o, p))
                    || down_nodes.contains(&o)
                    || down_nodes.contains(&p)
                {
                    continue;
                }
                let before = self.received_from(o, p, from);
                let after = self.received_from(o, p, to);
                match (before, after) {
                    (Some(b), Some(a)) if a > b => kept += 1,
                    _ => self.fail(format!(
                        "{what}: n{o} stopped hearing from n{p} though their link was not cut"
                    )),
                }
            }
        }
        kept
    }

    /// Applies a fault, waits for every notice, heals, waits for the
    /// reconnect, and reports.
    fn fault(&mut self, kind: &str, a: usize, b: usize) {
        let label = match kind {
            "kill9" | "stop" | "pmrestart" => format!("{kind} n{a}"),
            "oneway" => format!("oneway n{a}->n{b}"),
            _ => format!("{kind} n{a}|n{b}"),
        };
        self.log.log("fault", &label);
        let others: Vec<usize> = self.live().into_iter().filter(|&k| k != a).collect();
        let start = now_ms();
        let mut cut = HashSet::new();
        let mut line = format!("{label}:");
        match kind {
            "kill9" | "stop" => {
                for &o in &others {
                    cut.insert(pair(o, a));
                }
                let pid = self.children[a - 1].as_ref().map_or(0, Child::id);
                if kind == "kill9" {
                    if let Some(mut c) = self.children[a - 1].take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                } else {
                    let _ = Command::new("kill")
                        .args(["-STOP", &pid.to_string()])
                        .status();
                }
                let who: Vec<(usize, usize)> = others.iter().map(|&o| (o, a)).collect();
                let detect = self.wait_down(&who, start, &label);
                // Let the survivors' pairs run a little with the node gone.
                std::thread::sleep(Duration::from_secs(2));
                let mid = now_ms();
                let kept = self.check_unaffected(&cut, &[a], start, mid, &label);
                let heal = now_ms();
                let mut who3: Vec<(usize, usize, u64)> =
                    others.iter().map(|&o| (o, a, start)).collect();
                let resumed = if kind == "kill9" {
                    if !self.start_node(a) {
                        return;
                    }
                    let _ = write!(line, " restarted under the same name;");
                    Vec::new()
                } else {
                    let _ = Command::new("kill")
                        .args(["-CONT", &pid.to_string()])
                        .status();
                    let who: Vec<(usize, usize)> = others.iter().map(|&o| (a, o)).collect();
                    who3.extend(others.iter().map(|&o| (a, o, heal)));
                    self.wait_down(&who, heal, &format!("{label} (after SIGCONT)"))
                };
                let mut pairs: Vec<(usize, usize)> = others.iter().map(|&o| (o, a)).collect();
                pairs.extend(others.iter().map(|&o| (a, o)));
                let reconnect = self.wait_up(&pairs, heal, &label);
                let end = now_ms();
                let (told, expected, twice, times) = self.check_traffic_notices(&who3, start, end);
                let _ = write!(
                    line,
                    " peers told (link, monitor) in {} (min/median/max)",
                    spread(detect)
                );
                if !resumed.is_empty() {
                    let _ = write!(
                        line,
                        ", the stopped node told after SIGCONT in {}",
                        spread(resumed)
                    );
                }
                let _ = write!(
                    line,
                    "; traffic monitors told {told}/{expected}, twice {twice}, in {}; \
                     unaffected pairs kept exchanging {kept}; reconnected {} after {}",
                    spread(times),
                    reconnect.map_or("never".into(), |r| format!("{r} ms")),
                    if kind == "kill9" {
                        "the restart"
                    } else {
                        "SIGCONT"
                    }
                );
                self.check_counts(&label, told, expected, twice);
                self.windows.push(Window {
                    label: label.clone(),
                    start,
                    end,
                    pairs: cut,
                });
            }
            "partition" | "oneway" => {
                cut.insert(pair(a, b));
                // The overlap rule (PROTOCOL.md section 7): every node that
                // sees both ends drops the one whose name sorts later, so
                // its connections to the others are cut too.
                let later = if full(a) < full(b) { b } else { a };
                for other in self.live() {
                    if other != a && other != b {
                        cut.insert(pair(later, other));
                    }
                }
                let rules = self.drop_rules(a, b, kind == "oneway");
                for r in &rules {
                    let mut args = vec!["-I"];
                    args.extend(r.iter().map(String::as_str));
                    self.iptables(a, &args);
                }
                let detect = self.wait_down(&[(a, b), (b, a)], start, &label);
                std::thread::sleep(Duration::from_secs(1));
                let kept = self.check_unaffected(&cut, &[], start, now_ms(), &label);
                let heal = now_ms();
                for r in &rules {
                    let mut args = vec!["-D"];
                    args.extend(r.iter().map(String::as_str));
                    self.iptables(a, &args);
                }
                self.log.log("heal", &label);
                // Every cut pair, the overlap rule's included, connects
                // again before the next fault.
                let ends: Vec<(usize, usize)> =
                    cut.iter().flat_map(|&(x, y)| [(x, y), (y, x)]).collect();
                let reconnect = self.wait_up(&ends, heal, &label);
                let end = now_ms();
                let (told, expected, twice, times) =
                    self.check_traffic_notices(&[(a, b, start), (b, a, start)], start, end);
                let _ = write!(
                    line,
                    " both sides told (link, monitor) in {}; traffic monitors told {told}/{expected}, \
                     twice {twice}, in {}; unaffected pairs kept exchanging {kept}; reconnected {} after heal",
                    spread(detect),
                    spread(times),
                    reconnect.map_or("never".into(), |r| format!("{r} ms"))
                );
                self.check_counts(&label, told, expected, twice);
                self.windows.push(Window {
                    label: label.clone(),
                    start,
                    end,
                    pairs: cut,
                });
            }
            "latency" => {
                let (delay, loss) = (200u64, "0.05");
                for r in &self.relays {
                    r.delay_ms.store(delay, Ordering::SeqCst);
                }
                // Random drops on the relayed path only (the hub's address).
                let lossy = |chain: &'static str, dir: &'static str| {
                    vec![
                        chain,
                        dir,
                        HUB_TEXT,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        loss,
                        "-j",
                        "DROP",
                    ]
                };
                let rules = [lossy("INPUT", "-s"), lossy("OUTPUT", "-d")];
                for r in &rules {
                    let mut args = vec!["-I"];
                    args.extend(r.iter().copied());
                    self.iptables(1, &args);
                }
                let before = self.received_from(1, 2, start).unwrap_or(0);
                std::thread::sleep(Duration::from_secs(10));
                let mid = now_ms();
                for r in &rules {
                    let mut args = vec!["-D"];
                    args.extend(r.iter().copied());
                    self.iptables(1, &args);
                }
                for r in &self.relays {
                    r.delay_ms.store(0, Ordering::SeqCst);
                }
                self.poll();
                let after = self.received_from(1, 2, mid).unwrap_or(0);
                let downs = self
                    .events
                    .iter()
                    .filter(|e| e.ms >= start && e.kind == "down")
                    .count();
                let kept = self.check_unaffected(&HashSet::new(), &[], start, mid, &label);
                let _ = write!(
                    line,
                    " {delay} ms each way and {}% packet loss on n1<->n2 for 10 s: \
                     n1 received {} messages from n2 meanwhile, {downs} false node-down notices; \
                     all {kept} pairs kept exchanging",
                    5,
                    after.saturating_sub(before)
                );
                if after <= before {
                    self.fail(format!(
                        "{label}: n1 heard nothing from n2 through the slow relay"
                    ));
                }
                self.windows.push(Window {
                    label: label.clone(),
                    start,
                    end: mid,
                    pairs: cut,
                });
            }
            "pmrestart" => {
                if let Some(mut c) = self.pms[a - 1].take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let restarted = now_ms();
                if !self.start_port_mapper(a) {
                    return;
                }
                let addr = directory(a);
                let end = Instant::now() + DEADLINE;
                let mut registered = None;
                while Instant::now() < end {
                    if erlangen::port_mapper::client::query_port(
                        addr,
                        &name(a),
                        Duration::from_secs(1),
                    )
                    .is_ok()
                    {
                        registered = Some(now_ms() - restarted);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if registered.is_none() {
                    self.fail(format!("{label}: n{a} did not register again"));
                }
                std::thread::sleep(Duration::from_secs(2));
                let kept = self.check_unaffected(&HashSet::new(), &[], start, now_ms(), &label);
                let _ = write!(
                    line,
                    " killed and restarted; n{a} registered again {} later; connections untouched, \
                     {kept} pairs kept exchanging",
                    registered.map_or("never".into(), |r| format!("{r} ms"))
                );
                self.windows.push(Window {
                    label: label.clone(),
                    start,
                    end: now_ms(),
                    pairs: cut,
                });
            }
            _ => {}
        }
        self.check_views(&label, start, &mut line);
        self.note(&line);
    }

    /// After a fault: every node's view (node.rs, `start_view`) must come
    /// to agree, each listing all the others as members, all of them in
    /// group `chaos`, and one node holding `chaos-leader` for everyone.
    fn check_views(&mut self, label: &str, since: u64, line: &mut String) {
        let nodes = self.live();
        let all: Vec<String> = nodes.iter().map(|&k| full(k)).collect();
        let expected_members: Vec<String> = nodes
            .iter()
            .map(|&k| {
                let mut others: Vec<String> =
                    all.iter().filter(|n| **n != full(k)).cloned().collect();
                others.sort();
                others.join(",")
            })
            .collect();
        let agreed = |ev: &[Event]| -> Option<u64> {
            let mut leader: Option<String> = None;
            let mut last_ms = since;
            for (i, &k) in nodes.iter().enumerate() {
                let view = ev
                    .iter()
                    .rev()
                    .find(|e| e.kind == "view" && e.node == name(k) && e.ms >= since)?;
                let field = |key: &str| {
                    view.fields
                        .iter()
                        .find_map(|f| f.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                        .unwrap_or("")
                        .to_owned()
                };
                if field("members") != expected_members[i]
                    || field("group") != nodes.len().to_string()
                {
                    return None;
                }
                let l = field("leader");
                if l == "-" || leader.as_ref().is_some_and(|x| *x != l) {
                    return None;
                }
                leader = Some(l);
                last_ms = last_ms.max(view.ms);
            }
            Some(last_ms)
        };
        let ok = self.wait_for(DEADLINE + DEADLINE, |ev| agreed(ev).is_some());
        if ok {
            let at = agreed(&self.events).unwrap_or(since);
            let _ = write!(
                line,
                "; views agree (members, group, one leader) {} ms after the fault began",
                at.saturating_sub(since)
            );
        } else {
            self.fail(format!(
                "{label}: the nodes' views (members, group chaos, global chaos-leader) did not agree within {:?}",
                DEADLINE + DEADLINE
            ));
        }
    }

    fn check_counts(&mut self, label: &str, told: usize, expected: usize, twice: usize) {
        if told != expected || twice != 0 {
            self.fail(format!(
                "{label}: traffic monitors told {told} of {expected}, {twice} twice"
            ));
        }
    }

    /// The rules (without -I/-D) that cut `a` off from `b` in a's
    /// namespace (`oneway`: only what a sends to b).
    fn drop_rules(&self, a: usize, b: usize, oneway: bool) -> Vec<Vec<String>> {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
        let mut targets = vec![ip(b)];
        if !self.relays.is_empty() && pair(a, b) == (1, 2) {
            targets.push(HUB.to_string());
        }
        let mut rules = Vec::new();
        for t in &targets {
            rules.push(s(&["OUTPUT", "-d", t, "-j", "DROP"]));
            if !oneway {
                rules.push(s(&["INPUT", "-s", t, "-j", "DROP"]));
            }
        }
        rules
    }
}

/// TCP to `ip`, except to its port mapper's directory, goes to `to`.
fn dnat_rule(ip: &str, to: &str) -> Vec<String> {
    [
        "-p",
        "tcp",
        "-d",
        ip,
        "!",
        "--dport",
        &directory(1).port().to_string(),
        "-j",
        "DNAT",
        "--to-destination",
        to,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

pub fn run(args: &RunArgs) -> ExitCode {
    let log = match EventLog::open(&args.dir.join("events-ctl.log"), "ctl") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chaos: cannot write to {}: {e}", args.dir.display());
            return ExitCode::from(1);
        }
    };
    let mut bytes = [0u8; 32];
    if let Err(e) = erlangen::crypto::random_bytes(&mut bytes) {
        eprintln!("chaos: no random bytes for the cookie: {e}");
        return ExitCode::from(1);
    }
    let cookie: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if fs::write(args.dir.join("cookie"), cookie).is_err() {
        eprintln!("chaos: cannot write the cookie");
        return ExitCode::from(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(args.dir.join("cookie"), fs::Permissions::from_mode(0o600));
    }
    let n = args.nodes;
    let mut cluster = Cluster {
        args,
        children: (0..n).map(|_| None).collect(),
        pms: (0..n).map(|_| None).collect(),
        pids: Arc::new(Mutex::new(Vec::new())),
        events: Vec::new(),
        offsets: HashMap::new(),
        log,
        relays: Vec::new(),
        report: String::new(),
        failures: Vec::new(),
        windows: Vec::new(),
        rng: args.seed | 1,
    };
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pids, running, dir) = (
            Arc::clone(&cluster.pids),
            Arc::clone(&sampling),
            args.dir.clone(),
        );
        std::thread::spawn(move || sample_loop(&pids, &running, &dir))
    };
    let code = drive(&mut cluster);
    sampling.store(false, Ordering::SeqCst);
    let _ = sampler.join();
    // Every node and port mapper ends here, whatever happened above.
    let _ = fs::write(args.dir.join("stop"), "");
    for c in cluster
        .children
        .iter_mut()
        .chain(cluster.pms.iter_mut())
        .flatten()
    {
        let _ = c.kill();
        let _ = c.wait();
    }
    code
}

fn sample_loop(pids: &Mutex<Vec<(String, u32)>>, running: &AtomicBool, dir: &Path) {
    let Ok(log) = EventLog::open(&dir.join("events-ctl.log"), "ctl") else {
        return;
    };
    let mut next = Instant::now();
    while running.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            let list = pids.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (label, pid) in list {
                if let Some((rss, threads, fds)) = proc_sample(pid) {
                    log.log(
                        "sample",
                        &format!("{label} pid={pid} rss={rss} threads={threads} fds={fds}"),
                    );
                }
            }
            next += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn drive(c: &mut Cluster) -> ExitCode {
    let args = c.args;
    let n = args.nodes;
    c.note(&format!(
        "chaos: {} nodes x {} agents, one message per agent every {} ms, heartbeat {} ms, \
         failure timeout {} ms, scenario {}, seed {}",
        n, args.agents, args.interval_ms, args.tick_ms, args.timeout_ms, args.scenario, args.seed
    ));
    if args.iptables {
        // Latency on the pair n1<->n2 goes through two relays in the hub.
        let hub = SocketAddr::new(IpAddr::V4(HUB), 0);
        for target in [2usize, 1] {
            match Relay::start(hub, node_ip(target), 0) {
                Ok(r) => c.relays.push(r),
                Err(e) => c.fail(format!("relay: {e}")),
            }
        }
        if c.relays.len() == 2 {
            c.route_pair_through_relays();
        }
    } else {
        c.note(
            "chaos: iptables not available: partitions, one-way partitions and latency are skipped",
        );
    }
    let booted = now_ms();
    for k in 1..=n {
        if !c.start_port_mapper(k) || !c.start_node(k) {
            return finish(c);
        }
    }
    let all: Vec<(usize, usize)> = (1..=n)
        .flat_map(|a| (1..=n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let Some(mesh) = c.wait_up(&all, booted, "full mesh") else {
        return finish(c);
    };
    c.note(&format!(
        "chaos: full mesh of {} connections up {mesh} ms after the first port mapper was started",
        all.len() / 2
    ));
    let _ = fs::write(args.dir.join("traffic"), "");
    let started = Instant::now();
    match args.scenario.as_str() {
        "faults" => {
            std::thread::sleep(Duration::from_secs(3));
            let mut plan = vec![("kill9", n, 0), ("stop", n - 1, 0), ("pmrestart", n, 0)];
            if args.iptables {
                plan.insert(2, ("partition", 1, n));
                plan.insert(3, ("oneway", 2, n));
                plan.insert(4, ("latency", 1, 2));
            }
            for (kind, a, b) in plan {
                c.fault(kind, a, b);
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        "mailboxes" => {
            // No faults: only full mailboxes drop, and the counters must
            // say exactly how many (checked in `traffic_summary`).
            std::thread::sleep(args.duration);
        }
        "partitions" => {
            // The same silent partition of n1|n2 over and over: whether
            // memory settles (the allocator reusing what the first ones
            // took) or climbs with every one (a leak).
            let count = (args.duration.as_secs() / 10).max(1);
            for _ in 0..count {
                c.fault("partition", 1, 2);
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        _ => {
            let mut kinds = vec!["kill9", "stop", "pmrestart"];
            if args.iptables {
                kinds.extend(["partition", "oneway", "latency"]);
            }
            let mut next = started + args.fault_every;
            while started.elapsed() < args.duration {
                if Instant::now() >= next
                    && started.elapsed() + Duration::from_secs(10) < args.duration
                {
                    let kind = kinds[c.random(kinds.len())];
                    let a = 1 + c.random(n);
                    let mut b = 1 + c.random(n - 1);
                    if b >= a {
                        b += 1;
                    }
                    let (a, b) = if kind == "latency" { (1, 2) } else { (a, b) };
                    c.fault(kind, a, b);
                    next += args.fault_every;
                    while next <= Instant::now() {
                        next += args.fault_every;
                    }
                }
                c.poll();
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if args.cycles > 0 {
        cycles(c);
    }
    finish(c)
}

/// 1,000 (or --cycles) connect/disconnect cycles from n1's namespace to n2;
/// n2's threads and descriptors before and after.
fn cycles(c: &mut Cluster) {
    let pid = c.children[1].as_ref().map_or(0, Child::id);
    let before = proc_sample(pid);
    let out = c
        .netns(1)
        .arg(c.args.bin_dir.join("erlangen-chaos"))
        .args(["cycles", "--host", &ip(1), "--target", &full(2)])
        .args(["--count", &c.args.cycles.to_string()])
        .arg("--dir")
        .arg(&c.args.dir)
        .output();
    let text = out
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let errors: Vec<String> = out
        .as_ref()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .take(3)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !out.as_ref().is_ok_and(|o| o.status.success()) {
        c.fail(format!("cycles failed: {text} {}", errors.join(" | ")));
    }
    // The target closes its side when it reads the close: wait for its
    // descriptors to come back (or the deadline), then compare.
    let end = Instant::now() + DEADLINE;
    let mut after = proc_sample(pid);
    while Instant::now() < end && after.map(|a| a.2) != before.map(|b| b.2) {
        std::thread::sleep(Duration::from_millis(100));
        after = proc_sample(pid);
    }
    let show = |s: Option<(u64, u64, u64)>| {
        s.map_or("-".into(), |(r, t, f)| {
            format!("rss {r} KiB, threads {t}, fds {f}")
        })
    };
    c.note(&format!(
        "cycles: {text}; target n2 before: {}; after: {}",
        show(before),
        show(after)
    ));
    if let (Some(b), Some(a)) = (before, after) {
        if a.1 != b.1 || a.2 != b.2 {
            c.fail(format!(
                "cycles: n2's threads or descriptors did not come back ({b:?} -> {a:?})"
            ));
        }
    }
}

/// Stops the nodes, checks what they logged, prints the report.
fn finish(c: &mut Cluster) -> ExitCode {
    c.log.log("stopping", "");
    let stopping = now_ms();
    let _ = fs::write(c.args.dir.join("stop"), "");
    let end = Instant::now() + DEADLINE;
    for k in 1..=c.args.nodes {
        if let Some(child) = c.children[k - 1].as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= end => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
    c.poll();
    traffic_summary(c);
    unexpected_downs(c, stopping);
    samples_summary(c);
    if c.failures.is_empty() {
        c.note("chaos: PASS");
    } else {
        let list = c.failures.join("\n  ");
        c.note(&format!("chaos: FAIL ({}):\n  {list}", c.failures.len()));
    }
    let _ = fs::write(c.args.dir.join("report.txt"), &c.report);
    if c.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Totals over every run of every node (a run's last stats line), and the
/// tail check: every stream whose sender's run ended cleanly was received
/// up to its last message.
fn traffic_summary(c: &mut Cluster) {
    let keys = [
        "sent",
        "senderr",
        "recv",
        "lost",
        "lostnotice",
        "midway",
        "dup",
        "reord",
        "extra",
        "dropped",
        "mailboxdrop",
    ];
    let mut totals: HashMap<&str, u64> = HashMap::new();
    let mut last: HashMap<String, Event> = HashMap::new();
    let mut runs = 0;
    for e in &c.events {
        match e.kind.as_str() {
            "start" => {
                if let Some(prev) = last.remove(&e.node) {
                    for k in keys {
                        *totals.entry(k).or_default() += prev.value(k).unwrap_or(0);
                    }
                }
                runs += 1;
            }
            "stats" => {
                last.insert(e.node.clone(), e.clone());
            }
            _ => {}
        }
    }
    for prev in last.values() {
        for k in keys {
            *totals.entry(k).or_default() += prev.value(k).unwrap_or(0);
        }
    }
    let t = |k: &str| totals.get(k).copied().unwrap_or(0);
    // Tail: (sender node, agent, receiver node) -> sequence numbers sent, by
    // the sender's last run; receivers' last sequence per sender key.
    let mut incarnation: HashMap<String, String> = HashMap::new();
    let mut sent: HashMap<(String, String, String), u64> = HashMap::new();
    let mut received: HashMap<(String, String, String), i64> = HashMap::new();
    for e in &c.events {
        match e.kind.as_str() {
            "start" => {
                incarnation.insert(
                    e.node.clone(),
                    e.value("incarnation").unwrap_or(0).to_string(),
                );
                sent.retain(|(s, _, _), _| s != &e.node);
            }
            "sent" => {
                let v = e.field(2).parse().unwrap_or(0);
                sent.insert(
                    (e.node.clone(), e.field(0).to_owned(), e.field(1).to_owned()),
                    v,
                );
            }
            "recvd" => {
                let (id, inc) = e.field(1).split_once('#').unwrap_or(("", ""));
                let node = id.rsplit_once('/').map_or("", |(n, _)| n);
                let sender = node.rsplit_once('/').map_or("", |(_, s)| s);
                if incarnation.get(sender).map(String::as_str) == Some(inc) {
                    let v = e.field(2).parse().unwrap_or(-1);
                    let receiver = format!(
                        "{}/{}",
                        ip(e.node.trim_start_matches('n').parse().unwrap_or(0)),
                        e.node
                    );
                    let _ = receiver;
                    received.insert(
                        (sender.to_owned(), e.field(0).to_owned(), e.node.clone()),
                        v,
                    );
                }
            }
            _ => {}
        }
    }
    let mut tail_missing = 0u64;
    let mut streams = 0;
    for ((s, j, to), n) in &sent {
        let to_name = to.rsplit_once('/').map_or("", |(_, x)| x).to_owned();
        let got = received
            .get(&(s.clone(), j.clone(), to_name))
            .copied()
            .unwrap_or(-1);
        streams += 1;
        let expect = *n as i64 - 1;
        if got < expect {
            tail_missing += (expect - got) as u64;
        }
    }
    c.note(&format!(
        "traffic: {runs} node runs; sent {}, received {}; lost without a notice {}, duplicated {}, \
         reordered {}, notices nobody expected {}; missing from sequences after a notice to the \
         receiver (connection lost) {}; streams first heard mid-sequence (a restarted receiver, or \
         a new sender run whose node dropped its first messages while no connection was up) {}; dropped by senders' nodes (their counter) {}, \
         send errors {}; {streams} streams of cleanly ended runs checked at the end, \
         {tail_missing} messages missing at their tails",
        t("sent"), t("recv"), t("lost"), t("dup"), t("reord"), t("extra"), t("lostnotice"),
        t("midway"), t("dropped"), t("senderr")
    ));
    if c.args.scenario == "mailboxes" {
        // Full mailboxes drop, so gaps without a notice are expected: they
        // must be exactly what the counters say was dropped. A node's
        // `dropped` counts what it dropped either way: sends it could not
        // queue, and deliveries to a full mailbox (of which the agents'
        // own counters, summed, are `mailboxdrop`).
        let before_first: u64 = c
            .events
            .iter()
            .filter(|e| e.kind == "early")
            .filter_map(|e| e.value("first"))
            .sum();
        let missing = t("lost") + tail_missing + before_first;
        let (dropped, in_mailboxes) = (t("dropped"), t("mailboxdrop"));
        c.note(&format!(
            "accounting: sent {} = received {} + missing from the sequences {missing} (gaps {}, \
             tails {tail_missing}, before a stream's first message {before_first}): {}; dropped by \
             full mailboxes, as the agents' counters say: {in_mailboxes}; dropped in all, as the \
             nodes' counters say: {dropped} (the rest are other requests or sends that found a \
             queue full); missing - mailboxes = {}",
            t("sent"),
            t("recv"),
            t("lost"),
            if t("sent") == t("recv") + missing {
                "exact"
            } else {
                "MISMATCH"
            },
            missing as i64 - in_mailboxes as i64,
        ));
        // Every message missing was dropped by a counter: a mailbox, or
        // (the rest) a node.
        if t("sent") != t("recv") + missing || missing < in_mailboxes || missing > dropped {
            c.fail("accounting: the counters do not account for every message".into());
        }
        if t("mailboxdrop") == 0 {
            c.fail("accounting: no mailbox filled up (raise --burst or lower --mailbox)".into());
        }
        for k in ["dup", "reord", "extra"] {
            if t(k) != 0 {
                c.fail(format!("traffic: {k} = {}", t(k)));
            }
        }
    } else {
        for k in ["lost", "dup", "reord", "extra"] {
            if t(k) != 0 {
                c.fail(format!("traffic: {k} = {}", t(k)));
            }
        }
        if tail_missing != 0 {
            c.fail(format!(
                "traffic: {tail_missing} messages missing at the end of live streams"
            ));
        }
    }
    let twice = c
        .events
        .iter()
        .filter(|e| e.kind == "twice" || e.kind == "missing")
        .count();
    if twice != 0 {
        c.fail(format!("watchers: {twice} notices twice or missing"));
    }
}

/// A `down` outside every fault window, or between nodes the fault did not
/// cut, is a false failure detection.
fn unexpected_downs(c: &mut Cluster, stopping: u64) {
    let mut unexpected = Vec::new();
    for e in c
        .events
        .iter()
        .filter(|e| e.kind == "down" && e.ms < stopping)
    {
        let o: usize = e.node.trim_start_matches('n').parse().unwrap_or(0);
        let s: usize = e
            .field(0)
            .rsplit_once("/n")
            .and_then(|(_, k)| k.parse().ok())
            .unwrap_or(0);
        let explained = c
            .windows
            .iter()
            .any(|w| e.ms >= w.start && e.ms <= w.end + 1000 && w.pairs.contains(&pair(o, s)));
        if !explained {
            unexpected.push(format!("n{o} about n{s} at {}", e.ms));
        }
    }
    let windows: Vec<String> = c.windows.iter().map(|w| w.label.clone()).collect();
    c.note(&format!(
        "faults: {} ({}); node-down notices outside their fault: {}",
        windows.len(),
        windows.join(", "),
        unexpected.len()
    ));
    if !unexpected.is_empty() {
        c.fail(format!(
            "unexpected node-down notices: {}",
            unexpected.join(", ")
        ));
    }
}

/// The live heap a node logs in its stats lines (its counting allocator:
/// what the program holds, apart from what the allocator keeps after
/// frees) from `from` on: first, last and largest value.
fn heap_of(events: &[Event], label: &str, from: u64) -> Option<(i64, i64, i64)> {
    let heaps: Vec<i64> = events
        .iter()
        .filter(|e| e.node == label && e.kind == "stats" && e.ms >= from)
        .filter_map(|e| {
            e.fields
                .iter()
                .find_map(|f| f.strip_prefix("heap="))?
                .parse()
                .ok()
        })
        .collect();
    Some((*heaps.first()?, *heaps.last()?, *heaps.iter().max()?))
}

/// Memory, threads and descriptors of each process: at the end of its
/// second minute (or its first sample) and at its last sample.
fn samples_summary(c: &mut Cluster) {
    /// (ms, pid, rss KiB, threads, fds)
    type Row = (u64, u64, u64, u64, u64);
    let mut by_label: Vec<(String, Vec<Row>)> = Vec::new();
    let first_ms = c.events.first().map_or(0, |e| e.ms);
    for e in c.events.iter().filter(|e| e.kind == "sample") {
        let label = e.field(0).to_owned();
        let pid = e.value("pid").unwrap_or(0);
        let row = (
            e.ms,
            pid,
            e.value("rss").unwrap_or(0),
            e.value("threads").unwrap_or(0),
            e.value("fds").unwrap_or(0),
        );
        match by_label.iter_mut().find(|(l, _)| *l == label) {
            Some((_, rows)) => rows.push(row),
            None => by_label.push((label, vec![row])),
        }
    }
    by_label.sort();
    let mut heap_lines = Vec::new();
    for (label, rows) in by_label {
        // Only the process's last run (a restart starts over).
        let pid = rows.last().map_or(0, |r| r.1);
        let run: Vec<_> = rows.into_iter().filter(|r| r.1 == pid).collect();
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let minute2 = run
            .iter()
            .find(|r| r.0 >= first.0 + 120_000)
            .unwrap_or(first);
        let max_rss = run
            .iter()
            .filter(|r| r.0 >= minute2.0)
            .map(|r| r.2)
            .max()
            .unwrap_or(0);
        if let Some((h0, h1, hmax)) = heap_of(&c.events, &label, minute2.0) {
            heap_lines.push(format!(
                "heap {label} (pid {pid}, live bytes the program holds, from the same moment): \
                 {} -> {} KiB (max {} KiB)",
                h0 / 1024,
                h1 / 1024,
                hmax / 1024
            ));
        }
        c.note(&format!(
            "sample {label} (pid {pid}, {} s of samples from +{} s): rss {} -> {} KiB (max {max_rss} after minute 2), \
             threads {} -> {}, fds {} -> {}",
            (last.0 - first.0) / 1000,
            (first.0.saturating_sub(first_ms)) / 1000,
            minute2.2, last.2, minute2.3, last.3, minute2.4, last.4
        ));
    }
    for line in heap_lines {
        c.note(&line);
    }
}
