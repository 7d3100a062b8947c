//! Turning whatever names an agent (a handle, a `:NAME`, an id string
//! `"host/node/aid"`, an agent term) into the agent, and the hook through
//! which ids of other nodes are handed to the node layer.
//!
//! The agent layer does not know about connections: when this process is a
//! node, the node layer installs a [`Remote`] here, and ids of other nodes
//! resolve to it. Dependencies point one way: node → agent.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::{Agent, LinkError, Outcome, PeerKey, Role, SendError, TargetError};
use crate::term::{AgentRef, Term};

/// An agent of another node: its id string `"host/node/aid"` and the
/// incarnation of the node run it belongs to, 0 for "the current run" (an
/// id typed as text). Compared and hashed by both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RemoteRef {
    pub(crate) id: Arc<str>,
    pub(crate) incarnation: u64,
}

impl RemoteRef {
    /// As a term: prints as the id string either way.
    pub(crate) fn to_term(&self) -> Term {
        if self.incarnation == 0 {
            Term::Agent(AgentRef::Id(Arc::clone(&self.id)))
        } else {
            Term::Agent(AgentRef::Remote {
                id: Arc::clone(&self.id),
                incarnation: self.incarnation,
            })
        }
    }
}

/// What a node layer provides for agents on other nodes.
pub(crate) trait Remote: Send + Sync {
    /// `true` if `host/node` is this node itself.
    fn is_self(&self, host: &str, node: &str) -> bool;
    /// This node's name, `"host/node"` (the front of its agents' ids).
    fn node_name(&self) -> &str;
    /// This node's incarnation: references to this node's agents that
    /// carry another one name an earlier run, and reach nothing.
    fn incarnation(&self) -> u64;
    /// Sends to a remote agent (encoding errors are the sender's).
    fn send(&self, to: &RemoteRef, message: Term) -> Result<(), SendError>;
    /// Sends an exit signal to a remote agent (a reason that cannot go on
    /// the wire is the caller's error).
    fn exit(&self, to: &RemoteRef, reason: Term) -> Result<(), LinkError>;
    /// Attaches local `from` to remote `to` (`monitor`: as a monitor).
    fn link(&self, from: &Agent, to: &RemoteRef, monitor: bool) -> Result<(), LinkError>;
    /// Detaches local `from` from remote `to`.
    fn unlink(&self, from: &Agent, to: &RemoteRef);
    /// Local `from` has exited; remote `to` was in its links (`monitor`
    /// false: kill it) or monitors (tell it).
    fn exit_notice(&self, from: &Agent, to: &RemoteRef, monitor: bool, outcome: &Outcome);

    /// Local `from` watches remote `to` one way (`agent::watch`): told of
    /// its exit or of the connection's loss, and `from`'s own exit does
    /// nothing to `to`.
    ///
    /// The default needs nothing new on the wire: it is a monitor (the
    /// LINK request with `monitor`, which on `to`'s node is already one
    /// way) without the local link back that makes [`Remote::link`]'s
    /// monitor two-way; `from` keeps a `Watching` entry instead, whose
    /// exit sends UNLINK (see [`remote_unwatch`]). A node layer may
    /// override it to record the watch directly.
    fn watch(&self, from: &Agent, to: &RemoteRef) -> Result<(), LinkError> {
        let key = PeerKey::Remote(Arc::clone(&to.id));
        let linked = from.has_role(&key, Role::Link);
        // Recorded first: a notice or a loss that comes before `link`
        // returns removes it with the rest.
        let _ = from.attach_peer_as(super::Peer::Remote(to.clone()), Role::Watching);
        let attached = self.link(from, to, true);
        // `link` leaves a Link entry (its monitor's way back), which a
        // watch must not have; none means it told `from` at once (the
        // node is unreachable, or `to` is of an earlier run) or the
        // connection is already lost: then nothing is kept.
        let told = !linked && !from.detach_role(&key, Role::Link);
        if told || attached.is_err() {
            from.detach_role(&key, Role::Watching);
        }
        attached
    }

    /// Ends local `from`'s watch of remote `to`. The default sends UNLINK
    /// when `from` has no other attachment to `to` (UNLINK drops them all
    /// on `to`'s node).
    fn unwatch(&self, from: &Agent, to: &RemoteRef) {
        let key = PeerKey::Remote(Arc::clone(&to.id));
        from.detach_role(&key, Role::Watching);
        if !from.has_peer(&key) {
            self.unlink(from, to);
        }
    }
}

