//! Whom an agent tells when it exits: its links, monitors, watchers and
//! exit hooks, kept in a small set ([`PeerSet`]) that spills into a map.

use super::*;

/// Who an agent tells when it exits.
#[derive(Clone)]
pub(crate) enum Peer {
    Local(Agent),
    Remote(target::RemoteRef),
    /// A function run in the exit protocol (see [`ExitHook`]).
    Hook(&'static ExitHook),
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    Local(u64),
    Remote(Arc<str>),
    Hook(&'static str),
}

impl Peer {
    pub(crate) fn key(&self) -> PeerKey {
        match self {
            Peer::Local(a) => PeerKey::Local(a.serial()),
            Peer::Remote(r) => PeerKey::Remote(Arc::clone(&r.id)),
            Peer::Hook(h) => PeerKey::Hook(h.name),
        }
    }
}

/// A one-way watch that runs a function instead of sending a notice, for
/// the layers above agents that must hear of an exit without being agents
/// themselves (the timer service; groups and global names can use it the
/// same way). Attach it with [`Agent::attach_exit_hook`]; `run` is called
/// once, in the watched agent's exit protocol, on whatever thread that
/// runs, with no agent lock held. It must be quick and must not block.
pub(crate) struct ExitHook {
    /// Tells hooks apart: one entry per hook and agent.
    pub(crate) name: &'static str,
    /// What runs when the agent exits: the agent and how it ended.
    pub(crate) run: fn(&Agent, &Outcome),
}

/// What an entry of an agent's peer set means, seen from that agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// Linked, or the monitored end of a two-way monitor: killed with our
    /// reason when we exit.
    Link,
    /// Monitors us (`Attach::Monitor`, two-way): told when we exit.
    Monitor,
    /// Watches us ([`watch`], one way): told when we exit.
    Watcher,
    /// We watch it: when we exit it only forgets us (nobody dies and
    /// nobody is told).
    Watching,
}

impl Role {
    const ALL: [Role; 4] = [Role::Link, Role::Monitor, Role::Watcher, Role::Watching];