static REMOTE: RwLock<Option<Arc<dyn Remote>>> = RwLock::new(None);

/// Installs the node layer's hook (when a node starts).
pub(crate) fn install_remote(remote: Arc<dyn Remote>) {
    *REMOTE.write().unwrap_or_else(|e| e.into_inner()) = Some(remote);
}

/// Removes the hook (when the node stops).
pub(crate) fn remove_remote() {
    *REMOTE.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The id of one of this node's agents, `"host/node/aid"`; `None` when
/// this process is not a node.
pub(crate) fn id_of(agent: &crate::agent::Agent) -> Option<String> {
    let remote = remote()?;
    Some(format!("{}/{:x}", remote.node_name(), agent.aid()))
}

fn remote() -> Option<Arc<dyn Remote>> {
    REMOTE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn remote_exit_notice(agent: &Agent, to: &RemoteRef, monitor: bool, outcome: &Outcome) {
    if let Some(remote) = remote() {
        remote.exit_notice(agent, to, monitor, outcome);
    }
}

/// Local `agent`, exiting, watched remote `to`: its node is told to drop
/// the watch (UNLINK), so `to`'s exit later sends nothing.
pub(crate) fn remote_unwatch(agent: &Agent, to: &RemoteRef) {
    if let Some(remote) = remote() {
        remote.unlink(agent, to);
    }
}

// Agents by serial number, so a `#<AGENT n>` term inside a message can be
// turned back into its agent. Sharded: spawning from many threads would
// otherwise contend on one lock.
const SHARDS: usize = 16;
static AGENTS: [Mutex<Option<SerialMap>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];

/// Agents by serial number. Serials are handed out by this process in
/// sequence, not by anyone outside, so a hash that only mixes bits
/// (instead of SipHash, built to resist chosen keys) is safe and faster.
/// A set of handles looked up by their serial, rather than a map from the
/// serial to the handle: an entry is the handle alone (8 bytes instead of
/// 16), which matters with a million agents.
type SerialMap = HashSet<BySerial, BuildHasherDefault<SerialHasher>>;

/// An agent in the serial table: hashed and compared by its serial, and
/// found by it (`Borrow<u64>`; hashing it hashes the serial, as `u64`
/// does, so the two agree).
struct BySerial(Agent);

impl Hash for BySerial {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.serial().hash(state);
    }
}

impl PartialEq for BySerial {
    fn eq(&self, other: &BySerial) -> bool {
        self.0.serial() == other.0.serial()
    }
}
impl Eq for BySerial {}

impl Borrow<u64> for BySerial {
    fn borrow(&self) -> &u64 {
        &self.0 .0.serial
    }
}

/// Fibonacci hashing of a `u64` (multiply by 2^64 / phi; the high bits are
/// well mixed, and hashbrown uses the high bits).
#[derive(Default)]
pub(crate) struct SerialHasher(u64);

impl Hasher for SerialHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

// Agents by wire id number (aid), once named to another node.
static AIDS: Mutex<Option<HashMap<u64, Agent>>> = Mutex::new(None);
static NEXT_AID: AtomicU64 = AtomicU64::new(0);

fn shard(serial: u64) -> MutexGuard<'static, Option<SerialMap>> {
    AGENTS[(serial as usize) % SHARDS]
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn aids() -> MutexGuard<'static, Option<HashMap<u64, Agent>>> {
    AIDS.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn insert(agent: &Agent) {
    shard(agent.serial())
        .get_or_insert_with(SerialMap::default)
        .insert(BySerial(agent.clone()));
}

/// Takes `agent` out of both tables (at the very end of its exit
/// protocol, after its outcome is set).
pub(crate) fn remove(agent: &Agent) {
    if let Some(map) = shard(agent.serial()).as_mut() {
        map.remove(&agent.serial());
    }
    // No aid yet means no export can still insert it: see `export`. So an
    // agent never named to another node costs no global lock here.
    if let Some(aid) = agent.0.aid.get() {
        if let Some(map) = aids().as_mut() {
            map.remove(&aid);
        }
    }
}

/// The agent's aid, handed out on first use (through `Agent::aid`). A dead
/// agent gets an aid that resolves to nothing.
///
/// No dead agent can stay in the table: under the `AIDS` lock, the aid is
/// published in the agent *before* its liveness is checked (under the
/// agent's lock), and the agent goes in only if alive. Its exit sets the
/// outcome (agent's lock) before `remove` reads the aid. So either the
/// check comes after the outcome was set (dead: not inserted), or it came
/// before, and then `remove` sees the aid and takes the `AIDS` lock, which
/// waits out the insert and removes it. (Checking, inserting and only then
/// publishing the aid left an agent in the table when it exited in
/// between: `remove` found no aid to remove.)
pub(crate) fn export(agent: &Agent) -> u64 {
    let mut aids = aids();
    if let Some(aid) = agent.0.aid.get() {
        // Another thread exported it while we waited for the lock.
        return aid;
    }
    let aid = NEXT_AID.fetch_add(1, Ordering::Relaxed);
    // Only ever set here, under the lock: cannot be set already.
    agent.0.aid.set(aid);
    if agent.is_alive() {
        aids.get_or_insert_with(HashMap::new)
            .insert(aid, agent.clone());
    }
    aid
}

/// The live local agent with this serial number.
pub(crate) fn by_serial(serial: u64) -> Option<Agent> {
    shard(serial)
        .as_ref()
        .and_then(|m| m.get(&serial).map(|a| a.0.clone()))
}

/// The live local agent with this aid.
pub(crate) fn by_aid(aid: u64) -> Option<Agent> {
    aids().as_ref().and_then(|m| m.get(&aid).cloned())
}

/// Every live agent of this process (for management).
pub(crate) fn all() -> Vec<Agent> {
    let mut out = Vec::new();
    for s in &AGENTS {
        if let Some(m) = s.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            out.extend(m.iter().map(|a| a.0.clone()));
        }
    }
    out.sort_by_key(Agent::serial);
    out
}