    pub(super) fn of(monitor: bool) -> Role {
        if monitor {
            Role::Monitor
        } else {
            Role::Link
        }
    }
}

/// An agent's links, monitors and watches: a short list (most agents have
/// a few), or a map once there are many (a parent of a thousand workers),
/// so both the common agent stays small and removal stays cheap.
///
/// The short list is a boxed slice, exactly as long as the set (two words
/// in the agent instead of a `Vec`'s three; an agent's peers change
/// rarely, and a change reallocates it).
pub(super) enum PeerSet {
    Few(Box<[Entry]>),
    // Boxed on purpose: inline, the map would make every agent's set (and
    // so every agent) 24 bytes larger for the rare agent with many peers.
    #[allow(clippy::box_collection)]
    Many(Box<PeerMap>),
}

type PeerMap = HashMap<(PeerKey, Role), Peer, PeerHashing>;

/// One entry of a short peer set.
pub(super) type Entry = (PeerKey, Peer, Role);

/// Changes a short peer set as a `Vec`, then boxes it again at its exact
/// length.
fn edit<R>(few: &mut Box<[Entry]>, f: impl FnOnce(&mut Vec<Entry>) -> R) -> R {
    let mut v = std::mem::take(few).into_vec();
    let r = f(&mut v);
    *few = v.into_boxed_slice();
    r
}

/// Hashing for a [`PeerSet`]'s map: local agents' serials (handed out by
/// this process in sequence) by a multiply that only mixes bits, as the
/// agent table does, which is most of the cost of a parent of a thousand
/// workers spawning and reaping them; anything else (remote agents' ids,
/// which another node chooses) by SipHash with this map's random keys.
#[derive(Clone, Default)]
pub(super) struct PeerHashing(std::collections::hash_map::RandomState);

impl std::hash::BuildHasher for PeerHashing {
    type Hasher = PeerHasher;
    fn build_hasher(&self) -> PeerHasher {
        PeerHasher {
            fast: 0,
            sip: None,
            keys: self.0.clone(),
        }
    }
}

/// See [`PeerHashing`].
pub(super) struct PeerHasher {
    fast: u64,
    sip: Option<std::collections::hash_map::DefaultHasher>,
    keys: std::collections::hash_map::RandomState,
}

impl std::hash::Hasher for PeerHasher {
    fn finish(&self) -> u64 {
        match &self.sip {
            Some(sip) => sip.finish() ^ self.fast,
            None => self.fast,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        use std::hash::BuildHasher;
        self.sip
            .get_or_insert_with(|| self.keys.build_hasher())
            .write(bytes);
    }

    fn write_u64(&mut self, n: u64) {
        self.fast = (self.fast.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// Past this many entries a `PeerSet` becomes a map.
pub(super) const FEW_PEERS: usize = 16;

impl Default for PeerSet {
    fn default() -> PeerSet {
        PeerSet::Few(Box::default())
    }
}

impl PeerSet {
    /// Adds `peer` in `role`, replacing an entry of the same role for the
    /// same peer.
    pub(super) fn insert(&mut self, peer: Peer, role: Role) {
        let key = peer.key();
        match self {
            PeerSet::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _, r)| *k == key && *r == role) {
                    slot.1 = peer;
                } else if v.len() < FEW_PEERS {
                    edit(v, |v| {
                        v.reserve_exact(1);
                        v.push((key, peer, role));
                    });
                } else {
                    let few = std::mem::take(v).into_vec();
                    let mut map: PeerMap = few.into_iter().map(|(k, p, r)| ((k, r), p)).collect();
                    map.insert((key, role), peer);
                    *self = PeerSet::Many(Box::new(map));
                }
            }
            PeerSet::Many(map) => {
                map.insert((key, role), peer);
            }
        }
    }

    /// Removes `key` in every role.
    pub(super) fn remove(&mut self, key: &PeerKey) {
        match self {
            PeerSet::Few(v) => {
                if v.iter().any(|(k, _, _)| k == key) {
                    edit(v, |v| v.retain(|(k, _, _)| k != key));
                }
            }
            PeerSet::Many(map) => {
                for role in Role::ALL {
                    map.remove(&(key.clone(), role));
                }
            }
        }
    }

    /// Removes `key` in `role` only; `true` if it was there.
    pub(super) fn remove_role(&mut self, key: &PeerKey, role: Role) -> bool {
        match self {
            PeerSet::Few(v) => {
                let found = v.iter().any(|(k, _, r)| k == key && *r == role);
                if found {
                    edit(v, |v| v.retain(|(k, _, r)| !(k == key && *r == role)));
                }
                found
            }
            PeerSet::Many(map) => map.remove(&(key.clone(), role)).is_some(),
        }
    }

    /// Whether `key` is here in `role`.
    pub(super) fn contains(&self, key: &PeerKey, role: Role) -> bool {
        match self {
            PeerSet::Few(v) => v.iter().any(|(k, _, r)| k == key && *r == role),
            PeerSet::Many(map) => map.contains_key(&(key.clone(), role)),
        }
    }

    /// Whether `key` is here in any role.
    pub(super) fn has(&self, key: &PeerKey) -> bool {
        match self {
            PeerSet::Few(v) => v.iter().any(|(k, _, _)| k == key),
            PeerSet::Many(_) => Role::ALL.iter().any(|r| self.contains(key, *r)),
        }
    }

    /// Takes the exit hooks out of the set (no allocation when there is
    /// none, as for most agents).
    pub(super) fn take_hooks(&mut self) -> Vec<&'static ExitHook> {
        let mut hooks = Vec::new();
        // Keeps what is not a hook; moves the hooks to `hooks`.
        let mut keep = |p: &Peer| match p {
            Peer::Hook(h) => {
                hooks.push(*h);
                false
            }
            _ => true,
        };
        match self {
            PeerSet::Few(v) => {
                if v.iter().any(|(_, p, _)| matches!(p, Peer::Hook(_))) {
                    edit(v, |v| v.retain(|(_, p, _)| keep(p)));
                }
            }
            PeerSet::Many(map) => map.retain(|_, p| keep(p)),
        }
        hooks
    }

    /// Calls `f` with each entry, consuming the set.
    pub(super) fn for_each(self, mut f: impl FnMut(Peer, Role)) {
        match self {
            PeerSet::Few(v) => v.into_vec().into_iter().for_each(|(_, p, r)| f(p, r)),
            PeerSet::Many(map) => map.into_iter().for_each(|((_, r), p)| f(p, r)),
        }
    }

    /// (links, agents told when we exit), without the hooks and without
    /// the agents we watch.
    pub(super) fn snapshot(&self) -> (Vec<Peer>, Vec<Peer>) {
        let (mut links, mut monitors) = (Vec::new(), Vec::new());
        let mut put = |peer: &Peer, role: Role| match (peer, role) {
            (Peer::Hook(_), _) | (_, Role::Watching) => {}
            (_, Role::Link) => links.push(peer.clone()),
            (_, Role::Monitor | Role::Watcher) => monitors.push(peer.clone()),
        };
        match self {
            PeerSet::Few(v) => v.iter().for_each(|(_, p, r)| put(p, *r)),
            PeerSet::Many(map) => map.iter().for_each(|((_, r), p)| put(p, *r)),
        }
        (links, monitors)
    }
}