/// Whatever can designate an agent: see [`super::send`].
#[derive(Clone, Debug)]
pub enum Target {
    /// A local agent's handle.
    Agent(Agent),
    /// A term: an agent reference, a `:NAME` keyword or an id string.
    Term(Term),
}

impl From<&Agent> for Target {
    fn from(a: &Agent) -> Target {
        Target::Agent(a.clone())
    }
}
impl From<Agent> for Target {
    fn from(a: Agent) -> Target {
        Target::Agent(a)
    }
}
impl From<Term> for Target {
    fn from(t: Term) -> Target {
        Target::Term(t)
    }
}
impl From<&Term> for Target {
    fn from(t: &Term) -> Target {
        Target::Term(t.clone())
    }
}
impl From<&str> for Target {
    /// `"host/node/aid"` is an id; `":logger"` or `"logger"` a name.
    fn from(s: &str) -> Target {
        if s.contains('/') {
            Target::Term(Term::from(s))
        } else {
            Target::Term(Term::Keyword(crate::agent::registry::normalize(s)))
        }
    }
}
impl From<AgentRef> for Target {
    fn from(r: AgentRef) -> Target {
        Target::Term(Term::Agent(r))
    }
}
impl From<&AgentRef> for Target {
    fn from(r: &AgentRef) -> Target {
        Target::Term(Term::Agent(r.clone()))
    }
}
impl From<&Target> for Target {
    fn from(t: &Target) -> Target {
        t.clone()
    }
}

/// Where a target leads.
pub(crate) enum Resolved {
    Local(Agent),
    /// A local agent that has exited (or an id of this node naming none).
    Dead,
    Remote(Arc<dyn Remote>, RemoteRef),
}

impl Target {
    /// The target as a term (for notifications about it).
    pub(crate) fn term(&self) -> Option<Term> {
        match self {
            Target::Agent(a) => Some(a.to_term()),
            Target::Term(t) => Some(t.clone()),
        }
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, TargetError> {
        match self {
            Target::Agent(a) => Ok(if a.is_alive() {
                Resolved::Local(a.clone())
            } else {
                Resolved::Dead
            }),
            Target::Term(t) => resolve_term(t),
        }
    }
}

fn resolve_term(term: &Term) -> Result<Resolved, TargetError> {
    match term {
        Term::Agent(AgentRef::Local(serial)) => {
            Ok(by_serial(*serial).map_or(Resolved::Dead, Resolved::Local))
        }
        Term::Agent(AgentRef::Id(id)) => resolve_id(id, Some(id), 0),
        Term::Agent(AgentRef::Remote { id, incarnation }) => resolve_id(id, Some(id), *incarnation),
        Term::Str(id) if id.contains('/') => resolve_id(id, None, 0),
        Term::Keyword(name) => crate::agent::registry::whereis(name)
            .map(Resolved::Local)
            .ok_or_else(|| TargetError::UnknownName(name.clone())),
        other => Err(TargetError::NotAnAgent(short(other))),
    }
}

fn short(term: &Term) -> String {
    let text = term.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

pub(crate) use crate::term::split_id;

/// Resolves the aid part of one of this node's ids: hex number or `:NAME`.
pub(crate) fn resolve_local_aid(aid: &str) -> Result<Resolved, TargetError> {
    if let Some(name) = aid.strip_prefix(':') {
        let name = crate::agent::registry::normalize(name);
        return crate::agent::registry::whereis(&name)
            .map(Resolved::Local)
            .ok_or(TargetError::UnknownName(name));
    }
    match parse_aid(aid) {
        Some(n) => Ok(by_aid(n).map_or(Resolved::Dead, Resolved::Local)),
        None => Err(TargetError::NotAnAgent(format!("{aid:?}"))),
    }
}

/// An agent number as ids write it: lower-case hexadecimal without
/// leading zeros (PROTOCOL.md section 5), so one agent has one id. `None`
/// for anything else (`01`, `1F`, `+1`, more than 16 digits).
fn parse_aid(aid: &str) -> Option<u64> {
    let canonical = !aid.is_empty()
        && aid.len() <= 16
        && aid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && (aid == "0" || !aid.starts_with('0'));
    if !canonical {
        return None;
    }
    u64::from_str_radix(aid, 16).ok()
}

/// `shared` is the id as an `Arc` when the caller has one (saves a copy
/// per remote send); `incarnation` is the node run it names (0: current).
fn resolve_id(
    id: &str,
    shared: Option<&Arc<str>>,
    incarnation: u64,
) -> Result<Resolved, TargetError> {
    let (host, node, aid) =
        split_id(id).ok_or_else(|| TargetError::NotAnAgent(format!("{id:?}")))?;
    let remote = remote().ok_or_else(|| TargetError::NotDistributed(id.to_owned()))?;
    if remote.is_self(host, node) {
        // An agent of an earlier run of this node: gone, whatever agent of
        // this run now has the same aid (Erlang's creation check).
        if incarnation != 0 && incarnation != remote.incarnation() {
            return Ok(Resolved::Dead);
        }
        resolve_local_aid(aid)
    } else {
        let id = shared.map_or_else(|| Arc::from(id), Arc::clone);
        Ok(Resolved::Remote(remote, RemoteRef { id, incarnation }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{by_aid, parse_aid};
    use crate::agent::spawn;

    #[test]
    fn only_canonical_aids_name_agents() {
        assert_eq!(parse_aid("0"), Some(0));
        assert_eq!(parse_aid("1f"), Some(31));
        assert_eq!(parse_aid("ffffffffffffffff"), Some(u64::MAX));
        for bad in [
            "",
            "01",
            "00",
            "1F",
            "+1",
            "-1",
            " 1",
            "g",
            "10000000000000000",
        ] {
            assert_eq!(parse_aid(bad), None, "{bad:?}");
        }
    }

    /// Agents are exported (given an aid) while they exit; once they have
    /// exited, the aid table holds none of them. Exporters run on several
    /// threads at once so that some are preempted mid-export.
    #[test]
    fn an_agent_exported_while_exiting_does_not_stay_in_the_aid_table() {
        let exporters: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(|| {
                    let mut exported = Vec::new();
                    for _ in 0..1500 {
                        let go = Arc::new(Barrier::new(2));
                        let gate = Arc::clone(&go);
                        let agent = spawn(move || {
                            gate.wait();
                        })
                        .expect("spawn");
                        go.wait();
                        exported.push((agent.aid(), agent));
                    }
                    exported
                })
            })
            .collect();
        let exported: Vec<_> = exporters
            .into_iter()
            .flat_map(|t| t.join().expect("exporter"))
            .collect();
        // An agent leaves the table at the very end of its exit protocol:
        // wait for that, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        for (aid, agent) in &exported {
            while by_aid(*aid).is_some() || agent.is_alive() {
                assert!(
                    Instant::now() < deadline,
                    "{agent:?} (aid {aid:x}) stayed in the aid table after exiting"
                );
                thread::park_timeout(Duration::from_millis(5));
            }
        }
    }
}
